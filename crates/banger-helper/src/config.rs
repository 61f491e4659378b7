//! config: the helper's command line ([`HelperArgs`]) and the checked configuration the
//! operations run with ([`HelperConfig`]). Everything a client could influence is fixed
//! here at startup by root (who may connect, which bridge, which pool), so requests can
//! only name things inside those limits.

use std::path::PathBuf;

use banger_proto::helper::{
    DEFAULT_BRIDGE, DEFAULT_HELPER_SOCKET, DEFAULT_SUBNET, Ipv4Subnet, check_bridge_name,
};

use crate::validate::check_uplink_name;

/// Which firewall tool applies NAT rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NatBackend {
    /// nftables if `nft` is installed, else iptables.
    Auto,
    Nft,
    Iptables,
}

/// `banger-helper` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "banger-helper",
    version,
    about = "banger's root helper: bridges, taps, NAT and loop devices for bangerd",
    long_about = "banger's root helper. Runs as root, listens on its own Unix socket and \
serves only the configured owner uid (checked with peer credentials on every connection). \
It performs a closed set of operations for bangerd: create the guest bridge and taps, hand \
an opened tap to an unprivileged VMM, per-guest NAT in its own nftables table, list \
banger's taps and NAT rules, and per-link DNS for `*.vm`. Every argument is validated \
before anything is touched; no shell is ever run. `banger system install` runs it as a \
service from a root-owned path.\n\n\
Examples:\n  banger-helper --owner-uid 1000\n  \
banger-helper probe   # exit 0 when a helper answers on the socket\n  \
banger-helper cleanup --bridge banger0 --subnet 172.30.0.0/24   # what uninstall runs",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct HelperArgs {
    #[command(subcommand)]
    pub command: Option<HelperCommand>,
    /// Unix socket to listen on (created mode 0600, owned by the owner uid).
    #[arg(long, default_value = DEFAULT_HELPER_SOCKET)]
    pub socket: PathBuf,
    /// The only uid allowed to use the helper (the user bangerd runs as).
    #[arg(long, required = true)]
    pub owner_uid: Option<u32>,
    /// The bridge guests attach to; must start with `banger`.
    #[arg(long, default_value = DEFAULT_BRIDGE)]
    pub bridge: String,
    /// The guest address pool; the first host is the bridge's (gateway) address.
    #[arg(long, default_value = DEFAULT_SUBNET)]
    pub subnet: String,
    /// Accepted for older command lines and ignored (the loop-device and ownership
    /// operations that used it are gone).
    #[arg(long, hide = true)]
    pub state_dir: Option<PathBuf>,
    /// Accepted for older command lines and ignored.
    #[arg(long, hide = true)]
    pub runtime_dir: Option<PathBuf>,
    /// Interface NAT traffic leaves through; default: the default route's, looked up
    /// each time NAT is added.
    #[arg(long)]
    pub uplink: Option<String>,
    /// Which tool applies NAT rules.
    #[arg(long, value_enum, default_value_t = NatBackend::Auto)]
    pub nat_backend: NatBackend,
    /// Tests only (fault injection): answer every request of this operation (e.g.
    /// `set_policy`) with a failure, touching nothing. Repeatable. It can only make the
    /// helper do less, never more.
    #[arg(long, hide = true, value_name = "OP", value_parser = FAILABLE_OPS)]
    pub fail_op: Vec<String>,
}

/// The operations `--fail-op` may name.
pub const FAILABLE_OPS: [&str; 7] = [
    "create_tap",
    "add_nat",
    "set_policy",
    "remove_policy",
    "add_policy_addresses",
    "policy_counters",
    "setup_dns",
];

/// What to do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HelperCommand {
    /// Check whether a banger-helper answers on a socket: exit 0 if one does, 1 if not.
    /// Scripts use it to start a helper only when none is running.
    Probe {
        /// The socket to try.
        #[arg(long, default_value = DEFAULT_HELPER_SOCKET)]
        socket: PathBuf,
    },
    /// Remove what a helper put on the host for one bridge and pool: taps on the bridge,
    /// banger's NAT rules for them (and banger's nftables table once empty), the `.vm`
    /// DNS routing, the bridge. Run once by `banger system uninstall`; prints a JSON
    /// report.
    Cleanup {
        #[arg(long, default_value = DEFAULT_BRIDGE)]
        bridge: String,
        #[arg(long, default_value = DEFAULT_SUBNET)]
        subnet: String,
    },
}

/// Why the command line is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--bridge {name:?}: {reason}")]
    Bridge { name: String, reason: String },
    #[error("--subnet")]
    Subnet(#[source] banger_proto::helper::SubnetError),
    #[error("--uplink {name:?}: {reason}")]
    Uplink { name: String, reason: String },
    #[error("--{flag} {}: must be an absolute path", .path.display())]
    RelativePath { flag: &'static str, path: PathBuf },
    #[error("--{flag} is required to serve")]
    Missing { flag: &'static str },
}

/// Host paths the helper reads and writes directly; tests point them at temp dirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// `/proc/sys` (for `net/ipv4/ip_forward`).
    pub proc_sys: PathBuf,
}

impl Default for HostPaths {
    fn default() -> HostPaths {
        HostPaths {
            proc_sys: PathBuf::from("/proc/sys"),
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    pub socket: PathBuf,
    pub owner_uid: u32,
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    pub uplink: Option<String>,
    pub nat_backend: NatBackend,
    pub host: HostPaths,
    /// `--fail-op`: operations answered with a failure (tests' fault injection).
    pub fail_ops: Vec<String>,
}

impl HelperConfig {
    /// Checks the command line. Pure.
    pub fn from_args(args: HelperArgs) -> Result<HelperConfig, ConfigError> {
        let owner_uid = args
            .owner_uid
            .ok_or(ConfigError::Missing { flag: "owner-uid" })?;
        check_bridge_name(&args.bridge).map_err(|problem| ConfigError::Bridge {
            name: args.bridge.clone(),
            reason: problem.to_string(),
        })?;
        let subnet: Ipv4Subnet = args.subnet.parse().map_err(ConfigError::Subnet)?;
        if let Some(uplink) = &args.uplink {
            check_uplink_name(uplink).map_err(|reason| ConfigError::Uplink {
                name: uplink.clone(),
                reason,
            })?;
        }
        if !args.socket.is_absolute() {
            return Err(ConfigError::RelativePath {
                flag: "socket",
                path: args.socket.clone(),
            });
        }
        Ok(HelperConfig {
            socket: args.socket,
            owner_uid,
            bridge: args.bridge,
            subnet,
            uplink: args.uplink,
            nat_backend: args.nat_backend,
            host: HostPaths::default(),
            fail_ops: args.fail_op,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<HelperConfig, String> {
        let mut argv = vec!["banger-helper", "--owner-uid", "1000"];
        argv.extend_from_slice(extra);
        let args = HelperArgs::try_parse_from(argv).map_err(|e| e.to_string())?;
        HelperConfig::from_args(args).map_err(|e| {
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                text.push_str(&format!(": {source}"));
            }
            text
        })
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.socket, PathBuf::from("/run/banger/helper.sock"));
        assert_eq!(config.bridge, "banger0");
        assert_eq!(config.subnet.to_string(), "172.30.0.0/24");
        assert_eq!(config.uplink, None);
        assert_eq!(config.nat_backend, NatBackend::Auto);
        assert_eq!(config.owner_uid, 1000);
    }

    #[test]
    fn bad_command_lines() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bridge", "br0"], "prefix"),
            (&["--bridge", "banger0123456789"], "longer than 15"),
            (&["--subnet", "172.30.0.1/24"], "host bits"),
            (&["--subnet", "nonsense"], "CIDR"),
            (&["--uplink", "eth0/x"], "--uplink"),
            (&["--uplink", "a-very-long-ifname0"], "--uplink"),
            (&["--socket", "relative.sock"], "absolute"),
            (&["--nat-backend", "pf"], "invalid value"),
        ];
        for (extra, fragment) in cases {
            let error = parse(extra).unwrap_err();
            assert!(error.contains(fragment), "{extra:?}: {error}");
        }
        assert!(
            HelperArgs::try_parse_from(["banger-helper"]).is_err(),
            "owner uid is required"
        );
        let old = HelperArgs::try_parse_from([
            "banger-helper",
            "--owner-uid",
            "1",
            "--state-dir",
            "/s",
            "--runtime-dir",
            "/r",
        ]);
        assert!(old.is_ok(), "older command lines still parse");
        assert!(
            HelperArgs::try_parse_from(["banger-helper", "--owner-uid", "1", "probe"]).is_err(),
            "probe takes no serving flags"
        );
    }

    #[test]
    fn probe_needs_no_serving_flags() {
        let args = HelperArgs::try_parse_from(["banger-helper", "probe"]).unwrap();
        assert!(matches!(
            args.command,
            Some(HelperCommand::Probe { socket }) if socket == std::path::Path::new(DEFAULT_HELPER_SOCKET)
        ));
        let args =
            HelperArgs::try_parse_from(["banger-helper", "probe", "--socket", "/tmp/h.sock"])
                .unwrap();
        assert!(matches!(
            args.command,
            Some(HelperCommand::Probe { socket }) if socket == std::path::Path::new("/tmp/h.sock")
        ));
    }

    #[test]
    fn good_command_lines() {
        let config = parse(&[
            "--bridge",
            "banger-test",
            "--subnet",
            "10.77.0.0/16",
            "--uplink",
            "enp0s31f6",
            "--nat-backend",
            "iptables",
            "--socket",
            "/tmp/x/helper.sock",
        ])
        .unwrap();
        assert_eq!(config.bridge, "banger-test");
        assert_eq!(config.subnet.gateway().to_string(), "10.77.0.1");
        assert_eq!(config.uplink.as_deref(), Some("enp0s31f6"));
        assert_eq!(config.nat_backend, NatBackend::Iptables);
    }
}
