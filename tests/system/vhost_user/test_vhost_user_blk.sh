#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device --type
# blk` serves vmkit's virtio-blk on a disk image over vhost-user, and the default guest kernel,
# in QEMU TCG with its memory shared (memfd), drives it with the stock virtio_blk driver
# (vhost-user-blk-pci). Prints TAP on stdout.
#
#   tests/system/vhost_user/test_vhost_user_blk.sh [VMKIT_BINARY]
#
# VMKIT_BINARY (or $VMKIT_BIN) defaults to build/tools/vmkit/vmkit; the guest comes from
# $VMKIT_GUEST_DIR or guest/out (guest/build.sh), the ext4 modules for the file-system test
# from guest/build.sh's cache ($VMKIT_GUEST_CACHE or guest/cache). VMKIT_VU_TIMEOUT: seconds
# per guest (default 300). Logs stay in $VMKIT_VU_LOG_DIR (default: a temporary directory,
# removed on success). Exit status 0 when every test passed or was skipped, 1 otherwise.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
guest_cache=${VMKIT_GUEST_CACHE:-$root/guest/cache}
timeout_s=${VMKIT_VU_TIMEOUT:-300}

disk_id="vmkit-vu-blk-0042"      # the serial the guest must read (at most 20 bytes)
host_marker="VMKIT-HOST-MARKER-7f3a"
guest_marker="VMKIT-GUEST-MARKER-c91d"
host_off_mib=48  # where the host's marker lies; the file system uses the first 32 MiB
guest_off_mib=56 # where the guest writes its marker

tests=(
    "serve|vmkit serve-device --type blk listens on its socket"
    "boot|the guest boots to our /init with QEMU connected to the socket"
    "disk|the guest's virtio_blk driver finds /dev/vda of 64 MiB"
    "serial|/sys/block/vda/serial is the id= given to --disk"
    "read|the guest reads the marker the host wrote at 48 MiB"
    "write|the guest writes a marker at 56 MiB with dd conv=fsync"
    "fs|mke2fs, mount, write a file, sync, umount, mount again: the file reads back"
    "persist|after QEMU exits, the host finds the guest's marker in the image"
    "ro|a readonly export: /sys/block/vda/ro is 1, a dd write fails, the file still reads"
    "ro_unchanged|the readonly run left the image as it was"
    "mq|--queues 4, num-queues=4, 2 vCPUs: the driver uses 2 of the 4 queues and reads work"
    "stop|SIGTERM stops the server with status 0 and removes the socket"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$here/common.sh"
vu_prepare vhost-user-blk-pci blk
img="$work/disk.img"

# The ext4 driver (which mounts ext2) is a module the default initramfs lacks: take it and
# its dependencies from guest/build.sh's unpacked kernel package, when that is there.
krel=$(cat "$guest_dir/KERNEL_RELEASE" 2>/dev/null)
moddir=
for d in "$guest_cache"/unpacked/linux-image-"$krel"*/lib/modules/"$krel"/kernel; do
    [ -n "$krel" ] && [ -r "$d/fs/ext4/ext4.ko" ] && moddir=$d
done
mkdir -p "$work/stage/fsmod"
if [ -n "$moddir" ]; then
    # Dependency order (modules.dep): ext4 needs crc16, mbcache and jbd2.
    i=0
    for m in lib/crc16.ko fs/mbcache.ko fs/jbd2/jbd2.ko crypto/crc32c_generic.ko fs/ext4/ext4.ko; do
        i=$((i + 1))
        [ -r "$moddir/$m" ] && cp "$moddir/$m" "$work/stage/fsmod/$i-$(basename "$m")"
    done
fi

# The guest's /init: vu.mode=rw or ro on the kernel command line picks the checks. It prints
# VU markers on the serial console and powers off.
cat >"$work/stage/init" <<'INIT'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /tmp /mnt
mount -t tmpfs tmpfs /tmp
echo "VU: ok boot"
mode=rw
for w in $(cat /proc/cmdline); do
    case "$w" in vu.mode=*) mode=${w#vu.mode=} ;; esac
done
modprobe virtio_pci
modprobe virtio_blk
for i in 1 2 3 4 5 6 7 8 9 10; do
    [ -e /sys/block/vda ] && [ -b /dev/vda ] && break
    sleep 1
done
size=$(cat /sys/block/vda/size 2>/dev/null)
if [ "$size" = 131072 ]; then
    echo "VU: ok disk"
else
    echo "VU: not ok disk /sys/block/vda/size='$size' (want 131072 sectors); $(ls /sys/block)"
fi
serial=$(cat /sys/block/vda/serial 2>/dev/null)
if [ "$serial" = "@ID@" ]; then echo "VU: ok serial"; else echo "VU: not ok serial '$serial'"; fi
host=$(dd if=/dev/vda bs=1048576 skip=@HOST_OFF@ count=1 2>/dev/null | head -c @HOST_LEN@)
if [ "$host" = "@HOST_MARKER@" ]; then echo "VU: ok read"; else echo "VU: not ok read '$host'"; fi
for m in /fsmod/*.ko; do [ -e "$m" ] && insmod "$m" 2>/dev/null; done
if [ "$mode" = rw ]; then
    if printf '%s' "@GUEST_MARKER@" | dd of=/dev/vda bs=1048576 seek=@GUEST_OFF@ conv=notrunc,fsync 2>/tmp/dd.err; then
        back=$(dd if=/dev/vda bs=1048576 skip=@GUEST_OFF@ count=1 2>/dev/null | head -c @GUEST_LEN@)
        if [ "$back" = "@GUEST_MARKER@" ]; then echo "VU: ok write"; else echo "VU: not ok write read back '$back'"; fi
    else
        echo "VU: not ok write dd: $(cat /tmp/dd.err)"
    fi
    if ! grep -q ext2 /proc/filesystems; then
        echo "VU: skip fs no ext2 driver (ext4 module) in the guest"
    elif ! mke2fs -b 1024 /dev/vda 32768 >/tmp/mkfs.log 2>&1; then
        echo "VU: not ok fs mke2fs: $(tail -n 2 /tmp/mkfs.log)"
    elif ! mount -t ext2 /dev/vda /mnt 2>/tmp/mount.err; then
        echo "VU: not ok fs mount: $(cat /tmp/mount.err)"
    else
        echo "hello from the guest over vhost-user-blk" >/mnt/hello.txt
        dd if=/dev/urandom of=/mnt/blob bs=4096 count=256 2>/dev/null
        sum1=$(md5sum </mnt/blob)
        sync
        umount /mnt
        echo 3 >/proc/sys/vm/drop_caches
        if ! mount -t ext2 /dev/vda /mnt 2>/tmp/mount.err; then
            echo "VU: not ok fs second mount: $(cat /tmp/mount.err)"
        else
            txt=$(cat /mnt/hello.txt 2>/dev/null)
            sum2=$(md5sum </mnt/blob)
            if [ "$txt" = "hello from the guest over vhost-user-blk" ] && [ "$sum1" = "$sum2" ]; then
                echo "VU: ok fs"
            else
                echo "VU: not ok fs read back '$txt', blob $sum1 vs $sum2"
            fi
            umount /mnt
        fi
    fi
elif [ "$mode" = mq ]; then
    nq=$(ls /sys/block/vda/mq 2>/dev/null | wc -l)
    # Reads from both vCPUs, so that both queues carry requests.
    ok=1
    for cpu in 0 1; do
        taskset -c $cpu dd if=/dev/vda of=/dev/null bs=65536 count=64 skip=$((cpu * 64)) iflag=direct 2>/dev/null || ok=0
    done
    if [ "$nq" = 2 ] && [ "$host" = "@HOST_MARKER@" ] && [ "$ok" = 1 ]; then
        echo "VU: ok mq"
    else
        echo "VU: not ok mq $nq queues in /sys/block/vda/mq (want 2), marker '$host', reads ok=$ok"
    fi
else
    ro=$(cat /sys/block/vda/ro 2>/dev/null)
    if printf 'X' | dd of=/dev/vda bs=512 seek=100 conv=notrunc,fsync 2>/tmp/dd.err; then
        echo "VU: not ok ro a dd write succeeded (ro='$ro')"
    elif [ "$ro" != 1 ]; then
        echo "VU: not ok ro /sys/block/vda/ro='$ro'"
    elif ! grep -q ext2 /proc/filesystems; then
        echo "VU: ok ro (no ext2 driver: file not checked)"
    elif ! mount -t ext2 -o ro /dev/vda /mnt 2>/tmp/mount.err; then
        echo "VU: not ok ro read-only mount: $(cat /tmp/mount.err)"
    else
        txt=$(cat /mnt/hello.txt 2>/dev/null)
        umount /mnt
        if [ "$txt" = "hello from the guest over vhost-user-blk" ]; then
            echo "VU: ok ro"
        else
            echo "VU: not ok ro file reads '$txt'"
        fi
    fi
fi
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
sed -i -e "s/@ID@/$disk_id/" -e "s/@HOST_MARKER@/$host_marker/" -e "s/@HOST_OFF@/$host_off_mib/" \
    -e "s/@HOST_LEN@/${#host_marker}/" -e "s/@GUEST_MARKER@/$guest_marker/g" \
    -e "s/@GUEST_OFF@/$guest_off_mib/g" -e "s/@GUEST_LEN@/${#guest_marker}/" "$work/stage/init"
chmod 0755 "$work/stage/init"
(cd "$work/stage" && find init fsmod | cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# The image: 64 MiB of zeroes with the host's marker.
rm -f "$img"
truncate -s 64M "$img"
printf '%s' "$host_marker" | dd of="$img" bs=1M seek="$host_off_mib" conv=notrunc status=none

# Starts the server on the image; $1: extra --disk keys (",readonly"), then more options.
start_server() {
    "$vmkit" serve-device --type blk --socket "$sock" --disk "$img,id=$disk_id$1" "${@:2}" \
        >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        [ -S "$sock" ] && break
        sleep 0.1
    done
    [ -S "$sock" ] && kill -0 "$server_pid" 2>/dev/null
}

# Stops the server with SIGTERM; sets src to its exit status.
stop_server() {
    src=0
    kill -TERM "$server_pid"
    wait "$server_pid" || src=$?
    server_pid=
}

# Boots the guest once against the server; $1: run name, $2: vu.mode, $3: vCPUs (default 1),
# $4: num-queues (default 1; QEMU's default is the vCPU count). QEMU's default ring of 128
# entries is kept on purpose: the device offers seg_max 254, so large requests come as
# indirect tables longer than the ring, which the device must serve.
run_guest() {
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 -smp "${3:-1}" \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path="$sock" \
        -device vhost-user-blk-pci,chardev=c0,num-queues="${4:-1}" \
        \
        -nic none -display none -serial stdio -monitor none -no-reboot \
        -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1 vu.mode=$2" </dev/null >"$work/guest$1.log" 2>&1
    qrc=$?
    tr -d '\r' <"$work/guest$1.log" >"$work/guest$1.txt"
}

# Records the guest's marker NAME of run $1 as test $3 (default NAME).
marker() {
    local line t=${3:-$2}
    line=$(grep -a -m1 "^VU: \(not \)\?\(ok\|skip\) $2" "$work/guest$1.txt")
    case "$line" in
    "VU: ok $2"*) pass "$t" ;;
    "VU: skip $2"*) skipped "$t" "${line#VU: skip $2 }" ;;
    "VU: not ok $2"*) fail "$t" "${line#VU: not ok }" ;;
    *) fail "$t" "no marker (qemu exit $qrc; see $work/guest$1.log)" ;;
    esac
}

# Reads $2 bytes at MiB $1 of the image.
image_at() {
    dd if="$img" bs=1M skip="$1" count=1 status=none | head -c "$2" | tr -d '\0'
}

start=$(date +%s)
# 1. The writable export.
if start_server ""; then
    pass serve
    run_guest 1 rw
    for name in boot disk serial read write fs; do marker 1 "$name"; done
    stop_server
else
    fail serve "no socket at $sock: $(tr '\n' ' ' <"$work/server.log")"
    for name in boot disk serial read write fs; do fail "$name" "no server"; done
fi

# 2. What the guest wrote is in the file once QEMU is gone.
got=$(image_at "$guest_off_mib" "${#guest_marker}")
host_got=$(image_at "$host_off_mib" "${#host_marker}")
if [ "$got" = "$guest_marker" ] && [ "$host_got" = "$host_marker" ]; then
    pass persist
else
    fail persist "at ${guest_off_mib} MiB: '$got'; at ${host_off_mib} MiB: '$host_got'"
fi

# 3. The read-only export, on a server started for it.
sum_before=$(md5sum <"$img")
if start_server ",readonly"; then
    run_guest 2 ro
    marker 2 ro
    stop_server
    [ "$src" -eq 0 ] || fail ro "the readonly server exited with $src"
else
    fail ro "the readonly server did not start: $(tail -n 3 "$work/server.log" | tr '\n' ' ')"
fi
if [ "$(md5sum <"$img")" = "$sum_before" ]; then
    pass ro_unchanged
else
    fail ro_unchanged "the image changed during the readonly run"
fi

# 4. A device with more queues than the driver uses (2 vCPUs: 2 of the 4).
if start_server ",readonly" --queues 4; then
    run_guest 3 mq 2 4
    marker 3 mq
    stop_server
else
    fail mq "the server did not start: $(tail -n 3 "$work/server.log" | tr '\n' ' ')"
fi

# 5. SIGTERM, on a server left idle.
if start_server ""; then
    stop_server
    if [ "$src" -eq 0 ] && [ ! -e "$sock" ]; then
        pass stop
    else
        fail stop "exit status $src, socket still there: $([ -e "$sock" ] && echo yes || echo no)"
    fi
else
    fail stop "the server did not start"
fi
echo "# guest runs: $(($(date +%s) - start)) s" >&2

vu_report
