#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the test stages of scripts/test.sh on a built tree and prints one summary line per
# stage with its counts and time. Every stage runs even when an earlier one failed; the exit
# status is non-zero when any failed.
#
#   scripts/ci-stages.sh [STAGE...]     stages: unit kernel soak vm bypass sanitize fuzz release
#                                       package (default: all but release and package)
#
#   unit      ctest -L 'unit|cli' in build/ (no privileges; fuzz corpus replays, policy CLI);
#             scripts/spdx-check.sh (every source file carries its license tag)
#   kernel    ctest -L kernel in build/: the kernel tests on this host's kernel, as root, less
#             the few about the other cgroup layout (scripts/kernel-layout.sh) and, when the
#             bypass stage runs too, Bypass.*; then scripts/kernel-hygiene.sh: no sandbox
#             cgroup, process or pin left, no kernel warning logged during the stage
#   soak      ctest -L soak: the agent under load and injected faults for 2 x
#             MCPWARDEN_SOAK_SECONDS (60; about 3 minutes in all), as root; prints its figures
#             (requests answered, descriptors, threads and RSS against the baseline); then
#             scripts/kernel-hygiene.sh as for kernel
#   vm        ctest -L vm: the kernel tests in a QEMU guest, Linux 6.1, pure cgroup v2
#   bypass    the Bypass.* suite on this host (with the hygiene check) and its results from the
#             vm stage's guest (or a guest booted for Bypass.* alone when the vm stage did not
#             run); rewrites the table in docs/security.md (scripts/security-table.py) and
#             fails when an attempt was not denied
#   sanitize  scripts/ci-sanitize.sh: unit + kernel tests built with ASan+UBSan
#   fuzz      scripts/ci-fuzz.sh: every libFuzzer target for MCPWARDEN_FUZZ_SECONDS (30) each
#   release   Release builds with -Werror, every target, with GCC into build-release-gcc/ and
#             with Clang into build-release-clang/ (what a distribution builds, warning-free)
#   package   ctest -L package: a Release build without tests installed with --prefix; the
#             .deb from cpack installed with apt-get into a debootstrap root, run, removed
set -uo pipefail
cd "$(dirname "$0")/.."
STAGES=("$@")
# release and package run when named (not yet by default: see their lines above).
[ ${#STAGES[@]} -gt 0 ] || STAGES=(unit kernel soak vm bypass sanitize fuzz)
LOGDIR=build/stage-logs
mkdir -p "$LOGDIR"

declare -A RESULT COUNTS TIME
# ctest's own counts: "N tests, N passed, N failed, N skipped".
ctest_counts() {
  local log=$1 line total failed skipped
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1)
  total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<< "$line")
  failed=$(sed -nE 's/.*passed, ([0-9]+) tests? failed.*/\1/p' <<< "$line")
  skipped=$(grep -c '(Skipped)' "$log")
  total=${total:-0} failed=${failed:-0}
  echo "$total tests, $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
}

run_ctest_stage() {  # stage label [ctest args...]
  local stage=$1 label=$2 log=$LOGDIR/$1.log
  shift 2
  (cd build && ctest -L "^($label)\$" --output-on-failure --timeout 900 "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  COUNTS[$stage]=$(ctest_counts "$log")
  if ! grep -qE 'out of [1-9]' "$log"; then rc=1; COUNTS[$stage]="no tests ran"; fi
  return "$rc"
}

# The unit stage also checks that every source file carries its SPDX license tag.
stage_unit() {
  local rc=0
  run_ctest_stage unit 'unit|cli' || rc=1
  scripts/spdx-check.sh 2>&1 | tee -a "$LOGDIR/unit.log" || rc=1
  return "$rc"
}
stage_kernel() {
  local exclude rc
  exclude=$(scripts/kernel-layout.sh)
  # The bypass stage runs Bypass.* (on this host and in the guest): not twice.
  [[ " ${STAGES[*]} " == *" bypass "* ]] && exclude="$exclude|^Bypass\\."
  scripts/kernel-hygiene.sh mark "$LOGDIR/kernel.dmesg"
  run_ctest_stage kernel kernel -E "$exclude"
  rc=$?
  scripts/kernel-hygiene.sh check "$LOGDIR/kernel.dmesg" 2>&1 | tee -a "$LOGDIR/kernel.log"
  if [ "${PIPESTATUS[0]}" != 0 ]; then rc=1; COUNTS[kernel]="${COUNTS[kernel]}; left-behind or kernel warnings"; fi
  return "$rc"
}
stage_soak() {
  local rc
  scripts/kernel-hygiene.sh mark "$LOGDIR/soak.dmesg"
  run_ctest_stage soak soak -V
  rc=$?
  scripts/kernel-hygiene.sh check "$LOGDIR/soak.dmesg" 2>&1 | tee -a "$LOGDIR/soak.log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  local figures
  figures=$(grep -E 'soak: ' "$LOGDIR/soak.log" | sed -E 's/^.*soak: //' | paste -sd ';' -)
  COUNTS[soak]="${COUNTS[soak]}${figures:+; $figures}"
  return "$rc"
}
stage_vm() {
  (cd build && ctest -L '^vm$' --output-on-failure) 2>&1 | tee "$LOGDIR/vm.log"
  local rc=${PIPESTATUS[0]}
  if [ -f build/vm/result ]; then
    val() { sed -n "s/^$1=//p" build/vm/result | tail -n1; }
    local reason
    reason=$(val reason)
    [ -n "$(val total)" ] || reason="no tests ran: $reason"
    COUNTS[vm]="$(val total) tests, $(val passed) passed, $(val failed) failed, $(val skipped) skipped (Linux $(val kernel), pure cgroup v2)${reason:+; $reason}"
  else
    COUNTS[vm]="no result from the guest"
    rc=1
  fi
  return "$rc"
}
stage_bypass() {
  local log=$LOGDIR/bypass.log host_xml=build/bypass-host.xml vm_xml=build/vm/bypass.xml rc=0
  rm -f "$host_xml"
  scripts/kernel-hygiene.sh mark "$LOGDIR/bypass.dmesg"
  build/bin/kernel_tests --gtest_filter='Bypass.*' --gtest_color=no --gtest_output="xml:$host_xml" 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  scripts/kernel-hygiene.sh check "$LOGDIR/bypass.dmesg" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  # The vm stage ran the whole kernel suite in the guest, Bypass.* included: its results are
  # in build/vm/bypass.xml. Without it, the guest boots for Bypass.* alone.
  if [ -z "${RESULT[vm]:-}" ]; then
    rm -f "$vm_xml"
    scripts/vm/run.sh --filter 'Bypass.*' 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  fi
  if [ ! -s "$host_xml" ]; then
    COUNTS[bypass]="no results from this host"
    return 1
  fi
  local vm_args=()
  [ -s "$vm_xml" ] && vm_args=(--vm "$vm_xml")
  [ -s "$vm_xml" ] || { echo "bypass: no results from the VM guest" | tee -a "$log"; rc=1; }
  scripts/security-table.py --host "$host_xml" "${vm_args[@]}" --doc docs/security.md --check 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  COUNTS[bypass]=$(sed -n 's/^bypass: //p' "$log" | tail -n1)
  [ -s "$vm_xml" ] || COUNTS[bypass]="${COUNTS[bypass]}; no VM results"
  return "$rc"
}
stage_sanitize() {
  scripts/ci-sanitize.sh 2>&1 | tee "$LOGDIR/sanitize.log"
  local rc=${PIPESTATUS[0]}
  COUNTS[sanitize]=$(sed -n 's/^sanitizer: //p' "$LOGDIR/sanitize.log" | tail -n1)
  return "$rc"
}
stage_fuzz() {
  scripts/ci-fuzz.sh 2>&1 | tee "$LOGDIR/fuzz.log"
  local rc=${PIPESTATUS[0]}
  COUNTS[fuzz]=$(grep -E '^fuzz: [0-9]+ targets' "$LOGDIR/fuzz.log" | sed 's/^fuzz: //' | tail -n1)
  return "$rc"
}

stage_release() {
  source scripts/build-env.sh
  local log=$LOGDIR/release.log rc=0 cc built=()
  : >"$log"
  for cc in gcc clang; do
    local dir=build-release-$cc args=()
    [ "$cc" = clang ] && args=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
    local start=$SECONDS
    if cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMCPWARDEN_WERROR=ON -DMCPWARDEN_STATIC_DEPS=ON \
         "${args[@]}" >>"$log" 2>&1 && cmake --build "$dir" -j"$(nproc)" >>"$log" 2>&1; then
      built+=("$cc $((SECONDS - start))s")
    else
      grep -E 'error|warning' "$log" | head -40
      built+=("$cc FAILED")
      rc=1
    fi
  done
  COUNTS[release]="Release -Werror: ${built[*]}"
  return "$rc"
}
stage_package() { run_ctest_stage package package; }

failed=0
for stage in "${STAGES[@]}"; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "scripts/ci-stages.sh: unknown stage '$stage' (unit kernel soak vm bypass sanitize fuzz release package)" >&2
    exit 64
  fi
  echo "=================== stage: $stage ===================" >&2
  start=$(date +%s)
  if "stage_$stage"; then RESULT[$stage]=PASS; else RESULT[$stage]=FAIL; failed=1; fi
  TIME[$stage]=$(( $(date +%s) - start ))
done

echo
echo "=================== test stages ==================="
for stage in "${STAGES[@]}"; do
  printf '%-9s %-4s %6ss  %s\n' "$stage" "${RESULT[$stage]}" "${TIME[$stage]}" "${COUNTS[$stage]:-}"
done
exit "$failed"
