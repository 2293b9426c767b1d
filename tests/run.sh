#!/usr/bin/env bash
# The whole test suite: builds (with ASan + UBSan) and runs every tier, then prints
# one closing line "N passed, N failed, N skipped" counting individual test cases.
#   tests/run.sh             all tiers
#   tests/run.sh --quick     unit tests only
set -u
cd "$(dirname "$0")/.."
build=${VMKIT_TEST_BUILD:-build-test}
suites=()
if [ "${1:-}" = "--quick" ]; then suites=(--suite unit); fi

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dsanitize=true >/dev/null || { echo "meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$build" >/dev/null || { ninja -C "$build"; echo "0 passed, 1 failed"; exit 1; }

# ASan's leak checker cannot follow ptrace-less vCPU threads cleanly on every host;
# leaks are still reported at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
meson test -C "$build" --print-errorlogs --num-processes 2 "${suites[@]}"
python3 tests/summarize.py "$build/meson-logs/testlog.json"
