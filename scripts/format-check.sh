#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks that the C, C++ and BPF sources follow .clang-format (clang-format 14, Debian 12) and
# lists the files that do not; exit status 1 when any does not. Not yet a CI stage: the tree
# is formatted once first (scripts/format-check.sh --fix), then the check runs in CI.
#
#   scripts/format-check.sh          check every tracked source
#   scripts/format-check.sh --fix    rewrite them in place
#   scripts/format-check.sh FILE...  check only these
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
if [ -z "$CLANG_FORMAT" ]; then
  echo "scripts/format-check.sh: clang-format not found (apt-get install clang-format)" >&2
  exit 2
fi
fix=0
if [ "${1:-}" = --fix ]; then fix=1; shift; fi
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.c' '*.cpp' '*.h' '*.h.in')
fi
if [ "$fix" = 1 ]; then
  "$CLANG_FORMAT" -i --style=file "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! "$CLANG_FORMAT" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "$f"
    bad=$((bad + 1))
  fi
done
if [ "$bad" -gt 0 ]; then
  echo "format: $bad of ${#files[@]} files differ from .clang-format (scripts/format-check.sh --fix)" >&2
  exit 1
fi
echo "format: ${#files[@]} files follow .clang-format"
