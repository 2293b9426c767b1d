# Shell helpers for vmkit's TAP tests (sourced; bash or busybox sh).
#
# tap_cannot_run REASON: the whole test program cannot run here (no QEMU, no guest, no
# clang...). Locally that is a skip ("1..0 # SKIP REASON"); under CI (CI=true) every tier
# must run, so it is a failure, with the reason. Exits.
tap_cannot_run() {
    if [ "${CI:-}" = true ]; then
        echo "1..1"
        echo "not ok 1 - cannot run: $1 (CI=true: a tier that cannot run fails)"
        exit 1
    fi
    echo "1..0 # SKIP $1"
    exit 0
}
