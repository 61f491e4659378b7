//! What an MCP session may do: the profile (`read-only`, `run`, `full`), which host
//! directories it may import, how many VMs it may have at once, and which VMs are its
//! own. `run` may act only on VMs this session created; `read-only` may only list VMs and
//! read files. Pure: the caller resolves VM references and host paths first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How much a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    ReadOnly,
    Run,
    Full,
}

impl Profile {
    pub fn parse(text: &str) -> Option<Profile> {
        match text {
            "read-only" => Some(Profile::ReadOnly),
            "run" => Some(Profile::Run),
            "full" => Some(Profile::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::ReadOnly => "read-only",
            Profile::Run => "run",
            Profile::Full => "full",
        }
    }
}

/// What a tool does to a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List VMs.
    List,
    /// Read from a VM (a file).
    Read,
    /// Create a VM.
    Create,
    /// Change what is in a VM (run a command, write a file, copy a workspace).
    Modify,
    /// Delete a VM.
    Delete,
}

/// Why the policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

fn refuse(message: String, hint: impl Into<String>) -> Refusal {
    Refusal {
        message,
        hint: hint.into(),
    }
}

/// The rules of one session, fixed at start.
#[derive(Debug, Clone)]
pub struct Policy {
    pub profile: Profile,
    /// Host directories (absolute, canonical) whose contents may be imported.
    pub allow_repos: Vec<PathBuf>,
    /// VMs this session may have at once (created and not deleted).
    pub max_vms: usize,
}

/// VMs this session created and still has, and creations under way.
#[derive(Debug, Clone, Default)]
pub struct Session {
    owned: BTreeSet<String>,
    pending: usize,
    /// Snapshots made by this session's forks (a fork of a running VM saves it first).
    snapshots: BTreeSet<String>,
}

impl Session {
    pub fn owns(&self, vm: &str) -> bool {
        self.owned.contains(vm)
    }

    pub fn owned(&self) -> impl Iterator<Item = &String> {
        self.owned.iter()
    }

    /// The VM now exists and is this session's (its creation's slot becomes its own).
    pub fn created(&mut self, vm: &str) {
        self.pending = self.pending.saturating_sub(1);
        self.owned.insert(vm.to_string());
    }

    /// A creation failed before a VM existed: its slot is free again.
    pub fn release(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    pub fn deleted(&mut self, vm: &str) {
        self.owned.remove(vm);
    }

    /// A snapshot this session's fork made (forking its own VM): the session may fork it
    /// again.
    pub fn snapshot_made(&mut self, snapshot: &str) {
        self.snapshots.insert(snapshot.to_string());
    }

    pub fn owns_snapshot(&self, snapshot: &str) -> bool {
        self.snapshots.contains(snapshot)
    }

    fn in_use(&self) -> usize {
        self.owned.len() + self.pending
    }
}

impl Policy {
    /// Whether the profile offers a tool that needs `access` at all (tools it refuses
    /// are left out of `tools/list`).
    pub fn offers(&self, access: Access) -> bool {
        match self.profile {
            Profile::ReadOnly => matches!(access, Access::List | Access::Read),
            Profile::Run | Profile::Full => true,
        }
    }

    /// May this session do `access` to the VM named `vm` (a resolved, exact name)?
    pub fn check_vm(&self, session: &Session, access: Access, vm: &str) -> Result<(), Refusal> {
        if !self.offers(access) {
            return Err(refuse(
                format!("the {} profile does not allow this", self.profile.as_str()),
                "start `banger mcp --profile run` (or `full`) to create and change VMs",
            ));
        }
        if self.profile == Profile::Run
            && !matches!(access, Access::List | Access::Create)
            && !session.owns(vm)
        {
            return Err(refuse(
                format!(
                    "VM {vm} was not created by this MCP session; the run profile only acts on its own VMs"
                ),
                "create a VM with `vm_create` or `vm_run`, or start `banger mcp --profile full`",
            ));
        }
        Ok(())
    }

    /// May this session fork the snapshot named `snapshot` (a resolved, exact name)? The
    /// run profile forks only snapshots its own forks made; `full` any.
    pub fn check_snapshot(&self, session: &Session, snapshot: &str) -> Result<(), Refusal> {
        if !self.offers(Access::Create) {
            return Err(refuse(
                format!("the {} profile cannot fork VMs", self.profile.as_str()),
                "start `banger mcp --profile run` (or `full`)",
            ));
        }
        if self.profile == Profile::Run && !session.owns_snapshot(snapshot) {
            return Err(refuse(
                format!(
                    "snapshot {snapshot} was not made by this MCP session; the run profile only forks its own VMs and their snapshots"
                ),
                "fork a VM this session created (vm_fork with its name), or start `banger mcp --profile full`",
            ));
        }
        Ok(())
    }

    /// Takes a slot for a new VM, refused when the session has `max_vms` already.
    pub fn reserve(&self, session: &mut Session) -> Result<(), Refusal> {
        if !self.offers(Access::Create) {
            return Err(refuse(
                format!("the {} profile cannot create VMs", self.profile.as_str()),
                "start `banger mcp --profile run` (or `full`)",
            ));
        }
        if session.in_use() >= self.max_vms {
            return Err(refuse(
                format!(
                    "this MCP session already has {} VM(s), its limit (--max-vms {})",
                    session.in_use(),
                    self.max_vms
                ),
                "delete one with `vm_delete`, or start `banger mcp` with a higher --max-vms",
            ));
        }
        session.pending += 1;
        Ok(())
    }

    /// May the host directory `path` (absolute, canonical) be imported?
    pub fn check_repo(&self, path: &Path) -> Result<(), Refusal> {
        if self
            .allow_repos
            .iter()
            .any(|allowed| path.starts_with(allowed))
        {
            return Ok(());
        }
        let allowed = if self.allow_repos.is_empty() {
            "none".to_string()
        } else {
            self.allow_repos
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(refuse(
            format!(
                "{} is outside the directories this MCP session may import (allowed: {allowed})",
                path.display()
            ),
            "start `banger mcp` with `--allow-repo PATH` for that repository",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(profile: Profile) -> Policy {
        Policy {
            profile,
            allow_repos: vec![PathBuf::from("/home/u/src")],
            max_vms: 2,
        }
    }

    #[test]
    fn run_acts_only_on_its_own_vms() {
        let p = policy(Profile::Run);
        let mut s = Session::default();
        assert!(p.check_vm(&s, Access::Delete, "other").is_err());
        assert!(p.check_vm(&s, Access::Modify, "other").is_err());
        assert!(p.check_vm(&s, Access::Read, "other").is_err());
        assert!(p.check_vm(&s, Access::List, "").is_ok());
        p.reserve(&mut s).unwrap();
        s.created("mine");
        assert!(p.check_vm(&s, Access::Delete, "mine").is_ok());
        s.deleted("mine");
        assert!(p.check_vm(&s, Access::Delete, "mine").is_err());
    }

    #[test]
    fn run_forks_only_its_own_snapshots() {
        let run = policy(Profile::Run);
        let mut s = Session::default();
        let refused = run.check_snapshot(&s, "base").unwrap_err();
        assert!(
            refused.message.contains("not made by this MCP session"),
            "{refused}"
        );
        s.snapshot_made("base");
        assert!(run.check_snapshot(&s, "base").is_ok());
        assert!(run.check_snapshot(&s, "other").is_err());
        assert!(policy(Profile::Full).check_snapshot(&s, "other").is_ok());
        assert!(
            policy(Profile::ReadOnly)
                .check_snapshot(&s, "base")
                .is_err()
        );
    }

    #[test]
    fn full_acts_on_any_vm_and_read_only_only_reads() {
        let s = Session::default();
        assert!(
            policy(Profile::Full)
                .check_vm(&s, Access::Delete, "other")
                .is_ok()
        );
        let ro = policy(Profile::ReadOnly);
        assert!(ro.check_vm(&s, Access::Read, "other").is_ok());
        assert!(ro.check_vm(&s, Access::Modify, "other").is_err());
        assert!(!ro.offers(Access::Create));
        assert!(ro.reserve(&mut Session::default()).is_err());
    }

    #[test]
    fn the_vm_cap_counts_pending_and_owned() {
        let p = policy(Profile::Full);
        let mut s = Session::default();
        p.reserve(&mut s).unwrap();
        p.reserve(&mut s).unwrap();
        let refused = p.reserve(&mut s).unwrap_err();
        assert!(refused.message.contains("--max-vms 2"), "{refused}");
        s.created("a");
        assert!(
            p.reserve(&mut s).is_err(),
            "one owned and one pending fill the cap"
        );
        s.release();
        assert!(p.reserve(&mut s).is_ok());
        s.created("b");
        assert!(p.reserve(&mut s).is_err());
        s.deleted("a");
        assert!(p.reserve(&mut s).is_ok());
    }

    #[test]
    fn repos_must_be_under_an_allowed_directory() {
        let p = policy(Profile::Run);
        assert!(p.check_repo(Path::new("/home/u/src/app")).is_ok());
        assert!(p.check_repo(Path::new("/home/u/src")).is_ok());
        // A sibling whose name starts the same is not inside.
        assert!(p.check_repo(Path::new("/home/u/src2")).is_err());
        assert!(p.check_repo(Path::new("/etc")).is_err());
    }
}
