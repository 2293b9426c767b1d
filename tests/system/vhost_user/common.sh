# shellcheck shell=bash
# Shared by the tier-2 tests (bash, sourced): the prerequisites, the work directory, the
# server's clean-up and the result table. Set vmkit and guest_dir, source this file, then
# call vu_prepare.

skip() {
    echo "1..0 # SKIP $1"
    exit 0
}

# vu_prepare QEMU_DEVICE NAME: skips the whole test unless vmkit, QEMU with QEMU_DEVICE, the
# guest kernel and cpio are there; sets work (the log directory) and sock.
vu_prepare() {
    [ -x "$vmkit" ] || skip "no vmkit binary at $vmkit (meson setup build && ninja -C build)"
    command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
    [ -r "$guest_dir/vmlinuz" ] && [ -r "$guest_dir/initramfs.img" ] ||
        skip "no guest kernel in $guest_dir (run guest/build.sh)"
    command -v cpio >/dev/null || skip "cpio not installed"
    qemu-system-x86_64 -device help 2>/dev/null | grep -q "\"$1\"" ||
        skip "this QEMU has no $1"
    work=${VMKIT_VU_LOG_DIR:-$(mktemp -d "/tmp/vmkit-vu-$2.XXXXXX")}
    mkdir -p "$work"
    sock="$work/$2.sock"
    server_pid=
    trap vu_cleanup EXIT
}

vu_cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
    fi
}

declare -A result=() why=()
pass() { result[$1]=ok; }
fail() {
    result[$1]="not ok"
    why[$1]=$2
}
