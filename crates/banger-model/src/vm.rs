//! The durable record of one VM: what it is (name, image, kernel, spec) and the runtime
//! facts that must survive a daemon restart (address, boot id, last error). Handles that
//! only make sense inside one daemon process (PIDs, taps) are not here.

use serde::{Deserialize, Serialize};

use crate::id::VmId;
use crate::name::VmName;
use crate::spec::VmSpec;
use crate::state::VmState;

/// One VM as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub id: VmId,
    pub name: VmName,
    pub state: VmState,
    /// Image name the root disk was cloned from.
    pub image: String,
    /// Kernel name the VM boots.
    pub kernel: String,
    pub spec: VmSpec,
    /// Whether the guest gets outbound NAT.
    pub nat: bool,
    /// The VM's network policy: what it may reach. `None`: no policy (`nat` decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::NetPolicy>,
    /// VMM driver name (`qemu`, `firecracker`).
    pub driver: String,
    #[serde(default)]
    pub runtime: VmRuntime,
    /// The repository copied into the VM, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<crate::workspace::Workspace>,
    /// RFC 3339.
    pub created_at: String,
}

/// Facts learned while the VM runs that outlive the daemon process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRuntime {
    /// `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// Guest IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The guest's boot id as last reported, to tell a reboot from a continuing boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why the VM is in `error`, or why it stopped by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The VM's directory on the host (disk, logs, sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The snapshot this VM was forked from (its name and id), kept for the VM's life:
    /// a fork shares the snapshot's boot id until its first cold boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkOrigin>,
    /// How the guest last started: `template` (restored from a warm template), `cold`
    /// (booted) or `snapshot` (`vm fork`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<String>,
    /// A hidden VM banger boots to make a warm template from; deleted once the template
    /// is saved (or by the startup reconcile), never listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template_builder: bool,
}

/// Where a forked VM came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForkOrigin {
    pub snapshot: String,
    pub snapshot_id: String,
    /// The VM the snapshot was taken from.
    pub source_vm: String,
    /// False once the VM has booted cold (after a stop and start): its boot id is its own.
    #[serde(default)]
    pub restored_boot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> VmRecord {
        VmRecord {
            id: VmId::from_random(0xabc),
            name: VmName::parse("web").unwrap(),
            state: VmState::Running,
            image: "debian-bookworm".into(),
            kernel: "debian-6.1-cloud".into(),
            spec: VmSpec::default(),
            nat: true,
            policy: None,
            driver: "qemu".into(),
            runtime: VmRuntime {
                address: Some("172.30.0.2".into()),
                ..VmRuntime::default()
            },
            workspace: Some(crate::workspace::Workspace {
                host_path: "/src/repo".into(),
                guest_path: "/root/repo".into(),
                mode: "overlay".into(),
                head_commit: None,
                include_untracked: false,
                delivery: crate::workspace::WorkspaceDelivery::Disk,
                files: 3,
                bytes: 10,
                tracked_signature: "ab".into(),
                prepared_at: "2026-01-02T03:04:06Z".into(),
            }),
            created_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn json_round_trip() {
        let vm = record();
        let json = serde_json::to_value(&vm).unwrap();
        assert_eq!(json["id"], "0000000000000abc");
        assert_eq!(json["state"], "running");
        assert_eq!(
            json["runtime"],
            serde_json::json!({"address": "172.30.0.2"})
        );
        let back: VmRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, vm);
    }

    #[test]
    fn runtime_defaults_when_missing() {
        let mut json = serde_json::to_value(record()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("runtime");
        object.remove("workspace");
        let back: VmRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.runtime, VmRuntime::default());
        assert_eq!(back.workspace, None);
    }

    #[test]
    fn invalid_name_in_json_is_rejected() {
        let mut json = serde_json::to_value(record()).unwrap();
        json["name"] = "Web".into();
        assert!(serde_json::from_value::<VmRecord>(json).is_err());
    }
}
