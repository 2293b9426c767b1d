#!/bin/bash
# vhost_user_blk.sh — 4 KiB random reads and writes through a vhost-user-blk back end:
# `vmkit serve-device --device virtio-blk,...` next to `qemu-storage-daemon --export vhost-user-blk`.
# See docs/benchmarks.md for the method.
#
#   bench/vhost_user_blk.sh [-n RUNS] [-t SECONDS] [-d DEPTHS] [-s SIZE_MIB]
#                           [-a AIO] [-b BUILD_DIR] [-v VMKIT] [-w WORK_DIR]
#
# -n RUNS       measured runs per tool, operation and depth (default 5)
# -t SECONDS    length of one run, after a 0.5 s warm-up (default 5)
# -d DEPTHS     queue depths, space-separated (default "1 32")
# -s SIZE_MIB   size of each disk image in /dev/shm (default 256)
# -a AIO        aio= of QEMU's file driver: threads (QEMU's default, the
#               default here) or io_uring
# -b BUILD_DIR  meson build directory holding tools/vmkit/vmkit (default: build);
#               built (ninja, the vmkit target only) when the binary is missing
# -v VMKIT      the vmkit binary to use instead (no build)
# -w WORK_DIR   where the benchmark binary, sockets, logs and raw results go
#               (default: BUILD_DIR/bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
SECONDS_PER_RUN=5
DEPTHS="1 32"
SIZE_MIB=256
AIO=threads
BUILD="$ROOT/build"
VMKIT=""
WORK=""
CC=${CC:-cc}
OPS="randread randwrite"

usage() {
    sed -n '6,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

while getopts "n:t:d:s:a:b:v:w:h" opt; do
    case $opt in
    n) RUNS=$OPTARG ;;
    t) SECONDS_PER_RUN=$OPTARG ;;
    d) DEPTHS=$OPTARG ;;
    s) SIZE_MIB=$OPTARG ;;
    a) AIO=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    v) VMKIT=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) usage ;;
    esac
done
positive() {
    case $2 in '' | *[!0-9]* | 0) echo "vhost_user_blk: $1 needs a positive number" >&2; exit 2 ;; esac
}
positive -n "$RUNS"
positive -t "$SECONDS_PER_RUN"
positive -s "$SIZE_MIB"
for d in $DEPTHS; do positive -d "$d"; done
[ -n "$DEPTHS" ] || positive -d ""
case $AIO in threads | io_uring) ;; *) echo "vhost_user_blk: -a threads or io_uring" >&2; exit 2 ;; esac
WORK=${WORK:-$BUILD/bench}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# ---- Build -------------------------------------------------------------------

if [ -z "$VMKIT" ]; then
    VMKIT="$BUILD/tools/vmkit/vmkit"
    if [ ! -x "$VMKIT" ]; then
        echo "vhost_user_blk: building $VMKIT"
        [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$ROOT" >"$WORK/meson-setup.log"
        ninja -C "$BUILD" -j 2 tools/vmkit/vmkit >"$WORK/ninja.log"
    fi
fi
if [ ! -x "$VMKIT" ]; then
    echo "vhost_user_blk: $VMKIT is not an executable" >&2
    exit 1
fi
QSD=$(command -v qemu-storage-daemon || true)
if [ -z "$QSD" ]; then
    echo "vhost_user_blk: qemu-storage-daemon not found (Debian: apt-get install qemu-system-x86)" >&2
    exit 1
fi

BENCH="$WORK/vhost_user_blk_bench"
"$CC" -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/src" -I"$ROOT/tests/support" \
    -o "$BENCH" "$ROOT/bench/vhost_user_blk_bench.c" "$ROOT/tests/support/vhost_user_frontend.c" \
    "$ROOT/tests/support/fd_passing.c"

# ---- The two back ends, each on its own image in tmpfs -------------------------

# Each gets its own file: both take the image for themselves (QEMU locks it), and
# neither then reads what the other wrote.
IMG_PREFIX=/dev/shm/vhost_user_blk_bench.$$
declare -A PID=() SOCK=() IMG=()
cleanup() {
    local t
    for t in "${!PID[@]}"; do
        kill "${PID[$t]}" 2>/dev/null || true
        wait "${PID[$t]}" 2>/dev/null || true
    done
    rm -f "$IMG_PREFIX".*.img
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for t in vmkit qemu; do
    IMG[$t]="$IMG_PREFIX.$t.img"
    SOCK[$t]="$WORK/$t.sock"
    rm -f "${SOCK[$t]}"
    # Random data, so that reads copy real pages rather than tmpfs holes.
    head -c "$((SIZE_MIB << 20))" /dev/urandom >"${IMG[$t]}"
done

# Both cached (tmpfs refuses O_DIRECT), one request queue, writes never flushed (the
# benchmark sends no FLUSH, so sync= and QEMU's flush settings do not come into play).
"$VMKIT" serve-device --socket "${SOCK[vmkit]}" \
    --device "virtio-blk,path=${IMG[vmkit]},cache=cached,queues=1" >"$WORK/vmkit.log" 2>&1 &
PID[vmkit]=$!
"$QSD" --blockdev "driver=file,node-name=disk,filename=${IMG[qemu]},cache.direct=off,aio=$AIO" \
    --export "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=${SOCK[qemu]},writable=on,num-queues=1" \
    >"$WORK/qemu.log" 2>&1 &
PID[qemu]=$!

for t in vmkit qemu; do
    for ((i = 0; i < 100; i++)); do
        [ -S "${SOCK[$t]}" ] && break
        if ! kill -0 "${PID[$t]}" 2>/dev/null; then
            echo "vhost_user_blk: the $t back end exited:" >&2
            sed 's/^/    | /' "$WORK/$t.log" | tail -n 8 >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ ! -S "${SOCK[$t]}" ]; then
        echo "vhost_user_blk: the $t back end did not create ${SOCK[$t]} in 10 s" >&2
        exit 1
    fi
done

# ---- Measuring ---------------------------------------------------------------

RESULTS="$WORK/results.txt"
: >"$RESULTS"
echo "vhost_user_blk: $RUNS runs of ${SECONDS_PER_RUN}s per tool, operation and depth;" \
    "images of $SIZE_MIB MiB in /dev/shm; work dir $WORK"
echo "machine: $(nproc) CPUs online, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start;" \
    "nothing pinned, and other work on the machine counts against both tools alike"
echo "vmkit: $VMKIT"
echo "qemu:  $("$QSD" --version | head -n 1), aio=$AIO"

# The tools alternate run by run, so that a slow spell on a busy machine hits both.
for ((run = 1; run <= RUNS; run++)); do
    for op in $OPS; do
        for qd in $DEPTHS; do
            for t in vmkit qemu; do
                if ! line=$("$BENCH" --socket "${SOCK[$t]}" --pid "${PID[$t]}" --label "$t" \
                    --op "$op" --qd "$qd" --seconds "$SECONDS_PER_RUN" --seed "$run" \
                    2>"$WORK/bench.err"); then
                    echo "vhost_user_blk: $t $op qd=$qd run $run failed:" >&2
                    sed 's/^/    | /' "$WORK/bench.err" >&2
                    echo "  $t's log ($WORK/$t.log):" >&2
                    sed 's/^/    | /' "$WORK/$t.log" | tail -n 8 >&2
                    exit 1
                fi
                echo "$line" >>"$RESULTS"
                echo "  run $run: $line"
            done
        done
    done
done

# ---- Report ------------------------------------------------------------------

# summary TOOL OP QD: median IOPS, best IOPS, median server CPU us/request, median
# total CPU us/request.
summary() {
    awk -v t="$1" -v o="$2" -v q="$3" '
        { delete kv; for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] } }
        kv["label"] == t && kv["op"] == o && kv["qd"] == q && kv["reqs"] > 0 {
            n++; iops[n] = kv["iops"]; if (kv["iops"] > best) best = kv["iops"]
            srv[n] = kv["server_cpu_s"] / kv["reqs"] * 1e6
            tot[n] = (kv["server_cpu_s"] + kv["client_cpu_s"]) / kv["reqs"] * 1e6
        }
        function median(a, n,    i, j, x) {
            for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        END { if (n) printf "%.0f %.0f %.2f %.2f\n", median(iops, n), best, median(srv, n), median(tot, n); else print "0 0 0 0" }
    ' "$RESULTS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "Medians of $RUNS runs (best: the highest IOPS of a run). CPU: host CPU seconds per million"
echo "requests (= CPU us per request); server: the back-end process; total: back end + front end."
printf '%-10s %4s %-6s %10s %10s %12s %12s %10s %14s\n' op qd tool IOPS "best IOPS" "server CPU" \
    "total CPU" "IOPS v/Q" "server CPU v/Q"
for op in $OPS; do
    for qd in $DEPTHS; do
        read -r vi vb vs vt <<<"$(summary vmkit "$op" "$qd")"
        read -r qi qb qs qt <<<"$(summary qemu "$op" "$qd")"
        printf '%-10s %4s %-6s %10s %10s %12s %12s %10s %14s\n' "$op" "$qd" vmkit "$vi" "$vb" \
            "$vs" "$vt" "$(ratio "$vi" "$qi")" "$(ratio "$vs" "$qs")"
        printf '%-10s %4s %-6s %10s %10s %12s %12s %10s %14s\n' "$op" "$qd" qemu "$qi" "$qb" \
            "$qs" "$qt" - -
    done
done
echo "(v/Q: vmkit / QEMU; IOPS above 1 and CPU below 1 favour vmkit. Raw lines: $RESULTS)"
