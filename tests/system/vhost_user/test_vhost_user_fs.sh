#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device --type fs`
# serves a host directory over vhost-user to QEMU TCG's vhost-user-fs-pci and the guest's stock
# virtiofs driver mounts it and runs a file-system workload with verification (create, write,
# fsync, rename, link, symlink, readdir of 1000 entries, truncate, fallocate, mmap write, chmod,
# utimes, mkfifo, unlink, rmdir, creation as another user); the host then checks what it
# wrote. A second, read-only share must refuse every change. The same guest script against
# Debian's /usr/lib/qemu/virtiofsd must print the same results (differential test). Prints TAP.
#
#   tests/system/vhost_user/test_vhost_user_fs.sh [VMKIT_BINARY]
#
# As the other tier-2 tests: VMKIT_BIN, VMKIT_GUEST_DIR, VMKIT_VU_TIMEOUT, VMKIT_VU_LOG_DIR.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
timeout_s=${VMKIT_VU_TIMEOUT:-300}
virtiofsd=/usr/lib/qemu/virtiofsd

tests=(
    "serve|vmkit serve-device --type fs listens on its vhost-user sockets (read-write, read-only, squash)"
    "mount|the guest's virtiofs driver mounts both shares"
    "workload|create/write/fsync/rename/link/symlink/readdir 1000/16 MiB of shuffled 4 KiB writes verified/truncate/fallocate/mmap/chmod/utimes/mkfifo/unlink/rmdir succeed in the guest, creation as uid 1234 where allowed, refused where not"
    "host_view|the host sees what the guest wrote: contents, sizes, link text, owners, FIFO"
    "readonly|the read-only share refuses create, write, unlink, mkdir, chmod (EROFS) and its files are unchanged"
    "escape|a host symlink in the share pointing out of it is shown as a link, never followed by the server"
    "squash|ownership=squash: files the guest makes belong to the server's user on the host; the guest sees host files as uid:gid 1000:1000 and its own files with the ids it gave"
    "translator|the translator share (--device rosetta): its register script registers qemu-aarch64 with binfmt_misc and Debian's arm64 busybox-static runs in the x86-64 guest"
    "differential|the same workload against Debian's virtiofsd prints the same results"
    "stop|SIGTERM stops the server with status 0 and removes its socket"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$root/tests/system/vhost_user/common.sh"
vu_prepare vhost-user-fs-pci fs
command -v gcc >/dev/null || skip "gcc not installed (the guest's helper is built static)"

mkdir -p "$work/stage/usr/local/bin"
gcc -static -O2 -o "$work/stage/usr/local/bin/fs_guest_tool" "$here/fs_guest_tool.c" \
    2>"$work/gcc.log" || skip "cannot build fs_guest_tool static: $(head -n 1 "$work/gcc.log")"
vu_add_modules "$work/stage" virtio_pci virtiofs binfmt_misc || skip "cannot stage the guest's virtiofs modules"
# The translator share's test binary: Debian's busybox-static for arm64.
arm64=
if [ ! -x /usr/bin/qemu-aarch64-static ]; then
    translator_why="qemu-user-static is not installed (apt-get install qemu-user-static)"
elif arm64=$("$root/tests/support/foreign_busybox.sh" 2>"$work/foreign.log"); then
    cp "$arm64" "$work/stage/usr/local/bin/busybox-arm64"
else
    translator_why="no arm64 busybox: $(tail -n 1 "$work/foreign.log")"
    arm64=
fi
{
    vu_init_head
    cat <<'INIT'
T=/usr/local/bin/fs_guest_tool
r() { echo "VU: r $*"; }
# workload DIR: every step prints its status and what it sees.
workload() {
    d=$1/w
    mkdir "$d"; r mkdir $?
    yes vmkit-fs-pattern | head -c 1048576 >"$d/a.bin"; r write $?
    dd if="$d/a.bin" of="$d/a2.bin" bs=64k conv=fsync 2>/dev/null; r fsync $?
    r sum "$(md5sum <"$d/a.bin" | cut -d' ' -f1)" "$(cmp "$d/a.bin" "$d/a2.bin" && echo same)"
    mv "$d/a.bin" "$d/b.bin"; r rename $? "$(ls "$d" | tr '\n' ,)"
    ln "$d/b.bin" "$d/c.bin"; r link $? "$(stat -c %h "$d/b.bin")"
    ln -s b.bin "$d/s"; r symlink $? "$(readlink "$d/s")" "$(md5sum <"$d/s" | cut -c1-8)"
    mkdir "$d/many"
    i=0
    while [ $i -lt 1000 ]; do : >"$d/many/f$i" || break; i=$((i + 1)); done
    r readdir $i "$(ls "$d/many" | wc -l)" "$(ls -a "$d/many" | wc -l)" "$(ls "$d/many" | sort | md5sum | cut -c1-8)"
    truncate -s 12345 "$d/b.bin"; r truncate $? "$(stat -c %s "$d/b.bin")" "$(stat -c %s "$d/c.bin")"
    fallocate -l 1048576 "$d/fa"; r fallocate $? "$(stat -c %s "$d/fa")"
    $T mmapw "$d/mm" 65536; r mmap $? "$(md5sum <"$d/mm" | cut -d' ' -f1)"
    $T fsyncdir "$d"; r fsyncdir $?
    r rwverify "$($T rwverify "$d/verify" 4096)"
    chmod 0640 "$d/c.bin"; r chmod $? "$(stat -c %a "$d/b.bin")"
    touch -d '2020-01-02 03:04:05' "$d/c.bin"; r utimes $? "$(stat -c %Y "$d/b.bin")"
    mkdir -m 0777 "$d/pub"
    $T as 1234 5678 touch "$d/pub/owned"; r owner $? "$(stat -c %u:%g "$d/pub/owned" 2>&1)"
    $T as 1234 5678 touch "$d/denied" 2>/dev/null; r owner_denied $?
    mkfifo "$d/fifo"; r fifo $? "$(stat -c %F "$d/fifo")"
    echo x >"$d/gone"; rm "$d/gone"; r unlink $? "$(ls "$d/gone" 2>/dev/null | wc -l)"
    rmdir "$d/many" 2>/dev/null; r rmdir_nonempty $?
    rm -f "$d/many"/f*; rmdir "$d/many"; r rmdir $?
    r final "$(ls "$d" | tr '\n' ,)"
}
mkdir -p /mnt/rw /mnt/ro
if mount -t virtiofs rw /mnt/rw; then echo "VU: mounted rw"; fi
if grep -q 'tag=ro' /proc/cmdline; then
    if mount -t virtiofs ro /mnt/ro; then echo "VU: mounted ro"; fi
fi
workload /mnt/rw
r escape "$(readlink /mnt/rw/out 2>&1)" "$(cat /mnt/rw/out 2>&1 | head -c 80)"
if [ -e /mnt/ro/hello ]; then
    echo "VU: ro_cat $(cat /mnt/ro/hello)"
    for op in "touch /mnt/ro/new" "sh -c 'echo y >>/mnt/ro/hello'" "rm /mnt/ro/hello" \
        "mkdir /mnt/ro/dir" "chmod 0600 /mnt/ro/hello" "ln -s x /mnt/ro/link" "mv /mnt/ro/hello /mnt/ro/moved"; do
        out=$(eval "$op" 2>&1)
        case "$out" in *"Read-only file system"*) echo "VU: ro_refused $op" ;; *) echo "VU: ro_allowed $op: $out" ;; esac
    done
fi
if grep -q 'tag=sq' /proc/cmdline && mkdir -p /mnt/sq && mount -t virtiofs sq /mnt/sq; then
    echo root >/mnt/sq/byroot
    $T as 1234 5678 touch /mnt/sq/pub/owned
    echo "VU: squash $(stat -c %u:%g /mnt/sq/hostfile /mnt/sq/byroot /mnt/sq/pub/owned | tr '\n' ' ')"
fi
if grep -q 'tag=tr' /proc/cmdline && mkdir -p /mnt/tr && mount -t virtiofs tr /mnt/tr; then
    sh /mnt/tr/register >/tmp/register.log 2>&1
    echo "VU: registered $? $(grep -c registered /tmp/register.log) $(cat /proc/sys/fs/binfmt_misc/qemu-aarch64 2>&1 | head -n 2 | tr '\n' ' ')"
    echo "VU: arm64 $(/usr/local/bin/busybox-arm64 echo translated-ok 2>&1) $(/usr/local/bin/busybox-arm64 uname -m 2>&1)"
fi
umount /mnt/rw && echo "VU: umounted"
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
} >"$work/stage/init"
chmod 0755 "$work/stage/init"
(cd "$work/stage" && find . -mindepth 1 | sed 's,^\./,,' | cpio -o -H newc -R 0:0 --quiet |
    gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# boot NAME [TAG SOCKET]...: the guest with one vhost-user-fs-pci per TAG; its console in
# NAME.txt.
boot() {
    local name=$1 args=() tags=""
    shift
    while [ $# -ge 2 ]; do
        args+=(-chardev "socket,id=$1,path=$2" -device "vhost-user-fs-pci,chardev=$1,tag=$1")
        tags="$tags tag=$1"
        shift 2
    done
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        "${args[@]}" -nic none -display none -serial file:"$work/$name.log" -monitor none \
        -no-reboot -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1$tags" </dev/null >"$work/$name.qemu.log" 2>&1
    local rc=$?
    tr -d '\r' <"$work/$name.log" >"$work/$name.txt"
    return $rc
}

# wait_socket PID PATH: until PATH is a socket (5 s), while PID lives.
wait_socket() {
    for _ in $(seq 50); do
        [ -S "$2" ] && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The shares: rw starts empty but for a symlink out of it; ro holds one file.
mkdir -p "$work/rw" "$work/ro" "$work/vfsd" "$work/sq/pub"
chmod 0777 "$work/sq/pub"
echo host >"$work/sq/hostfile"
echo HOST-SECRET >"$work/secret.txt"
ln -s "$work/secret.txt" "$work/rw/out"
ln -s "$work/secret.txt" "$work/vfsd/out"
echo "hello from the host" >"$work/ro/hello"
ro_sum=$(md5sum <"$work/ro/hello")

"$vmkit" serve-device --type fs --socket "$work/rw.sock" --shared-dir "$work/rw" \
    >"$work/server.log" 2>&1 &
server_pid=$!
"$vmkit" serve-device --type fs --socket "$work/ro.sock" --shared-dir "$work/ro,readonly" \
    >"$work/server_ro.log" 2>&1 &
ro_pid=$!
"$vmkit" serve-device --type fs --socket "$work/sq.sock" \
    --shared-dir "$work/sq,ownership=squash,uid=1000,gid=1000" >"$work/server_sq.log" 2>&1 &
sq_pid=$!
tr_args=()
tr_pid=
if [ -n "$arm64" ]; then
    "$vmkit" serve-device --socket "$work/tr.sock" --device rosetta,mountTag=tr \
        >"$work/server_tr.log" 2>&1 &
    tr_pid=$!
    if wait_socket "$tr_pid" "$work/tr.sock"; then
        tr_args=(tr "$work/tr.sock")
    else
        translator_why="the translator server did not listen: $(tr '\n' ' ' <"$work/server_tr.log")"
    fi
fi
if wait_socket "$server_pid" "$work/rw.sock" && wait_socket "$ro_pid" "$work/ro.sock" &&
    wait_socket "$sq_pid" "$work/sq.sock"; then
    pass serve
else
    fail serve "no sockets: $(cat "$work"/server*.log | tr '\n' ' ')"
fi

start=$(date +%s)
g() { sed -n "s/^VU: $2 //p" "$work/$1.txt" | head -n 1; }
if [ "${result[serve]:-}" = ok ]; then
    boot vmkit rw "$work/rw.sock" ro "$work/ro.sock" sq "$work/sq.sock" "${tr_args[@]}"
    if grep -q '^VU: mounted rw' "$work/vmkit.txt" && grep -q '^VU: mounted ro' "$work/vmkit.txt"; then
        pass mount
    else
        fail mount "$(grep -a -m3 -i 'virtio\|fuse\|VU:' "$work/vmkit.txt" | tr '\n' ' ') (see $work/vmkit.log)"
    fi
    grep '^VU: r ' "$work/vmkit.txt" >"$work/vmkit.results"
    # Every step's status is 0, but rmdir of a non-empty directory, which must fail.
    bad=$(awk '$3 != "rwverify" && $3 != "rmdir_nonempty" && $3 != "owner_denied" && $3 != "readdir" && $3 != "escape" && $3 != "sum" && $3 != "final" && $4 != "0"' "$work/vmkit.results")
    if [ -s "$work/vmkit.results" ] && [ -z "$bad" ] && grep -q '^VU: r rmdir_nonempty [1-9]' "$work/vmkit.results" &&
        grep -q '^VU: r owner_denied [1-9]' "$work/vmkit.results" &&
        grep -q '^VU: r rwverify 0 bad blocks of 4096$' "$work/vmkit.results" &&
        grep -q '^VU: r readdir 1000 1000 1002 ' "$work/vmkit.results"; then
        pass workload
    else
        fail workload "$(echo "${bad:-$(tail -n 3 "$work/vmkit.results")}" | tr '\n' ' ')"
    fi
    # The host's view.
    w=$work/rw/w
    want_sum=$(yes vmkit-fs-pattern | head -c 12345 | md5sum | cut -d' ' -f1)
    mm_sum=$(python3 -c 'import sys,hashlib; print(hashlib.md5(bytes((i*7+3)&255 for i in range(65536))).hexdigest())')
    problems=()
    [ "$(md5sum <"$w/b.bin" 2>/dev/null | cut -d' ' -f1)" = "$want_sum" ] || problems+=("b.bin content")
    [ "$(stat -c %h "$w/c.bin" 2>/dev/null)" = 2 ] || problems+=("link count")
    [ "$(readlink "$w/s" 2>/dev/null)" = b.bin ] || problems+=("symlink text")
    [ "$(md5sum <"$w/mm" 2>/dev/null | cut -d' ' -f1)" = "$mm_sum" ] || problems+=("mmap content")
    [ "$(stat -c %s "$w/fa" 2>/dev/null)" = 1048576 ] || problems+=("fallocate size")
    [ "$(stat -c %a "$w/c.bin" 2>/dev/null)" = 640 ] || problems+=("mode")
    [ "$(stat -c %Y "$w/c.bin" 2>/dev/null)" = "$(date -d '2020-01-02 03:04:05' +%s)" ] || problems+=("mtime")
    [ -p "$w/fifo" ] || problems+=("fifo")
    python3 - "$w/verify" <<'PY' || problems+=("rwverify file")
import struct, sys
data = open(sys.argv[1], "rb").read()
assert len(data) == 4096 * 4096, len(data)
for i in range(4096):
    want = struct.pack("<1024I", *(((i * 2654435761 + k + 7919) & 0xffffffff) for k in range(1024)))
    assert data[i * 4096:(i + 1) * 4096] == want, i
PY
    [ ! -e "$w/many" ] && [ ! -e "$w/gone" ] || problems+=("removed entries")
    if [ "$(id -u)" = 0 ]; then
        [ "$(stat -c %u:%g "$w/pub/owned" 2>/dev/null)" = 1234:5678 ] || problems+=("owner $(stat -c %u:%g "$w/pub/owned" 2>&1)")
    fi
    if [ ${#problems[@]} -eq 0 ]; then pass host_view; else fail host_view "${problems[*]}"; fi
    refused=$(grep -c '^VU: ro_refused' "$work/vmkit.txt")
    if [ "$(g vmkit ro_cat)" = "hello from the host" ] && [ "$refused" = 7 ] &&
        [ "$(md5sum <"$work/ro/hello")" = "$ro_sum" ] && [ "$(ls "$work/ro")" = hello ]; then
        pass readonly
    else
        fail readonly "cat '$(g vmkit ro_cat)', $refused of 7 refused: $(grep -a '^VU: ro_allowed' "$work/vmkit.txt" | tr '\n' ' ')"
    fi
    esc=$(g vmkit "r escape")
    case "$esc" in
    *HOST-SECRET*) fail escape "the guest read the file outside the share: $esc" ;;
    "$work/secret.txt "*) pass escape ;;
    *) fail escape "the guest saw: $esc" ;;
    esac
    # Without user xattrs on the host (tmpfs before Linux 6.6) the guest's ids cannot be kept.
    if python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.vmkit.probe", b"1")' "$work/sq/hostfile" 2>/dev/null; then
        want_sq="1000:1000 0:0 1234:5678 "
    else
        want_sq="1000:1000 1000:1000 1000:1000 "
    fi
    me="$(id -u):$(id -g)"
    sq_host=$(stat -c %u:%g "$work/sq/byroot" "$work/sq/pub/owned" 2>&1 | tr '\n' ' ')
    if [ "$(g vmkit squash)" = "$want_sq" ] && [ "$sq_host" = "$me $me " ]; then
        pass squash
    else
        fail squash "the guest saw '$(g vmkit squash)' (expected '$want_sq'), the host has '$sq_host' (expected '$me $me ')"
    fi
    if [ ${#tr_args[@]} -eq 0 ]; then
        skipped translator "$translator_why"
    elif [ "$(g vmkit arm64)" = "translated-ok aarch64" ]; then
        pass translator
    else
        fail translator "register: '$(g vmkit registered)'; the arm64 busybox said: '$(g vmkit arm64)'"
    fi
else
    for name in mount workload host_view readonly escape squash translator; do fail "$name" "no server"; done
fi

# The differential run: Debian's virtiofsd on a share of its own, the same script.
if [ ! -x "$virtiofsd" ]; then
    skipped differential "no $virtiofsd (apt-get install qemu-system-common)"
elif [ "$(id -u)" != 0 ]; then
    skipped differential "virtiofsd needs root"
else
    "$virtiofsd" --socket-path="$work/vfsd.sock" -o source="$work/vfsd" -o cache=auto \
        >"$work/virtiofsd.log" 2>&1 &
    vfsd_pid=$!
    if wait_socket "$vfsd_pid" "$work/vfsd.sock"; then
        boot virtiofsd rw "$work/vfsd.sock"
        grep '^VU: r ' "$work/virtiofsd.txt" >"$work/virtiofsd.results"
        if [ -s "$work/virtiofsd.results" ] && diff "$work/virtiofsd.results" "$work/vmkit.results" >"$work/diff.txt"; then
            pass differential
        else
            fail differential "virtiofsd vs vmkit: $(head -c 600 "$work/diff.txt" | tr '\n' ' ')"
        fi
    else
        fail differential "virtiofsd did not listen: $(tr '\n' ' ' <"$work/virtiofsd.log")"
    fi
    kill "$vfsd_pid" 2>/dev/null
fi
echo "# guest runs: $(($(date +%s) - start)) s" >&2

kill -TERM "$ro_pid" "$sq_pid" ${tr_pid:+"$tr_pid"} 2>/dev/null
vu_stop_server "$server_pid" "$work/rw.sock"
vu_report
