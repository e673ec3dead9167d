#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The VM stage: runs the kernel test suite inside a QEMU guest booting Debian's cloud kernel
# (Linux 6.1) with a pure cgroup-v2 hierarchy, and returns its pass/fail.
#
#   scripts/vm/run.sh [--build-dir DIR] [--filter GTEST_FILTER] [--timeout SECONDS]
#                     [--memory MB] [--cpus N] [--command 'SHELL COMMAND'] [--with PATH]...
#                     [--modules 'veth dummy'] [--exclude GTEST_PATTERNS]
#
# Needs a built tree (scripts/build.sh) and qemu-system-x86, busybox-static and cpio
# (scripts/setup.sh installs them). Software emulation (TCG): nested KVM crashes the guest on
# these machines. --command runs a command of yours in the same guest instead of the suite
# (e.g. --command "$PWD/build/bin/mcpwarden run -- id"), to debug on Linux 6.1; --with adds
# a host program or file (e.g. /usr/sbin/bpftool) to the guest at the same path. --modules
# names the kernel modules loaded at boot (default: veth dummy; the guest does not autoload).
# --exclude lists tests that cannot run in the guest (default: McpSdk.*, which needs node
# and the npm registry, *HostOnly*, which need curl, Python and Node; the guest has none,
# Hybrid.*, which need a v1 memory hierarchy, and OciHook.*, which need podman with its image
# storage; OciRunc.* runs here, with the host's runc); they still run in the host stage. The
# guest's console is printed as it runs and kept in DIR/vm/console.log; its summary is written
# to DIR/vm/result (key=value lines) for scripts/test.sh, and the Bypass suite's gtest XML,
# when it ran, to DIR/vm/bypass.xml.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=build
FILTER=""
TIMEOUT=1800  # about 11 minutes on an idle 2-core machine; emulation slows down with the host
MEMORY=1024
CPUS=2
COMMAND=""
EXCLUDE="McpSdk.*:*HostOnly*:Hybrid.*:OciHook.*"
export VM_EXTRA_FILES="" VM_MODULES="veth dummy"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --filter) FILTER=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --command) COMMAND=$2; shift 2 ;;
    --modules) VM_MODULES=$2; shift 2 ;;
    --exclude) EXCLUDE=$2; shift 2 ;;
    --with) VM_EXTRA_FILES="$VM_EXTRA_FILES $(realpath "$2")"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "scripts/vm/run.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
BUILD=$(realpath "$BUILD")
VMDIR=$BUILD/vm
mkdir -p "$VMDIR"
RESULT=$VMDIR/result
LOG=$VMDIR/console.log
rm -f "$RESULT"

die() {
  echo "scripts/vm/run.sh: $*" >&2
  printf 'status=FAIL\nreason=%s\n' "$*" > "$RESULT"
  exit 1
}
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh (package qemu-system-x86)"

start=$(date +%s)
KERNEL=$(scripts/vm/kernel.sh "$VMDIR/kernel") || die "could not fetch the guest kernel"
if [ -n "$VM_MODULES" ] && [ ! -d "$(dirname "$KERNEL")/modules/kernel" ]; then
  # A cache from before modules were kept: fetch the package again.
  rm -f "$KERNEL"
  KERNEL=$(scripts/vm/kernel.sh "$VMDIR/kernel") || die "could not fetch the guest kernel"
fi
export VM_MODULE_DIR="$(dirname "$KERNEL")/modules"
# The gtest filter: what was asked for, minus what cannot run in the guest.
GTEST="${FILTER:-*}"
if [ -n "$EXCLUDE" ]; then
  case "$GTEST" in *-*) GTEST="$GTEST:${EXCLUDE//,/:}" ;; *) GTEST="$GTEST-${EXCLUDE//,/:}" ;; esac
fi
INITRD=$VMDIR/initramfs.cpio.gz
scripts/vm/initramfs.sh "$BUILD" "$INITRD" "$GTEST" "$COMMAND" || die "could not build the initramfs"

echo "scripts/vm/run.sh: booting $(basename "$(dirname "$KERNEL")") under TCG" \
     "(${CPUS} cpus, ${MEMORY} MiB), filter $GTEST" >&2
# -no-reboot + panic=-1: a guest panic (init dying included) ends QEMU at once.
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu max -smp "$CPUS" -m "$MEMORY" \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
  </dev/null 2>&1 | tr -d '\r' | tee "$LOG"
qemu_rc=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

line=$(grep -a '^MCPWARDEN-VM-RESULT: ' "$LOG" | tail -n1 || true)
if [ -z "$line" ]; then
  if [ "$qemu_rc" = 124 ]; then
    die "the guest did not finish within ${TIMEOUT}s (console: $LOG)"
  fi
  die "the guest ended without a result line (qemu exit $qemu_rc; console: $LOG)"
fi
# The Bypass suite's gtest XML, when the guest ran it (scripts/security-table.py reads it).
rm -f "$VMDIR/bypass.xml"
if grep -aq '^MCPWARDEN-VM-XML: ' "$LOG"; then
  sed -n 's/^MCPWARDEN-VM-XML: //p' "$LOG" > "$VMDIR/bypass.xml"
fi
read -r -a words <<< "${line#MCPWARDEN-VM-RESULT: }"
{
  echo "status=${words[0]}"
  for w in "${words[@]:1}"; do echo "$w"; done
  echo "seconds=$elapsed"
} > "$RESULT"
echo "scripts/vm/run.sh: ${line#MCPWARDEN-VM-RESULT: } (${elapsed}s)" >&2
[ "${words[0]}" = PASS ]
