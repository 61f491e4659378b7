//! Guest networking at daemon startup: read the settings (helper socket, bridge, pool,
//! DNS port) from the environment, check the root helper answers with the same bridge
//! and pool, create the bridge, hand the network to the VM service, serve `<name>.vm` on
//! the bridge address, serve the policy resolver beside it (for VMs with a network
//! policy), and ask the helper to route `.vm` there. Without a helper the
//! daemon runs as before: VMs boot without a NIC.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use banger_dns::policy_server::{AllowEntry, LearnFuture, Learner, ResolverConfig, ResolverStats};
use banger_proto::helper::PolicyAddress;

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
    /// Where the policy resolver listens on the gateway (`BANGER_POLICY_DNS_PORT`).
    pub policy_dns_port: u16,
    /// Where the SNI proxy listens on the gateway (`BANGER_SNI_PORT`).
    pub sni_port: u16,
    /// Its upstream servers (`BANGER_POLICY_DNS_UPSTREAM`, comma-separated `IP[:PORT]`);
    /// `None`: the host's own name servers.
    pub policy_upstreams: Option<Vec<SocketAddr>>,
}

/// The policy resolver's port unless `BANGER_POLICY_DNS_PORT` says otherwise.
pub const DEFAULT_POLICY_DNS_PORT: u16 = 42070;

/// The SNI proxy's port unless `BANGER_SNI_PORT` says otherwise.
pub const DEFAULT_SNI_PORT: u16 = 42071;

/// Lets a policy guest's TLS connection through when its destination is a literal
/// network its policy allows on that port, or an address the resolver answered for an
/// allowed name and the ClientHello names a server the policy allows on that port.
#[derive(Debug)]
pub struct PolicyGate {
    pub policies: Arc<banger_dns::PolicyTable>,
    /// banger's pool: never a destination through the proxy.
    pub pool: Ipv4Subnet,
}

impl banger_net::sni_proxy::SniGate for PolicyGate {
    fn decide(
        &self,
        guest: Ipv4Addr,
        dest: std::net::SocketAddrV4,
        server: Option<&str>,
    ) -> Result<(), String> {
        use banger_dns::PolicyLookup as _;
        let (ip, port) = (*dest.ip(), dest.port());
        if self.pool.contains(ip) {
            return Err("banger's own addresses are not reachable through a policy".into());
        }
        let policy = self
            .policies
            .policy_of(guest)
            .ok_or("the guest has no policy")?;
        if let banger_model::policy::Verdict::Allowed(_) = policy.check_address(ip, Some(port)) {
            return Ok(());
        }
        let server = server.ok_or("no server name (SNI) in the ClientHello")?;
        let ports = policy
            .name_ports(server)
            .ok_or_else(|| format!("the policy does not allow {server}"))?;
        if !ports.allows(port) {
            return Err(format!(
                "the policy allows {server}, but not on port {port}"
            ));
        }
        if !self.policies.is_learned(guest, ip, port) {
            return Err(format!(
                "{ip} was not answered to this guest for an allowed name"
            ));
        }
        Ok(())
    }
}

/// Parses `IP[:PORT]` items separated by commas (port 53 by default).
pub fn parse_upstreams(text: &str) -> Result<Vec<SocketAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<SocketAddr>()
                .or_else(|_| item.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| format!("{item:?} is not IP[:PORT]"))
        })
        .collect()
}

/// The host's name servers as the daemon (on the host) reaches them, loopback stubs
/// included: the first of `/etc/resolv.conf` and systemd-resolved's upstream file that
/// names any.
pub fn host_upstreams() -> Vec<SocketAddr> {
    for path in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let servers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next())
                    .flatten()
                    .and_then(|w| w.parse::<IpAddr>().ok())
            })
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if !servers.is_empty() {
            return servers;
        }
    }
    Vec::new()
}

/// Feeds the policy resolver's answers to the helper.
#[derive(Debug)]
struct HelperLearner {
    network: Network,
}

impl Learner for HelperLearner {
    fn learn(&self, guest: Ipv4Addr, entries: Vec<AllowEntry>) -> LearnFuture {
        let network = self.network.clone();
        Box::pin(async move {
            let entries = entries
                .into_iter()
                .map(|e| PolicyAddress {
                    ip: e.ip,
                    port: e.port,
                    timeout_secs: e.timeout_secs,
                })
                .collect();
            network
                .allow_addresses(guest, entries)
                .await
                .map_err(|e| banger_vm::chain(&e))
        })
    }
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
        let policy_dns_port = match get("BANGER_POLICY_DNS_PORT") {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("BANGER_POLICY_DNS_PORT={text:?}: {e}"))?,
            None => DEFAULT_POLICY_DNS_PORT,
        };
        let sni_port = match get("BANGER_SNI_PORT") {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("BANGER_SNI_PORT={text:?}: {e}"))?,
            None => DEFAULT_SNI_PORT,
        };
        let policy_upstreams = match get("BANGER_POLICY_DNS_UPSTREAM") {
            Some(text) => Some(
                parse_upstreams(&text)
                    .map_err(|e| anyhow::anyhow!("BANGER_POLICY_DNS_UPSTREAM={text:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(NetSettings {
            helper_socket: get("BANGER_HELPER_SOCKET")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(banger_net::DEFAULT_HELPER_SOCKET)),
            bridge: get("BANGER_BRIDGE").unwrap_or_else(|| banger_net::DEFAULT_BRIDGE.to_string()),
            subnet,
            dns_port,
            policy_dns_port,
            sni_port,
            policy_upstreams,
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
    let network = start_policy_resolver(settings, vms, network).await;
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

/// Binds and spawns the policy resolver on the gateway; the network learns its port.
/// When it cannot bind, VMs with a policy fail to start (and say so), others are fine.
async fn start_policy_resolver(
    settings: &NetSettings,
    vms: &Arc<VmService>,
    network: Network,
) -> Network {
    let gateway = network.pool().gateway();
    let address = SocketAddr::from((gateway, settings.policy_dns_port));
    let socket = match tokio::net::UdpSocket::bind(address).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%address, %error, "cannot serve the policy resolver; VMs with a network policy will not start");
            return network;
        }
    };
    let upstreams = settings
        .policy_upstreams
        .clone()
        .unwrap_or_else(host_upstreams);
    if upstreams.is_empty() {
        tracing::warn!("no upstream name server found; VMs with a network policy resolve nothing");
    }
    let config = ResolverConfig {
        upstreams,
        timeout: Duration::from_secs(2),
        pool: (settings.subnet.network(), settings.subnet.prefix_len()),
    };
    let learner = Arc::new(HelperLearner {
        network: network.clone(),
    });
    tokio::spawn(banger_dns::serve_policy(
        socket,
        vms.policies(),
        learner,
        config,
        Arc::new(ResolverStats::default()),
        std::future::pending::<()>(),
    ));
    let network = network.with_policy_resolver(settings.policy_dns_port);
    let address = SocketAddr::from((gateway, settings.sni_port));
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => {
            let gate = Arc::new(PolicyGate {
                policies: vms.policies(),
                pool: settings.subnet,
            });
            tokio::spawn(banger_net::sni_proxy::serve_sni(
                listener,
                gate,
                Arc::new(banger_net::sni_proxy::SniStats::default()),
                std::future::pending::<()>(),
            ));
            network.with_sni_proxy(settings.sni_port)
        }
        Err(error) => {
            tracing::error!(%address, %error, "cannot serve the SNI proxy; VMs with a network policy will not start");
            network
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sni_gate_needs_an_allowed_name_and_an_answered_address() {
        use banger_dns::PolicyLookup as _;
        use banger_dns::policy_server::AllowEntry;
        use banger_net::sni_proxy::SniGate as _;
        let policies = Arc::new(banger_dns::PolicyTable::default());
        let gate = PolicyGate {
            policies: policies.clone(),
            pool: "172.30.0.0/24".parse().unwrap(),
        };
        let guest = Ipv4Addr::new(172, 30, 0, 5);
        let shared = Ipv4Addr::new(192, 0, 2, 10);
        let dest = |ip: Ipv4Addr, port| std::net::SocketAddrV4::new(ip, port);
        assert!(
            gate.decide(guest, dest(shared, 443), Some("a.test"))
                .is_err(),
            "no policy"
        );
        policies.insert(
            guest,
            banger_model::NetPolicy::parse(&["a.test:443", "198.51.100.0/24:443"]).unwrap(),
        );
        policies.record_learned(
            guest,
            &[AllowEntry {
                ip: shared,
                port: Some(443),
                timeout_secs: 60,
            }],
        );
        let cases: Vec<(std::net::SocketAddrV4, Option<&str>, Result<(), &str>)> = vec![
            (dest(shared, 443), Some("a.test"), Ok(())),
            // The same address, another name on it (a CDN): refused.
            (
                dest(shared, 443),
                Some("b.test"),
                Err("does not allow b.test"),
            ),
            (dest(shared, 443), None, Err("no server name")),
            // An allowed name at an address nobody answered: refused (fronting).
            (
                dest(Ipv4Addr::new(192, 0, 2, 99), 443),
                Some("a.test"),
                Err("was not answered"),
            ),
            // A literal network needs no name.
            (dest(Ipv4Addr::new(198, 51, 100, 7), 443), None, Ok(())),
            (
                dest(Ipv4Addr::new(172, 30, 0, 1), 443),
                Some("a.test"),
                Err("banger's own"),
            ),
        ];
        for (to, server, expected) in cases {
            let got = gate.decide(guest, to, server);
            match (expected, got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(why)) => {
                    assert!(why.contains(fragment), "{to} {server:?}: {why}")
                }
                (expected, got) => panic!("{to} {server:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

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
                    "BANGER_POLICY_DNS_PORT" => "5354",
                    "BANGER_SNI_PORT" => "5355",
                    "BANGER_POLICY_DNS_UPSTREAM" => "10.0.0.53, 10.0.0.54:5300",
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
        assert_eq!(custom.policy_dns_port, 5354);
        assert_eq!(custom.sni_port, 5355);
        assert_eq!(defaults.sni_port, 42071);
        assert_eq!(
            custom.policy_upstreams,
            Some(vec![
                "10.0.0.53:53".parse().unwrap(),
                "10.0.0.54:5300".parse().unwrap()
            ])
        );
        assert_eq!(defaults.policy_dns_port, 42070);
        assert_eq!(defaults.policy_upstreams, None);

        for (key, value) in [
            ("BANGER_SUBNET", "nope"),
            ("BANGER_DNS_PORT", "70000"),
            ("BANGER_POLICY_DNS_UPSTREAM", "10.0.0.1,nope"),
        ] {
            let result = NetSettings::from_lookup(|k| (k == key).then(|| value.to_string()));
            assert!(result.is_err(), "{key}={value}");
        }
    }
}
