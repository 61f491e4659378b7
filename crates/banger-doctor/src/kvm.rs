//! kvm: turns the host's KVM probe into a check. KVM is never a FAIL: without it (or
//! with PVM's KVM, which stock guest kernels hang under) QEMU guests run under TCG.

use banger_sys::kvm::{KvmDevice, KvmProbe};

use crate::Check;

const NAME: &str = "kvm";

/// The KVM check for a probe; pure.
pub fn check_kvm(probe: &KvmProbe) -> Check {
    let detail = probe.explanation();
    if probe.usable_for_guests() {
        return Check::pass(NAME, detail);
    }
    let hint = if probe.pvm {
        "nothing to fix on this host; for KVM speed and Firecracker, use a host whose CPU \
         exposes VMX/SVM (bare metal, or a VM with nested virtualisation)"
    } else {
        match &probe.device {
            KvmDevice::NoAccess(_) => {
                "give your user access to /dev/kvm: `sudo usermod -aG kvm $USER`, then log \
                 in again"
            }
            KvmDevice::Missing if probe.cpu_virt_flags => {
                "load KVM: `sudo modprobe kvm_intel` (Intel) or `sudo modprobe kvm_amd` (AMD); \
                 check that virtualisation is enabled in the firmware"
            }
            _ => {
                "for KVM speed and Firecracker, use a host whose CPU exposes VMX/SVM (bare \
                 metal, or a VM with nested virtualisation)"
            }
        }
    };
    Check::warn(NAME, detail, hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;
    use banger_sys::kvm::{CpuFlags, KVM_API_VERSION};

    #[test]
    fn kvm_check_table() {
        let present = KvmDevice::Present {
            api_version: KVM_API_VERSION,
        };
        let no_access = KvmDevice::NoAccess("Permission denied (os error 13)".into());
        // (device, vmx/svm, hypervisor flag, kvm_pvm module, status, detail word, hint word)
        let cases = [
            (&present, true, false, false, Status::Pass, "KVM", None),
            (
                &present,
                false,
                true,
                true,
                Status::Warn,
                "TCG",
                Some("nothing to fix"),
            ),
            (
                &no_access,
                true,
                false,
                false,
                Status::Warn,
                "TCG",
                Some("usermod"),
            ),
            (
                &KvmDevice::Missing,
                true,
                false,
                false,
                Status::Warn,
                "TCG",
                Some("modprobe"),
            ),
            (
                &KvmDevice::Missing,
                false,
                true,
                false,
                Status::Warn,
                "TCG",
                Some("nested"),
            ),
        ];
        for (device, virt, hypervisor, module, status, detail_word, hint_word) in cases {
            let probe =
                KvmProbe::from_signals(device.clone(), CpuFlags { virt, hypervisor }, module);
            let check = check_kvm(&probe);
            assert_eq!(check.status, status, "{check:?}");
            assert!(check.detail.contains(detail_word), "{check:?}");
            match hint_word {
                Some(word) => assert!(check.hint.as_deref().unwrap().contains(word), "{check:?}"),
                None => assert!(check.hint.is_none(), "{check:?}"),
            }
        }
    }
}
