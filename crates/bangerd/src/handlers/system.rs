//! Daemon-level methods: `ping`, `health` and `complete.names`.

use std::sync::Arc;

use banger_api::methods::{CompleteKind, CompleteParams, Empty};
use banger_api::types::{Health, Pong, StoreStatus};
use banger_api::{ApiError, PROTOCOL_VERSION};

use crate::context::DaemonContext;
use crate::errors;
use crate::events::EventSink;
use crate::handlers::host_probe;

pub async fn ping(
    _ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Pong, ApiError> {
    Ok(Pong {
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
    })
}

/// Reports the daemon, its store and the host's drivers. A broken store is reported in
/// the answer rather than failing the call: `health` is what a user runs to find out.
pub async fn health(
    ctx: &Arc<DaemonContext>,
    _params: Empty,
    _events: &EventSink,
) -> Result<Health, ApiError> {
    let path = ctx.database_path().display().to_string();
    let store_state = ctx
        .with_store(|store| {
            let version = store
                .schema_version()
                .map_err(|e| errors::internal("cannot read the schema version", &e))?;
            let vms = store
                .count_vms_by_state()
                .map_err(|e| errors::internal("cannot count VMs", &e))?;
            Ok((version, vms))
        })
        .await;
    let (store, vms) = match store_state {
        Ok((schema_version, vms)) => (
            StoreStatus {
                ok: true,
                path,
                schema_version,
                error: None,
            },
            vms,
        ),
        Err(error) => (
            StoreStatus {
                ok: false,
                path,
                schema_version: 0,
                error: Some(error.message),
            },
            Vec::new(),
        ),
    };
    let accelerator = host_probe::detect_accelerator();
    let drivers = host_probe::probe_drivers(ctx.runner.as_ref(), accelerator).await;
    Ok(Health {
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        uptime_secs: ctx.started_at.elapsed().as_secs(),
        store,
        drivers,
        accelerator: accelerator.as_str().to_string(),
        vms,
    })
}

/// Names for shell completion, sorted and without duplicates.
pub async fn complete_names(
    ctx: &Arc<DaemonContext>,
    params: CompleteParams,
    _events: &EventSink,
) -> Result<Vec<String>, ApiError> {
    let kind = params.kind;
    let mut names: Vec<String> = ctx
        .with_store(move |store| {
            let names = match kind {
                CompleteKind::Vm => store
                    .list_vms()
                    .map_err(|e| errors::internal("cannot list VMs", &e))?
                    .into_iter()
                    .map(|vm| vm.name.to_string())
                    .collect(),
                CompleteKind::Image => store
                    .list_images()
                    .map_err(|e| errors::internal("cannot list images", &e))?
                    .into_iter()
                    .map(|image| image.name.to_string())
                    .collect(),
                CompleteKind::Kernel => store
                    .list_kernels()
                    .map_err(|e| errors::internal("cannot list kernels", &e))?
                    .into_iter()
                    .map(|kernel| kernel.name.to_string())
                    .collect(),
            };
            Ok(names)
        })
        .await?;
    // The daemon's catalog: the built-in entries plus the user's catalog.json.
    let catalog = ctx.services.images.catalog();
    match kind {
        CompleteKind::Vm => {}
        CompleteKind::Image => names.extend(catalog.images.iter().map(|e| e.name.clone())),
        CompleteKind::Kernel => names.extend(catalog.kernels.iter().map(|e| e.name.clone())),
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}
