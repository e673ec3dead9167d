#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds mcpwarden into build/ (build/bin/mcpwarden), as CI does: warnings are
# errors and the dependencies are linked statically (both off by default, for packagers).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMCPWARDEN_WERROR=ON -DMCPWARDEN_STATIC_DEPS=ON >/dev/null
cmake --build build -j"$(nproc)"
