//! `system install|status|restart|uninstall`: installing bangerd as a service is part of
//! banger's surface but not of this version. Each answers a typed `not_yet_available`
//! error, produced here without asking the daemon (which may well not be running).

use banger_api::{ApiError, ClientError};
use clap::Args;

use crate::errors::CliError;

/// `system` subcommands take no arguments yet.
#[derive(Debug, Args)]
pub struct SystemArgs {}

/// The answer of `banger system <action>`.
pub fn not_yet(action: &str) -> Result<(), CliError> {
    let error = ApiError::not_yet_available(&format!("`banger system {action}`"))
        .with_hint("run the daemon by hand meanwhile: `bangerd &`");
    Err(CliError::Daemon(ClientError::Api(error)))
}
