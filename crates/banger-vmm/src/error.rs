//! [`VmmError`]: everything a driver operation can fail with. Launch failures carry the
//! tail of the VMM's own stderr, because that is where QEMU and Firecracker say why.

use std::path::PathBuf;
use std::time::Duration;

use crate::firecracker::ApiError;
use crate::handle::DriverKind;
use crate::qemu::QmpError;

/// Why a driver operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("cannot prepare {}", .path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{driver} exited during launch ({status}){}", tail_suffix(.stderr_tail))]
    EarlyExit {
        driver: DriverKind,
        status: String,
        stderr_tail: String,
    },
    #[error("{what} not ready after {}s{}", .waited.as_secs_f32(), tail_suffix(.stderr_tail))]
    Timeout {
        what: String,
        waited: Duration,
        stderr_tail: String,
    },
    #[error("QMP `{command}` failed")]
    Qmp {
        command: String,
        #[source]
        source: QmpError,
    },
    #[error("Firecracker API `{request}` failed")]
    Api {
        request: String,
        #[source]
        source: ApiError,
    },
    #[error("cannot send signal {signal} to process {pid}")]
    Signal {
        pid: u32,
        signal: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot restore the saved guest{}", tail_suffix(.stderr_tail))]
    Restore {
        #[source]
        source: Box<VmmError>,
        stderr_tail: String,
    },
    #[error("cannot confine the VMM{}", .path.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default())]
    Confine {
        path: Option<PathBuf>,
        #[source]
        source: banger_sys::landlock::LandlockError,
    },
    #[error("{driver} cannot {what}")]
    Unsupported { driver: DriverKind, what: String },
    #[error("the handle belongs to the {found} driver, not {expected}")]
    WrongDriver {
        expected: DriverKind,
        found: DriverKind,
    },
}

/// `": <tail>"` on its own lines when the VMM said something, nothing otherwise.
fn tail_suffix(tail: &str) -> String {
    let trimmed = tail.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(":\n{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_exit_message_carries_the_stderr_tail() {
        let cases = [
            (
                "qemu-system-x86_64: -drive file=/nope: Could not open '/nope'\n",
                "qemu exited during launch (exit status: 1):\nqemu-system-x86_64: -drive file=/nope: Could not open '/nope'",
            ),
            ("  \n", "qemu exited during launch (exit status: 1)"),
        ];
        for (tail, expected) in cases {
            let error = VmmError::EarlyExit {
                driver: DriverKind::Qemu,
                status: "exit status: 1".into(),
                stderr_tail: tail.into(),
            };
            assert_eq!(error.to_string(), expected);
        }
    }
}
