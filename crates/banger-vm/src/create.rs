//! `vm create` and the boot path shared with `vm start`: reserve the name, resolve image
//! and kernel, provision and patch the disk, launch the VMM, wait for the guest agent.
//! Every failure after the reservation removes what was made (row, disk, directory,
//! process), so a failed create leaves nothing behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_model::progress::{ProgressSink, RESERVE_NAME_STAGE};
use banger_model::{
    ByteSize, VmId, VmName, VmRecord, VmRuntime, VmSpec, VmState, generate_vm_name,
};
use banger_proto::agent_client::{AgentClient, AgentError};
use banger_vmm::{AgentEndpoint, DiskFormat, LaunchSpec, NetAttachment, VmmHandle};

use crate::cmdline::{GuestNet, kernel_cmdline};
use crate::error::{VmError, chain};
use crate::patch::{GuestPatch, InitSystem};
use crate::service::{Live, VmService, init_name, now};
use crate::template::{
    START_STAGE, STARTED_FROM_COLD, STARTED_FROM_TEMPLATE, TemplateInputs, cold_reason,
};
use crate::{disk, early_boot, handle_file, patch};

/// What `vm create` asks for; `None` means the default.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub image: Option<String>,
    pub kernel: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disk_mib: Option<u64>,
    pub nat: bool,
    /// A repository to build into a workspace disk before the boot.
    pub workspace: Option<crate::workspace::WorkspaceRequest>,
    /// The VM's network policy (`--allow`, `--deny-all`).
    pub policy: Option<banger_model::NetPolicy>,
    /// Host ports forwarded to the guest (`-p`), open from the first boot.
    pub publish: Vec<banger_model::PortSpec>,
    /// Boot cold even when a warm template matches (`--cold`).
    pub cold: bool,
    /// A hidden VM to make a warm template from (`template.rs`).
    pub template_builder: bool,
}

/// How a new VM may start warm.
struct WarmPlan {
    inputs: TemplateInputs,
    /// The ready template whose key matches, if any.
    template: Option<banger_store::SnapshotRecord>,
    /// The image keeps warm templates (a cold boot starts a build).
    warm: bool,
}

impl VmService {
    /// Validates `req` into a name and spec; nothing is written.
    fn plan_create(&self, req: &CreateRequest) -> Result<(Option<VmName>, VmSpec), VmError> {
        let name = match &req.name {
            Some(name) => {
                Some(VmName::parse(name).map_err(|e| VmError::BadRequest(e.to_string()))?)
            }
            None => None,
        };
        let defaults = VmSpec::default();
        let spec = VmSpec {
            vcpus: req.vcpus.unwrap_or(defaults.vcpus),
            memory: req
                .memory_mib
                .map(ByteSize::from_mib)
                .unwrap_or(defaults.memory),
            disk: req
                .disk_mib
                .map(ByteSize::from_mib)
                .unwrap_or(defaults.disk),
        };
        spec.validate(&self.cfg.limits)
            .map_err(|e| VmError::BadRequest(e.to_string()))?;
        self.check_disk_room(spec.disk, 0)?;
        if let Some(image) = &req.image {
            banger_model::ResourceName::parse_as("image name", image)
                .map_err(|e| VmError::BadRequest(e.to_string()))?;
        }
        if let Some(kernel) = &req.kernel {
            banger_model::ResourceName::parse_as("kernel name", kernel)
                .map_err(|e| VmError::BadRequest(e.to_string()))?;
        }
        Ok((name, spec))
    }

    /// Creates and boots a VM, reporting stages to `progress`.
    pub async fn create(
        self: &Arc<Self>,
        req: CreateRequest,
        progress: &dyn ProgressSink,
    ) -> Result<VmRecord, VmError> {
        let (name, spec) = self.plan_create(&req)?;
        crate::publish::check_distinct(&req.publish)?;
        if let Some(workspace) = &req.workspace {
            // A path that is not a working tree is refused before any row exists.
            banger_workspace::discover(self.runner.as_ref(), &workspace.source).await?;
        }
        let image_name = req
            .image
            .clone()
            .unwrap_or_else(|| banger_model::catalog::DEFAULT_IMAGE.to_string());

        progress.stage_started(RESERVE_NAME_STAGE);
        let mut vm = self.reserve(name, spec, &image_name, &req).await?;
        // The VM's lock is taken before the name is announced: a client that deletes the
        // VM as soon as it learns the name (`vm run --rm` on Ctrl-C) waits for this create
        // to finish or fail instead of racing it.
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        progress.stage_done(RESERVE_NAME_STAGE, Some(vm.name.as_str()));
        match self.finish_create(&mut vm, &req, progress).await {
            Ok(()) => Ok(vm),
            Err(err) => {
                self.discard(&vm).await;
                Err(err)
            }
        }
    }

    /// Takes the global lock only to pick the name and insert the row.
    pub(crate) async fn reserve(
        &self,
        name: Option<VmName>,
        spec: VmSpec,
        image: &str,
        req: &CreateRequest,
    ) -> Result<VmRecord, VmError> {
        let _global = self.reserve.lock().await;
        let existing = self.list()?;
        let taken = |candidate: &str| existing.iter().any(|vm| vm.name.as_str() == candidate);
        let name = match name {
            Some(name) if taken(name.as_str()) => {
                return Err(VmError::AlreadyExists(name.to_string()));
            }
            Some(name) => name,
            None => generate_vm_name(&mut || fastrand::u64(..), taken),
        };
        let vm = VmRecord {
            id: VmId::from_random(fastrand::u64(..)),
            name,
            state: VmState::Creating,
            image: image.to_string(),
            kernel: req.kernel.clone().unwrap_or_default(),
            spec,
            nat: req.nat,
            policy: req.policy.clone(),
            driver: self.driver.kind().to_string(),
            runtime: VmRuntime {
                template_builder: req.template_builder,
                ..VmRuntime::default()
            },
            workspace: None,
            created_at: now(),
        };
        self.with_store(|s| s.insert_vm(&vm))
            .map_err(|err| match err {
                VmError::Store(err)
                    if matches!(*err, banger_store::StoreError::AlreadyExists { .. }) =>
                {
                    VmError::AlreadyExists(vm.name.to_string())
                }
                other => other,
            })?;
        let at = now();
        let published = self.with_store(|s| {
            for port in &req.publish {
                s.put_published_port(&vm.id, port, &at)?;
            }
            Ok(())
        });
        if let Err(error) = published {
            let _ = self.with_store(|s| s.delete_vm(&vm.id));
            return Err(error);
        }
        Ok(vm)
    }

    async fn finish_create(
        self: &Arc<Self>,
        vm: &mut VmRecord,
        req: &CreateRequest,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let image = self.resolve_image(&vm.image, progress).await?;
        vm.kernel = req.kernel.clone().unwrap_or_else(|| image.kernel.clone());
        let paths = self.paths(&vm.id);
        vm.runtime.dir = Some(paths.dir.display().to_string());
        self.save(vm)?;

        let warm = self.plan_warm_start(vm, req, &image, progress).await?;
        if let Some(WarmPlan {
            template: Some(template),
            ..
        }) = &warm
        {
            vm.runtime.started_from = Some(STARTED_FROM_TEMPLATE.into());
            match self.restore_fork(vm, template, progress).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(vm = %vm.name, template = %template.name, error = %chain(&error), "cannot restore from the warm template; booting cold");
                    self.undo_restore(vm).await?;
                    progress.stage_done(
                        START_STAGE,
                        Some(&format!("cold: the restore failed ({})", chain(&error))),
                    );
                }
            }
        }

        progress.stage_started("root disk");
        std::fs::create_dir_all(&paths.dir)
            .map_err(VmError::io("cannot create the VM directory"))?;
        let method = disk::provision(self.runner.as_ref(), &image.path, &paths.root_disk).await?;
        patch::fsck(self.runner.as_ref(), &paths.root_disk).await?;
        disk::grow(self.runner.as_ref(), &paths.root_disk, vm.spec.disk.bytes()).await?;
        progress.stage_done("root disk", Some(method.as_str()));

        progress.stage_started("prepare guest");
        let guest = GuestPatch {
            hostname: vm.name.to_string(),
            authorized_keys: self.cfg.authorized_keys.clone(),
            agent_binary: self.cfg.agent_binary.clone(),
            init: match init_name(image.init) {
                "systemd" => InitSystem::Systemd,
                _ => InitSystem::Busybox,
            },
            resolv_conf: match (&vm.policy, self.network()) {
                (Some(_), Some(network)) => {
                    Some(crate::policy::policy_resolv_conf(network.pool().gateway()))
                }
                (Some(_), None) => None,
                (None, _) if vm.nat => crate::resolv::for_nat_guest(),
                (None, _) => None,
            },
        };
        patch::apply(
            self.runner.as_ref(),
            &paths.root_disk,
            &guest,
            &paths.stage_dir,
        )
        .await?;
        progress.stage_done("prepare guest", None);

        if let Some(workspace) = &req.workspace {
            self.build_workspace_disk(vm, workspace, progress).await?;
        }
        self.boot(vm, progress).await?;
        if let Some(WarmPlan {
            inputs,
            template: None,
            warm: true,
        }) = warm
        {
            self.spawn_template_build(inputs);
        }
        Ok(())
    }

    /// Says (as the [`START_STAGE`]) whether the new VM restores from a warm template or
    /// boots cold, and why; `None` when templates do not apply at all.
    async fn plan_warm_start(
        &self,
        vm: &VmRecord,
        req: &CreateRequest,
        image: &banger_image::ImageArtifact,
        progress: &dyn ProgressSink,
    ) -> Result<Option<WarmPlan>, VmError> {
        if req.template_builder {
            return Ok(None);
        }
        progress.stage_started(START_STAGE);
        let qemu = self.driver.kind() == banger_vmm::DriverKind::Qemu;
        if let Some(reason) = cold_reason(req, self.cfg.warm_templates, qemu) {
            progress.stage_done(START_STAGE, Some(&format!("cold: {reason}")));
            return Ok(None);
        }
        let kernel = self.resolve_kernel(&vm.kernel, progress).await?;
        let inputs = self.template_inputs(vm, image, &kernel);
        let template = self.find_template(&inputs.key())?;
        let warm = self.image_is_warm(&vm.image)?;
        let building = self
            .building_templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&inputs.key());
        let detail = match (&template, warm) {
            (Some(template), _) => format!("from template {}", template.name),
            (None, true) if building => {
                "cold: the template for these inputs is still being made".to_string()
            }
            (None, true) => {
                "cold: no template for these inputs yet (one is made in the background)".to_string()
            }
            (None, false) => format!(
                "cold: image {} has no warm templates (`banger image warm {}`)",
                vm.image, vm.image
            ),
        };
        progress.stage_done(START_STAGE, Some(&detail));
        Ok(Some(WarmPlan {
            inputs,
            template,
            warm,
        }))
    }

    /// Undoes a restore that failed part way, so the VM can boot cold instead.
    async fn undo_restore(&self, vm: &mut VmRecord) -> Result<(), VmError> {
        if let Some(live) = self.live_handle(&vm.id) {
            self.stop_process(&live.handle, Duration::ZERO).await;
            self.set_live(&vm.id, None);
        }
        self.detach_network(vm).await;
        let paths = self.paths(&vm.id);
        let _ = std::fs::remove_file(&paths.handle_file);
        let _ = std::fs::remove_file(&paths.root_disk);
        vm.state = VmState::Creating;
        vm.runtime.forked_from = None;
        vm.runtime.started_from = None;
        vm.runtime.address = None;
        vm.runtime.boot_id = None;
        self.save(vm)
    }

    /// Removes every trace of a VM that failed to be created.
    pub(crate) async fn discard(&self, vm: &VmRecord) {
        if let Some(live) = self.live_handle(&vm.id) {
            self.stop_process(&live.handle, Duration::ZERO).await;
            self.set_live(&vm.id, None);
        }
        self.detach_network(vm).await;
        let paths = self.paths(&vm.id);
        let _ = std::fs::remove_dir_all(&paths.dir);
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        // A create that failed for lack of space fails its row's delete the same way
        // (SQLITE_FULL): the space reserve is released for it as for `vm delete`, or the
        // row would stay `creating` with nothing behind it until the next restart.
        if let Err(error) = self.with_store_freeing_reserve(|s| s.delete_vm(&vm.id).map(drop)) {
            tracing::warn!(
                vm = %vm.name,
                error = %chain(&error),
                "cannot remove the row of a failed create; the next restart's reconcile does"
            );
        }
        self.forget_lock(&vm.id);
        self.space_reserve.ensure();
    }

    /// Launches the VMM for `vm` and waits for its agent. On failure the process is gone.
    pub(crate) async fn boot(
        self: &Arc<Self>,
        vm: &mut VmRecord,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let kernel = self.resolve_kernel(&vm.kernel, progress).await?;
        let paths = self.paths(&vm.id);
        std::fs::create_dir_all(&paths.run_dir)
            .map_err(VmError::io("cannot create the VM's runtime directory"))?;
        let mut attempt = 1;
        loop {
            let attachment = self.attach_network(vm).await?;
            // Published ports listen from before the boot (a connection made early
            // waits for the guest), so a port in use fails the start at once.
            if let Err(error) = self.open_published(vm, attachment.as_ref().map(|a| a.guest_ip)) {
                self.detach_network(vm).await;
                return Err(error);
            }
            let result = self.boot_attached(vm, &kernel, attachment, progress).await;
            let Err(error) = result else {
                return Ok(());
            };
            self.detach_network(vm).await;
            vm.runtime.address = None;
            let console = std::fs::read(&paths.serial_log)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let retry = match &error {
                VmError::BootFailed { .. } if attempt < early_boot::BOOT_ATTEMPTS => {
                    early_boot::retryable(&console)
                }
                _ => None,
            };
            let Some(why) = retry else {
                return Err(error);
            };
            tracing::warn!(vm = %vm.name, attempt, why, "guest failed in early boot; booting it again");
            progress.stage_done(
                "agent ready",
                Some(&format!("failed: {why}; booting again")),
            );
            attempt += 1;
        }
    }

    /// The rest of [`Self::boot`], once the network (if any) is attached.
    async fn boot_attached(
        self: &Arc<Self>,
        vm: &mut VmRecord,
        kernel: &banger_image::KernelArtifact,
        attachment: Option<banger_net::NetAttachment>,
        progress: &dyn ProgressSink,
    ) -> Result<(), VmError> {
        let paths = self.paths(&vm.id);
        let guest_net = attachment.as_ref().map(|a| GuestNet {
            address: a.guest_ip.to_string(),
            gateway: a.gateway.to_string(),
            netmask: a.netmask.to_string(),
        });
        let address = attachment.as_ref().map(|a| a.guest_ip);
        let net = attachment.map(|a| NetAttachment {
            tap_name: a.tap_name,
            tap_fd: a.tap_fd,
            mac: a.mac.to_string(),
        });
        let spec = LaunchSpec {
            vm_name: vm.name.to_string(),
            vcpus: vm.spec.vcpus,
            memory_mib: vm.spec.memory.as_mib(),
            kernel: kernel.vmlinux.clone(),
            initramfs: Some(kernel.initramfs.clone()),
            cmdline: kernel_cmdline(vm.name.as_str(), guest_net.as_ref()),
            root_disk: paths.root_disk.clone(),
            root_disk_format: DiskFormat::Raw,
            extra_disks: self.extra_disks(vm),
            run_dir: paths.run_dir.clone(),
            serial_log: paths.serial_log.clone(),
            net,
            outbox: self.outbox(&paths)?,
        };

        progress.stage_started("boot");
        let handle = self.driver.launch(&spec).await?;
        // QEMU holds its own copy of the tap now; ours must not keep the tap open.
        drop(spec);
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
        vm.runtime.started_from = Some(STARTED_FROM_COLD.into());
        if let Some(origin) = vm.runtime.forked_from.as_mut() {
            // A fork booted cold has a boot id of its own from now on.
            origin.restored_boot = false;
        }
        vm.runtime.accelerator = Some(handle.accelerator.to_string());
        vm.runtime.address = address.map(|ip| ip.to_string());
        vm.runtime.last_error = None;
        self.save(vm)?;
        progress.stage_done(
            "boot",
            Some(&format!(
                "{} under {}",
                self.driver.kind(),
                handle.accelerator
            )),
        );

        progress.stage_started("agent ready");
        let ready = self.wait_agent(&handle, self.cfg.ready_timeout).await;
        let (agent, hello) = match ready {
            Ok(ready) => ready,
            Err(reason) => {
                self.stop_process(&handle, Duration::ZERO).await;
                self.set_live(&vm.id, None);
                let _ = std::fs::remove_file(&paths.handle_file);
                return Err(VmError::BootFailed {
                    reason,
                    serial_tail: VmService::serial_tail(&paths.serial_log, 25),
                });
            }
        };
        progress.stage_done("agent ready", address.map(|a| a.to_string()).as_deref());
        if let Err(error) = self.mount_workspace(vm, &agent, progress).await {
            self.stop_process(&handle, Duration::ZERO).await;
            self.set_live(&vm.id, None);
            let _ = std::fs::remove_file(&paths.handle_file);
            return Err(error);
        }
        self.go_live(vm, handle, agent, &hello.boot_id, address, None)
    }

    /// A booted (or restored) guest whose agent answered becomes a running VM: its `.vm`
    /// name and host key are announced, the live handle kept, the record saved, and its
    /// VMM watched. `host_key` is the public key the host made for a clone (a cold
    /// guest's is read from it).
    pub(crate) fn go_live(
        self: &Arc<Self>,
        vm: &mut VmRecord,
        handle: VmmHandle,
        agent: Arc<AgentClient>,
        boot_id: &str,
        address: Option<std::net::Ipv4Addr>,
        host_key: Option<String>,
    ) -> Result<(), VmError> {
        if let Some(address) = address
            && !vm.runtime.template_builder
        {
            // A template builder's host key is never read: on images that make keys on
            // first use (dropbear), the template then holds none.
            self.announce(vm, address, Arc::clone(&agent), host_key);
        }
        self.set_live(
            &vm.id,
            Some(Live {
                handle: handle.clone(),
                agent: Some(agent),
            }),
        );
        vm.state = VmState::Running;
        vm.runtime.boot_id = Some(boot_id.to_string());
        vm.runtime.started_at = Some(now());
        self.save(vm)?;
        self.watch(vm.id.clone(), handle);
        Ok(())
    }

    /// Connects to the guest agent of a VMM.
    pub(crate) async fn connect_agent(
        &self,
        handle: &VmmHandle,
    ) -> Result<AgentClient, AgentError> {
        match self.driver.agent_endpoint(handle) {
            AgentEndpoint::VirtioSerial { socket } => AgentClient::connect_unix(&socket).await,
            AgentEndpoint::Vsock { uds, port } => AgentClient::connect_vsock_uds(&uds, port).await,
        }
    }

    /// Waits until the guest agent answers `hello`, or the VMM exits, or `timeout`.
    pub(crate) async fn wait_agent(
        &self,
        handle: &VmmHandle,
        timeout: Duration,
    ) -> Result<(Arc<AgentClient>, banger_proto::agent::Hello), String> {
        let started = Instant::now();
        let attempt = async {
            let mut last_error = String::from("no answer yet");
            loop {
                if started.elapsed() > timeout {
                    return Err(format!(
                        "the guest agent did not answer within {}s ({last_error})",
                        timeout.as_secs()
                    ));
                }
                match self.connect_agent(handle).await {
                    Ok(agent) => loop {
                        match agent.hello(Duration::from_secs(1)).await {
                            Ok(hello) => return Ok((Arc::new(agent), hello)),
                            Err(err @ AgentError::Timeout(_)) => last_error = chain(&err),
                            Err(err) => {
                                // A closed connection fails at once, without awaiting:
                                // retrying in place would spin without ever letting
                                // the VMM-exit branch below run. Pause, reconnect.
                                last_error = chain(&err);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                break;
                            }
                        }
                        if started.elapsed() > timeout {
                            break;
                        }
                    },
                    Err(err) => {
                        last_error = chain(&err);
                        // The chardev socket appears a moment after QEMU starts.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        tokio::select! {
            ready = attempt => ready,
            () = self.driver.wait_exit(handle) => {
                Err("the VMM process exited during boot".to_string())
            }
        }
    }

    /// Watches a running VMM; when it exits on its own, the VM is marked stopped.
    pub(crate) fn watch(self: &Arc<Self>, id: VmId, handle: VmmHandle) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            service.driver.wait_exit(&handle).await;
            let lock = service.vm_lock(&id);
            let _guard = lock.lock().await;
            let still_ours = service.live_handle(&id).is_some_and(|live| {
                live.handle.pid == handle.pid && live.handle.start_time == handle.start_time
            });
            if !still_ours {
                return;
            }
            service.set_live(&id, None);
            let paths = service.paths(&id);
            let _ = std::fs::remove_file(&paths.handle_file);
            if let Ok(mut vm) = service.reload(&id) {
                service.detach_network(&vm).await;
                if vm.state == VmState::Stopping {
                    // A stop resumed after a daemon restart: the guest powered off.
                    vm.state = VmState::Stopped;
                    vm.runtime.boot_id = None;
                    vm.runtime.address = None;
                    vm.runtime.last_error = None;
                    let _ = service.save(&vm);
                } else if matches!(vm.state, VmState::Running | VmState::Starting) {
                    vm.state = VmState::Stopped;
                    vm.runtime.boot_id = None;
                    vm.runtime.address = None;
                    vm.runtime.last_error = Some(
                        "the VMM process exited unexpectedly (see `banger vm logs`)".to_string(),
                    );
                    let _ = service.save(&vm);
                    tracing::warn!(vm = %vm.name, "VMM exited unexpectedly");
                }
            }
        });
    }

    /// Stops a VMM process: graceful for `grace`, then SIGKILL; returns when it is gone.
    pub(crate) async fn stop_process(&self, handle: &VmmHandle, grace: Duration) {
        if !self.driver.is_alive(handle) {
            return;
        }
        if grace.is_zero() {
            let _ = self.driver.kill(handle, 9).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.driver.wait_exit(handle)).await;
        } else if let Err(err) = self.driver.shutdown(handle, grace).await {
            tracing::warn!(error = %chain(&err), "graceful shutdown failed; killing");
            let _ = self.driver.kill(handle, 9).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.driver.wait_exit(handle)).await;
        }
    }
}
