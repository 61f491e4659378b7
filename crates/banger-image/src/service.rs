//! [`ImageService`]: the entry point the VM service and the daemon use. It maps catalog
//! names to recipes, keeps one build per name at a time (a second caller waits and then
//! finds the published result), and returns paths to immutable artifacts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_exec::CommandRunner;
use banger_model::progress::ProgressSink;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, GuestInit, ImageRecipe, KernelRecipe};
use crate::error::ImageError;
use crate::kernel::{KernelArtifact, KernelCache};
use crate::recipe::BuildContext;
use crate::resolve_memo::ResolveMemo;
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
}

impl ImageService {
    /// A service with the built-in catalog. `cache_dir` holds re-creatable things
    /// (kernels, .debs); `state_dir` holds published images.
    pub fn new(cache_dir: PathBuf, state_dir: PathBuf, runner: Arc<dyn CommandRunner>) -> Self {
        ImageService {
            cache_dir,
            state_dir,
            runner,
            catalog: Catalog::builtin(),
            apt_dir: PathBuf::from("/etc/apt"),
            apt_lists_dir: PathBuf::from("/var/lib/apt/lists"),
            builds: Mutex::new(HashMap::new()),
        }
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
        let entry = self
            .catalog
            .image(name)
            .cloned()
            .ok_or_else(|| ImageError::UnknownImage(name.to_string()))?;
        let lock = self.build_lock(&format!("image/{name}"));
        let _guard = lock.lock().await;
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
        };
        let manifest = match &entry.recipe {
            ImageRecipe::Tiny => tiny::build(&ctx, &entry, progress).await?,
            ImageRecipe::DebianBookworm => debian::build(&ctx, &entry, progress).await?,
            ImageRecipe::Bundle { url, sha256, init } => {
                bundle::pull(&ctx, &entry, url, sha256, *init, progress).await?
            }
        };
        Ok(ImageArtifact::from_manifest(&manifest, &store))
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
