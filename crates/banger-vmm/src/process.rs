//! The VMM process, shared by both backends: spawning it in its own session with a clean
//! environment, reaping it from a detached task, waiting for its control socket with the
//! process's exit as the other way out, and the pid + start-time operations (alive,
//! signal, wait) that also work for a process reattached after a daemon restart.

use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::confine::Confinement;
use crate::error::VmmError;
use crate::handle::DriverKind;

/// How much of the VMM's stderr an error keeps.
const STDERR_TAIL_BYTES: u64 = 4096;

/// Pause between readiness attempts (socket connects). The socket appearing has no event
/// to wait on short of inotify; the process exiting does, and interrupts the pause.
const RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// How long a `wait_for_exit` call blocks before it is re-armed; only bounds one call.
const WAIT_SLICE: Duration = Duration::from_secs(3600);

/// After SIGKILL the kernel tears the process down promptly; this only bounds a wedged
/// teardown (a process stuck in uninterruptible I/O).
const KILL_GRACE: Duration = Duration::from_secs(10);

/// A VMM invocation.
#[derive(Debug)]
pub(crate) struct VmmCommand {
    pub driver: DriverKind,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub stdin: Stdio,
    pub stdout: File,
    pub stderr: File,
    /// What the process may reach (`crate::confine`), applied between fork and exec.
    pub confinement: Confinement,
}

/// A spawned VMM: its identity and a channel that turns `Some(status)` when it exits.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub pid: u32,
    pub start_time: u64,
    pub exit: watch::Receiver<Option<String>>,
}

/// Starts the VMM in a new session with a clean environment (`PATH` and `LANG` only,
/// as `banger_exec` gives every command), and hands the child to a detached task that
/// reaps it. There is no `kill_on_drop`: the VMM must outlive the request that launched
/// it, and, in its own session, the daemon itself.
pub(crate) fn spawn(command: VmmCommand) -> Result<Spawned, VmmError> {
    let command_line = banger_exec::Cmd::new(command.program.as_os_str())
        .args(command.args.iter())
        .display();
    let mut child_command = tokio::process::Command::new(&command.program);
    child_command
        .args(&command.args)
        .env_clear()
        .env("PATH", banger_exec::CLEAN_PATH)
        .env("LANG", "C.UTF-8")
        .current_dir(&command.cwd)
        .stdin(command.stdin)
        .stdout(command.stdout)
        .stderr(command.stderr);
    banger_sys::process::new_session(&mut child_command);
    let confinement = command.confinement.describe();
    let confined = matches!(command.confinement, Confinement::Landlock(_));
    if let Confinement::Landlock(ruleset) = command.confinement {
        banger_sys::landlock::confine(&mut child_command, ruleset);
    }
    let program = command.program.display().to_string();
    let mut child = child_command
        .spawn()
        .map_err(|source| VmmError::Spawn { program, source })?;
    // The command keeps the ruleset alive until here; the child applied it before exec.
    drop(child_command);
    if confined {
        tracing::info!(driver = %command.driver, command = %command_line, %confinement, "VMM started");
    } else {
        tracing::warn!(driver = %command.driver, command = %command_line, %confinement, "VMM started unconfined");
    }

    let (exit_sender, exit) = watch::channel(None);
    let pid = child.id();
    // An unreaped child keeps its /proc entry, so the start time is readable even if it
    // already exited; it is only missing if something else reaped it.
    let start_time = pid.and_then(banger_sys::process::process_start_time);
    let driver = command.driver;
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("cannot wait: {error}"),
        };
        tracing::info!(%driver, pid = ?pid, %status, "VMM exited");
        let _ = exit_sender.send(Some(status));
    });
    match (pid, start_time) {
        (Some(pid), Some(start_time)) => Ok(Spawned {
            pid,
            start_time,
            exit,
        }),
        _ => Err(VmmError::EarlyExit {
            driver,
            status: "gone before it could be identified".into(),
            stderr_tail: String::new(),
        }),
    }
}

/// Why [`until_ready`] gave up.
#[derive(Debug)]
pub(crate) enum NotReady<E> {
    /// The process exited first, with this status.
    Exited(String),
    /// The deadline passed; the last attempt's error, if any attempt finished.
    TimedOut(Option<E>),
}

/// Repeats `attempt` until it succeeds, the process exits, or `timeout` passes. Each
/// attempt is itself bounded by the time left.
pub(crate) async fn until_ready<T, E, F, Fut>(
    exit: &mut watch::Receiver<Option<String>>,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, NotReady<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        if let Some(status) = exit.borrow_and_update().clone() {
            return Err(NotReady::Exited(status));
        }
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => last_error = Some(error),
            Err(_elapsed) => {}
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(last_error));
        }
        tokio::select! {
            changed = exit.changed() => {
                if changed.is_err() {
                    // The reaper is gone without a status: treat as exited.
                    let status = exit.borrow().clone().unwrap_or_else(|| "exited".into());
                    return Err(NotReady::Exited(status));
                }
            }
            () = tokio::time::sleep(RETRY_INTERVAL) => {}
        }
    }
}

/// The last few KiB of a log file, lossily decoded; empty if it cannot be read.
pub(crate) fn file_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(STDERR_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

/// True while the process started at `start_time` still runs as `pid` (not a zombie).
pub(crate) fn is_alive(pid: u32, start_time: u64) -> bool {
    banger_sys::process::is_same_process_alive(pid, start_time)
}

/// Resolves when the process identified by `pid` + `start_time` is gone. Uses a pidfd,
/// so it works for a process this daemon did not spawn.
pub(crate) async fn wait_exit(pid: u32, start_time: u64) {
    // Opening the pidfd first pins the process; checking its identity afterwards makes
    // sure the pin is on our process and not on one that recycled the pid.
    let Ok(pidfd) = banger_sys::process::pidfd_open(pid) else {
        return;
    };
    if !is_alive(pid, start_time) {
        return;
    }
    loop {
        match banger_sys::process::wait_for_exit(&pidfd, WAIT_SLICE).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(pid, %error, "cannot wait on the pidfd; polling instead");
                while is_alive(pid, start_time) {
                    tokio::time::sleep(RETRY_INTERVAL * 5).await;
                }
                return;
            }
        }
    }
}

/// [`wait_exit`] bounded by `timeout`; true when the process is gone.
pub(crate) async fn wait_exit_timeout(pid: u32, start_time: u64, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, wait_exit(pid, start_time))
        .await
        .is_ok()
}

/// Sends `signal` through a pidfd, so a recycled pid is never signalled. A process that
/// is already gone is not an error.
pub(crate) fn signal(pid: u32, start_time: u64, signal: i32) -> Result<(), VmmError> {
    let pidfd = match banger_sys::process::pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(source) => {
            return Err(VmmError::Signal {
                pid,
                signal,
                source,
            });
        }
    };
    if !is_alive(pid, start_time) {
        return Ok(());
    }
    match banger_sys::process::pidfd_send_signal(&pidfd, signal) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(source) => Err(VmmError::Signal {
            pid,
            signal,
            source,
        }),
    }
}

/// SIGKILL, then wait until the process is gone.
pub(crate) async fn kill_and_wait(pid: u32, start_time: u64) -> Result<(), VmmError> {
    signal(pid, start_time, libc::SIGKILL)?;
    if !wait_exit_timeout(pid, start_time, KILL_GRACE).await {
        tracing::warn!(
            pid,
            "VMM still present {}s after SIGKILL",
            KILL_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Creates `dir` (and parents) and removes files a previous run left there, so a stale
/// socket is never mistaken for a ready one.
pub(crate) fn prepare_run_dir(dir: &Path, stale: &[&Path]) -> Result<(), VmmError> {
    std::fs::create_dir_all(dir).map_err(|source| VmmError::Prepare {
        path: dir.to_path_buf(),
        source,
    })?;
    for path in stale {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(VmmError::Prepare {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Creates (truncating) a file the VMM writes to.
pub(crate) fn create_log(path: &Path) -> Result<File, VmmError> {
    File::create(path).map_err(|source| VmmError::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

/// A second handle on the same open file (stdout and stderr into one log).
pub(crate) fn clone_file(file: &File, path: &Path) -> Result<File, VmmError> {
    file.try_clone().map_err(|source| VmmError::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text = "x".repeat(10_000);
        text.push_str("the reason\n");
        std::fs::write(&path, &text).unwrap();
        let tail = file_tail(&path);
        assert_eq!(tail.len(), STDERR_TAIL_BYTES as usize);
        assert!(tail.ends_with("the reason\n"));
        assert_eq!(file_tail(&dir.path().join("missing")), "");
    }

    fn sh(script: &str, dir: &Path) -> VmmCommand {
        let log = dir.join("stderr");
        let file = create_log(&log).unwrap();
        VmmCommand {
            driver: DriverKind::Qemu,
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            stdin: Stdio::null(),
            stdout: clone_file(&file, &log).unwrap(),
            stderr: file,
            confinement: Confinement::Unavailable,
        }
    }

    #[tokio::test]
    async fn until_ready_reports_an_early_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut spawned = spawn(sh("echo boom >&2; exit 3", dir.path())).unwrap();
        let result: Result<(), NotReady<&str>> =
            until_ready(&mut spawned.exit, Duration::from_secs(30), || async {
                Err("not yet")
            })
            .await;
        match result {
            Err(NotReady::Exited(status)) => assert!(status.contains('3'), "{status}"),
            other => panic!("expected an exit, got {other:?}"),
        }
        assert_eq!(file_tail(&dir.path().join("stderr")), "boom\n");
        assert!(!is_alive(spawned.pid, spawned.start_time));
    }

    #[tokio::test]
    async fn signal_wait_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        // `exec` so the pid is the sleep itself; it only ends when signalled.
        let spawned = spawn(sh("exec sleep 600", dir.path())).unwrap();
        assert!(is_alive(spawned.pid, spawned.start_time));
        // Another start time is another process: never signalled, never waited on.
        assert!(!is_alive(spawned.pid, spawned.start_time + 1));
        signal(spawned.pid, spawned.start_time + 1, libc::SIGKILL).unwrap();
        assert!(is_alive(spawned.pid, spawned.start_time));
        assert!(
            !wait_exit_timeout(spawned.pid, spawned.start_time, Duration::from_millis(50)).await
        );

        signal(spawned.pid, spawned.start_time, libc::SIGTERM).unwrap();
        assert!(wait_exit_timeout(spawned.pid, spawned.start_time, Duration::from_secs(30)).await);
        assert!(!is_alive(spawned.pid, spawned.start_time));
        // Signalling a process that is gone is fine.
        signal(spawned.pid, spawned.start_time, libc::SIGKILL).unwrap();
    }
}
