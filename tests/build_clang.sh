#!/usr/bin/env bash
# The project builds with clang too, warnings as errors, every target (library, CLI, tests,
# guests), in BUILD_DIR/clang. One TAP case; no clang is a skip (a failure under CI=true).
#   tests/build_clang.sh BUILD_DIR
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/support/tap.sh
command -v clang >/dev/null || tap_cannot_run "clang not installed"
dir=$1/clang
echo "1..1"
log=$(mktemp)
if { [ -f "$dir/build.ninja" ] || CC=clang meson setup "$dir" -Dsanitize=false >"$log" 2>&1; } &&
    ninja -C "$dir" >>"$log" 2>&1; then
    echo "ok 1 - builds with clang ($(clang --version | head -n 1)), warnings as errors"
else
    echo "not ok 1 - builds with clang, warnings as errors"
    grep -E 'error|warning' "$log" | head -n 30 | sed 's/^/# /'
fi
rm -f "$log"
