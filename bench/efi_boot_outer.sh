#!/bin/sh
# The firmware-time benchmark inside the emulated outer machine (efi_boot.sh runs it as
# /run.sh): boots vmkit's installer ISO from a read-only USB drive through Debian's OVMF, with a
# new variable store each time, under vmkit and under QEMU (-accel kvm -machine q35, the same
# OVMF files, ISO and USB stack: qemu-xhci + usb-storage), alternating which goes first each
# round, and prints one line per boot:
#   nested-bench: VMM ROUND ok loader=S kernel=S     or     nested-bench: VMM ROUND fail WHY
# loader: from starting the VMM to OVMF's "BdsDxe: starting Boot...", its last line before it
# jumps to the OS loader (GRUB); kernel: to the kernel's first line ("Linux version"). Both
# include the VMM's own start (milliseconds, against tens of seconds of firmware).
#   nested.bench=ROUNDS on the outer kernel's command line (default 5)
ISO=/usr/share/vmkit/installer.iso
CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
BOOT_S=${BOOT_S:-300}
rounds=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^nested\.bench=//p')
case "$rounds" in '' | *[!0-9]*) rounds=5 ;; esac

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }

start_vmm() {
    case "$1" in
    vmkit)
        exec vmkit run --memory 512 --cpus 1 \
            --bootloader "efi,variable-store=/tmp/bench/vars.fd,create,overwrite" \
            --device "usb-mass-storage,path=$ISO,readonly"
        ;;
    qemu)
        cp "$VARS" /tmp/bench/vars.fd
        exec qemu-system-x86_64 -accel kvm -machine q35 -cpu host -m 512 -smp 1 -nodefaults \
            -display none -serial stdio -monitor none -no-reboot -L /usr/share/qemu \
            -drive "if=pflash,format=raw,readonly=on,file=$CODE" \
            -drive "if=pflash,format=raw,file=/tmp/bench/vars.fd" \
            -device qemu-xhci -drive "if=none,id=usb,format=raw,readonly=on,file=$ISO" \
            -device usb-storage,drive=usb
        ;;
    esac
}

# boot_once VMM ROUND
boot_once() {
    rm -rf /tmp/bench
    mkdir -p /tmp/bench
    : >/tmp/bench/out
    t0=$(uptime_s)
    (start_vmm "$1") </dev/null >/tmp/bench/out 2>/tmp/bench/err &
    pid=$!
    loader=
    kernel=
    while [ -z "$kernel" ]; do
        if [ -z "$loader" ] && grep -q 'BdsDxe: starting' /tmp/bench/out; then
            loader=$(since "$t0")
        fi
        if grep -q 'Linux version' /tmp/bench/out; then
            kernel=$(since "$t0")
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "nested-bench: $1 $2 fail the VMM ended: $(tail -c 200 /tmp/bench/err | tr '\n' ' ')"
            return 1
        fi
        if [ "$(since "$t0" | cut -d. -f1)" -ge "$BOOT_S" ]; then
            kill -KILL "$pid"
            wait "$pid" 2>/dev/null
            echo "nested-bench: $1 $2 fail no kernel line in ${BOOT_S}s: $(tr -d '\r' </tmp/bench/out | tail -n 1)"
            return 1
        fi
        sleep 0.1
    done
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    echo "nested-bench: $1 $2 ok loader=${loader:--} kernel=$kernel"
}

# measure VMM ROUND: a boot that fails (the emulated outer machine faults now and then, under
# either VMM: tests/system/nested/boot_census.sh) is counted and tried again, up to 3 times.
measure() {
    for _ in 1 2 3 4; do
        boot_once "$1" "$2" && return
    done
}

echo "nested-bench: plan $rounds rounds"
r=1
while [ "$r" -le "$rounds" ]; do
    if [ $((r % 2)) -eq 1 ]; then
        measure vmkit "$r"
        measure qemu "$r"
    else
        measure qemu "$r"
        measure vmkit "$r"
    fi
    r=$((r + 1))
done
echo "nested-bench: done"
