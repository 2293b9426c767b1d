#!/bin/bash
# Builds vmkit's default guest from Debian packages: a stock kernel (the package behind
# linux-image-amd64), a busybox initramfs that loads the kernel's virtio modules, and a root
# disk holding the same busybox system for the initramfs to boot from (root=/dev/vda).
#
#   guest/build.sh [--out DIR]
#
# Output (DIR, default guest/out): vmlinuz, initramfs.img (gzip'd newc cpio), rootfs.ext4
# (a sparse 64 MiB ext4 image labelled vmkit-root, made by mkfs.ext4 -d without mounting
# anything), VERSION (the kernel package's version) and KERNEL_RELEASE (its `uname -r`).
# The .deb files and their unpacked trees are cached in guest/cache (or $VMKIT_GUEST_CACHE);
# tests/system/nested/build-base.sh takes its outer kernel and kvm modules from there too.
# Nothing is installed and no root is needed, except for `apt-get update` when the package
# lists are missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/out"
cache="${VMKIT_GUEST_CACHE:-$here/cache}"

usage() {
    echo "usage: $0 [--out DIR]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    -h | --help) usage ;;
    *) echo "guest/build.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

# Drivers the guest loads at boot: the virtio devices vmkit offers (virtio_gpu brings DRM, so
# fbcon shows the console on a virtio display), plus the ACPI power
# button and evdev so `vmkit` request_stop (a power-button press) reaches acpid.
# ext4 and the crc32c it checksums with mount the root disk. xhci_pci, usb_storage and sd_mod
# show USB drives on vmkit's xHCI controller as /dev/sdX. Booted through firmware
# (--bootloader efi), efivarfs shows the firmware's variables, vfat (with the code page and
# character set it mounts with) reads an EFI system partition and isofs an installer ISO.
# Their dependencies (jbd2, mbcache, crc16, fat, ...) come from modules.dep.
GUEST_MODULES=(virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
    virtio_blk virtio_net failover net_failover virtio_console virtio_rng virtio_balloon
    virtio_input vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
    fuse virtiofs binfmt_misc virtio_gpu button evdev ext4 crc32c_generic crc32c_intel
    xhci_pci usb_storage sd_mod efivarfs vfat nls_cp437 nls_ascii isofs)

log() { echo "guest/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb cpio gzip depmod flock; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found (install: apt-get install apt dpkg cpio gzip kmod util-linux)"
done
# mkfs.ext4 -d (e2fsprogs 1.43 or later) fills the root disk from a directory; debugfs gives
# its files to root when the build does not run as root.
PATH=$PATH:/sbin:/usr/sbin
for tool in mkfs.ext4 debugfs; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install: apt-get install e2fsprogs)"
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

mkdir -p "$cache" "$out"
exec 9>"$cache/.lock"
flock 9 # one build at a time: meson may run tests while setup.sh builds

# Package name and candidate version, from apt's lists (updated once if they are missing).
apt_updated=0
apt_update_once() {
    [ "$apt_updated" -eq 0 ] || return 1
    apt_updated=1
    log "package lists missing or stale: running apt-get update"
    as_root apt-get update -qq >&2
}

# (The awk programs read to the end: one that exits early can kill the writer with SIGPIPE,
# which pipefail makes a failure.)
candidate_version() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && !n++ { print $2 }'
}

resolve_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ && !n++ { print $2 }'
}

# deb_path NAME VERSION: where `apt-get download` puts it (an epoch's ':' becomes %3a).
deb_path() {
    echo "$cache/${1}_${2//:/%3a}_amd64.deb"
}

# apt warns on every download as root that it cannot drop privileges to _apt; say nothing.
apt_download() {
    apt-get download -q "$1" 2>&1 | grep -v 'unsandboxed as root' >&2
    return "${PIPESTATUS[0]}"
}

# fetch NAME: prints the path of the cached .deb of NAME's candidate version.
fetch() {
    local name=$1 ver deb
    ver=$(candidate_version "$name")
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        apt_update_once || die "apt knows no package '$name'"
        ver=$(candidate_version "$name")
        if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then die "apt knows no package '$name'"; fi
    fi
    deb=$(deb_path "$name" "$ver")
    if [ ! -s "$deb" ]; then
        log "downloading $name $ver"
        if ! (cd "$cache" && apt_download "$name=$ver"); then
            apt_update_once || die "apt-get download $name=$ver failed"
            (cd "$cache" && apt_download "$name=$ver") ||
                die "apt-get download $name=$ver failed"
        fi
        [ -s "$deb" ] || die "apt-get download did not leave $deb"
    fi
    echo "$deb"
}

# Offline and without lists, fall back to what the cache already holds.
cached_deb() {
    find "$cache" -maxdepth 1 -name "$1_*_amd64.deb" | sort -V | tail -n 1
}

kpkg=$(resolve_kernel_package || true)
if [ -z "$kpkg" ]; then
    apt_update_once || true
    kpkg=$(resolve_kernel_package || true)
fi
kdeb=
bbdeb=
if [ -n "$kpkg" ]; then
    kdeb=$(fetch "$kpkg") || kdeb=
    bbdeb=$(fetch busybox-static) || bbdeb=
fi
# Offline: whatever the cache holds will do.
if [ -z "$kdeb" ]; then
    kdeb=$(cached_deb 'linux-image-[0-9]*')
    [ -n "$kdeb" ] || die "cannot get the kernel package of linux-image-amd64; $cache has none"
    log "using the cached $(basename "$kdeb")"
fi
if [ -z "$bbdeb" ]; then
    bbdeb=$(cached_deb busybox-static)
    [ -n "$bbdeb" ] || die "cannot get busybox-static, and $cache has none"
    log "using the cached $(basename "$bbdeb")"
fi

# unpack DEB: prints the directory holding its unpacked files (cached).
unpack() {
    local dir
    dir="$cache/unpacked/$(basename "$1" .deb)"
    if [ ! -e "$dir/.unpacked" ] || [ "$1" -nt "$dir/.unpacked" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$1" "$dir"
        touch "$dir/.unpacked"
    fi
    echo "$dir"
}

kdir=$(unpack "$kdeb")
bbdir=$(unpack "$bbdeb")
kver=$(dpkg-deb -f "$kdeb" Version)

# Debian's packages ship lib/modules (usr/lib/modules once /usr is merged in the package).
moddir=
for d in "$kdir"/lib/modules/* "$kdir"/usr/lib/modules/*; do
    [ -d "$d/kernel" ] && moddir=$d && break
done
[ -n "$moddir" ] || die "no lib/modules/<release> in $(basename "$kdeb")"
krel=$(basename "$moddir")
vmlinuz_src=
for f in "$kdir/boot/vmlinuz-$krel" "$kdir/usr/lib/linux-image-$krel/vmlinuz"; do
    [ -f "$f" ] && vmlinuz_src=$f && break
done
[ -n "$vmlinuz_src" ] || die "no vmlinuz for $krel in $(basename "$kdeb")"
busybox_src="$bbdir/bin/busybox"
[ -x "$busybox_src" ] || die "no bin/busybox in $(basename "$bbdeb")"

# The package ships no modules.dep (depmod makes it at install time): make one once.
if [ ! -s "$moddir/modules.dep" ]; then
    depmod -b "${moddir%/lib/modules/*}" "$krel" ||
        die "depmod failed on $(basename "$kdeb")"
fi

# Outputs newer than every input: nothing to do.
inputs=("$kdeb" "$bbdeb" "$here/build.sh" "$here/modules.sh" "$here/init" "$here/inittab"
    "$here/guest-shell" "$here/shutdown" "$here/acpid.conf" "$here/power-button"
    "$here/udhcpc.script")
outputs=("$out/vmlinuz" "$out/initramfs.img" "$out/rootfs.ext4" "$out/VERSION"
    "$out/KERNEL_RELEASE")
up_to_date=1
for o in "${outputs[@]}"; do
    [ -s "$o" ] || { up_to_date=0; break; }
    for i in "${inputs[@]}"; do
        [ "$i" -nt "$o" ] && { up_to_date=0; break 2; }
    done
done
if [ "$up_to_date" -eq 1 ] && [ "$(cat "$out/VERSION")" = "$kver" ]; then
    log "up to date: $out (Linux $krel, package $kver)"
    exit 0
fi

# copy_modules, shared with tests/system/nested/build-base.sh.
# shellcheck source=guest/modules.sh
. "$here/modules.sh"

stage=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-guest.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/acpi,proc,sys,dev,run,tmp,root,var/log}
cp "$busybox_src" "$stage/bin/busybox"
# One link per applet, so scripts and the shell find them without `busybox --install`.
"$busybox_src" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done
[ -e "$stage/bin/sh" ] || die "busybox has no sh applet"

copy_modules "$moddir" "$stage/lib/modules/$krel" "${GUEST_MODULES[@]}"

install -m 0755 "$here/init" "$stage/init"
install -m 0644 "$here/acpid.conf" "$stage/etc/acpid.conf"
install -m 0755 "$here/power-button" "$stage/etc/acpi/power-button"
install -m 0644 "$here/inittab" "$stage/etc/inittab"
install -m 0755 "$here/guest-shell" "$stage/etc/guest-shell"
install -m 0755 "$here/shutdown" "$stage/etc/guest-shutdown"
install -m 0755 "$here/udhcpc.script" "$stage/etc/udhcpc.script"
echo vmkit-guest >"$stage/etc/hostname"
install_initramfs "$stage" "$vmlinuz_src" "$out" initramfs.img 9

# The root disk: the same tree without the modules (the initramfs loads them all before it
# switches, so a disk keeps working with the next kernel), as ext4 made from the directory.
rootfs_size=64M
tree="$stage.root"
trap 'rm -rf "$stage" "$tree"' EXIT
cp -a "$stage" "$tree"
rm -rf "${tree:?}/lib"
chmod 0700 "$tree/root"
chmod 1777 "$tree/tmp"
rm -f "$out/rootfs.ext4.tmp"
mkfs.ext4 -q -F -b 4096 -L vmkit-root -E root_owner=0:0 -d "$tree" "$out/rootfs.ext4.tmp" "$rootfs_size" \
    >/dev/null || die "mkfs.ext4 -d failed"
# mkfs.ext4 -d keeps the owners of the files it copies: the builder's unless root.
if [ "$(id -u)" -ne 0 ]; then
    (cd "$tree" && find . -mindepth 1 | sed 's,^\.,,' |
        while read -r path; do printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$path" "$path"; done) \
        >"$stage/owners.debugfs"
    debugfs -w -f "$stage/owners.debugfs" "$out/rootfs.ext4.tmp" >/dev/null 2>&1 ||
        die "debugfs could not give the root disk's files to root"
fi
mv "$out/rootfs.ext4.tmp" "$out/rootfs.ext4"
echo "$krel" >"$out/KERNEL_RELEASE"
echo "$kver" >"$out/VERSION"
log "built $out: Linux $krel (package $kver), initramfs $(du -k "$out/initramfs.img" | cut -f1) KiB," \
    "root disk rootfs.ext4 ($rootfs_size, $(du -k "$out/rootfs.ext4" | cut -f1) KiB used)"
