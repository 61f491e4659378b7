//! The layer cache. Each layer is kept once, uncompressed, as
//! `<cache>/oci/layers/<hex>.tar` (named by the digest of its compressed blob), shared by
//! every image that uses it: the tree of an image points into these files, so a second
//! image on the same base reads no layer bytes until the final tar is written.
//!
//! The compressed blob only exists while it is fetched and unpacked, as
//! `<cache>/oci/blobs/sha256/<hex>`. A download goes to `<hex>.partial`, held
//! under an exclusive lock (so two imports, even from two daemons sharing the cache,
//! fetch a blob once; the lock dies with its process), is checked against the declared
//! size as it streams (more bytes than declared is refused at once), resumed with a
//! `Range` request when the connection drops, and only renamed to its final name when
//! its sha256 matches. A digest mismatch deletes the partial file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::oci::manifest::{Compression, Descriptor};
use crate::oci::registry::{Registry, RegistryError};
use crate::oci::unpack::{ExpandedBudget, UnpackError, unpack_layer};

/// How many times a download is resumed or restarted after a failure.
pub const ATTEMPTS: usize = 4;

/// Why a blob could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("layer {digest} is larger than its declared {declared} bytes")]
    TooLarge { digest: String, declared: u64 },
    #[error("layer {digest} has sha256 {actual}; refused")]
    DigestMismatch { digest: String, actual: String },
    #[error("layer {digest} stopped at {got} of {expected} bytes after {ATTEMPTS} attempts")]
    Truncated {
        digest: String,
        got: u64,
        expected: u64,
        #[source]
        last: Option<RegistryError>,
    },
    #[error("fetching layer {digest}")]
    Registry {
        digest: String,
        #[source]
        source: RegistryError,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a background task failed")]
    Join(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
    let context = context.into();
    move |source| BlobError::Io { context, source }
}

/// The blob and layer directories.
#[derive(Debug, Clone)]
pub struct BlobCache {
    /// `<cache>/oci/blobs/sha256`: compressed blobs in flight.
    dir: PathBuf,
    /// `<cache>/oci/layers`: uncompressed layers.
    layers: PathBuf,
}

/// A layer ready to be applied.
#[derive(Debug, Clone)]
pub struct CachedLayer {
    pub path: PathBuf,
    /// Uncompressed size.
    pub size: u64,
    /// True when it was in the cache already.
    pub reused: bool,
}

impl BlobCache {
    /// The cache under `<cache>/oci`.
    pub fn new(cache_dir: &Path) -> BlobCache {
        let oci = cache_dir.join("oci");
        BlobCache {
            dir: oci.join("blobs").join("sha256"),
            layers: oci.join("layers"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn layers_dir(&self) -> &Path {
        &self.layers
    }

    /// The uncompressed layer file of the blob `digest`.
    pub fn layer_path(&self, digest: &str) -> PathBuf {
        self.layers
            .join(format!("{}.tar", digest.trim_start_matches("sha256:")))
    }

    /// The layer for `descriptor`, uncompressed, fetching and unpacking it if needed.
    /// Its uncompressed size counts against `budget` either way.
    pub async fn ensure_layer(
        &self,
        registry: &Registry,
        descriptor: &Descriptor,
        compression: Compression,
        budget: &ExpandedBudget,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<CachedLayer, BlobError> {
        let digest = descriptor.digest.clone();
        let path = self.layer_path(&digest);
        let cached = |path: &Path| std::fs::metadata(path).ok().filter(|m| m.is_file());
        let charge = |size: u64| {
            if budget.charge(size) {
                Ok(())
            } else {
                Err(BlobError::Unpack(UnpackError::TooLarge {
                    limit: budget.limit(),
                }))
            }
        };
        if let Some(meta) = cached(&path) {
            charge(meta.len())?;
            return Ok(CachedLayer {
                path,
                size: meta.len(),
                reused: true,
            });
        }
        std::fs::create_dir_all(&self.layers)
            .map_err(io(format!("cannot create {}", self.layers.display())))?;
        let lock_path = self
            .layers
            .join(format!("{}.lock", digest.trim_start_matches("sha256:")));
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(BlobError::Join)?
        .map_err(io("cannot lock a layer of the cache"))?;
        if let Some(meta) = cached(&path) {
            charge(meta.len())?;
            return Ok(CachedLayer {
                path,
                size: meta.len(),
                reused: true,
            });
        }
        let (blob, _) = self.fetch(registry, descriptor, progress).await?;
        let partial = self.layers.join(format!(
            "{}.tar.partial",
            digest.trim_start_matches("sha256:")
        ));
        let (from, to, budget, layer_digest) = (
            blob.clone(),
            partial.clone(),
            budget.clone(),
            digest.clone(),
        );
        let size = tokio::task::spawn_blocking(move || {
            unpack_layer(&from, compression, &layer_digest, &to, &budget)
        })
        .await
        .map_err(BlobError::Join)??;
        set_read_only(&partial).map_err(io(format!("cannot protect {}", partial.display())))?;
        std::fs::rename(&partial, &path)
            .map_err(io(format!("cannot publish {}", path.display())))?;
        // The compressed blob has served its purpose; the layer is what images use.
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(
            self.layers
                .join(format!("{}.lock", digest.trim_start_matches("sha256:"))),
        );
        drop(lock);
        Ok(CachedLayer {
            path,
            size,
            reused: false,
        })
    }

    /// The final path of `digest` (`sha256:<hex>`).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest.trim_start_matches("sha256:"))
    }

    /// True when the blob is cached with the expected size.
    pub fn has(&self, digest: &str, size: u64) -> bool {
        std::fs::metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The cached blob for `layer`, downloading it first if needed. `progress` gets the
    /// bytes this call downloads as they arrive.
    pub async fn fetch(
        &self,
        registry: &Registry,
        layer: &Descriptor,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(PathBuf, bool), BlobError> {
        let digest = layer.digest.clone();
        let final_path = self.path(&digest);
        if self.has(&digest, layer.size) {
            return Ok((final_path, true));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("cannot create {}", self.dir.display())))?;
        let partial_path = self
            .dir
            .join(format!("{}.partial", digest.trim_start_matches("sha256:")));
        let open_path = partial_path.clone();
        let mut partial = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&open_path)?;
            // Blocks while another download of this blob runs; released at its end.
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(BlobError::Join)?
        .map_err(io(format!("cannot open {}", partial_path.display())))?;
        if self.has(&digest, layer.size) {
            // Another download finished while this one waited for the lock.
            let _ = std::fs::remove_file(&partial_path);
            return Ok((final_path, true));
        }
        // Whatever an interrupted earlier download left is resumed, after re-hashing it.
        let (mut hasher, mut have) = rehash(&mut partial, layer.size)
            .map_err(io(format!("cannot read {}", partial_path.display())))?;
        let mut last_error = None;
        let mut attempts = 0;
        while have < layer.size && attempts < ATTEMPTS {
            attempts += 1;
            match self
                .download(
                    registry,
                    layer,
                    &mut partial,
                    &mut hasher,
                    &mut have,
                    progress,
                )
                .await
            {
                Ok(()) => {}
                Err(DownloadError::Fatal(error)) => {
                    drop(partial);
                    let _ = std::fs::remove_file(&partial_path);
                    return Err(error);
                }
                Err(DownloadError::Retry(error)) => {
                    tracing::warn!(%digest, have, attempt = attempts, error = %crate::error_chain(&error), "layer download interrupted; resuming");
                    last_error = Some(error);
                }
            }
        }
        if have < layer.size {
            return Err(BlobError::Truncated {
                digest,
                got: have,
                expected: layer.size,
                last: last_error,
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            drop(partial);
            let _ = std::fs::remove_file(&partial_path);
            return Err(BlobError::DigestMismatch { digest, actual });
        }
        partial
            .sync_all()
            .map_err(io(format!("cannot flush {}", partial_path.display())))?;
        set_read_only(&partial_path)
            .map_err(io(format!("cannot protect {}", partial_path.display())))?;
        std::fs::rename(&partial_path, &final_path)
            .map_err(io(format!("cannot publish {}", final_path.display())))?;
        Ok((final_path, false))
    }

    /// One GET from `have` on, appended to `partial`.
    async fn download(
        &self,
        registry: &Registry,
        layer: &Descriptor,
        partial: &mut std::fs::File,
        hasher: &mut Sha256,
        have: &mut u64,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), DownloadError> {
        let digest = &layer.digest;
        let retry = |source| DownloadError::Retry(source);
        let mut response = registry.blob(digest, *have).await.map_err(retry)?;
        match response.status {
            206 => {}
            200 if *have > 0 => {
                // The server ignored the range: start over.
                restart(partial, hasher, have).map_err(|e| fatal_io(e, digest))?;
            }
            200 => {}
            416 => {
                restart(partial, hasher, have).map_err(|e| fatal_io(e, digest))?;
                return Err(DownloadError::Retry(RegistryError::Status {
                    url: response.url.to_string(),
                    status: 416,
                    body: String::new(),
                }));
            }
            404 => {
                return Err(DownloadError::Fatal(BlobError::Registry {
                    digest: digest.clone(),
                    source: RegistryError::NotFound {
                        registry: registry.reference().registry.clone(),
                        what: format!("blob {digest}"),
                    },
                }));
            }
            status if status >= 500 => {
                return Err(DownloadError::Retry(RegistryError::Status {
                    url: response.url.to_string(),
                    status,
                    body: String::new(),
                }));
            }
            status => {
                let url = response.url.to_string();
                return Err(DownloadError::Fatal(BlobError::Registry {
                    digest: digest.clone(),
                    source: RegistryError::Status {
                        url,
                        status,
                        body: String::new(),
                    },
                }));
            }
        }
        partial
            .seek(SeekFrom::Start(*have))
            .map_err(|e| fatal_io(e, digest))?;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(()),
                Err(error) => return Err(DownloadError::Retry(error.into())),
            };
            if *have + chunk.len() as u64 > layer.size {
                return Err(DownloadError::Fatal(BlobError::TooLarge {
                    digest: digest.clone(),
                    declared: layer.size,
                }));
            }
            partial.write_all(&chunk).map_err(|e| fatal_io(e, digest))?;
            hasher.update(&chunk);
            *have += chunk.len() as u64;
            progress(chunk.len() as u64);
        }
    }
}

enum DownloadError {
    /// Worth another attempt (connection dropped, server error).
    Retry(RegistryError),
    /// Not worth one (too large, not found, local I/O).
    Fatal(BlobError),
}

fn fatal_io(source: std::io::Error, digest: &str) -> DownloadError {
    DownloadError::Fatal(BlobError::Io {
        context: format!("cannot write layer {digest}"),
        source,
    })
}

/// Hashes what `partial` holds; a partial longer than the blob starts over.
fn rehash(partial: &mut std::fs::File, size: u64) -> std::io::Result<(Sha256, u64)> {
    let len = partial.metadata()?.len();
    let mut hasher = Sha256::new();
    if len > size {
        partial.set_len(0)?;
        return Ok((hasher, 0));
    }
    partial.seek(SeekFrom::Start(0))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut have = 0u64;
    loop {
        let n = partial.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        have += n as u64;
    }
    Ok((hasher, have))
}

fn restart(
    partial: &mut std::fs::File,
    hasher: &mut Sha256,
    have: &mut u64,
) -> std::io::Result<()> {
    partial.set_len(0)?;
    partial.seek(SeekFrom::Start(0))?;
    *hasher = Sha256::new();
    *have = 0;
    Ok(())
}

fn set_read_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}
