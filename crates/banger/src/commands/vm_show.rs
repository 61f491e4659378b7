//! `vm show` and `vm ports`: read-only views of one VM (`vm stats` is `vm_stats.rs`).

use banger_api::methods::{VmPorts, VmRef, VmShow};
use clap::Args;

use crate::cli::{JsonFlag, VmArg};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;

/// Show everything about one VM
#[derive(Debug, Args)]
#[command(
    long_about = "Show one VM: state (and the last error, if any), image, kernel, \
resources, driver and accelerator, address, process id, boot id, workspace, timestamps \
and the directory holding its files.",
    after_help = "Examples:\n  banger vm show web\n  banger vm show web --json | jq -r .address"
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub vm: VmArg,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// List the ports a VM's guest listens on
#[derive(Debug, Args)]
#[command(
    long_about = "List the sockets listening inside the guest, as the guest agent reports \
them, with the endpoint that reaches each from the host (`<name>.vm:<port>`).",
    after_help = "Examples:\n  banger vm ports web\n  banger vm ports web --json"
)]
pub struct PortsArgs {
    #[command(flatten)]
    pub vm: VmArg,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm show`.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let vm = daemon.ask::<VmShow>(&VmRef { vm: args.vm.vm }).await?;
    render::data(args.output.json, &vm, |vm| {
        render::detail::vm(vm, jiff::Timestamp::now())
    })
}

/// `vm ports`.
pub async fn ports(ctx: &Ctx, args: PortsArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let ports = daemon.ask::<VmPorts>(&VmRef { vm: args.vm.vm }).await?;
    if !args.output.json && ports.is_empty() {
        render::note("nothing listens in the guest");
        return Ok(());
    }
    render::data(args.output.json, &ports, |ports| {
        render::table::ports(ports)
    })
}
