//! policy: a VM's network policy, the pure half. A policy is an allow-list of
//! destinations (`HOST[:PORT]`: a DNS name, a `*.example.com` wildcard, an IPv4 address
//! or CIDR, each optionally limited to one port); anything it does not list is denied,
//! and an empty list denies everything (`--deny-all`). This module parses and
//! normalises the rules (names lowercased, a trailing dot dropped, duplicates removed),
//! and answers the two questions enforcement asks: which ports a DNS name may be
//! reached on ([`NetPolicy::name_ports`], asked by banger's resolver before it forwards
//! a query), and which literal networks are allowed ([`NetPolicy::networks`], installed
//! as static rules). Enforcement itself is the helper's (nftables) and the resolver's.
//!
//! Matching rules: `example.com` matches exactly that name; `*.example.com` matches any
//! name below it at any depth (`a.example.com`, `a.b.example.com`) but not
//! `example.com` itself; an address or CIDR matches destinations by address only, never
//! by name. Ports apply to TCP and UDP alike. IPv6 is refused: a guest under a policy
//! has no IPv6 at all.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// At most this many rules in one policy (each becomes rules or set lookups on the host).
pub const MAX_RULES: usize = 256;

/// What a rule matches, before its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// One DNS name, lowercase, no trailing dot.
    Name(String),
    /// Every name strictly below this suffix (stored without the `*.`).
    Wildcard(String),
    /// An IPv4 network (a single address is a `/32`); host bits are zero.
    Net { addr: Ipv4Addr, prefix_len: u8 },
}

/// One allow rule: a host pattern and, optionally, the one port it is allowed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowRule {
    pub host: HostPattern,
    pub port: Option<u16>,
}

/// Why a `--allow` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{input:?} is empty; expected HOST[:PORT], e.g. example.com:443")]
    Empty { input: String },
    #[error("{input:?}: the port must be a number from 1 to 65535")]
    Port { input: String },
    #[error("{input:?}: IPv6 is not supported; a guest under a policy has no IPv6")]
    Ipv6 { input: String },
    #[error("{input:?}: {reason}")]
    Name { input: String, reason: &'static str },
    #[error("{input:?}: the prefix length must be from 0 to 32")]
    PrefixLength { input: String },
    #[error("{input:?} has host bits set; the network is {network}/{prefix_len}")]
    HostBits {
        input: String,
        network: Ipv4Addr,
        prefix_len: u8,
    },
    #[error("a policy holds at most {MAX_RULES} rules ({count} given)")]
    TooMany { count: usize },
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

/// Checks and lowercases a DNS name (no trailing dot): labels of 1-63 letters, digits
/// and `-` (not at either end; `_` allowed for service names), 253 bytes at most, at
/// least two labels, not all digits (that would be an address).
fn normalise_name(input: &str, name: &str) -> Result<String, PolicyError> {
    let bad = |reason| PolicyError::Name {
        input: input.to_owned(),
        reason,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > 253 {
        return Err(bad("the name is longer than 253 bytes"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1 to 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "a name may hold only letters, digits, '-' and '_' (a wildcard only as a leading '*.')",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    if labels.len() < 2 {
        return Err(bad(
            "a single-label name is not a destination; give a full name",
        ));
    }
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("this is neither a name nor an IPv4 address"));
    }
    Ok(name)
}

fn parse_net(input: &str, text: &str) -> Result<Option<HostPattern>, PolicyError> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let Ok(addr) = addr_text.parse::<Ipv4Addr>() else {
        if prefix_text.is_some() {
            return Err(PolicyError::Name {
                input: input.to_owned(),
                reason: "a CIDR needs an IPv4 address before the '/'",
            });
        }
        return Ok(None);
    };
    let prefix_len = match prefix_text {
        None => 32,
        Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= 32)
            .ok_or_else(|| PolicyError::PrefixLength {
                input: input.to_owned(),
            })?,
        Some(_) => {
            return Err(PolicyError::PrefixLength {
                input: input.to_owned(),
            });
        }
    };
    let network = Ipv4Addr::from(u32::from(addr) & mask(prefix_len));
    if network != addr {
        return Err(PolicyError::HostBits {
            input: input.to_owned(),
            network,
            prefix_len,
        });
    }
    Ok(Some(HostPattern::Net { addr, prefix_len }))
}

impl FromStr for AllowRule {
    type Err = PolicyError;

    fn from_str(input: &str) -> Result<AllowRule, PolicyError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(PolicyError::Empty {
                input: input.to_owned(),
            });
        }
        if text.starts_with('[') || text.matches(':').count() > 1 {
            return Err(PolicyError::Ipv6 {
                input: input.to_owned(),
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let valid =
                    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
                let port = valid
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| PolicyError::Port {
                        input: input.to_owned(),
                    })?;
                (host, Some(port))
            }
            None => (text, None),
        };
        if host.is_empty() {
            return Err(PolicyError::Empty {
                input: input.to_owned(),
            });
        }
        let pattern = if let Some(net) = parse_net(input, host)? {
            net
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Wildcard(normalise_name(input, suffix)?)
        } else {
            HostPattern::Name(normalise_name(input, host)?)
        };
        Ok(AllowRule {
            host: pattern,
            port,
        })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Net {
                addr,
                prefix_len: 32,
            } => write!(f, "{addr}")?,
            HostPattern::Net { addr, prefix_len } => write!(f, "{addr}/{prefix_len}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl Serialize for AllowRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<AllowRule, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl HostPattern {
    /// Whether a (lowercase, dot-less) DNS name matches this pattern.
    fn matches_name(&self, name: &str) -> bool {
        match self {
            HostPattern::Name(exact) => exact == name,
            HostPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Net { .. } => false,
        }
    }
}

/// The ports a destination may be reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    Any,
    Only(BTreeSet<u16>),
}

impl Ports {
    fn add(&mut self, port: Option<u16>) {
        match (self, port) {
            (Ports::Any, _) => {}
            (this, None) => *this = Ports::Any,
            (Ports::Only(set), Some(p)) => {
                set.insert(p);
            }
        }
    }

    pub fn allows(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(set) => set.contains(&port),
        }
    }
}

/// A literal network a policy allows, as the helper installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedNet {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub port: Option<u16>,
}

/// Why a destination is allowed or not, for `vm policy check`-style answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule.
    Allowed(AllowRule),
    /// No rule allows it (the text says what was closest).
    Denied(String),
}

/// A VM's network policy: what it may reach. Stored with the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPolicy {
    /// Allowed destinations; empty denies everything.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

impl NetPolicy {
    /// A policy from rules: duplicates dropped (first one kept), at most [`MAX_RULES`].
    pub fn new(rules: impl IntoIterator<Item = AllowRule>) -> Result<NetPolicy, PolicyError> {
        let mut allow: Vec<AllowRule> = Vec::new();
        for rule in rules {
            if !allow.contains(&rule) {
                allow.push(rule);
            }
        }
        if allow.len() > MAX_RULES {
            return Err(PolicyError::TooMany { count: allow.len() });
        }
        Ok(NetPolicy { allow })
    }

    /// Parses `--allow` values.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<NetPolicy, PolicyError> {
        let rules = values
            .iter()
            .map(|v| v.as_ref().parse())
            .collect::<Result<Vec<AllowRule>, _>>()?;
        NetPolicy::new(rules)
    }

    pub fn deny_all() -> NetPolicy {
        NetPolicy { allow: Vec::new() }
    }

    pub fn denies_everything(&self) -> bool {
        self.allow.is_empty()
    }

    /// Whether any rule names a DNS name or wildcard (the guest then needs the resolver).
    pub fn has_names(&self) -> bool {
        self.allow
            .iter()
            .any(|r| !matches!(r.host, HostPattern::Net { .. }))
    }

    /// The ports `name` may be reached on, or `None` when no rule allows the name (the
    /// resolver then refuses to resolve it). `name` may carry a trailing dot and any case.
    pub fn name_ports(&self, name: &str) -> Option<Ports> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let mut ports: Option<Ports> = None;
        for rule in self.allow.iter().filter(|r| r.host.matches_name(&name)) {
            match &mut ports {
                None => {
                    ports = Some(match rule.port {
                        None => Ports::Any,
                        Some(p) => Ports::Only(BTreeSet::from([p])),
                    })
                }
                Some(ports) => ports.add(rule.port),
            }
        }
        ports
    }

    /// The literal networks the policy allows.
    pub fn networks(&self) -> Vec<AllowedNet> {
        self.allow
            .iter()
            .filter_map(|rule| match rule.host {
                HostPattern::Net { addr, prefix_len } => Some(AllowedNet {
                    addr,
                    prefix_len,
                    port: rule.port,
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether a literal address and port is allowed by an address rule, and by which.
    pub fn check_address(&self, ip: Ipv4Addr, port: Option<u16>) -> Verdict {
        for rule in &self.allow {
            if let HostPattern::Net { addr, prefix_len } = rule.host
                && u32::from(ip) & mask(prefix_len) == u32::from(addr)
                && (rule.port.is_none() || rule.port == port)
            {
                return Verdict::Allowed(rule.clone());
            }
        }
        Verdict::Denied(format!("no address rule allows {ip}"))
    }

    /// Whether `name` (and `port`, when given) is allowed, and by which rule.
    pub fn check_name(&self, name: &str, port: Option<u16>) -> Verdict {
        let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let mut name_only = false;
        for rule in self.allow.iter().filter(|r| r.host.matches_name(&lower)) {
            match (rule.port, port) {
                (None, _) => return Verdict::Allowed(rule.clone()),
                (Some(p), Some(q)) if p == q => return Verdict::Allowed(rule.clone()),
                (Some(_), None) => return Verdict::Allowed(rule.clone()),
                _ => name_only = true,
            }
        }
        if name_only {
            Verdict::Denied(format!("{lower} is allowed, but not on that port"))
        } else {
            Verdict::Denied(format!("no rule allows {lower}"))
        }
    }

    /// The rules as `--allow` values, in order.
    pub fn rule_strings(&self) -> Vec<String> {
        self.allow.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for NetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow.is_empty() {
            return f.write_str("deny all");
        }
        f.write_str("allow ")?;
        f.write_str(&self.rule_strings().join(", "))
    }
}

/// What `vm policy check VM HOST[:PORT]` asks about: one DNS name or one IPv4 address,
/// and optionally a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: DestinationHost,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationHost {
    /// Lowercase, no trailing dot (normalised as the resolver compares names).
    Name(String),
    Addr(Ipv4Addr),
}

impl FromStr for Destination {
    type Err = PolicyError;

    /// `HOST[:PORT]` parsed as an `--allow` value is, then narrowed to one name or one
    /// address (no wildcard, no network).
    fn from_str(input: &str) -> Result<Destination, PolicyError> {
        let rule: AllowRule = input.parse()?;
        let host = match rule.host {
            HostPattern::Name(name) => DestinationHost::Name(name),
            HostPattern::Net {
                addr,
                prefix_len: 32,
            } if !input.contains('/') => DestinationHost::Addr(addr),
            HostPattern::Wildcard(_) | HostPattern::Net { .. } => {
                return Err(PolicyError::Name {
                    input: input.to_owned(),
                    reason: "a destination is one name or one address (no wildcard, no network)",
                });
            }
        };
        Ok(Destination {
            host,
            port: rule.port,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            DestinationHost::Name(name) => f.write_str(name)?,
            DestinationHost::Addr(addr) => write!(f, "{addr}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// The answer to `vm policy check`: allowed or not, by which rule, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAnswer {
    pub allowed: bool,
    /// The rule that allows it (as given to `--allow`), when one does.
    pub rule: Option<String>,
    pub reason: String,
}

fn answer(allowed: bool, rule: Option<&AllowRule>, reason: String) -> CheckAnswer {
    CheckAnswer {
        allowed,
        rule: rule.map(ToString::to_string),
        reason,
    }
}

impl NetPolicy {
    /// Whether the guest may reach `dest`, decided as enforcement decides it: a name by
    /// the name rules (what banger's resolver answers; it refuses the rest, so a name
    /// never reaches an address rule), an address by the address rules or by having been
    /// answered to this guest for an allowed name (`learned(ip, port)`, the learned sets).
    pub fn check_destination(
        &self,
        dest: &Destination,
        learned: impl Fn(Ipv4Addr, u16) -> bool,
    ) -> CheckAnswer {
        if self.denies_everything() {
            return answer(
                false,
                None,
                "the policy denies everything (--deny-all): no rule, no DNS".into(),
            );
        }
        match &dest.host {
            DestinationHost::Name(name) => self.check_name_destination(name, dest.port),
            DestinationHost::Addr(ip) => self.check_addr_destination(*ip, dest.port, learned),
        }
    }

    fn check_name_destination(&self, name: &str, port: Option<u16>) -> CheckAnswer {
        let rules: Vec<&AllowRule> = self
            .allow
            .iter()
            .filter(|r| r.host.matches_name(name))
            .collect();
        let found = rules
            .iter()
            .find(|r| r.port.is_none() || port.is_none() || r.port == port);
        let Some(rule) = found else {
            if rules.is_empty() {
                return answer(
                    false,
                    None,
                    format!(
                        "no rule allows {name}: banger's resolver refuses it (REFUSED, never forwarded), so the guest gets no address for it"
                    ),
                );
            }
            let ports: Vec<String> = rules
                .iter()
                .filter_map(|r| r.port.map(|p| p.to_string()))
                .collect();
            return answer(
                false,
                None,
                format!(
                    "{name} is allowed only on port {}; connections to other ports are dropped",
                    ports.join(", ")
                ),
            );
        };
        let on = match (rule.port, port) {
            (None, _) => "every port".to_string(),
            (Some(p), _) => format!("port {p} only"),
        };
        let mut reason = format!(
            "allowed by {rule}: banger's resolver answers {name} and opens the addresses it answers on {on}"
        );
        if port == Some(443) || (port.is_none() && rule.port.is_none_or(|p| p == 443)) {
            reason.push_str("; on 443 the TLS ClientHello must name it (SNI checked)");
        }
        answer(true, Some(rule), reason)
    }

    fn check_addr_destination(
        &self,
        ip: Ipv4Addr,
        port: Option<u16>,
        learned: impl Fn(Ipv4Addr, u16) -> bool,
    ) -> CheckAnswer {
        let covering: Vec<&AllowRule> = self
            .allow
            .iter()
            .filter(|r| match r.host {
                HostPattern::Net { addr, prefix_len } => {
                    u32::from(ip) & mask(prefix_len) == u32::from(addr)
                }
                _ => false,
            })
            .collect();
        if let Some(rule) = covering
            .iter()
            .find(|r| r.port.is_none() || port.is_none() || r.port == port)
        {
            let on = match rule.port {
                None => "every port (TCP and UDP)".to_string(),
                Some(p) => format!("port {p} only (TCP and UDP)"),
            };
            return answer(true, Some(rule), format!("allowed by {rule}: {ip} on {on}"));
        }
        if let Some(port) = port
            && learned(ip, port)
        {
            return answer(
                true,
                None,
                format!(
                    "allowed: banger's resolver answered {ip} to this guest for a name the policy allows on port {port} (until the record's TTL runs out)"
                ),
            );
        }
        if !covering.is_empty() {
            let ports: Vec<String> = covering
                .iter()
                .filter_map(|r| r.port.map(|p| p.to_string()))
                .collect();
            return answer(
                false,
                None,
                format!("{ip} is allowed only on port {}", ports.join(", ")),
            );
        }
        answer(
            false,
            None,
            format!(
                "no address rule covers {ip}, and banger's resolver has not answered it to this guest for an allowed name{}",
                if port.is_none() {
                    " (give HOST:PORT to check an answered address)"
                } else {
                    ""
                }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_checked_as_enforcement_decides() {
        let policy =
            NetPolicy::parse(&["pypi.org:443", "*.debian.org", "10.0.0.0/8:22", "192.0.2.7"])
                .unwrap();
        let never = |_: Ipv4Addr, _: u16| false;
        let check = |text: &str| policy.check_destination(&text.parse().unwrap(), never);
        // (destination, allowed, rule)
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("pypi.org:443", true, Some("pypi.org:443")),
            ("PyPI.org.:443", true, Some("pypi.org:443")),
            ("pypi.org", true, Some("pypi.org:443")),
            ("pypi.org:80", false, None),
            ("evil.pypi.org:443", false, None),
            ("deb.debian.org:80", true, Some("*.debian.org")),
            ("a.b.debian.org:21", true, Some("*.debian.org")),
            ("debian.org:80", false, None),
            ("10.1.2.3:22", true, Some("10.0.0.0/8:22")),
            ("10.1.2.3:23", false, None),
            ("192.0.2.7:9", true, Some("192.0.2.7")),
            ("192.0.2.8:9", false, None),
        ];
        for (dest, allowed, rule) in cases {
            let got = check(dest);
            assert_eq!(got.allowed, *allowed, "{dest}: {got:?}");
            assert_eq!(got.rule.as_deref(), *rule, "{dest}: {got:?}");
            assert!(!got.reason.is_empty());
        }
        assert!(check("pypi.org:443").reason.contains("SNI"));
        assert!(check("evil.test").reason.contains("REFUSED"));
        assert!(check("pypi.org:80").reason.contains("only on port 443"));
        assert!(check("10.1.2.3:23").reason.contains("only on port 22"));
        // An address the resolver answered for an allowed name, on that port.
        let answered =
            |ip: Ipv4Addr, port: u16| ip == Ipv4Addr::new(151, 101, 0, 223) && port == 443;
        let got = policy.check_destination(&"151.101.0.223:443".parse().unwrap(), answered);
        assert!(got.allowed && got.rule.is_none(), "{got:?}");
        assert!(got.reason.contains("answered"), "{got:?}");
        let got = policy.check_destination(&"151.101.0.223:80".parse().unwrap(), answered);
        assert!(!got.allowed, "{got:?}");
        // Deny-all allows nothing.
        let none = NetPolicy::deny_all().check_destination(&"192.0.2.7:9".parse().unwrap(), never);
        assert!(!none.allowed && none.reason.contains("deny"), "{none:?}");
        // Not a destination.
        for bad in ["*.debian.org", "10.0.0.0/8", "", "a:0", "[::1]:80"] {
            assert!(bad.parse::<Destination>().is_err(), "{bad}");
        }
        assert_eq!(
            "Example.com.:443"
                .parse::<Destination>()
                .unwrap()
                .to_string(),
            "example.com:443"
        );
    }

    fn rule(text: &str) -> AllowRule {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parsing_and_normalising() {
        // (input, normalised form)
        let ok: &[(&str, &str)] = &[
            ("example.com", "example.com"),
            ("Example.COM.", "example.com"),
            ("example.com:443", "example.com:443"),
            ("*.example.com", "*.example.com"),
            ("*.Example.com:8080", "*.example.com:8080"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3"),
            ("10.1.2.3/32", "10.1.2.3"),
            ("10.1.2.3:53", "10.1.2.3:53"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.168.0.0/16:22", "192.168.0.0/16:22"),
            ("_dmarc.example.com", "_dmarc.example.com"),
            ("  pypi.org  ", "pypi.org"),
            ("a-b.c0.io:65535", "a-b.c0.io:65535"),
        ];
        for (input, normalised) in ok {
            let parsed = rule(input);
            assert_eq!(parsed.to_string(), *normalised, "{input}");
            assert_eq!(rule(normalised), parsed, "{input} round trip");
        }
        // (input, fragment of the error)
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            (":443", "empty"),
            ("example.com:", "port"),
            ("example.com:0", "port"),
            ("example.com:65536", "port"),
            ("example.com:+1", "port"),
            ("example.com:http", "port"),
            ("::1", "IPv6"),
            ("[2001:db8::1]:443", "IPv6"),
            ("2001:db8::/32", "IPv6"),
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("example/8", "CIDR"),
            ("*", "letters"),
            ("*.com", "single-label"),
            ("localhost", "single-label"),
            ("a.*.example.com", "letters"),
            ("*example.com", "letters"),
            ("exa mple.com", "letters"),
            ("ex\"ample.com", "letters"),
            ("-a.example.com", "start or end"),
            ("a..example.com", "1 to 63"),
            ("1.2.3", "neither"),
            ("999.1.1.1", "neither"),
            ("\u{e9}xample.com", "letters"),
        ];
        for (input, fragment) in bad {
            let error = input.parse::<AllowRule>().unwrap_err().to_string();
            assert!(error.contains(fragment), "{input:?}: {error}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(long.parse::<AllowRule>().is_err());
    }

    #[test]
    fn name_matching() {
        let policy = NetPolicy::parse(&[
            "example.com:443",
            "*.example.com",
            "api.test:8443",
            "api.test:443",
            "10.0.0.0/8",
        ])
        .unwrap();
        let any = Some(Ports::Any);
        let only = |ports: &[u16]| Some(Ports::Only(ports.iter().copied().collect()));
        let cases: Vec<(&str, Option<Ports>)> = vec![
            ("example.com", only(&[443])),
            ("EXAMPLE.com.", only(&[443])),
            ("www.example.com", any.clone()),
            ("a.b.example.com", any.clone()),
            ("badexample.com", None),
            ("example.com.evil.org", None),
            ("xexample.com", None),
            (".example.com", None),
            ("api.test", only(&[443, 8443])),
            ("www.api.test", None),
            ("10.0.0.1", None),
            ("com", None),
        ];
        for (name, expected) in cases {
            assert_eq!(policy.name_ports(name), expected, "{name}");
        }
        assert!(NetPolicy::deny_all().name_ports("example.com").is_none());
        assert!(only(&[443]).unwrap().allows(443));
        assert!(!only(&[443]).unwrap().allows(80));
    }

    #[test]
    fn address_checks_and_networks() {
        let policy = NetPolicy::parse(&["10.0.0.0/8:22", "192.0.2.7", "example.com"]).unwrap();
        let ip = |t: &str| -> Ipv4Addr { t.parse().unwrap() };
        assert_eq!(
            policy.check_address(ip("10.9.9.9"), Some(22)),
            Verdict::Allowed(rule("10.0.0.0/8:22"))
        );
        assert!(matches!(
            policy.check_address(ip("10.9.9.9"), Some(80)),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            policy.check_address(ip("11.0.0.1"), None),
            Verdict::Denied(_)
        ));
        assert_eq!(
            policy.check_address(ip("192.0.2.7"), Some(1)),
            Verdict::Allowed(rule("192.0.2.7"))
        );
        assert_eq!(
            policy.networks(),
            [
                AllowedNet {
                    addr: ip("10.0.0.0"),
                    prefix_len: 8,
                    port: Some(22)
                },
                AllowedNet {
                    addr: ip("192.0.2.7"),
                    prefix_len: 32,
                    port: None
                }
            ]
        );
        assert!(policy.has_names());
        assert!(!NetPolicy::parse(&["1.2.3.4"]).unwrap().has_names());

        let ported = NetPolicy::parse(&["pypi.org:443"]).unwrap();
        assert!(matches!(
            ported.check_name("pypi.org", Some(443)),
            Verdict::Allowed(_)
        ));
        match ported.check_name("PyPI.org", Some(80)) {
            Verdict::Denied(why) => assert!(why.contains("not on that port"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ported.check_name("evil.org", None),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn duplicates_limits_serde_and_display() {
        let policy = NetPolicy::parse(&["a.io", "A.io.", "b.io:1", "a.io"]).unwrap();
        assert_eq!(policy.rule_strings(), ["a.io", "b.io:1"]);
        assert_eq!(policy.to_string(), "allow a.io, b.io:1");
        assert_eq!(NetPolicy::deny_all().to_string(), "deny all");
        assert!(NetPolicy::deny_all().denies_everything());

        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(json, r#"{"allow":["a.io","b.io:1"]}"#);
        assert_eq!(serde_json::from_str::<NetPolicy>(&json).unwrap(), policy);
        assert!(serde_json::from_str::<NetPolicy>(r#"{"allow":["bad name.io"]}"#).is_err());
        assert_eq!(
            serde_json::from_str::<NetPolicy>("{}").unwrap(),
            NetPolicy::deny_all()
        );

        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("h{i}.io")).collect();
        assert!(matches!(
            NetPolicy::parse(&many),
            Err(PolicyError::TooMany { .. })
        ));
    }
}
