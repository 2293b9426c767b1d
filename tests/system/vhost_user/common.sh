# shellcheck shell=bash disable=SC2034,SC2154
# (the variables it reads and sets belong to the test that sources it)
# Shared by the tier-2 tests (bash, sourced): the prerequisites, the work directory, the
# server's clean-up, host tools and modules for the guest's initramfs, and the result table.
# Set vmkit, guest_dir and root (the source tree), source this file, then call vu_prepare.

# shellcheck source=tests/support/tap.sh
. "$root/tests/support/tap.sh"
skip() { tap_cannot_run "$1"; }

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

# vu_host_tool NAME: prints the path of the host's NAME (sbin directories included, as
# a user's PATH may lack them); fails if there is none.
vu_host_tool() {
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1"
}

# vu_add_host_binaries DIR BIN...: copies the host's BINs into DIR/usr/local/bin (a staging
# tree for the guest's initramfs), with the shared libraries ldd lists and the dynamic loader
# at the paths the binaries expect. The guest must call them as /usr/local/bin/BIN where
# busybox has an applet of that name: Debian's busybox sh runs its applets before PATH.
# Sets vu_missing to the BINs the host lacks and fails if there is one.
vu_add_host_binaries() {
    local dir=$1 b path lib
    shift
    vu_missing=()
    mkdir -p "$dir/usr/local/bin"
    for b in "$@"; do
        if ! path=$(vu_host_tool "$b"); then
            vu_missing+=("$b")
            continue
        fi
        cp -L "$path" "$dir/usr/local/bin/$b"
        # "libX.so => /path (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)": take the
        # absolute paths; a static binary has none.
        for lib in $(ldd "$path" 2>/dev/null | grep -o '/[^ ]*'); do
            [ -e "$dir$lib" ] && continue
            mkdir -p "$dir$(dirname "$lib")"
            cp -L "$lib" "$dir$lib"
        done
    done
    [ "${#vu_missing[@]}" -eq 0 ]
}

# vu_add_modules DIR NAME...: copies the guest kernel's modules NAME and what modules.dep
# says they need (guest/modules.sh copy_modules) from guest/build.sh's unpacked kernel
# package ($VMKIT_GUEST_CACHE or guest/cache) into DIR, and writes DIR/order: their paths
# relative to DIR, one a line, in an order insmod can load them. Fails, saying why on
# stderr, when the unpacked package or a module is missing.
vu_add_modules() {
    local dir=$1 cache=${VMKIT_GUEST_CACHE:-$root/guest/cache} krel moddir d tree name line dep i
    shift
    krel=$(cat "$guest_dir/KERNEL_RELEASE" 2>/dev/null) || {
        echo "no $guest_dir/KERNEL_RELEASE" >&2
        return 1
    }
    moddir=
    for d in "$cache"/unpacked/linux-image-"$krel"*/lib/modules/"$krel"; do
        [ -r "$d/modules.dep" ] && moddir=$d
    done
    [ -n "$moddir" ] || {
        echo "no unpacked linux-image-$krel in $cache (run guest/build.sh)" >&2
        return 1
    }
    # shellcheck source=guest/modules.sh
    . "$root/guest/modules.sh"
    tree="$dir/lib/modules/$krel"
    mkdir -p "$dir"
    copy_modules "$moddir" "$tree" "$@" >/dev/null 2>"$dir/copy_modules.log" || {
        echo "copy_modules failed: $(tail -n 1 "$dir/copy_modules.log")" >&2
        return 1
    }
    rm -f "$dir/copy_modules.log"
    local -A seen=()
    : >"$dir/order"
    for name in "$@"; do
        line=$(awk -v n="${name//-/_}" -F: '{
                    b = $1; sub(/.*\//, "", b); sub(/\.ko$/, "", b); gsub(/-/, "_", b);
                    if (b == n) { print; exit }
                }' "$tree/modules.dep")
        [ -n "$line" ] || {
            echo "module $name is not in the guest kernel's modules.dep" >&2
            return 1
        }
        # modprobe loads a module's dependencies last to first, then the module.
        local -a deps
        read -r -a deps <<<"${line#*:}"
        for ((i = ${#deps[@]} - 1; i >= -1; i--)); do
            if [ "$i" -ge 0 ]; then dep=${deps[$i]}; else dep=${line%%:*}; fi
            [ -n "${seen[$dep]:-}" ] && continue
            seen[$dep]=1
            echo "lib/modules/$krel/$dep" >>"$dir/order"
        done
    done
}

# vu_init_head: the first lines of a guest's /init: the kernel's file systems, the console as
# stdin/stdout/stderr, and the modules vu_add_modules staged, loaded in order.
vu_init_head() {
    cat <<'HEAD'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
while read -r m; do insmod "/$m"; done </order
HEAD
}

# vu_stop_server PID SOCKET...: SIGTERM to the server; the "stop" test passes when it exits
# with status 0 and leaves none of the SOCKETs behind.
vu_stop_server() {
    local pid=$1 src=0 left= f
    shift
    if ! kill -0 "$pid" 2>/dev/null; then
        fail stop "the server was not running"
        return
    fi
    kill -TERM "$pid"
    wait "$pid" || src=$?
    server_pid=
    for f in "$@"; do [ -e "$f" ] && left="$left$f "; done
    if [ "$src" -eq 0 ] && [ -z "$left" ]; then
        pass stop
    else
        fail stop "exit status $src, sockets left: ${left:-none}"
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
