//! `vm exec`: runs a command in a running VM through the guest agent, streaming its output
//! to this process's stdout and stderr, and exits with the command's exit code.

use std::process::ExitCode;

use banger_api::methods::{VmExec, VmExecParams};
use clap::Args;

use crate::cli::VmArg;
use crate::commands::{guest_exit, workspace_exec};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::progress::Progress;
use crate::values;

/// Run a command in a running VM and exit with its code
#[derive(Debug, Args)]
#[command(
    long_about = "Run a command in a running VM through the guest agent. Its stdout and \
stderr stream to banger's stdout and stderr as they come, and banger exits with the \
command's exit code. The arguments after `--` arrive as a list, without a shell: write \
`-- sh -c '...'` for pipes or variables. stdin is not forwarded.

When the VM has a workspace (`vm run PATH`, `vm workspace prepare`), the command runs in \
it (`--cwd` still wins), and banger warns when the host repository's HEAD or tracked files \
changed since it was prepared; `--auto-prepare` copies it again first.

`vm ssh` opens an interactive session instead; `vm run` creates a VM and runs the command \
in one step.",
    after_help = "\
Examples:
  banger vm exec web -- uname -a
  banger vm exec web -- sh -c 'echo $HOME; exit 3'   Exits with 3
  banger vm exec web --cwd /root/repo -e CI=1 -- make test
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
    let params = VmExecParams {
        vm: args.vm.vm,
        argv: args.command,
        env: args.env,
        cwd: args.cwd.or(workspace),
    };
    let output = daemon.call::<VmExec>(&params, &mut progress.sink()).await?;
    Ok(guest_exit(output.exit_code))
}
