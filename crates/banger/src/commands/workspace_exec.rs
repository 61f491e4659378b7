//! What `vm exec` does about a VM's workspace: runs in it unless `--cwd` says otherwise,
//! warns when the host repository moved on since the workspace was prepared (another
//! `HEAD`, or tracked files changed), and with `--auto-prepare` copies it again first.

use std::path::PathBuf;

use banger_api::methods::{WorkspaceOptions, WorkspacePrepare, WorkspacePrepareParams};
use banger_api::types::WorkspaceInfo;
use banger_workspace::{Repo, SystemRunner};

use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::render;

/// The VM's workspace when it has one, after the staleness check (and the re-sync with
/// `auto_prepare`).
pub async fn before_exec(
    ctx: &Ctx,
    daemon: &mut Daemon,
    info: banger_api::types::VmInfo,
    auto_prepare: bool,
) -> Result<Option<WorkspaceInfo>, CliError> {
    let Some(workspace) = info.workspace else {
        if auto_prepare {
            return Err(CliError::usage(
                format!("VM {} has no workspace to prepare again", info.name),
                Some("copy one in first: `banger vm workspace prepare VM PATH`"),
            ));
        }
        return Ok(None);
    };
    let changes = changes_since(&workspace).await;
    if auto_prepare {
        if !changes.is_empty() {
            let params = WorkspacePrepareParams {
                vm: info.name.clone(),
                source: workspace.source.clone(),
                options: WorkspaceOptions {
                    guest_path: Some(workspace.guest_path.clone()),
                    mode: Some(workspace.mode.clone()).filter(|m| !m.is_empty()),
                    include_untracked: workspace.include_untracked,
                },
            };
            daemon
                .call_with_progress::<WorkspacePrepare>(&ctx.term, &params)
                .await?;
        }
    } else if !changes.is_empty() {
        render::note(&format!(
            "warning: {} changed since the workspace was prepared: {}; \
             `--auto-prepare` copies it again first",
            workspace.source,
            changes.join(", ")
        ));
    }
    Ok(Some(workspace))
}

/// What differs on the host from the recorded workspace; empty when nothing does (or
/// the host repository cannot be read: this is best effort, never an error).
async fn changes_since(workspace: &WorkspaceInfo) -> Vec<String> {
    let runner = SystemRunner;
    let repo = Repo {
        root: PathBuf::from(&workspace.source),
        subdir: PathBuf::new(),
        // Only tracked files and HEAD are read here, which git resolves itself.
        linked: None,
    };
    let mut changes = Vec::new();
    if let Ok(head) = banger_workspace::plan::head_commit(&runner, &repo.root).await {
        let head = head.unwrap_or_default();
        if head != workspace.base_commit {
            let short = |c: &str| -> String {
                if c.is_empty() {
                    "none".into()
                } else {
                    c.chars().take(12).collect()
                }
            };
            changes.push(format!(
                "HEAD is {} (was {})",
                short(&head),
                short(&workspace.base_commit)
            ));
        }
    }
    if !workspace.tracked_signature.is_empty()
        && let Ok(signature) = banger_workspace::tracked_signature(&runner, &repo).await
        && signature != workspace.tracked_signature
    {
        changes.push("tracked files changed".into());
    }
    changes
}
