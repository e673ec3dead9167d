#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Container start with and without mcpwarden's OCI hook (issue 15; docs/performance.md):
# `podman run --rm IMAGE /bin/true` timed end to end, interleaved round by round (in a
# rotating order) in three forms: no hook installed; the hook installed and the container not
# annotated (podman matches the hook file and runs nothing); the hook installed and the container annotated
# io.mcpwarden.policy (the hook runs at createRuntime and poststop and the agent attaches the
# policy). Prints the median and p90 of each and what the hook adds to the first's median.
#
#   tests/bench/container_start.sh [BUILD_DIR] [ROUNDS]     (root; podman, runc)
#
# Not under chrt -f like the other benchmarks: every process of a container start runs with
# the normal policy (podman is started with chrt -o 0 even when this script is not). A
# real-time podman livelocks this 2-core machine (its Go runtime's threads spin at FIFO
# priority waiting for each other: seen for 10 minutes until killed), and on this hybrid host
# a real-time task cannot join the v1 cpu cgroup podman makes (EINVAL: no RT budget there).
# The image is one static busybox imported with podman import (no registry); the agent is
# this build's, with a policy of its own. Everything it starts or makes is removed at the end.
set -euo pipefail
BUILD=$(realpath "${1:-build}")
ROUNDS=${2:-15}
MCPWARDEN=$BUILD/bin/mcpwarden
IMAGE=localhost/mcpwarden-bench-busybox:1
[ "$(id -u)" = 0 ] || { echo "container_start.sh: run as root" >&2; exit 1; }
command -v podman >/dev/null && command -v runc >/dev/null || { echo "container_start.sh: needs podman and runc (scripts/setup.sh)" >&2; exit 1; }
[ -x "$MCPWARDEN" ] || { echo "container_start.sh: $MCPWARDEN missing: build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/mcpwarden-bench-oci-XXXXXX)
agent=""
cleanup() {
  if [ -n "$agent" ]; then kill -TERM "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 143" TERM INT HUP

mkdir -p "$dir/root/bin" "$dir/policies" "$dir/state" "$dir/hooks.d" "$dir/no-hooks.d"
cp /bin/busybox "$dir/root/bin/busybox"
ln -s busybox "$dir/root/bin/true"
ln -s busybox "$dir/root/bin/sh"
tar -C "$dir/root" -c . | podman import - "$IMAGE" >/dev/null
printf 'name: probe\negress:\n  allow:\n    - cidr: 127.0.0.2/32\n' > "$dir/policies/probe.yaml"
printf 'socket: %s\npolicy_dir: %s\nstate_dir: %s\naudit: %s\n' \
  "$dir/agent.sock" "$dir/policies" "$dir/state" "$dir/audit.jsonl" > "$dir/agent.yaml"
# deploy/oci-hooks.d/mcpwarden.json with this build's binary and agent.
cat > "$dir/hooks.d/mcpwarden.json" <<JSON
{"version": "1.0.0",
 "hook": {"path": "$MCPWARDEN", "args": ["mcpwarden", "oci-hook", "--agent", "$dir/agent.sock"], "timeout": 10},
 "when": {"annotations": {"^io\\\\.mcpwarden\\\\.policy\$": ".*"}},
 "stages": ["createRuntime", "poststop"]}
JSON
chrt -o 0 "$MCPWARDEN" --log-level info agent --config "$dir/agent.yaml" 2> "$dir/agent.log" &
agent=$!
for _ in $(seq 200); do "$MCPWARDEN" ps --agent "$dir/agent.sock" >/dev/null 2>&1 && break; sleep 0.05; done
"$MCPWARDEN" ps --agent "$dir/agent.sock" >/dev/null || { cat "$dir/agent.log" >&2; exit 1; }

# podman's default limits are above this machine's hard ones.
run() {  # HOOKS_DIR [ANNOTATION]
  local hooks=$1
  shift
  chrt -o 0 podman --hooks-dir "$hooks" run --rm --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
    "$@" "$IMAGE" /bin/true
}
declare -a none=() installed=() annotated=()
# One warm-up of each (the image's layers, podman's first-run state, the agent's programs).
run "$dir/no-hooks.d"
run "$dir/hooks.d" --annotation io.mcpwarden.policy=probe
timed() {  # FORM: one run of that form, its time appended to the form's samples
  local t0 t1
  t0=$(date +%s%N)
  case $1 in
    none) run "$dir/no-hooks.d" ;;
    installed) run "$dir/hooks.d" ;;
    annotated) run "$dir/hooks.d" --annotation io.mcpwarden.policy=probe ;;
  esac
  t1=$(date +%s%N)
  eval "$1+=(\"$(( (t1 - t0) / 1000 ))\")"
}
# Each round runs the three forms in another order (rotated), so that none always comes first.
forms=(none installed annotated)
for round in $(seq "$ROUNDS"); do
  for k in 0 1 2; do timed "${forms[$(( (round + k) % 3 ))]}"; done
done
# The hook really ran: one attachment per annotated run went through the agent's log.
attached=$(grep -c "attached policy probe" "$dir/agent.log" || true)
[ "$attached" -ge "$ROUNDS" ] || { echo "container_start.sh: only $attached attachments in the agent's log" >&2; cat "$dir/agent.log" >&2; exit 1; }

stats() {  # median p90 of microsecond samples, in ms
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    p = v[int(0.9 * (NR - 1)) + 1]
    printf "%.1f %.1f", m / 1000, p / 1000 }'
}
read -r m0 p0 <<< "$(stats "${none[@]}")"
read -r m1 p1 <<< "$(stats "${installed[@]}")"
read -r m2 p2 <<< "$(stats "${annotated[@]}")"
echo "container start, podman run --rm $IMAGE /bin/true, $ROUNDS rounds interleaved (median / p90 ms, SCHED_OTHER):"
printf '  %-44s %8s / %s\n' "no hook installed" "$m0" "$p0"
printf '  %-44s %8s / %s  (%+.1f%%)\n' "hook installed, container not annotated" "$m1" "$p1" "$(awk -v a="$m1" -v b="$m0" 'BEGIN { print (a - b) * 100 / b }')"
printf '  %-44s %8s / %s  (%+.1f%%)\n' "hook installed, io.mcpwarden.policy=probe" "$m2" "$p2" "$(awk -v a="$m2" -v b="$m0" 'BEGIN { print (a - b) * 100 / b }')"
