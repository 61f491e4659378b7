//! The lifecycle states of a VM and which transitions between them are allowed.

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
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
        }
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
