#!/bin/bash
# virtio_net.sh — what a guest's bulk TCP costs the host outside the guest's vCPU, through
# three user-mode networks that give a QEMU TCG guest the same virtio-net device:
#   vmkit  `vmkit serve-device --type net` (its NAT, libslirp on its own thread) over
#          vhost-user: -netdev vhost-user + virtio-net-pci,vectors=0; the device's MTU
#          (host_mtu, and --net nat,mtu= for the NAT) is 65520 unless -M says otherwise
#   qemu   QEMU's own -netdev user (libslirp in QEMU's main loop)
#   passt  Debian's passt over -netdev stream (its socket framing; its DHCP gives the
#          guest an MTU of 65520)
#   (QEMU's -netdev user has no MTU setting: its slirp stays at 1500.)
# The guest (the default guest's kernel, a busybox /init) takes a DHCP lease, then fetches
# SIZE MiB from a host web server through the gateway (down) and sends SIZE MiB to a host
# sink (up), then makes RR 64-byte request/response transactions with a host echo server
# (rr, bench/net_rr.c built static for the guest). For each phase the script samples, from /proc, the CPU time of the back end's
# process (vmkit or passt) plus QEMU's threads other than its TCG vCPU threads ("CPU n/TCG"):
# host CPU spent on the network, not on emulating the guest. Under TCG the guest's vCPU
# bounds throughput, so the headline is CPU seconds per GiB (per 1000 transactions for rr);
# MiB/s (transactions/s) comes second. Tools
# alternate run by run. See docs/benchmarks.md for the method and the figures.
#
#   bench/virtio_net.sh [-n RUNS] [-s SIZE_MIB] [-u UP_MIB] [-r RR] [-t TOOLS] [-M MTU] [-v VMKIT]
#                       [-w WORK_DIR]
#
# -n RUNS      runs per tool (default 3)
# -s SIZE_MIB  bytes down, in MiB (default 256)
# -u UP_MIB    bytes up, in MiB (default SIZE_MIB; busybox's nc sends about 2 MiB/s under TCG)
# -r RR        request/response transactions (default 2000)
# -t TOOLS     space-separated subset of "vmkit qemu passt" (default all three)
# -M MTU       the MTU of vmkit's device and NAT (default 65520, as passt's; 1500: Ethernet's)
# -v VMKIT     the vmkit binary (default build/tools/vmkit/vmkit)
# -w WORK_DIR  logs and raw results (default build/bench/net)
# Needs root (each run's host side lives in a network namespace of its own: no traffic
# leaves it), qemu-system-x86_64, passt, python3 and guest/out (guest/build.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
SIZE=256
UP=
RR=2000
TOOLS="vmkit qemu passt"
MTU=65520
VMKIT=$ROOT/build/tools/vmkit/vmkit
WORK=$ROOT/build/bench/net
GUEST=${VMKIT_GUEST_DIR:-$ROOT/guest/out}

usage() {
    sed -n '21,33s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
while getopts "n:s:u:r:t:M:v:w:h" opt; do
    case $opt in
    n) RUNS=$OPTARG ;;
    s) SIZE=$OPTARG ;;
    u) UP=$OPTARG ;;
    r) RR=$OPTARG ;;
    t) TOOLS=$OPTARG ;;
    M) MTU=$OPTARG ;;
    v) VMKIT=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) usage ;;
    esac
done
UP=${UP:-$SIZE}
[ "$(id -u)" -eq 0 ] || { echo "virtio_net.sh: needs root (network namespaces)" >&2; exit 1; }
for t in qemu-system-x86_64 passt python3 unshare cpio gcc; do
    command -v "$t" >/dev/null || { echo "virtio_net.sh: $t is missing" >&2; exit 1; }
done
[ -x "$VMKIT" ] || { echo "virtio_net.sh: no vmkit at $VMKIT" >&2; exit 1; }
[ -r "$GUEST/vmlinuz" ] || { echo "virtio_net.sh: no guest in $GUEST (guest/build.sh)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK/www"
# passt binds its socket after dropping to nobody: a directory nobody can reach and write.
SOCKDIR=$(mktemp -d /tmp/vmkit-bench-passt.XXXXXX)
chmod 1777 "$SOCKDIR"
trap 'rm -rf "$SOCKDIR"' EXIT
truncate -s "${SIZE}M" "$WORK/www/blob"

# The guest: a lease, then the two phases between markers the host samples at.
mkdir -p "$WORK/stage"
cat >"$WORK/stage/init" <<INIT
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in \$(find /lib/modules -name '*.ko' | sed 's,.*/,,; s,\.ko\$,,'); do modprobe -q "\$m"; done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 10 -T 2 >/dev/null 2>&1 || echo "BENCH: no lease"
gw=\$(ip route | sed -n 's/^default via \([0-9.]*\).*/\1/p')
# The guest's interrupts from the network device (its INTx line or its MSI-X vectors).
irqs() { awk '/virtio0/ { for (i = 2; i <= NF && \$i ~ /^[0-9]+\$/; i++) n += \$i } END { print n + 0 }' /proc/interrupts; }
i0=\$(irqs)
echo "BENCH: down start"
wget -q -O /dev/null "http://\$gw:7001/blob" || echo "BENCH: down failed"
echo "BENCH: down end"
i1=\$(irqs)
echo "BENCH: up start"
dd if=/dev/zero bs=65536 count=$((UP * 16)) 2>/dev/null | nc "\$gw" 7003 || echo "BENCH: up failed"
echo "BENCH: up end"
i2=\$(irqs)
echo "BENCH: rr start"
/net_rr "\$gw" 7005 $RR || echo "BENCH: rr failed"
echo "BENCH: rr end"
echo "BENCH: irqs down \$((i1 - i0)) up \$((i2 - i1)) rr \$((\$(irqs) - i2))"
sleep 3 # the host samples QEMU's CPU time before it goes
poweroff -f
INIT
chmod 0755 "$WORK/stage/init"
gcc -O2 -static -o "$WORK/stage/net_rr" "$ROOT/bench/net_rr.c"
(cd "$WORK/stage" && printf 'init\nnet_rr\n' | cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$WORK/init.cpio.gz"
cat "$GUEST/initramfs.img" "$WORK/init.cpio.gz" >"$WORK/initrd"

# CPU ticks of the network side: the back end's whole process, and QEMU's process less its
# vCPU threads (the process figure keeps the time of threads that have exited).
net_ticks() {
    local qemu=$1 backend=$2 total t name
    total=$(awk '{ print $14 + $15 }' "/proc/$qemu/stat" 2>/dev/null || echo 0)
    for t in /proc/"$qemu"/task/*; do
        name=$(cat "$t/comm" 2>/dev/null) || continue
        case "$name" in CPU*TCG*) ;; *) continue ;; esac
        total=$((total - $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)))
    done
    echo "$((total + $(backend_ticks "$backend")))"
}

# CPU ticks of the back end's process alone (0 for QEMU's own -netdev user).
backend_ticks() {
    if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
        awk '{ print $14 + $15 }' "/proc/$1/stat"
    else
        echo 0
    fi
}

now_ms() { date +%s%3N; }

# one_run TOOL N: boots the guest once with TOOL's network; appends "tool phase cpu_s wall_s"
# lines to $WORK/results.
one_run() {
    local tool=$1 n=$2 ns="$WORK/$tool.$n" netdev backend_pid="" qemu_pid
    mkdir -p "$ns"
    : >"$ns/serial.log"
    # The host side: the web server, the sink, and the back end, in a namespace (loopback and
    # a veth pair for passt's sake); the guest's QEMU joins it too, for -netdev user.
    cat >"$ns/host.sh" <<HOST
#!/bin/bash
ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.99.0.1/24 dev v0
ip link set v0 up
ip link set v1 up
ip route add default via 10.99.0.2
python3 -m http.server 7001 --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
echo \$! >>"$ns/servers.pid"
# The sink (7003: reads all) and the echo server (7005: sends back what it reads).
python3 -c '
import socket, threading
def serve(port, echo):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(1)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(1 << 20)
            if not d: break
            if echo: c.sendall(d)
        c.close()
threading.Thread(target=serve, args=(7003, False), daemon=True).start()
serve(7005, True)' &
echo \$! >>"$ns/servers.pid"
case $tool in
vmkit) "$VMKIT" serve-device --type net --net nat,mtu=$MTU --socket "$ns/vu.sock" \
           >"$ns/backend.log" 2>&1 &
       echo \$! >"$ns/backend.pid" ;;
passt) passt -f -q --socket "$SOCKDIR/passt.$n.sock" >"$ns/backend.log" 2>&1 &
       echo \$! >"$ns/backend.pid" ;;
esac
# QEMU connects once, at start (7.2's stream netdev cannot reconnect): the socket first.
for _ in \$(seq 100); do
    [ -S "$ns/vu.sock" ] || [ -S "$SOCKDIR/passt.$n.sock" ] || [ "$tool" = qemu ] && break
    sleep 0.05
done
exec qemu-system-x86_64 -name bench,debug-threads=on -accel tcg -m 512 \$NETARGS -display none \
    -serial file:"$ns/serial.log" -monitor none -no-reboot \
    -kernel "$GUEST/vmlinuz" -initrd "$WORK/initrd" -append "console=ttyS0 panic=-1 quiet"
HOST
    chmod +x "$ns/host.sh"
    case $tool in
    vmkit)
        netdev="-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem
                -chardev socket,id=c0,path=$ns/vu.sock,reconnect=1 -netdev vhost-user,id=n0,chardev=c0
                -device virtio-net-pci,netdev=n0,vectors=0,host_mtu=$MTU" ;;
    qemu) netdev="-netdev user,id=n0 -device virtio-net-pci,netdev=n0" ;;
    passt)
        netdev="-netdev stream,id=n0,server=off,addr.type=unix,addr.path=$SOCKDIR/passt.$n.sock
                -device virtio-net-pci,netdev=n0" ;;
    esac
    NETARGS=$(echo "$netdev" | tr '\n' ' ') unshare -n "$ns/host.sh" >"$ns/qemu.log" 2>&1 &
    local shell_pid=$!
    # QEMU is exec'd by host.sh: the namespace's shell becomes it.
    qemu_pid=$shell_pid
    for _ in $(seq 50); do
        [ -s "$ns/backend.pid" ] && break
        [ "$tool" = qemu ] && break
        sleep 0.1
    done
    [ "$tool" != qemu ] && backend_pid=$(cat "$ns/backend.pid")
    local phase start_ticks start_backend start_ms line
    # The host side's servers outlive QEMU (exec'd over their parent): end them and the back
    # end with the run.
    end_run() {
        kill "$qemu_pid" $backend_pid $(cat "$ns/servers.pid" 2>/dev/null) 2>/dev/null || true
    }
    for phase in down up rr; do
        while ! grep -aq "BENCH: $phase start" "$ns/serial.log"; do
            kill -0 "$qemu_pid" 2>/dev/null || { echo "$tool run $n: guest ended early" >&2; end_run; return 1; }
            sleep 0.05
        done
        start_ticks=$(net_ticks "$qemu_pid" "$backend_pid")
        start_backend=$(backend_ticks "$backend_pid")
        start_ms=$(now_ms)
        while ! grep -aq "BENCH: $phase end" "$ns/serial.log"; do
            kill -0 "$qemu_pid" 2>/dev/null || { echo "$tool run $n: guest ended early" >&2; end_run; return 1; }
            sleep 0.05
        done
        line="$tool $phase $(net_ticks "$qemu_pid" "$backend_pid") $start_ticks $(now_ms) $start_ms"
        line+=" $(backend_ticks "$backend_pid") $start_backend"
        echo "$line" >>"$WORK/raw"
    done
    wait "$qemu_pid" 2>/dev/null || true
    end_run
    # The guest's network interrupts per phase: "irqs TOOL DOWN UP RR".
    sed -n "s/^BENCH: irqs down \([0-9]*\) up \([0-9]*\) rr \([0-9]*\).*/irqs $tool \1 \2 \3/p" \
        "$ns/serial.log" | tr -d '\r' >>"$WORK/raw"
    ! grep -a "BENCH:.*failed\|no lease" "$ns/serial.log" >&2
}

: >"$WORK/raw"
for n in $(seq "$RUNS"); do
    for tool in $TOOLS; do
        echo "virtio_net.sh: run $n, $tool" >&2
        one_run "$tool" "$n" || echo "virtio_net.sh: $tool run $n failed (see $WORK/$tool.$n)" >&2
    done
done

# Medians per tool and phase: CPU seconds per GiB and MiB/s; ratios against vmkit.
python3 - "$WORK/raw" "$SIZE" "$UP" "$(getconf CLK_TCK)" "$RR" <<'PY'
import sys, statistics
raw, down_mib, up_mib = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
hz, rr = float(sys.argv[4]), float(sys.argv[5])
runs = {}
irqs = {}  # (tool, phase): interrupts per MiB (rr: per 1000 transactions), one per run
for line in open(raw):
    if line.startswith("irqs "):
        _, tool, down, up, rrn = line.split()
        irqs.setdefault((tool, "down"), []).append(int(down) / down_mib)
        irqs.setdefault((tool, "up"), []).append(int(up) / up_mib)
        irqs.setdefault((tool, "rr"), []).append(int(rrn) * 1000 / rr)
        continue
    tool, phase, t1, t0, m1, m0, b1, b0 = line.split()
    cpu = (int(t1) - int(t0)) / hz
    backend = (int(b1) - int(b0)) / hz
    wall = (int(m1) - int(m0)) / 1000
    if phase == "rr":  # CPU ms per 1000 transactions, transactions/s
        scale, amount = 1e6 / rr, rr
    else:
        amount = down_mib if phase == "down" else up_mib
        scale = 1024 / amount
    runs.setdefault((tool, phase), []).append((cpu * scale, amount / wall, backend * scale))
print("| phase | tool | runs | CPU s/GiB, rr: ms/1000 (median) | of which the back end's process"
      " | MiB/s, rr: 1/s (median) | guest interrupts per MiB, rr: per 1000 | CPU tool/vmkit |")
print("|---|---|---|---|---|---|---|---|")
for phase in ("down", "up", "rr"):
    base = runs.get(("vmkit", phase))
    base_cpu = statistics.median(c for c, _, _ in base) if base else None
    for tool in ("vmkit", "qemu", "passt"):
        r = runs.get((tool, phase))
        if not r:
            continue
        cpu = statistics.median(c for c, _, _ in r)
        rate = statistics.median(t for _, t, _ in r)
        own = statistics.median(b for _, _, b in r) if tool != "qemu" else None
        ratio = f"{cpu / base_cpu:.2f}" if base_cpu and tool != "vmkit" else "-"
        own_s = f"{own:.2f}" if own is not None else "-"
        irq = irqs.get((tool, phase))
        irq_s = f"{statistics.median(irq):.0f}" if irq else "-"
        print(f"| {phase} | {tool} | {len(r)} | {cpu:.2f} | {own_s} | {rate:.1f} | {irq_s} | {ratio} |")
PY
