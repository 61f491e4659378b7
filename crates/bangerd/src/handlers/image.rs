//! Image methods: the catalog, local image records, and the long operations that make
//! images: catalog pulls (builds from Debian packages or bundle downloads), OCI imports,
//! registration of an ext4 file, promotion of a stopped VM's disk; deletion (refused
//! while a VM names the image) and cache pruning.
//!
//! Every operation does its work (downloads, unpacking, mkfs, copies) outside any lock;
//! the image becomes visible through one store write at the end (`insert_image`), which
//! also settles a race for the name.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::methods::{
    CachePruneOutput, CachePruneParams, Empty, ImageImportParams, ImagePromoteParams,
    ImagePullParams, ImageRegisterParams, ImageWarmOutput, ImageWarmParams, NameRef,
};
use banger_api::types::{CatalogEntry, ImageInfo, ImageSource};
use banger_api::{ApiError, ErrorCode};
use banger_image::{ImageArtifact, ImageRecipe, LocalSource};
use banger_model::{ResourceName, VmRecord, VmState};
use banger_store::ImageRecord;

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::ops::run_op;

fn image_info(record: &ImageRecord, vms: &[VmRecord]) -> ImageInfo {
    use std::os::unix::fs::MetadataExt;
    ImageInfo {
        name: record.name.clone(),
        source: match record.source.as_str() {
            "oci" => ImageSource::Oci,
            "registered" => ImageSource::Registered,
            "promoted" => ImageSource::Promoted,
            _ => ImageSource::Catalog,
        },
        digest: record.digest.clone(),
        size_bytes: record.size_bytes,
        path: record.path.clone(),
        kernel: record.kernel.clone(),
        created_at: record.created_at.clone(),
        disk_bytes: std::fs::metadata(&record.path)
            .map(|m| m.blocks() * 512)
            .unwrap_or(0),
        origin: record.origin.clone(),
        init: record.init.clone(),
        used_by: users_of(vms, &record.name),
        updated: None,
    }
}

fn users_of(vms: &[VmRecord], image: &str) -> Vec<String> {
    vms.iter()
        .filter(|vm| vm.image == image)
        .map(|vm| vm.name.to_string())
        .collect()
}

async fn records(ctx: &Arc<DaemonContext>) -> Result<(Vec<ImageRecord>, Vec<VmRecord>), ApiError> {
    ctx.with_store(|store| {
        let images = store
            .list_images()
            .map_err(|e| errors::internal("cannot list images", &e))?;
        let vms = store
            .list_vms()
            .map_err(|e| errors::internal("cannot list VMs", &e))?;
        Ok((images, vms))
    })
    .await
}

async fn info_of(ctx: &Arc<DaemonContext>, name: &str) -> Result<ImageInfo, ApiError> {
    let (images, vms) = records(ctx).await?;
    images
        .iter()
        .find(|r| r.name == name)
        .map(|r| image_info(r, &vms))
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no local image named {name:?}"))
        .with_hint("`banger image list --catalog` shows what `banger image pull` can fetch")
}

fn image_error(error: &banger_image::ImageError) -> ApiError {
    ApiError::operation_failed(errors::chain(error))
}

/// A name for a new image: valid, and not one the catalog uses (a catalog pull would
/// otherwise replace it, or it would hide the catalog entry).
fn new_image_name(ctx: &DaemonContext, name: &str) -> Result<(), ApiError> {
    ResourceName::parse_as("image name", name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if ctx.services.images.catalog().image(name).is_some() {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("{name:?} is the name of a catalog image"),
        )
        .with_hint("choose another name with --name"));
    }
    Ok(())
}

/// Records a new image; the name may have been taken while the work ran.
async fn record_new(ctx: &Arc<DaemonContext>, record: ImageRecord) -> Result<(), ApiError> {
    let name = record.name.clone();
    let inserted = ctx
        .with_store(move |store| {
            store
                .insert_image(&record)
                .map_err(|e| errors::internal("cannot record the image", &e))
        })
        .await?;
    if inserted { Ok(()) } else { Err(taken(&name)) }
}

fn taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AlreadyExists,
        format!("an image named {name:?} already exists"),
    )
    .with_hint(format!(
        "choose another name, or `banger image delete {name}` first"
    ))
}

fn record_for(
    artifact: &ImageArtifact,
    source: &str,
    origin: String,
    layers: Vec<String>,
) -> ImageRecord {
    ImageRecord {
        name: artifact.name.clone(),
        source: source.to_string(),
        digest: artifact.digest.clone(),
        path: artifact.path.display().to_string(),
        size_bytes: artifact.size_bytes,
        kernel: artifact.kernel.clone(),
        init: banger_vm::init_name(artifact.init).to_string(),
        created_at: jiff::Timestamp::now().to_string(),
        origin,
        layers,
    }
}

pub async fn list(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<ImageInfo>, ApiError> {
    let (images, vms) = records(ctx).await?;
    Ok(images.iter().map(|r| image_info(r, &vms)).collect())
}

pub async fn catalog(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<CatalogEntry>, ApiError> {
    let (local, _) = records(ctx).await?;
    Ok(ctx
        .services
        .images
        .catalog()
        .images
        .iter()
        .map(|entry| CatalogEntry {
            name: entry.name.clone(),
            description: entry.description.clone(),
            kind: match entry.recipe {
                ImageRecipe::Bundle { .. } => "bundle".into(),
                _ => "build".into(),
            },
            pulled: local.iter().any(|r| r.name == entry.name),
            default: entry.name == banger_model::catalog::DEFAULT_IMAGE,
        })
        .collect())
}

pub async fn show(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    info_of(ctx, &params.name).await
}

pub async fn pull(
    ctx: &Arc<DaemonContext>,
    params: ImagePullParams,
    events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    if ctx.services.images.catalog().image(&params.name).is_none() {
        return Err(ApiError::not_found(format!(
            "no image named {:?} in the catalog",
            params.name
        ))
        .with_hint("`banger image list --catalog` lists the catalog; `banger image import` takes OCI images"));
    }
    let vms = ctx.services.vms.clone();
    let (name, force) = (params.name.clone(), params.force);
    let changed = run_op(
        &ctx.ops,
        "image.pull",
        &params.name,
        events,
        move |progress| async move {
            let (_, changed) = vms
                .pull_catalog_image(&name, force, progress.as_ref())
                .await
                .map_err(|e| ApiError::operation_failed(banger_vm::chain(&e)))?;
            if !changed {
                use banger_model::progress::ProgressSink as _;
                progress.stage_done("up to date", Some("nothing changed; --force rebuilds"));
            }
            Ok(changed)
        },
    )
    .await?;
    let mut info = info_of(ctx, &params.name).await?;
    info.updated = Some(changed);
    Ok(info)
}

pub async fn import(
    ctx: &Arc<DaemonContext>,
    params: ImageImportParams,
    events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    let reference = banger_image::oci::reference::Reference::parse(&params.reference)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", params.reference)))?;
    let name = params
        .name
        .clone()
        .unwrap_or_else(|| reference.suggested_name());
    new_image_name(ctx, &name)?;
    // Only an earlier import may be replaced by an import of the same name (a tag that
    // moved); anything else keeps its name.
    let lookup = name.clone();
    let existing = ctx
        .with_store(move |store| {
            store
                .get_image(&lookup)
                .map_err(|e| errors::internal("cannot read the image record", &e))
        })
        .await?;
    if let Some(existing) = &existing
        && existing.source != "oci"
    {
        return Err(taken(&name));
    }
    let images = Arc::clone(&ctx.services.images);
    let (op_name, text, force) = (name.clone(), params.reference.clone(), params.force);
    let outcome = run_op(
        &ctx.ops,
        "image.import",
        &name,
        events,
        move |progress| async move {
            images
                .import_oci(&text, &op_name, force, progress.as_ref())
                .await
                .map_err(|e| image_error(&e))
        },
    )
    .await?;
    let record = record_for(
        &outcome.artifact,
        "oci",
        outcome.resolved.clone(),
        outcome.layers.clone(),
    );
    let unchanged = existing
        .as_ref()
        .is_some_and(|old| old.digest == record.digest && old.path == record.path);
    if !unchanged {
        match existing {
            // Same name, new content (the tag moved): replace the record.
            Some(_) => {
                let replacement = record.clone();
                ctx.with_store(move |store| {
                    store
                        .upsert_image(&replacement)
                        .map_err(|e| errors::internal("cannot record the image", &e))
                })
                .await?
            }
            None => record_new(ctx, record).await?,
        }
    }
    let mut info = info_of(ctx, &name).await?;
    info.updated = Some(!unchanged);
    Ok(info)
}

/// The kernel a new image boots with: given (and known), or the default.
async fn kernel_for(ctx: &Arc<DaemonContext>, kernel: Option<String>) -> Result<String, ApiError> {
    let Some(kernel) = kernel else {
        return Ok(banger_model::catalog::DEFAULT_KERNEL.to_string());
    };
    if ctx.services.images.catalog().kernel(&kernel).is_some() {
        return Ok(kernel);
    }
    let lookup = kernel.clone();
    let local = ctx
        .with_store(move |store| {
            store
                .get_kernel(&lookup)
                .map_err(|e| errors::internal("cannot read the kernel record", &e))
        })
        .await?;
    match local {
        Some(_) => Ok(kernel),
        None => Err(ApiError::not_found(format!("no kernel named {kernel:?}"))
            .with_hint("`banger kernel catalog` lists the kernels banger can pull")),
    }
}

pub async fn register(
    ctx: &Arc<DaemonContext>,
    params: ImageRegisterParams,
    events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    new_image_name(ctx, &params.name)?;
    let rootfs = PathBuf::from(&params.rootfs);
    if !rootfs.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "{}: the rootfs path must be absolute",
            params.rootfs
        )));
    }
    if !rootfs.is_file() {
        return Err(ApiError::not_found(format!(
            "{}: no such file",
            params.rootfs
        )));
    }
    let kernel = kernel_for(ctx, params.kernel.clone()).await?;
    ensure_name_free(ctx, &params.name).await?;
    let images = Arc::clone(&ctx.services.images);
    let name = params.name.clone();
    let source = rootfs.clone();
    let artifact = run_op(
        &ctx.ops,
        "image.register",
        &params.name,
        events,
        move |progress| async move {
            images
                .publish_local(
                    &source,
                    &name,
                    &kernel,
                    LocalSource::Register,
                    None,
                    progress.as_ref(),
                )
                .await
                .map_err(|e| image_error(&e))
        },
    )
    .await?;
    let record = record_for(
        &artifact,
        "registered",
        rootfs.display().to_string(),
        Vec::new(),
    );
    record_new(ctx, record).await?;
    let mut info = info_of(ctx, &params.name).await?;
    info.updated = Some(true);
    Ok(info)
}

async fn ensure_name_free(ctx: &Arc<DaemonContext>, name: &str) -> Result<(), ApiError> {
    let lookup = name.to_string();
    let exists = ctx
        .with_store(move |store| {
            store
                .get_image(&lookup)
                .map_err(|e| errors::internal("cannot read the image record", &e))
        })
        .await?
        .is_some();
    if exists { Err(taken(name)) } else { Ok(()) }
}

pub async fn promote(
    ctx: &Arc<DaemonContext>,
    params: ImagePromoteParams,
    events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    new_image_name(ctx, &params.name)?;
    ensure_name_free(ctx, &params.name).await?;
    let vm = ctx.services.vms.find(&params.vm).map_err(|e| {
        ApiError::not_found(banger_vm::chain(&e))
            .with_hint("`banger vm list` shows the VMs that exist")
    })?;
    if !matches!(vm.state, VmState::Stopped) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "VM {} is {}; only a stopped VM's disk can become an image",
                vm.name,
                vm.state.as_str()
            ),
        )
        .with_hint(format!("`banger vm stop {}` first", vm.name)));
    }
    let source_image = vm.image.clone();
    let lookup = source_image.clone();
    let init = ctx
        .with_store(move |store| {
            store
                .get_image(&lookup)
                .map_err(|e| errors::internal("cannot read the image record", &e))
        })
        .await?
        .map(|record| banger_vm::artifact_of(record).init);
    let disk = banger_vm::layout::VmPaths::new(&ctx.dirs, vm.id.as_str()).root_disk;
    let images = Arc::clone(&ctx.services.images);
    let (name, kernel) = (params.name.clone(), vm.kernel.clone());
    let artifact = run_op(
        &ctx.ops,
        "image.promote",
        &params.name,
        events,
        move |progress| async move {
            images
                .publish_local(
                    &disk,
                    &name,
                    &kernel,
                    LocalSource::Promote,
                    init,
                    progress.as_ref(),
                )
                .await
                .map_err(|e| image_error(&e))
        },
    )
    .await?;
    let record = record_for(
        &artifact,
        "promoted",
        format!("vm {} (from image {source_image})", vm.name),
        Vec::new(),
    );
    record_new(ctx, record).await?;
    let mut info = info_of(ctx, &params.name).await?;
    info.updated = Some(true);
    Ok(info)
}

pub async fn delete(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    let name = params.name.clone();
    let (record, info, shared) = ctx
        .with_store(move |store| {
            let record = store
                .get_image(&name)
                .map_err(|e| errors::internal("cannot read the image record", &e))?
                .ok_or_else(|| unknown(&name))?;
            let vms = store
                .list_vms()
                .map_err(|e| errors::internal("cannot list VMs", &e))?;
            let users = users_of(&vms, &name);
            if !users.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "image {name:?} is used by {}: {}",
                        plural(users.len(), "VM"),
                        users.join(", ")
                    ),
                )
                .with_hint(format!(
                    "delete them first: `banger vm delete {}`",
                    users.join(" ")
                )));
            }
            let info = image_info(&record, &vms);
            let shared = store
                .list_images()
                .map_err(|e| errors::internal("cannot list images", &e))?
                .iter()
                .any(|other| other.name != record.name && other.path == record.path);
            store
                .delete_image(&name)
                .map_err(|e| errors::internal("cannot delete the image", &e))?;
            Ok((record, info, shared))
        })
        .await?;
    // VM disks are copies, so removing the image file never breaks a VM; another record
    // with the same content keeps the file.
    if !shared {
        let path = PathBuf::from(&record.path);
        let stores = [
            ctx.services.images.catalog_store(),
            ctx.services.images.user_store(),
        ];
        let store = stores.iter().find(|s| path.starts_with(s.dir()));
        let removed = match store {
            Some(store) => store
                .remove_image_file(&path)
                .map_err(|e| errors::chain(&e)),
            None => std::fs::remove_file(&path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e.to_string())
                }
            }),
        };
        if let Err(message) = removed {
            return Err(ApiError::operation_failed(format!(
                "cannot remove {}: {message}",
                record.path
            )));
        }
    }
    let image = record.name.clone();
    let removed = ctx
        .services
        .vms
        .delete_templates(|t| t.image == image)
        .await;
    if !removed.is_empty() {
        tracing::info!(image = %record.name, templates = ?removed, "warm templates of the deleted image removed");
    }
    Ok(info)
}

pub async fn warm(
    ctx: &Arc<DaemonContext>,
    params: ImageWarmParams,
    _events: &EventSink,
) -> Result<ImageWarmOutput, ApiError> {
    let vms = &ctx.services.vms;
    let before = vms
        .list_snapshots()
        .map_err(crate::handlers::vm::vm_error)?;
    let changed = vms
        .set_image_warm(&params.image, !params.off)
        .await
        .map_err(crate::handlers::vm::vm_error)?;
    let after = vms
        .list_snapshots()
        .map_err(crate::handlers::vm::vm_error)?;
    let removed_templates = before
        .iter()
        .filter(|s| s.template_key.is_some() && !after.iter().any(|a| a.id == s.id))
        .map(|s| s.name.clone())
        .collect();
    Ok(ImageWarmOutput {
        image: params.image,
        warm: !params.off,
        changed,
        removed_templates,
    })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub async fn cache_prune(
    ctx: &Arc<DaemonContext>,
    params: CachePruneParams,
    _events: &EventSink,
) -> Result<CachePruneOutput, ApiError> {
    let (images, kernels) = ctx
        .with_store(|store| {
            let images = store
                .list_images()
                .map_err(|e| errors::internal("cannot list images", &e))?;
            let kernels = store
                .list_kernels()
                .map_err(|e| errors::internal("cannot list kernels", &e))?;
            Ok((images, kernels))
        })
        .await?;
    let keep = banger_image::prune::Keep {
        image_files: images.iter().map(|r| PathBuf::from(&r.path)).collect(),
        layers: images
            .iter()
            .flat_map(|r| r.layers.iter().cloned())
            .collect::<HashSet<_>>(),
        kernel_dirs: kernels
            .iter()
            .filter_map(|k| Path::new(&k.vmlinux).parent().map(Path::to_path_buf))
            .collect(),
    };
    let images = Arc::clone(&ctx.services.images);
    let dry_run = params.dry_run;
    let pruned = tokio::task::spawn_blocking(move || images.prune_cache(&keep, dry_run))
        .await
        .map_err(|e| ApiError::operation_failed(format!("the prune stopped: {e}")))?;
    let mut freed_bytes: u64 = pruned.iter().map(|p| p.bytes).sum();
    let mut removed: Vec<String> = pruned
        .iter()
        .map(|p| p.path.display().to_string())
        .collect();
    if !dry_run {
        // Warm templates of images that are gone, or made from inputs that changed.
        let vms = &ctx.services.vms;
        let before = vms.list_snapshots().unwrap_or_default();
        let templates = vms
            .prune_templates()
            .await
            .map_err(crate::handlers::vm::vm_error)?;
        for name in templates {
            if let Some(template) = before.iter().find(|s| s.name == name) {
                freed_bytes += template.size_bytes;
                removed.push(template.dir.clone());
            }
        }
    }
    Ok(CachePruneOutput {
        freed_bytes,
        removed,
        dry_run,
    })
}
