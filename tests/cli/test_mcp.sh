# MCP: the /mcp contract and `sbx mcp` (Python stdlib over real HTTP), then
# the official MCP TypeScript SDK client (tests/js, version pinned by its
# lockfile) over streamable HTTP and stdio against a fresh --dev server.
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${SBX_ROOT:=$root}" "${SBX:=$root/build/sbx}"
export SBX SBX_ROOT
. "$(dirname "$0")/lib.sh"
RC=0
: >"$OUT"; : >"$ERR"

/usr/bin/python3 "$SBX_ROOT/tests/server/test_mcp.py"
status=$?

js="$SBX_ROOT/tests/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ok - # skip official MCP SDK client: node/npm not installed"
    exit $status
fi
if [ ! -d "$js/node_modules/@modelcontextprotocol/sdk" ] &&
    ! (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) >"$TMP/npm.log" 2>&1; then
    echo "not ok - npm ci in tests/js (installs the pinned @modelcontextprotocol/sdk)"
    tail -5 "$TMP/npm.log" | sed 's/^/#   /'
    exit 1
fi

# `sbx server start` execs sbx-server: $! is the server itself.
"$SBX" server start --port 0 --dev --state-dir "$TMP/state" >"$TMP/srv.out" 2>"$TMP/srv.log" &
srv=$!
trap 'kill -KILL $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do
    grep -q listening "$TMP/srv.out" && break
    sleep 0.1
done
port=$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' "$TMP/srv.out")
if [ -z "$port" ]; then
    echo "not ok - a --dev server for the SDK client starts"
    sed 's/^/#   /' "$TMP/srv.log"
    exit 1
fi
timeout 300 node "$js/mcp_client.mjs" "http://127.0.0.1:$port" "$SBX"
node_rc=$?
[ $node_rc -ne 0 ] && status=1 && echo "# the SDK client exited with $node_rc"

kill -TERM $srv
wait $srv
srv_rc=$?
if [ $srv_rc -eq 0 ]; then ok "the SDK client's server stops cleanly"; else not_ok "the SDK client's server stops cleanly" "exit $srv_rc"; status=1; fi
# Zombies do not count: an earlier suite's sandbox init reparented to a
# pid 1 that does not reap shows up as one, holding nothing.
left=$(ps -o pid=,stat=,args= -u "$SBX_USER_HOST_UID,${SBX_UID_BASE:-1000000000}" 2>/dev/null | awk '$2 !~ /^Z/')
if [ -n "$left" ]; then
    not_ok "no sandbox process is left" "$(head -3 <<<"$left")"
    status=1
else
    ok "no sandbox process is left"
fi
exit $status
