#!/usr/bin/env bash
# Static checks as TAP test cases: the C sources match .clang-format, cppcheck finds nothing,
# and clang-tidy's static analyzer (.clang-tidy) finds nothing in src/. A missing tool is a
# skip, or a failure under CI=true.
#   tests/lint.sh [BUILD_DIR]   (BUILD_DIR: a configured build, for compile_commands.json)
cd "$(dirname "$0")/.." || exit 1
build=${1:-build}
echo "1..3"
missing() { # N NAME TOOL
    if [ "${CI:-}" = true ]; then echo "not ok $1 - $2: $3 is not installed (CI=true)"
    else echo "ok $1 - $2 # SKIP $3 not installed"; fi
}
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find include src tools tests -name '*.[ch]')
if command -v clang-format >/dev/null; then
    bad=$(for f in $files; do clang-format --dry-run "$f" 2>&1 | grep -q warning && echo "$f"; done)
    if [ -z "$bad" ]; then echo "ok 1 - clang-format"; else
        echo "not ok 1 - clang-format"; for f in $bad; do echo "# not formatted: $f"; done; fi
else
    missing 1 clang-format clang-format
fi
if command -v cppcheck >/dev/null; then
    if out=$(cppcheck -q --std=c11 --enable=warning,portability --inline-suppr --error-exitcode=1 \
                 -Iinclude -Isrc -D_GNU_SOURCE src tools 2>&1); then
        echo "ok 2 - cppcheck"
    else
        echo "not ok 2 - cppcheck"; printf '%s\n' "$out" | sed 's/^/# /'
    fi
else
    missing 2 cppcheck cppcheck
fi
if ! command -v clang-tidy >/dev/null; then
    missing 3 "clang-tidy static analyzer" clang-tidy
elif [ ! -f "$build/compile_commands.json" ]; then
    echo "not ok 3 - clang-tidy static analyzer: no $build/compile_commands.json"
else
    # One file per run: batches of files made the analyzer report phantom paths.
    out=$(git ls-files 'src/*.c' | xargs -P 2 -n 1 clang-tidy -p "$build" --quiet 2>&1 |
        grep -E '(warning|error):')
    n=$(git ls-files 'src/*.c' | wc -l)
    if [ -z "$out" ]; then echo "ok 3 - clang-tidy static analyzer: $n files of src/, no finding"
    else echo "not ok 3 - clang-tidy static analyzer"; printf '%s\n' "$out" | sed 's/^/# /'; fi
fi
