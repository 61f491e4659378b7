//! listing: `list_network`, what banger has on the host, so the daemon can compare it with
//! its store after a crash and remove what no VM owns. Taps are read from
//! `ip -j -d link show` (only `tun` links of type `tap` whose name has banger's shape, on
//! this helper's bridge or on none: a tap on another bridge belongs to another banger
//! installation, whose daemon must not reconcile it away);
//! guest addresses from the comments of banger's NAT rules, in banger's nftables table or
//! (without `nft`) in iptables' chains, as `add_nat` wrote them; policy guests from the
//! comments and chain names of banger's policy tables (`policy`). An iptables chain the
//! host cannot even list (`unusable`: no nf_tables in the kernel, say) names no guest. Nothing is changed, and
//! the listing holds only names and addresses the helper would accept in a request.

use std::net::Ipv4Addr;

use banger_proto::helper::{HelperError, Ipv4Subnet, NetworkListing};

use crate::config::NatBackend;
use crate::link::{self, failed};
use crate::log;
use crate::nat::{self, comment_guest};
use crate::tool::{Tool, ToolError, ToolRunner};
use crate::unusable::why_unusable;

const OP: &str = "list_network";

/// Lists banger's taps (on `bridge`, or not yet on any) and the guests its NAT rules name.
pub fn list_network(
    tools: &dyn ToolRunner,
    backend: NatBackend,
    bridge: &str,
    pool: &Ipv4Subnet,
) -> Result<NetworkListing, HelperError> {
    let taps = link::list_links(tools, OP)?
        .into_iter()
        .filter(|link| link.is_tap() && link.master.as_deref().is_none_or(|m| m == bridge))
        .map(|link| link.name);
    let guests = match backend {
        NatBackend::Nft => nft_guests(tools)?.map_err(|e| failed(OP, e))?,
        NatBackend::Iptables => iptables_guests(tools)?,
        NatBackend::Auto => match nft_guests(tools)? {
            Ok(guests) => guests,
            Err(_nft_missing) => iptables_guests(tools)?,
        },
    };
    let policy_guests = crate::policy::guests(tools, OP)?;
    Ok(NetworkListing::new(taps, guests, pool).with_policy_guests(policy_guests, pool))
}

/// The guests named by rules in banger's nftables table; none when the table does not
/// exist. `Ok(Err(NotFound))` means there is no `nft` (fall back to iptables).
fn nft_guests(tools: &dyn ToolRunner) -> Result<Result<Vec<Ipv4Addr>, ToolError>, HelperError> {
    let tables = match tools.run(&Tool::new("nft").args(["-j", "list", "tables", "ip"])) {
        Ok(out) => out.stdout,
        Err(error) if error.is_not_found() => return Ok(Err(error)),
        Err(error) => return Err(failed(OP, error)),
    };
    if !nat::tables_include_banger(&tables).map_err(|e| failed(OP, e))? {
        return Ok(Ok(Vec::new()));
    }
    let listing = tools
        .run(&Tool::new("nft").args(["-j", "list", "table", "ip", nat::TABLE]))
        .map_err(|e| failed(OP, e))?;
    let rules = nat::parse_nft_rules(&listing.stdout).map_err(|e| failed(OP, e))?;
    Ok(Ok(rules
        .iter()
        .filter_map(|rule| rule.comment.as_deref().and_then(comment_guest))
        .collect()))
}

/// The guests named by banger's comments in iptables' NAT and FORWARD chains. A chain
/// iptables cannot even list on this host (`unusable`) holds none; that is logged.
fn iptables_guests(tools: &dyn ToolRunner) -> Result<Vec<Ipv4Addr>, HelperError> {
    let mut guests = Vec::new();
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "FORWARD")] {
        let listed = tools.run(
            &Tool::new("iptables")
                .arg("-w")
                .args(["-t", table, "-S", chain]),
        );
        let out = match listed {
            Ok(out) => out,
            Err(error) => match why_unusable(&error) {
                Some(reason) => {
                    log::warn(format_args!(
                        "list_network: iptables {table} {chain} cannot work on this host \
                         ({reason}), so no NAT rule of banger's is in it"
                    ));
                    continue;
                }
                None => return Err(failed(OP, error)),
            },
        };
        let text = String::from_utf8_lossy(&out.stdout);
        guests.extend(
            nat::parse_iptables_rules(&text, chain)
                .iter()
                .filter_map(|rule| rule.comment().and_then(comment_guest)),
        );
    }
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTools;

    const LINKS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"]},
      {"ifindex":3,"ifname":"banger0","flags":["UP"],"linkinfo":{"info_kind":"bridge"}},
      {"ifindex":4,"ifname":"bgt-0123abcd","flags":["UP"],"master":"banger0","linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
      {"ifindex":5,"ifname":"bgt-lost","flags":[],"linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
      {"ifindex":6,"ifname":"bgt-veth","flags":["UP"],"linkinfo":{"info_kind":"veth"}},
      {"ifindex":7,"ifname":"tap0","flags":["UP"],"linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}},
      {"ifindex":8,"ifname":"bgt-89abcdef","flags":["UP"],"master":"banger1","linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}}}
    ]"#;

    const TABLES: &str = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
      {"table":{"family":"ip","name":"nat","handle":1}},
      {"table":{"family":"ip","name":"banger","handle":2}}]}"#;

    const NO_BANGER_TABLE: &str = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
      {"table":{"family":"ip","name":"nat","handle":1}}]}"#;

    const TABLE: &str = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
      {"table":{"family":"ip","name":"banger","handle":2}},
      {"rule":{"family":"ip","table":"banger","chain":"forward","handle":4,"comment":"banger-base=banger0"}},
      {"rule":{"family":"ip","table":"banger","chain":"egress","handle":6,"comment":"banger-vm=172.30.0.7,via=eth0"}},
      {"rule":{"family":"ip","table":"banger","chain":"postrouting","handle":7,"comment":"banger-vm=172.30.0.7,via=eth0"}},
      {"rule":{"family":"ip","table":"banger","chain":"postrouting","handle":8,"comment":"banger-vm=172.30.0.3,via=eth0"}},
      {"rule":{"family":"ip","table":"banger","chain":"postrouting","handle":9,"comment":"banger-vm=10.9.9.9,via=eth0"}},
      {"rule":{"family":"ip","table":"banger","chain":"postrouting","handle":10,"comment":"someone else's"}}]}"#;

    const POLICY_TABLES: &str = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
      {"table":{"family":"ip","name":"banger","handle":2}},
      {"table":{"family":"ip","name":"bangerpol","handle":3}}]}"#;

    const POLICY_TABLE: &str = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
      {"table":{"family":"ip","name":"bangerpol","handle":3}},
      {"chain":{"family":"ip","table":"bangerpol","name":"input","handle":1}},
      {"chain":{"family":"ip","table":"bangerpol","name":"g_172_30_0_9","handle":2}},
      {"rule":{"family":"ip","table":"bangerpol","chain":"input","handle":4,"comment":"banger-pol=172.30.0.5,tap=bgt-0123abcd"}},
      {"rule":{"family":"ip","table":"bangerpol","chain":"input","handle":5,"comment":"banger-pol=10.1.1.1,tap=bgt-0123abcd"}}]}"#;

    fn pool() -> Ipv4Subnet {
        "172.30.0.0/24".parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn lists_taps_and_the_guests_of_nft_rules() {
        let tools = FakeTools::new()
            .reply("ip -j -d link show", LINKS)
            .reply("nft -j list tables ip", TABLES)
            .reply("nft -j list table ip banger", TABLE)
            .reply("nft -j list tables", POLICY_TABLES)
            .reply("nft -j list table ip bangerpol", POLICY_TABLE);
        let listing = list_network(&tools, NatBackend::Auto, "banger0", &pool()).unwrap();
        // bgt-89abcdef is on another installation's bridge: not this helper's to list.
        assert_eq!(listing.taps, ["bgt-0123abcd", "bgt-lost"]);
        // Once each, sorted; the address outside the pool is not banger's to remove.
        assert_eq!(listing.nat_guests, [ip("172.30.0.3"), ip("172.30.0.7")]);
        // Policy guests by rule comment and by a chain left without rules.
        assert_eq!(listing.policy_guests, [ip("172.30.0.5"), ip("172.30.0.9")]);
        assert!(
            tools.commands().iter().all(|c| !c.contains(" -f ")),
            "listing changes nothing: {:?}",
            tools.commands()
        );
    }

    #[test]
    fn no_table_means_no_rules() {
        let tools = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .reply("nft -j list tables ip", NO_BANGER_TABLE)
            .reply("nft -j list tables", NO_BANGER_TABLE);
        let listing = list_network(&tools, NatBackend::Nft, "banger0", &pool()).unwrap();
        assert_eq!(listing, NetworkListing::default());
        assert_eq!(
            tools.commands(),
            [
                "ip -j -d link show",
                "nft -j list tables ip",
                "nft -j list tables"
            ]
        );
    }

    #[test]
    fn without_nft_iptables_comments_are_read() {
        let tools = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .reply(
                "iptables -w -t nat -S POSTROUTING",
                "-P POSTROUTING ACCEPT\n\
                 -A POSTROUTING -s 172.30.0.4/32 -o eth0 -m comment --comment \"banger-vm=172.30.0.4,via=eth0\" -j MASQUERADE\n",
            )
            .reply(
                "iptables -w -t filter -S FORWARD",
                "-P FORWARD ACCEPT\n\
                 -A FORWARD -s 172.30.0.5/32 -i banger0 -o eth0 -m comment --comment banger-vm=172.30.0.5,via=eth0 -j ACCEPT\n\
                 -A FORWARD -i banger0 -m comment --comment banger-base=banger0 -j DROP\n",
            )
            .without("nft");
        let listing = list_network(&tools, NatBackend::Auto, "banger0", &pool()).unwrap();
        assert_eq!(listing.nat_guests, [ip("172.30.0.4"), ip("172.30.0.5")]);
    }

    #[test]
    fn a_failing_nft_is_an_error_not_an_empty_listing() {
        let tools = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .fail("nft -j list tables ip", "netlink: Operation not permitted");
        let error = list_network(&tools, NatBackend::Auto, "banger0", &pool()).unwrap_err();
        assert!(matches!(error, HelperError::Failed { .. }), "{error:?}");
    }

    #[test]
    fn an_iptables_the_kernel_cannot_run_names_no_guest() {
        let no_nft =
            "iptables v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported";
        let tools = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .fail("iptables -w -t nat -S POSTROUTING", no_nft)
            .fail("iptables -w -t filter -S FORWARD", no_nft)
            .without("nft");
        let listing = list_network(&tools, NatBackend::Auto, "banger0", &pool()).unwrap();
        assert_eq!(listing, NetworkListing::default());
        let denied = FakeTools::new()
            .reply("ip -j -d link show", "[]")
            .fail(
                "iptables -w -t nat -S POSTROUTING",
                "iptables v1.8.9 (nf_tables): Failed to initialize nft: Operation not permitted",
            )
            .without("nft");
        let error = list_network(&denied, NatBackend::Auto, "banger0", &pool()).unwrap_err();
        assert!(matches!(error, HelperError::Failed { .. }), "{error:?}");
    }
}
