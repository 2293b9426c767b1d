#!/bin/sh
# The installed libvmkit.a: every object of the internal archive linked into one relocatable
# object in which only the public symbols (default visibility: vmk_*) stay global; the rest
# (bus_add, event_loop_new, ...) become local, so they never meet a program's own names.
#   static_lib.sh OUT.a IN.a OBJCOPY AR LINKER...   (LINKER: the C compiler, for -r)
set -eu
out=$1 in=$2 objcopy=$3 ar=$4
shift 4
tmp=$out.tmp.o
"$@" -r -nostdlib -Wl,--whole-archive "$in" -Wl,--no-whole-archive -o "$tmp"
"$objcopy" --localize-hidden "$tmp"
rm -f "$out"
"$ar" rcs "$out" "$tmp"
rm -f "$tmp"
