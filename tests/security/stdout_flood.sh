# A sandbox floods its output: 2 GiB of 1 KiB lines, 1 GiB with no newline
# at all, and 40 MB of one-character lines (`yes`), plain and streamed
# ("stream": true). The server keeps at most 16 MiB / 131072 lines of
# output per call, so its peak memory (VmHWM, reset first) grows by less
# than 200 MiB; the calls end with the truncation note; `sbx run` passes
# output straight through (its own peak RSS stays small). Control: the
# floods do produce what they claim (byte counts inside).
. "$(dirname "$0")/lib.sh"

# A server of its own, so its peak is this case's. Under ASan (make asan)
# every allocation carries redzones and freed memory waits in quarantine:
# that server gets a small quarantine and twice the bound.
bound=$((200 << 20))
if ldd "$(dirname "$SBX")/sbx-server" 2>/dev/null | grep -q libasan; then
    bound=$((400 << 20))
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
fi
srv_start "$TMP/flood-state" || FAILS+=("the server starts")
defer srv_stop "$SRV_PID"
hwm() { awk '/VmHWM/ { print $2 * 1024 }' "/proc/$SRV_PID/status"; }
rss() { awk '/VmRSS/ { print $2 * 1024 }' "/proc/$SRV_PID/status"; }
floods=(
    'yes "$(printf "%01023d" 0)" | head -c 2147483648'
    'head -c 1073741824 /dev/zero | tr "\0" x'
    'yes | head -c 40000000'
)
# stream_run SANDBOX CMD: sandbox.command.run with "stream": true; prints
# the number of output lines and the final envelope's last stderr line.
stream_run() {
    python3 - "$SRV_URL" "$1" "$2" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
body = {"jsonrpc": "2.0", "id": 1, "method": "sandbox.command.run",
        "params": {"sandbox": sys.argv[2], "command": "sh", "args": ["-c", sys.argv[3]], "stream": True}}
c.request("POST", "/api/v1/rpc", json.dumps(body), {"Content-Type": "application/json"})
r = c.getresponse()
n, last = 0, None
for line in r:
    m = json.loads(line)
    if m.get("method") == "sandbox.output":
        n += 1
    else:
        last = m
out = last["result"]["output"] if last and "result" in last else []
print("streamed %d" % n)
print(out[-1]["text"] if out else "no-result")
PY
}

body() {
    local f
    if [ "$1" = run ]; then
        for f in "${floods[@]}"; do
            python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)' "$SBX" run -- sh -c "$f" >"$OUT"
            expect "sbx run's peak memory stays under 64 MiB ($(cat "$OUT") bytes): $f" \
                bash -c "[ $(cat "$OUT") -lt $((64 << 20)) ]"
        done
        return
    fi
    local base
    echo 5 >"/proc/$SRV_PID/clear_refs"
    base=$(rss)
    for f in "${floods[@]}"; do
        in_sb server -- sh -c "$f"
        expect "the call ends with the truncation note: $f" bash -c "tail -1 $ERR | grep -q 'output truncated'"
        expect "the server's peak grew by less than $((bound >> 20)) MiB ($(($(hwm) - base)) bytes): $f" \
            bash -c "[ $(($(hwm) - base)) -lt $bound ]"
    done
    for f in "${floods[@]}"; do
        stream_run "$SB" "$f" >"$OUT"
        expect "the streamed call ends with the truncation note: $f" bash -c "tail -1 $OUT | grep -q 'output truncated'"
        expect "the server's peak grew by less than $((bound >> 20)) MiB, streaming ($(($(hwm) - base)) bytes): $f" \
            bash -c "[ $(($(hwm) - base)) -lt $bound ]"
    done
}
in_sb run -- sh -c "(${floods[0]}) | wc -c; (${floods[1]}) | wc -c; (${floods[2]}) | wc -l"
expect "control: the floods produce 2 GiB, 1 GiB and 20 million lines" \
    bash -c "[ \"\$(tr '\n' ' ' < $OUT)\" = '2147483648 1073741824 20000000 ' ]"
both
