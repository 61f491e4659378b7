//! `vm delete` and `vm prune`, ordered so that a delete cut short leaves a VM that says
//! what it is. The first step records `deleting` (nothing is destroyed yet, so if that
//! write fails the VM is exactly as it was); then the VMM is killed, the network
//! removed, the directories deleted, and last the row goes (and its lease with it). A
//! failure after the first step leaves the row `deleting` with the reason in
//! `last_error`; the next `vm delete` (no `--force` needed) or the daemon's startup
//! reconcile picks up where it stopped. A VM is never left `running` without a process.
//!
//! On a full disk the store's writes fail with `SQLITE_FULL`; the service's space
//! reserve (`reserve.rs`) is released to let the delete record its steps, because
//! deleting is how a user frees space.

use std::time::Duration;

use banger_model::{VmRecord, VmState};
use banger_store::{Store, StoreError};

use crate::error::{VmError, chain};
use crate::handle_file;
use crate::reconcile::kill_processes_mentioning;
use crate::service::VmService;

impl VmService {
    /// Deletes a VM, its disk and directories. A running VM needs `force`; a VM left
    /// `deleting` by an earlier attempt is finished without it. The query must be an
    /// exact name or id.
    pub async fn delete(&self, query: &str, force: bool) -> Result<VmRecord, VmError> {
        let vm = self.find_destructive(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        let running = self.live_handle(&vm.id).is_some();
        if running && !force && vm.state != VmState::Deleting {
            return Err(VmError::Conflict(format!(
                "VM {} is running; stop it first or delete with --force",
                vm.name
            )));
        }
        // The answer shows the VM as it was when the delete began.
        let before = vm.clone();
        if vm.state != VmState::Deleting {
            vm.state = VmState::Deleting;
            self.with_store_freeing_reserve(|s| s.update_vm(&vm))?;
        }
        self.fault_point("delete: recorded deleting");
        self.finish_delete(&vm).await?;
        Ok(before)
    }

    /// The destructive steps of a delete, for a VM already recorded as `deleting` (the
    /// caller holds its lock, or runs before the daemon serves). Each step is idempotent,
    /// so a retry after a failure redoes nothing harmful.
    pub(crate) async fn finish_delete(&self, vm: &VmRecord) -> Result<(), VmError> {
        let result = self.destroy(vm).await;
        if let Err(error) = &result {
            // Best effort (the disk may still be full): the row says why it is still here.
            let mut failed = vm.clone();
            failed.runtime.last_error = Some(format!(
                "the delete did not finish ({}); run `banger vm delete {}` again",
                chain(error),
                vm.name
            ));
            let _ = self.with_store(|s| s.update_vm(&failed));
        }
        result
    }

    async fn destroy(&self, vm: &VmRecord) -> Result<(), VmError> {
        let paths = self.paths(&vm.id);
        if let Some(live) = self.live_handle(&vm.id) {
            self.stop_process(&live.handle, Duration::ZERO).await;
            self.set_live(&vm.id, None);
        }
        // A VMM this daemon does not track (recorded by a daemon that died, or caught
        // mid-launch) goes too: after this nothing of the VM runs.
        if let Some(handle) = handle_file::read(&paths.handle_file)
            && banger_sys::process::is_same_process_alive(handle.pid, handle.start_time)
        {
            self.stop_process(&handle, Duration::ZERO).await;
        }
        kill_processes_mentioning(&paths.run_dir).await;
        self.fault_point("delete: vmm stopped");
        // Before the row (and its lease) goes: an address must not be leased again while
        // rules for it may remain.
        self.try_detach_network(vm).await?;
        self.fault_point("delete: network detached");
        self.discard_root_disk(&paths.root_disk);
        remove_dir_if_present(&paths.dir)?;
        self.fault_point("delete: vm directory removed");
        remove_dir_if_present(&paths.run_dir)?;
        self.fault_point("delete: run directory removed");
        self.with_store_freeing_reserve(|s| s.delete_vm(&vm.id).map(drop))?;
        self.fault_point("delete: row deleted");
        self.forget_host_key(vm);
        self.forget_lock(&vm.id);
        self.space_reserve.ensure();
        Ok(())
    }

    /// Moves a deleted VM's root disk to the trash and unlinks it on a blocking thread
    /// (see `trash.rs`), re-making the space reserve once its blocks are free. A disk
    /// that cannot be moved stays where it is and goes with the directory.
    fn discard_root_disk(&self, disk: &std::path::Path) {
        match crate::trash::discard(disk, &crate::trash::dir(&self.cfg.dirs.state)) {
            Ok(Some(moved)) => {
                let reserve = self.space_reserve.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = std::fs::remove_file(&moved) {
                        tracing::warn!(path = %moved.display(), %error, "cannot remove a deleted VM's disk");
                    }
                    reserve.ensure();
                });
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(disk = %disk.display(), %error, "cannot move a deleted VM's disk to the trash")
            }
        }
    }

    /// Runs a store write; if it fails for lack of space and the space reserve could be
    /// released, runs it once more.
    pub(crate) fn with_store_freeing_reserve<T>(
        &self,
        query: impl Fn(&Store) -> Result<T, StoreError>,
    ) -> Result<T, VmError> {
        match self.with_store(&query) {
            Err(VmError::Store(error)) if error.is_disk_full() && self.space_reserve.release() => {
                self.with_store(&query)
            }
            other => other,
        }
    }

    /// Deletes every VM that is not running (stopped, in error, or left `deleting`);
    /// never a running one.
    pub async fn prune(&self) -> Result<Vec<String>, VmError> {
        let mut deleted = Vec::new();
        for vm in self.list()? {
            if vm.state.is_active() || self.live_handle(&vm.id).is_some() {
                continue;
            }
            self.delete(vm.id.as_str(), false).await?;
            deleted.push(vm.name.to_string());
        }
        Ok(deleted)
    }

    /// Finishes the deletes a previous daemon left `deleting`; returns the names done.
    /// Failures are logged and the rows stay `deleting` for the next attempt.
    pub(crate) async fn finish_interrupted_deletes(&self, vms: &[VmRecord]) -> Vec<String> {
        let mut done = Vec::new();
        for vm in vms.iter().filter(|vm| vm.state == VmState::Deleting) {
            match self.finish_delete(vm).await {
                Ok(()) => done.push(vm.name.to_string()),
                Err(error) => tracing::warn!(
                    vm = %vm.name,
                    error = %chain(&error),
                    "cannot finish an interrupted delete; it stays `deleting`"
                ),
            }
        }
        done
    }
}

fn remove_dir_if_present(dir: &std::path::Path) -> Result<(), VmError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VmError::Io {
            what: format!("cannot remove {}", dir.display()),
            source,
        }),
    }
}
