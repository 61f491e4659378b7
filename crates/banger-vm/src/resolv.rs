//! The `/etc/resolv.conf` a `--nat` guest gets: the host's upstream name servers, so that
//! a guest with internet access can also resolve names. Loopback servers (a local cache,
//! systemd-resolved's 127.0.0.53 stub) are unreachable from a guest; for the stub, the
//! real upstreams come from `/run/systemd/resolve/resolv.conf`. A guest without NAT
//! reaches only the host, so it gets no file from banger.

use std::net::IpAddr;

/// The host's resolver configuration files, in the order they are consulted.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// The `nameserver` addresses in a resolv.conf text that a guest can reach through NAT
/// (not loopback), in file order, without duplicates.
pub fn reachable_nameservers(text: &str) -> Vec<IpAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // An IPv6 server may carry a zone (`fe80::1%eth0`), meaningless in the guest.
        let Some(address) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        if !address.is_loopback() && !address.is_unspecified() && !servers.contains(&address) {
            servers.push(address);
        }
    }
    servers
}

/// The guest's resolv.conf from the host's files' contents (`None` for a missing file),
/// consulted in order until one names a reachable server. `None` when none does.
pub fn guest_resolv_conf(host_files: &[Option<String>]) -> Option<String> {
    let servers = host_files
        .iter()
        .flatten()
        .map(|text| reachable_nameservers(text))
        .find(|servers| !servers.is_empty())?;
    let mut text =
        String::from("# Written by banger when the VM was created: the host's name servers.\n");
    for server in servers.iter().take(3) {
        text.push_str(&format!("nameserver {server}\n"));
    }
    Some(text)
}

/// Reads the host's files and builds the guest's resolv.conf.
pub fn for_nat_guest() -> Option<String> {
    let files: Vec<Option<String>> = HOST_FILES
        .iter()
        .map(|path| std::fs::read_to_string(path).ok())
        .collect();
    guest_resolv_conf(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_servers_table() {
        let cases: &[(&str, &[&str])] = &[
            ("nameserver 10.0.0.53\n", &["10.0.0.53"]),
            ("nameserver 127.0.0.53\noptions edns0\n", &[]),
            (
                "# comment\nsearch example.com\nnameserver 1.1.1.1\nnameserver 127.0.0.1\nnameserver 1.1.1.1\nnameserver 2001:db8::1\n",
                &["1.1.1.1", "2001:db8::1"],
            ),
            ("nameserver ::1\nnameserver 0.0.0.0\n", &[]),
            ("nameserver fe80::1%eth0\nnameserver not-an-ip\n", &[]),
            ("  nameserver   9.9.9.9  # trailing\n", &["9.9.9.9"]),
            ("", &[]),
        ];
        for (text, expected) in cases {
            let got: Vec<String> = reachable_nameservers(text)
                .iter()
                .map(|a| a.to_string())
                .collect();
            assert_eq!(got, *expected, "{text:?}");
        }
    }

    #[test]
    fn the_stub_falls_back_to_systemd_resolveds_upstreams() {
        let stub = Some("nameserver 127.0.0.53\n".to_string());
        let upstream = Some("nameserver 192.0.2.1\nnameserver 192.0.2.2\n".to_string());
        assert_eq!(
            guest_resolv_conf(&[stub.clone(), upstream]).unwrap(),
            "# Written by banger when the VM was created: the host's name servers.\n\
             nameserver 192.0.2.1\nnameserver 192.0.2.2\n"
        );
        assert_eq!(guest_resolv_conf(&[stub, None]), None);
        assert_eq!(guest_resolv_conf(&[None, None]), None);
    }

    #[test]
    fn the_first_useful_file_wins_and_at_most_three_servers_are_kept() {
        let first = Some(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n"
                .to_string(),
        );
        let second = Some("nameserver 192.0.2.1\n".to_string());
        let text = guest_resolv_conf(&[first, second]).unwrap();
        assert_eq!(text.matches("nameserver").count(), 3);
        assert!(!text.contains("10.0.0.4") && !text.contains("192.0.2.1"));
    }
}
