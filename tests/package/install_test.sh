#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A packager's build: configures SOURCE with the distribution's defaults (Release, no tests,
# shared libraries unless MCPWARDEN_STATIC_DEPS is given) into WORK/build, builds it, and checks
# that no test, test library or helper was built; then `cmake --install --prefix WORK/root`
# and checks where each file went: the policies under etc/mcpwarden, the unit with the real
# bindir, the man pages, the docs and the example configuration.
#
#   tests/package/install_test.sh SOURCE WORK [CMAKE_ARGS...]
set -euo pipefail
src=$1 work=$2
shift 2
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
rm -rf "$work/root"
mkdir -p "$work"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF "$@" >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; fail "configure"; }
grep -q '^BUILD_TESTING:BOOL=OFF' "$work/build/CMakeCache.txt" || fail "BUILD_TESTING is not OFF"
grep -qE '^(GTest_DIR|LIBURING_STATIC|benchmark_DIR)[:=]' "$work/build/CMakeCache.txt" \
  && fail "GTest, liburing or benchmark was looked for with BUILD_TESTING=OFF"
cmake --build "$work/build" -j"${JOBS:-2}" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; fail "build"; }
for t in unit_tests kernel_tests cli_tests netprobe dnsstub bench_run; do
  [ ! -e "$work/build/bin/$t" ] || fail "$t was built with BUILD_TESTING=OFF"
done
[ ! -e "$work/build/CTestTestfile.cmake" ] || fail "tests were registered with BUILD_TESTING=OFF"

cmake --install "$work/build" --prefix "$work/root" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "install"; }
r=$work/root
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$work/build/CMakeCache.txt")
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$work/build/CMakeCache.txt")
# Nothing may go outside the prefix given to --install.
grep -E '^-- (Installing|Up-to-date): ' "$work/install.log" | grep -v " $r/" && fail "files installed outside $r"
for f in bin/mcpwarden libexec/mcpwarden/mcpwarden-example-server \
         etc/mcpwarden/policies/github.yaml lib/systemd/system/mcpwarden-agent.service \
         share/man/man1/mcpwarden.1 share/man/man8/mcpwarden-agent.8 \
         share/doc/mcpwarden/README.md share/doc/mcpwarden/LICENSE share/doc/mcpwarden/security.md \
         share/doc/mcpwarden/examples/agent.yaml; do
  [ -s "$r/$f" ] || fail "$f not installed"
done
n_src=$(ls "$src"/policies/*.yaml | wc -l)
n_dst=$(ls "$r"/etc/mcpwarden/policies/*.yaml | wc -l)
[ "$n_src" = "$n_dst" ] || fail "$n_dst of $n_src policies installed"
unit=$r/lib/systemd/system/mcpwarden-agent.service
grep -qx "ExecStart=$prefix/bin/mcpwarden --log-level info agent --config $prefix/etc/mcpwarden/agent.yaml --log-json" "$unit" \
  || { grep ExecStart "$unit"; fail "the unit does not start $prefix/bin/mcpwarden"; }
grep -q '@' "$unit" && fail "unconfigured @VARIABLE@ left in the unit"
# The binary is told the configured paths and the one version.
[ "$("$r/bin/mcpwarden" --version)" = "mcpwarden $version" ] || fail "--version is not 'mcpwarden $version'"
run_help=$("$r/bin/mcpwarden" run --help)
[[ "$run_help" == *"$prefix/etc/mcpwarden/policies"* ]] || fail "run --help does not name $prefix/etc/mcpwarden/policies"
"$r/bin/mcpwarden" policy validate "$r/etc/mcpwarden/policies/github.yaml" >/dev/null || fail "policy validate of the installed github policy"
# The man pages are the binary's help: every subcommand, and no roff errors.
for cmd in run call attach policy agent; do
  grep -q "^\.SS \"mcpwarden $cmd\"" "$r/share/man/man1/mcpwarden.1" || fail "mcpwarden.1 has no section for $cmd"
done
grep -q -- '--config' "$r/share/man/man8/mcpwarden-agent.8" || fail "mcpwarden-agent.8 lacks the agent's options"
if command -v man >/dev/null; then
  for m in man1/mcpwarden.1 man8/mcpwarden-agent.8; do
    warn=$(MANWIDTH=100 man --warnings -l "$r/share/man/$m" 2>&1 >/dev/null || true)
    [ -z "$warn" ] || fail "$m: $warn"
  done
fi
rm -rf "$r"
echo "install_test: PASS ($prefix: $(grep -cE '^-- (Installing|Up-to-date): ' "$work/install.log") files)"
