#!/bin/bash
# virtio_gpu.sh — vmkit's virtio-gpu device under a synthetic Linux-like 2D driver, no guest
# (bench/virtio_gpu_bench.c): full 1280x720 frames and partial 512x64 updates, each with no
# sink, a screenshot sink and one VNC client. See docs/benchmarks.md for the method.
#
#   bench/virtio_gpu.sh [-n RUNS] [-f FRAMES] [-b BUILD_DIR] [-w WORK_DIR]
#
# -n RUNS       runs per mode and sink; the median run (by device CPU) is printed (default 5)
# -f FRAMES     frames per run (default 600)
# -b BUILD_DIR  meson build directory with src/libvmkit_internal.a (default: build; built with
#               ninja when missing)
# -w WORK_DIR   where the benchmark binary and raw results go (default: BUILD_DIR/bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
FRAMES=600
BUILD="$ROOT/build"
WORK=""
CC=${CC:-cc}

usage() {
    sed -n '6,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
while getopts "n:f:b:w:h" opt; do
    case $opt in
    n) RUNS=$OPTARG ;;
    f) FRAMES=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) usage ;;
    esac
done
for v in "$RUNS" "$FRAMES"; do
    case $v in '' | *[!0-9]* | 0) echo "virtio_gpu: -n and -f take positive numbers" >&2; exit 2 ;; esac
done
WORK=${WORK:-$BUILD/bench}
mkdir -p "$WORK"
[ -f "$BUILD/src/libvmkit_internal.a" ] || ninja -C "$BUILD" src/libvmkit_internal.a >/dev/null

BENCH="$WORK/virtio_gpu_bench"
# shellcheck disable=SC2046 # pkg-config's flags are words
"$CC" -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$ROOT/src" -I"$ROOT/include" \
    -I"$ROOT/tests/support" -I"$ROOT/tools/vmkit" -o "$BENCH" "$ROOT/bench/virtio_gpu_bench.c" \
    "$ROOT/tests/support/virtio_test_driver.c" "$ROOT/tools/vmkit/vnc.c" \
    "$ROOT/tools/vmkit/keysym_evdev.c" "$ROOT/tools/vmkit/view.c" "$ROOT/tools/vmkit/cli.c" "$ROOT/tools/vmkit/cli_device.c" \
    "$ROOT/tools/vmkit/cli_config.c" "$BUILD/src/libvmkit_internal.a" \
    $(pkg-config --cflags --libs libvncserver slirp glib-2.0 zlib) -lpthread

echo "# virtio_gpu: $(nproc) CPUs, $(uname -r), $RUNS runs of $FRAMES frames each; median run by device CPU"
for mode in full partial; do
    for sink in none screenshot vnc; do
        raw="$WORK/virtio_gpu.$mode.$sink.txt"
        : >"$raw"
        for _ in $(seq "$RUNS"); do
            "$BENCH" "$mode" "$sink" "$FRAMES" >>"$raw"
        done
        sort -g -k1,1 <(sed 's/.*device_cpu_us=\([0-9.]*\).*/\1 &/' "$raw") |
            sed -n "$(((RUNS + 1) / 2))p" | cut -d' ' -f2-
    done
done
