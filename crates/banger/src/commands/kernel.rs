//! `kernel catalog|list|show|pull|delete`.

use banger_api::methods::{
    Empty, KernelCatalog, KernelDelete, KernelList, KernelPull, KernelShow, NameRef,
};
use banger_api::types::KernelInfo;
use clap::Args;

use crate::candidates;
use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render::records::image::CatalogJson;
use crate::render::records::kernel::KernelJson;
use crate::render::{self, records};

/// List the built-in kernel catalog
#[derive(Debug, Args)]
#[command(
    long_about = "List the kernels `kernel pull` can fetch, and whether each is pulled \
already.",
    after_help = "Examples:\n  banger kernel catalog\n  banger kernel catalog --json"
)]
pub struct CatalogArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// List local kernels
#[derive(Debug, Args)]
#[command(
    long_about = "List the kernels on this host (NAME, VERSION, CREATED).",
    after_help = "Examples:\n  banger kernel list"
)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Show one kernel
#[derive(Debug, Args)]
#[command(
    long_about = "Show one local kernel: its release and the paths of its vmlinux and \
initramfs.",
    after_help = "Examples:\n  banger kernel show <name>"
)]
pub struct ShowArgs {
    /// Kernel name
    #[arg(value_name = "KERNEL", add = candidates::kernel_names())]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Fetch a kernel from the built-in catalog
#[derive(Debug, Args)]
#[command(
    long_about = "Fetch a catalog kernel, check it, unpack it and build its small \
initramfs. Each stage is shown as it runs.",
    after_help = "Examples:\n  banger kernel pull <name>    (names: `banger kernel catalog`)"
)]
pub struct PullArgs {
    /// Catalog kernel name
    #[arg(value_name = "KERNEL", add = candidates::kernel_names())]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete a local kernel
#[derive(Debug, Args)]
#[command(
    long_about = "Delete a local kernel. Images that boot with it need it pulled again \
before their next VM starts.",
    after_help = "Examples:\n  banger kernel delete <name>"
)]
pub struct DeleteArgs {
    /// Kernel name
    #[arg(value_name = "KERNEL", add = candidates::kernel_names())]
    pub name: String,
}

fn print_kernel(output: JsonFlag, kernel: &KernelInfo) -> Result<(), CliError> {
    records::print(output.json, kernel, KernelJson::from, |kernel| {
        render::detail::kernel(kernel, jiff::Timestamp::now())
    })
}

/// `kernel catalog`.
pub async fn catalog(ctx: &Ctx, args: CatalogArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let entries = daemon.ask::<KernelCatalog>(&Empty {}).await?;
    records::print(
        args.output.json,
        &entries,
        |e| records::all::<_, CatalogJson>(e),
        |e| render::table::catalog(e),
    )
}

/// `kernel list`.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let kernels = daemon.ask::<KernelList>(&Empty {}).await?;
    if !args.output.json && kernels.is_empty() {
        render::note("no kernels yet; `banger kernel catalog` shows what can be pulled");
        return Ok(());
    }
    records::print(
        args.output.json,
        &kernels,
        |k| records::all::<_, KernelJson>(k),
        |kernels| render::table::kernels(kernels, jiff::Timestamp::now()),
    )
}

/// `kernel show`.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let kernel = daemon
        .ask::<KernelShow>(&NameRef { name: args.name })
        .await?;
    print_kernel(args.output, &kernel)
}

/// `kernel pull`.
pub async fn pull(ctx: &Ctx, args: PullArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let kernel = daemon
        .call_with_progress::<KernelPull>(&ctx.term, &NameRef { name: args.name })
        .await?;
    print_kernel(args.output, &kernel)
}

/// `kernel delete`.
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let kernel = daemon
        .ask::<KernelDelete>(&NameRef { name: args.name })
        .await?;
    render::stdout(&format!("deleted kernel {}\n", kernel.name))
}
