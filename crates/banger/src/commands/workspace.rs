//! `vm workspace prepare`: a git repository into a running VM (export and apply are in
//! `workspace_export`).

use std::path::PathBuf;

use banger_api::methods::{WorkspacePrepare, WorkspacePrepareParams};
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
