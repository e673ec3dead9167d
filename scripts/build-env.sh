# SPDX-License-Identifier: Apache-2.0
# Sourced by the build scripts (build.sh, ci-sanitize.sh, ci-fuzz.sh, the release stage):
# compiles through ccache when it is installed (scripts/setup.sh installs it), so that a second
# build of the same sources, in this checkout or another clone on the machine, takes minutes
# instead of a quarter of an hour. Paths are taken relative to the checkout (CCACHE_BASEDIR),
# so two clones at different places share the cache. MCPWARDEN_CCACHE=0 turns it off.
if [ "${MCPWARDEN_CCACHE:-1}" != 0 ] && command -v ccache >/dev/null 2>&1; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  CCACHE_BASEDIR=$(pwd -P)
  export CCACHE_BASEDIR CCACHE_NOHASHDIR=true
  export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
fi
