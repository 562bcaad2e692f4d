# The server's state dir on a small tmpfs (32 MiB), filled up while a
# sandbox runs. Requests that must write fail with a clear error
# (sandbox.start: "no space left on the server's disk"; sandbox.fs.write:
# "No space left"), reads still answer, the server stays up, the registry
# passes SQLite's integrity check, and once space is freed everything
# works again without a restart. Control: the same requests succeed before
# the disk is filled.
. "$(dirname "$0")/lib.sh"

st="$TMP/full-state"
mkdir -p "$st"
mount -t tmpfs -o size=32m sbx-sec-full "$st"
defer "umount -l $st"
srv_start "$st/state" || FAILS+=("the server starts")
defer srv_stop "$SRV_PID"
integrity() {
    python3 -c 'import sqlite3, sys
print(sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True).execute("PRAGMA integrity_check").fetchone()[0])' \
        "$st/state/registry.db"
}
write4m() { # SANDBOX PATH: sandbox.fs.write of 4 MiB
    python3 -c 'import base64, json, sys
print(json.dumps({"sandbox": sys.argv[1], "path": sys.argv[2], "content": base64.b64encode(b"z" * (4 << 20)).decode()}))' \
        "$1" "$2" >"$TMP/w.json"
    call sandbox.fs.write "@$TMP/w.json"
}

call sandbox.start '{"sandbox": "full-a", "config": {"image": "microsandbox/python"}}' >"$TMP/s.json"
expect "control: a sandbox starts on the empty state dir" grep -q 'started successfully' "$TMP/s.json"
write4m full-a /root/before >"$TMP/w.out"
expect "control: sandbox.fs.write works before the disk is full" grep -q '"size"' "$TMP/w.out"
dd if=/dev/zero of="$st/filler" bs=64k status=none 2>/dev/null
expect "control: the state dir is full" bash -c "[ \$(df --output=avail $st | tail -1) -lt 64 ]"

call sandbox.start '{"sandbox": "full-b", "config": {"image": "microsandbox/python"}}' >"$TMP/s.json"
expect "sandbox.start fails, saying the disk is full ($(head -c 200 "$TMP/s.json"))" \
    grep -q "no space left on the server's disk" "$TMP/s.json"
write4m full-a /root/during >"$TMP/w.out"
expect "sandbox.fs.write fails, saying there is no space ($(head -c 200 "$TMP/w.out"))" grep -q 'No space left' "$TMP/w.out"
in_sb server --sb full-a -- sh -c 'dd if=/dev/zero of=/root/x bs=1M count=4 conv=fsync 2>&1 | head -1'
expect "a write inside the sandbox fails (no space)" out_has 'No space left'
call sandbox.metrics.get '{"namespace": "*"}' >"$TMP/m.json"
expect "reads still answer (metrics lists the running sandbox)" grep -q '"name": "full-a"' "$TMP/m.json"
expect "the server still answers" python3 "$SEC/sbxc.py" "$SRV_URL" health
expect "the registry passes the integrity check while the disk is full" test "$(integrity)" = ok

rm -f "$st/filler"
write4m full-a /root/after >"$TMP/w.out"
expect "once space is freed, sandbox.fs.write works again" grep -q '"size"' "$TMP/w.out"
call sandbox.start '{"sandbox": "full-b", "config": {"image": "microsandbox/python"}}' >"$TMP/s.json"
expect "... and sandbox.start" grep -q 'started successfully' "$TMP/s.json"
call sandbox.metrics.get '{"namespace": "*"}' >"$TMP/m.json"
expect "the registry lists both sandboxes" bash -c "grep -q '\"name\": \"full-a\"' $TMP/m.json && grep -q '\"name\": \"full-b\"' $TMP/m.json"
expect "the registry passes the integrity check" test "$(integrity)" = ok
call sandbox.delete '{"sandbox": "full-a"}' >/dev/null
call sandbox.delete '{"sandbox": "full-b"}' >/dev/null
report server
