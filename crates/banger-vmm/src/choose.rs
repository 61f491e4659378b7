//! Which backend and accelerator to use, as pure functions of host facts the caller
//! probed (`banger_sys::kvm::probe()`, a `firecracker` lookup), so the rules are
//! table-tested.

use std::path::PathBuf;

use crate::handle::{Accelerator, DriverKind};

/// Firecracker when KVM is really usable (not PVM, not missing) and a `firecracker` binary
/// was found on `PATH` or configured; QEMU otherwise, since QEMU also runs without KVM.
pub fn choose_driver(probe_usable_kvm: bool, firecracker_on_path: Option<PathBuf>) -> DriverKind {
    match (probe_usable_kvm, firecracker_on_path) {
        (true, Some(_)) => DriverKind::Firecracker,
        _ => DriverKind::Qemu,
    }
}

/// QEMU uses KVM only when guests can actually run on it; otherwise TCG.
pub fn choose_accelerator(kvm_usable: bool) -> Accelerator {
    if kvm_usable {
        Accelerator::Kvm
    } else {
        Accelerator::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_choice_table() {
        let fc = || Some(PathBuf::from("/usr/bin/firecracker"));
        let cases = [
            (true, fc(), DriverKind::Firecracker),
            (true, None, DriverKind::Qemu),
            (false, fc(), DriverKind::Qemu),
            (false, None, DriverKind::Qemu),
        ];
        for (kvm, firecracker, expected) in cases {
            assert_eq!(
                choose_driver(kvm, firecracker.clone()),
                expected,
                "kvm={kvm} firecracker={firecracker:?}"
            );
        }
    }

    #[test]
    fn accelerator_choice_table() {
        for (kvm, expected) in [(true, Accelerator::Kvm), (false, Accelerator::Tcg)] {
            assert_eq!(choose_accelerator(kvm), expected);
        }
    }

    #[test]
    fn serde_and_display_forms_are_lowercase() {
        let cases = [
            (Accelerator::Kvm, "\"kvm\"", "kvm"),
            (Accelerator::Tcg, "\"tcg\"", "tcg"),
        ];
        for (accel, json, shown) in cases {
            assert_eq!(serde_json::to_string(&accel).unwrap(), json);
            assert_eq!(accel.to_string(), shown);
            assert_eq!(serde_json::from_str::<Accelerator>(json).unwrap(), accel);
        }
        assert_eq!(
            serde_json::to_string(&DriverKind::Firecracker).unwrap(),
            "\"firecracker\""
        );
        assert_eq!(DriverKind::Qemu.to_string(), "qemu");
    }
}
