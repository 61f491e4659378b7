//! `guest_net::configure_ipv4` against the real kernel: in a network namespace of its
//! own (made for one thread, so the host's interfaces are never touched), a veth
//! interface gets a MAC, an address and a default route, and `ip` (the reference) reads
//! back what was set. The agent does the same to eth0 in a restored guest; the warm-start
//! e2e tests check the result there.

use std::net::Ipv4Addr;
use std::process::Command;

use banger_requires::require;
use banger_sys::guest_net::{Ipv4Config, configure_ipv4};

fn ip(args: &[&str]) -> String {
    #[allow(
        clippy::disallowed_methods,
        reason = "must fork from the calling thread, the one in the test's network namespace"
    )]
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_interface_gets_its_new_mac_address_and_default_route() {
    require!(Root, Tool("ip"));
    // A network namespace belongs to the thread that made it; `ip` runs from that
    // thread and inherits it.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        ip(&["link", "set", "d1", "up"]);
        // What a snapshot's guest had: another address, and a default route via it.
        ip(&["addr", "add", "10.9.0.99/24", "dev", "d0"]);
        ip(&["link", "set", "d0", "up"]);
        ip(&["route", "add", "default", "via", "10.9.0.1", "dev", "d0"]);

        let config = Ipv4Config {
            interface: "d0".into(),
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            address: Ipv4Addr::new(10, 9, 0, 7),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 9, 0, 1),
        };
        configure_ipv4(&config).unwrap();
        // Twice: a retried identity step must not fail on what the first one did.
        configure_ipv4(&config).unwrap();

        let link = ip(&["-o", "link", "show", "d0"]);
        assert!(link.contains("link/ether 52:54:00:12:34:56"), "{link}");
        assert!(link.contains(",UP"), "{link}");
        let addresses = ip(&["-o", "-4", "addr", "show", "dev", "d0"]);
        assert!(addresses.contains("inet 10.9.0.7/24"), "{addresses}");
        assert!(
            !addresses.contains("10.9.0.99"),
            "the old address is gone: {addresses}"
        );
        let routes = ip(&["route", "show", "default"]);
        assert_eq!(routes.trim(), "default via 10.9.0.1 dev d0", "{routes}");

        let missing = Ipv4Config {
            interface: "nosuch0".into(),
            ..config
        };
        let error = configure_ipv4(&missing).unwrap_err();
        assert!(
            error.to_string().starts_with("set the MAC address: "),
            "{error}"
        );
    })
    .join()
    .unwrap();
}
