#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The .deb as a user gets it: builds SOURCE for prefix /usr into WORK/build, `cpack -G DEB`,
# checks the package's Depends and contents, then installs it with
# `apt-get install ./mcpwarden_*.deb` into a clean Debian 12 root (debootstrap --variant=minbase;
# the root cached as WORK/bookworm-minbase-root.tgz, so only the first run downloads) with /proc,
# /sys (cgroups, bpffs) and /dev of this host, and runs there `mcpwarden --version`,
# `mcpwarden policy validate github` (the installed policies, by name) and a sandboxed
# `mcpwarden run -- /bin/true` (under the kernel tests' lock). Then `apt-get remove` leaves
# only the policies (conffiles) and `apt-get purge` leaves nothing of the package's file list.
# Root only. The root and its mounts are removed at exit.
#
#   tests/package/deb_test.sh SOURCE WORK [CMAKE_ARGS...]
set -euo pipefail
src=$1 work=$2
shift 2
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || fail "debootstrap missing: scripts/setup.sh"
MIRROR=${MCPWARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOCK=/tmp/mcpwarden-kernel.lock
mkdir -p "$work"
root=$(mktemp -d "$work/root.XXXXXX")
cleanup() {
  for m in dev sys proc; do
    if mountpoint -q "$root/$m"; then umount -R "$root/$m" || umount -R -l "$root/$m"; fi
  done
  if findmnt -rn -o TARGET | grep -q "^$root"; then echo "deb_test: mounts left under $root" >&2; return; fi
  rm -rf "$root"
}
trap cleanup EXIT

# --- build and package -------------------------------------------------------------------
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX=/usr "$@" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/build" -j"${JOBS:-2}" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; fail "build"; }
rm -f "$work"/build/mcpwarden_*.deb
(cd "$work/build" && cpack -G DEB) >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/build/mcpwarden_*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
echo "deb_test: $(basename "$deb"): Depends: $depends"
[[ "$depends" == *libc6* ]] || fail "Depends names no libc6: '$depends'"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/mcpwarden ./etc/mcpwarden/policies/github.yaml ./lib/systemd/system/mcpwarden-agent.service \
         ./usr/share/man/man1/mcpwarden.1 ./usr/share/man/man8/mcpwarden-agent.8 \
         ./usr/share/doc/mcpwarden/examples/agent.yaml; do
  grep -qx -- "$f" <<<"$contents" || fail "$f not in the package"
done
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/mcpwarden/policies/github.yaml "$work/control/conffiles" || fail "policies are not conffiles"
unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/mcpwarden-agent.service)
grep -q '^ExecStart=/usr/bin/mcpwarden ' <<<"$unit" || fail "the unit does not start /usr/bin/mcpwarden"

# --- a clean Debian 12 root ----------------------------------------------------------------
# The installed root is cached as a tarball: debootstrap downloads and installs (minutes),
# unpacking the tarball takes seconds.
tgz=$work/bookworm-minbase-root.tgz
if [ ! -s "$tgz" ]; then
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  tar -C "$root" --numeric-owner -czf "$tgz.tmp" . && mv "$tgz.tmp" "$tgz"
else
  tar -C "$root" --numeric-owner -xzf "$tgz"
fi
# A throw-away root: dpkg need not fsync.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/mcpwarden-test-unsafe-io"
mount -t proc proc "$root/proc"
for m in sys dev; do mount --rbind "/$m" "$root/$m"; mount --make-rslave "$root/$m"; done
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

cp "$deb" "$root/tmp/"
in_root apt-get install -y "./tmp/$(basename "$deb")" >"$work/apt-install.log" 2>&1 \
  || { cat "$work/apt-install.log"; fail "apt-get install ./$(basename "$deb")"; }
mapfile -t files < <(in_root dpkg-query -L mcpwarden)
mapfile -t conffiles < <(in_root dpkg-query -W -f='${Conffiles}\n' mcpwarden | awk 'NF {print $1}')

version=$(in_root mcpwarden --version) || fail "mcpwarden --version"
[ "$version" = "mcpwarden $(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$work/build/CMakeCache.txt")" ] \
  || fail "mcpwarden --version printed '$version'"
in_root mcpwarden policy validate github >"$work/validate.log" 2>&1 || { cat "$work/validate.log"; fail "policy validate github"; }
grep -q "^/etc/mcpwarden/policies/github.yaml: ok" "$work/validate.log" \
  || { cat "$work/validate.log"; fail "policy validate github did not read /etc/mcpwarden/policies/github.yaml"; }
# A sandbox from the installed binary: its cgroup, BPF programs and pins are this host's.
flock "$LOCK" chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin mcpwarden run -- /bin/true \
  >"$work/run.log" 2>&1 || { cat "$work/run.log"; fail "mcpwarden run -- /bin/true in the root"; }

# --- removal --------------------------------------------------------------------------------
in_root apt-get remove -y mcpwarden >"$work/apt-remove.log" 2>&1 || { cat "$work/apt-remove.log"; fail "apt-get remove"; }
for f in "${files[@]}"; do
  [ -d "$root$f" ] && continue  # directories shared with other packages (/usr/bin) stay
  is_conf=0
  for c in "${conffiles[@]}"; do [ "$c" = "$f" ] && is_conf=1; done
  if [ "$is_conf" = 0 ] && [ -e "$root$f" ]; then fail "$f left after apt-get remove"; fi
done
in_root apt-get purge -y mcpwarden >>"$work/apt-remove.log" 2>&1 || { cat "$work/apt-remove.log"; fail "apt-get purge"; }
for f in "${files[@]}"; do
  if [ -e "$root$f" ] && [ ! -d "$root$f" ]; then fail "$f left after apt-get purge"; fi
done
for d in /etc/mcpwarden /usr/share/doc/mcpwarden /usr/libexec/mcpwarden; do
  [ ! -e "$root$d" ] || fail "$d left after apt-get purge"
done
if in_root dpkg-query -L mcpwarden >/dev/null 2>&1; then fail "dpkg still lists mcpwarden's files"; fi
echo "deb_test: PASS (${#files[@]} paths installed and removed; $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB)"
