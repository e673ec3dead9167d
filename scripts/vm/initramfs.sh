#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Packs the VM stage's initramfs: busybox, scripts/vm/init as /init, the test programs of a
# build tree and the shared libraries they need.
#
#   scripts/vm/initramfs.sh BUILD_DIR OUTPUT [GTEST_FILTER [COMMAND]]
#
# The programs keep their absolute host paths (BUILD_DIR/bin/...) because kernel_tests has
# them compiled in (MCPWARDEN_BIN, MCPWARDEN_BIN_DIR); the source tree's policies/ and
# deploy/kubernetes/node.sh come along at their host path too (MCPWARDEN_SOURCE_DIR). Debug info is stripped to keep the image
# small: the guest reads the whole image into RAM.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
BUILD=$(realpath "$1")
OUT=$2
FILTER=${3:-}
COMMAND=${4:-}

die() { echo "scripts/vm/initramfs.sh: $*" >&2; exit 1; }
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: apt-get install busybox-static"
ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked: apt-get install busybox-static"
command -v cpio >/dev/null || die "cpio missing: apt-get install cpio"
[ -x "$BUILD/bin/kernel_tests" ] || die "$BUILD/bin/kernel_tests missing: build first (scripts/build.sh)"
[ -x "$BUILD/bin/mcpwarden" ] || die "$BUILD/bin/mcpwarden missing: build first (scripts/build.sh)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"  # the root directory: the sandbox user must traverse it
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,vm,var/lib/mcpwarden,usr/bin,usr/sbin}
chmod 1777 "$stage/tmp"
chmod 700 "$stage/root"
cp "$BUSYBOX" "$stage/bin/busybox"
install -m 0755 "$SRC/scripts/vm/init" "$stage/init"

cat > "$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > "$stage/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > "$stage/etc/nsswitch.conf"
# useradd's defaults and the files it edits besides passwd and group.
[ -f /etc/login.defs ] && cp /etc/login.defs "$stage/etc/login.defs"
printf 'root:*:19000:0:99999:7:::\n' > "$stage/etc/shadow"
printf 'root:*::\nnogroup:*::\n' > "$stage/etc/gshadow"
chmod 600 "$stage/etc/shadow" "$stage/etc/gshadow"
# Any resolver address will do: the sandbox's DNS is redirected to mcpwarden's resolver.
printf 'nameserver 127.0.0.53\n' > "$stage/etc/resolv.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$stage/etc/hosts"
echo mcpwarden-vm > "$stage/etc/hostname"

# Every program of the build's bin/ that the kernel tests may start, except the big unit-test
# and benchmark binaries.
mkdir -p "$stage$BUILD/bin"
progs=()
for f in "$BUILD"/bin/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  case "$(basename "$f")" in unit_tests|bench_run|*_fuzz|*_fuzz_replay) continue ;; esac
  strip --strip-debug -o "$stage$f" "$f" 2>/dev/null || cp "$f" "$stage$f"
  progs+=("$f")
done
# Host tools the kernel tests call that busybox lacks or implements only in part (network
# namespaces, nsenter/setpriv options, the agent tests' useradd/userdel), at their host paths,
# which come first in PATH for programs that exec by name (busybox sh itself runs its own
# applets first), and runc (tests/kernel/oci_runc_test.cpp: the OCI hook under a real runtime).
for tool in ip nsenter unshare setpriv sysctl useradd userdel runc; do
  f=$(command -v "$tool" 2>/dev/null) || continue
  f=$(realpath "$f")
  mkdir -p "$stage$(dirname "$f")"
  cp "$f" "$stage$f"
  progs+=("$f")
done
# Kernel modules the tests need (the guest loads them at boot; it has no module autoloading):
# VM_MODULES names them, VM_MODULE_DIR is the unpacked kernel package's lib/modules/<version>.
mkdir -p "$stage/lib/modules"
for m in ${VM_MODULES:-}; do
  ko=$(find "${VM_MODULE_DIR:-/nonexistent}" -name "$m.ko" 2>/dev/null | head -n1)
  [ -n "$ko" ] || die "kernel module $m.ko not found under ${VM_MODULE_DIR:-(no module dir)}"
  cp "$ko" "$stage/lib/modules/"
  echo "$m" >> "$stage/lib/modules/load"
done

# Extra host programs or files for debugging (scripts/vm/run.sh --with PATH), at their paths.
for f in ${VM_EXTRA_FILES:-}; do
  [ -e "$f" ] || die "--with $f: no such file"
  mkdir -p "$stage$(dirname "$f")"
  cp -rL "$f" "$stage$f"
  [ -f "$f" ] && [ -x "$f" ] && progs+=("$f")
done
if [ -d "$SRC/policies" ]; then
  mkdir -p "$stage$SRC"
  cp -r "$SRC/policies" "$stage$SRC/"
fi
# The DaemonSet's node script (tests/kernel/kubernetes_node_test.cpp runs it).
if [ -f "$SRC/deploy/kubernetes/node.sh" ]; then
  mkdir -p "$stage$SRC/deploy/kubernetes"
  cp "$SRC/deploy/kubernetes/node.sh" "$stage$SRC/deploy/kubernetes/"
fi

# Shared libraries (and the dynamic loader) at the paths ldd names.
for lib in $(ldd "${progs[@]}" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done

cat > "$stage/vm/config" <<EOF
KERNEL_TESTS='$BUILD/bin/kernel_tests'
GTEST_FILTER='$FILTER'
SOURCE_DIR='$SRC'
EOF
# The command goes in verbatim (no shell expansion here).
printf 'COMMAND=%q\n' "$COMMAND" >> "$stage/vm/config"

mkdir -p "$(dirname "$OUT")"
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet --owner=0:0) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
