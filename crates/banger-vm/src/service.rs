//! The VM service: owns the lifecycle of every VM. Durable facts go to the store; the live
//! handle of a running VMM (pid, sockets) is kept in memory and mirrored to the VM's
//! `handle.json` so a restarted daemon can reattach.
//!
//! Locking: `reserve` (global) is held only while a name is checked and its row inserted;
//! every lifecycle verb takes the VM's own lock, so two VMs boot in parallel while two
//! verbs on one VM are serialised.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use banger_exec::CommandRunner;
use banger_image::{GuestInit, ImageService};
use banger_model::dirs::Dirs;
use banger_model::progress::ProgressSink;
use banger_model::{
    ByteSize, RefError, SpecLimits, VmId, VmRecord, VmState, resolve_ref, resolve_ref_destructive,
};
use banger_proto::agent_client::AgentClient;
use banger_store::{ImageRecord, KernelRecord, Store};
use banger_vmm::{VmmDriver, VmmHandle};

use crate::error::VmError;
use crate::layout::VmPaths;
use crate::reserve::SpaceReserve;

/// Settings of the VM service.
#[derive(Debug, Clone)]
pub struct VmServiceConfig {
    pub dirs: Dirs,
    /// Host path of the static guest agent patched into every VM.
    pub agent_binary: PathBuf,
    pub limits: SpecLimits,
    /// How long a booting guest has to answer the agent's hello.
    pub ready_timeout: Duration,
    /// Default graceful-stop timeout.
    pub stop_timeout: Duration,
    /// Public key lines installed as root's authorized_keys.
    pub authorized_keys: Option<String>,
    /// Keep warm templates and restore new VMs from them (`template.rs`).
    pub warm_templates: bool,
}

/// How the service reaches the state store; the daemon shares one connection between
/// its handlers and this service. Queries are short and run on the caller's thread.
pub trait StoreAccess: Send + Sync + std::fmt::Debug {
    fn access(
        &self,
        query: &mut dyn FnMut(&Store) -> Result<(), banger_store::StoreError>,
    ) -> Result<(), banger_store::StoreError>;
}

impl StoreAccess for Mutex<Store> {
    fn access(
        &self,
        query: &mut dyn FnMut(&Store) -> Result<(), banger_store::StoreError>,
    ) -> Result<(), banger_store::StoreError> {
        let store = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&store)
    }
}

/// A running VM's transient state.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub handle: VmmHandle,
    pub agent: Option<Arc<AgentClient>>,
}

/// The VM service.
#[derive(Debug)]
pub struct VmService {
    pub(crate) cfg: VmServiceConfig,
    pub(crate) store: Arc<dyn StoreAccess>,
    pub(crate) images: Arc<ImageService>,
    pub(crate) driver: Arc<dyn VmmDriver>,
    pub(crate) runner: Arc<dyn CommandRunner>,
    pub(crate) reserve: tokio::sync::Mutex<()>,
    vm_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per-VM workspace locks (see `workspace.rs`), separate from the lifecycle locks.
    pub(crate) workspace_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) live: Mutex<HashMap<String, Live>>,
    /// Guest networking; `None` until the daemon finds a helper (VMs then have no NIC).
    pub(crate) network: RwLock<Option<Arc<banger_net::Network>>>,
    /// Held while an address is chosen and recorded.
    pub(crate) lease_lock: Mutex<()>,
    /// Running VMs' addresses by name, served by the daemon's DNS responder.
    pub(crate) names: Arc<banger_dns::StaticNames>,
    /// Running VMs' network policies by address, for the policy resolver.
    pub(crate) policies: Arc<banger_dns::PolicyTable>,
    /// By VM id: whether the ssh host key read started at the VM's last boot has
    /// finished (see `net.rs`).
    pub(crate) host_keys: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// Space kept back so `vm delete` can record its progress on a full disk.
    pub(crate) space_reserve: SpaceReserve,
    /// Keys of the warm templates being built now (`template.rs`).
    pub(crate) building_templates: Mutex<std::collections::HashSet<String>>,
    /// Templates whose spare disk is being copied now (`spare.rs`).
    pub(crate) making_spares: Mutex<std::collections::HashSet<String>>,
    /// Running VMs' published ports (see `publish.rs`).
    pub(crate) forwards: crate::publish::Forwards,
    /// Crash points for tests (`fault.rs`).
    pub(crate) faults: crate::fault::FaultPoints,
}

impl VmService {
    pub fn new(
        cfg: VmServiceConfig,
        store: Arc<dyn StoreAccess>,
        images: Arc<ImageService>,
        driver: Arc<dyn VmmDriver>,
        runner: Arc<dyn CommandRunner>,
    ) -> Arc<VmService> {
        Arc::new(VmService {
            store,
            images,
            driver,
            runner,
            reserve: tokio::sync::Mutex::new(()),
            vm_locks: Mutex::new(HashMap::new()),
            workspace_locks: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            network: RwLock::new(None),
            lease_lock: Mutex::new(()),
            names: Arc::new(banger_dns::StaticNames::new()),
            policies: Arc::new(banger_dns::PolicyTable::default()),
            host_keys: Mutex::new(HashMap::new()),
            space_reserve: SpaceReserve::new(&cfg.dirs.state),
            building_templates: Mutex::new(std::collections::HashSet::new()),
            making_spares: Mutex::new(std::collections::HashSet::new()),
            forwards: Default::default(),
            faults: crate::fault::FaultPoints::default(),
            cfg,
        })
    }

    /// Sets (or clears) the hook called at each of `fault`'s points. For tests only: the
    /// daemon sets one only when a test asks with `BANGER_CRASH_AT` (bangerd's
    /// `crash_at`).
    pub fn set_fault_hook(&self, hook: Option<crate::fault::FaultHook>) {
        self.faults.set(hook);
    }

    pub(crate) fn fault_point(&self, point: &str) {
        self.faults.reached(point);
    }

    pub fn config(&self) -> &VmServiceConfig {
        &self.cfg
    }

    pub fn driver(&self) -> &Arc<dyn VmmDriver> {
        &self.driver
    }

    /// Runs `f` against the store. Queries are short; no lock is held across an `await`.
    pub(crate) fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, banger_store::StoreError>,
    ) -> Result<T, VmError> {
        let mut query = Some(f);
        let mut output = None;
        self.store.access(&mut |store| {
            if let Some(query) = query.take() {
                output = Some(query(store)?);
            }
            Ok(())
        })?;
        output.ok_or_else(|| VmError::Conflict("the store query did not run".into()))
    }

    /// Refuses a root disk of `size` that the state directory's file system could not
    /// hold, counting the `allocated` bytes it already occupies (see
    /// [`crate::disk::check_room`]). A file system whose free space cannot be read is
    /// not a reason to refuse.
    pub(crate) fn check_disk_room(&self, size: ByteSize, allocated: u64) -> Result<(), VmError> {
        let dir = &self.cfg.dirs.state;
        match banger_sys::space::available_bytes(dir) {
            Ok(free) => {
                crate::disk::check_room(size, allocated, free, dir).map_err(VmError::BadRequest)
            }
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "cannot measure free space");
                Ok(())
            }
        }
    }

    pub(crate) fn paths(&self, id: &VmId) -> VmPaths {
        VmPaths::new(&self.cfg.dirs, id.as_str())
    }

    /// The per-VM lock, created on first use.
    pub(crate) fn vm_lock(&self, id: &VmId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.vm_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.as_str().to_string()).or_default().clone()
    }

    pub(crate) fn forget_lock(&self, id: &VmId) {
        self.vm_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_str());
        self.workspace_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_str());
    }

    /// All VMs, oldest first.
    pub fn list(&self) -> Result<Vec<VmRecord>, VmError> {
        self.with_store(|s| s.list_vms())
    }

    /// Finds a VM by exact name, id, or unique prefix of either.
    pub fn find(&self, query: &str) -> Result<VmRecord, VmError> {
        let vms = self.list()?;
        resolve_ref(query, &vms, |vm| vm.id.as_str(), |vm| vm.name.as_str())
            .cloned()
            .map_err(|error| ref_error(query, error))
    }

    /// Like [`Self::find`], for commands that destroy something (`delete`, `kill`): an
    /// exact name or id only (the CLI confirms a prefix with the user, then sends the
    /// full name).
    pub fn find_destructive(&self, query: &str) -> Result<VmRecord, VmError> {
        let vms = self.list()?;
        resolve_ref_destructive(query, &vms, |vm| vm.id.as_str(), |vm| vm.name.as_str())
            .cloned()
            .map_err(|error| ref_error(query, error))
    }

    pub(crate) fn reload(&self, id: &VmId) -> Result<VmRecord, VmError> {
        self.with_store(|s| s.get_vm(id))?
            .ok_or_else(|| VmError::NotFound(format!("VM {} was deleted", id.as_str())))
    }

    pub(crate) fn save(&self, vm: &VmRecord) -> Result<(), VmError> {
        self.with_store(|s| s.update_vm(vm))
    }

    pub(crate) fn live_handle(&self, id: &VmId) -> Option<Live> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id.as_str())
            .cloned()
    }

    pub(crate) fn set_live(&self, id: &VmId, live: Option<Live>) {
        let mut map = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live {
            Some(live) => map.insert(id.as_str().to_string(), live),
            None => map.remove(id.as_str()),
        };
    }

    /// The VMM process id of a running VM.
    pub fn pid_of(&self, id: &VmId) -> Option<u32> {
        self.live_handle(id).map(|live| live.handle.pid)
    }

    /// The image service this VM service pulls from.
    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }

    /// The recorded kernel when its files are still there; otherwise pulled (resolving
    /// the newest package) and recorded. Booting an existing VM never waits on apt.
    pub async fn resolve_kernel(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<banger_image::KernelArtifact, VmError> {
        if let Some(record) = self.with_store(|s| s.get_kernel(name))? {
            let kernel = banger_image::KernelArtifact {
                name: record.name,
                version: record.version,
                vmlinux: PathBuf::from(record.vmlinux),
                initramfs: PathBuf::from(record.initramfs),
            };
            if kernel.vmlinux.exists() && kernel.initramfs.exists() {
                return Ok(kernel);
            }
        }
        self.ensure_kernel(name, progress).await
    }

    /// The recorded image when its file is still there; otherwise a catalog image is
    /// pulled and recorded. An imported, registered or promoted image whose file is gone
    /// cannot be made again here: that is an error naming the way back.
    pub async fn resolve_image(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<banger_image::ImageArtifact, VmError> {
        if let Some(record) = self.with_store(|s| s.get_image(name))? {
            let path = PathBuf::from(&record.path);
            if path.exists() {
                return Ok(artifact_of(record));
            }
            if record.source != "catalog" {
                return Err(VmError::NotFound(format!(
                    "the file of image {name:?} ({}) is gone; `banger image delete {name}` \
                     and import, register or promote it again",
                    record.path
                )));
            }
        }
        self.ensure_image(name, progress).await
    }

    /// Pulls (or finds cached) the kernel and records it.
    pub async fn ensure_kernel(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<banger_image::KernelArtifact, VmError> {
        let kernel = self.images.pull_kernel(name, progress).await?;
        let record = KernelRecord {
            name: kernel.name.clone(),
            version: kernel.version.clone(),
            vmlinux: kernel.vmlinux.display().to_string(),
            initramfs: kernel.initramfs.display().to_string(),
            created_at: now(),
        };
        self.with_store(|s| s.upsert_kernel(&record))?;
        Ok(kernel)
    }

    /// Pulls (or finds cached) the catalog image and records it.
    pub async fn ensure_image(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<banger_image::ImageArtifact, VmError> {
        self.pull_catalog_image(name, false, progress)
            .await
            .map(|(image, _)| image)
    }

    /// Pulls the catalog image (rebuilding it with `force`) and records it. Returns
    /// whether the record changed: an image that was already current keeps its record,
    /// created time included.
    pub async fn pull_catalog_image(
        &self,
        name: &str,
        force: bool,
        progress: &dyn ProgressSink,
    ) -> Result<(banger_image::ImageArtifact, bool), VmError> {
        let pulled = self.images.pull_image_with(name, force, progress).await?;
        let image = pulled.artifact;
        let existing = self.with_store(|s| s.get_image(name))?;
        let current = existing.as_ref().is_some_and(|record| {
            record.source == "catalog"
                && record.digest == image.digest
                && Path::new(&record.path) == image.path
        });
        if current && !pulled.built {
            return Ok((image, false));
        }
        let record = ImageRecord {
            name: image.name.clone(),
            source: "catalog".into(),
            digest: image.digest.clone(),
            path: image.path.display().to_string(),
            size_bytes: image.size_bytes,
            kernel: image.kernel.clone(),
            init: init_name(image.init).into(),
            created_at: now(),
            origin: String::new(),
            layers: Vec::new(),
        };
        self.with_store(|s| s.upsert_image(&record))?;
        Ok((image, true))
    }

    /// At most `lines` lines of a VM's serial console: the last ones, or, when the guest
    /// kernel panicked, those around the panic (see [`console_excerpt`]).
    pub fn serial_tail(path: &Path, lines: usize) -> String {
        let text = std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        console_excerpt(&text, lines)
    }
}

fn ref_error(query: &str, error: RefError) -> VmError {
    match error {
        RefError::NotFound { .. } => VmError::NotFound(format!("no VM named {query:?}")),
        RefError::Ambiguous { query, candidates } => VmError::Ambiguous { query, candidates },
        too_short @ RefError::PrefixOnly { .. } => VmError::BadRequest(too_short.to_string()),
    }
}

/// How many lines before a kernel panic an excerpt keeps: the cause (e.g. init failing
/// to execute) is printed just before the panic line.
const LINES_BEFORE_PANIC: usize = 5;

/// At most `lines` lines of console output. Usually the last ones; but a panic's stack
/// trace is long enough to push the panic line itself out of the tail, so when there is a
/// `Kernel panic` line the excerpt starts a few lines before the last one.
pub(crate) fn console_excerpt(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = match all.iter().rposition(|line| line.contains("Kernel panic")) {
        // Keep the panic line itself even in a very short excerpt.
        Some(panic) => panic.saturating_sub(LINES_BEFORE_PANIC.min(lines.saturating_sub(1))),
        None => all.len().saturating_sub(lines),
    };
    let end = all.len().min(start + lines);
    all[start..end].join("\n")
}

/// The artifact a record describes.
pub fn artifact_of(record: ImageRecord) -> banger_image::ImageArtifact {
    banger_image::ImageArtifact {
        name: record.name,
        digest: record.digest,
        path: PathBuf::from(record.path),
        size_bytes: record.size_bytes,
        kernel: record.kernel,
        init: if record.init == "systemd" {
            GuestInit::Systemd
        } else {
            GuestInit::Busybox
        },
    }
}

/// `systemd` or `busybox`, as image records store the init.
pub fn init_name(init: GuestInit) -> &'static str {
    match init {
        GuestInit::Systemd => "systemd",
        GuestInit::Busybox => "busybox",
    }
}

/// Now, RFC 3339.
pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// True for states in which a VMM process may exist and should be kept: a `deleting`
/// VM's process is killed by the delete that reconcile finishes.
pub(crate) fn may_have_process(state: VmState) -> bool {
    matches!(
        state,
        VmState::Creating | VmState::Starting | VmState::Running | VmState::Stopping
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_excerpts_keep_the_tail_or_the_panic() {
        let numbered = |n: usize| (1..=n).map(|i| format!("l{i}")).collect::<Vec<_>>();
        let mut panicked = numbered(10);
        panicked[3] = "Kernel panic - not syncing: No working init found".into();
        let cases: Vec<(Vec<String>, usize, &str)> = vec![
            (numbered(3), 5, "l1\nl2\nl3"),
            (numbered(10), 3, "l8\nl9\nl10"),
            (vec![], 3, ""),
            // The panic is line 4 of 10: up to 5 lines before it, and always the panic line.
            (
                panicked.clone(),
                3,
                "l2\nl3\nKernel panic - not syncing: No working init found",
            ),
            (
                panicked,
                5,
                "l1\nl2\nl3\nKernel panic - not syncing: No working init found\nl5",
            ),
        ];
        for (input, lines, expected) in cases {
            assert_eq!(
                console_excerpt(&input.join("\n"), lines),
                expected,
                "{input:?}"
            );
        }
    }
}
