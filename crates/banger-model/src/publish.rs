//! Published ports (`vm run -p`, `vm port publish`): a host address and port that the
//! daemon forwards to a guest port. Spelled as Docker spells them:
//! `[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`, listening on 127.0.0.1 unless a host
//! address is given (`0.0.0.0:8080:80` for every interface). `vm port unpublish` also
//! takes the host side alone (`[HOST_IP:]HOST_PORT[/tcp|udp]`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

impl PortProto {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }

    pub fn parse(text: &str) -> Option<PortProto> {
        match text {
            "tcp" => Some(PortProto::Tcp),
            "udp" => Some(PortProto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for PortProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address a published port listens on when the spec names none.
pub const DEFAULT_HOST_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: PortProto,
}

/// The host side of a published port, as `vm port unpublish` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSide {
    /// `None`: whichever address the port listens on.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    /// `None`: whichever guest port it forwards to.
    pub guest_port: Option<u16>,
    pub proto: PortProto,
}

/// Why a port spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error(
        "{input:?} is not a port spec; use [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp], e.g. 8080:80"
    )]
    Shape { input: String },
    #[error("{input:?}: {what} {value:?} is not a port (1-65535)")]
    Port {
        input: String,
        what: &'static str,
        value: String,
    },
    #[error("{input:?}: {value:?} is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)")]
    Address { input: String, value: String },
    #[error("{input:?}: unknown protocol {value:?}; use /tcp or /udp")]
    Proto { input: String, value: String },
}

impl PortSpec {
    /// Parses `[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`.
    pub fn parse(input: &str) -> Result<PortSpec, PortSpecError> {
        let side = parse_side(input)?;
        let Some(guest_port) = side.guest_port else {
            return Err(PortSpecError::Shape {
                input: input.to_string(),
            });
        };
        Ok(PortSpec {
            host_ip: side.host_ip.unwrap_or(DEFAULT_HOST_IP),
            host_port: side.host_port,
            guest_port,
            proto: side.proto,
        })
    }

    /// `127.0.0.1:8080`.
    pub fn host_endpoint(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }

    /// Whether `self` and `other` cannot listen at once: same transport and port, and
    /// the same address or either on every address.
    pub fn collides_with(&self, other: &PortSpec) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || self.host_ip.is_unspecified()
                || other.host_ip.is_unspecified())
    }
}

impl fmt::Display for PortSpec {
    /// The canonical spelling, always with address and transport:
    /// `127.0.0.1:8080:80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ip, self.host_port, self.guest_port, self.proto
        )
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSpec::parse(s)
    }
}

impl HostSide {
    /// Parses `[HOST_IP:]HOST_PORT[:GUEST_PORT][/tcp|udp]`.
    pub fn parse(input: &str) -> Result<HostSide, PortSpecError> {
        parse_side(input)
    }

    pub fn matches(&self, spec: &PortSpec) -> bool {
        self.proto == spec.proto
            && self.host_port == spec.host_port
            && self.host_ip.is_none_or(|ip| ip == spec.host_ip)
            && self.guest_port.is_none_or(|port| port == spec.guest_port)
    }
}

/// The shared grammar: one, two or three `:`-separated parts, then `/proto`. With two
/// parts the first is an address when it contains a dot (`127.0.0.1:8080`), else the
/// spec is `HOST_PORT:GUEST_PORT`.
fn parse_side(input: &str) -> Result<HostSide, PortSpecError> {
    let shape = || PortSpecError::Shape {
        input: input.to_string(),
    };
    let (ports, proto) = match input.split_once('/') {
        Some((ports, proto)) => (
            ports,
            PortProto::parse(proto).ok_or_else(|| PortSpecError::Proto {
                input: input.to_string(),
                value: proto.to_string(),
            })?,
        ),
        None => (input, PortProto::Tcp),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, guest) = match parts.as_slice() {
        [host] => (None, *host, None),
        [ip, host] if ip.contains('.') => (Some(*ip), *host, None),
        [host, guest] => (None, *host, Some(*guest)),
        [ip, host, guest] => (Some(*ip), *host, Some(*guest)),
        _ => return Err(shape()),
    };
    if host.is_empty() {
        return Err(shape());
    }
    let host_ip = ip
        .map(|ip| {
            ip.parse::<Ipv4Addr>().map_err(|_| PortSpecError::Address {
                input: input.to_string(),
                value: ip.to_string(),
            })
        })
        .transpose()?;
    let port = |what: &'static str, value: &str| {
        value
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0 && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| PortSpecError::Port {
                input: input.to_string(),
                what,
                value: value.to_string(),
            })
    };
    Ok(HostSide {
        host_ip,
        host_port: port("host port", host)?,
        guest_port: guest.map(|g| port("guest port", g)).transpose()?,
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ip: [u8; 4], host: u16, guest: u16, proto: PortProto) -> PortSpec {
        PortSpec {
            host_ip: Ipv4Addr::from(ip),
            host_port: host,
            guest_port: guest,
            proto,
        }
    }

    #[test]
    fn specs_parse_as_docker_spells_them() {
        let cases = [
            ("8080:80", spec([127, 0, 0, 1], 8080, 80, PortProto::Tcp)),
            (
                "8080:80/tcp",
                spec([127, 0, 0, 1], 8080, 80, PortProto::Tcp),
            ),
            (
                "5353:53/udp",
                spec([127, 0, 0, 1], 5353, 53, PortProto::Udp),
            ),
            (
                "0.0.0.0:8080:80",
                spec([0, 0, 0, 0], 8080, 80, PortProto::Tcp),
            ),
            (
                "192.168.1.5:1:65535/udp",
                spec([192, 168, 1, 5], 1, 65535, PortProto::Udp),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(PortSpec::parse(input), Ok(expected), "{input}");
            // The canonical spelling parses back to the same spec.
            assert_eq!(PortSpec::parse(&expected.to_string()), Ok(expected));
        }
        assert_eq!(
            spec([127, 0, 0, 1], 8080, 80, PortProto::Tcp).to_string(),
            "127.0.0.1:8080:80/tcp"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("8080", "is not a port spec"),
            ("", "is not a port spec"),
            (":80", "is not a port spec"),
            ("1:2:3:4", "is not a port spec"),
            ("0:80", "host port \"0\" is not a port"),
            ("70000:80", "host port \"70000\" is not a port"),
            ("8080:+80", "guest port \"+80\" is not a port"),
            ("8080:", "guest port \"\" is not a port"),
            ("localhost:8080:80", "\"localhost\" is not an IPv4 address"),
            ("::1:8080:80", "is not a port spec"),
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("8080:80/TCP", "unknown protocol \"TCP\""),
            (" 8080:80", "host port \" 8080\" is not a port"),
        ];
        for (input, message) in cases {
            let error = PortSpec::parse(input).expect_err(input).to_string();
            assert!(error.contains(message), "{input}: {error}");
        }
    }

    #[test]
    fn unpublish_names_the_host_side() {
        let side = HostSide::parse("8080").unwrap();
        assert_eq!(
            side,
            HostSide {
                host_ip: None,
                host_port: 8080,
                guest_port: None,
                proto: PortProto::Tcp
            }
        );
        let local = spec([127, 0, 0, 1], 8080, 80, PortProto::Tcp);
        let any = spec([0, 0, 0, 0], 8080, 80, PortProto::Tcp);
        assert!(side.matches(&local) && side.matches(&any));
        assert!(!side.matches(&spec([127, 0, 0, 1], 8080, 80, PortProto::Udp)));
        let exact = HostSide::parse("127.0.0.1:8080").unwrap();
        assert!(exact.matches(&local) && !exact.matches(&any));
        let full = HostSide::parse("8080:81").unwrap();
        assert!(!full.matches(&local));
        assert!(HostSide::parse("8080:80/udp").unwrap().proto == PortProto::Udp);
    }

    #[test]
    fn collisions_count_the_wildcard_address() {
        let local = spec([127, 0, 0, 1], 8080, 80, PortProto::Tcp);
        let other = spec([127, 0, 0, 2], 8080, 81, PortProto::Tcp);
        let any = spec([0, 0, 0, 0], 8080, 80, PortProto::Tcp);
        let udp = spec([127, 0, 0, 1], 8080, 80, PortProto::Udp);
        assert!(local.collides_with(&local));
        assert!(local.collides_with(&any) && any.collides_with(&other));
        assert!(!local.collides_with(&other));
        assert!(!local.collides_with(&udp));
    }
}
