//! Pulling a kernel: the newest `linux-image-<series>-N-<flavour>` package is
//! downloaded, unpacked (`dpkg-deb -x`, no install) and given a `modules.dep`
//! (`depmod -b`); then the ELF vmlinux is extracted and the initramfs written, both in
//! Rust. The result lands in `<cache>/kernels/<name>/<version>/` by renaming a finished
//! staging directory, so a second pull of the same version only costs the apt query.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};
use banger_model::progress::ProgressSink;
use serde::{Deserialize, Serialize};

use crate::apt::Apt;
use crate::deb::read_file_from_data_tar;
use crate::error::ImageError;
use crate::initramfs::{self, InitramfsContents, OPTIONAL_MODULES, REQUIRED_MODULES};
use crate::vmlinux::{self, Compression, Extracted};

pub const VMLINUX_FILE: &str = "vmlinux";
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";
/// Version of banger's initramfs recipe (init script, module set). Bump it when either
/// changes, so cached kernels get a fresh initramfs.
pub const INITRAMFS_RECIPE_VERSION: u32 = 3;

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelArtifact {
    /// Catalog name, e.g. `debian-6.1-cloud`.
    pub name: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-41-cloud-amd64`.
    pub version: String,
    /// Uncompressed ELF kernel (Firecracker's format; QEMU boots it through PVH).
    pub vmlinux: PathBuf,
    /// gzip-compressed newc cpio.
    pub initramfs: PathBuf,
}

impl KernelArtifact {
    fn in_dir(name: &str, version: &str, dir: &Path) -> KernelArtifact {
        KernelArtifact {
            name: name.to_string(),
            version: version.to_string(),
            vmlinux: dir.join(VMLINUX_FILE),
            initramfs: dir.join(INITRAMFS_FILE),
        }
    }

    fn is_complete(&self) -> bool {
        self.vmlinux.is_file() && self.initramfs.is_file()
    }
}

/// Where kernels and shared .debs are cached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelCache<'a> {
    pub runner: &'a dyn CommandRunner,
    /// `<cache>/kernels`
    pub kernels_dir: &'a Path,
    /// `<cache>/debs` (busybox-static is shared with image builds).
    pub debs_dir: &'a Path,
}

impl KernelCache<'_> {
    pub async fn pull_debian_package(
        &self,
        name: &str,
        series: &str,
        flavour: &str,
        progress: &dyn ProgressSink,
    ) -> Result<KernelArtifact, ImageError> {
        let apt = Apt {
            runner: self.runner,
        };
        progress.stage_started("resolve kernel package");
        let package = apt.newest_kernel(series, flavour).await?;
        progress.stage_done("resolve kernel package", Some(&package.kernel_version));

        let name_dir = self.kernels_dir.join(name);
        // The initramfs is banger's own build: its recipe version is part of the key,
        // so a changed init script is rebuilt rather than served from the cache.
        let final_dir = name_dir.join(format!(
            "{}-initramfs{INITRAMFS_RECIPE_VERSION}",
            package.kernel_version
        ));
        let cached = KernelArtifact::in_dir(name, &package.kernel_version, &final_dir);
        if cached.is_complete() {
            return Ok(cached);
        }
        fs_err::create_dir_all(&name_dir)?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&name_dir)
            .map_err(ImageError::io(format!(
                "cannot create a staging directory in {}",
                name_dir.display()
            )))?;
        let out_dir = staging.path().join("out");
        let root = staging.path().join("root");
        fs_err::create_dir_all(&out_dir)?;

        progress.stage_started("download");
        let refs = apt
            .deb_refs(&[package.package.clone(), "busybox-static".to_string()])
            .await?;
        let (busybox_refs, kernel_refs): (Vec<_>, Vec<_>) = refs
            .into_iter()
            .partition(|deb| deb.package() == "busybox-static");
        // The kernel .deb is only needed once per version: it stays in the staging
        // directory. busybox-static goes to the shared cache.
        let kernel_deb = apt
            .fetch_debs(&kernel_refs, &staging.path().join("deb"))
            .await?;
        let busybox_deb = apt.fetch_debs(&busybox_refs, self.debs_dir).await?;
        let (Some(kernel_deb), Some(busybox_deb)) = (kernel_deb.first(), busybox_deb.first())
        else {
            return Err(ImageError::MissingDeb {
                package: package.package.clone(),
            });
        };
        progress.stage_done("download", None);

        progress.stage_started("unpack");
        self.runner
            .run(
                &Cmd::new("dpkg-deb")
                    .arg("-x")
                    .arg(kernel_deb)
                    .arg(&root)
                    .timeout(Duration::from_secs(600)),
            )
            .await
            .map_err(ImageError::command("dpkg-deb -x"))?;
        // The package's postinst normally runs depmod; modprobe needs its modules.dep.
        self.runner
            .run(
                &Cmd::new("depmod")
                    .arg("-b")
                    .arg(&root)
                    .arg(&package.kernel_version),
            )
            .await
            .map_err(ImageError::command("depmod"))?;
        progress.stage_done("unpack", None);

        progress.stage_started("extract vmlinux");
        let vmlinuz = root
            .join("boot")
            .join(format!("vmlinuz-{}", package.kernel_version));
        let vmlinux = self.extract_vmlinux(&vmlinuz, staging.path()).await?;
        fs_err::write(out_dir.join(VMLINUX_FILE), &vmlinux)?;
        let size = format!("{} MiB", vmlinux.len() >> 20);
        drop(vmlinux);
        progress.stage_done("extract vmlinux", Some(&size));

        progress.stage_started("build initramfs");
        let busybox_tar = apt.data_tar(busybox_deb).await?;
        let busybox = read_file_from_data_tar(busybox_tar.as_slice(), "bin/busybox")
            .map_err(ImageError::io(format!(
                "cannot read {}",
                busybox_deb.display()
            )))?
            .ok_or_else(|| ImageError::FileNotInDeb {
                deb: busybox_deb.clone(),
                file: "bin/busybox".to_string(),
            })?;
        let modules = self.module_files(&root, &package.kernel_version).await?;
        let mut contents = InitramfsContents {
            busybox,
            modules: Vec::new(),
        };
        for path in &modules {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            contents.modules.push((name, fs_err::read(path)?));
        }
        let module_count = contents.modules.len();
        let initramfs = tokio::task::spawn_blocking(move || initramfs::build_initramfs(&contents))
            .await
            .map_err(ImageError::Join)?
            .map_err(ImageError::io("cannot write the initramfs"))?;
        fs_err::write(out_dir.join(INITRAMFS_FILE), &initramfs)?;
        progress.stage_done(
            "build initramfs",
            Some(&format!(
                "{module_count} modules, {} KiB",
                initramfs.len() >> 10
            )),
        );

        match fs_err::rename(&out_dir, &final_dir) {
            Ok(()) => {}
            // Another pull published the same version first; its files are as good.
            Err(_) if cached.is_complete() => {}
            Err(error) => return Err(error.into()),
        }
        Ok(cached)
    }

    /// The ELF inside `vmlinuz`: LZ4/gzip in process, xz/zstd through the host tools.
    async fn extract_vmlinux(&self, vmlinuz: &Path, scratch: &Path) -> Result<Vec<u8>, ImageError> {
        let image = fs_err::read(vmlinuz)?;
        let (image, found) = tokio::task::spawn_blocking(move || {
            let found = vmlinux::extract_in_process(&image);
            (image, found)
        })
        .await
        .map_err(ImageError::Join)?;
        let candidates = match found {
            Extracted::Elf(elf) => return Ok(elf),
            Extracted::NeedsTool(candidates) => candidates,
        };
        let payload = scratch.join("payload");
        let decoded = scratch.join("payload.out");
        for (offset, format) in candidates {
            fs_err::write(&payload, &image[offset..])?;
            let cmd = match format {
                // --single-stream: stop after the first stream, ignoring what follows it.
                Compression::Xz => Cmd::new("xz").args(["-dc", "--single-stream"]),
                _ => Cmd::new("zstd").args(["-dc"]),
            }
            .arg(&payload)
            .stdout_to_file(&decoded)
            .timeout(Duration::from_secs(300));
            match self.runner.run(&cmd).await {
                // Trailing bytes after the payload make the tools complain after they
                // wrote everything; the ELF check below is what decides.
                Ok(_) | Err(ExecError::Failed { .. }) => {}
                Err(source) => return Err(ImageError::command("decompress vmlinux")(source)),
            }
            let out = fs_err::read(&decoded)?;
            if vmlinux::is_elf(&out) {
                return Ok(out);
            }
        }
        Err(ImageError::Vmlinux {
            path: vmlinuz.to_path_buf(),
            source: vmlinux::VmlinuxError::NoPayload,
        })
    }

    /// Module files for the initramfs in load order, without duplicates.
    async fn module_files(
        &self,
        root: &Path,
        kernel_version: &str,
    ) -> Result<Vec<PathBuf>, ImageError> {
        let mut files: Vec<PathBuf> = Vec::new();
        let wanted = REQUIRED_MODULES
            .iter()
            .map(|m| (m, true))
            .chain(OPTIONAL_MODULES.iter().map(|m| (m, false)));
        for (module, required) in wanted {
            let cmd = Cmd::new("modprobe").arg("-d").arg(root).args([
                "-S",
                kernel_version,
                "--show-depends",
                module,
            ]);
            let out = match self.runner.run(&cmd).await {
                Ok(out) => out,
                Err(source) if required => {
                    return Err(ImageError::ModuleMissing {
                        module: module.to_string(),
                        kernel_version: kernel_version.to_string(),
                        source: Box::new(source),
                    });
                }
                Err(error) => {
                    tracing::info!(%module, %error, "optional kernel module not available");
                    continue;
                }
            };
            for listed in initramfs::parse_show_depends(&out.stdout_text()) {
                let listed = PathBuf::from(listed);
                // modprobe prints paths under -d ROOT; accept root-relative ones too.
                let path = if listed.starts_with(root) {
                    listed
                } else {
                    root.join(listed.strip_prefix("/").unwrap_or(&listed))
                };
                let duplicate = files
                    .iter()
                    .any(|known| known.file_name() == path.file_name());
                if !duplicate {
                    files.push(path);
                }
            }
        }
        Ok(files)
    }
}
