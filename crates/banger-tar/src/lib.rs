//! banger-tar: file trees as tar streams, the payload of `vm cp` and of workspace
//! imports. [`pack`] writes a path as a tar (modes and modification times kept,
//! symlinks stored as symlinks and never followed, hard links as separate files);
//! [`unpack`] reads a tar that may come from an untrusted side into one directory and
//! refuses, naming the entry, anything that would land outside it: absolute names, `..`,
//! writing through a symlink (one already there or one the stream made), hard links to
//! outside. Ownership is never restored: files belong to whoever unpacks them.

mod pack;
mod unpack;

pub use pack::{pack, pack_bytes, pack_entries};
pub use unpack::unpack;

use std::path::PathBuf;

/// How much a pack or unpack moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries (files, directories, links).
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the tar stream")]
    Stream(#[source] std::io::Error),
    #[error("refusing tar entry {name:?}: {reason}")]
    Unsafe { name: String, reason: &'static str },
    #[error("tar entry {name:?} is a {kind}, which is not copied")]
    Unsupported { name: String, kind: &'static str },
}

impl TarError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TarError {
        let path = path.into();
        move |source| TarError::Io { path, source }
    }
}
