#!/bin/bash
# Runs every test: unit binaries (build/tests/test_*) and CLI suites
# (tests/cli/*.sh). Each prints one "ok - ..." or "not ok - ..." line per
# check; this script counts them and ends with "N passed, N failed".
# "ok - ... # SKIP why" (TAP) is a check not run here (e.g. one that needs
# a GPU): neither passed nor failed, counted on a line of its own.
# TESTS='regex' runs only the suites whose name matches (grep -E), e.g.
# TESTS='server|mcp' tests/run.sh build-asan.
#
# Against a sanitizer build (SAN=1, `make asan`) every process of the run
# (servers, sbx, unit tests) writes its ASan/LSan/UBSan reports to
# $BUILD/sanitizer-logs, and a last check fails naming every report found
# (LSan's included: leaks of servers stopped by the suites' SIGTERMs).
set -u
BUILD=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SBX="$root/$BUILD/sbx" SBX_HELPERS="$root/$BUILD/helpers" SBX_ROOT="$root"
# Servers opened in process by unit tests live in $BUILD/tests, not beside
# sbx: name the sandbox init binary for them (configuration.md).
export SBX_INIT_EXE="$root/$BUILD/sbx"
pass=0 fail=0 skip=0
log=$(mktemp)
count() {
    local s p f
    s=$(grep -c '^ok - .*# SKIP' "$log")
    p=$(( $(grep -c '^ok - ' "$log") - s ))
    f=$(grep -c '^not ok - ' "$log")
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
}
run_suite() {
    local name=$1; shift
    [ -n "${TESTS:-}" ] && ! grep -qE -- "$TESTS" <<<"$name" && return
    echo "# $name"
    "$@" >"$log" 2>&1
    local rc=$?
    cat "$log"
    if [ "$rc" -ne 0 ] && ! grep -q '^not ok - ' "$log"; then
        echo "not ok - $name exited with status $rc" | tee -a "$log"
    fi
    count
}

# A sanitizer build links libasan: its binaries name __asan_init.
san=""
if nm -D "$BUILD/sbx-server" 2>/dev/null | grep -q ' __asan_init'; then
    san="$root/$BUILD/sanitizer-logs"
    rm -rf "$san" && mkdir -p "$san"
    # A process stopped by SIGTERM/SIGINT exits through its shutdown path,
    # where LSan runs; one killed by SIGKILL (a crash test) reports nothing.
    # Each report is copied to $san/<program>.<pid> by the hook linked into
    # every SAN=1 binary (tests/san/report_hook.c, which says why not
    # log_path), and still printed on the process's stderr. The caller's
    # options come first.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
    export SBX_SAN_LOG_DIR="$san"
    # The canaries: a leak and a UB report must land in $san, or a clean
    # check at the end would prove nothing.
    {
        ok=1
        "$BUILD/tests/san/canary" leak >/dev/null 2>&1
        grep -qs 'LeakSanitizer: detected memory leaks' "$san"/canary.* || ok=0
        rm -f "$san"/*
        "$BUILD/tests/san/canary" heap >/dev/null 2>&1
        grep -qs 'AddressSanitizer: heap-buffer-overflow' "$san"/canary.* || ok=0
        rm -f "$san"/*
        "$BUILD/tests/san/canary" ub >/dev/null 2>&1
        grep -qs 'runtime error: signed integer overflow' "$san"/canary.* || ok=0
        if [ "$ok" = 1 ]; then
            echo "ok - sanitizer canaries: a leak (LSan), a heap overflow (ASan) and a signed overflow (UBSan) are reported in $BUILD/sanitizer-logs"
        else
            echo "not ok - sanitizer canaries: reports do not reach $BUILD/sanitizer-logs"
        fi
        rm -f "$san"/*
    } >"$log" 2>&1
    echo "# sanitizers"
    cat "$log"
    count
fi

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] && run_suite "$(basename "$t")" "$t"
done
for t in tests/cli/test_*.sh; do
    run_suite "$(basename "$t")" bash "$t"
done

if [ -n "$san" ]; then
    # Last: any report of any process of the run fails it, by file, with
    # the report's first lines (the program and the kind of error).
    {
        reports=$(ls "$san")
        if [ -z "$reports" ]; then
            echo "ok - no ASan, LSan or UBSan report from any process of the run"
        else
            echo "not ok - sanitizer reports from $(wc -l <<<"$reports") process(es), in $BUILD/sanitizer-logs: $(tr '\n' ' ' <<<"$reports")"
            for r in $reports; do
                echo "#   $r:"
                grep -m 6 -E 'ERROR:|runtime error|SUMMARY|^ +#[0-9] ' "$san/$r" | sed 's/^/#     /'
            done
        fi
    } >"$log" 2>&1
    echo "# sanitizer reports"
    cat "$log"
    count
fi
rm -f "$log"
[ "$skip" -eq 0 ] || echo "$skip skipped (not run on this host: see the # SKIP lines)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
