//! `ssh-proxy HOST PORT` (hidden): the `ProxyCommand` in the `Host *.vm` block that
//! `ssh-config --install` writes. It asks the daemon for the VM's address and joins this
//! process's stdin/stdout to a TCP connection to it, so `ssh web.vm` works whether or not
//! the host's resolver knows the `.vm` domain. ssh still checks the host key under the
//! name `web.vm`, so nothing about trust changes.

use std::process::ExitCode;

use banger_api::methods::{VmRef, VmSshTarget};
use clap::Args;
use tokio::io::AsyncWriteExt as _;

use crate::connect::Ctx;
use crate::errors::CliError;

/// Connect stdin/stdout to a VM's TCP port (ssh's ProxyCommand)
#[derive(Debug, Args)]
#[command(
    long_about = "Connect standard input and output to a TCP port of a running VM, found by \
name through the daemon. Used as the ProxyCommand of the `Host *.vm` block that \
`banger ssh-config --install` writes; not meant to be typed.",
    after_help = "\
Examples:
  ssh -o 'ProxyCommand banger ssh-proxy %h %p' web.vm"
)]
pub struct SshProxyArgs {
    /// The VM's name, with or without the `.vm` suffix
    #[arg(value_name = "HOST")]
    pub host: String,
    /// TCP port in the guest
    #[arg(value_name = "PORT", default_value_t = 22)]
    pub port: u16,
}

/// `web.vm` -> `web`; anything else as given.
fn vm_name(host: &str) -> &str {
    host.strip_suffix(".vm").unwrap_or(host)
}

/// `ssh-proxy`.
pub async fn run(ctx: &Ctx, args: SshProxyArgs) -> Result<ExitCode, CliError> {
    let name = vm_name(&args.host);
    let mut daemon = ctx.connect().await?;
    let target = daemon
        .ask::<VmSshTarget>(&VmRef {
            vm: name.to_string(),
        })
        .await?;
    // The daemon accepts prefixes for convenience; a host name must match exactly, or
    // `ssh we.vm` would reach `web` (and fail its host key check under another name).
    if target.name != name {
        return Err(CliError::failed(
            format!(
                "no VM is named `{name}` (did you mean `{}.vm`?)",
                target.name
            ),
            None,
        ));
    }
    let stream = tokio::net::TcpStream::connect((target.address.as_str(), args.port))
        .await
        .map_err(|err| {
            CliError::failed(
                format!(
                    "cannot connect to {}:{} ({}.vm): {err}",
                    target.address, args.port, target.name
                ),
                Some("is the VM running and listening there? `banger vm ports` lists its ports"),
            )
        })?;
    let (mut from_guest, mut to_guest) = stream.into_split();
    // stdin -> guest runs on its own; the session ends when the guest closes its side.
    // A stdin read still blocked then is abandoned with the runtime (shutdown_background).
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        if tokio::io::copy(&mut stdin, &mut to_guest).await.is_ok() {
            let _ = to_guest.shutdown().await;
        }
    });
    let mut stdout = tokio::io::stdout();
    tokio::io::copy(&mut from_guest, &mut stdout).await?;
    stdout.flush().await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (host, name) in [
            ("web.vm", "web"),
            ("web", "web"),
            ("a.b.vm", "a.b"),
            ("web.vm.", "web.vm."),
        ] {
            assert_eq!(vm_name(host), name, "{host}");
        }
    }
}
