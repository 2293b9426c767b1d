#!/bin/sh
# The binaries are built hardened: a read-only GOT bound at load (GNU_RELRO, BIND_NOW), the stack
# protector in use, and, in an optimized build without sanitizers, _FORTIFY_SOURCE's checked
# functions. TAP.
#   test_hardening.sh FORTIFY(true|false) BINARY...
fortify=$1
shift
echo "1..$#"
n=0
for bin in "$@"; do
    n=$((n + 1))
    why=
    readelf -lW "$bin" | grep -q GNU_RELRO || why="$why no GNU_RELRO;"
    readelf -dW "$bin" | grep -qE 'BIND_NOW|FLAGS_1.*NOW' || why="$why no BIND_NOW;"
    nm -D "$bin" 2>/dev/null | grep -q ' __stack_chk_fail' || why="$why no stack protector;"
    if [ "$fortify" = true ] && ! nm -D "$bin" 2>/dev/null | grep -qE ' __[a-z_]+_chk(@|$)'; then
        why="$why no _FORTIFY_SOURCE checks;"
    fi
    if [ -z "$why" ]; then echo "ok $n - $(basename "$bin") is hardened"; else
        echo "not ok $n - $(basename "$bin") is hardened:$why"; fi
done
