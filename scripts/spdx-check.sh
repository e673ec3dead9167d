#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Lists the tracked source, build and script files whose first lines carry no
# SPDX-License-Identifier tag; exit status 1 when any does. The project is Apache-2.0 (LICENSE),
# the BPF programs GPL-2.0 (bpf/LICENSE.GPL-2.0).
#
#   scripts/spdx-check.sh            every tracked file of those kinds
#   scripts/spdx-check.sh FILE...    only these
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  files=("$@")
else
  # Data (policies, fuzz corpora, docs, JSON, which has no comments) carries no tag; code,
  # build files and scripts do.
  mapfile -t files < <(git ls-files '*.c' '*.cpp' '*.h' '*.in' '*.cmake' 'CMakeLists.txt' '*/CMakeLists.txt' \
                         '*.sh' '*.py' '*.service' '.clang-format' | grep -v '\.json\.in$' | sort -u)
fi
missing=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! head -n 5 "$f" | grep -q 'SPDX-License-Identifier:'; then
    echo "$f"
    missing=$((missing + 1))
  fi
done
if [ "$missing" -gt 0 ]; then
  echo "spdx: $missing of ${#files[@]} files have no SPDX-License-Identifier in their first 5 lines" >&2
  exit 1
fi
echo "spdx: ${#files[@]} files tagged"
