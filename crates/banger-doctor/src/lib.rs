//! banger-doctor: the host checks behind `banger doctor`. Each check reports PASS, WARN
//! or FAIL with one line of detail and, when not PASS, a hint saying how to fix it.
//!
//! The checks read the host (KVM/PVM probe, device nodes, sysfs, the state directory) and
//! run tools' `--version` through the [`CommandRunner`] in the [`DoctorContext`], so tests
//! swap in a fake runner. What each result means is decided by pure functions in the
//! modules below, table-tested there.

use std::path::PathBuf;
use std::sync::Arc;

use banger_exec::{CommandRunner, SystemRunner};
use serde::{Deserialize, Serialize};

pub mod confinement;
pub mod devices;
pub mod disk;
pub mod dns;
pub mod helper;
pub mod kvm;
pub mod store;
pub mod tools;
pub mod version;

/// Where the root helper listens unless told otherwise.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/banger/helper.sock";

/// The daemon's `.vm` responder with the default pool (172.30.0.0/24) and port.
pub const DEFAULT_VM_DNS: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(172, 30, 0, 1), 42069);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works as banger needs it.
    Pass,
    /// banger works, but slower or without some feature.
    Warn,
    /// Something banger needs is missing or broken.
    Fail,
}

/// One line of `banger doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// How to fix it; set for every WARN and FAIL.
    pub hint: Option<String>,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: Status::Pass,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::not_passing(name, Status::Warn, detail, hint)
    }

    pub fn fail(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::not_passing(name, Status::Fail, detail, hint)
    }

    /// A WARN or FAIL (chosen by the caller), always with a hint.
    pub fn not_passing(
        name: &str,
        status: Status,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.to_owned(),
            status,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct DoctorContext {
    /// banger's state directory (may not exist yet).
    pub state_dir: PathBuf,
    /// The SQLite database (may not exist yet).
    pub database: PathBuf,
    /// The root helper's socket; `None` when no helper is configured.
    pub helper_socket: Option<PathBuf>,
    /// The daemon's `.vm` DNS responder (bridge gateway and port).
    pub vm_dns: std::net::SocketAddrV4,
    /// Runs the tools' `--version`.
    pub runner: Arc<dyn CommandRunner>,
}

impl DoctorContext {
    /// The context for this user's directories, the default helper socket and the real
    /// command runner.
    pub fn new(dirs: &banger_model::dirs::Dirs) -> DoctorContext {
        DoctorContext {
            state_dir: dirs.state.clone(),
            database: dirs.database(),
            helper_socket: Some(PathBuf::from(DEFAULT_HELPER_SOCKET)),
            vm_dns: DEFAULT_VM_DNS,
            runner: Arc::new(SystemRunner),
        }
    }
}

/// Runs every host check and returns them in a stable order. Tool probes and the helper
/// connection run concurrently; the file-system checks are quick reads.
pub async fn run_host_checks(ctx: &DoctorContext) -> Vec<Check> {
    let runner = ctx.runner.as_ref();
    let (
        qemu,
        qemu_img,
        firecracker,
        helper,
        bridge,
        nftables,
        e2fsprogs,
        debugfs,
        git,
        ssh,
        mmdebstrap,
    ) = tokio::join!(
        tools::check_tool(runner, &tools::QEMU),
        tools::check_tool(runner, &tools::QEMU_IMG),
        tools::check_tool(runner, &tools::FIRECRACKER),
        helper::check_helper(ctx.helper_socket.as_deref()),
        devices::check_bridge(runner),
        tools::check_tool(runner, &tools::NFTABLES),
        tools::check_tool(runner, &tools::E2FSPROGS),
        tools::check_tool(runner, &tools::DEBUGFS),
        tools::check_tool(runner, &tools::GIT),
        tools::check_tool(runner, &tools::SSH),
        tools::check_tool(runner, &tools::MMDEBSTRAP),
    );
    vec![
        kvm::check_kvm(&banger_sys::kvm::probe()),
        confinement::check_confinement(),
        qemu,
        qemu_img,
        firecracker,
        helper,
        store::check_store(&ctx.database),
        devices::check_tun(),
        bridge,
        nftables,
        devices::check_loop(),
        e2fsprogs,
        devices::check_libarchive(),
        debugfs,
        git,
        ssh,
        mmdebstrap,
        disk::check_disk(&ctx.state_dir),
        dns::check_vm_dns(std::path::Path::new(dns::RESOLVED_RUN_DIR), ctx.vm_dns),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_serialises_lowercase() {
        let check = Check::warn("kvm", "PVM", "use TCG");
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "kvm", "status": "warn", "detail": "PVM", "hint": "use TCG"})
        );
        for (status, text) in [
            (Status::Pass, "\"pass\""),
            (Status::Warn, "\"warn\""),
            (Status::Fail, "\"fail\""),
        ] {
            assert_eq!(serde_json::to_string(&status).unwrap(), text);
            assert_eq!(serde_json::from_str::<Status>(text).unwrap(), status);
        }
    }

    #[test]
    fn context_from_dirs() {
        let dirs = banger_model::dirs::Dirs::resolve(
            |key| (key == "HOME").then(|| "/home/u".to_owned()),
            1000,
        )
        .unwrap();
        let ctx = DoctorContext::new(&dirs);
        assert_eq!(ctx.state_dir, PathBuf::from("/home/u/.local/state/banger"));
        assert_eq!(ctx.database, dirs.database());
        assert_eq!(
            ctx.helper_socket.as_deref(),
            Some(std::path::Path::new(DEFAULT_HELPER_SOCKET))
        );
    }

    /// All real checks on this host. On a CPU without VMX/SVM (this test machine: PVM),
    /// KVM must be a WARN that says guests use TCG.
    #[tokio::test]
    async fn real_host_checks() {
        let state = tempfile::tempdir().unwrap();
        let ctx = DoctorContext {
            state_dir: state.path().to_path_buf(),
            database: state.path().join("banger.db"),
            helper_socket: Some(state.path().join("no-helper.sock")),
            vm_dns: DEFAULT_VM_DNS,
            runner: Arc::new(SystemRunner),
        };
        let checks = run_host_checks(&ctx).await;
        for check in &checks {
            println!(
                "{:<12} {:<4?} {}{}",
                check.name,
                check.status,
                check.detail,
                check
                    .hint
                    .as_deref()
                    .map(|hint| format!("\n{:17}hint: {hint}", ""))
                    .unwrap_or_default()
            );
            assert!(!check.detail.is_empty(), "{check:?}");
            assert_eq!(
                check.hint.is_some(),
                check.status != Status::Pass,
                "{check:?}"
            );
        }
        let names: Vec<&str> = checks.iter().map(|check| check.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "duplicate check names: {names:?}"
        );

        let find = |name: &str| checks.iter().find(|check| check.name == name).unwrap();
        let store = find("store");
        assert_eq!(store.status, Status::Pass, "{store:?}");
        assert!(store.detail.contains("first use"), "{store:?}");
        assert_eq!(find("helper").status, Status::Warn);

        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        if banger_sys::kvm::parse_cpu_flags(&cpuinfo).virt {
            println!("skipping the PVM/TCG assertion: this CPU has VMX/SVM");
        } else {
            let kvm = find("kvm");
            assert_eq!(kvm.status, Status::Warn, "{kvm:?}");
            assert!(kvm.detail.contains("TCG"), "{kvm:?}");
        }
    }
}
