//! `vm workspace export` and `vm workspace apply`: the guest workspace's changes as a
//! patch on stdout (or a file), and the same patch checked and applied to the host
//! repository by the daemon. The patch is data: written byte for byte, never restyled.

use std::io::Write as _;
use std::path::PathBuf;

use banger_api::methods::{
    ExportFormat, WorkspaceApply, WorkspaceApplyOutput, WorkspaceApplyParams, WorkspaceExport,
    WorkspaceExportParams,
};
use banger_api::{Event, OutputStream};
use clap::{Args, ValueEnum};

use crate::cli::{JsonFlag, VmArg};
use crate::connect::{self, Ctx};
use crate::errors::CliError;
use crate::render;
use crate::render::records::workspace::{ApplyJson, ExportJson};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One `git diff --binary` patch, for `git apply`
    Diff,
    /// The guest's commits (`git format-patch`) plus one for uncommitted changes, for
    /// `git am --3way`
    Mbox,
}

/// Print the guest workspace's changes as a patch
#[derive(Debug, Args)]
#[command(
    long_about = "Print what changed in the VM's workspace as one binary-safe patch that \
`git apply` accepts: edits, new files that are not ignored, deletions, mode changes, \
renames, binary files and symlinks.

The patch is against the guest's HEAD, so commits made in the guest are not in it; \
`--base-commit SHA` (for instance the commit the workspace was prepared from, shown by \
`banger vm show`) diffs against that commit instead, commits included. `--format mbox` \
writes the guest's commits since the prepared commit as `git format-patch` output, plus \
one last patch for the uncommitted changes, so `git am --3way` keeps authors and \
messages.

Nothing in the guest changes: git runs there against a throwaway copy of the index, so \
the guest's index, working tree and refs stay exactly as they were. Nothing is applied \
on the host: see `vm workspace apply`.",
    after_help = "\
Examples:
  banger vm workspace export web | git apply
  banger vm workspace export web --output guest.patch
  banger vm workspace export web --base-commit 1a2b3c4 | git apply --index
  banger vm workspace export web --format mbox | git am --3way
  banger vm workspace export web --json          The changed files and the base, as JSON"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Diff against this commit (commits made in the guest since it are included)
    #[arg(long, value_name = "SHA")]
    pub base_commit: Option<String>,
    /// Write the patch to FILE instead of stdout
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "diff")]
    pub format: FormatArg,
    /// The repository's directory in the guest, for a VM without a workspace record
    #[arg(long, value_name = "DIR")]
    pub guest_path: Option<String>,
    /// Print the base and the changed files as JSON (the patch goes to --output only)
    #[arg(long)]
    pub json: bool,
}

/// Export the guest's changes and apply them to the host repository
#[derive(Debug, Args)]
#[command(
    long_about = "Export the guest workspace's changes (against the commit the workspace \
was prepared from, so commits made in the guest are included) and apply them to the host \
repository: the workspace's own, or the one --to names.

The patch comes from the guest and is not trusted. It is refused, naming the path, and \
nothing is applied when it touches `.git`, has `..` or absolute names, plants a symlink \
pointing out of the repository or into `.git`, or writes through a symlink (one it makes, \
or one already in the host repository). It is also refused when the host has uncommitted \
changes to any file it touches. git runs on the host with a clean environment, no hooks, \
no fsmonitor and no filter or attribute drivers, and `git apply` checks every hunk before \
it writes anything.",
    after_help = "\
Examples:
  banger vm workspace apply web
  banger vm workspace apply web --to ~/src/repo
  banger vm workspace apply web --base-commit 1a2b3c4 --json"
)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// The host repository (its top directory); default: the workspace's
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub to: Option<PathBuf>,
    /// Diff against this commit instead of the prepared one
    #[arg(long, value_name = "SHA")]
    pub base_commit: Option<String>,
    /// The repository's directory in the guest, for a VM without a workspace record
    #[arg(long, value_name = "DIR")]
    pub guest_path: Option<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm workspace export`.
pub async fn export(ctx: &Ctx, args: ExportArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = WorkspaceExportParams {
        vm: args.vm.vm,
        base_commit: args.base_commit,
        guest_path: args.guest_path,
        format: match args.format {
            FormatArg::Diff => ExportFormat::Diff,
            FormatArg::Mbox => ExportFormat::Mbox,
        },
    };
    let mut patch = Vec::new();
    let output = daemon
        .call::<WorkspaceExport>(&params, &mut |event| {
            if let Event::Output {
                stream: OutputStream::Stdout,
                data,
            } = event
            {
                patch.extend_from_slice(&data);
            }
        })
        .await?;
    if let Some(path) = &args.output {
        write_file(path, &patch)?;
    }
    if args.json {
        return render::stdout(&render::json(&ExportJson::from(&output))?);
    }
    if patch.is_empty() {
        render::note("no changes in the guest's workspace");
        return Ok(());
    }
    if args.output.is_none() {
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(&patch).and_then(|()| stdout.flush()) {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(CliError::Local(anyhow::Error::new(err)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `vm workspace apply`.
pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<(), CliError> {
    let to = match &args.to {
        Some(path) => Some(connect::absolute(path)?.display().to_string()),
        None => None,
    };
    let mut daemon = ctx.connect().await?;
    let params = WorkspaceApplyParams {
        vm: args.vm.vm,
        to,
        base_commit: args.base_commit,
        guest_path: args.guest_path,
    };
    let output = daemon.ask::<WorkspaceApply>(&params).await?;
    render::records::print(args.output.json, &output, ApplyJson::from, applied)
}

fn applied(output: &WorkspaceApplyOutput) -> String {
    if output.files.is_empty() {
        return format!("no changes to apply to {}\n", output.repo);
    }
    let mut text = format!(
        "applied {} file(s) to {} (base {}):\n",
        output.files.len(),
        output.repo,
        &output.base[..output.base.len().min(12)]
    );
    for file in &output.files {
        match &file.old_path {
            Some(old) => text.push_str(&format!("  {:<9} {old} -> {}\n", file.status, file.path)),
            None => text.push_str(&format!("  {:<9} {}\n", file.status, file.path)),
        }
    }
    text
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader never
/// sees half a patch.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temporary = dir.join(format!(".banger-export-{}.tmp", std::process::id()));
    let written = fs_err::write(&temporary, bytes).and_then(|()| fs_err::rename(&temporary, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(CliError::Local(anyhow::Error::new(err)));
    }
    Ok(())
}
