#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test (unit, kernel as root). In CI
# (CI=true) a kernel test that cannot run fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# bpffs for pinned programs; mounted once per boot.
if ! mountpoint -q /sys/fs/bpf; then mount -t bpf bpf /sys/fs/bpf; fi
cd build
ctest --output-on-failure --timeout 900 "$@"
