//! reserve: a little space kept back on the state directory's file system, so that
//! `vm delete` works on a full disk. Deleting is how a user frees space, yet its first
//! step (recording `deleting` in SQLite) is a write, which fails with `SQLITE_FULL` when
//! nothing is free. The daemon therefore keeps a small file of real (not sparse) blocks
//! in the state directory; a delete whose store write fails for lack of space releases
//! it and retries once. The file comes back when there is room again (after a delete,
//! and at startup).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// How much is kept back. A VM row update plus its index and WAL frames is a few pages
/// of 4 KiB; this leaves room for a few hundred of them.
pub const RESERVE_BYTES: usize = 2 * 1024 * 1024;

/// The reserve file of one state directory.
#[derive(Debug, Clone)]
pub struct SpaceReserve {
    path: PathBuf,
    bytes: usize,
}

impl SpaceReserve {
    pub fn new(state_dir: &Path) -> SpaceReserve {
        SpaceReserve {
            path: state_dir.join("space-reserve"),
            bytes: RESERVE_BYTES,
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the reserve if it is missing or short. Best effort: with no room for it,
    /// nothing is kept back (and a partial file is removed, so it holds no space the
    /// user cannot account for).
    pub fn ensure(&self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes as u64) {
            return;
        }
        let temp = self.path.with_extension("tmp");
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            // Not zeros: some file systems store runs of zeros without allocating them.
            let chunk = vec![0xa5u8; 64 * 1024];
            for _ in 0..self.bytes.div_ceil(chunk.len()) {
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temp);
            tracing::debug!(%error, path = %self.path.display(), "no room for the space reserve");
        }
    }

    /// Frees the reserve; true when there was one to free.
    pub fn release(&self) -> bool {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(
                    path = %self.path.display(),
                    bytes = self.bytes,
                    "the state directory is full; released the space reserve"
                );
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn ensure_allocates_real_blocks_once_and_release_frees_them() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = SpaceReserve::new(dir.path());
        assert!(!reserve.release(), "nothing to release yet");
        reserve.ensure();
        let meta = std::fs::metadata(reserve.path()).unwrap();
        assert_eq!(meta.len(), RESERVE_BYTES as u64);
        assert!(
            meta.blocks() * 512 >= RESERVE_BYTES as u64,
            "the reserve is not sparse: {} blocks",
            meta.blocks()
        );
        let inode = meta.ino();
        reserve.ensure();
        assert_eq!(
            std::fs::metadata(reserve.path()).unwrap().ino(),
            inode,
            "an existing reserve is kept"
        );
        assert!(reserve.release());
        assert!(!reserve.path().exists());
    }
}
