//! unpack: a tar stream into one directory, treating every name in it as hostile. Names
//! must be relative and free of `..`; no entry is written through a symlink, whether it
//! was there before or came earlier in the stream; hard links must point at an entry
//! inside the directory; devices, fifos and the like are refused. Directories get their
//! modes last, deepest first, so a read-only directory does not block its own contents.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::{TarError, TarSummary};

/// Unpacks `stream` into the existing directory `dir`. With `rename_top`, the first
/// component of every name is replaced by it (`vm cp VM:/etc/app ./conf` lands the
/// stream's `app/...` as `conf/...`). Stops at the first refused entry; entries before
/// it stay.
pub fn unpack<R: Read>(
    stream: R,
    dir: &Path,
    rename_top: Option<&OsStr>,
) -> Result<TarSummary, TarError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut summary = TarSummary::default();
    let mut directories: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries().map_err(TarError::Stream)? {
        let mut entry = entry.map_err(TarError::Stream)?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let relative = safe_relative(&raw_name, rename_top, &shown)?;
        let Some(relative) = relative else {
            continue; // "./": the directory itself
        };
        let target = dir.join(&relative);
        ensure_no_symlink_below(dir, &relative, &shown)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                create_parents(dir, &relative)?;
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(TarError::Unsafe {
                            name: shown,
                            reason: "a directory would replace a file or symlink",
                        });
                    }
                    Err(_) => fs::create_dir(&target).map_err(TarError::io(&target))?,
                }
                // Writable for now, so the entries under it can be created.
                fs::set_permissions(&target, fs::Permissions::from_mode(0o700 | mode))
                    .map_err(TarError::io(&target))?;
                directories.push((target, mode));
            }
            // GNUSparse: a file with holes (the packer stores a linker's output that way); the
            // tar crate expands it, holes staying holes.
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Symlink => {
                create_parents(dir, &relative)?;
                refuse_replacing_a_directory(&target, &shown)?;
                summary.bytes += if kind == tar::EntryType::Symlink {
                    0
                } else {
                    entry.size()
                };
                entry.unpack(&target).map_err(TarError::io(&target))?;
            }
            tar::EntryType::Link => {
                let link = entry.link_name_bytes().map(|name| name.into_owned());
                let Some(link) = link else {
                    return Err(TarError::Unsafe {
                        name: shown,
                        reason: "a hard link without a target",
                    });
                };
                let link_shown = String::from_utf8_lossy(&link).into_owned();
                let Some(source) = safe_relative(&link, rename_top, &link_shown)? else {
                    return Err(TarError::Unsafe {
                        name: shown,
                        reason: "a hard link to the directory itself",
                    });
                };
                ensure_no_symlink_below(dir, &source, &link_shown)?;
                let source = dir.join(source);
                if !fs::symlink_metadata(&source).is_ok_and(|meta| meta.is_file()) {
                    return Err(TarError::Unsafe {
                        name: shown,
                        reason: "a hard link to something that is not a file unpacked before it",
                    });
                }
                create_parents(dir, &relative)?;
                refuse_replacing_a_directory(&target, &shown)?;
                let _ = fs::remove_file(&target);
                fs::hard_link(&source, &target).map_err(TarError::io(&target))?;
            }
            // Metadata entries the tar crate reads for us (long names, pax headers).
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(TarError::Unsupported {
                    name: shown,
                    kind: describe(other),
                });
            }
        }
        summary.entries += 1;
    }
    // Deepest first: a directory's mode may take away the write bit its parent needs
    // no longer, but its own children are all in place by now.
    directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (path, mode) in directories {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(TarError::io(&path))?;
    }
    Ok(summary)
}

/// The entry's name as a relative path inside the directory (`None` for the directory
/// itself), `rename_top` applied.
fn safe_relative(
    raw: &[u8],
    rename_top: Option<&OsStr>,
    shown: &str,
) -> Result<Option<PathBuf>, TarError> {
    let unsafe_name = |reason| TarError::Unsafe {
        name: shown.to_owned(),
        reason,
    };
    if raw.contains(&0) {
        return Err(unsafe_name("a NUL byte in the name"));
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let mut parts: Vec<OsString> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_name("`..` in the name")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_name("an absolute name"));
            }
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    if let Some(top) = rename_top {
        parts[0] = top.to_os_string();
    }
    Ok(Some(parts.iter().collect()))
}

/// Refuses when any existing component of `relative` under `dir`, up to and excluding
/// the last, is a symlink (or not a directory): writing there would go elsewhere.
fn ensure_no_symlink_below(dir: &Path, relative: &Path, shown: &str) -> Result<(), TarError> {
    let mut current = dir.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(TarError::Unsafe {
                    name: shown.to_owned(),
                    reason: "it would be written through a symlink",
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(TarError::Unsafe {
                    name: shown.to_owned(),
                    reason: "a parent of it is not a directory",
                });
            }
            Ok(_) => {}
            // Missing: created below, and nothing further down can exist yet.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Creates the missing parents of `relative` (checked by `ensure_no_symlink_below`).
fn create_parents(dir: &Path, relative: &Path) -> Result<(), TarError> {
    if let Some(parent) = relative.parent()
        && !parent.as_os_str().is_empty()
    {
        let parent = dir.join(parent);
        fs::create_dir_all(&parent).map_err(TarError::io(&parent))?;
    }
    Ok(())
}

fn refuse_replacing_a_directory(target: &Path, shown: &str) -> Result<(), TarError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(TarError::Unsafe {
            name: shown.to_owned(),
            reason: "a file would replace a directory",
        }),
        _ => Ok(()),
    }
}

fn describe(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "special entry",
    }
}

/// Used by tests: an owned name from bytes.
#[cfg(test)]
fn os(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt as _;
    OsString::from_vec(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::pack;

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// `pack_entries` writes exactly the entries listed, under their names, and they
    /// unpack like any stream.
    #[test]
    fn listed_entries_round_trip_under_their_names() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("d/skip")).unwrap();
        fs::write(src.path().join("d/keep"), b"k").unwrap();
        fs::write(src.path().join("d/skip/x"), b"x").unwrap();
        let entries = vec![
            (src.path().join("d"), "root/d".to_string()),
            (src.path().join("d/keep"), "root/d/keep".to_string()),
        ];
        let mut stream = Vec::new();
        let summary = crate::pack_entries(&entries, &mut stream).unwrap();
        assert_eq!((summary.entries, summary.bytes), (2, 1));
        let dst = tempfile::tempdir().unwrap();
        unpack(stream.as_slice(), dst.path(), None).unwrap();
        assert_eq!(fs::read(dst.path().join("root/d/keep")).unwrap(), b"k");
        assert!(!dst.path().join("root/d/skip").exists());
    }

    /// `pack_bytes` files unpack with their contents and modes, under existing
    /// directories.
    #[test]
    fn files_from_memory_round_trip_with_their_modes() {
        let mut stream = Vec::new();
        let files: [(&str, u32, &[u8]); 2] = [
            ("root/.gitconfig", 0o644, b"[user]\n\tname = \"A\"\n"),
            ("root/secret", 0o600, b""),
        ];
        let summary = crate::pack_bytes(&files, &mut stream).unwrap();
        assert_eq!((summary.entries, summary.bytes), (2, 19));
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir(dst.path().join("root")).unwrap();
        unpack(stream.as_slice(), dst.path(), None).unwrap();
        let config = dst.path().join("root/.gitconfig");
        assert_eq!(fs::read(&config).unwrap(), b"[user]\n\tname = \"A\"\n");
        assert_eq!(mode_of(&config), 0o644);
        assert_eq!(mode_of(&dst.path().join("root/secret")), 0o600);
    }

    /// A tree of modes, a symlink pointing outside, a read-only directory and a
    /// non-UTF-8 name survives pack + unpack, also renamed.
    #[test]
    fn a_tree_round_trips_with_modes_and_symlinks() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path().join("tree");
        fs::create_dir_all(root.join("sub/deep")).unwrap();
        fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("sub/secret"), b"s").unwrap();
        fs::set_permissions(root.join("sub/secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(
            root.join(Path::new(OsStr::from_bytes(b"sub/caf\xe9 x"))),
            b"latin",
        )
        .unwrap();
        symlink("/etc/passwd", root.join("out-link")).unwrap();
        symlink("sub/secret", root.join("in-link")).unwrap();
        fs::write(root.join("sub/deep/f"), b"f").unwrap();
        fs::set_permissions(root.join("sub/deep"), fs::Permissions::from_mode(0o555)).unwrap();

        let mut stream = Vec::new();
        let packed = pack(&root, Some("tree"), &mut stream).unwrap();
        assert_eq!(packed.entries, 9);
        for rename in [None, Some(os(b"copy"))] {
            let dst = tempfile::tempdir().unwrap();
            let unpacked = unpack(stream.as_slice(), dst.path(), rename.as_deref()).unwrap();
            assert_eq!(unpacked, packed);
            let top = dst.path().join(rename.unwrap_or_else(|| os(b"tree")));
            assert_eq!(mode_of(&top.join("run.sh")), 0o755);
            assert_eq!(mode_of(&top.join("sub/secret")), 0o600);
            assert_eq!(mode_of(&top.join("sub/deep")), 0o555);
            assert_eq!(
                fs::read_link(top.join("out-link")).unwrap(),
                Path::new("/etc/passwd")
            );
            assert_eq!(
                fs::read_link(top.join("in-link")).unwrap(),
                Path::new("sub/secret")
            );
            let latin = top.join(Path::new(OsStr::from_bytes(b"sub/caf\xe9 x")));
            assert_eq!(fs::read(latin).unwrap(), b"latin");
            fs::set_permissions(top.join("sub/deep"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(root.join("sub/deep"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_sparse_file_round_trips_with_its_contents() {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("holey");
        let mut file = fs::File::create(&path).unwrap();
        file.write_all(b"head").unwrap();
        file.seek(SeekFrom::Start(3 << 20)).unwrap();
        file.write_all(b"middle").unwrap();
        file.set_len(8 << 20).unwrap();
        drop(file);
        let mut stream = Vec::new();
        pack(&path, Some("holey"), &mut stream).unwrap();
        let kinds: Vec<_> = tar::Archive::new(stream.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(
            kinds,
            vec![tar::EntryType::GNUSparse],
            "the packer keeps the holes"
        );
        assert!(
            stream.len() < 1 << 20,
            "holes are not stored: {} bytes",
            stream.len()
        );
        let dst = tempfile::tempdir().unwrap();
        let summary = unpack(stream.as_slice(), dst.path(), None).unwrap();
        assert_eq!(summary.entries, 1);
        assert_eq!(
            fs::read(dst.path().join("holey")).unwrap(),
            fs::read(&path).unwrap()
        );
    }

    #[test]
    fn contents_only_packs_the_children() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a"), b"1").unwrap();
        fs::create_dir(src.path().join("b")).unwrap();
        let mut stream = Vec::new();
        pack(src.path(), None, &mut stream).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(stream.as_slice(), dst.path(), None).unwrap();
        assert_eq!(fs::read(dst.path().join("a")).unwrap(), b"1");
        assert!(dst.path().join("b").is_dir());
    }

    /// One hand-made entry: (name, kind, link target, data).
    type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    /// Builds a stream by hand, bypassing the builder's own checks.
    fn hostile(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut header = tar::Header::new_old();
            // Raw bytes, bypassing the builder's own checks.
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn hostile_streams_are_refused_naming_the_entry() {
        use tar::EntryType::{Char, Directory, Fifo, Link, Regular, Symlink};
        type Case<'a> = (
            Vec<(&'a [u8], tar::EntryType, &'a [u8], &'a [u8])>,
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (vec![(b"../x", Regular, b"", b"x")], "../x", "`..`"),
            (
                vec![(b"a/../../x", Regular, b"", b"x")],
                "a/../../x",
                "`..`",
            ),
            (vec![(b"/etc/x", Regular, b"", b"x")], "/etc/x", "absolute"),
            (
                vec![
                    (b"esc", Symlink, b"/etc", b""),
                    (b"esc/passwd", Regular, b"", b"x"),
                ],
                "esc/passwd",
                "through a symlink",
            ),
            (
                vec![
                    (b"d", Directory, b"", b""),
                    (b"d/l", Symlink, b"..", b""),
                    (b"d/l/x", Regular, b"", b"x"),
                ],
                "d/l/x",
                "through a symlink",
            ),
            (
                vec![(b"h", Link, b"/etc/passwd", b"")],
                "/etc/passwd",
                "absolute",
            ),
            (vec![(b"h", Link, b"../x", b"")], "../x", "`..`"),
            (vec![(b"h", Link, b"missing", b"")], "h", "not a file"),
            (vec![(b"dev", Char, b"", b"")], "dev", "character device"),
            (vec![(b"p", Fifo, b"", b"")], "p", "fifo"),
        ];
        for (entries, name, reason) in cases {
            let outside = tempfile::tempdir().unwrap();
            let dst = outside.path().join("dst");
            fs::create_dir(&dst).unwrap();
            let error = unpack(hostile(&entries).as_slice(), &dst, None).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(name) && message.contains(reason),
                "{name}: {message}"
            );
            assert!(!outside.path().join("x").exists(), "{name}: wrote outside");
        }
    }

    #[test]
    fn an_existing_symlink_in_the_destination_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        symlink(outside.path(), dst.path().join("link")).unwrap();
        let stream = hostile(&[(b"link/x", tar::EntryType::Regular, b"", b"x")]);
        let error = unpack(stream.as_slice(), dst.path(), None).unwrap_err();
        assert!(error.to_string().contains("through a symlink"), "{error}");
        assert!(!outside.path().join("x").exists());
        // A file entry over an existing symlink replaces the link, not its target.
        let target = outside.path().join("victim");
        fs::write(&target, b"keep").unwrap();
        symlink(&target, dst.path().join("over")).unwrap();
        let stream = hostile(&[(b"over", tar::EntryType::Regular, b"", b"new")]);
        unpack(stream.as_slice(), dst.path(), None).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert_eq!(fs::read(dst.path().join("over")).unwrap(), b"new");
    }
}
