//! `vm port publish` and `vm port unpublish`: host ports forwarded to a VM's guest ports
//! by the daemon (`vm run -p` publishes them at creation). Published ports are kept with
//! the VM: they close when it stops and open again when it starts.

use banger_api::methods::{VmPortPublish, VmPortSpecsParams, VmPortUnpublish};
use banger_api::types::PublishedPortInfo;
use clap::Args;

use crate::cli::{JsonFlag, VmArg};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render::records::ports::PublishedJson;
use crate::render::{self, records};
use crate::values;

/// Forward host ports to a running VM's guest ports
#[derive(Debug, Args)]
#[command(
    long_about = "Forward host ports to a running VM's guest ports, now and at every \
later start, until `vm port unpublish` or `vm delete`. Each SPEC is \
`[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`: the daemon listens on HOST_IP (127.0.0.1 \
unless given; 0.0.0.0 for every interface) and forwards each connection (or UDP \
datagram) to the guest's address. Publishing a host port the VM already publishes moves \
it to the new guest port. A host port in use is refused, naming who holds it when the \
host says.",
    after_help = "\
Examples:
  banger vm port publish web 8080:80          http://127.0.0.1:8080 reaches the guest's port 80
  banger vm port publish web 0.0.0.0:8080:80  From other machines too
  banger vm port publish web 5353:53/udp
  banger vm ports web                         What is published, and what listens in the guest"
)]
pub struct PublishArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// `[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`, e.g. `8080:80`
    #[arg(value_name = "SPEC", required = true, value_parser = values::port_spec)]
    pub ports: Vec<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Stop forwarding host ports to a VM
#[derive(Debug, Args)]
#[command(
    long_about = "Close published ports and forget them (running or stopped VM). Each \
PORT names the host side, `[HOST_IP:]HOST_PORT[/tcp|udp]`, or is a whole spec as it was \
published. Open connections through the port are closed.",
    after_help = "\
Examples:
  banger vm port unpublish web 8080
  banger vm port unpublish web 127.0.0.1:8080 5353/udp"
)]
pub struct UnpublishArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// `[HOST_IP:]HOST_PORT[/tcp|udp]`, e.g. `8080`
    #[arg(value_name = "PORT", required = true, value_parser = values::port_side)]
    pub ports: Vec<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm port publish`.
pub async fn publish(ctx: &Ctx, args: PublishArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmPortSpecsParams {
        vm: args.vm.vm,
        ports: args.ports,
    };
    let ports = daemon.ask::<VmPortPublish>(&params).await?;
    records::print(
        args.output.json,
        &ports,
        |p| records::all::<_, PublishedJson>(p),
        |ports| render::table::published(ports),
    )
}

/// `vm port unpublish`.
pub async fn unpublish(ctx: &Ctx, args: UnpublishArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmPortSpecsParams {
        vm: args.vm.vm,
        ports: args.ports,
    };
    let removed = daemon.ask::<VmPortUnpublish>(&params).await?;
    records::print(
        args.output.json,
        &removed,
        |p| records::all::<_, PublishedJson>(p),
        |removed| unpublished(removed),
    )
}

fn unpublished(removed: &[PublishedPortInfo]) -> String {
    removed
        .iter()
        .map(|port| format!("unpublished {}\n", port.spec))
        .collect()
}
