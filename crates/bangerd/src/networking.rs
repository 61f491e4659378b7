//! Guest networking at daemon startup: read the settings (helper socket, bridge, pool,
//! DNS port) from the environment, check the root helper answers with the same bridge
//! and pool, create the bridge, hand the network to the VM service, serve `<name>.vm` on
//! the bridge address, and ask the helper to route `.vm` there. Without a helper the
//! daemon runs as before: VMs boot without a NIC.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use banger_net::{HelperClient, Ipv4Subnet, Network, NetworkConfig};
use banger_proto::helper::HelperError;
use banger_vm::VmService;

/// Networking settings, from `BANGER_HELPER_SOCKET`, `BANGER_BRIDGE`, `BANGER_SUBNET`
/// and `BANGER_DNS_PORT` (defaults: the helper's own defaults, port 42069).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    pub helper_socket: PathBuf,
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    pub dns_port: u16,
}

impl NetSettings {
    /// Reads the settings through `lookup` (the environment in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<NetSettings> {
        let get = |key: &str| lookup(key).filter(|v| !v.is_empty());
        let subnet = match get("BANGER_SUBNET") {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("BANGER_SUBNET={text:?}: {e}"))?,
            None => banger_net::DEFAULT_SUBNET
                .parse()
                .map_err(|e| anyhow::anyhow!("default subnet: {e}"))?,
        };
        let dns_port = match get("BANGER_DNS_PORT") {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("BANGER_DNS_PORT={text:?}: {e}"))?,
            None => banger_dns::DEFAULT_PORT,
        };
        Ok(NetSettings {
            helper_socket: get("BANGER_HELPER_SOCKET")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(banger_net::DEFAULT_HELPER_SOCKET)),
            bridge: get("BANGER_BRIDGE").unwrap_or_else(|| banger_net::DEFAULT_BRIDGE.to_string()),
            subnet,
            dns_port,
        })
    }
}

/// What startup found, for the log and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetStatus {
    /// No helper: VMs boot without a network.
    Off { reason: String },
    /// Networking is on; `dns_manual_step` says how to route `.vm` when the helper could
    /// not (no systemd-resolved).
    On {
        gateway: Ipv4Addr,
        dns: Option<SocketAddr>,
        dns_manual_step: Option<String>,
    },
}

/// Sets up networking for `vms`; never fails the daemon.
pub async fn start(settings: &NetSettings, vms: &Arc<VmService>, pass_tap_fd: bool) -> NetStatus {
    let network = Network::new(
        NetworkConfig {
            bridge: settings.bridge.clone(),
            subnet: settings.subnet,
            pass_tap_fd,
        },
        HelperClient::unix(&settings.helper_socket),
    );
    if let Err(error) = network.check_helper().await {
        return NetStatus::Off {
            reason: banger_vm::chain(&error),
        };
    }
    if let Err(error) = network.helper().ensure_bridge().await {
        return NetStatus::Off {
            reason: format!("cannot create the bridge: {}", banger_vm::chain(&error)),
        };
    }
    let gateway = network.pool().gateway();
    vms.set_network(Some(Arc::new(network.clone())));

    let address = SocketAddr::from((gateway, settings.dns_port));
    let dns = match tokio::net::UdpSocket::bind(address).await {
        Ok(socket) => {
            let names: Arc<dyn banger_dns::NameTable> = vms.names();
            tokio::spawn(banger_dns::serve(
                socket,
                names,
                std::future::pending::<()>(),
            ));
            Some(address)
        }
        Err(error) => {
            tracing::warn!(%address, %error, "cannot serve .vm names");
            None
        }
    };
    let mut dns_manual_step = None;
    if dns.is_some() {
        match network
            .helper()
            .setup_dns(&settings.bridge, gateway, settings.dns_port)
            .await
        {
            Ok(()) => {}
            Err(error) => {
                let step = match error.helper_error() {
                    Some(HelperError::Unsupported { reason, .. }) => reason.clone(),
                    _ => banger_vm::chain(&error),
                };
                dns_manual_step = Some(format!(
                    "route the .vm domain to {gateway} port {}: {step}",
                    settings.dns_port
                ));
            }
        }
    }
    NetStatus::On {
        gateway,
        dns,
        dns_manual_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_env_and_defaults() {
        let defaults = NetSettings::from_lookup(|_| None).unwrap();
        assert_eq!(
            defaults.helper_socket,
            PathBuf::from("/run/banger/helper.sock")
        );
        assert_eq!(defaults.bridge, "banger0");
        assert_eq!(defaults.subnet.to_string(), "172.30.0.0/24");
        assert_eq!(defaults.dns_port, 42069);

        let custom = NetSettings::from_lookup(|key| {
            Some(
                match key {
                    "BANGER_HELPER_SOCKET" => "/tmp/h.sock",
                    "BANGER_BRIDGE" => "bgtest0",
                    "BANGER_SUBNET" => "172.29.0.0/24",
                    "BANGER_DNS_PORT" => "5353",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .unwrap();
        assert_eq!(custom.helper_socket, PathBuf::from("/tmp/h.sock"));
        assert_eq!(custom.bridge, "bgtest0");
        assert_eq!(custom.subnet.to_string(), "172.29.0.0/24");
        assert_eq!(custom.dns_port, 5353);

        for (key, value) in [("BANGER_SUBNET", "nope"), ("BANGER_DNS_PORT", "70000")] {
            let result = NetSettings::from_lookup(|k| (k == key).then(|| value.to_string()));
            assert!(result.is_err(), "{key}={value}");
        }
    }
}
