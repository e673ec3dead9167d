#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# What the mcpwarden DaemonSet does on a node (daemonset.yaml); in the image at
# /opt/mcpwarden/libexec/mcpwarden/node.sh.
#
#   node.sh install HOST_ROOT HOOKS_DIR
#       Copies the mcpwarden binary to HOST_ROOT/opt/mcpwarden/bin/mcpwarden (the node's path
#       that the hook file names) and the hook file to HOOKS_DIR (the node's
#       /etc/containers/oci/hooks.d, which CRI-O and podman read), each replaced atomically:
#       a hook that runs meanwhile runs the old or the new file, never half of one.
#   node.sh agent CONFIG POLICY_DIR
#       Runs `mcpwarden agent --config CONFIG` and reloads its policies (SIGHUP) when the
#       ConfigMap mounted at POLICY_DIR changes: kubelet writes a new version of the files and
#       then points POLICY_DIR/..data at it, so a new ..data target is a new version. Checked
#       every MCPWARDEN_RELOAD_SECONDS (10). SIGTERM ends the agent; its status is ours.
#
# MCPWARDEN (default /opt/mcpwarden/bin/mcpwarden) names the binary, MCPWARDEN_HOOK_FILE
# (default: where the image's cmake --install put it) the hook file.
set -eu
PREFIX=/opt/mcpwarden
MCPWARDEN=${MCPWARDEN:-$PREFIX/bin/mcpwarden}
HOOK_FILE=${MCPWARDEN_HOOK_FILE:-$PREFIX/share/containers/oci/hooks.d/mcpwarden.json}

install_files() {
  root=$1 hooks=$2
  mkdir -p "$root$PREFIX/bin" "$hooks"
  cp "$MCPWARDEN" "$root$PREFIX/bin/.mcpwarden.new"
  chmod 0755 "$root$PREFIX/bin/.mcpwarden.new"
  mv -f "$root$PREFIX/bin/.mcpwarden.new" "$root$PREFIX/bin/mcpwarden"
  cp "$HOOK_FILE" "$hooks/.mcpwarden.json.new"
  mv -f "$hooks/.mcpwarden.json.new" "$hooks/mcpwarden.json"
  echo "node.sh: installed $PREFIX/bin/mcpwarden and $hooks/mcpwarden.json on the node" >&2
}

run_agent() {
  config=$1 dir=$2 interval=${MCPWARDEN_RELOAD_SECONDS:-10}
  "$MCPWARDEN" agent --config "$config" &
  agent=$!
  sleeper=""
  trap 'kill -TERM $agent $sleeper 2>/dev/null || true' TERM INT
  last=$(readlink "$dir/..data" 2>/dev/null || true)
  # kill -0 also answers for a zombie: the wait below reaps the agent once it has ended.
  while kill -0 "$agent" 2>/dev/null; do
    sleep "$interval" &
    sleeper=$!
    wait "$sleeper" || true
    sleeper=""
    now=$(readlink "$dir/..data" 2>/dev/null || true)
    if [ "$now" != "$last" ]; then
      echo "node.sh: the policies in $dir changed (..data -> $now): reloading the agent's policies" >&2
      kill -HUP "$agent" 2>/dev/null || true
      last=$now
    fi
  done
  status=0
  wait "$agent" || status=$?
  exit "$status"
}

case "${1:-}" in
  install) [ $# = 3 ] || { echo "usage: node.sh install HOST_ROOT HOOKS_DIR" >&2; exit 64; }; install_files "$2" "$3" ;;
  agent) [ $# = 3 ] || { echo "usage: node.sh agent CONFIG POLICY_DIR" >&2; exit 64; }; run_agent "$2" "$3" ;;
  *) echo "usage: node.sh install HOST_ROOT HOOKS_DIR | node.sh agent CONFIG POLICY_DIR" >&2; exit 64 ;;
esac
