#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device --device
# virtio-blk,path=...` serves vmkit's virtio-blk on a disk image over vhost-user, and the default guest kernel,
# in QEMU TCG with its memory shared (memfd), drives it with the stock virtio_blk driver
# (vhost-user-blk-pci). Two guests: one on a writable export (serial, raw reads and writes,
# an MBR partition, ext4, fstrim, discard, write-zeroes), one on a readonly export with four
# queues. The host checks the image after each. Prints TAP on stdout.
#
#   tests/system/vhost_user/test_vhost_user_blk.sh [VMKIT_BINARY]
#
# VMKIT_BINARY (or $VMKIT_BIN) defaults to build/tools/vmkit/vmkit; the guest comes from
# $VMKIT_GUEST_DIR or guest/out (guest/build.sh), the ext4 modules from guest/build.sh's cache
# ($VMKIT_GUEST_CACHE or guest/cache). The guest runs the host's mkfs.ext4, e2fsck (e2fsprogs),
# blkdiscard, fstrim and blockdev (util-linux); the host checks with partx, debugfs, e2fsck and
# python3 (SEEK_DATA). Cases whose tools are missing are skipped, naming the package.
# VMKIT_VU_TIMEOUT: seconds per guest (default 300). Logs stay in $VMKIT_VU_LOG_DIR (default: a
# temporary directory, removed on success). Exit status 0 when every test passed or was
# skipped, 1 otherwise.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
timeout_s=${VMKIT_VU_TIMEOUT:-300}

MiB=1048576
# The image (64 MiB): partition 1 on [1, 40) MiB, a discard range on [40, 44), a write-zeroes
# range on [44, 46), the host's marker at 48 MiB, the guest's at 56 MiB.
part_start=2048   # sectors
part_sectors=79872
discard_off=$((40 * MiB)) discard_len=$((4 * MiB))
zero_off=$((44 * MiB)) zero_len=$((2 * MiB))
host_marker="VMKIT-HOST-MARKER-7f3a"
guest_marker="VMKIT-GUEST-MARKER-c91d"
host_off_mib=48
guest_off_mib=56
disk_id="VMKIT-VU-BLK-SERIAL1" # 20 bytes: the most GET_ID carries (no NUL)
disk_id2="ro-7"                # the readonly run's: no leftovers of the first may show
hello="hello from the guest over vhost-user-blk"

tests=(
    "serve|vmkit serve-device --device virtio-blk,path=IMG listens on its socket"
    "boot|the guest boots to our /init with QEMU connected to the socket"
    "disk|the guest's virtio_blk driver finds /dev/vda of 64 MiB"
    "serial|/sys/block/vda/serial is the 20-byte id= given in the device spec (GET_ID)"
    "read|the guest reads the marker the host wrote at 48 MiB"
    "write|the guest writes a marker at 56 MiB with dd conv=fsync"
    "part|fdisk writes an MBR with one partition: /dev/vda1 appears at sector 2048, and the host's partx sees it"
    "ext4|mkfs.ext4 on vda1, mount, write and fsync two files, umount, mount again: checksums equal; e2fsck clean"
    "ext4_host|after the guest powered off, the host's e2fsck finds the file system clean and debugfs reads both files"
    "fstrim|fstrim after deleting a 4 MiB file: the image holds no block that ext4 calls free"
    "discard|blkdiscard of 4 MiB the host filled: the guest reads zeroes, the host's image has a hole there"
    "zeroout|blkdiscard -z (WRITE_ZEROES) of 2 MiB the host filled: guest and host read zeroes"
    "persist|after QEMU exits, the host finds the guest's marker and its own in the image"
    "serial2|a second server with a 4-byte id=: /sys/block/vda/serial is exactly that"
    "ro|a readonly export: ro is 1 (sysfs, blockdev --getro), dd writes to vda and vda1 and blkdiscard fail"
    "ro_fs|on the readonly export, ext4 mounts read-only, both files read back, a new file fails with EROFS"
    "ro_unchanged|the readonly run left the image as it was"
    "mq|queues=4, num-queues=4, 2 vCPUs: the driver uses 2 of the 4 queues and reads work"
    "stop|SIGTERM stops the server with status 0 and removes the socket"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$here/common.sh"
vu_prepare vhost-user-blk-pci blk
img="$work/disk.img"
stage="$work/stage"
mkdir -p "$stage/vu"

# The guest's tools (busybox has no mkfs.ext4) and the ext4 driver. ext4_why: why the file
# system cases are skipped.
ext4_why=
declare -A pkg_of=([mkfs.ext4]=e2fsprogs [e2fsck]=e2fsprogs [debugfs]=e2fsprogs
    [blkdiscard]=util-linux [fstrim]=util-linux [blockdev]=util-linux [partx]=util-linux)
if ! vu_add_host_binaries "$stage" mkfs.ext4 e2fsck; then
    ext4_why="host lacks ${vu_missing[*]} (Debian package e2fsprogs)"
fi
# Without them busybox's applets stand in, but busybox blkdiscard may lack -z.
if ! vu_add_host_binaries "$stage" blkdiscard fstrim blockdev; then
    echo "# host lacks ${vu_missing[*]} (util-linux): the guest uses busybox's" >&2
fi
for t in debugfs e2fsck; do
    [ -n "$ext4_why" ] || vu_host_tool "$t" >/dev/null ||
        ext4_why="host lacks $t (Debian package ${pkg_of[$t]})"
done
if [ -z "$ext4_why" ] && ! vu_add_modules "$stage/vu/mod" crc32c_generic ext4 2>"$work/modules.err"; then
    ext4_why="no ext4 module for the guest: $(paste -sd' ' "$work/modules.err")"
fi
partx=$(vu_host_tool partx) || partx=

# held FILE: how many bytes of FILE are data, not holes (SEEK_DATA), in the byte ranges
# "START END" read from stdin, one a line.
held() {
    python3 -c '
import os, sys
fd, n = os.open(sys.argv[1], os.O_RDONLY), 0
for line in sys.stdin:
    pos, end = map(int, line.split())
    while pos < end:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        if d >= end:
            break
        h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
        n, pos = n + h - d, h
print(n)' "$1"
}

# data_bytes FILE OFF LEN: bytes of FILE in [OFF, OFF+LEN) that are data.
data_bytes() {
    echo "$2 $(($2 + $3))" | held "$1"
}

# free_ranges OFF: the byte ranges "START END" of the blocks that dumpe2fs (its output on
# stdin) says are free in the ext4 file system at byte OFF of the image.
free_ranges() {
    awk -v off="$1" '
        /^Block size:/ { bs = $3 }
        /^  Free blocks: / {
            sub(/^  Free blocks: /, "")
            n = split($0, r, /, */)
            for (i = 1; i <= n; i++) {
                if (split(r[i], ab, "-") == 1)
                    ab[2] = ab[1]
                print off + ab[1] * bs, off + (ab[2] + 1) * bs
            }
        }'
}

# range_sum FILE OFF LEN: md5 of LEN bytes at OFF (multiples of 64 KiB).
range_sum() {
    dd if="$1" bs=65536 skip=$(($2 / 65536)) count=$(($3 / 65536)) status=none | md5sum | cut -d' ' -f1
}

# The image: 64 MiB of zeroes (a sparse file), random data in the discard and write-zeroes
# ranges, the host's marker.
rm -f "$img"
truncate -s 64M "$img"
head -c "$discard_len" /dev/urandom | dd of="$img" bs=1M seek=$((discard_off / MiB)) conv=notrunc status=none
head -c "$zero_len" /dev/urandom | dd of="$img" bs=1M seek=$((zero_off / MiB)) conv=notrunc status=none
printf '%s' "$host_marker" | dd of="$img" bs=1M seek="$host_off_mib" conv=notrunc status=none
head -c "$MiB" /dev/urandom >"$stage/vu/blob"
blob_sum=$(md5sum <"$stage/vu/blob" | cut -d' ' -f1)

# Whether this host's file system shows holes (the discard case needs it): the image's first
# MiB was never written, its discard range was.
holes_why=
if ! command -v python3 >/dev/null; then
    holes_why="no python3 on the host to find holes (SEEK_DATA)"
elif [ "$(data_bytes "$img" 0 "$MiB")" != 0 ] ||
    [ "$(data_bytes "$img" "$discard_off" "$discard_len")" != "$discard_len" ]; then
    holes_why="the file system under $work does not report holes (SEEK_DATA)"
fi

# What the guest's /init needs to know, as shell assignments.
cat >"$stage/vu/conf" <<EOF
host_marker=$host_marker
host_off_mib=$host_off_mib
guest_marker=$guest_marker
guest_off_mib=$guest_off_mib
part_start=$part_start
part_sectors=$part_sectors
have_ext4=$([ -z "$ext4_why" ] && echo 1 || echo 0)
hello="$hello"
blob_sum=$blob_sum
discard_off=$discard_off
discard_len=$discard_len
discard_sum=$(range_sum "$img" "$discard_off" "$discard_len")
discard_zero=$(head -c "$discard_len" /dev/zero | md5sum | cut -d' ' -f1)
zero_off=$zero_off
zero_len=$zero_len
zero_sum=$(range_sum "$img" "$zero_off" "$zero_len")
zero_zero=$(head -c "$zero_len" /dev/zero | md5sum | cut -d' ' -f1)
EOF

# The guest's /init: vu.mode=rw or ro picks the checks, vu.id= is the serial to expect. It
# prints "VU: ok|not ok NAME ..." lines on the serial console and powers off.
cat >"$stage/init" <<'INIT'
#!/bin/sh
export PATH=/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /tmp /mnt
mount -t tmpfs tmpfs /tmp
echo "VU: ok boot"
. /vu/conf
mode=rw
id=
for w in $(cat /proc/cmdline); do
    case "$w" in
    vu.mode=*) mode=${w#vu.mode=} ;;
    vu.id=*) id=${w#vu.id=} ;;
    esac
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
if [ "$serial" = "$id" ]; then echo "VU: ok serial"; else echo "VU: not ok serial '$serial' (want '$id')"; fi
host=$(dd if=/dev/vda bs=1048576 skip=$host_off_mib count=1 2>/dev/null | head -c ${#host_marker})
if [ "$host" = "$host_marker" ]; then echo "VU: ok read"; else echo "VU: not ok read '$host'"; fi

# range_sum DEV OFF LEN: md5 of LEN bytes at OFF, read past the page cache.
range_sum() {
    dd if="$1" bs=65536 skip=$(($2 / 65536)) count=$(($3 / 65536)) iflag=direct 2>/dev/null |
        md5sum | cut -d' ' -f1
}
# util-linux's tools, where the test packed them: busybox sh runs its own applets of these
# names before it looks at PATH (busybox blkdiscard has no -z). util-linux blkdiscard wants
# -f on a disk with a partition table.
blkdiscard=blkdiscard fstrim=fstrim blockdev=blockdev
[ -x /usr/local/bin/blkdiscard ] && blkdiscard="/usr/local/bin/blkdiscard -f"
[ -x /usr/local/bin/fstrim ] && fstrim=/usr/local/bin/fstrim
[ -x /usr/local/bin/blockdev ] && blockdev=/usr/local/bin/blockdev
# one_line FILE: a log's last lines on one line, for a marker.
one_line() { tail -n 3 "$1" | tr '\n' ' '; }

ext4=0
if [ "$have_ext4" = 1 ]; then
    while read -r m; do
        insmod "/vu/mod/$m" || echo "VU: info insmod $m failed"
    done </vu/mod/order
    grep -qw ext4 /proc/filesystems && ext4=1
fi

# ext4_check: the two files under /mnt read back as written.
ext4_check() {
    txt=$(cat /mnt/hello.txt 2>/dev/null)
    sum=$(md5sum </mnt/blob 2>/dev/null | cut -d' ' -f1)
    [ "$txt" = "$hello" ] && [ "$sum" = "$blob_sum" ]
}

if [ "$mode" = rw ]; then
    if printf '%s' "$guest_marker" | dd of=/dev/vda bs=1048576 seek=$guest_off_mib conv=notrunc,fsync 2>/tmp/dd.err; then
        back=$(dd if=/dev/vda bs=1048576 skip=$guest_off_mib count=1 iflag=direct 2>/dev/null | head -c ${#guest_marker})
        if [ "$back" = "$guest_marker" ]; then echo "VU: ok write"; else echo "VU: not ok write read back '$back'"; fi
    else
        echo "VU: not ok write dd: $(cat /tmp/dd.err)"
    fi

    # An MBR with one Linux partition, written by busybox fdisk (sectors as units).
    printf 'o\nn\np\n1\n%s\n%s\nw\n' $part_start $((part_start + part_sectors - 1)) |
        fdisk -u /dev/vda >/tmp/fdisk.log 2>&1
    for i in 1 2 3 4 5; do
        [ -b /dev/vda1 ] && break
        sleep 1
    done
    pstart=$(cat /sys/block/vda/vda1/start 2>/dev/null)
    psize=$(cat /sys/block/vda/vda1/size 2>/dev/null)
    part=0
    if [ -b /dev/vda1 ] && [ "$pstart" = "$part_start" ] && [ "$psize" = "$part_sectors" ]; then
        part=1
        echo "VU: ok part"
    else
        echo "VU: not ok part vda1 start '$pstart' size '$psize' (want $part_start, $part_sectors); fdisk: $(one_line /tmp/fdisk.log)"
    fi

    if [ "$have_ext4" != 1 ]; then
        :
    elif [ "$ext4" != 1 ]; then
        echo "VU: not ok ext4 no ext4 in /proc/filesystems after loading the modules"
    elif [ "$part" != 1 ]; then
        echo "VU: not ok ext4 no /dev/vda1"
    elif ! mkfs.ext4 -F -q -b 4096 -L vmkit-t2 /dev/vda1 >/tmp/mkfs.log 2>&1; then
        echo "VU: not ok ext4 mkfs.ext4: $(one_line /tmp/mkfs.log)"
    elif ! mount -t ext4 /dev/vda1 /mnt 2>/tmp/mount.err; then
        echo "VU: not ok ext4 mount: $(cat /tmp/mount.err)"
    else
        echo "$hello" >/mnt/hello.txt
        ok=1
        dd if=/vu/blob of=/mnt/blob bs=65536 conv=fsync 2>/tmp/dd.err || ok=0
        # fsync the text file and the directory that names both.
        sync /mnt/hello.txt /mnt || ok=0
        umount /mnt || ok=0
        echo 3 >/proc/sys/vm/drop_caches
        if [ "$ok" != 1 ]; then
            echo "VU: not ok ext4 write, fsync or umount failed: $(cat /tmp/dd.err)"
        elif ! mount -t ext4 /dev/vda1 /mnt 2>/tmp/mount.err; then
            echo "VU: not ok ext4 second mount: $(cat /tmp/mount.err)"
        elif ! ext4_check; then
            umount /mnt
            echo "VU: not ok ext4 read back '$txt', blob $sum (want $blob_sum)"
        elif ! umount /mnt; then
            echo "VU: not ok ext4 second umount"
        elif ! e2fsck -fn /dev/vda1 >/tmp/fsck.log 2>&1; then
            echo "VU: not ok ext4 e2fsck -fn: $(one_line /tmp/fsck.log)"
        else
            echo "VU: ok ext4"
        fi
        # fstrim: a 4 MiB file written and deleted leaves free blocks the image still holds.
        if ! mount -t ext4 /dev/vda1 /mnt 2>/tmp/mount.err; then
            echo "VU: not ok fstrim mount: $(cat /tmp/mount.err)"
        else
            dd if=/dev/urandom of=/mnt/junk bs=65536 count=64 conv=fsync 2>/dev/null
            rm -f /mnt/junk
            sync
            if out=$($fstrim -v /mnt 2>&1); then
                echo "VU: ok fstrim ($out)"
            else
                echo "VU: not ok fstrim: $out"
            fi
            umount /mnt
        fi
    fi

    # discard: the range holds the host's random data, then zeroes.
    before=$(range_sum /dev/vda $discard_off $discard_len)
    if [ "$before" != "$discard_sum" ]; then
        echo "VU: not ok discard the range reads $before before the discard (want $discard_sum)"
    elif ! $blkdiscard -o $discard_off -l $discard_len /dev/vda 2>/tmp/bd.err; then
        echo "VU: not ok discard blkdiscard: $(cat /tmp/bd.err)"
    else
        after=$(range_sum /dev/vda $discard_off $discard_len)
        if [ "$after" = "$discard_zero" ]; then echo "VU: ok discard"; else echo "VU: not ok discard reads $after after (zeroes: $discard_zero)"; fi
    fi
    before=$(range_sum /dev/vda $zero_off $zero_len)
    if [ "$before" != "$zero_sum" ]; then
        echo "VU: not ok zeroout the range reads $before before (want $zero_sum)"
    elif ! $blkdiscard -z -o $zero_off -l $zero_len /dev/vda 2>/tmp/bd.err; then
        echo "VU: not ok zeroout blkdiscard -z: $(cat /tmp/bd.err)"
    else
        after=$(range_sum /dev/vda $zero_off $zero_len)
        if [ "$after" = "$zero_zero" ]; then echo "VU: ok zeroout"; else echo "VU: not ok zeroout reads $after after (zeroes: $zero_zero)"; fi
    fi
else
    # The readonly export, with 2 vCPUs on 4 offered queues.
    ro=$(cat /sys/block/vda/ro 2>/dev/null)
    getro=$($blockdev --getro /dev/vda 2>&1)
    why=
    if printf 'X' | dd of=/dev/vda bs=512 seek=100 conv=notrunc,fsync 2>/tmp/dd.err; then
        why="a dd write to vda succeeded"
    elif ! grep -qE 'Operation not permitted|Read-only file system|I/O error' /tmp/dd.err; then
        why="dd to vda failed, but not with EPERM, EROFS or EIO: $(cat /tmp/dd.err)"
    fi
    if [ -b /dev/vda1 ] && printf 'X' | dd of=/dev/vda1 bs=512 seek=100 conv=notrunc,fsync 2>/dev/null; then
        why="$why; a dd write to vda1 succeeded"
    fi
    # Over the host's marker: had it gone through, the image would change.
    if $blkdiscard -o $((host_off_mib * 1048576)) -l 1048576 /dev/vda 2>/tmp/bd.err; then
        why="$why; blkdiscard succeeded"
    fi
    if [ "$ro" != 1 ] || [ "$getro" != 1 ]; then
        why="$why; /sys/block/vda/ro='$ro', blockdev --getro='$getro'"
    fi
    if [ -z "$why" ]; then
        echo "VU: ok ro (dd: $(tr '\n' ' ' </tmp/dd.err); blkdiscard: $(tr '\n' ' ' </tmp/bd.err))"
    else
        echo "VU: not ok ro ${why#; }"
    fi
    if [ "$have_ext4" != 1 ]; then
        :
    elif [ "$ext4" != 1 ]; then
        echo "VU: not ok ro_fs no ext4 in /proc/filesystems after loading the modules"
    elif ! mount -t ext4 -o ro /dev/vda1 /mnt 2>/tmp/mount.err; then
        echo "VU: not ok ro_fs read-only mount: $(cat /tmp/mount.err)"
    else
        if ! ext4_check; then
            echo "VU: not ok ro_fs read back '$txt', blob $sum (want $blob_sum)"
        elif echo x 2>/tmp/w.err >/mnt/new; then
            echo "VU: not ok ro_fs creating /mnt/new succeeded"
        elif ! grep -q 'Read-only file system' /tmp/w.err; then
            echo "VU: not ok ro_fs creating /mnt/new failed, but not with EROFS: $(cat /tmp/w.err)"
        else
            echo "VU: ok ro_fs"
        fi
        umount /mnt
    fi

    nq=$(ls /sys/block/vda/mq 2>/dev/null | wc -l)
    # Reads from both vCPUs, so that both queues carry requests.
    ok=1
    for cpu in 0 1; do
        taskset -c $cpu dd if=/dev/vda of=/dev/null bs=65536 count=64 skip=$((cpu * 64)) iflag=direct 2>/dev/null || ok=0
    done
    if [ "$nq" = 2 ] && [ "$host" = "$host_marker" ] && [ "$ok" = 1 ]; then
        echo "VU: ok mq"
    else
        echo "VU: not ok mq $nq queues in /sys/block/vda/mq (want 2), marker '$host', reads ok=$ok"
    fi
fi
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
chmod 0755 "$stage/init"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# Starts the server on the image; $1: the id, $2: extra device keys (",readonly").
start_server() {
    "$vmkit" serve-device --socket "$sock" --device "virtio-blk,path=$img,id=$1$2" \
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

# Boots the guest once against the server; $1: run name, $2: vu.mode, $3: the id to expect,
# $4: vCPUs (default 1), $5: num-queues (default 1; QEMU's default is the vCPU count). QEMU's
# default ring of 128 entries is kept on purpose: the device offers seg_max 254, so large
# requests come as indirect tables longer than the ring, which the device must serve.
run_guest() {
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 -smp "${4:-1}" \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path="$sock" \
        -device vhost-user-blk-pci,chardev=c0,num-queues="${5:-1}" \
        -nic none -display none -serial stdio -monitor none -no-reboot \
        -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1 vu.mode=$2 vu.id=$3" </dev/null >"$work/guest$1.log" 2>&1
    qrc=$?
    tr -d '\r' <"$work/guest$1.log" >"$work/guest$1.txt"
}

# Records the guest's marker NAME of run $1 as test $3 (default NAME).
marker() {
    local line t=${3:-$2}
    line=$(grep -a -m1 "^VU: \(not \)\?\(ok\|skip\) $2\( \|$\)" "$work/guest$1.txt")
    case "$line" in
    "VU: ok $2"*) pass "$t" ;;
    "VU: skip $2"*) skipped "$t" "${line#"VU: skip $2 "}" ;;
    "VU: not ok $2"*) fail "$t" "${line#"VU: not ok "}" ;;
    *) fail "$t" "no marker (qemu exit $qrc; see $work/guest$1.log)" ;;
    esac
}

# Reads $2 bytes at MiB $1 of the image.
image_at() {
    dd if="$img" bs=1M skip="$1" count=1 status=none | head -c "$2" | tr -d '\0'
}

part_off=$((part_start * 512))
start=$(date +%s)

# 1. The writable export.
rw_cases=(boot disk serial read write part ext4 fstrim discard zeroout)
if start_server "$disk_id" ""; then
    pass serve
    run_guest 1 rw "$disk_id"
    for name in "${rw_cases[@]}"; do marker 1 "$name"; done
    stop_server
else
    fail serve "no socket at $sock: $(tr '\n' ' ' <"$work/server.log")"
    for name in "${rw_cases[@]}"; do fail "$name" "no server"; done
fi

# 2. The host's view of what the guest did, once QEMU is gone.
if [ "${result[part]:-}" = ok ]; then
    if [ -z "$partx" ]; then
        skipped part "the host lacks partx (Debian package util-linux) to read the table"
    else
        table=$("$partx" -g -r -o NR,START,SECTORS,TYPE "$img" 2>&1)
        [ "$table" = "1 $part_start $part_sectors 0x83" ] ||
            fail part "the host's partx reads '$table' (want '1 $part_start $part_sectors 0x83')"
    fi
fi
if [ -n "$ext4_why" ]; then
    for name in ext4 ext4_host fstrim; do skipped "$name" "$ext4_why"; done
elif [ "${result[ext4]:-}" != ok ]; then
    fail ext4_host "no file system: the guest's ext4 case failed"
else
    dev="$img?offset=$part_off" # e2fsprogs' unix I/O takes the partition's offset this way
    fsck_out=$("$(vu_host_tool e2fsck)" -fn "$dev" 2>&1)
    fsck_rc=$?
    txt=$("$(vu_host_tool debugfs)" -R 'cat /hello.txt' "$dev" 2>/dev/null)
    sum=$("$(vu_host_tool debugfs)" -R 'cat /blob' "$dev" 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ "$fsck_rc" -ne 0 ]; then
        fail ext4_host "e2fsck -fn exit $fsck_rc: $(echo "$fsck_out" | tail -n 3 | tr '\n' ' ')"
    elif [ "$txt" != "$hello" ] || [ "$sum" != "$blob_sum" ]; then
        fail ext4_host "debugfs reads hello.txt '$txt', blob $sum (want $blob_sum)"
    else
        pass ext4_host
    fi
    # fstrim discarded every free block: none may still be held in the image.
    if [ "${result[fstrim]:-}" != ok ]; then
        :
    elif [ -n "$holes_why" ]; then
        skipped fstrim "$holes_why"
    elif ! dumpe2fs=$(vu_host_tool dumpe2fs); then
        skipped fstrim "host lacks dumpe2fs (Debian package e2fsprogs)"
    else
        ranges=$("$dumpe2fs" "$dev" 2>/dev/null | free_ranges "$part_off")
        if [ -z "$ranges" ]; then
            fail fstrim "dumpe2fs lists no free blocks"
        else
            bytes=$(held "$img" <<<"$ranges")
            [ "$bytes" = 0 ] || fail fstrim "the image holds $bytes bytes in blocks ext4 calls free"
        fi
    fi
fi
if [ "${result[discard]:-}" = ok ]; then
    if [ -n "$holes_why" ]; then
        skipped discard "$holes_why"
    else
        bytes=$(data_bytes "$img" "$discard_off" "$discard_len")
        [ "$bytes" = 0 ] || fail discard "the image still holds $bytes bytes of the discarded $discard_len"
    fi
fi
if [ "${result[zeroout]:-}" = ok ] &&
    ! cmp -s -n "$zero_len" <(dd if="$img" bs=1M skip=$((zero_off / MiB)) count=$((zero_len / MiB)) status=none) /dev/zero; then
    fail zeroout "the host reads non-zero bytes in the written-zeroes range"
fi
got=$(image_at "$guest_off_mib" "${#guest_marker}")
host_got=$(image_at "$host_off_mib" "${#host_marker}")
if [ "$got" = "$guest_marker" ] && [ "$host_got" = "$host_marker" ]; then
    pass persist
else
    fail persist "at ${guest_off_mib} MiB: '$got'; at ${host_off_mib} MiB: '$host_got'"
fi

# 3. The readonly export with four queues, on a server started for it, and 2 vCPUs.
sum_before=$(md5sum <"$img")
if start_server "$disk_id2" ",readonly,queues=4"; then
    run_guest 2 ro "$disk_id2" 2 4
    marker 2 serial serial2
    marker 2 ro
    marker 2 mq
    if [ -n "$ext4_why" ]; then skipped ro_fs "$ext4_why"; else marker 2 ro_fs; fi
    stop_server
    [ "$src" -eq 0 ] || fail ro "the readonly server exited with $src"
else
    for name in serial2 ro ro_fs mq; do
        fail "$name" "the readonly server did not start: $(tail -n 3 "$work/server.log" | tr '\n' ' ')"
    done
fi
if [ "$(md5sum <"$img")" = "$sum_before" ]; then
    pass ro_unchanged
else
    fail ro_unchanged "the image changed during the readonly run"
fi

# 4. SIGTERM, on a server left idle.
if start_server "$disk_id" ""; then
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
