//! The `banger-helper` binary: parse the command line, check it, bind the socket and
//! serve until killed. See `lib.rs` for what the helper does.

use std::sync::Arc;

use anyhow::Context;
use banger_helper::config::{HelperArgs, HelperConfig};
use banger_helper::dispatch::Helper;
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
    let owner_gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(args.owner_uid))
        .ok()
        .flatten()
        .map(|user| user.gid.as_raw());
    let config = HelperConfig::from_args(args, owner_gid).context("invalid command line")?;
    if !nix::unistd::geteuid().is_root() {
        log::warn(format_args!(
            "not running as root: every operation that changes the host will fail"
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
