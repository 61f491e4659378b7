//! spare: one ready copy of each warm template's disk, kept beside the template, so a
//! restore renames it into the new VM (instant) instead of copying the disk while the
//! user waits (about 0.5 s for debian-bookworm on ext4, which has no reflinks). Each
//! restore that takes the spare starts the next copy in the background. The copy is
//! written as `spare.ext4.part` and renamed when complete, so a half-made spare is never
//! taken; the template's own files are only read. A spare goes with its template's
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk;
use crate::error::chain;
use crate::service::VmService;
use crate::warm::SnapshotPaths;

/// The spare disk of a template, and its copy in progress.
fn spare_paths(snap: &SnapshotPaths) -> (PathBuf, PathBuf) {
    (
        snap.dir.join("spare.ext4"),
        snap.dir.join("spare.ext4.part"),
    )
}

/// Moves a ready spare to `disk`; false when there is none (another restore took it,
/// or its copy is not finished).
pub(crate) fn take(snap: &SnapshotPaths, disk: &Path) -> bool {
    let (spare, _) = spare_paths(snap);
    std::fs::rename(&spare, disk).is_ok()
}

impl VmService {
    /// Makes the template's spare in the background unless it exists or is being made.
    pub(crate) fn spawn_spare(self: &Arc<Self>, snapshot_id: &str) {
        let snap = SnapshotPaths::new(&self.cfg.dirs, snapshot_id);
        let (spare, part) = spare_paths(&snap);
        if spare.exists() {
            return;
        }
        if !self
            .making_spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(snapshot_id.to_string())
        {
            return;
        }
        let service = Arc::clone(self);
        let id = snapshot_id.to_string();
        tokio::spawn(async move {
            let made =
                disk::provision_in_background(service.runner.as_ref(), &snap.disk, &part).await;
            let result = match made {
                Ok(_) => std::fs::rename(&part, &spare).map_err(|e| e.to_string()),
                Err(error) => Err(chain(&error)),
            };
            if let Err(error) = result {
                // The template was deleted meanwhile, or the disk is full: no spare,
                // restores copy the disk themselves.
                let _ = std::fs::remove_file(&part);
                tracing::debug!(snapshot = %id, error, "no spare disk for the template");
            }
            service
                .making_spares
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_taken_once_and_a_part_never() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dirs = banger_model::dirs::Dirs {
            state: root.join("state"),
            cache: root.join("cache"),
            runtime: root.join("run"),
            config: root.join("config"),
            socket: root.join("run/bangerd.sock"),
        };
        let snap = SnapshotPaths::new(&dirs, "0123456789abcdef");
        std::fs::create_dir_all(&snap.dir).unwrap();
        let (spare, part) = spare_paths(&snap);
        let disk = dir.path().join("root.ext4");
        std::fs::write(&part, b"half").unwrap();
        assert!(!take(&snap, &disk), "a copy in progress is not taken");
        std::fs::write(&spare, b"disk").unwrap();
        assert!(take(&snap, &disk));
        assert_eq!(std::fs::read(&disk).unwrap(), b"disk");
        assert!(!take(&snap, &disk), "the spare is gone once taken");
    }
}
