//! cleanup: `banger-helper cleanup`, run once by root from `banger system uninstall`
//! (never over the socket: the daemon cannot ask for it). It removes what an
//! installation's helper put on the host for one bridge and pool: the taps enslaved to
//! the bridge, banger's NAT rules for the bridge and the pool's guests (banger's nftables
//! table too once no rule is left in it, so another installation's rules are kept), the
//! network policies of the pool's guests (banger's `bangerpol` tables too once no other
//! guest's policy is left in them), the `.vm` routing on the bridge, and the bridge. Each step is idempotent; an interface of
//! the same name that is not a bridge is left alone, as everywhere in the helper.

use banger_proto::helper::{HelperError, Ipv4Subnet, check_tap_name};
use serde::Serialize;

use crate::dns;
use crate::link::{self, failed};
use crate::nat::{self, NftRule, base_comment, comment_guest};
use crate::policy;
use crate::tool::ToolRunner;

const OP: &str = "cleanup";

/// What cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    pub taps: Vec<String>,
    pub nat_rules: usize,
    pub nat_table_removed: bool,
    /// Guests whose network policy was removed.
    pub policies: usize,
    pub policy_tables_removed: bool,
    pub bridge_removed: bool,
}

/// Removes everything of `bridge` and `pool` (see the module doc).
pub fn cleanup(
    tools: &dyn ToolRunner,
    bridge: &str,
    pool: &Ipv4Subnet,
) -> Result<CleanupReport, HelperError> {
    let mut report = CleanupReport::default();
    let links = link::list_links(tools, OP)?;
    for tap in links.iter().filter(|l| {
        l.is_tap() && check_tap_name(&l.name).is_ok() && l.master.as_deref() == Some(bridge)
    }) {
        link::delete_tap(tools, &tap.name)?;
        report.taps.push(tap.name.clone());
    }
    match nat::list_nft_table(tools) {
        Err(error) if error.is_not_found() => {
            report.nat_rules = remove_iptables_rules(tools, bridge, pool)?;
        }
        Err(error) => {
            if nat::nft_table_exists(tools, OP)? {
                return Err(failed(OP, error));
            }
        }
        Ok(listing) => {
            let rules = nat::parse_nft_rules(&listing).map_err(|e| failed(OP, e))?;
            let (script, removed, left) = plan_nft_cleanup(&rules, bridge, pool);
            if removed > 0 {
                nat::nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(OP, e))?;
            }
            report.nat_rules = removed;
            if left == 0 {
                nat::nft(tools, &["delete", "table", "ip", nat::TABLE], None)
                    .map_err(|e| failed(OP, e))?;
                report.nat_table_removed = true;
            }
        }
    }
    let (policies, policy_tables_removed) = policy::cleanup_pool(tools, OP, pool)?;
    report.policies = policies;
    report.policy_tables_removed = policy_tables_removed;
    dns::teardown_dns(tools, bridge)?;
    let had_bridge = links.iter().any(|l| l.name == bridge && l.is_bridge());
    link::delete_bridge(tools, bridge)?;
    report.bridge_removed = had_bridge;
    Ok(report)
}

fn ours(comment: Option<&str>, bridge: &str, pool: &Ipv4Subnet) -> bool {
    comment.is_some_and(|c| {
        c == base_comment(bridge) || comment_guest(c).is_some_and(|ip| pool.is_guest_address(ip))
    })
}

/// The `nft -f` script deleting the rules of `bridge` and `pool`, how many it deletes,
/// and how many rules of the table it leaves.
pub fn plan_nft_cleanup(
    rules: &[NftRule],
    bridge: &str,
    pool: &Ipv4Subnet,
) -> (String, usize, usize) {
    let mut script = String::new();
    let mut removed = 0;
    for rule in rules
        .iter()
        .filter(|r| ours(r.comment.as_deref(), bridge, pool))
    {
        nat::delete_nft_rule(&mut script, rule);
        removed += 1;
    }
    (script, removed, rules.len() - removed)
}

fn remove_iptables_rules(
    tools: &dyn ToolRunner,
    bridge: &str,
    pool: &Ipv4Subnet,
) -> Result<usize, HelperError> {
    let mut removed = 0;
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "FORWARD")] {
        for rule in nat::list_iptables(tools, OP, table, chain)? {
            if ours(rule.comment(), bridge, pool) {
                nat::iptables(tools, OP, &["-t", table, "-D", chain], &rule.spec)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTools;

    fn pool() -> Ipv4Subnet {
        "172.30.0.0/24".parse().unwrap()
    }

    fn rule(chain: &str, handle: u64, comment: &str) -> NftRule {
        NftRule {
            chain: chain.into(),
            handle,
            comment: Some(comment.into()),
        }
    }

    #[test]
    fn nft_cleanup_keeps_other_installations_rules() {
        let rules = [
            rule("forward", 1, "banger-base=banger0"),
            rule("forward", 2, "banger-base=banger0"),
            rule("egress", 3, "banger-vm=172.30.0.2,via=eth0"),
            rule("postrouting", 4, "banger-vm=172.30.0.2,via=eth0"),
            rule("forward", 5, "banger-base=banger7"),
            rule("egress", 6, "banger-vm=10.9.0.2,via=eth0"),
        ];
        let (script, removed, left) = plan_nft_cleanup(&rules, "banger0", &pool());
        assert_eq!((removed, left), (4, 2));
        assert_eq!(
            script,
            "delete rule ip banger forward handle 1\n\
             delete rule ip banger forward handle 2\n\
             delete rule ip banger egress handle 3\n\
             delete rule ip banger postrouting handle 4\n"
        );
        let (_, removed, left) = plan_nft_cleanup(&rules[..4], "banger0", &pool());
        assert_eq!((removed, left), (4, 0), "then the table goes too");
    }

    #[test]
    fn cleanup_removes_taps_rules_policies_dns_and_bridge() {
        let links = r#"[
            {"ifname":"banger0","flags":["UP"],"linkinfo":{"info_kind":"bridge"}},
            {"ifname":"bgt-0123abcd","master":"banger0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
            {"ifname":"bgt-99999999","master":"banger7","linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}}
        ]"#;
        let table = r#"{"nftables":[{"rule":{"family":"ip","table":"banger","chain":"forward","handle":1,"comment":"banger-base=banger0"}}]}"#;
        let tools = FakeTools::new()
            .reply("ip -j -d link show", links)
            .reply("nft -j list table ip banger", table)
            .reply(
                "nft -j list tables",
                r#"{"nftables":[{"table":{"family":"ip","name":"bangerpol"}}]}"#,
            )
            .reply(
                "nft -j list table ip bangerpol",
                r#"{"nftables":[{"chain":{"family":"ip","table":"bangerpol","name":"g_172_30_0_2"}}]}"#,
            );
        let report = cleanup(&tools, "banger0", &pool()).unwrap();
        assert_eq!(report.taps, ["bgt-0123abcd"]);
        assert_eq!(report.nat_rules, 1);
        assert!(report.nat_table_removed && report.bridge_removed);
        assert_eq!(report.policies, 1);
        assert!(report.policy_tables_removed);
        let commands = tools.commands();
        for expected in [
            "ip link del dev bgt-0123abcd",
            "nft -f -",
            "nft delete table ip banger",
            "resolvectl revert banger0",
            "ip link del dev banger0",
        ] {
            assert!(
                commands.iter().any(|c| c == expected),
                "{expected}: {commands:?}"
            );
        }
        assert!(
            !commands.iter().any(|c| c.contains("bgt-99999999")),
            "{commands:?}"
        );
        assert!(
            tools
                .stdins()
                .iter()
                .any(|s| s == "delete table ip bangerpol\n"),
            "{:?}",
            tools.stdins()
        );
    }
}
