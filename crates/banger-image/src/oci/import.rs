//! `image import`: from a reference to a published ext4 image. Stages, each reported:
//!
//! 1. `resolve manifest`: connect (auth), fetch the manifest (an index is resolved to
//!    linux/amd64), fetch and check the config. The recipe key comes from the manifest
//!    digest, so importing the same image twice finds the first result.
//! 2. `download layers`: every layer into the shared cache, a few at a time, each
//!    verified by digest, with byte progress.
//! 3. `flatten layers`: apply them in order to the in-memory tree.
//! 4. `prepare guest`: banger's init, busybox and the image's environment.
//! 5. `mkfs.ext4`: the tree streams into `mkfs.ext4 -d -`; extended attributes mkfs
//!    leaves out are set with debugfs.
//!
//! Everything happens in a staging directory; only `ImageStore::publish` (a rename)
//! makes the image visible, so an interrupted import leaves nothing half-published.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use banger_exec::CommandRunner;
use banger_model::progress::ProgressSink;
use sha2::{Digest, Sha256};

use crate::catalog::GuestInit;
use crate::error::ImageError;
use crate::ext4::{mkfs_from_stream, set_xattrs};
use crate::http::HttpClient;
use crate::oci::apply::{ApplyError, LayerStack};
use crate::oci::auth::Credentials;
use crate::oci::blobs::{BlobCache, BlobError, CachedLayer};
use crate::oci::guest;
use crate::oci::manifest::{self, Document, ManifestError};
use crate::oci::reference::{Reference, ReferenceError};
use crate::oci::registry::{Registry, RegistryError};
use crate::oci::unpack::ExpandedBudget;
use crate::store::{ImageManifest, ImageStore, PublishRequest, recipe_key};
use crate::tree::{Kind, Tree};

/// Bump when the import recipe (guest setup, sizing, init) changes.
pub const OCI_RECIPE_VERSION: u32 = 1;
/// How many layers download at once.
const PARALLEL_DOWNLOADS: usize = 3;
/// The default limit on an import's expanded size.
pub const DEFAULT_MAX_EXPANDED: u64 = 32 << 30;

pub const STAGE_RESOLVE: &str = "resolve manifest";
pub const STAGE_DOWNLOAD: &str = "download layers";
pub const STAGE_FLATTEN: &str = "flatten layers";
pub const STAGE_GUEST: &str = "prepare guest";
pub const STAGE_MKFS: &str = "mkfs.ext4";

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the index points at another index ({0}); nested indexes are not supported")]
    NestedIndex(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// What the caller provides.
#[derive(Debug)]
pub struct ImportContext<'a> {
    pub runner: &'a dyn CommandRunner,
    pub http: &'a HttpClient,
    pub store: &'a ImageStore,
    pub blobs: &'a BlobCache,
    pub credentials: Option<Credentials>,
    pub max_expanded: u64,
    /// banger's static busybox, and what identifies it in the recipe key.
    pub busybox: &'a [u8],
    pub busybox_id: &'a str,
    pub kernel: &'a str,
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct Imported {
    pub manifest: ImageManifest,
    /// `sha256:…` of the image manifest.
    pub manifest_digest: String,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    pub skipped_devices: Vec<String>,
    /// True when an identical earlier import was found and nothing was built.
    pub reused: bool,
}

pub async fn import(
    ctx: &ImportContext<'_>,
    reference: &Reference,
    name: &str,
    force: bool,
    progress: &dyn ProgressSink,
) -> Result<Imported, ImageError> {
    let oci = |error: OciError| ImageError::Oci {
        reference: reference.to_string(),
        source: Box::new(error),
    };

    progress.stage_started(STAGE_RESOLVE);
    let registry = Registry::connect(ctx.http, reference, ctx.credentials.clone())
        .await
        .map_err(|e| oci(e.into()))?;
    let (image_manifest, manifest_digest) = resolve(&registry, reference).await.map_err(oci)?;
    let config = registry
        .small_blob(&image_manifest.config.digest)
        .await
        .map_err(|e| oci(e.into()))?;
    let config = manifest::parse_config(&config).map_err(|e| oci(e.into()))?;
    let compressed: u64 = image_manifest.layers.iter().map(|(d, _)| d.size).sum();
    progress.stage_done(
        STAGE_RESOLVE,
        Some(&format!(
            "{}, {} layers, {}",
            short(&manifest_digest),
            image_manifest.layers.len(),
            mib(compressed)
        )),
    );
    let layers: Vec<String> = image_manifest
        .layers
        .iter()
        .map(|(d, _)| d.digest.clone())
        .collect();
    let key = recipe_key(
        "oci",
        OCI_RECIPE_VERSION,
        &[
            manifest_digest.clone(),
            ctx.busybox_id.to_string(),
            format!("init {}", hex::encode(Sha256::digest(guest::INIT_SCRIPT))),
            ctx.kernel.to_string(),
        ],
    );
    if !force && let Some(found) = ctx.store.find(&key)? {
        return Ok(Imported {
            manifest: found,
            manifest_digest,
            layers,
            skipped_devices: Vec::new(),
            reused: true,
        });
    }

    progress.stage_started(STAGE_DOWNLOAD);
    let budget = ExpandedBudget::new(ctx.max_expanded);
    let cached = download(ctx, Arc::new(registry), &image_manifest, &budget, progress)
        .await
        .map_err(oci)?;
    let reused = cached.iter().filter(|l| l.reused).count();
    let expanded: u64 = cached.iter().map(|l| l.size).sum();
    progress.stage_done(
        STAGE_DOWNLOAD,
        Some(&format!(
            "{} layers ({reused} from the cache), {} unpacked",
            cached.len(),
            mib(expanded)
        )),
    );

    progress.stage_started(STAGE_FLATTEN);
    let paths: Vec<PathBuf> = cached.iter().map(|l| l.path.clone()).collect();
    let (stack, sources) = tokio::task::spawn_blocking(move || flatten(&paths))
        .await
        .map_err(ImageError::Join)?
        .map_err(|e| match e {
            FlattenError::Apply(e) => oci(e.into()),
            FlattenError::Open(e) => ImageError::io("cannot open a cached layer")(e),
        })?;
    let mut detail = format!(
        "{} entries, {}",
        stack.tree.len(),
        mib(stack.tree.content_bytes())
    );
    if !stack.skipped_devices.is_empty() {
        detail.push_str(&format!(
            "; device nodes skipped: {}",
            list_some(&stack.skipped_devices)
        ));
        tracing::warn!(reference = %reference, devices = ?stack.skipped_devices, "device nodes left out of the image");
    }
    progress.stage_done(STAGE_FLATTEN, Some(&detail));

    progress.stage_started(STAGE_GUEST);
    let mut tree = stack.tree;
    let env = config.config.env.clone().unwrap_or_default();
    let setup = guest::prepare(&mut tree, ctx.busybox, &env);
    let init_detail = match (&setup.init, &setup.replaced_init) {
        (GuestInit::Systemd, _) => "the image's systemd".to_string(),
        (GuestInit::Busybox, Some(old)) => format!("banger init (replaces {old})"),
        (GuestInit::Busybox, None) => "banger init".to_string(),
    };
    progress.stage_done(STAGE_GUEST, Some(&init_detail));

    progress.stage_started(STAGE_MKFS);
    let staging = ctx.store.staging()?;
    let image = staging.path().join("image.ext4");
    let size = image_size(&tree);
    let xattrs = extra_xattrs(&tree);
    let tree = Arc::new(tree);
    let sources = Arc::new(sources);
    let (tar_tree, tar_sources) = (Arc::clone(&tree), Arc::clone(&sources));
    mkfs_from_stream(ctx.runner, &image, size, move |pipe| {
        let out = std::io::BufWriter::with_capacity(1 << 20, pipe);
        let out = tar_tree.write_tar_with(out, Some(tar_sources.as_slice()))?;
        out.into_inner().map_err(|e| e.into_error()).map(drop)
    })
    .await?;
    drop(sources);
    let skipped = set_xattrs(ctx.runner, &image, &staging.path().join("xattrs"), &xattrs).await?;
    if !skipped.is_empty() {
        tracing::warn!(
            ?skipped,
            "extended attributes debugfs cannot address were left out"
        );
    }
    progress.stage_done(STAGE_MKFS, Some(&format!("{} image", mib(size))));

    let request = PublishRequest {
        name: name.to_string(),
        key,
        kernel: ctx.kernel.to_string(),
        init: setup.init,
        inputs: std::iter::once(format!("{reference} {manifest_digest}"))
            .chain(layers.iter().cloned())
            .collect(),
    };
    let store = ctx.store.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let published = store.publish(&image, request);
        drop(staging);
        published
    })
    .await
    .map_err(ImageError::Join)??;
    Ok(Imported {
        manifest,
        manifest_digest,
        layers,
        skipped_devices: stack.skipped_devices,
        reused: false,
    })
}

/// The image manifest for the reference (through an index when there is one).
async fn resolve(
    registry: &Registry,
    reference: &Reference,
) -> Result<(manifest::ImageManifest, String), OciError> {
    let (document, digest) = registry.document(reference.manifest_ref()).await?;
    match document {
        Document::Manifest(found) => Ok((found, digest)),
        Document::Index(entries) => {
            let chosen = manifest::select_platform(&entries)?;
            let (document, digest) = registry.document(&chosen.digest).await?;
            match document {
                Document::Manifest(found) => Ok((found, digest)),
                Document::Index(_) => Err(OciError::NestedIndex(digest)),
            }
        }
    }
}

/// Fetches every layer (a few at once), reporting bytes as they arrive.
async fn download(
    ctx: &ImportContext<'_>,
    registry: Arc<Registry>,
    image: &manifest::ImageManifest,
    budget: &ExpandedBudget,
    progress: &dyn ProgressSink,
) -> Result<Vec<CachedLayer>, OciError> {
    let total: u64 = image
        .layers
        .iter()
        .filter(|(d, _)| !ctx.blobs.layer_path(&d.digest).exists())
        .map(|(d, _)| d.size)
        .sum();
    let done = Arc::new(AtomicU64::new(0));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL_DOWNLOADS));
    let mut tasks = Vec::new();
    for (descriptor, compression) in image.layers.iter().cloned() {
        let (registry, blobs, budget, done, semaphore) = (
            Arc::clone(&registry),
            ctx.blobs.clone(),
            budget.clone(),
            Arc::clone(&done),
            Arc::clone(&semaphore),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let count = move |n: u64| {
                done.fetch_add(n, Ordering::Relaxed);
            };
            blobs
                .ensure_layer(&registry, &descriptor, compression, &budget, &count)
                .await
        }));
    }
    // Report progress while the tasks run; the first failure ends the wait.
    let mut results = Vec::with_capacity(tasks.len());
    let mut last_report = Instant::now();
    for task in tasks {
        let mut task = task;
        let result = loop {
            tokio::select! {
                result = &mut task => break result,
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if last_report.elapsed() >= Duration::from_millis(250) {
                        progress.stage_bytes(STAGE_DOWNLOAD, done.load(Ordering::Relaxed), Some(total));
                        last_report = Instant::now();
                    }
                }
            }
        };
        match result {
            Ok(Ok(layer)) => results.push(layer),
            Ok(Err(error)) => return Err(error.into()),
            Err(join) => return Err(BlobError::Join(join).into()),
        }
    }
    progress.stage_bytes(STAGE_DOWNLOAD, done.load(Ordering::Relaxed), Some(total));
    Ok(results)
}

#[derive(Debug)]
enum FlattenError {
    Open(std::io::Error),
    Apply(ApplyError),
}

/// Applies the layer files in order; returns the stack and the open files its tree
/// points into (source `i` is layer `i`).
fn flatten(paths: &[PathBuf]) -> Result<(LayerStack, Vec<std::fs::File>), FlattenError> {
    let mut stack = LayerStack::new();
    let mut sources = Vec::with_capacity(paths.len());
    for (index, path) in paths.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(FlattenError::Open)?;
        stack
            .apply(index as u32, &file)
            .map_err(FlattenError::Apply)?;
        sources.push(file);
    }
    Ok((stack, sources))
}

/// The ext4's apparent size: the data in 4 KiB blocks plus an eighth and 48 MiB (the
/// journal and metadata), and enough inodes at mkfs's default of one per 16 KiB; at
/// least 128 MiB, in 32 MiB steps. Tight on purpose: VMs grow their own copy to the size
/// they ask for, and a smaller image is faster to make, hash and copy.
pub fn image_size(tree: &Tree) -> u64 {
    const BLOCK: u64 = 4096;
    let mut blocks = 0u64;
    for (_, node) in tree.iter() {
        blocks += match &node.kind {
            Kind::File(data) => (data.len() as u64).div_ceil(BLOCK),
            Kind::Spilled { len, .. } => len.div_ceil(BLOCK),
            Kind::Dir => 1,
            Kind::Symlink(target) if target.len() >= 60 => 1,
            _ => 0,
        };
    }
    let data = blocks * BLOCK;
    let by_data = data + data / 8 + (48 << 20);
    let by_inodes = (tree.len() as u64 + 1024) * (16 << 10) * 5 / 4;
    let size = by_data.max(by_inodes).max(128 << 20);
    size.div_ceil(32 << 20) * (32 << 20)
}

/// `(path, name, value)` of the extended attributes `mkfs.ext4 -d` drops.
fn extra_xattrs(tree: &Tree) -> Vec<(String, String, Vec<u8>)> {
    let mut out: Vec<(String, String, Vec<u8>)> = tree
        .all_xattrs()
        .flat_map(|(path, xattrs)| {
            xattrs
                .iter()
                .filter(|(name, _)| name != "security.capability")
                .map(move |(name, value)| (path.to_string(), name.clone(), value.clone()))
        })
        .collect();
    out.sort();
    out
}

fn short(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

fn mib(bytes: u64) -> String {
    if bytes >= 10 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

fn list_some(items: &[String]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|p| format!("/{p}")).collect();
    if items.len() > 5 {
        format!("{} and {} more", shown.join(", "), items.len() - 5)
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    #[test]
    fn sizes_follow_data_and_entries() {
        let mut tree = Tree::new();
        assert_eq!(image_size(&tree), 128 << 20);
        tree.insert(
            "big",
            Node {
                kind: Kind::Spilled {
                    source: 0,
                    offset: 0,
                    len: 1 << 30,
                },
                meta: crate::tree::Meta::root(0o644),
            },
        );
        let size = image_size(&tree);
        assert!(size >= (1 << 30) + (1 << 30) / 8, "{size}");
        assert_eq!(size % (32 << 20), 0);
        let mut many = Tree::new();
        for i in 0..50_000 {
            many.insert(&format!("d/f{i}"), Node::file(0o644, "x"));
        }
        assert!(image_size(&many) >= 50_000 * (16 << 10));
    }
}
