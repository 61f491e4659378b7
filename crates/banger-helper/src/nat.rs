//! nat: per-guest outbound NAT. The rules live here, in the helper, not in banger-net:
//! the daemon only asks `add_nat`/`remove_nat` for an address, and the helper is the one
//! place that knows (and tests, without root) the exact ruleset it applies.
//!
//! With nftables everything is in banger's own table `ip banger`, so the host's other
//! rules are never edited:
//!
//! ```text
//! table ip banger {
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr 172.30.0.2 oifname "eth0" masquerade comment "banger-vm=172.30.0.2,via=eth0" }
//!   chain forward { type filter hook forward priority filter; policy accept;
//!     iifname "banger0" jump egress comment "banger-base=banger0"
//!     iifname "banger0" drop comment "banger-base=banger0" }
//!   chain egress {
//!     ip saddr 172.30.0.2 oifname "eth0" accept comment "banger-vm=172.30.0.2,via=eth0" }
//! }
//! ```
//!
//! Forwarded traffic from the bridge reaches the outside only through a guest's own
//! `/32` rule; guests without NAT are dropped. The forward chain's policy stays `accept`
//! so the host's other forwarded traffic is not affected. Each guest's rules carry a
//! comment naming its address and uplink: `add` compares the listing with what it wants
//! and changes it in one `nft -f` transaction (exactly one rule per chain after repeated
//! adds), and `remove` deletes exactly the rules whose comment names that address.
//!
//! Without `nft`, the same rules go into iptables' built-in chains, found again by the
//! same comments in `iptables -S` output.

use std::net::Ipv4Addr;
use std::path::Path;

use banger_proto::helper::HelperError;
use serde_json::Value;

use crate::link::failed;
use crate::tool::{Tool, ToolError, ToolRunner};

/// banger's nftables table (family `ip`).
pub const TABLE: &str = "banger";

const BASE_PREFIX: &str = "banger-base=";
const VM_PREFIX: &str = "banger-vm=";

/// What one guest's NAT connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTarget<'a> {
    pub bridge: &'a str,
    pub uplink: &'a str,
    pub guest_ip: Ipv4Addr,
}

/// The comment on the bridge-wide forward rules.
pub fn base_comment(bridge: &str) -> String {
    format!("{BASE_PREFIX}{bridge}")
}

/// The comment on one guest's rules.
pub fn vm_comment(guest_ip: Ipv4Addr, uplink: &str) -> String {
    format!("{VM_PREFIX}{guest_ip},via={uplink}")
}

/// The guest address a rule comment names, if it is one of banger's per-guest comments.
pub fn comment_guest(comment: &str) -> Option<Ipv4Addr> {
    let rest = comment.strip_prefix(VM_PREFIX)?;
    let (ip, _uplink) = rest.split_once(",via=")?;
    ip.parse().ok()
}

/// One rule of banger's table as `nft -j list table ip banger` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// Parses the rules out of `nft -j list table ip banger`.
pub fn parse_nft_rules(json: &[u8]) -> Result<Vec<NftRule>, String> {
    parse_table_rules(json, "ip", TABLE)
}

/// Parses the rules of table `family table` out of an `nft -j list` output.
pub fn parse_table_rules(json: &[u8], family: &str, table: &str) -> Result<Vec<NftRule>, String> {
    let root: Value =
        serde_json::from_slice(json).map_err(|e| format!("unreadable `nft -j` output: {e}"))?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("`nft -j` output has no `nftables` array")?;
    let mut rules = Vec::new();
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        let field = |name: &str| rule.get(name);
        if field("family").and_then(Value::as_str) != Some(family)
            || field("table").and_then(Value::as_str) != Some(table)
        {
            continue;
        }
        let chain = field("chain")
            .and_then(Value::as_str)
            .ok_or("a rule without a chain")?;
        let handle = field("handle")
            .and_then(Value::as_u64)
            .ok_or("a rule without a handle")?;
        rules.push(NftRule {
            chain: chain.to_owned(),
            handle,
            comment: field("comment").and_then(Value::as_str).map(str::to_owned),
        });
    }
    Ok(rules)
}

/// Declares banger's table and chains. In an `nft -f` script this adds what is missing
/// and leaves existing rules alone, so it starts every script.
pub fn nft_table_declaration() -> String {
    format!(
        "table ip {TABLE} {{\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\t}}\n\
         \tchain egress {{\n\t}}\n\
         }}\n"
    )
}

pub(crate) fn delete_nft_rule(script: &mut String, rule: &NftRule) {
    script.push_str(&format!(
        "delete rule ip {TABLE} {} handle {}\n",
        rule.chain, rule.handle
    ));
}

/// The `nft -f` script that makes the table hold `target`'s rules (and the bridge-wide
/// forward rules) exactly once, or `None` when it already does.
pub fn plan_nft_add(rules: &[NftRule], target: &NatTarget<'_>) -> Option<String> {
    let mut script = nft_table_declaration();
    let mut changed = false;

    let base = base_comment(target.bridge);
    let base_rules: Vec<&NftRule> = rules
        .iter()
        .filter(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| c.starts_with(BASE_PREFIX))
        })
        .collect();
    let base_ok = base_rules.len() == 2
        && base_rules
            .iter()
            .all(|r| r.chain == "forward" && r.comment.as_deref() == Some(base.as_str()));
    if !base_ok {
        for rule in &base_rules {
            delete_nft_rule(&mut script, rule);
        }
        let bridge = target.bridge;
        script.push_str(&format!(
            "add rule ip {TABLE} forward iifname \"{bridge}\" jump egress comment \"{base}\"\n\
             add rule ip {TABLE} forward iifname \"{bridge}\" drop comment \"{base}\"\n"
        ));
        changed = true;
    }

    let wanted = vm_comment(target.guest_ip, target.uplink);
    let mine: Vec<&NftRule> = rules
        .iter()
        .filter(|r| r.comment.as_deref().and_then(comment_guest) == Some(target.guest_ip))
        .collect();
    let count = |chain: &str| {
        mine.iter()
            .filter(|r| r.chain == chain && r.comment.as_deref() == Some(wanted.as_str()))
            .count()
    };
    let vm_ok = mine.len() == 2 && count("egress") == 1 && count("postrouting") == 1;
    if !vm_ok {
        for rule in &mine {
            delete_nft_rule(&mut script, rule);
        }
        let (ip, uplink) = (target.guest_ip, target.uplink);
        script.push_str(&format!(
            "add rule ip {TABLE} egress ip saddr {ip}/32 oifname \"{uplink}\" accept comment \"{wanted}\"\n\
             add rule ip {TABLE} postrouting ip saddr {ip}/32 oifname \"{uplink}\" masquerade comment \"{wanted}\"\n"
        ));
        changed = true;
    }
    changed.then_some(script)
}

/// The `nft -f` script that deletes every rule naming `guest_ip`, or `None` if there is
/// none.
pub fn plan_nft_remove(rules: &[NftRule], guest_ip: Ipv4Addr) -> Option<String> {
    let mut script = String::new();
    for rule in rules
        .iter()
        .filter(|r| r.comment.as_deref().and_then(comment_guest) == Some(guest_ip))
    {
        delete_nft_rule(&mut script, rule);
    }
    (!script.is_empty()).then_some(script)
}

pub(crate) fn nft(
    tools: &dyn ToolRunner,
    args: &[&str],
    stdin: Option<String>,
) -> Result<Vec<u8>, ToolError> {
    let mut tool = Tool::new("nft").args(args);
    if let Some(script) = stdin {
        tool = tool.stdin(script.into_bytes());
    }
    tools.run(&tool).map(|out| out.stdout)
}

pub(crate) fn list_nft_table(tools: &dyn ToolRunner) -> Result<Vec<u8>, ToolError> {
    nft(tools, &["-j", "list", "table", "ip", TABLE], None)
}

/// Whether banger's table exists (`nft -j list tables ip` lists it).
pub(crate) fn nft_table_exists(tools: &dyn ToolRunner, op: &str) -> Result<bool, HelperError> {
    let json = nft(tools, &["-j", "list", "tables", "ip"], None).map_err(|e| failed(op, e))?;
    tables_include_banger(&json).map_err(|e| failed(op, e))
}

/// Whether `nft -j list tables ip` output lists banger's table.
pub fn tables_include_banger(json: &[u8]) -> Result<bool, String> {
    let root: Value =
        serde_json::from_slice(json).map_err(|e| format!("unreadable `nft -j` output: {e}"))?;
    Ok(root
        .get("nftables")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items.iter().any(|item| {
                item.get("table")
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                    == Some(TABLE)
            })
        }))
}

/// Adds `target`'s rules with nftables. `Err(ToolError::NotFound)` (as `Ok(Err)`) tells
/// the caller to fall back to iptables.
pub fn add_nat_nft(
    tools: &dyn ToolRunner,
    target: &NatTarget<'_>,
) -> Result<Result<(), ToolError>, HelperError> {
    const OP: &str = "add_nat";
    let listing = match list_nft_table(tools) {
        Ok(listing) => listing,
        Err(error) if error.is_not_found() => return Ok(Err(error)),
        Err(_) => {
            // Most likely the table does not exist yet: declare it and look again, so a
            // real nft failure still surfaces from the second listing.
            nft(tools, &["-f", "-"], Some(nft_table_declaration())).map_err(|e| failed(OP, e))?;
            list_nft_table(tools).map_err(|e| failed(OP, e))?
        }
    };
    let rules = parse_nft_rules(&listing).map_err(|e| failed(OP, e))?;
    if let Some(script) = plan_nft_add(&rules, target) {
        nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(OP, e))?;
    }
    Ok(Ok(()))
}

/// Removes `guest_ip`'s rules with nftables (see [`add_nat_nft`] for the fallback signal).
pub fn remove_nat_nft(
    tools: &dyn ToolRunner,
    guest_ip: Ipv4Addr,
) -> Result<Result<(), ToolError>, HelperError> {
    const OP: &str = "remove_nat";
    let listing = match list_nft_table(tools) {
        Ok(listing) => listing,
        Err(error) if error.is_not_found() => return Ok(Err(error)),
        Err(error) => {
            if nft_table_exists(tools, OP)? {
                return Err(failed(OP, error));
            }
            // No table, no rules: already removed.
            return Ok(Ok(()));
        }
    };
    let rules = parse_nft_rules(&listing).map_err(|e| failed(OP, e))?;
    if let Some(script) = plan_nft_remove(&rules, guest_ip) {
        nft(tools, &["-f", "-"], Some(script)).map_err(|e| failed(OP, e))?;
    }
    Ok(Ok(()))
}

/// One rule of an iptables chain as `iptables -S CHAIN` prints it: the argv after
/// `-A CHAIN`. banger's comments hold no spaces, so splitting on whitespace is exact for
/// the rules we look for (see [`unquote`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesRule {
    pub spec: Vec<String>,
}

impl IptablesRule {
    pub fn comment(&self) -> Option<&str> {
        let at = self.spec.iter().position(|t| t == "--comment")?;
        self.spec.get(at + 1).map(String::as_str)
    }
}

/// Parses `iptables -S CHAIN` output into the chain's rules.
pub fn parse_iptables_rules(text: &str, chain: &str) -> Vec<IptablesRule> {
    let prefix = format!("-A {chain} ");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|spec| IptablesRule {
            spec: spec
                .split_whitespace()
                .map(unquote)
                .map(str::to_owned)
                .collect(),
        })
        .collect()
}

/// iptables-nft prints comments holding `=` or `,` in double quotes; ours hold no
/// spaces, so each is still one token, and the argv form has no quotes.
fn unquote(token: &str) -> &str {
    token
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(token)
}

/// One iptables chain and the rules banger wants in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesChainPlan {
    pub table: &'static str,
    pub chain: &'static str,
    /// Rules to delete (by spec, so concurrent renumbering cannot hit another rule).
    pub delete: Vec<Vec<String>>,
    /// Rules to insert at the top (forward accepts must precede other tools' drops).
    pub insert: Vec<Vec<String>>,
    /// Rules to append at the end (the bridge-wide drop).
    pub append: Vec<Vec<String>>,
}

fn spec(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// The iptables rules for `target`, per chain.
pub fn iptables_wanted(
    target: &NatTarget<'_>,
) -> [(&'static str, &'static str, Vec<Vec<String>>); 2] {
    let source = format!("{}/32", target.guest_ip);
    let comment = vm_comment(target.guest_ip, target.uplink);
    let (bridge, uplink) = (target.bridge, target.uplink);
    [
        (
            "nat",
            "POSTROUTING",
            vec![spec(&[
                "-s",
                &source,
                "-o",
                uplink,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "MASQUERADE",
            ])],
        ),
        (
            "filter",
            "FORWARD",
            vec![
                spec(&[
                    "-s",
                    &source,
                    "-i",
                    bridge,
                    "-o",
                    uplink,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    "ACCEPT",
                ]),
                spec(&[
                    "-d",
                    &source,
                    "-i",
                    uplink,
                    "-o",
                    bridge,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "RELATED,ESTABLISHED",
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    "ACCEPT",
                ]),
            ],
        ),
    ]
}

/// What to change in one chain so it holds exactly `wanted` for `guest_ip` (and, for
/// FORWARD, the bridge-wide drop once). `None` when nothing changes.
pub fn plan_iptables_add(
    existing: &[IptablesRule],
    table: &'static str,
    chain: &'static str,
    wanted: &[Vec<String>],
    target: &NatTarget<'_>,
) -> Option<IptablesChainPlan> {
    let mine: Vec<&IptablesRule> = existing
        .iter()
        .filter(|r| r.comment().and_then(comment_guest) == Some(target.guest_ip))
        .collect();
    let mut plan = IptablesChainPlan {
        table,
        chain,
        delete: Vec::new(),
        insert: Vec::new(),
        append: Vec::new(),
    };
    let same =
        mine.len() == wanted.len() && wanted.iter().all(|w| mine.iter().any(|r| &r.spec == w));
    if !same {
        plan.delete = mine.iter().map(|r| r.spec.clone()).collect();
        plan.insert = wanted.to_vec();
    }
    if chain == "FORWARD" {
        let base = base_comment(target.bridge);
        let drop = spec(&[
            "-i",
            target.bridge,
            "-m",
            "comment",
            "--comment",
            &base,
            "-j",
            "DROP",
        ]);
        let bases: Vec<&IptablesRule> = existing
            .iter()
            .filter(|r| r.comment().is_some_and(|c| c.starts_with(BASE_PREFIX)))
            .collect();
        if !(bases.len() == 1 && bases[0].spec == drop) {
            plan.delete.extend(bases.iter().map(|r| r.spec.clone()));
            plan.append.push(drop);
        }
    }
    let empty = plan.delete.is_empty() && plan.insert.is_empty() && plan.append.is_empty();
    (!empty).then_some(plan)
}

pub(crate) fn iptables(
    tools: &dyn ToolRunner,
    op: &str,
    args: &[&str],
    rule: &[String],
) -> Result<Vec<u8>, HelperError> {
    iptables_output(tools, args, rule).map_err(|e| failed(op, e))
}

/// `iptables -w ARGS RULE`'s stdout, or the tool's own error.
pub(crate) fn iptables_output(
    tools: &dyn ToolRunner,
    args: &[&str],
    rule: &[String],
) -> Result<Vec<u8>, ToolError> {
    // `-w`: wait for the xtables lock instead of failing when another tool holds it.
    let tool = Tool::new("iptables").arg("-w").args(args).args(rule);
    tools.run(&tool).map(|out| out.stdout)
}

pub(crate) fn list_iptables(
    tools: &dyn ToolRunner,
    op: &str,
    table: &str,
    chain: &str,
) -> Result<Vec<IptablesRule>, HelperError> {
    let out = iptables(tools, op, &["-t", table, "-S", chain], &[])?;
    Ok(parse_iptables_rules(&String::from_utf8_lossy(&out), chain))
}

fn apply_iptables_plan(
    tools: &dyn ToolRunner,
    op: &str,
    plan: &IptablesChainPlan,
) -> Result<(), HelperError> {
    let (table, chain) = (plan.table, plan.chain);
    for rule in &plan.delete {
        iptables(tools, op, &["-t", table, "-D", chain], rule)?;
    }
    // Inserted in reverse at position 1 so they end up in their listed order.
    for rule in plan.insert.iter().rev() {
        iptables(tools, op, &["-t", table, "-I", chain, "1"], rule)?;
    }
    for rule in &plan.append {
        iptables(tools, op, &["-t", table, "-A", chain], rule)?;
    }
    Ok(())
}

/// Adds `target`'s rules with iptables.
pub fn add_nat_iptables(tools: &dyn ToolRunner, target: &NatTarget<'_>) -> Result<(), HelperError> {
    const OP: &str = "add_nat";
    for (table, chain, wanted) in iptables_wanted(target) {
        let existing = list_iptables(tools, OP, table, chain)?;
        if let Some(plan) = plan_iptables_add(&existing, table, chain, &wanted, target) {
            apply_iptables_plan(tools, OP, &plan)?;
        }
    }
    Ok(())
}

/// Removes `guest_ip`'s rules with iptables.
pub fn remove_nat_iptables(tools: &dyn ToolRunner, guest_ip: Ipv4Addr) -> Result<(), HelperError> {
    const OP: &str = "remove_nat";
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "FORWARD")] {
        for rule in list_iptables(tools, OP, table, chain)? {
            if rule.comment().and_then(comment_guest) == Some(guest_ip) {
                iptables(tools, OP, &["-t", table, "-D", chain], &rule.spec)?;
            }
        }
    }
    Ok(())
}

/// Turns on IPv4 forwarding (in the helper's network namespace) unless it already is.
/// It is left on at removal: other software on the host may rely on it too.
pub fn enable_ip_forward(proc_sys: &Path) -> Result<(), HelperError> {
    let path = proc_sys.join("net/ipv4/ip_forward");
    let current = std::fs::read_to_string(&path)
        .map_err(|e| failed("add_nat", format!("cannot read {}: {e}", path.display())))?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(&path, b"1\n")
        .map_err(|e| failed("add_nat", format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
#[path = "nat_tests.rs"]
mod tests;
