//! kvm: what `/dev/kvm` on this host really is, and whether guests can use it.
//!
//! A `/dev/kvm` node is not enough: on PVM hosts (a software KVM implementation that runs
//! inside a VM without VMX/SVM) the device answers `KVM_GET_API_VERSION` like real KVM,
//! but stock guest kernels hang under it, so QEMU must use TCG and Firecracker cannot run.
//! [`probe`] gathers the host signals (the device, the CPU's `vmx`/`svm`/`hypervisor`
//! flags, the `kvm_pvm` module) and [`KvmProbe`] makes the decision as a pure function,
//! so every branch is table-tested. The parsers take strings; the only I/O is file reads
//! and one ioctl behind [`api_version`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The API version every real KVM has reported since Linux 2.6.22.
pub const KVM_API_VERSION: i32 = 12;

const KVM_DEVICE: &str = "/dev/kvm";

/// The module name under which PVM registers (built in or loaded).
const PVM_MODULE: &str = "kvm_pvm";

/// The state of the `/dev/kvm` device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmDevice {
    /// No `/dev/kvm` at all.
    Missing,
    /// The node exists but cannot be opened (why, as the OS said it).
    NoAccess(String),
    /// Opened, and `KVM_GET_API_VERSION` answered.
    Present { api_version: i32 },
}

/// What the host offers for hardware-assisted guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    pub device: KvmDevice,
    /// The CPU advertises `vmx` (Intel) or `svm` (AMD).
    pub cpu_virt_flags: bool,
    /// `/dev/kvm` is (or would be) PVM: the `kvm_pvm` module is present, or a KVM device
    /// exists although the CPU has no VMX/SVM.
    pub pvm: bool,
    /// The CPU advertises the `hypervisor` flag: this host is itself a VM.
    pub nested_hypervisor: bool,
}

impl KvmProbe {
    /// Combines raw host signals into a probe; pure, so the rules are testable.
    pub fn from_signals(device: KvmDevice, cpu_flags: CpuFlags, pvm_module: bool) -> KvmProbe {
        let device_exists = !matches!(device, KvmDevice::Missing);
        KvmProbe {
            pvm: pvm_module || (device_exists && !cpu_flags.virt),
            device,
            cpu_virt_flags: cpu_flags.virt,
            nested_hypervisor: cpu_flags.hypervisor,
        }
    }

    /// True when QEMU can use KVM acceleration and Firecracker can run: a device that
    /// answers with the expected API version, backed by VMX/SVM, and not PVM.
    pub fn usable_for_guests(&self) -> bool {
        matches!(
            self.device,
            KvmDevice::Present {
                api_version: KVM_API_VERSION
            }
        ) && self.cpu_virt_flags
            && !self.pvm
    }

    /// One sentence for `banger doctor` and logs: what was found and what it means.
    pub fn explanation(&self) -> String {
        const TCG: &str = "QEMU guests run under TCG (software emulation, slower); \
                           Firecracker cannot run here";
        if self.usable_for_guests() {
            let nested = if self.nested_hypervisor {
                " (nested virtualisation)"
            } else {
                ""
            };
            return format!(
                "/dev/kvm (API {KVM_API_VERSION}) is backed by VMX/SVM{nested}: QEMU guests \
                 use KVM and Firecracker can run"
            );
        }
        if self.pvm {
            let access = match &self.device {
                KvmDevice::NoAccess(reason) => format!(" and cannot be opened ({reason})"),
                _ => String::new(),
            };
            let cpu = if self.cpu_virt_flags {
                ""
            } else {
                " (no VMX/SVM on this CPU)"
            };
            return format!(
                "/dev/kvm is provided by PVM{cpu}{access}; stock guest kernels hang under \
                 it, so {TCG}"
            );
        }
        match &self.device {
            KvmDevice::Missing if self.cpu_virt_flags => format!(
                "/dev/kvm is missing although the CPU has VMX/SVM (kvm_intel or kvm_amd not \
                 loaded?); {TCG}"
            ),
            KvmDevice::Missing if self.nested_hypervisor => format!(
                "/dev/kvm is missing and this CPU has no VMX/SVM (a VM without nested \
                 virtualisation); {TCG}"
            ),
            KvmDevice::Missing => {
                format!("/dev/kvm is missing and this CPU has no VMX/SVM; {TCG}")
            }
            KvmDevice::NoAccess(reason) => {
                format!("/dev/kvm exists but cannot be opened ({reason}); {TCG}")
            }
            KvmDevice::Present { api_version } if *api_version != KVM_API_VERSION => format!(
                "/dev/kvm reports API version {api_version}, expected {KVM_API_VERSION}; {TCG}"
            ),
            // Present with the right API but without VMX/SVM: `from_signals` marks that as
            // PVM, so only a hand-built probe lands here.
            KvmDevice::Present { .. } => {
                format!("/dev/kvm is present but the CPU has no VMX/SVM; {TCG}")
            }
        }
    }
}

/// The virtualisation-related CPU flags of `/proc/cpuinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFlags {
    /// `vmx` or `svm`.
    pub virt: bool,
    /// `hypervisor`.
    pub hypervisor: bool,
}

/// Reads the flags of the first processor in `/proc/cpuinfo` text (all processors of one
/// host share them). Text without a `flags` line (other arches) gives no flags.
pub fn parse_cpu_flags(cpuinfo: &str) -> CpuFlags {
    let Some(flags) = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "flags").then_some(value)
    }) else {
        return CpuFlags::default();
    };
    let mut result = CpuFlags::default();
    for flag in flags.split_whitespace() {
        match flag {
            "vmx" | "svm" => result.virt = true,
            "hypervisor" => result.hypervisor = true,
            _ => {}
        }
    }
    result
}

/// Module names from `/proc/modules` text (the first field of each line).
pub fn parse_proc_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// True when `kvm_pvm` is among the module names.
pub fn has_pvm_module<'a>(module_names: impl IntoIterator<Item = &'a str>) -> bool {
    module_names.into_iter().any(|name| name == PVM_MODULE)
}

/// Probes the real host. Cheap (a few small reads and one ioctl); never fails: what cannot
/// be read counts as absent.
pub fn probe() -> KvmProbe {
    let cpu_flags = std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| parse_cpu_flags(&text))
        .unwrap_or_default();
    KvmProbe::from_signals(
        probe_device(Path::new(KVM_DEVICE)),
        cpu_flags,
        pvm_module_present(),
    )
}

/// `kvm_pvm` shows up in `/sys/module` whether built in (this host: the kernel has no
/// module support and no `/proc/modules`) or loaded; `/proc/modules` is the fallback for
/// kernels without sysfs module entries.
fn pvm_module_present() -> bool {
    if Path::new("/sys/module").join(PVM_MODULE).exists() {
        return true;
    }
    std::fs::read_to_string("/proc/modules")
        .map(|text| has_pvm_module(parse_proc_modules(&text).iter().map(String::as_str)))
        .unwrap_or(false)
}

fn probe_device(path: &Path) -> KvmDevice {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return KvmDevice::Missing,
        // ENXIO/ENODEV: a stale node with no driver behind it.
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) => {
            return KvmDevice::Missing;
        }
        Err(error) => return KvmDevice::NoAccess(error.to_string()),
    };
    match api_version(&file) {
        Ok(api_version) => KvmDevice::Present { api_version },
        Err(error) => KvmDevice::NoAccess(format!("KVM_GET_API_VERSION failed: {error}")),
    }
}

nix::ioctl_none!(kvm_get_api_version, 0xAE, 0x00);

/// `KVM_GET_API_VERSION` on an open `/dev/kvm`.
pub fn api_version(kvm: &File) -> io::Result<i32> {
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int; the fd is
    // valid for the duration of the call because `kvm` is borrowed.
    let version = unsafe { kvm_get_api_version(kvm.as_raw_fd()) }?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVM_HOST_FLAGS: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\
        flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm cmp_legacy vmmcall\n\
        bugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu svm\n";

    #[test]
    fn cpu_flags_table() {
        let cases: &[(&str, CpuFlags)] = &[
            (
                PVM_HOST_FLAGS,
                CpuFlags {
                    virt: false,
                    hypervisor: true,
                },
            ),
            (
                "flags\t: fpu vmx sse2\n",
                CpuFlags {
                    virt: true,
                    hypervisor: false,
                },
            ),
            (
                "flags : svm hypervisor\n",
                CpuFlags {
                    virt: true,
                    hypervisor: true,
                },
            ),
            // A flag that merely contains "vmx" is not vmx.
            ("flags\t: vmxfoo nosvm\n", CpuFlags::default()),
            // aarch64 cpuinfo has "Features", not "flags".
            ("Features\t: fp asimd evtstrm\n", CpuFlags::default()),
            ("", CpuFlags::default()),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_cpu_flags(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn proc_modules_table() {
        let cases: &[(&str, &[&str], bool)] = &[
            (
                "kvm_pvm 81920 0 - Live 0x0000000000000000\nkvm 1134592 1 kvm_pvm, Live 0x0\n",
                &["kvm_pvm", "kvm"],
                true,
            ),
            (
                "kvm_intel 380928 0 - Live 0x0\nkvm 1134592 1 kvm_intel, Live 0x0\n",
                &["kvm_intel", "kvm"],
                false,
            ),
            ("", &[], false),
        ];
        for (text, names, pvm) in cases {
            let parsed = parse_proc_modules(text);
            assert_eq!(parsed, *names, "{text:?}");
            assert_eq!(has_pvm_module(parsed.iter().map(String::as_str)), *pvm);
        }
    }

    struct DecisionCase {
        device: KvmDevice,
        cpu: CpuFlags,
        pvm_module: bool,
        usable: bool,
        pvm: bool,
        /// Words the explanation must hold.
        words: &'static [&'static str],
    }

    fn case(
        device: &KvmDevice,
        (virt, hypervisor, pvm_module): (bool, bool, bool),
        (usable, pvm): (bool, bool),
        words: &'static [&'static str],
    ) -> DecisionCase {
        DecisionCase {
            device: device.clone(),
            cpu: CpuFlags { virt, hypervisor },
            pvm_module,
            usable,
            pvm,
            words,
        }
    }

    #[test]
    fn decision_table() {
        let present = KvmDevice::Present {
            api_version: KVM_API_VERSION,
        };
        let no_access = KvmDevice::NoAccess("Permission denied (os error 13)".into());
        let missing = KvmDevice::Missing;
        let old_api = KvmDevice::Present { api_version: 11 };
        // Signals are (vmx/svm, hypervisor flag, kvm_pvm module); outcomes (usable, pvm).
        let cases = [
            case(
                &present,
                (true, false, false),
                (true, false),
                &["KVM", "Firecracker can run"],
            ),
            case(&present, (true, true, false), (true, false), &["nested"]),
            // This host: PVM built in, no VMX/SVM, a VM itself.
            case(
                &present,
                (false, true, true),
                (false, true),
                &["PVM", "no VMX/SVM", "TCG", "Firecracker cannot run"],
            ),
            // PVM without the module visible: a device but no VMX/SVM.
            case(
                &present,
                (false, false, false),
                (false, true),
                &["PVM", "TCG"],
            ),
            // kvm_pvm wins even with VMX present: the device is PVM's.
            case(&present, (true, true, true), (false, true), &["PVM", "TCG"]),
            case(
                &no_access,
                (false, true, true),
                (false, true),
                &["PVM", "Permission denied", "TCG"],
            ),
            case(
                &no_access,
                (true, false, false),
                (false, false),
                &["cannot be opened", "Permission denied", "TCG"],
            ),
            case(
                &missing,
                (true, false, false),
                (false, false),
                &["missing", "kvm_intel", "TCG"],
            ),
            case(
                &missing,
                (false, true, false),
                (false, false),
                &["missing", "nested", "TCG"],
            ),
            case(
                &missing,
                (false, false, false),
                (false, false),
                &["missing", "TCG"],
            ),
            case(
                &old_api,
                (true, false, false),
                (false, false),
                &["API version 11", "TCG"],
            ),
        ];
        for case in cases {
            let probe = KvmProbe::from_signals(case.device, case.cpu, case.pvm_module);
            assert_eq!(probe.usable_for_guests(), case.usable, "{probe:?}");
            assert_eq!(probe.pvm, case.pvm, "{probe:?}");
            let text = probe.explanation();
            for word in case.words {
                assert!(text.contains(word), "{probe:?}: {text:?} lacks {word:?}");
            }
        }
    }

    #[test]
    fn missing_device_node_is_missing() {
        let dir = std::env::temp_dir().join(format!("banger-kvm-test-{}", std::process::id()));
        assert_eq!(probe_device(&dir.join("kvm")), KvmDevice::Missing);
    }

    /// On a host without VMX/SVM the real probe must never call KVM usable, whatever
    /// `/dev/kvm` is; with VMX/SVM and an openable device it must report the API version.
    #[test]
    fn real_probe_is_consistent_with_cpuinfo() {
        let probe = probe();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let cpu = parse_cpu_flags(&cpuinfo);
        assert_eq!(probe.cpu_virt_flags, cpu.virt);
        if !cpu.virt {
            assert!(!probe.usable_for_guests(), "{probe:?}");
            assert!(probe.explanation().contains("TCG"));
        }
        if Path::new(KVM_DEVICE).exists() && !cpu.virt {
            assert!(probe.pvm, "{probe:?}");
        }
        println!("{probe:?}\n{}", probe.explanation());
    }
}
