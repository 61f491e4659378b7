//! `vm policy show` and `vm policy set`: a VM's network policy (what it may reach), and
//! on a running VM its drop counter. `set` replaces the whole policy (`--allow` rules,
//! `--deny-all`) or removes it (`--clear`).

use banger_api::methods::{PolicyInfo, VmPolicySet, VmPolicySetParams, VmPolicyShow, VmRef};
use clap::{ArgGroup, Args};

use crate::cli::{JsonFlag, VmArg};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;
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
        out.push_str(&format!("dropped:  {dropped} packets\n"));
    }
    out
}

/// `vm policy show`.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let info = daemon
        .ask::<VmPolicyShow>(&VmRef { vm: args.vm.vm })
        .await?;
    render::data(args.output.json, &info, describe)
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
    render::data(args.output.json, &info, describe)
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
        };
        let text = describe(&info);
        assert!(
            text.contains("policy:   allow example.com:443, 10.0.0.0/8\n"),
            "{text}"
        );
        assert!(text.contains("dropped:  3 packets\n"), "{text}");
        info.policy = Some(vec![]);
        info.dropped_packets = None;
        assert!(describe(&info).contains("policy:   deny all\n"));
        info.policy = None;
        assert!(describe(&info).contains("policy:   none"));
    }
}
