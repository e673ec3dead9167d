#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is needed, builds, and runs every test stage (scripts/ci-stages.sh): unit;
# kernel tests as root on this host; the agent's soak test; the same kernel tests in a QEMU guest (Linux 6.1, pure
# cgroup v2); the bypass suite on both, into docs/security.md; unit and kernel tests built
# with ASan+UBSan; each fuzz target for a bounded time. Ends with one line of counts per
# stage. In CI (CI=true) a kernel test that cannot run fails instead of being skipped.
#
#   scripts/test.sh                  every stage
#   scripts/test.sh -L unit ...      only ctest in build/, with these arguments
#   MCPWARDEN_STAGES="unit kernel" scripts/test.sh     some stages
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# bpffs for pinned programs; mounted once per boot.
if ! mountpoint -q /sys/fs/bpf; then mount -t bpf bpf /sys/fs/bpf; fi
if [ $# -gt 0 ]; then
  cd build
  exec ctest --output-on-failure --timeout 900 "$@"
fi
# shellcheck disable=SC2086
exec scripts/ci-stages.sh ${MCPWARDEN_STAGES:-}
