//! Workspaces on the VM side. A new VM gets its repository as a second disk: the host
//! lists the files ([`banger_workspace::plan`]), streams them as one tar into
//! `mkfs.ext4 -d -` (a sparse `workspace.ext4` in the VM's directory, no root, no
//! mount on the host), the VMM attaches it after the root disk, and once the agent
//! answers the guest mounts it at the guest path, at every boot. The copy never goes
//! through the guest's slow paths (ssh crypto, virtio-serial under TCG).

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use banger_model::progress::ProgressSink;
use banger_model::{VmRecord, Workspace, WorkspaceDelivery};
use banger_proto::agent::ExecRequest;
use banger_proto::agent_client::AgentClient;
use banger_workspace::{Mode, Plan, PlanOptions};

use crate::error::VmError;
use crate::service::{VmService, now};

/// The stage that builds the workspace disk.
pub const WORKSPACE_STAGE: &str = "workspace";
/// The stage that mounts it in the guest.
pub const MOUNT_STAGE: &str = "mount workspace";

/// The device the workspace disk is in the guest: the second virtio disk.
pub const GUEST_DEVICE: &str = "/dev/vdb";

/// What a new VM's workspace is made from.
#[derive(Debug, Clone)]
pub struct WorkspaceRequest {
    /// Absolute host path: the repository or a directory inside it.
    pub source: PathBuf,
    pub guest_path: String,
    pub mode: Mode,
    pub include_untracked: bool,
}

impl WorkspaceRequest {
    /// Validates the strings of a request (guest path, mode).
    pub fn parse(
        source: &str,
        guest_path: Option<&str>,
        mode: Option<&str>,
        include_untracked: bool,
    ) -> Result<WorkspaceRequest, VmError> {
        let source = PathBuf::from(source);
        if !source.is_absolute() {
            return Err(VmError::BadRequest(format!(
                "the workspace path {} must be absolute",
                source.display()
            )));
        }
        let guest_path = banger_workspace::validate_guest_path(
            guest_path.unwrap_or(banger_workspace::DEFAULT_GUEST_PATH),
        )?;
        let mode = match mode {
            None => Mode::default(),
            Some(text) => Mode::parse(text).ok_or_else(|| {
                VmError::BadRequest(format!(
                    "unknown workspace mode {text:?} (overlay or full_copy)"
                ))
            })?,
        };
        Ok(WorkspaceRequest {
            source,
            guest_path,
            mode,
            include_untracked,
        })
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            mode: self.mode,
            include_untracked: self.include_untracked,
        }
    }
}

/// Size of a workspace disk: room for the content twice over plus a GiB for builds, and
/// at least 4 GiB. The file is sparse, so unused room costs nothing on the host.
pub fn disk_size(content_bytes: u64, entries: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let wanted = content_bytes
        .saturating_mul(2)
        .saturating_add(entries.saturating_mul(8 * 1024))
        .saturating_add(1024 * MIB);
    wanted.max(4096 * MIB).div_ceil(MIB) * MIB
}

/// The record of a workspace made from `plan`.
pub fn record_of(plan: &Plan, guest_path: &str, delivery: WorkspaceDelivery) -> Workspace {
    Workspace {
        host_path: plan.repo.root.display().to_string(),
        guest_path: guest_path.to_string(),
        mode: plan.options.mode.as_str().to_string(),
        head_commit: plan.head.clone(),
        include_untracked: plan.options.include_untracked,
        delivery,
        files: plan.entries.len() as u64,
        bytes: plan.total_bytes,
        tracked_signature: plan.tracked_signature.clone(),
        prepared_at: now(),
    }
}

impl VmService {
    /// Lists the repository (checks first: a bad path fails before anything is made).
    pub async fn plan_workspace(&self, req: &WorkspaceRequest) -> Result<Plan, VmError> {
        let repo = banger_workspace::discover(self.runner.as_ref(), &req.source).await?;
        Ok(banger_workspace::plan(self.runner.as_ref(), &repo, req.options()).await?)
    }

    /// Builds `workspace.ext4` for a VM being created and records the workspace.
    pub(crate) async fn build_workspace_disk(
        &self,
        vm: &mut VmRecord,
        req: &WorkspaceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        progress.stage_started(WORKSPACE_STAGE);
        let plan = self.plan_workspace(req).await?;
        let disk = self.paths(&vm.id).workspace_disk;
        let size = disk_size(plan.total_bytes, plan.entries.len() as u64);
        let record = record_of(&plan, &req.guest_path, WorkspaceDelivery::Disk);
        let detail = format!(
            "{} entries, {:.1} MiB, {}",
            plan.entries.len(),
            plan.total_bytes as f64 / (1024.0 * 1024.0),
            plan.options.mode
        );
        let total = tar_size(&plan);
        let done = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&done);
        let made = banger_image::ext4::mkfs_from_stream_labeled(
            self.runner.as_ref(),
            &disk,
            size,
            "workspace",
            move |writer| {
                let writer = Counting {
                    inner: writer,
                    done: counter,
                };
                banger_workspace::write_tar(&plan, writer).map(|_| ())
            },
        );
        with_progress(made, progress, WORKSPACE_STAGE, &done, total).await?;
        vm.workspace = Some(record);
        self.save(vm)?;
        progress.stage_done(WORKSPACE_STAGE, Some(&detail));
        Ok(())
    }

    /// The extra disks a VM boots with: its workspace disk when it has one.
    pub(crate) fn extra_disks(&self, vm: &VmRecord) -> Vec<PathBuf> {
        let disk = self.paths(&vm.id).workspace_disk;
        match &vm.workspace {
            Some(w) if w.delivery == WorkspaceDelivery::Disk && disk.exists() => vec![disk],
            _ => Vec::new(),
        }
    }

    /// Mounts the workspace disk in a guest that just booted.
    pub(crate) async fn mount_workspace(
        &self,
        vm: &VmRecord,
        agent: &AgentClient,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let Some(workspace) = &vm.workspace else {
            return Ok(());
        };
        if self.extra_disks(vm).is_empty() {
            return Ok(());
        }
        progress.stage_started(MOUNT_STAGE);
        // noinit_itable: the disk is a fresh sparse file, its inode tables are already
        // zero, so the guest need not spend TCG cycles zeroing them again.
        let script = "set -e; mkdir -p \"$1\"; \
                      grep -qs \" $1 ext4 \" /proc/mounts || mount -t ext4 -o noinit_itable \"$2\" \"$1\"";
        let argv = [
            "sh",
            "-c",
            script,
            "mount-workspace",
            &workspace.guest_path,
            GUEST_DEVICE,
        ]
        .map(String::from)
        .to_vec();
        run_checked(agent, argv, "mounting the workspace disk").await?;
        progress.stage_done(MOUNT_STAGE, Some(&workspace.guest_path));
        Ok(())
    }
}

/// Runs a command through the agent; a non-zero exit is an error carrying its stderr.
pub(crate) async fn run_checked(
    agent: &AgentClient,
    argv: Vec<String>,
    what: &str,
) -> Result<(), VmError> {
    let mut stderr = Vec::new();
    let code = agent
        .exec(
            ExecRequest {
                argv,
                env: Default::default(),
                cwd: Some("/".into()),
                stdin: false,
                ..Default::default()
            },
            |stream, bytes| {
                if stream == banger_proto::agent::Stream::Stderr && stderr.len() < 8192 {
                    stderr.extend_from_slice(bytes);
                }
            },
        )
        .await?;
    if code != 0 {
        return Err(VmError::Conflict(format!(
            "{what} failed in the guest (exit code {code}): {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(())
}

/// The stage that streams a workspace into a running VM.
pub const COPY_STAGE: &str = "copy workspace";

/// Run in the guest by `prepare`: empties the guest path (a mounted workspace disk
/// stays mounted) and unpacks the tar on stdin into it.
const UNPACK_SCRIPT: &str = "set -e; mkdir -p \"$1\"; \
    rm -rf -- \"$1\"/* \"$1\"/.[!.]* \"$1\"/..?*; \
    tar -x -f - -C \"$1\"";

impl VmService {
    /// The per-VM workspace lock: held for the whole of a copy (and by an export), so
    /// two never interleave, while lifecycle commands (`stop`, `delete`) take only the
    /// VM's lifecycle lock and never queue behind a copy.
    pub fn workspace_lock(
        &self,
        id: &banger_model::VmId,
    ) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .workspace_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks.entry(id.as_str().to_string()).or_default().clone()
    }

    /// `vm workspace prepare`: streams the repository into a running VM through the
    /// guest agent (replacing what the guest path held) and records the workspace.
    pub async fn prepare_workspace(
        &self,
        query: &str,
        req: WorkspaceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<VmRecord, VmError> {
        let found = self.find(query)?;
        // The host side first: a bad PATH fails before the guest is touched.
        let plan = self.plan_workspace(&req).await?;
        let workspace_lock = self.workspace_lock(&found.id);
        let _copying = workspace_lock.lock().await;
        // The lifecycle lock only while the state is checked.
        let (vm, agent) = {
            let lock = self.vm_lock(&found.id);
            let _guard = lock.lock().await;
            let vm = self.reload(&found.id)?;
            let agent = self.agent_for(&vm).await?;
            (vm, agent)
        };
        let delivery = match &vm.workspace {
            Some(w)
                if w.delivery == WorkspaceDelivery::Disk && !self.extra_disks(&vm).is_empty() =>
            {
                if w.guest_path != req.guest_path {
                    return Err(VmError::Conflict(format!(
                        "VM {} has its workspace disk mounted at {}; prepare into that path (--guest-path {})",
                        vm.name, w.guest_path, w.guest_path
                    )));
                }
                WorkspaceDelivery::Disk
            }
            _ => WorkspaceDelivery::Stream,
        };

        progress.stage_started(COPY_STAGE);
        let detail = format!(
            "{} entries, {:.1} MiB, {}",
            plan.entries.len(),
            plan.total_bytes as f64 / (1024.0 * 1024.0),
            plan.options.mode
        );
        let record = record_of(&plan, &req.guest_path, delivery);
        let (reader, writer) =
            std::io::pipe().map_err(VmError::io("cannot create a pipe for the workspace"))?;
        let stdin = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())
            .map_err(VmError::io("cannot read the workspace pipe"))?;
        let total = tar_size(&plan);
        let done = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&done);
        let feeder = tokio::task::spawn_blocking(move || {
            let writer = Counting {
                inner: writer,
                done: counter,
            };
            banger_workspace::write_tar(&plan, writer)
        });
        let mut stderr = Vec::new();
        let argv = [
            "sh",
            "-c",
            UNPACK_SCRIPT,
            "unpack-workspace",
            &req.guest_path,
        ]
        .map(String::from)
        .to_vec();
        let unpacked = agent.exec_with_stdin(
            ExecRequest {
                argv,
                env: Default::default(),
                cwd: Some("/".into()),
                stdin: true,
                ..Default::default()
            },
            stdin,
            |stream, bytes| {
                if stream == banger_proto::agent::Stream::Stderr && stderr.len() < 8192 {
                    stderr.extend_from_slice(bytes);
                }
            },
            std::future::pending(),
        );
        let code = with_progress(unpacked, progress, COPY_STAGE, &done, total).await?;
        let fed = feeder
            .await
            .map_err(|e| VmError::Conflict(format!("the workspace stream failed: {e}")))?;
        if code != 0 {
            return Err(VmError::Conflict(format!(
                "unpacking the workspace in the guest failed (exit code {code}): {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        fed.map_err(VmError::io("cannot write the workspace stream"))?;

        let lock = self.vm_lock(&found.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&found.id)?;
        vm.workspace = Some(record);
        self.save(&vm)?;
        progress.stage_done(COPY_STAGE, Some(&detail));
        Ok(vm)
    }
}

/// Counts the bytes written through it, for progress.
struct Counting<W> {
    inner: W,
    done: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// About how many bytes the plan's tar stream has: a header per entry, contents in
/// 512-byte blocks, the end blocks (long names add a little more).
fn tar_size(plan: &Plan) -> u64 {
    let content: u64 = plan
        .entries
        .iter()
        .map(|e| match e.kind {
            banger_workspace::EntryKind::File { size, .. } => size.div_ceil(512) * 512,
            _ => 0,
        })
        .sum();
    content + (plan.entries.len() as u64 + 2) * 512
}

/// Awaits `work`, reporting `done` of `total` bytes on `stage` twice a second.
async fn with_progress<F: Future>(
    work: F,
    progress: &dyn ProgressSink,
    stage: &str,
    done: &AtomicU64,
    total: u64,
) -> F::Output {
    let report =
        || progress.stage_bytes(stage, done.load(Ordering::Relaxed).min(total), Some(total));
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => {
                report();
                return out;
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => report(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn disks_have_room_to_build_and_at_least_4_gib() {
        assert_eq!(disk_size(0, 0), 4096 * MIB);
        assert_eq!(disk_size(100 * MIB, 1000), 4096 * MIB);
        let big = disk_size(10 * 1024 * MIB, 100_000);
        assert!(big >= 21 * 1024 * MIB, "{big}");
        assert_eq!(big % MIB, 0);
    }

    #[test]
    fn requests_are_checked_before_anything_runs() {
        let ok = WorkspaceRequest::parse("/src/repo", None, None, false).unwrap();
        assert_eq!(ok.guest_path, "/root/repo");
        assert_eq!(ok.mode, Mode::Overlay);
        let full = WorkspaceRequest::parse("/src/repo", Some("/srv/app"), Some("full_copy"), true)
            .unwrap();
        assert_eq!(
            (full.guest_path.as_str(), full.mode),
            ("/srv/app", Mode::FullCopy)
        );
        for (source, guest, mode) in [
            ("relative", None, None),
            ("/src", Some("/"), None),
            ("/src", Some("/root/../etc"), None),
            ("/src", None, Some("readonly")),
        ] {
            let refused = WorkspaceRequest::parse(source, guest, mode, false).unwrap_err();
            assert_eq!(refused.kind(), crate::VmErrorKind::BadRequest, "{refused}");
        }
    }
}
