//! VM methods. `vm.list` and `vm.show` read the store; the lifecycle (create, start, stop,
//! restart, kill, delete, prune) runs in the VM service, create/start/stop/restart as
//! operations whose stages stream to the client; exec, logs, stats, ports, set and the ssh
//! target go to the service too, and its typed errors become API codes here, as do
//! workspace prepare and the network policy methods. Export and apply live in
//! `workspace_export.rs`, copies in `vm_copy.rs`.

use std::sync::Arc;

use std::time::Duration;

use banger_api::methods::{
    Empty, ExecOutput, PolicyInfo, PruneOutput, SshTarget, VmCreateParams, VmDeleteParams,
    VmExecParams, VmKillParams, VmLogsParams, VmPolicySetParams, VmPortSpecsParams, VmRef,
    VmSetParams, VmStopParams, WorkspacePrepareParams,
};
use banger_api::types::{PortInfo, PublishedPortInfo, VmInfo, VmPortsOutput, VmStats};
use banger_api::{ApiError, ErrorCode, Event, OutputStream};

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::handlers::vm_view;
use crate::ops::{OpProgress, run_op};
use banger_model::progress::ProgressSink as _;

pub async fn list(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<VmInfo>, ApiError> {
    let records = ctx
        .with_store(|store| {
            store
                .list_vms()
                .map_err(|e| errors::internal("cannot list VMs", &e))
        })
        .await?;
    // Template builders are banger's own, short-lived and never the user's to touch.
    Ok(records
        .iter()
        .filter(|record| !record.runtime.template_builder)
        .map(|record| with_pid(ctx, record))
        .collect())
}

pub async fn show(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    _events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let records = ctx
        .with_store(|store| {
            store
                .list_vms()
                .map_err(|e| errors::internal("cannot list VMs", &e))
        })
        .await?;
    let record = vm_view::resolve(&records, &params.vm)?;
    let mut info = with_pid(ctx, record);
    if info.policy.is_some() && info.state == banger_model::VmState::Running {
        // The policy's counters, read through the helper (a failure leaves them out).
        if let Ok(status) = ctx.services.vms.policy_status(&info.id).await {
            info.policy_dropped_packets = status.dropped_packets;
            info.policy_denied_destinations =
                status.dropped_packets.map(|_| status.denied.len() as u64);
        }
    }
    Ok(info)
}

pub(crate) fn vm_error(err: banger_vm::VmError) -> ApiError {
    use banger_vm::VmErrorKind;
    let message = banger_vm::chain(&err);
    let missing = match &err {
        banger_vm::VmError::Image(image) => match **image {
            banger_image::ImageError::UnknownImage(_) => Some(
                "`banger image list` shows local images, `banger image list --catalog` what can be pulled",
            ),
            banger_image::ImageError::UnknownKernel(_) => {
                Some("`banger kernel catalog` lists the kernels banger can pull")
            }
            _ => None,
        },
        _ => None,
    };
    if let banger_vm::VmError::Workspace(error) = &err
        && err.kind() == VmErrorKind::BadRequest
    {
        return ApiError::bad_request(message).with_hint(workspace_hint(error));
    }
    match err.kind() {
        VmErrorKind::BadRequest => ApiError::bad_request(message),
        VmErrorKind::NotFound => ApiError::not_found(message)
            .with_hint(missing.unwrap_or("`banger vm list` shows the VMs that exist")),
        VmErrorKind::AlreadyExists => ApiError::new(ErrorCode::AlreadyExists, message)
            .with_hint("pick another --name, or omit it to get a generated one"),
        VmErrorKind::Conflict => ApiError::new(ErrorCode::Conflict, message),
        VmErrorKind::Failed => ApiError::operation_failed(message),
    }
}

/// What to do about a workspace the daemon refused.
pub(crate) fn workspace_hint(error: &banger_workspace::WorkspaceError) -> &'static str {
    use banger_workspace::WorkspaceError as W;
    match error {
        W::NotARepo(_) => {
            "PATH must be a git working tree or a directory inside one (`git init` makes one)"
        }
        W::GitDirIsAFile(_) => {
            "give the superproject (a submodule is copied with it), or the main working tree"
        }
        W::BadGuestPath(_) => "--guest-path takes an absolute path such as /root/repo",
        W::GitRefused { .. } => "run `git status` in PATH to see what git objects to",
        _ => "check PATH",
    }
}

pub(crate) fn with_pid(ctx: &DaemonContext, record: &banger_model::VmRecord) -> VmInfo {
    let mut info = vm_view::vm_info(record);
    info.pid = ctx.services.vms.pid_of(&record.id);
    info
}

/// Runs `work` on the VM service as a long operation `kind` on `target` (stages streamed
/// to the client) and answers the VM as it is afterwards, with its VMM pid.
async fn vm_operation<F, Fut>(
    ctx: &Arc<DaemonContext>,
    kind: &str,
    target: &str,
    events: &EventSink,
    work: F,
) -> Result<VmInfo, ApiError>
where
    F: FnOnce(Arc<banger_vm::VmService>, Arc<OpProgress>) -> Fut,
    Fut: Future<Output = Result<banger_model::VmRecord, banger_vm::VmError>> + Send + 'static,
{
    let vms = ctx.services.vms.clone();
    let record = run_op(&ctx.ops, kind, target, events, move |progress| {
        let work = work(vms, progress);
        async move { work.await.map_err(vm_error) }
    })
    .await?;
    Ok(with_pid(ctx, &record))
}

pub async fn create(
    ctx: &Arc<DaemonContext>,
    params: VmCreateParams,
    events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let target = params.name.clone().unwrap_or_default();
    let policy = policy_from(&params.allow, params.deny_all)?;
    if params.nat && policy.as_ref().is_some_and(|p| p.denies_everything()) {
        return Err(
            ApiError::bad_request("--nat and --deny-all contradict each other")
                .with_hint("--deny-all alone gives the VM no way out; --allow HOST opens one"),
        );
    }
    let request = banger_vm::CreateRequest {
        name: params.name,
        image: params.image,
        kernel: params.kernel,
        vcpus: params.vcpus,
        memory_mib: params.memory_mib,
        disk_mib: params.disk_mib,
        nat: params.nat,
        workspace: params
            .workspace
            .map(|w| {
                banger_vm::WorkspaceRequest::parse(
                    &w.source,
                    w.options.guest_path.as_deref(),
                    w.options.mode.as_deref(),
                    w.options.include_untracked,
                )
            })
            .transpose()
            .map_err(vm_error)?,
        policy,
        publish: port_specs(&params.publish)?,
        cold: params.cold,
        template_builder: false,
    };
    vm_operation(
        ctx,
        "vm.create",
        &target,
        events,
        |vms, progress| async move { vms.create(request, progress.as_ref()).await },
    )
    .await
}

pub async fn start(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let target = params.vm.clone();
    vm_operation(
        ctx,
        "vm.start",
        &target,
        events,
        |vms, progress| async move { vms.start(&params.vm, progress.as_ref()).await },
    )
    .await
}

pub async fn stop(
    ctx: &Arc<DaemonContext>,
    params: VmStopParams,
    events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let target = params.vm.clone();
    let timeout = params.timeout_secs.map(Duration::from_secs);
    vm_operation(
        ctx,
        "vm.stop",
        &target,
        events,
        |vms, progress| async move {
            progress.stage_started("stop");
            let record = vms.stop(&params.vm, timeout).await?;
            progress.stage_done("stop", None);
            Ok(record)
        },
    )
    .await
}

pub async fn restart(
    ctx: &Arc<DaemonContext>,
    params: VmStopParams,
    events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let target = params.vm.clone();
    let timeout = params.timeout_secs.map(Duration::from_secs);
    vm_operation(
        ctx,
        "vm.restart",
        &target,
        events,
        |vms, progress| async move { vms.restart(&params.vm, timeout, progress.as_ref()).await },
    )
    .await
}

pub async fn kill(
    ctx: &Arc<DaemonContext>,
    params: VmKillParams,
    _events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let signal = banger_model::GuestSignal::parse(&params.signal)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let record = ctx
        .services
        .vms
        .kill(&params.vm, signal)
        .await
        .map_err(vm_error)?;
    Ok(with_pid(ctx, &record))
}

pub async fn delete(
    ctx: &Arc<DaemonContext>,
    params: VmDeleteParams,
    _events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let record = ctx
        .services
        .vms
        .delete(&params.vm, params.force)
        .await
        .map_err(vm_error)?;
    Ok(vm_view::vm_info(&record))
}

pub async fn prune(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<PruneOutput, ApiError> {
    let deleted = ctx.services.vms.prune().await.map_err(vm_error)?;
    Ok(PruneOutput { deleted })
}

pub async fn exec(
    ctx: &Arc<DaemonContext>,
    params: VmExecParams,
    events: &EventSink,
) -> Result<ExecOutput, ApiError> {
    let request = banger_proto::agent::ExecRequest {
        argv: params.argv,
        env: params.env.into_iter().collect(),
        cwd: params.cwd,
        tty: params.tty.map(|size| banger_proto::agent::WindowSize {
            rows: size.rows,
            cols: size.cols,
        }),
        user: params.user,
        ..Default::default()
    };
    let sink = events.clone();
    let on_output = move |stream: banger_proto::agent::Stream, data: &[u8]| {
        let stream = match stream {
            banger_proto::agent::Stream::Stdout => OutputStream::Stdout,
            banger_proto::agent::Stream::Stderr => OutputStream::Stderr,
        };
        sink.emit(Event::Output {
            stream,
            data: data.to_vec(),
        });
    };
    let vms = &ctx.services.vms;
    let exit_code = if request.tty.is_some() || request.user.is_some() {
        let mut stdin = params.stdin.then(|| events.take_input());
        let resizes = match (params.tty, stdin.as_mut()) {
            (Some(initial), Some(input)) => Some(window_sizes(input.window_sizes(initial))),
            _ => None,
        };
        vms.exec_interactive(
            &params.vm,
            request,
            stdin,
            resizes,
            on_output,
            events.until_client_gone(),
        )
        .await
    } else if params.stdin {
        let stdin = events.take_input();
        vms.exec_with_stdin(
            &params.vm,
            request,
            stdin,
            on_output,
            events.until_client_gone(),
        )
        .await
    } else {
        vms.exec(&params.vm, request, on_output, events.until_client_gone())
            .await
    }
    .map_err(vm_error)?;
    Ok(ExecOutput { exit_code })
}

/// The client's terminal sizes as the agent's: a task forwards each change until
/// either side is gone.
fn window_sizes(
    mut sizes: tokio::sync::watch::Receiver<banger_api::methods::TerminalSize>,
) -> tokio::sync::watch::Receiver<banger_proto::agent::WindowSize> {
    let convert = |size: banger_api::methods::TerminalSize| banger_proto::agent::WindowSize {
        rows: size.rows,
        cols: size.cols,
    };
    let (sender, receiver) = tokio::sync::watch::channel(convert(*sizes.borrow_and_update()));
    tokio::spawn(async move {
        while sizes.changed().await.is_ok() {
            let size = convert(*sizes.borrow_and_update());
            if sender.send(size).is_err() {
                return;
            }
        }
    });
    receiver
}

pub async fn logs(
    ctx: &Arc<DaemonContext>,
    params: VmLogsParams,
    events: &EventSink,
) -> Result<Empty, ApiError> {
    let (vm, path) = ctx.services.vms.serial_log(&params.vm).map_err(vm_error)?;
    // A followed log ends when its VM stops or is deleted (as `docker logs -f` does).
    let vms = &ctx.services.vms;
    let alive = || {
        vms.find(vm.id.as_str())
            .is_ok_and(|current| current.state.is_active())
    };
    crate::handlers::vm_logs::stream(&path, params.follow, params.tail_lines, events, alive)
        .await?;
    Ok(Empty {})
}

pub async fn stats(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    _events: &EventSink,
) -> Result<VmStats, ApiError> {
    let (record, usage) = ctx.services.vms.usage(&params.vm).map_err(vm_error)?;
    Ok(VmStats {
        name: record.name.to_string(),
        state: record.state,
        vmm_rss_bytes: usage.vmm_rss_bytes,
        vmm_cpu_ms: usage.vmm_cpu_ms,
        disk_allocated_bytes: usage.disk_allocated_bytes,
        disk_size_bytes: usage.disk_size_bytes,
    })
}

pub async fn ports(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    _events: &EventSink,
) -> Result<VmPortsOutput, ApiError> {
    let vms = &ctx.services.vms;
    let (record, published) = vms.published(&params.vm).map_err(vm_error)?;
    let listening = if record.state == banger_model::VmState::Running {
        let (_, ports) = vms.ports(record.id.as_str()).await.map_err(vm_error)?;
        ports
    } else {
        Vec::new()
    };
    let address = record.runtime.address.clone();
    Ok(VmPortsOutput {
        vm: record.name.to_string(),
        state: record.state,
        published: published
            .iter()
            .map(|port| published_info(&port.spec, port.active, address.as_deref()))
            .collect(),
        listening: listening
            .into_iter()
            .map(|port| PortInfo {
                endpoint: format!("{}.vm:{}", record.name, port.port),
                address_endpoint: address.as_ref().map(|a| format!("{a}:{}", port.port)),
                proto: match port.proto {
                    banger_proto::agent::Transport::Tcp => "tcp".to_string(),
                    banger_proto::agent::Transport::Udp => "udp".to_string(),
                },
                port: port.port,
                bind: port.bind.to_string(),
                process: port.process,
            })
            .collect(),
        address,
    })
}

fn published_info(
    spec: &banger_model::PortSpec,
    active: bool,
    address: Option<&str>,
) -> PublishedPortInfo {
    PublishedPortInfo {
        proto: spec.proto.to_string(),
        host_ip: spec.host_ip.to_string(),
        host_port: spec.host_port,
        guest_port: spec.guest_port,
        host_endpoint: spec.host_endpoint(),
        guest_endpoint: address.map(|a| format!("{a}:{}", spec.guest_port)),
        spec: spec.to_string(),
        active,
    }
}

/// `-p` values as specs; the first bad one is the error.
fn port_specs(values: &[String]) -> Result<Vec<banger_model::PortSpec>, ApiError> {
    values
        .iter()
        .map(|value| {
            banger_model::PortSpec::parse(value).map_err(|e| {
                ApiError::bad_request(e.to_string()).with_hint(
                    "-p [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]: e.g. -p 8080:80, \
                     -p 0.0.0.0:8080:80, -p 5353:53/udp",
                )
            })
        })
        .collect()
}

pub async fn port_publish(
    ctx: &Arc<DaemonContext>,
    params: VmPortSpecsParams,
    _events: &EventSink,
) -> Result<Vec<PublishedPortInfo>, ApiError> {
    if params.ports.is_empty() {
        return Err(ApiError::bad_request("no port given")
            .with_hint("e.g. `banger vm port publish web 8080:80`"));
    }
    let specs = port_specs(&params.ports)?;
    let (record, ports) = ctx
        .services
        .vms
        .publish(&params.vm, specs)
        .await
        .map_err(vm_error)?;
    let address = record.runtime.address.as_deref();
    Ok(ports
        .iter()
        .map(|port| published_info(&port.spec, port.active, address))
        .collect())
}

pub async fn port_unpublish(
    ctx: &Arc<DaemonContext>,
    params: VmPortSpecsParams,
    _events: &EventSink,
) -> Result<Vec<PublishedPortInfo>, ApiError> {
    if params.ports.is_empty() {
        return Err(ApiError::bad_request("no port given")
            .with_hint("e.g. `banger vm port unpublish web 8080`"));
    }
    let sides = params
        .ports
        .iter()
        .map(|value| {
            banger_model::HostSide::parse(value)
                .map(|side| (value.clone(), side))
                .map_err(|e| {
                    ApiError::bad_request(e.to_string())
                        .with_hint("name the host side: [HOST_IP:]HOST_PORT[/tcp|udp], e.g. 8080")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (record, removed) = ctx
        .services
        .vms
        .unpublish(&params.vm, sides)
        .await
        .map_err(vm_error)?;
    let address = record.runtime.address.as_deref();
    Ok(removed
        .iter()
        .map(|spec| published_info(spec, false, address))
        .collect())
}

pub async fn set(
    ctx: &Arc<DaemonContext>,
    params: VmSetParams,
    _events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let request = banger_vm::SetRequest {
        vcpus: params.vcpus,
        memory_mib: params.memory_mib,
        disk_mib: params.disk_mib,
    };
    let record = ctx
        .services
        .vms
        .set(&params.vm, request)
        .await
        .map_err(vm_error)?;
    Ok(with_pid(ctx, &record))
}

/// The policy `--allow`/`--deny-all` ask for (`None` when neither is given).
fn policy_from(
    allow: &[String],
    deny_all: bool,
) -> Result<Option<banger_model::NetPolicy>, ApiError> {
    match (allow.is_empty(), deny_all) {
        (true, false) => Ok(None),
        (true, true) => Ok(Some(banger_model::NetPolicy::deny_all())),
        (false, true) => Err(ApiError::bad_request("--allow and --deny-all contradict each other")
            .with_hint("--deny-all is the policy with no --allow; give one or the other")),
        (false, false) => banger_model::NetPolicy::parse(allow).map(Some).map_err(|e| {
            ApiError::bad_request(format!("--allow {e}"))
                .with_hint("HOST[:PORT]: a name (example.com), *.example.com, an IPv4 address or CIDR; e.g. --allow pypi.org:443")
        }),
    }
}

fn policy_info(record: &banger_model::VmRecord, dropped_packets: Option<u64>) -> PolicyInfo {
    PolicyInfo {
        vm: record.name.to_string(),
        policy: record.policy.as_ref().map(|p| p.rule_strings()),
        nat: banger_vm::effective_nat(record),
        running: record.state == banger_model::VmState::Running,
        dropped_packets,
        denied: Vec::new(),
        refused_names: Vec::new(),
    }
}

fn status_info(status: banger_vm::PolicyStatus) -> PolicyInfo {
    let mut info = policy_info(&status.vm, status.dropped_packets);
    info.denied = status
        .denied
        .into_iter()
        .map(|d| banger_api::methods::DeniedDestination {
            address: d.ip.to_string(),
            protocol: d.protocol,
            port: d.port,
            packets: d.packets,
        })
        .collect();
    info.refused_names = status
        .refused_names
        .into_iter()
        .map(|(name, count)| banger_api::methods::RefusedName { name, count })
        .collect();
    info
}

pub async fn policy_check(
    ctx: &Arc<DaemonContext>,
    params: banger_api::methods::VmPolicyCheckParams,
    _events: &EventSink,
) -> Result<banger_api::methods::PolicyCheck, ApiError> {
    let dest: banger_model::Destination =
        params
            .destination
            .parse()
            .map_err(|e: banger_model::PolicyError| {
                ApiError::bad_request(format!("destination {e}")).with_hint(
                    "HOST[:PORT]: one name (pypi.org) or one IPv4 address, e.g. pypi.org:443",
                )
            })?;
    let (record, answer) = ctx
        .services
        .vms
        .check_policy(&params.vm, &dest)
        .map_err(vm_error)?;
    Ok(banger_api::methods::PolicyCheck {
        vm: record.name.to_string(),
        destination: dest.to_string(),
        allowed: answer.allowed,
        rule: answer.rule,
        reason: answer.reason,
    })
}

pub async fn policy_set(
    ctx: &Arc<DaemonContext>,
    params: VmPolicySetParams,
    _events: &EventSink,
) -> Result<PolicyInfo, ApiError> {
    let policy = match (params.clear, policy_from(&params.allow, params.deny_all)?) {
        (true, None) => None,
        (false, Some(policy)) => Some(policy),
        (true, Some(_)) => {
            return Err(
                ApiError::bad_request("--clear and a policy contradict each other")
                    .with_hint("--clear removes the policy; --allow/--deny-all replace it"),
            );
        }
        (false, None) => {
            return Err(ApiError::bad_request("no policy given")
                .with_hint("give --allow HOST[:PORT] (repeatable), --deny-all, or --clear"));
        }
    };
    let record = ctx
        .services
        .vms
        .set_policy(&params.vm, policy)
        .await
        .map_err(vm_error)?;
    Ok(policy_info(&record, None))
}

pub async fn policy_show(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    _events: &EventSink,
) -> Result<PolicyInfo, ApiError> {
    let status = ctx
        .services
        .vms
        .policy_status(&params.vm)
        .await
        .map_err(vm_error)?;
    Ok(status_info(status))
}

pub async fn ssh_target(
    ctx: &Arc<DaemonContext>,
    params: VmRef,
    events: &EventSink,
) -> Result<SshTarget, ApiError> {
    let vm = ctx.services.vms.find(&params.vm).map_err(vm_error)?;
    if vm.state != banger_model::VmState::Running {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("VM {} is {}; start it first", vm.name, vm.state),
        ));
    }
    let Some(address) = vm.runtime.address.clone() else {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "VM {} has no network address (is banger-helper running? see `banger doctor`); \
                 use `banger vm exec` instead",
                vm.name
            ),
        ));
    };
    // Right after a boot the guest's host key may still be being read (sshd may not
    // listen yet), and ssh checks it: wait, and say so.
    if ctx.services.vms.ssh_pending(&vm.id) {
        let started = std::time::Instant::now();
        let stage = format!("waiting for ssh in {}", vm.name);
        let stage_event = |state, elapsed_ms| Event::Stage {
            op: String::new(),
            stage: stage.clone(),
            state,
            elapsed_ms,
            detail: None,
        };
        events.emit(stage_event(banger_api::StageState::Started, 0));
        ctx.services.vms.ssh_settled(&vm.id).await;
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        events.emit(stage_event(banger_api::StageState::Done, elapsed));
    } else {
        ctx.services.vms.ssh_settled(&vm.id).await;
    }
    let target = banger_ssh::SshTarget::for_vm(&ctx.dirs.config, vm.name.as_str(), &address);
    Ok(SshTarget {
        name: vm.name.to_string(),
        address: target.address,
        user: target.user,
        identity_file: target.identity_file.display().to_string(),
        known_hosts_file: target.known_hosts_file.display().to_string(),
    })
}

/// `vm.workspace.prepare`: the repository streamed into a running VM (a long operation).
pub async fn workspace_prepare(
    ctx: &Arc<DaemonContext>,
    params: WorkspacePrepareParams,
    events: &EventSink,
) -> Result<VmInfo, ApiError> {
    let request = banger_vm::WorkspaceRequest::parse(
        &params.source,
        params.options.guest_path.as_deref(),
        params.options.mode.as_deref(),
        params.options.include_untracked,
    )
    .map_err(vm_error)?;
    let target = params.vm.clone();
    vm_operation(
        ctx,
        "vm.workspace.prepare",
        &target,
        events,
        |vms, progress| async move {
            vms.prepare_workspace(&params.vm, request, progress.as_ref())
                .await
        },
    )
    .await
}
