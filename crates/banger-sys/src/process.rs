//! process: the VMM process as the daemon sees it, including after a daemon restart.
//!
//! A VMM is started in its own session ([`new_session`]) so it outlives the daemon. It is
//! then known by pid plus kernel start time ([`process_start_time`]), an identity a
//! recycled pid cannot fake ([`is_same_process_alive`]). A reattached VMM is not our
//! child, so `waitpid` cannot see it exit; a pidfd can ([`pidfd_open`],
//! [`wait_for_exit`]). Resource figures come from `/proc`, parsed by pure functions.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Makes the child call `setsid()` before exec, so it leads a new session and process
/// group: a terminal hangup or a signal to the daemon's group does not reach it, and it
/// survives the daemon.
pub fn new_session(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It calls setsid(2) (async-signal-safe per POSIX)
    // and on failure builds an io::Error from the raw errno, which does not allocate; it
    // takes no locks and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(|errno| io::Error::from_raw_os_error(errno as i32))
        });
    }
}

/// The fields of `/proc/<pid>/stat` banger uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 14, clock ticks in user mode.
    pub utime_ticks: u64,
    /// Field 15, clock ticks in kernel mode.
    pub stime_ticks: u64,
    /// Field 22, clock ticks after boot when the process started.
    pub start_time_ticks: u64,
}

impl ProcStat {
    /// A zombie or dead process has exited, whatever its `/proc` entry says.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// hold spaces and `)`, so the fields are counted from the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // After the name: index 0 is field 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3).copied();
    let mut state_chars = field(3)?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(ProcStat {
        state,
        utime_ticks: field(14)?.parse().ok()?,
        stime_ticks: field(15)?.parse().ok()?,
        start_time_ticks: field(22)?.parse().ok()?,
    })
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes. Kernel threads and zombies have none.
pub fn parse_status_rss_bytes(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim();
    let kib: u64 = value.strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// CPU time (user + system) in milliseconds from a stat record and the clock tick rate.
pub fn cpu_time_ms(stat: &ProcStat, ticks_per_second: u64) -> Option<u64> {
    if ticks_per_second == 0 {
        return None;
    }
    let ticks = stat.utime_ticks.checked_add(stat.stime_ticks)?;
    u64::try_from(u128::from(ticks) * 1000 / u128::from(ticks_per_second)).ok()
}

fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// The kernel's start time of `pid` (clock ticks after boot), `None` if there is no
/// such process. Together with the pid it identifies one process for its whole life.
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_proc_stat(pid).map(|stat| stat.start_time_ticks)
}

/// True when `pid` is running and is the process that started at `start_time` (a
/// recycled pid has another start time). A zombie counts as gone.
pub fn is_same_process_alive(pid: u32, start_time: u64) -> bool {
    read_proc_stat(pid)
        .is_some_and(|stat| stat.start_time_ticks == start_time && !stat.has_exited())
}

/// Resident memory of `pid` in bytes.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss_bytes(&text)
}

/// CPU time (user + system) `pid` has used, in milliseconds.
pub fn process_cpu_time_ms(pid: u32) -> Option<u64> {
    let stat = read_proc_stat(pid)?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())?;
    cpu_time_ms(&stat, ticks)
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// A pid as the kernel's signed type. 0 and negative values mean process groups to
/// `kill(2)`, so they are refused rather than passed through.
fn checked_pid(pid: u32) -> io::Result<i32> {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => Ok(raw),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{pid} is not a process id"),
        )),
    }
}

/// 0 checks that the process exists without signalling it, as with `kill(2)`.
fn checked_signal(signal: i32) -> io::Result<Option<Signal>> {
    if signal == 0 {
        return Ok(None);
    }
    Signal::try_from(signal).map(Some).map_err(io::Error::from)
}

/// Sends `signal` (a `libc::SIG*` number; 0 only checks existence) to `pid`.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = Pid::from_raw(checked_pid(pid)?);
    nix::sys::signal::kill(pid, checked_signal(signal)?).map_err(io::Error::from)
}

/// Opens a pidfd for `pid` (close-on-exec). It refers to that one process even if the
/// pid is later recycled, so check [`is_same_process_alive`] right after opening.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = checked_pid(pid)?;
    let flags: libc::c_uint = 0;
    // SAFETY: pidfd_open(2) takes a pid and flags by value and no pointers. On success it
    // returns a new file descriptor nobody else owns, so handing it to OwnedFd is sound.
    let result = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = libc::c_int::try_from(result)
        .map_err(|_| io::Error::other(format!("pidfd_open returned {result}")))?;
    // SAFETY: `raw` is the fresh descriptor pidfd_open returned; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `signal` through a pidfd, which cannot hit a process that reused the pid.
pub fn pidfd_send_signal(pidfd: impl AsFd, signal: i32) -> io::Result<()> {
    let signal = checked_signal(signal)?.map_or(0, |signal| signal as libc::c_int);
    let null_info: *const libc::siginfo_t = std::ptr::null();
    let flags: libc::c_uint = 0;
    // SAFETY: pidfd_send_signal(2) with a NULL siginfo behaves like kill(2) and reads no
    // memory; the fd is borrowed for the duration of the call and the other arguments are
    // plain integers.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            signal,
            null_info,
            flags,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the process behind `pidfd` exits, for at most `timeout`. Returns `true`
/// when it exited, `false` on timeout. Works for processes that are not our children
/// (a VMM reattached after a daemon restart); it does not reap a child of ours. Needs a
/// tokio runtime with I/O enabled; may be called again after a timeout.
pub async fn wait_for_exit(pidfd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    // A duplicate gets its own epoll registration, so concurrent waits on one pidfd do
    // not collide and the caller keeps its descriptor.
    let owned = pidfd.as_fd().try_clone_to_owned()?;
    // SAFETY: the AsyncFd owns `owned` outright and only ever hands out shared references
    // to it, so the descriptor stays open and unchanged until the AsyncFd is dropped.
    let async_fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }?;
    let wait = async {
        loop {
            let mut guard = async_fd.readable().await?;
            if exited_now(guard.get_inner())? {
                return Ok::<(), io::Error>(());
            }
            guard.clear_ready();
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result.map(|()| true),
        Err(_elapsed) => Ok(false),
    }
}

/// A pidfd polls readable once its process has exited; checked directly so a spurious
/// wake-up is never taken for an exit.
fn exited_now(pidfd: &OwnedFd) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::ZERO).map_err(io::Error::from)?;
    Ok(ready > 0
        && fds[0]
            .revents()
            .is_some_and(|events| events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const SLEEP_STAT: &str = "15910 (sleep) S 15908 15908 11157 0 -1 4194304 100 0 0 0 \
        7 3 0 0 20 0 1 0 471224 3133440 384 18446744073709551615 94470520791040 0 0 0 0";

    #[test]
    fn proc_stat_table() {
        let stat = |state, utime_ticks, stime_ticks, start_time_ticks| ProcStat {
            state,
            utime_ticks,
            stime_ticks,
            start_time_ticks,
        };
        let cases: &[(&str, Option<ProcStat>)] = &[
            (SLEEP_STAT, Some(stat('S', 7, 3, 471224))),
            // A name with spaces and ")" in it (any bytes are allowed in comm).
            (
                "42 (qemu) (x) R 1 42 42 0 -1 0 0 0 0 0 120 30 0 0 20 0 3 0 99 0 0 0",
                Some(stat('R', 120, 30, 99)),
            ),
            (
                "7 ( a b ) ) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
                Some(stat('Z', 0, 0, 5)),
            ),
            // Kernel thread.
            (
                "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 13 0 0",
                Some(stat('S', 0, 0, 13)),
            ),
            // Truncated before field 22.
            (
                "42 (qemu) R 1 42 42 0 -1 0 0 0 0 0 120 30 0 0 20 0 3 0",
                None,
            ),
            // Not a number where the start time goes.
            (
                "42 (qemu) R 1 42 42 0 -1 0 0 0 0 0 1 2 0 0 20 0 3 0 x 0",
                None,
            ),
            ("42 qemu R 1", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_proc_stat(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn status_rss_table() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "Name:\tqemu\nVmPeak:\t 9000 kB\nVmRSS:\t    1936 kB\n",
                Some(1936 * 1024),
            ),
            ("VmRSS:\t0 kB\n", Some(0)),
            // Kernel threads have no VmRSS line.
            ("Name:\tkthreadd\nState:\tS (sleeping)\n", None),
            ("VmRSS:\t12 MB\n", None),
            ("VmRSS:\tlots kB\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_status_rss_bytes(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn cpu_time_table() {
        let stat = |utime_ticks, stime_ticks| ProcStat {
            state: 'S',
            utime_ticks,
            stime_ticks,
            start_time_ticks: 0,
        };
        let cases: &[(ProcStat, u64, Option<u64>)] = &[
            (stat(7, 3), 100, Some(100)),
            (stat(1, 0), 100, Some(10)),
            (stat(250, 250), 250, Some(2000)),
            (stat(1, 1), 0, None),
            (stat(u64::MAX, 1), 100, None),
        ];
        for (stat, ticks, expected) in cases {
            assert_eq!(cpu_time_ms(stat, *ticks), *expected, "{stat:?} at {ticks}");
        }
    }

    #[test]
    fn bad_pids_and_signals_are_refused() {
        for pid in [0, u32::MAX, i32::MAX as u32 + 1] {
            let error = send_signal(pid, 0).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{pid}");
            assert_eq!(
                pidfd_open(pid).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        assert!(send_signal(std::process::id(), 12345).is_err());
        // Existence check on ourselves.
        send_signal(std::process::id(), 0).unwrap();
        // No process has the largest pid (pid_max is at most 2^22).
        let error = pidfd_open(i32::MAX as u32).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
        assert!(process_start_time(i32::MAX as u32).is_none());
    }

    #[test]
    fn current_process_figures() {
        let me = std::process::id();
        let start = process_start_time(me).unwrap();
        assert!(is_same_process_alive(me, start));
        assert!(!is_same_process_alive(me, start + 1));
        assert!(process_rss_bytes(me).unwrap() > 1024 * 1024);
        assert!(process_cpu_time_ms(me).is_some());
        assert_eq!(current_uid(), nix::unistd::getuid().as_raw());
    }

    fn spawn_sleep() -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("30").kill_on_drop(true);
        new_session(&mut cmd);
        cmd.spawn().unwrap()
    }

    #[tokio::test]
    async fn child_in_own_session_identity_and_pidfd_wait() {
        let mut child = spawn_sleep();
        let pid = child.id().unwrap();
        let raw = Pid::from_raw(pid as i32);
        // new_session ran setsid(): the child leads its own session and group.
        assert_eq!(nix::unistd::getsid(Some(raw)).unwrap(), raw);
        assert_ne!(nix::unistd::getsid(None).unwrap(), raw);
        assert_eq!(nix::unistd::getpgid(Some(raw)).unwrap(), raw);

        let start = process_start_time(pid).unwrap();
        assert!(is_same_process_alive(pid, start));
        assert!(!is_same_process_alive(pid, start.wrapping_add(1)));

        let pidfd = pidfd_open(pid).unwrap();
        // Still running: the wait ends at its deadline.
        assert!(
            !wait_for_exit(&pidfd, Duration::from_millis(50))
                .await
                .unwrap()
        );

        send_signal(pid, libc::SIGKILL).unwrap();
        assert!(
            wait_for_exit(&pidfd, Duration::from_secs(10))
                .await
                .unwrap()
        );
        // Exited but not reaped yet: a zombie is not alive.
        assert!(!is_same_process_alive(pid, start));
        let status = child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!is_same_process_alive(pid, start));
    }

    /// The reattach case: the process is a grandchild whose parent has exited, so
    /// `waitpid` cannot see it; the pidfd still reports its exit.
    #[tokio::test]
    async fn waits_for_a_process_that_is_not_our_child() {
        let mut shell = tokio::process::Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 </dev/null & echo $!"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        assert!(shell.wait().await.unwrap().success());
        let pid: u32 = line.trim().parse().unwrap();
        let start = process_start_time(pid).unwrap();
        let pidfd = pidfd_open(pid).unwrap();
        assert!(is_same_process_alive(pid, start));

        // Signal through the pidfd: it cannot reach a recycled pid.
        pidfd_send_signal(&pidfd, libc::SIGTERM).unwrap();
        assert!(
            wait_for_exit(&pidfd, Duration::from_secs(10))
                .await
                .unwrap()
        );
        assert!(!is_same_process_alive(pid, start));
        // Waiting again on an exited process returns at once.
        assert!(wait_for_exit(pidfd, Duration::from_secs(10)).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_waits_on_one_pidfd() {
        let mut child = spawn_sleep();
        let pid = child.id().unwrap();
        let pidfd = pidfd_open(pid).unwrap();
        let first = wait_for_exit(&pidfd, Duration::from_secs(10));
        let second = wait_for_exit(&pidfd, Duration::from_secs(10));
        send_signal(pid, libc::SIGKILL).unwrap();
        let (first, second) = tokio::join!(first, second);
        assert!(first.unwrap() && second.unwrap());
        child.wait().await.unwrap();
    }
}
