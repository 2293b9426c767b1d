#!/bin/bash
# Tier 2 (DESIGN.md "Real Linux drivers against vmkit's devices"): `vmkit serve-device` serves
# virtio-net over vhost-user to QEMU TCG's vhost-user netdev, and the guest's stock virtio_net
# driver gets a DHCP lease, fetches a payload from a host web server through the gateway, and
# receives one from a host client through a port forward, each checked by md5. Twice:
#  - nat: vmkit's own NAT (libslirp), `--type net --net nat,mtu=65520,hostfwd=...` and QEMU's
#    host_mtu=65520: frames of 64 KiB both ways; also a ping of the gateway, a UDP forward
#    there and back, the NAT's DNS forwarder, and a second guest (a new QEMU, the same
#    server) that gets its lease and its payload again: the front end reconnects;
#  - passt: `--device virtio-net,type=unixstream,path=P` to Debian's passt on P, a NAT vmkit did
#    not write, speaking QEMU's -netdev stream framing; the guest takes passt's MTU of 65520
#    from DHCP, so frames that large cross vmkit both ways. Only the guest's fetch: inbound
#    forwards through Debian 12's passt (-t) stall after about 96 KiB here with QEMU's own
#    -netdev stream as well (measured), so they say nothing about vmkit.
# The host side of each (vmkit or passt, the web server, the client) runs in a network
# namespace this test makes (loopback and a veth pair): no traffic leaves it. Needs root
# (unshare -n). Prints TAP on stdout.
#
#   tests/system/vhost_user/test_vhost_user_net.sh [VMKIT_BINARY]
#
# As the other tier-2 tests: VMKIT_BIN, VMKIT_GUEST_DIR, VMKIT_VU_TIMEOUT, VMKIT_VU_LOG_DIR.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
vmkit=${1:-${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}}
guest_dir=${VMKIT_GUEST_DIR:-$root/guest/out}
timeout_s=${VMKIT_VU_TIMEOUT:-300}

tests=(
    "nat_serve|vmkit serve-device --type net --net nat,mtu=65520,hostfwd=tcp:...:7002,hostfwd=udp:...:7004 listens"
    "nat_driver|the guest's virtio_net binds the vhost-user device (eth0 appears)"
    "nat_lease|udhcpc gets 10.0.2.15 from vmkit's NAT, router 10.0.2.2"
    "nat_mtu|the guest's eth0 has the device's MTU of 65520 (VIRTIO_NET_F_MTU)"
    "nat_ping|the guest pings the gateway 10.0.2.2"
    "nat_to_host|the guest fetches 2 MiB over HTTP from the host's loopback via 10.0.2.2 at MTU 65520, md5 intact"
    "nat_from_host|a host client sends 2 MiB to the guest through the TCP hostfwd at MTU 65520, md5 intact"
    "nat_udp|a host datagram reaches the guest through the UDP hostfwd, and the guest's answer comes back"
    "nat_dns|the guest's lookup at 10.0.2.3 is answered by the resolver the test runs (the namespace's resolv.conf)"
    "nat_reconnect|a second QEMU on the same server: its guest gets 10.0.2.15 and fetches 2 MiB, md5 intact"
    "nat_stop|SIGTERM stops the server with status 0 and removes the socket"
    "passt_peer|passt listens on its socket in the test's network namespace"
    "passt_serve|vmkit serve-device --device virtio-net,type=unixstream connects to passt and listens"
    "passt_driver|the guest's virtio_net binds the vhost-user device (eth0 appears)"
    "passt_lease|udhcpc gets a lease from passt through vmkit"
    "passt_to_host|the guest fetches 2 MiB over HTTP from a host server via passt's gateway, md5 intact"
    "passt_stop|SIGTERM stops the server with status 0 and removes the socket"
)

# shellcheck source=tests/system/vhost_user/common.sh
. "$here/common.sh"
vu_prepare virtio-net-pci net
command -v passt >/dev/null || skip "passt not installed (apt-get install passt)"
command -v unshare >/dev/null || skip "unshare not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root for a network namespace"

# The payloads and their sums.
head -c $((2 << 20)) /dev/urandom >"$work/to_guest.bin"
sum_to_guest=$(md5sum <"$work/to_guest.bin" | cut -d' ' -f1)

# The guest's /init: the driver, a lease, a fetch from the host, a listener for the host.
mkdir -p "$work/stage"
vu_add_modules "$work/stage" virtio_pci virtio_net || skip "cannot stage the guest's virtio_net module"
# The guest's end of the UDP forward (nat_udp).
have_socat=true
vu_add_host_binaries "$work/stage" socat || have_socat=false
cat >"$work/stage/dhcp.sh" <<'DHCP'
#!/bin/sh
# udhcpc's script: configure what the lease says.
case "$1" in
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    # passt offers 65520: frames that large then cross vmkit both ways.
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "VU: lease $ip router $router mtu ${mtu:-none}"
    ;;
esac
DHCP
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
while read -r m; do insmod "/$m"; done </order
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 1; done
if [ -e /sys/class/net/eth0 ]; then echo "VU: ok driver"; else echo "VU: not ok driver no eth0"; fi
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -s /dhcp.sh -n -q -t 10 -T 2; then
    echo "VU: ok lease"
else
    echo "VU: not ok lease udhcpc failed"
fi
gw=$(ip route | sed -n 's/^default via \([0-9.]*\).*/\1/p')
echo "VU: mtu $(cat /sys/class/net/eth0/mtu)"
case " $(cat /proc/cmdline) " in
*" vu_ping "*) if ping -c 1 -W 10 "$gw" >/dev/null 2>&1; then echo "VU: ping ok"; else echo "VU: ping failed"; fi ;;
esac
# The host's web server, through the gateway address that passt maps to the host's loopback.
got=$(wget -q -O - "http://$gw:7001/to_guest.bin" | md5sum | cut -d' ' -f1)
echo "VU: to_host_sum $got"
# The NAT's DNS forwarder, answered by the test's resolver (nat only: passt's is the host's).
case " $(cat /proc/cmdline) " in
*" vu_dns "*) echo "VU: dns $(nslookup vmkit.test 10.0.2.3 2>&1 | tr '\n' ' ')" ;;
esac
# The host's client sends through the NAT's forwards of TCP 7002 and UDP 7004 to us (when
# asked to); the first datagram is answered with "pong-" and what it said.
case " $(cat /proc/cmdline) " in
*" vu_from_host "*)
    # (busybox's nc has no UDP: the host's socat answers the first datagram.)
    if [ -x /usr/local/bin/socat ]; then
        /usr/local/bin/socat UDP4-RECVFROM:7004 SYSTEM:'read -r l; echo "$l" >/tmp/udp_in; echo "pong-$l"' &
        udp_socat=$!
        (sleep 120; kill $udp_socat 2>/dev/null) &
    fi
    nc -l -p 7002 >/tmp/from_host.bin &
    tcp_nc=$!
    echo "VU: listening"
    wait $tcp_nc
    echo "VU: from_host_sum $(md5sum </tmp/from_host.bin | cut -d' ' -f1)"
    [ -n "$udp_socat" ] && wait $udp_socat
    echo "VU: udp_in $(cat /tmp/udp_in 2>/dev/null)"
    ;;
esac
echo "VU: done"
poweroff -f
echo o >/proc/sysrq-trigger
INIT
chmod 0755 "$work/stage/init" "$work/stage/dhcp.sh"
(cd "$work/stage" && find . -mindepth 1 | sed 's,^\./,,' | cpio -o -H newc -R 0:0 --quiet |
    gzip -1n) >"$work/init.cpio.gz"
cat "$guest_dir/initramfs.img" "$work/init.cpio.gz" >"$work/initrd"

# The host side of a scenario, in a network namespace of its own: the web server the guest
# fetches from (on loopback: the gateway maps there), the NAT (vmkit's serve-device, or passt
# that vmkit connects to from outside), and the client that sends to the guest's listener.
mkdir -p "$work/www"
# passt binds its socket after dropping to nobody: a directory nobody can reach and write
# (the work directory is root's and 0700).
passt_dir=$(mktemp -d /tmp/vmkit-passt.XXXXXX)
chmod 1777 "$passt_dir"
ln -s ../to_guest.bin "$work/www/to_guest.bin"

# A DNS server for the namespace's /etc/resolv.conf: answers every A query with 10.99.77.1.
cat >"$work/dns.py" <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    end = 12
    while end < len(q) and q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    answer = b"\xc0\x0c" + b"\x00\x01\x00\x01" + b"\x00\x00\x00\x3c" + b"\x00\x04" + bytes([10, 99, 77, 1])
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + question + answer, peer)
PY
echo "nameserver 127.0.0.1" >"$work/resolv.conf"

# host_side NAME: writes and starts $work/NAME.netns.sh in a new network namespace.
host_side() {
    local name=$1 nat send=true
    if [ "$name" = nat ]; then
        nat="(\"$vmkit\" serve-device --type net --net nat,mtu=65520,hostfwd=tcp:127.0.0.1:7002-:7002,hostfwd=udp:127.0.0.1:7004-:7004 --socket \"$sock\" >\"$work/server.log\" 2>&1 &
echo \$! >\"$work/server.pid\"; wait \$!; echo \$? >\"$work/server.rc\") &"
    else
        nat="passt -f -q --socket \"$passt_dir/passt.sock\" >\"$work/passt.log\" 2>&1 &"
        send=false
    fi
    cat >"$work/$name.netns.sh" <<NETNS
#!/bin/bash
ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.99.0.1/24 dev v0
ip link set v0 up
ip link set v1 up
ip route add default via 10.99.0.2
# This namespace's resolver (vmkit's NAT forwards 10.0.2.3 to what resolv.conf names).
mount --bind "$work/resolv.conf" /etc/resolv.conf
python3 "$work/dns.py" >"$work/dns.log" 2>&1 &
python3 -m http.server 7001 --bind 127.0.0.1 --directory "$work/www" >"$work/http.log" 2>&1 &
$nat
$send || exec sleep $timeout_s
for _ in \$(seq $timeout_s); do
    grep -q "VU: listening" "$work/guest.txt" 2>/dev/null && break
    sleep 1
done
sleep 1
python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", 7002), timeout=60)
s.sendall(open("$work/to_guest.bin", "rb").read())
s.shutdown(socket.SHUT_WR)
s.settimeout(120)
s.recv(1)
s.close()
# One datagram through the UDP forward, sent again each second until the guest's answer
# (UDP may lose one; how many it took is reported).
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1)
result = "no answer after 30 datagrams"
for sent in range(1, 31):
    u.sendto(b"udp-7a3f\n", ("127.0.0.1", 7004))
    try:
        data, _ = u.recvfrom(100)
    except socket.timeout:
        continue
    result = "answer %r after %d datagram(s)" % (data.decode(errors="replace").strip(), sent)
    break
open("$work/udp.result", "w").write(result + "\n")
PY
echo "sender done"
sleep $timeout_s
NETNS
    chmod +x "$work/$name.netns.sh"
    : >"$work/guest.txt"
    unshare -n -m "$work/$name.netns.sh" >"$work/$name.netns.log" 2>&1 &
    netns_pid=$!
}

# wait_for PATH: up to 5 s for a socket file.
wait_for() {
    for _ in $(seq 50); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# boot_guest NAME APPEND [DEVICE_OPTS]: boots the guest against $sock until it powers off;
# its console ends up in $work/guest.txt (and $work/NAME.guest.txt); sets qrc.
boot_guest() {
    local name=$1 qemu_pid
    # Debian's QEMU 7.2 crashes when a TCG guest starts vhost-user virtio-net-pci with MSI-X:
    # vectors=0 keeps it on INTx.
    timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 512 \
        -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path="$sock" -netdev vhost-user,id=n0,chardev=c0 \
        -device "virtio-net-pci,netdev=n0,vectors=0${3:+,$3}" \
        -display none -serial file:"$work/$name.guest.log" -monitor none -no-reboot \
        -kernel "$guest_dir/vmlinuz" -initrd "$work/initrd" \
        -append "console=ttyS0 panic=-1 $2" </dev/null >"$work/$name.qemu.log" 2>&1 &
    qemu_pid=$!
    while kill -0 "$qemu_pid" 2>/dev/null; do
        tr -d '\r' 2>/dev/null <"$work/$name.guest.log" >"$work/guest.txt"
        sleep 1
    done
    wait "$qemu_pid"
    qrc=$?
    tr -d '\r' <"$work/$name.guest.log" >"$work/guest.txt"
    cp "$work/guest.txt" "$work/$name.guest.txt"
}

# guest NAME: boots the guest against $sock and records NAME_driver ... NAME_from_host.
guest() {
    local name=$1 qrc line m got checks=to_host append="" opts=""
    if [ "$name" = nat ]; then
        checks="to_host from_host"
        append="vu_from_host vu_dns vu_ping"
        opts="host_mtu=65520"
    fi
    boot_guest "$name" "$append" "$opts"
    for m in driver lease; do
        line=$(grep -a -m1 "^VU: \(not \)\?ok $m" "$work/guest.txt")
        case "$line" in
        "VU: ok $m"*) pass "${name}_$m" ;;
        "VU: not ok $m"*) fail "${name}_$m" "${line#VU: not ok }" ;;
        *) fail "${name}_$m" "no marker (qemu exit $qrc; see $work/$name.guest.log)" ;;
        esac
    done
    if [ "$name" = nat ] && [ "${result[nat_lease]:-}" = ok ] &&
        ! grep -aq "^VU: lease 10.0.2.15 router 10.0.2.2" "$work/guest.txt"; then
        fail nat_lease "$(grep -a '^VU: lease' "$work/guest.txt")"
    fi
    if [ "$name" = nat ]; then
        line=$(grep -a -m1 "^VU: dns" "$work/guest.txt")
        case "$line" in
        *"10.99.77.1"*) pass nat_dns ;;
        *) fail nat_dns "${line:-no answer}" ;;
        esac
        line=$(grep -a -m1 "^VU: mtu" "$work/guest.txt")
        if [ "$line" = "VU: mtu 65520" ]; then pass nat_mtu; else fail nat_mtu "${line:-no mtu line}"; fi
        line=$(grep -a -m1 "^VU: ping" "$work/guest.txt")
        if [ "$line" = "VU: ping ok" ]; then pass nat_ping; else fail nat_ping "${line:-no ping line}"; fi
        # The host's sender wrote what came back; the guest says what it got.
        for _ in $(seq 30); do [ -s "$work/udp.result" ] && break; sleep 1; done
        line=$(cat "$work/udp.result" 2>/dev/null)
        if ! $have_socat && [ "${CI:-}" != true ]; then
            skipped nat_udp "socat is not installed (the guest's UDP end; apt-get install socat)"
        elif ! $have_socat; then
            fail nat_udp "socat is not installed (the guest's UDP end; apt-get install socat)"
        elif [[ "$line" == "answer 'pong-udp-7a3f' after "* ]]; then
            pass nat_udp
        else
            fail nat_udp "host: ${line:-no result}; guest: $(grep -a -m1 '^VU: udp_in' "$work/guest.txt")"
        fi
    fi
    for m in $checks; do
        got=$(sed -n "s/^VU: ${m}_sum //p" "$work/guest.txt")
        if [ "$got" = "$sum_to_guest" ]; then
            pass "${name}_$m"
        else
            fail "${name}_$m" "md5 '$got', want $sum_to_guest"
        fi
    done
}

# stop_server NAME PID
stop_server() {
    local src=0
    if [ -n "$2" ] && kill -0 "$2" 2>/dev/null; then
        kill -TERM "$2"
        # Not our child when it runs in the namespace: poll for its end.
        for _ in $(seq 100); do
            kill -0 "$2" 2>/dev/null || break
            sleep 0.1
        done
        wait "$2" 2>/dev/null || src=$?
        # Not our child (it ran in the namespace): its subshell wrote the status.
        if [ "$src" -eq 127 ]; then
            for _ in $(seq 20); do
                [ -s "$work/server.rc" ] && break
                sleep 0.1
            done
            src=$(cat "$work/server.rc" 2>/dev/null || echo "unknown")
        fi
        if ! kill -0 "$2" 2>/dev/null && [ "$src" -eq 0 ] && [ ! -e "$sock" ]; then
            pass "$1_stop"
        else
            fail "$1_stop" "exit status $src, socket there: $([ -e "$sock" ] && echo yes || echo no)"
        fi
    else
        fail "$1_stop" "the server was not running: $(tr '\n' ' ' <"$work/server.log")"
    fi
}

netns_pid=
trap 'vu_cleanup; [ -n "$netns_pid" ] && pkill -P "$netns_pid"; kill $netns_pid 2>/dev/null; pkill -f "passt.*$passt_dir" 2>/dev/null; rm -rf "$passt_dir"' EXIT

# 1. vmkit's NAT.
host_side nat
if wait_for "$sock"; then
    pass nat_serve
    guest nat
    # The front end goes and a new one comes: the server (and its NAT) serve it again.
    boot_guest nat2 "" host_mtu=65520
    got=$(sed -n "s/^VU: to_host_sum //p" "$work/guest.txt")
    if grep -aq "^VU: lease 10.0.2.15 router 10.0.2.2" "$work/guest.txt" &&
        [ "$got" = "$sum_to_guest" ]; then
        pass nat_reconnect
    else
        fail nat_reconnect "$(grep -a -m1 '^VU: .*lease' "$work/guest.txt"); md5 '$got' (qemu exit $qrc; $work/nat2.guest.log)"
    fi
else
    fail nat_serve "no socket at $sock: $(tr '\n' ' ' <"$work/server.log" 2>/dev/null)"
    for m in driver lease mtu ping to_host from_host udp dns reconnect; do fail "nat_$m" "no server"; done
fi
stop_server nat "$(cat "$work/server.pid" 2>/dev/null)"
pkill -P "$netns_pid" 2>/dev/null
kill "$netns_pid" 2>/dev/null
wait "$netns_pid" 2>/dev/null

# 2. passt.
host_side passt
if wait_for "$passt_dir/passt.sock"; then
    pass passt_peer
else
    fail passt_peer "no passt socket: $(cat "$work/passt.log" 2>/dev/null)"
fi
"$vmkit" serve-device --device "virtio-net,type=unixstream,path=$passt_dir/passt.sock" \
    --socket "$sock" >"$work/server.log" 2>&1 &
server_pid=$!
if wait_for "$sock" && kill -0 "$server_pid" 2>/dev/null; then
    pass passt_serve
    guest passt
else
    fail passt_serve "no socket at $sock: $(tr '\n' ' ' <"$work/server.log")"
    for m in driver lease to_host; do fail "passt_$m" "no server"; done
fi
stop_server passt "$server_pid"
server_pid=
vu_report
