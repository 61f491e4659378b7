//! early_boot: tells a guest that failed before its kernel reached userspace (or whose
//! initramfs arrived damaged) from a guest whose image or kernel is wrong, so the boot
//! path can retry the first kind and report the second at once.
//!
//! Why this exists: under QEMU TCG on a loaded host, a small share of boots of Debian's
//! cloud kernel die in early boot with nothing on the console, or find their initramfs
//! corrupted when it is unpacked ("Initramfs unpacking failed: no cpio magic"). Both were
//! reproduced with plain `qemu-system-x86_64` and no banger involved; turning microvm's
//! legacy PIT and PIC off under TCG removed most of them (see `banger-vmm`'s command
//! line), and a bounded retry covers the rest. A retried boot is logged and shown in the
//! boot stage's detail, never hidden.

/// How many times a boot that failed in early boot is attempted in all.
pub(crate) const BOOT_ATTEMPTS: u32 = 3;

/// What the kernel prints when it hands over to the initramfs's `/init`.
const REACHED_INIT: &str = "Run /init as init process";
/// What the kernel prints when the initramfs it was given does not unpack.
const BAD_INITRAMFS: &str = "Initramfs unpacking failed";

/// Why a failed boot is worth another attempt, from the guest's serial console; `None`
/// when the console shows a failure that would happen again (a panic after `/init` ran,
/// a root file system that does not mount on an intact initramfs).
pub(crate) fn retryable(console: &str) -> Option<&'static str> {
    if console.contains(BAD_INITRAMFS) {
        return Some("the initramfs arrived damaged");
    }
    if !console.contains(REACHED_INIT) {
        return Some("the guest kernel stopped before reaching its initramfs");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_failures_are_retried_and_image_failures_are_not() {
        let table: &[(&str, Option<&str>)] = &[
            ("", Some("before reaching")),
            (
                "[ 0.0] Linux version 6.1\n[ 0.2] Kernel command line: console=ttyS0",
                Some("before reaching"),
            ),
            (
                "[ 1.5] Initramfs unpacking failed: no cpio magic\n[ 2.0] Run /init as init process\n\
                 initramfs: cannot boot: root /dev/vda not found",
                Some("damaged"),
            ),
            (
                "[ 1.9] Run /init as init process\ninitramfs: switch_root to /dev/vda\n\
                 Kernel panic - not syncing: Attempted to kill init!",
                None,
            ),
            (
                "[ 1.9] Run /init as init process\ninitramfs: cannot boot: mounting /dev/vda failed",
                None,
            ),
        ];
        for (console, want) in table {
            let got = retryable(console);
            match want {
                Some(fragment) => assert!(
                    got.is_some_and(|reason| reason.contains(fragment)),
                    "{console:?}: {got:?}"
                ),
                None => assert_eq!(got, None, "{console:?}"),
            }
        }
    }
}
