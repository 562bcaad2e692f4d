#!/bin/bash
# The escape and abuse suite: runs every case (tests/security/<case>.sh, or
# the ones named) against one shared server, then checks that nothing of
# any sandbox is left on the host. Prints "ok - <case> (sbx run)" /
# "ok - <case> (server)" lines (docs/security.md has the table).
#
#   SBX=build/sbx SBX_HELPERS=build/helpers SBX_ROOT=$PWD tests/security/run.sh [CASE...]
set -u
dir=$(cd "$(dirname "$0")" && pwd)
export SBX_ROOT=${SBX_ROOT:-$(cd "$dir/../.." && pwd)}
if [ $# -gt 0 ]; then
    cases=("$@")
else
    cases=()
    for f in "$dir"/*.sh; do
        n=$(basename "$f" .sh)
        [ "$n" = lib ] || [ "$n" = run ] || cases+=("$n")
    done
fi

CASE=run
. "$dir/lib.sh" # starts the shared server (and stops it at exit)
export SBX_SEC_URL=$SRV_URL SBX_SEC_PID=$SRV_PID SBX_SEC_LOG=$SRV_LOG SBX_SEC_STATE=$SRV_STATE
export SBX_SEC_IDS="$TMP/ids"
: >"$SBX_SEC_IDS"

status=0
for c in "${cases[@]}"; do
    f="$dir/$c.sh"
    if [ ! -f "$f" ]; then
        echo "not ok - $c: no such case ($f)"
        status=1
        continue
    fi
    t0=$(date +%s.%N)
    out=$(CASE=$c bash "$f" 2>"$TMP/case.err")
    rc=$?
    echo "$out"
    awk -v a="$t0" -v b="$(date +%s.%N)" -v c="$c" 'BEGIN { printf "# %s: %.1f s\n", c, b - a }'
    if ! grep -q '^ok - \|^not ok - ' <<<"$out" || [ $rc -ne 0 ]; then
        echo "not ok - $c exited with status $rc"
        sed 's/^/#   /' "$TMP/case.err" | tail -5
        status=1
    fi
    grep -q '^not ok - ' <<<"$out" && status=1
done

# ---- nothing is left behind ------------------------------------------------
# Only what this suite made is looked at (other tests may run beside it):
# the `sbx run` sandboxes' own cgroup parent, uids and run dir, the server
# sandboxes' engine ids, and this suite's temporary dirs.
RC=0
leftover() {
    if "${@:2}" >/dev/null 2>&1; then echo "ok - $1"; else echo "not ok - $1"; status=1; fi
}
cgs="/sys/fs/cgroup/*/$SBX_CGROUP_NAME/*/ /sys/fs/cgroup/$SBX_CGROUP_NAME/*/"
wait_for 30 bash -c "! ls -d $cgs 2>/dev/null | grep -q ."
leftover "no leftovers: no cgroup of an sbx run sandbox" bash -c "! ls -d $cgs 2>/dev/null | grep -q ."
leftover "no leftovers: no process of an sbx run sandbox" \
    bash -c "! pgrep -u $RUN_ROOT_UID,$((RUN_ROOT_UID + 1000)) >/dev/null"
leftover "no leftovers: no lock of an sbx run sandbox" bash -c "! ls $SBX_RUN_DIR/sandboxes/ 2>/dev/null | grep -q ."
# The shared server's sandboxes were deleted by their cases.
leftover "no leftovers: no cgroup of a server sandbox" \
    bash -c "for id in \$(sort -u $SBX_SEC_IDS); do ! ls -d /sys/fs/cgroup/*/sbx/\$id 2>/dev/null | grep -q . || exit 1; done"
leftover "no leftovers: no mount of the suite's dirs" bash -c "! grep -q '/tmp/sbx-sec\.' /proc/self/mountinfo"
leftover "no leftovers: no loop device of the suite's layers" bash -c "! losetup -a | grep -q '/tmp/sbx-sec\.'"
leftover "no leftovers: no server of the suite but the shared one" \
    bash -c "! pgrep -f 'state-dir /tmp/sbx-sec\.' | grep -vqx $SRV_PID"
# The cgroup parents and run dir of `sbx run` sandboxes are this suite's.
for d in /sys/fs/cgroup/*/"$SBX_CGROUP_NAME" /sys/fs/cgroup/"$SBX_CGROUP_NAME"; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null
done
"$SBX" prune >/dev/null 2>&1 # its pooled network namespaces (mounts)
[ -z "$(ls -A "$SBX_RUN_DIR/sandboxes" 2>/dev/null)" ] && rm -rf "$SBX_RUN_DIR"
exit $status
