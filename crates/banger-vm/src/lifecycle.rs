//! The lifecycle verbs on existing VMs: start, stop, restart, kill, delete, prune, set.
//! Each takes the VM's own lock, so verbs on one VM are serialised.

use std::sync::Arc;
use std::time::Duration;

use banger_model::progress::ProgressSink;
use banger_model::{ByteSize, GuestSignal, VmRecord, VmSpec, VmState};

use crate::error::VmError;
use crate::service::VmService;
use crate::{disk, patch};

/// Changes for `vm set`.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disk_mib: Option<u64>,
}

impl VmService {
    /// Boots a stopped VM.
    pub async fn start(
        self: &Arc<Self>,
        query: &str,
        progress: &dyn ProgressSink,
    ) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        if vm.state == VmState::Running {
            return Err(VmError::Conflict(format!(
                "VM {} is already running",
                vm.name
            )));
        }
        if !vm.state.can_start() {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; it cannot be started now",
                vm.name, vm.state
            )));
        }
        match self.boot(&mut vm, progress).await {
            Ok(()) => Ok(vm),
            Err(err) => {
                let mut failed = self.reload(&vm.id)?;
                failed.state = VmState::Error;
                failed.runtime.last_error = Some(crate::error::chain(&err));
                self.save(&failed)?;
                Err(err)
            }
        }
    }

    /// Graceful stop (guest poweroff), forced after `timeout`.
    pub async fn stop(&self, query: &str, timeout: Option<Duration>) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        self.stop_locked(&vm.id, timeout.unwrap_or(self.cfg.stop_timeout))
            .await
    }

    async fn stop_locked(
        &self,
        id: &banger_model::VmId,
        timeout: Duration,
    ) -> Result<VmRecord, VmError> {
        let mut vm = self.reload(id)?;
        if vm.state == VmState::Stopped {
            return Err(VmError::Conflict(format!(
                "VM {} is already stopped",
                vm.name
            )));
        }
        if let Some(live) = self.live_handle(id) {
            // A VM reattached after a daemon restart has no agent connection yet: make
            // one, or the guest is never asked to power off and is killed at the timeout.
            let agent = tokio::time::timeout(Duration::from_secs(2), self.agent_for(&vm))
                .await
                .ok()
                .and_then(Result::ok);
            vm.state = VmState::Stopping;
            self.save(&vm)?;
            // Ask the guest to power off (busybox init ignores ACPI power buttons); the
            // driver then waits, sends its own graceful request, and kills at the timeout.
            if let Some(agent) = &agent {
                let poweroff = banger_proto::agent::ExecRequest {
                    argv: vec!["poweroff".into()],
                    ..Default::default()
                };
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), agent.exec(poweroff, |_, _| {}))
                        .await;
            }
            self.stop_process(&live.handle, timeout).await;
            self.set_live(id, None);
        }
        self.detach_network(&vm).await;
        let paths = self.paths(id);
        let _ = std::fs::remove_file(&paths.handle_file);
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        vm.state = VmState::Stopped;
        vm.runtime.boot_id = None;
        vm.runtime.address = None;
        vm.runtime.last_error = None;
        self.save(&vm)?;
        Ok(vm)
    }

    /// Stop then start; the guest gets a new boot id.
    pub async fn restart(
        self: &Arc<Self>,
        query: &str,
        timeout: Option<Duration>,
        progress: &dyn ProgressSink,
    ) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let current = self.reload(&vm.id)?;
        if current.state != VmState::Stopped {
            progress.stage_started("stop");
            self.stop_locked(&vm.id, timeout.unwrap_or(self.cfg.stop_timeout))
                .await?;
            progress.stage_done("stop", None);
        }
        let mut vm = self.reload(&vm.id)?;
        self.boot(&mut vm, progress).await?;
        Ok(vm)
    }

    /// Sends `signal` to the VMM process. A VMM that exits is `stopped`, not `error`.
    pub async fn kill(&self, query: &str, signal: GuestSignal) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        let Some(live) = self.live_handle(&vm.id) else {
            return Err(VmError::Conflict(format!("VM {} is not running", vm.name)));
        };
        self.driver.kill(&live.handle, signal.as_number()).await?;
        let exited =
            tokio::time::timeout(Duration::from_secs(10), self.driver.wait_exit(&live.handle))
                .await
                .is_ok();
        if !exited {
            return Err(VmError::Conflict(format!(
                "sent {signal} to VM {}; its VMM is still running",
                vm.name
            )));
        }
        self.set_live(&vm.id, None);
        self.detach_network(&vm).await;
        let paths = self.paths(&vm.id);
        let _ = std::fs::remove_file(&paths.handle_file);
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        vm.state = VmState::Stopped;
        vm.runtime.boot_id = None;
        vm.runtime.address = None;
        vm.runtime.last_error = Some(format!("killed with {signal}"));
        self.save(&vm)?;
        Ok(vm)
    }

    /// Deletes a VM, its disk and directories. A running VM needs `force`.
    pub async fn delete(&self, query: &str, force: bool) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let vm = self.reload(&vm.id)?;
        let live = self.live_handle(&vm.id);
        if live.is_some() && !force {
            return Err(VmError::Conflict(format!(
                "VM {} is running; stop it first or delete with --force",
                vm.name
            )));
        }
        if let Some(live) = live {
            self.stop_process(&live.handle, Duration::ZERO).await;
            self.set_live(&vm.id, None);
        }
        // Also for a stopped VM: a tap or NAT rule left by a failed detach goes now.
        self.detach_network(&vm).await;
        let paths = self.paths(&vm.id);
        std::fs::remove_dir_all(&paths.dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(VmError::io(format!(
                "cannot remove {}",
                paths.dir.display()
            )))?;
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        self.with_store(|s| s.delete_vm(&vm.id))?;
        self.forget_host_key(&vm);
        self.forget_lock(&vm.id);
        Ok(vm)
    }

    /// Deletes every VM that is not running (stopped or in error); never a running one.
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

    /// Changes vCPUs, memory or disk of a stopped VM. The disk only grows.
    pub async fn set(&self, query: &str, req: SetRequest) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        if vm.state.is_active() || self.live_handle(&vm.id).is_some() {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; stop it before changing its resources",
                vm.name, vm.state
            )));
        }
        let spec = VmSpec {
            vcpus: req.vcpus.unwrap_or(vm.spec.vcpus),
            memory: req
                .memory_mib
                .map(ByteSize::from_mib)
                .unwrap_or(vm.spec.memory),
            disk: req.disk_mib.map(ByteSize::from_mib).unwrap_or(vm.spec.disk),
        };
        spec.validate(&self.cfg.limits)
            .map_err(|e| VmError::BadRequest(e.to_string()))?;
        if spec.disk < vm.spec.disk {
            return Err(VmError::BadRequest(format!(
                "the disk can only grow: {} is {}, {} requested",
                vm.name, vm.spec.disk, spec.disk
            )));
        }
        if spec.disk > vm.spec.disk {
            let paths = self.paths(&vm.id);
            patch::fsck(self.runner.as_ref(), &paths.root_disk).await?;
            disk::grow(self.runner.as_ref(), &paths.root_disk, spec.disk.bytes()).await?;
        }
        vm.spec = spec;
        self.save(&vm)?;
        Ok(vm)
    }
}
