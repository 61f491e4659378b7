//! Typed errors of the workspace crate: what is wrong with the path the user gave, and
//! what failed while reading the repository.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is not inside a git working tree", .0.display())]
    NotARepo(PathBuf),
    #[error(
        "{} is a linked worktree or a submodule checkout (its .git is a file); workspaces need the repository's own .git directory",
        .0.display()
    )]
    GitDirIsAFile(PathBuf),
    #[error("git refused to read {}: {reason}", .path.display())]
    GitRefused { path: PathBuf, reason: String },
    #[error("the guest path {0:?} must be absolute, normalised and not `/`")]
    BadGuestPath(String),
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git failed")]
    Git(#[source] banger_exec::ExecError),
    #[error("{0}")]
    Unexpected(String),
}

impl WorkspaceError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> WorkspaceError {
        let path = path.into();
        move |source| WorkspaceError::Io { path, source }
    }
}
