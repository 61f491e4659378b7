#!/usr/bin/env bash
# One command from a fresh Debian bookworm machine to a command run in a microVM:
# installs host packages, builds banger, installs it as two services with
# `banger system install` (the root helper and the daemon; sudo when not root: root
# only ever runs binaries from root-owned /usr/local paths), checks the host with
# `banger doctor`, then runs `banger vm run -- uname -a` on the default golden image
# (the first run builds the image from Debian packages; later runs reuse it).
# Running it again upgrades the installation in place (VMs and images are kept).
#
#   BANGER_PROFILE=release   cargo profile to build (release by default; debug is faster to build)
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${BANGER_PROFILE:-release}
step() { printf '\n==> %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=
else
  command -v sudo >/dev/null || { echo "quickstart: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi

step "installing host packages"
scripts/install-deps.sh

step "building banger ($PROFILE)"
command -v cargo >/dev/null || { echo "quickstart: cargo is required (https://rustup.rs)" >&2; exit 1; }
if [ "$PROFILE" = release ]; then flag=--release; out=target/release; else flag=; out=target/debug; fi
cargo build $flag --locked -p banger -p bangerd -p banger-helper
agent=$(cargo xtask agent)

step "installing the services (banger system install)"
$SUDO "$out/banger" system install --owner "$(id -un)" --from "$out" --agent "$agent"
export PATH="/usr/local/bin:$PATH"
banger system status

step "checking the host"
banger doctor

step "running: banger vm run -- uname -a"
banger vm run --rm -- uname -a
