#!/usr/bin/env bash
# make_installer_iso.sh GUEST-OUT OUT.iso: vmkit's installer ISO, a UEFI-bootable medium in the
# shape of a distribution's, for the nested efi-install case and the README's walk-through.
# GUEST-OUT is guest/build.sh's output (vmlinuz, initramfs.img). The ISO (make_efi_iso.sh:
# GRUB for EFI, hybrid for USB drives) boots Debian's kernel with the default guest's initramfs
# plus an installer layer: /usr/sbin/vmkit-install run on the console (installer/), and the
# host's sfdisk, mkfs.fat, mke2fs and efibootmgr with their libraries, and a GRUB image for the
# installed disk (grub-mkimage). The medium also holds the system to install
# (vmkit-install/initramfs.img, the default guest). Packages: fdisk dosfstools e2fsprogs
# efibootmgr grub-efi-amd64-bin grub-common xorriso mtools. Exit 0, or 1 with a line.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: make_installer_iso.sh GUEST-OUT OUT.iso" >&2; exit 2; }
guest=$1 out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "make_installer_iso.sh: $*" >&2; exit 1; }
{ [ -f "$guest/vmlinuz" ] && [ -f "$guest/initramfs.img" ]; } ||
    die "no vmlinuz and initramfs.img in $guest (run guest/build.sh)"
tools=(sfdisk mkfs.fat mke2fs efibootmgr grub-mkimage)
for tool in "${tools[@]}"; do
    PATH=$PATH:/sbin:/usr/sbin command -v "$tool" >/dev/null ||
        die "no $tool (apt-get install fdisk dosfstools e2fsprogs efibootmgr grub-common)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layer=$work/layer
mkdir -p "$layer/usr/sbin" "$layer/usr/local/sbin" "$layer/etc" "$layer/usr/share/vmkit-install"
install -m 0755 "$here/installer/vmkit-install" "$layer/usr/sbin/vmkit-install"
install -m 0644 "$here/installer/inittab" "$layer/etc/inittab"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$layer/etc/"
# The host's tools in /usr/local/sbin (first in the installer's PATH, before busybox's applets
# of the same names), each with the shared libraries ldd names, at their own paths.
# shellcheck source=tests/support/copy_with_libs.sh
. "$here/copy_with_libs.sh"
for tool in sfdisk mkfs.fat mke2fs efibootmgr; do
    copy_with_libs "$(PATH=$PATH:/sbin:/usr/sbin command -v "$tool")" "$layer" usr/local/sbin
done
# GRUB for the installed disk: its prefix is the directory it sits in on the ESP.
grub-mkimage -O x86_64-efi -p /EFI/vmkit -o "$layer/usr/share/vmkit-install/grubx64.efi" \
    part_gpt fat ext2 search search_fs_uuid configfile normal linux serial terminal echo test \
    2>"$work/grub.log" || die "grub-mkimage failed: $(tail -n 3 "$work/grub.log")"

# Linux unpacks concatenated archives in order: the layer's inittab replaces the guest's.
(cd "$layer" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6n) \
    >"$work/layer.cpio.gz"
cat "$guest/initramfs.img" "$work/layer.cpio.gz" >"$work/installer.img"
mkdir -p "$work/medium/vmkit-install"
cp "$guest/initramfs.img" "$work/medium/vmkit-install/initramfs.img"
"$here/make_efi_iso.sh" "$guest/vmlinuz" "$work/installer.img" "console=ttyS0 panic=-1" \
    "$out" "$work/medium"
