//! validate: the checks every request argument passes before the helper acts on it.
//! Interface names must have banger's shape and prefix, addresses must be guest
//! addresses of the configured pool, and a DNS server must be the gateway (or loopback).
//! Refusals are typed [`HelperError`]s.

use std::net::Ipv4Addr;

use banger_proto::helper::{HelperError, IFNAME_MAX_BYTES, Ipv4Subnet, check_tap_name};

/// A tap name from a request.
pub fn tap_name(name: &str) -> Result<(), HelperError> {
    check_tap_name(name).map_err(|problem| HelperError::InvalidName {
        name: name.to_owned(),
        reason: problem.to_string(),
    })
}

/// A bridge name from a request: only the configured bridge is ever touched.
pub fn configured_bridge(name: &str, configured: &str) -> Result<(), HelperError> {
    if name == configured {
        Ok(())
    } else {
        Err(HelperError::InvalidName {
            name: name.to_owned(),
            reason: format!("the helper manages only the bridge {configured:?}"),
        })
    }
}

/// An uplink name (from the command line or the default route). It is not banger's
/// interface, so any Linux name shape is allowed, but nothing that could break out of
/// a quoted nft string or an argv slot: `[A-Za-z0-9_.-]`, 1-15 bytes, not `.`/`..`.
pub fn check_uplink_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAME_MAX_BYTES {
        return Err(format!("must be 1 to {IFNAME_MAX_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Err("is not an interface name".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("may hold only letters, digits, '_', '.' and '-'".to_owned());
    }
    Ok(())
}

/// A guest address: inside the pool, not its network, broadcast or gateway address.
pub fn guest_address(subnet: &Ipv4Subnet, ip: Ipv4Addr) -> Result<(), HelperError> {
    if subnet.is_guest_address(ip) {
        Ok(())
    } else {
        Err(HelperError::OutsidePool {
            ip,
            pool: subnet.to_string(),
        })
    }
}

/// Where banger's resolver listens: the bridge's own address (bangerd binds it) or
/// loopback, on a real port.
pub fn dns_server(subnet: &Ipv4Subnet, ip: Ipv4Addr, port: u16) -> Result<(), HelperError> {
    if port == 0 {
        return Err(HelperError::BadRequest {
            message: "DNS port 0 is not a port".to_owned(),
        });
    }
    if ip == subnet.gateway() || ip.is_loopback() {
        Ok(())
    } else {
        Err(HelperError::OutsidePool {
            ip,
            pool: format!(
                "{} (the DNS server must be the gateway or loopback)",
                subnet
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Ipv4Subnet {
        "172.30.0.0/24".parse().unwrap()
    }

    #[test]
    fn tap_names() {
        let cases = [
            ("bgt-0123abcd", true),
            ("bgt-../../x", false),
            ("bgt/x", false),
            ("bgt-0123456789abcdef", false),
            ("eth0", false),
            ("banger0", false),
            ("bgt-a b", false),
        ];
        for (name, ok) in cases {
            let result = tap_name(name);
            assert_eq!(result.is_ok(), ok, "{name:?}: {result:?}");
            if let Err(error) = result {
                assert!(
                    matches!(error, HelperError::InvalidName { .. }),
                    "{error:?}"
                );
            }
        }
        assert!(configured_bridge("banger0", "banger0").is_ok());
        assert!(matches!(
            configured_bridge("banger1", "banger0"),
            Err(HelperError::InvalidName { .. })
        ));
    }

    #[test]
    fn uplink_names() {
        let cases = [
            ("eth0", true),
            ("enp0s31f6", true),
            ("wlan0.100", true),
            ("br-lan_2", true),
            ("", false),
            (".", false),
            ("..", false),
            ("eth0/x", false),
            ("eth0\"; drop", false),
            ("eth 0", false),
            ("0123456789abcdef", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_uplink_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn guest_addresses() {
        let cases = [
            ("172.30.0.2", true),
            ("172.30.0.254", true),
            ("172.30.0.1", false),
            ("172.30.0.0", false),
            ("172.30.0.255", false),
            ("172.31.0.2", false),
            ("8.8.8.8", false),
        ];
        for (ip, ok) in cases {
            let result = guest_address(&pool(), ip.parse().unwrap());
            assert_eq!(result.is_ok(), ok, "{ip}");
            if let Err(error) = result {
                assert!(matches!(error, HelperError::OutsidePool { .. }));
            }
        }
    }

    #[test]
    fn dns_servers() {
        let cases = [
            ("172.30.0.1", 53, true),
            ("127.0.0.1", 5353, true),
            ("172.30.0.1", 0, false),
            ("172.30.0.2", 53, false),
            ("8.8.8.8", 53, false),
        ];
        for (ip, port, ok) in cases {
            assert_eq!(
                dns_server(&pool(), ip.parse().unwrap(), port).is_ok(),
                ok,
                "{ip}:{port}"
            );
        }
    }
}
