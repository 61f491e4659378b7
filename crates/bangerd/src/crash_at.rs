//! `BANGER_CRASH_AT=POINT` (hidden, tests only): the daemon sends itself SIGKILL when its
//! VM service passes the named fault point (`banger_vm::fault`, e.g. `delete: vmm
//! stopped`), so a test of the real daemon can kill it exactly between two steps of a
//! delete or a stop, as `kill -9` from outside would at an unlucky moment. Nothing but
//! the e2e crash tests sets it; unset, no hook is installed.

use std::sync::Arc;

use banger_vm::fault::{DELETE_POINTS, FaultHook, SNAPSHOT_POINTS, STOP_POINTS};

/// The environment variable that names the point.
pub const ENV: &str = "BANGER_CRASH_AT";

/// The point `value` names, if it is one of the service's points.
pub fn parse(value: &str) -> Option<&'static str> {
    DELETE_POINTS
        .iter()
        .chain(STOP_POINTS)
        .chain(SNAPSHOT_POINTS)
        .copied()
        .find(|point| *point == value.trim())
}

/// A hook that runs `crash` when the service reaches `point`, and nothing otherwise.
pub fn hook(point: &'static str, crash: impl Fn() + Send + Sync + 'static) -> FaultHook {
    Arc::new(move |reached: &str| {
        if reached == point {
            crash();
        }
    })
}

/// The hook `BANGER_CRASH_AT` asks for: SIGKILL of this process at that point. An
/// unknown point is logged and ignored.
pub fn from_env() -> Option<FaultHook> {
    let value = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
    let Some(point) = parse(&value) else {
        tracing::warn!(value, "{ENV} names no fault point; ignored");
        return None;
    };
    tracing::warn!(
        point,
        "{ENV} is set: this daemon kills itself at that point"
    );
    Some(hook(point, || {
        let _ = banger_sys::process::send_signal(std::process::id(), 9);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn only_known_points_parse() {
        assert_eq!(parse("delete: vmm stopped"), Some("delete: vmm stopped"));
        assert_eq!(
            parse(" stop: poweroff asked\n"),
            Some("stop: poweroff asked")
        );
        assert_eq!(parse("delete: everything"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_hook_fires_at_its_point_only() {
        let fired = Arc::new(AtomicUsize::new(0));
        let count = fired.clone();
        let hook = hook("stop: vmm stopped", move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        for point in STOP_POINTS.iter().chain(DELETE_POINTS) {
            hook(point);
        }
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }
}
