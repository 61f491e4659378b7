//! A [`Plan`] as one tar stream: what `mkfs.ext4 -d -` turns into the workspace disk and
//! what the guest's `tar -x` unpacks into a running VM. Every entry is owned by root
//! (the guest's user), keeps its mode and modification time (so `make` sees the same
//! ages), and every parent directory comes before its children. Files are opened with
//! `O_NOFOLLOW` and their size is taken from the open file, and a file that shrinks or
//! turns into something else while it is read fails the stream instead of leaving a
//! corrupt archive.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::plan::{EntryKind, Plan};

/// Writes `plan` as a tar to `out`; returns the bytes of file content written.
pub fn write_tar<W: Write>(plan: &Plan, out: W) -> io::Result<u64> {
    let root = &plan.repo.root;
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
    builder.mode(tar::HeaderMode::Complete);
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut written = 0u64;
    for entry in &plan.entries {
        add_parents(&mut builder, root, &entry.path, &mut dirs)?;
        let source = entry
            .source
            .clone()
            .unwrap_or_else(|| root.join(&entry.path));
        match &entry.kind {
            EntryKind::Dir => {
                if dirs.insert(entry.path.clone()) {
                    append_dir(&mut builder, &source, &entry.path)?;
                }
            }
            EntryKind::Symlink { target } => {
                let mut header = header(EntryType::Symlink, 0o777, 0);
                if let Ok(meta) = std::fs::symlink_metadata(&source) {
                    header.set_mtime(meta.mtime().max(0) as u64);
                }
                builder.append_link(&mut header, &entry.path, target)?;
            }
            EntryKind::File { .. } => {
                written += append_file(&mut builder, &source, &entry.path)?;
            }
        }
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(written)
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn add_parents<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    path: &Path,
    dirs: &mut HashSet<PathBuf>,
) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut parent = path.parent();
    while let Some(dir) = parent {
        if dir.as_os_str().is_empty() || dirs.contains(dir) {
            break;
        }
        missing.push(dir.to_path_buf());
        parent = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        append_dir(builder, &root.join(&dir), &dir)?;
        dirs.insert(dir);
    }
    Ok(())
}

/// A directory entry named `dir`, with the mode and mtime of `source` when that is a
/// directory.
fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    source: &Path,
    dir: &Path,
) -> io::Result<()> {
    let (mode, mtime) = match std::fs::symlink_metadata(source) {
        Ok(meta) if meta.is_dir() => (meta.permissions().mode() & 0o7777, meta.mtime()),
        _ => (0o755, 0),
    };
    let mut header = header(EntryType::Directory, mode, 0);
    header.set_mtime(mtime.max(0) as u64);
    builder.append_data(&mut header, dir, io::empty())
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    full: &Path,
    path: &Path,
) -> io::Result<u64> {
    let full = full.to_path_buf();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(&full)
        .map_err(|e| changed(&full, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(changed(
            &full,
            io::Error::other("it is no longer a regular file"),
        ));
    }
    let size = meta.len();
    let mut header = header(EntryType::Regular, meta.permissions().mode() & 0o7777, size);
    header.set_mtime(meta.mtime().max(0) as u64);
    let reader = Exact {
        file,
        remaining: size,
        path: full.clone(),
    };
    builder.append_data(&mut header, path, reader)?;
    Ok(size)
}

fn changed(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("{} changed while it was copied: {err}", path.display()),
    )
}

/// Reads exactly `remaining` bytes: a file that shrank is an error, one that grew is cut
/// at the size its header announced.
struct Exact {
    file: File,
    remaining: u64,
    path: PathBuf,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let got = self.file.read(&mut buf[..want])?;
        if got == 0 {
            return Err(changed(
                &self.path,
                io::Error::new(io::ErrorKind::UnexpectedEof, "it shrank"),
            ));
        }
        self.remaining -= got as u64;
        Ok(got)
    }
}
