//! `system install|status|restart|uninstall` (and the hidden `system supervise`): the
//! arguments, confirmation and rendering; the work is in `crate::system::ops`. These run
//! without the daemon (they start and stop it), as root except `status`.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use banger_model::system::{InstallMetadata, Service, ServiceMode, SystemLayout};
use clap::{Args, ValueEnum};

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render::records::system::{InstallJson, ServiceJson, StatusJson, UninstallJson};
use crate::system::{ops, supervise};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// systemd units when systemd is PID 1, supervised processes otherwise.
    Auto,
    Systemd,
    Supervised,
}

#[derive(Debug, Args)]
#[command(
    about = "Install banger-helper (root) and bangerd (the owner) as services",
    long_about = "Install banger as two services: banger-helper as root (guest networking) and \
bangerd as the owner user. Copies banger and bangerd to /usr/local/bin and banger-helper and \
the guest agent to /usr/local/lib/banger (root-owned: root never runs a user-writable file), \
records the installation in /etc/banger/install.json, creates /run/banger (the helper's \
socket, root's) and /run/banger-<uid> (the daemon's socket, the owner's), starts both \
services and waits until each answers.

Where systemd is PID 1 the services are two hardened units; elsewhere (containers, minimal \
hosts) they are supervised background processes with pid files in /run/banger, restart on \
crash and logs in /var/log/banger. The output says which.

Running it again upgrades the binaries and restarts the services; VMs, images and the \
database are kept, and running VMs keep running. Needs root: `sudo banger system install`.",
    after_help = "Examples:\n  sudo banger system install                 # for the user running sudo\n  \
sudo banger system install --owner alice\n  \
sudo ./target/release/banger system install --agent ./banger-agent   # from a build"
)]
pub struct InstallArgs {
    /// The user bangerd runs as and the helper serves (default: $SUDO_USER, else root).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Directory holding the new bangerd and banger-helper (default: beside this banger).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The static guest agent to install (default: banger-agent in --from, if there).
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
    /// How the services run.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Guest bridge (default banger0, or what is installed).
    #[arg(long, hide = true)]
    pub bridge: Option<String>,
    /// Guest address pool (default 172.30.0.0/24, or what is installed).
    #[arg(long, hide = true)]
    pub subnet: Option<String>,
    /// Port of the `.vm` resolver (default 42069).
    #[arg(long, hide = true)]
    pub dns_port: Option<u16>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(
    about = "Show the state of both services",
    long_about = "Show both services: state, pid, whether it answers on its socket, version, \
socket, user and log. Works without root.",
    after_help = "Examples:\n  banger system status\n  banger system status --json"
)]
pub struct StatusArgs {
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(
    about = "Restart both services (running VMs keep running)",
    long_about = "Restart banger-helper and bangerd. VMs keep running: their VMMs do not belong \
to the daemon's process, and the new daemon reattaches them. Needs root.",
    after_help = "Examples:\n  sudo banger system restart"
)]
pub struct RestartArgs {
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(
    about = "Remove the services, binaries and banger's network from this host",
    long_about = "Stop and remove both services, the binaries, /etc/banger, /run/banger, the \
owner's runtime directory and the logs, and banger's network: the bridge, its taps, banger's \
NAT rules (its nftables table once empty) and the `.vm` resolver routing. Running VMs are \
killed. The owner's VMs, images and database stay unless --purge, which lists what it will \
delete and asks first (--yes answers for scripts; without a terminal --purge needs --yes). \
Needs root.",
    after_help = "Examples:\n  sudo banger system uninstall\n  sudo banger system uninstall --purge --yes"
)]
pub struct UninstallArgs {
    /// Also delete the owner's state, cache and config directories (VMs, images, keys).
    #[arg(long)]
    pub purge: bool,
    /// Do not ask before --purge deletes.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(
    about = "Run one installed service and restart it when it exits",
    long_about = "Run one installed service (from /etc/banger/install.json) in the foreground \
and start it again whenever it exits; SIGTERM stops both. `system install` starts one per \
service where systemd is not PID 1; there is no need to run it by hand.",
    after_help = "Examples:\n  banger system supervise helper"
)]
pub struct SuperviseArgs {
    /// `helper` or `daemon`.
    #[arg(value_parser = ["helper", "daemon"])]
    pub service: String,
}

fn layout(ctx: &Ctx) -> SystemLayout {
    SystemLayout::from_env(|key| ctx.env(key))
}

fn local(error: anyhow::Error) -> CliError {
    CliError::Local(error)
}

#[expect(clippy::print_stdout, reason = "command output")]
fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| local(e.into()))?
    );
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
fn print_line(text: &str) {
    println!("{text}");
}

fn not_installed_hint(error: anyhow::Error) -> CliError {
    match error.downcast_ref::<banger_model::system::MetadataError>() {
        Some(banger_model::system::MetadataError::NotInstalled { .. }) => CliError::Failed {
            message: error.to_string(),
            hint: Some("install it: sudo banger system install".into()),
        },
        _ => local(error),
    }
}

pub async fn install(ctx: &Ctx, args: InstallArgs) -> Result<(), CliError> {
    ops::require_root("install")?;
    let layout = layout(ctx);
    let plan = ops::InstallPlan {
        owner: args.owner,
        from: args.from,
        agent: args.agent,
        mode: match args.mode {
            ModeArg::Auto => None,
            ModeArg::Systemd => Some(ServiceMode::Systemd),
            ModeArg::Supervised => Some(ServiceMode::Supervised),
        },
        bridge: args.bridge,
        subnet: args.subnet,
        dns_port: args.dns_port,
    };
    let metadata = ops::install(&layout, &plan).await.map_err(local)?;
    if args.json.json {
        return print_json(&InstallJson::from(&metadata));
    }
    print_line(&format!(
        "banger {} installed for {} (uid {}); services: {}",
        metadata.version,
        metadata.owner.name,
        metadata.owner.uid,
        describe_mode(metadata.mode)
    ));
    print_line(&format!(
        "  banger-helper: {} (socket {})\n  bangerd:       {} (socket {})",
        metadata.paths.helper.display(),
        metadata.paths.helper_socket.display(),
        metadata.paths.bangerd.display(),
        metadata.paths.daemon_socket.display()
    ));
    Ok(())
}

fn describe_mode(mode: ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Systemd => "systemd units banger-helper.service and bangerd.service",
        ServiceMode::Supervised => {
            "supervised background processes (systemd is not PID 1 here; logs in /var/log/banger)"
        }
    }
}

pub async fn status(ctx: &Ctx, args: StatusArgs) -> Result<(), CliError> {
    let (metadata, rows) = ops::status(&layout(ctx))
        .await
        .map_err(not_installed_hint)?;
    if args.json.json {
        return print_json(&StatusJson::new(&metadata, &rows));
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.service.to_owned(),
                r.state.clone(),
                r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                if r.answers { "yes" } else { "no" }.to_owned(),
                r.version.clone(),
                r.socket.display().to_string(),
                r.user.clone(),
            ]
        })
        .collect();
    print_line(&format!("mode: {}", describe_mode(metadata.mode)));
    print_line(&crate::render::table::grid(
        &[
            "SERVICE", "STATE", "PID", "ANSWERS", "VERSION", "SOCKET", "USER",
        ],
        table,
    ));
    Ok(())
}

pub async fn restart(ctx: &Ctx, args: RestartArgs) -> Result<(), CliError> {
    ops::require_root("restart")?;
    let layout = layout(ctx);
    let metadata = ops::restart(&layout).await.map_err(not_installed_hint)?;
    if args.json.json {
        let (_, rows) = ops::status(&layout).await.map_err(local)?;
        return print_json(&crate::render::records::all::<_, ServiceJson>(&rows));
    }
    print_line(&format!(
        "restarted banger-helper and bangerd ({})",
        metadata.mode.as_str()
    ));
    Ok(())
}

pub async fn uninstall(ctx: &Ctx, args: UninstallArgs) -> Result<(), CliError> {
    ops::require_root("uninstall")?;
    let layout = layout(ctx);
    let metadata = InstallMetadata::read(&layout).map_err(|e| not_installed_hint(e.into()))?;
    if args.purge && !args.yes {
        let targets = ops::purge_targets(&metadata);
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Failed {
                message: "--purge deletes the owner's VMs, images and keys and needs a confirmation, but stdin is not a terminal".into(),
                hint: Some("add --yes to delete without asking".into()),
            });
        }
        #[expect(clippy::print_stderr, reason = "the confirmation prompt")]
        {
            eprintln!("--purge will delete, besides the installation:");
            for target in &targets {
                eprintln!("  {}", target.display());
            }
            eprint!("Delete these? [y/N] ");
        }
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| local(e.into()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::Failed {
                message: "nothing was removed".into(),
                hint: Some("run without --purge to keep VMs and images".into()),
            });
        }
    }
    let report = ops::uninstall(&layout, args.purge).await.map_err(local)?;
    if args.json.json {
        return print_json(&UninstallJson::from(&report));
    }
    for path in &report.removed {
        print_line(&format!("removed {}", path.display()));
    }
    if let Some(network) = &report.network {
        print_line(&format!("network: {network}"));
        for line in unusable_lines(network) {
            print_line(&line);
        }
    }
    for path in &report.kept {
        print_line(&format!("kept {} (--purge deletes it)", path.display()));
    }
    Ok(())
}

/// One line per netfilter backend `banger-helper cleanup` found unusable on this host.
fn unusable_lines(network: &serde_json::Value) -> Vec<String> {
    let field = |u: &serde_json::Value, key: &str| u[key].as_str().unwrap_or("?").to_owned();
    network["unusable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            format!(
                "network: {} cannot work on this host ({}), so nothing of banger's was in it",
                field(u, "backend"),
                field(u, "reason")
            )
        })
        .collect()
}

/// The hidden `system supervise SERVICE`.
pub fn supervise(ctx: &Ctx, args: SuperviseArgs) -> Result<(), CliError> {
    let service = match args.service.as_str() {
        "helper" => Service::Helper,
        _ => Service::Daemon,
    };
    supervise::supervise(&layout(ctx), service).map_err(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uninstall_names_each_unusable_backend() {
        let network = serde_json::json!({
            "taps": [], "nat_rules": 0, "bridge_removed": true,
            "unusable": [{"backend": "iptables nat POSTROUTING",
                          "reason": "Failed to initialize nft: Protocol not supported"}]
        });
        assert_eq!(
            unusable_lines(&network),
            [
                "network: iptables nat POSTROUTING cannot work on this host (Failed to \
              initialize nft: Protocol not supported), so nothing of banger's was in it"
            ]
        );
        assert!(unusable_lines(&serde_json::json!({"nat_rules": 2})).is_empty());
    }
}
