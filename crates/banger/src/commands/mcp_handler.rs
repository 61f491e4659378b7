//! The tools of `banger mcp`, run against the daemon through `banger-api` on a
//! connection of their own per call (dropping it mid-exec makes the daemon stop the
//! guest process: that is how a cancelled or timed-out command ends). Arguments are
//! decoded into typed structs (a wrong type is a protocol error); everything that fails
//! later is a tool error with banger's message and hint, as the CLI would print it.
//! The session's policy is checked on the resolved VM name before anything is done, and
//! every call is logged to stderr with the client's name.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::methods::{
    ExportFormat, NameRef, SnapshotShow, VmCreate, VmCreateParams, VmDelete, VmDeleteParams,
    VmExec, VmExecParams, VmFork, VmForkParams, VmList, VmRef, VmShow, WorkspaceExport,
    WorkspaceExportParams, WorkspacePrepare, WorkspacePrepareParams,
};
use banger_api::types::VmInfo;
use banger_api::{ErrorCode, Event, OutputStream, StageState};
use banger_mcp::cap::Capped;
use banger_mcp::policy::{Access, Policy, Refusal, Session};
use banger_mcp::protocol::{ClientInfo, Tool, ToolResult};
use banger_mcp::server::{CallCtx, CallError, Handler, Progress};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::commands::mcp_tools::{
    self, ALLOW_MAX, EXPORT_PATCH_MIN_CAP, FILE_READ_DEFAULT, FILE_WRITE_MAX, FORK_MAX,
    TIMEOUT_DEFAULT_SECS,
};
use crate::commands::workspace_local::{self, Checked, WorkspaceArgs};
use crate::connect::{Ctx, Daemon};
use crate::errors::{self, CliError};

/// A tool error, or the call was cancelled.
enum Stop {
    Failed(ToolResult),
    Cancelled,
}

impl From<CliError> for Stop {
    fn from(err: CliError) -> Stop {
        let report = errors::translate(&err);
        Stop::Failed(ToolResult::Failed {
            error: report.error,
            hint: report.hint,
        })
    }
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Failed(ToolResult::Failed {
            error: refusal.message,
            hint: Some(refusal.hint),
        })
    }
}

type Outcome = Result<Value, Stop>;

/// The banger side of the MCP loop.
#[derive(Debug)]
pub struct BangerTools {
    ctx: Ctx,
    policy: Policy,
    max_output: usize,
    session: Mutex<Session>,
    client: Mutex<String>,
}

impl BangerTools {
    pub fn new(ctx: Ctx, policy: Policy, max_output: usize) -> BangerTools {
        BangerTools {
            ctx,
            policy,
            max_output,
            session: Mutex::default(),
            client: Mutex::new("unknown".into()),
        }
    }

    fn log(&self, message: &str) {
        let client = self.client.lock().map(|c| c.clone()).unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "banger mcp: client={client} profile={} {message}",
            self.policy.profile.as_str()
        );
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn args<T: DeserializeOwned>(arguments: Value) -> Result<T, CallError> {
    serde_json::from_value(arguments).map_err(|e| CallError::InvalidParams(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoArgs {
    repo: Option<String>,
    guest_path: Option<String>,
    #[serde(default)]
    include_untracked: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    argv: Vec<String>,
    image: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    nat: bool,
    #[serde(default)]
    keep: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny_all: bool,
    repo: Option<String>,
    guest_path: Option<String>,
    #[serde(default)]
    include_untracked: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    name: Option<String>,
    image: Option<String>,
    vcpus: Option<u32>,
    memory_mib: Option<u64>,
    #[serde(default)]
    nat: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny_all: bool,
    #[serde(flatten)]
    repo: RepoArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkArgs {
    source: String,
    name: Option<String>,
    count: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    vm: String,
    argv: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteArgs {
    vm: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareArgs {
    vm: String,
    #[serde(flatten)]
    repo: RepoArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportArgs {
    vm: String,
    base_commit: Option<String>,
    guest_path: Option<String>,
    #[serde(default)]
    format: ExportFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    vm: String,
    path: String,
    max_bytes: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "base64")]
    Base64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    vm: String,
    path: String,
    content: String,
    encoding: Option<Encoding>,
}

fn nonempty_argv(argv: &[String]) -> Result<(), CallError> {
    if argv.is_empty() {
        return Err(CallError::InvalidParams(
            "argv: needs at least one entry".into(),
        ));
    }
    Ok(())
}

fn allow_list(allow: &[String]) -> Result<(), CallError> {
    if allow.len() > ALLOW_MAX {
        return Err(CallError::InvalidParams(format!(
            "allow: {} rules is more than a policy takes ({ALLOW_MAX})",
            allow.len()
        )));
    }
    Ok(())
}

fn timeout(secs: Option<u64>) -> Result<Duration, CallError> {
    let secs = secs.unwrap_or(TIMEOUT_DEFAULT_SECS);
    if !(1..=mcp_tools::TIMEOUT_MAX_SECS).contains(&secs) {
        return Err(CallError::InvalidParams(format!(
            "timeout_secs: must be 1..={}",
            mcp_tools::TIMEOUT_MAX_SECS
        )));
    }
    Ok(Duration::from_secs(secs))
}

fn absolute_guest_path(path: &str) -> Result<(), CallError> {
    if !path.starts_with('/') {
        return Err(CallError::InvalidParams(format!(
            "path: {path:?} is not an absolute guest path"
        )));
    }
    Ok(())
}

/// A call decoded and ready to run.
enum Call {
    Run(RunArgs, Duration),
    Create(CreateArgs),
    Fork(ForkArgs, u32),
    Exec(ExecArgs, Duration),
    List,
    Delete(DeleteArgs),
    Prepare(PrepareArgs),
    Export(ExportArgs),
    Read(ReadArgs, u64),
    Write(WriteArgs, Vec<u8>),
}

fn decode(name: &str, arguments: Value) -> Result<Call, CallError> {
    Ok(match name {
        "vm_run" => {
            let a: RunArgs = args(arguments)?;
            nonempty_argv(&a.argv)?;
            allow_list(&a.allow)?;
            let t = timeout(a.timeout_secs)?;
            Call::Run(a, t)
        }
        "vm_create" => {
            let a: CreateArgs = args(arguments)?;
            allow_list(&a.allow)?;
            Call::Create(a)
        }
        "vm_fork" => {
            let a: ForkArgs = args(arguments)?;
            let count = a.count.unwrap_or(1);
            if !(1..=FORK_MAX).contains(&count) {
                return Err(CallError::InvalidParams(format!(
                    "count: must be 1..={FORK_MAX}"
                )));
            }
            Call::Fork(a, count)
        }
        "vm_exec" => {
            let a: ExecArgs = args(arguments)?;
            nonempty_argv(&a.argv)?;
            let t = timeout(a.timeout_secs)?;
            Call::Exec(a, t)
        }
        "vm_list" => {
            let _: ListArgs = args(arguments)?;
            Call::List
        }
        "vm_delete" => Call::Delete(args(arguments)?),
        "workspace_prepare" => {
            let a: PrepareArgs = args(arguments)?;
            if a.repo.repo.is_none() {
                return Err(CallError::InvalidParams("repo: required".into()));
            }
            Call::Prepare(a)
        }
        "workspace_export" => Call::Export(args(arguments)?),
        "file_read" => {
            let a: ReadArgs = args(arguments)?;
            absolute_guest_path(&a.path)?;
            let max = a.max_bytes.unwrap_or(FILE_READ_DEFAULT);
            if !(1..=mcp_tools::FILE_READ_MAX).contains(&max) {
                return Err(CallError::InvalidParams(format!(
                    "max_bytes: must be 1..={}",
                    mcp_tools::FILE_READ_MAX
                )));
            }
            Call::Read(a, max)
        }
        "file_write" => {
            let a: WriteArgs = args(arguments)?;
            absolute_guest_path(&a.path)?;
            let bytes = match a.encoding.unwrap_or(Encoding::Utf8) {
                Encoding::Utf8 => a.content.clone().into_bytes(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(&a.content)
                    .map_err(|e| CallError::InvalidParams(format!("content: not base64: {e}")))?,
            };
            if bytes.len() > FILE_WRITE_MAX {
                return Err(CallError::InvalidParams(format!(
                    "content: {} bytes is more than file_write takes ({FILE_WRITE_MAX})",
                    bytes.len()
                )));
            }
            Call::Write(a, bytes)
        }
        other => return Err(CallError::UnknownTool(other.to_string())),
    })
}

impl Handler for BangerTools {
    fn tools(&self) -> Vec<Tool> {
        mcp_tools::offered(&self.policy)
    }

    fn initialized(&self, client: &ClientInfo) {
        if let Ok(mut name) = self.client.lock() {
            name.clone_from(&client.name);
        }
        self.log(&format!(
            "initialize version={} protocol={}",
            client.version, client.protocol_version
        ));
    }

    async fn call(
        self: Arc<Self>,
        name: String,
        arguments: Value,
        ctx: CallCtx,
    ) -> Result<ToolResult, CallError> {
        let summary = summarize(&arguments);
        let call = match decode(&name, arguments) {
            Ok(call) => call,
            Err(err) => {
                self.log(&format!("tool={name} {summary} -> refused: {err}"));
                return Err(err);
            }
        };
        self.log(&format!("tool={name} {summary} -> started"));
        let started = std::time::Instant::now();
        let outcome = match call {
            Call::Run(a, t) => self.vm_run(a, t, &ctx).await,
            Call::Create(a) => self.vm_create(a, &ctx).await,
            Call::Fork(a, count) => self.vm_fork(a, count, &ctx).await,
            Call::Exec(a, t) => self.vm_exec(a, t, &ctx).await,
            Call::List => self.vm_list().await,
            Call::Delete(a) => self.vm_delete(a).await,
            Call::Prepare(a) => self.workspace_prepare(a, &ctx).await,
            Call::Export(a) => self.workspace_export(a, &ctx).await,
            Call::Read(a, max) => self.file_read(a, max, &ctx).await,
            Call::Write(a, bytes) => self.file_write(a, bytes, &ctx).await,
        };
        let took = started.elapsed().as_secs_f64();
        Ok(match outcome {
            Ok(value) => {
                let detail = value
                    .get("exit_code")
                    .map(|c| format!(" exit_code={c}"))
                    .unwrap_or_default();
                self.log(&format!("tool={name} -> ok{detail} in {took:.1}s"));
                ToolResult::Ok(value)
            }
            Err(Stop::Failed(result)) => {
                if let ToolResult::Failed { error, .. } = &result {
                    self.log(&format!("tool={name} -> error: {error} in {took:.1}s"));
                }
                result
            }
            Err(Stop::Cancelled) => {
                self.log(&format!("tool={name} -> cancelled in {took:.1}s"));
                ToolResult::failed("cancelled", None)
            }
        })
    }
}

/// The arguments as the log shows them: keys and short values, never file content.
fn summarize(arguments: &Value) -> String {
    let Some(map) = arguments.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| {
            let text = match (k.as_str(), v) {
                ("content", Value::String(s)) => format!("<{} chars>", s.len()),
                ("env", Value::Object(m)) => format!("<{} vars>", m.len()),
                (_, v) => {
                    let t = v.to_string();
                    if t.len() > 120 {
                        format!("{}...", t.chars().take(120).collect::<String>())
                    } else {
                        t
                    }
                }
            };
            format!("{k}={text}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a command did, capped.
struct Exec {
    exit_code: Option<i32>,
    timed_out: bool,
    stdout: Capped,
    stderr: Capped,
}

impl Exec {
    fn to_value(&self, max: usize) -> Value {
        json!({
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "stdout_truncated": self.stdout.truncated(),
            "stderr_truncated": self.stderr.truncated(),
            "stdout_bytes": self.stdout.total(),
            "stderr_bytes": self.stderr.total(),
            "max_output_bytes": max,
        })
    }
}

fn stage_message(progress: &Progress, event: &Event) {
    if let Event::Stage { stage, state, .. } = event {
        let state = match state {
            StageState::Started => "started",
            StageState::Done => "done",
        };
        progress.report(&format!("{stage}: {state}"));
    }
}

/// A call whose events are not needed. `Daemon::ask` takes a `dyn FnMut`, which would
/// make the tool's future not `Send`; the client's generic call does not.
async fn ask<M: banger_api::Method>(
    daemon: &mut Daemon,
    params: &M::Params,
) -> Result<M::Output, CliError> {
    daemon
        .client
        .call::<M>(params, |_| {})
        .await
        .map_err(CliError::Daemon)
}

fn vm_value(vm: &VmInfo, owned: bool) -> Value {
    json!({
        "name": vm.name, "id": vm.id, "state": vm.state.to_string(), "image": vm.image,
        "address": vm.address, "nat": vm.nat, "created_by_this_session": owned,
        "policy": vm.policy,
        "forked_from": vm.forked_from.as_ref().map(|f| f.snapshot.clone()),
        "workspace": vm.workspace.as_ref().map(|w| json!({
            "source": w.source, "guest_path": w.guest_path, "files": w.files, "bytes": w.bytes})),
    })
}

impl BangerTools {
    async fn connect(&self) -> Result<Daemon, Stop> {
        Ok(self.ctx.connect().await?)
    }

    /// The VM's exact name, after the policy allowed `access` to it.
    async fn resolve(&self, vm: &str, access: Access) -> Result<VmInfo, Stop> {
        let mut daemon = self.connect().await?;
        let info = ask::<VmShow>(&mut daemon, &VmRef { vm: vm.to_string() }).await?;
        self.policy.check_vm(&self.session(), access, &info.name)?;
        Ok(info)
    }

    /// A host repository the policy allows, checked like `vm run PATH` checks it.
    async fn repo(&self, repo: &RepoArgs) -> Result<Option<(Checked, WorkspaceArgs)>, Stop> {
        let Some(path) = &repo.repo else {
            return Ok(None);
        };
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(Stop::Failed(ToolResult::failed(
                format!("repo: {} is not an absolute host path", path.display()),
                Some("give the repository's absolute path"),
            )));
        }
        let canonical: PathBuf = crate::connect::absolute(path)?;
        self.policy.check_repo(&canonical)?;
        let wargs = WorkspaceArgs {
            guest_path: repo.guest_path.clone(),
            mode: "overlay".into(),
            include_untracked: repo.include_untracked,
            dry_run: false,
        };
        let checked = workspace_local::check(&canonical, &wargs).await?;
        Ok(Some((checked, wargs)))
    }

    /// `vm.create` under the session's VM cap; a cancel deletes what was reserved.
    async fn create(&self, params: VmCreateParams, ctx: &CallCtx) -> Result<VmInfo, Stop> {
        self.policy.reserve(&mut self.session())?;
        let mut reserved: Option<String> = None;
        let result = async {
            let mut daemon = self.connect().await?;
            let created = {
                let call = daemon.client.call::<VmCreate>(&params, |event| {
                    if let Event::Stage {
                        stage,
                        state: StageState::Done,
                        detail: Some(name),
                        ..
                    } = &event
                        && stage == banger_model::progress::RESERVE_NAME_STAGE
                    {
                        reserved = Some(name.clone());
                    }
                    stage_message(&ctx.progress, &event);
                });
                tokio::select! {
                    vm = call => Some(vm.map_err(CliError::Daemon)),
                    () = ctx.cancel.cancelled() => None,
                }
            };
            match created {
                Some(vm) => Ok(vm?),
                None => Err(Stop::Cancelled),
            }
        }
        .await;
        match result {
            Ok(vm) => {
                self.session().created(&vm.name);
                Ok(vm)
            }
            Err(stop) => {
                match &reserved {
                    // The name was ours: the VM (or what is left of it) goes.
                    Some(name) => {
                        self.session().created(name);
                        self.remove(name).await;
                    }
                    None => self.session().release(),
                }
                Err(stop)
            }
        }
    }

    /// Deletes a VM of this session (cleanup; failures are logged, not returned).
    async fn remove(&self, name: &str) {
        let result = async {
            let mut daemon = self.ctx.connect().await?;
            ask::<VmDelete>(
                &mut daemon,
                &VmDeleteParams {
                    vm: name.to_string(),
                    force: true,
                },
            )
            .await
        }
        .await;
        match result {
            Ok(_) => {
                self.session().deleted(name);
                self.log(&format!("deleted {name}"));
            }
            Err(err) => self.log(&format!(
                "could not delete {name}: {}",
                errors::translate(&err).error
            )),
        }
    }

    /// Runs a command, output capped, until it ends, times out or the call is cancelled
    /// (then the connection is dropped and the daemon stops the guest process).
    async fn exec(
        &self,
        params: VmExecParams,
        limit: Duration,
        ctx: &CallCtx,
    ) -> Result<Exec, Stop> {
        let mut daemon = self.connect().await?;
        let mut stdout = Capped::new(self.max_output);
        let mut stderr = Capped::new(self.max_output);
        let finished = {
            let call = daemon.client.call::<VmExec>(&params, |event| match event {
                Event::Output {
                    stream: OutputStream::Stdout,
                    data,
                } => stdout.push(&data),
                Event::Output {
                    stream: OutputStream::Stderr,
                    data,
                } => stderr.push(&data),
                other => stage_message(&ctx.progress, &other),
            });
            tokio::select! {
                out = call => Some(out.map_err(CliError::Daemon)),
                () = tokio::time::sleep(limit) => None,
                () = ctx.cancel.cancelled() => return Err(Stop::Cancelled),
            }
        };
        drop(daemon);
        let (exit_code, timed_out) = match finished {
            Some(out) => (Some(out?.exit_code), false),
            None => (None, true),
        };
        Ok(Exec {
            exit_code,
            timed_out,
            stdout,
            stderr,
        })
    }

    async fn vm_run(&self, a: RunArgs, limit: Duration, ctx: &CallCtx) -> Outcome {
        let repo = RepoArgs {
            repo: a.repo.clone(),
            guest_path: a.guest_path.clone(),
            include_untracked: a.include_untracked,
        };
        let checked = self.repo(&repo).await?;
        let params = VmCreateParams {
            image: a.image.clone(),
            nat: a.nat,
            workspace: checked.as_ref().map(|(c, w)| c.api_source(w)),
            allow: a.allow.clone(),
            deny_all: a.deny_all,
            ..VmCreateParams::default()
        };
        let vm = self.create(params, ctx).await?;
        let cwd = checked.as_ref().map(|(c, w)| c.guest_cwd(w.guest_path()));
        let result = self
            .exec(
                VmExecParams {
                    vm: vm.name.clone(),
                    argv: a.argv,
                    env: a.env.into_iter().collect(),
                    cwd: cwd.clone(),
                    stdin: false,
                    tty: None,
                    user: None,
                },
                limit,
                ctx,
            )
            .await;
        let keep = a.keep && !matches!(result, Err(Stop::Cancelled));
        if !keep {
            self.remove(&vm.name).await;
        }
        let exec = result?;
        let mut value = exec.to_value(self.max_output);
        value["vm"] = if keep { json!(vm.name) } else { Value::Null };
        value["guest_cwd"] = json!(cwd);
        Ok(value)
    }

    async fn vm_create(&self, a: CreateArgs, ctx: &CallCtx) -> Outcome {
        let checked = self.repo(&a.repo).await?;
        let params = VmCreateParams {
            name: a.name,
            image: a.image,
            vcpus: a.vcpus,
            memory_mib: a.memory_mib,
            nat: a.nat,
            workspace: checked.as_ref().map(|(c, w)| c.api_source(w)),
            allow: a.allow,
            deny_all: a.deny_all,
            ..VmCreateParams::default()
        };
        let vm = self.create(params, ctx).await?;
        Ok(vm_value(&vm, true))
    }

    /// `vm.fork` of a snapshot or a running VM, under the ownership rule: the run profile
    /// forks only its own VMs and the snapshots its forks made. Each fork takes a slot of
    /// the VM cap; a cancelled fork's VMs (the names it reserved) are deleted.
    async fn vm_fork(&self, a: ForkArgs, count: u32, ctx: &CallCtx) -> Outcome {
        // The daemon looks for a snapshot first, then a VM: so does the check.
        let mut daemon = self.connect().await?;
        let snapshot = match ask::<SnapshotShow>(
            &mut daemon,
            &NameRef {
                name: a.source.clone(),
            },
        )
        .await
        {
            Ok(snapshot) => Some(snapshot.name),
            Err(CliError::Daemon(banger_api::ClientError::Api(err)))
                if err.code == ErrorCode::NotFound =>
            {
                None
            }
            Err(err) => return Err(err.into()),
        };
        drop(daemon);
        let (source, from_vm) = match snapshot {
            Some(name) => {
                self.policy.check_snapshot(&self.session(), &name)?;
                (name, false)
            }
            None => (self.resolve(&a.source, Access::Modify).await?.name, true),
        };
        let mut slots = 0;
        for _ in 0..count {
            if let Err(refusal) = self.policy.reserve(&mut self.session()) {
                for _ in 0..slots {
                    self.session().release();
                }
                return Err(refusal.into());
            }
            slots += 1;
        }
        let params = VmForkParams {
            source: source.clone(),
            name: a.name,
            count: Some(count),
        };
        // Names reserved in order: a fork of a VM reserves its snapshot's name first.
        let mut reserved: Vec<String> = Vec::new();
        let result = async {
            let mut daemon = self.connect().await?;
            let forked = {
                let call = daemon.client.call::<VmFork>(&params, |event| {
                    if let Event::Stage {
                        stage,
                        state: StageState::Done,
                        detail: Some(name),
                        ..
                    } = &event
                        && stage == banger_model::progress::RESERVE_NAME_STAGE
                    {
                        reserved.push(name.clone());
                    }
                    stage_message(&ctx.progress, &event);
                });
                tokio::select! {
                    vms = call => Some(vms.map_err(CliError::Daemon)),
                    () = ctx.cancel.cancelled() => None,
                }
            };
            match forked {
                Some(vms) => Ok(vms?),
                None => Err(Stop::Cancelled),
            }
        }
        .await;
        let forks: Vec<String> = reserved
            .iter()
            .skip(usize::from(from_vm))
            .cloned()
            .collect();
        if from_vm && let Some(snapshot) = reserved.first() {
            self.session().snapshot_made(snapshot);
        }
        match result {
            Ok(vms) => {
                let mut session = self.session();
                for vm in &vms {
                    session.created(&vm.name);
                }
                for _ in vms.len()..slots {
                    session.release();
                }
                let made = vms
                    .first()
                    .and_then(|vm| vm.forked_from.as_ref())
                    .map_or(source, |f| f.snapshot.clone());
                session.snapshot_made(&made);
                let vms: Vec<Value> = vms.iter().map(|vm| vm_value(vm, true)).collect();
                Ok(json!({"snapshot": made, "vms": vms}))
            }
            Err(stop) => {
                // The names reserved were ours: those VMs (or what is left) go.
                for name in &forks {
                    self.session().created(name);
                }
                for _ in forks.len()..slots {
                    self.session().release();
                }
                for name in &forks {
                    self.remove(name).await;
                }
                Err(stop)
            }
        }
    }

    async fn vm_exec(&self, a: ExecArgs, limit: Duration, ctx: &CallCtx) -> Outcome {
        let info = self.resolve(&a.vm, Access::Modify).await?;
        let cwd = a
            .cwd
            .or_else(|| info.workspace.as_ref().map(|w| w.guest_path.clone()));
        let exec = self
            .exec(
                VmExecParams {
                    vm: info.name,
                    argv: a.argv,
                    env: a.env.into_iter().collect(),
                    cwd,
                    stdin: false,
                    tty: None,
                    user: None,
                },
                limit,
                ctx,
            )
            .await?;
        Ok(exec.to_value(self.max_output))
    }

    async fn vm_list(&self) -> Outcome {
        let mut daemon = self.connect().await?;
        let vms = ask::<VmList>(&mut daemon, &banger_api::methods::Empty {}).await?;
        let session = self.session();
        let vms: Vec<Value> = vms
            .iter()
            .map(|vm| vm_value(vm, session.owns(&vm.name)))
            .collect();
        Ok(json!({"vms": vms}))
    }

    async fn vm_delete(&self, a: DeleteArgs) -> Outcome {
        let info = self.resolve(&a.vm, Access::Delete).await?;
        let mut daemon = self.connect().await?;
        ask::<VmDelete>(
            &mut daemon,
            &VmDeleteParams {
                vm: info.name.clone(),
                force: a.force,
            },
        )
        .await?;
        self.session().deleted(&info.name);
        Ok(json!({"deleted": info.name}))
    }

    async fn workspace_prepare(&self, a: PrepareArgs, ctx: &CallCtx) -> Outcome {
        let info = self.resolve(&a.vm, Access::Modify).await?;
        let Some((checked, wargs)) = self.repo(&a.repo).await? else {
            return Err(Stop::Failed(ToolResult::failed("repo: required", None)));
        };
        let mut daemon = self.connect().await?;
        let params = WorkspacePrepareParams {
            vm: info.name,
            source: checked.source.display().to_string(),
            options: wargs.api_options(),
        };
        let call = daemon.client.call::<WorkspacePrepare>(&params, |event| {
            stage_message(&ctx.progress, &event);
        });
        let vm = tokio::select! {
            vm = call => vm.map_err(CliError::Daemon)?,
            () = ctx.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        let owned = self.session().owns(&vm.name);
        Ok(vm_value(&vm, owned))
    }

    /// The guest's changes as a patch (nothing changes in the guest). The patch is capped
    /// at the larger of `--max-output` and [`EXPORT_PATCH_MIN_CAP`]; the result says so.
    async fn workspace_export(&self, a: ExportArgs, ctx: &CallCtx) -> Outcome {
        let info = self.resolve(&a.vm, Access::Read).await?;
        let mut daemon = self.connect().await?;
        let params = WorkspaceExportParams {
            vm: info.name,
            base_commit: a.base_commit,
            guest_path: a.guest_path,
            format: a.format,
        };
        let cap = self.max_output.max(EXPORT_PATCH_MIN_CAP);
        let mut patch = Capped::new(cap);
        let call = daemon.client.call::<WorkspaceExport>(&params, |event| {
            if let Event::Output {
                stream: OutputStream::Stdout,
                data,
            } = &event
            {
                patch.push(data);
            }
            stage_message(&ctx.progress, &event);
        });
        let output = tokio::select! {
            output = call => output.map_err(CliError::Daemon)?,
            () = ctx.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        Ok(json!({
            "base": output.base,
            "guest_path": output.guest_path,
            "format": output.format,
            "files": output.files,
            "patch": patch.text(),
            "patch_bytes": output.bytes,
            "patch_truncated": patch.truncated(),
            "max_patch_bytes": cap,
        }))
    }

    async fn file_read(&self, a: ReadArgs, max: u64, ctx: &CallCtx) -> Outcome {
        let info = self.resolve(&a.vm, Access::Read).await?;
        // One byte past the limit tells a file that is longer from one that fits.
        let argv = vec![
            "head".to_string(),
            "-c".to_string(),
            (max + 1).to_string(),
            "--".to_string(),
            a.path.clone(),
        ];
        let reader = BangerTools {
            ctx: self.ctx.clone(),
            policy: self.policy.clone(),
            max_output: usize::try_from(max + 1).unwrap_or(usize::MAX),
            session: Mutex::default(),
            client: Mutex::default(),
        };
        let exec = reader
            .exec(
                VmExecParams {
                    vm: info.name,
                    argv,
                    env: Vec::new(),
                    cwd: None,
                    stdin: false,
                    tty: None,
                    user: None,
                },
                Duration::from_secs(120),
                ctx,
            )
            .await?;
        if exec.exit_code != Some(0) {
            return Err(guest_failure("read", &a.path, &exec));
        }
        let bytes = exec.stdout.bytes();
        let truncated = bytes.len() as u64 > max;
        let bytes = &bytes[..bytes.len().min(usize::try_from(max).unwrap_or(usize::MAX))];
        let (content, encoding) = match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_string(), "utf-8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                "base64",
            ),
        };
        Ok(
            json!({"path": a.path, "content": content, "encoding": encoding,
                  "bytes": bytes.len(), "truncated": truncated, "max_bytes": max}),
        )
    }

    async fn file_write(&self, a: WriteArgs, bytes: Vec<u8>, ctx: &CallCtx) -> Outcome {
        let info = self.resolve(&a.vm, Access::Modify).await?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            r#"printf '%s' "$1" | base64 -d > "$2""#.to_string(),
            "sh".to_string(),
            encoded,
            a.path.clone(),
        ];
        let exec = self
            .exec(
                VmExecParams {
                    vm: info.name,
                    argv,
                    env: Vec::new(),
                    cwd: None,
                    stdin: false,
                    tty: None,
                    user: None,
                },
                Duration::from_secs(120),
                ctx,
            )
            .await?;
        if exec.exit_code != Some(0) {
            return Err(guest_failure("write", &a.path, &exec));
        }
        Ok(json!({"path": a.path, "bytes": bytes.len()}))
    }
}

fn guest_failure(what: &str, path: &str, exec: &Exec) -> Stop {
    let detail = exec.stderr.text();
    let detail = detail.trim();
    let message = match (exec.timed_out, detail.is_empty()) {
        (true, _) => format!("cannot {what} {path}: timed out"),
        (false, true) => format!(
            "cannot {what} {path}: exit code {}",
            exec.exit_code.unwrap_or(-1)
        ),
        (false, false) => format!("cannot {what} {path}: {detail}"),
    };
    Stop::Failed(ToolResult::failed(message, None))
}
