#!/usr/bin/env bash
# One command from a fresh Debian bookworm machine to a command run in a microVM:
# installs host packages, builds and installs banger, starts the root helper (guest
# networking; sudo when not root) and the daemon, checks the host with `banger doctor`, then runs `banger vm run -- uname -a` on the default golden image
# (the first run builds the image from Debian packages; later runs reuse it).
#
#   PREFIX=/usr/local   where binaries go (default: /usr/local as root, ~/.local otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then PREFIX=${PREFIX:-/usr/local}; else PREFIX=${PREFIX:-$HOME/.local}; fi
BIN=$PREFIX/bin

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing host packages"
scripts/install-deps.sh

step "building banger (release)"
command -v cargo >/dev/null || { echo "quickstart: cargo is required (https://rustup.rs)" >&2; exit 1; }
cargo build --release --locked -p banger -p bangerd -p banger-helper
agent=$(cargo xtask agent)

step "installing to $BIN"
mkdir -p "$BIN"
install -m 0755 target/release/banger target/release/bangerd target/release/banger-helper "$agent" "$BIN/"
export PATH="$BIN:$PATH"

step "starting the root helper (guest networking)"
uid=$(id -u)
if [ "$uid" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
state=${BANGER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/banger}
runtime=${BANGER_RUNTIME_DIR:-${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/banger}}
runtime=${runtime:-/tmp/banger-$uid}
helper_socket=${BANGER_HELPER_SOCKET:-/run/banger/helper.sock}
mkdir -p -m 0700 "$state" "$runtime"
if "$BIN/banger-helper" probe --socket "$helper_socket" 2>/dev/null; then
  echo "(keeping it: stop it and rerun to start the new binary)" >&2
else
  # Nothing answers there: start one (it replaces a socket a dead helper left behind).
  $SUDO mkdir -p "$(dirname "$helper_socket")"
  $SUDO sh -c 'nohup "$0" --owner-uid "$1" --state-dir "$2" --runtime-dir "$3" --socket "$4" \
      >>/var/log/banger-helper.log 2>&1 </dev/null &' \
    "$BIN/banger-helper" "$uid" "$state" "$runtime" "$helper_socket"
  for _ in $(seq 100); do "$BIN/banger-helper" probe --socket "$helper_socket" >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN/banger-helper" probe --socket "$helper_socket" \
    || { echo "quickstart: banger-helper did not start (see /var/log/banger-helper.log)" >&2; exit 1; }
fi

step "starting the daemon"
if banger ping >/dev/null 2>&1; then
  echo "bangerd is already running; restarting it with the new binaries" >&2
  pid=$(banger health --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -n1)
  [ -n "$pid" ] && kill "$pid"
  for _ in $(seq 100); do banger ping >/dev/null 2>&1 || break; sleep 0.1; done
fi
nohup "$BIN/bangerd" >>"$state/bangerd.log" 2>&1 </dev/null &
for _ in $(seq 100); do banger ping >/dev/null 2>&1 && break; sleep 0.1; done
banger ping

step "checking the host"
banger doctor

step "running: banger vm run -- uname -a"
banger vm run --rm -- uname -a
