//! `vm logs`: a VM's serial console log, streamed to stdout; with `-f` it keeps
//! following until the VM stops or is deleted, or until interrupted.

use banger_api::methods::{VmLogs, VmLogsParams};
use clap::Args;

use crate::cli::VmArg;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::progress::Progress;

/// Print a VM's console log
#[derive(Debug, Args)]
#[command(
    long_about = "Print a VM's serial console log: the kernel's boot messages and whatever \
the guest writes to its console. Useful when a VM fails to boot. With -f, keep printing \
new lines until the VM stops or is deleted (or Ctrl-C). Line ends are `\\n` (the console's \
`\\r\\n` is normalised). With --policy, instead, what the VM's network policy denied while \
it runs: the destinations dropped (address, protocol, port, packets; each kept an hour \
after its last drop) and the names banger's resolver refused.",
    after_help = "\
Examples:
  banger vm logs web
  banger vm logs web --tail 50
  banger vm logs -f web
  banger vm logs --policy web            What the network policy denied"
)]
pub struct LogsArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Keep printing new output until the VM stops or is deleted
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// What the VM's network policy denied (destinations and refused names) instead
    #[arg(long, conflicts_with_all = ["follow", "tail"])]
    pub policy: bool,
    /// With --policy: as JSON
    #[arg(long, requires = "policy")]
    pub json: bool,
}

/// `vm logs`.
pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<(), CliError> {
    if args.policy {
        return crate::commands::vm_policy::denials(ctx, args.vm.vm, args.json).await;
    }
    let mut daemon = ctx.connect().await?;
    let mut progress = Progress::new(&ctx.term);
    let params = VmLogsParams {
        vm: args.vm.vm,
        follow: args.follow,
        tail_lines: args.tail,
    };
    daemon.call::<VmLogs>(&params, &mut progress.sink()).await?;
    Ok(())
}
