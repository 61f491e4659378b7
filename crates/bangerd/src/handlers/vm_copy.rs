//! `vm.copy_in`, `vm.copy_out` and `vm.stat`: the daemon's side of `vm cp`. The CLI packs
//! and unpacks the host side (the user's files, in the user's working directory); here
//! the guest's side is resolved with the agent (`stat` of the destination and its
//! parent, then `docker cp`'s rules from `banger_model::copy`) and the tar stream is
//! passed between the request's input or output and the agent.

use std::path::Path;
use std::sync::Arc;

use banger_api::methods::{
    CopyOutput, CopySourceKind, PathInfo, VmCopyInParams, VmCopyOutParams, VmPathParams,
};
use banger_api::{ApiError, Event, OutputStream};
use banger_model::copy::{CopySource, PathKind, copy_target, parent_of};

use crate::context::DaemonContext;
use crate::events::EventSink;
use crate::handlers::vm::vm_error;

pub async fn copy_in(
    ctx: &Arc<DaemonContext>,
    params: VmCopyInParams,
    events: &EventSink,
) -> Result<CopyOutput, ApiError> {
    let vms = &ctx.services.vms;
    let dst = Path::new(&params.dst);
    let kind = |found: Option<banger_proto::agent::PathKind>| found.map(model_kind);
    let dst_kind = kind(vms.stat(&params.vm, &params.dst).await.map_err(vm_error)?);
    let parent = parent_of(dst);
    let parent_kind = match dst_kind {
        Some(_) => None,
        None => kind(
            vms.stat(&params.vm, &parent.to_string_lossy())
                .await
                .map_err(vm_error)?,
        ),
    };
    let source = match params.source {
        CopySourceKind::File => CopySource::File,
        CopySourceKind::Directory => CopySource::Directory,
        CopySourceKind::Contents => CopySource::Contents,
        CopySourceKind::Stream => CopySource::Stream,
    };
    let target = copy_target(dst, dst_kind, parent_kind, source).map_err(|error| {
        ApiError::bad_request(format!("in the guest: {error}"))
            .with_hint("the parent of a new guest path must exist; `banger vm exec VM -- mkdir -p DIR` makes one")
    })?;
    let dir = target.dir.to_string_lossy().into_owned();
    let rename = target
        .rename
        .map(|name| name.to_string_lossy().into_owned());
    let landed = match &rename {
        Some(name) => format!("{}/{name}", dir.trim_end_matches('/')),
        None => dir.clone(),
    };
    let count = vms
        .receive_tar(
            &params.vm,
            &dir,
            rename.as_deref(),
            target.create,
            events.take_input(),
        )
        .await
        .map_err(vm_error)?;
    Ok(CopyOutput {
        entries: count.entries,
        bytes: count.bytes,
        path: landed,
    })
}

pub async fn copy_out(
    ctx: &Arc<DaemonContext>,
    params: VmCopyOutParams,
    events: &EventSink,
) -> Result<CopyOutput, ApiError> {
    let sink = events.clone();
    let count = ctx
        .services
        .vms
        .send_tar(&params.vm, &params.src, params.contents, move |data| {
            sink.emit(Event::Output {
                stream: OutputStream::Stdout,
                data: data.to_vec(),
            });
        })
        .await
        .map_err(vm_error)?;
    Ok(CopyOutput {
        entries: count.entries,
        bytes: count.bytes,
        path: params.src,
    })
}

pub async fn stat(
    ctx: &Arc<DaemonContext>,
    params: VmPathParams,
    _events: &EventSink,
) -> Result<PathInfo, ApiError> {
    let found = ctx
        .services
        .vms
        .stat(&params.vm, &params.path)
        .await
        .map_err(vm_error)?;
    Ok(PathInfo {
        kind: found.map(|kind| {
            match model_kind(kind) {
                PathKind::Directory => "directory",
                PathKind::File => "file",
                PathKind::Other => "other",
            }
            .to_string()
        }),
    })
}

fn model_kind(kind: banger_proto::agent::PathKind) -> PathKind {
    match kind {
        banger_proto::agent::PathKind::Directory => PathKind::Directory,
        banger_proto::agent::PathKind::File => PathKind::File,
        banger_proto::agent::PathKind::Other => PathKind::Other,
    }
}
