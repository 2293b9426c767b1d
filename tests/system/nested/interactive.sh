#!/bin/sh
# /run.sh of the outer machine for setup.sh on a host without hardware KVM: vmkit's default
# guest, booted from its root disk, on the outer console, so the person at the terminal
# types into the guest's shell. The outer machine powers off when vmkit exits (type
# `poweroff` in the guest). setup.sh hands the host's guest/out/disk.ext4 to this machine as
# /dev/vda (run.sh's VMKIT_NESTED_DISK), so what the guest writes there stays, and forwards
# a host port to the guest's web server through both machines (VMKIT_NESTED_HOSTFWD).
disk=/dev/vda
if [ ! -b $disk ]; then
    disk=/tmp/rootfs.ext4
    cp "$VMKIT_GUEST_DIR/rootfs.ext4" $disk || exit 1
    echo "vmkit: no disk from the host: the guest's root disk is a copy of rootfs.ext4 in" \
        "memory; what the guest writes there is lost when it powers off"
fi
# run.sh's VMKIT_NESTED_HOSTFWD brings the host's port here (the outer machine's 8080):
# on to the guest's web server.
net=
grep -qw nested.net /proc/cmdline && net=virtio-net,hostfwd=tcp:0.0.0.0:8080-:80
exec vmkit run --cmdline "console=ttyS0 panic=-1 root=/dev/vda rw" --device virtio-blk,path=$disk \
    ${net:+--device "$net"}
