//! helper: the daemon <-> root helper protocol, and the naming and address rules both
//! sides must agree on. One JSON object per line in each direction over the helper's Unix
//! socket: the daemon sends a [`HelperRequest`] (a closed set of typed operations, tagged
//! by `op`), the helper answers each with exactly one [`HelperReply`], in order. An
//! `open_tap` answer carries the tap's file descriptor as SCM_RIGHTS ancillary data on the
//! reply's bytes, so a client must read replies with `recvmsg`.
//!
//! The rules here ([`Ipv4Subnet`], [`check_tap_name`], [`check_bridge_name`]) are pure so
//! the daemon can plan with the same rules the helper enforces. The nftables text the
//! helper applies is the helper's own business (`banger-helper/src/nat.rs`): the daemon
//! only ever asks for `add_nat`/`remove_nat`, and `list_network` tells it which taps and
//! per-guest rules exist, so its startup reconcile can remove those no VM owns.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; the helper reports it in `hello`.
pub const HELPER_PROTOCOL_VERSION: u32 = 3;

/// Where the helper listens unless told otherwise.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/banger/helper.sock";

/// The bridge guests hang off unless configured otherwise.
pub const DEFAULT_BRIDGE: &str = "banger0";

/// The guest address pool unless configured otherwise.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/24";

/// The longest line either side sends or accepts, newline excluded. Requests are a few
/// hundred bytes; the limit only stops a runaway peer.
pub const MAX_HELPER_LINE_BYTES: usize = 64 * 1024;

/// Every tap banger creates starts with this, so the helper can refuse to touch anyone
/// else's interfaces.
pub const TAP_PREFIX: &str = "bgt-";

/// Every bridge banger creates starts with this.
pub const BRIDGE_PREFIX: &str = "banger";

/// Linux interface names are at most 15 bytes (IFNAMSIZ is 16 including the NUL).
pub const IFNAME_MAX_BYTES: usize = 15;

/// The DNS routing domain the helper points at banger's resolver (`<name>.vm`).
pub const DNS_ROUTING_DOMAIN: &str = "~vm";

/// One operation the daemon asks the helper for. Each is idempotent: asking twice leaves
/// the host as asking once does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HelperRequest {
    /// The helper's protocol version and configuration; changes nothing.
    Hello,
    /// Create the configured bridge with the pool's gateway address, up.
    EnsureBridge,
    /// Create a persistent tap owned by the owner uid, attached to the bridge, up.
    CreateTap {
        name: String,
    },
    /// Open an existing tap and pass its descriptor back (for `-netdev tap,fd=N`).
    OpenTap {
        name: String,
    },
    DeleteTap {
        name: String,
    },
    /// Masquerade and forward one guest's traffic out of the uplink.
    AddNat {
        guest_ip: Ipv4Addr,
    },
    RemoveNat {
        guest_ip: Ipv4Addr,
    },
    /// What banger has on the host: its taps and the guest addresses its NAT rules
    /// name. Changes nothing.
    ListNetwork,
    /// Route `~vm` DNS queries on the bridge to banger's resolver (systemd-resolved).
    SetupDns {
        bridge: String,
        server_ip: Ipv4Addr,
        port: u16,
    },
    /// Confine one guest to its network policy (replacing any it had): from its tap only
    /// ARP and IPv4 from its own address pass; its DNS to the gateway goes to banger's
    /// policy resolver on `resolver_port`; it reaches the literal `nets` and the
    /// addresses later added with `add_policy_addresses`, over TCP and UDP, and nothing
    /// else (no other DNS, no ICMP, no IPv6, no other guest). `keep_learned` keeps the
    /// addresses added so far (a re-apply of the same policy after a daemon restart).
    SetPolicy {
        guest_ip: Ipv4Addr,
        tap: String,
        resolver_port: u16,
        /// Where banger's SNI proxy listens on the gateway: every TCP connection to
        /// port 443 is redirected there, so the server name is checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sni_port: Option<u16>,
        nets: Vec<PolicyNet>,
        #[serde(default)]
        keep_learned: bool,
    },
    /// Remove everything `set_policy` installed for this address.
    RemovePolicy {
        guest_ip: Ipv4Addr,
    },
    /// Allow addresses the policy resolver answered, each for a while.
    AddPolicyAddresses {
        guest_ip: Ipv4Addr,
        entries: Vec<PolicyAddress>,
    },
    /// Packets the guest's policy dropped so far. Changes nothing.
    PolicyCounters {
        guest_ip: Ipv4Addr,
    },
}

/// A literal network a policy allows: an IPv4 network (host bits zero), on every port or
/// on one (TCP and UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNet {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An address the policy resolver answered: allowed on every port or one, for
/// `timeout_secs` (1 to [`MAX_POLICY_TIMEOUT_SECS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyAddress {
    pub ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub timeout_secs: u32,
}

/// At most this many networks in one `set_policy`.
pub const MAX_POLICY_NETS: usize = 256;
/// At most this many entries in one `add_policy_addresses`.
pub const MAX_POLICY_ADDRESSES: usize = 128;
/// The longest an answered address stays allowed.
pub const MAX_POLICY_TIMEOUT_SECS: u32 = 86_400;

impl HelperRequest {
    /// The operation's wire name, for logs and error messages.
    pub fn op_name(&self) -> &'static str {
        match self {
            HelperRequest::Hello => "hello",
            HelperRequest::EnsureBridge => "ensure_bridge",
            HelperRequest::CreateTap { .. } => "create_tap",
            HelperRequest::OpenTap { .. } => "open_tap",
            HelperRequest::DeleteTap { .. } => "delete_tap",
            HelperRequest::AddNat { .. } => "add_nat",
            HelperRequest::RemoveNat { .. } => "remove_nat",
            HelperRequest::ListNetwork => "list_network",
            HelperRequest::SetupDns { .. } => "setup_dns",
            HelperRequest::SetPolicy { .. } => "set_policy",
            HelperRequest::RemovePolicy { .. } => "remove_policy",
            HelperRequest::AddPolicyAddresses { .. } => "add_policy_addresses",
            HelperRequest::PolicyCounters { .. } => "policy_counters",
        }
    }
}

/// What a successful operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HelperOutcome {
    /// The answer to `hello`.
    Hello {
        version: u32,
        bridge: String,
        subnet: Ipv4Subnet,
        gateway: Ipv4Addr,
    },
    /// The operation is done (or was already).
    Done,
    /// The tap's descriptor rides on this reply as SCM_RIGHTS.
    TapOpened { name: String },
    /// The answer to `list_network`: every tap with banger's prefix, and every guest
    /// address of the pool that one of banger's NAT rules names, each sorted and once.
    Network(NetworkListing),
    /// The answer to `policy_counters`: packets dropped in all, and the denied
    /// destinations with their packet counts (most first).
    PolicyCounters {
        dropped_packets: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        denied: Vec<PolicyDenied>,
    },
}

/// A destination a guest's policy denied: address, protocol (`tcp`, `udp`, `icmp`, or
/// a number), port (TCP and UDP) and how many packets to it were dropped. The helper
/// keeps at most [`MAX_POLICY_DENIED`] per guest, each for an hour after its last drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDenied {
    pub ip: Ipv4Addr,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub packets: u64,
}

/// Denied destinations the helper remembers per guest (TCP/UDP, and other protocols, each).
pub const MAX_POLICY_DENIED: usize = 4096;

/// banger's network state on the host, as the helper lists it. Only names that pass
/// [`check_tap_name`] and only guest addresses of the pool appear; [`NetworkListing::check`]
/// is how the daemon verifies that of a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkListing {
    pub taps: Vec<String>,
    pub nat_guests: Vec<Ipv4Addr>,
    /// Guest addresses banger's policy rules name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_guests: Vec<Ipv4Addr>,
}

impl NetworkListing {
    /// Builds a listing from what was found: names without banger's tap shape and
    /// addresses outside `pool`'s guest range are dropped (they are not banger's to
    /// manage), the rest sorted and deduplicated.
    pub fn new(
        taps: impl IntoIterator<Item = String>,
        nat_guests: impl IntoIterator<Item = Ipv4Addr>,
        pool: &Ipv4Subnet,
    ) -> NetworkListing {
        let mut taps: Vec<String> = taps
            .into_iter()
            .filter(|name| check_tap_name(name).is_ok())
            .collect();
        taps.sort();
        taps.dedup();
        let mut nat_guests: Vec<Ipv4Addr> = nat_guests
            .into_iter()
            .filter(|ip| pool.is_guest_address(*ip))
            .collect();
        nat_guests.sort();
        nat_guests.dedup();
        NetworkListing {
            taps,
            nat_guests,
            policy_guests: Vec::new(),
        }
    }

    /// Adds the guests policy rules name (same filtering as [`NetworkListing::new`]).
    pub fn with_policy_guests(
        mut self,
        guests: impl IntoIterator<Item = Ipv4Addr>,
        pool: &Ipv4Subnet,
    ) -> NetworkListing {
        let mut guests: Vec<Ipv4Addr> = guests
            .into_iter()
            .filter(|ip| pool.is_guest_address(*ip))
            .collect();
        guests.sort();
        guests.dedup();
        self.policy_guests = guests;
        self
    }

    /// Checks a listing received from a helper: every name a tap name, every address a
    /// guest address of `pool`. The error names the first offender.
    pub fn check(&self, pool: &Ipv4Subnet) -> Result<(), String> {
        if let Some(bad) = self.taps.iter().find(|name| check_tap_name(name).is_err()) {
            return Err(format!("{bad:?} is not a tap name of banger's"));
        }
        if let Some(bad) = self
            .nat_guests
            .iter()
            .chain(&self.policy_guests)
            .find(|ip| !pool.is_guest_address(**ip))
        {
            return Err(format!("{bad} is not a guest address of {pool}"));
        }
        Ok(())
    }
}

/// Why the helper refused or failed an operation. Refusals (everything but `failed`)
/// happen before the helper touches the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum HelperError {
    #[error("uid {uid} may not use banger-helper; it serves only its configured owner")]
    Unauthorized { uid: u32 },
    #[error("malformed request: {message}")]
    BadRequest { message: String },
    #[error("interface name {name:?} refused: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{ip} is not a guest address of the pool {pool}")]
    OutsidePool { ip: Ipv4Addr, pool: String },
    #[error("{op} is not available on this host: {reason}")]
    Unsupported { op: String, reason: String },
    #[error("{op} failed: {message}")]
    Failed { op: String, message: String },
}

/// The helper's answer to one request: `{"ok": {...}}` or `{"err": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperReply {
    Ok(HelperOutcome),
    Err(HelperError),
}

impl From<Result<HelperOutcome, HelperError>> for HelperReply {
    fn from(result: Result<HelperOutcome, HelperError>) -> HelperReply {
        match result {
            Ok(outcome) => HelperReply::Ok(outcome),
            Err(error) => HelperReply::Err(error),
        }
    }
}

impl From<HelperReply> for Result<HelperOutcome, HelperError> {
    fn from(reply: HelperReply) -> Result<HelperOutcome, HelperError> {
        match reply {
            HelperReply::Ok(outcome) => Ok(outcome),
            HelperReply::Err(error) => Err(error),
        }
    }
}

/// Why a line is not a frame.
#[derive(Debug, thiserror::Error)]
pub enum HelperFrameError {
    #[error("line of {size} bytes exceeds the limit of {MAX_HELPER_LINE_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("malformed line")]
    Malformed(#[source] serde_json::Error),
    #[error("cannot encode frame")]
    Encode(#[source] serde_json::Error),
}

/// Encodes a request or reply as one line, newline included.
pub fn encode_helper_line<T: Serialize>(frame: &T) -> Result<Vec<u8>, HelperFrameError> {
    let mut line = serde_json::to_vec(frame).map_err(HelperFrameError::Encode)?;
    if line.len() > MAX_HELPER_LINE_BYTES {
        return Err(HelperFrameError::TooLarge { size: line.len() });
    }
    line.push(b'\n');
    Ok(line)
}

/// Decodes one request line (without its newline).
pub fn decode_helper_request(line: &[u8]) -> Result<HelperRequest, HelperFrameError> {
    decode_line(line)
}

/// Decodes one reply line (without its newline).
pub fn decode_helper_reply(line: &[u8]) -> Result<HelperReply, HelperFrameError> {
    decode_line(line)
}

fn decode_line<'de, T: Deserialize<'de>>(line: &'de [u8]) -> Result<T, HelperFrameError> {
    if line.len() > MAX_HELPER_LINE_BYTES {
        return Err(HelperFrameError::TooLarge { size: line.len() });
    }
    serde_json::from_slice(line).map_err(HelperFrameError::Malformed)
}

/// An IPv4 network in CIDR form, used as the guest address pool. The first host is the
/// gateway (the bridge's address); guests get the hosts after it; the network and
/// broadcast addresses are never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// Why a string is not a usable pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("{input:?} is not CIDR notation like 172.30.0.0/24")]
    Syntax { input: String },
    #[error(
        "{input:?}: the prefix length must be between 8 and 30, so the pool has a gateway and at least one guest"
    )]
    PrefixLength { input: String },
    #[error("{input:?} has host bits set; the network address is {network}")]
    HostBits { input: String, network: Ipv4Addr },
}

impl Ipv4Subnet {
    pub const MIN_PREFIX_LEN: u8 = 8;
    pub const MAX_PREFIX_LEN: u8 = 30;

    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Subnet, SubnetError> {
        let input = format!("{network}/{prefix_len}");
        if !(Self::MIN_PREFIX_LEN..=Self::MAX_PREFIX_LEN).contains(&prefix_len) {
            return Err(SubnetError::PrefixLength { input });
        }
        let mask = mask_bits(prefix_len);
        let aligned = Ipv4Addr::from(u32::from(network) & mask);
        if aligned != network {
            return Err(SubnetError::HostBits {
                input,
                network: aligned,
            });
        }
        Ok(Ipv4Subnet {
            network,
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix_len))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask_bits(self.prefix_len))
    }

    /// The bridge's address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The first address a guest can get.
    pub fn first_guest(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// The last address a guest can get (the one before broadcast).
    pub fn last_guest(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.broadcast()) - 1)
    }

    /// Every guest address, lowest first.
    pub fn guest_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.first_guest())..=u32::from(self.last_guest())).map(Ipv4Addr::from)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_bits(self.prefix_len) == u32::from(self.network)
    }

    /// Inside the pool and neither network, broadcast nor gateway.
    pub fn is_guest_address(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network && ip != self.broadcast() && ip != self.gateway()
    }

    /// The gateway with the prefix length, as `ip addr add` takes it.
    pub fn gateway_cidr(&self) -> String {
        format!("{}/{}", self.gateway(), self.prefix_len)
    }
}

fn mask_bits(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

impl FromStr for Ipv4Subnet {
    type Err = SubnetError;

    fn from_str(input: &str) -> Result<Ipv4Subnet, SubnetError> {
        let syntax = || SubnetError::Syntax {
            input: input.to_owned(),
        };
        let (address, prefix) = input.split_once('/').ok_or_else(syntax)?;
        let network: Ipv4Addr = address.parse().map_err(|_| syntax())?;
        // `u8::from_str` accepts a leading `+`; CIDR does not.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| syntax())?;
        Ipv4Subnet::new(network, prefix_len).map_err(|error| match error {
            SubnetError::PrefixLength { .. } => SubnetError::PrefixLength {
                input: input.to_owned(),
            },
            SubnetError::HostBits { network, .. } => SubnetError::HostBits {
                input: input.to_owned(),
                network,
            },
            other => other,
        })
    }
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl TryFrom<String> for Ipv4Subnet {
    type Error = SubnetError;

    fn try_from(value: String) -> Result<Ipv4Subnet, SubnetError> {
        value.parse()
    }
}

impl From<Ipv4Subnet> for String {
    fn from(subnet: Ipv4Subnet) -> String {
        subnet.to_string()
    }
}

/// Why an interface name is refused; the text goes into [`HelperError::InvalidName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {IFNAME_MAX_BYTES} bytes")]
    TooLong,
    #[error("it may hold only lowercase letters, digits and '-', starting with a letter")]
    BadCharacter,
    #[error("it does not start with banger's prefix {0:?}")]
    WrongPrefix(&'static str),
    #[error("it has nothing after the prefix")]
    NothingAfterPrefix,
}

/// The shape every interface name banger creates has: 1-15 bytes of `[a-z0-9-]`,
/// starting with a letter. This alone excludes `/`, `..`, spaces, `:` and NUL.
fn check_banger_ifname(name: &str, prefix: &'static str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > IFNAME_MAX_BYTES {
        return Err(NameProblem::TooLong);
    }
    let starts_with_letter = name.as_bytes()[0].is_ascii_lowercase();
    if !starts_with_letter
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameProblem::BadCharacter);
    }
    let Some(rest) = name.strip_prefix(prefix) else {
        return Err(NameProblem::WrongPrefix(prefix));
    };
    if rest.is_empty() {
        return Err(NameProblem::NothingAfterPrefix);
    }
    Ok(())
}

/// A tap name the helper will create, open or delete: `bgt-...`, at most 15 bytes.
pub fn check_tap_name(name: &str) -> Result<(), NameProblem> {
    check_banger_ifname(name, TAP_PREFIX)
}

/// A bridge name the helper will manage: `banger...`, at most 15 bytes.
pub fn check_bridge_name(name: &str) -> Result<(), NameProblem> {
    check_banger_ifname(name, BRIDGE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Ipv4Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn subnet_parsing() {
        // (input, Ok((network, prefix length)) or Err(fragment of the message))
        type Case = (&'static str, Result<(&'static str, u8), &'static str>);
        let cases: &[Case] = &[
            ("172.30.0.0/24", Ok(("172.30.0.0", 24))),
            ("10.0.0.0/8", Ok(("10.0.0.0", 8))),
            ("192.168.7.4/30", Ok(("192.168.7.4", 30))),
            ("172.30.0.1/24", Err("host bits")),
            ("172.30.0.0/31", Err("prefix length")),
            ("172.30.0.0/7", Err("prefix length")),
            ("172.30.0.0/+24", Err("CIDR")),
            ("172.30.0.0/", Err("CIDR")),
            ("172.30.0.0", Err("CIDR")),
            ("172.30.0/24", Err("CIDR")),
            ("172.30.0.0/240", Err("prefix length")),
            ("172.30.0.0/300", Err("CIDR")),
            ("", Err("CIDR")),
        ];
        for (input, expected) in cases {
            let got = input.parse::<Ipv4Subnet>();
            match (expected, got) {
                (Ok((network, prefix)), Ok(subnet)) => {
                    assert_eq!(subnet.network().to_string(), *network, "{input}");
                    assert_eq!(subnet.prefix_len(), *prefix, "{input}");
                    assert_eq!(subnet.to_string(), *input);
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{input}: {error}");
                }
                (expected, got) => panic!("{input}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn subnet_addresses() {
        let cases: &[(&str, &str, &str, &str, &str, &str)] = &[
            // subnet, netmask, gateway, first guest, last guest, broadcast
            (
                "172.30.0.0/24",
                "255.255.255.0",
                "172.30.0.1",
                "172.30.0.2",
                "172.30.0.254",
                "172.30.0.255",
            ),
            (
                "10.8.0.0/16",
                "255.255.0.0",
                "10.8.0.1",
                "10.8.0.2",
                "10.8.255.254",
                "10.8.255.255",
            ),
            (
                "192.168.7.4/30",
                "255.255.255.252",
                "192.168.7.5",
                "192.168.7.6",
                "192.168.7.6",
                "192.168.7.7",
            ),
        ];
        for (text, mask, gateway, first, last, broadcast) in cases {
            let pool = subnet(text);
            assert_eq!(pool.netmask().to_string(), *mask, "{text}");
            assert_eq!(pool.gateway().to_string(), *gateway, "{text}");
            assert_eq!(pool.first_guest().to_string(), *first, "{text}");
            assert_eq!(pool.last_guest().to_string(), *last, "{text}");
            assert_eq!(pool.broadcast().to_string(), *broadcast, "{text}");
        }
        assert_eq!(subnet("172.30.0.0/24").guest_addresses().count(), 253);
        assert_eq!(subnet("192.168.7.4/30").guest_addresses().count(), 1);
        assert_eq!(subnet("172.30.0.0/24").gateway_cidr(), "172.30.0.1/24");
    }

    #[test]
    fn guest_address_membership() {
        let pool = subnet("172.30.0.0/24");
        let cases = [
            ("172.30.0.2", true),
            ("172.30.0.254", true),
            ("172.30.0.0", false),   // network
            ("172.30.0.1", false),   // gateway
            ("172.30.0.255", false), // broadcast
            ("172.30.1.2", false),
            ("10.0.0.5", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
        ];
        for (ip, expected) in cases {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(pool.is_guest_address(ip), expected, "{ip}");
        }
        assert!(pool.contains("172.30.0.1".parse().unwrap()));
    }

    #[test]
    fn interface_names() {
        let long16 = "bgt-0123456789ab";
        assert_eq!(long16.len(), 16);
        let cases: &[(&str, Result<(), NameProblem>)] = &[
            ("bgt-0123abcd", Ok(())),
            ("bgt-a", Ok(())),
            ("bgt-0123456789a", Ok(())), // exactly 15 bytes
            (long16, Err(NameProblem::TooLong)),
            ("", Err(NameProblem::Empty)),
            ("bgt-", Err(NameProblem::NothingAfterPrefix)),
            ("bgt-../x", Err(NameProblem::BadCharacter)),
            ("bgt/0", Err(NameProblem::BadCharacter)),
            ("bgt-a b", Err(NameProblem::BadCharacter)),
            ("bgt-a:1", Err(NameProblem::BadCharacter)),
            ("bgt-a\0", Err(NameProblem::BadCharacter)),
            ("BGT-abc", Err(NameProblem::BadCharacter)),
            ("..", Err(NameProblem::BadCharacter)),
            ("-bgt", Err(NameProblem::BadCharacter)),
            ("eth0", Err(NameProblem::WrongPrefix(TAP_PREFIX))),
            ("banger0", Err(NameProblem::WrongPrefix(TAP_PREFIX))),
            ("bgtx-1", Err(NameProblem::WrongPrefix(TAP_PREFIX))),
        ];
        for (name, expected) in cases {
            assert_eq!(check_tap_name(name), *expected, "{name:?}");
        }
        let bridges: &[(&str, Result<(), NameProblem>)] = &[
            ("banger0", Ok(())),
            ("banger-test", Ok(())),
            ("banger", Err(NameProblem::NothingAfterPrefix)),
            ("br0", Err(NameProblem::WrongPrefix(BRIDGE_PREFIX))),
            ("bgt-1234", Err(NameProblem::WrongPrefix(BRIDGE_PREFIX))),
            ("banger0123456789", Err(NameProblem::TooLong)),
        ];
        for (name, expected) in bridges {
            assert_eq!(check_bridge_name(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn request_wire_shapes() {
        let cases: Vec<(HelperRequest, &str)> = vec![
            (HelperRequest::Hello, r#"{"op":"hello"}"#),
            (HelperRequest::EnsureBridge, r#"{"op":"ensure_bridge"}"#),
            (HelperRequest::ListNetwork, r#"{"op":"list_network"}"#),
            (
                HelperRequest::CreateTap {
                    name: "bgt-0123abcd".into(),
                },
                r#"{"op":"create_tap","name":"bgt-0123abcd"}"#,
            ),
            (
                HelperRequest::AddNat {
                    guest_ip: "172.30.0.2".parse().unwrap(),
                },
                r#"{"op":"add_nat","guest_ip":"172.30.0.2"}"#,
            ),
            (
                HelperRequest::SetupDns {
                    bridge: "banger0".into(),
                    server_ip: "172.30.0.1".parse().unwrap(),
                    port: 5353,
                },
                r#"{"op":"setup_dns","bridge":"banger0","server_ip":"172.30.0.1","port":5353}"#,
            ),
        ];
        for (request, wire) in cases {
            let line = encode_helper_line(&request).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(std::str::from_utf8(&line[..line.len() - 1]).unwrap(), wire);
            assert_eq!(decode_helper_request(wire.as_bytes()).unwrap(), request);
        }
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let cases = [
            r#"{"op":"run_shell","cmd":"rm -rf /"}"#,
            r#"{"op":"add_nat","guest_ip":"172.30.0.300"}"#,
            r#"{"op":"add_nat","guest_ip":"::1"}"#,
            r#"{"op":"create_tap"}"#,
            r#"{"name":"bgt-1"}"#,
            "not json",
        ];
        for line in cases {
            assert!(
                decode_helper_request(line.as_bytes()).is_err(),
                "{line} decoded"
            );
        }
        let huge = vec![b' '; MAX_HELPER_LINE_BYTES + 1];
        assert!(matches!(
            decode_helper_request(&huge),
            Err(HelperFrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn reply_wire_shapes() {
        let cases: Vec<(HelperReply, &str)> = vec![
            (
                HelperReply::Ok(HelperOutcome::Done),
                r#"{"ok":{"outcome":"done"}}"#,
            ),
            (
                HelperReply::Ok(HelperOutcome::Hello {
                    version: HELPER_PROTOCOL_VERSION,
                    bridge: "banger0".into(),
                    subnet: subnet("172.30.0.0/24"),
                    gateway: "172.30.0.1".parse().unwrap(),
                }),
                r#"{"ok":{"outcome":"hello","version":3,"bridge":"banger0","subnet":"172.30.0.0/24","gateway":"172.30.0.1"}}"#,
            ),
            (
                HelperReply::Ok(HelperOutcome::Network(NetworkListing {
                    taps: vec!["bgt-0123abcd".into()],
                    nat_guests: vec!["172.30.0.2".parse().unwrap()],
                    policy_guests: vec![],
                })),
                r#"{"ok":{"outcome":"network","taps":["bgt-0123abcd"],"nat_guests":["172.30.0.2"]}}"#,
            ),
            (
                HelperReply::Err(HelperError::Unauthorized { uid: 1001 }),
                r#"{"err":{"code":"unauthorized","uid":1001}}"#,
            ),
            (
                HelperReply::Err(HelperError::OutsidePool {
                    ip: "10.0.0.5".parse().unwrap(),
                    pool: "172.30.0.0/24".into(),
                }),
                r#"{"err":{"code":"outside_pool","ip":"10.0.0.5","pool":"172.30.0.0/24"}}"#,
            ),
        ];
        for (reply, wire) in cases {
            let line = encode_helper_line(&reply).unwrap();
            assert_eq!(std::str::from_utf8(&line[..line.len() - 1]).unwrap(), wire);
            assert_eq!(decode_helper_reply(wire.as_bytes()).unwrap(), reply);
        }
        assert!(decode_helper_reply(br#"{"ok":{"subnet":"1.2.3.4/24"}}"#).is_err());
        assert!(
            decode_helper_reply(br#"{"ok":{"outcome":"hello","version":1,"bridge":"b","subnet":"1.2.3.4/24","gateway":"1.2.3.5"}}"#)
                .is_err(),
            "a subnet with host bits must not decode"
        );
    }

    #[test]
    fn network_listings_hold_only_banger_names_and_pool_addresses() {
        let pool = subnet("172.30.0.0/24");
        let ip = |text: &str| -> Ipv4Addr { text.parse().unwrap() };
        let listing = NetworkListing::new(
            [
                "bgt-b".to_owned(),
                "eth0".to_owned(),
                "bgt-a".to_owned(),
                "bgt-b".to_owned(),
                "bgt-../x".to_owned(),
            ],
            [
                ip("172.30.0.9"),
                ip("172.30.0.1"),
                ip("10.0.0.2"),
                ip("172.30.0.2"),
                ip("172.30.0.9"),
            ],
            &pool,
        );
        assert_eq!(listing.taps, ["bgt-a", "bgt-b"]);
        assert_eq!(listing.nat_guests, [ip("172.30.0.2"), ip("172.30.0.9")]);
        assert_eq!(listing.check(&pool), Ok(()));

        let cases: Vec<(NetworkListing, &str)> = vec![
            (
                NetworkListing {
                    taps: vec!["eth0".into()],
                    nat_guests: vec![],
                    policy_guests: vec![],
                },
                "\"eth0\" is not a tap name",
            ),
            (
                NetworkListing {
                    taps: vec![],
                    nat_guests: vec![ip("172.30.0.255")],
                    policy_guests: vec![],
                },
                "172.30.0.255 is not a guest address of 172.30.0.0/24",
            ),
        ];
        for (listing, fragment) in cases {
            let error = listing.check(&pool).unwrap_err();
            assert!(error.contains(fragment), "{error}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        let cases = [
            (
                HelperError::InvalidName {
                    name: "eth0".into(),
                    reason: NameProblem::WrongPrefix(TAP_PREFIX).to_string(),
                },
                "interface name \"eth0\" refused: it does not start with banger's prefix \"bgt-\"",
            ),
            (
                HelperError::OutsidePool {
                    ip: "10.0.0.2".parse().unwrap(),
                    pool: "172.30.0.0/24".into(),
                },
                "10.0.0.2 is not a guest address of the pool 172.30.0.0/24",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
