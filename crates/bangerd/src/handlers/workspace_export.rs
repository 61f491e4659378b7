//! `vm.workspace.export` and `vm.workspace.apply`: the guest workspace's changes out
//! as a patch, and (apply) into the host repository. git runs in the guest through the
//! agent's exec (`assets/export.sh`), against a throwaway index inside the guest's git
//! directory, so the guest's index, working tree and refs are never touched. The patch
//! streams to the client as output events; for apply it is checked by `banger-patch`
//! as untrusted input and applied by it with a git that runs nothing of the host
//! repository's. Both hold the VM's workspace lock while git runs in the guest, so a
//! prepare never rewrites the tree under an export.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::methods::{
    ChangedFile, ExportFormat, WorkspaceApplyOutput, WorkspaceApplyParams, WorkspaceExportOutput,
    WorkspaceExportParams,
};
use banger_api::{ApiError, ErrorCode, Event, MAX_INPUT_CHUNK_BYTES, OutputStream};
use banger_proto::agent::{ExecRequest, Stream};

use crate::context::DaemonContext;
use crate::events::EventSink;
use crate::handlers::vm::vm_error;

const EXPORT_SCRIPT: &str = include_str!("../../assets/export.sh");

/// Where a VM without a workspace record keeps its repository.
pub const DEFAULT_GUEST_PATH: &str = "/root/repo";

/// A patch as the guest produced it.
struct Exported {
    base: String,
    guest_path: String,
    patch: Vec<u8>,
}

pub async fn export(
    ctx: &Arc<DaemonContext>,
    params: WorkspaceExportParams,
    events: &EventSink,
) -> Result<WorkspaceExportOutput, ApiError> {
    let base = params.base_commit.clone();
    let exported = run_export(ctx, &params.vm, base, params.guest_path, params.format).await?;
    for chunk in exported.patch.chunks(MAX_INPUT_CHUNK_BYTES) {
        events.emit(Event::Output {
            stream: OutputStream::Stdout,
            data: chunk.to_vec(),
        });
    }
    let files = match params.format {
        ExportFormat::Diff => changed_files(&exported.patch),
        ExportFormat::Mbox => Vec::new(),
    };
    Ok(WorkspaceExportOutput {
        base: exported.base,
        guest_path: exported.guest_path,
        format: params.format,
        bytes: exported.patch.len() as u64,
        files,
    })
}

pub async fn apply(
    ctx: &Arc<DaemonContext>,
    params: WorkspaceApplyParams,
    _events: &EventSink,
) -> Result<WorkspaceApplyOutput, ApiError> {
    let vm = ctx.services.vms.find(&params.vm).map_err(vm_error)?;
    let workspace = vm.workspace.clone();
    let repo = match (&params.to, &workspace) {
        (Some(to), _) => PathBuf::from(to),
        (None, Some(workspace)) => PathBuf::from(&workspace.host_path),
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "VM {} has no workspace, so there is no host repository to apply to",
                vm.name
            ))
            .with_hint("name the host repository with --to PATH"));
        }
    };
    if !repo.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "{}: the host repository path must be absolute",
            repo.display()
        )));
    }
    // The prepared commit by default, so the guest's own commits come along.
    let base = params
        .base_commit
        .clone()
        .or_else(|| workspace.as_ref().and_then(|w| w.head_commit.clone()));
    let exported = run_export(
        ctx,
        &params.vm,
        base,
        params.guest_path.clone(),
        ExportFormat::Diff,
    )
    .await?;
    let report = banger_patch::apply_to_repo(ctx.runner.as_ref(), &repo, &exported.patch)
        .await
        .map_err(|error| apply_error(&repo, &error))?;
    Ok(WorkspaceApplyOutput {
        repo: repo.display().to_string(),
        base: exported.base,
        files: report.changes.iter().map(changed_file).collect(),
    })
}

async fn run_export(
    ctx: &Arc<DaemonContext>,
    query: &str,
    base: Option<String>,
    guest_path: Option<String>,
    format: ExportFormat,
) -> Result<Exported, ApiError> {
    let vms = &ctx.services.vms;
    let vm = vms.find(query).map_err(vm_error)?;
    let guest_path = guest_path
        .or_else(|| vm.workspace.as_ref().map(|w| w.guest_path.clone()))
        .unwrap_or_else(|| DEFAULT_GUEST_PATH.to_string());
    // mbox: the guest's commits since the prepared commit (without a workspace record,
    // since the guest repository's first commit: the script's own default).
    let base = match (base, format) {
        (None, ExportFormat::Mbox) => vm.workspace.as_ref().and_then(|w| w.head_commit.clone()),
        (base, _) => base,
    };
    if let Some(base) = &base
        && (base.is_empty() || base.starts_with('-'))
    {
        return Err(ApiError::bad_request(format!("{base:?} is not a commit")));
    }
    let format_name = match format {
        ExportFormat::Diff => "diff",
        ExportFormat::Mbox => "mbox",
    };
    let request = ExecRequest {
        argv: vec![
            "sh".into(),
            "-c".into(),
            EXPORT_SCRIPT.into(),
            "sh".into(),
            guest_path.clone(),
            base.clone().unwrap_or_default(),
            format_name.into(),
        ],
        env: [("LC_ALL".to_string(), "C".to_string())].into(),
        cwd: Some("/".into()),
        stdin: false,
        ..Default::default()
    };
    // The workspace lock: a prepare never rewrites the tree while git reads it.
    let workspace_lock = vms.workspace_lock(&vm.id);
    let _reading = workspace_lock.lock().await;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = vms
        .exec(
            query,
            request,
            |stream, data| match stream {
                Stream::Stdout => stdout.extend_from_slice(data),
                Stream::Stderr => stderr.extend_from_slice(data),
            },
            std::future::pending(),
        )
        .await
        .map_err(vm_error)?;
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    if code != 0 {
        let error = if code == 3 {
            ApiError::bad_request(stderr.trim_start_matches("banger: ").to_string()).with_hint(
                "give a commit the guest's repository has (`banger vm exec VM -- git log`)",
            )
        } else {
            ApiError::operation_failed(format!(
                "git in the guest failed (exit {code}) in {guest_path}: {stderr}"
            ))
            .with_hint(format!(
                "is {guest_path} a git repository in the guest? `--guest-path` names another"
            ))
        };
        return Err(error);
    }
    let Some(newline) = stdout.iter().position(|&b| b == b'\n') else {
        return Err(ApiError::operation_failed(
            "the guest's export printed nothing".to_string(),
        ));
    };
    let first = String::from_utf8_lossy(&stdout[..newline]).into_owned();
    let Some(base) = first.strip_prefix("banger-base ") else {
        return Err(ApiError::operation_failed(format!(
            "unexpected first line from the guest's export: {first:?}"
        )));
    };
    Ok(Exported {
        base: base.to_string(),
        guest_path,
        patch: stdout[newline + 1..].to_vec(),
    })
}

/// The files of a `diff` patch; empty when it does not parse (the patch is still
/// printed: whether it applies is `git apply`'s and `vm workspace apply`'s call).
fn changed_files(patch: &[u8]) -> Vec<ChangedFile> {
    banger_patch::parse(patch)
        .map(|changes| changes.iter().map(changed_file).collect())
        .unwrap_or_default()
}

fn changed_file(change: &banger_patch::FileChange) -> ChangedFile {
    let lossy = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
    let status = match change.status {
        banger_patch::Status::Added => "added",
        banger_patch::Status::Deleted => "deleted",
        banger_patch::Status::Modified => "modified",
        banger_patch::Status::Renamed => "renamed",
        banger_patch::Status::Copied => "copied",
    };
    ChangedFile {
        status: status.to_string(),
        path: lossy(change.path()),
        old_path: match change.status {
            banger_patch::Status::Renamed | banger_patch::Status::Copied => {
                change.old_path.as_deref().map(lossy)
            }
            _ => None,
        },
        mode: change.new_mode.map(|mode| format!("{mode:o}")),
        binary: change.binary,
    }
}

fn apply_error(repo: &Path, error: &banger_patch::ApplyError) -> ApiError {
    use banger_patch::ApplyError as E;
    let message = format!(
        "nothing was applied to {}: {}",
        repo.display(),
        crate::errors::chain(error)
    );
    match error {
        E::Parse(_) | E::Refused(_) => ApiError::new(ErrorCode::Conflict, message)
            .with_hint("the guest's patch was refused as unsafe; look at it with `banger vm workspace export VM`"),
        E::Dirty(_) => ApiError::new(ErrorCode::Conflict, message)
            .with_hint("commit or stash those files on the host first, then apply again"),
        E::NotARepository(_) => ApiError::bad_request(message)
            .with_hint("--to names the top directory of a git repository"),
        E::DoesNotApply(_) => ApiError::new(ErrorCode::Conflict, message).with_hint(
            "the host repository is not at the patch's base; check out the prepared commit, or pass --base-commit",
        ),
        E::Git(_) | E::Scratch(_) => ApiError::operation_failed(message),
    }
}
