# Hostile code looks for host processes and signals them: a host process
# whose real uid is the sandbox root's own host uid (so the uid rules
# alone would let the sandbox signal it, as the control shows), the
# server, and sbx. It lists /proc, kills by host pid, and kill -9 -1.
. "$(dirname "$0")/lib.sh"

marker="sbx-sec-victim-$$"
# victim UID: a python sleeper with real uid UID (effective 65534, so no
# other test's "processes of the sandbox uid" check counts it).
victim() {
    python3 -c 'import os, sys, time
os.setresgid(65534, 65534, 65534); os.setresuid(int(sys.argv[1]), 65534, 65534); time.sleep(600)' "$1" "$marker" &
    VICTIM=$!
    defer "kill -9 $VICTIM"
    local i
    for ((i = 0; i < 400; i++)); do
        grep -q "^Uid:.$1" /proc/$VICTIM/status 2>/dev/null && break
        sleep 0.05
    done
}

body() {
    local uid=$RUN_ROOT_UID
    [ "$1" = server ] && uid=$SRV_ROOT_UID
    victim "$uid"
    expect "control: the sandbox root's host uid may signal the victim on the host" \
        setpriv --reuid="$uid" --regid="$uid" --clear-groups kill -0 "$VICTIM"
    in_sb "$1" -- sh -c "ps -eo pid,args; cat /proc/[0-9]*/cmdline | tr '\0' ' '; echo;
        /opt/helpers/probe kill $VICTIM 9 -- kill $SRV_PID 9 -- kill $$ 9; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "the victim is not visible" nowhere "$marker"
    expect "the server is not visible" bash -c "! grep -q 'sbx server\|sbx-server' $OUT"
    expect "signals by host pid find nothing (ESRCH)" \
        bash -c "grep -qx 'kill ESRCH' $OUT && [ \$(grep -c '^kill ESRCH' $OUT) = 3 ]"
    in_sb "$1" -- sh -c 'sleep 300 & s=$!; kill -9 -1; wait $s; echo "sleeper $?"'
    expect "kill -9 -1 inside kills the sandbox's own processes" out_has "sleeper 137"
    expect "the victim survives" kill -0 "$VICTIM"
    expect "the test's own shell survives (it is here)" kill -0 $$
    if [ "$1" = server ]; then
        in_sb server -- echo still-usable
        expect "the sandbox still runs commands after kill -1" out_has still-usable
    fi
    kill -9 "$VICTIM" 2>/dev/null
    wait "$VICTIM" 2>/dev/null
}
both
