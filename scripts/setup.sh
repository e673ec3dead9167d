#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages mcpwarden needs to build, test and run. Idempotent: when
# everything is installed already it changes nothing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  ccache  # scripts/build-env.sh: a second build of the same sources takes minutes
  clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev
  libclang-rt-dev  # libFuzzer and clang's sanitizer runtimes (fuzz stage)
  libspdlog-dev libfmt-dev libcli11-dev libyaml-dev nlohmann-json3-dev libseccomp-dev
  libgtest-dev libgmock-dev libbenchmark-dev liburing-dev
  iproute2 util-linux procps curl python3
  python3-yaml  # tests/deploy: the Kubernetes manifests read and checked
  qemu-system-x86 busybox-static cpio
  # Packaging (tests/package): the .deb installed into a debootstrap chroot; man pages
  # checked with man; scripts/format-check.sh
  debootstrap man-db clang-format
  bubblewrap  # bench_run: mcpwarden run against bwrap --unshare-all
  podman runc  # tests/kernel/oci_hook_test.cpp: mcpwarden oci-hook under a real container runtime
  golang-go  # tests/helpers/go: a static Go server under the sandbox (Go makes raw system calls)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
