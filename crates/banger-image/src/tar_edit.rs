//! Rewriting a root filesystem tar as a stream: entries are copied one by one into a new
//! tar, minus the ones to remove, and new or replacing entries are appended at the end.
//! This is how the `mmdebstrap` output is configured (hostname, sshd drop-in, units)
//! without unpacking it, mounting it or running anything inside it; ownership and modes
//! of everything else pass through untouched.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use crate::tree::{Kind, Tree, append_node};
use crate::usrmerge::normalize;

/// Which input entries to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Exactly this path.
    Path(String),
    /// This path and everything below it.
    Tree(String),
    /// Every path starting with this string (`etc/ssh/ssh_host_` for all host keys).
    Prefix(String),
}

impl Removal {
    fn matches(&self, path: &str) -> bool {
        match self {
            Removal::Path(p) => path == p,
            Removal::Tree(dir) => {
                path == dir
                    || path
                        .strip_prefix(dir.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
            Removal::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// The changes to apply.
#[derive(Debug, Clone, Default)]
pub struct TarEdits {
    pub remove: Vec<Removal>,
    /// Entries to add. A non-directory replaces an input entry of the same path; a
    /// directory is only added when the input has none (its children stay as they are).
    pub add: Tree,
}

/// What a rewrite did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditStats {
    pub copied: usize,
    pub removed: usize,
    pub added: usize,
}

/// Copies `input` to `output` applying `edits`; returns the output writer.
pub fn rewrite_tar<R: Read, W: Write>(
    input: R,
    output: W,
    edits: &TarEdits,
) -> io::Result<(W, EditStats)> {
    let mut stats = EditStats::default();
    let replaced: HashSet<&str> = edits
        .add
        .iter()
        .filter(|(_, node)| node.kind != Kind::Dir)
        .map(|(path, _)| path)
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dropped: HashSet<String> = HashSet::new();
    let mut archive = tar::Archive::new(input);
    let mut builder = tar::Builder::new(output);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalize(&entry.path()?.to_string_lossy());
        let entry_type = entry.header().entry_type();
        let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let is_hardlink_to_dropped = entry_type == tar::EntryType::Link
            && link
                .as_deref()
                .is_some_and(|target| dropped.contains(&normalize(target)));
        if edits.remove.iter().any(|rule| rule.matches(&path))
            || replaced.contains(path.as_str())
            || is_hardlink_to_dropped
        {
            dropped.insert(path);
            stats.removed += 1;
            continue;
        }
        // Extended attributes (e.g. file capabilities) travel as PAX records.
        let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions()? {
            Some(extensions) => extensions
                .filter_map(Result::ok)
                .filter_map(|ext| {
                    let key = ext.key().ok()?;
                    key.starts_with("SCHILY.xattr.")
                        .then(|| (key.to_string(), ext.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let source = entry.header();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(source.mode()?);
        header.set_uid(source.uid()?);
        header.set_gid(source.gid()?);
        header.set_mtime(source.mtime()?);
        header.set_size(0);
        if let (Ok(Some(major)), Ok(Some(minor))) = (source.device_major(), source.device_minor()) {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        if !xattrs.is_empty() {
            builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let name = if path.is_empty() {
            "./".to_string()
        } else {
            path.clone()
        };
        match entry_type {
            tar::EntryType::Directory => {
                let name = if name.ends_with('/') {
                    name
                } else {
                    format!("{name}/")
                };
                builder.append_data(&mut header, name, io::empty())?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                header.set_size(entry.size());
                builder.append_data(&mut header, &name, &mut entry)?;
            }
            tar::EntryType::Symlink => {
                builder.append_link(&mut header, &name, link.unwrap_or_default())?;
            }
            tar::EntryType::Link => {
                builder.append_link(&mut header, &name, normalize(&link.unwrap_or_default()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                builder.append_data(&mut header, &name, io::empty())?;
            }
            // Global PAX headers and the like carry nothing for the filesystem.
            _ => continue,
        }
        seen.insert(path);
        stats.copied += 1;
    }
    for (path, node) in edits.add.iter() {
        if node.kind == Kind::Dir && seen.contains(path) {
            continue;
        }
        append_node(&mut builder, path, node)?;
        stats.added += 1;
    }
    Ok((builder.into_inner()?, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tar::TarFixture;
    use crate::tree::{Meta, Node};

    /// A small stand-in for mmdebstrap's output (`./`-prefixed, real ownership).
    fn rootfs_tar() -> Vec<u8> {
        let mut t = TarFixture::new(99);
        use tar::EntryType::*;
        t.add("./dev/", Directory, 0o755, 0, b"", None);
        t.add("./dev/null", Char, 0o666, 0, b"", None);
        t.add("./", Directory, 0o755, 0, b"", None);
        t.add("./etc/", Directory, 0o755, 0, b"", None);
        t.add("./etc/hostname", Regular, 0o644, 0, b"builder\n", None);
        t.add(
            "./etc/shadow",
            Regular,
            0o640,
            42,
            b"root:*:1::::::\n",
            None,
        );
        t.add("./etc/ssh/", Directory, 0o755, 0, b"", None);
        t.add(
            "./etc/ssh/ssh_host_ed25519_key",
            Regular,
            0o600,
            0,
            b"SECRET",
            None,
        );
        t.add(
            "./etc/ssh/ssh_host_ed25519_key.pub",
            Regular,
            0o644,
            0,
            b"PUB",
            None,
        );
        t.add("./etc/ssh/sshd_config", Regular, 0o644, 0, b"cfg", None);
        t.add(
            "./etc/ssh/hard",
            Link,
            0o600,
            0,
            b"",
            Some("./etc/ssh/ssh_host_ed25519_key"),
        );
        t.add("./usr/bin/perl", Regular, 0o755, 0, b"P", None);
        t.add(
            "./usr/bin/perl5.36",
            Link,
            0o755,
            0,
            b"",
            Some("./usr/bin/perl"),
        );
        t.add("./usr/bin/sudo", Regular, 0o4755, 0, b"S", None);
        t.add("./lib", Symlink, 0o777, 0, b"", Some("usr/lib"));
        t.finish()
    }

    fn listing(tar: &[u8]) -> Vec<(String, char, u32, u64, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let mut content = String::new();
                e.read_to_string(&mut content).unwrap();
                (
                    path,
                    h.entry_type().as_byte() as char,
                    h.mode().unwrap(),
                    h.gid().unwrap(),
                    link.unwrap_or(content),
                )
            })
            .collect()
    }

    #[test]
    fn removes_replaces_and_adds() {
        let mut add = Tree::new();
        add.insert("etc/hostname", Node::file(0o644, "banger\n"));
        add.insert("etc/ssh", Node::dir(0o700));
        add.insert(
            "etc/ssh/sshd_config.d/banger.conf",
            Node::file(0o644, "PasswordAuthentication no\n"),
        );
        add.insert("root/.ssh", Node::dir(0o700));
        add.insert("etc/systemd/system/timer.timer", Node::symlink("/dev/null"));
        let edits = TarEdits {
            remove: vec![
                Removal::Prefix("etc/ssh/ssh_host_".into()),
                Removal::Path("usr/bin/perl".into()),
            ],
            add,
        };
        let (out, stats) = rewrite_tar(rootfs_tar().as_slice(), Vec::new(), &edits).unwrap();
        let got = listing(&out);
        let expected: Vec<(&str, char, u32, u64, &str)> = vec![
            ("dev/", '5', 0o755, 0, ""),
            ("dev/null", '3', 0o666, 0, ""),
            ("./", '5', 0o755, 0, ""),
            ("etc/", '5', 0o755, 0, ""),
            ("etc/shadow", '0', 0o640, 42, "root:*:1::::::\n"),
            ("etc/ssh/", '5', 0o755, 0, ""),
            ("etc/ssh/sshd_config", '0', 0o644, 0, "cfg"),
            ("usr/bin/sudo", '0', 0o4755, 0, "S"),
            ("lib", '2', 0o777, 0, "usr/lib"),
            // additions, parents first; etc and etc/ssh existed already
            ("etc/hostname", '0', 0o644, 0, "banger\n"),
            ("etc/ssh/sshd_config.d/", '5', 0o755, 0, ""),
            (
                "etc/ssh/sshd_config.d/banger.conf",
                '0',
                0o644,
                0,
                "PasswordAuthentication no\n",
            ),
            ("etc/systemd/", '5', 0o755, 0, ""),
            ("etc/systemd/system/", '5', 0o755, 0, ""),
            ("etc/systemd/system/timer.timer", '2', 0o777, 0, "/dev/null"),
            ("root/", '5', 0o755, 0, ""),
            ("root/.ssh/", '5', 0o700, 0, ""),
        ];
        let got_ref: Vec<(&str, char, u32, u64, &str)> = got
            .iter()
            .map(|(p, t, m, g, c)| (p.as_str(), *t, *m, *g, c.as_str()))
            .collect();
        assert_eq!(got_ref, expected);
        // host key, its .pub, the hard link to the key, old hostname, perl and its link
        assert_eq!(
            stats,
            EditStats {
                copied: 9,
                removed: 6,
                added: 8
            }
        );
    }

    #[test]
    fn device_numbers_and_xattrs_survive() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.security.capability", &b"\x01\x02"[..])])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(1);
        b.append_data(&mut h, "./usr/bin/ping", &b"x"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(0);
        h.set_device_major(5).unwrap();
        h.set_device_minor(1).unwrap();
        b.append_data(&mut h, "./dev/console", io::empty()).unwrap();
        let input = b.into_inner().unwrap();

        let (out, _) = rewrite_tar(input.as_slice(), Vec::new(), &TarEdits::default()).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut ping = entries.next().unwrap().unwrap();
        let caps: Vec<(String, Vec<u8>)> = ping
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.key().unwrap().to_string(), e.value_bytes().to_vec()))
            .collect();
        assert_eq!(
            caps,
            vec![("SCHILY.xattr.security.capability".to_string(), vec![1, 2])]
        );
        let console = entries.next().unwrap().unwrap();
        assert_eq!(console.header().device_major().unwrap(), Some(5));
        assert_eq!(console.header().device_minor().unwrap(), Some(1));
        assert_eq!(Meta::root(0o600).perm, console.header().mode().unwrap());
    }

    #[test]
    fn removal_rules() {
        let cases = [
            (Removal::Path("a/b".into()), "a/b", true),
            (Removal::Path("a/b".into()), "a/b/c", false),
            (Removal::Tree("a/b".into()), "a/b/c", true),
            (Removal::Tree("a/b".into()), "a/bc", false),
            (
                Removal::Prefix("etc/ssh/ssh_host_".into()),
                "etc/ssh/ssh_host_rsa_key.pub",
                true,
            ),
            (
                Removal::Prefix("etc/ssh/ssh_host_".into()),
                "etc/ssh/sshd_config",
                false,
            ),
        ];
        for (rule, path, expected) in cases {
            assert_eq!(rule.matches(path), expected, "{rule:?} {path}");
        }
    }
}
