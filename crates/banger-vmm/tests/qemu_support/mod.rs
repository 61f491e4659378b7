//! What the tests against a real `qemu-system-x86_64` share: finding QEMU (a recorded
//! skip, fatal under CI=true, when it is missing), a 36-byte multiboot "kernel" that only
//! halts, the TCG driver they drive, and a guard that kills a VMM a failing test left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_vmm::{Accelerator, QemuConfig, QemuDriver, VmmHandle};

/// Kills a launched VMM if the test panics before stopping it (the VMM runs in its own
/// session and would otherwise outlive the test).
pub struct KillOnDrop(u32, u64);

impl KillOnDrop {
    pub fn new(handle: &VmmHandle) -> KillOnDrop {
        KillOnDrop(handle.pid, handle.start_time)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if banger_sys::process::is_same_process_alive(self.0, self.1) {
            let _ = banger_sys::process::send_signal(self.0, libc::SIGKILL);
        }
    }
}

pub fn qemu_binary() -> Option<PathBuf> {
    banger_exec::CLEAN_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(QemuConfig::DEFAULT_BINARY))
        .find(|path| path.exists())
}

/// QEMU's path, or a recorded skip (fatal under CI=true) naming what is missing.
macro_rules! require_qemu {
    () => {
        match qemu_support::qemu_binary() {
            Some(binary) => binary,
            None => banger_requires::skip!(
                "{} is not installed (scripts/install-deps.sh installs it)",
                banger_vmm::QemuConfig::DEFAULT_BINARY
            ),
        }
    };
}
pub(crate) use require_qemu;

/// A multiboot image using the header's address fields (flag bit 16), so no ELF is
/// needed: load at 1 MiB, entry right after the 32-byte header: `cli; hlt; jmp hlt`.
/// The guest ignores the ACPI power button, like a busybox guest without acpid.
pub fn halting_kernel(dir: &Path) -> PathBuf {
    const MAGIC: u32 = 0x1BAD_B002;
    const FLAGS: u32 = 0x0001_0000;
    const LOAD: u32 = 0x0010_0000;
    let checksum = 0u32.wrapping_sub(MAGIC.wrapping_add(FLAGS));
    let mut image = Vec::new();
    for word in [MAGIC, FLAGS, checksum, LOAD, LOAD, 0, 0, LOAD + 32] {
        image.extend_from_slice(&word.to_le_bytes());
    }
    image.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);
    let path = dir.join("halt.bin");
    std::fs::write(&path, image).unwrap();
    path
}

/// The QEMU driver under TCG, with a fixed TSC rate.
pub fn driver(binary: PathBuf, launch_timeout: Duration) -> QemuDriver {
    QemuDriver::new(QemuConfig {
        binary,
        accelerator: Accelerator::Tcg,
        tsc_khz: Some(2_000_000),
        launch_timeout,
    })
}
