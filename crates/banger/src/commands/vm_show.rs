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
    long_about = "List the VM's published ports (`vm port publish`, `vm run -p`): the host \
address and port, the guest address and port they forward to, and whether they are open \
(only while the VM runs). Then the sockets listening inside the guest, as the guest agent \
reports them, with both ways to reach each from the host: `<name>.vm:<port>` (needs the \
`.vm` resolver route, see `banger doctor`) and `<guest address>:<port>`. `--json` has \
every key, null when unknown.",
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
    render::records::print_vm(args.output.json, &vm, |vm| {
        render::detail::vm(vm, jiff::Timestamp::now())
    })
}

/// `vm ports`.
pub async fn ports(ctx: &Ctx, args: PortsArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let ports = daemon.ask::<VmPorts>(&VmRef { vm: args.vm.vm }).await?;
    if !args.output.json && ports.published.is_empty() && ports.listening.is_empty() {
        if ports.state == banger_api::types::VmState::Running {
            render::note("nothing is published and nothing listens in the guest");
        } else {
            render::note(&format!(
                "VM {} is {} and publishes no ports",
                ports.vm, ports.state
            ));
        }
        return Ok(());
    }
    render::records::print(
        args.output.json,
        &ports,
        render::records::ports::PortsJson::from,
        render::table::vm_ports,
    )
}
