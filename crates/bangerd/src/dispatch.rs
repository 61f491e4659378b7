//! The one `match` from a method name to its handler. [`call`] decodes the method's typed
//! parameters, runs the handler and encodes its typed output, so a handler whose types do
//! not match its method in `banger_api::methods` does not compile.

use std::sync::Arc;

use banger_api::methods::{self as m, Method};
use banger_api::{ApiError, ErrorCode};
use serde_json::Value;

use crate::context::DaemonContext;
use crate::events::EventSink;
use crate::handlers::{image, kernel, snapshot, system, vm, vm_copy, workspace_export};

/// Runs the handler of `method` with raw JSON `params`.
pub async fn dispatch(
    ctx: &Arc<DaemonContext>,
    method: &str,
    params: Value,
    events: &EventSink,
) -> Result<Value, ApiError> {
    match method {
        m::Ping::NAME => call::<m::Ping>(ctx, params, events, system::ping).await,
        m::HealthCheck::NAME => call::<m::HealthCheck>(ctx, params, events, system::health).await,
        m::CompleteNames::NAME => {
            call::<m::CompleteNames>(ctx, params, events, system::complete_names).await
        }

        m::VmCreate::NAME => call::<m::VmCreate>(ctx, params, events, vm::create).await,
        m::VmStart::NAME => call::<m::VmStart>(ctx, params, events, vm::start).await,
        m::VmStop::NAME => call::<m::VmStop>(ctx, params, events, vm::stop).await,
        m::VmRestart::NAME => call::<m::VmRestart>(ctx, params, events, vm::restart).await,
        m::VmKill::NAME => call::<m::VmKill>(ctx, params, events, vm::kill).await,
        m::VmDelete::NAME => call::<m::VmDelete>(ctx, params, events, vm::delete).await,
        m::VmPrune::NAME => call::<m::VmPrune>(ctx, params, events, vm::prune).await,
        m::VmList::NAME => call::<m::VmList>(ctx, params, events, vm::list).await,
        m::VmShow::NAME => call::<m::VmShow>(ctx, params, events, vm::show).await,
        m::VmExec::NAME => call::<m::VmExec>(ctx, params, events, vm::exec).await,
        m::VmLogs::NAME => call::<m::VmLogs>(ctx, params, events, vm::logs).await,
        m::VmStatsGet::NAME => call::<m::VmStatsGet>(ctx, params, events, vm::stats).await,
        m::VmPorts::NAME => call::<m::VmPorts>(ctx, params, events, vm::ports).await,
        m::VmPortPublish::NAME => {
            call::<m::VmPortPublish>(ctx, params, events, vm::port_publish).await
        }
        m::VmPortUnpublish::NAME => {
            call::<m::VmPortUnpublish>(ctx, params, events, vm::port_unpublish).await
        }
        m::VmSet::NAME => call::<m::VmSet>(ctx, params, events, vm::set).await,
        m::VmPolicySet::NAME => call::<m::VmPolicySet>(ctx, params, events, vm::policy_set).await,
        m::VmPolicyShow::NAME => {
            call::<m::VmPolicyShow>(ctx, params, events, vm::policy_show).await
        }
        m::VmPolicyCheck::NAME => {
            call::<m::VmPolicyCheck>(ctx, params, events, vm::policy_check).await
        }
        m::VmSshTarget::NAME => call::<m::VmSshTarget>(ctx, params, events, vm::ssh_target).await,
        m::VmCopyIn::NAME => call::<m::VmCopyIn>(ctx, params, events, vm_copy::copy_in).await,
        m::VmCopyOut::NAME => call::<m::VmCopyOut>(ctx, params, events, vm_copy::copy_out).await,
        m::VmStat::NAME => call::<m::VmStat>(ctx, params, events, vm_copy::stat).await,
        m::VmSnapshot::NAME => call::<m::VmSnapshot>(ctx, params, events, snapshot::snapshot).await,
        m::VmFork::NAME => call::<m::VmFork>(ctx, params, events, snapshot::fork).await,
        m::SnapshotList::NAME => call::<m::SnapshotList>(ctx, params, events, snapshot::list).await,
        m::SnapshotShow::NAME => call::<m::SnapshotShow>(ctx, params, events, snapshot::show).await,
        m::SnapshotDelete::NAME => {
            call::<m::SnapshotDelete>(ctx, params, events, snapshot::delete).await
        }
        m::WorkspacePrepare::NAME => {
            call::<m::WorkspacePrepare>(ctx, params, events, vm::workspace_prepare).await
        }
        m::WorkspaceExport::NAME => {
            call::<m::WorkspaceExport>(ctx, params, events, workspace_export::export).await
        }
        m::WorkspaceApply::NAME => {
            call::<m::WorkspaceApply>(ctx, params, events, workspace_export::apply).await
        }

        m::ImageList::NAME => call::<m::ImageList>(ctx, params, events, image::list).await,
        m::ImageCatalog::NAME => call::<m::ImageCatalog>(ctx, params, events, image::catalog).await,
        m::ImageShow::NAME => call::<m::ImageShow>(ctx, params, events, image::show).await,
        m::ImagePull::NAME => call::<m::ImagePull>(ctx, params, events, image::pull).await,
        m::ImageImport::NAME => call::<m::ImageImport>(ctx, params, events, image::import).await,
        m::ImageRegister::NAME => {
            call::<m::ImageRegister>(ctx, params, events, image::register).await
        }
        m::ImagePromote::NAME => call::<m::ImagePromote>(ctx, params, events, image::promote).await,
        m::ImageDelete::NAME => call::<m::ImageDelete>(ctx, params, events, image::delete).await,
        m::ImageWarm::NAME => call::<m::ImageWarm>(ctx, params, events, image::warm).await,
        m::ImageCachePrune::NAME => {
            call::<m::ImageCachePrune>(ctx, params, events, image::cache_prune).await
        }

        m::KernelCatalog::NAME => {
            call::<m::KernelCatalog>(ctx, params, events, kernel::catalog).await
        }
        m::KernelList::NAME => call::<m::KernelList>(ctx, params, events, kernel::list).await,
        m::KernelShow::NAME => call::<m::KernelShow>(ctx, params, events, kernel::show).await,
        m::KernelPull::NAME => call::<m::KernelPull>(ctx, params, events, kernel::pull).await,
        m::KernelDelete::NAME => call::<m::KernelDelete>(ctx, params, events, kernel::delete).await,

        other => Err(ApiError::new(
            ErrorCode::UnknownMethod,
            format!("unknown method `{}`", shown_method(other)),
        )
        .with_hint("the banger CLI and bangerd may come from different builds")),
    }
}

/// How many characters of a method name errors and logs repeat.
pub const SHOWN_METHOD_CHARS: usize = 64;

/// `name` as errors and logs show it: at most [`SHOWN_METHOD_CHARS`] characters, with `…`
/// and the full length when cut, so a client's 1 MB name is not echoed back whole.
pub fn shown_method(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(SHOWN_METHOD_CHARS) {
        None => std::borrow::Cow::Borrowed(name),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &name[..cut], name.len()))
        }
    }
}

/// Decodes `M`'s parameters, runs `handler`, encodes its output.
async fn call<M: Method>(
    ctx: &Arc<DaemonContext>,
    params: Value,
    events: &EventSink,
    handler: impl AsyncFnOnce(&Arc<DaemonContext>, M::Params, &EventSink) -> Result<M::Output, ApiError>,
) -> Result<Value, ApiError> {
    // The protocol lets `null` stand for "no parameters"; serde wants an object.
    let params = match params {
        Value::Null => Value::Object(serde_json::Map::new()),
        other => other,
    };
    let params: M::Params = serde_json::from_value(params)
        .map_err(|e| ApiError::bad_request(format!("invalid parameters for {}: {e}", M::NAME)))?;
    let output = handler(ctx, params, events).await?;
    serde_json::to_value(output).map_err(|e| {
        ApiError::operation_failed(format!("cannot encode the answer to {}: {e}", M::NAME))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_method_names_are_cut_when_shown() {
        assert_eq!(shown_method("vm.list"), "vm.list");
        let exact = "é".repeat(SHOWN_METHOD_CHARS);
        assert_eq!(shown_method(&exact), exact.as_str());
        let long = "é".repeat(1 << 19);
        let shown = shown_method(&long);
        assert_eq!(
            shown,
            format!("{}… ({} bytes)", "é".repeat(SHOWN_METHOD_CHARS), 1 << 20)
        );
    }

    /// Every method the protocol declares has an arm: none falls through to
    /// `unknown_method`, whatever its parameters.
    #[tokio::test]
    async fn every_protocol_method_is_dispatched() {
        let root = tempfile::tempdir().unwrap();
        let dirs = banger_model::dirs::Dirs::resolve(
            |key| match key {
                "HOME" => Some(root.path().display().to_string()),
                _ => None,
            },
            nix::unistd::geteuid().as_raw(),
        )
        .unwrap();
        let ctx = Arc::new(DaemonContext::new(0, dirs));
        for method in m::ALL {
            // Deliberately wrong parameters: dispatch must reach the method's decoder.
            let result = dispatch(
                &ctx,
                method,
                serde_json::json!({"vm": 1, "name": 1, "kind": 1}),
                &EventSink::discard(),
            )
            .await;
            if let Err(error) = result {
                assert_ne!(error.code, ErrorCode::UnknownMethod, "{method}");
            }
        }
        let err = dispatch(&ctx, "vm.fly", Value::Null, &EventSink::discard())
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownMethod);
        assert!(err.message.contains("vm.fly"));
    }
}
