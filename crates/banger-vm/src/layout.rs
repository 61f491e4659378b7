//! Where one VM's files live. Durable files (disk, serial log, handle mirror) go under the
//! state directory; sockets go under the runtime directory, whose short path keeps them
//! within the 108-byte `sun_path` limit.

use std::path::PathBuf;

use banger_model::dirs::Dirs;

/// Paths of one VM's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    /// `<state>/vms/<id>`: owned by this VM, removed on delete.
    pub dir: PathBuf,
    pub root_disk: PathBuf,
    /// The workspace disk (`vm run PATH`), attached after the root disk when present.
    pub workspace_disk: PathBuf,
    pub serial_log: PathBuf,
    /// The transient VMM handle mirrored to disk for reattach after a daemon restart.
    pub handle_file: PathBuf,
    /// `<runtime>/vms/<id>`: sockets and the VMM's stderr.
    pub run_dir: PathBuf,
    /// Scratch space for the offline patch.
    pub stage_dir: PathBuf,
    /// Where a Firecracker VMM writes a snapshot (its confinement allows this directory
    /// and not `<state>/snapshots`); see `warm.rs`.
    pub outbox: PathBuf,
}

impl VmPaths {
    pub fn new(dirs: &Dirs, vm_id: &str) -> VmPaths {
        let dir = dirs.state.join("vms").join(vm_id);
        VmPaths {
            root_disk: dir.join("root.ext4"),
            workspace_disk: dir.join("workspace.ext4"),
            serial_log: dir.join("serial.log"),
            handle_file: dir.join("handle.json"),
            stage_dir: dir.join("stage"),
            outbox: dir.join("outbox"),
            run_dir: dirs.runtime.join("vms").join(vm_id),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_between_state_and_runtime() {
        let dirs = Dirs {
            state: "/s".into(),
            cache: "/c".into(),
            runtime: "/r".into(),
            config: "/f".into(),
            socket: "/r/bangerd.sock".into(),
        };
        let paths = VmPaths::new(&dirs, "0123456789abcdef");
        assert_eq!(
            paths.root_disk,
            PathBuf::from("/s/vms/0123456789abcdef/root.ext4")
        );
        assert_eq!(paths.run_dir, PathBuf::from("/r/vms/0123456789abcdef"));
        assert_eq!(
            paths.handle_file,
            PathBuf::from("/s/vms/0123456789abcdef/handle.json")
        );
    }
}
