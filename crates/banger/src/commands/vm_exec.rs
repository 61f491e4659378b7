//! `vm exec`: runs a command in a running VM through the guest agent, streaming its output
//! to this process's stdout and stderr, and exits with the command's exit code.

use std::process::ExitCode;

use banger_api::methods::{ExecOutput, VmExec, VmExecParams};
use clap::Args;

use crate::cli::VmArg;
use crate::commands::{guest_exit, mise_bootstrap, workspace_exec};
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::progress::Progress;
use crate::values;

/// Run a command in a running VM and exit with its code
#[derive(Debug, Args)]
#[command(
    long_about = "Run a command in a running VM through the guest agent. Its stdout and \
stderr stream to banger's stdout and stderr as they come, and banger exits with the \
command's exit code. The arguments after `--` arrive as a list, without a shell: write \
`-- sh -c '...'` for pipes or variables.

banger's stdin becomes the command's stdin when it is a file or a pipe (the command sees \
end of file where the input ends); a terminal is forwarded only with `-i`, and `-n` gives \
the command /dev/null whatever stdin is. There is no terminal in the guest: use `vm ssh` \
for an interactive shell.

When the VM has a workspace (`vm run PATH`, `vm workspace prepare`), the command runs in \
it (`--cwd` still wins), and banger warns when the host repository's HEAD or tracked files \
changed since it was prepared; `--auto-prepare` copies it again first. When the repository \
declares mise tools and the guest has mise, the command runs as `mise exec -- COMMAND`, so \
they are on PATH (the exit code is the command's).

`vm ssh` opens an interactive session instead; `vm run` creates a VM and runs the command \
in one step.",
    after_help = "\
Examples:
  banger vm exec web -- uname -a
  banger vm exec web -- sh -c 'echo $HOME; exit 3'   Exits with 3
  banger vm exec web --cwd /root/repo -e CI=1 -- make test
  banger vm exec web -- sh -c 'cat > /tmp/notes.txt' < notes.txt
  tar -c src | banger vm exec web -- tar -x -C /root
  banger vm exec -n web -- long-running-job           Leave stdin alone
  banger vm exec web --auto-prepare -- make test     Sync the workspace, then run"
)]
pub struct ExecArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Environment variable for the command, as KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = values::env_pair)]
    pub env: Vec<(String, String)>,
    /// Working directory in the guest
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Forward stdin even when it is a terminal
    #[arg(short = 'i', long, conflicts_with = "no_stdin")]
    pub interactive: bool,
    /// Do not forward stdin: the command reads /dev/null
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// Copy the VM's workspace again first when the host repository changed
    #[arg(long)]
    pub auto_prepare: bool,
    /// Command and arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `vm exec`.
pub async fn exec(ctx: &Ctx, args: ExecArgs) -> Result<ExitCode, CliError> {
    let mut daemon = ctx.connect().await?;
    let workspace =
        workspace_exec::before_exec(ctx, &mut daemon, &args.vm.vm, args.auto_prepare).await?;
    let mut progress = Progress::new(&ctx.term);
    // A workspace that declares mise tools runs its commands with them on PATH.
    let mise = workspace
        .as_ref()
        .is_some_and(|w| mise_bootstrap::dir_has_config(std::path::Path::new(&w.source)));
    let params = VmExecParams {
        vm: args.vm.vm,
        argv: if mise {
            mise_bootstrap::wrap(args.command)
        } else {
            args.command
        },
        env: args.env,
        cwd: args.cwd.or(workspace.map(|w| w.guest_path)),
        stdin: forwards_stdin(ctx, args.interactive, args.no_stdin),
    };
    let output = run_exec(&mut daemon, &params, &mut progress).await?;
    Ok(guest_exit(output.exit_code))
}

/// Whether a guest command gets banger's stdin: a file or pipe always, a terminal only
/// when asked (`-i`), never with `-n`.
pub fn forwards_stdin(ctx: &Ctx, interactive: bool, no_stdin: bool) -> bool {
    !no_stdin && (interactive || !ctx.term.stdin)
}

/// Sends `vm.exec`, streaming this process's stdin when `params.stdin` says so.
pub async fn run_exec(
    daemon: &mut Daemon,
    params: &VmExecParams,
    progress: &mut Progress,
) -> Result<ExecOutput, CliError> {
    if params.stdin {
        daemon
            .call_with_input::<VmExec, _>(params, tokio::io::stdin(), &mut progress.sink())
            .await
    } else {
        daemon.call::<VmExec>(params, &mut progress.sink()).await
    }
}
