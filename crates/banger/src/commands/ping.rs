//! `ping`, `health` and `version`: is the daemon there, how is it, and which versions of
//! the CLI and daemon are talking.

use banger_api::PROTOCOL_VERSION;
use banger_api::methods::{Empty, HealthCheck, Ping};
use banger_api::types::Pong;
use clap::Args;
use serde::Serialize;

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::{self, CliError};
use crate::render;

/// Check that the daemon answers
#[derive(Debug, Args)]
#[command(
    long_about = "Ask the daemon for a pong: proves it runs, listens where this CLI looks, \
and speaks the same protocol. Exits 1 with how to start it when it does not answer.",
    after_help = "Examples:\n  banger ping\n  banger ping --json"
)]
pub struct PingArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Show the daemon's health: version, uptime, store, drivers
#[derive(Debug, Args)]
#[command(
    long_about = "Show the running daemon's view of itself: version and protocol, process \
id and uptime, the state database, which VMM drivers can run guests here and with which \
accelerator (kvm or tcg), and how many VMs are in each state. `banger doctor` checks the \
host instead.",
    after_help = "Examples:\n  banger health\n  banger health --json | jq .drivers"
)]
pub struct HealthArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Show the CLI's version and the daemon's
#[derive(Debug, Args)]
#[command(
    long_about = "Show this CLI's version and protocol, and the daemon's when it answers. A \
daemon that does not answer is reported, not an error.",
    after_help = "Examples:\n  banger version\n  banger version --json"
)]
pub struct VersionArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `ping`.
pub async fn ping(ctx: &Ctx, args: PingArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let pong = daemon.ask::<Ping>(&Empty {}).await?;
    render::data(args.output.json, &pong, |pong| {
        format!(
            "pong from bangerd {} (protocol {})\n",
            pong.daemon_version, pong.protocol
        )
    })
}

/// `health`.
pub async fn health(ctx: &Ctx, args: HealthArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let health = daemon.ask::<HealthCheck>(&Empty {}).await?;
    render::data(args.output.json, &health, render::detail::health)
}

/// One side's version.
#[derive(Debug, Serialize)]
struct Version {
    version: String,
    protocol: u32,
}

/// What `version --json` prints.
#[derive(Debug, Serialize)]
struct Versions {
    cli: Version,
    /// Absent when the daemon did not answer.
    daemon: Option<Version>,
    /// Why the daemon did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    daemon_error: Option<String>,
}

/// `version`.
pub async fn version(ctx: &Ctx, args: VersionArgs) -> Result<(), CliError> {
    let answer = async {
        let mut daemon = ctx.connect().await?;
        daemon.ask::<Ping>(&Empty {}).await
    }
    .await;
    let versions = Versions {
        cli: Version {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
        },
        daemon_error: answer
            .as_ref()
            .err()
            .map(|err| errors::translate(err).error),
        daemon: answer.ok().map(|pong: Pong| Version {
            version: pong.daemon_version,
            protocol: pong.protocol,
        }),
    };
    render::data(args.output.json, &versions, |v| {
        let mut text = format!("banger  {} (protocol {})\n", v.cli.version, v.cli.protocol);
        match (&v.daemon, &v.daemon_error) {
            (Some(d), _) => text.push_str(&format!(
                "bangerd {} (protocol {})\n",
                d.version, d.protocol
            )),
            (None, Some(err)) => text.push_str(&format!("bangerd unknown: {err}\n")),
            (None, None) => {}
        }
        text
    })
}
