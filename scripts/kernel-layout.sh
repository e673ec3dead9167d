#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the ctest -E pattern of the kernel tests that need the other cgroup layout than this
# host's, and says on stderr which and where they run instead. A few tests are about one layout
# only: PureV2.* need memory, pids and cpu on cgroup v2 (the vm stage's guest has them),
# Hybrid.* need the v1 memory hierarchy (the development hosts have it). They fail, never skip,
# when run on the wrong layout, so the selection is made here, explicitly.
set -euo pipefail
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
  echo "kernel-layout: pure cgroup v2 host: leaving out Hybrid.* (they run on hybrid hosts)" >&2
  echo '^Hybrid\.'
else
  echo "kernel-layout: hybrid cgroup host: leaving out PureV2.* (the vm stage runs them)" >&2
  echo '^PureV2\.'
fi
