#!/usr/bin/env bash
# Runs every test banger has on a fresh Debian machine: installs host packages and Rust
# components, then `cargo xtask ci` (fmt, clippy, tidy, unit + integration tests, and the
# real-guest end-to-end tests under QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest from crates.io"
  cargo install --locked cargo-nextest
fi
# CI builds once from a clean clone: incremental state would only cost disk (about 2 GiB
# for this workspace), and a CI machine's disk can be small.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
exec cargo xtask ci "$@"
