//! `image list|show|pull|import|register|promote|delete` and `image cache prune`.

use std::path::PathBuf;

use banger_api::methods::{
    CachePruneParams, Empty, ImageCachePrune, ImageCatalog, ImageDelete, ImageImport,
    ImageImportParams, ImageList, ImagePromote, ImagePromoteParams, ImagePull, ImagePullParams,
    ImageRegister, ImageRegisterParams, ImageShow, ImageWarm, ImageWarmParams, NameRef,
};
use banger_api::types::ImageInfo;
use clap::Args;

use crate::candidates;
use crate::cli::{JsonFlag, VmArg};
use crate::connect::{self, Ctx};
use crate::errors::CliError;
use crate::render::records::image::{CachePruneJson, CatalogJson, ImageJson, WarmJson};
use crate::render::{self, records};

/// List local images, or the built-in catalog
#[derive(Debug, Args)]
#[command(
    long_about = "List the images on this host: name, where it came from (catalog, oci, \
registered, promoted), the kernel it boots, its size and what it uses on disk, when it was \
made, and the VMs created from it. With --catalog, list the catalog instead: what `image \
pull` can build or download, whether it is pulled already, and which image VMs use by \
default.",
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
    long_about = "Show one local image: where it came from (for an import, the exact \
reference and manifest digest), its kernel and init, its size and disk use, digest, the \
path of its root filesystem, and the VMs created from it.",
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
sha256. Each stage is shown as it runs, downloads with bytes and rate. An image that is \
already current is left as it is (say so, change nothing); --force rebuilds it. `banger \
image list --catalog` shows the choices.",
    after_help = "\
Examples:
  banger image pull debian-bookworm
  banger image pull tiny
  banger image pull tiny --force        Rebuild even though nothing changed"
)]
pub struct PullArgs {
    /// Catalog image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
    /// Rebuild even when the image is current
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Import an image from an OCI registry
#[derive(Debug, Args)]
#[command(
    long_about = "Pull an image from an OCI registry (HTTP API v2; Docker Hub names such as \
`python:3.12` work) and turn it into a bootable ext4 image. Manifest lists are resolved to \
linux/amd64; layers (gzip, zstd or plain) are checked against their digests and kept in a \
cache shared by all images, so a second image on the same base downloads only what is new. \
Whiteouts are applied; owners, modes, setuid bits, links and extended attributes are kept; \
device nodes are left out (and listed); an entry that would escape the image refuses the \
import. banger adds an init that needs no systemd (unless the image has systemd), and the \
guest agent and your ssh key are added per VM, as for every image, so `vm exec` and `vm \
ssh` work (ssh needs an sshd in the image).

Credentials for private registries come from your docker config (`~/.docker/config.json`, \
`auths`; credential helpers are not run). Registries on localhost may be plain HTTP. \
Without --name, the image is named after the repository and tag (`python:3.12` becomes \
`python-3.12`). Importing the same image again changes nothing unless --force.",
    after_help = "\
Examples:
  banger image import python:3.12
  banger image import localhost:5000/app:latest --name app
  banger vm run --image python-3.12 --rm -- python3 --version"
)]
pub struct ImportArgs {
    /// OCI reference, e.g. `registry/repo:tag` or `repo@sha256:...`
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Name of the new image (default: from the reference)
    #[arg(long, value_name = "NAME", value_parser = crate::values::image_name)]
    pub name: Option<String>,
    /// Import again even when the same image was imported before
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Register an ext4 file on this host as an image
#[derive(Debug, Args)]
#[command(
    long_about = "Register an existing ext4 root filesystem file as an image. The file is \
copied into banger's images (a reflink where the filesystem allows it, else a sparse copy) \
and the copy is checked with `e2fsck -n`; an unclean filesystem is refused. Images are \
never changed afterwards, so the original can be moved or edited freely. The guest's \
agent is started by systemd when the image has it; otherwise the image's own init must \
run `/usr/local/sbin/banger-agent` (banger's images do).",
    after_help = "Examples:\n  banger image register myimg --rootfs ./rootfs.ext4\n  banger image register myimg --rootfs ./rootfs.ext4 --kernel debian-6.1-cloud"
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
    long_about = "Save a stopped VM's disk as a new image, so new VMs start from what you \
set up in it. The disk is copied (the VM keeps its own), checked and repaired like a disk \
before boot, and loses the VM's ssh host keys, so every VM made from the image gets its \
own. The image boots with the VM's kernel.",
    after_help = "Examples:\n  banger vm stop web && banger image promote web web-golden\n  banger vm create --image web-golden"
)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub vm: VmArg,
    /// Name of the new image
    #[arg(value_name = "NAME", value_parser = crate::values::image_name)]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete a local image
#[derive(Debug, Args)]
#[command(
    long_about = "Delete a local image and its file. Refused while a VM's record names the \
image (the error lists them): delete those VMs first. Layers an imported image used stay \
in the cache until `image cache prune`.",
    after_help = "Examples:\n  banger image delete app"
)]
pub struct DeleteArgs {
    /// Image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
}

/// Keep warm templates for an image, so `vm run` and `vm create` restore instead of boot
#[derive(Debug, Args)]
#[command(
    long_about = "Keep warm templates for IMAGE: after the next cold boot of a VM of \
IMAGE, banger boots a hidden copy in the background, saves it once its agent answers \
(before any ssh host key exists where the image makes them on first use), and from then on \
`vm run` and `vm create` with the same image, kernel, vCPUs, memory, disk and NAT restore \
that saved guest (well under a second under TCG) and make it a machine of its own (clock, \
hostname, address, MAC, RNG, machine-id, host keys). The default image always has warm \
templates. A template is remade when any of its inputs change (image, kernel, agent, QEMU \
version, CPU model); `image cache prune` removes stale ones. `--cold` on `vm run`/`vm \
create` boots cold anyway; `BANGER_WARM_TEMPLATES=0` in the daemon's environment turns \
templates off. `--off` stops keeping them for IMAGE and deletes its templates.",
    after_help = "Examples:\n  banger image warm tiny\n  banger image warm tiny --off"
)]
pub struct WarmArgs {
    /// Image name
    #[arg(value_name = "IMAGE", add = candidates::image_names())]
    pub name: String,
    /// Stop keeping warm templates for IMAGE and delete them
    #[arg(long)]
    pub off: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Remove cached downloads and build inputs
#[derive(Debug, Args)]
#[command(
    long_about = "Remove what no image or kernel record needs: OCI layers no image was \
built from, image files no record points at (older catalog builds, an import cut short), \
kernel versions no kernel record uses, downloaded .deb packages, and leftovers of \
interrupted builds. All of it can be fetched or built again. Says how much it freed; \
--dry-run only lists it.",
    after_help = "Examples:\n  banger image cache prune --dry-run\n  banger image cache prune"
)]
pub struct CachePruneArgs {
    /// List what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

fn print_image(output: JsonFlag, image: &ImageInfo) -> Result<(), CliError> {
    records::print(output.json, image, ImageJson::from, |image| {
        render::detail::image(image, jiff::Timestamp::now())
    })
}

/// `image list`.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    if args.catalog {
        let entries = daemon.ask::<ImageCatalog>(&Empty {}).await?;
        return records::print(
            args.output.json,
            &entries,
            |e| records::all::<_, CatalogJson>(e),
            |e| render::table::catalog(e),
        );
    }
    let images = daemon.ask::<ImageList>(&Empty {}).await?;
    if !args.output.json && images.is_empty() {
        render::note("no images yet; `banger image list --catalog` shows what can be pulled");
        return Ok(());
    }
    records::print(
        args.output.json,
        &images,
        |i| records::all::<_, ImageJson>(i),
        |images| render::table::images(images, jiff::Timestamp::now()),
    )
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
    let params = ImagePullParams {
        name: args.name,
        force: args.force,
    };
    let image = daemon
        .call_with_progress::<ImagePull>(&ctx.term, &params)
        .await?;
    note_unchanged(&image, "pull");
    print_image(args.output, &image)
}

/// Says on stderr that a pull or import found the image current.
fn note_unchanged(image: &ImageInfo, verb: &str) {
    if image.updated == Some(false) {
        render::note(&format!(
            "image {} is already current; nothing changed (`banger image {verb} --force` rebuilds it)",
            image.name
        ));
    }
}

/// `image import`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = ImageImportParams {
        reference: args.reference,
        name: args.name,
        force: args.force,
    };
    let image = daemon
        .call_with_progress::<ImageImport>(&ctx.term, &params)
        .await?;
    note_unchanged(&image, "import");
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
    let image = daemon
        .call_with_progress::<ImageRegister>(&ctx.term, &params)
        .await?;
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

/// `image warm`.
pub async fn warm(ctx: &Ctx, args: WarmArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let out = daemon
        .ask::<ImageWarm>(&ImageWarmParams {
            image: args.name,
            off: args.off,
        })
        .await?;
    records::print(args.output.json, &out, WarmJson::from, |out| {
        let mut text = match (out.warm, out.changed) {
            (true, true) => format!(
                "image {} keeps warm templates now (made in the background after its next cold boot)\n",
                out.image
            ),
            (true, false) => format!("image {} already keeps warm templates\n", out.image),
            (false, true) => format!("image {} no longer keeps warm templates\n", out.image),
            (false, false) => format!("image {} did not keep warm templates\n", out.image),
        };
        for name in &out.removed_templates {
            text.push_str(&format!("deleted template {name}\n"));
        }
        text
    })
}

/// `image cache prune`.
pub async fn cache_prune(ctx: &Ctx, args: CachePruneArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = CachePruneParams {
        dry_run: args.dry_run,
    };
    let pruned = daemon.ask::<ImageCachePrune>(&params).await?;
    records::print(args.output.json, &pruned, CachePruneJson::from, |pruned| {
        let entries = if pruned.removed.len() == 1 {
            "entry"
        } else {
            "entries"
        };
        let mut text: String = pruned
            .removed
            .iter()
            .map(|path| format!("{path}\n"))
            .collect();
        if pruned.dry_run {
            text.push_str(&format!(
                "would remove {} cache {entries}, freeing {} (dry run: nothing removed)\n",
                pruned.removed.len(),
                render::bytes(pruned.freed_bytes)
            ));
        } else {
            text.push_str(&format!(
                "removed {} cache {entries}, freed {}\n",
                pruned.removed.len(),
                render::bytes(pruned.freed_bytes)
            ));
        }
        text
    })
}
