#!/usr/bin/env bash
# Installs the host packages banger needs on Debian bookworm (run as root, or with sudo
# available). Idempotent: a second run installs nothing new.
#
# QEMU and e2fsprogs come from bookworm-backports: bookworm's qemu-system-x86 7.2 cannot be
# installed beside the backports qemu-utils that some images ship, and `mkfs.ext4 -d` only
# reads tarballs from e2fsprogs 1.47.1 on (bookworm has 1.47.0).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  echo "install-deps: adding bookworm-backports ($uri)"
  echo "deb $uri bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
fi

$SUDO apt-get update -q >/dev/null
# qemu-system-x86 + qemu-utils: the VMM and qemu-img; e2fsprogs: mkfs.ext4 -d, debugfs, e2fsck.
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-utils e2fsprogs >/dev/null
# libarchive13: mkfs.ext4 -d TARBALL; mmdebstrap+uidmap: rootless golden image; cpio/kmod/lz4:
# kernel and initramfs; iproute2/nftables: networking; iptables: the helper's iptables NAT
# backend (tested too); socat: the fake VMM of the Firecracker driver test; git/openssh-client:
# workspaces, ssh; curl: bundle downloads; dnsutils: dig in tests; build-essential: linking the static agent;
# docker-registry: the OCI registry the import tests push to (run by the tests on a random
# loopback port; nothing starts it as a service here); skopeo + umoci: the reference
# pipeline `cargo xtask bench` compares `image import` against; systemd: systemd-analyze, which
# checks the units `banger system install` generates.
$SUDO apt-get install -y -q --no-install-recommends \
  libarchive13 mmdebstrap uidmap debootstrap cpio kmod lz4 xz-utils zstd iproute2 nftables \
  iptables socat \
  git openssh-client curl ca-certificates dnsutils busybox-static python3 build-essential \
  docker-registry skopeo umoci systemd \
  >/dev/null
echo "install-deps: host packages ready ($(qemu-system-x86_64 --version | head -n1); $(PATH="$PATH:/usr/sbin:/sbin" mkfs.ext4 -V 2>&1 | head -n1))"
