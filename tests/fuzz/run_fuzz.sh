#!/usr/bin/env bash
# Builds libFuzzer targets with ASan and UBSan and feeds each a bounded number of
# inputs: FUZZ_RUNS (default 100000; 0 means no limit), at most FUZZ_MAX_TIME seconds
# (default 45). Usage: run_fuzz.sh [TARGET...], the targets of all_targets below (default:
# all). Prints one TAP case per target; no clang or no libFuzzer (libclang-rt-14-dev) is a skip.
# Device targets start from seeds they write themselves (valid requests). Build outputs and
# corpora go to $FUZZ_OUT_DIR if set, else a temporary directory that is removed unless a run
# failed.
cd "$(dirname "$0")/../.." || exit 1

all_targets="virtqueue virtio_blk virtio_console virtio_rng virtio_net virtio_balloon virtio_vsock virtio_input virtio_gpu
    frame_stream boot_linux vhost_user fuse_server cfi_flash fw_cfg usb_storage xhci"
# Sources of each target (tests/fuzz/fuzz_TARGET.c comes first).
dev_common="tests/fuzz/virtio_driver.c tests/fuzz/input.c src/virtio/virtqueue.c src/virtio/virtio_device.c
            src/core/guest_memory.c"
sources() {
    case $1 in
    virtqueue) echo "src/virtio/virtqueue.c src/core/guest_memory.c" ;;
    virtio_blk) echo "$dev_common src/virtio/blk.c src/block/disk_image.c src/core/file_lock.c src/core/error.c" ;;
    virtio_console) echo "$dev_common src/virtio/console.c" ;;
    virtio_rng) echo "$dev_common src/virtio/rng.c src/core/event_loop.c" ;;
    virtio_net) echo "$dev_common src/virtio/net.c" ;;
    virtio_balloon) echo "$dev_common src/virtio/balloon.c" ;;
    virtio_vsock) echo "$dev_common src/virtio/vsock.c src/core/event_loop.c" ;;
    virtio_input) echo "$dev_common src/virtio/input.c src/core/error.c" ;;
    virtio_gpu) echo "$dev_common src/virtio/gpu.c src/core/error.c" ;;
    frame_stream) echo "tests/fuzz/input.c src/attach/frame_stream.c" ;;
    cfi_flash) echo "tests/fuzz/input.c src/devices/legacy/cfi_flash.c src/core/file_lock.c
                   src/core/error.c" ;;
    usb_storage) echo "tests/fuzz/input.c src/devices/usb/usb_storage.c src/devices/usb/usb_desc.c
                       src/devices/usb/scsi_disk.c src/core/error.c" ;;
    fuse_server) echo "tests/fuzz/input.c src/attach/fuse_server.c src/attach/fuse_host.c
                       src/attach/fuse_metadata.c src/attach/fuse_io.c src/attach/fuse_inodes.c
                       src/core/error.c" ;;
    boot_linux) echo "tests/fuzz/input.c src/arch/x86/boot_linux.c src/core/guest_memory.c
                      src/core/error.c" ;;
    fw_cfg) echo "tests/fuzz/input.c src/devices/legacy/fw_cfg.c src/core/guest_memory.c" ;;
    vhost_user) echo "tests/fuzz/input.c tests/support/fd_passing.c src/vhost_user/server.c src/core/event_loop.c
                      src/core/guest_memory.c src/core/error.c src/core/unix_socket.c
                      src/virtio/virtqueue.c src/virtio/virtio_device.c src/virtio/rng.c
                      src/virtio/console.c" ;;
    xhci) echo "tests/fuzz/input.c src/devices/usb/xhci.c src/pci/msix.c src/pci/pci.c
                src/core/bus.c src/core/guest_memory.c" ;;
    *) return 1 ;;
    esac
}

targets=${*:-$all_targets}
# shellcheck disable=SC2086  # a list of names
set -- $targets
echo "1..$#"
runs=${FUZZ_RUNS:-100000}
[ "$runs" = 0 ] && runs=-1
max_time=${FUZZ_MAX_TIME:-45}
cc=${CLANG:-clang}

# No clang or no libFuzzer: a skip, or under CI=true a failure.
skip_all() {
    local n=1 result="ok" tail=" # SKIP $1"
    [ "${CI:-}" = true ] && result="not ok" tail=": cannot run: $1 (CI=true)"
    for t in $targets; do
        echo "$result $n - fuzz_$t$tail"
        n=$((n + 1))
    done
    [ "$result" = ok ]
    exit
}

command -v "$cc" >/dev/null 2>&1 || skip_all "clang not installed"
if [ -n "${FUZZ_OUT_DIR:-}" ]; then
    work=$FUZZ_OUT_DIR
    mkdir -p "$work" || exit 1
    keep=1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-fuzz.XXXXXX") || exit 1
    keep=0
fi
# shellcheck disable=SC2317  # run by the trap
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
    'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }' \
    >"$work/probe.c"
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >/dev/null 2>&1; then
    skip_all "libFuzzer not available (install libclang-rt-14-dev)"
fi

n=0
for t in $targets; do
    n=$((n + 1))
    name=fuzz_$t
    dir=$work/$t
    mkdir -p "$dir/corpus" || exit 1
    if ! srcs=$(sources "$t"); then
        echo "not ok $n - $name (no such target)"
        continue
    fi
    bin=$dir/$name
    # shellcheck disable=SC2086  # srcs is a list of paths without spaces
    if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
            -Wno-unused-parameter -Iinclude -Isrc -Itests/support "tests/fuzz/$name.c" $srcs -lpthread \
            -o "$bin" >"$dir/build.log" 2>&1; then
        keep=1
        echo "not ok $n - $name (build failed)"
        sed 's/^/# /' "$dir/build.log"
        continue
    fi
    max_len=4096
    [ "$t" = boot_linux ] && max_len=8192
    if [ "$t" = virtqueue ]; then
        max_len=8192
    elif ! VMKIT_FUZZ_SEEDS="$dir/corpus" "$bin" >"$dir/seeds.log" 2>&1; then
        keep=1
        echo "not ok $n - $name (cannot write seeds)"
        sed 's/^/# /' "$dir/seeds.log"
        continue
    fi
    "$bin" -runs="$runs" -max_total_time="$max_time" -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$dir/" "$dir/corpus" >"$dir/fuzz.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$dir/fuzz.log" | tail -n 1)
    cov=$(sed -n 's/^#[0-9]*[[:space:]].* cov: \([0-9]*\) .*/\1/p' "$dir/fuzz.log" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
        echo "ok $n - $name (${execs} execs)"
        echo "# ${execs} inputs in ${secs:-?} s, cov ${cov:-?}"
    else
        keep=1
        echo "not ok $n - $name (exit status $rc)"
        tail -n 40 "$dir/fuzz.log" | sed 's/^/# /'
        echo "# crash input and log kept in $dir"
    fi
done
exit 0
