//! The host-side half of `vm run PATH` and `vm workspace prepare`: the workspace flags,
//! the checks that need no daemon (PATH exists, is a directory in a git working tree,
//! the guest path is absolute), the notice about skipped untracked files, and
//! `--dry-run`, which lists exactly what would be copied and exits without a daemon.

use std::path::{Path, PathBuf};

use banger_api::methods::{WorkspaceOptions, WorkspaceSource};
use banger_workspace::{Mode, Plan, PlanOptions, Repo, SystemRunner, WorkspaceError};
use clap::Args;

use crate::errors::CliError;
use crate::render;
use crate::render::records::workspace::DryRunJson;

/// Flags shared by `vm run PATH` and `vm workspace prepare`.
#[derive(Debug, Clone, Args)]
pub struct WorkspaceArgs {
    /// Where the repository goes in the guest (absolute; default: guest_path in the
    /// config file, else /root/repo)
    #[arg(long, value_name = "DIR")]
    pub guest_path: Option<String>,
    /// `overlay`: the repository's history without hooks or reflogs, with the working
    /// tree laid over it; `full_copy`: `.git` exactly as on disk
    #[arg(long, value_name = "MODE", default_value = "overlay", value_parser = ["overlay", "full_copy"])]
    pub mode: String,
    /// Also copy untracked files (ignored files are never copied)
    #[arg(long)]
    pub include_untracked: bool,
    /// Print the exact list of what would be copied, the mode and the total size; needs
    /// no daemon, creates nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl WorkspaceArgs {
    /// Whether any workspace flag differs from its default (they need a PATH).
    pub fn any_given(&self) -> bool {
        self.guest_path.is_some()
            || self.mode != "overlay"
            || self.include_untracked
            || self.dry_run
    }

    /// The guest path: the flag (or what the config file filled in), else the default.
    pub fn guest_path(&self) -> &str {
        self.guest_path
            .as_deref()
            .unwrap_or(banger_workspace::DEFAULT_GUEST_PATH)
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            mode: Mode::parse(&self.mode).unwrap_or_default(),
            include_untracked: self.include_untracked,
        }
    }

    pub fn api_options(&self) -> WorkspaceOptions {
        WorkspaceOptions {
            guest_path: Some(self.guest_path().to_string()),
            mode: Some(self.mode.clone()),
            include_untracked: self.include_untracked,
        }
    }
}

/// A workspace checked on the host.
#[derive(Debug)]
pub struct Checked {
    /// The user's PATH, absolute.
    pub source: PathBuf,
    pub repo: Repo,
    pub plan: Plan,
}

impl Checked {
    /// Where the command runs in the guest.
    pub fn guest_cwd(&self, guest_path: &str) -> String {
        self.repo.guest_cwd(guest_path)
    }

    pub fn api_source(&self, args: &WorkspaceArgs) -> WorkspaceSource {
        WorkspaceSource {
            source: self.source.display().to_string(),
            options: args.api_options(),
        }
    }
}

/// Every check that can fail without a guest, then the listing.
pub async fn check(path: &Path, args: &WorkspaceArgs) -> Result<Checked, CliError> {
    banger_workspace::validate_guest_path(args.guest_path()).map_err(|e| {
        CliError::usage(
            e.to_string(),
            Some("--guest-path takes an absolute path such as /root/repo"),
        )
    })?;
    let source = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| CliError::Local(e.into()))?
            .join(path)
    };
    let runner = SystemRunner;
    let repo = banger_workspace::discover(&runner, &source)
        .await
        .map_err(refused)?;
    let plan = banger_workspace::plan(&runner, &repo, args.options())
        .await
        .map_err(refused)?;
    Ok(Checked { source, repo, plan })
}

/// A workspace error as the user reads it.
pub fn refused(error: WorkspaceError) -> CliError {
    let hint = match &error {
        WorkspaceError::NotARepo(_) => {
            Some("PATH must be a git working tree or a directory inside one (`git init` makes one)")
        }
        WorkspaceError::NotFound(_) | WorkspaceError::NotADirectory(_) => {
            Some("PATH is the repository (or a directory inside it) to copy into the guest")
        }
        WorkspaceError::GitDirIsAFile(_) => {
            Some("give the superproject (a submodule is copied with it), or the main working tree")
        }
        WorkspaceError::GitRefused { .. } => {
            Some("run `git status` in PATH to see what git objects to")
        }
        _ => None,
    };
    let message = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    CliError::failed(format!("workspace: {message}"), hint)
}

/// One notice when untracked files were left out.
pub fn notice_skipped(plan: &Plan) {
    match plan.skipped_untracked {
        0 => {}
        1 => render::note("note: 1 untracked file is not copied (--include-untracked copies it)"),
        n => render::note(&format!(
            "note: {n} untracked files are not copied (--include-untracked copies them)"
        )),
    }
}

/// `--dry-run`: the list on stdout (one entry per line, hostile names quoted), the
/// summary on stderr; with `--json`, one object.
pub fn dry_run(checked: &Checked, args: &WorkspaceArgs, json: bool) -> Result<(), CliError> {
    let plan = &checked.plan;
    let summary = format!(
        "mode {}, {} entries, {} bytes of file content ({:.1} MiB) from {} to {}{}",
        plan.options.mode,
        plan.entries.len(),
        plan.total_bytes,
        plan.total_bytes as f64 / (1024.0 * 1024.0),
        plan.repo.root.display(),
        args.guest_path(),
        if plan.options.include_untracked {
            ", untracked files included"
        } else {
            ""
        }
    );
    if json {
        let listing = banger_workspace::listing::render(plan);
        let value = DryRunJson {
            root: plan.repo.root.display().to_string(),
            subdir: plan.repo.subdir.display().to_string(),
            guest_path: args.guest_path().to_owned(),
            guest_cwd: checked.guest_cwd(args.guest_path()),
            mode: plan.options.mode.as_str().to_owned(),
            include_untracked: plan.options.include_untracked,
            head: plan.head.clone(),
            entries: plan.entries.len() as u64,
            content_bytes: plan.total_bytes,
            skipped_untracked: plan.skipped_untracked,
            files: listing.lines().map(str::to_string).collect(),
        };
        return render::stdout(&render::json(&value)?);
    }
    render::stdout(&banger_workspace::listing::render(plan))?;
    render::note(&summary);
    notice_skipped(plan);
    Ok(())
}
