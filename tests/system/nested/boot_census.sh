#!/bin/bash
# Counts how boots of the default guest end, many times over, under vmkit and under QEMU
# (-accel kvm, the reference VMM) inside the same emulated outer machine: the control
# experiment for faults that come once in many boots (census.sh says what is counted).
#
#   tests/system/nested/boot_census.sh [VARIANT:COUNT,...]   (default vmkit:30,qemu:30,vmkit-noxsave:30)
#
# Environment:
#   VMKIT_BIN            the vmkit to test (build/tools/vmkit/vmkit)
#   VMKIT_CENSUS_BINS    "NAME=PATH ..." other vmkit builds, booted by variant vmkit@NAME
#   VMKIT_CENSUS_HOG     N: N busy loops run on this host meanwhile (another emulator beside
#                        the tests, as a user's machine has)
#   VMKIT_NESTED_ACCEL, VMKIT_NESTED_SMP, VMKIT_NESTED_MEM   the outer machine (run.sh)
#   VMKIT_NESTED_LOG     where the outer serial log goes (build/nested/logs/census.log)
# Prints the per-boot lines and a table of outcomes per variant.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
plan=${1:-vmkit:30,qemu:30,vmkit-noxsave:30}
export VMKIT_BIN=${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}
export VMKIT_NESTED_DIR=${VMKIT_NESTED_DIR:-$root/build/nested}
export VMKIT_NESTED_LOG=${VMKIT_NESTED_LOG:-$VMKIT_NESTED_DIR/logs/census.log}

# A wedge of the outer machine is dumped with symbols (run.sh).
"$here/kallsyms.sh" >&2 || echo "boot_census.sh: no outer kernel symbols (kallsyms.sh failed)" >&2
extra=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-census.XXXXXX")
hogs=()
cleanup() {
    for h in "${hogs[@]}"; do kill "$h" 2>/dev/null; done
    rm -rf "$extra"
}
trap cleanup EXIT

# shellcheck source=tests/support/copy_with_libs.sh
. "$root/tests/support/copy_with_libs.sh"

if [[ ",$plan" == *,qemu* ]]; then
    copy_with_libs "$(command -v qemu-system-x86_64)" "$extra" usr/bin
    mkdir -p "$extra/usr/share/qemu"
    for f in bios-256k.bin linuxboot_dma.bin linuxboot.bin kvmvapic.bin; do
        cp -L "/usr/share/qemu/$f" "$extra/usr/share/qemu/" 2>/dev/null ||
            cp -L "/usr/share/seabios/$f" "$extra/usr/share/qemu/"
    done
fi
for nb in ${VMKIT_CENSUS_BINS:-}; do
    copy_with_libs "${nb#*=}" "$extra" usr/bin "vmkit-${nb%%=*}"
done

for _ in $(seq 1 "${VMKIT_CENSUS_HOG:-0}"); do
    (while :; do :; done) &
    hogs+=($!)
done

export VMKIT_NESTED_EXTRA=$extra
export VMKIT_NESTED_APPEND="nested.census=$plan"
export VMKIT_NESTED_TIMEOUT=${VMKIT_NESTED_TIMEOUT:-14400}
export VMKIT_NESTED_SILENCE=${VMKIT_NESTED_SILENCE:-900}
start=$(date +%s)
"$here/run.sh" "$here/census.sh" >/dev/null
status=$?
echo "boot_census.sh: run.sh status $status after $(($(date +%s) - start)) s; log $VMKIT_NESTED_LOG" \
    "(hogs: ${VMKIT_CENSUS_HOG:-0}, outer -accel ${VMKIT_NESTED_ACCEL:-tcg})"
tr -d '\r' <"$VMKIT_NESTED_LOG" | grep '^nested-census: ' | grep -v -e ': plan' -e ': done'
tr -d '\r' <"$VMKIT_NESTED_LOG" | grep '^nested-census: ' | grep -v -e ': plan' -e ': done' |
    awk '{ n[$2]++; o[$2 " " $4]++; if ($4 == "ok") { sub("prompt=", "", $5); t[$2] += $5 } }
         END { for (v in n) { line = v ": " n[v] " boots"; for (k in o) { split(k, a, " ");
               if (a[1] == v) line = line ", " o[k] " " a[2] }
               if (o[v " ok"]) line = line sprintf(", mean prompt %.1f s", t[v] / o[v " ok"]);
               print line } }'
