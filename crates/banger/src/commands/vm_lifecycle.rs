//! `vm start`, `stop`, `restart`, `kill`, `delete` and `prune`: one request per VM named,
//! each VM's resulting state printed as one line (or JSON). Their help texts say how the
//! near-twins differ, because picking the wrong one loses a guest's unsaved state.

use std::io::BufRead as _;

use banger_api::Method;
use banger_api::methods::{
    Empty, VmDelete, VmDeleteParams, VmKill, VmKillParams, VmList, VmPrune, VmRef, VmRestart,
    VmStart, VmStop, VmStopParams,
};
use banger_api::types::{VmInfo, VmState};
use clap::Args;

use crate::cli::JsonFlag;
use crate::commands::vm_run::summary;
use crate::commands::vm_targets::{self, Strictness, TargetArgs};
use crate::connect::Ctx;
use crate::errors::{self, CliError};
use crate::progress::Progress;
use crate::render;
use crate::render::records::{self, VmJson};

/// Boot a stopped VM
#[derive(Debug, Args)]
#[command(
    long_about = "Boot a stopped VM from its existing disk, showing each stage. Once it is \
up, the config file's `[[file_sync]]` files, your git identity and (with host_ca) the \
host's CA certificates are put into the guest again, as at `vm create`.

A VM that is already running is left as it is (`web: already running`, exit 0). Several \
VMs start at once, each progress line naming its VM; `--all` starts every VM that is not \
running.

`vm restart` is for a running VM: it stops it and starts it again (the guest gets a new \
boot id).",
    after_help = "Examples:\n  banger vm start web\n  banger vm start web db             Several VMs at once\n  banger vm start --all"
)]
pub struct StartArgs {
    #[command(flatten)]
    pub vm: TargetArgs,
    /// Do not write your git identity into the guest's git config
    #[arg(long)]
    pub no_git_identity: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Shut a VM down gracefully, forcing it after a timeout
#[derive(Debug, Args)]
#[command(
    long_about = "Ask the guest to shut down cleanly, wait up to --timeout seconds, then \
stop the VMM by force. The disk is kept; `vm start` boots the VM again. A VM that is \
already stopped is left as it is (`web: already stopped`, exit 0). Several VMs stop at \
once; each must then be named by its full name or id (a prefix is confirmed on a \
terminal). `--all` stops every VM that is not stopped.

How the near-twins differ:
  vm stop     graceful shutdown, forced after the timeout; the disk is kept
  vm kill     a signal to the VMM process, no shutdown at all (like pulling the plug)
  vm delete   removes the VM and its disk
  vm prune    deletes every VM that is not running",
    after_help = "\
Examples:
  banger vm stop web
  banger vm stop web --timeout 5        Force it after 5 seconds
  banger vm stop web db                 Several VMs at once
  banger vm stop --all"
)]
pub struct StopArgs {
    #[command(flatten)]
    pub vm: TargetArgs,
    /// Seconds to wait for a clean shutdown before forcing it (default: the daemon's)
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Stop a running VM and start it again (new boot id)
#[derive(Debug, Args)]
#[command(
    long_about = "Stop a running VM (gracefully, forced after --timeout seconds) and start \
it again from the same disk. The guest gets a new boot id.

`vm start` boots a VM that is already stopped.",
    after_help = "Examples:\n  banger vm restart web\n  banger vm restart web --timeout 5"
)]
pub struct RestartArgs {
    #[command(flatten)]
    pub vm: TargetArgs,
    /// Seconds to wait for a clean shutdown before forcing it (default: the daemon's)
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Send a signal to a VM's VMM process (no shutdown)
#[derive(Debug, Args)]
#[command(
    long_about = "Send a signal to the VMM process running the VM. The guest gets no chance \
to shut down: with the default KILL this is pulling the plug, and writes the guest had not \
flushed are lost. The disk is kept.

Prefer `vm stop` (clean shutdown, forced after a timeout); use `vm kill` for a hung VM. \
Like `vm delete`, it takes a full name or id: a prefix is confirmed on a terminal (the \
question names the VM it matches) and refused without one. `--all` kills every running VM.",
    after_help = "\
Examples:
  banger vm kill web
  banger vm kill web --signal TERM
  banger vm kill --all"
)]
pub struct KillArgs {
    #[command(flatten)]
    pub vm: TargetArgs,
    /// Signal name, with or without `SIG`, or number: HUP, INT, QUIT, KILL, USR1, USR2, TERM
    #[arg(long, value_name = "NAME", default_value = "KILL", value_parser = crate::values::signal)]
    pub signal: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete a VM and its disk
#[derive(Debug, Args)]
#[command(
    long_about = "Delete a VM: its record, its disk and its files. This cannot be undone. \
A running VM is refused unless --force is given (it is then killed first).

Name the VM by its full name or id. A prefix is confirmed on a terminal (the question \
names the VM it matches) and refused without one, so `vm delete web` never deletes \
`web-2`. `--all` deletes every VM (running ones only with --force).

A delete that cannot finish (a full disk, a file that cannot be removed) leaves the VM \
`deleting`: run `vm delete` again (no --force needed), or the daemon finishes it when it \
next starts.

`vm stop` keeps the disk; `vm prune` deletes every VM that is not running.",
    after_help = "\
Examples:
  banger vm delete web
  banger vm delete --force web          Kill it first if it is running
  banger vm delete web db               Several VMs; each is tried even if one fails
  banger vm rm -f web                   The same as `vm delete --force web`
  banger vm delete --all --force        Every VM"
)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub vm: TargetArgs,
    /// Delete even a running VM (killed first)
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete every VM that is not running
#[derive(Debug, Args)]
#[command(
    long_about = "Delete every VM that is not running (stopped or failed), with their \
disks. Running VMs are left alone. On a terminal banger lists the VMs and asks first; \
without a terminal it refuses unless -f is given.",
    after_help = "\
Examples:
  banger vm prune
  banger vm prune -f                    No question asked (scripts)"
)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// What each VM got: its record, or why it failed (already reported on stderr).
type Outcomes = Vec<Result<VmInfo, ()>>;

/// Runs `one` for every target at once (one connection each) and prints each result
/// as it comes: `text` for people, or at the end one JSON array of every VM that
/// succeeded, in the order given (an array also for one VM, so scripts read one shape).
/// A target for which `skip` has a line is not sent: that line is printed instead (`web:
/// already running`) and the VM counts as done. Every VM is tried; the command fails at
/// the end if one did. With one target and nothing else, the error is simply the
/// command's error and progress shows as spinners; with several, each progress line
/// starts with its VM's name.
async fn each_vm(
    targets: Vec<Result<VmInfo, CliError>>,
    output: JsonFlag,
    text: fn(&VmInfo) -> String,
    skip: impl Fn(&VmInfo) -> Option<String>,
    one: impl AsyncFn(String, Option<String>) -> Result<VmInfo, CliError>,
) -> Result<(), CliError> {
    let total = targets.len();
    if total == 0 {
        if !output.json {
            render::note("no VM to act on");
        } else {
            render::stdout(&render::json(&Vec::<VmJson>::new())?)?;
        }
        return Ok(());
    }
    let several = total > 1;
    let jobs = targets.into_iter().map(|target| {
        let (skip, one) = (&skip, &one);
        async move {
            let vm = match target {
                Ok(vm) => vm,
                Err(err) => return Err(err),
            };
            if let Some(line) = skip(&vm) {
                if !output.json {
                    render::stdout(&line)?;
                }
                return Ok(vm);
            }
            let label = several.then(|| vm.name.clone());
            let done = one(vm.name.clone(), label).await?;
            if !output.json {
                render::stdout(&text(&done))?;
            }
            Ok(done)
        }
    });
    let results: Vec<Result<VmInfo, CliError>> = futures_util::future::join_all(jobs).await;
    if !several && let Some(Err(_)) = results.first() {
        let Some(Err(err)) = results.into_iter().next() else {
            unreachable!("checked above")
        };
        return Err(err);
    }
    let mut outcomes: Outcomes = Vec::new();
    for result in results {
        match result {
            Ok(vm) => outcomes.push(Ok(vm)),
            Err(CliError::Interrupted) => return Err(CliError::Interrupted),
            Err(err) => {
                errors::print(&err);
                outcomes.push(Err(()));
            }
        }
    }
    let done: Vec<VmInfo> = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
    if output.json {
        render::stdout(&render::json(&records::vms(&done))?)?;
    }
    let failed = total - done.len();
    if failed > 0 {
        return Err(CliError::failed(
            format!("{failed} of {total} VMs failed (see above)"),
            None,
        ));
    }
    Ok(())
}

/// A call on a fresh connection with progress; `label` names the VM on every line.
async fn with_progress<M: Method>(
    ctx: &Ctx,
    params: &M::Params,
    label: Option<String>,
) -> Result<M::Output, CliError> {
    let mut daemon = ctx.connect().await?;
    let mut progress = Progress::new(&ctx.term);
    if let Some(label) = &label {
        progress = progress.labelled(label);
    }
    let result = daemon.call::<M>(params, &mut progress.sink()).await;
    progress.finish();
    result
}

/// `vm start`.
pub async fn start(ctx: &Ctx, args: StartArgs) -> Result<(), CliError> {
    let flags = crate::config::Flags {
        git_identity: args.no_git_identity.then_some(false),
        ..crate::config::Flags::default()
    };
    let settings = crate::config::settings(ctx, &flags)?;
    let setup = &crate::guest_setup::prepare(ctx, &settings, None).await?;
    let mut daemon = ctx.connect().await?;
    let targets = vm_targets::resolve(ctx, &mut daemon, &args.vm, Strictness::Prefix, |vm| {
        vm.state != VmState::Running
    })
    .await?;
    each_vm(
        targets,
        args.output,
        summary,
        |vm| (vm.state == VmState::Running).then(|| already(vm, "running")),
        async |vm, label| {
            let info = with_progress::<VmStart>(ctx, &VmRef { vm }, label).await?;
            let mut daemon = ctx.connect().await?;
            crate::guest_setup::apply(&mut daemon, &info.name, setup).await?;
            Ok(info)
        },
    )
    .await
}

/// `web: already running (10.77.0.2)`.
fn already(vm: &VmInfo, state: &str) -> String {
    match &vm.address {
        Some(address) => format!("{}: already {state} ({address})\n", vm.name),
        None => format!("{}: already {state}\n", vm.name),
    }
}

/// `vm stop`: of several VMs, each must be named exactly (or confirmed).
pub async fn stop(ctx: &Ctx, args: StopArgs) -> Result<(), CliError> {
    let strictness = if args.vm.vms.len() > 1 {
        Strictness::Exact { verb: "stop" }
    } else {
        Strictness::Prefix
    };
    let mut daemon = ctx.connect().await?;
    let targets = vm_targets::resolve(ctx, &mut daemon, &args.vm, strictness, |vm| {
        vm.state != VmState::Stopped && vm.state != VmState::Deleting
    })
    .await?;
    let timeout_secs = args.timeout;
    each_vm(
        targets,
        args.output,
        summary,
        |vm| (vm.state == VmState::Stopped).then(|| already(vm, "stopped")),
        async |vm, label| {
            with_progress::<VmStop>(ctx, &VmStopParams { vm, timeout_secs }, label).await
        },
    )
    .await
}

/// `vm restart`.
pub async fn restart(ctx: &Ctx, args: RestartArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let targets = vm_targets::resolve(ctx, &mut daemon, &args.vm, Strictness::Prefix, |vm| {
        vm.state == VmState::Running
    })
    .await?;
    let timeout_secs = args.timeout;
    each_vm(
        targets,
        args.output,
        summary,
        |_| None,
        async |vm, label| {
            with_progress::<VmRestart>(ctx, &VmStopParams { vm, timeout_secs }, label).await
        },
    )
    .await
}

/// `vm kill`.
pub async fn kill(ctx: &Ctx, args: KillArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let targets = vm_targets::resolve(
        ctx,
        &mut daemon,
        &args.vm,
        Strictness::Exact { verb: "kill" },
        |vm| vm.state.is_active(),
    )
    .await?;
    let signal = args.signal;
    each_vm(
        targets,
        args.output,
        summary,
        |_| None,
        async |vm, _label| {
            let params = VmKillParams {
                vm,
                signal: signal.clone(),
            };
            ctx.connect().await?.ask::<VmKill>(&params).await
        },
    )
    .await
}

/// `vm delete` (also `vm rm`, `banger rm`).
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let targets = vm_targets::resolve(
        ctx,
        &mut daemon,
        &args.vm,
        Strictness::Exact { verb: "delete" },
        |_| true,
    )
    .await?;
    let force = args.force;
    each_vm(
        targets,
        args.output,
        deleted,
        |_| None,
        async |vm, _label| {
            ctx.connect()
                .await?
                .ask::<VmDelete>(&VmDeleteParams { vm, force })
                .await
        },
    )
    .await
}

/// The line for a deleted VM.
fn deleted(vm: &VmInfo) -> String {
    format!("deleted {}\n", vm.name)
}

/// `vm prune`: answers in the same shape as `vm delete` (the deleted VMs' records).
pub async fn prune(ctx: &Ctx, args: PruneArgs) -> Result<(), CliError> {
    if !args.force && !ctx.term.stdin {
        return Err(CliError::usage(
            "refusing to prune without confirmation: stdin is not a terminal",
            Some("pass -f to delete every VM that is not running without asking"),
        ));
    }
    let mut daemon = ctx.connect().await?;
    let before = daemon.ask::<VmList>(&Empty {}).await?;
    if !args.force {
        let doomed: Vec<&str> = before
            .iter()
            .filter(|vm| vm.state != VmState::Running)
            .map(|vm| vm.name.as_str())
            .collect();
        if doomed.is_empty() {
            render::note("nothing to prune: every VM is running");
            return render::data(args.output.json, &Vec::<VmJson>::new(), |_| String::new());
        }
        if !confirm(&format!(
            "delete {} VM(s) that are not running, with their disks: {}? [y/N] ",
            doomed.len(),
            doomed.join(", ")
        ))? {
            render::note("nothing deleted");
            return render::data(args.output.json, &Vec::<VmJson>::new(), |_| String::new());
        }
    }
    let pruned = daemon.ask::<VmPrune>(&Empty {}).await?;
    let gone = pruned_records(&before, &pruned.deleted);
    render::data(args.output.json, &records::vms(&gone), |_| {
        if gone.is_empty() {
            "nothing to prune\n".to_string()
        } else {
            gone.iter().map(deleted).collect()
        }
    })
}

/// The records of the pruned VMs, as they were listed before the prune, in the order
/// the daemon deleted them. A VM created between the list and the prune (so missing
/// from the list) is left out.
fn pruned_records(before: &[VmInfo], deleted: &[String]) -> Vec<VmInfo> {
    deleted
        .iter()
        .filter_map(|name| before.iter().find(|vm| vm.name == *name).cloned())
        .collect()
}

/// Asks a yes/no question on the terminal; anything but `y`/`yes` is no.
pub fn confirm(question: &str) -> Result<bool, CliError> {
    use std::io::Write as _;
    let mut stderr = anstream::stderr();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
