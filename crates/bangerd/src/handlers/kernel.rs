//! Kernel methods: the built-in catalog, local kernel records, and pulls (Debian's cloud
//! kernel package unpacked, `vmlinux` extracted, initramfs built) as long operations;
//! deletion is refused while an image or a VM names the kernel.

use std::sync::Arc;

use banger_api::methods::{Empty, NameRef};
use banger_api::types::{CatalogEntry, KernelInfo};
use banger_api::{ApiError, ErrorCode};
use banger_model::VmRecord;
use banger_store::{ImageRecord, KernelRecord};

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::ops::run_op;

fn kernel_info(record: &KernelRecord, users: &Users) -> KernelInfo {
    let size = |path: &str| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    KernelInfo {
        name: record.name.clone(),
        version: record.version.clone(),
        vmlinux: record.vmlinux.clone(),
        initramfs: record.initramfs.clone(),
        created_at: record.created_at.clone(),
        size_bytes: size(&record.vmlinux) + size(&record.initramfs),
        used_by: users.of(&record.name),
    }
}

/// Who names kernels: images (their default kernel) and VMs.
struct Users {
    images: Vec<ImageRecord>,
    vms: Vec<VmRecord>,
}

impl Users {
    fn of(&self, kernel: &str) -> Vec<String> {
        let images = self
            .images
            .iter()
            .filter(|i| i.kernel == kernel)
            .map(|i| format!("image {}", i.name));
        let vms = self
            .vms
            .iter()
            .filter(|vm| vm.kernel == kernel)
            .map(|vm| format!("VM {}", vm.name));
        images.chain(vms).collect()
    }
}

async fn records(ctx: &Arc<DaemonContext>) -> Result<(Vec<KernelRecord>, Users), ApiError> {
    ctx.with_store(|store| {
        let kernels = store
            .list_kernels()
            .map_err(|e| errors::internal("cannot list kernels", &e))?;
        let images = store
            .list_images()
            .map_err(|e| errors::internal("cannot list images", &e))?;
        let vms = store
            .list_vms()
            .map_err(|e| errors::internal("cannot list VMs", &e))?;
        Ok((kernels, Users { images, vms }))
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
    let (local, _) = records(ctx).await?;
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
    let (kernels, users) = records(ctx).await?;
    Ok(kernels.iter().map(|k| kernel_info(k, &users)).collect())
}

pub async fn show(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<KernelInfo, ApiError> {
    let (kernels, users) = records(ctx).await?;
    kernels
        .iter()
        .find(|r| r.name == params.name)
        .map(|k| kernel_info(k, &users))
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
    let info = ctx
        .with_store(move |store| {
            let record = store
                .get_kernel(&name)
                .map_err(|e| errors::internal("cannot read the kernel record", &e))?
                .ok_or_else(|| unknown(&name))?;
            let users = Users {
                images: store
                    .list_images()
                    .map_err(|e| errors::internal("cannot list images", &e))?,
                vms: store
                    .list_vms()
                    .map_err(|e| errors::internal("cannot list VMs", &e))?,
            };
            let info = kernel_info(&record, &users);
            if !info.used_by.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("kernel {name:?} is used by {}", info.used_by.join(", ")),
                )
                .with_hint("delete those VMs and images first, or keep the kernel"));
            }
            store
                .delete_kernel(&name)
                .map_err(|e| errors::internal("cannot delete the kernel", &e))?;
            Ok(info)
        })
        .await?;
    // The kernel's files live in one directory of the cache; `image cache prune` would
    // remove it too, since no record names it any more.
    if let Some(dir) = std::path::Path::new(&info.vmlinux).parent()
        && dir.starts_with(ctx.dirs.cache.join("kernels"))
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(info)
}
