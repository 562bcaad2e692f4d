# kill -9 of the server during a file upload (sandbox.fs.write of 16 MiB
# over an existing 16 MiB file): the kill comes as soon as the upload is
# seen on disk (the target changing, or the upload's temporary file
# appearing; watched from the host through the sandbox init's root). On
# restart the file holds either all of the old content or all of the new,
# never a mix or a part.
. "$(dirname "$0")/lib.sh"

state="$TMP/ku-state"
size=$((16 << 20))
srv_start "$state" || FAILS+=("the server starts")
defer srv_stop "$SRV_PID"
sb_start ku
id=$(engine_id ku)
# body FILE CHAR: fs.write params with SIZE bytes of CHAR.
params() { python3 -c 'import base64, json, sys
print(json.dumps({"sandbox": "ku", "path": "/root/target", "content": base64.b64encode(sys.argv[1].encode() * int(sys.argv[2])).decode()}))' "$1" "$size" >"$2"; }
params A "$TMP/old.json"
params B "$TMP/new.json"
call sandbox.fs.write "@$TMP/old.json" >/dev/null
init=$(for p in $(sb_pids "$id"); do [ "$(tr -d '\0' </proc/$p/cmdline)" = sbx-init ] && echo $p; done | head -1)
expect "control: the old file is visible from the host" test "$(stat -c %s "/proc/$init/root/root/target" 2>/dev/null)" = $size

python3 - "$SRV_URL" "$SRV_PID" "/proc/$init/root/root" "$TMP/new.json" "$size" >"$OUT" 2>&1 <<'PY'
import os, signal, sys, threading, urllib.request
url, pid, root, body, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], open(sys.argv[4], "rb").read(), int(sys.argv[5])
def upload():
    req = urllib.request.Request(url + "/api/v1/rpc", b'{"jsonrpc": "2.0", "id": 1, "method": "sandbox.fs.write", "params": ' + body + b"}",
                                 {"Content-Type": "application/json"})
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=120).read()
        print("answered before the kill")
    except Exception:
        pass
t = threading.Thread(target=upload)
t.start()
hit = None
while t.is_alive() and hit is None:
    try:
        names = os.listdir(root)
        st = os.stat(root + "/target")
        with open(root + "/target", "rb") as f:
            first = f.read(1)
    except OSError:
        continue
    if any(".sbx-upload-" in n for n in names):
        hit = "temporary file being written"
    elif st.st_size != size or first != b"A":
        hit = "target being written in place"
if hit:
    os.kill(pid, signal.SIGKILL)
print("hit: %s" % hit, flush=True)
t.join()
PY
srv_gone
expect "the kill came while the upload was being written ($(tr '\n' ' ' <"$OUT"))" grep -q '^hit: [a-z]' "$OUT"
expect "the layer's loop device is freed" wait_for 30 no_loop "$state"
srv_start "$state" || FAILS+=("the server restarts")
defer srv_stop "$SRV_PID"
call sandbox.start '{"sandbox": "ku"}' >/dev/null
call sandbox.fs.read '{"sandbox": "ku", "path": "/root/target"}' >"$TMP/read.json"
verdict=$(python3 -c 'import base64, json, sys
d = base64.b64decode(json.load(open(sys.argv[1]))["content"])
n = int(sys.argv[2])
print("old" if d == b"A" * n else "new" if d == b"B" * n else "partial: %d bytes, %d A, %d B" % (len(d), d.count(b"A"), d.count(b"B")))' \
    "$TMP/read.json" "$size" 2>&1)
expect "after the restart the file is whole: all old or all new (it is: $verdict)" bash -c "[ '$verdict' = old ] || [ '$verdict' = new ]"
report server
