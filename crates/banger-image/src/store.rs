//! The published images: content-addressed ext4 files that are never modified after
//! publishing. `<dir>/sha256-<hex>.ext4` (mode 0444) holds the bytes;
//! `<dir>/keys/<key>.json` is the manifest that finds the file again from the recipe
//! key, so a second pull with the same inputs returns at once. Builds happen in a
//! staging directory inside `<dir>` and land by rename (same filesystem, atomic).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::GuestInit;
use crate::error::ImageError;

const STAGING_PREFIX: &str = ".staging-";
const STAGING_LOCK: &str = ".lock";

/// A staging directory of a store; see [`ImageStore::staging`].
#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// True when nobody holds the staging directory at `path`.
fn staging_abandoned(path: &Path) -> bool {
    match std::fs::File::open(path.join(STAGING_LOCK)) {
        Ok(lock) => lock.try_lock().is_ok(),
        Err(_) => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60)),
    }
}

/// What is known about a published image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Catalog name it was built for.
    pub name: String,
    /// The recipe key (hex sha256 of the recipe's inputs).
    pub key: String,
    /// `sha256:<hex>` of the ext4 file.
    pub digest: String,
    /// File name inside the store directory.
    pub file: String,
    pub size_bytes: u64,
    pub kernel: String,
    pub init: GuestInit,
    /// Resolved inputs (e.g. `name=version` of each package), for `image show`.
    pub inputs: Vec<String>,
    pub created_unix: u64,
}

/// What a new image is published with (the store fills in digest, file and size).
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub name: String,
    pub key: String,
    pub kernel: String,
    pub init: GuestInit,
    pub inputs: Vec<String>,
}

/// The image directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn new(dir: PathBuf) -> ImageStore {
        ImageStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, manifest: &ImageManifest) -> PathBuf {
        self.dir.join(&manifest.file)
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{key}.json"))
    }

    /// The manifest published under `key`, when its image file is still there.
    pub fn find(&self, key: &str) -> Result<Option<ImageManifest>, ImageError> {
        let path = self.key_path(key);
        let text = match fs_err::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let manifest: ImageManifest =
            serde_json::from_str(&text).map_err(|source| ImageError::Manifest { path, source })?;
        let present = fs_err::metadata(self.path_of(&manifest))
            .is_ok_and(|meta| meta.is_file() && meta.len() == manifest.size_bytes);
        Ok(present.then_some(manifest))
    }

    /// A fresh staging directory inside the store, removed when dropped. It holds a
    /// locked `.lock` file for as long as it lives, so [`ImageStore::clean_staging`]
    /// (at daemon start, or from another daemon sharing the cache) can tell a staging
    /// directory whose owner died (a kill -9 mid-build) from one in use.
    pub fn staging(&self) -> Result<Staging, ImageError> {
        fs_err::create_dir_all(&self.dir)?;
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(ImageError::io(format!(
                "cannot create a staging directory in {}",
                self.dir.display()
            )))?;
        let lock = fs_err::File::create(dir.path().join(STAGING_LOCK))?
            .into_parts()
            .0;
        lock.lock()
            .map_err(ImageError::io("cannot lock a staging directory"))?;
        Ok(Staging { dir, _lock: lock })
    }

    /// Removes staging directories nobody holds (their builder died); returns them with
    /// the bytes they used. One without a lock file is left alone while younger than a
    /// minute (it may be between its creation and its lock).
    pub fn clean_staging(&self, dry_run: bool) -> Vec<(PathBuf, u64)> {
        let mut removed = Vec::new();
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return removed;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(STAGING_PREFIX) {
                continue;
            }
            let path = entry.path();
            if !staging_abandoned(&path) {
                continue;
            }
            let bytes = crate::prune::disk_usage(&path);
            if dry_run || fs_err::remove_dir_all(&path).is_ok() {
                removed.push((path, bytes));
            }
        }
        removed
    }

    /// Every published image file of the store (`sha256-*.ext4`).
    pub fn image_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sha256-") && n.ends_with(".ext4"))
            })
            .collect();
        files.sort();
        files
    }

    /// Removes `file` (a published image) and the manifests that point at it.
    pub fn remove_image_file(&self, file: &Path) -> Result<(), ImageError> {
        if let Ok(entries) = fs_err::read_dir(self.dir.join("keys")) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let points_here = fs_err::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<ImageManifest>(&text).ok())
                    .is_some_and(|m| self.path_of(&m) == file);
                if points_here {
                    let _ = fs_err::remove_file(&path);
                }
            }
        }
        match fs_err::remove_file(file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Hashes `staged` (a file inside a staging directory), makes it read-only, moves it
    /// to its content address and records the manifest under the key. Blocking: reads
    /// the whole file.
    pub fn publish(
        &self,
        staged: &Path,
        request: PublishRequest,
    ) -> Result<ImageManifest, ImageError> {
        let hex = sha256_file(staged)?;
        let size_bytes = fs_err::metadata(staged)?.len();
        let file = format!("sha256-{hex}.ext4");
        let target = self.dir.join(&file);
        fs_err::set_permissions(staged, std::fs::Permissions::from_mode(0o444))?;
        if fs_err::metadata(&target).is_ok_and(|meta| meta.len() == size_bytes) {
            // The same bytes were published before (another key, or a parallel build).
            fs_err::remove_file(staged)?;
        } else {
            fs_err::rename(staged, &target)?;
        }
        let manifest = ImageManifest {
            name: request.name,
            key: request.key,
            digest: format!("sha256:{hex}"),
            file,
            size_bytes,
            kernel: request.kernel,
            init: request.init,
            inputs: request.inputs,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        };
        let keys = self.dir.join("keys");
        fs_err::create_dir_all(&keys)?;
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        let tmp = tempfile::NamedTempFile::new_in(&keys).map_err(ImageError::io(format!(
            "cannot write a manifest in {}",
            keys.display()
        )))?;
        fs_err::write(tmp.path(), json)?;
        tmp.persist(self.key_path(&manifest.key))
            .map_err(|e| ImageError::io("cannot publish the image manifest")(e.error))?;
        Ok(manifest)
    }
}

/// Lower-case hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The key of a recipe: sha256 over its name, a version constant and its inputs, each
/// on its own line so no two different input lists hash alike.
pub fn recipe_key(recipe: &str, version: u32, inputs: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{recipe}\n{version}\n{}\n", inputs.len()).as_bytes());
    for input in inputs {
        hasher.update(input.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str) -> PublishRequest {
        PublishRequest {
            name: "tiny".into(),
            key: key.into(),
            kernel: "k".into(),
            init: GuestInit::Busybox,
            inputs: vec!["a=1".into()],
        }
    }

    #[test]
    fn publish_then_find() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("images"));
        assert_eq!(store.find("k1").unwrap(), None);
        let staging = store.staging().unwrap();
        let staged = staging.path().join("image.ext4");
        fs_err::write(&staged, b"abc").unwrap();
        let manifest = store.publish(&staged, request("k1")).unwrap();
        assert_eq!(
            manifest.digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            manifest.file,
            "sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.ext4"
        );
        let path = store.path_of(&manifest);
        assert_eq!(fs_err::read(&path).unwrap(), b"abc");
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        assert_eq!(store.find("k1").unwrap(), Some(manifest.clone()));

        // Same bytes under another key: one file, two manifests.
        let staged = staging.path().join("again.ext4");
        fs_err::write(&staged, b"abc").unwrap();
        let second = store.publish(&staged, request("k2")).unwrap();
        assert_eq!(second.file, manifest.file);
        assert!(!staged.exists());

        // A manifest whose file is gone is not a hit.
        fs_err::remove_file(&path).unwrap();
        assert_eq!(store.find("k1").unwrap(), None);
    }

    #[test]
    fn abandoned_staging_is_cleaned_and_live_staging_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("images"));
        let live = store.staging().unwrap();
        fs_err::write(live.path().join("work"), b"in progress").unwrap();
        // A staging directory whose builder died: its lock file is there, unlocked.
        let dead = dir.path().join("images/.staging-dead");
        fs_err::create_dir_all(&dead).unwrap();
        fs_err::write(dead.join(".lock"), b"").unwrap();
        fs_err::write(dead.join("image.ext4"), vec![1u8; 8192]).unwrap();
        let dry = store.clean_staging(true);
        assert_eq!(dry.len(), 1);
        assert!(dead.exists());
        let removed = store.clean_staging(false);
        assert_eq!(
            removed.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            vec![dead.clone()]
        );
        assert!(removed[0].1 >= 8192);
        assert!(!dead.exists());
        assert!(live.path().join("work").exists());
        drop(live);
    }

    #[test]
    fn keys_depend_on_every_input() {
        let base = recipe_key("tiny", 1, &["a=1".into(), "b=2".into()]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, recipe_key("tiny", 1, &["a=1".into(), "b=2".into()]));
        let others = [
            recipe_key("tiny", 2, &["a=1".into(), "b=2".into()]),
            recipe_key("debian", 1, &["a=1".into(), "b=2".into()]),
            recipe_key("tiny", 1, &["a=1".into(), "b=3".into()]),
            recipe_key("tiny", 1, &["a=1\nb=2".into()]),
            recipe_key("tiny", 1, &["a=1".into()]),
        ];
        for other in others {
            assert_ne!(other, base);
        }
    }
}
