//! Applying OCI layers to the in-memory tree, one decompressed tar stream at a time,
//! with the layer semantics of the OCI image spec: later layers replace earlier entries,
//! `.wh.NAME` removes `NAME` from the layers below, `.wh..wh..opq` hides everything the
//! layers below put in its directory. Nothing is unpacked to the host: names are checked
//! and resolved inside the tree ([`super::paths`]); a file's bytes stay where they are
//! in the uncompressed layer file, and the tree records their offset.
//!
//! Refused, with the entry named: `..` in a name, a parent symlink that leaves the image,
//! a hard link to a path outside the image or not extracted yet, a whiteout that would
//! escape. Device nodes are skipped and listed (the guest gets devtmpfs); setuid bits
//! are kept, since they only ever land in the ext4 image, never on a host file.

use std::collections::HashSet;
use std::io::{self, Read};

use crate::oci::paths::{self, PathError};
use crate::tree::{Kind, Meta, Node, Tree, Xattr};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("layer entry {entry:?} is refused: {reason}")]
    UnsafePath {
        entry: String,
        #[source]
        reason: PathError,
    },
    #[error("layer entry {entry:?} is a hard link to {target:?}, outside the image")]
    HardlinkOutside { entry: String, target: String },
    #[error(
        "layer entry {entry:?} is a hard link to {target:?}, which is not a file extracted before it"
    )]
    HardlinkMissing { entry: String, target: String },
    #[error("layer entry {entry:?} is a whiteout that does not name an entry of its directory")]
    BadWhiteout { entry: String },
    #[error("layer entry {entry:?} has an unsupported type ({kind})")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
}

/// The image being assembled from its layers.
#[derive(Debug, Default)]
pub struct LayerStack {
    pub tree: Tree,
    /// Paths that hard links point at, so removing one can hand its content over.
    link_targets: HashSet<String>,
    /// Device nodes found in the layers and left out.
    pub skipped_devices: Vec<String>,
}

impl LayerStack {
    pub fn new() -> LayerStack {
        LayerStack::default()
    }

    /// Applies one layer on top of the ones before. `layer` is its uncompressed tar
    /// file, `source` the index under which the final tar writer will find that file:
    /// file entries are recorded as byte ranges of it, not read.
    pub fn apply(&mut self, source: u32, layer: &std::fs::File) -> Result<usize, ApplyError> {
        let read_error = ApplyError::Read;
        let file_len = layer.metadata().map_err(read_error)?.len();
        let reader = io::BufReader::with_capacity(64 << 10, layer);
        let mut archive = tar::Archive::new(reader);
        // Paths this layer created: whiteouts and opaque markers only hide lower layers.
        let mut this_layer: HashSet<String> = HashSet::new();
        let mut count = 0;
        let entries = archive.entries_with_seek().map_err(read_error)?;
        for entry in entries {
            let mut entry = entry.map_err(read_error)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let unsafe_path = |reason| ApplyError::UnsafePath {
                entry: shown.clone(),
                reason,
            };
            let parts = paths::components(&raw).map_err(unsafe_path)?;
            let entry_type = entry.header().entry_type();
            if matches!(
                entry_type,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
            ) {
                continue;
            }
            let Some((name, dirs)) = parts.split_last() else {
                // The root directory itself: only its metadata.
                if entry_type == tar::EntryType::Directory {
                    let meta = meta_of(entry.header()).map_err(ApplyError::Read)?;
                    let mut root = Node::dir(meta.perm);
                    root.meta = meta;
                    self.tree.insert("", root);
                }
                continue;
            };
            let dir = paths::resolve_dir(&self.tree, dirs).map_err(unsafe_path)?;

            if name == OPAQUE_MARKER {
                for path in self.tree.descendants(&dir) {
                    if !this_layer.contains(&path) && self.tree.contains(&path) {
                        self.remove(&path);
                    }
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                    return Err(ApplyError::BadWhiteout { entry: shown });
                }
                let path = paths::join(&dir, hidden);
                if !this_layer.contains(&path) {
                    self.remove(&path);
                }
                continue;
            }

            let path = paths::join(&dir, name);
            let meta = meta_of(entry.header()).map_err(ApplyError::Read)?;
            let xattrs = xattrs_of(&mut entry).map_err(read_error)?;
            let kind = match entry_type {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, len) = (entry.raw_file_position(), entry.size());
                    if offset.saturating_add(len) > file_len {
                        return Err(ApplyError::Read(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{shown}: the layer ends inside this file"),
                        )));
                    }
                    Kind::Spilled {
                        source,
                        offset,
                        len,
                    }
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    Kind::Symlink(target)
                }
                tar::EntryType::Link => {
                    let target = self.link_target(&entry, &shown)?;
                    Kind::Hardlink(target)
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    self.skipped_devices.push(path);
                    continue;
                }
                tar::EntryType::Fifo => Kind::Fifo,
                other => {
                    return Err(ApplyError::UnsupportedEntry {
                        entry: shown,
                        kind: format!("{other:?}"),
                    });
                }
            };
            if let Kind::Hardlink(target) = &kind {
                if *target == path {
                    // A link to itself changes nothing.
                    continue;
                }
                self.link_targets.insert(target.clone());
            }
            let is_dir = kind == Kind::Dir;
            if !is_dir || !matches!(self.tree.get(&path), Some(n) if n.kind == Kind::Dir) {
                // What this entry replaces goes first (a directory with its children).
                if self.tree.contains(&path) {
                    self.remove(&path);
                }
            }
            self.tree.insert(&path, Node { kind, meta });
            if !xattrs.is_empty() || !is_dir {
                self.tree.set_xattrs(&path, xattrs);
            }
            this_layer.insert(path);
            count += 1;
        }
        Ok(count)
    }

    /// The regular file a hard link entry points at, resolved inside the tree.
    fn link_target(
        &self,
        entry: &tar::Entry<'_, impl Read>,
        shown: &str,
    ) -> Result<String, ApplyError> {
        let raw = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let target_shown = String::from_utf8_lossy(&raw).into_owned();
        let outside = || ApplyError::HardlinkOutside {
            entry: shown.to_string(),
            target: target_shown.clone(),
        };
        let parts = paths::components(&raw).map_err(|_| outside())?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(outside());
        };
        let dir = paths::resolve_dir(&self.tree, dirs).map_err(|_| outside())?;
        let mut target = paths::join(&dir, name);
        // A link to a link is a link to the same file.
        if let Some(Node {
            kind: Kind::Hardlink(primary),
            ..
        }) = self.tree.get(&target)
        {
            target = primary.clone();
        }
        match self.tree.get(&target) {
            Some(Node {
                kind: Kind::File(_) | Kind::Spilled { .. },
                ..
            }) => Ok(target),
            _ => Err(ApplyError::HardlinkMissing {
                entry: shown.to_string(),
                target: target_shown,
            }),
        }
    }

    /// Removes `path` (and everything below it). A file that hard links outside the
    /// removed part still point at keeps its content: the first such link takes it over.
    fn remove(&mut self, path: &str) {
        let mut doomed = self.tree.descendants(path);
        doomed.push(path.to_string());
        let doomed_set: HashSet<&str> = doomed.iter().map(String::as_str).collect();
        for victim in &doomed {
            if !self.link_targets.contains(victim.as_str()) {
                continue;
            }
            self.link_targets.remove(victim.as_str());
            let links: Vec<String> = self
                .tree
                .iter()
                .filter(|(p, n)| {
                    !doomed_set.contains(p) && matches!(&n.kind, Kind::Hardlink(t) if t == victim)
                })
                .map(|(p, _)| p.to_string())
                .collect();
            let Some((heir, others)) = links.split_first() else {
                continue;
            };
            let Some(content) = self.tree.get(victim).cloned() else {
                continue;
            };
            let xattrs = self.tree.xattrs(victim).to_vec();
            self.tree.replace_node(heir, content);
            self.tree.set_xattrs(heir, xattrs);
            for other in others {
                if let Some(node) = self.tree.get(other).cloned() {
                    self.tree.replace_node(
                        other,
                        Node {
                            kind: Kind::Hardlink(heir.clone()),
                            meta: node.meta,
                        },
                    );
                }
            }
            if !others.is_empty() {
                self.link_targets.insert(heir.clone());
            }
        }
        self.tree.remove(path);
    }
}

fn meta_of(header: &tar::Header) -> io::Result<Meta> {
    Ok(Meta {
        perm: header.mode()? & 0o7777,
        uid: header.uid()?,
        gid: header.gid()?,
        mtime: header.mtime().unwrap_or(0),
    })
}

/// `SCHILY.xattr.*` PAX records of an entry. Overlay-internal attributes are dropped:
/// they describe the builder's filesystem, not the image.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<Xattr>> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(Vec::new());
    };
    let mut xattrs = Vec::new();
    for extension in extensions {
        let extension = extension?;
        let Ok(key) = extension.key() else { continue };
        if let Some(name) = key.strip_prefix("SCHILY.xattr.")
            && !name.starts_with("trusted.overlay.")
        {
            xattrs.push((name.to_string(), extension.value_bytes().to_vec()));
        }
    }
    Ok(xattrs)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
