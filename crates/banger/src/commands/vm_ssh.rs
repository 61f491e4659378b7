//! `vm ssh`: asks the daemon how to reach the guest (`vm.ssh_target`) and runs the system
//! `ssh` with banger's key and known_hosts file. The session is interactive, so ssh gets
//! this terminal and environment as they are; that is why it does not go through a
//! captured-output command runner.

use std::process::ExitCode;

use banger_api::methods::{SshTarget, VmRef, VmSshTarget};
use clap::Args;

use crate::cli::VmArg;
use crate::commands::{guest_exit, vm_wait};
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::progress::Progress;
use crate::render;

/// Open an ssh session in a VM, or run a command over ssh
#[derive(Debug, Args)]
#[command(
    long_about = "Open an interactive ssh session in a running VM as root, with banger's \
own key and known_hosts file (nothing is added to ~/.ssh). Arguments after `--` go to ssh \
after the destination: a remote command, or more ssh options.

`vm exec` runs a command through the guest agent instead (no ssh, output streamed, exit \
code kept). `banger ssh-config --install` lets plain `ssh <name>.vm` work too.

A VM that is still booting is waited for, and so is the guest's sshd right after a boot \
(a stage line says what is awaited), up to `--timeout` seconds for the boot.",
    after_help = "\
Examples:
  banger vm ssh web
  banger vm ssh web -- uptime
  banger vm ssh web -- -L 8080:localhost:80"
)]
pub struct SshArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Seconds to wait for a VM that is still booting
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Arguments for ssh after the destination (a remote command or options)
    #[arg(last = true, value_name = "SSH_ARGS")]
    pub args: Vec<String>,
}

/// `vm ssh`.
pub async fn ssh(ctx: &Ctx, args: SshArgs) -> Result<ExitCode, CliError> {
    let mut daemon = ctx.connect().await?;
    vm_wait::until_running(
        ctx,
        &mut daemon,
        &args.vm.vm,
        vm_wait::timeout(args.timeout),
    )
    .await?;
    let target = target(ctx, &mut daemon, &args.vm.vm).await?;
    session(&target, &args.args).await
}

/// How to reach `vm` over ssh; the daemon waits for a guest's sshd that is still coming
/// up and says so as a stage, drawn here.
pub async fn target(ctx: &Ctx, daemon: &mut Daemon, vm: &str) -> Result<SshTarget, CliError> {
    let mut progress = Progress::new(&ctx.term);
    let target = daemon
        .call::<VmSshTarget>(&VmRef { vm: vm.to_owned() }, &mut progress.sink())
        .await;
    progress.finish();
    target
}

/// Waits (at most `limit`) until the guest's sshd answers, for `vm run -d`; says plainly
/// when it is still coming up. A VM without ssh (no network) is not waited for.
pub async fn wait_for_ssh(ctx: &Ctx, daemon: &mut Daemon, vm: &str, limit: std::time::Duration) {
    match tokio::time::timeout(limit, target(ctx, daemon, vm)).await {
        Ok(_) => {}
        Err(_) => render::note(&format!(
            "ssh in {vm} is still coming up; `banger vm ssh {vm}` waits for it"
        )),
    }
}

/// The arguments for `ssh` (without the program name): banger's key, known_hosts file
/// and host key alias `<name>.vm`, then the destination, then `extra`.
pub fn ssh_argv(target: &SshTarget, extra: &[String]) -> Vec<String> {
    let target = banger_ssh::SshTarget {
        address: target.address.clone(),
        user: target.user.clone(),
        identity_file: target.identity_file.clone().into(),
        known_hosts_file: target.known_hosts_file.clone().into(),
        host_alias: banger_ssh::vm_host_name(&target.name),
    };
    let mut argv = banger_ssh::ssh_args(&target);
    argv.extend(extra.iter().cloned());
    argv
}

/// Runs ssh on this terminal and returns its exit code. Ctrl-C belongs to the session,
/// so this process ignores SIGINT while ssh runs (and `vm run --rm` still cleans up).
pub async fn session(target: &SshTarget, extra: &[String]) -> Result<ExitCode, CliError> {
    let _ignore_interrupts =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let status = tokio::process::Command::new("ssh")
        .args(ssh_argv(target, extra))
        .status()
        .await
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                CliError::failed(
                    "cannot run `ssh`: it is not installed",
                    Some("install the OpenSSH client (Debian: `apt install openssh-client`)"),
                )
            } else {
                CliError::Local(anyhow::Error::new(err).context("cannot run ssh"))
            }
        })?;
    // ssh reports 255 for its own failures; a signal-killed ssh has no code.
    Ok(guest_exit(status.code().unwrap_or(255)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_argv_puts_options_before_the_destination() {
        let target = SshTarget {
            name: "web".into(),
            address: "10.0.0.2".into(),
            user: "root".into(),
            identity_file: "/c/ssh/id_ed25519".into(),
            known_hosts_file: "/c/ssh/known_hosts".into(),
        };
        let cases: &[(&[&str], &str)] = &[
            (
                &[],
                "-i /c/ssh/id_ed25519 -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile=/c/ssh/known_hosts -o StrictHostKeyChecking=yes \
                 -o HostKeyAlias=web.vm -o LogLevel=ERROR root@10.0.0.2",
            ),
            (
                &["sh", "-c", "exit 42"],
                "-i /c/ssh/id_ed25519 -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile=/c/ssh/known_hosts -o StrictHostKeyChecking=yes \
                 -o HostKeyAlias=web.vm -o LogLevel=ERROR root@10.0.0.2 sh -c exit 42",
            ),
        ];
        for (extra, expected) in cases {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            assert_eq!(ssh_argv(&target, &extra).join(" "), *expected);
        }
    }
}
