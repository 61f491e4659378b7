//! One daemon per state directory, for its whole life: `<state>/bangerd.lock`, held with
//! `flock(LOCK_EX)` from before the socket is bound until the process exits (the kernel
//! drops the lock with the last descriptor, so a crashed daemon never leaves it held).
//! The file says who holds it and whether that daemon still serves or is draining its
//! last requests after SIGTERM:
//!
//! ```text
//! 4242 serving
//! ```
//!
//! A second daemon refuses at once, naming the first one's pid, while the first serves.
//! A daemon started while the previous one drains (a plain `kill PID; bangerd &`
//! restart) waits for it to exit, up to a bound, then takes over: two daemons never
//! share the database, reconcile against each other, or fight over the socket.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "bangerd.lock";

/// How long a starting daemon waits for a draining one: its grace period, plus the time
/// to remove its socket and exit.
pub const DRAIN_WAIT: Duration = Duration::from_secs(15);

/// What the holder wrote about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    Serving,
    Draining,
}

/// The holder's pid and state, from the lock file's text; `None` when the text is not
/// what a daemon writes (e.g. empty: the holder has just taken the lock). Pure.
pub fn parse_holder(text: &str) -> Option<(u32, HolderState)> {
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let state = match words.next()? {
        "serving" => HolderState::Serving,
        "draining" => HolderState::Draining,
        _ => return None,
    };
    words.next().is_none().then_some((pid, state))
}

/// Why this daemon may not run.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another bangerd{} is already using the state directory {}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.display()
    )]
    Held { pid: Option<u32>, dir: PathBuf },
    #[error(
        "the previous bangerd (pid {pid}) is still finishing its requests after {}s; \
         try again when it has exited",
        waited.as_secs()
    )]
    StillDraining { pid: u32, waited: Duration },
    #[error("cannot use the lock file {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    file: Flock<File>,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock of `state_dir`, waiting up to `drain_wait` for a draining holder.
    /// `on_wait` is called once, with the holder's pid, if this waits.
    pub fn acquire(
        state_dir: &Path,
        drain_wait: Duration,
        mut on_wait: impl FnMut(u32),
    ) -> Result<InstanceLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => {
                    let lock = InstanceLock { file: locked, path };
                    lock.write_state(HolderState::Serving)?;
                    return Ok(lock);
                }
                Err((returned, errno)) if errno == Errno::EWOULDBLOCK => {
                    file = returned;
                    let holder = read_text(&mut file).ok().and_then(|t| parse_holder(&t));
                    match holder {
                        Some((pid, HolderState::Draining)) => {
                            let waited = started.elapsed();
                            if waited >= drain_wait {
                                return Err(LockError::StillDraining { pid, waited });
                            }
                            if !announced {
                                on_wait(pid);
                                announced = true;
                            }
                        }
                        Some((pid, HolderState::Serving)) => {
                            return Err(LockError::Held {
                                pid: Some(pid),
                                dir: state_dir.to_path_buf(),
                            });
                        }
                        // Taken a moment ago and not written yet: look again shortly,
                        // but not for long.
                        None if started.elapsed() < Duration::from_secs(1) => {}
                        None => {
                            return Err(LockError::Held {
                                pid: None,
                                dir: state_dir.to_path_buf(),
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
            }
        }
    }

    /// Says in the lock file that this daemon stopped accepting and is finishing its
    /// requests, so a daemon starting now waits instead of refusing.
    pub fn mark_draining(&self) {
        if let Err(error) = self.write_state(HolderState::Draining) {
            tracing::warn!(error = %error, "cannot mark the lock file as draining");
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_state(&self, state: HolderState) -> Result<(), LockError> {
        let word = match state {
            HolderState::Serving => "serving",
            HolderState::Draining => "draining",
        };
        let text = format!("{} {word}\n", std::process::id());
        let mut file: &File = &self.file;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|source| LockError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

fn read_text(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.take(256).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_lines_parse() {
        let cases: &[(&str, Option<(u32, HolderState)>)] = &[
            ("4242 serving\n", Some((4242, HolderState::Serving))),
            ("7 draining", Some((7, HolderState::Draining))),
            ("", None),
            ("4242", None),
            ("4242 sleeping\n", None),
            ("pid serving", None),
            ("1 serving extra", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_holder(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_drains_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path(), DRAIN_WAIT, |_| {}).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{} serving\n", std::process::id()));

        // flock locks belong to the open file description: a second open in the same
        // process conflicts like another process would.
        let error = InstanceLock::acquire(dir.path(), DRAIN_WAIT, |_| {}).unwrap_err();
        assert!(
            matches!(error, LockError::Held { pid: Some(pid), .. } if pid == std::process::id()),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("(pid {})", std::process::id())),
            "{error}"
        );

        // Draining: a newcomer waits (here: gives up after a short bound)...
        first.mark_draining();
        let mut waited_for = None;
        let error = InstanceLock::acquire(dir.path(), Duration::from_millis(200), |pid| {
            waited_for = Some(pid)
        })
        .unwrap_err();
        assert!(
            matches!(error, LockError::StillDraining { .. }),
            "{error:?}"
        );
        assert_eq!(waited_for, Some(std::process::id()));

        // ...and takes over once the holder is gone.
        let (waiting, started_waiting) = std::sync::mpsc::channel();
        let state_dir = dir.path().to_path_buf();
        let newcomer = std::thread::spawn(move || {
            InstanceLock::acquire(&state_dir, DRAIN_WAIT, |pid| {
                let _ = waiting.send(pid);
            })
        });
        assert_eq!(started_waiting.recv().unwrap(), std::process::id());
        drop(first);
        let second = newcomer.join().unwrap().unwrap();
        let text = std::fs::read_to_string(second.path()).unwrap();
        assert!(text.ends_with(" serving\n"), "{text:?}");
    }
}
