//! The durable record of a VM's workspace: which host repository was copied where, how,
//! at which commit, and when. Stored with the VM (`vm_workspaces`), shown by `vm show`
//! and `vm list`, read by `vm exec` to run in it and to warn when the host moved on.

use serde::{Deserialize, Serialize};

/// How the copy reached the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceDelivery {
    /// A second disk built on the host before the boot, mounted at the guest path.
    Disk,
    /// A tar stream through the guest agent into a running VM.
    Stream,
}

impl WorkspaceDelivery {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceDelivery::Disk => "disk",
            WorkspaceDelivery::Stream => "stream",
        }
    }

    pub fn parse(text: &str) -> Option<WorkspaceDelivery> {
        match text {
            "disk" => Some(WorkspaceDelivery::Disk),
            "stream" => Some(WorkspaceDelivery::Stream),
            _ => None,
        }
    }
}

/// One VM's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// The repository's root on the host.
    pub host_path: String,
    /// Where it is in the guest.
    pub guest_path: String,
    /// `overlay` or `full_copy`.
    pub mode: String,
    /// The host's `HEAD` at prepare; `None` for a repository with no commits.
    pub head_commit: Option<String>,
    pub include_untracked: bool,
    pub delivery: WorkspaceDelivery,
    /// Entries and bytes of file content copied.
    pub files: u64,
    pub bytes: u64,
    /// The tracked files' signature at prepare (see `banger_workspace::tracked_signature`).
    pub tracked_signature: String,
    /// RFC 3339.
    pub prepared_at: String,
}
