//! pack: one path (a file, a symlink, or a directory and everything under it) as a tar
//! stream, entries in name order so the same tree gives the same stream.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{TarError, TarSummary};

/// Writes `source` to `out` as a tar. With `name`, entries are `name`, `name/...`; with
/// `None`, `source` must be a directory and its contents are the top-level entries (the
/// `SRC/.` form of `vm cp`). `source` itself is not followed when it is a symlink.
pub fn pack<W: Write>(source: &Path, name: Option<&str>, out: W) -> Result<TarSummary, TarError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut summary = TarSummary::default();
    let meta = fs::symlink_metadata(source).map_err(TarError::io(source))?;
    match name {
        Some(name) => add(
            &mut builder,
            source,
            &PathBuf::from(name),
            &meta,
            &mut summary,
        )?,
        None if meta.is_dir() => add_children(&mut builder, source, Path::new(""), &mut summary)?,
        None => {
            return Err(TarError::Io {
                path: source.to_path_buf(),
                source: std::io::Error::other("not a directory (only a directory has contents)"),
            });
        }
    }
    builder.finish().map_err(TarError::Stream)?;
    Ok(summary)
}

/// Writes each `(path, name)` as one entry named `name` (a directory is written without
/// its children; the caller lists what it wants), in the order given. For callers that
/// choose entry by entry what goes in, such as `[[file_sync]]`, which leaves private keys
/// out of a directory. Symlinks are stored as symlinks, never followed.
pub fn pack_entries<W: Write>(
    entries: &[(PathBuf, String)],
    out: W,
) -> Result<TarSummary, TarError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut summary = TarSummary::default();
    for (path, name) in entries {
        let meta = fs::symlink_metadata(path).map_err(TarError::io(path))?;
        let kind = meta.file_type();
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            return Err(TarError::Unsupported {
                name: name.clone(),
                kind: "special file (device, fifo or socket)",
            });
        }
        builder
            .append_path_with_name(path, name)
            .map_err(TarError::io(path))?;
        summary.entries += 1;
        if kind.is_file() {
            summary.bytes += meta.len();
        }
    }
    builder.finish().map_err(TarError::Stream)?;
    Ok(summary)
}

/// Writes each `(name, mode, contents)` as one regular file entry, owned by root, in
/// the order given: files made on the host side that exist on no disk (a config block).
pub fn pack_bytes<W: Write>(files: &[(&str, u32, &[u8])], out: W) -> Result<TarSummary, TarError> {
    let mut builder = tar::Builder::new(out);
    let mut summary = TarSummary::default();
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, mode, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        builder
            .append_data(&mut header, name, *contents)
            .map_err(TarError::Stream)?;
        summary.entries += 1;
        summary.bytes += contents.len() as u64;
    }
    builder.finish().map_err(TarError::Stream)?;
    Ok(summary)
}

fn add<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    meta: &fs::Metadata,
    summary: &mut TarSummary,
) -> Result<(), TarError> {
    let kind = meta.file_type();
    if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
        return Err(TarError::Unsupported {
            name: name.display().to_string(),
            kind: "special file (device, fifo or socket)",
        });
    }
    builder
        .append_path_with_name(path, name)
        .map_err(TarError::io(path))?;
    summary.entries += 1;
    if kind.is_file() {
        summary.bytes += meta.len();
    }
    if kind.is_dir() {
        add_children(builder, path, name, summary)?;
    }
    Ok(())
}

fn add_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
    summary: &mut TarSummary,
) -> Result<(), TarError> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(TarError::io(dir))?
        .collect::<Result<_, _>>()
        .map_err(TarError::io(dir))?;
    children.sort_by_key(fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        let meta = fs::symlink_metadata(&path).map_err(TarError::io(&path))?;
        add(
            builder,
            &path,
            &name.join(child.file_name()),
            &meta,
            summary,
        )?;
    }
    Ok(())
}
