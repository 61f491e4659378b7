//! `image cache prune`: what the cache and the image stores hold that no record needs.
//! The caller (the daemon) says what its records reference; everything else that can be
//! fetched or built again goes: OCI layers no image names, image files no record points
//! at (a catalog build replaced by a newer one, an import interrupted between its rename
//! and its record), kernel versions no kernel record uses, downloaded `.deb` files, and
//! build leftovers (staging directories and partial downloads whose owner is gone).
//! Anything another process holds a lock on is left alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::oci::blobs::BlobCache;
use crate::store::ImageStore;

/// What the records reference: kept by a prune.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    /// Image files named by image records.
    pub image_files: HashSet<PathBuf>,
    /// OCI layer digests named by image records.
    pub layers: HashSet<String>,
    /// Kernel directories (the parent of each recorded vmlinux).
    pub kernel_dirs: HashSet<PathBuf>,
}

/// One removed (or, in a dry run, removable) thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Bytes a file or directory tree really uses on disk.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let mut total = meta.blocks() * 512;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.filter_map(Result::ok) {
            total += disk_usage(&entry.path());
        }
    }
    total
}

/// Removes (unless `dry_run`) what `keep` does not name.
pub fn prune(
    cache_dir: &Path,
    stores: &[ImageStore],
    blobs: &BlobCache,
    keep: &Keep,
    dry_run: bool,
) -> Vec<Pruned> {
    let mut pruned: Vec<Pruned> = stores
        .iter()
        .flat_map(|store| store.clean_staging(dry_run))
        .map(|(path, bytes)| Pruned { path, bytes })
        .collect();
    let mut take = |path: PathBuf, remove: &dyn Fn(&Path) -> bool| {
        let bytes = disk_usage(&path);
        if dry_run || remove(&path) {
            pruned.push(Pruned { path, bytes });
        }
    };
    let remove_file = |path: &Path| std::fs::remove_file(path).is_ok();
    let remove_tree = |path: &Path| std::fs::remove_dir_all(path).is_ok();

    for store in stores {
        for file in store.image_files() {
            if !keep.image_files.contains(&file) {
                let store = store.clone();
                take(file, &move |path: &Path| {
                    store.remove_image_file(path).is_ok()
                });
            }
        }
    }

    // Layers no image names; partial downloads and unpacks nobody holds.
    for dir in [blobs.layers_dir(), blobs.dir()] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{}", name.split('.').next().unwrap_or_default());
            let in_flight = name.ends_with(".partial") || name.ends_with(".lock");
            if in_flight {
                if unlocked(&path) {
                    take(path, &remove_file);
                }
            } else if !keep.layers.contains(&digest) && unlocked(&path) {
                take(path, &remove_file);
            }
        }
    }

    // Kernel versions no record uses.
    if let Ok(names) = std::fs::read_dir(cache_dir.join("kernels")) {
        for name in names.filter_map(Result::ok) {
            let Ok(versions) = std::fs::read_dir(name.path()) else {
                continue;
            };
            for version in versions.filter_map(Result::ok) {
                let path = version.path();
                let staging = version
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".staging-");
                if staging || !keep.kernel_dirs.contains(&path) {
                    take(path, &remove_tree);
                }
            }
        }
    }

    // Downloaded packages: fetched again when a build needs them.
    if let Ok(debs) = std::fs::read_dir(cache_dir.join("debs")) {
        for deb in debs.filter_map(Result::ok) {
            let path = deb.path();
            if path.is_dir() {
                take(path, &remove_tree);
            } else {
                take(path, &remove_file);
            }
        }
    }
    pruned
}

/// True when no process holds a lock on `path` (a download or unpack in progress does).
fn unlocked(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(file) => file.try_lock().is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_records_name_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let store = ImageStore::new(cache.join("images"));
        let user = ImageStore::new(dir.path().join("state/images"));
        let blobs = BlobCache::new(&cache);
        for path in [
            cache.join("images/sha256-aa.ext4"),
            cache.join("images/sha256-bb.ext4"),
            dir.path().join("state/images/sha256-cc.ext4"),
            blobs.layers_dir().join("11.tar"),
            blobs.layers_dir().join("22.tar"),
            blobs.layers_dir().join("33.tar.partial"),
            blobs.dir().join("44.partial"),
            cache.join("kernels/k/6.1-a/vmlinux"),
            cache.join("kernels/k/6.1-b/vmlinux"),
            cache.join("debs/busybox_1.deb"),
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![1u8; 5000]).unwrap();
        }
        let keep = Keep {
            image_files: [cache.join("images/sha256-aa.ext4")].into_iter().collect(),
            layers: ["sha256:11".to_string()].into_iter().collect(),
            kernel_dirs: [cache.join("kernels/k/6.1-a")].into_iter().collect(),
        };
        let stores = [store, user];
        let dry = prune(&cache, &stores, &blobs, &keep, true);
        assert_eq!(dry.len(), 7, "{dry:?}");
        assert!(
            cache.join("images/sha256-bb.ext4").exists(),
            "a dry run removes nothing"
        );
        let removed = prune(&cache, &stores, &blobs, &keep, false);
        let mut names: Vec<String> = removed
            .iter()
            .map(|p| {
                p.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cache/debs/busybox_1.deb",
                "cache/images/sha256-bb.ext4",
                "cache/kernels/k/6.1-b",
                "cache/oci/blobs/sha256/44.partial",
                "cache/oci/layers/22.tar",
                "cache/oci/layers/33.tar.partial",
                "state/images/sha256-cc.ext4",
            ]
        );
        assert!(removed.iter().all(|p| p.bytes >= 4096));
        assert!(cache.join("images/sha256-aa.ext4").exists());
        assert!(blobs.layers_dir().join("11.tar").exists());
        assert!(cache.join("kernels/k/6.1-a/vmlinux").exists());
        assert!(prune(&cache, &stores, &blobs, &keep, false).is_empty());
    }

    #[test]
    fn a_locked_download_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobCache::new(dir.path());
        std::fs::create_dir_all(blobs.dir()).unwrap();
        let partial = blobs.dir().join("55.partial");
        std::fs::write(&partial, b"x").unwrap();
        let held = std::fs::File::open(&partial).unwrap();
        held.lock().unwrap();
        let removed = prune(dir.path(), &[], &blobs, &Keep::default(), false);
        assert!(removed.is_empty(), "{removed:?}");
        drop(held);
        assert_eq!(
            prune(dir.path(), &[], &blobs, &Keep::default(), false).len(),
            1
        );
    }
}
