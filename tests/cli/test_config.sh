# `sbx config check` and `sbx server start` on good and bad MSB_*
# configurations (environment and ./.env).
. "$(dirname "$0")/lib.sh"
RC=0
# Nothing from the caller's environment, no .env: the scratch dir is the cwd.
for v in $(env | sed -n 's/^\(MSB_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
cd "$TMP" || exit 1

cfg_check() { "$SBX" config check "$@" >"$OUT" 2>"$ERR" </dev/null; RC=$?; }

cfg_check
check "defaults: exit 0" rc_is 0
check "defaults: the script's output" out_is "✓ Configuration loaded successfully

Configuration summary:
  Server URL: http://127.0.0.1:5555
  Max sessions: 10
  Session timeout: 1800s
  Default flavor: small
  Volume mappings: 0"

mkdir -p "$TMP/in"
MSB_SESSION_TIMEOUT=3600 MSB_MAX_SESSIONS=20 MSB_DEFAULT_FLAVOR=" Medium " MSB_SERVER_URL=https://sbx.example \
MSB_SHARED_VOLUME_PATH="[\"$TMP/in:/sandbox/in\", \"./missing:/sandbox/out:ro\"]" cfg_check
check "good configuration: exit 0" rc_is 0
check "good configuration: ✓, missing host path warned (resolved), summary" out_is "✓ Configuration loaded successfully
⚠ Host path does not exist: $TMP/missing

Configuration summary:
  Server URL: https://sbx.example
  Max sessions: 20
  Session timeout: 3600s
  Default flavor: medium
  Volume mappings: 2"

MSB_SESSION_TIMEOUT=600 MSB_EXECUTION_TIMEOUT=900 cfg_check
check "execution timeout > session timeout: a warning, exit 0" \
    bash -c "[ $RC -eq 0 ] && grep -qx '⚠ Execution timeout is longer than session timeout' '$OUT'"

MSB_SESSION_TIMEOUT=30 cfg_check
check "session timeout out of range: exit 1" rc_is 1
check "session timeout out of range: ✗ line names variable, value, range" \
    out_is "✗ Configuration error: MSB_SESSION_TIMEOUT must be between 60 and 86400 seconds, got 30"

MSB_SERVER_URL=localhost:5555 cfg_check
check "URL without scheme: exit 1 and the wrapper's message" bash -c "[ $RC -eq 1 ] && grep -qx \
'✗ Configuration error: Invalid server URL format: localhost:5555. Must start with http:// or https://' '$OUT'"

MSB_SHARED_VOLUME_PATH="/data/in:/sandbox/in,/nocolon" cfg_check
check "malformed mapping: exit 1" rc_is 1
check "malformed mapping: ✗ line with position and entry" out_has "^✗ Configuration error: Invalid volume \
mapping at position 1 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: /nocolon. Expected 'host_path:container_path'"

MSB_SHARED_VOLUME_PATH='{"a":"/x:/y"}' cfg_check
check "JSON object for mappings: exit 1, wrapper's message" bash -c "[ $RC -eq 1 ] && grep -q \
'^✗ Configuration error: MSB_SHARED_VOLUME_PATH must be an array of strings, not a JSON object.' '$OUT'"

MSB_ENABLE_LRU_EVICTION=sometimes cfg_check
check "bad boolean: exit 1" bash -c "[ $RC -eq 1 ] && grep -q \"got 'sometimes'\" '$OUT'"

MSB_CLEANUP_INTERVAL=900 MSB_SESSION_TIMEOUT=900 cfg_check
check "cleanup interval >= session timeout: exit 1, wrapper's message" \
    out_is "✗ Configuration error: Cleanup interval (900s) must be less than session timeout (900s)"

# .env in the working directory; the real environment wins.
printf '# settings\nexport MSB_MAX_SESSIONS=42\nMSB_DEFAULT_FLAVOR="large"  # big\n' >"$TMP/.env"
cfg_check
check ".env is read" bash -c "[ $RC -eq 0 ] && grep -qx '  Max sessions: 42' '$OUT' && grep -qx '  Default flavor: large' '$OUT'"
MSB_MAX_SESSIONS=5 cfg_check
check "the real environment wins over .env" bash -c "[ $RC -eq 0 ] && grep -qx '  Max sessions: 5' '$OUT'"
printf 'MSB_MAX_SESSIONS=0\n' >"$TMP/.env"
cfg_check
check "bad value in .env: exit 1, message" \
    bash -c "[ $RC -eq 1 ] && grep -qx '✗ Configuration error: MSB_MAX_SESSIONS must be a positive integer, got 0' '$OUT'"

cfg_check extra
check "config check with an extra argument: usage error 125" rc_is 125
"$SBX" config >"$OUT" 2>"$ERR"; RC=$?
check "config without a subcommand: usage, 125" bash -c "[ $RC -eq 125 ] && grep -q 'sbx config check' '$ERR'"
"$SBX" --help >"$OUT" 2>"$ERR"; RC=$?
check "sbx --help lists config" out_has "^  config "

# The server refuses to start on the same errors, before touching anything.
srv_refuses() { # NAME EXPECTED-MESSAGE (environment set by the caller)
    timeout 20 "$SBX" server start --port 0 --state-dir "$TMP/state" >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    check "server start: $1 refused with exit 125" rc_is 125
    check "server start: $1 message" grep -qxF -- "sbx server: $2" "$ERR"
    # [-] keeps pgrep from matching the checking shell's own command line
    check "server start: $1 left no server and no state" \
        bash -c "[ ! -e '$TMP/state' ] && ! pgrep -f -- '[-]-state-dir $TMP/state( |\$)' >/dev/null"
}
printf 'MSB_LOG_LEVEL=INFO\n' >"$TMP/.env"
MSB_SESSION_TIMEOUT=30 srv_refuses "out-of-range MSB_SESSION_TIMEOUT" \
    "MSB_SESSION_TIMEOUT must be between 60 and 86400 seconds, got 30"
MSB_LOG_LEVEL=verbose srv_refuses "bad MSB_LOG_LEVEL" \
    "Invalid MSB_LOG_LEVEL 'verbose'. Valid options are: DEBUG, INFO, WARNING, ERROR, CRITICAL"
printf 'MSB_DEFAULT_FLAVOR=huge\n' >"$TMP/.env"
srv_refuses "bad MSB_DEFAULT_FLAVOR in .env" "Invalid MSB_DEFAULT_FLAVOR 'huge'. Valid options are: small, medium, large"
rm -f "$TMP/.env"

# A good configuration starts; MSB_LOG_LEVEL sets the level unless
# --log-level is given; a missing mapping host path is only a warning.
srv_start() { # LOGFILE ARGS...
    local log=$1; shift
    "$SBX" server start --port 0 --dev --state-dir "$TMP/state-ok" "$@" >"$OUT" 2>"$log" </dev/null &
    SRV=$!
    for _ in $(seq 100); do grep -q 'listening' "$OUT" && break; sleep 0.1; done
    kill -TERM "$SRV" 2>/dev/null
    wait "$SRV"
    RC=$?
}
MSB_LOG_LEVEL=warning MSB_SHARED_VOLUME_PATH=/nonexistent-sbx-test:/x srv_start "$TMP/log1"
check "server with MSB_LOG_LEVEL=warning starts and stops cleanly" bash -c "[ $RC -eq 0 ] && grep -q 'listening' '$OUT'"
check "missing host path of a mapping: a warning in the log" \
    grep -q " warn  MSB_SHARED_VOLUME_PATH: host path does not exist: /nonexistent-sbx-test" "$TMP/log1"
check "MSB_LOG_LEVEL=warning hides info lines" bash -c "! grep -q ' info  ' '$TMP/log1'"
MSB_LOG_LEVEL=ERROR srv_start "$TMP/log2" --log-level info
check "--log-level wins over MSB_LOG_LEVEL" bash -c "[ $RC -eq 0 ] && grep -q ' info  listening on' '$TMP/log2'"
