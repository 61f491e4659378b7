//! Creating banger's directories on the host with private permissions. The runtime
//! directory gets the strictest treatment: its default, `/tmp/banger-<uid>`, lives in a
//! world-writable place where another user could have created it first.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot create directory {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot inspect directory {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} belongs to uid {owner}, not to this user (uid {expected}); refusing to use it", path.display())]
    ForeignOwner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    #[error("cannot set permissions on {}", path.display())]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `path` (and missing parents) with mode 0700 if it does not exist. An existing
/// directory is left as the user set it up.
pub fn create_private_dir(path: &Path) -> Result<(), LayoutError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| LayoutError::Create {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates `path` if missing, then insists that it is a directory owned by `owner_uid`
/// with mode 0700, tightening the mode if needed.
pub fn ensure_private_dir(path: &Path, owner_uid: u32) -> Result<(), LayoutError> {
    create_private_dir(path)?;
    let meta = std::fs::symlink_metadata(path).map_err(|source| LayoutError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(LayoutError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    if meta.uid() != owner_uid {
        return Err(LayoutError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            expected: owner_uid,
        });
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| LayoutError::Permissions {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn private_dir_is_created_and_tightened() {
        let root = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir, uid).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir, uid).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn foreign_owner_and_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let err = ensure_private_dir(root.path(), uid + 1).unwrap_err();
        assert!(matches!(err, LayoutError::ForeignOwner { .. }), "{err}");
        let file = root.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file, uid).is_err());
    }

    #[test]
    fn existing_dirs_keep_their_mode_with_create() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
    }
}
