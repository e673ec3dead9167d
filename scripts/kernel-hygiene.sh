#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Kernel hygiene around a kernel test stage (issue 7, item 6): nothing of mcpwarden may be
# left behind, and the kernel must not have warned while the stage ran.
#
#   scripts/kernel-hygiene.sh mark FILE    before the stage: keeps the kernel log in FILE,
#                                          and what was already there in FILE.before
#   scripts/kernel-hygiene.sh check FILE   after it: fails (exit 1) on a sandbox cgroup, a
#                                          process in one, a sandbox's BPF pin, the sandboxes'
#                                          parent cgroups or the pinned programs, a test
#                                          program's directory, or a kernel
#                                          warning/splat logged since `mark`
#
# What existed before the stage (a run killed earlier on this machine) is not the stage's: it
# is named, but only what appeared during the stage fails it.
# The VM guest makes the same checks in scripts/vm/init. Expected kernel messages (OOM kills
# of the memory-limit tests with their "Call Trace", pids-controller fork rejections) are not
# warnings.
set -uo pipefail
cmd=${1:-}
file=${2:-}
[ -n "$cmd" ] && [ -n "$file" ] || { sed -n '2,13p' "$0"; exit 64; }
SPLATS='WARNING:|BUG:|Oops|general protection fault|UBSAN:|KASAN:|refcount_t:|RCU detected stall|blocked for more than|kernel BUG|stack-protector|bad unlock balance|possible recursive locking|bpf.*(leak|warn)|cgroup.*(leak|refcount)'

sandbox_cgroups() { find /sys/fs/cgroup -type d -path '*/mcpwarden/s-*' -prune 2>/dev/null | sort; }
sandbox_pins() { find /sys/fs/bpf/mcpwarden/sandboxes -mindepth 1 2>/dev/null | sort; }
# What exists only while mcpwarden is used: the sandboxes' parent cgroups and the pinned
# programs and maps. The last user removes them.
shared_state() { { find /sys/fs/cgroup -type d -name mcpwarden 2>/dev/null; ls -d /sys/fs/bpf/mcpwarden 2>/dev/null; } | sort; }
# The test programs' own directories (tests/kernel/harness.cpp): removed when they exit.
test_dirs() { ls -d /var/lib/mcpwarden-progs-* /tmp/mcpwarden-state-* 2>/dev/null | sort; }
# Lines of $1 that are not in the file $2.
new_lines() { grep -vxF -f "$2" <<< "$1" 2>/dev/null || true; }

case "$cmd" in
  mark)
    dmesg > "$file" 2>/dev/null || : > "$file"
    { sandbox_cgroups; sandbox_pins; shared_state; test_dirs; } > "$file.before"
    if [ -s "$file.before" ]; then
      echo "kernel-hygiene: already on the machine before the stage (not counted):" >&2
      cat "$file.before" >&2
    fi
    ;;
  check)
    problems=()
    # Lines logged since `mark` (the ring buffer may have dropped old ones; new ones are kept).
    new=$(dmesg 2>/dev/null | grep -vxF -f "$file" 2>/dev/null)
    splats=$(grep -E "$SPLATS" <<< "$new" || true)
    if [ -n "$splats" ]; then
      echo "kernel-hygiene: the kernel warned during the stage:" >&2
      echo "$splats" >&2
      problems+=(dmesg)
    fi
    [ -f "$file.before" ] || : > "$file.before"
    cgs=$(new_lines "$(sandbox_cgroups)" "$file.before")
    if [ -n "$cgs" ]; then
      echo "kernel-hygiene: sandbox cgroups left:" >&2
      echo "$cgs" >&2
      problems+=(cgroups)
    fi
    # A process of a sandbox that ended just now may still be exiting: it has 10 s.
    sandbox_procs() { grep -l '/mcpwarden/s-' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 | tr '\n' ' '; }
    procs=$(sandbox_procs)
    if [ -n "$procs" ]; then
      echo "kernel-hygiene: processes in sandbox cgroups at the end of the stage (waiting 10 s for them to end):" >&2
      for p in $procs; do
        echo "  $p: $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null | cut -c1-200) [$(awk '/^(State|PPid):/ {printf "%s %s ", $1, $2}' /proc/"$p"/status 2>/dev/null)] $(grep '/mcpwarden/s-' /proc/"$p"/cgroup 2>/dev/null | head -n1)" >&2
      done
      for _ in $(seq 1 50); do
        procs=$(sandbox_procs)
        [ -z "$procs" ] && break
        sleep 0.2
      done
    fi
    if [ -n "$procs" ]; then
      echo "kernel-hygiene: processes left in sandbox cgroups: $procs" >&2
      problems+=(processes)
    fi
    pins=$(new_lines "$(sandbox_pins)" "$file.before")
    if [ -n "$pins" ]; then
      echo "kernel-hygiene: sandbox BPF pins left:" >&2
      echo "$pins" >&2
      problems+=(pins)
    fi
    shared=$(new_lines "$(shared_state)" "$file.before")
    if [ -n "$shared" ]; then
      echo "kernel-hygiene: left although nothing uses it (parent cgroups, pinned programs):" >&2
      echo "$shared" >&2
      problems+=(shared)
    fi
    dirs=$(new_lines "$(test_dirs)" "$file.before")
    if [ -n "$dirs" ]; then
      echo "kernel-hygiene: test directories left:" >&2
      echo "$dirs" >&2
      problems+=(test-dirs)
    fi
    if [ ${#problems[@]} -gt 0 ]; then
      echo "kernel-hygiene: FAIL (${problems[*]})"
      exit 1
    fi
    echo "kernel-hygiene: clean (no cgroup, process or pin of mcpwarden left; no kernel warning)"
    ;;
  *) echo "scripts/kernel-hygiene.sh: unknown command $cmd (mark, check)" >&2; exit 64 ;;
esac
