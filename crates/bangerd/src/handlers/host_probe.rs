//! What `health` reports about the host: which VMM binaries are installed and which
//! accelerator new QEMU guests would get. The accelerator check here is deliberately
//! simple (a usable `/dev/kvm` and hardware virtualisation flags in `/proc/cpuinfo`); a
//! stricter probe that boots a tiny guest belongs in `banger-sys`.

use std::time::Duration;

use banger_api::types::DriverStatus;
use banger_exec::{Cmd, CommandRunner};

use crate::errors;

/// How long a `--version` probe may take before the driver counts as broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accelerator QEMU guests get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// Decides the accelerator from the host: KVM only when it can run stock guest kernels
/// (`banger_sys::kvm::probe` tells real KVM from PVM and friends).
pub fn detect_accelerator() -> Accelerator {
    if banger_sys::kvm::probe().usable_for_guests() {
        Accelerator::Kvm
    } else {
        Accelerator::Tcg
    }
}

/// True when a `flags` line of `/proc/cpuinfo` lists `vmx` (Intel) or `svm` (AMD).
pub fn cpuinfo_has_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, flags)| {
            flags
                .split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
}

/// Probes both VMM drivers. Firecracker needs KVM, so it is only available with it.
pub async fn probe_drivers(
    runner: &dyn CommandRunner,
    accelerator: Accelerator,
) -> Vec<DriverStatus> {
    let qemu = probe_binary(runner, "qemu", "qemu-system-x86_64").await;
    let mut firecracker = probe_binary(runner, "firecracker", "firecracker").await;
    if firecracker.available && accelerator != Accelerator::Kvm {
        firecracker.available = false;
        firecracker.detail = format!(
            "{}; unusable here: Firecracker needs KVM with hardware virtualisation",
            firecracker.detail
        );
    }
    vec![qemu, firecracker]
}

async fn probe_binary(runner: &dyn CommandRunner, name: &str, program: &str) -> DriverStatus {
    let cmd = Cmd::new(program).arg("--version").timeout(PROBE_TIMEOUT);
    match runner.run(&cmd).await {
        Ok(output) => DriverStatus {
            name: name.to_string(),
            available: true,
            detail: first_line(&output.stdout_text())
                .unwrap_or(program)
                .to_string(),
        },
        Err(error) if error.is_not_found() => DriverStatus {
            name: name.to_string(),
            available: false,
            detail: format!("{program} not found on PATH"),
        },
        Err(error) => DriverStatus {
            name: name.to_string(),
            available: false,
            detail: errors::chain(&error),
        },
    }
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_exec::{CmdOutput, ExecError};
    use std::future::Future;
    use std::pin::Pin;

    #[test]
    fn virtualization_flags_are_found_only_in_flags_lines() {
        let cases = [
            ("flags\t\t: fpu vme de pse vmx sse\n", true),
            ("flags\t\t: fpu svm\n", true),
            ("flags\t\t: fpu vme de pse sse hypervisor\n", false),
            // `vmx` inside another flag or another field does not count.
            ("flags\t\t: vmx_ept fpu\nmodel name\t: vmx svm\n", false),
            ("", false),
        ];
        for (cpuinfo, expected) in cases {
            assert_eq!(cpuinfo_has_virtualization(cpuinfo), expected, "{cpuinfo:?}");
        }
    }

    /// Answers `qemu-system-x86_64 --version` and claims every other program is missing.
    #[derive(Debug)]
    struct OnlyQemu;

    impl CommandRunner for OnlyQemu {
        fn run<'a>(
            &'a self,
            cmd: &'a Cmd,
        ) -> Pin<Box<dyn Future<Output = Result<CmdOutput, ExecError>> + Send + 'a>> {
            let program = cmd.program().to_string_lossy().into_owned();
            Box::pin(async move {
                if program == "qemu-system-x86_64" {
                    Ok(CmdOutput {
                        stdout: b"QEMU emulator version 10.0.2\nCopyright\n".to_vec(),
                        stderr: Vec::new(),
                    })
                } else {
                    Err(ExecError::Spawn {
                        command: program,
                        source: std::io::ErrorKind::NotFound.into(),
                    })
                }
            })
        }
    }

    #[tokio::test]
    async fn drivers_report_version_or_absence() {
        let drivers = probe_drivers(&OnlyQemu, Accelerator::Tcg).await;
        assert_eq!(
            drivers,
            vec![
                DriverStatus {
                    name: "qemu".into(),
                    available: true,
                    detail: "QEMU emulator version 10.0.2".into(),
                },
                DriverStatus {
                    name: "firecracker".into(),
                    available: false,
                    detail: "firecracker not found on PATH".into(),
                },
            ]
        );
    }
}
