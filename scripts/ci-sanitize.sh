#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sanitizer stage: builds everything with ASan+UBSan (MCPWARDEN_SANITIZE) into build-asan/
# and runs the unit and kernel tests there (kernel tests as root, against the sanitized
# mcpwarden). Zero reports are required: a test failure fails the stage, and so does any
# sanitizer report, even from a process whose exit status no test looks at (reports go to
# build-asan/sanitizer-logs/, and the test output is searched for them as well).
#
#   scripts/ci-sanitize.sh [extra ctest args]
#
# Prints "sanitizer: N tests, N passed, N failed, N reports".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-env.sh
OUT=build-asan
# -O1 -g1: half the compile time of -O2 -g with ASan+UBSan, stack traces keep file:line, and
# assertions stay on. Warnings are not errors here: GCC's flow warnings give false positives
# on sanitizer-instrumented code, and the main build already enforces them.
cmake -S . -B "$OUT" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMCPWARDEN_SANITIZE=ON -DMCPWARDEN_WERROR=OFF -DMCPWARDEN_STATIC_DEPS=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" >/dev/null
# What the stage runs (the binaries, the unit, CLI and kernel tests with their helpers), not the
# benchmarks or the soak test.
cmake --build "$OUT" -j"$(nproc)" --target mcpwarden mcpwarden-init unit_tests cli_tests kernel_tests fuzz_replays ||
  { echo "sanitizer: build failed"; exit 1; }

LOGS=$PWD/$OUT/sanitizer-logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
chmod 1777 "$LOGS"  # a sanitized process may report after dropping to the sandbox user
export ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="log_path=$LOGS/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="log_path=$LOGS/lsan"

set +e
layout_out=$(scripts/kernel-layout.sh)
(cd "$OUT" && ctest -L '^(unit|cli|kernel)$' -E "$layout_out" --output-on-failure --timeout 900 "$@") 2>&1 | tee "$OUT/ctest.log"
rc=${PIPESTATUS[0]}
set -e

summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$OUT/ctest.log" | tail -n1)
total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<< "$summary")
failed=$(sed -nE 's/.*passed, ([0-9]+) tests? failed.*/\1/p' <<< "$summary")
reports=$(find "$LOGS" -type f | wc -l)
inline=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$OUT/ctest.log" || true)
if [ "$reports" -gt 0 ]; then
  echo "sanitizer: reports written by sanitized processes:" >&2
  for f in "$LOGS"/*; do echo "== $f" >&2; head -n 80 "$f" >&2; done
fi
if [ "$inline" -gt 0 ]; then
  echo "sanitizer: reports in the test output:" >&2
  grep -E -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$OUT/ctest.log" | head -n 120 >&2
fi
reports=$((reports + inline))
echo "sanitizer: ${total:-0} tests, $(( ${total:-0} - ${failed:-0} )) passed, ${failed:-0} failed, $reports reports"
[ "$rc" = 0 ] && [ -n "$total" ] && [ "$reports" = 0 ]
