//! confinement: whether the kernel can confine the VMM processes with Landlock (what each
//! VMM may reach: ARCHITECTURE.md "VMM confinement"). Without it banger still works; the
//! VMMs then reach every file the owner can.

use crate::Check;

const NAME: &str = "vmm confinement";

/// The Landlock ABI 6 brought signal and abstract-socket scoping; below it the VMM's
/// files are still confined.
const FULL_ABI: u32 = 6;

/// Probes the kernel and judges the result.
pub fn check_confinement() -> Check {
    judge_confinement(banger_sys::landlock::abi_version())
}

/// The check for a Landlock ABI version (`None`: no Landlock); pure.
pub fn judge_confinement(abi: Option<u32>) -> Check {
    match abi {
        Some(abi) if abi >= FULL_ABI => Check::pass(
            NAME,
            format!("Landlock ABI {abi}: each VMM reaches only its own files"),
        ),
        Some(abi) => Check::warn(
            NAME,
            format!(
                "Landlock ABI {abi}: each VMM reaches only its own files, but may still \
                 signal other processes of the owner"
            ),
            "a kernel of 6.12 or later (Landlock ABI 6) also scopes signals and abstract \
             sockets",
        ),
        None => Check::warn(
            NAME,
            "no Landlock in this kernel: VMMs run unconfined and can read every file the \
             owner can (other VMs' disks, the database, the home)",
            "boot a kernel with CONFIG_SECURITY_LANDLOCK=y and `landlock` in its `lsm=` \
             list (e.g. `lsm=landlock,lockdown,yama,apparmor,bpf` on the kernel command line)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn confinement_check_table() {
        let cases = [
            (Some(7), Status::Pass, "ABI 7", None),
            (Some(6), Status::Pass, "ABI 6", None),
            (Some(3), Status::Warn, "ABI 3", Some("6.12")),
            (None, Status::Warn, "unconfined", Some("lsm=")),
        ];
        for (abi, status, detail_word, hint_word) in cases {
            let check = judge_confinement(abi);
            assert_eq!(check.status, status, "{check:?}");
            assert!(check.detail.contains(detail_word), "{check:?}");
            match hint_word {
                Some(word) => assert!(check.hint.as_deref().unwrap().contains(word), "{check:?}"),
                None => assert!(check.hint.is_none(), "{check:?}"),
            }
        }
    }

    #[test]
    fn this_host_is_probed() {
        let check = check_confinement();
        assert_eq!(check.name, NAME);
    }
}
