#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is needed, builds, and runs the bundled example MCP server under the example
# policy, speaking MCP to it on stdin: initialize, list its tools, call some of them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
if ! mountpoint -q /sys/fs/bpf; then mount -t bpf bpf /sys/fs/bpf; fi
# The server runs as an unprivileged user, so it must live where that user can reach it.
cmake --install build --prefix /usr/local >/dev/null
SERVER=/usr/local/libexec/mcpwarden/mcpwarden-example-server

session() {
  echo '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}'
  echo '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  echo '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
  echo '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
  echo '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from inside the sandbox"}}}'
  echo '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"connect","arguments":{"host":"127.0.0.1","port":22}}}'
}

echo "== mcpwarden run --policy policies/example.yaml -- $SERVER" >&2
session | build/bin/mcpwarden run --policy policies/example.yaml --report - -- "$SERVER"
