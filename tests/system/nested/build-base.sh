#!/bin/bash
# Builds (and caches) the outer machine of vmkit's nested whole-machine tests: a Debian kernel
# (the one guest/build.sh downloads) and a base initramfs with busybox, the kvm modules
# (irqbypass, kvm, ccp, kvm-amd) and vmkit's default guest under /usr/share/vmkit/guest
# (its kernel, initramfs and root disk image rootfs.ext4).
#
#   tests/system/nested/build-base.sh [DIR]      (DIR defaults to build/nested)
#
# Writes DIR/vmlinuz, DIR/base.cpio.gz and DIR/KERNEL_RELEASE; prints nothing else on stdout.
# run.sh appends vmkit and the script to run as a second archive.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=${1:-$root/build/nested}
cache="${VMKIT_GUEST_CACHE:-$root/guest/cache}"
guest_out="$root/guest/out"

log() { echo "build-base.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The inner guest, and with it the cached kernel and busybox packages.
"$root/guest/build.sh" --out "$guest_out" >&2

krel=$(cat "$guest_out/KERNEL_RELEASE")
kver=$(cat "$guest_out/VERSION")
kdeb="$cache/linux-image-${krel}_${kver//:/%3a}_amd64.deb"
kdir="$cache/unpacked/$(basename "$kdeb" .deb)"
bbdeb=$(find "$cache" -maxdepth 1 -name 'busybox-static_*_amd64.deb' | sort -V | tail -n 1)
[ -n "$bbdeb" ] || die "guest/build.sh left no busybox-static package in $cache"
bbdir="$cache/unpacked/$(basename "$bbdeb" .deb)"
moddir=
for d in "$kdir/lib/modules/$krel" "$kdir/usr/lib/modules/$krel"; do
    [ -s "$d/modules.dep" ] && moddir=$d && break
done
[ -n "$moddir" ] || die "guest/build.sh left no unpacked modules for $krel in $kdir"
vmlinuz_src="$guest_out/vmlinuz" # the same kernel package, so the same bzImage
[ -x "$bbdir/bin/busybox" ] || die "no busybox in $bbdir"

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

inputs=("$here/build-base.sh" "$here/outer-init" "$root/guest/modules.sh" "$guest_out/vmlinuz"
    "$guest_out/initramfs.img" "$guest_out/rootfs.ext4" "$kdeb" "$bbdeb")
outputs=("$dir/vmlinuz" "$dir/base.cpio.gz" "$dir/KERNEL_RELEASE")
fresh=1
for o in "${outputs[@]}"; do
    [ -s "$o" ] || { fresh=0; break; }
    for i in "${inputs[@]}"; do
        [ "$i" -nt "$o" ] && { fresh=0; break 2; }
    done
done
if [ "$fresh" -eq 1 ]; then
    log "up to date: $dir"
    exit 0
fi

# shellcheck source=guest/modules.sh
. "$root/guest/modules.sh"

stage=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-outer.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,var/log}
cp "$bbdir/bin/busybox" "$stage/bin/busybox"
"$stage/bin/busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done
# virtio_pci and virtio_blk for run.sh's VMKIT_NESTED_DISK, virtio_net for its
# VMKIT_NESTED_HOSTFWD, tun for the cases' tap device.
copy_modules "$moddir" "$stage/lib/modules/$krel" irqbypass kvm ccp kvm_amd virtio_pci \
    virtio_blk virtio_net tun >&2
for m in kvm kvm_amd ccp irqbypass; do
    find "$stage/lib/modules/$krel" -name "${m//_/[-_]}.ko" | grep -q . ||
        die "module $m missing from the outer initramfs"
done
install -m 0755 "$here/outer-init" "$stage/init"
mkdir -p "$stage/usr/share/vmkit/guest"
cp "$guest_out/vmlinuz" "$guest_out/initramfs.img" "$guest_out/rootfs.ext4" \
    "$guest_out/VERSION" "$guest_out/KERNEL_RELEASE" "$stage/usr/share/vmkit/guest/"
install_initramfs "$stage" "$vmlinuz_src" "$dir" base.cpio.gz 6
echo "$krel" >"$dir/KERNEL_RELEASE"
log "built $dir: Linux $krel, base initramfs $(du -k "$dir/base.cpio.gz" | cut -f1) KiB"
