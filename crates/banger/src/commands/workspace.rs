//! `vm workspace prepare`: a git repository into a running VM (export and apply are in
//! `workspace_export`).

use std::path::PathBuf;

use banger_api::methods::{VmRef, VmShow, WorkspacePrepare, WorkspacePrepareParams};
use clap::Args;

use crate::cli::{JsonFlag, VmArg};
use crate::commands::workspace_local::{self, WorkspaceArgs};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;

/// Copy a git repository into a running VM
#[derive(Debug, Args)]
#[command(
    long_about = "Copy a git repository into a running VM, replacing what the guest path \
held: the same file set as `vm run PATH` (tracked files as in the working tree, `.git`, \
submodules' checked-out content; untracked files with --include-untracked; ignored files \
never), streamed as one tar through the guest agent. The host repository is only read. \
`vm exec` then runs in the workspace directory. Without PATH, the VM's recorded workspace \
is copied again (or the current directory when it has none).

Two prepares of one VM never interleave; `vm stop` and `vm delete` do not wait for one.",
    after_help = "\
Examples:
  banger vm workspace prepare web ./repo
  banger vm workspace prepare web                       Sync the recorded repository again
  banger vm workspace prepare web ./repo --include-untracked
  banger vm workspace prepare web ./repo --guest-path /srv/app
  banger vm workspace prepare web ./repo --dry-run      What would be copied"
)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Git repository (or a directory inside one) on this host
    #[arg(value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm workspace prepare`.
pub async fn prepare(ctx: &Ctx, args: PrepareArgs) -> Result<(), CliError> {
    let path = match &args.path {
        Some(path) => path.clone(),
        None if args.workspace.dry_run => PathBuf::from("."),
        None => {
            let mut daemon = ctx.connect().await?;
            let vm = daemon
                .ask::<VmShow>(&VmRef {
                    vm: args.vm.vm.clone(),
                })
                .await?;
            vm.workspace
                .map(|w| PathBuf::from(w.source))
                .unwrap_or_else(|| PathBuf::from("."))
        }
    };
    let checked = workspace_local::check(&path, &args.workspace).await?;
    if args.workspace.dry_run {
        return workspace_local::dry_run(&checked, &args.workspace, args.output.json);
    }
    workspace_local::notice_skipped(&checked.plan);
    let mut daemon = ctx.connect().await?;
    let params = WorkspacePrepareParams {
        vm: args.vm.vm,
        source: checked.source.display().to_string(),
        options: args.workspace.api_options(),
    };
    let vm = daemon
        .call_with_progress::<WorkspacePrepare>(&ctx.term, &params)
        .await?;
    render::records::print_vm(args.output.json, &vm, |vm| match &vm.workspace {
        Some(w) => format!("{}: {} imported at {}\n", vm.name, w.source, w.guest_path),
        None => format!("{}: workspace imported\n", vm.name),
    })
}
