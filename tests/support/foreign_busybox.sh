#!/bin/bash
# Prints the path of Debian's busybox-static for arm64 (a static aarch64 binary: what the
# translator share's tests run in an x86-64 guest), fetched once with apt-get download and
# unpacked (never installed) into $VMKIT_GUEST_CACHE/foreign, else guest/cache/foreign. The
# first time adds arm64 to dpkg's architectures (as the issue's recipe does), which needs root.
# Fails, saying why on stderr, when it cannot.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${VMKIT_GUEST_CACHE:-$root/guest/cache}/foreign
out=$cache/busybox-arm64
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
download() { (cd "$cache" && apt-get download -q busybox-static:arm64 >/dev/null 2>&1); }
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    [ "$(id -u)" = 0 ] || { echo "foreign_busybox.sh: needs root once: dpkg --add-architecture arm64" >&2; exit 1; }
    dpkg --add-architecture arm64
    apt-get update -q >/dev/null 2>&1 || true
fi
download || { apt-get update -q >/dev/null 2>&1 || true; download; } || {
    echo "foreign_busybox.sh: apt-get download busybox-static:arm64 failed (no network?)" >&2
    exit 1
}
deb=$(find "$cache" -maxdepth 1 -name 'busybox-static_*_arm64.deb' | sort -V | tail -n 1)
rm -rf "$cache/unpacked"
dpkg-deb -x "$deb" "$cache/unpacked"
install -m 0755 "$cache/unpacked/bin/busybox" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
