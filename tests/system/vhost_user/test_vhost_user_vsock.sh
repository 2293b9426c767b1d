#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device --type
# vsock --cid 3 --uds-path P` serves virtio-vsock over vhost-user to QEMU TCG's
# vhost-user-vsock-pci, and the guest's stock vmw_vsock_virtio_transport driver, with the
# host's socat staged in its initramfs, connects to the host (Firecracker's P_PORT), takes a
# connection from the host (a client of P that says CONNECT PORT), each with 1 MiB checked by
# md5; many connections one after another; and sees a connection to a port nobody listens on
# refused (ECONNRESET). Prints TAP on stdout.
#
#   tests/system/vhost_user/test_vhost_user_vsock.sh [VMKIT_BINARY]
#
# As the other tier-2 tests: VMKIT_BIN, VMKIT_GUEST_DIR, VMKIT_VU_TIMEOUT, VMKIT_VU_LOG_DIR.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
timeout_s=${VMKIT_VU_TIMEOUT:-300}

tests=(
    "serve|vmkit serve-device --type vsock --cid 3 --uds-path P listens on the vhost-user socket and on P"
    "driver|the guest's vmw_vsock_virtio_transport binds the vhost-user device"
    "to_host|the guest connects to host port 5000 (P_5000): 1 MiB, md5 intact"
    "from_host|a host client of P says CONNECT 6000, reads OK, sends 1 MiB to the guest's listener: md5 intact"
    "many|20 connections from the guest to port 5001, one after another, each answered"
    "refused|the guest's connect to port 5999, where nobody listens, fails with ECONNRESET"
    "stop|SIGTERM stops the server with status 0 and removes both sockets"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$here/common.sh"
vu_prepare vhost-user-vsock-pci vsock
command -v socat >/dev/null || skip "socat not installed (apt-get install socat)"
uds="$work/v.sock"

mkdir -p "$work/stage"
vu_add_modules "$work/stage" virtio_pci vmw_vsock_virtio_transport ||
    skip "cannot stage the guest's vsock modules"
vu_add_host_binaries "$work/stage" socat || skip "cannot stage socat"
{
    vu_init_head
    cat <<'INIT'
mkdir -p /tmp
mount -t tmpfs tmpfs /tmp
bound=
for i in 1 2 3 4 5 6 7 8 9 10; do
    bound=$(ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport 2>/dev/null | grep virtio)
    [ -n "$bound" ] && break
    sleep 1
done
if [ -n "$bound" ]; then echo "VU: ok driver $bound"; else echo "VU: not ok driver unbound"; fi
S=/usr/local/bin/socat
# to_host: 1 MiB to host port 5000.
dd if=/dev/urandom of=/tmp/out.bin bs=64k count=16 2>/dev/null
echo "VU: out_sum $(md5sum </tmp/out.bin | cut -d' ' -f1)"
if $S -u OPEN:/tmp/out.bin VSOCK-CONNECT:2:5000 2>/tmp/err; then echo "VU: sent"; else echo "VU: send failed $(cat /tmp/err)"; fi
# many: 20 connections to port 5001, each echoing a line back.
ok=0
for i in $(seq 20); do
    got=$(echo "hello-$i" | $S -t 5 - VSOCK-CONNECT:2:5001 2>/dev/null)
    [ "$got" = "hello-$i" ] && ok=$((ok + 1))
done
echo "VU: many $ok"
# refused: nobody at 5999.
$S -u - VSOCK-CONNECT:2:5999 </dev/null 2>/tmp/err
echo "VU: refused $(cat /tmp/err)"
# from_host: a listener on 6000 for the host's client.
$S -u VSOCK-LISTEN:6000 CREATE:/tmp/in.bin 2>/tmp/lerr &
listener=$!
sleep 1
echo "VU: listening"
wait $listener
echo "VU: in_sum $(md5sum </tmp/in.bin | cut -d' ' -f1) $(cat /tmp/lerr)"
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
} >"$work/stage/init"
chmod 0755 "$work/stage/init"
(cd "$work/stage" && find . -mindepth 1 | sed 's,^\./,,' | cpio -o -H newc -R 0:0 --quiet |
    gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# The host programs: one receiving on P_5000, one echoing on P_5001 (forking), both ready
# before the guest boots.
socat -u UNIX-LISTEN:"${uds}_5000" CREATE:"$work/got.bin" 2>"$work/socat5000.log" &
recv_pid=$!
socat UNIX-LISTEN:"${uds}_5001",fork EXEC:cat 2>"$work/socat5001.log" &
echo_pid=$!
head -c $((1 << 20)) /dev/urandom >"$work/to_guest.bin"
sum_to_guest=$(md5sum <"$work/to_guest.bin" | cut -d' ' -f1)

# 1. The server.
"$vmkit" serve-device --type vsock --cid 3 --uds-path "$uds" --socket "$sock" \
    >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    [ -S "$sock" ] && [ -S "$uds" ] && break
    sleep 0.1
done
if [ -S "$sock" ] && [ -S "$uds" ] && kill -0 "$server_pid" 2>/dev/null; then
    pass serve
else
    fail serve "no socket at $sock or $uds: $(tr '\n' ' ' <"$work/server.log")"
fi

# The host's client: once the guest listens, CONNECT 6000, expect "OK <port>", send 1 MiB.
client() {
    for _ in $(seq "$timeout_s"); do
        grep -q "VU: listening" "$work/guest.txt" 2>/dev/null && break
        sleep 1
    done
    python3 - "$uds" "$work/to_guest.bin" >"$work/client.log" 2>&1 <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
s.sendall(b"CONNECT 6000\n")
line = b""
while not line.endswith(b"\n"):
    c = s.recv(1)
    if not c:
        break
    line += c
print("reply", line.decode(errors="replace").strip())
if line.startswith(b"OK "):
    s.sendall(open(sys.argv[2], "rb").read())
s.close()
PY
}

# 2. The guest (its console is read as it runs, by the client).
start=$(date +%s)
: >"$work/guest.txt"
if [ "${result[serve]:-}" = ok ]; then
    client &
    client_pid=$!
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path="$sock" -device vhost-user-vsock-pci,chardev=c0 \
        -nic none -display none -serial file:"$work/guest.log" -monitor none -no-reboot \
        -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1" </dev/null >"$work/qemu.log" 2>&1 &
    qemu_pid=$!
    while kill -0 "$qemu_pid" 2>/dev/null; do
        tr -d '\r' 2>/dev/null <"$work/guest.log" >"$work/guest.txt"
        sleep 1
    done
    wait "$qemu_pid"
    qrc=$?
    tr -d '\r' <"$work/guest.log" >"$work/guest.txt"
    kill "$client_pid" 2>/dev/null
    wait "$client_pid" 2>/dev/null
    g() { sed -n "s/^VU: $1 //p" "$work/guest.txt" | head -n 1; }
    drv=$(grep -a -m1 '^VU: \(not \)\?ok driver' "$work/guest.txt")
    case "$drv" in
    "VU: ok driver"*) pass driver ;;
    *) fail driver "${drv:-no marker (qemu exit $qrc; see $work/guest.log)}" ;;
    esac
    wait "$recv_pid" 2>/dev/null
    recv_pid=
    got_sum=$(md5sum <"$work/got.bin" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$(g out_sum)" ] && [ "$(g out_sum)" = "$got_sum" ] && grep -q '^VU: sent' "$work/guest.txt"; then
        pass to_host
    else
        fail to_host "guest sent $(g out_sum) ($(grep -a -m1 '^VU: sen' "$work/guest.txt")), host got $got_sum"
    fi
    if [ "$(g many)" = 20 ]; then pass many; else fail many "$(g many) of 20 answered"; fi
    case "$(g refused)" in
    *"Connection reset by peer"*) pass refused ;;
    *) fail refused "the guest's socat said: '$(g refused)'" ;;
    esac
    in_sum=$(g in_sum)
    if [ "${in_sum%% *}" = "$sum_to_guest" ] && grep -q '^reply OK [0-9]' "$work/client.log"; then
        pass from_host
    else
        fail from_host "guest got '${in_sum}', sent $sum_to_guest; client: $(tr '\n' ' ' <"$work/client.log")"
    fi
else
    for name in driver to_host from_host many refused; do fail "$name" "no server"; done
fi
echo "# guest run: $(($(date +%s) - start)) s" >&2
kill "$echo_pid" ${recv_pid:+"$recv_pid"} 2>/dev/null

# 3. SIGTERM.
vu_stop_server "$server_pid" "$sock" "$uds"

vu_report
