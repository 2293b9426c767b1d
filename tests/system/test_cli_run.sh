#!/bin/bash
# `vmkit run` as a user meets it, with the tiny guests of tests/guests (they run on any KVM,
# kvm_pvm included): what the guest prints reaches stdout, every exit status of the table in
# `vmkit --help`, and the signals: SIGTERM presses the power button, --stop-timeout bounds
# how long a guest that ignores it gets, a second signal stops at once, and none of that
# waits for a reader of stdout. Prints TAP.
#   tests/system/test_cli_run.sh VMKIT GUEST_DIR
set -uo pipefail
vmkit=${1:?usage: $0 VMKIT GUEST_DIR}
guests=${2:?usage: $0 VMKIT GUEST_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/support/tap.sh
. "$here/../support/tap.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-cli-run.XXXXXX")
trap 'kill -KILL $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    tap_cannot_run "no usable /dev/kvm"
fi
echo "1..19"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1))
    echo "not ok $n - $1"
    shift
    for line in "$@"; do echo "# $line"; done
    [ -s "$work/err" ] && sed 's/^/# stderr: /' "$work/err"
}

now_ms() { date +%s%3N; }

# run_guest NAME [vmkit options...]: runs it to the end (at most 20 s); sets rc, out.
run_guest() {
    local name=$1
    shift
    timeout -k 5 20 "$vmkit" run --kernel "$guests/$name.elf" "$@" </dev/null >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
}

# start_guest NAME [vmkit options...]: starts it in the background (stdout to $work/out
# unless the caller redirects); waits until the guest printed its first line.
start_guest() {
    local name=$1
    shift
    "$vmkit" run --kernel "$guests/$name.elf" "$@" </dev/null >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 100); do
        [ -s "$work/out" ] && return 0
        sleep 0.05
    done
    return 1
}

# wait_exit PID SECONDS: sets rc (the exit status, or 999 when it is still running then).
wait_exit() {
    local p=$1 limit=$(($2 * 20))
    for _ in $(seq "$limit"); do
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p"
            rc=$?
            return 0
        fi
        sleep 0.05
    done
    rc=999
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}

run_guest hello
if [ "$rc" -eq 0 ] && [ "$out" = "hello from vmkit guest" ]; then
    ok "a guest that powers off: its output on stdout (COM1 by default), status 0"
else
    not_ok "a guest that powers off: its output on stdout, status 0" "status $rc, stdout '$out'"
fi

run_guest debug_exit
if [ "$rc" -eq 42 ]; then ok "a guest that writes 42 to the debug-exit port: status 42"
else not_ok "a guest that writes 42 to the debug-exit port: status 42" "status $rc"; fi

run_guest triple_fault
if [ "$rc" -eq 1 ] && grep -q 'triple fault.*RIP 0x' "$work/err"; then
    ok "a guest that triple-faults: status 1, stderr names the fault and its RIP"
else
    not_ok "a guest that triple-faults: status 1, stderr names the fault and its RIP" "status $rc"
fi

run_guest hello --memory 64M --cpus 2
if [ "$rc" -eq 0 ]; then ok "--memory 64M --cpus 2 runs"
else not_ok "--memory 64M --cpus 2 runs" "status $rc"; fi

run_guest hello --memory 64X
if [ "$rc" -eq 2 ] && grep -q 'memory' "$work/err"; then
    ok "--memory 64X: a usage error (status 2) naming --memory"
else
    not_ok "--memory 64X: a usage error (status 2) naming --memory" "status $rc"
fi

# virtio-fs: the command line's mistakes are usage errors naming the device and the key.
run_guest hello --device virtio-fs,mountTag=data
if [ "$rc" -eq 2 ] && grep -q 'virtio-fs.*sharedDir' "$work/err"; then
    ok "virtio-fs without sharedDir: a usage error (status 2) naming virtio-fs and sharedDir"
else
    not_ok "virtio-fs without sharedDir: a usage error naming virtio-fs and sharedDir" "status $rc"
fi

run_guest hello --device "virtio-fs,sharedDir=$work,mountTag=0123456789012345678901234567890123456"
if [ "$rc" -eq 2 ] && grep -q 'virtio-fs: mountTag.*at most 35' "$work/err"; then
    ok "virtio-fs with a 37-byte mountTag: a usage error (status 2) naming mountTag"
else
    not_ok "virtio-fs with a 37-byte mountTag: a usage error naming mountTag" "status $rc"
fi

run_guest hello --device "virtio-fs,sharedDir=$work,mountTag=t" --device "virtio-fs,sharedDir=$work,mountTag=t"
if [ "$rc" -eq 2 ] && grep -q 'mountTag "t" is already used' "$work/err"; then
    ok "two virtio-fs devices with one mountTag: a usage error (status 2)"
else
    not_ok "two virtio-fs devices with one mountTag: a usage error" "status $rc"
fi

# The display: the command line's mistakes are usage errors naming the option or device.
run_guest hello --device virtio-gpu,scanout=0x800
if [ "$rc" -eq 2 ] && grep -q 'virtio-gpu: scanout 2 is 0 x 800 pixels; each side must be 1..16384' "$work/err"; then
    ok "virtio-gpu with a 0 x 800 scanout: a usage error (status 2) naming the scanout"
else
    not_ok "virtio-gpu with a 0 x 800 scanout: a usage error naming the scanout" "status $rc"
fi

run_guest hello --gui
if [ "$rc" -eq 2 ] && grep -q -- '--gui: needs a graphics device' "$work/err"; then
    ok "--gui without virtio-gpu: a usage error (status 2)"
else
    not_ok "--gui without virtio-gpu: a usage error" "status $rc"
fi

# --gui with no display server to open a window on: one line, before the guest boots.
DISPLAY=:159 WAYLAND_DISPLAY= run_guest hello --device virtio-gpu --gui
if grep -q 'built without SDL2' "$work/err"; then
    n=$((n + 1))
    echo "ok $n - --gui without an X display # SKIP vmkit built without SDL2"
elif [ "$rc" -eq 1 ] && grep -q -- '--gui: cannot open a window' "$work/err" &&
    [ "$(wc -l <"$work/err")" -le 2 ] && [ -z "$out" ]; then
    ok "--gui without an X display: one line, status 1, no guest run"
else
    not_ok "--gui without an X display: one line, status 1" "status $rc: $(head -c 300 "$work/err")"
fi

run_guest hello --device virtio-gpu --web
if [ "$rc" -eq 2 ] && grep -q -- '--web: needs --vnc' "$work/err"; then
    ok "--web without --vnc: a usage error (status 2)"
else
    not_ok "--web without --vnc: a usage error" "status $rc"
fi

run_guest hello --device virtio-input,mouse
if [ "$rc" -eq 2 ] && grep -q "virtio-input: unknown kind 'mouse'" "$work/err"; then
    ok "virtio-input,mouse: a usage error (status 2) naming the kind"
else
    not_ok "virtio-input,mouse: a usage error naming the kind" "status $rc"
fi

run_guest hello --kernel "$work/no-such-kernel"
if [ "$rc" -eq 1 ] && grep -q 'no-such-kernel' "$work/err"; then
    ok "a missing kernel: status 1, stderr names the file"
else
    not_ok "a missing kernel: status 1, stderr names the file" "status $rc"
fi

# SIGTERM presses the power button; the guest acknowledges it and powers off.
if start_guest power_button; then
    kill -TERM "$pid"
    wait_exit "$pid" 10
    if [ "$rc" -eq 0 ] && grep -q 'power button pressed' "$work/out"; then
        ok "SIGTERM presses the power button: the guest powers off, status 0"
    else
        not_ok "SIGTERM presses the power button: the guest powers off, status 0" "status $rc"
    fi
else
    kill -KILL "$pid" 2>/dev/null
    not_ok "SIGTERM presses the power button" "the guest printed nothing"
fi

# A guest that ignores the power button is stopped after --stop-timeout.
if start_guest loop --stop-timeout 1; then
    t0=$(now_ms)
    kill -TERM "$pid"
    wait_exit "$pid" 10
    ms=$(($(now_ms) - t0))
    if [ "$rc" -eq 143 ] && [ "$ms" -ge 900 ] && [ "$ms" -lt 5000 ]; then
        ok "a guest that ignores SIGTERM's power button is stopped after --stop-timeout 1 (${ms} ms, status 143)"
    else
        not_ok "--stop-timeout 1 stops a guest that ignores the power button" "status $rc after ${ms} ms"
    fi
else
    kill -KILL "$pid" 2>/dev/null
    not_ok "--stop-timeout 1" "the guest printed nothing"
fi

# A second signal stops at once, whatever the timeout.
if start_guest loop; then
    t0=$(now_ms)
    kill -TERM "$pid"
    sleep 0.2
    kill -INT "$pid"
    wait_exit "$pid" 10
    ms=$(($(now_ms) - t0))
    if [ "$rc" -eq 130 ] && [ "$ms" -lt 3000 ]; then
        ok "SIGTERM then SIGINT: stopped at once (${ms} ms, status 130)"
    else
        not_ok "SIGTERM then SIGINT: stopped at once, status 130" "status $rc after ${ms} ms"
    fi
else
    kill -KILL "$pid" 2>/dev/null
    not_ok "SIGTERM then SIGINT" "the guest printed nothing"
fi

# stdout a pipe nobody reads: the guest's output fills it, and stopping still takes no time.
mkfifo "$work/pipe"
exec 3<>"$work/pipe" # held open, never read
"$vmkit" run --kernel "$guests/spam.elf" --stop-timeout 0 </dev/null >"$work/pipe" 2>"$work/err" &
pid=$!
sleep 1
t0=$(now_ms)
kill -TERM "$pid"
wait_exit "$pid" 10
ms=$(($(now_ms) - t0))
exec 3>&-
if [ "$rc" -eq 143 ] && [ "$ms" -lt 2000 ]; then
    ok "stdout a full pipe nobody reads: SIGTERM with --stop-timeout 0 stops it in ${ms} ms (status 143)"
else
    not_ok "stdout a full pipe nobody reads: SIGTERM stops it at once" "status $rc after ${ms} ms"
fi

# --bootloader efi where firmware cannot run: a kvm_pvm host (no real mode) refuses it with one
# line that names the limit, status 1, before the machine is built. Elsewhere the
# firmware runs: the nested tier's efi-shell case covers that.
if [ -e /sys/module/kvm_pvm ] && [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then
    timeout -k 5 20 "$vmkit" run --bootloader "efi,variable-store=$work/vars.fd,create" \
        </dev/null >"$work/out" 2>"$work/err"
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$work/err")" -eq 1 ] &&
        grep -q 'kvm_pvm.*cannot run firmware' "$work/err"; then
        ok "--bootloader efi on kvm_pvm: refused in one line naming the limit (status 1)"
    else
        not_ok "--bootloader efi on kvm_pvm: refused in one line naming the limit" "status $rc"
    fi
else
    n=$((n + 1))
    echo "ok $n - --bootloader efi on kvm_pvm: refused # SKIP not a kvm_pvm host, or no OVMF"
fi
