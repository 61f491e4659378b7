//! An in-memory filesystem tree and its serialisation to one tar stream. Images are put
//! together here (packages, generated files, symlinks) without touching the disk, so
//! ownership is whatever the tree says (root by default) no matter who runs the build,
//! and no path can escape through a symlink. `mkfs.ext4 -d` then reads the tar.
//!
//! File contents are either in memory (`Kind::File`, small trees such as `tiny`) or a
//! byte range of a source file on disk (`Kind::Spilled`: an uncompressed OCI layer in
//! the cache), so memory stays bounded by the number of entries, not their bytes. Extended attributes live in a side
//! map keyed by path and travel as PAX records.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use crate::usrmerge::normalize;

/// One extended attribute: name (`security.capability`) and raw value.
pub type Xattr = (String, Vec<u8>);

/// A fixed mtime for files banger generates, so rebuilds give the same tar.
pub const GENERATED_MTIME: u64 = 1_700_000_000;

/// Ownership, permissions and mtime of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`0o7777` at most).
    pub perm: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Meta {
    /// Owned by root with the given permissions and the generated-file mtime.
    pub const fn root(perm: u32) -> Meta {
        Meta {
            perm,
            uid: 0,
            gid: 0,
            mtime: GENERATED_MTIME,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A regular file whose bytes are `len` bytes at `offset` of source file `source`
    /// (an index into the sources handed to [`Tree::write_tar_with`]).
    Spilled {
        source: u32,
        offset: u64,
        len: u64,
    },
    Symlink(String),
    /// A hard link to another regular file of the tree (normalized path).
    Hardlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub meta: Meta,
}

impl Node {
    pub fn dir(perm: u32) -> Node {
        Node {
            kind: Kind::Dir,
            meta: Meta::root(perm),
        }
    }

    pub fn file(perm: u32, data: impl Into<Vec<u8>>) -> Node {
        Node {
            kind: Kind::File(data.into()),
            meta: Meta::root(perm),
        }
    }

    pub fn symlink(target: impl Into<String>) -> Node {
        Node {
            kind: Kind::Symlink(target.into()),
            meta: Meta::root(0o777),
        }
    }
}

/// A filesystem tree keyed by normalized relative path (`usr/bin/git`). Parents always
/// exist: inserting creates missing ones as root-owned 0755 directories.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Meta,
    nodes: BTreeMap<String, Node>,
    xattrs: HashMap<String, Vec<Xattr>>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            root: Meta::root(0o755),
            nodes: BTreeMap::new(),
            xattrs: HashMap::new(),
        }
    }

    /// Inserts `node` at `path` (normalized here; `""` sets the root's metadata). An
    /// existing directory stays a directory with its children when a directory is
    /// inserted again (only its metadata changes, as when dpkg unpacks a second package
    /// into it); anything else replaces what was there, children included.
    pub fn insert(&mut self, path: &str, node: Node) {
        let path = normalize(path);
        if path.is_empty() {
            self.root = node.meta;
            return;
        }
        self.ensure_parents(&path);
        let replaces_dir_with_other = matches!(self.nodes.get(&path), Some(old) if old.kind == Kind::Dir)
            && node.kind != Kind::Dir;
        if replaces_dir_with_other {
            self.remove_children(&path);
        }
        if node.kind != Kind::Dir || !self.nodes.contains_key(&path) {
            self.xattrs.remove(&path);
        }
        self.nodes.insert(path, node);
    }

    /// Sets the extended attributes of `path` (normalized here), replacing earlier ones.
    pub fn set_xattrs(&mut self, path: &str, xattrs: Vec<Xattr>) {
        let path = normalize(path);
        if xattrs.is_empty() {
            self.xattrs.remove(&path);
        } else {
            self.xattrs.insert(path, xattrs);
        }
    }

    /// The extended attributes of `path`, if any.
    pub fn xattrs(&self, path: &str) -> &[Xattr] {
        self.xattrs
            .get(&normalize(path))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every path with extended attributes, in no particular order.
    pub fn all_xattrs(&self) -> impl Iterator<Item = (&str, &[Xattr])> {
        self.xattrs
            .iter()
            .filter(|(path, _)| path.is_empty() || self.nodes.contains_key(path.as_str()))
            .map(|(path, xattrs)| (path.as_str(), xattrs.as_slice()))
    }

    /// The paths strictly below `dir` (normalized), in order.
    pub fn descendants(&self, dir: &str) -> Vec<String> {
        let dir = normalize(dir);
        if dir.is_empty() {
            return self.nodes.keys().cloned().collect();
        }
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Replaces the node at an existing `path` in place (no parent creation, no child
    /// removal): how a hard link takes over the content of the file it pointed to.
    pub fn replace_node(&mut self, path: &str, node: Node) {
        if let Some(slot) = self.nodes.get_mut(&normalize(path)) {
            *slot = node;
        }
    }

    /// The root directory's metadata.
    pub fn root_meta(&self) -> Meta {
        self.root
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&normalize(path))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Removes `path` and, when it is a directory, everything below it.
    pub fn remove(&mut self, path: &str) {
        let path = normalize(path);
        self.remove_children(&path);
        self.xattrs.remove(&path);
        self.nodes.remove(&path);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Paths and nodes in tar order (parents before children).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(path, node)| (path.as_str(), node))
    }

    /// Sum of regular file sizes (hard links counted once).
    pub fn content_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match &node.kind {
                Kind::File(data) => data.len() as u64,
                Kind::Spilled { len, .. } => *len,
                _ => 0,
            })
            .sum()
    }

    fn ensure_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            match self.nodes.get(parent) {
                Some(node) if node.kind == Kind::Dir => {}
                _ => {
                    // A non-directory in the way is replaced, as `mkdir -p` after `rm`.
                    self.nodes.insert(parent.to_string(), Node::dir(0o755));
                }
            }
            end += slash + 1;
        }
    }

    fn remove_children(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let children: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for child in children {
            self.xattrs.remove(&child);
            self.nodes.remove(&child);
        }
    }

    /// Writes the tree as a tar stream: the root, then every entry with parents first,
    /// then hard links (their targets must come earlier in the stream). A hard link
    /// whose target is not a regular file of the tree is left out. The tree must hold no
    /// `Spilled` files; see [`Tree::write_tar_with`].
    pub fn write_tar<W: Write>(&self, out: W) -> io::Result<W> {
        self.write_tar_with(out, None)
    }

    /// [`Tree::write_tar`] for a tree whose `Spilled` contents are in `sources`.
    ///
    /// A hard link is written with its target's mode and ownership: they share one
    /// inode, and `mkfs.ext4 -d` applies the link entry's header to it.
    pub fn write_tar_with<W: Write>(
        &self,
        out: W,
        sources: Option<&[std::fs::File]>,
    ) -> io::Result<W> {
        let mut builder = tar::Builder::new(out);
        append_xattrs(&mut builder, self.xattrs(""))?;
        let mut header = header_for(&Kind::Dir, &self.root);
        builder.append_data(&mut header, "./", io::empty())?;
        let mut hardlinks = Vec::new();
        for (path, node) in &self.nodes {
            if let Kind::Hardlink(target) = &node.kind {
                hardlinks.push((path, target));
                continue;
            }
            append_xattrs(&mut builder, self.xattrs(path))?;
            append_node_with(&mut builder, path, node, sources)?;
        }
        for (path, target) in hardlinks {
            match self.nodes.get(target) {
                Some(
                    target_node @ Node {
                        kind: Kind::File(_) | Kind::Spilled { .. },
                        ..
                    },
                ) => {
                    let link = Node {
                        kind: Kind::Hardlink(target.clone()),
                        meta: target_node.meta,
                    };
                    append_node(&mut builder, path, &link)?;
                }
                _ => {
                    tracing::warn!(path = %path, target = %target, "hard link to a missing file left out")
                }
            }
        }
        builder.into_inner()
    }
}

/// PAX records for `xattrs`, written just before the entry they belong to.
fn append_xattrs<W: Write>(builder: &mut tar::Builder<W>, xattrs: &[Xattr]) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let records: Vec<(String, &[u8])> = xattrs
        .iter()
        .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice()))
        .collect();
    builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
}

/// Reads one file's byte range from a source file, by position.
#[derive(Debug)]
pub struct SourceReader<'a> {
    pub file: &'a std::fs::File,
    pub offset: u64,
    pub remaining: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a layer file is shorter than its entries say",
            ));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn header_for(kind: &Kind, meta: &Meta) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.perm & 0o7777);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    header.set_size(0);
    header.set_entry_type(match kind {
        Kind::Dir => tar::EntryType::Directory,
        Kind::File(_) | Kind::Spilled { .. } => tar::EntryType::Regular,
        Kind::Symlink(_) => tar::EntryType::Symlink,
        Kind::Hardlink(_) => tar::EntryType::Link,
        Kind::CharDevice { .. } => tar::EntryType::Char,
        Kind::BlockDevice { .. } => tar::EntryType::Block,
        Kind::Fifo => tar::EntryType::Fifo,
    });
    header
}

pub(crate) fn append_node<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    node: &Node,
) -> io::Result<()> {
    append_node_with(builder, path, node, None)
}

fn append_node_with<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    node: &Node,
    sources: Option<&[std::fs::File]>,
) -> io::Result<()> {
    let mut header = header_for(&node.kind, &node.meta);
    match &node.kind {
        Kind::Spilled {
            source,
            offset,
            len,
        } => {
            let file = sources
                .and_then(|sources| sources.get(*source as usize))
                .ok_or_else(|| io::Error::other(format!("{path}: its source file is missing")))?;
            header.set_size(*len);
            let reader = SourceReader {
                file,
                offset: *offset,
                remaining: *len,
            };
            builder.append_data(&mut header, path, reader)
        }
        Kind::Dir => builder.append_data(&mut header, format!("{path}/"), io::empty()),
        Kind::File(data) => {
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_slice())
        }
        Kind::Symlink(target) | Kind::Hardlink(target) => {
            builder.append_link(&mut header, path, target)
        }
        Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
            builder.append_data(&mut header, path, io::empty())
        }
        Kind::Fifo => builder.append_data(&mut header, path, io::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `(path, type, perm, uid, gid, link or content)` of every entry of a tar.
    pub(crate) fn list_tar(bytes: &[u8]) -> Vec<(String, char, u32, u64, u64, String)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let link = entry
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let mut content = String::new();
                entry.read_to_string(&mut content).unwrap();
                (
                    path,
                    header.entry_type().as_byte() as char,
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    link.unwrap_or(content),
                )
            })
            .collect()
    }

    #[test]
    fn insert_creates_parents_and_writes_in_order() {
        let mut tree = Tree::new();
        tree.insert("/usr/bin/git", Node::file(0o755, "git"));
        tree.insert(
            "./usr/lib/git-core/git",
            Node {
                kind: Kind::Hardlink("usr/bin/git".into()),
                meta: Meta::root(0o755),
            },
        );
        tree.insert("bin", Node::symlink("usr/bin"));
        tree.insert(
            "etc/shadow",
            Node {
                kind: Kind::File(b"root:*:1::::::\n".to_vec()),
                meta: Meta {
                    perm: 0o640,
                    uid: 0,
                    gid: 42,
                    mtime: 5,
                },
            },
        );
        tree.insert(
            "dev/console",
            Node {
                kind: Kind::CharDevice { major: 5, minor: 1 },
                meta: Meta::root(0o600),
            },
        );
        tree.insert(
            "usr/bin/passwd",
            Node {
                kind: Kind::File(Vec::new()),
                meta: Meta::root(0o4755),
            },
        );
        let tar = tree.write_tar(Vec::new()).unwrap();
        let entries = list_tar(&tar);
        let got: Vec<(&str, char, u32, u64)> = entries
            .iter()
            .map(|(p, t, m, _, g, _)| (p.as_str(), *t, *m, *g))
            .collect();
        assert_eq!(
            got,
            vec![
                ("./", '5', 0o755, 0),
                ("bin", '2', 0o777, 0),
                ("dev/", '5', 0o755, 0),
                ("dev/console", '3', 0o600, 0),
                ("etc/", '5', 0o755, 0),
                ("etc/shadow", '0', 0o640, 42),
                ("usr/", '5', 0o755, 0),
                ("usr/bin/", '5', 0o755, 0),
                ("usr/bin/git", '0', 0o755, 0),
                ("usr/bin/passwd", '0', 0o4755, 0),
                ("usr/lib/", '5', 0o755, 0),
                ("usr/lib/git-core/", '5', 0o755, 0),
                ("usr/lib/git-core/git", '1', 0o755, 0),
            ]
        );
        assert_eq!(entries[1].5, "usr/bin");
        assert_eq!(entries[8].5, "git");
        assert_eq!(entries[12].5, "usr/bin/git");
    }

    #[test]
    fn replacing_and_removing() {
        let mut tree = Tree::new();
        tree.insert("a/b/c", Node::file(0o644, "x"));
        // a directory inserted again keeps its children, with the new metadata
        tree.insert("a/b", Node::dir(0o700));
        assert!(tree.contains("a/b/c"));
        assert_eq!(tree.get("a/b").unwrap().meta.perm, 0o700);
        // a file over a directory drops the children
        tree.insert("a/b", Node::file(0o644, "y"));
        assert!(!tree.contains("a/b/c"));
        // a file in the way of a new path becomes a directory
        tree.insert("a/b/d", Node::file(0o644, "z"));
        assert_eq!(tree.get("a/b").unwrap().kind, Kind::Dir);
        tree.insert("a/bb", Node::file(0o644, "keep"));
        tree.remove("a/b");
        assert!(!tree.contains("a/b") && !tree.contains("a/b/d"));
        assert!(tree.contains("a/bb"));
        assert_eq!(tree.content_bytes(), 4);
    }

    #[test]
    fn dangling_hardlinks_are_left_out() {
        let mut tree = Tree::new();
        tree.insert(
            "x",
            Node {
                kind: Kind::Hardlink("gone".into()),
                meta: Meta::root(0o644),
            },
        );
        let entries = list_tar(&tree.write_tar(Vec::new()).unwrap());
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn long_paths_and_targets_survive() {
        let long = format!("usr/share/{}/file", "d".repeat(150));
        let target = format!("/opt/{}", "t".repeat(150));
        let mut tree = Tree::new();
        tree.insert(&long, Node::file(0o644, "x"));
        tree.insert("l", Node::symlink(target.clone()));
        let entries = list_tar(&tree.write_tar(Vec::new()).unwrap());
        assert!(entries.iter().any(|e| e.0 == long && e.5 == "x"));
        assert!(entries.iter().any(|e| e.0 == "l" && e.5 == target));
    }
}
