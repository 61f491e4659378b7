//! `image list|show|pull|import|register|promote|delete` and `image cache prune`.

use std::path::PathBuf;

use banger_api::methods::{
    Empty, ImageCachePrune, ImageCatalog, ImageDelete, ImageImport, ImageImportParams, ImageList,
    ImagePromote, ImagePromoteParams, ImagePull, ImageRegister, ImageRegisterParams, ImageShow,
    NameRef,
};
use banger_api::types::ImageInfo;
use clap::Args;

use crate::candidates;
use crate::cli::{JsonFlag, VmArg};
use crate::connect::{self, Ctx};
use crate::errors::CliError;
use crate::render;

/// List local images, or the built-in catalog
#[derive(Debug, Args)]
#[command(
    long_about = "List the images on this host (NAME, SOURCE, KERNEL, SIZE, DIGEST, \
CREATED). With --catalog, list the built-in catalog instead: what `image pull` can build or \
download, whether it is pulled already, and which image VMs use by default.",
    after_help = "\
Examples:
  banger image list
  banger image list --catalog
  banger image list --json | jq -r '.[].name'"
)]
pub struct ListArgs {
    /// List the built-in catalog instead of local images
    #[arg(long)]
    pub catalog: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Show one image
#[derive(Debug, Args)]
#[command(
    long_about = "Show one local image: where it came from, its kernel, size, digest and \
the path of its root filesystem.",
    after_help = "Examples:\n  banger image show debian-bookworm"
)]
pub struct ShowArgs {
    /// Image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Build or download an image from the built-in catalog
#[derive(Debug, Args)]
#[command(
    long_about = "Make a catalog image available locally: `build` images are made on this \
host from Debian packages, `bundle` images are downloaded and checked against their \
sha256. Each stage is shown as it runs. `banger image list --catalog` shows the choices.",
    after_help = "\
Examples:
  banger image pull debian-bookworm
  banger image pull tiny"
)]
pub struct PullArgs {
    /// Catalog image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Import an image from an OCI registry
#[derive(Debug, Args)]
#[command(
    long_about = "Pull a container image from an OCI registry, flatten its layers into an \
ext4 root filesystem and register it under --name. The guest agent and init are added so \
it boots as a VM.",
    after_help = "\
Examples:
  banger image import localhost:5000/app:latest --name app
  banger image import docker.io/library/debian:bookworm --name deb"
)]
pub struct ImportArgs {
    /// OCI reference, e.g. `registry/repo:tag`
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Name of the new image
    #[arg(long, value_name = "NAME", value_parser = crate::values::image_name)]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Register an ext4 file on this host as an image
#[derive(Debug, Args)]
#[command(
    long_about = "Register an existing ext4 root filesystem file as an image. banger copies \
nothing until a VM is created from it; keep the file where it is.",
    after_help = "Examples:\n  banger image register myimg --rootfs ./rootfs.ext4 --kernel <kernel>"
)]
pub struct RegisterArgs {
    /// Name of the new image
    #[arg(value_name = "NAME", value_parser = crate::values::image_name)]
    pub name: String,
    /// The ext4 root filesystem file
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub rootfs: PathBuf,
    /// Kernel it boots with (default: the default kernel)
    #[arg(long, value_name = "KERNEL", add = candidates::kernel_names())]
    pub kernel: Option<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Turn a VM's disk into a new image
#[derive(Debug, Args)]
#[command(
    long_about = "Save a VM's disk as a new image, so new VMs start from what you set up in \
it. Stop the VM first so that its filesystem is clean.",
    after_help = "Examples:\n  banger vm stop web && banger image promote web --name web-golden"
)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Name of the new image
    #[arg(long, value_name = "NAME", value_parser = crate::values::image_name)]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete a local image
#[derive(Debug, Args)]
#[command(
    long_about = "Delete a local image. VMs created from it keep working: each has its own \
disk.",
    after_help = "Examples:\n  banger image delete app"
)]
pub struct DeleteArgs {
    /// Image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
}

/// Remove cached downloads and build inputs
#[derive(Debug, Args)]
#[command(
    long_about = "Remove what the image cache holds (downloaded packages, OCI layers) that \
no image needs; it can be fetched again.",
    after_help = "Examples:\n  banger image cache prune"
)]
pub struct CachePruneArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

fn print_image(output: JsonFlag, image: &ImageInfo) -> Result<(), CliError> {
    render::data(output.json, image, |image| {
        render::detail::image(image, jiff::Timestamp::now())
    })
}

/// `image list`.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    if args.catalog {
        let entries = daemon.ask::<ImageCatalog>(&Empty {}).await?;
        return render::data(args.output.json, &entries, |e| render::table::catalog(e));
    }
    let images = daemon.ask::<ImageList>(&Empty {}).await?;
    if !args.output.json && images.is_empty() {
        render::note("no images yet; `banger image list --catalog` shows what can be pulled");
        return Ok(());
    }
    render::data(args.output.json, &images, |images| {
        render::table::images(images, jiff::Timestamp::now())
    })
}

/// `image show`.
pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let image = daemon
        .ask::<ImageShow>(&NameRef { name: args.name })
        .await?;
    print_image(args.output, &image)
}

/// `image pull`.
pub async fn pull(ctx: &Ctx, args: PullArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let image = daemon
        .call_with_progress::<ImagePull>(&ctx.term, &NameRef { name: args.name })
        .await?;
    print_image(args.output, &image)
}

/// `image import`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = ImageImportParams {
        reference: args.reference,
        name: args.name,
    };
    let image = daemon
        .call_with_progress::<ImageImport>(&ctx.term, &params)
        .await?;
    print_image(args.output, &image)
}

/// `image register`.
pub async fn register(ctx: &Ctx, args: RegisterArgs) -> Result<(), CliError> {
    let rootfs = connect::absolute(&args.rootfs)?;
    let mut daemon = ctx.connect().await?;
    let params = ImageRegisterParams {
        name: args.name,
        rootfs: rootfs.display().to_string(),
        kernel: args.kernel,
    };
    let image = daemon.ask::<ImageRegister>(&params).await?;
    print_image(args.output, &image)
}

/// `image promote`.
pub async fn promote(ctx: &Ctx, args: PromoteArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = ImagePromoteParams {
        vm: args.vm.vm,
        name: args.name,
    };
    let image = daemon
        .call_with_progress::<ImagePromote>(&ctx.term, &params)
        .await?;
    print_image(args.output, &image)
}

/// `image delete`.
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let image = daemon
        .ask::<ImageDelete>(&NameRef { name: args.name })
        .await?;
    render::stdout(&format!("deleted image {}\n", image.name))
}

/// `image cache prune`.
pub async fn cache_prune(ctx: &Ctx, args: CachePruneArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let pruned = daemon.ask::<ImageCachePrune>(&Empty {}).await?;
    render::data(args.output.json, &pruned, |pruned| {
        format!(
            "removed {} cache entr{}, freed {}\n",
            pruned.removed.len(),
            if pruned.removed.len() == 1 {
                "y"
            } else {
                "ies"
            },
            render::bytes(pruned.freed_bytes)
        )
    })
}
