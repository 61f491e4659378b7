//! Pulls the real `debian-6.1-cloud` kernel from the host's apt sources and checks the
//! artifacts: an ELF vmlinux and a gzip-compressed newc initramfs with `/init`, busybox
//! and the virtio modules. A second pull of the same version is a cache hit.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use banger_exec::SystemRunner;
use banger_image::{DEFAULT_KERNEL, ImageService};
use banger_requires::require;
use common::RecordingProgress;

/// `(name, mode)` of each entry of a newc archive.
fn newc_entries(mut bytes: &[u8]) -> Vec<(String, u32)> {
    let mut entries = Vec::new();
    while bytes.len() >= 110 && &bytes[..6] == b"070701" {
        let field = |i: usize| {
            usize::from_str_radix(
                std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap(),
                16,
            )
            .unwrap()
        };
        let (mode, size, name_size) = (field(1), field(6), field(11));
        let name = String::from_utf8_lossy(&bytes[110..110 + name_size - 1]).into_owned();
        let data = (110 + name_size).div_ceil(4) * 4;
        let next = (data + size).div_ceil(4) * 4;
        bytes = &bytes[next.min(bytes.len())..];
        if name == "TRAILER!!!" {
            break;
        }
        entries.push((name, mode as u32));
    }
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn kernel_pull_gives_elf_vmlinux_and_initramfs() {
    require!(
        Tool("apt-get"),
        Tool("apt-cache"),
        Tool("dpkg-deb"),
        Tool("depmod"),
        Tool("modprobe"),
        AptLists
    );
    let dir = tempfile::tempdir().unwrap();
    let service = ImageService::new(
        dir.path().join("cache"),
        dir.path().join("state"),
        Arc::new(SystemRunner),
    );
    let progress = RecordingProgress::default();
    let started = Instant::now();
    let kernel = service
        .pull_kernel(DEFAULT_KERNEL, &progress)
        .await
        .unwrap();
    let cold = started.elapsed();

    assert_eq!(kernel.name, DEFAULT_KERNEL);
    assert!(
        kernel.version.starts_with("6.1.0-") && kernel.version.ends_with("-cloud-amd64"),
        "{}",
        kernel.version
    );
    assert_eq!(
        kernel.vmlinux,
        dir.path()
            .join("cache/kernels")
            .join(DEFAULT_KERNEL)
            .join(format!(
                "{}-initramfs{}",
                kernel.version,
                banger_image::INITRAMFS_RECIPE_VERSION
            ))
            .join("vmlinux")
    );
    let vmlinux = fs_err::read(&kernel.vmlinux).unwrap();
    assert_eq!(&vmlinux[..4], b"\x7fELF");
    assert!(
        vmlinux.len() > 20 << 20,
        "vmlinux is only {} bytes",
        vmlinux.len()
    );

    let gz = fs_err::read(&kernel.initramfs).unwrap();
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut cpio)
        .unwrap();
    let entries = newc_entries(&cpio);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in ["init", "bin/busybox", "etc/modules.order", "dev/console"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let console = entries.iter().find(|(n, _)| n == "dev/console").unwrap();
    assert_eq!(
        console.1 & 0o170000,
        0o020000,
        "dev/console is not a char device"
    );
    for module in [
        "virtio_blk.ko",
        "virtio_net.ko",
        "virtio_mmio.ko",
        "virtio_console.ko",
    ] {
        assert!(
            names.contains(&format!("lib/modules/{module}").as_str()),
            "{module} missing from {names:?}"
        );
    }
    assert_eq!(
        progress.stages_done(),
        [
            "resolve kernel package",
            "download",
            "unpack",
            "extract vmlinux",
            "build initramfs"
        ]
    );
    // No staging directory is left behind.
    let leftovers: Vec<_> = fs_err::read_dir(dir.path().join("cache/kernels").join(DEFAULT_KERNEL))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        [format!(
            "{}-initramfs{}",
            kernel.version,
            banger_image::INITRAMFS_RECIPE_VERSION
        )]
    );

    let started = Instant::now();
    let again_progress = RecordingProgress::default();
    let again = service
        .pull_kernel(DEFAULT_KERNEL, &again_progress)
        .await
        .unwrap();
    let warm = started.elapsed();
    assert_eq!(again, kernel);
    assert_eq!(again_progress.stages_done(), ["resolve kernel package"]);
    eprintln!(
        "kernel {}: cold pull {:.1}s, cached pull {:.2}s, vmlinux {} MiB, initramfs {} KiB; stages: {}",
        kernel.version,
        cold.as_secs_f64(),
        warm.as_secs_f64(),
        vmlinux.len() >> 20,
        gz.len() >> 10,
        progress.timing_summary()
    );
}
