//! tools: the external programs banger runs, found by asking each for its version. A
//! [`Tool`] row says how to ask, how bad it is when the tool is missing, the oldest
//! version that works and how to install it; [`judge_tool`] turns a probe into a check
//! without I/O.

use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};

use crate::version::{Version, parse_version};
use crate::{Check, Status};

/// A version probe answers at once; a tool that hangs is broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One tool banger depends on.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The check's name.
    pub name: &'static str,
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// What banger uses it for, said when it is missing or broken.
    pub purpose: &'static str,
    /// The status when the tool is missing or does not run.
    pub missing: Status,
    /// How to install (or upgrade) it.
    pub install: &'static str,
    /// The oldest version that works, and why.
    pub minimum: Option<(Version, &'static str)>,
}

const BACKPORTS_QEMU: &str = "sudo apt-get install -t bookworm-backports qemu-system-x86";
const BACKPORTS_E2FSPROGS: &str = "sudo apt-get install -t bookworm-backports e2fsprogs";

pub const QEMU: Tool = Tool {
    name: "qemu",
    program: "qemu-system-x86_64",
    args: &["--version"],
    purpose: "the VMM that runs guests",
    missing: Status::Fail,
    install: BACKPORTS_QEMU,
    minimum: None,
};

pub const QEMU_IMG: Tool = Tool {
    name: "qemu-img",
    program: "qemu-img",
    args: &["--version"],
    purpose: "copy-on-write disk overlays for QEMU guests",
    missing: Status::Fail,
    install: "sudo apt-get install -t bookworm-backports qemu-utils",
    minimum: None,
};

pub const FIRECRACKER: Tool = Tool {
    name: "firecracker",
    program: "firecracker",
    args: &["--version"],
    purpose: "Firecracker guests, which banger runs only on hosts with real (VMX/SVM) KVM",
    missing: Status::Warn,
    install: "install a release binary from \
              https://github.com/firecracker-microvm/firecracker/releases into /usr/local/bin",
    minimum: None,
};

pub const E2FSPROGS: Tool = Tool {
    name: "e2fsprogs",
    program: "mkfs.ext4",
    args: &["-V"],
    purpose: "building guest disk images",
    missing: Status::Fail,
    install: BACKPORTS_E2FSPROGS,
    minimum: Some((
        Version::new(1, 47, 1),
        "`mkfs.ext4 -d` with a tarball, which image builds use",
    )),
};

pub const DEBUGFS: Tool = Tool {
    name: "debugfs",
    program: "debugfs",
    args: &["-V"],
    purpose: "writing keys and settings into guest images without mounting them",
    missing: Status::Fail,
    install: BACKPORTS_E2FSPROGS,
    minimum: None,
};

pub const GIT: Tool = Tool {
    name: "git",
    program: "git",
    args: &["--version"],
    purpose: "importing a repository into a guest and exporting its changes",
    missing: Status::Fail,
    install: "sudo apt-get install git",
    minimum: None,
};

pub const SSH: Tool = Tool {
    name: "ssh",
    program: "ssh",
    args: &["-V"],
    purpose: "`banger vm ssh`",
    missing: Status::Warn,
    install: "sudo apt-get install openssh-client",
    minimum: None,
};

pub const NFTABLES: Tool = Tool {
    name: "nftables",
    program: "nft",
    args: &["--version"],
    purpose: "NAT so guests reach the network",
    missing: Status::Warn,
    install: "sudo apt-get install nftables",
    minimum: None,
};

pub const MMDEBSTRAP: Tool = Tool {
    name: "mmdebstrap",
    program: "mmdebstrap",
    args: &["--version"],
    purpose: "building the debian-bookworm image",
    missing: Status::Warn,
    install: "sudo apt-get install mmdebstrap",
    minimum: None,
};

/// What running the version command gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolProbe {
    /// It ran; stdout and stderr together (some tools print the version on stderr).
    Ran(String),
    /// The program is not installed.
    NotFound,
    /// It exists but failed, with the error as text.
    Broken(String),
}

/// Asks `tool` for its version through `runner` and judges the answer.
pub async fn check_tool(runner: &dyn CommandRunner, tool: &Tool) -> Check {
    let cmd = Cmd::new(tool.program)
        .args(tool.args.iter().copied())
        .timeout(PROBE_TIMEOUT);
    judge_tool(tool, &probe_result(runner.run(&cmd).await))
}

fn probe_result(result: Result<banger_exec::CmdOutput, ExecError>) -> ToolProbe {
    match result {
        Ok(output) => {
            let mut text = output.stdout_text();
            text.push('\n');
            text.push_str(&output.stderr_text());
            ToolProbe::Ran(text)
        }
        Err(error) if error.is_not_found() => ToolProbe::NotFound,
        Err(error) => ToolProbe::Broken(error.to_string()),
    }
}

/// The check for a tool from its probe; pure.
pub fn judge_tool(tool: &Tool, probe: &ToolProbe) -> Check {
    let text = match probe {
        ToolProbe::NotFound => {
            return Check::not_passing(
                tool.name,
                tool.missing,
                format!("{} not found; needed for {}", tool.program, tool.purpose),
                tool.install,
            );
        }
        ToolProbe::Broken(error) => {
            return Check::not_passing(
                tool.name,
                tool.missing,
                format!(
                    "{} does not run ({error}); needed for {}",
                    tool.program, tool.purpose
                ),
                format!("reinstall it: {}", tool.install),
            );
        }
        ToolProbe::Ran(text) => text,
    };
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or(tool.program);
    let Some(version) = parse_version(text) else {
        return Check::warn(
            tool.name,
            format!(
                "{} runs but its version is unreadable: {first_line}",
                tool.program
            ),
            format!("check that `{}` is the expected program", tool.program),
        );
    };
    match tool.minimum {
        Some((minimum, needed_for)) if version < minimum => Check::not_passing(
            tool.name,
            Status::Fail,
            format!("{first_line}: {minimum} or newer is needed for {needed_for}"),
            tool.install,
        ),
        _ => Check::pass(tool.name, first_line),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use banger_exec::CmdOutput;
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;

    /// A runner that answers per program name, and says "not found" for the rest.
    #[derive(Debug, Default)]
    pub(crate) struct FakeRunner {
        answers: HashMap<String, FakeAnswer>,
    }

    #[derive(Debug, Clone)]
    pub(crate) enum FakeAnswer {
        Stdout(String),
        Stderr(String),
        ExitCode(i32, String),
    }

    impl FakeRunner {
        pub(crate) fn with(mut self, program: &str, answer: FakeAnswer) -> FakeRunner {
            self.answers.insert(program.to_owned(), answer);
            self
        }
    }

    impl CommandRunner for FakeRunner {
        fn run<'a>(
            &'a self,
            cmd: &'a Cmd,
        ) -> Pin<Box<dyn Future<Output = Result<CmdOutput, ExecError>> + Send + 'a>> {
            let command = cmd.display();
            let answer = self.answers.get(&*cmd.program().to_string_lossy()).cloned();
            Box::pin(async move {
                match answer {
                    Some(FakeAnswer::Stdout(text)) => Ok(CmdOutput {
                        stdout: text.into_bytes(),
                        stderr: Vec::new(),
                    }),
                    Some(FakeAnswer::Stderr(text)) => Ok(CmdOutput {
                        stdout: Vec::new(),
                        stderr: text.into_bytes(),
                    }),
                    Some(FakeAnswer::ExitCode(code, stderr)) => Err(ExecError::Failed {
                        command,
                        status: format!("exit code {code}"),
                        code: Some(code),
                        stdout: Vec::new(),
                        stderr,
                    }),
                    None => Err(ExecError::Spawn {
                        command,
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    }),
                }
            })
        }
    }

    use FakeAnswer::{ExitCode, Stderr, Stdout};

    #[tokio::test]
    async fn tool_checks_through_a_fake_runner() {
        let runner = FakeRunner::default()
            .with(
                "qemu-system-x86_64",
                Stdout("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright".into()),
            )
            .with("mkfs.ext4", Stderr("mke2fs 1.47.0 (5-Feb-2023)\n".into()))
            .with("debugfs", Stderr("debugfs 1.47.2 (1-Jan-2025)\n".into()))
            .with(
                "ssh",
                Stderr("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19\n".into()),
            )
            .with("git", Stdout("git version 2.47.3\n".into()))
            .with(
                "nft",
                ExitCode(1, "nft: error while loading shared libraries".into()),
            )
            .with(
                "mmdebstrap",
                Stdout("mmdebstrap (development build)\n".into()),
            );
        // (tool, status, words in the detail, words in the hint)
        let cases: &[(&Tool, Status, &[&str], &[&str])] = &[
            (&QEMU, Status::Pass, &["QEMU emulator version 10.0.2"], &[]),
            (
                &QEMU_IMG,
                Status::Fail,
                &["qemu-img not found"],
                &["bookworm-backports", "qemu-utils"],
            ),
            (
                &FIRECRACKER,
                Status::Warn,
                &["not found", "real (VMX/SVM) KVM"],
                &["releases"],
            ),
            // Old e2fsprogs: mkfs.ext4 -d cannot read a tarball.
            (
                &E2FSPROGS,
                Status::Fail,
                &["mke2fs 1.47.0", "1.47.1 or newer", "tarball"],
                &["apt-get install -t bookworm-backports e2fsprogs"],
            ),
            (&DEBUGFS, Status::Pass, &["debugfs 1.47.2"], &[]),
            (&SSH, Status::Pass, &["OpenSSH_9.2p1"], &[]),
            (&GIT, Status::Pass, &["git version 2.47.3"], &[]),
            (
                &NFTABLES,
                Status::Warn,
                &["nft does not run", "shared libraries"],
                &["reinstall", "nftables"],
            ),
            (
                &MMDEBSTRAP,
                Status::Warn,
                &["unreadable", "development build"],
                &["mmdebstrap"],
            ),
        ];
        for (tool, status, detail_words, hint_words) in cases {
            let check = check_tool(&runner, tool).await;
            assert_eq!(check.name, tool.name);
            assert_eq!(check.status, *status, "{check:?}");
            for word in *detail_words {
                assert!(check.detail.contains(word), "{check:?} lacks {word:?}");
            }
            let hint = check.hint.clone().unwrap_or_default();
            for word in *hint_words {
                assert!(hint.contains(word), "{check:?} lacks {word:?}");
            }
            assert_eq!(check.hint.is_some(), *status != Status::Pass, "{check:?}");
        }
    }

    #[test]
    fn qemu_missing_has_the_backports_hint() {
        let check = judge_tool(&QEMU, &ToolProbe::NotFound);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.hint.as_deref(),
            Some("sudo apt-get install -t bookworm-backports qemu-system-x86")
        );
    }

    #[test]
    fn e2fsprogs_minimum_table() {
        let cases = [
            ("mke2fs 1.46.2 (28-Feb-2021)", Status::Fail),
            ("mke2fs 1.47.0 (5-Feb-2023)", Status::Fail),
            ("mke2fs 1.47.1 (20-May-2024)", Status::Pass),
            ("mke2fs 1.47.2 (1-Jan-2025)", Status::Pass),
            ("mke2fs 1.48.0 (1-Jan-2027)", Status::Pass),
        ];
        for (text, status) in cases {
            let check = judge_tool(&E2FSPROGS, &ToolProbe::Ran(format!("\n{text}\n")));
            assert_eq!(check.status, status, "{check:?}");
            assert!(check.detail.starts_with(text), "{check:?}");
        }
    }
}
