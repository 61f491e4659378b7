//! Waiting on real conditions: a poll of something observable (a VM's state, a process)
//! bounded by a deadline. Tests never sleep for a fixed time; they use this instead.

use std::time::{Duration, Instant};

/// How often a condition is re-checked; short against boot times, long enough not to
/// hammer the daemon.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, and returns that value; panics with `what` and
/// the last observation when `timeout` passes first.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!(
                    "timed out after {}s waiting until {what}; last observation: {last}",
                    timeout.as_secs()
                )
            }
            Err(_) => std::thread::park_timeout(POLL_INTERVAL),
        }
    }
}

/// True while process `pid` exists and is not a zombie (a VMM that exited but was not
/// reaped yet counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the command name, which is in parentheses and may itself
    // contain spaces or parentheses: take what follows the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }

    #[test]
    fn wait_until_returns_the_first_success() {
        let mut calls = 0;
        let value = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        });
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "never; last observation: nope")]
    fn wait_until_panics_with_the_last_observation() {
        wait_until::<()>("never", Duration::from_millis(150), || Err("nope".into()));
    }
}
