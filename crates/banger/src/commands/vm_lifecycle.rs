//! `vm start`, `stop`, `restart`, `kill`, `delete` and `prune`: one request per VM named,
//! each VM's resulting state printed as one line (or JSON). Their help texts say how the
//! near-twins differ, because picking the wrong one loses a guest's unsaved state.

use std::io::BufRead as _;

use banger_api::methods::{
    Empty, VmDelete, VmDeleteParams, VmKill, VmKillParams, VmList, VmPrune, VmRef, VmRestart,
    VmStart, VmStop, VmStopParams,
};
use banger_api::types::{VmInfo, VmState};
use banger_api::{ClientError, Method};
use clap::Args;

use crate::cli::{JsonFlag, VmsArg};
use crate::commands::vm_run::summary;
use crate::connect::Ctx;
use crate::connect::Daemon;
use crate::errors::{self, CliError};
use crate::render;

/// Boot a stopped VM
#[derive(Debug, Args)]
#[command(
    long_about = "Boot a stopped VM from its existing disk, showing each stage. Once it is \
up, the config file's `[[file_sync]]` files, your git identity and (with host_ca) the \
host's CA certificates are put into the guest again, as at `vm create`.

`vm restart` is for a running VM: it stops it and starts it again (the guest gets a new \
boot id).",
    after_help = "Examples:\n  banger vm start web\n  banger vm start web db             Several VMs, one after the other"
)]
pub struct StartArgs {
    #[command(flatten)]
    pub vm: VmsArg,
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
stop the VMM by force. The disk is kept; `vm start` boots the VM again.

How the near-twins differ:
  vm stop     graceful shutdown, forced after the timeout; the disk is kept
  vm kill     a signal to the VMM process, no shutdown at all (like pulling the plug)
  vm delete   removes the VM and its disk
  vm prune    deletes every VM that is not running",
    after_help = "\
Examples:
  banger vm stop web
  banger vm stop web --timeout 5        Force it after 5 seconds
  banger vm stop web db                 Several VMs, one after the other"
)]
pub struct StopArgs {
    #[command(flatten)]
    pub vm: VmsArg,
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
    pub vm: VmsArg,
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
Like `vm delete`, it takes a full name or id, or a prefix of at least 4 characters.",
    after_help = "\
Examples:
  banger vm kill web
  banger vm kill web --signal TERM"
)]
pub struct KillArgs {
    #[command(flatten)]
    pub vm: VmsArg,
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

Name the VM by its full name or id, or by a prefix of at least 4 characters (a shorter \
prefix is refused, so one stray character cannot delete a VM).

A delete that cannot finish (a full disk, a file that cannot be removed) leaves the VM \
`deleting`: run `vm delete` again (no --force needed), or the daemon finishes it when it \
next starts.

`vm stop` keeps the disk; `vm prune` deletes every VM that is not running.",
    after_help = "\
Examples:
  banger vm delete web
  banger vm delete --force web          Kill it first if it is running
  banger vm delete web db               Several VMs; each is tried even if one fails"
)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub vm: VmsArg,
    /// Delete even a running VM (killed first)
    #[arg(long)]
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

/// Runs `one` for each VM named, in order, and prints each result: `text` for people,
/// JSON for scripts (the VM's object for one name, an array for several). Every VM is
/// tried; a failure is reported as it happens and the command fails at the end. With one
/// name the error is simply the command's error.
async fn each_vm(
    ctx: &Ctx,
    names: Vec<String>,
    output: JsonFlag,
    text: fn(&VmInfo) -> String,
    mut one: impl AsyncFnMut(&mut Daemon, String) -> Result<VmInfo, CliError>,
) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    if let [name] = names.as_slice() {
        let vm = one(&mut daemon, name.clone()).await?;
        return render::data(output.json, &vm, text);
    }
    let total = names.len();
    let mut done = Vec::new();
    let mut failed = 0;
    for name in names {
        match one(&mut daemon, name).await {
            Ok(vm) => {
                if !output.json {
                    render::stdout(&text(&vm))?;
                }
                done.push(vm);
            }
            Err(CliError::Interrupted) => return Err(CliError::Interrupted),
            Err(err) => {
                errors::print(&err);
                failed += 1;
                // A typed answer leaves the connection usable; anything else may not.
                if !matches!(err, CliError::Daemon(ClientError::Api(_))) {
                    daemon = ctx.connect().await?;
                }
            }
        }
    }
    if output.json {
        render::stdout(&render::json(&done)?)?;
    }
    if failed > 0 {
        return Err(CliError::failed(
            format!("{failed} of {total} VMs failed (see above)"),
            None,
        ));
    }
    Ok(())
}

/// `vm start`.
pub async fn start(ctx: &Ctx, args: StartArgs) -> Result<(), CliError> {
    let flags = crate::config::Flags {
        git_identity: args.no_git_identity.then_some(false),
        ..crate::config::Flags::default()
    };
    let settings = crate::config::settings(ctx, &flags)?;
    let setup = &crate::guest_setup::prepare(ctx, &settings, None).await?;
    each_vm(
        ctx,
        args.vm.vms,
        args.output,
        summary,
        async |daemon, vm| {
            let info = daemon
                .call_with_progress::<VmStart>(&ctx.term, &VmRef { vm })
                .await?;
            crate::guest_setup::apply(daemon, &info.name, setup).await?;
            Ok(info)
        },
    )
    .await
}

/// `vm stop`.
pub async fn stop(ctx: &Ctx, args: StopArgs) -> Result<(), CliError> {
    stop_then::<VmStop>(ctx, args.vm, args.output, args.timeout).await
}

/// `vm restart`.
pub async fn restart(ctx: &Ctx, args: RestartArgs) -> Result<(), CliError> {
    stop_then::<VmRestart>(ctx, args.vm, args.output, args.timeout).await
}

/// Stop or restart each VM: the two share their parameters and output.
async fn stop_then<M>(
    ctx: &Ctx,
    vms: VmsArg,
    output: JsonFlag,
    timeout_secs: Option<u64>,
) -> Result<(), CliError>
where
    M: Method<Params = VmStopParams, Output = VmInfo>,
{
    each_vm(ctx, vms.vms, output, summary, async |daemon, vm| {
        let params = VmStopParams { vm, timeout_secs };
        daemon.call_with_progress::<M>(&ctx.term, &params).await
    })
    .await
}

/// `vm kill`.
pub async fn kill(ctx: &Ctx, args: KillArgs) -> Result<(), CliError> {
    let signal = args.signal;
    each_vm(
        ctx,
        args.vm.vms,
        args.output,
        summary,
        async |daemon, vm| {
            let params = VmKillParams {
                vm,
                signal: signal.clone(),
            };
            daemon.ask::<VmKill>(&params).await
        },
    )
    .await
}

/// `vm delete`.
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let force = args.force;
    each_vm(
        ctx,
        args.vm.vms,
        args.output,
        |vm| format!("deleted {}\n", vm.name),
        async |daemon, vm| daemon.ask::<VmDelete>(&VmDeleteParams { vm, force }).await,
    )
    .await
}

/// `vm prune`.
pub async fn prune(ctx: &Ctx, args: PruneArgs) -> Result<(), CliError> {
    if !args.force && !ctx.term.stdin {
        return Err(CliError::usage(
            "refusing to prune without confirmation: stdin is not a terminal",
            Some("pass -f to delete every VM that is not running without asking"),
        ));
    }
    let mut daemon = ctx.connect().await?;
    if !args.force {
        let vms = daemon.ask::<VmList>(&Empty {}).await?;
        let doomed: Vec<&str> = vms
            .iter()
            .filter(|vm| vm.state != VmState::Running)
            .map(|vm| vm.name.as_str())
            .collect();
        if doomed.is_empty() {
            render::note("nothing to prune: every VM is running");
            return Ok(());
        }
        if !confirm(&format!(
            "delete {} VM(s) that are not running, with their disks: {}? [y/N] ",
            doomed.len(),
            doomed.join(", ")
        ))? {
            render::note("nothing deleted");
            return Ok(());
        }
    }
    let pruned = daemon.ask::<VmPrune>(&Empty {}).await?;
    render::data(args.output.json, &pruned, |pruned| {
        if pruned.deleted.is_empty() {
            "nothing to prune\n".to_string()
        } else {
            pruned
                .deleted
                .iter()
                .map(|name| format!("deleted {name}\n"))
                .collect()
        }
    })
}

/// Asks a yes/no question on the terminal; anything but `y`/`yes` is no.
fn confirm(question: &str) -> Result<bool, CliError> {
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
