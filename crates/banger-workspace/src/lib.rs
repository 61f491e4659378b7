//! The host side of workspaces: everything about a repository that can be done without a
//! guest. [`discover`] finds the repository a path is in (refusing what is not a working
//! tree), [`plan`] lists exactly what goes into the guest (tracked files as they are in
//! the working tree, optionally untracked ones, never ignored ones, plus `.git`), and
//! [`write_tar`] streams that list as one tar. Git is only ever read, through
//! [`git::git_cmd`]: a clean environment, no fsmonitor, hooks, filters or attribute
//! drivers. Nothing here follows a symlink out of the repository.

pub mod error;
pub mod git;
pub mod guest_path;
pub mod listing;
pub mod plan;
pub mod tar_stream;

pub use error::WorkspaceError;
pub use guest_path::validate_guest_path;
pub use plan::{
    Entry, EntryKind, LinkedGitDirs, Mode, Plan, PlanOptions, Repo, discover, plan,
    tracked_signature,
};
pub use tar_stream::write_tar;

/// The command runner the plan functions take (re-exported so callers need not depend on
/// `banger-exec` for it).
pub use banger_exec::{CommandRunner, SystemRunner};

/// Where the workspace lands in the guest unless `--guest-path` says otherwise.
pub const DEFAULT_GUEST_PATH: &str = "/root/repo";
