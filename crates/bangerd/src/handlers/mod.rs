//! One function per protocol method, grouped by area. Each takes
//! `(ctx, params, events)` and returns the method's typed output, so wiring a service in
//! later replaces one function body and nothing else. Methods whose feature has not landed
//! answer `not_yet_available`, never a fake success.

pub mod host_probe;
pub mod image;
pub mod kernel;
pub mod snapshot;
pub mod system;
pub mod vm;
pub mod vm_logs;
pub mod vm_view;
