#!/usr/bin/env bash
# Builds what the real-guest tests drive: target/debug/{banger,bangerd,banger-helper} and the
# static guest agent. The nextest `vm` profile runs this as a setup script before any
# banger-e2e test (.config/nextest.toml); cargo makes it a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p banger -p bangerd -p banger-helper
cargo xtask agent >/dev/null
