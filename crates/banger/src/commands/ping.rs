//! `ping`, `health` and `version`: is the daemon there, how is it, and which versions of
//! the CLI and daemon are talking.

use banger_api::PROTOCOL_VERSION;
use banger_api::methods::{Empty, HealthCheck, Ping};
use banger_api::types::Pong;
use clap::Args;

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::{self, CliError};
use crate::render;
use crate::render::records::misc::{HealthJson, PongJson, VersionJson, VersionOfJson};

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
    render::records::print(args.output.json, &pong, PongJson::from, |pong| {
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
    render::records::print(
        args.output.json,
        &health,
        HealthJson::from,
        render::detail::health,
    )
}

/// `version`.
pub async fn version(ctx: &Ctx, args: VersionArgs) -> Result<(), CliError> {
    let answer = async {
        let mut daemon = ctx.connect().await?;
        daemon.ask::<Ping>(&Empty {}).await
    }
    .await;
    let versions = VersionJson {
        cli: VersionOfJson {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
        },
        daemon_error: answer
            .as_ref()
            .err()
            .map(|err| errors::translate(err).error),
        daemon: answer.ok().map(|pong: Pong| VersionOfJson {
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
