//! transfer: `receive_tar`, `send_tar` and `stat`, the guest side of `vm cp` and of
//! workspace imports. The tar work itself is `banger-tar`'s (the same code unpacks on
//! the host): modes kept, symlinks as symlinks, nothing written outside the target
//! directory. A sent tar leaves as `output` frames of up to 256 KiB.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use banger_proto::agent::{PathKind, Reply, ReplyBody, RequestId, Stream};

use crate::sink::FrameSink;

const SEND_CHUNK_BYTES: usize = 256 * 1024;

/// Unpacks `stream` into `dir` (made first when `create`), renaming the first component
/// of every name to `rename`.
pub fn receive_tar(
    dir: &str,
    rename: Option<&str>,
    create: bool,
    stream: &mut dyn Read,
) -> ReplyBody {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return error(format!("{dir:?}: the directory must be absolute"));
    }
    if create && let Err(failure) = fs::create_dir_all(path) {
        return error(format!("cannot create {dir}: {failure}"));
    }
    if !path.is_dir() {
        return error(format!("{dir}: not a directory"));
    }
    match banger_tar::unpack(stream, path, rename.map(std::ffi::OsStr::new)) {
        Ok(summary) => ReplyBody::TarOk {
            entries: summary.entries,
            bytes: summary.bytes,
        },
        Err(failure) => error(chain(&failure)),
    }
}

/// Packs `path` as a tar streamed to the host under request `id`.
pub fn send_tar(id: RequestId, path: &str, contents: bool, sink: &Arc<FrameSink>) -> ReplyBody {
    let source = Path::new(path);
    if !source.is_absolute() {
        return error(format!("{path:?}: the path must be absolute"));
    }
    let name = source.file_name().and_then(|name| name.to_str());
    let name = if contents { None } else { name };
    if name.is_none() && !source.is_dir() {
        return error(format!("{path}: not a directory"));
    }
    let mut out = BufWriter::with_capacity(
        SEND_CHUNK_BYTES,
        OutputFrames {
            id,
            sink: Arc::clone(sink),
        },
    );
    let packed = banger_tar::pack(source, name, &mut out);
    let flushed = out.flush();
    match (packed, flushed) {
        (Ok(summary), Ok(())) => ReplyBody::TarOk {
            entries: summary.entries,
            bytes: summary.bytes,
        },
        (Err(failure), _) => error(chain(&failure)),
        (_, Err(failure)) => error(format!("sending the tar failed: {failure}")),
    }
}

/// What is at `path`, symlinks followed.
pub fn stat(path: &str) -> ReplyBody {
    let kind = fs::metadata(path).ok().map(|meta| {
        if meta.is_dir() {
            PathKind::Directory
        } else if meta.is_file() {
            PathKind::File
        } else {
            PathKind::Other
        }
    });
    ReplyBody::StatOk { kind }
}

/// Bytes written become `output` frames on stdout.
struct OutputFrames {
    id: RequestId,
    sink: Arc<FrameSink>,
}

impl Write for OutputFrames {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let count = bytes.len().min(SEND_CHUNK_BYTES);
        self.sink.send(&Reply {
            id: self.id,
            body: ReplyBody::Output {
                stream: Stream::Stdout,
                data: bytes[..count].to_vec(),
            },
        });
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn error(message: String) -> ReplyBody {
    ReplyBody::Error { message }
}

/// The error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_refuses_relative_and_missing_directories() {
        let mut empty: &[u8] = &[];
        let table = [
            (
                receive_tar("rel", None, false, &mut empty),
                "must be absolute",
            ),
            (
                receive_tar("/nonexistent/banger", None, false, &mut empty),
                "not a directory",
            ),
        ];
        for (reply, want) in table {
            match reply {
                ReplyBody::Error { message } => assert!(message.contains(want), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn stat_tells_directories_files_and_nothing_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let kind = |path: &Path| match stat(path.to_str().unwrap()) {
            ReplyBody::StatOk { kind } => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(dir.path()), Some(PathKind::Directory));
        assert_eq!(kind(&file), Some(PathKind::File));
        assert_eq!(kind(&dir.path().join("missing")), None);
    }
}
