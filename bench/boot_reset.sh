#!/bin/bash
# boot_reset.sh — whole-process cost of starting a VM whose guest resets at its
# first instruction: vmkit next to QEMU. See docs/benchmarks.md for the method.
#
#   bench/boot_reset.sh [-n RUNS] [-b BUILD_DIR] [-t TIMEOUT_S] [-w WORK_DIR]
#
# -n RUNS       measured runs per tool (default 20); one unmeasured warm-up run
#               comes first
# -b BUILD_DIR  meson build directory holding tools/vmkit/vmkit (default: build)
# -t TIMEOUT_S  a run taking longer is killed and counted as failed (default 60)
# -w WORK_DIR   where the helper, the guests and the logs go (default:
#               BUILD_DIR/bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=20
BUILD="$ROOT/build"
TIMEOUT=60
WORK=""
CC=${CC:-cc}

usage() {
    sed -n '5,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

while getopts "n:b:t:w:h" opt; do
    case $opt in
    n) RUNS=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) usage ;;
    esac
done
case $RUNS in '' | *[!0-9]* | 0) echo "boot_reset: -n needs a positive number" >&2; exit 2 ;; esac
case $TIMEOUT in '' | *[!0-9]* | 0) echo "boot_reset: -t needs a positive number" >&2; exit 2 ;; esac
WORK=${WORK:-$BUILD/bench}
mkdir -p "$WORK"
VMKIT="$BUILD/tools/vmkit/vmkit"

# ---- Build the helper and the two guests ------------------------------------

# measure: fork + exec + wait4, printing "<wall_us> <maxrss_kib> <status>".
"$CC" -std=c11 -O2 -Wall -Wextra -o "$WORK/measure" "$ROOT/bench/measure.c"

# vmkit's guest: an ELF64 entered in long mode whose first instructions write
# 0x06 to port 0xcf9.
RWX_FLAG=()
if "$CC" -Wl,--no-warn-rwx-segments -x c -o /dev/null - <<<'int main(void) { return 0; }' \
    >/dev/null 2>&1; then
    RWX_FLAG=("-Wl,--no-warn-rwx-segments") # one RWX segment is what the image is
fi
"$CC" -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack "${RWX_FLAG[@]}" \
    -Wl,-T,"$ROOT/tests/guests/guest.ld" -o "$WORK/reset_first.elf" "$ROOT/bench/reset_first.S"

# QEMU's guest: a 64 KiB firmware image. The CPU starts in real mode at
# F000:FFF0, the last 16 bytes of the image, which do the same write:
#   b0 06      mov  $0x06, %al
#   ba f9 0c   mov  $0xcf9, %dx
#   ee         out  %al, (%dx)
#   f4         hlt
#   eb fd      jmp  .-1 (back to hlt)
# then seven bytes of padding. Everything below is 0xff, like erased flash.
{
    head -c 65520 /dev/zero | tr '\0' '\377'
    printf '\260\006\272\371\014\356\364\353\375\377\377\377\377\377\377\377'
} >"$WORK/reset.bin"
if [ "$(stat -c %s "$WORK/reset.bin")" != 65536 ]; then
    echo "boot_reset: reset.bin is not 64 KiB" >&2
    exit 1
fi

# ---- Measuring --------------------------------------------------------------

# run_tool LABEL CMD... : one warm-up run, then RUNS measured ones, into
# $WORK/LABEL.runs ("wall_us rss_kib" per line). Fails (returns 1) at the first
# run that does not exit 0, leaving its output in $WORK/LABEL.log.
run_tool() {
    local label=$1 i line wall rss status
    shift
    : >"$WORK/$label.runs"
    for ((i = 0; i <= RUNS; i++)); do
        line=$("$WORK/measure" -t "$TIMEOUT" -o "$WORK/$label.log" -- "$@") || true
        read -r wall rss status <<<"$line"
        if [ "${status:-}" != "exit:0" ]; then
            echo "$label: run $i ended ${status:-without a result} after $((${wall:-0} / 1000)) ms:" \
                "$*" >&2
            sed 's/^/    | /' "$WORK/$label.log" | tail -n 8 >&2
            return 1
        fi
        [ "$i" -eq 0 ] || echo "$wall $rss" >>"$WORK/$label.runs"
    done
}

# median COLUMN FILE
median() {
    sort -n -k "$1,$1" "$2" | awk -v c="$1" '{ v[NR] = $c }
        END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -a LABELS=()
declare -A WALL_US=() RSS_KIB=()

record() {
    LABELS+=("$1")
    WALL_US[$1]=$(median 1 "$WORK/$1.runs")
    RSS_KIB[$1]=$(median 2 "$WORK/$1.runs")
}

# ratio A B: A / B with two decimals (also used to scale units).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "boot_reset: $RUNS runs per tool (after one warm-up), timeout ${TIMEOUT}s, work dir $WORK"

VMKIT_OK=0
if [ ! -x "$VMKIT" ]; then
    echo "vmkit: $VMKIT not found; build it first (meson setup build && ninja -C build)" >&2
elif run_tool vmkit "$VMKIT" run --kernel "$WORK/reset_first.elf" --memory 16; then
    VMKIT_OK=1
    record vmkit
fi

QEMU=$(command -v qemu-system-x86_64 || true)
QEMU_ARGS=(-nodefaults -display none -no-reboot -m 16 -bios "$WORK/reset.bin")
if [ -z "$QEMU" ]; then
    echo "qemu: qemu-system-x86_64 not found; only vmkit's figures follow"
elif run_tool qemu-kvm "$QEMU" -accel kvm "${QEMU_ARGS[@]}"; then
    record qemu-kvm
else
    # A kvm_pvm host cannot run real-mode firmware under KVM; TCG still gives a
    # whole-process figure, though not a like-for-like one.
    echo "qemu-system-x86_64 -accel kvm failed on this host; falling back to -accel tcg (not like-for-like)"
    if run_tool qemu-tcg "$QEMU" -accel tcg "${QEMU_ARGS[@]}"; then
        record qemu-tcg
    fi
fi

# ---- Report -----------------------------------------------------------------

echo
printf '%-18s %16s %20s %18s %18s\n' tool "median wall ms" "median peak RSS MiB" \
    "wall qemu/vmkit" "RSS qemu/vmkit"
for label in "${LABELS[@]}"; do
    wall_ratio=- rss_ratio=-
    if [ "$VMKIT_OK" = 1 ] && [ "$label" != vmkit ]; then
        wall_ratio=$(ratio "${WALL_US[$label]}" "${WALL_US[vmkit]}")
        rss_ratio=$(ratio "${RSS_KIB[$label]}" "${RSS_KIB[vmkit]}")
    fi
    printf '%-18s %16s %20s %18s %18s\n' "$label" "$(ratio "${WALL_US[$label]}" 1000)" \
        "$(ratio "${RSS_KIB[$label]}" 1024)" "$wall_ratio" "$rss_ratio"
done
if [ "${#LABELS[@]}" -eq 0 ]; then
    echo "(no tool completed its runs)"
    exit 1
fi
[ "$VMKIT_OK" = 1 ] || exit 1
