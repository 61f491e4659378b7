//! validate: the checks every request argument passes before the helper acts on it.
//! Interface names must have banger's shape and prefix, addresses must be guest
//! addresses of the configured pool, loop devices must be `/dev/loopN`, and paths must
//! resolve (symlinks followed by the kernel, not by string games) to somewhere under
//! banger's configured directories. Refusals are typed [`HelperError`]s.

use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

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

/// A loop device path: exactly `/dev/loopN`. Returns N.
pub fn loop_device(device: &Path) -> Result<u32, HelperError> {
    let refuse = || HelperError::InvalidPath {
        path: device.to_owned(),
        reason: "not a loop device path like /dev/loop3".to_owned(),
    };
    let text = device.to_str().ok_or_else(refuse)?;
    let number = text.strip_prefix("/dev/loop").ok_or_else(refuse)?;
    if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    number.parse().map_err(|_| refuse())
}

/// Whether `path` (absolute, canonical) is one of `roots` (canonical) or under one.
/// Compared by components, so `/state-other` is not under `/state`.
pub fn is_under(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

/// Resolves a path from a request to its canonical form and checks it lies under one of
/// `roots`. The path must be absolute and free of `..`, must exist, and must not itself
/// be a symbolic link (the caller then opens the canonical path without following links,
/// so a link swapped in afterwards fails instead of redirecting).
pub fn resolve_inside(path: &Path, roots: &[&Path]) -> Result<PathBuf, HelperError> {
    let invalid = |reason: &str| HelperError::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.is_absolute() {
        return Err(invalid("not an absolute path"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid("contains `..`"));
    }
    let metadata = std::fs::symlink_metadata(path).map_err(|_| invalid("does not exist"))?;
    if metadata.file_type().is_symlink() {
        return Err(invalid("is a symbolic link"));
    }
    let canonical = path
        .canonicalize()
        .map_err(|_| invalid("cannot be resolved"))?;
    // Roots that do not exist yet contain nothing.
    let canonical_roots: Vec<PathBuf> = roots
        .iter()
        .filter_map(|root| root.canonicalize().ok())
        .collect();
    if !is_under(&canonical, &canonical_roots) {
        return Err(HelperError::PathOutsideDirs { path: canonical });
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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

    #[test]
    fn loop_devices() {
        let cases: &[(&str, Option<u32>)] = &[
            ("/dev/loop0", Some(0)),
            ("/dev/loop17", Some(17)),
            ("/dev/loop", None),
            ("/dev/loop-control", None),
            ("/dev/loop1/../sda", None),
            ("/dev/sda", None),
            ("dev/loop0", None),
            ("/dev/loop12345678", None),
            ("/dev/loop+1", None),
        ];
        for (device, expected) in cases {
            assert_eq!(loop_device(Path::new(device)).ok(), *expected, "{device}");
        }
    }

    #[test]
    fn is_under_compares_components() {
        let roots = vec![PathBuf::from("/home/u/state"), PathBuf::from("/run/u")];
        let cases = [
            ("/home/u/state", true),
            ("/home/u/state/vms/a/disk.img", true),
            ("/run/u/x.sock", true),
            ("/home/u/state-other/x", false),
            ("/home/u", false),
            ("/etc/shadow", false),
        ];
        for (path, expected) in cases {
            assert_eq!(is_under(Path::new(path), &roots), expected, "{path}");
        }
    }

    #[test]
    fn paths_resolve_inside_the_roots_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let run = dir.path().join("run");
        let outside = dir.path().join("outside");
        for d in [&state, &run, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(state.join("disk.img"), b"").unwrap();
        std::fs::write(outside.join("secret"), b"").unwrap();
        symlink(outside.join("secret"), state.join("link")).unwrap();
        symlink(&outside, state.join("dirlink")).unwrap();
        let roots: [&Path; 2] = [&state, &run];

        let ok = resolve_inside(&state.join("disk.img"), &roots).unwrap();
        assert_eq!(ok, state.canonicalize().unwrap().join("disk.img"));
        assert!(
            resolve_inside(&run, &roots).is_ok(),
            "a root itself is inside"
        );

        let refused: &[(PathBuf, &str)] = &[
            (outside.join("secret"), "outside"),
            (PathBuf::from("/etc/passwd"), "outside"),
            (state.join("link"), "symbolic link"),
            // A link in a parent component resolves outside.
            (state.join("dirlink/secret"), "outside"),
            (state.join("../outside/secret"), "`..`"),
            (state.join("missing"), "does not exist"),
            (PathBuf::from("state/disk.img"), "absolute"),
        ];
        for (path, fragment) in refused {
            let error = resolve_inside(path, &roots).unwrap_err();
            assert!(
                error.to_string().contains(fragment),
                "{}: {error}",
                path.display()
            );
        }
        assert!(matches!(
            resolve_inside(&outside.join("secret"), &roots),
            Err(HelperError::PathOutsideDirs { .. })
        ));
    }
}
