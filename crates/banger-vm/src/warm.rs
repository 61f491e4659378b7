//! Warm starts: `vm snapshot` saves a running VM, `vm fork` makes new VMs from the saved
//! guest, restored instead of booted (see ARCHITECTURE.md "Warm starts").
//!
//! A snapshot is a directory `<state>/snapshots/<id>` (0700) holding `state` (device
//! state, saved with RAM left out), `mem` (guest RAM) and `disk.ext4` (the root disk as
//! it was at the pause), all owner-only and read-only once made. Taking one: the source
//! is paused and saved to a self-contained stream, its disk copied (reflink, else
//! sparse), and the source resumed; then a second VMM that never runs the guest loads
//! the stream into a shared RAM file and saves the device state alone. Every fork maps
//! `mem` copy-on-write, so clean pages stay shared between forks and `mem` is never
//! written. A fork's disk is its own raw copy (reflink, else sparse; no qcow2 overlay, so
//! the offline patch and Firecracker keep working on it).
//!
//! A fork becomes a machine of its own before anything runs in it: one agent request
//! sets the clock, reseeds the RNG, sets hostname, MAC, address and route, and replaces
//! the machine-id and ssh host keys (`banger-agent`'s `identity`). Its boot id stays the
//! snapshot's until its first cold boot; `forked_from` says so.
//!
//! Crash safety: the snapshot row is written `creating` before any file and `ready`
//! after the last; a fork is a VM row `creating` until it runs. The startup reconcile
//! removes a `creating` or `deleting` snapshot with its files, and resumes a source VM
//! that a killed daemon left paused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banger_model::progress::{ProgressSink, RESERVE_NAME_STAGE};
use banger_model::{
    ByteSize, ForkOrigin, ResourceName, VmId, VmName, VmRecord, VmState, resolve_ref,
};
use banger_proto::agent::{IdentityNet, IdentityRequest, SshHostKey};
use banger_store::SnapshotRecord;
use banger_vmm::{
    DiskFormat, DriverKind, LaunchSpec, MemoryFile, NetAttachment, RootDiskSwap, SnapshotRequest,
    WarmLaunch,
};

use crate::cmdline::kernel_cmdline;
use crate::create::CreateRequest;
use crate::error::{VmError, chain};
use crate::service::{Live, VmService, now};
use crate::{disk, handle_file};

/// Snapshot states as the store keeps them.
pub const CREATING: &str = "creating";
pub const READY: &str = "ready";
pub const DELETING: &str = "deleting";

/// The most VMs one `vm fork` makes.
pub const MAX_FORKS: u32 = 64;

/// How long the identity request may take (Debian's `ssh-keygen -A` under TCG is the
/// slow part).
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of host entropy each fork's kernel RNG is credited with.
const SEED_BYTES: usize = 64;

/// The files of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    pub dir: PathBuf,
    /// Device state (RAM left out).
    pub state: PathBuf,
    /// Guest RAM.
    pub mem: PathBuf,
    pub disk: PathBuf,
    /// The self-contained stream, only while the snapshot is being made.
    pub stream: PathBuf,
    /// Sockets of the VMM that converts the stream.
    pub run_dir: PathBuf,
    /// That VMM's handle while it runs, for the startup reconcile.
    pub converter_handle: PathBuf,
}

impl SnapshotPaths {
    pub fn new(dirs: &banger_model::dirs::Dirs, id: &str) -> SnapshotPaths {
        let dir = snapshots_dir(&dirs.state).join(id);
        SnapshotPaths {
            state: dir.join("state"),
            mem: dir.join("mem"),
            disk: dir.join("disk.ext4"),
            stream: dir.join("stream.partial"),
            run_dir: dirs.runtime.join("snapshots").join(id),
            converter_handle: dirs
                .runtime
                .join("snapshots")
                .join(id)
                .join("converter.json"),
            dir,
        }
    }
}

/// The snapshot id of its paths (the directory's name).
fn paths_id(paths: &SnapshotPaths) -> String {
    paths
        .dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `<state>/snapshots`.
pub fn snapshots_dir(state: &Path) -> PathBuf {
    state.join("snapshots")
}

/// What `vm fork` asks for.
#[derive(Debug, Clone, Default)]
pub struct ForkRequest {
    /// A snapshot (name or id prefix) or, failing that, a running VM, which is
    /// snapshotted first.
    pub source: String,
    pub name: Option<String>,
    pub count: u32,
}

/// The names of `count` forks: `name`, or `name-1..name-N` for several; generated names
/// (`None`) when no name is given.
pub fn fork_names(name: Option<&str>, count: u32) -> Vec<Option<String>> {
    match name {
        None => vec![None; count as usize],
        Some(name) if count == 1 => vec![Some(name.to_string())],
        Some(name) => (1..=count).map(|i| Some(format!("{name}-{i}"))).collect(),
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, not apparent sizes).
pub fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.blocks() * 512)
        .sum()
}

/// The `pause and save` stage's detail.
fn saved_detail(report: &banger_vmm::SnapshotReport, method: disk::DiskMethod) -> String {
    format!(
        "paused {} ms; disk by {}",
        report.took.as_millis(),
        method.as_str()
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<(), VmError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(VmError::io("cannot set the mode of a snapshot file"))
}

fn host_seed() -> Result<Vec<u8>, VmError> {
    use std::io::Read as _;
    let mut seed = vec![0; SEED_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut seed))
        .map_err(VmError::io("cannot read host entropy"))?;
    Ok(seed)
}

impl VmService {
    /// Refuses before any work when the driver cannot save guests (both can today; a
    /// new driver has to say how it saves).
    fn require_snapshots(&self) -> Result<(), VmError> {
        match self.driver.kind() {
            DriverKind::Qemu | DriverKind::Firecracker => Ok(()),
        }
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>, VmError> {
        self.with_store(|s| s.list_snapshots())
    }

    /// A snapshot by exact name, id, or unique prefix of either.
    pub fn find_snapshot(&self, query: &str) -> Result<SnapshotRecord, VmError> {
        let snapshots = self.list_snapshots()?;
        resolve_ref(query, &snapshots, |s| s.id.as_str(), |s| s.name.as_str())
            .cloned()
            .map_err(|error| match error {
                banger_model::RefError::NotFound { .. } => {
                    VmError::NotFound(format!("no snapshot named {query:?}"))
                }
                banger_model::RefError::Ambiguous { query, candidates } => {
                    VmError::Ambiguous { query, candidates }
                }
                other => VmError::BadRequest(other.to_string()),
            })
    }

    /// Running VMs forked from `snapshot`: they map its RAM file.
    pub fn running_forks(&self, snapshot: &SnapshotRecord) -> Result<Vec<String>, VmError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|vm| {
                vm.runtime
                    .forked_from
                    .as_ref()
                    .is_some_and(|origin| origin.snapshot_id == snapshot.id && origin.restored_boot)
                    && matches!(
                        vm.state,
                        VmState::Creating
                            | VmState::Starting
                            | VmState::Running
                            | VmState::Stopping
                    )
            })
            .map(|vm| vm.name.to_string())
            .collect())
    }

    /// Saves the running VM `query` as snapshot `name` (generated when `None`); the VM
    /// runs on afterwards.
    pub async fn snapshot(
        self: &Arc<Self>,
        query: &str,
        name: Option<String>,
        progress: &dyn ProgressSink,
    ) -> Result<SnapshotRecord, VmError> {
        self.snapshot_as(query, name, None, progress).await
    }

    /// [`Self::snapshot`], recording `template_key` for a warm template.
    pub(crate) async fn snapshot_as(
        self: &Arc<Self>,
        query: &str,
        name: Option<String>,
        template_key: Option<String>,
        progress: &dyn ProgressSink,
    ) -> Result<SnapshotRecord, VmError> {
        self.require_snapshots()?;
        let vm = self.find(query)?;
        if let Some(name) = &name {
            ResourceName::parse_as("snapshot name", name)
                .map_err(|e| VmError::BadRequest(e.to_string()))?;
        }
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let vm = self.reload(&vm.id)?;
        let live = match (vm.state, self.live_handle(&vm.id)) {
            (VmState::Running, Some(live)) => live,
            _ => {
                return Err(VmError::Conflict(format!(
                    "VM {} is {}; only a running VM can be snapshotted (`banger vm start {}`)",
                    vm.name,
                    vm.state.as_str(),
                    vm.name
                )));
            }
        };
        if !self.extra_disks(&vm).is_empty() {
            return Err(VmError::Conflict(format!(
                "VM {} has a workspace disk; snapshots of VMs with a workspace disk are not \
                 yet available (snapshot a VM made without PATH, then `vm workspace prepare` \
                 its forks)",
                vm.name
            )));
        }
        progress.stage_started(RESERVE_NAME_STAGE);
        let id = VmId::from_random(fastrand::u64(..)).to_string();
        let name = name.unwrap_or_else(|| format!("{}-{}", vm.name, &id[..6]));
        let paths = SnapshotPaths::new(&self.cfg.dirs, &id);
        let mut record = SnapshotRecord {
            id: id.clone(),
            name,
            state: CREATING.into(),
            source_vm: vm.id.to_string(),
            source_name: vm.name.to_string(),
            image: vm.image.clone(),
            kernel: vm.kernel.clone(),
            vcpus: vm.spec.vcpus,
            memory_bytes: vm.spec.memory.bytes(),
            disk_bytes: vm.spec.disk.bytes(),
            nat: vm.nat,
            nic: vm.runtime.address.is_some(),
            driver: self.driver.kind().to_string(),
            dir: paths.dir.display().to_string(),
            size_bytes: 0,
            created_at: now(),
            template_key,
            policy: vm.policy.clone(),
        };
        self.with_store(|s| s.insert_snapshot(&record))
            .map_err(|err| match err {
                VmError::Store(err)
                    if matches!(*err, banger_store::StoreError::AlreadyExists { .. }) =>
                {
                    VmError::AlreadyExists(format!("snapshot {}", record.name))
                }
                other => other,
            })?;
        progress.stage_done(RESERVE_NAME_STAGE, Some(&record.name));
        self.fault_point("snapshot: row creating");
        match self.make_snapshot(&vm, &live, &paths, progress).await {
            Ok(()) => {
                record.size_bytes = allocated_bytes(&paths.dir);
                record.state = READY.into();
                self.with_store(|s| s.set_snapshot_state(&id, READY, record.size_bytes))?;
                self.fault_point("snapshot: row ready");
                Ok(record)
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&paths.dir);
                let _ = std::fs::remove_dir_all(&paths.run_dir);
                let _ = std::fs::remove_dir_all(self.paths(&vm.id).outbox.join(&id));
                let _ = self.with_store(|s| s.delete_snapshot(&id));
                Err(error)
            }
        }
    }

    async fn make_snapshot(
        self: &Arc<Self>,
        vm: &VmRecord,
        live: &Live,
        paths: &SnapshotPaths,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        if self.driver.kind() == DriverKind::Firecracker {
            // Firecracker writes the files itself, by path, and may reach only its VM's
            // outbox: the snapshot's directory is made there and reached through a
            // symlink at its own path until it is published (`publish_from_outbox`).
            let staging = self.paths(&vm.id).outbox.join(paths_id(paths));
            make_private_dir(&staging)?;
            if let Some(parent) = paths.dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(VmError::io("cannot create the snapshots directory"))?;
            }
            std::os::unix::fs::symlink(&staging, &paths.dir)
                .map_err(VmError::io("cannot link the snapshot directory"))?;
        } else {
            make_private_dir(&paths.dir)?;
        }
        self.fault_point("snapshot: directory made");
        if self.driver.kind() == DriverKind::Firecracker {
            return self
                .make_firecracker_snapshot(vm, live, paths, progress)
                .await;
        }
        let vm_paths = self.paths(&vm.id);

        progress.stage_started("pause and save");
        let saved = self
            .driver
            .snapshot(
                &live.handle,
                &SnapshotRequest {
                    state_file: paths.stream.clone(),
                    ignore_shared: false,
                    memory_file: None,
                    root_disk: None,
                },
            )
            .await;
        // The disk is copied while the guest is paused, so it matches the saved state.
        let copied = match &saved {
            Ok(_) => {
                self.fault_point("snapshot: saved, source paused");
                let copied =
                    disk::provision(self.runner.as_ref(), &vm_paths.root_disk, &paths.disk).await;
                self.fault_point("snapshot: disk copied");
                Some(copied)
            }
            Err(_) => None,
        };
        self.resume_source(vm, live).await;
        let report = saved?;
        let method = copied.expect("copied after a save")?;
        progress.stage_done("pause and save", Some(&saved_detail(&report, method)));

        progress.stage_started("save memory");
        let kernel = self.resolve_kernel(&vm.kernel, progress).await?;
        let spec = LaunchSpec {
            vm_name: format!("snapshot-{}", vm.name),
            vcpus: vm.spec.vcpus,
            memory_mib: vm.spec.memory.as_mib(),
            kernel: kernel.vmlinux.clone(),
            initramfs: Some(kernel.initramfs.clone()),
            cmdline: kernel_cmdline(vm.name.as_str(), None),
            root_disk: paths.disk.clone(),
            root_disk_format: DiskFormat::Raw,
            // Snapshots of VMs with a workspace disk are refused (see `snapshot`).
            extra_disks: Vec::new(),
            run_dir: paths.run_dir.clone(),
            serial_log: paths.dir.join("convert.log"),
            net: None,
            outbox: None,
        };
        // The saved NIC needs a tap behind it (its state carries the tap's virtio
        // header), even though this guest never runs: a scratch tap, removed below.
        let owner =
            VmId::parse(&paths_id(paths)).map_err(|e| VmError::BadRequest(e.to_string()))?;
        let mut spec = spec;
        let mut scratch = None;
        if vm.runtime.address.is_some() {
            let network = self.network().ok_or_else(|| {
                VmError::Conflict(
                    "guest networking went away; cannot save a guest with a NIC".into(),
                )
            })?;
            let (tap_name, tap_fd) = network.scratch_tap(&owner).await?;
            scratch = Some((network, tap_name.clone()));
            spec.net = Some(NetAttachment {
                tap_name,
                tap_fd,
                mac: "52:54:00:00:00:01".into(),
            });
        }
        let warm = WarmLaunch {
            memory: Some(MemoryFile {
                path: paths.mem.clone(),
                shared: true,
            }),
            incoming: Some(paths.stream.clone()),
            ignore_shared: false,
            paused: true,
            saved_disk: None,
        };
        let converted = self.convert(&spec, &warm, paths).await;
        drop(spec);
        if let Some((network, tap)) = scratch
            && let Err(error) = network.remove_tap(&tap).await
        {
            tracing::warn!(%tap, error = %chain(&error), "cannot remove the scratch tap");
        }
        converted?;
        std::fs::remove_file(&paths.stream)
            .map_err(VmError::io("cannot remove the snapshot's stream"))?;
        let _ = std::fs::remove_file(paths.dir.join("convert.log"));
        for file in [&paths.state, &paths.mem, &paths.disk] {
            set_mode(file, 0o400)?;
        }
        self.fault_point("snapshot: files sealed");
        progress.stage_done(
            "save memory",
            Some(&crate::warm::human_bytes(allocated_bytes(&paths.dir))),
        );
        Ok(())
    }

    /// Lets the snapshot's source run again; a failure is logged (the startup reconcile
    /// resumes a source left paused).
    async fn resume_source(&self, vm: &VmRecord, live: &Live) {
        if let Err(error) = self.driver.resume(&live.handle).await {
            tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot resume the VM after its snapshot");
        }
        self.fault_point("snapshot: source resumed");
    }

    /// Firecracker writes the device state and the memory file itself, in one save (no
    /// second VMM): pause, copy the disk, save with the state naming that copy (see
    /// `banger_vmm::RootDiskSwap`), resume. The disk copy stays writable by the owner:
    /// Firecracker opens a restored drive read-write before each fork's drive is pointed
    /// at the fork's own disk (the guest is paused meanwhile and never writes it).
    async fn make_firecracker_snapshot(
        &self,
        vm: &VmRecord,
        live: &Live,
        paths: &SnapshotPaths,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let vm_paths = self.paths(&vm.id);
        progress.stage_started("pause and save");
        let paused = self.driver.pause(&live.handle).await;
        let saved = match paused {
            Ok(()) => {
                self.fault_point("snapshot: saved, source paused");
                match disk::provision(self.runner.as_ref(), &vm_paths.root_disk, &paths.disk).await
                {
                    Ok(method) => {
                        self.fault_point("snapshot: disk copied");
                        let request = SnapshotRequest {
                            state_file: paths.state.clone(),
                            ignore_shared: false,
                            memory_file: Some(paths.mem.clone()),
                            root_disk: Some(RootDiskSwap {
                                saved_as: paths.disk.clone(),
                                live: vm_paths.root_disk.clone(),
                            }),
                        };
                        self.driver
                            .snapshot(&live.handle, &request)
                            .await
                            .map(|report| (report, method))
                            .map_err(VmError::from)
                    }
                    Err(error) => Err(VmError::from(error)),
                }
            }
            Err(error) => Err(error.into()),
        };
        self.resume_source(vm, live).await;
        let (report, method) = saved?;
        progress.stage_done("pause and save", Some(&saved_detail(&report, method)));
        for file in [&paths.state, &paths.mem] {
            set_mode(file, 0o400)?;
        }
        set_mode(&paths.disk, 0o600)?;
        self.fault_point("snapshot: files sealed");
        publish_from_outbox(&self.paths(&vm.id).outbox, paths)
    }

    /// The outbox a Firecracker VMM saves into (made here, 0700); `None` for QEMU, whose
    /// saves go into a descriptor the daemon passes.
    pub(crate) fn outbox(
        &self,
        paths: &crate::layout::VmPaths,
    ) -> Result<Option<PathBuf>, VmError> {
        match self.driver.kind() {
            DriverKind::Firecracker => {
                make_private_dir(&paths.outbox)?;
                Ok(Some(paths.outbox.clone()))
            }
            DriverKind::Qemu => Ok(None),
        }
    }

    /// Loads the stream into the shared RAM file with a VMM that never runs the guest,
    /// and saves the device state alone.
    async fn convert(
        &self,
        spec: &LaunchSpec,
        warm: &WarmLaunch,
        paths: &SnapshotPaths,
    ) -> Result<(), VmError> {
        // The RAM file is created by QEMU; make it owner-only before it holds anything.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&paths.mem)
            .map_err(VmError::io("cannot create the snapshot's RAM file"))?;
        set_mode(&paths.mem, 0o600)?;
        let converter = self.driver.launch_warm(spec, warm).await?;
        // Recorded so that a daemon killed from here on leaves a process the next one
        // can stop by its identity (pid + start time), not only by its command line.
        let recorded = std::fs::create_dir_all(&paths.run_dir)
            .and_then(|()| handle_file::write(&paths.converter_handle, &converter));
        if let Err(error) = recorded {
            self.stop_process(&converter, Duration::ZERO).await;
            return Err(VmError::io("cannot record the converting VMM")(error));
        }
        self.fault_point("snapshot: converter launched");
        let lean = self
            .driver
            .snapshot(
                &converter,
                &SnapshotRequest {
                    state_file: paths.state.clone(),
                    ignore_shared: true,
                    memory_file: None,
                    root_disk: None,
                },
            )
            .await;
        if lean.is_ok() {
            self.fault_point("snapshot: state saved");
        }
        // With shared RAM, a guest that ran would write into the file: it never does.
        self.stop_process(&converter, Duration::ZERO).await;
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        self.fault_point("snapshot: converter stopped");
        lean?;
        Ok(())
    }

    /// Deletes a snapshot and its files; refused while a running fork maps its RAM.
    pub async fn delete_snapshot(&self, query: &str) -> Result<SnapshotRecord, VmError> {
        let snapshot = self.find_snapshot(query)?;
        let forks = self.running_forks(&snapshot)?;
        if !forks.is_empty() {
            return Err(VmError::Conflict(format!(
                "snapshot {} is in use by running forks: {} (their memory maps its RAM file); \
                 stop or delete them first",
                snapshot.name,
                forks.join(", ")
            )));
        }
        self.with_store(|s| s.set_snapshot_state(&snapshot.id, DELETING, snapshot.size_bytes))?;
        let paths = SnapshotPaths::new(&self.cfg.dirs, &snapshot.id);
        remove_snapshot_files(&paths)?;
        self.with_store(|s| s.delete_snapshot(&snapshot.id))?;
        Ok(snapshot)
    }

    /// Makes `request.count` VMs from a snapshot (or from a running VM, snapshotted
    /// first). Each fork is restored, made a machine of its own, and running.
    pub async fn fork(
        self: &Arc<Self>,
        request: ForkRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Vec<VmRecord>, VmError> {
        self.require_snapshots()?;
        if request.count == 0 || request.count > MAX_FORKS {
            return Err(VmError::BadRequest(format!(
                "-n must be 1 to {MAX_FORKS} (got {})",
                request.count
            )));
        }
        let names = fork_names(request.name.as_deref(), request.count);
        let names = names
            .into_iter()
            .map(|name| match name {
                Some(name) => VmName::parse(&name)
                    .map(Some)
                    .map_err(|e| VmError::BadRequest(e.to_string())),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = match self.find_snapshot(&request.source) {
            Ok(snapshot) => snapshot,
            Err(VmError::NotFound(_)) => match self.find(&request.source) {
                Ok(vm) => self.snapshot(vm.id.as_str(), None, progress).await?,
                Err(VmError::NotFound(_)) => {
                    return Err(VmError::NotFound(format!(
                        "no snapshot or VM named {:?}",
                        request.source
                    )));
                }
                Err(other) => return Err(other),
            },
            Err(other) => return Err(other),
        };
        if snapshot.state != READY {
            return Err(VmError::Conflict(format!(
                "snapshot {} is {}",
                snapshot.name, snapshot.state
            )));
        }
        if snapshot.driver != self.driver.kind().to_string() {
            return Err(VmError::BadRequest(format!(
                "snapshot {} was made by {}, and this daemon runs {}",
                snapshot.name,
                snapshot.driver,
                self.driver.kind()
            )));
        }
        let mut forks = Vec::new();
        for name in names {
            forks.push(self.fork_one(&snapshot, name, progress).await?);
        }
        Ok(forks)
    }

    async fn fork_one(
        self: &Arc<Self>,
        snapshot: &SnapshotRecord,
        name: Option<VmName>,
        progress: &dyn ProgressSink,
    ) -> Result<VmRecord, VmError> {
        // `..default()` keeps this building when `CreateRequest` grows a field.
        #[allow(clippy::needless_update)]
        let req = CreateRequest {
            name: name.as_ref().map(|n| n.to_string()),
            image: Some(snapshot.image.clone()),
            kernel: Some(snapshot.kernel.clone()),
            vcpus: Some(snapshot.vcpus),
            memory_mib: Some(snapshot.memory_bytes >> 20),
            disk_mib: Some(snapshot.disk_bytes >> 20),
            nat: snapshot.nat,
            // A fork is confined as its source was: same allow-list, same resolver.
            policy: snapshot.policy.clone(),
            ..CreateRequest::default()
        };
        let spec = banger_model::VmSpec {
            vcpus: snapshot.vcpus,
            memory: ByteSize(snapshot.memory_bytes),
            disk: ByteSize(snapshot.disk_bytes),
        };
        self.check_disk_room(spec.disk, 0)?;
        progress.stage_started(RESERVE_NAME_STAGE);
        let mut vm = self.reserve(name, spec, &snapshot.image, &req).await?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        progress.stage_done(RESERVE_NAME_STAGE, Some(vm.name.as_str()));
        match self.restore_fork(&mut vm, snapshot, progress).await {
            Ok(()) => Ok(vm),
            Err(error) => {
                self.discard(&vm).await;
                Err(error)
            }
        }
    }

    pub(crate) async fn restore_fork(
        self: &Arc<Self>,
        vm: &mut VmRecord,
        snapshot: &SnapshotRecord,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let snap = SnapshotPaths::new(&self.cfg.dirs, &snapshot.id);
        let paths = self.paths(&vm.id);
        vm.kernel = snapshot.kernel.clone();
        vm.runtime.dir = Some(paths.dir.display().to_string());
        if vm.runtime.started_from.is_none() {
            vm.runtime.started_from = Some(crate::template::STARTED_FROM_SNAPSHOT.into());
        }
        vm.runtime.forked_from = Some(ForkOrigin {
            snapshot: snapshot.name.clone(),
            snapshot_id: snapshot.id.clone(),
            source_vm: snapshot.source_name.clone(),
            restored_boot: true,
        });
        self.save(vm)?;

        progress.stage_started("root disk");
        std::fs::create_dir_all(&paths.dir)
            .map_err(VmError::io("cannot create the VM directory"))?;
        // A template keeps one copy of its disk ready (`spare.rs`); a user's snapshot is
        // copied each time.
        let template = snapshot.template_key.is_some();
        let method = if template && crate::spare::take(&snap, &paths.root_disk) {
            "spare copy, made in the background"
        } else {
            disk::provision(self.runner.as_ref(), &snap.disk, &paths.root_disk)
                .await?
                .as_str()
        };
        progress.stage_done("root disk", Some(method));

        let kernel = self.resolve_kernel(&vm.kernel, progress).await?;
        std::fs::create_dir_all(&paths.run_dir)
            .map_err(VmError::io("cannot create the VM's runtime directory"))?;
        let mut attachment = if snapshot.nic {
            self.attach_network(vm).await?
        } else {
            None
        };
        if snapshot.nic && attachment.is_none() {
            return Err(VmError::Conflict(format!(
                "snapshot {} has a network card, and guest networking is off (banger-helper \
                 is not reachable); start the helper, or fork a snapshot of a VM without one",
                snapshot.name
            )));
        }
        let identity_net = attachment.as_ref().map(|a| IdentityNet {
            interface: "eth0".into(),
            mac: a.mac.to_string(),
            address: format!("{}/{}", a.guest_ip, a.prefix_len),
            gateway: a.gateway.to_string(),
        });
        let address = attachment.as_ref().map(|a| a.guest_ip);
        // Published ports (a `vm create -p` restored from a warm template) listen from
        // before the restore, as on a cold boot.
        if let Err(error) = self.open_published(vm, address) {
            self.detach_network(vm).await;
            return Err(error);
        }
        let net = match attachment.take() {
            Some(a) => Some(NetAttachment {
                tap_name: a.tap_name,
                tap_fd: a.tap_fd,
                mac: a.mac.to_string(),
            }),
            None => None,
        };
        let spec = LaunchSpec {
            vm_name: vm.name.to_string(),
            vcpus: vm.spec.vcpus,
            memory_mib: vm.spec.memory.as_mib(),
            kernel: kernel.vmlinux.clone(),
            initramfs: Some(kernel.initramfs.clone()),
            cmdline: kernel_cmdline(vm.name.as_str(), None),
            root_disk: paths.root_disk.clone(),
            root_disk_format: DiskFormat::Raw,
            // Snapshots of VMs with a workspace disk are refused (see `snapshot`).
            extra_disks: Vec::new(),
            run_dir: paths.run_dir.clone(),
            serial_log: paths.serial_log.clone(),
            net,
            outbox: self.outbox(&paths)?,
        };
        let warm = WarmLaunch {
            memory: Some(MemoryFile {
                path: snap.mem.clone(),
                shared: false,
            }),
            incoming: Some(snap.state.clone()),
            ignore_shared: true,
            paused: false,
            // Firecracker's state names the snapshot's disk and opens it at load, before
            // the drive is pointed at the fork's own; QEMU's names no file.
            saved_disk: (self.driver.kind() == DriverKind::Firecracker).then(|| snap.disk.clone()),
        };

        progress.stage_started("restore");
        let launched = self.driver.launch_warm(&spec, &warm).await;
        drop(spec);
        let handle = match launched {
            Ok(handle) => handle,
            Err(error) => {
                self.detach_network(vm).await;
                return Err(error.into());
            }
        };
        handle_file::write(&paths.handle_file, &handle)
            .map_err(VmError::io("cannot record the VMM handle"))?;
        self.set_live(
            &vm.id,
            Some(Live {
                handle: handle.clone(),
                agent: None,
            }),
        );
        vm.state = VmState::Starting;
        vm.runtime.accelerator = Some(handle.accelerator.to_string());
        vm.runtime.address = address.map(|ip| ip.to_string());
        vm.runtime.last_error = None;
        self.save(vm)?;
        progress.stage_done(
            "restore",
            Some(&format!(
                "warm from snapshot {} ({} under {})",
                snapshot.name,
                self.driver.kind(),
                handle.accelerator
            )),
        );

        progress.stage_started("agent ready");
        let (agent, hello) = self
            .wait_agent(&handle, self.cfg.ready_timeout)
            .await
            .map_err(|reason| VmError::BootFailed {
                reason,
                serial_tail: VmService::serial_tail(&paths.serial_log, 25),
            })?;
        progress.stage_done("agent ready", address.map(|a| a.to_string()).as_deref());

        progress.stage_started("new identity");
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let request = IdentityRequest {
            unix_nanos,
            seed: host_seed()?,
            hostname: vm.name.to_string(),
            net: identity_net,
            ssh_host_key: self.clone_host_key(&paths.run_dir, vm).await,
        };
        // Only OpenSSH takes the host-made key ("ssh host keys" done); Dropbear makes its
        // own, which is then read from the guest as on a cold boot.
        let made_key = request.ssh_host_key.as_ref().map(|key| key.public.clone());
        let (done, warnings) = tokio::time::timeout(IDENTITY_TIMEOUT, agent.identity(request))
            .await
            .map_err(|_| {
                VmError::Conflict(format!(
                    "the guest did not finish its new identity within {}s",
                    IDENTITY_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|error| VmError::Agent(Box::new(error)))?;
        for warning in &warnings {
            tracing::warn!(vm = %vm.name, %warning, "identity fix-up");
        }
        progress.stage_done("new identity", Some(&done.join(", ")));
        let host_key = made_key.filter(|_| done.iter().any(|step| step == "ssh host keys"));

        let live = self.go_live(vm, handle, agent, &hello.boot_id, address, host_key);
        // The next spare disk is copied once this guest runs, not while it is restored.
        if snapshot.template_key.is_some() {
            self.spawn_spare(&snapshot.id);
        }
        live
    }

    /// A new ssh host key for a clone, made on the host (see `banger_ssh::host_key`); on
    /// failure the guest's agent makes its own.
    async fn clone_host_key(&self, scratch: &Path, vm: &VmRecord) -> Option<SshHostKey> {
        match banger_ssh::generate_host_key(scratch, self.runner.as_ref()).await {
            Ok(pair) => Some(SshHostKey {
                private: pair.private,
                public: pair.public,
            }),
            Err(error) => {
                tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot make a host key on the host; the guest makes its own");
                None
            }
        }
    }

    /// Startup reconcile of snapshots: a `creating` or `deleting` row and its files go
    /// (a source VM paused by the interrupted save is resumed), and a directory under
    /// `snapshots/` without a row is removed. Returns the names removed.
    pub async fn reconcile_snapshots(&self) -> Result<Vec<String>, VmError> {
        let mut removed = Vec::new();
        let snapshots = self.list_snapshots()?;
        for snapshot in &snapshots {
            if snapshot.state == READY {
                continue;
            }
            let paths = SnapshotPaths::new(&self.cfg.dirs, &snapshot.id);
            if let Some(converter) = handle_file::read(&paths.converter_handle)
                && banger_sys::process::is_same_process_alive(converter.pid, converter.start_time)
            {
                self.stop_process(&converter, Duration::ZERO).await;
            }
            crate::reconcile::kill_processes_mentioning(&paths.run_dir).await;
            if snapshot.state == CREATING
                && let Ok(id) = VmId::parse(&snapshot.source_vm)
                && let Some(live) = self.live_handle(&id)
                && let Err(error) = self.driver.resume(&live.handle).await
            {
                tracing::warn!(vm = %snapshot.source_name, error = %chain(&error), "cannot resume the VM of an interrupted snapshot");
            }
            remove_snapshot_files(&paths)?;
            // A Firecracker save interrupted before it was published left its files in
            // the source VM's outbox.
            if let Ok(source) = VmId::parse(&snapshot.source_vm) {
                let staging = self.paths(&source).outbox.join(&snapshot.id);
                if let Err(error) = std::fs::remove_dir_all(&staging)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(VmError::io("cannot remove the snapshot's files")(error));
                }
            }
            self.with_store(|s| s.delete_snapshot(&snapshot.id))?;
            removed.push(snapshot.name.clone());
        }
        if let Ok(entries) = std::fs::read_dir(snapshots_dir(&self.cfg.dirs.state)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !snapshots.iter().any(|s| s.id == name) {
                    let paths = SnapshotPaths::new(&self.cfg.dirs, &name);
                    remove_snapshot_files(&paths)?;
                    removed.push(name);
                }
            }
        }
        Ok(removed)
    }
}

/// Creates `dir` (and parents) with mode 0700.
fn make_private_dir(dir: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(VmError::io("cannot create the snapshot directory"))
}

/// Moves a snapshot Firecracker saved into the source VM's `outbox` to its own path,
/// replacing the symlink that led there: a rename on the state directory's file system,
/// after which the source VMM no longer reaches the files (they are no longer beneath
/// its outbox). The saved state names `<snapshot>/disk.ext4`, the path forks open.
fn publish_from_outbox(outbox: &Path, paths: &SnapshotPaths) -> Result<(), VmError> {
    let staging = outbox.join(paths_id(paths));
    let is_link = std::fs::symlink_metadata(&paths.dir).is_ok_and(|meta| meta.is_symlink());
    if !is_link {
        return Ok(());
    }
    std::fs::remove_file(&paths.dir)
        .and_then(|()| std::fs::rename(&staging, &paths.dir))
        .map_err(VmError::io(
            "cannot move the snapshot out of the VM's outbox",
        ))
}

/// Removes a snapshot's directories; the read-only files inside go with them.
fn remove_snapshot_files(paths: &SnapshotPaths) -> Result<(), VmError> {
    for dir in [&paths.dir, &paths.run_dir] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(VmError::io("cannot remove the snapshot's files")(error));
            }
        }
    }
    Ok(())
}

/// `859.9 MiB`-style sizes for stage details.
pub(crate) fn human_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_sizes_read_in_mib() {
        assert_eq!(human_bytes(901_685_248), "859.9 MiB");
        assert_eq!(human_bytes(0), "0.0 MiB");
    }

    #[test]
    fn fork_names_table() {
        assert_eq!(fork_names(None, 2), vec![None, None]);
        assert_eq!(fork_names(Some("web"), 1), vec![Some("web".to_string())]);
        assert_eq!(
            fork_names(Some("web"), 3),
            vec![
                Some("web-1".to_string()),
                Some("web-2".to_string()),
                Some("web-3".to_string())
            ]
        );
    }

    #[test]
    fn allocated_bytes_counts_blocks_not_apparent_size() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        std::fs::write(dir.path().join("data"), vec![1u8; 8192]).unwrap();
        let used = allocated_bytes(dir.path());
        assert!((8192..1 << 20).contains(&used), "{used}");
        assert_eq!(allocated_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn paths_live_under_state_and_runtime() {
        let dirs = banger_model::dirs::Dirs {
            state: "/s".into(),
            cache: "/c".into(),
            runtime: "/r".into(),
            config: "/f".into(),
            socket: "/r/bangerd.sock".into(),
        };
        let paths = SnapshotPaths::new(&dirs, "abc");
        assert_eq!(paths.mem, PathBuf::from("/s/snapshots/abc/mem"));
        assert_eq!(paths.state, PathBuf::from("/s/snapshots/abc/state"));
        assert_eq!(paths.disk, PathBuf::from("/s/snapshots/abc/disk.ext4"));
        assert_eq!(paths.run_dir, PathBuf::from("/r/snapshots/abc"));
    }
}
