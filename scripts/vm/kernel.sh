#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches Debian's cloud kernel for the VM stage and prints the path of its vmlinuz.
#
#   scripts/vm/kernel.sh [CACHE_DIR]     (default: build/vm/kernel)
#
# `apt-get download linux-image-cloud-amd64` would fetch only the metapackage; its versioned
# dependency (linux-image-<abi>-cloud-amd64) holds boot/vmlinuz-*. The name is resolved with
# apt-cache at run time, so a kernel update in the archive is picked up without editing this
# file. The unpacked kernel is cached: later runs with the same version download nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${1:-build/vm/kernel}
META=linux-image-cloud-amd64

die() { echo "scripts/vm/kernel.sh: $*" >&2; exit 1; }

resolve() {
  apt-cache depends "$META" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }'
}

PKG=$(resolve || true)
if [ -z "$PKG" ]; then
  # A fresh machine may not have package lists yet.
  apt-get update -qq >&2 || true
  PKG=$(resolve || true)
fi
[ -n "$PKG" ] || die "cannot resolve the kernel package behind $META (apt-cache depends $META)"
VERSION=${PKG#linux-image-}
DIR="$CACHE/$VERSION"

if [ ! -s "$DIR/vmlinuz" ]; then
  echo "scripts/vm/kernel.sh: fetching $PKG" >&2
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt hands the download to its _apt user
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "$PKG" >&2) || die "apt-get download $PKG failed"
  deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || die "apt-get download $PKG produced no .deb"
  dpkg -x "$deb" "$tmp/root"
  vmlinuz=$(ls "$tmp"/root/boot/vmlinuz-* 2>/dev/null | head -n1)
  [ -n "$vmlinuz" ] || die "$PKG holds no boot/vmlinuz-*"
  mkdir -p "$DIR"
  cp "$vmlinuz" "$DIR/vmlinuz.tmp"
  cp "$tmp"/root/boot/config-* "$DIR/config" 2>/dev/null || true
  # The modules too: the guest loads the few the tests need (scripts/vm/initramfs.sh).
  rm -rf "$DIR/modules"
  cp -r "$tmp"/root/lib/modules/*/ "$DIR/modules"
  mv "$DIR/vmlinuz.tmp" "$DIR/vmlinuz"
fi
echo "$(realpath "$DIR/vmlinuz")"
