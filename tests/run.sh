#!/usr/bin/env bash
# The whole test suite: builds (with ASan + UBSan) and runs every tier, then prints
# one closing line "N passed, N failed, N skipped" counting individual test cases.
#   tests/run.sh             all tiers
#   tests/run.sh --quick     unit tests only
set -u
cd "$(dirname "$0")/.." || exit 1
build=${VMKIT_TEST_BUILD:-build-test}
suites=()
if [ "${1:-}" = "--quick" ]; then suites=(--suite unit); fi

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dsanitize=true >/dev/null || { echo "meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$build" >/dev/null || { ninja -C "$build"; echo "0 passed, 1 failed"; exit 1; }

# The default guest (Debian's kernel + busybox): the whole-machine tests boot it and the
# boot-loader tests parse its real bzImage. A failure here shows up in those tests.
guest/build.sh >/dev/null 2>"$build/guest-build.log" || echo "guest/build.sh failed: see $build/guest-build.log"
# The outer machine's QEMU (Debian's, with vmkit's SVM fixes), built once and cached, so
# that no test's time limit pays for the build. Only the nested tier uses it, and says so
# when it is missing.
if [ "${1:-}" != "--quick" ]; then
    # Where the nested test looks for it: meson gives it VMKIT_NESTED_DIR=<build>/nested.
    case $build in /*) abs_build=$build ;; *) abs_build=$PWD/$build ;; esac
    tests/system/nested/build-outer-qemu.sh "$abs_build/nested/outer-qemu" >/dev/null \
        2>"$build/outer-qemu-build.log" || {
        echo "build-outer-qemu.sh failed (the nested tier falls back to Debian's QEMU):"
        tail -n 5 "$build/outer-qemu-build.log"
    }
fi

# Any sanitizer report (leaks included) fails the test program that caused it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
meson test -C "$build" --print-errorlogs --num-processes 2 "${suites[@]}"
python3 tests/summarize.py "$build/meson-logs/testlog.json"
