//! Adding a Debian package's files to the in-memory [`Tree`]: the data tar (from
//! `dpkg-deb --fsys-tarfile`) is read entry by entry, paths are folded for merged-/usr,
//! documentation is dropped, and ownership and modes are kept as the package says. No
//! maintainer script runs and nothing is unpacked to disk.

use std::collections::HashSet;
use std::io::{self, Read};

use crate::tree::{Kind, Meta, Node, Tree};
use crate::usrmerge::{fold_path, fold_symlink_target, normalize};

/// Directories a test guest does not need (documentation, manuals, translations).
pub const DROPPED_DIRS: [&str; 6] = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
];

/// True when `path` (folded) is in one of [`DROPPED_DIRS`] (the directories themselves
/// are dropped too).
pub fn is_dropped(path: &str) -> bool {
    DROPPED_DIRS.iter().any(|dir| {
        path == *dir
            || path
                .strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Adds every entry of a package's data tar to `tree`; returns how many were added.
pub fn add_data_tar<R: Read>(tree: &mut Tree, data_tar: R) -> io::Result<usize> {
    let mut archive = tar::Archive::new(data_tar);
    let mut added = 0;
    // Hard links may only point at files this package put in (tar order guarantees the
    // target came first); links into dropped directories are dropped with them.
    let mut dropped: HashSet<String> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let shipped = normalize(&entry.path()?.to_string_lossy());
        let path = fold_path(&shipped);
        if is_dropped(&path) {
            dropped.insert(path);
            continue;
        }
        let header = entry.header().clone();
        let meta = Meta {
            perm: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            mtime: header.mtime()?,
        };
        let device = || -> io::Result<(u32, u32)> {
            Ok((
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            ))
        };
        let link = entry
            .link_name()?
            .map(|name| name.to_string_lossy().into_owned());
        let link_name = || {
            link.clone().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{shipped}: link without a target"),
                )
            })
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(header.size()? as usize);
                entry.read_to_end(&mut data)?;
                Kind::File(data)
            }
            tar::EntryType::Symlink => Kind::Symlink(fold_symlink_target(&shipped, &link_name()?)),
            tar::EntryType::Link => {
                let target = fold_path(&normalize(&link_name()?));
                if dropped.contains(&target) {
                    continue;
                }
                Kind::Hardlink(target)
            }
            tar::EntryType::Char => {
                let (major, minor) = device()?;
                Kind::CharDevice { major, minor }
            }
            tar::EntryType::Block => {
                let (major, minor) = device()?;
                Kind::BlockDevice { major, minor }
            }
            tar::EntryType::Fifo => Kind::Fifo,
            _ => continue,
        };
        tree.insert(&path, Node { kind, meta });
        added += 1;
    }
    Ok(added)
}

/// Reads one regular file out of a package's data tar; `path` is compared after
/// normalizing and folding both sides (`bin/busybox` finds `./bin/busybox` and
/// `./usr/bin/busybox`).
pub fn read_file_from_data_tar<R: Read>(data_tar: R, path: &str) -> io::Result<Option<Vec<u8>>> {
    let wanted = fold_path(&normalize(path));
    let mut archive = tar::Archive::new(data_tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let found = fold_path(&normalize(&entry.path()?.to_string_lossy()));
        if found == wanted && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tar::TarFixture;

    fn deb_tar() -> Vec<u8> {
        let mut t = TarFixture::new(1234);
        use tar::EntryType::*;
        t.add("./", Directory, 0o755, 0, b"", None);
        t.add("./bin/", Directory, 0o755, 0, b"", None);
        t.add("./bin/busybox", Regular, 0o755, 0, b"BB", None);
        t.add("./bin/sh", Symlink, 0o777, 0, b"", Some("busybox"));
        t.add("./bin/up", Symlink, 0o777, 0, b"", Some("../usr/bin/x"));
        t.add(
            "./lib64/ld.so",
            Symlink,
            0o777,
            0,
            b"",
            Some("/lib/x86_64-linux-gnu/ld.so"),
        );
        t.add("./usr/bin/crontab", Regular, 0o2755, 102, b"C", None);
        t.add(
            "./usr/lib/git-core/git",
            Link,
            0o755,
            0,
            b"",
            Some("./bin/busybox"),
        );
        t.add(
            "./usr/share/doc/pkg/copyright",
            Regular,
            0o644,
            0,
            b"(c)",
            None,
        );
        t.add(
            "./usr/share/doc/pkg/hard",
            Link,
            0o644,
            0,
            b"",
            Some("./usr/share/doc/pkg/copyright"),
        );
        t.add("./usr/share/mandoc", Regular, 0o644, 0, b"kept", None);
        t.finish()
    }

    #[test]
    fn data_tar_is_folded_filtered_and_keeps_ownership() {
        let mut tree = Tree::new();
        let added = add_data_tar(&mut tree, deb_tar().as_slice()).unwrap();
        let got: Vec<(String, Kind, u32, u64)> = tree
            .iter()
            .map(|(p, n)| (p.to_string(), n.kind.clone(), n.meta.perm, n.meta.gid))
            .collect();
        let expected = vec![
            ("usr".to_string(), Kind::Dir, 0o755, 0),
            ("usr/bin".into(), Kind::Dir, 0o755, 0),
            (
                "usr/bin/busybox".into(),
                Kind::File(b"BB".to_vec()),
                0o755,
                0,
            ),
            (
                "usr/bin/crontab".into(),
                Kind::File(b"C".to_vec()),
                0o2755,
                102,
            ),
            (
                "usr/bin/sh".into(),
                Kind::Symlink("busybox".into()),
                0o777,
                0,
            ),
            (
                "usr/bin/up".into(),
                Kind::Symlink("/usr/bin/x".into()),
                0o777,
                0,
            ),
            ("usr/lib".into(), Kind::Dir, 0o755, 0),
            ("usr/lib/git-core".into(), Kind::Dir, 0o755, 0),
            (
                "usr/lib/git-core/git".into(),
                Kind::Hardlink("usr/bin/busybox".into()),
                0o755,
                0,
            ),
            ("usr/lib64".into(), Kind::Dir, 0o755, 0),
            (
                "usr/lib64/ld.so".into(),
                Kind::Symlink("/lib/x86_64-linux-gnu/ld.so".into()),
                0o777,
                0,
            ),
            ("usr/share".into(), Kind::Dir, 0o755, 0),
            (
                "usr/share/mandoc".into(),
                Kind::File(b"kept".to_vec()),
                0o644,
                0,
            ),
        ];
        assert_eq!(got, expected);
        assert_eq!(added, 9);
        assert_eq!(tree.get("usr/bin/busybox").unwrap().meta.mtime, 1234);
    }

    #[test]
    fn reads_one_file_by_folded_path() {
        let tar = deb_tar();
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("bin/busybox", Some(b"BB")),
            ("/usr/bin/busybox", Some(b"BB")),
            ("usr/bin/crontab", Some(b"C")),
            ("bin/sh", None),
            ("nope", None),
        ];
        for (path, expected) in cases {
            let got = read_file_from_data_tar(tar.as_slice(), path).unwrap();
            assert_eq!(got.as_deref(), *expected, "{path}");
        }
    }

    #[test]
    fn dropped_paths() {
        let cases = [
            ("usr/share/doc", true),
            ("usr/share/doc/git/copyright", true),
            ("usr/share/locale/de/LC_MESSAGES/git.mo", true),
            ("usr/share/docs", false),
            ("usr/share/git-core/templates", false),
            ("usr/share/man", true),
        ];
        for (path, expected) in cases {
            assert_eq!(is_dropped(path), expected, "{path}");
        }
    }
}
