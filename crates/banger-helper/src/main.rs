//! The `banger-helper` binary: parse the command line, check it, bind the socket and
//! serve until killed; or, as `banger-helper probe`, say whether a helper already
//! answers on a socket; or, as `banger-helper cleanup`, remove an installation's network. See `lib.rs` for what the helper does.

use std::sync::Arc;

use anyhow::Context;
use banger_helper::config::{HelperArgs, HelperCommand, HelperConfig};
use banger_helper::dispatch::Helper;
use banger_helper::probe::{Found, PROBE_TIMEOUT, probe};
use banger_helper::tool::SystemTools;
use banger_helper::{log, server};
use clap::Parser;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            log::warn(format_args!("{error:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = HelperArgs::parse();
    match &args.command {
        Some(HelperCommand::Probe { socket }) => return run_probe(socket),
        Some(HelperCommand::Cleanup { bridge, subnet }) => return run_cleanup(bridge, subnet),
        None => {}
    }
    let config = HelperConfig::from_args(args).context("invalid command line")?;
    if !nix::unistd::geteuid().is_root() {
        log::warn(format_args!(
            "not running as root: every operation that changes the host will fail"
        ));
    }
    if !config.fail_ops.is_empty() {
        log::warn(format_args!(
            "fault injection (--fail-op): {} will fail, as a test asked",
            config.fail_ops.join(", ")
        ));
    }
    let listener = server::bind(&config.socket, config.owner_uid)
        .with_context(|| format!("cannot listen on {}", config.socket.display()))?;
    log::info(format_args!(
        "listening on {} for uid {} (bridge {}, pool {})",
        config.socket.display(),
        config.owner_uid,
        config.bridge,
        config.subnet
    ));
    let helper = Arc::new(Helper::new(config, Arc::new(SystemTools)));
    server::serve(listener, helper).context("accepting connections failed")
}

/// `banger-helper cleanup`: the JSON report on stdout.
fn run_cleanup(bridge: &str, subnet: &str) -> anyhow::Result<()> {
    banger_proto::helper::check_bridge_name(bridge)
        .map_err(|problem| anyhow::anyhow!("--bridge {bridge:?}: {problem}"))?;
    let pool: banger_proto::helper::Ipv4Subnet = subnet
        .parse()
        .with_context(|| format!("--subnet {subnet:?}"))?;
    let report = banger_helper::cleanup::cleanup(&SystemTools, bridge, &pool)
        .context("cleaning up banger's network")?;
    #[expect(clippy::print_stdout, reason = "the report is the command's output")]
    {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// `banger-helper probe`: one line on stdout when a helper answers, an error otherwise.
fn run_probe(socket: &std::path::Path) -> anyhow::Result<()> {
    let found = probe(socket, PROBE_TIMEOUT)
        .with_context(|| format!("no banger-helper answers on {}", socket.display()))?;
    let detail = match found {
        Found::Serving { bridge, subnet } => format!("bridge {bridge}, pool {subnet}"),
        Found::ServingUid { refused_uid } => {
            format!("it serves another uid than {refused_uid}")
        }
    };
    #[expect(clippy::print_stdout, reason = "the probe's answer is its output")]
    {
        println!(
            "banger-helper is listening on {} ({detail})",
            socket.display()
        );
    }
    Ok(())
}
