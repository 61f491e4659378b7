//! The `--json` records: one plain serde struct per record kind, built from the daemon's
//! wire type by a pure function. Every key is always present (`null` when unknown), sizes
//! are bytes and durations seconds with the unit in the key (`memory_bytes`,
//! `vmm_cpu_secs`), times are RFC 3339 strings (`*_at`). The daemon's records may change
//! shape; these are what scripts read, documented in `docs/json.md` (a test checks that
//! every documented table has exactly the keys its record serializes).

pub mod check;
pub mod image;
pub mod kernel;
pub mod misc;
pub mod policy;
pub mod ports;
pub mod snapshot;
pub mod stats;
pub mod system;
pub mod vm;
pub mod workspace;

#[cfg(test)]
mod docs_tests;

use serde::Serialize;

pub use vm::{VmJson, print_vm, print_vms, vms};

use crate::errors::CliError;

/// With `--json`, the record `record` builds from `value`; else the text `human` builds.
pub fn print<'a, T: ?Sized, R: Serialize>(
    json: bool,
    value: &'a T,
    record: impl FnOnce(&'a T) -> R,
    human: impl FnOnce(&T) -> String,
) -> Result<(), CliError> {
    if json {
        super::stdout(&super::json(&record(value))?)
    } else {
        super::stdout(&human(value))
    }
}

/// Each element of `list` as its record.
pub fn all<'a, T: 'a, R: From<&'a T>>(list: &'a [T]) -> Vec<R> {
    list.iter().map(R::from).collect()
}
