//! The policy scripts as text: what `set` writes for a fresh guest and over an older
//! policy, what `remove` deletes, how learned addresses refresh, and the checks on
//! requests. The netns tests (`tests/netns.rs`) apply them to a real kernel.

use super::*;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn rule(chain: &str, handle: u64, comment: Option<&str>) -> NftRule {
    NftRule {
        chain: chain.into(),
        handle,
        comment: comment.map(str::to_owned),
    }
}

fn target<'a>(nets: &'a [PolicyNet], keep_learned: bool) -> PolicyTarget<'a> {
    PolicyTarget {
        guest_ip: ip("172.30.0.5"),
        tap: "bgt-0123abcd",
        gateway: ip("172.30.0.1"),
        resolver_port: 42070,
        sni_port: Some(42071),
        nets,
        keep_learned,
    }
}

#[test]
fn names_and_comments() {
    assert_eq!(chain_name(ip("172.30.0.5")), "g_172_30_0_5");
    assert_eq!(chain_guest("g_172_30_0_5"), Some(ip("172.30.0.5")));
    for bad in [
        "g_172_30_0",
        "g_172_30_0_5_a",
        "g_01_2_3_4",
        "x_1_2_3_4",
        "pre",
    ] {
        assert_eq!(chain_guest(bad), None, "{bad}");
    }
    let note = comment(ip("172.30.0.5"), "bgt-0123abcd");
    assert_eq!(note, "banger-pol=172.30.0.5,tap=bgt-0123abcd");
    assert_eq!(comment_guest(&note), Some(ip("172.30.0.5")));
    assert_eq!(comment_guest("banger-vm=172.30.0.5,via=eth0"), None);
}

#[test]
fn set_writes_the_whole_policy_and_replaces_the_old_one() {
    let nets = [
        PolicyNet {
            addr: ip("10.0.0.0"),
            prefix_len: 8,
            port: Some(22),
        },
        PolicyNet {
            addr: ip("192.0.2.7"),
            prefix_len: 32,
            port: None,
        },
    ];
    let fresh = plan_set(&[], &[], &target(&nets, false));
    for line in [
        "add rule bridge bangerpol pre iifname \"bgt-0123abcd\" ether type arp accept comment \"banger-pol=172.30.0.5,tap=bgt-0123abcd\"",
        "add rule bridge bangerpol pre iifname \"bgt-0123abcd\" ether type ip ip saddr 172.30.0.5 accept",
        "add rule bridge bangerpol pre iifname \"bgt-0123abcd\" counter drop",
        "add rule bridge bangerpol forward iifname \"bgt-0123abcd\" drop",
        "add rule ip bangerpol pre ip saddr 172.30.0.5 ip daddr 172.30.0.1 udp dport 53 redirect to :42070",
        "add rule ip bangerpol input ip saddr 172.30.0.5 jump g_172_30_0_5",
        "add rule ip bangerpol forward ip saddr 172.30.0.5 jump g_172_30_0_5",
        "add rule ip bangerpol g_172_30_0_5 ip daddr 172.30.0.1 udp dport 42070 accept",
        "add rule ip bangerpol g_172_30_0_5 meta l4proto { tcp, udp } ip daddr 10.0.0.0/8 th dport 22 accept",
        "add rule ip bangerpol g_172_30_0_5 meta l4proto { tcp, udp } ip daddr 192.0.2.7 accept",
        "flush set ip bangerpol g_172_30_0_5_a",
        "add rule ip bangerpol pre ip saddr 172.30.0.5 tcp dport 443 redirect to :42071",
        "add rule ip bangerpol g_172_30_0_5 ip daddr 172.30.0.1 tcp dport 42071 accept",
    ] {
        assert!(fresh.contains(line), "missing {line:?} in:\n{fresh}");
    }
    assert!(
        fresh
            .trim_end()
            .ends_with("add rule ip bangerpol g_172_30_0_5 counter drop"),
        "the chain must end in a drop:\n{fresh}"
    );
    assert!(!fresh.contains("delete rule"), "{fresh}");

    let note = "banger-pol=172.30.0.5,tap=bgt-0123abcd";
    let other = "banger-pol=172.30.0.6,tap=bgt-99999999";
    let ip_rules = [
        rule("pre", 4, Some(note)),
        rule("input", 5, Some(note)),
        rule("forward", 6, Some(other)),
        rule("g_172_30_0_5", 7, None),
    ];
    let bridge_rules = [rule("pre", 8, Some(note)), rule("pre", 9, Some(other))];
    let again = plan_set(&ip_rules, &bridge_rules, &target(&[], true));
    assert!(again.contains("delete rule ip bangerpol pre handle 4\n"));
    assert!(again.contains("delete rule ip bangerpol input handle 5\n"));
    assert!(again.contains("delete rule bridge bangerpol pre handle 8\n"));
    assert!(
        !again.contains("handle 6") && !again.contains("handle 9"),
        "{again}"
    );
    // The chain's own rules go with `flush chain`; kept learned sets are not flushed.
    assert!(again.contains("flush chain ip bangerpol g_172_30_0_5\n"));
    assert!(!again.contains("flush set"), "{again}");
}

#[test]
fn remove_deletes_only_that_guest() {
    let note = "banger-pol=172.30.0.5,tap=bgt-0123abcd";
    let other = "banger-pol=172.30.0.6,tap=bgt-99999999";
    let ip_rules = [rule("pre", 4, Some(note)), rule("forward", 6, Some(other))];
    let bridge_rules = [rule("forward", 8, Some(note))];
    let chains = vec![
        "pre".to_string(),
        "g_172_30_0_5".into(),
        "g_172_30_0_6".into(),
    ];
    let script = plan_remove(&ip_rules, &bridge_rules, &chains, ip("172.30.0.5")).unwrap();
    assert_eq!(
        script,
        "delete rule ip bangerpol pre handle 4\n\
         delete rule bridge bangerpol forward handle 8\n\
         flush chain ip bangerpol g_172_30_0_5\n\
         delete chain ip bangerpol g_172_30_0_5\n\
         delete set ip bangerpol g_172_30_0_5_a\n\
         delete set ip bangerpol g_172_30_0_5_p\n"
    );
    assert_eq!(plan_remove(&[], &[], &chains[..1], ip("172.30.0.5")), None);
}

#[test]
fn learned_addresses_refresh_their_timeout() {
    let script = plan_add_addresses(
        ip("172.30.0.5"),
        &[
            PolicyAddress {
                ip: ip("192.0.2.1"),
                port: None,
                timeout_secs: 60,
            },
            PolicyAddress {
                ip: ip("192.0.2.2"),
                port: Some(443),
                timeout_secs: 30,
            },
        ],
    );
    assert_eq!(
        script,
        "add element ip bangerpol g_172_30_0_5_a { 192.0.2.1 timeout 60s }\n\
         delete element ip bangerpol g_172_30_0_5_a { 192.0.2.1 }\n\
         add element ip bangerpol g_172_30_0_5_a { 192.0.2.1 timeout 60s }\n\
         add element ip bangerpol g_172_30_0_5_p { 192.0.2.2 . 443 timeout 30s }\n\
         delete element ip bangerpol g_172_30_0_5_p { 192.0.2.2 . 443 }\n\
         add element ip bangerpol g_172_30_0_5_p { 192.0.2.2 . 443 timeout 30s }\n"
    );
}

#[test]
fn request_checks() {
    let pool: Ipv4Subnet = "172.30.0.0/24".parse().unwrap();
    let net = |a: &str, p: u8, port| PolicyNet {
        addr: ip(a),
        prefix_len: p,
        port,
    };
    assert!(check_nets(&[net("10.0.0.0", 8, Some(22)), net("0.0.0.0", 0, None)]).is_ok());
    for bad in [
        net("10.0.0.1", 8, None),
        net("10.0.0.0", 33, None),
        net("10.0.0.0", 8, Some(0)),
    ] {
        assert!(check_nets(&[bad]).is_err(), "{bad:?}");
    }
    assert!(check_nets(&vec![net("10.0.0.0", 8, None); 257]).is_err());

    let entry = |a: &str, port, t| PolicyAddress {
        ip: ip(a),
        port,
        timeout_secs: t,
    };
    assert!(check_addresses(&pool, &[entry("192.0.2.1", Some(443), 30)]).is_ok());
    for bad in [
        entry("127.0.0.1", None, 30),
        entry("169.254.169.254", None, 30),
        entry("172.30.0.1", None, 30),
        entry("172.30.0.9", None, 30),
        entry("224.0.0.1", None, 30),
        entry("0.0.0.0", None, 30),
        entry("192.0.2.1", Some(0), 30),
        entry("192.0.2.1", None, 0),
        entry("192.0.2.1", None, 86_401),
    ] {
        assert!(check_addresses(&pool, &[bad]).is_err(), "{bad:?}");
    }
    assert!(check_addresses(&pool, &vec![entry("192.0.2.1", None, 30); 129]).is_err());
}

#[test]
fn dropped_packets_are_summed_from_both_tables() {
    let ip_json = br#"{"nftables":[
        {"rule":{"family":"ip","table":"bangerpol","chain":"g_172_30_0_5","handle":9,
          "expr":[{"counter":{"packets":3,"bytes":180}},{"drop":null}]}},
        {"rule":{"family":"ip","table":"bangerpol","chain":"g_172_30_0_6","handle":10,
          "expr":[{"counter":{"packets":50,"bytes":1}},{"drop":null}]}}]}"#;
    let bridge_json = br#"{"nftables":[
        {"rule":{"family":"bridge","table":"bangerpol","chain":"pre","handle":3,
          "comment":"banger-pol=172.30.0.5,tap=bgt-0123abcd",
          "expr":[{"counter":{"packets":2,"bytes":100}},{"drop":null}]}}]}"#;
    assert_eq!(
        parse_dropped(ip_json, bridge_json, ip("172.30.0.5")).unwrap(),
        5
    );
    assert_eq!(
        parse_chains(br#"{"nftables":[{"chain":{"name":"pre"}},{"chain":{"name":"g_1_2_3_4"}}]}"#)
            .unwrap(),
        ["pre", "g_1_2_3_4"]
    );
}

#[test]
fn cleanup_removes_the_pools_policies_and_the_tables_once_empty() {
    let pool: Ipv4Subnet = "172.30.0.0/24".parse().unwrap();
    let c5 = comment(ip("172.30.0.5"), "bgt-0123abcd");
    let c9 = comment(ip("10.9.0.2"), "bgt-99999999");
    let ip_rules = [rule("forward", 3, Some(&c5)), rule("forward", 4, Some(&c9))];
    let bridge_rules = [rule("pre", 7, Some(&c5))];
    let chains = [
        "pre".to_owned(),
        "g_172_30_0_5".to_owned(),
        "g_10_9_0_2".to_owned(),
    ];
    // Another installation's guest keeps its policy and the tables.
    let (script, guests, tables) =
        plan_cleanup(&ip_rules, &bridge_rules, &chains, (true, true), &pool);
    let script = script.unwrap();
    assert_eq!((guests, tables), (1, false));
    assert!(
        script.contains("delete rule ip bangerpol forward handle 3\n"),
        "{script}"
    );
    assert!(
        script.contains("delete rule bridge bangerpol pre handle 7\n"),
        "{script}"
    );
    assert!(
        script.contains("delete chain ip bangerpol g_172_30_0_5\n"),
        "{script}"
    );
    assert!(
        !script.contains("handle 4") && !script.contains("g_10_9_0_2"),
        "{script}"
    );
    assert!(!script.contains("delete table"), "{script}");
    // Only this pool's guests: both tables go.
    let (script, guests, tables) = plan_cleanup(
        &ip_rules[..1],
        &bridge_rules,
        &chains[..2],
        (true, true),
        &pool,
    );
    assert_eq!((guests, tables), (1, true));
    assert_eq!(
        script.unwrap(),
        "delete table ip bangerpol\ndelete table bridge bangerpol\n"
    );
    // No tables: nothing to do.
    assert_eq!(
        plan_cleanup(&[], &[], &[], (false, false), &pool),
        (None, 0, false)
    );
}
