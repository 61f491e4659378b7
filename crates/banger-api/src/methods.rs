//! Every method the daemon serves, each as a type tying its wire name to its parameter and
//! output types. The daemon's dispatch `match` and the CLI's calls both go through these,
//! so a renamed field or method breaks the build rather than the protocol.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{
    CatalogEntry, Health, ImageInfo, KernelInfo, Pong, PublishedPortInfo, SnapshotInfo, VmInfo,
    VmPortsOutput, VmStats,
};

/// A protocol method: its wire name, parameters and successful output.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned + Send + 'static;
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// No parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Parameters naming one VM by name, unique name prefix, or id prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRef {
    pub vm: String,
}

macro_rules! methods {
    ($( $(#[$doc:meta])* $ty:ident = $name:literal : $params:ty => $output:ty; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
                type Output = $output;
            }
        )*
        /// Every method name the daemon knows, for `unknown_method` and completion.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

methods! {
    /// Liveness and protocol check.
    Ping = "ping": Empty => Pong;
    /// Daemon version, uptime, store and driver status.
    HealthCheck = "health": Empty => Health;

    /// Create (and boot) a VM. Long operation with stages.
    VmCreate = "vm.create": VmCreateParams => VmInfo;
    /// Boot a stopped VM. Long operation.
    VmStart = "vm.start": VmRef => VmInfo;
    /// Graceful stop with a timeout, then forced.
    VmStop = "vm.stop": VmStopParams => VmInfo;
    /// Stop then start; the guest gets a new boot id.
    VmRestart = "vm.restart": VmStopParams => VmInfo;
    /// Send a signal to the VMM process.
    VmKill = "vm.kill": VmKillParams => VmInfo;
    /// Delete a VM and its disk.
    VmDelete = "vm.delete": VmDeleteParams => VmInfo;
    /// Delete every VM that is not running.
    VmPrune = "vm.prune": Empty => PruneOutput;
    VmList = "vm.list": Empty => Vec<VmInfo>;
    VmShow = "vm.show": VmRef => VmInfo;
    /// Run a command in the guest through the agent; output streams as events.
    VmExec = "vm.exec": VmExecParams => ExecOutput;
    /// The VM's serial console log; with `follow`, streams until the client leaves.
    VmLogs = "vm.logs": VmLogsParams => Empty;
    VmStatsGet = "vm.stats": VmRef => VmStats;
    /// Published ports, and (running VMs) the guest's listening sockets.
    VmPorts = "vm.ports": VmRef => VmPortsOutput;
    /// Forward host ports to a running VM's guest ports, now and at every start.
    VmPortPublish = "vm.port.publish": VmPortSpecsParams => Vec<PublishedPortInfo>;
    /// Close and forget published ports (running VM or not); answers those removed.
    VmPortUnpublish = "vm.port.unpublish": VmPortSpecsParams => Vec<PublishedPortInfo>;
    /// Change vCPUs, memory or disk of a stopped VM.
    VmSet = "vm.set": VmSetParams => VmInfo;
    /// Replace (or remove) a VM's network policy; a running VM's rules change at once.
    VmPolicySet = "vm.policy.set": VmPolicySetParams => PolicyInfo;
    /// A VM's network policy and, while it runs, its drop counter.
    VmPolicyShow = "vm.policy.show": VmRef => PolicyInfo;
    /// Whether a destination would be allowed by a VM's policy, and why.
    VmPolicyCheck = "vm.policy.check": VmPolicyCheckParams => PolicyCheck;
    /// How to reach the guest with ssh (address, user, key, known_hosts).
    VmSshTarget = "vm.ssh_target": VmRef => SshTarget;
    /// Unpack a tar stream, sent as input frames, at a guest path (`docker cp` rules).
    VmCopyIn = "vm.copy_in": VmCopyInParams => CopyOutput;
    /// A guest path as a tar stream, in output events on stdout.
    VmCopyOut = "vm.copy_out": VmCopyOutParams => CopyOutput;
    /// What a guest path is (symlinks followed).
    VmStat = "vm.stat": VmPathParams => PathInfo;
    /// Save a running VM (memory, devices, disk); it keeps running. Long operation.
    VmSnapshot = "vm.snapshot": VmSnapshotParams => SnapshotInfo;
    /// New VMs restored from a snapshot (or from a running VM, snapshotted first).
    /// Long operation.
    VmFork = "vm.fork": VmForkParams => Vec<VmInfo>;
    SnapshotList = "snapshot.list": Empty => Vec<SnapshotInfo>;
    SnapshotShow = "snapshot.show": NameRef => SnapshotInfo;
    /// Refused while running forks map its RAM file.
    SnapshotDelete = "snapshot.delete": NameRef => SnapshotInfo;
    WorkspacePrepare = "vm.workspace.prepare": WorkspacePrepareParams => VmInfo;
    /// The guest workspace's changes as a patch, streamed as output events.
    WorkspaceExport = "vm.workspace.export": WorkspaceExportParams => WorkspaceExportOutput;
    /// Export, check (untrusted patch) and `git apply` into the host repository.
    WorkspaceApply = "vm.workspace.apply": WorkspaceApplyParams => WorkspaceApplyOutput;

    ImageList = "image.list": Empty => Vec<ImageInfo>;
    ImageCatalog = "image.catalog": Empty => Vec<CatalogEntry>;
    ImageShow = "image.show": NameRef => ImageInfo;
    /// Build or download a catalog image. Long operation.
    ImagePull = "image.pull": ImagePullParams => ImageInfo;
    /// Pull an OCI image from a registry and make it bootable. Long operation.
    ImageImport = "image.import": ImageImportParams => ImageInfo;
    /// Copy an ext4 file into banger's images (checked with `e2fsck -n`). Long operation.
    ImageRegister = "image.register": ImageRegisterParams => ImageInfo;
    /// A stopped VM's disk becomes an image. Long operation.
    ImagePromote = "image.promote": ImagePromoteParams => ImageInfo;
    /// Refused while a VM's record names the image.
    ImageDelete = "image.delete": NameRef => ImageInfo;
    ImageCachePrune = "image.cache_prune": CachePruneParams => CachePruneOutput;
    /// Keep warm templates for an image (or stop, with `off`).
    ImageWarm = "image.warm": ImageWarmParams => ImageWarmOutput;

    KernelCatalog = "kernel.catalog": Empty => Vec<CatalogEntry>;
    KernelList = "kernel.list": Empty => Vec<KernelInfo>;
    KernelShow = "kernel.show": NameRef => KernelInfo;
    /// Fetch and unpack a catalog kernel, build its initramfs. Long operation.
    KernelPull = "kernel.pull": NameRef => KernelInfo;
    KernelDelete = "kernel.delete": NameRef => KernelInfo;

    /// Names for shell completion.
    CompleteNames = "complete.names": CompleteParams => Vec<String>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCreateParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<u64>,
    #[serde(default)]
    pub nat: bool,
    /// A repository to copy in, as a disk attached at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSource>,
    /// `--allow HOST[:PORT]` values: the VM gets a network policy allowing only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// A network policy allowing nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny_all: bool,
    /// Boot cold even when a warm template matches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
    /// `-p [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]` values: published from the first boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// `vm port publish` (full specs) and `vm port unpublish` (specs or host sides,
/// `[HOST_IP:]HOST_PORT[/tcp|udp]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPortSpecsParams {
    pub vm: String,
    pub ports: Vec<String>,
}

/// `vm policy set`: exactly one of `allow` (non-empty), `deny_all`, `clear`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPolicySetParams {
    pub vm: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny_all: bool,
    /// Remove the policy: `--nat` alone decides again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// A VM's network policy as `vm policy show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub vm: String,
    /// The allow rules (`[]`: deny all); `None`: the VM has no policy.
    pub policy: Option<Vec<String>>,
    /// Whether the guest gets NAT (a policy allowing something implies it).
    pub nat: bool,
    pub running: bool,
    /// Packets dropped by the policy's rules since they were installed (running VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_packets: Option<u64>,
    /// Destinations the policy denied (running VMs), most packets first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<DeniedDestination>,
    /// Names banger's resolver refused the guest (running VMs), most often first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_names: Vec<RefusedName>,
}

/// A destination a policy dropped packets to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedDestination {
    pub address: String,
    /// `tcp`, `udp`, `icmp`, ... (or the protocol's number).
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub packets: u64,
}

/// A name banger's policy resolver refused, and how many times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedName {
    pub name: String,
    pub count: u64,
}

/// `vm policy check VM HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPolicyCheckParams {
    pub vm: String,
    /// `HOST[:PORT]`: a name or an IPv4 address.
    pub destination: String,
}

/// Whether a destination would be allowed, by which rule, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub vm: String,
    /// The destination as the policy compares it (names lowercased, no trailing dot).
    pub destination: String,
    pub allowed: bool,
    /// The `--allow` rule that allows it, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSnapshotParams {
    pub vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmForkParams {
    /// A snapshot, or a running VM (snapshotted first).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many VMs; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStopParams {
    pub vm: String,
    /// Seconds to wait for a graceful shutdown before forcing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmKillParams {
    pub vm: String,
    /// Signal name, e.g. `KILL`, `TERM` (with or without `SIG`).
    pub signal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDeleteParams {
    pub vm: String,
    /// Delete even if running (the VM is killed first).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneOutput {
    pub deleted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmExecParams {
    pub vm: String,
    /// argv; the agent runs it without a shell.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The client streams the command's stdin as input frames; without it the command
    /// reads /dev/null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Run the command on a terminal in the guest of this size; its output arrives as
    /// stdout only, and `resize` input frames change the size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<TerminalSize>,
    /// Run as this guest user (a name or uid from its /etc/passwd) instead of root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// What `vm.copy_in` receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopySourceKind {
    /// One file or symlink, the stream's only entry.
    File,
    /// A directory under its own name.
    Directory,
    /// A directory's children (`SRC/.`).
    Contents,
    /// A tar stream the user supplied (`-`).
    Stream,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCopyInParams {
    pub vm: String,
    /// Absolute guest path.
    pub dst: String,
    pub source: CopySourceKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCopyOutParams {
    pub vm: String,
    /// Absolute guest path.
    pub src: String,
    /// Only a directory's children (`SRC/.`).
    #[serde(default)]
    pub contents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOutput {
    /// Entries (files, directories, links) copied.
    pub entries: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Where the copy landed in the guest (`vm.copy_in`) or what was read (`vm.copy_out`).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPathParams {
    pub vm: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// `directory`, `file` or `other`; absent when nothing is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLogsParams {
    pub vm: String,
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_lines: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSetParams {
    pub vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    pub name: String,
    pub address: String,
    pub user: String,
    pub identity_file: String,
    pub known_hosts_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePrepareParams {
    pub vm: String,
    pub source: String,
    #[serde(flatten)]
    pub options: WorkspaceOptions,
}

/// How a workspace is copied (`vm run PATH`, `vm workspace prepare`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceOptions {
    /// Absolute guest path; `/root/repo` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_path: Option<String>,
    /// `overlay` (default) or `full_copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub include_untracked: bool,
}

/// The repository `vm create` builds into a second disk before the boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSource {
    /// Absolute host path: the repository or a directory inside it.
    pub source: String,
    #[serde(flatten)]
    pub options: WorkspaceOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceExportParams {
    pub vm: String,
    /// Diff against this commit (so the guest's commits since it are included); the
    /// default is the guest's `HEAD` (`diff`) or the prepared commit (`mbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// The repository in the guest when the VM has no workspace record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_path: Option<String>,
    #[serde(default)]
    pub format: ExportFormat,
}

/// What `vm.workspace.export` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// One `git diff --binary` patch for `git apply`.
    #[default]
    Diff,
    /// `git format-patch` of the guest's commits plus one for uncommitted changes, for
    /// `git am`.
    Mbox,
}

/// The patch itself streams as output events (stdout); this is what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceExportOutput {
    /// The commit the patch is against (the empty tree's id for a repository with no
    /// commits).
    pub base: String,
    pub guest_path: String,
    pub format: ExportFormat,
    /// Bytes of patch.
    pub bytes: u64,
    /// The changed files (`diff` format).
    pub files: Vec<ChangedFile>,
}

/// One file of an exported patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// `added`, `deleted`, `modified`, `renamed`, `copied`.
    pub status: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceApplyParams {
    pub vm: String,
    /// Absolute host path of the repository's top directory; the workspace's host
    /// repository when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// As for export; the default is the prepared commit, so the guest's commits are
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceApplyOutput {
    pub repo: String,
    pub base: String,
    pub files: Vec<ChangedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRef {
    pub name: String,
}

/// `image warm IMAGE [--off]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageWarmParams {
    pub image: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
}

/// What `image warm` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageWarmOutput {
    pub image: String,
    /// The image keeps warm templates now.
    pub warm: bool,
    /// False when it already was as asked.
    pub changed: bool,
    /// Templates removed (with `off`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_templates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePullParams {
    pub name: String,
    /// Rebuild even when the image is current.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageImportParams {
    /// OCI reference, e.g. `localhost:5000/app:latest`.
    pub reference: String,
    /// Name of the new image; derived from the reference when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rebuild even when the same image was imported before.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePruneParams {
    /// Only report what would be removed.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRegisterParams {
    pub name: String,
    /// Host path of an ext4 root filesystem.
    pub rootfs: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePromoteParams {
    pub vm: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePruneOutput {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    /// True when nothing was removed because it was a dry run.
    #[serde(default)]
    pub dry_run: bool,
}

/// What to complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompleteKind {
    Vm,
    Image,
    Kernel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteParams {
    pub kind: CompleteKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_unique() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
