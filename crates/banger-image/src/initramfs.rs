//! The initramfs every kernel gets: busybox-static (from its Debian package), `/init`
//! (mounts, `insmod`s the virtio modules, applies `ip=`, `switch_root`s), the modules in
//! dependency order and `/dev/console`, written as gzip-compressed newc cpio. The module
//! order is computed on the host with `modprobe --show-depends` against the unpacked
//! kernel, so the guest needs no modprobe and no modules.dep.

use std::io::Write;

use crate::cpio::CpioWriter;

/// The `/init` script.
pub const INIT_SCRIPT: &str = include_str!("../assets/initramfs-init");

/// Modules the guest needs, by `modprobe` name. Transports: virtio_mmio (QEMU microvm,
/// Firecracker) and virtio_pci (q35/pc); devices: block, net, console (virtio-serial,
/// the agent channel), rng; ext4 is built into the cloud kernel (then modprobe says
/// "builtin") and a module elsewhere.
pub const REQUIRED_MODULES: [&str; 7] = [
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    "ext4",
];

/// Added when the kernel has them: the virtio-vsock transport Firecracker's agent
/// channel uses.
pub const OPTIONAL_MODULES: [&str; 1] = ["vmw_vsock_virtio_transport"];

/// The module files `modprobe --show-depends` lists, in load order (`insmod PATH`
/// lines; `builtin NAME` lines need nothing).
pub fn parse_show_depends(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("insmod"))
                .then(|| words.next())
                .flatten()
        })
        .map(str::to_string)
        .collect()
}

/// What goes into the initramfs besides the fixed files.
#[derive(Debug, Clone, Default)]
pub struct InitramfsContents {
    /// The static busybox binary.
    pub busybox: Vec<u8>,
    /// `(file name, bytes)` of each module, in load order.
    pub modules: Vec<(String, Vec<u8>)>,
}

/// Writes the gzip-compressed cpio archive.
pub fn build_initramfs(contents: &InitramfsContents) -> std::io::Result<Vec<u8>> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut cpio = CpioWriter::new(gzip);
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "newroot",
        "proc",
        "sys",
    ] {
        cpio.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console before /init runs (and before devtmpfs exists).
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("bin/busybox", 0o755, &contents.busybox)?;
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    let mut order = String::new();
    for (name, data) in &contents.modules {
        cpio.file(&format!("lib/modules/{name}"), 0o644, data)?;
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("etc/modules.order", 0o644, order.as_bytes())?;
    let mut gzip = cpio.finish()?;
    gzip.flush()?;
    gzip.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn show_depends_lines() {
        let output = "\
insmod /k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio_ring.ko 
insmod /k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko
builtin ext4
insmod /k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/char/hw_random/virtio-rng.ko opt=1
";
        assert_eq!(
            parse_show_depends(output),
            [
                "/k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio_ring.ko",
                "/k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko",
                "/k/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/char/hw_random/virtio-rng.ko",
            ]
        );
        assert!(parse_show_depends("builtin ext4\n").is_empty());
    }

    #[test]
    fn archive_holds_init_busybox_modules_and_console() {
        let contents = InitramfsContents {
            busybox: b"BUSYBOX".to_vec(),
            modules: vec![
                ("a.ko".into(), b"A".to_vec()),
                ("b.ko".into(), b"B".to_vec()),
            ],
        };
        let gz = build_initramfs(&contents).unwrap();
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut cpio)
            .unwrap();
        let text = String::from_utf8_lossy(&cpio);
        for name in [
            "bin/busybox\0",
            "init\0",
            "lib/modules/a.ko\0",
            "dev/console\0",
            "etc/modules.order\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name}");
        }
        assert!(text.contains("a.ko\nb.ko\n"));
        assert!(text.contains("switch_root"));
    }
}
