//! copy: where `vm cp` puts things, the rules `docker cp` made familiar. Given what the
//! destination is (a directory, a file, nothing) and what is copied, it answers which
//! directory the tar stream unpacks into and what its top entry is renamed to:
//!
//! - into an existing directory: the source keeps its name inside it;
//! - onto an existing file: a file replaces it, a directory is refused;
//! - to a missing path whose parent is a directory: the source takes that name;
//! - `SRC/.` (a directory's contents) into a directory, made when missing;
//! - a tar stream (`-`) only into an existing directory.
//!
//! Pure: the caller looks the paths up (in the guest through the agent, on the host
//! with `stat`) and passes what it found.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a path turned out to be (symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Directory,
    File,
    Other,
}

/// What is being copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopySource {
    /// A file or symlink: one entry.
    File,
    /// A directory and everything under it, under its own name.
    Directory,
    /// A directory's children (`SRC/.`), no top entry.
    Contents,
    /// A tar stream from stdin: its entries as they are.
    Stream,
}

/// Where the stream unpacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    pub dir: PathBuf,
    /// The new name of the stream's top entry, when it changes.
    pub rename: Option<OsString>,
    /// `dir` does not exist yet and is to be made (contents into a new directory).
    pub create: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("{0}: the destination directory does not exist")]
    MissingDirectory(String),
    #[error("{0}: its parent directory does not exist")]
    MissingParent(String),
    #[error("{0}: cannot copy a directory onto a file")]
    DirectoryOntoFile(String),
    #[error("{0}: a tar stream can only be unpacked into an existing directory")]
    StreamNeedsDirectory(String),
    #[error("{0}: the destination is neither a directory nor a regular file")]
    Special(String),
}

/// Resolves the target for copying `source` to `dst`, which is `dst_kind` (`None`:
/// missing); `parent_kind` is what `dst`'s parent is.
pub fn copy_target(
    dst: &Path,
    dst_kind: Option<PathKind>,
    parent_kind: Option<PathKind>,
    source: CopySource,
) -> Result<CopyTarget, CopyError> {
    let shown = || dst.display().to_string();
    let into = |dir: &Path| CopyTarget {
        dir: dir.to_path_buf(),
        rename: None,
        create: false,
    };
    let trailing_slash = dst.as_os_str().as_encoded_bytes().ends_with(b"/");
    match (dst_kind, source) {
        (Some(PathKind::Directory), _) => Ok(into(dst)),
        (_, CopySource::Stream) => Err(CopyError::StreamNeedsDirectory(shown())),
        (Some(PathKind::Other), _) => Err(CopyError::Special(shown())),
        (Some(PathKind::File), CopySource::File) => renamed(dst, shown),
        (Some(PathKind::File), _) => Err(CopyError::DirectoryOntoFile(shown())),
        (None, _) if trailing_slash => Err(CopyError::MissingDirectory(shown())),
        (None, _) if parent_kind != Some(PathKind::Directory) => {
            Err(CopyError::MissingParent(shown()))
        }
        (None, CopySource::Contents) => Ok(CopyTarget {
            dir: dst.to_path_buf(),
            rename: None,
            create: true,
        }),
        (None, _) => renamed(dst, shown),
    }
}

/// The parent of `dst` (`.` for a bare name), the path whose kind `copy_target` needs
/// next to `dst`'s own.
pub fn parent_of(dst: &Path) -> PathBuf {
    match dst.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("/"),
    }
}

fn renamed(dst: &Path, shown: impl Fn() -> String) -> Result<CopyTarget, CopyError> {
    match dst.file_name() {
        Some(name) => Ok(CopyTarget {
            dir: parent_of(dst),
            rename: Some(name.to_os_string()),
            create: false,
        }),
        // `..` or `/`: not a name a file can take.
        None => Err(CopyError::MissingDirectory(shown())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CopySource::{Contents, Directory, File, Stream};
    use PathKind::{Directory as Dir, File as Reg, Other};

    fn target(dir: &str, rename: Option<&str>, create: bool) -> Result<CopyTarget, String> {
        Ok(CopyTarget {
            dir: PathBuf::from(dir),
            rename: rename.map(OsString::from),
            create,
        })
    }

    #[test]
    fn destinations_resolve_like_docker_cp() {
        type Case = (
            &'static str,
            Option<PathKind>,
            Option<PathKind>,
            CopySource,
            Result<CopyTarget, String>,
        );
        let missing_dir = |p: &str| Err(CopyError::MissingDirectory(p.into()).to_string());
        let cases: Vec<Case> = vec![
            (
                "/tmp",
                Some(Dir),
                Some(Dir),
                File,
                target("/tmp", None, false),
            ),
            (
                "/tmp",
                Some(Dir),
                Some(Dir),
                Directory,
                target("/tmp", None, false),
            ),
            (
                "/tmp",
                Some(Dir),
                Some(Dir),
                Stream,
                target("/tmp", None, false),
            ),
            (
                "/tmp/a",
                Some(Reg),
                Some(Dir),
                File,
                target("/tmp", Some("a"), false),
            ),
            (
                "/tmp/a",
                Some(Reg),
                Some(Dir),
                Directory,
                Err(CopyError::DirectoryOntoFile("/tmp/a".into()).to_string()),
            ),
            (
                "/tmp/new",
                None,
                Some(Dir),
                File,
                target("/tmp", Some("new"), false),
            ),
            (
                "/tmp/new",
                None,
                Some(Dir),
                Directory,
                target("/tmp", Some("new"), false),
            ),
            (
                "/tmp/new",
                None,
                Some(Dir),
                Contents,
                target("/tmp/new", None, true),
            ),
            ("/tmp/new/", None, Some(Dir), File, missing_dir("/tmp/new/")),
            (
                "/no/new",
                None,
                None,
                File,
                Err(CopyError::MissingParent("/no/new".into()).to_string()),
            ),
            (
                "/tmp/new",
                None,
                Some(Dir),
                Stream,
                Err(CopyError::StreamNeedsDirectory("/tmp/new".into()).to_string()),
            ),
            (
                "/dev/null",
                Some(Other),
                Some(Dir),
                File,
                Err(CopyError::Special("/dev/null".into()).to_string()),
            ),
            (
                "new",
                None,
                Some(Dir),
                File,
                target(".", Some("new"), false),
            ),
        ];
        for (dst, kind, parent, source, want) in cases {
            let got = copy_target(Path::new(dst), kind, parent, source).map_err(|e| e.to_string());
            assert_eq!(got, want, "{dst} {kind:?} {source:?}");
        }
    }
}
