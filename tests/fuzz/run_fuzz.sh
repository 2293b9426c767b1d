#!/usr/bin/env bash
# Builds tests/fuzz/fuzz_virtqueue.c with libFuzzer, ASan and UBSan and feeds it a
# bounded number of inputs: FUZZ_RUNS (default 200000), at most FUZZ_MAX_TIME seconds
# (default 60). Prints one TAP case; no clang or no libFuzzer (libclang-rt-14-dev) is a
# skip. Build outputs go to $FUZZ_OUT_DIR if set, else a temporary directory that is
# removed unless the run failed.
cd "$(dirname "$0")/../.." || exit 1
echo "1..1"
runs=${FUZZ_RUNS:-200000}
max_time=${FUZZ_MAX_TIME:-60}
cc=${CLANG:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "ok 1 # SKIP clang not installed"
    exit 0
fi
if [ -n "${FUZZ_OUT_DIR:-}" ]; then
    work=$FUZZ_OUT_DIR
    mkdir -p "$work" || exit 1
    keep=1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-fuzz.XXXXXX") || exit 1
    keep=0
fi
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
    'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }' \
    >"$work/probe.c"
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >/dev/null 2>&1; then
    echo "ok 1 # SKIP libFuzzer not available (install libclang-rt-14-dev)"
    exit 0
fi

bin=$work/fuzz_virtqueue
if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc \
        tests/fuzz/fuzz_virtqueue.c src/virtio/virtqueue.c src/core/guest_memory.c \
        -o "$bin" >"$work/build.log" 2>&1; then
    echo "not ok 1 - fuzz_virtqueue (build failed)"
    sed 's/^/# /' "$work/build.log"
    exit 0
fi

mkdir -p "$work/corpus"
"$bin" -runs="$runs" -max_total_time="$max_time" -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work/corpus" >"$work/fuzz.log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -n 1)
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$work/fuzz.log" | tail -n 1)
if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
    echo "ok 1 - fuzz_virtqueue (${execs} execs)"
    [ -n "$secs" ] && echo "# ${execs} inputs in ${secs} s"
else
    keep=1
    echo "not ok 1 - fuzz_virtqueue (exit status $rc)"
    tail -n 40 "$work/fuzz.log" | sed 's/^/# /'
    echo "# crash input and log kept in $work"
fi
exit 0
