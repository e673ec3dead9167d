#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fuzz stage: builds every libFuzzer target (tests/fuzz/*_fuzz.cpp) with clang, ASan and UBSan
# into build-fuzz/, and runs each for a bounded time from its seed corpus.
#
#   scripts/ci-fuzz.sh [SECONDS_PER_TARGET]      (default 30; env MCPWARDEN_FUZZ_SECONDS)
#
# New inputs that grow coverage go to build-fuzz/corpus/<target>/ (kept between runs, so
# later runs start further); the seeds in tests/fuzz/corpus/<target>/ are never modified.
# A crash fails the stage and leaves the input in build-fuzz/artifacts/: add it to the seed
# corpus (the corpus replay in the unit stage then runs it on every build) and write a unit
# test for the bug. Prints "fuzz: N targets, N runs, N crashes".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-env.sh
SECONDS_PER_TARGET=${1:-${MCPWARDEN_FUZZ_SECONDS:-30}}
OUT=build-fuzz

# Warnings are not errors here: clang's differ from GCC's, and the main build enforces those.
cmake -S . -B "$OUT" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DMCPWARDEN_FUZZ=ON -DMCPWARDEN_SANITIZE=ON -DMCPWARDEN_WERROR=OFF -DMCPWARDEN_STATIC_DEPS=ON >/dev/null
cmake --build "$OUT" -j"$(nproc)" --target fuzz_targets || { echo "fuzz: build failed"; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$OUT/artifacts"
targets=0 runs=0 crashes=0 failed=()
for src in tests/fuzz/*_fuzz.cpp; do
  name=$(basename "$src" .cpp)
  bin=$OUT/bin/$name
  [ -x "$bin" ] || { echo "fuzz: $bin was not built" >&2; failed+=("$name(not built)"); continue; }
  seeds=tests/fuzz/corpus/$name
  work=$OUT/corpus/$name
  mkdir -p "$work"
  [ -d "$seeds" ] || echo "fuzz: warning: $name has no seed corpus ($seeds)" >&2
  log=$OUT/$name.log
  echo "fuzz: $name for ${SECONDS_PER_TARGET}s" >&2
  set +e
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$name-" \
    "$work" $( [ -d "$seeds" ] && echo "$seeds" ) > "$log" 2>&1
  rc=$?
  set -e
  targets=$((targets + 1))
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  runs=$((runs + ${n:-0}))
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 || true)
  if [ "$rc" != 0 ]; then
    crashes=$((crashes + 1))
    failed+=("$name")
    echo "fuzz: $name FAILED (exit $rc); the end of its log ($log):" >&2
    tail -n 60 "$log" >&2
    ls "$OUT/artifacts/$name-"* 2>/dev/null | sed 's/^/fuzz: crashing input: /' >&2 || true
  else
    echo "fuzz: $name: ${n:-0} runs, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) files" >&2
  fi
done
echo "fuzz: $targets targets, $runs runs, $crashes crashes"
if [ "$targets" = 0 ]; then echo "fuzz: no targets found in tests/fuzz" >&2; exit 1; fi
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failing targets: ${failed[*]}" >&2; exit 1; }
