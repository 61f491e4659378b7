//! Image methods: the built-in catalog, local image records, and pulls (builds from
//! Debian packages or bundle downloads) run as long operations. OCI import, register,
//! promote and cache pruning belong to the image-management feature and answer
//! `not_yet_available` until it lands.

use std::sync::Arc;

use banger_api::methods::{
    CachePruneOutput, Empty, ImageImportParams, ImagePromoteParams, ImageRegisterParams, NameRef,
};
use banger_api::types::{CatalogEntry, ImageInfo, ImageSource};
use banger_api::{ApiError, ErrorCode};
use banger_image::ImageRecipe;
use banger_store::ImageRecord;

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::ops::run_op;

fn image_info(record: &ImageRecord) -> ImageInfo {
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
    }
}

async fn records(ctx: &Arc<DaemonContext>) -> Result<Vec<ImageRecord>, ApiError> {
    ctx.with_store(|store| {
        store
            .list_images()
            .map_err(|e| errors::internal("cannot list images", &e))
    })
    .await
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no local image named {name:?}"))
        .with_hint("`banger image list --catalog` shows what `banger image pull` can fetch")
}

pub async fn list(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<ImageInfo>, ApiError> {
    Ok(records(ctx).await?.iter().map(image_info).collect())
}

pub async fn catalog(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<CatalogEntry>, ApiError> {
    let local = records(ctx).await?;
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
    records(ctx)
        .await?
        .iter()
        .find(|r| r.name == params.name)
        .map(image_info)
        .ok_or_else(|| unknown(&params.name))
}

pub async fn pull(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    if ctx.services.images.catalog().image(&params.name).is_none() {
        return Err(ApiError::not_found(format!(
            "no image named {:?} in the catalog",
            params.name
        ))
        .with_hint("`banger image list --catalog` lists the catalog"));
    }
    let vms = ctx.services.vms.clone();
    let name = params.name.clone();
    run_op(
        &ctx.ops,
        "image.pull",
        &params.name,
        events,
        move |progress| async move {
            vms.ensure_image(&name, progress.as_ref())
                .await
                .map_err(|e| ApiError::operation_failed(banger_vm::chain(&e)))
        },
    )
    .await?;
    show(ctx, params, events).await
}

pub async fn import(
    _ctx: &Arc<DaemonContext>,
    _params: ImageImportParams,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    Err(ApiError::not_yet_available(
        "OCI image import (image import)",
    ))
}

pub async fn register(
    _ctx: &Arc<DaemonContext>,
    _params: ImageRegisterParams,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    Err(ApiError::not_yet_available(
        "image registration (image register)",
    ))
}

pub async fn promote(
    _ctx: &Arc<DaemonContext>,
    _params: ImagePromoteParams,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    Err(ApiError::not_yet_available(
        "image promotion (image promote)",
    ))
}

pub async fn delete(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<ImageInfo, ApiError> {
    let name = params.name.clone();
    let record = ctx
        .with_store(move |store| {
            let record = store
                .get_image(&name)
                .map_err(|e| errors::internal("cannot read the image record", &e))?
                .ok_or_else(|| unknown(&name))?;
            store
                .delete_image(&name)
                .map_err(|e| errors::internal("cannot delete the image", &e))?;
            Ok(record)
        })
        .await?;
    // VM disks are copies, so removing the image file never breaks a VM.
    if let Err(e) = std::fs::remove_file(&record.path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(ApiError::new(
            ErrorCode::OperationFailed,
            format!("cannot remove {}: {e}", record.path),
        ));
    }
    Ok(image_info(&record))
}

pub async fn cache_prune(
    _ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<CachePruneOutput, ApiError> {
    Err(ApiError::not_yet_available(
        "image cache (image cache prune)",
    ))
}
