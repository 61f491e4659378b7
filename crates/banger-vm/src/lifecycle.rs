//! The lifecycle verbs on existing VMs: start, stop, restart, kill, set (delete and prune
//! are in `delete.rs`). Each takes the VM's own lock, so verbs on one VM are serialised.

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
    /// Boots a stopped VM. A VM that is already running is left alone and returned as
    /// it is (as `docker start` does): the CLI says so.
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
            return Ok(vm);
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

    /// Graceful stop (guest poweroff), forced after `timeout`. A VM that is already
    /// stopped is returned as it is.
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
            return Ok(vm);
        }
        if vm.state == VmState::Deleting {
            return Err(VmError::Conflict(format!(
                "VM {} is being deleted; `banger vm delete {}` finishes that",
                vm.name, vm.name
            )));
        }
        if let Some(live) = self.live_handle(id) {
            // A VM reattached after a daemon restart has no agent connection yet: make
            // one, or the guest is never asked to power off and is killed at the timeout.
            // A stop resumed after a restart finds the VM `stopping`, for which
            // `agent_for` refuses; the guest still gets its poweroff request.
            let agent = match &live.agent {
                Some(agent) if !agent.is_closed() => Some(Arc::clone(agent)),
                _ => tokio::time::timeout(Duration::from_secs(2), self.connect_agent(&live.handle))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(Arc::new),
            };
            vm.state = VmState::Stopping;
            self.save(&vm)?;
            self.fault_point("stop: recorded stopping");
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
            self.fault_point("stop: poweroff asked");
            self.stop_process(&live.handle, timeout).await;
            self.set_live(id, None);
            self.fault_point("stop: vmm stopped");
        }
        self.detach_network(&vm).await;
        self.fault_point("stop: network detached");
        let paths = self.paths(id);
        let _ = std::fs::remove_file(&paths.handle_file);
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        self.fault_point("stop: run files removed");
        vm.state = VmState::Stopped;
        vm.runtime.boot_id = None;
        vm.runtime.address = None;
        vm.runtime.last_error = None;
        self.save(&vm)?;
        self.fault_point("stop: recorded stopped");
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
    /// Like `delete`, it takes an exact name or id.
    pub async fn kill(&self, query: &str, signal: GuestSignal) -> Result<VmRecord, VmError> {
        let vm = self.find_destructive(query)?;
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

    /// Changes vCPUs, memory or disk of a stopped VM. The disk only grows.
    pub async fn set(&self, query: &str, req: SetRequest) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        if vm.state == VmState::Deleting {
            return Err(VmError::Conflict(format!(
                "VM {} is being deleted; `banger vm delete {}` finishes that",
                vm.name, vm.name
            )));
        }
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
            let (allocated, _) = disk::usage(&paths.root_disk).unwrap_or((0, 0));
            self.check_disk_room(spec.disk, allocated)?;
            patch::fsck(self.runner.as_ref(), &paths.root_disk).await?;
            disk::grow(self.runner.as_ref(), &paths.root_disk, spec.disk.bytes()).await?;
        }
        vm.spec = spec;
        self.save(&vm)?;
        Ok(vm)
    }
}
