#!/bin/bash
# Builds the QEMU that emulates the nested tests' outer machine: Debian's own qemu source
# (the version installed), with vmkit's patches in outer-qemu/*.patch, configured for
# x86_64-softmmu with TCG only. Debian's build of the same source has races in its SVM
# emulation (outer-qemu/svm-interrupt-request-lock.patch says which) that make inner
# guests stall or reset now and then; boot_census.sh measures the difference.
#
#   tests/system/nested/build-outer-qemu.sh [DIR]   (DIR: build/nested/outer-qemu)
#
# Prints the path of the built qemu-system-x86_64 on stdout (nothing else). Cached: nothing
# is done when DIR holds a build of the same source version and patches. Needs the Debian
# source (fetched with apt-get source through a private deb-src list, so the host's apt
# configuration is left alone) and the build dependencies below; takes a few minutes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
# Absolute: apt-get is given paths inside it and resolves relative ones against /etc/apt.
dir=$(realpath -m "${1:-$root/build/nested/outer-qemu}")
deps=(dpkg-dev libglib2.0-dev libpixman-1-dev libfdt-dev libslirp-dev ninja-build pkg-config python3
    flex bison gcc)
# TCG only, and user networking (setup.sh forwards a host port through the outer machine).
configure_opts=(--target-list=x86_64-softmmu --without-default-features --enable-tcg --disable-kvm
    --enable-slirp --disable-werror --disable-docs --prefix=/usr
    --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu)

log() { echo "build-outer-qemu.sh: $*" >&2; }

version=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)
if [ -z "$version" ]; then
    log "qemu-system-x86 is not installed (its version says which source to build)"
    exit 2
fi
stamp="$version $({ cat "$here"/outer-qemu/*.patch; echo "${configure_opts[*]}"; } | sha256sum | cut -c1-16)"
bin=$dir/bin/qemu-system-x86_64
if [ -x "$bin" ] && [ "$(cat "$dir/STAMP" 2>/dev/null)" = "$stamp" ]; then
    echo "$bin"
    exit 0
fi

missing=()
for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2
fi

work=$dir/work
rm -rf "$work"
mkdir -p "$work/apt/parts" "$work/apt/lists/partial"
# A deb-src list of our own, for the suites the host's deb lines name.
src_list=$work/apt/parts/vmkit-src.sources
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f"
    echo
done >"$src_list"
if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$work/apt/parts/vmkit-src.list"
fi
apt_opts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$work/apt/parts"
    -o "Dir::State::Lists=$work/apt/lists" -o APT::Sandbox::User=root)
log "fetching the source of qemu $version"
# A repository in the host's list that has no sources (or cannot be reached) fails the
# update without spoiling the lists of the others: what matters is whether the source
# of qemu can be fetched, so only that step decides.
apt-get "${apt_opts[@]}" update -q >"$work/apt.log" 2>&1 ||
    log "apt-get update (deb-src) reported errors; trying the lists it did fetch"
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only "qemu=$version") >>"$work/apt.log" 2>&1 ||
    { grep -E '^(E|W|Err):' "$work/apt.log" | tail -n 20 >&2; log "apt-get source qemu=$version failed"; exit 1; }
(cd "$work" && dpkg-source -x qemu_*.dsc src) >"$work/unpack.log" 2>&1 ||
    { tail -n 20 "$work/unpack.log" >&2; log "dpkg-source -x failed"; exit 1; }

for p in "$here"/outer-qemu/*.patch; do
    log "applying $(basename "$p")"
    patch -d "$work/src" -p1 --quiet <"$p" || { log "$(basename "$p") does not apply"; exit 1; }
done

log "building (x86_64-softmmu, TCG; a few minutes)"
mkdir -p "$work/src/build"
(cd "$work/src/build" && ../configure "${configure_opts[@]}") \
    >"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; log "configure failed"; exit 1; }
ninja -C "$work/src/build" qemu-system-x86_64 >"$work/build.log" 2>&1 ||
    { grep -m 20 -E 'error|Error' "$work/build.log" >&2; log "the build failed ($work/build.log)"; exit 1; }
# QEMU finds its data relative to its binary (bin/../share/qemu ...): Debian's files.
mkdir -p "$dir/bin" "$dir/share" "$dir/lib/ipxe"
ln -sfn /usr/share/qemu "$dir/share/qemu"
ln -sfn /usr/share/seabios "$dir/share/seabios"
ln -sfn /usr/lib/ipxe/qemu "$dir/lib/ipxe/qemu"
cp "$work/src/build/qemu-system-x86_64" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$stamp" >"$dir/STAMP"
rm -rf "$work"
log "built $bin"
echo "$bin"
