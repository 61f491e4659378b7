//! `vm list` (alias `ps`): every VM as a table, or as JSON.

use banger_api::methods::{Empty, VmList};
use clap::Args;

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;

/// List VMs
#[derive(Debug, Args)]
#[command(
    long_about = "List every VM with its state, image, resources, address, workspace and \
age. Columns: NAME, STATE, IMAGE, VCPU, MEMORY, DISK, ADDRESS, WORKSPACE, CREATED. \
`--json` prints the full records (the same fields as `vm show --json`).",
    after_help = "\
Examples:
  banger vm list
  banger vm ps
  banger vm list --json | jq -r '.[] | select(.state == \"running\") | .name'"
)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm list`.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let vms = daemon.ask::<VmList>(&Empty {}).await?;
    if !args.output.json && vms.is_empty() {
        render::note("no VMs yet; create one with `banger vm create` or `banger vm run`");
        return Ok(());
    }
    render::data(args.output.json, &vms, |vms| {
        render::table::vms(vms, jiff::Timestamp::now())
    })
}
