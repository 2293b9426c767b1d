#!/bin/bash
# efi_boot.sh — firmware time: Debian's OVMF booting vmkit's installer ISO from a USB drive,
# under vmkit and under QEMU (-accel kvm -machine q35, the same OVMF, ISO and USB stack), both
# inside the same emulated outer machine (tests/system/nested/run.sh), alternating. Prints
# each boot and the medians per VMM with their ratio; see docs/benchmarks.md.
#
#   bench/efi_boot.sh [-n ROUNDS]        (default 5: ten boots, about 12 minutes)
#
# Environment: VMKIT_BIN (build/tools/vmkit/vmkit), and run.sh's (VMKIT_NESTED_*).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=5
while getopts "n:h" opt; do
    case $opt in
    n) rounds=$OPTARG ;;
    *) sed -n '7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
case $rounds in '' | *[!0-9]* | 0) echo "efi_boot.sh: -n needs a positive number" >&2; exit 2 ;; esac
command -v qemu-system-x86_64 >/dev/null || { echo "efi_boot.sh: no qemu-system-x86_64" >&2; exit 2; }
export VMKIT_NESTED_DIR=${VMKIT_NESTED_DIR:-$root/build/nested}
export VMKIT_NESTED_LOG=${VMKIT_NESTED_LOG:-$VMKIT_NESTED_DIR/logs/efi_boot.log}

# QEMU and its libraries, at their own paths, added to the outer machine.
extra=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-efi-bench.XXXXXX")
trap 'rm -rf "$extra"' EXIT
# shellcheck source=tests/support/copy_with_libs.sh
. "$root/tests/support/copy_with_libs.sh"
copy_with_libs "$(command -v qemu-system-x86_64)" "$extra" usr/bin
# The ROMs QEMU loads even with -nodefaults (kvmvapic.bin on x86 under KVM).
mkdir -p "$extra/usr/share/qemu"
for f in kvmvapic.bin linuxboot_dma.bin; do
    cp -L "/usr/share/qemu/$f" "$extra/usr/share/qemu/"
done
export VMKIT_NESTED_EXTRA=$extra
export VMKIT_NESTED_APPEND="nested.bench=$rounds"
export VMKIT_NESTED_TIMEOUT=${VMKIT_NESTED_TIMEOUT:-$((rounds * 2 * 330 + 300))}
export VMKIT_NESTED_SILENCE=${VMKIT_NESTED_SILENCE:-900}
status=0
"$here/../tests/system/nested/run.sh" "$here/efi_boot_outer.sh" >/dev/null || status=$?
lines=$(tr -d '\r' <"$VMKIT_NESTED_LOG" | grep '^nested-bench: ' | grep -v -e ': plan' -e ': done' || true)
echo "$lines"
[ "$status" -eq 0 ] || echo "efi_boot.sh: run.sh status $status; log $VMKIT_NESTED_LOG"
# Medians per VMM, and vmkit's over QEMU's.
echo "$lines" | awk '$4 == "fail" { f[$2]++ } $4 == "ok" { sub("loader=", "", $5); sub("kernel=", "", $6);
        n[$2]++; l[$2, n[$2]] = $5; k[$2, n[$2]] = $6 }
    function median(a, v, m,   i, j, t, x) {
        for (i = 1; i <= m; i++) x[i] = a[v, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
        return m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2 }
    END {
        for (v in n) { ml[v] = median(l, v, n[v]); mk[v] = median(k, v, n[v])
            printf "%s: %d boots, median to the OS loader %.1f s, to the kernel %.1f s; %d failed boots tried again\n", v, n[v], ml[v], mk[v], f[v] }
        if (n["vmkit"] && n["qemu"])
            printf "vmkit / qemu: to the OS loader %.2f, to the kernel %.2f\n", ml["vmkit"] / ml["qemu"], mk["vmkit"] / mk["qemu"] }'
exit "$status"
