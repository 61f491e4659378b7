//! [`ImageService`]: the entry point the VM service and the daemon use. It maps catalog
//! names to recipes, keeps one build per name at a time (a second caller waits and then
//! finds the published result), and returns paths to immutable artifacts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_exec::CommandRunner;
use banger_model::progress::ProgressSink;
use serde::{Deserialize, Serialize};

use crate::apt::Apt;
use crate::apt_query::DebRef;
use crate::catalog::{Catalog, GuestInit, ImageRecipe, KernelRecipe};
use crate::deb::read_file_from_data_tar;
use crate::error::ImageError;
use crate::http::HttpClient;
use crate::kernel::{KernelArtifact, KernelCache};
use crate::oci::blobs::BlobCache;
use crate::oci::import::{DEFAULT_MAX_EXPANDED, ImportContext, Imported};
use crate::oci::reference::Reference;
use crate::recipe::BuildContext;
use crate::resolve_memo::{ResolveMemo, lists_fingerprint};
use crate::store::{ImageManifest, ImageStore};
use crate::{bundle, debian, tiny};

/// A published root filesystem image. The file is read-only and never changes; VMs boot
/// from their own copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageArtifact {
    pub name: String,
    /// `sha256:<hex>` of the ext4 file.
    pub digest: String,
    pub path: PathBuf,
    /// Apparent size of the (sparse) file.
    pub size_bytes: u64,
    /// The kernel this image boots with by default.
    pub kernel: String,
    pub init: GuestInit,
}

impl ImageArtifact {
    fn from_manifest(manifest: &ImageManifest, store: &ImageStore) -> ImageArtifact {
        ImageArtifact {
            name: manifest.name.clone(),
            digest: manifest.digest.clone(),
            path: store.path_of(manifest),
            size_bytes: manifest.size_bytes,
            kernel: manifest.kernel.clone(),
            init: manifest.init,
        }
    }
}

/// Pulls kernels and images by catalog name.
#[derive(Debug)]
pub struct ImageService {
    cache_dir: PathBuf,
    state_dir: PathBuf,
    runner: Arc<dyn CommandRunner>,
    catalog: Catalog,
    apt_dir: PathBuf,
    apt_lists_dir: PathBuf,
    builds: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where imported, registered and promoted images live (not re-creatable, so not
    /// in the cache): `<state>/images` unless set.
    user_images_dir: PathBuf,
    http: HttpClient,
    /// The user's docker `config.json`, for registry credentials.
    docker_config: Option<PathBuf>,
    max_expanded: u64,
}

/// A finished catalog pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub artifact: ImageArtifact,
    /// False when the published image was already current and nothing was built.
    pub built: bool,
}

/// A finished `image import`.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub artifact: ImageArtifact,
    /// The reference as resolved, `registry/repo:tag@sha256:…`.
    pub resolved: String,
    /// Layer digests, bottom first (what the image holds in the layer cache).
    pub layers: Vec<String>,
    pub skipped_devices: Vec<String>,
    /// True when an identical earlier import was reused.
    pub reused: bool,
}

impl ImageService {
    /// A service with the built-in catalog. `cache_dir` holds re-creatable things
    /// (kernels, .debs); `state_dir` holds published images.
    pub fn new(cache_dir: PathBuf, state_dir: PathBuf, runner: Arc<dyn CommandRunner>) -> Self {
        ImageService {
            cache_dir,
            runner,
            catalog: Catalog::builtin(),
            apt_dir: PathBuf::from("/etc/apt"),
            apt_lists_dir: PathBuf::from("/var/lib/apt/lists"),
            builds: Mutex::new(HashMap::new()),
            user_images_dir: state_dir.join("images"),
            state_dir,
            http: HttpClient::new(),
            docker_config: None,
            max_expanded: DEFAULT_MAX_EXPANDED,
        }
    }

    /// Where imported, registered and promoted images are published.
    pub fn with_user_images_dir(mut self, dir: PathBuf) -> Self {
        self.user_images_dir = dir;
        self
    }

    /// The docker `config.json` whose `auths` give registry credentials.
    pub fn with_docker_config(mut self, path: Option<PathBuf>) -> Self {
        self.docker_config = path;
        self
    }

    /// The most bytes an import's layers may expand to.
    pub fn with_import_limit(mut self, bytes: u64) -> Self {
        self.max_expanded = bytes;
        self
    }

    /// The store of imported, registered and promoted images.
    pub fn user_store(&self) -> ImageStore {
        ImageStore::new(self.user_images_dir.clone())
    }

    /// The store of catalog images.
    pub fn catalog_store(&self) -> ImageStore {
        ImageStore::new(self.images_dir())
    }

    /// The OCI layer cache.
    pub fn blob_cache(&self) -> BlobCache {
        BlobCache::new(&self.cache_dir)
    }

    /// Imports the OCI image `reference` as `name`: pulls what the layer cache lacks,
    /// flattens the layers, adds banger's init and publishes the ext4. An identical
    /// earlier import (same manifest digest and recipe) is returned unless `force`.
    pub async fn import_oci(
        &self,
        reference: &str,
        name: &str,
        force: bool,
        progress: &dyn ProgressSink,
    ) -> Result<ImportOutcome, ImageError> {
        let parsed = Reference::parse(reference).map_err(|e| ImageError::Oci {
            reference: reference.to_string(),
            source: Box::new(e.into()),
        })?;
        let (busybox, busybox_id) = self.static_busybox().await?;
        let credentials = self.docker_config.as_ref().and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            crate::oci::auth::credentials_for(&text, &parsed.registry)
        });
        let store = self.user_store();
        let blobs = self.blob_cache();
        let ctx = ImportContext {
            runner: self.runner.as_ref(),
            http: &self.http,
            store: &store,
            blobs: &blobs,
            credentials,
            max_expanded: self.max_expanded,
            busybox: &busybox,
            busybox_id: &busybox_id,
            kernel: banger_model::catalog::DEFAULT_KERNEL,
        };
        let imported: Imported =
            crate::oci::import::import(&ctx, &parsed, name, force, progress).await?;
        let mut artifact = ImageArtifact::from_manifest(&imported.manifest, &store);
        artifact.name = name.to_string();
        let resolved = match &parsed.digest {
            Some(_) => parsed.to_string(),
            None => format!("{parsed}@{}", imported.manifest_digest),
        };
        Ok(ImportOutcome {
            artifact,
            resolved,
            layers: imported.layers,
            skipped_devices: imported.skipped_devices,
            reused: imported.reused,
        })
    }

    /// Copies `source` (an ext4 file, or a stopped VM's disk) into the image store,
    /// checks it there and publishes it as `name`. `init` is detected when `None`.
    pub async fn publish_local(
        &self,
        source: &Path,
        name: &str,
        kernel: &str,
        kind: crate::local::LocalSource,
        init: Option<GuestInit>,
        progress: &dyn ProgressSink,
    ) -> Result<ImageArtifact, ImageError> {
        let store = self.user_store();
        let (manifest, _) = crate::local::publish(
            self.runner.as_ref(),
            &store,
            source,
            name,
            kernel,
            kind,
            init,
            progress,
        )
        .await?;
        Ok(ImageArtifact::from_manifest(&manifest, &store))
    }

    /// Removes staging directories and partial downloads that crashed builds left
    /// (their lock is free), in every store; at daemon start.
    pub fn clean_leftovers(&self) -> Vec<crate::prune::Pruned> {
        let mut removed: Vec<crate::prune::Pruned> = [self.catalog_store(), self.user_store()]
            .iter()
            .flat_map(|store| store.clean_staging(false))
            .map(|(path, bytes)| crate::prune::Pruned { path, bytes })
            .collect();
        let blobs = self.blob_cache();
        for dir in [blobs.dir(), blobs.layers_dir()] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let partial = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".partial"));
                // Kept: a partial layer download resumes; a partial unpack does not.
                let resumable = dir == blobs.dir();
                if partial && !resumable {
                    let free = std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
                    if free {
                        let bytes = crate::prune::disk_usage(&path);
                        if std::fs::remove_file(&path).is_ok() {
                            removed.push(crate::prune::Pruned { path, bytes });
                        }
                    }
                }
            }
        }
        removed
    }

    /// `image cache prune`: removes what `keep` does not name (see [`crate::prune`]).
    pub fn prune_cache(
        &self,
        keep: &crate::prune::Keep,
        dry_run: bool,
    ) -> Vec<crate::prune::Pruned> {
        crate::prune::prune(
            &self.cache_dir,
            &[self.catalog_store(), self.user_store()],
            &self.blob_cache(),
            keep,
            dry_run,
        )
    }

    /// busybox-static's binary (from its Debian package, shared with the kernel and
    /// tiny builds) and an id of its exact .deb for recipe keys. The package resolution
    /// is remembered while the apt lists do not change.
    async fn static_busybox(&self) -> Result<(Vec<u8>, String), ImageError> {
        let apt = Apt {
            runner: self.runner.as_ref(),
        };
        let memo = ResolveMemo::new(self.cache_dir.join("resolved"));
        let fingerprint = lists_fingerprint(&self.apt_lists_dir);
        let memoized = fingerprint
            .as_ref()
            .and_then(|f| memo.load::<Vec<DebRef>>("busybox-static", f));
        let refs = match memoized {
            Some(refs) => refs,
            None => {
                let refs = apt.deb_refs(&["busybox-static".to_string()]).await?;
                if let Some(f) = &fingerprint
                    && let Err(error) = memo.save("busybox-static", f, &refs)
                {
                    tracing::warn!(%error, "cannot remember the busybox-static package");
                }
                refs
            }
        };
        let Some(deb_ref) = refs.first() else {
            return Err(ImageError::MissingDeb {
                package: "busybox-static".to_string(),
            });
        };
        // The extracted binary is kept beside the layers, so an import after a cache
        // prune (which removes .deb files) needs neither apt nor dpkg-deb.
        let extracted = self
            .cache_dir
            .join("oci")
            .join("busybox")
            .join(&deb_ref.sha256);
        if let Ok(busybox) = fs_err::read(&extracted) {
            return Ok((busybox, format!("{} {}", deb_ref.filename, deb_ref.sha256)));
        }
        let debs = apt.fetch_debs(&refs, &self.debs_dir()).await?;
        let Some(deb) = debs.first() else {
            return Err(ImageError::MissingDeb {
                package: "busybox-static".to_string(),
            });
        };
        let data = apt.data_tar(deb).await?;
        let busybox = read_file_from_data_tar(data.as_slice(), "bin/busybox")
            .map_err(ImageError::io(format!("cannot read {}", deb.display())))?
            .ok_or_else(|| ImageError::FileNotInDeb {
                deb: deb.clone(),
                file: "bin/busybox".to_string(),
            })?;
        if let Some(dir) = extracted.parent() {
            let staged = dir.join(format!(".{}.{}", deb_ref.sha256, std::process::id()));
            let kept = fs_err::create_dir_all(dir)
                .and_then(|()| fs_err::write(&staged, &busybox))
                .and_then(|()| fs_err::rename(&staged, &extracted));
            if let Err(error) = kept {
                tracing::warn!(%error, "cannot keep the extracted busybox");
            }
        }
        Ok((busybox, format!("{} {}", deb_ref.filename, deb_ref.sha256)))
    }

    /// Replaces the catalog (e.g. with bundles from the daemon's configuration).
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Where the host's apt configuration and package lists are (default `/etc/apt`,
    /// `/var/lib/apt/lists`); the mirror comes from the first, the second is
    /// fingerprinted to skip re-resolving packages while it does not change.
    pub fn with_host_apt(mut self, apt_dir: PathBuf, apt_lists_dir: PathBuf) -> Self {
        self.apt_dir = apt_dir;
        self.apt_lists_dir = apt_lists_dir;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Where published images live (`<state>/images`).
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Resolves, builds if needed, and returns the kernel `name` of the catalog.
    pub async fn pull_kernel(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<KernelArtifact, ImageError> {
        let entry = self
            .catalog
            .kernel(name)
            .cloned()
            .ok_or_else(|| ImageError::UnknownKernel(name.to_string()))?;
        let lock = self.build_lock(&format!("kernel/{name}"));
        let _guard = lock.lock().await;
        let kernels_dir = self.cache_dir.join("kernels");
        let debs_dir = self.debs_dir();
        let cache = KernelCache {
            runner: self.runner.as_ref(),
            kernels_dir: &kernels_dir,
            debs_dir: &debs_dir,
        };
        match &entry.recipe {
            KernelRecipe::DebianPackage { series, flavour } => {
                cache
                    .pull_debian_package(&entry.name, series, flavour, progress)
                    .await
            }
        }
    }

    /// Resolves, builds or downloads if needed, and returns the image `name` of the
    /// catalog. A second pull with unchanged inputs returns the published file at once.
    pub async fn pull_image(
        &self,
        name: &str,
        progress: &dyn ProgressSink,
    ) -> Result<ImageArtifact, ImageError> {
        self.pull_image_with(name, false, progress)
            .await
            .map(|pulled| pulled.artifact)
    }

    /// [`ImageService::pull_image`], also saying whether anything was built; `force`
    /// rebuilds even when the inputs are unchanged.
    pub async fn pull_image_with(
        &self,
        name: &str,
        force: bool,
        progress: &dyn ProgressSink,
    ) -> Result<Pulled, ImageError> {
        // A manifest published during this call is a new build; one found is older.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let entry = self
            .catalog
            .image(name)
            .cloned()
            .ok_or_else(|| ImageError::UnknownImage(name.to_string()))?;
        let lock = self.build_lock(&format!("image/{name}"));
        let _guard = lock.lock().await;
        // Other processes sharing this cache (a second daemon, parallel tests) build one
        // at a time too: a second builder waits, then finds the first one's image.
        let _file_lock = cross_process_lock(
            self.cache_dir
                .join("locks")
                .join(format!("image-{name}.lock")),
        )
        .await?;
        let store = ImageStore::new(self.images_dir());
        let memo = ResolveMemo::new(self.cache_dir.join("resolved"));
        let debs_dir = self.debs_dir();
        let ctx = BuildContext {
            runner: self.runner.as_ref(),
            store: &store,
            debs_dir: &debs_dir,
            memo: &memo,
            apt_dir: &self.apt_dir,
            lists_dir: &self.apt_lists_dir,
            force,
        };
        let manifest = match &entry.recipe {
            ImageRecipe::Tiny => tiny::build(&ctx, &entry, progress).await?,
            ImageRecipe::DebianBookworm => debian::build(&ctx, &entry, progress).await?,
            ImageRecipe::Bundle { url, sha256, init } => {
                bundle::pull(&ctx, &entry, url, sha256, *init, progress).await?
            }
        };
        Ok(Pulled {
            artifact: ImageArtifact::from_manifest(&manifest, &store),
            built: manifest.created_unix >= started,
        })
    }

    /// Writes the `tiny` image's root filesystem as a tar at `out` (what its
    /// `mkfs.ext4 -d` reads), without making an image: for building OCI test images and
    /// benchmarks from a tree that boots.
    pub async fn export_tiny_tar(
        &self,
        out: &Path,
        progress: &dyn ProgressSink,
    ) -> Result<(), ImageError> {
        let store = ImageStore::new(self.images_dir());
        let memo = ResolveMemo::new(self.cache_dir.join("resolved"));
        let debs_dir = self.debs_dir();
        let ctx = BuildContext {
            runner: self.runner.as_ref(),
            store: &store,
            debs_dir: &debs_dir,
            memo: &memo,
            apt_dir: &self.apt_dir,
            lists_dir: &self.apt_lists_dir,
            force: false,
        };
        tiny::export_tar(&ctx, out, progress).await
    }

    fn debs_dir(&self) -> PathBuf {
        self.cache_dir.join("debs")
    }

    /// One async mutex per build target, so concurrent pulls of one name build once.
    fn build_lock(&self, target: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut builds = self
            .builds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        builds.entry(target.to_string()).or_default().clone()
    }

    /// The cache directory given at construction.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
}

/// An exclusive `flock` on `path` (created if missing), held until the file is dropped.
async fn cross_process_lock(path: PathBuf) -> Result<std::fs::File, ImageError> {
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("cannot open the image build lock"))?;
        file.lock()
            .map_err(ImageError::io("cannot take the image build lock"))?;
        Ok(file)
    })
    .await
    .map_err(ImageError::Join)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_exec::SystemRunner;
    use banger_model::progress::NoProgress;

    #[tokio::test]
    async fn unknown_names_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let service = ImageService::new(
            dir.path().join("c"),
            dir.path().join("s"),
            Arc::new(SystemRunner),
        );
        assert!(matches!(
            service.pull_image("nope", &NoProgress).await,
            Err(ImageError::UnknownImage(name)) if name == "nope"
        ));
        assert!(matches!(
            service.pull_kernel("nope", &NoProgress).await,
            Err(ImageError::UnknownKernel(_))
        ));
        assert_eq!(service.catalog().images.len(), 2);
    }
}
