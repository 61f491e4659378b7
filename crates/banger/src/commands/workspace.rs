//! `vm workspace prepare` and `export`: a git repository into a VM, and the guest's edits
//! back out as a patch.

use std::path::PathBuf;

use banger_api::methods::{
    WorkspaceExport, WorkspaceExportParams, WorkspacePrepare, WorkspacePrepareParams,
};
use clap::Args;

use crate::cli::{JsonFlag, VmArg};
use crate::connect::{self, Ctx};
use crate::errors::CliError;
use crate::render;

/// Import a git repository into a VM
#[derive(Debug, Args)]
#[command(
    long_about = "Copy a git repository into a running VM: its committed state plus \
uncommitted changes. The guest gets its own checkout; the host repository is not touched.",
    after_help = "Examples:\n  banger vm workspace prepare web ./repo"
)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Git repository on this host
    #[arg(value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub path: PathBuf,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Print the guest's edits to the workspace as a patch
#[derive(Debug, Args)]
#[command(
    long_about = "Print what changed in the VM's workspace since it was imported, as a \
patch `git apply` accepts (binary changes included). Nothing is applied for you.",
    after_help = "\
Examples:
  banger vm workspace export web > guest.patch
  banger vm workspace export web | git apply"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub vm: VmArg,
}

/// `vm workspace prepare`.
pub async fn prepare(ctx: &Ctx, args: PrepareArgs) -> Result<(), CliError> {
    let source = connect::absolute(&args.path)?;
    let mut daemon = ctx.connect().await?;
    let params = WorkspacePrepareParams {
        vm: args.vm.vm,
        source: source.display().to_string(),
        options: Default::default(),
    };
    let vm = daemon
        .call_with_progress::<WorkspacePrepare>(&ctx.term, &params)
        .await?;
    render::data(args.output.json, &vm, |vm| match &vm.workspace {
        Some(w) => format!("{}: {} imported at {}\n", vm.name, w.source, w.guest_path),
        None => format!("{}: workspace imported\n", vm.name),
    })
}

/// `vm workspace export`.
pub async fn export(ctx: &Ctx, args: ExportArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = WorkspaceExportParams { vm: args.vm.vm };
    let output = daemon.ask::<WorkspaceExport>(&params).await?;
    if output.patch.is_empty() {
        render::note("no changes in the guest's workspace");
        return Ok(());
    }
    // The patch is data: written as is, never restyled.
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.patch.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}
