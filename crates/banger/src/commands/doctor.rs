//! `doctor`: runs banger-doctor's host checks locally (so it works while the daemon is
//! down) plus one "daemon reachable" check, prints PASS/WARN/FAIL lines with hints, and
//! exits 1 only when a check FAILs.

use std::process::ExitCode;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use banger_api::methods::{Empty, Ping};
use banger_api::{ClientError, ErrorCode};
use banger_doctor::{Check, DoctorContext, Status, run_host_checks};
use clap::Args;

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::{self, CliError};
use crate::render;
use crate::render::records::check::CheckJson;
use crate::system::{drift, ops};
use banger_model::system::{InstallMetadata, SystemLayout};

/// How long the daemon gets to answer the ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Check that this host can run banger's VMs
#[derive(Debug, Args)]
#[command(
    long_about = "Check this host for what banger needs: KVM (or PVM), the VMM binaries \
(QEMU, Firecracker), tools (e2fsprogs, nftables, git, ssh, mmdebstrap), device nodes \
(tun, loop), the root helper, the state database and free disk space, and whether the \
daemon answers. Each line is PASS, WARN (works, slower or without a feature) or FAIL \
(something needed is missing), with a hint for fixing it.

Runs without the daemon. Exits 1 if any check fails, 0 otherwise (warnings included).",
    after_help = "\
Examples:
  banger doctor
  banger doctor --json | jq '.[] | select(.status != \"pass\")'"
)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `doctor`.
pub async fn doctor(ctx: &Ctx, args: DoctorArgs) -> Result<ExitCode, CliError> {
    let dirs = ctx.dirs()?;
    let mut doctor = DoctorContext::new(&dirs);
    // The same settings bangerd reads (see bangerd's `networking`).
    if let Some(socket) = ctx.env("BANGER_HELPER_SOCKET") {
        doctor.helper_socket = Some(socket.into());
    }
    doctor.vm_dns = vm_dns(
        ctx.env("BANGER_SUBNET").as_deref(),
        ctx.env("BANGER_DNS_PORT").as_deref(),
    );
    if let Ok(installed) = InstallMetadata::read(&SystemLayout::from_env(|k| ctx.env(k)))
        && doctor.helper_socket.is_none()
    {
        doctor.helper_socket = Some(installed.paths.helper_socket.clone());
    }
    let (mut checks, daemon, services) = tokio::join!(
        run_host_checks(&doctor),
        daemon_check(ctx),
        service_checks(ctx)
    );
    checks.extend(services);
    checks.push(daemon);
    if args.output.json {
        let records: Vec<CheckJson> = render::records::all(&checks);
        render::stdout(&render::json(&records)?)?;
    } else {
        render::stdout(&render_checks(&checks))?;
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The installed services (`system install`): each one's state, and the modes of what
/// the installation created (drift is a WARN naming each path).
async fn service_checks(ctx: &Ctx) -> Vec<Check> {
    let layout = SystemLayout::from_env(|k| ctx.env(k));
    let (metadata, rows) = match ops::status(&layout).await {
        Ok(found) => found,
        Err(error) => {
            return vec![Check::warn(
                "services",
                format!("{error:#}"),
                "sudo banger system install  # runs banger-helper and bangerd as services",
            )];
        }
    };
    let mut checks = Vec::new();
    for row in &rows {
        let detail = format!(
            "{} {} ({}, pid {}, {}; log: {})",
            row.service,
            row.state,
            row.mode,
            row.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            if row.answers {
                "answers"
            } else {
                "does not answer"
            },
            row.log
        );
        checks.push(if row.answers {
            Check::pass(row.service, detail)
        } else {
            Check::fail(row.service, detail, "sudo banger system restart")
        });
    }
    let drift = drift::check(&metadata, drift::lstat);
    checks.push(if drift.is_empty() {
        Check::pass(
            "modes",
            "sockets, runtime and state directories, key and binaries have their modes",
        )
    } else {
        Check::warn(
            "modes",
            drift
                .iter()
                .map(|d| format!("{}: {}", d.path.display(), d.problem))
                .collect::<Vec<_>>()
                .join("; "),
            "sudo banger system install  # recreates the layout with the right owners and modes",
        )
    });
    checks
}

/// Pings the daemon. Not running is a WARN (the host may be fine; start it when needed);
/// a daemon that answers wrongly is a FAIL.
async fn daemon_check(ctx: &Ctx) -> Check {
    const NAME: &str = "daemon";
    let answer = tokio::time::timeout(PING_TIMEOUT, async {
        let mut daemon = ctx.connect().await?;
        daemon.ask::<Ping>(&Empty {}).await
    })
    .await;
    match answer {
        Ok(Ok(pong)) => Check::pass(
            NAME,
            format!(
                "bangerd {} answers (protocol {})",
                pong.daemon_version, pong.protocol
            ),
        ),
        Ok(Err(err @ CliError::DaemonDown { .. })) => {
            let report = errors::translate(&err);
            Check::warn(NAME, report.error, report.hint.unwrap_or_default())
        }
        Ok(Err(err)) => {
            let report = errors::translate(&err);
            let hint = match &err {
                CliError::Daemon(ClientError::Api(api)) if api.code == ErrorCode::BadVersion => {
                    "restart the daemon from this banger installation".to_string()
                }
                _ => report
                    .hint
                    .unwrap_or_else(|| "restart the daemon: `sudo banger system restart` (installed), else `bangerd &`".to_string()),
            };
            Check::fail(NAME, report.error, hint)
        }
        Err(_) => Check::fail(
            NAME,
            format!(
                "the daemon did not answer a ping within {}s",
                PING_TIMEOUT.as_secs()
            ),
            "it may be stuck; restart it: `sudo banger system restart` (installed), else `bangerd &`",
        ),
    }
}

/// `PASS  name  detail` lines, hints indented below, and a summary.
pub fn render_checks(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for check in checks {
        let (label, colour) = match check.status {
            Status::Pass => ("PASS", AnsiColor::Green),
            Status::Warn => ("WARN", AnsiColor::Yellow),
            Status::Fail => ("FAIL", AnsiColor::Red),
        };
        let style = Style::new().bold().fg_color(Some(colour.into()));
        text.push_str(&format!(
            "{style}{label}{style:#}  {:<width$}  {}\n",
            check.name, check.detail
        ));
        if let Some(hint) = check.hint.as_deref().filter(|h| !h.is_empty()) {
            text.push_str(&format!("      {:<width$}  hint: {hint}\n", ""));
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let warnings = count(Status::Warn);
    text.push_str(&format!(
        "\n{} passed, {warnings} warning{}, {} failed\n",
        count(Status::Pass),
        if warnings == 1 { "" } else { "s" },
        count(Status::Fail)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_render_with_hints_and_a_summary() {
        let checks = vec![
            Check::pass("kvm", "/dev/kvm works"),
            Check::warn(
                "firecracker",
                "not installed",
                "only needed on real KVM hosts",
            ),
            Check::fail(
                "e2fsprogs",
                "mkfs.ext4 1.46 is too old",
                "install 1.47.1 or newer",
            ),
        ];
        let text = anstream::adapter::strip_str(&render_checks(&checks)).to_string();
        insta::assert_snapshot!(text);
    }
}

/// The daemon's `.vm` responder: the first address of `BANGER_SUBNET` (the bridge
/// gateway) and `BANGER_DNS_PORT`; the defaults for values that are absent or invalid.
fn vm_dns(subnet: Option<&str>, port: Option<&str>) -> std::net::SocketAddrV4 {
    let default = banger_doctor::DEFAULT_VM_DNS;
    let gateway = subnet
        .and_then(|s| s.split_once('/'))
        .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(|network| std::net::Ipv4Addr::from(u32::from(network).wrapping_add(1)))
        .unwrap_or(*default.ip());
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default.port());
    std::net::SocketAddrV4::new(gateway, port)
}

#[cfg(test)]
mod vm_dns_tests {
    use super::vm_dns;

    #[test]
    fn responder_from_settings() {
        for (subnet, port, expected) in [
            (None, None, "172.30.0.1:42069"),
            (Some("172.29.0.0/24"), Some("5353"), "172.29.0.1:5353"),
            (Some("garbage"), Some("99999"), "172.30.0.1:42069"),
        ] {
            assert_eq!(
                vm_dns(subnet, port).to_string(),
                expected,
                "{subnet:?} {port:?}"
            );
        }
    }
}
