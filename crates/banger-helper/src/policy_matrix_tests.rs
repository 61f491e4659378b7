//! The helper's policy matrix: every operation against arguments inside and outside its
//! policy. Out of policy are interface names without banger's shape or prefix, guest
//! addresses outside the pool (and its network, gateway and broadcast addresses), DNS
//! servers other than the gateway, port 0, malformed or oversized policy lists, operations
//! the helper does not have, a name of ours that now names another kind of interface,
//! and a socket path that is (or sits below) a symlink. Each refusal is asserted with its
//! code, and a refusal by argument runs no command at all. With
//! `BANGER_RELIABILITY_OUT=DIR` the counts go to `DIR/helper_policy.json` for
//! `cargo xtask reliability`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use banger_proto::helper::{
    HelperError, HelperRequest, MAX_POLICY_ADDRESSES, MAX_POLICY_NETS, MAX_POLICY_TIMEOUT_SECS,
    PolicyAddress, PolicyNet, decode_helper_request,
};

use crate::config::{HelperConfig, HostPaths, NatBackend};
use crate::dispatch::Helper;
use crate::testing::FakeTools;

/// An interface listing with a veth that has a tap's name.
const LINKS: &str = r#"[
  {"ifname":"banger0","flags":["UP"],"linkinfo":{"info_kind":"bridge"}},
  {"ifname":"bgt-0123abcd","flags":["UP"],"master":"banger0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
  {"ifname":"bgt-veth","flags":["UP"],"linkinfo":{"info_kind":"veth"}},
  {"ifname":"bgt-bridge","flags":["UP"],"linkinfo":{"info_kind":"bridge"}},
  {"ifname":"bgt-tun","flags":["UP"],"linkinfo":{"info_kind":"tun","info_data":{"type":"tun"}}}
]"#;

fn helper(dir: &Path) -> (Helper, Arc<FakeTools>) {
    let proc_sys = dir.join("proc_sys");
    std::fs::create_dir_all(proc_sys.join("net/ipv4")).unwrap();
    std::fs::write(proc_sys.join("net/ipv4/ip_forward"), "1\n").unwrap();
    let config = HelperConfig {
        socket: dir.join("helper.sock"),
        owner_uid: 1000,
        bridge: "banger0".into(),
        subnet: "172.30.0.0/24".parse().unwrap(),
        uplink: Some("eth0".into()),
        nat_backend: NatBackend::Nft,
        host: HostPaths { proc_sys },
        fail_ops: Vec::new(),
    };
    let tools = Arc::new(FakeTools::new().reply("ip -j -d link show", LINKS));
    (Helper::new(config, tools.clone()), tools)
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Names a tap operation must refuse, and why.
const BAD_TAP_NAMES: &[(&str, &str)] = &[
    ("", "empty"),
    ("eth0", "another's interface"),
    ("banger0", "the bridge"),
    ("bgt-", "the bare prefix"),
    ("bgt-../../x", "a path"),
    ("bgt/evil", "a slash"),
    ("bgt-a b", "a space"),
    ("bgt-a\0", "a NUL"),
    ("bgt-a\n", "a newline"),
    ("BGT-1", "upper case"),
    ("bgt-é", "non-ASCII"),
    ("bgt-0123456789abcdef", "longer than 15 bytes"),
    ("xbgt-1", "the prefix not at the start"),
    ("bgt-1;reboot", "a shell metacharacter"),
];

/// Addresses a per-guest operation must refuse.
const BAD_GUEST_IPS: &[(&str, &str)] = &[
    ("172.30.0.0", "the pool's network address"),
    ("172.30.0.1", "the gateway"),
    ("172.30.0.255", "the broadcast address"),
    ("172.31.0.2", "the next pool"),
    ("10.0.0.5", "a private address elsewhere"),
    ("8.8.8.8", "a public address"),
    ("127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("255.255.255.255", "limited broadcast"),
];

const GOOD_TAP: &str = "bgt-0123abcd";
const GOOD_GUEST: &str = "172.30.0.9";

/// The operations that take a guest address, built around one.
fn per_guest(guest_ip: Ipv4Addr) -> Vec<HelperRequest> {
    vec![
        HelperRequest::AddNat { guest_ip },
        HelperRequest::RemoveNat { guest_ip },
        set_policy(guest_ip, GOOD_TAP, 5353, None, vec![]),
        HelperRequest::RemovePolicy { guest_ip },
        HelperRequest::AddPolicyAddresses {
            guest_ip,
            entries: vec![address("1.1.1.1", None, 60)],
        },
        HelperRequest::PolicyCounters { guest_ip },
    ]
}

/// The operations that take a tap name.
fn per_tap(name: &str) -> Vec<HelperRequest> {
    let name = name.to_owned();
    vec![
        HelperRequest::CreateTap { name: name.clone() },
        HelperRequest::OpenTap { name: name.clone() },
        HelperRequest::DeleteTap { name: name.clone() },
        set_policy(ip(GOOD_GUEST), &name, 5353, None, vec![]),
    ]
}

fn set_policy(
    guest_ip: Ipv4Addr,
    tap: &str,
    resolver_port: u16,
    sni_port: Option<u16>,
    nets: Vec<PolicyNet>,
) -> HelperRequest {
    HelperRequest::SetPolicy {
        guest_ip,
        tap: tap.to_owned(),
        resolver_port,
        sni_port,
        nets,
        keep_learned: false,
    }
}

fn addresses(entries: Vec<PolicyAddress>) -> HelperRequest {
    HelperRequest::AddPolicyAddresses {
        guest_ip: ip(GOOD_GUEST),
        entries,
    }
}

fn net(addr: &str, prefix_len: u8, port: Option<u16>) -> PolicyNet {
    PolicyNet {
        addr: ip(addr),
        prefix_len,
        port,
    }
}

fn address(addr: &str, port: Option<u16>, timeout_secs: u32) -> PolicyAddress {
    PolicyAddress {
        ip: ip(addr),
        port,
        timeout_secs,
    }
}

/// Every request that is out of policy by its arguments, with the refusal code.
fn out_of_policy() -> Vec<(String, HelperRequest, &'static str)> {
    let mut cases = Vec::new();
    for (name, why) in BAD_TAP_NAMES {
        for request in per_tap(name) {
            cases.push((format!("tap {why}"), request, "invalid_name"));
        }
    }
    for (addr, why) in BAD_GUEST_IPS {
        for request in per_guest(ip(addr)) {
            cases.push((format!("guest {why}"), request, "outside_pool"));
        }
    }
    let dns = |bridge: &str, server: &str, port: u16| HelperRequest::SetupDns {
        bridge: bridge.into(),
        server_ip: ip(server),
        port,
    };
    for (request, why, code) in [
        (
            dns("eth0", "172.30.0.1", 53),
            "dns on another interface",
            "invalid_name",
        ),
        (
            dns("banger1", "172.30.0.1", 53),
            "dns on another bridge",
            "invalid_name",
        ),
        (
            dns("banger0 ", "172.30.0.1", 53),
            "dns bridge with a space",
            "invalid_name",
        ),
        (
            dns("", "172.30.0.1", 53),
            "dns with no bridge",
            "invalid_name",
        ),
        (
            dns("banger0", "8.8.8.8", 53),
            "dns server elsewhere",
            "outside_pool",
        ),
        (
            dns("banger0", "172.30.0.2", 53),
            "dns server a guest",
            "outside_pool",
        ),
        (dns("banger0", "172.30.0.1", 0), "dns port 0", "bad_request"),
    ] {
        cases.push((why.to_owned(), request, code));
    }
    let guest = ip(GOOD_GUEST);
    let too_many_nets = vec![net("10.0.0.0", 8, None); MAX_POLICY_NETS + 1];
    for (request, why) in [
        (
            set_policy(guest, GOOD_TAP, 0, None, vec![]),
            "resolver port 0",
        ),
        (
            set_policy(guest, GOOD_TAP, 5353, Some(0), vec![]),
            "sni port 0",
        ),
        (
            set_policy(guest, GOOD_TAP, 5353, None, vec![net("10.0.0.0", 33, None)]),
            "prefix length 33",
        ),
        (
            set_policy(guest, GOOD_TAP, 5353, None, vec![net("10.0.0.1", 8, None)]),
            "host bits set",
        ),
        (
            set_policy(
                guest,
                GOOD_TAP,
                5353,
                None,
                vec![net("10.0.0.0", 8, Some(0))],
            ),
            "net port 0",
        ),
        (
            set_policy(guest, GOOD_TAP, 5353, None, too_many_nets),
            "too many nets",
        ),
        (
            addresses(vec![address("127.0.0.1", None, 60)]),
            "allow loopback",
        ),
        (
            addresses(vec![address("169.254.169.254", None, 60)]),
            "allow link-local (cloud metadata)",
        ),
        (
            addresses(vec![address("224.0.0.1", None, 60)]),
            "allow multicast",
        ),
        (
            addresses(vec![address("255.255.255.255", None, 60)]),
            "allow broadcast",
        ),
        (
            addresses(vec![address("0.0.0.0", None, 60)]),
            "allow unspecified",
        ),
        (
            addresses(vec![address("172.30.0.3", None, 60)]),
            "allow another guest",
        ),
        (
            addresses(vec![address("172.30.0.1", None, 60)]),
            "allow the gateway",
        ),
        (
            addresses(vec![address("1.1.1.1", Some(0), 60)]),
            "allow port 0",
        ),
        (addresses(vec![address("1.1.1.1", None, 0)]), "timeout 0"),
        (
            addresses(vec![address("1.1.1.1", None, MAX_POLICY_TIMEOUT_SECS + 1)]),
            "timeout past the maximum",
        ),
        (
            addresses(vec![address("1.1.1.1", None, 60); MAX_POLICY_ADDRESSES + 1]),
            "too many addresses",
        ),
    ] {
        cases.push((why.to_owned(), request, "bad_request"));
    }
    cases
}

/// One request per operation, every argument inside the policy.
fn in_policy() -> Vec<HelperRequest> {
    let guest = ip(GOOD_GUEST);
    let mut requests = vec![
        HelperRequest::Hello,
        HelperRequest::EnsureBridge,
        HelperRequest::ListNetwork,
        HelperRequest::SetupDns {
            bridge: "banger0".into(),
            server_ip: ip("172.30.0.1"),
            port: 53,
        },
        HelperRequest::SetupDns {
            bridge: "banger0".into(),
            server_ip: ip("127.0.0.1"),
            port: 5353,
        },
        set_policy(
            guest,
            GOOD_TAP,
            5353,
            Some(8443),
            vec![net("10.0.0.0", 8, Some(443)), net("0.0.0.0", 0, None)],
        ),
        addresses(vec![address("1.1.1.1", Some(443), MAX_POLICY_TIMEOUT_SECS)]),
    ];
    requests.extend(per_guest(guest));
    requests.extend(per_guest(ip("172.30.0.254")));
    // Taps by their names only: open_tap of a real tap would really open /dev/net/tun.
    requests.extend(
        per_tap("bgt-newone")
            .into_iter()
            .filter(|r| !matches!(r, HelperRequest::OpenTap { .. })),
    );
    requests
}

fn code(error: &HelperError) -> String {
    serde_json::to_value(error).unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[derive(Debug, Default)]
struct Tally {
    refused: usize,
    allowed: usize,
    mishandled: Vec<String>,
}

#[test]
fn every_operation_refuses_every_out_of_policy_argument_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let mut operations = std::collections::BTreeSet::new();
    for (why, request, expected) in out_of_policy() {
        let (helper, tools) = helper(dir.path());
        operations.insert(request.op_name());
        let shown = format!("{why}: {}", request.op_name());
        match helper.handle(request) {
            Ok(_) => tally.mishandled.push(format!("{shown}: allowed")),
            Err(error) if code(&error) != expected => tally.mishandled.push(format!(
                "{shown}: {} ({error}), not {expected}",
                code(&error)
            )),
            Err(_) if !tools.commands().is_empty() => tally.mishandled.push(format!(
                "{shown}: refused after running {:?}",
                tools.commands()
            )),
            Err(_) => tally.refused += 1,
        }
    }
    // What is in policy passes the checks: it reaches the tools (or, for hello, answers).
    for request in in_policy() {
        let (helper, tools) = helper(dir.path());
        let shown = format!("{request:?}");
        let name = request.op_name();
        operations.insert(name);
        match helper.handle(request) {
            Err(error) if code(&error) != "failed" => tally
                .mishandled
                .push(format!("{shown}: refused in policy: {error}")),
            _ if name != "hello" && tools.commands().is_empty() => {
                tally.mishandled.push(format!("{shown}: ran nothing"))
            }
            _ => tally.allowed += 1,
        }
    }
    let (wire_refused, wire_tried) = wire_refusals(&mut tally.mishandled);
    tally.refused += wire_refused;
    let (kind_refused, kind_tried) = other_kinds_refused(dir.path(), &mut tally.mishandled);
    tally.refused += kind_refused;
    let (socket_refused, socket_tried) = socket_paths_refused(dir.path(), &mut tally.mishandled);
    tally.refused += socket_refused;

    assert!(tally.mishandled.is_empty(), "{:#?}", tally.mishandled);
    // Every operation of the protocol was tried.
    let every_op = [
        "hello",
        "ensure_bridge",
        "create_tap",
        "open_tap",
        "delete_tap",
        "add_nat",
        "remove_nat",
        "list_network",
        "setup_dns",
        "set_policy",
        "remove_policy",
        "add_policy_addresses",
        "policy_counters",
    ];
    for op in every_op {
        assert!(operations.contains(op), "{op} was not tried");
    }
    let tried = out_of_policy().len() + wire_tried + kind_tried + socket_tried;
    assert_eq!(tally.refused, tried);
    eprintln!(
        "helper policy matrix: {} operations; {tried} out-of-policy cases, {} refused; {} in-policy cases allowed",
        every_op.len(),
        tally.refused,
        tally.allowed
    );
    if let Some(out) = std::env::var_os("BANGER_RELIABILITY_OUT") {
        std::fs::create_dir_all(&out).unwrap();
        let json = serde_json::json!({
            "operations": every_op.len(),
            "out_of_policy": tried,
            "refused": tally.refused,
            "in_policy": tally.allowed,
            "by_argument": out_of_policy().len(),
            "wire": wire_tried,
            "other_kind": kind_tried,
            "socket_paths": socket_tried,
        });
        std::fs::write(
            Path::new(&out).join("helper_policy.json"),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }
}

/// Lines that are not a request of this protocol: operations the helper was cut down
/// from (it has no loop devices, chown or file deletion), unknown fields' types, and
/// garbage. Refused at decoding, before any dispatch.
fn wire_refusals(mishandled: &mut Vec<String>) -> (usize, usize) {
    let lines = [
        r#"{"op":"delete_bridge","name":"banger0"}"#,
        r#"{"op":"chown","path":"/etc/shadow","uid":1000}"#,
        r#"{"op":"loop_attach","path":"/dev/sda"}"#,
        r#"{"op":"delete_file","path":"/var/lib/banger/../../etc/passwd"}"#,
        r#"{"op":"teardown_dns"}"#,
        r#"{"op":"create_tap"}"#,
        r#"{"op":"create_tap","name":7}"#,
        r#"{"op":"add_nat","guest_ip":"172.30.0.9/24"}"#,
        r#"{"op":"add_nat","guest_ip":"::1"}"#,
        r#"{"op":"setup_dns","bridge":"banger0","server_ip":"172.30.0.1","port":65536}"#,
        r#"{"name":"bgt-1"}"#,
        "not json",
    ];
    let mut refused = 0;
    for line in lines {
        match decode_helper_request(line.as_bytes()) {
            Ok(request) => mishandled.push(format!("{line}: decoded as {request:?}")),
            Err(_) => refused += 1,
        }
    }
    (refused, lines.len())
}

/// A name with banger's prefix that names another kind of interface (made by someone
/// else, or swapped in since banger made the tap): refused, and only the listing ran.
fn other_kinds_refused(dir: &Path, mishandled: &mut Vec<String>) -> (usize, usize) {
    let mut tried = 0;
    let mut refused = 0;
    for name in ["bgt-veth", "bgt-bridge", "bgt-tun"] {
        for request in [
            HelperRequest::CreateTap { name: name.into() },
            HelperRequest::OpenTap { name: name.into() },
            HelperRequest::DeleteTap { name: name.into() },
        ] {
            tried += 1;
            let (helper, tools) = helper(dir);
            let shown = format!("{request:?}");
            let result = helper.handle(request);
            let changed: Vec<String> = tools
                .commands()
                .into_iter()
                .filter(|c| c != "ip -j -d link show" && !c.starts_with("ip addr replace"))
                .filter(|c| !c.contains("banger0"))
                .collect();
            match result {
                Err(error) if code(&error) == "failed" && changed.is_empty() => refused += 1,
                Err(error) if changed.is_empty() => {
                    mishandled.push(format!("{shown}: {} ({error})", code(&error)))
                }
                _ => mishandled.push(format!("{shown}: ran {changed:?}")),
            }
        }
    }
    (refused, tried)
}

/// The one path the helper writes: its socket. Refused when its directory is a symlink,
/// open to others, or not a directory, and when the socket path is a symlink (to a
/// socket, a file or a directory) or another kind of file; nothing is created through
/// the link.
fn socket_paths_refused(dir: &Path, mishandled: &mut Vec<String>) -> (usize, usize) {
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    let me = nix::unistd::geteuid().as_raw();
    let base = dir.join("sockets");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = base.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let live = target.join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&live).unwrap();
    std::fs::write(target.join("file"), b"precious").unwrap();

    symlink(&target, base.join("dir-link")).unwrap();
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(base.join("not-a-dir"), b"").unwrap();
    symlink(&live, target.join("to-socket.sock")).unwrap();
    symlink(target.join("file"), target.join("to-file.sock")).unwrap();
    symlink(&open, target.join("to-dir.sock")).unwrap();
    symlink(base.join("nowhere"), target.join("dangling.sock")).unwrap();
    std::fs::write(target.join("regular.sock"), b"").unwrap();

    let cases = [
        base.join("dir-link/helper.sock"),
        open.join("helper.sock"),
        base.join("not-a-dir/helper.sock"),
        target.join("to-socket.sock"),
        target.join("to-file.sock"),
        target.join("to-dir.sock"),
        target.join("dangling.sock"),
        target.join("regular.sock"),
    ];
    let mut refused = 0;
    for path in &cases {
        match crate::server::bind(path, me) {
            Ok(_) => mishandled.push(format!("{}: bound", path.display())),
            Err(_) => refused += 1,
        }
    }
    // Nothing was made through any link, and what they point at is unchanged.
    let mut listed: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let made = [
        "dangling.sock",
        "file",
        "live.sock",
        "regular.sock",
        "to-dir.sock",
        "to-file.sock",
        "to-socket.sock",
    ];
    if listed != made {
        mishandled.push(format!("the link targets' directory now has {listed:?}"));
    }
    if std::fs::read(target.join("file")).unwrap() != b"precious" {
        mishandled.push("the file behind a link changed".into());
    }
    if std::fs::read_dir(&open).unwrap().next().is_some() || base.join("nowhere").exists() {
        mishandled.push("something was created through a link".into());
    }
    (refused, cases.len())
}
