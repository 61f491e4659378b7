//! policy: per-guest network policies in nftables, in two tables of banger's own so the
//! NAT table and the host's rules are never edited. For a guest `172.30.0.5` on tap
//! `bgt-0123abcd`, with the policy resolver on port 42070 and `10.0.0.0/8:22` allowed:
//!
//! ```text
//! table bridge bangerpol {            # layer 2, by the tap the frame came in on
//!   chain pre { type filter hook prerouting priority -200; policy accept;
//!     iifname "bgt-0123abcd" ether type arp accept
//!     iifname "bgt-0123abcd" ether type ip ip saddr 172.30.0.5 accept
//!     iifname "bgt-0123abcd" counter drop }      # IPv6, spoofed sources, the rest
//!   chain forward { type filter hook forward priority -200; policy accept;
//!     iifname "bgt-0123abcd" drop }              # no frames to other guests
//! }
//! table ip bangerpol {
//!   chain pre { type nat hook prerouting priority dstnat; policy accept;
//!     ip saddr 172.30.0.5 ip daddr 172.30.0.1 udp dport 53 redirect to :42070
//!     ip saddr 172.30.0.5 tcp dport 443 redirect to :42071 }     # the SNI proxy
//!   chain input { type filter hook input priority -10; policy accept;
//!     ip saddr 172.30.0.5 jump g_172_30_0_5 }
//!   chain forward { type filter hook forward priority -10; policy accept;
//!     ip saddr 172.30.0.5 jump g_172_30_0_5 }
//!   set g_172_30_0_5_a { type ipv4_addr; flags timeout; }              # learned, any port
//!   set g_172_30_0_5_p { type ipv4_addr . inet_service; flags timeout; }  # learned, one port
//!   chain g_172_30_0_5 {
//!     ct state established,related accept
//!     ip daddr 172.30.0.1 udp dport 42070 accept
//!     ip daddr 172.30.0.1 tcp dport 42071 accept
//!     meta l4proto { tcp, udp } ip daddr @g_172_30_0_5_a accept
//!     meta l4proto { tcp, udp } ip daddr . th dport @g_172_30_0_5_p accept
//!     meta l4proto { tcp, udp } ip daddr 10.0.0.0/8 th dport 22 accept
//!     meta l4proto { tcp, udp } update @g_172_30_0_5_d { ip daddr . meta l4proto . th dport }
//!     meta l4proto != { tcp, udp } update @g_172_30_0_5_o { ip daddr . meta l4proto }
//!     counter drop }
//!   # what was denied, one element per destination with its own counter, an hour after
//!   # its last drop (`policy_counters` reads them for `vm logs --policy`):
//!   set g_172_30_0_5_d { type ipv4_addr . inet_proto . inet_service; flags dynamic,timeout;
//!                        timeout 1h; size 4096; counter; }
//!   set g_172_30_0_5_o { type ipv4_addr . inet_proto; ...same }
//! }
//! ```
//!
//! The bridge rules make the source address trustworthy (root in the guest can change
//! its address, not the tap its frames arrive on), so the IP rules can key on it. An
//! accept here only ends banger's policy chains: forwarded traffic still needs the
//! guest's NAT rules (table `ip banger`) to leave, so a policy only ever narrows what a
//! guest could do. Every rule carries the comment `banger-pol=<ip>,tap=<tap>`; `set`
//! replaces a guest's rules in one `nft -f` transaction, `remove` deletes what names
//! the address, the chain and its sets. The learned sets are filled with
//! `add_addresses`: each element is added, deleted and added again in one transaction,
//! so a repeated answer refreshes its timeout.

use std::net::Ipv4Addr;

use banger_proto::helper::{
    HelperError, Ipv4Subnet, MAX_POLICY_DENIED, PolicyAddress, PolicyDenied, PolicyNet,
};
use serde_json::Value;

use crate::link::failed;
use crate::nat::{NftRule, parse_table_rules};
use crate::tool::{Tool, ToolError, ToolRunner};

/// banger's policy tables (families `ip` and `bridge`).
pub const TABLE: &str = "bangerpol";

const PREFIX: &str = "banger-pol=";

/// What one guest's policy connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTarget<'a> {
    pub guest_ip: Ipv4Addr,
    pub tap: &'a str,
    pub gateway: Ipv4Addr,
    pub resolver_port: u16,
    /// banger's SNI proxy on the gateway; TCP to port 443 is redirected there.
    pub sni_port: Option<u16>,
    pub nets: &'a [PolicyNet],
    pub keep_learned: bool,
}

/// The comment on one guest's rules.
pub fn comment(guest_ip: Ipv4Addr, tap: &str) -> String {
    format!("{PREFIX}{guest_ip},tap={tap}")
}

/// The guest a comment names, if it is one of banger's policy comments.
pub fn comment_guest(comment: &str) -> Option<Ipv4Addr> {
    let rest = comment.strip_prefix(PREFIX)?;
    let (ip, _tap) = rest.split_once(",tap=")?;
    ip.parse().ok()
}

/// The guest's chain; its sets are `<chain>_a` and `<chain>_p`.
pub fn chain_name(guest_ip: Ipv4Addr) -> String {
    let [a, b, c, d] = guest_ip.octets();
    format!("g_{a}_{b}_{c}_{d}")
}

/// Declares both tables and their base chains; starts every script (adds what is
/// missing, leaves the rest alone).
pub fn declarations() -> String {
    format!(
        "table bridge {TABLE} {{\n\
         \tchain pre {{ type filter hook prerouting priority -200; policy accept; }}\n\
         \tchain forward {{ type filter hook forward priority -200; policy accept; }}\n\
         }}\n\
         table ip {TABLE} {{\n\
         \tchain pre {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         \tchain input {{ type filter hook input priority -10; policy accept; }}\n\
         \tchain forward {{ type filter hook forward priority -10; policy accept; }}\n\
         }}\n"
    )
}

fn mine(rules: &[NftRule], guest_ip: Ipv4Addr) -> impl Iterator<Item = &NftRule> {
    rules
        .iter()
        .filter(move |r| r.comment.as_deref().and_then(comment_guest) == Some(guest_ip))
}

/// The `nft -f` script that gives `target` exactly its policy, given the rules both
/// tables hold now (`ip_rules` from `ip bangerpol`, `bridge_rules` from `bridge
/// bangerpol`).
pub fn plan_set(
    ip_rules: &[NftRule],
    bridge_rules: &[NftRule],
    target: &PolicyTarget<'_>,
) -> String {
    let ip = target.guest_ip;
    let chain = chain_name(ip);
    let note = comment(ip, target.tap);
    let (gw, port, tap) = (target.gateway, target.resolver_port, target.tap);
    let mut s = declarations();
    s.push_str(&format!(
        "add chain ip {TABLE} {chain}\n\
         add set ip {TABLE} {chain}_a {{ type ipv4_addr; flags timeout; }}\n\
         add set ip {TABLE} {chain}_p {{ type ipv4_addr . inet_service; flags timeout; }}\n\
         add set ip {TABLE} {chain}_d {{ type ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; timeout 1h; size {MAX_POLICY_DENIED}; counter; }}\n\
         add set ip {TABLE} {chain}_o {{ type ipv4_addr . inet_proto; flags dynamic,timeout; timeout 1h; size {MAX_POLICY_DENIED}; counter; }}\n\
         flush chain ip {TABLE} {chain}\n"
    ));
    if !target.keep_learned {
        s.push_str(&format!(
            "flush set ip {TABLE} {chain}_a\nflush set ip {TABLE} {chain}_p\n\
             flush set ip {TABLE} {chain}_d\nflush set ip {TABLE} {chain}_o\n"
        ));
    }
    for rule in mine(ip_rules, ip) {
        s.push_str(&format!(
            "delete rule ip {TABLE} {} handle {}\n",
            rule.chain, rule.handle
        ));
    }
    for rule in mine(bridge_rules, ip) {
        s.push_str(&format!(
            "delete rule bridge {TABLE} {} handle {}\n",
            rule.chain, rule.handle
        ));
    }
    let c = format!("comment \"{note}\"");
    s.push_str(&format!(
        "add rule bridge {TABLE} pre iifname \"{tap}\" ether type arp accept {c}\n\
         add rule bridge {TABLE} pre iifname \"{tap}\" ether type ip ip saddr {ip} accept {c}\n\
         add rule bridge {TABLE} pre iifname \"{tap}\" counter drop {c}\n\
         add rule bridge {TABLE} forward iifname \"{tap}\" drop {c}\n\
         add rule ip {TABLE} pre ip saddr {ip} ip daddr {gw} udp dport 53 redirect to :{port} {c}\n\
         add rule ip {TABLE} input ip saddr {ip} jump {chain} {c}\n\
         add rule ip {TABLE} forward ip saddr {ip} jump {chain} {c}\n\
         add rule ip {TABLE} {chain} ct state established,related accept\n\
         add rule ip {TABLE} {chain} ip daddr {gw} udp dport {port} accept\n\
         add rule ip {TABLE} {chain} meta l4proto {{ tcp, udp }} ip daddr @{chain}_a accept\n\
         add rule ip {TABLE} {chain} meta l4proto {{ tcp, udp }} ip daddr . th dport @{chain}_p accept\n"
    ));
    if let Some(sni) = target.sni_port {
        s.push_str(&format!(
            "add rule ip {TABLE} pre ip saddr {ip} tcp dport 443 redirect to :{sni} {c}\n\
             add rule ip {TABLE} {chain} ip daddr {gw} tcp dport {sni} accept\n"
        ));
    }
    for net in target.nets {
        let dest = if net.prefix_len == 32 {
            net.addr.to_string()
        } else {
            format!("{}/{}", net.addr, net.prefix_len)
        };
        let port = net
            .port
            .map(|p| format!(" th dport {p}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "add rule ip {TABLE} {chain} meta l4proto {{ tcp, udp }} ip daddr {dest}{port} accept\n"
        ));
    }
    // What is about to be dropped is remembered per destination (a full set only
    // skips the remembering: the drop is a rule of its own).
    s.push_str(&format!(
        "add rule ip {TABLE} {chain} meta l4proto {{ tcp, udp }} update @{chain}_d {{ ip daddr . meta l4proto . th dport }}\n\
         add rule ip {TABLE} {chain} meta l4proto != {{ tcp, udp }} update @{chain}_o {{ ip daddr . meta l4proto }}\n\
         add rule ip {TABLE} {chain} counter drop\n"
    ));
    s
}

/// The script that removes everything of `guest_ip`'s, or `None` when nothing is there.
/// `chains` are the chain and set names of `ip bangerpol` ([`parse_chains`]); the
/// denied sets are deleted only when they exist (a policy installed before they were).
pub fn plan_remove(
    ip_rules: &[NftRule],
    bridge_rules: &[NftRule],
    chains: &[String],
    guest_ip: Ipv4Addr,
) -> Option<String> {
    let chain = chain_name(guest_ip);
    let mut s = String::new();
    for rule in mine(ip_rules, guest_ip) {
        s.push_str(&format!(
            "delete rule ip {TABLE} {} handle {}\n",
            rule.chain, rule.handle
        ));
    }
    for rule in mine(bridge_rules, guest_ip) {
        s.push_str(&format!(
            "delete rule bridge {TABLE} {} handle {}\n",
            rule.chain, rule.handle
        ));
    }
    if chains.contains(&chain) {
        s.push_str(&format!(
            "flush chain ip {TABLE} {chain}\n\
             delete chain ip {TABLE} {chain}\n\
             delete set ip {TABLE} {chain}_a\n\
             delete set ip {TABLE} {chain}_p\n"
        ));
        for set in [format!("{chain}_d"), format!("{chain}_o")] {
            if chains.contains(&set) {
                s.push_str(&format!("delete set ip {TABLE} {set}\n"));
            }
        }
    }
    (!s.is_empty()).then_some(s)
}

/// The script adding `entries` to `guest_ip`'s learned sets.
pub fn plan_add_addresses(guest_ip: Ipv4Addr, entries: &[PolicyAddress]) -> String {
    let chain = chain_name(guest_ip);
    let mut s = String::new();
    for entry in entries {
        let (set, key) = match entry.port {
            None => (format!("{chain}_a"), entry.ip.to_string()),
            Some(port) => (format!("{chain}_p"), format!("{} . {port}", entry.ip)),
        };
        let t = entry.timeout_secs;
        s.push_str(&format!(
            "add element ip {TABLE} {set} {{ {key} timeout {t}s }}\n\
             delete element ip {TABLE} {set} {{ {key} }}\n\
             add element ip {TABLE} {set} {{ {key} timeout {t}s }}\n"
        ));
    }
    s
}

/// The chain names, then the set names, in an `nft -j list table` output.
pub fn parse_chains(json: &[u8]) -> Result<Vec<String>, String> {
    let root: Value =
        serde_json::from_slice(json).map_err(|e| format!("unreadable `nft -j` output: {e}"))?;
    let items = root.get("nftables").and_then(Value::as_array);
    let names = |kind: &'static str| {
        items
            .into_iter()
            .flatten()
            .filter_map(move |item| item.get(kind))
            .filter_map(|object| object.get("name").and_then(Value::as_str))
            .map(str::to_owned)
    };
    Ok(names("chain").chain(names("set")).collect())
}

/// The destinations `guest_ip`'s policy denied, from its denied sets in an `nft -j list
/// table ip bangerpol` output: most packets first.
pub fn parse_denied(ip_json: &[u8], guest_ip: Ipv4Addr) -> Result<Vec<PolicyDenied>, String> {
    let root: Value =
        serde_json::from_slice(ip_json).map_err(|e| format!("unreadable `nft -j` output: {e}"))?;
    let chain = chain_name(guest_ip);
    let wanted = [format!("{chain}_d"), format!("{chain}_o")];
    let mut denied = Vec::new();
    for set in root
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("set"))
        .filter(|set| {
            set.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| wanted.iter().any(|w| w == name))
        })
    {
        for elem in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // `{"elem": {"val": {"concat": [ip, proto, port?]}, "counter": {...}}}`.
            let Some(inner) = elem.get("elem") else {
                continue;
            };
            let parts = inner
                .get("val")
                .and_then(|v| v.get("concat"))
                .and_then(Value::as_array);
            let Some(parts) = parts else { continue };
            let ip = parts
                .first()
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok());
            let protocol = parts.get(1).and_then(|p| match p {
                Value::String(name) => Some(name.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let port = parts
                .get(2)
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            let packets = inner
                .get("counter")
                .and_then(|c| c.get("packets"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let (Some(ip), Some(protocol)) = (ip, protocol) {
                denied.push(PolicyDenied {
                    ip,
                    protocol,
                    port,
                    packets,
                });
            }
        }
    }
    denied.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.ip.cmp(&b.ip)));
    Ok(denied)
}

/// The packets counted by the `counter drop` rules of `guest_ip`'s chain and its
/// bridge rules, from the two `nft -j list table` outputs.
pub fn parse_dropped(
    ip_json: &[u8],
    bridge_json: &[u8],
    guest_ip: Ipv4Addr,
) -> Result<u64, String> {
    let chain = chain_name(guest_ip);
    let mut total = 0u64;
    for (json, family) in [(ip_json, "ip"), (bridge_json, "bridge")] {
        let root: Value =
            serde_json::from_slice(json).map_err(|e| format!("unreadable `nft -j` output: {e}"))?;
        for rule in root
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("rule"))
        {
            let ours = if family == "ip" {
                rule.get("chain").and_then(Value::as_str) == Some(chain.as_str())
            } else {
                rule.get("comment")
                    .and_then(Value::as_str)
                    .and_then(comment_guest)
                    == Some(guest_ip)
            };
            if !ours {
                continue;
            }
            for expr in rule
                .get("expr")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(packets) = expr
                    .get("counter")
                    .and_then(|c| c.get("packets"))
                    .and_then(Value::as_u64)
                {
                    total += packets;
                }
            }
        }
    }
    Ok(total)
}

fn nft(tools: &dyn ToolRunner, args: &[&str], stdin: Option<String>) -> Result<Vec<u8>, ToolError> {
    let mut tool = Tool::new("nft").args(args);
    if let Some(script) = stdin {
        tool = tool.stdin(script.into_bytes());
    }
    tools.run(&tool).map(|out| out.stdout)
}

fn unsupported(op: &str, error: &ToolError) -> Option<HelperError> {
    error.is_not_found().then(|| HelperError::Unsupported {
        op: op.to_owned(),
        reason: "network policies need nftables (`nft`), which is not installed".into(),
    })
}

/// Both tables' listings, declaring them first so a fresh host lists empty tables.
fn listings(tools: &dyn ToolRunner, op: &str) -> Result<(Vec<u8>, Vec<u8>), HelperError> {
    nft(tools, &["-f", "-"], Some(declarations()))
        .map_err(|e| unsupported(op, &e).unwrap_or_else(|| failed(op, e)))?;
    let ip = nft(tools, &["-j", "list", "table", "ip", TABLE], None).map_err(|e| failed(op, e))?;
    let bridge =
        nft(tools, &["-j", "list", "table", "bridge", TABLE], None).map_err(|e| failed(op, e))?;
    Ok((ip, bridge))
}

fn parsed(op: &str, ip: &[u8], bridge: &[u8]) -> Result<(Vec<NftRule>, Vec<NftRule>), HelperError> {
    let ip_rules = parse_table_rules(ip, "ip", TABLE).map_err(|e| failed(op, e))?;
    let bridge_rules = parse_table_rules(bridge, "bridge", TABLE).map_err(|e| failed(op, e))?;
    Ok((ip_rules, bridge_rules))
}

/// Installs (or replaces) `target`'s policy.
pub fn set_policy(tools: &dyn ToolRunner, target: &PolicyTarget<'_>) -> Result<(), HelperError> {
    const OP: &str = "set_policy";
    let (ip, bridge) = listings(tools, OP)?;
    let (ip_rules, bridge_rules) = parsed(OP, &ip, &bridge)?;
    let script = plan_set(&ip_rules, &bridge_rules, target);
    nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(OP, e))?;
    Ok(())
}

/// Which of banger's policy tables exist: `(ip, bridge)`. `None` without nft.
fn existing_tables(tools: &dyn ToolRunner, op: &str) -> Result<Option<(bool, bool)>, HelperError> {
    match nft(tools, &["-j", "list", "tables"], None) {
        Ok(json) => tables_in(op, &json).map(Some),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(failed(op, error)),
    }
}

/// Which of banger's policy tables `nft -j list tables` output lists: `(ip, bridge)`.
fn tables_in(op: &str, json: &[u8]) -> Result<(bool, bool), HelperError> {
    let root: Value = serde_json::from_slice(json)
        .map_err(|e| failed(op, format!("unreadable `nft -j` output: {e}")))?;
    let has = |family: &str| {
        root.get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("table"))
            .any(|t| {
                t.get("family").and_then(Value::as_str) == Some(family)
                    && t.get("name").and_then(Value::as_str) == Some(TABLE)
            })
    };
    Ok((has("ip"), has("bridge")))
}

/// `nft -j` listings of `ip bangerpol` and `bridge bangerpol`.
type Listings = (Vec<u8>, Vec<u8>);

const EMPTY: &[u8] = br#"{"nftables":[]}"#;

/// Both tables' listings without creating them (empty for a missing one); `None`
/// without nft.
fn existing_listings(tools: &dyn ToolRunner, op: &str) -> Result<Option<Listings>, HelperError> {
    let Some(has_tables) = existing_tables(tools, op)? else {
        return Ok(None);
    };
    list_existing(tools, op, has_tables).map(Some)
}

/// The listings of the tables of `(has_ip, has_bridge)` (empty for a missing one).
fn list_existing(
    tools: &dyn ToolRunner,
    op: &str,
    (has_ip, has_bridge): (bool, bool),
) -> Result<Listings, HelperError> {
    let list = |family: &str, exists: bool| -> Result<Vec<u8>, HelperError> {
        if !exists {
            return Ok(EMPTY.to_vec());
        }
        nft(tools, &["-j", "list", "table", family, TABLE], None).map_err(|e| failed(op, e))
    };
    Ok((list("ip", has_ip)?, list("bridge", has_bridge)?))
}

/// Removes `guest_ip`'s policy (nothing to do when it has none).
pub fn remove_policy(tools: &dyn ToolRunner, guest_ip: Ipv4Addr) -> Result<(), HelperError> {
    const OP: &str = "remove_policy";
    // Without nft there can be no policy rules.
    let Some((ip, bridge)) = existing_listings(tools, OP)? else {
        return Ok(());
    };
    let (ip_rules, bridge_rules) = parsed(OP, &ip, &bridge)?;
    let chains = parse_chains(&ip).map_err(|e| failed(OP, e))?;
    if let Some(script) = plan_remove(&ip_rules, &bridge_rules, &chains, guest_ip) {
        nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(OP, e))?;
    }
    Ok(())
}

/// Adds answered addresses to `guest_ip`'s learned sets (which must exist).
pub fn add_addresses(
    tools: &dyn ToolRunner,
    guest_ip: Ipv4Addr,
    entries: &[PolicyAddress],
) -> Result<(), HelperError> {
    const OP: &str = "add_policy_addresses";
    if entries.is_empty() {
        return Ok(());
    }
    nft(
        tools,
        &["-f", "-"],
        Some(plan_add_addresses(guest_ip, entries)),
    )
    .map_err(|e| unsupported(OP, &e).unwrap_or_else(|| failed(OP, e)))?;
    Ok(())
}

/// The packets `guest_ip`'s policy dropped, and the destinations it denied.
pub fn dropped(
    tools: &dyn ToolRunner,
    guest_ip: Ipv4Addr,
) -> Result<(u64, Vec<PolicyDenied>), HelperError> {
    const OP: &str = "policy_counters";
    match existing_listings(tools, OP)? {
        Some((ip, bridge)) => {
            let dropped = parse_dropped(&ip, &bridge, guest_ip).map_err(|e| failed(OP, e))?;
            let denied = parse_denied(&ip, guest_ip).map_err(|e| failed(OP, e))?;
            Ok((dropped, denied))
        }
        None => Ok((0, Vec::new())),
    }
}

/// The guests policy rules name (for `list_network`, so nothing is created); none
/// without nft.
pub fn guests(tools: &dyn ToolRunner, op: &str) -> Result<Vec<Ipv4Addr>, HelperError> {
    let Some((ip, bridge)) = existing_listings(tools, op)? else {
        return Ok(Vec::new());
    };
    let (ip_rules, bridge_rules) = parsed(op, &ip, &bridge)?;
    let mut found: Vec<Ipv4Addr> = ip_rules
        .iter()
        .chain(&bridge_rules)
        .filter_map(|r| r.comment.as_deref().and_then(comment_guest))
        .collect();
    // A chain whose rules are gone (a remove cut short) still counts.
    found.extend(
        parse_chains(&ip)
            .map_err(|e| failed(op, e))?
            .iter()
            .filter_map(|name| chain_guest(name)),
    );
    Ok(found)
}

/// The script `banger-helper cleanup` runs for `pool`: every policy of a guest in the
/// pool removed, and both tables (those of `has_tables`, `(ip, bridge)`, that exist)
/// deleted once no other guest's policy is left in them; `None` when there is nothing to
/// do. Also how many guests' policies it removes and whether the tables go.
pub fn plan_cleanup(
    ip_rules: &[NftRule],
    bridge_rules: &[NftRule],
    chains: &[String],
    has_tables: (bool, bool),
    pool: &Ipv4Subnet,
) -> (Option<String>, usize, bool) {
    let mut named: Vec<Ipv4Addr> = ip_rules
        .iter()
        .chain(bridge_rules)
        .filter_map(|r| r.comment.as_deref().and_then(comment_guest))
        .chain(chains.iter().filter_map(|name| chain_guest(name)))
        .collect();
    named.sort_unstable();
    named.dedup();
    let (ours, others): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
        named.into_iter().partition(|ip| pool.is_guest_address(*ip));
    if others.is_empty() {
        let mut s = String::new();
        for (family, exists) in [("ip", has_tables.0), ("bridge", has_tables.1)] {
            if exists {
                s.push_str(&format!("delete table {family} {TABLE}\n"));
            }
        }
        let removed = !s.is_empty();
        return ((!s.is_empty()).then_some(s), ours.len(), removed);
    }
    let s: String = ours
        .iter()
        .filter_map(|ip| plan_remove(ip_rules, bridge_rules, chains, *ip))
        .collect();
    ((!s.is_empty()).then_some(s), ours.len(), false)
}

/// Removes `pool`'s policies (see [`plan_cleanup`]): how many guests' policies went and
/// whether the tables did; `Ok(Err(why))` when nftables cannot work here (see
/// `unusable`), so there is nothing to remove.
pub fn cleanup_pool(
    tools: &dyn ToolRunner,
    op: &str,
    pool: &Ipv4Subnet,
) -> Result<Result<(usize, bool), String>, HelperError> {
    let has_tables = match nft(tools, &["-j", "list", "tables"], None) {
        Ok(json) => tables_in(op, &json)?,
        Err(error) => match crate::unusable::why_unusable(&error) {
            Some(reason) => return Ok(Err(reason)),
            None => return Err(failed(op, error)),
        },
    };
    let (ip, bridge) = list_existing(tools, op, has_tables)?;
    let (ip_rules, bridge_rules) = parsed(op, &ip, &bridge)?;
    let chains = parse_chains(&ip).map_err(|e| failed(op, e))?;
    let (script, guests, tables_removed) =
        plan_cleanup(&ip_rules, &bridge_rules, &chains, has_tables, pool);
    if let Some(script) = script {
        nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(op, e))?;
    }
    Ok(Ok((guests, tables_removed)))
}

/// The guest a `g_a_b_c_d` chain name stands for.
pub fn chain_guest(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_prefix("g_")?;
    let octets: Vec<u8> = rest
        .split('_')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u8>>>()?;
    let octets: [u8; 4] = octets.try_into().ok()?;
    let ip = Ipv4Addr::from(octets);
    (chain_name(ip) == name).then_some(ip)
}

/// Checks a `set_policy`'s networks: at most [`banger_proto::helper::MAX_POLICY_NETS`],
/// prefix lengths 0-32, host bits zero, ports 1-65535.
pub fn check_nets(nets: &[PolicyNet]) -> Result<(), HelperError> {
    let bad = |message: String| HelperError::BadRequest { message };
    if nets.len() > banger_proto::helper::MAX_POLICY_NETS {
        return Err(bad(format!("{} networks is too many", nets.len())));
    }
    for net in nets {
        if net.prefix_len > 32 {
            return Err(bad(format!(
                "prefix length {} of {}",
                net.prefix_len, net.addr
            )));
        }
        let mask = if net.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(net.prefix_len))
        };
        if u32::from(net.addr) & !mask != 0 {
            return Err(bad(format!(
                "{}/{} has host bits set",
                net.addr, net.prefix_len
            )));
        }
        if net.port == Some(0) {
            return Err(bad("port 0".into()));
        }
    }
    Ok(())
}

/// Checks an `add_policy_addresses`: at most
/// [`banger_proto::helper::MAX_POLICY_ADDRESSES`] entries, each a unicast address outside
/// loopback, link-local and the guest pool, a port 1-65535 when given, and a timeout of
/// 1 s to [`banger_proto::helper::MAX_POLICY_TIMEOUT_SECS`].
pub fn check_addresses(pool: &Ipv4Subnet, entries: &[PolicyAddress]) -> Result<(), HelperError> {
    let bad = |message: String| HelperError::BadRequest { message };
    if entries.len() > banger_proto::helper::MAX_POLICY_ADDRESSES {
        return Err(bad(format!("{} addresses is too many", entries.len())));
    }
    for entry in entries {
        let ip = entry.ip;
        if ip.is_loopback()
            || ip.is_link_local()
            || ip.is_multicast()
            || ip.is_broadcast()
            || ip.is_unspecified()
            || pool.contains(ip)
        {
            return Err(bad(format!("{ip} may not be allowed to a guest")));
        }
        if entry.port == Some(0) {
            return Err(bad("port 0".into()));
        }
        if !(1..=banger_proto::helper::MAX_POLICY_TIMEOUT_SECS).contains(&entry.timeout_secs) {
            return Err(bad(format!("timeout {}s", entry.timeout_secs)));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
