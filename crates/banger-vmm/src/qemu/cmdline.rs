//! The QEMU command line, built as a pure function of the [`LaunchSpec`] and the host
//! facts the driver resolved (accelerator, TSC rate, where the tap fd lands in the child).
//! The shape is the one proven on PVM hosts under TCG: `-machine microvm` with
//! virtio-mmio devices, ACPI left on (Debian's `virtio_mmio` finds the devices only
//! through the ACPI DSDT; with `acpi=off` QEMU falls back to `virtio_mmio.device=`
//! arguments that Debian kernels ignore, and the guest sees no disk).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::handle::Accelerator;
use crate::spec::LaunchSpec;

/// The virtio-serial port name the guest agent looks up in sysfs.
pub const AGENT_PORT_NAME: &str = "banger.agent";

/// The files QEMU creates in the per-VM run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuPaths {
    pub qmp_socket: PathBuf,
    pub agent_socket: PathBuf,
    pub pid_file: PathBuf,
    pub stderr_log: PathBuf,
}

impl QemuPaths {
    /// The fixed layout inside `run_dir`. Socket names stay short: a Unix socket path
    /// must fit in 108 bytes.
    pub fn in_run_dir(run_dir: &Path) -> QemuPaths {
        QemuPaths {
            qmp_socket: run_dir.join("qmp.sock"),
            agent_socket: run_dir.join("agent.sock"),
            pid_file: run_dir.join("vmm.pid"),
            stderr_log: run_dir.join("vmm.stderr"),
        }
    }
}

/// Host facts the command line depends on, resolved by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuOptions {
    pub accelerator: Accelerator,
    /// The host TSC rate; under TCG it becomes `tsc_early_khz=` (see [`guest_cmdline`]).
    pub tsc_khz: Option<u64>,
    /// The descriptor number at which the child holds the spec's tap fd, when one was
    /// passed; the NIC then uses `fd=N` instead of opening the tap by name.
    pub tap_fd_in_child: Option<i32>,
}

/// The kernel command line QEMU passes: the spec's, plus `tsc_early_khz=` under TCG.
/// Under TCG the guest's RDTSC reads the host TSC, and about one boot in 17 hangs when the
/// guest fails to calibrate it (microvm has no HPET or PM timer to fall back on); telling
/// the guest the rate skips that calibration. Under KVM the guest gets a proper TSC rate.
pub fn guest_cmdline(cmdline: &str, accelerator: Accelerator, tsc_khz: Option<u64>) -> String {
    let cmdline = cmdline.trim();
    match (accelerator, tsc_khz) {
        (Accelerator::Tcg, Some(khz)) if !cmdline.contains("tsc_early_khz=") => {
            if cmdline.is_empty() {
                format!("tsc_early_khz={khz}")
            } else {
                format!("{cmdline} tsc_early_khz={khz}")
            }
        }
        _ => cmdline.to_string(),
    }
}

/// The `-cpu` model and the accelerator's name.
pub fn cpu_and_accel(accelerator: Accelerator) -> (&'static str, &'static str) {
    match accelerator {
        Accelerator::Kvm => ("host", "kvm"),
        Accelerator::Tcg => ("max", "tcg"),
    }
}

/// The arguments after `qemu-system-x86_64`.
///
/// The root disk uses `cache=writeback`: QEMU writes through the host page cache and
/// honours the guest's flushes, so what a guest `fsync`ed survives a QEMU kill or host
/// crash. `cache=unsafe` (the test bed's choice, marginally faster) drops flushes, which
/// is wrong for VMs that live for days. `discard=unmap` lets guest `fstrim` give space
/// back to the sparse disk file.
pub fn qemu_args(spec: &LaunchSpec, options: &QemuOptions, paths: &QemuPaths) -> Vec<OsString> {
    let mut args = Args::default();
    let (cpu, accel) = cpu_and_accel(options.accelerator);
    args.push("-name")
        .push_opt(&[("guest", OsStr::new(&spec.vm_name))]);
    // Under TCG the legacy PIT and PIC are off: with them, about 1 boot in 10 of Debian's
    // cloud kernel died in early boot on a loaded two-core host (a stray interrupt taken
    // as a divide error in start_kernel, seen in a guest memory dump), 6 of 60 in one run
    // against 0 of 160 without them. The guest keeps time with the LAPIC timer and the
    // TSC, and routes interrupts through the IOAPIC. KVM guests keep QEMU's defaults.
    let machine = match options.accelerator {
        Accelerator::Kvm => format!("microvm,accel={accel}"),
        Accelerator::Tcg => format!("microvm,accel={accel},pit=off,pic=off"),
    };
    args.push("-machine").push(machine);
    args.push("-cpu").push(cpu);
    args.push("-m").push(spec.memory_mib.to_string());
    args.push("-smp").push(spec.vcpus.to_string());
    args.push("-nodefaults")
        .push("-no-user-config")
        .push("-no-reboot")
        .push("-display")
        .push("none");

    // The serial console goes to a file chardev (the microvm's isa-serial is ttyS0).
    args.push("-chardev").push_opt(&[
        ("file", OsStr::new("")),
        ("id", OsStr::new("serial0")),
        ("path", spec.serial_log.as_os_str()),
    ]);
    args.push("-serial").push("chardev:serial0");

    // -kernel, -initrd, -append and -pidfile take their value verbatim (no option
    // parsing), so those paths need no comma escaping.
    args.push("-kernel").push(spec.kernel.as_os_str());
    if let Some(initramfs) = &spec.initramfs {
        args.push("-initrd").push(initramfs.as_os_str());
    }
    args.push("-append").push(guest_cmdline(
        &spec.cmdline,
        options.accelerator,
        options.tsc_khz,
    ));

    args.push("-drive").push_opt(&drive_opts(
        OsStr::new("root"),
        spec.root_disk.as_os_str(),
        spec.root_disk_format.as_str(),
    ));
    args.push("-device").push("virtio-blk-device,drive=root");
    for (index, disk) in spec.extra_disks.iter().enumerate() {
        let id = format!("disk{}", index + 1);
        args.push("-drive")
            .push_opt(&drive_opts(OsStr::new(&id), disk.as_os_str(), "raw"));
        args.push("-device")
            .push(format!("virtio-blk-device,drive={id}"));
    }

    args.push("-object")
        .push("rng-random,id=rng0,filename=/dev/urandom");
    args.push("-device").push("virtio-rng-device,rng=rng0");

    if let Some(net) = &spec.net {
        let netdev = match options.tap_fd_in_child {
            Some(fd) => format!("tap,id=n0,fd={fd}"),
            None => format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                escape_opt(OsStr::new(&net.tap_name)).to_string_lossy()
            ),
        };
        args.push("-netdev").push(netdev);
        args.push("-device").push(format!(
            "virtio-net-device,netdev=n0,mac={}",
            escape_opt(OsStr::new(&net.mac)).to_string_lossy()
        ));
    }

    args.push("-device").push("virtio-serial-device");
    args.push("-chardev").push_opt(&[
        ("socket", OsStr::new("")),
        ("id", OsStr::new("agent0")),
        ("path", paths.agent_socket.as_os_str()),
        ("server", OsStr::new("on")),
        ("wait", OsStr::new("off")),
    ]);
    args.push("-device").push(format!(
        "virtserialport,chardev=agent0,name={AGENT_PORT_NAME}"
    ));

    // QMP through an explicit chardev rather than `-qmp unix:PATH,...`, whose legacy
    // syntax cannot carry a path containing a comma.
    args.push("-chardev").push_opt(&[
        ("socket", OsStr::new("")),
        ("id", OsStr::new("qmp0")),
        ("path", paths.qmp_socket.as_os_str()),
        ("server", OsStr::new("on")),
        ("wait", OsStr::new("off")),
    ]);
    args.push("-mon").push("chardev=qmp0,mode=control");
    args.push("-pidfile").push(paths.pid_file.as_os_str());
    args.0
}

/// Doubles commas, QEMU's escape inside `key=value,...` option strings.
pub(crate) fn escape_opt(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) -> &mut Args {
        self.0.push(arg.into());
        self
    }

    /// One `key=value,...` option string; an empty value means a bare leading word such
    /// as the chardev backend (`socket,id=...`).
    fn push_opt(&mut self, pairs: &[(&str, &OsStr)]) -> &mut Args {
        let mut out = OsString::new();
        for (index, (key, value)) in pairs.iter().enumerate() {
            if index > 0 {
                out.push(",");
            }
            out.push(key);
            if !value.is_empty() {
                out.push("=");
                out.push(escape_opt(value));
            }
        }
        self.push(out)
    }
}

/// A `-drive` of a disk only this guest uses. `file.drop-cache=off`: after an incoming
/// migration (a warm restore) QEMU would otherwise flush the file and drop its page
/// cache, which is for disks shared between two hosts; on a disk copied a moment ago
/// that meant writing back its dirty pages first, up to half a second of a restore
/// under TCG measured with `strace -T` (`fadvise64(.., POSIX_FADV_DONTNEED)` 0.517 s).
fn drive_opts<'a>(id: &'a OsStr, file: &'a OsStr, format: &'a str) -> [(&'a str, &'a OsStr); 7] {
    [
        ("id", id),
        ("file", file),
        ("format", OsStr::new(format)),
        ("if", OsStr::new("none")),
        ("cache", OsStr::new("writeback")),
        ("discard", OsStr::new("unmap")),
        ("file.drop-cache", OsStr::new("off")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DiskFormat, NetAttachment};

    fn spec() -> LaunchSpec {
        LaunchSpec {
            vm_name: "web".into(),
            vcpus: 2,
            memory_mib: 512,
            kernel: "/img/vmlinux".into(),
            initramfs: Some("/img/initramfs.cpio.gz".into()),
            cmdline: "console=ttyS0 root=/dev/vda rw".into(),
            root_disk: "/vms/web/root.ext4".into(),
            root_disk_format: DiskFormat::Raw,
            extra_disks: Vec::new(),
            run_dir: "/run/vms/web".into(),
            serial_log: "/vms/web/serial.log".into(),
            net: None,
            outbox: None,
        }
    }

    fn render(spec: &LaunchSpec, options: &QemuOptions) -> String {
        let paths = QemuPaths::in_run_dir(&spec.run_dir);
        qemu_args(spec, options, &paths)
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    const TCG: QemuOptions = QemuOptions {
        accelerator: Accelerator::Tcg,
        tsc_khz: Some(2_596_124),
        tap_fd_in_child: None,
    };

    #[test]
    fn full_tcg_command_line_snapshot() {
        let expected = "-name guest=web -machine microvm,accel=tcg,pit=off,pic=off -cpu max -m 512 -smp 2 \
-nodefaults -no-user-config -no-reboot -display none \
-chardev file,id=serial0,path=/vms/web/serial.log -serial chardev:serial0 \
-kernel /img/vmlinux -initrd /img/initramfs.cpio.gz \
-append console=ttyS0 root=/dev/vda rw tsc_early_khz=2596124 \
-drive id=root,file=/vms/web/root.ext4,format=raw,if=none,cache=writeback,discard=unmap,file.drop-cache=off \
-device virtio-blk-device,drive=root \
-object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-device,rng=rng0 \
-device virtio-serial-device \
-chardev socket,id=agent0,path=/run/vms/web/agent.sock,server=on,wait=off \
-device virtserialport,chardev=agent0,name=banger.agent \
-chardev socket,id=qmp0,path=/run/vms/web/qmp.sock,server=on,wait=off \
-mon chardev=qmp0,mode=control -pidfile /run/vms/web/vmm.pid";
        assert_eq!(render(&spec(), &TCG), expected);
    }

    /// Each case: how the spec/options differ, then fragments that must (and must not)
    /// appear in the rendered command line.
    #[test]
    fn variations_table() {
        struct Case {
            name: &'static str,
            spec: LaunchSpec,
            options: QemuOptions,
            present: &'static [&'static str],
            absent: &'static [&'static str],
        }
        let kvm = QemuOptions {
            accelerator: Accelerator::Kvm,
            tsc_khz: Some(2_596_124),
            tap_fd_in_child: None,
        };
        let cases = vec![
            Case {
                name: "kvm uses the host cpu and no tsc hint",
                spec: spec(),
                options: kvm,
                present: &["-machine microvm,accel=kvm", "-cpu host"],
                absent: &["tsc_early_khz", "accel=tcg", "-cpu max"],
            },
            Case {
                name: "tcg without a known tsc rate adds no hint",
                spec: spec(),
                options: QemuOptions {
                    tsc_khz: None,
                    ..TCG
                },
                present: &["-append console=ttyS0 root=/dev/vda rw -drive"],
                absent: &["tsc_early_khz"],
            },
            Case {
                name: "an extra disk comes after the root disk, raw",
                spec: LaunchSpec {
                    extra_disks: vec!["/vms/web/workspace.ext4".into()],
                    ..spec()
                },
                options: TCG,
                present: &["-device virtio-blk-device,drive=root \
-drive id=disk1,file=/vms/web/workspace.ext4,format=raw,if=none,cache=writeback,discard=unmap,file.drop-cache=off \
-device virtio-blk-device,drive=disk1 -object"],
                absent: &[],
            },
            Case {
                name: "no initramfs",
                spec: LaunchSpec {
                    initramfs: None,
                    ..spec()
                },
                options: TCG,
                present: &["-kernel /img/vmlinux -append"],
                absent: &["-initrd"],
            },
            Case {
                name: "qcow2 root disk",
                spec: LaunchSpec {
                    root_disk: "/vms/web/root.qcow2".into(),
                    root_disk_format: DiskFormat::Qcow2,
                    extra_disks: Vec::new(),
                    ..spec()
                },
                options: TCG,
                present: &["file=/vms/web/root.qcow2,format=qcow2,"],
                absent: &["format=raw"],
            },
            Case {
                name: "tap by name",
                spec: LaunchSpec {
                    net: Some(NetAttachment {
                        tap_name: "bg-web0".into(),
                        tap_fd: None,
                        mac: "52:54:00:00:00:10".into(),
                    }),
                    ..spec()
                },
                options: TCG,
                present: &[
                    "-netdev tap,id=n0,ifname=bg-web0,script=no,downscript=no",
                    "-device virtio-net-device,netdev=n0,mac=52:54:00:00:00:10",
                ],
                absent: &["fd="],
            },
            Case {
                name: "tap by inherited fd",
                spec: LaunchSpec {
                    net: Some(NetAttachment {
                        tap_name: "bg-web0".into(),
                        tap_fd: None,
                        mac: "52:54:00:00:00:11".into(),
                    }),
                    ..spec()
                },
                options: QemuOptions {
                    tap_fd_in_child: Some(0),
                    ..TCG
                },
                present: &[
                    "-netdev tap,id=n0,fd=0 ",
                    "-device virtio-net-device,netdev=n0,mac=52:54:00:00:00:11",
                ],
                absent: &["ifname="],
            },
            Case {
                name: "commas in option-string paths are doubled",
                spec: LaunchSpec {
                    root_disk: "/vms/a,b/root.ext4".into(),
                    serial_log: "/vms/a,b/serial.log".into(),
                    run_dir: "/run/a,b".into(),
                    ..spec()
                },
                options: TCG,
                present: &[
                    "file=/vms/a,,b/root.ext4,format=raw",
                    "path=/vms/a,,b/serial.log -serial",
                    "path=/run/a,,b/agent.sock,server=on",
                    "path=/run/a,,b/qmp.sock,server=on",
                    "-pidfile /run/a,b/vmm.pid",
                ],
                absent: &[],
            },
        ];
        for case in cases {
            let rendered = render(&case.spec, &case.options);
            for fragment in case.present {
                assert!(
                    rendered.contains(fragment),
                    "{}: missing {fragment:?} in {rendered}",
                    case.name
                );
            }
            for fragment in case.absent {
                assert!(
                    !rendered.contains(fragment),
                    "{}: unexpected {fragment:?} in {rendered}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn guest_cmdline_table() {
        let cases = [
            (
                "console=ttyS0",
                Accelerator::Tcg,
                Some(1000),
                "console=ttyS0 tsc_early_khz=1000",
            ),
            ("console=ttyS0 ", Accelerator::Tcg, None, "console=ttyS0"),
            (
                "console=ttyS0",
                Accelerator::Kvm,
                Some(1000),
                "console=ttyS0",
            ),
            ("", Accelerator::Tcg, Some(1000), "tsc_early_khz=1000"),
            // The caller's own value wins; never two conflicting hints.
            (
                "tsc_early_khz=5",
                Accelerator::Tcg,
                Some(1000),
                "tsc_early_khz=5",
            ),
        ];
        for (cmdline, accelerator, tsc, expected) in cases {
            assert_eq!(
                guest_cmdline(cmdline, accelerator, tsc),
                expected,
                "{cmdline:?} {accelerator} {tsc:?}"
            );
        }
    }

    #[test]
    fn every_argument_is_one_token() {
        // -append must stay a single argv entry even though it contains spaces.
        let paths = QemuPaths::in_run_dir(Path::new("/run/vms/web"));
        let args = qemu_args(&spec(), &TCG, &paths);
        let append = args.iter().position(|arg| arg == "-append").unwrap();
        assert_eq!(
            args[append + 1],
            OsString::from("console=ttyS0 root=/dev/vda rw tsc_early_khz=2596124")
        );
    }
}
