#!/usr/bin/env bash
# make_efi_iso.sh KERNEL INITRD CMDLINE OUT.iso [EXTRA-DIR]: a UEFI-bootable installer-style ISO
# made the way Debian's are, with grub-mkrescue (packages grub-efi-amd64-bin, grub-common, xorriso,
# mtools): an ISO 9660 file system holding the kernel and initrd, and an EFI system partition
# with GRUB as \EFI\BOOT\BOOTX64.EFI, in a hybrid layout that boots from a CD or a USB drive.
# GRUB talks on the serial console and boots the one entry at once. EXTRA-DIR's tree is added to
# the ISO's root (what an installer copies from its medium). Exit 0, or 1 with a line.
set -euo pipefail
[ $# -eq 4 ] || [ $# -eq 5 ] ||
    { echo "usage: make_efi_iso.sh KERNEL INITRD CMDLINE OUT.iso [EXTRA-DIR]" >&2; exit 2; }
kernel=$1 initrd=$2 cmdline=$3 out=$4 extra=${5:-}
for tool in grub-mkrescue xorriso mformat; do
    command -v "$tool" >/dev/null ||
        { echo "make_efi_iso.sh: no $tool (apt-get install grub-efi-amd64-bin grub-common xorriso mtools)" >&2; exit 1; }
done
[ -d /usr/lib/grub/x86_64-efi ] ||
    { echo "make_efi_iso.sh: no GRUB for x86_64-efi (apt-get install grub-efi-amd64-bin)" >&2; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/boot/grub"
cp "$kernel" "$tree/vmlinuz"
cp "$initrd" "$tree/initrd.img"
[ -z "$extra" ] || cp -a "$extra/." "$tree/"
cat >"$tree/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "vmkit guest from USB" {
    echo "grub: loading the kernel"
    linux /vmlinuz $cmdline
    initrd /initrd.img
}
CFG
grub-mkrescue -o "$out" "$tree" >/dev/null 2>"$tree.log" ||
    { echo "make_efi_iso.sh: grub-mkrescue failed: $(tail -n 3 "$tree.log")" >&2; rm -f "$tree.log"; exit 1; }
rm -f "$tree.log"
