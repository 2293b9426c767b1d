#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device --type
# rng` (the spelling of earlier releases, kept working; the blk test uses --device) serves
# virtio-rng over vhost-user and the default guest kernel, in QEMU TCG with its
# memory shared (memfd), drives it with the stock virtio_rng driver. Prints TAP on stdout.
#
#   tests/system/vhost_user/test_vhost_user_rng.sh [VMKIT_BINARY]
#
# VMKIT_BINARY (or $VMKIT_BIN) defaults to build/tools/vmkit/vmkit; the guest comes from
# $VMKIT_GUEST_DIR or guest/out (guest/build.sh). VMKIT_VU_TIMEOUT: seconds for the guest
# (default 300). Logs stay in $VMKIT_VU_LOG_DIR (default: a temporary directory, removed on
# success). Exit status 0 when every test passed or all were skipped, 1 otherwise.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
timeout_s=${VMKIT_VU_TIMEOUT:-300}

tests=(
    "serve|vmkit serve-device --type rng listens on its socket"
    "boot|the guest boots to our /init with QEMU connected to the socket"
    "driver|rng_current names virtio_rng (the guest's driver bound the vhost-user device)"
    "read|dd reads 4096 bytes from /dev/hwrng"
    "differ|two reads of /dev/hwrng differ"
    "reconnect|after QEMU exits, the server serves a second QEMU (driver binds, reads work)"
    "stop|SIGTERM stops the server with status 0 and removes the socket"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$here/common.sh"
vu_prepare vhost-user-rng-pci rng

# The guest's /init: load the drivers, check the device, print VU markers, power off.
mkdir -p "$work/stage"
cat >"$work/stage/init" <<'INIT'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /tmp
mount -t tmpfs tmpfs /tmp
echo "VU: ok boot"
modprobe virtio_pci
modprobe virtio-rng 2>/dev/null || modprobe virtio_rng
cur=
for i in 1 2 3 4 5 6 7 8 9 10; do
    cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
    case "$cur" in virtio_rng*) break ;; esac
    sleep 1
done
case "$cur" in
virtio_rng*) echo "VU: ok driver $cur" ;;
*) echo "VU: not ok driver rng_current='$cur'; available: $(cat /sys/class/misc/hw_random/rng_available 2>/dev/null)" ;;
esac
dd if=/dev/hwrng of=/tmp/a bs=512 count=8 2>/dev/null
dd if=/dev/hwrng of=/tmp/b bs=512 count=8 2>/dev/null
na=$(wc -c </tmp/a)
nb=$(wc -c </tmp/b)
if [ "$na" -eq 4096 ] && [ "$nb" -eq 4096 ]; then
    echo "VU: ok read"
else
    echo "VU: not ok read got $na and $nb bytes"
fi
if cmp -s /tmp/a /tmp/b; then
    echo "VU: not ok differ (two reads are equal)"
else
    echo "VU: ok differ"
fi
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
chmod 0755 "$work/stage/init"
(cd "$work/stage" && echo init | cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# 1. The server.
"$vmkit" serve-device --type rng --socket "$sock" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    [ -S "$sock" ] && break
    sleep 0.1
done
if [ -S "$sock" ] && kill -0 "$server_pid" 2>/dev/null; then
    pass serve
else
    fail serve "no socket at $sock: $(tr '\n' ' ' <"$work/server.log")"
fi

# Boots the guest once against the server; its serial output goes to $work/guest$1.txt.
run_guest() {
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path="$sock" -device vhost-user-rng-pci,chardev=c0 \
        -nic none -display none -serial stdio -monitor none -no-reboot \
        -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1" </dev/null >"$work/guest$1.log" 2>&1
    qrc=$?
    tr -d '\r' <"$work/guest$1.log" >"$work/guest$1.txt"
}

# "ok NAME" / "not ok NAME why" for the guest's marker NAME in run $1.
marker() {
    local line
    line=$(grep -a -m1 "^VU: \(not \)\?ok $2" "$work/guest$1.txt")
    case "$line" in
    "VU: ok $2"*) echo ok ;;
    "VU: not ok $2"*) echo "not ok ${line#VU: not ok }" ;;
    *) echo "not ok no marker (qemu exit $qrc; see $work/guest$1.log)" ;;
    esac
}

# 2. The guest.
start=$(date +%s)
if [ "${result[serve]}" = ok ]; then
    run_guest 1
    for name in boot driver read differ; do
        m=$(marker 1 "$name")
        if [ "$m" = ok ]; then pass "$name"; else fail "$name" "${m#not ok }"; fi
    done
else
    for name in boot driver read differ; do fail "$name" "no server"; done
fi
echo "# guest run: $(($(date +%s) - start)) s" >&2

# 3. The server outlives its front end and serves the next one (a second QEMU).
sleep 0.5
if ! kill -0 "$server_pid" 2>/dev/null || [ ! -S "$sock" ] ||
    ! grep -q "front end disconnected" "$work/server.log"; then
    fail reconnect "server gone or never saw the front end leave: $(tr '\n' ' ' <"$work/server.log")"
else
    run_guest 2
    m1=$(marker 2 driver)
    m2=$(marker 2 read)
    if [ "$m1" = ok ] && [ "$m2" = ok ]; then
        pass reconnect
    else
        fail reconnect "second guest: driver: $m1; read: $m2"
    fi
fi

# 4. SIGTERM.
vu_stop_server "$server_pid" "$sock"

vu_report
