//! What a VMM process may reach on the host's file system, for both drivers: the plan is
//! a pure function of the launch ([`plan`], table-tested), applied with Landlock in the
//! child between fork and exec ([`Confinement::build`], then `process::spawn`).
//!
//! The VMM runs as the owner, who can read every VM's files, the database and the home.
//! The plan narrows that to what this one guest needs:
//! - read and execute: the VMM's binary and the system's `/usr`, `/bin`, `/sbin`, `/lib*`
//!   (the dynamic loader, libraries, QEMU's firmware in `/usr/share/qemu`);
//! - read: `/etc` (the loader's cache, locale and NSS files), `/proc` and `/sys` (QEMU and
//!   Firecracker read CPU and memory facts; Landlock's ptrace rules keep other processes'
//!   private entries closed), the kernel, the initramfs, and on a restore the saved state
//!   and the RAM file mapped copy-on-write;
//! - read and write, the files themselves (not their directories): the root disk and the
//!   extra disks, the serial log, a RAM file a save writes into, and a disk a saved state
//!   names (Firecracker opens it at load);
//! - its own: the VM's runtime directory (control and agent sockets, pid file, logs);
//! - devices: `/dev/null`, `/dev/zero`, `/dev/urandom`, `/dev/random`, `/dev/kvm`,
//!   `/dev/net/tun` (those present).
//!
//! Nothing else: not another VM's directory, not the state directory's database or
//! snapshots, not the cache, not the home. A save does not need a new path either: QEMU
//! writes its stream into a descriptor the daemon opened and passed over QMP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_sys::landlock::{Access, Ruleset};

use crate::error::VmmError;
use crate::spec::LaunchSpec;
use crate::warm::WarmLaunch;

/// System directories the VMM reads and executes from (skipped when absent).
const SYSTEM_EXECUTABLE: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// System directories the VMM reads (skipped when absent).
const SYSTEM_READABLE: &[&str] = &["/etc", "/proc", "/sys"];

/// Device nodes the VMM may open (skipped when absent).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/dev/kvm",
    "/dev/net/tun",
];

/// One path the VMM may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub access: Access,
    /// A system path (the same for every VM), rather than one of this VM's files.
    pub system: bool,
}

impl Grant {
    fn required(path: &Path, access: Access) -> Grant {
        Grant {
            path: path.to_path_buf(),
            access,
            system: false,
        }
    }

    fn system(path: &str, access: Access) -> Grant {
        Grant {
            path: PathBuf::from(path),
            access,
            system: true,
        }
    }
}

/// Everything the VMM launched for `spec` (and `warm`) may reach; `program` is the
/// VMM's binary as found on the clean `PATH`.
pub fn plan(program: &Path, spec: &LaunchSpec, warm: Option<&WarmLaunch>) -> Vec<Grant> {
    let mut grants: Vec<Grant> = SYSTEM_EXECUTABLE
        .iter()
        .map(|path| Grant::system(path, Access::ReadExecute))
        .chain(
            SYSTEM_READABLE
                .iter()
                .map(|path| Grant::system(path, Access::Read)),
        )
        .chain(
            DEVICES
                .iter()
                .map(|path| Grant::system(path, Access::Device)),
        )
        .collect();
    grants.push(Grant::required(program, Access::ReadExecute));
    grants.push(Grant::required(&spec.kernel, Access::Read));
    if let Some(initramfs) = &spec.initramfs {
        grants.push(Grant::required(initramfs, Access::Read));
    }
    grants.push(Grant::required(&spec.root_disk, Access::ReadWrite));
    for disk in &spec.extra_disks {
        grants.push(Grant::required(disk, Access::ReadWrite));
    }
    grants.push(Grant::required(&spec.serial_log, Access::ReadWrite));
    grants.push(Grant::required(&spec.run_dir, Access::Own));
    if let Some(outbox) = &spec.outbox {
        grants.push(Grant::required(outbox, Access::Own));
    }
    if let Some(warm) = warm {
        if let Some(memory) = &warm.memory {
            let access = if memory.shared {
                Access::ReadWrite
            } else {
                Access::Read
            };
            grants.push(Grant::required(&memory.path, access));
        }
        if let Some(state) = &warm.incoming {
            grants.push(Grant::required(state, Access::Read));
        }
        if let Some(disk) = &warm.saved_disk {
            grants.push(Grant::required(disk, Access::ReadWrite));
        }
    }
    grants
}

/// How a VMM process runs: confined by a Landlock ruleset, or not (a kernel without
/// Landlock, reported by [`Confinement::describe`]).
#[derive(Debug, Clone)]
pub enum Confinement {
    Landlock(Arc<Ruleset>),
    Unavailable,
}

impl Confinement {
    /// Builds the ruleset of `grants`, with the best ABI the kernel offers. Paths are
    /// resolved now, before fork: the child only applies the ruleset.
    pub fn build(grants: &[Grant]) -> Result<Confinement, VmmError> {
        let ruleset = Ruleset::new().map_err(|source| VmmError::Confine { path: None, source })?;
        let Some(mut ruleset) = ruleset else {
            return Ok(Confinement::Unavailable);
        };
        for grant in grants {
            // A path that is not there gets no rule: what the VMM cannot find, it reports
            // itself (QEMU: `Could not open ...`), and a file it creates is made by the
            // driver first.
            if !grant.path.exists() {
                continue;
            }
            ruleset
                .allow(&grant.path, grant.access)
                .map_err(|source| VmmError::Confine {
                    path: Some(grant.path.clone()),
                    source,
                })?;
        }
        Ok(Confinement::Landlock(Arc::new(ruleset)))
    }

    /// `landlock ABI 7`, or why the VMM runs unconfined.
    pub fn describe(&self) -> String {
        match self {
            Confinement::Landlock(ruleset) => format!("landlock ABI {}", ruleset.abi()),
            Confinement::Unavailable => {
                "none (this kernel has no Landlock; the VMM reaches every file the owner can)"
                    .into()
            }
        }
    }
}

/// Where `program` is: itself when it names a path, else the first match on the clean
/// `PATH` the VMM is started with. `None` when it is nowhere (spawn then fails as usual).
pub fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(banger_exec::CLEAN_PATH)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DiskFormat;
    use crate::warm::MemoryFile;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            vm_name: "web".into(),
            vcpus: 1,
            memory_mib: 256,
            kernel: "/c/kernels/k/vmlinux".into(),
            initramfs: Some("/c/kernels/k/initrd".into()),
            cmdline: String::new(),
            root_disk: "/s/vms/a/root.ext4".into(),
            root_disk_format: DiskFormat::Raw,
            extra_disks: vec!["/s/vms/a/workspace.ext4".into()],
            run_dir: "/r/vms/a".into(),
            serial_log: "/s/vms/a/serial.log".into(),
            net: None,
            outbox: None,
        }
    }

    /// The non-system grants, as `(path, access)`.
    fn own(grants: &[Grant]) -> Vec<(String, Access)> {
        grants
            .iter()
            .filter(|grant| !grant.system)
            .map(|grant| (grant.path.display().to_string(), grant.access))
            .collect()
    }

    #[test]
    fn a_cold_boot_reaches_its_files_only() {
        let grants = plan(Path::new("/usr/bin/qemu"), &spec(), None);
        assert_eq!(
            own(&grants),
            vec![
                ("/usr/bin/qemu".into(), Access::ReadExecute),
                ("/c/kernels/k/vmlinux".into(), Access::Read),
                ("/c/kernels/k/initrd".into(), Access::Read),
                ("/s/vms/a/root.ext4".into(), Access::ReadWrite),
                ("/s/vms/a/workspace.ext4".into(), Access::ReadWrite),
                ("/s/vms/a/serial.log".into(), Access::ReadWrite),
                ("/r/vms/a".into(), Access::Own),
            ]
        );
        // Nothing of the state directory as a whole, nor the VM's directory itself.
        for grant in &grants {
            assert!(
                !["/s", "/s/vms", "/s/vms/a", "/c", "/r"].contains(&grant.path.to_str().unwrap()),
                "{grant:?}"
            );
            if grant.system {
                assert!(
                    !matches!(grant.access, Access::Own | Access::ReadWrite),
                    "{grant:?}"
                );
            }
        }
    }

    #[test]
    fn a_restore_reads_its_snapshot_and_a_save_writes_its_ram_file() {
        let fork = WarmLaunch {
            memory: Some(MemoryFile {
                path: "/s/snapshots/x/mem".into(),
                shared: false,
            }),
            incoming: Some("/s/snapshots/x/state".into()),
            ignore_shared: true,
            paused: false,
            saved_disk: None,
        };
        let grants = own(&plan(Path::new("/usr/bin/qemu"), &spec(), Some(&fork)));
        assert!(grants.contains(&("/s/snapshots/x/mem".into(), Access::Read)));
        assert!(grants.contains(&("/s/snapshots/x/state".into(), Access::Read)));
        assert!(!grants.iter().any(|(path, _)| path == "/s/snapshots/x"));

        let converter = WarmLaunch {
            memory: Some(MemoryFile {
                path: "/s/snapshots/x/mem".into(),
                shared: true,
            }),
            incoming: Some("/s/snapshots/x/stream.partial".into()),
            ignore_shared: false,
            paused: true,
            saved_disk: None,
        };
        let grants = own(&plan(Path::new("/usr/bin/qemu"), &spec(), Some(&converter)));
        assert!(grants.contains(&("/s/snapshots/x/mem".into(), Access::ReadWrite)));
        assert!(grants.contains(&("/s/snapshots/x/stream.partial".into(), Access::Read)));

        let firecracker = WarmLaunch {
            saved_disk: Some("/s/snapshots/x/disk.ext4".into()),
            ..fork
        };
        let grants = own(&plan(Path::new("/usr/bin/fc"), &spec(), Some(&firecracker)));
        assert!(grants.contains(&("/s/snapshots/x/disk.ext4".into(), Access::ReadWrite)));
    }

    #[test]
    fn programs_are_found_on_the_clean_path() {
        assert_eq!(
            resolve_program(Path::new("/opt/fc/firecracker")),
            Some(PathBuf::from("/opt/fc/firecracker"))
        );
        let sh = resolve_program(Path::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(resolve_program(Path::new("no-such-vmm-anywhere")), None);
    }
}
