//! Kernel methods: the built-in catalog, local kernel records, and pulls (Debian's cloud
//! kernel package unpacked, `vmlinux` extracted, initramfs built) as long operations.

use std::sync::Arc;

use banger_api::ApiError;
use banger_api::methods::{Empty, NameRef};
use banger_api::types::{CatalogEntry, KernelInfo};
use banger_store::KernelRecord;

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::ops::run_op;

fn kernel_info(record: &KernelRecord) -> KernelInfo {
    KernelInfo {
        name: record.name.clone(),
        version: record.version.clone(),
        vmlinux: record.vmlinux.clone(),
        initramfs: record.initramfs.clone(),
        created_at: record.created_at.clone(),
    }
}

async fn records(ctx: &Arc<DaemonContext>) -> Result<Vec<KernelRecord>, ApiError> {
    ctx.with_store(|store| {
        store
            .list_kernels()
            .map_err(|e| errors::internal("cannot list kernels", &e))
    })
    .await
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no local kernel named {name:?}"))
        .with_hint("`banger kernel catalog` shows what `banger kernel pull` can fetch")
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
        .kernels
        .iter()
        .map(|entry| CatalogEntry {
            name: entry.name.clone(),
            description: entry.description.clone(),
            kind: "build".into(),
            pulled: local.iter().any(|r| r.name == entry.name),
            default: entry.name == banger_model::catalog::DEFAULT_KERNEL,
        })
        .collect())
}

pub async fn list(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<KernelInfo>, ApiError> {
    Ok(records(ctx).await?.iter().map(kernel_info).collect())
}

pub async fn show(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<KernelInfo, ApiError> {
    records(ctx)
        .await?
        .iter()
        .find(|r| r.name == params.name)
        .map(kernel_info)
        .ok_or_else(|| unknown(&params.name))
}

pub async fn pull(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    events: &EventSink,
) -> Result<KernelInfo, ApiError> {
    if ctx.services.images.catalog().kernel(&params.name).is_none() {
        return Err(ApiError::not_found(format!(
            "no kernel named {:?} in the catalog",
            params.name
        ))
        .with_hint("`banger kernel catalog` lists the catalog"));
    }
    let vms = ctx.services.vms.clone();
    let name = params.name.clone();
    run_op(
        &ctx.ops,
        "kernel.pull",
        &params.name,
        events,
        move |progress| async move {
            vms.ensure_kernel(&name, progress.as_ref())
                .await
                .map_err(|e| ApiError::operation_failed(banger_vm::chain(&e)))
        },
    )
    .await?;
    show(ctx, params, events).await
}

pub async fn delete(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<KernelInfo, ApiError> {
    let name = params.name.clone();
    let record = ctx
        .with_store(move |store| {
            let record = store
                .get_kernel(&name)
                .map_err(|e| errors::internal("cannot read the kernel record", &e))?
                .ok_or_else(|| unknown(&name))?;
            store
                .delete_kernel(&name)
                .map_err(|e| errors::internal("cannot delete the kernel", &e))?;
            Ok(record)
        })
        .await?;
    Ok(kernel_info(&record))
}
