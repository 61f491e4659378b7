//! Warm-start methods: `vm.snapshot`, `vm.fork` (long operations with stages) and
//! `snapshot.list|show|delete`, on the VM service's `warm` part.

use std::sync::Arc;

use banger_api::ApiError;
use banger_api::methods::{Empty, NameRef, VmForkParams, VmSnapshotParams};
use banger_api::types::{SnapshotInfo, VmInfo};
use banger_store::SnapshotRecord;

use crate::context::DaemonContext;
use crate::events::EventSink;
use crate::handlers::vm::{vm_error, with_pid};
use crate::ops::run_op;

/// The protocol view of a snapshot record.
pub fn snapshot_info(record: &SnapshotRecord, running_forks: Vec<String>) -> SnapshotInfo {
    SnapshotInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        state: record.state.clone(),
        source_vm: record.source_name.clone(),
        image: record.image.clone(),
        kernel: record.kernel.clone(),
        vcpus: record.vcpus,
        memory_mib: record.memory_bytes >> 20,
        disk_mib: record.disk_bytes >> 20,
        driver: record.driver.clone(),
        size_bytes: record.size_bytes,
        dir: record.dir.clone(),
        running_forks,
        template_key: record.template_key.clone(),
        created_at: record.created_at.clone(),
    }
}

fn info(ctx: &DaemonContext, record: &SnapshotRecord) -> SnapshotInfo {
    let forks = ctx.services.vms.running_forks(record).unwrap_or_default();
    snapshot_info(record, forks)
}

fn not_found_hint(error: ApiError) -> ApiError {
    if error.code == banger_api::ErrorCode::NotFound {
        error.with_hint("`banger vm snapshot list` shows the snapshots that exist")
    } else {
        error
    }
}

pub async fn snapshot(
    ctx: &Arc<DaemonContext>,
    params: VmSnapshotParams,
    events: &EventSink,
) -> Result<SnapshotInfo, ApiError> {
    let vms = ctx.services.vms.clone();
    let target = params.vm.clone();
    let record = run_op(
        &ctx.ops,
        "vm.snapshot",
        &target,
        events,
        move |progress| async move {
            vms.snapshot(&params.vm, params.name, progress.as_ref())
                .await
                .map_err(vm_error)
        },
    )
    .await?;
    Ok(info(ctx, &record))
}

pub async fn fork(
    ctx: &Arc<DaemonContext>,
    params: VmForkParams,
    events: &EventSink,
) -> Result<Vec<VmInfo>, ApiError> {
    let vms = ctx.services.vms.clone();
    let target = params.source.clone();
    let request = banger_vm::ForkRequest {
        source: params.source,
        name: params.name,
        count: params.count.unwrap_or(1),
    };
    let records = run_op(
        &ctx.ops,
        "vm.fork",
        &target,
        events,
        move |progress| async move { vms.fork(request, progress.as_ref()).await.map_err(vm_error) },
    )
    .await?;
    Ok(records.iter().map(|record| with_pid(ctx, record)).collect())
}

pub async fn list(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Vec<SnapshotInfo>, ApiError> {
    let records = ctx.services.vms.list_snapshots().map_err(vm_error)?;
    Ok(records.iter().map(|record| info(ctx, record)).collect())
}

pub async fn show(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<SnapshotInfo, ApiError> {
    let record = ctx
        .services
        .vms
        .find_snapshot(&params.name)
        .map_err(|e| not_found_hint(vm_error(e)))?;
    Ok(info(ctx, &record))
}

pub async fn delete(
    ctx: &Arc<DaemonContext>,
    params: NameRef,
    _events: &EventSink,
) -> Result<SnapshotInfo, ApiError> {
    let record = ctx
        .services
        .vms
        .delete_snapshot(&params.name)
        .await
        .map_err(|e| not_found_hint(vm_error(e)))?;
    Ok(snapshot_info(&record, Vec::new()))
}
