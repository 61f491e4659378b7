//! Dynamic shell-completion values: VM, image and kernel names. They come from the daemon
//! (`complete.names`) under a short timeout, so a missing or slow daemon completes to
//! nothing instead of hanging the shell; image and kernel names also include the built-in
//! catalog, which needs no daemon at all.

use std::time::Duration;

use banger_api::methods::{CompleteKind, CompleteNames, CompleteParams};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::connect;

/// How long a completion may wait for the daemon. Shells block while completing.
const DAEMON_TIMEOUT: Duration = Duration::from_millis(400);

/// Completion values for a VM argument.
pub fn vm_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| to_candidates(daemon_names(CompleteKind::Vm)))
}

/// Completion values for an image argument: local images plus the built-in catalog.
pub fn image_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let mut names = daemon_names(CompleteKind::Image);
        names.extend(catalog_image_names());
        to_candidates(names)
    })
}

/// Completion values for a kernel argument: local kernels plus the built-in catalog.
pub fn kernel_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let mut names = daemon_names(CompleteKind::Kernel);
        names.extend(catalog_kernel_names());
        to_candidates(names)
    })
}

fn catalog_image_names() -> Vec<String> {
    banger_model::catalog::BUILTIN_IMAGES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

fn catalog_kernel_names() -> Vec<String> {
    banger_model::catalog::BUILTIN_KERNELS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Sorted, deduplicated candidates.
fn to_candidates(mut names: Vec<String>) -> Vec<CompletionCandidate> {
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// Names from the daemon, or none when it cannot answer quickly.
fn daemon_names(kind: CompleteKind) -> Vec<String> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let ctx = connect::Ctx::from_process();
    let names = runtime.block_on(async {
        tokio::time::timeout(DAEMON_TIMEOUT, async {
            let mut daemon = ctx.connect().await.ok()?;
            daemon
                .client
                .call::<CompleteNames>(&CompleteParams { kind }, |_| {})
                .await
                .ok()
        })
        .await
        .ok()
        .flatten()
    });
    runtime.shutdown_background();
    names.unwrap_or_default()
}
