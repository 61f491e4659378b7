//! Startup reconciliation: make the store agree with the host after the daemon was away.
//!
//! - A VM left `deleting` by an interrupted delete is deleted now (or stays `deleting`).
//! - A VM still `creating` was interrupted mid-create: its process, files and row go.
//! - A VM whose VMM is alive (pid + start time match its handle file) is reattached; one
//!   that was `stopping` stays `stopping`, and its stop is finished in the background.
//! - A VM that should be running but whose VMM is gone is marked stopped, with the reason.
//! - A directory under `vms/` with no row is an orphan of an interrupted create: removed.
//! - A VMM process still mentioning a removed VM's runtime directory is killed, which
//!   covers a daemon killed between spawning the VMM and recording its handle.
//! - Snapshots left `creating` or `deleting` go with their files (`warm.rs`).
//! - Last, the host's taps and NAT rules are compared with the VMs left running, and
//!   whatever none of them owns is removed (`reconcile_net.rs`), before the daemon serves
//!   and so before any address is leased again.

use std::path::Path;
use std::sync::Arc;

use banger_model::{VmId, VmState};

use crate::error::VmError;
use crate::handle_file;
use crate::service::{Live, VmService, may_have_process};

/// What reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub reattached: Vec<String>,
    /// Reattached while `stopping`: their stop goes on in the background.
    pub resumed_stops: Vec<String>,
    pub marked_stopped: Vec<String>,
    pub removed: Vec<String>,
    /// Deletes a previous daemon left unfinished, finished now.
    pub finished_deletes: Vec<String>,
    pub orphan_dirs: Vec<String>,
    /// Snapshots a killed daemon left half-made or half-deleted, removed with their
    /// files (see `warm.rs`).
    pub snapshots: Vec<String>,
    /// Template builder VMs a killed daemon left, deleted (see `template.rs`).
    pub template_builders: Vec<String>,
    /// Taps and NAT rules (by guest address) no VM owned, removed.
    pub network: crate::reconcile_net::NetCleanup,
}

impl VmService {
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, VmError> {
        let mut report = ReconcileReport::default();
        crate::trash::empty(&crate::trash::dir(&self.cfg.dirs.state));
        let vms = self.list()?;
        report.finished_deletes = self.finish_interrupted_deletes(&vms).await;
        for mut vm in vms.clone() {
            if vm.state == VmState::Deleting {
                continue;
            }
            let paths = self.paths(&vm.id);
            let handle = handle_file::read(&paths.handle_file)
                .filter(|h| banger_sys::process::is_same_process_alive(h.pid, h.start_time));
            if vm.state == VmState::Creating {
                if let Some(handle) = &handle {
                    self.stop_process(handle, std::time::Duration::ZERO).await;
                }
                kill_processes_mentioning(&paths.run_dir).await;
                let _ = std::fs::remove_dir_all(&paths.dir);
                let _ = std::fs::remove_dir_all(&paths.run_dir);
                self.with_store(|s| s.delete_vm(&vm.id))?;
                report.removed.push(vm.name.to_string());
                continue;
            }
            match handle {
                Some(handle) if vm.state == VmState::Stopping => {
                    // The daemon died mid-stop: the guest may be powering off right now.
                    // It says `stopping` (not `running`) until the stop, resumed here
                    // with the usual timeout, is done.
                    self.set_live(
                        &vm.id,
                        Some(Live {
                            handle: handle.clone(),
                            agent: None,
                        }),
                    );
                    self.republish(&vm);
                    // Should the resumed stop fail, the VM still becomes `stopped` when
                    // its VMM exits.
                    self.watch(vm.id.clone(), handle);
                    let service = Arc::clone(self);
                    let id = vm.id.clone();
                    let name = vm.name.to_string();
                    tokio::spawn(async move {
                        if let Err(error) = service.stop(id.as_str(), None).await {
                            tracing::warn!(vm = %name, error = %crate::error::chain(&error), "cannot finish the interrupted stop");
                        }
                    });
                    report.resumed_stops.push(vm.name.to_string());
                }
                Some(handle) if may_have_process(vm.state) => {
                    self.set_live(
                        &vm.id,
                        Some(Live {
                            handle: handle.clone(),
                            agent: None,
                        }),
                    );
                    if vm.state != VmState::Running {
                        vm.state = VmState::Running;
                        self.save(&vm)?;
                    }
                    self.republish(&vm);
                    self.reopen_published(&vm);
                    self.watch(vm.id.clone(), handle);
                    report.reattached.push(vm.name.to_string());
                }
                Some(handle) => {
                    // A process for a VM recorded as stopped: not ours to keep running,
                    // and neither are its tap and NAT rules.
                    self.stop_process(&handle, std::time::Duration::ZERO).await;
                    self.detach_network(&vm).await;
                    let _ = std::fs::remove_file(&paths.handle_file);
                }
                None => {
                    let _ = std::fs::remove_file(&paths.handle_file);
                    let _ = std::fs::remove_dir_all(&paths.run_dir);
                    if may_have_process(vm.state) {
                        // Its tap and NAT rules outlived it.
                        self.detach_network(&vm).await;
                        let was_stopping = vm.state == VmState::Stopping;
                        vm.state = VmState::Stopped;
                        vm.runtime.boot_id = None;
                        vm.runtime.address = None;
                        // A VM being stopped that is now down has simply stopped.
                        vm.runtime.last_error = (!was_stopping)
                            .then(|| "the VMM exited while the daemon was not running".into());
                        self.save(&vm)?;
                        report.marked_stopped.push(vm.name.to_string());
                    }
                }
            }
        }
        let known: Vec<String> = vms.iter().map(|vm| vm.id.as_str().to_string()).collect();
        let vms_dir = self.cfg.dirs.state.join("vms");
        if let Ok(entries) = std::fs::read_dir(&vms_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let deleted = self.with_store(|s| match VmId::parse(&name) {
                    Ok(id) => s.get_vm(&id).map(|vm| vm.is_none()),
                    Err(_) => Ok(false),
                })?;
                if known.contains(&name) || !deleted {
                    continue;
                }
                let paths = self
                    .paths(&VmId::parse(&name).map_err(|e| VmError::BadRequest(e.to_string()))?);
                if let Some(handle) = handle_file::read(&paths.handle_file)
                    && banger_sys::process::is_same_process_alive(handle.pid, handle.start_time)
                {
                    self.stop_process(&handle, std::time::Duration::ZERO).await;
                }
                kill_processes_mentioning(&paths.run_dir).await;
                let _ = std::fs::remove_dir_all(&paths.dir);
                let _ = std::fs::remove_dir_all(&paths.run_dir);
                report.orphan_dirs.push(name);
            }
        }
        report.snapshots = self.reconcile_snapshots().await?;
        report.template_builders = self.reconcile_builders().await;
        report.network = self.reconcile_network().await;
        self.space_reserve.ensure();
        Ok(report)
    }
}

/// How long a killed stray VMM gets to disappear before reconcile moves on.
const STRAY_EXIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kills processes whose command line mentions `dir` (a VMM of a VM being removed) and
/// waits until they are gone: SIGKILL is delivered asynchronously, and a VMM caught
/// mid-start (the daemon died while launching it) may take a moment to go. Once
/// reconcile returns, nothing of the removed VM runs.
pub(crate) async fn kill_processes_mentioning(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        // Through a pidfd, so neither the signal nor the wait can hit a recycled pid.
        let Ok(pidfd) = banger_sys::process::pidfd_open(pid) else {
            continue;
        };
        if banger_sys::process::pidfd_send_signal(&pidfd, 9).is_ok() {
            match banger_sys::process::wait_for_exit(&pidfd, STRAY_EXIT_TIMEOUT).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(pid, "a stray VMM survived SIGKILL"),
                Err(error) => tracing::warn!(pid, %error, "cannot wait for a stray VMM"),
            }
        }
    }
}
