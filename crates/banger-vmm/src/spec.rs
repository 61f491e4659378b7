//! What a driver needs to launch one guest: [`LaunchSpec`]. Built by the VM service from
//! the VM's record and its per-VM directory; the drivers only read it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The format of the root disk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain ext4 image (what both drivers accept).
    Raw,
    /// A qcow2 overlay; QEMU only (Firecracker rejects it at launch).
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU's `format=` option uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The guest's NIC: a tap device on the host side.
#[derive(Debug)]
pub struct NetAttachment {
    /// The tap interface's name (Firecracker opens it by name; QEMU uses it when no fd is
    /// given).
    pub tap_name: String,
    /// An already opened tap (from the root helper over SCM_RIGHTS), so an unprivileged
    /// QEMU never needs `/dev/net/tun`, which is mode 0600 on some hosts. QEMU takes it as
    /// `-netdev tap,fd=N`; Firecracker ignores it.
    pub tap_fd: Option<OwnedFd>,
    /// The guest MAC address, `52:54:00:..` style.
    pub mac: String,
}

/// Everything needed to start one guest.
#[derive(Debug)]
pub struct LaunchSpec {
    pub vm_name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// An uncompressed ELF `vmlinux` (Firecracker's format; QEMU boots it via PVH).
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    /// The kernel command line as the VM service built it; drivers may append to it
    /// (QEMU adds `tsc_early_khz=` under TCG).
    pub cmdline: String,
    pub root_disk: PathBuf,
    pub root_disk_format: DiskFormat,
    /// Raw disks attached after the root disk, in order: the guest sees them as
    /// `/dev/vdb`, `/dev/vdc`... (a workspace disk).
    pub extra_disks: Vec<PathBuf>,
    /// The per-VM directory for sockets, the pid file and the VMM's stderr. Created if
    /// missing.
    pub run_dir: PathBuf,
    /// Where the guest's serial console goes.
    pub serial_log: PathBuf,
    pub net: Option<NetAttachment>,
    /// A directory of the VM's own, made by the caller, where a VMM that writes its saves
    /// itself by path (Firecracker) puts them; its confinement allows it (see
    /// `crate::confine`). `None` where saves need no path (QEMU writes into a passed
    /// descriptor) or the guest is never saved.
    pub outbox: Option<PathBuf>,
}
