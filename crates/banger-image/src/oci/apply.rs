//! Applying OCI layers to the in-memory tree, one decompressed tar stream at a time,
//! with the layer semantics of the OCI image spec: later layers replace earlier entries,
//! `.wh.NAME` removes `NAME` from the layers below, `.wh..wh..opq` hides everything the
//! layers below put in its directory. Nothing is unpacked to the host: names are checked
//! and resolved inside the tree ([`super::paths`]), file bytes go to the [`Spill`] file.
//!
//! Refused, with the entry named: `..` in a name, a parent symlink that leaves the image,
//! a hard link to a path outside the image or not extracted yet, a whiteout that would
//! escape, a stream larger than the configured limit. Device nodes are skipped and
//! listed (the guest gets devtmpfs); setuid bits are kept, since they only ever land in
//! the ext4 image.

use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::oci::paths::{self, PathError};
use crate::spill::{Spill, SpillError};
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
    #[error(
        "the layers expand to more than {limit} bytes (the limit on an import's expanded size; \
         BANGER_IMPORT_MAX_BYTES raises it)"
    )]
    TooLarge { limit: u64 },
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
    #[error("cannot write to the spill file")]
    Spill(#[source] io::Error),
}

/// Counts the decompressed bytes read from all layers and stops at a limit, so a
/// decompression bomb fails instead of filling the disk.
#[derive(Debug, Clone)]
pub struct ExpandedBudget {
    used: Arc<AtomicU64>,
    limit: u64,
}

impl ExpandedBudget {
    pub fn new(limit: u64) -> ExpandedBudget {
        ExpandedBudget {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn exceeded(&self) -> bool {
        self.used() > self.limit
    }

    /// Wraps a decompressed stream so that every byte counts against the budget.
    pub fn reader<R: Read>(&self, inner: R) -> BudgetReader<R> {
        BudgetReader {
            inner,
            budget: self.clone(),
        }
    }
}

/// A reader that fails once its [`ExpandedBudget`] is spent.
#[derive(Debug)]
pub struct BudgetReader<R> {
    inner: R,
    budget: ExpandedBudget,
}

impl<R: Read> Read for BudgetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let used = self.budget.used.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if used > self.budget.limit {
            return Err(io::Error::other("expanded size limit reached"));
        }
        Ok(n)
    }
}

/// The image being assembled from its layers.
#[derive(Debug)]
pub struct LayerStack {
    pub tree: Tree,
    spill: Spill,
    budget: ExpandedBudget,
    /// Paths that hard links point at, so removing one can hand its content over.
    link_targets: HashSet<String>,
    /// Device nodes found in the layers and left out.
    pub skipped_devices: Vec<String>,
}

impl LayerStack {
    pub fn new(spill: Spill, budget: ExpandedBudget) -> LayerStack {
        LayerStack {
            tree: Tree::new(),
            spill,
            budget,
            link_targets: HashSet::new(),
            skipped_devices: Vec::new(),
        }
    }

    pub fn spill(&self) -> &Spill {
        &self.spill
    }

    /// Applies one layer (an uncompressed tar stream) on top of the ones before.
    pub fn apply<R: Read>(&mut self, layer: R) -> Result<usize, ApplyError> {
        let read_error = |budget: &ExpandedBudget, error: io::Error| {
            if budget.exceeded() {
                ApplyError::TooLarge {
                    limit: budget.limit,
                }
            } else {
                ApplyError::Read(error)
            }
        };
        let mut archive = tar::Archive::new(self.budget.reader(layer));
        // Paths this layer created: whiteouts and opaque markers only hide lower layers.
        let mut this_layer: HashSet<String> = HashSet::new();
        let mut count = 0;
        let entries = archive.entries().map_err(|e| read_error(&self.budget, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| read_error(&self.budget, e))?;
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
            let xattrs = xattrs_of(&mut entry).map_err(|e| read_error(&self.budget, e))?;
            let kind = match entry_type {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, len) = self.spill.append(&mut entry).map_err(|e| match e {
                        SpillError::Read(e) => read_error(&self.budget, e),
                        SpillError::Write(e) => ApplyError::Spill(e),
                    })?;
                    Kind::Spilled { offset, len }
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
