//! helper: whether the root helper (which creates taps, bridges and NAT rules for the
//! daemon) is there. Reachable means its socket accepts a connection; nothing is sent.

use std::path::Path;
use std::time::Duration;

use crate::Check;

const NAME: &str = "helper";
/// A local socket accepts at once or not at all; the limit only guards a wedged helper.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What trying the helper's socket gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperProbe {
    /// No socket configured, or no file at its path.
    NotInstalled,
    /// The socket exists but the connection failed (the error as text).
    Refused(String),
    Reachable,
}

/// The helper check: connects to `socket` if it exists.
pub async fn check_helper(socket: Option<&Path>) -> Check {
    let probe = match socket {
        Some(path) if path.exists() => {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path)).await
            {
                Ok(Ok(_stream)) => HelperProbe::Reachable,
                Ok(Err(error)) => HelperProbe::Refused(error.to_string()),
                Err(_elapsed) => {
                    HelperProbe::Refused(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))
                }
            }
        }
        _ => HelperProbe::NotInstalled,
    };
    judge_helper(socket, &probe)
}

/// The helper check for a probe; pure.
pub fn judge_helper(socket: Option<&Path>, probe: &HelperProbe) -> Check {
    let where_ = socket.map_or_else(String::new, |path| format!(" at {}", path.display()));
    match probe {
        HelperProbe::Reachable => Check::pass(NAME, format!("banger-helper answers{where_}")),
        HelperProbe::NotInstalled => Check::warn(
            NAME,
            "banger-helper is not installed yet; networking features need it",
            format!("install banger-helper and run it as root so its socket appears{where_}"),
        ),
        HelperProbe::Refused(error) => Check::warn(
            NAME,
            format!("banger-helper's socket exists{where_} but refuses connections ({error})"),
            "start banger-helper as root (it replaces a socket a dead helper left), e.g. by rerunning ./scripts/quickstart.sh",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[tokio::test]
    async fn helper_socket_states() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("helper.sock");

        let none = check_helper(None).await;
        assert_eq!(none.status, Status::Warn);
        assert!(none.detail.contains("not installed yet"), "{none:?}");

        let absent = check_helper(Some(&socket)).await;
        assert_eq!(absent.status, Status::Warn);
        assert!(absent.detail.contains("not installed yet"), "{absent:?}");

        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let reachable = check_helper(Some(&socket)).await;
        assert_eq!(reachable.status, Status::Pass, "{reachable:?}");
        assert!(reachable.hint.is_none());

        // The listener is gone but its socket file stays: a stale socket.
        drop(listener);
        let stale = check_helper(Some(&socket)).await;
        assert_eq!(stale.status, Status::Warn, "{stale:?}");
        assert!(stale.detail.contains("refuses"), "{stale:?}");

        // A plain file at the path is not a socket either.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(check_helper(Some(&plain)).await.status, Status::Warn);
    }
}
