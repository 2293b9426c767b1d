#!/bin/sh
# The libraries export the public API only: every defined global symbol of libvmkit.so (in its
# version node VMKIT_0.2) and of libvmkit.a starts with vmk_, and every function the header
# declares is there. TAP.
#   test_exports.sh LIBVMKIT.so LIBVMKIT.a include/vmkit.h
so=$1 a=$2 header=$3
echo "1..3"
bad=$(nm -D --defined-only "$so" | awk '$2 != "A" && $3 !~ /^vmk_/ { print $3 }')
if [ -z "$bad" ]; then echo "ok 1 - libvmkit.so exports vmk_* only"; else
    echo "not ok 1 - libvmkit.so exports vmk_* only"; echo "$bad" | sed 's/^/# exported: /'; fi
bad=$(nm -g --defined-only "$a" | awk 'NF == 3 && $3 !~ /^vmk_/ { print $3 }')
if [ -z "$bad" ]; then echo "ok 2 - libvmkit.a has no global symbol but vmk_*"; else
    echo "not ok 2 - libvmkit.a has no global symbol but vmk_*"; echo "$bad" | sed 's/^/# global: /'; fi
declared=$(grep -o 'vmk_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$so" | awk '{ print $3 }' | sed 's/@.*//' | sort -u)
missing=$(printf '%s\n' "$declared" | while read -r f; do
    printf '%s\n' "$exported" | grep -qx "$f" || echo "$f"; done)
n=$(printf '%s\n' "$declared" | wc -l)
if [ -z "$missing" ]; then echo "ok 3 - all $n functions of vmkit.h are exported"; else
    echo "not ok 3 - every function of vmkit.h is exported"; echo "$missing" | sed 's/^/# missing: /'; fi
