#!/bin/bash
# vhost_user_fs.sh — file-system operations through a vhost-user-fs back end, no guest:
# `vmkit serve-device --type fs` next to QEMU's virtiofsd, both on a fresh share in /dev/shm.
# See docs/benchmarks.md for the method.
#
#   bench/vhost_user_fs.sh [-n RUNS] [-t SECONDS] [-d DEPTHS] [-c CACHE] [-o OPS]
#                          [-b BUILD_DIR] [-v VMKIT] [-w WORK_DIR]
#
# -n RUNS       measured runs per tool, operation and depth (default 5)
# -t SECONDS    length of one run, after a 0.5 s warm-up (default 5)
# -d DEPTHS     operations in flight, space-separated (default "1 32")
# -c CACHE      cache mode of both back ends: auto (default), always or never
#               (virtiofsd's none)
# -o OPS        operations, space-separated (default: all of "lookup create mkdir
#               readdirplus read4k write4k")
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
CACHE=auto
OPS="lookup create mkdir readdirplus read4k write4k"
BUILD="$ROOT/build"
VMKIT=""
WORK=""
CC=${CC:-cc}
VIRTIOFSD=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
FILES=1000
DATA_MIB=64

usage() {
    sed -n '6,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

while getopts "n:t:d:c:o:b:v:w:h" opt; do
    case $opt in
    n) RUNS=$OPTARG ;;
    t) SECONDS_PER_RUN=$OPTARG ;;
    d) DEPTHS=$OPTARG ;;
    c) CACHE=$OPTARG ;;
    o) OPS=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    v) VMKIT=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) usage ;;
    esac
done
positive() {
    case $2 in '' | *[!0-9]* | 0) echo "vhost_user_fs: $1 needs a positive number" >&2; exit 2 ;; esac
}
positive -n "$RUNS"
positive -t "$SECONDS_PER_RUN"
for d in $DEPTHS; do positive -d "$d"; done
[ -n "$DEPTHS" ] || positive -d ""
[ -n "$OPS" ] || { echo "vhost_user_fs: -o needs at least one operation" >&2; exit 2; }
for op in $OPS; do
    case $op in
    lookup | create | mkdir | readdirplus | read4k | write4k) ;;
    *) echo "vhost_user_fs: -o: '$op' is not lookup, create, mkdir, readdirplus, read4k or write4k" >&2; exit 2 ;;
    esac
done
case $CACHE in
auto | always) QCACHE=$CACHE ;;
never) QCACHE=none ;;
*) echo "vhost_user_fs: -c auto, always or never" >&2; exit 2 ;;
esac
WORK=${WORK:-$BUILD/bench}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# ---- Build -------------------------------------------------------------------

if [ -z "$VMKIT" ]; then
    VMKIT="$BUILD/tools/vmkit/vmkit"
    if [ ! -x "$VMKIT" ]; then
        echo "vhost_user_fs: building $VMKIT"
        [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$ROOT" >"$WORK/meson-setup.log"
        ninja -C "$BUILD" -j 2 tools/vmkit/vmkit >"$WORK/ninja.log"
    fi
fi
if [ ! -x "$VMKIT" ]; then
    echo "vhost_user_fs: $VMKIT is not an executable" >&2
    exit 1
fi
if [ ! -x "$VIRTIOFSD" ]; then
    echo "vhost_user_fs: $VIRTIOFSD not found (Debian: apt-get install qemu-system-common;" \
        "or set VIRTIOFSD)" >&2
    exit 1
fi

BENCH="$WORK/vhost_user_fs_bench"
"$CC" -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$ROOT/src" -I"$ROOT/tests/support" \
    -o "$BENCH" "$ROOT/bench/vhost_user_fs_bench.c" "$ROOT/tests/support/vhost_user_frontend.c" \
    "$ROOT/tests/support/fd_passing.c"

# ---- Shares and back ends ---------------------------------------------------------

# One template, copied to a fresh share for every run (creates and writes leave nothing
# behind that the next run could trip over or profit from): data (random, so that reads
# copy real pages rather than tmpfs holes), d1000/ with FILES empty files, work/.
SHM=/dev/shm/vhost_user_fs_bench.$$
TEMPLATE=$SHM/template
SHARE=$SHM/share
SOCK="$WORK/fs.sock"
SERVER_PID=""
cleanup() {
    stop_server
    rm -rf "$SHM"
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TEMPLATE/d1000" "$TEMPLATE/work"
head -c "$((DATA_MIB << 20))" /dev/urandom >"$TEMPLATE/data"
(cd "$TEMPLATE/d1000" && seq -f 'f%04g' 0 $((FILES - 1)) | xargs touch)

# start_server TOOL: a fresh share and the back end on it, its pid in SERVER_PID (the
# process started: both serve from a child of it, which the bench counts with it).
start_server() {
    local t=$1 i
    rm -rf "$SHARE" "$SOCK"
    cp -a "$TEMPLATE" "$SHARE"
    if [ "$t" = vmkit ]; then
        "$VMKIT" serve-device --type fs --socket "$SOCK" --shared-dir "$SHARE" --cache "$CACHE" \
            >>"$WORK/vmkit.log" 2>&1 &
    else
        "$VIRTIOFSD" --socket-path="$SOCK" -o source="$SHARE" -o cache="$QCACHE" \
            >>"$WORK/virtiofsd.log" 2>&1 &
    fi
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        [ -S "$SOCK" ] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "vhost_user_fs: the $t back end exited:" >&2
            sed 's/^/    | /' "$WORK/$t.log" | tail -n 8 >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "vhost_user_fs: the $t back end did not create $SOCK in 5 s" >&2
    exit 1
}

# ---- Measuring ---------------------------------------------------------------

RESULTS="$WORK/results.txt"
: >"$RESULTS"
: >"$WORK/vmkit.log"
: >"$WORK/virtiofsd.log"
echo "vhost_user_fs: $RUNS runs of ${SECONDS_PER_RUN}s per tool, operation and depth; cache=$CACHE;" \
    "a fresh share in /dev/shm per run; work dir $WORK"
echo "machine: $(nproc) CPUs online, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start;" \
    "nothing pinned, and other work on the machine counts against both tools alike"
echo "vmkit:     $VMKIT"
echo "virtiofsd: $("$VIRTIOFSD" --version 2>&1 | head -n 1)"

# The tools alternate run by run, so that a slow spell on a busy machine hits both.
for ((run = 1; run <= RUNS; run++)); do
    for op in $OPS; do
        for qd in $DEPTHS; do
            for t in vmkit virtiofsd; do
                start_server "$t"
                if ! line=$("$BENCH" --socket "$SOCK" --pid "$SERVER_PID" --label "$t" \
                    --op "$op" --qd "$qd" --seconds "$SECONDS_PER_RUN" --seed "$run" \
                    --files "$FILES" 2>"$WORK/bench.err"); then
                    echo "vhost_user_fs: $t $op qd=$qd run $run failed:" >&2
                    sed 's/^/    | /' "$WORK/bench.err" >&2
                    echo "  $t's log ($WORK/$t.log):" >&2
                    sed 's/^/    | /' "$WORK/$t.log" | tail -n 8 >&2
                    exit 1
                fi
                stop_server
                echo "$line" >>"$RESULTS"
                echo "  run $run: $line"
            done
        done
    done
done

# ---- Report ------------------------------------------------------------------

# summary TOOL OP QD: medians of ops/s, p50 us, p99 us, server CPU us per operation.
summary() {
    awk -v t="$1" -v o="$2" -v q="$3" '
        { delete kv; for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] } }
        kv["label"] == t && kv["op"] == o && kv["qd"] == q && kv["ops"] > 0 {
            n++; ops[n] = kv["ops_s"]; p50[n] = kv["p50_us"]; p99[n] = kv["p99_us"]
            cpu[n] = kv["server_cpu_s"] / kv["ops"] * 1e6
        }
        function median(a, n,    i, j, x) {
            for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        END {
            if (n) printf "%.0f %.0f %.0f %.1f\n", median(ops, n), median(p50, n), median(p99, n), median(cpu, n)
            else print "0 0 0 0"
        }
    ' "$RESULTS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "Medians of $RUNS runs; cache=$CACHE. Latency: one whole operation, p50/p99 in us."
echo "CPU: back-end CPU us per operation (its processes, all threads). ops/CPU-s v/Q: vmkit's"
echo "operations per CPU-second over virtiofsd's (the goal: at least 2)."
echo
echo "| op | QD | vmkit ops/s | virtiofsd ops/s | ops/s v/Q | vmkit p50/p99 us | virtiofsd p50/p99 us | vmkit CPU us/op | virtiofsd CPU us/op | ops/CPU-s v/Q |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for op in $OPS; do
    for qd in $DEPTHS; do
        read -r vo v50 v99 vc <<<"$(summary vmkit "$op" "$qd")"
        read -r qo q50 q99 qc <<<"$(summary virtiofsd "$op" "$qd")"
        echo "| $op | $qd | $vo | $qo | $(ratio "$vo" "$qo") | $v50 / $v99 | $q50 / $q99 | $vc | $qc | $(ratio "$qc" "$vc") |"
    done
done
echo
echo "(Raw lines: $RESULTS; back-end logs: $WORK/vmkit.log, $WORK/virtiofsd.log)"
