//! fault: named points in the destructive operations (delete, stop, snapshot) where a
//! test can stop the service dead, as a daemon killed there would stop. Nothing sets a
//! hook but tests (`VmService::set_fault_hook`); without one a point costs a lock and a
//! `None` check. The crash tests panic in the hook, so nothing after the point runs, then
//! start a new service on the same state and count what reconcile leaves behind.

use std::sync::{Arc, Mutex};

/// Called with the name of each point as the service passes it.
pub type FaultHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The service's hook, if a test set one.
#[derive(Default)]
pub(crate) struct FaultPoints {
    hook: Mutex<Option<FaultHook>>,
}

impl std::fmt::Debug for FaultPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.hook.lock().map(|h| h.is_some()).unwrap_or(false);
        f.debug_struct("FaultPoints").field("hook", &set).finish()
    }
}

impl FaultPoints {
    pub(crate) fn set(&self, hook: Option<FaultHook>) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    pub(crate) fn reached(&self, point: &str) {
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(point);
        }
    }
}

/// Every point, in the order each operation passes them.
pub const DELETE_POINTS: &[&str] = &[
    "delete: recorded deleting",
    "delete: vmm stopped",
    "delete: network detached",
    "delete: vm directory removed",
    "delete: run directory removed",
    "delete: row deleted",
];

pub const STOP_POINTS: &[&str] = &[
    "stop: recorded stopping",
    "stop: poweroff asked",
    "stop: vmm stopped",
    "stop: network detached",
    "stop: run files removed",
    "stop: recorded stopped",
];

pub const SNAPSHOT_POINTS: &[&str] = &[
    "snapshot: row creating",
    "snapshot: directory made",
    "snapshot: saved, source paused",
    "snapshot: disk copied",
    "snapshot: source resumed",
    "snapshot: converter launched",
    "snapshot: state saved",
    "snapshot: converter stopped",
    "snapshot: files sealed",
    "snapshot: row ready",
];
