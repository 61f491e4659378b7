//! `vm policy show` and `vm policy set`: a VM's network policy (what it may reach), and
//! on a running VM its drop counter. `set` replaces the whole policy (`--allow` rules,
//! `--deny-all`) or removes it (`--clear`).

use std::process::ExitCode;

use banger_api::methods::{
    PolicyCheck, PolicyInfo, VmPolicyCheck, VmPolicyCheckParams, VmPolicySet, VmPolicySetParams,
    VmPolicyShow, VmRef,
};
use clap::{ArgGroup, Args};

use crate::cli::{JsonFlag, VmArg};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render::records;
use crate::render::records::policy::{PolicyCheckJson, PolicyJson};
use crate::values;

/// Show a VM's network policy
#[derive(Debug, Args)]
#[command(
    long_about = "Show what a VM may reach: its allow rules (or `deny all`, or no policy), \
whether it gets NAT, and while it runs, how many packets its policy dropped.",
    after_help = "\
Examples:
  banger vm policy show web
  banger vm policy show web --json"
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub vm: VmArg,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Replace or remove a VM's network policy (a running VM changes at once)
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("policy").required(true).args(["allow", "deny_all", "clear"])),
    long_about = "Replace a VM's network policy with the given `--allow` rules or \
`--deny-all`, or remove it with `--clear` (the VM's `--nat` setting alone decides again). \
On a running VM the host's rules change at once: names the new policy does not allow stop \
resolving, and addresses learned for the old one are forgotten. Connections already open \
stay until they close.",
    after_help = "\
Examples:
  banger vm policy set web --allow example.com:443
  banger vm policy set web --allow '*.debian.org:80' --allow 10.0.0.0/8
  banger vm policy set web --deny-all
  banger vm policy set web --clear"
)]
pub struct SetArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Allow this destination (repeatable): a name, `*.example.com`, an IPv4 address or
    /// CIDR, optionally `:PORT`
    #[arg(long, value_name = "HOST[:PORT]", value_parser = values::allow_rule)]
    pub allow: Vec<String>,
    /// Allow nothing
    #[arg(long, conflicts_with_all = ["allow", "clear"])]
    pub deny_all: bool,
    /// Remove the policy
    #[arg(long, conflicts_with = "allow")]
    pub clear: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Say whether a destination would be allowed, and why
#[derive(Debug, Args)]
#[command(
    long_about = "Say whether the VM's guest may reach HOST[:PORT] under its network policy, \
by which rule, and why, decided as the host enforces it: a name by the name rules (banger's \
resolver answers allowed names only and refuses the rest, so a name never reaches an \
address rule), an IPv4 address by the address rules or because banger's resolver answered \
it to this guest for an allowed name (while the record's TTL lasts). Names are compared as \
the resolver compares them (case and a trailing dot do not matter; `*.example.com` matches \
names below it). Exit status 0 when allowed, 1 when not.",
    after_help = "\
Examples:
  banger vm policy check web pypi.org:443
  banger vm policy check web 10.1.2.3:22
  banger vm policy check web files.pythonhosted.org --json"
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// The destination: a name or an IPv4 address, optionally `:PORT`
    #[arg(value_name = "HOST[:PORT]")]
    pub destination: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// The human form of a check.
pub fn describe_check(check: &PolicyCheck) -> String {
    let verdict = if check.allowed { "allowed" } else { "denied" };
    let mut out = format!(
        "{} -> {}: {verdict}
",
        check.vm, check.destination
    );
    if let Some(rule) = &check.rule {
        out.push_str(&format!(
            "rule:   {rule}
"
        ));
    }
    out.push_str(&format!(
        "why:    {}
",
        check.reason
    ));
    out
}

/// `vm policy check`: exit 0 when allowed, 1 when denied.
pub async fn check(ctx: &Ctx, args: CheckArgs) -> Result<ExitCode, CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmPolicyCheckParams {
        vm: args.vm.vm,
        destination: args.destination,
    };
    let answer = daemon.ask::<VmPolicyCheck>(&params).await?;
    records::print(
        args.output.json,
        &answer,
        PolicyCheckJson::from,
        describe_check,
    )?;
    Ok(if answer.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What a policy denied, one line each (`vm logs --policy`).
pub fn describe_denials(info: &PolicyInfo) -> String {
    let mut out = String::new();
    if info.policy.is_none() {
        out.push_str(&format!("{} has no network policy\n", info.vm));
        return out;
    }
    if !info.running {
        out.push_str(&format!(
            "{} is not running: denials are counted while it runs\n",
            info.vm
        ));
        return out;
    }
    if let Some(dropped) = info.dropped_packets {
        out.push_str(&format!(
            "{dropped} packets dropped since the policy was installed\n"
        ));
    }
    for name in &info.refused_names {
        out.push_str(&format!(
            "refused name  {:<40} {} queries\n",
            name.name, name.count
        ));
    }
    for d in &info.denied {
        let dest = match d.port {
            Some(port) => format!("{}:{port}", d.address),
            None => d.address.clone(),
        };
        out.push_str(&format!(
            "denied {:<6} {:<40} {} packets\n",
            d.protocol, dest, d.packets
        ));
    }
    out
}

/// `vm logs --policy`.
pub async fn denials(ctx: &Ctx, vm: String, json: bool) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let info = daemon.ask::<VmPolicyShow>(&VmRef { vm }).await?;
    records::print(json, &info, PolicyJson::from, describe_denials)
}

/// The human form of a policy answer.
pub fn describe(info: &PolicyInfo) -> String {
    let mut out = String::new();
    let policy = match &info.policy {
        None => "none (no restriction beyond --nat)".to_string(),
        Some(rules) if rules.is_empty() => "deny all".to_string(),
        Some(rules) => format!("allow {}", rules.join(", ")),
    };
    out.push_str(&format!("vm:       {}\n", info.vm));
    out.push_str(&format!("policy:   {policy}\n"));
    out.push_str(&format!(
        "nat:      {}\n",
        if info.nat { "yes" } else { "no" }
    ));
    out.push_str(&format!(
        "running:  {}\n",
        if info.running { "yes" } else { "no" }
    ));
    if let Some(dropped) = info.dropped_packets {
        out.push_str(&format!(
            "dropped:  {dropped} packets ({} destinations denied, {} names refused; `banger vm logs --policy {}`)\n",
            info.denied.len(),
            info.refused_names.len(),
            info.vm
        ));
    }
    out
}

/// `vm policy show`.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let info = daemon
        .ask::<VmPolicyShow>(&VmRef { vm: args.vm.vm })
        .await?;
    records::print(args.output.json, &info, PolicyJson::from, describe)
}

/// `vm policy set`.
pub async fn set(ctx: &Ctx, args: SetArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmPolicySetParams {
        vm: args.vm.vm,
        allow: args.allow,
        deny_all: args.deny_all,
        clear: args.clear,
    };
    let info = daemon.ask::<VmPolicySet>(&params).await?;
    records::print(args.output.json, &info, PolicyJson::from, describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let mut info = PolicyInfo {
            vm: "web".into(),
            policy: Some(vec!["example.com:443".into(), "10.0.0.0/8".into()]),
            nat: true,
            running: true,
            dropped_packets: Some(3),
            denied: vec![banger_api::methods::DeniedDestination {
                address: "192.0.2.9".into(),
                protocol: "tcp".into(),
                port: Some(80),
                packets: 3,
            }],
            refused_names: vec![banger_api::methods::RefusedName {
                name: "evil.test".into(),
                count: 2,
            }],
        };
        let text = describe(&info);
        assert!(
            text.contains("policy:   allow example.com:443, 10.0.0.0/8\n"),
            "{text}"
        );
        assert!(
            text.contains("dropped:  3 packets (1 destinations denied"),
            "{text}"
        );
        let log = describe_denials(&info);
        assert!(log.contains("denied tcp    192.0.2.9:80"), "{log}");
        assert!(log.contains("refused name  evil.test"), "{log}");
        let check = PolicyCheck {
            vm: "web".into(),
            destination: "example.com:443".into(),
            allowed: true,
            rule: Some("example.com:443".into()),
            reason: "allowed by example.com:443".into(),
        };
        assert!(
            describe_check(&check)
                .contains("web -> example.com:443: allowed\nrule:   example.com:443\n")
        );
        info.policy = Some(vec![]);
        info.dropped_packets = None;
        assert!(describe(&info).contains("policy:   deny all\n"));
        info.policy = None;
        assert!(describe(&info).contains("policy:   none"));
    }
}
