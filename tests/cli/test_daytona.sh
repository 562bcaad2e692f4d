# The Daytona front door: the official JS SDK (tests/js, @daytonaio/sdk
# pinned in package.json) against `sbx server start --dev`, configured only
# through DAYTONA_API_URL and DAYTONA_API_KEY; a second run that never
# deletes its sandbox must still exit promptly; then the raw-HTTP cases
# (tests/server/test_daytona.py). Nothing may be left running.
. "$(dirname "$0")/lib.sh"
JS="$SBX_ROOT/tests/js"
RC=0
: >"$OUT"; : >"$ERR"

# The SDK reads only these two: everything else Daytona-related is unset.
sdk() {
    (cd "$JS" && env -u DAYTONA_SERVER_URL -u DAYTONA_TARGET -u DAYTONA_JWT_TOKEN -u DAYTONA_ORGANIZATION_ID \
        -u DAYTONA_USE_DEPRECATED_POLLING DAYTONA_API_URL="$url/api" DAYTONA_API_KEY=test \
        timeout 300 node daytona_sdk.mjs "$@")
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    not_ok "node and npm are installed (the Daytona SDK test needs them)"
elif [ ! -d "$JS/node_modules/@daytonaio/sdk" ] && ! npm ci --prefix "$JS" --silent --no-audit --no-fund >"$OUT" 2>"$ERR"; then
    RC=1
    not_ok "npm ci --prefix tests/js installs the pinned SDKs"
else
    "$SBX" server start --dev --port 0 --state-dir "$TMP/state" >"$TMP/srv.out" 2>"$TMP/srv.log" </dev/null &
    pid=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's/^sbx server listening on .*:\([0-9]*\)$/\1/p' "$TMP/srv.out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        not_ok "the server starts" "log: $(tail -5 "$TMP/srv.log" | tr '\n' '|')"
        kill "$pid" 2>/dev/null
    else
        url="http://127.0.0.1:$port"
        sdk >"$OUT" 2>"$ERR"
        RC=$?
        cat "$OUT"
        if [ "$RC" -ne 0 ] && ! grep -q '^not ok' "$OUT"; then
            not_ok "the SDK script runs to its end" "stderr: $(tail -c 600 "$ERR" | tr '\n' '|')"
        fi

        # A script that never deletes its sandbox: the event stream must
        # not keep node alive (socket.io-client's reconnects would, ~3 min).
        sdk keep >"$OUT" 2>"$ERR"
        RC=$?
        ended=$(date +%s%3N)
        grep -v '^#' "$OUT"
        last=$(sed -n 's/^# last call done \([0-9]*\)$/\1/p' "$OUT")
        kept=$(sed -n 's/^# kept \(.*\)$/\1/p' "$OUT")
        check "the keep script runs to its end" rc_is 0
        check "node exits within 2 s of its last call, sandbox not deleted" \
            test -n "$last" -a "$((ended - ${last:-0}))" -le 2000
        echo "#   exited $((ended - ${last:-0})) ms after the last call"

        kill -TERM "$pid"
        wait "$pid"
        RC=$?
        check "the server stops cleanly on SIGTERM" rc_is 0
        check "the server logs a clean stop" grep -q "info  stopped" "$TMP/srv.log"
        # The sandboxes this server made, by their engine ids.
        ids=$(sed -n 's/.*sandbox daytona\/.* started (engine id \(msb-[0-9a-f]*\)).*/\1/p' "$TMP/srv.log")
        check "the SDK runs created sandboxes" test -n "$ids"
        left=
        for id in $ids; do
            [ -e "/run/sbx/sandboxes/$id" ] && left="$left $id(lock)"
            ls -d /sys/fs/cgroup/*/sbx/"$id" /sys/fs/cgroup/sbx/"$id" >/dev/null 2>&1 && left="$left $id(cgroup)"
        done
        check "no lock or cgroup of those sandboxes remains" test -z "$left"
        check "no loop device or mount of this state dir remains" \
            bash -c "! losetup -a 2>/dev/null | grep -q '$TMP' && ! grep -q '$TMP' /proc/self/mountinfo"
        # Daytona sandboxes persist until deleted (as upstream): only the
        # kept one may remain, stopped, with its layer.
        check "only the kept sandbox remains in the registry, stopped" /usr/bin/python3 -c "
import sqlite3, sys
rows = sqlite3.connect('$TMP/state/registry.db').execute(\"select name, status from sandboxes where ns='daytona'\").fetchall()
sys.exit(rows != [('$kept', 'stopped')])"
        check "only the kept sandbox's layer remains" test "$(ls -A "$TMP/state/layers/daytona" 2>/dev/null)" = "$kept"
        # Deletes finish their teardown in the background; the stop waits
        # for them and removes the pool of ready layer images.
        check "no layer pool or trash remains" test ! -e "$TMP/state/layers/.pool" -a ! -e "$TMP/state/layers/.trash"
    fi
fi

/usr/bin/python3 "$SBX_ROOT/tests/server/test_daytona.py"
