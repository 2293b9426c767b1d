#!/bin/bash
# Install, build and boot: installs the Debian packages vmkit needs, builds it with meson,
# builds the default guest, then boots that guest from its root disk to a shell on this
# terminal.
#
#   ./setup.sh
#
# The root disk is guest/out/disk.ext4: made once from guest/build.sh's rootfs.ext4 (grown to
# a sparse 1 GiB), then kept, so what you write in the guest is there on the next boot; delete
# it to start afresh. On a host with hardware KVM this ends in `build/tools/vmkit/vmkit run
# --cmdline "... root=/dev/vda rw" --device virtio-blk,path=guest/out/disk.ext4`. On a host
# without it (no vmx/svm, or /dev/kvm from kvm_pvm) vmkit runs inside an emulated machine
# instead: QEMU TCG with nested SVM (tests/system/nested/run.sh --interactive), which gets
# the same disk. Type `poweroff` in the guest to leave; Ctrl-A x leaves QEMU at once.
#
# The guest is on vmkit's NAT, and the host's 127.0.0.1:8080 (VMKIT_GUEST_HTTP_PORT; 0: none)
# is forwarded to its web server on port 80: `wget -qO- http://127.0.0.1:8080/` on the host
# prints the guest's name. A port already taken is left alone (and said so).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

packages=(meson ninja-build pkg-config gcc libcmocka-dev libslirp-dev libglib2.0-dev qemu-system-x86 acpica-tools
    busybox-static cpio kmod xz-utils zstd time e2fsprogs socat passt iproute2 libseccomp-dev zlib1g-dev
    libvncserver-dev libsdl2-dev)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y -q "${missing[@]}"; then
        as_root apt-get update -q
        as_root apt-get install -y -q "${missing[@]}"
    fi
fi

[ -f build/build.ninja ] || meson setup build
ninja -C build
guest/build.sh

# The guest's own root disk, made once: a rebuilt guest (a newer kernel) boots the same disk.
disk=guest/out/disk.ext4
if [ ! -e "$disk" ]; then
    PATH=$PATH:/sbin:/usr/sbin
    cp --sparse=always guest/out/rootfs.ext4 "$disk.tmp"
    truncate -s 1G "$disk.tmp"
    resize2fs "$disk.tmp" >/dev/null 2>&1 || echo "setup.sh: resize2fs failed; the disk stays 64 MiB"
    mv "$disk.tmp" "$disk"
    echo "setup.sh: made the guest's root disk $disk (kept; delete it to start afresh)"
fi

# The host port for the guest's web server, unless something listens there already.
port=${VMKIT_GUEST_HTTP_PORT:-8080}
case $port in '' | *[!0-9]*) echo "setup.sh: VMKIT_GUEST_HTTP_PORT: a port number" >&2; exit 2 ;; esac
if [ "$port" -ne 0 ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "setup.sh: 127.0.0.1:$port is taken; the guest's web server gets no host port" \
        "(set VMKIT_GUEST_HTTP_PORT to another)"
    port=0
fi
[ "$port" -eq 0 ] ||
    echo "setup.sh: the guest's web server (port 80) is http://127.0.0.1:$port/ on this host"

vmkit=build/tools/vmkit/vmkit
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo &&
    [ ! -e /sys/module/kvm_pvm ]; then
    net=()
    [ "$port" -eq 0 ] || net=(--device "virtio-net,hostfwd=tcp:127.0.0.1:$port-:80")
    exec "$vmkit" run --cmdline "console=ttyS0 panic=-1 root=/dev/vda rw" \
        --device virtio-blk,path="$disk" "${net[@]}"
fi

echo "vmkit: this host has no hardware KVM ($( [ -e /sys/module/kvm_pvm ] && echo kvm_pvm ||
    echo 'no usable /dev/kvm with vmx/svm')); booting the default guest inside an emulated" \
    "machine (QEMU TCG + nested SVM) instead — slow: about a minute to the prompt"
[ "$port" -eq 0 ] || export VMKIT_NESTED_HOSTFWD="tcp:127.0.0.1:$port-:8080"
VMKIT_NESTED_DISK=$disk exec tests/system/nested/run.sh --interactive \
    tests/system/nested/interactive.sh
