//! `cargo xtask bench`: end-to-end benchmarks on real guests, written to BENCHMARKS.md.
//! Ratios are measured within one run (banger vs the same work done by hand), because
//! absolute times on shared 2-core machines are noisy.

use std::path::Path;

use anyhow::{Result, bail};

pub fn run(_root: &Path, _args: &[String]) -> Result<()> {
    bail!("benchmarks need the VM lifecycle (issue: real guests); not available in this build")
}
