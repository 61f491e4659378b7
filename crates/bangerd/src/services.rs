//! Construction of the services the handlers call: the image service, the VMM driver
//! chosen for this host, and the VM service over both. Built once at startup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_exec::CommandRunner;
use banger_image::{Catalog, ImageService};
use banger_model::dirs::Dirs;
use banger_model::{ByteSize, SpecLimits};
use banger_store::{Store, StoreError};
use banger_sys::kvm::KvmProbe;
use banger_vm::{StoreAccess, VmService, VmServiceConfig};
use banger_vmm::{
    DriverKind, FirecrackerConfig, FirecrackerDriver, QemuConfig, QemuDriver, VmmDriver,
    choose_driver,
};

use crate::shared_store::SharedStore;

/// The daemon's services.
#[derive(Debug)]
pub struct Services {
    pub vms: Arc<VmService>,
    pub images: Arc<ImageService>,
    pub kvm: KvmProbe,
}

impl Services {
    pub fn build(dirs: &Dirs, store: Arc<SharedStore>, runner: Arc<dyn CommandRunner>) -> Services {
        Services::build_with_keys(dirs, store, runner, None)
    }

    /// Like [`Services::build`], installing `authorized_keys` (banger's public key) as
    /// root's authorized_keys in new guests.
    pub fn build_with_keys(
        dirs: &Dirs,
        store: Arc<SharedStore>,
        runner: Arc<dyn CommandRunner>,
        authorized_keys: Option<String>,
    ) -> Services {
        let kvm = banger_sys::kvm::probe();
        let firecracker = find_on_path("firecracker");
        let driver: Arc<dyn VmmDriver> =
            match choose_driver(kvm.usable_for_guests(), firecracker.clone()) {
                DriverKind::Firecracker => {
                    Arc::new(FirecrackerDriver::new(FirecrackerConfig::new(
                        firecracker.unwrap_or_else(|| PathBuf::from("firecracker")),
                    )))
                }
                DriverKind::Qemu => Arc::new(QemuDriver::new(QemuConfig::detect(PathBuf::from(
                    "qemu-system-x86_64",
                )))),
            };
        // Catalog images are rebuilt from Debian packages on demand and addressed by
        // content, so they live in the cache directory; that also lets several banger
        // installations (e.g. test runs) share one build.
        // Imported, registered and promoted images cannot be rebuilt: they are state.
        let images = Arc::new(
            ImageService::new(dirs.cache.clone(), dirs.cache.clone(), runner.clone())
                .with_catalog(catalog(&dirs.config))
                .with_user_images_dir(dirs.state.join("images"))
                .with_docker_config(docker_config())
                .with_import_limit(import_limit()),
        );
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let config = VmServiceConfig {
            dirs: dirs.clone(),
            agent_binary: agent_binary(),
            limits: SpecLimits {
                max_vcpus: cores,
                max_memory: host_memory(),
            },
            ready_timeout: Duration::from_secs(env_secs("BANGER_READY_TIMEOUT", 300)),
            stop_timeout: Duration::from_secs(10),
            authorized_keys,
            warm_templates: std::env::var("BANGER_WARM_TEMPLATES").map_or(true, |v| v != "0"),
        };
        let vms = VmService::new(config, store, images.clone(), driver, runner);
        if let Some(hook) = crate::crash_at::from_env() {
            vms.set_fault_hook(Some(hook));
        }
        Services { vms, images, kvm }
    }
}

impl StoreAccess for SharedStore {
    fn access(
        &self,
        query: &mut dyn FnMut(&Store) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.access_raw(query)
    }
}

/// The built-in catalog plus the user's entries from `<config>/catalog.json` (same shape:
/// `{"images": [...], "kernels": [...]}`), which may add bundles (URL + sha256) or
/// replace a built-in entry of the same name. An unreadable file is logged and ignored.
fn catalog(config_dir: &Path) -> Catalog {
    let mut catalog = Catalog::builtin();
    let path = config_dir.join("catalog.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return catalog,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the user catalog");
            return catalog;
        }
    };
    #[derive(serde::Deserialize)]
    struct UserCatalog {
        #[serde(default)]
        images: Vec<banger_image::ImageEntry>,
        #[serde(default)]
        kernels: Vec<banger_image::KernelEntry>,
    }
    match serde_json::from_str::<UserCatalog>(&text) {
        Ok(user) => {
            for entry in user.images {
                catalog.images.retain(|e| e.name != entry.name);
                catalog.images.push(entry);
            }
            for entry in user.kernels {
                catalog.kernels.retain(|e| e.name != entry.name);
                catalog.kernels.push(entry);
            }
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an invalid user catalog")
        }
    }
    catalog
}

/// The user's docker `config.json` (registry credentials for `image import`):
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// `BANGER_IMPORT_MAX_BYTES` (a size: bare numbers are MiB): how far an import's layers
/// may expand; 32 GiB by default.
fn import_limit() -> u64 {
    std::env::var("BANGER_IMPORT_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse::<banger_model::ByteSize>().ok())
        .map(|size| size.bytes())
        .unwrap_or(banger_image::oci::import::DEFAULT_MAX_EXPANDED)
}

/// The static guest agent: `BANGER_AGENT`, else `banger-agent` beside this binary.
fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BANGER_AGENT").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("banger-agent")))
        .unwrap_or_else(|| PathBuf::from("banger-agent"))
}

/// The host's memory (`MemTotal` in `/proc/meminfo`); unbounded when it cannot be read,
/// so a host without `/proc` is not refused every VM.
fn host_memory() -> ByteSize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total(&text))
        .unwrap_or(ByteSize(u64::MAX))
}

/// `MemTotal:  24000000 kB` -> bytes.
fn parse_mem_total(meminfo: &str) -> Option<ByteSize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let kib: u64 = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then(|| ByteSize(kib.saturating_mul(1024)))
}

fn env_secs(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_parses() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "MemTotal:       24558916 kB\nMemFree:         6870148 kB\n",
                Some(24_558_916 * 1024),
            ),
            ("MemFree: 1 kB\nMemTotal: 2048 kB\n", Some(2048 * 1024)),
            ("MemTotal: 2048 MB\n", None),
            ("MemTotal: lots kB\n", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_mem_total(text).map(|b| b.bytes()),
                *expected,
                "{text:?}"
            );
        }
    }
}
