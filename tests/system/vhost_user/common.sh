# shellcheck shell=bash disable=SC2034,SC2154
# (the variables it reads and sets belong to the test that sources it)
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
skipped() {
    result[$1]=skip
    why[$1]=$2
}

# vu_report: prints the TAP plan and one line per entry of tests=("name|description" ...),
# removes the logs when everything passed (unless VMKIT_VU_LOG_DIR keeps them), and exits
# 1 if anything failed.
vu_report() {
    echo "1..${#tests[@]}"
    local n=0 failed=0 t name desc r
    for t in "${tests[@]}"; do
        n=$((n + 1))
        name=${t%%|*}
        desc=${t#*|}
        r=${result[$name]:-not ok}
        if [ "$r" = ok ]; then
            echo "ok $n - $name: $desc"
        elif [ "$r" = skip ]; then
            echo "ok $n - $name: $desc # SKIP ${why[$name]}"
        else
            failed=1
            echo "not ok $n - $name: $desc"
            echo "#   ${why[$name]:-not run}"
        fi
    done
    if [ "$failed" -eq 0 ] && [ -z "${VMKIT_VU_LOG_DIR:-}" ]; then
        rm -rf "$work"
    else
        echo "# logs in $work"
    fi
    exit "$failed"
}
