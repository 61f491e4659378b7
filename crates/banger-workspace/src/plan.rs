//! What goes into the guest: [`discover`] turns a user's path into a repository root and
//! the subdirectory the command runs in; [`plan`] lists every entry of the copy.
//!
//! The list: the files git tracks, as they are in the working tree (edits included,
//! deleted files absent, a tracked path whose parent is now a symlink left out so nothing
//! is read through a link), each initialised submodule's tracked files and its `.git`
//! (an uninitialised one is an empty directory), untracked files only with
//! `include_untracked` (never ignored ones, and never the contents of nested
//! repositories), and the repository's `.git`: whole in [`Mode::FullCopy`], without
//! hooks, reflogs, lock files and fsmonitor state in [`Mode::Overlay`]. Symlinks are
//! entries of their own, never followed. Sockets, FIFOs and devices are left out.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use banger_exec::{CommandRunner, ExecError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::WorkspaceError;
use crate::git;

/// How `.git` is copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The repository's history (objects, refs, index, config) without hooks, reflogs,
    /// locks or fsmonitor state, with the working-tree files laid over it.
    #[default]
    Overlay,
    /// `.git` exactly as it is on disk (hooks, reflogs and all), plus the working tree.
    FullCopy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Overlay => "overlay",
            Mode::FullCopy => "full_copy",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "overlay" => Some(Mode::Overlay),
            "full_copy" => Some(Mode::FullCopy),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    pub mode: Mode,
    pub include_untracked: bool,
}

/// A repository found from a user's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The working tree's root, canonical.
    pub root: PathBuf,
    /// Where the user's path is inside it (empty for the root itself).
    pub subdir: PathBuf,
    /// For a linked worktree (`.git` is a file): its own git directory and the common
    /// one, from which the guest's standalone `.git` is put together.
    pub linked: Option<LinkedGitDirs>,
}

/// The two git directories of a linked worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedGitDirs {
    /// `<common>/worktrees/<name>`: this worktree's `HEAD`, `index` and other state.
    pub git_dir: PathBuf,
    /// The main repository's `.git`: objects, refs, config.
    pub common_dir: PathBuf,
}

impl Repo {
    /// `guest_path` joined with the subdirectory: where the command runs in the guest.
    pub fn guest_cwd(&self, guest_path: &str) -> String {
        if self.subdir.as_os_str().is_empty() {
            guest_path.to_string()
        } else {
            Path::new(guest_path)
                .join(&self.subdir)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    /// A directory that must exist even when empty (an uninitialised submodule).
    Dir,
}

/// Why an entry is in the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Tracked,
    Untracked,
    Git,
}

/// One path of the copy, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub origin: Origin,
    /// Where to read it when that is not `root/path` (a linked worktree's `.git`).
    pub source: Option<PathBuf>,
}

/// Everything that goes into the guest, in path order (parents are implied).
#[derive(Debug, Clone)]
pub struct Plan {
    pub repo: Repo,
    pub options: PlanOptions,
    pub entries: Vec<Entry>,
    /// Bytes of file content.
    pub total_bytes: u64,
    /// Untracked, non-ignored files left out (0 with `include_untracked`).
    pub skipped_untracked: u64,
    /// `HEAD`'s commit; `None` in a repository with no commits.
    pub head: Option<String>,
    /// See [`tracked_signature`].
    pub tracked_signature: String,
}

impl Plan {
    pub fn count(&self, origin: Origin) -> usize {
        self.entries.iter().filter(|e| e.origin == origin).count()
    }
}

/// Finds the repository `path` is in. Refuses a missing path, a file, a path outside
/// any working tree (`.git` itself and bare repositories included) and a working tree
/// whose `.git` is a file (linked worktrees, submodule checkouts).
pub async fn discover(runner: &dyn CommandRunner, path: &Path) -> Result<Repo, WorkspaceError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(WorkspaceError::NotFound(path.to_path_buf()));
        }
        Err(err) => return Err(WorkspaceError::io(path)(err)),
    };
    if !meta.is_dir() {
        return Err(WorkspaceError::NotADirectory(path.to_path_buf()));
    }
    let canonical = std::fs::canonicalize(path).map_err(WorkspaceError::io(path))?;
    let out = match git::run(runner, &canonical, &["rev-parse", "--show-toplevel"]).await {
        Ok(out) => out,
        Err(err) => return Err(refusal(path, err)),
    };
    let mut root = out;
    while root.last() == Some(&b'\n') {
        root.pop();
    }
    if root.is_empty() {
        return Err(WorkspaceError::NotARepo(path.to_path_buf()));
    }
    let root = PathBuf::from(OsString::from_vec(root));
    let linked = match std::fs::symlink_metadata(root.join(".git")) {
        Ok(meta) if meta.is_dir() => None,
        Ok(meta) if meta.is_file() => Some(linked_dirs(runner, &root).await?),
        Ok(_) => return Err(WorkspaceError::GitDirIsAFile(root)),
        Err(_) => return Err(WorkspaceError::NotARepo(path.to_path_buf())),
    };
    let subdir = canonical
        .strip_prefix(&root)
        .map_err(|_| {
            WorkspaceError::Unexpected(format!(
                "git says {} is in {}, which does not contain it",
                canonical.display(),
                root.display()
            ))
        })?
        .to_path_buf();
    Ok(Repo {
        root,
        subdir,
        linked,
    })
}

/// The git directories of a linked worktree at `root`; refuses a `.git` file that does
/// not lead to a worktree of some repository (a submodule checkout opened on its own).
async fn linked_dirs(
    runner: &dyn CommandRunner,
    root: &Path,
) -> Result<LinkedGitDirs, WorkspaceError> {
    let out = git::read(
        runner,
        root,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
        ],
    )
    .await?;
    let mut lines = out.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let (Some(git_dir), Some(common_dir)) = (lines.next(), lines.next()) else {
        return Err(WorkspaceError::GitDirIsAFile(root.to_path_buf()));
    };
    let git_dir = PathBuf::from(OsStr::from_bytes(git_dir));
    let common_dir = PathBuf::from(OsStr::from_bytes(common_dir));
    if git_dir == common_dir || !git_dir.starts_with(common_dir.join("worktrees")) {
        return Err(WorkspaceError::GitDirIsAFile(root.to_path_buf()));
    }
    Ok(LinkedGitDirs {
        git_dir,
        common_dir,
    })
}

/// What a failed `rev-parse` means for the user.
fn refusal(path: &Path, err: ExecError) -> WorkspaceError {
    let ExecError::Failed { stderr, .. } = &err else {
        return WorkspaceError::Git(err);
    };
    if stderr.contains("not a git repository") || stderr.contains("must be run in a work tree") {
        WorkspaceError::NotARepo(path.to_path_buf())
    } else {
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("fatal:"))
            .unwrap_or(stderr.trim())
            .trim_start_matches("fatal:")
            .trim()
            .to_string();
        WorkspaceError::GitRefused {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// Lists everything that goes into the guest.
pub async fn plan(
    runner: &dyn CommandRunner,
    repo: &Repo,
    options: PlanOptions,
) -> Result<Plan, WorkspaceError> {
    let root = &repo.root;
    let mut entries: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    let mut signature = Sha256::new();
    collect_tracked(
        runner,
        root,
        Path::new(""),
        options.mode,
        &mut entries,
        &mut signature,
    )
    .await?;

    let mut skipped_untracked = 0;
    let others = git::read(
        runner,
        root,
        &["ls-files", "-z", "--others", "--exclude-standard"],
    )
    .await?;
    for record in git::nul_records(&others) {
        if record.ends_with(b"/") {
            // A nested repository git does not look into: its files are not listed.
            if !options.include_untracked {
                skipped_untracked += 1;
            }
            continue;
        }
        let rel = PathBuf::from(OsStr::from_bytes(record));
        let Some(kind) = leaf_kind(&root.join(&rel))? else {
            continue;
        };
        if options.include_untracked {
            insert(&mut entries, rel, kind, Origin::Untracked);
        } else {
            skipped_untracked += 1;
        }
    }

    match &repo.linked {
        None => walk_git_dir(root, Path::new(".git"), options.mode, &mut entries)?,
        Some(linked) => linked_git_dir(linked, options.mode, &mut entries)?,
    }

    let mut verified = HashMap::new();
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries.into_values() {
        // Entries read from elsewhere (a linked worktree's git dirs) were walked
        // without following links; the rest must not be reached through one.
        if entry.source.is_some() || parents_are_dirs(root, &entry.path, &mut verified) {
            kept.push(entry);
        }
    }
    let total_bytes = kept
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let head = head_commit(runner, root).await?;
    Ok(Plan {
        repo: repo.clone(),
        options,
        entries: kept,
        total_bytes,
        skipped_untracked,
        head,
        tracked_signature: hex::encode(signature.finalize()),
    })
}

/// A digest of the tracked files' paths, kinds, sizes, modes and modification times:
/// when it differs from the one recorded at prepare, tracked files changed since.
pub async fn tracked_signature(
    runner: &dyn CommandRunner,
    repo: &Repo,
) -> Result<String, WorkspaceError> {
    let mut entries = BTreeMap::new();
    let mut signature = Sha256::new();
    collect_tracked(
        runner,
        &repo.root,
        Path::new(""),
        Mode::Overlay,
        &mut entries,
        &mut signature,
    )
    .await?;
    Ok(hex::encode(signature.finalize()))
}

/// `HEAD`'s commit, or `None` when there is none yet.
pub async fn head_commit(
    runner: &dyn CommandRunner,
    root: &Path,
) -> Result<Option<String>, WorkspaceError> {
    match git::run(
        runner,
        root,
        &["rev-parse", "-q", "--verify", "HEAD^{commit}"],
    )
    .await
    {
        Ok(out) => Ok(Some(String::from_utf8_lossy(&out).trim().to_string())),
        Err(ExecError::Failed { .. }) => Ok(None),
        Err(err) => Err(WorkspaceError::Git(err)),
    }
}

/// Tracked entries of the repository at `root.join(prefix)`, recursing into
/// initialised submodules.
fn collect_tracked<'a>(
    runner: &'a dyn CommandRunner,
    root: &'a Path,
    prefix: &'a Path,
    mode: Mode,
    entries: &'a mut BTreeMap<Vec<u8>, Entry>,
    signature: &'a mut Sha256,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), WorkspaceError>> + Send + 'a>> {
    Box::pin(async move {
        let repo_dir = root.join(prefix);
        let staged = git::read(runner, &repo_dir, &["ls-files", "-z", "--stage"]).await?;
        let mut submodules = Vec::new();
        let mut last: Option<&[u8]> = None;
        for record in git::nul_records(&staged) {
            // `<mode> <object> <stage>\t<path>`; a conflicted path has several stages.
            let Some(tab) = record.iter().position(|b| *b == b'\t') else {
                return Err(WorkspaceError::Unexpected(format!(
                    "unexpected `git ls-files --stage` record {:?}",
                    String::from_utf8_lossy(record)
                )));
            };
            let (meta, path) = (&record[..tab], &record[tab + 1..]);
            if last == Some(path) {
                continue;
            }
            last = Some(path);
            let rel = prefix.join(OsStr::from_bytes(path));
            if meta.starts_with(b"160000 ") {
                submodules.push(rel);
                continue;
            }
            let Some(kind) = leaf_kind(&root.join(&rel))? else {
                continue;
            };
            sign(signature, &rel, &root.join(&rel));
            insert(entries, rel, kind, Origin::Tracked);
        }
        for sub in submodules {
            let dir = root.join(&sub);
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            insert(entries, sub.clone(), EntryKind::Dir, Origin::Tracked);
            let dot_git = sub.join(".git");
            match std::fs::symlink_metadata(root.join(&dot_git)) {
                Ok(meta) if meta.is_dir() => {
                    walk_git_dir(root, &dot_git, mode, entries)?;
                }
                Ok(meta) if meta.is_file() => {
                    insert(
                        entries,
                        dot_git.clone(),
                        EntryKind::File {
                            size: meta.len(),
                            mode: meta.permissions().mode() & 0o7777,
                        },
                        Origin::Git,
                    );
                }
                // Not initialised: an empty directory in the guest.
                _ => continue,
            }
            collect_tracked(runner, root, &sub, mode, entries, signature).await?;
        }
        Ok(())
    })
}

/// Adds one tracked file's facts to the signature.
fn sign(signature: &mut Sha256, rel: &Path, full: &Path) {
    signature.update(rel.as_os_str().as_bytes());
    signature.update([0]);
    if let Ok(meta) = std::fs::symlink_metadata(full) {
        signature.update(meta.len().to_le_bytes());
        signature.update(meta.mode().to_le_bytes());
        signature.update(meta.mtime().to_le_bytes());
        signature.update(meta.mtime_nsec().to_le_bytes());
    }
}

/// A regular file or a symlink at `path` (not followed); `None` for anything else or
/// nothing.
fn leaf_kind(path: &Path) -> Result<Option<EntryKind>, WorkspaceError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(WorkspaceError::io(path)(err)),
    };
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        let target = std::fs::read_link(path).map_err(WorkspaceError::io(path))?;
        Ok(Some(EntryKind::Symlink { target }))
    } else if file_type.is_file() {
        Ok(Some(EntryKind::File {
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
        }))
    } else {
        Ok(None)
    }
}

fn insert(entries: &mut BTreeMap<Vec<u8>, Entry>, path: PathBuf, kind: EntryKind, origin: Origin) {
    let key = path.as_os_str().as_bytes().to_vec();
    entries.entry(key).or_insert(Entry {
        path,
        kind,
        origin,
        source: None,
    });
}

/// The guest's standalone `.git` for a linked worktree: the common directory without
/// the other worktrees' state, with this worktree's own top-level files (`HEAD`,
/// `index`, merge state, `config.worktree`) in place of the main worktree's.
fn linked_git_dir(
    linked: &LinkedGitDirs,
    mode: Mode,
    entries: &mut BTreeMap<Vec<u8>, Entry>,
) -> Result<(), WorkspaceError> {
    let mut from_common = BTreeMap::new();
    walk_git_dir(&linked.common_dir, Path::new(""), mode, &mut from_common)?;
    for (_, mut entry) in from_common {
        if entry.path.starts_with("worktrees") {
            continue;
        }
        entry.source = Some(linked.common_dir.join(&entry.path));
        entry.path = Path::new(".git").join(&entry.path);
        entries.insert(entry.path.as_os_str().as_bytes().to_vec(), entry);
    }
    let listing =
        std::fs::read_dir(&linked.git_dir).map_err(WorkspaceError::io(&linked.git_dir))?;
    for item in listing {
        let item = item.map_err(WorkspaceError::io(&linked.git_dir))?;
        let name = item.file_name();
        if name == "commondir" || name == "gitdir" || skipped_in_overlay(&name, true) {
            continue;
        }
        let source = item.path();
        let Some(kind) = leaf_kind(&source)? else {
            continue;
        };
        let path = Path::new(".git").join(&name);
        entries.insert(
            path.as_os_str().as_bytes().to_vec(),
            Entry {
                path,
                kind,
                origin: Origin::Git,
                source: Some(source),
            },
        );
    }
    Ok(())
}

/// Names inside `.git` that [`Mode::Overlay`] leaves out (at its top level).
const OVERLAY_SKIPPED: &[&str] = &[
    "hooks",
    "logs",
    "fsmonitor--daemon",
    "fsmonitor--daemon.ipc",
    "gc.pid",
    "gc.log",
];

/// Adds the git directory at `root.join(rel)` (never following links).
fn walk_git_dir(
    root: &Path,
    rel: &Path,
    mode: Mode,
    entries: &mut BTreeMap<Vec<u8>, Entry>,
) -> Result<(), WorkspaceError> {
    let mut stack = vec![(rel.to_path_buf(), true)];
    while let Some((dir, top)) = stack.pop() {
        let full = root.join(&dir);
        let listing = std::fs::read_dir(&full).map_err(WorkspaceError::io(&full))?;
        let mut empty = true;
        for item in listing {
            let item = item.map_err(WorkspaceError::io(&full))?;
            let name = item.file_name();
            if mode == Mode::Overlay && skipped_in_overlay(&name, top) {
                continue;
            }
            let child = dir.join(&name);
            let meta =
                std::fs::symlink_metadata(root.join(&child)).map_err(WorkspaceError::io(&child))?;
            empty = false;
            if meta.is_dir() {
                stack.push((child, false));
            } else if let Some(kind) = leaf_kind(&root.join(&child))? {
                insert(entries, child, kind, Origin::Git);
            }
        }
        if empty && !dir.as_os_str().is_empty() {
            // Git needs some empty directories (`refs/heads` in a new repository).
            insert(entries, dir, EntryKind::Dir, Origin::Git);
        }
    }
    Ok(())
}

fn skipped_in_overlay(name: &OsStr, top: bool) -> bool {
    let bytes = name.as_bytes();
    bytes.ends_with(b".lock")
        || (top
            && OVERLAY_SKIPPED
                .iter()
                .any(|skipped| skipped.as_bytes() == bytes))
}

/// Whether every parent of `rel` is a real directory (not a symlink), so reading the
/// entry never goes through a link.
fn parents_are_dirs(root: &Path, rel: &Path, verified: &mut HashMap<PathBuf, bool>) -> bool {
    let mut parent = rel.parent();
    let mut chain = Vec::new();
    while let Some(dir) = parent {
        if dir.as_os_str().is_empty() {
            break;
        }
        if let Some(ok) = verified.get(dir) {
            if !ok {
                return false;
            }
            break;
        }
        chain.push(dir.to_path_buf());
        parent = dir.parent();
    }
    // Check from the top down so a symlinked ancestor is found before its children.
    let mut ok = true;
    for dir in chain.into_iter().rev() {
        if ok {
            ok = std::fs::symlink_metadata(root.join(&dir)).is_ok_and(|m| m.is_dir());
        }
        verified.insert(dir, ok);
    }
    ok
}
