# Helpers for CLI tests: run sbx, check results, print ok/not ok lines.
# Every test gets a scratch dir under $TMP that is removed at exit.
set -u
: "${SBX:?SBX must point at the sbx binary}"
TMP=$(mktemp -d /tmp/sbx-test.XXXXXX)
chmod 755 "$TMP"
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/out" ERR="$TMP/err"
# host uid of "user" (uid 1000) inside a sandbox
SBX_USER_HOST_UID=$(( ${SBX_UID_BASE:-1000000000} + 1000 ))

# sbx_run ARGS...: runs sbx run, stdout in $OUT, stderr in $ERR, status in $RC
sbx_run() {
    "$SBX" run "$@" >"$OUT" 2>"$ERR" </dev/null
    RC=$?
}
ok() { echo "ok - $1"; }
not_ok() {
    echo "not ok - $1"
    shift
    for l in "$@"; do echo "#   $l"; done
    echo "#   rc=$RC stdout: $(head -c 400 "$OUT" | tr '\n' '|')"
    echo "#   stderr: $(head -c 400 "$ERR" | tr '\n' '|')"
}
# check NAME CONDITION...: evaluates the condition (a command) and reports
check() {
    local name=$1; shift
    if "$@"; then ok "$name"; else not_ok "$name" "failed: $*"; fi
}
rc_is() { [ "$RC" -eq "$1" ]; }
out_is() { [ "$(cat "$OUT")" = "$1" ]; }
out_has() { grep -q -- "$1" "$OUT"; }
err_has() { grep -q -- "$1" "$ERR"; }
