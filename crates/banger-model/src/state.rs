//! The lifecycle states of a VM and which transitions between them are allowed.
//!
//! ```text
//! creating -> starting | stopped | error
//! starting -> running | stopping | stopped | error
//! running  -> stopping | stopped | error     (stopped: the guest powered off by itself)
//! stopping -> stopped | error
//! stopped  -> starting
//! error    -> starting | stopping | stopped  (retry, or clean up what is left)
//! any      -> deleting                       (`vm delete` began; the row goes when done)
//! ```
//!
//! `deleting` is recorded before anything is destroyed, so a delete cut short (a full
//! disk, a crash) leaves a VM that says what it is, and the next `vm delete` or the
//! daemon's startup reconcile finishes the job. Nothing leaves `deleting` but removal.
//!
//! Staying in the same state is not a transition. Verbs check the state first with
//! `can_start`/`can_stop`/`can_delete`/`can_exec` so users get a precise refusal.

use serde::{Deserialize, Serialize};

/// Lifecycle state of a VM as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Name reserved, disks and boot in progress.
    Creating,
    Starting,
    Running,
    Stopping,
    Stopped,
    /// The last operation failed; `last_error` says why.
    Error,
    /// `vm delete` started and has not finished; the next delete (or the daemon's
    /// startup) completes it.
    Deleting,
}

/// A stored or typed state name that is not one of [`VmState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown VM state {0:?}; expected one of creating, starting, running, stopping, stopped, error, deleting"
)]
pub struct UnknownState(pub String);

impl VmState {
    /// Every state, in lifecycle order (also the order of per-state counts).
    pub const ALL: [VmState; 7] = [
        VmState::Creating,
        VmState::Starting,
        VmState::Running,
        VmState::Stopping,
        VmState::Stopped,
        VmState::Error,
        VmState::Deleting,
    ];

    /// The state named exactly `name` (as [`VmState::as_str`] spells it).
    pub fn parse(name: &str) -> Result<VmState, UnknownState> {
        VmState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| UnknownState(name.to_owned()))
    }

    /// Whether the lifecycle allows going from `self` to `to` (see the module table).
    pub fn can_transition(self, to: VmState) -> bool {
        use VmState::*;
        matches!(
            (self, to),
            (Creating, Starting | Stopped | Error)
                | (Starting, Running | Stopping | Stopped | Error)
                | (Running, Stopping | Stopped | Error)
                | (Stopping, Stopped | Error)
                | (Stopped, Starting)
                | (Error, Starting | Stopping | Stopped)
                | (
                    Creating | Starting | Running | Stopping | Stopped | Error,
                    Deleting
                )
        )
    }

    /// A VMM process may exist or is being set up or torn down.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Creating | VmState::Starting | VmState::Running | VmState::Stopping
        )
    }

    /// Some operation is in the middle of changing this VM.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            VmState::Creating | VmState::Starting | VmState::Stopping | VmState::Deleting
        )
    }

    /// `vm start` is allowed: the VM is down (cleanly or after a failure).
    pub fn can_start(self) -> bool {
        // Not `can_transition(Starting)`: `creating -> starting` belongs to `vm create`.
        matches!(self, VmState::Stopped | VmState::Error)
    }

    /// `vm stop` is allowed: something may be running, including a VM that failed
    /// half-way and may have left a VMM process behind.
    pub fn can_stop(self) -> bool {
        matches!(self, VmState::Starting | VmState::Running | VmState::Error)
    }

    /// `vm delete` without `--force` is allowed: nothing is running or in flight, or an
    /// earlier delete was cut short and this one finishes it.
    pub fn can_delete(self) -> bool {
        !self.is_active()
    }

    /// Commands can run in the guest (`vm exec`, `vm ssh`, ports, files).
    pub fn can_exec(self) -> bool {
        self == VmState::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
            VmState::Deleting => "deleting",
        }
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VmState {
    type Err = UnknownState;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        VmState::parse(name)
    }
}

#[cfg(test)]
mod tests {
    use super::VmState::{self, *};

    #[test]
    fn transition_table() {
        // Rows: from; columns: to, in VmState::ALL order.
        let table: [(VmState, [bool; 7]); 7] = [
            //            creating starting running stopping stopped error deleting
            (Creating, [false, true, false, false, true, true, true]),
            (Starting, [false, false, true, true, true, true, true]),
            (Running, [false, false, false, true, true, true, true]),
            (Stopping, [false, false, false, false, true, true, true]),
            (Stopped, [false, true, false, false, false, false, true]),
            (Error, [false, true, false, true, true, false, true]),
            (Deleting, [false, false, false, false, false, false, false]),
        ];
        for (from, row) in table {
            for (to, expected) in VmState::ALL.into_iter().zip(row) {
                assert_eq!(from.can_transition(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn verb_table() {
        // (state, active, transitional, start, stop, delete, exec)
        let table = [
            (Creating, true, true, false, false, false, false),
            (Starting, true, true, false, true, false, false),
            (Running, true, false, false, true, false, true),
            (Stopping, true, true, false, false, false, false),
            (Stopped, false, false, true, false, true, false),
            (Error, false, false, true, true, true, false),
            (Deleting, false, true, false, false, true, false),
        ];
        for (state, active, transitional, start, stop, delete, exec) in table {
            assert_eq!(state.is_active(), active, "{state} active");
            assert_eq!(
                state.is_transitional(),
                transitional,
                "{state} transitional"
            );
            assert_eq!(state.can_start(), start, "{state} start");
            assert_eq!(state.can_stop(), stop, "{state} stop");
            assert_eq!(state.can_delete(), delete, "{state} delete");
            assert_eq!(state.can_exec(), exec, "{state} exec");
        }
    }

    #[test]
    fn names_round_trip() {
        for state in VmState::ALL {
            assert_eq!(VmState::parse(state.as_str()), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        for bad in ["", "Running", "running ", "paused"] {
            assert!(VmState::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            "paused".parse::<VmState>().unwrap_err().to_string(),
            "unknown VM state \"paused\"; expected one of creating, starting, running, \
             stopping, stopped, error, deleting"
        );
    }
}
