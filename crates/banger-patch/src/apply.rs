//! apply: a validated patch into a host repository, or nothing. Before `git apply`
//! runs, the repository itself is checked: no touched path may pass through a symlink
//! on the host, a renamed host symlink must still point inside the repository, and no
//! touched file may have uncommitted changes (staged or not), so the user's work is
//! never mixed with the guest's. git runs with a clean environment, no system or global
//! config, `core.fsmonitor=false` and no hooks; the repository's own config is read
//! only by plumbing that runs no drivers (`ls-tree`, `diff-index --cached`,
//! `hash-object --no-filters`), and `git apply` itself runs against a scratch git
//! directory, so no filter, hook or attribute driver the repository configures can run.
//! `git apply` checks every hunk before it writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use banger_exec::{Cmd, CommandRunner, ExecError};

use crate::parse::{FileChange, ParseError, Status, parse};
use crate::validate::{ValidateError, check_link, validate};
use crate::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the patch is not in a form banger can check")]
    Parse(#[from] ParseError),
    #[error("refusing the patch")]
    Refused(#[from] ValidateError),
    #[error("{} is not the top of a git repository", .0.display())]
    NotARepository(PathBuf),
    #[error(
        "the host repository has uncommitted changes to files the patch touches: {}",
        .0.join(", ")
    )]
    Dirty(Vec<String>),
    #[error("the patch does not apply to the host repository: {0}")]
    DoesNotApply(String),
    #[error("git failed")]
    Git(#[source] ExecError),
    #[error("cannot prepare the scratch files for git apply")]
    Scratch(#[source] std::io::Error),
}

/// What was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub changes: Vec<FileChange>,
}

/// Checks `patch` against the repository whose top directory is `repo` and applies it.
/// An empty patch applies nothing and succeeds.
pub async fn apply_to_repo(
    runner: &dyn CommandRunner,
    repo: &Path,
    patch: &[u8],
) -> Result<ApplyReport, ApplyError> {
    let changes = parse(patch)?;
    validate(&changes)?;
    let scratch = tempfile::Builder::new()
        .prefix("banger-apply-")
        .tempdir()
        .map_err(ApplyError::Scratch)?;
    let git = SafeGit {
        runner,
        repo,
        home: scratch.path(),
    };
    let top = git
        .run(&["rev-parse", "--show-toplevel"], None)
        .await
        .map_err(|_| ApplyError::NotARepository(repo.to_path_buf()))?;
    let top = PathBuf::from(OsStr::from_bytes(top.trim_ascii_end()));
    if std::fs::canonicalize(&top).ok() != std::fs::canonicalize(repo).ok() {
        return Err(ApplyError::NotARepository(repo.to_path_buf()));
    }
    if changes.is_empty() {
        return Ok(ApplyReport { changes });
    }
    check_host_paths(repo, &changes)?;
    let dirty = uncommitted(&git, &changes).await?;
    if !dirty.is_empty() {
        return Err(ApplyError::Dirty(dirty));
    }
    let patch_file = scratch.path().join("guest.patch");
    std::fs::write(&patch_file, patch).map_err(ApplyError::Scratch)?;
    let scratch_git = scratch.path().join("scratch.git");
    git.plain(&["init", "-q", "--bare"], &[scratch_git.as_os_str()])
        .await
        .map_err(ApplyError::Git)?;
    for check in [true, false] {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("--git-dir"),
            scratch_git.as_os_str(),
            OsStr::new("--work-tree"),
            repo.as_os_str(),
            OsStr::new("apply"),
            OsStr::new("--whitespace=nowarn"),
        ];
        if check {
            args.push(OsStr::new("--check"));
        }
        args.push(patch_file.as_os_str());
        git.raw(&args).await.map_err(|error| match &error {
            ExecError::Failed { .. } => ApplyError::DoesNotApply(error_text(&error)),
            _ => ApplyError::Git(error),
        })?;
    }
    Ok(ApplyReport { changes })
}

/// Every touched path's leading components must be real directories on the host (or
/// missing); a modified or deleted file must be what the patch says (not a symlink
/// unless its mode says so); a renamed or copied host symlink must still point inside.
fn check_host_paths(repo: &Path, changes: &[FileChange]) -> Result<(), ApplyError> {
    for change in changes {
        for path in [&change.old_path, &change.new_path].into_iter().flatten() {
            let mut current = repo.to_path_buf();
            let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            for part in &parts[..parts.len() - 1] {
                current.push(OsStr::from_bytes(part));
                match std::fs::symlink_metadata(&current) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(crate::validate::refuse(
                            path,
                            format!(
                                "goes through {}, a symlink in the host repository",
                                current.strip_prefix(repo).unwrap_or(&current).display()
                            ),
                        )
                        .into());
                    }
                    _ => {}
                }
            }
        }
        if let Some(old) = &change.old_path {
            let on_host = repo.join(OsStr::from_bytes(old));
            let is_link =
                std::fs::symlink_metadata(&on_host).is_ok_and(|meta| meta.file_type().is_symlink());
            if is_link && change.old_mode.is_some_and(|mode| mode != MODE_SYMLINK) {
                return Err(crate::validate::refuse(
                    old,
                    "is a symlink in the host repository, not the file the patch changes",
                )
                .into());
            }
            if is_link
                && matches!(change.status, Status::Renamed | Status::Copied)
                && let (Some(new), Ok(target)) = (&change.new_path, std::fs::read_link(&on_host))
                && change.symlink_target.is_none()
            {
                check_link(new, target.as_os_str().as_bytes())?;
            }
        }
    }
    Ok(())
}

/// The touched paths whose working-tree or index state differs from `HEAD`.
async fn uncommitted(git: &SafeGit<'_>, changes: &[FileChange]) -> Result<Vec<String>, ApplyError> {
    let touched: BTreeSet<&[u8]> = changes
        .iter()
        .flat_map(|change| [&change.old_path, &change.new_path])
        .flatten()
        .map(Vec::as_slice)
        .collect();
    let paths: Vec<&OsStr> = touched.iter().map(|path| OsStr::from_bytes(path)).collect();
    let has_head = git
        .run(&["rev-parse", "--verify", "-q", "HEAD^{commit}"], None)
        .await
        .is_ok();
    // HEAD's (mode, object) for each touched path that it has.
    let mut committed: BTreeMap<Vec<u8>, (u32, Vec<u8>)> = BTreeMap::new();
    let mut dirty: BTreeSet<Vec<u8>> = BTreeSet::new();
    if has_head {
        let listing = git
            .run(
                &["ls-tree", "-z", "--full-tree", "HEAD", "--"],
                Some(&paths),
            )
            .await
            .map_err(ApplyError::Git)?;
        for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            // "<mode> <type> <object>\t<path>"
            let Some(tab) = entry.iter().position(|&b| b == b'\t') else {
                continue;
            };
            let fields: Vec<&[u8]> = entry[..tab].split(|&b| b == b' ').collect();
            let mode = std::str::from_utf8(fields[0])
                .ok()
                .and_then(|m| u32::from_str_radix(m, 8).ok());
            if let (Some(mode), Some(object)) = (mode, fields.get(2)) {
                committed.insert(entry[tab + 1..].to_vec(), (mode, object.to_vec()));
            }
        }
        let staged = git
            .run(
                &[
                    "diff-index",
                    "--cached",
                    "--no-renames",
                    "-z",
                    "--name-only",
                    "HEAD",
                    "--",
                ],
                Some(&paths),
            )
            .await
            .map_err(ApplyError::Git)?;
        dirty.extend(
            staged
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    let mut files: Vec<&[u8]> = Vec::new();
    for path in &touched {
        let on_host = git.repo.join(OsStr::from_bytes(path));
        let state = match std::fs::symlink_metadata(&on_host) {
            Err(_) => None,
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&on_host).map_err(ApplyError::Scratch)?;
                let object = git
                    .hash_stdin(target.as_os_str().as_bytes())
                    .await
                    .map_err(ApplyError::Git)?;
                Some((MODE_SYMLINK, object))
            }
            Ok(meta) if meta.is_file() => {
                files.push(path);
                continue;
            }
            Ok(_) => Some((0o040000, Vec::new())),
        };
        if state.as_ref() != committed.get(*path) {
            dirty.insert(path.to_vec());
        }
    }
    if !files.is_empty() {
        let args: Vec<&OsStr> = files.iter().map(|path| OsStr::from_bytes(path)).collect();
        let hashes = git
            .run(&["hash-object", "--no-filters", "--"], Some(&args))
            .await
            .map_err(ApplyError::Git)?;
        for (path, object) in files.iter().zip(hashes.split(|&b| b == b'\n')) {
            let meta = std::fs::metadata(git.repo.join(OsStr::from_bytes(path)))
                .map_err(ApplyError::Scratch)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                MODE_EXECUTABLE
            } else {
                MODE_FILE
            };
            if Some(&(mode, object.to_vec())) != committed.get(*path) {
                dirty.insert(path.to_vec());
            }
        }
    }
    Ok(dirty
        .into_iter()
        .map(|path| String::from_utf8_lossy(&path).into_owned())
        .collect())
}

/// git with nothing inherited: no system or global config, no fsmonitor, no hooks,
/// literal pathspecs, in the repository's top directory.
struct SafeGit<'a> {
    runner: &'a dyn CommandRunner,
    repo: &'a Path,
    home: &'a Path,
}

impl SafeGit<'_> {
    fn command(&self) -> Cmd {
        Cmd::new("git")
            .cwd(self.repo)
            .env("HOME", self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.untrackedCache=false",
            ])
    }

    /// Runs `args` then `paths`; stdout.
    async fn run(&self, args: &[&str], paths: Option<&[&OsStr]>) -> Result<Vec<u8>, ExecError> {
        let mut cmd = self.command().args(args);
        if let Some(paths) = paths {
            cmd = cmd.args(paths.iter().copied());
        }
        Ok(self.runner.run(&cmd).await?.stdout)
    }

    async fn plain(&self, args: &[&str], more: &[&OsStr]) -> Result<Vec<u8>, ExecError> {
        self.run(args, Some(more)).await
    }

    async fn raw(&self, args: &[&OsStr]) -> Result<Vec<u8>, ExecError> {
        let cmd = self.command().args(args.iter().copied());
        Ok(self.runner.run(&cmd).await?.stdout)
    }

    async fn hash_stdin(&self, bytes: &[u8]) -> Result<Vec<u8>, ExecError> {
        let cmd = self
            .command()
            .args(["hash-object", "--no-filters", "--stdin"])
            .stdin(bytes.to_vec());
        let out = self.runner.run(&cmd).await?.stdout;
        Ok(out.trim_ascii_end().to_vec())
    }
}

fn error_text(error: &ExecError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
