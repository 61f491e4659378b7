//! The accept loop. The listener and the shutdown signal are passed in, so tests bind
//! their own socket in a temporary directory and stop the server when they are done.
//! At most `limits.max_connections` connections are served at once; one more waits up to
//! `limits.slot_wait` for a slot (at most as many wait), then is answered with an error
//! and closed.
//! On shutdown the server stops accepting, lets requests in flight finish within a grace
//! period, and removes its socket file, but only if the path still names the socket this
//! server bound: the same device and inode, and nobody answering on it (a file system
//! may give a new socket the inode number of a removed one). A socket another daemon
//! bound there meanwhile is never deleted from under it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection;
use crate::context::DaemonContext;

/// How long requests in flight may take to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    use nix::errno::Errno;
    error.raw_os_error().is_some_and(|code| {
        matches!(
            Errno::from_raw(code),
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
        )
    })
}

/// Serves `listener` until `shutdown` completes.
pub async fn run(
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
    ctx: Arc<DaemonContext>,
) -> anyhow::Result<()> {
    let socket_path: Option<PathBuf> = listener
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_pathname().map(PathBuf::from));
    let bound = socket_path.as_deref().and_then(file_identity);
    tracing::info!(
        socket = %socket_path.as_deref().unwrap_or(Path::new("(unnamed)")).display(),
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        "bangerd listening"
    );
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    let max_connections = ctx.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    // Connections past the cap that wait for a slot; as many as may be served.
    let waiting = Arc::new(Semaphore::new(max_connections));
    let slot_wait = ctx.limits.slot_wait;
    let mut next_conn: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_conn += 1;
                    let (ctx, token, conn) = (Arc::clone(&ctx), stop.child_token(), next_conn);
                    match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => {
                            connections.spawn(async move {
                                connection::serve(stream, ctx, token, conn).await;
                                drop(slot);
                            });
                        }
                        Err(_) => match Arc::clone(&waiting).try_acquire_owned() {
                            Ok(queued) => {
                                let slots = Arc::clone(&slots);
                                connections.spawn(async move {
                                    let slot =
                                        tokio::time::timeout(slot_wait, slots.acquire_owned()).await;
                                    drop(queued);
                                    if let Ok(Ok(slot)) = slot {
                                        connection::serve(stream, ctx, token, conn).await;
                                        drop(slot);
                                    } else {
                                        tracing::warn!(
                                            max_connections,
                                            "refusing a connection that waited for a slot"
                                        );
                                        connection::refuse_busy(stream, max_connections).await;
                                    }
                                });
                            }
                            Err(_) => {
                                tracing::warn!(max_connections, "refusing a connection past the limit");
                                connections.spawn(connection::refuse_busy(stream, max_connections));
                            }
                        },
                    }
                }
                Err(error) if is_resource_exhaustion(&error) => {
                    // Out of fds or memory: pause so the loop does not spin while
                    // connections in flight finish and free them.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    // A client that connected and left at once (e.g. a liveness probe).
                    tracing::debug!(%error, "accept failed");
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!(
        in_flight = connections.len(),
        "shutting down: no longer accepting connections"
    );
    drop(listener);
    // Connections between two requests close now; those mid-request finish it first.
    stop.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "requests still running after the grace period; abandoning them"
        );
        connections.shutdown().await;
    }
    if let Some(path) = socket_path {
        remove_own_socket(&path, bound).await;
    }
    tracing::info!("bangerd stopped");
    Ok(())
}

/// The (device, inode) a path names, without following a final symlink.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Removes `path` if it is still the socket this server bound (`bound`), whose listener
/// is closed by now; leaves it when it is gone or belongs to someone else now.
pub async fn remove_own_socket(path: &Path, bound: Option<(u64, u64)>) {
    let current = file_identity(path);
    if current.is_none() {
        return;
    }
    let answers = matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::UnixStream::connect(path)
        )
        .await,
        Ok(Ok(_))
    );
    if current != bound || answers {
        tracing::warn!(
            socket = %path.display(),
            "the socket path now names another daemon's socket; left in place"
        );
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%error, socket = %path.display(), "cannot remove the socket file");
        }
    }
}
