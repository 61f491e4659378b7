//! Binding the daemon's Unix socket safely: a stale socket file left by a crashed daemon
//! is replaced, a live daemon is never displaced, anything that is not a socket is never
//! deleted, and the socket is readable by its owner only.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::layout::{LayoutError, ensure_private_dir};

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another bangerd is already running at {}", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot inspect {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove the stale socket {}", path.display())]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot restrict the permissions of {}", path.display())]
    Permissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dir(#[from] LayoutError),
}

/// Binds a listener at `path`, creating its parent directory (0700) if missing. `owner_uid`
/// is the uid a newly created or existing parent directory must belong to.
pub async fn bind(path: &Path, owner_uid: u32) -> Result<UnixListener, SocketError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        ensure_private_dir(parent, owner_uid)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Someone answers: that daemon keeps its socket. Otherwise it is a leftover
            // from a daemon that did not shut down cleanly.
            if UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::AlreadyRunning {
                    path: path.to_path_buf(),
                });
            }
            tracing::info!(socket = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path).map_err(|source| SocketError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SocketError::Inspect {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    // The parent directory is private already; this closes the gap for sockets placed
    // elsewhere with `--socket`.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        SocketError::Permissions {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[tokio::test]
    async fn fresh_bind_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/bangerd.sock");
        let _listener = bind(&path, uid()).await.unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.mode() & 0o777, 0o700);
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bangerd.sock");
        // A socket file nobody listens on: bound, then its listener dropped.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = bind(&path, uid()).await.unwrap();
        let err = bind(&path, uid()).await.unwrap_err();
        assert!(matches!(err, SocketError::AlreadyRunning { .. }), "{err}");
        assert!(err.to_string().contains("already running"));
        // The live daemon's socket is still there and still takes connections.
        UnixStream::connect(&path).await.unwrap();
        drop(live);
    }

    #[tokio::test]
    async fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bangerd.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&path, uid()).await.unwrap_err();
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
