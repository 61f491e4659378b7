//! Tests of the NAT rule planning (pure) and of the nft/iptables command sequences with a
//! recording fake; the real-kernel checks are in `tests/netns.rs`.

use super::*;
use crate::testing::FakeTools;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn target(guest: &str, uplink: &'static str) -> NatTarget<'static> {
    NatTarget {
        bridge: "banger0",
        uplink,
        guest_ip: ip(guest),
    }
}

fn rule(chain: &str, handle: u64, comment: Option<&str>) -> NftRule {
    NftRule {
        chain: chain.to_owned(),
        handle,
        comment: comment.map(str::to_owned),
    }
}

const BASE: &str = "banger-base=banger0";
const VM2: &str = "banger-vm=172.30.0.2,via=eth0";

fn complete_table() -> Vec<NftRule> {
    vec![
        rule("forward", 1, Some(BASE)),
        rule("forward", 2, Some(BASE)),
        rule("egress", 3, Some(VM2)),
        rule("postrouting", 4, Some(VM2)),
        rule("egress", 5, Some("banger-vm=172.30.0.20,via=eth0")),
        rule("postrouting", 6, Some("banger-vm=172.30.0.20,via=eth0")),
    ]
}

#[test]
fn comments_round_trip() {
    let cases: &[(&str, Option<&str>)] = &[
        (VM2, Some("172.30.0.2")),
        ("banger-vm=172.30.0.20,via=enp0s1", Some("172.30.0.20")),
        ("banger-vm=172.30.0.2", None),
        ("banger-vm=nonsense,via=eth0", None),
        (BASE, None),
        ("docker rule", None),
    ];
    for (comment, expected) in cases {
        assert_eq!(comment_guest(comment), expected.map(ip), "{comment}");
    }
    assert_eq!(vm_comment(ip("172.30.0.2"), "eth0"), VM2);
    assert_eq!(base_comment("banger0"), BASE);
}

#[test]
fn nft_listing_parses() {
    let json = r#"{"nftables":[
        {"metainfo":{"version":"1.0.6","json_schema_version":1}},
        {"table":{"family":"ip","name":"banger","handle":7}},
        {"chain":{"family":"ip","table":"banger","name":"egress","handle":3}},
        {"rule":{"family":"ip","table":"banger","chain":"forward","handle":5,"comment":"banger-base=banger0","expr":[]}},
        {"rule":{"family":"ip","table":"banger","chain":"egress","handle":9,"expr":[]}},
        {"rule":{"family":"ip","table":"other","chain":"egress","handle":10,"comment":"banger-vm=172.30.0.2,via=eth0","expr":[]}}
    ]}"#;
    let rules = parse_nft_rules(json.as_bytes()).unwrap();
    assert_eq!(
        rules,
        [rule("forward", 5, Some(BASE)), rule("egress", 9, None),]
    );
    assert!(parse_nft_rules(b"{}").is_err());
    assert!(parse_nft_rules(b"garbage").is_err());
}

#[test]
fn nft_add_plans() {
    let declaration_lines = nft_table_declaration().lines().count();
    let fresh_vm2 = [
        "add rule ip banger egress ip saddr 172.30.0.2/32 oifname \"eth0\" accept comment \"banger-vm=172.30.0.2,via=eth0\"",
        "add rule ip banger postrouting ip saddr 172.30.0.2/32 oifname \"eth0\" masquerade comment \"banger-vm=172.30.0.2,via=eth0\"",
    ];
    let fresh_base = [
        "add rule ip banger forward iifname \"banger0\" jump egress comment \"banger-base=banger0\"",
        "add rule ip banger forward iifname \"banger0\" drop comment \"banger-base=banger0\"",
    ];
    // (what, existing rules, target, script lines after the declaration or None)
    type Case = (
        &'static str,
        Vec<NftRule>,
        NatTarget<'static>,
        Option<Vec<&'static str>>,
    );
    let cases: Vec<Case> = vec![
        (
            "empty table: base rules and the guest's",
            vec![],
            target("172.30.0.2", "eth0"),
            Some([&fresh_base[..], &fresh_vm2[..]].concat()),
        ),
        (
            "already complete: nothing to do",
            complete_table(),
            target("172.30.0.2", "eth0"),
            None,
        ),
        (
            "a duplicate is collapsed to one",
            [complete_table(), vec![rule("egress", 7, Some(VM2))]].concat(),
            target("172.30.0.2", "eth0"),
            Some(
                [
                    &[
                        "delete rule ip banger egress handle 3",
                        "delete rule ip banger postrouting handle 4",
                        "delete rule ip banger egress handle 7",
                    ][..],
                    &fresh_vm2[..],
                ]
                .concat(),
            ),
        ),
        (
            "a half-applied guest is redone",
            vec![
                rule("forward", 1, Some(BASE)),
                rule("forward", 2, Some(BASE)),
                rule("postrouting", 4, Some(VM2)),
            ],
            target("172.30.0.2", "eth0"),
            Some(
                [
                    &["delete rule ip banger postrouting handle 4"][..],
                    &fresh_vm2[..],
                ]
                .concat(),
            ),
        ),
        (
            "a changed uplink replaces the guest's rules",
            complete_table(),
            target("172.30.0.2", "wlan0"),
            Some(vec![
                "delete rule ip banger egress handle 3",
                "delete rule ip banger postrouting handle 4",
                "add rule ip banger egress ip saddr 172.30.0.2/32 oifname \"wlan0\" accept comment \"banger-vm=172.30.0.2,via=wlan0\"",
                "add rule ip banger postrouting ip saddr 172.30.0.2/32 oifname \"wlan0\" masquerade comment \"banger-vm=172.30.0.2,via=wlan0\"",
            ]),
        ),
        (
            "another guest's rules (.20 is not .2) are left alone",
            vec![
                rule("forward", 1, Some(BASE)),
                rule("forward", 2, Some(BASE)),
                rule("egress", 5, Some("banger-vm=172.30.0.20,via=eth0")),
            ],
            target("172.30.0.2", "eth0"),
            Some(fresh_vm2.to_vec()),
        ),
        (
            "base rules for another bridge name are replaced",
            vec![
                rule("forward", 1, Some("banger-base=bangerold")),
                rule("forward", 2, Some("banger-base=bangerold")),
                rule("egress", 3, Some(VM2)),
                rule("postrouting", 4, Some(VM2)),
            ],
            target("172.30.0.2", "eth0"),
            Some(
                [
                    &[
                        "delete rule ip banger forward handle 1",
                        "delete rule ip banger forward handle 2",
                    ][..],
                    &fresh_base[..],
                ]
                .concat(),
            ),
        ),
    ];
    for (name, rules, target, expected) in cases {
        let plan = plan_nft_add(&rules, &target);
        let got: Option<Vec<String>> = plan.map(|script| {
            assert!(script.starts_with(&nft_table_declaration()), "{name}");
            script
                .lines()
                .skip(declaration_lines)
                .map(str::to_owned)
                .collect()
        });
        let expected: Option<Vec<String>> =
            expected.map(|lines| lines.into_iter().map(str::to_owned).collect());
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn nft_remove_plans() {
    let cases: Vec<(&str, Vec<NftRule>, &str, Option<&str>)> = vec![
        (
            "removes exactly .2's rules",
            complete_table(),
            "172.30.0.2",
            Some(
                "delete rule ip banger egress handle 3\ndelete rule ip banger postrouting handle 4\n",
            ),
        ),
        ("nothing to remove", complete_table(), "172.30.0.3", None),
        ("empty table", vec![], "172.30.0.2", None),
    ];
    for (name, rules, guest, expected) in cases {
        assert_eq!(
            plan_nft_remove(&rules, ip(guest)).as_deref(),
            expected,
            "{name}"
        );
    }
}

const LIST_TABLE: &str = "nft -j list table ip banger";

#[test]
fn nft_add_creates_the_table_when_missing_then_applies_once() {
    let listed_empty =
        r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"banger"}}]}"#;
    let tools = FakeTools::new()
        .fail(LIST_TABLE, "Error: No such file or directory")
        .reply(LIST_TABLE, listed_empty);
    add_nat_nft(&tools, &target("172.30.0.2", "eth0"))
        .unwrap()
        .unwrap();
    assert_eq!(
        tools.commands(),
        [LIST_TABLE, "nft -f -", LIST_TABLE, "nft -f -"]
    );
    let stdins = tools.stdins();
    assert_eq!(stdins[0], nft_table_declaration());
    assert!(stdins[1].contains("masquerade comment \"banger-vm=172.30.0.2,via=eth0\""));
}

#[test]
fn nft_add_without_changes_runs_only_the_listing() {
    let mut items = vec![r#"{"metainfo":{}}"#.to_owned()];
    for r in complete_table() {
        items.push(format!(
            r#"{{"rule":{{"family":"ip","table":"banger","chain":"{}","handle":{},"comment":"{}","expr":[]}}}}"#,
            r.chain,
            r.handle,
            r.comment.unwrap()
        ));
    }
    let listing = format!(r#"{{"nftables":[{}]}}"#, items.join(","));
    let tools = FakeTools::new().reply(LIST_TABLE, &listing);
    add_nat_nft(&tools, &target("172.30.0.2", "eth0"))
        .unwrap()
        .unwrap();
    assert_eq!(tools.commands(), [LIST_TABLE]);
}

#[test]
fn nft_remove_with_no_table_is_done() {
    let tools = FakeTools::new()
        .fail(LIST_TABLE, "Error: No such file or directory")
        .reply("nft -j list tables ip", r#"{"nftables":[{"metainfo":{}}]}"#);
    remove_nat_nft(&tools, ip("172.30.0.2")).unwrap().unwrap();
    assert_eq!(tools.commands(), [LIST_TABLE, "nft -j list tables ip"]);

    // The table exists but cannot be listed: that is a real failure.
    let tools = FakeTools::new()
        .fail(LIST_TABLE, "Error: permission denied")
        .reply(
            "nft -j list tables ip",
            r#"{"nftables":[{"table":{"family":"ip","name":"banger"}}]}"#,
        );
    let error = remove_nat_nft(&tools, ip("172.30.0.2")).unwrap_err();
    assert!(error.to_string().contains("permission denied"), "{error}");
}

#[test]
fn missing_nft_signals_the_fallback() {
    let tools = FakeTools::new().without("nft");
    let fallback = add_nat_nft(&tools, &target("172.30.0.2", "eth0")).unwrap();
    assert!(fallback.unwrap_err().is_not_found());
    let fallback = remove_nat_nft(&tools, ip("172.30.0.2")).unwrap();
    assert!(fallback.unwrap_err().is_not_found());
}

#[test]
fn iptables_listing_parses() {
    // As iptables-nft prints it: the comment in quotes.
    let text = "-P FORWARD ACCEPT\n\
                -A FORWARD -s 172.30.0.2/32 -i banger0 -o eth0 -m comment --comment \"banger-vm=172.30.0.2,via=eth0\" -j ACCEPT\n\
                -A FORWARD -i docker0 -j DROP\n\
                -A DOCKER -j RETURN\n";
    let rules = parse_iptables_rules(text, "FORWARD");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].comment(), Some(VM2));
    assert_eq!(rules[0].spec[9], VM2, "the argv form has no quotes");
    assert_eq!(rules[1].comment(), None);
    assert_eq!(rules[1].spec, ["-i", "docker0", "-j", "DROP"]);
}

fn as_iptables_listing(chain: &str, specs: &[Vec<String>]) -> String {
    let mut text = format!("-P {chain} ACCEPT\n");
    for spec in specs {
        let shown: Vec<String> = spec
            .iter()
            .map(|t| {
                if t.starts_with("banger-") {
                    format!("\"{t}\"")
                } else {
                    t.clone()
                }
            })
            .collect();
        text.push_str(&format!("-A {chain} {}\n", shown.join(" ")));
    }
    text
}

#[test]
fn iptables_add_is_idempotent() {
    let t = target("172.30.0.2", "eth0");
    let [(_, _, nat_wanted), (_, _, forward_wanted)] = iptables_wanted(&t);

    // Empty chains: insert the guest's rules, append the bridge-wide drop.
    let plan = plan_iptables_add(&[], "filter", "FORWARD", &forward_wanted, &t).unwrap();
    assert!(plan.delete.is_empty());
    assert_eq!(plan.insert, forward_wanted);
    assert_eq!(
        plan.append,
        [spec(&[
            "-i",
            "banger0",
            "-m",
            "comment",
            "--comment",
            BASE,
            "-j",
            "DROP"
        ])]
    );

    // Everything in place (as `iptables -S` would list it): nothing to do.
    let mut present = forward_wanted.clone();
    present.push(spec(&[
        "-i",
        "banger0",
        "-m",
        "comment",
        "--comment",
        BASE,
        "-j",
        "DROP",
    ]));
    let existing = parse_iptables_rules(&as_iptables_listing("FORWARD", &present), "FORWARD");
    assert_eq!(
        plan_iptables_add(&existing, "filter", "FORWARD", &forward_wanted, &t),
        None
    );
    let existing = parse_iptables_rules(
        &as_iptables_listing("POSTROUTING", &nat_wanted),
        "POSTROUTING",
    );
    assert_eq!(
        plan_iptables_add(&existing, "nat", "POSTROUTING", &nat_wanted, &t),
        None
    );

    // A stale uplink: the old rule goes, the new one comes.
    let old = iptables_wanted(&target("172.30.0.2", "wlan0"));
    let existing = parse_iptables_rules(
        &as_iptables_listing("POSTROUTING", &old[0].2),
        "POSTROUTING",
    );
    let plan = plan_iptables_add(&existing, "nat", "POSTROUTING", &nat_wanted, &t).unwrap();
    assert_eq!(plan.delete, old[0].2);
    assert_eq!(plan.insert, nat_wanted);
}

#[test]
fn iptables_commands() {
    let t = target("172.30.0.2", "eth0");
    let tools = FakeTools::new();
    add_nat_iptables(&tools, &t).unwrap();
    let commands = tools.commands();
    assert_eq!(
        commands,
        [
            "iptables -w -t nat -S POSTROUTING",
            "iptables -w -t nat -I POSTROUTING 1 -s 172.30.0.2/32 -o eth0 -m comment --comment banger-vm=172.30.0.2,via=eth0 -j MASQUERADE",
            "iptables -w -t filter -S FORWARD",
            "iptables -w -t filter -I FORWARD 1 -d 172.30.0.2/32 -i eth0 -o banger0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment banger-vm=172.30.0.2,via=eth0 -j ACCEPT",
            "iptables -w -t filter -I FORWARD 1 -s 172.30.0.2/32 -i banger0 -o eth0 -m comment --comment banger-vm=172.30.0.2,via=eth0 -j ACCEPT",
            "iptables -w -t filter -A FORWARD -i banger0 -m comment --comment banger-base=banger0 -j DROP",
        ]
    );

    let [(_, _, nat_wanted), (_, _, forward_wanted)] = iptables_wanted(&t);
    let other = iptables_wanted(&target("172.30.0.20", "eth0"));
    let tools = FakeTools::new()
        .reply(
            "iptables -w -t nat -S POSTROUTING",
            &as_iptables_listing(
                "POSTROUTING",
                &[nat_wanted.clone(), other[0].2.clone()].concat(),
            ),
        )
        .reply(
            "iptables -w -t filter -S FORWARD",
            &as_iptables_listing("FORWARD", &forward_wanted),
        );
    remove_nat_iptables(&tools, ip("172.30.0.2")).unwrap();
    let deletes: Vec<String> = tools
        .commands()
        .into_iter()
        .filter(|c| c.contains(" -D "))
        .collect();
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    assert!(
        deletes.iter().all(|c| c.contains("banger-vm=172.30.0.2,")),
        "{deletes:?}"
    );
}

#[test]
fn ip_forward_is_switched_on_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("net/ipv4/ip_forward");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "0\n").unwrap();
    enable_ip_forward(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n");
    enable_ip_forward(dir.path()).unwrap();
    assert!(enable_ip_forward(&dir.path().join("missing")).is_err());
}
