//! Records the daemon returns: VMs, images, kernels, health. Sizes travel as MiB or bytes
//! in plain integers and names as strings; validation lives in `banger-model`, applied by
//! both the CLI and the daemon.

use serde::{Deserialize, Serialize};

pub use banger_model::state::VmState;

/// A repository workspace imported into a VM (`vm run ./repo`, `vm workspace prepare`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// Host path of the repository (its root).
    pub source: String,
    /// Commit the import was based on (the host's `HEAD`); empty for a repository with
    /// no commits.
    pub base_commit: String,
    /// Path of the checkout inside the guest.
    pub guest_path: String,
    /// `overlay` or `full_copy`.
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub include_untracked: bool,
    /// `disk` (built before the boot) or `stream` (into a running VM).
    #[serde(default)]
    pub delivery: String,
    /// Entries copied and bytes of file content.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The tracked files' signature at prepare, to tell when the host changed since.
    #[serde(default)]
    pub tracked_signature: String,
    /// RFC 3339.
    #[serde(default)]
    pub prepared_at: String,
}

/// Everything `vm show` prints about one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    pub id: String,
    pub name: String,
    pub state: VmState,
    pub image: String,
    pub kernel: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub nat: bool,
    /// The network policy's allow rules (`[]`: deny all); absent without a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Vec<String>>,
    /// Packets the policy dropped since it was installed (running VMs with a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_dropped_packets: Option<u64>,
    /// Distinct destinations the policy denied (running VMs with a policy);
    /// `vm logs --policy` lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_denied_destinations: Option<u64>,
    /// VMM driver (`qemu` or `firecracker`).
    pub driver: String,
    /// `kvm` or `tcg` while running (QEMU); `kvm` for Firecracker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// Guest IPv4 address, once networking has assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The guest's `/proc/sys/kernel/random/boot_id` as the agent last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// VMM process id while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceInfo>,
    /// RFC 3339 timestamps.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why the VM is in `error`, or why it stopped when it stopped by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Host paths of the VM's files (disk, serial log, sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The snapshot this VM was forked from (`vm fork`, or its warm template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// How the guest last started: `template` (restored from a warm template), `cold`
    /// (booted) or `snapshot` (`vm fork`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<String>,
}

/// Where a forked VM came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkedFrom {
    pub snapshot: String,
    /// The VM the snapshot was taken from.
    pub source_vm: String,
    /// True until the fork's first cold boot: a restored guest keeps the snapshot's
    /// `/proc/sys/kernel/random/boot_id` (it cannot change without a reboot), so boot ids
    /// of forks are not unique.
    pub shares_boot_id: bool,
}

/// A saved guest (`vm snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    /// `ready`, or `creating` / `deleting` while that goes on.
    pub state: String,
    /// The VM it was taken from.
    pub source_vm: String,
    pub image: String,
    pub kernel: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub driver: String,
    /// Bytes its files occupy on disk (device state, RAM file, disk copy).
    pub size_bytes: u64,
    /// Host directory of its files.
    pub dir: String,
    /// Running VMs forked from it (they map its RAM file; delete is refused meanwhile).
    pub running_forks: Vec<String>,
    /// RFC 3339.
    /// Set for a warm template: the inputs it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_key: Option<String>,
    pub created_at: String,
}

/// Resource use of a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStats {
    pub name: String,
    pub state: VmState,
    /// Resident set size of the VMM process, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_rss_bytes: Option<u64>,
    /// User + system CPU time of the VMM process, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_cpu_ms: Option<u64>,
    /// Bytes the root disk occupies on the host.
    pub disk_allocated_bytes: u64,
    /// The root disk's virtual size, bytes.
    pub disk_size_bytes: u64,
}

/// One listening socket in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    /// Guest address it is bound to (`0.0.0.0`, `::`, `127.0.0.1`...).
    pub bind: String,
    /// How to reach it from the host by name, `<name>.vm:<port>` (needs the `.vm`
    /// resolver route, see `banger doctor`).
    pub endpoint: String,
    /// How to reach it from the host by address, `<guest address>:<port>`; null without
    /// a network.
    #[serde(default)]
    pub address_endpoint: Option<String>,
    #[serde(default)]
    pub process: Option<String>,
}

/// A host port forwarded to a guest port (`vm run -p`, `vm port publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPortInfo {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The host address it listens on (`127.0.0.1` unless chosen).
    pub host_ip: String,
    pub host_port: u16,
    pub guest_port: u16,
    /// `host_ip:host_port`, what a client on the host connects to.
    pub host_endpoint: String,
    /// `<guest address>:<guest_port>`, where it forwards to; null while the VM has no
    /// address (stopped).
    pub guest_endpoint: Option<String>,
    /// The canonical spec, `127.0.0.1:8080:80/tcp`.
    pub spec: String,
    /// Whether it listens now (the VM runs).
    pub active: bool,
}

/// What `vm ports` answers: every key always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPortsOutput {
    pub vm: String,
    pub state: VmState,
    /// The guest's address; null without a network.
    pub address: Option<String>,
    pub published: Vec<PublishedPortInfo>,
    /// Sockets listening in the guest (empty unless the VM runs).
    pub listening: Vec<PortInfo>,
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// Built or downloaded from the built-in catalog.
    Catalog,
    /// Imported from an OCI registry.
    Oci,
    /// A local ext4 file registered by the user.
    Registered,
    /// A VM's disk promoted to an image.
    Promoted,
}

/// A local image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub source: ImageSource,
    /// `sha256:<hex>` of the rootfs file.
    pub digest: String,
    pub size_bytes: u64,
    pub path: String,
    /// Kernel this image boots with by default.
    pub kernel: String,
    pub created_at: String,
    /// Bytes the (sparse) file really uses on disk.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Where it came from: an OCI `reference@digest`, the registered file, the VM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// How its guests start: `systemd` or `busybox` (banger's init for imports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub init: String,
    /// VMs whose record names this image.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Set by `image pull` and `image import`: false when the image was already current
    /// and nothing changed, true when it was built or recorded now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<bool>,
}

/// An entry of the built-in image or kernel catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    pub description: String,
    /// `build` (made locally from Debian packages) or `bundle` (downloaded, sha256-checked).
    pub kind: String,
    /// True when a local copy exists.
    pub pulled: bool,
    /// True for the image used when `--image` is omitted.
    #[serde(default)]
    pub default: bool,
}

/// A local kernel record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub name: String,
    /// Kernel release, e.g. `6.1.0-28-cloud-amd64`.
    pub version: String,
    /// ELF vmlinux (Firecracker, QEMU via PVH).
    pub vmlinux: String,
    pub initramfs: String,
    pub created_at: String,
    /// Bytes of vmlinux plus initramfs.
    #[serde(default)]
    pub size_bytes: u64,
    /// Images and VMs whose records name this kernel.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// State of the SQLite store as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub ok: bool,
    pub path: String,
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a VMM driver can run guests on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStatus {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

/// Answer to `health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub daemon_version: String,
    pub protocol: u32,
    pub pid: u32,
    pub uptime_secs: u64,
    pub store: StoreStatus,
    pub drivers: Vec<DriverStatus>,
    /// The accelerator new QEMU guests get: `kvm` or `tcg`.
    pub accelerator: String,
    /// VMs per state, as (state, count).
    pub vms: Vec<(VmState, u64)>,
}

/// Answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub daemon_version: String,
    pub protocol: u32,
}
