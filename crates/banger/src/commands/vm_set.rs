//! `vm set`: changes the vCPUs, memory or disk size of a stopped VM.

use banger_api::methods::{VmSet, VmSetParams};
use clap::{ArgGroup, Args};

use crate::cli::{JsonFlag, VmArg};
use crate::commands::vm_run::summary;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::values;

/// Change a stopped VM's vCPUs, memory or disk size
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("change").required(true).multiple(true).args(["vcpu", "memory", "disk"])),
    long_about = "Change the resources of a stopped VM; they apply at its next start. The \
disk can grow but not shrink.",
    after_help = "\
Examples:
  banger vm set web --memory 4GiB
  banger vm set web --vcpu 4 --disk 20GiB"
)]
pub struct SetArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Number of virtual CPUs, at least 1
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub vcpu: Option<u32>,
    /// Memory, e.g. `512MiB` or `2GiB`; a bare number is MiB
    #[arg(long, value_name = "SIZE", value_parser = values::memory_mib)]
    pub memory: Option<u64>,
    /// Root disk size, e.g. `20GiB`; a bare number is MiB
    #[arg(long, value_name = "SIZE", value_parser = values::disk_mib)]
    pub disk: Option<u64>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm set`.
pub async fn set(ctx: &Ctx, args: SetArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmSetParams {
        vm: args.vm.vm,
        vcpus: args.vcpu,
        memory_mib: args.memory,
        disk_mib: args.disk,
    };
    let vm = daemon.ask::<VmSet>(&params).await?;
    crate::render::records::print_vm(args.output.json, &vm, summary)
}
