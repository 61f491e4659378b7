//! The `--json` record of a VM, one for every command that prints VMs (`vm list`, `show`,
//! `create`, `start`, `stop`, `restart`, `kill`, `delete`, `prune`, `set`, `fork`,
//! `workspace prepare`). A command that can act on several VMs prints an array, even for
//! one; a command that takes exactly one VM (`show`, `create`, `set`) prints an object.

use banger_api::types::{ForkedFrom, VmInfo, VmState, WorkspaceInfo};
use serde::Serialize;

const MIB: u64 = 1024 * 1024;

/// One VM, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmJson {
    pub id: String,
    pub name: String,
    pub state: VmState,
    pub image: String,
    pub kernel: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub nat: bool,
    /// The network policy's allow rules (`[]`: deny all), `null` without a policy.
    pub policy: Option<Vec<String>>,
    /// Packets the policy dropped since it was installed (`null`: no policy, or stopped).
    pub policy_dropped_packets: Option<u64>,
    /// Distinct destinations the policy denied (`vm logs --policy` lists them).
    pub policy_denied_destinations: Option<u64>,
    pub driver: String,
    pub accelerator: Option<String>,
    pub address: Option<String>,
    pub boot_id: Option<String>,
    pub pid: Option<u32>,
    pub workspace: Option<WorkspaceJson>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub last_error: Option<String>,
    pub dir: Option<String>,
    pub forked_from: Option<ForkedFromJson>,
    /// How the guest last started: `cold`, `template` (a warm template) or `snapshot`
    /// (`vm fork`); `null` before its first start.
    pub started_from: Option<String>,
}

/// A VM's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceJson {
    pub source: String,
    /// `null` for a repository with no commits.
    pub base_commit: Option<String>,
    pub guest_path: String,
    pub mode: String,
    pub include_untracked: bool,
    pub delivery: String,
    pub files: u64,
    pub content_bytes: u64,
    pub prepared_at: String,
}

/// The snapshot a VM was forked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkedFromJson {
    pub snapshot: String,
    pub source_vm: String,
    pub shares_boot_id: bool,
}

impl From<&VmInfo> for VmJson {
    fn from(vm: &VmInfo) -> VmJson {
        VmJson {
            id: vm.id.clone(),
            name: vm.name.clone(),
            state: vm.state,
            image: vm.image.clone(),
            kernel: vm.kernel.clone(),
            vcpus: vm.vcpus,
            memory_bytes: vm.memory_mib.saturating_mul(MIB),
            disk_bytes: vm.disk_mib.saturating_mul(MIB),
            nat: vm.nat,
            policy: vm.policy.clone(),
            policy_dropped_packets: vm.policy_dropped_packets,
            policy_denied_destinations: vm.policy_denied_destinations,
            driver: vm.driver.clone(),
            accelerator: vm.accelerator.clone(),
            address: vm.address.clone(),
            boot_id: vm.boot_id.clone(),
            pid: vm.pid,
            workspace: vm.workspace.as_ref().map(WorkspaceJson::from),
            created_at: vm.created_at.clone(),
            started_at: vm.started_at.clone(),
            last_error: vm.last_error.clone(),
            dir: vm.dir.clone(),
            forked_from: vm.forked_from.as_ref().map(ForkedFromJson::from),
            started_from: vm.started_from.clone(),
        }
    }
}

impl From<&WorkspaceInfo> for WorkspaceJson {
    fn from(w: &WorkspaceInfo) -> WorkspaceJson {
        WorkspaceJson {
            source: w.source.clone(),
            base_commit: Some(w.base_commit.clone()).filter(|c| !c.is_empty()),
            guest_path: w.guest_path.clone(),
            mode: w.mode.clone(),
            include_untracked: w.include_untracked,
            delivery: w.delivery.clone(),
            files: w.files,
            content_bytes: w.bytes,
            prepared_at: w.prepared_at.clone(),
        }
    }
}

impl From<&ForkedFrom> for ForkedFromJson {
    fn from(f: &ForkedFrom) -> ForkedFromJson {
        ForkedFromJson {
            snapshot: f.snapshot.clone(),
            source_vm: f.source_vm.clone(),
            shares_boot_id: f.shares_boot_id,
        }
    }
}

/// Several VMs, in the order given.
pub fn vms(vms: &[VmInfo]) -> Vec<VmJson> {
    vms.iter().map(VmJson::from).collect()
}

/// One VM: its JSON object with `--json`, else the text `human` builds.
pub fn print_vm(
    json: bool,
    vm: &VmInfo,
    human: impl FnOnce(&VmInfo) -> String,
) -> Result<(), crate::errors::CliError> {
    super::print(json, vm, VmJson::from, human)
}

/// Several VMs: a JSON array with `--json` (also for one), else the text `human` builds.
pub fn print_vms(
    json: bool,
    list: &[VmInfo],
    human: impl FnOnce(&[VmInfo]) -> String,
) -> Result<(), crate::errors::CliError> {
    super::print(json, list, vms, human)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(name: &str, state: VmState) -> VmInfo {
        VmInfo {
            id: "3f2a9c0d11223344".into(),
            name: name.into(),
            state,
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 1,
            memory_mib: 256,
            disk_mib: 1024,
            nat: false,
            policy: None,
            policy_dropped_packets: None,
            policy_denied_destinations: None,
            driver: "qemu".into(),
            accelerator: None,
            address: None,
            boot_id: None,
            pid: None,
            workspace: None,
            created_at: "2026-01-02T03:04:05Z".into(),
            started_at: None,
            last_error: None,
            dir: None,
            forked_from: None,
            started_from: None,
        }
    }

    /// Every key is present for a VM that knows almost nothing (a stopped VM).
    #[test]
    fn a_sparse_vm_has_every_key() {
        insta::assert_json_snapshot!(VmJson::from(&sample("web", VmState::Stopped)));
    }

    /// A VM that knows everything: every optional part filled in.
    pub(crate) fn full() -> VmInfo {
        let mut vm = sample("web", VmState::Running);
        vm.nat = true;
        vm.policy = Some(vec!["pypi.org:443".into()]);
        vm.accelerator = Some("tcg".into());
        vm.address = Some("10.77.0.2".into());
        vm.boot_id = Some("b00t".into());
        vm.pid = Some(4242);
        vm.started_at = Some("2026-01-02T03:04:09Z".into());
        vm.dir = Some("/state/vms/3f2a9c0d11223344".into());
        vm.workspace = Some(WorkspaceInfo {
            source: "/src/repo".into(),
            base_commit: String::new(),
            guest_path: "/root/repo".into(),
            mode: "overlay".into(),
            include_untracked: false,
            delivery: "disk".into(),
            files: 3,
            bytes: 120,
            tracked_signature: "sig".into(),
            prepared_at: "2026-01-02T03:04:06Z".into(),
        });
        vm.forked_from = Some(ForkedFrom {
            snapshot: "base".into(),
            source_vm: "src".into(),
            shares_boot_id: true,
        });
        vm
    }

    #[test]
    fn a_full_vm() {
        insta::assert_json_snapshot!(VmJson::from(&full()));
    }
}
