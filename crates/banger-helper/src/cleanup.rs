//! cleanup: `banger-helper cleanup`, run once by root from `banger system uninstall`
//! (never over the socket: the daemon cannot ask for it). It removes what an
//! installation's helper put on the host for one bridge and pool: the taps enslaved to
//! the bridge, banger's NAT rules for the bridge and the pool's guests (banger's nftables
//! table too once no rule is left in it, so another installation's rules are kept), the
//! network policies of the pool's guests (banger's `bangerpol` tables too once no other
//! guest's policy is left in them), the `.vm` routing on the bridge, and the bridge. Each step is idempotent; an interface of
//! the same name that is not a bridge is left alone, as everywhere in the helper.
//!
//! A netfilter backend that cannot work on this host at all (`nft` or `iptables` missing,
//! or the kernel lacking nf_tables or the table's module: see `unusable`) holds nothing of
//! banger's: cleanup goes on and names it in the report's `unusable`. Any other failure of
//! a backend that works fails cleanup.

use banger_proto::helper::{HelperError, Ipv4Subnet, check_tap_name};
use serde::Serialize;

use crate::dns;
use crate::link::{self, failed};
use crate::nat::{self, NftRule, base_comment, comment_guest};
use crate::policy;
use crate::tool::ToolRunner;
use crate::unusable::why_unusable;

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
    /// Backends that cannot work here, so held nothing to clean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unusable: Vec<Unusable>,
}

/// A netfilter backend cleanup found unusable on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unusable {
    /// What could not be listed: `nftables`, `iptables nat POSTROUTING`, ...
    pub backend: String,
    /// The tool's own words (or that it is not installed).
    pub reason: String,
}

impl CleanupReport {
    fn unusable(&mut self, backend: impl Into<String>, reason: String) {
        self.unusable.push(Unusable {
            backend: backend.into(),
            reason,
        });
    }
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
        // without nft, `add_nat` wrote iptables rules
        Err(error) if error.is_not_found() => {
            remove_iptables_rules(tools, bridge, pool, &mut report)?;
        }
        // an nft the kernel cannot serve holds nothing; iptables (legacy) still might
        Err(error) if let Some(reason) = why_unusable(&error) => {
            report.unusable("nftables", reason);
            remove_iptables_rules(tools, bridge, pool, &mut report)?;
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
    match policy::cleanup_pool(tools, OP, pool)? {
        Ok((policies, policy_tables_removed)) => {
            report.policies = policies;
            report.policy_tables_removed = policy_tables_removed;
        }
        Err(reason) => report.unusable("nftables (policies)", reason),
    }
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

/// Deletes banger's rules of `bridge` and `pool` from iptables' chains; a chain
/// iptables cannot even list here goes into the report as unusable.
fn remove_iptables_rules(
    tools: &dyn ToolRunner,
    bridge: &str,
    pool: &Ipv4Subnet,
    report: &mut CleanupReport,
) -> Result<(), HelperError> {
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "FORWARD")] {
        let listing = nat::iptables_output(tools, &["-t", table, "-S", chain], &[]);
        let text = match listing {
            Ok(out) => String::from_utf8_lossy(&out).into_owned(),
            Err(error) => match why_unusable(&error) {
                Some(reason) => {
                    report.unusable(format!("iptables {table} {chain}"), reason);
                    continue;
                }
                None => return Err(failed(OP, error)),
            },
        };
        for rule in nat::parse_iptables_rules(&text, chain) {
            if ours(rule.comment(), bridge, pool) {
                nat::iptables(tools, OP, &["-t", table, "-D", chain], &rule.spec)?;
                report.nat_rules += 1;
            }
        }
    }
    Ok(())
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

    const NO_NFT_KERNEL: &str =
        "iptables v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported";

    #[test]
    fn cleanup_reports_an_iptables_the_kernel_cannot_run_as_nothing_to_clean() {
        // the debian guest: no `nft`, and iptables-nft on a kernel without nf_tables
        let bridge = r#"[{"ifname":"banger0","flags":["UP"],"linkinfo":{"info_kind":"bridge"}}]"#;
        let tools = FakeTools::new()
            .without("nft")
            .reply("ip -j -d link show", bridge)
            .fail("iptables -w -t nat -S POSTROUTING", NO_NFT_KERNEL)
            .fail("iptables -w -t filter -S FORWARD", NO_NFT_KERNEL);
        let report = cleanup(&tools, "banger0", &pool()).unwrap();
        assert_eq!(report.nat_rules, 0);
        assert!(report.bridge_removed);
        let backends: Vec<&str> = report.unusable.iter().map(|u| u.backend.as_str()).collect();
        assert_eq!(
            backends,
            [
                "iptables nat POSTROUTING",
                "iptables filter FORWARD",
                "nftables (policies)"
            ]
        );
        assert_eq!(report.unusable[0].reason, NO_NFT_KERNEL);
        assert_eq!(report.unusable[2].reason, "`nft` is not installed");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["unusable"][0]["reason"], NO_NFT_KERNEL, "{json}");
        assert!(
            tools
                .commands()
                .iter()
                .any(|c| c == "ip link del dev banger0"),
            "the rest of cleanup still runs: {:?}",
            tools.commands()
        );
    }

    #[test]
    fn cleanup_fails_on_a_real_failure_of_a_working_iptables() {
        let tools = FakeTools::new()
            .without("nft")
            .reply("ip -j -d link show", "[]")
            .fail(
                "iptables -w -t nat -S POSTROUTING",
                "iptables v1.8.9 (nf_tables): Failed to initialize nft: Operation not permitted",
            );
        let error = cleanup(&tools, "banger0", &pool()).unwrap_err();
        assert!(
            error.to_string().contains("Operation not permitted"),
            "{error}"
        );
    }

    #[test]
    fn cleanup_with_an_nft_the_kernel_cannot_run_still_cleans_iptables() {
        let nft_error = "Error: cache initialization failed: Protocol not supported";
        let tools = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .fail("nft -j list table ip banger", nft_error)
            .fail("nft -j list tables", nft_error)
            .reply(
                "iptables -w -t nat -S POSTROUTING",
                "-P POSTROUTING ACCEPT\n\
                 -A POSTROUTING -s 172.30.0.2/32 -o eth0 -m comment --comment banger-vm=172.30.0.2,via=eth0 -j MASQUERADE\n",
            )
            .reply("iptables -w -t filter -S FORWARD", "-P FORWARD ACCEPT\n");
        let report = cleanup(&tools, "banger0", &pool()).unwrap();
        assert_eq!(report.nat_rules, 1);
        let backends: Vec<&str> = report.unusable.iter().map(|u| u.backend.as_str()).collect();
        assert_eq!(backends, ["nftables", "nftables (policies)"]);
        assert!(
            tools
                .commands()
                .iter()
                .any(|c| c.starts_with("iptables -w -t nat -D POSTROUTING -s 172.30.0.2/32")),
            "{:?}",
            tools.commands()
        );
    }
}
