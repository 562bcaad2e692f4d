# kill -9 of the server during sandbox.start, at two points: while the new
# layer image is being made (mkfs) and while the sandbox itself is being
# created (its lock exists, no answer yet). On restart on the same state
# dir: the registry lists the sandbox; no process, cgroup, lock, mount or
# loop device is left; no half-made image is taken for a layer (nor left
# behind once the sandbox is started again); and the sandbox starts and
# runs commands.
. "$(dirname "$0")/lib.sh"

state="$TMP/ks-state"
# engine_id_of NAME: the id the server derives (server.c engine_id).
engine_id_of() {
    python3 -c 'import sys
h = 1469598103934665603
for c in (sys.argv[1] + "/default/" + sys.argv[2]).encode():
    h = ((h ^ c) * 1099511628211) & (2**64 - 1)
print("msb-%016x" % h)' "$state" "$1"
}
# start_and_kill NAME WHAT: sandbox.start NAME, and SIGKILL to the server
# once WHAT is seen: "mkfs" (a temporary image in the layer dir) or
# "create" (the sandbox's lock). Prints which point was hit.
start_and_kill() {
    python3 - "$SRV_URL" "$SRV_PID" "$1" "$2" "$state/layers/default/$1" "/run/sbx/sandboxes/$3" <<'PY'
import json, os, signal, sys, threading, urllib.request
url, pid, name, what, layer, lock = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def start():
    body = {"jsonrpc": "2.0", "id": 1, "method": "sandbox.start",
            "params": {"sandbox": name, "config": {"image": "microsandbox/python"}}}
    req = urllib.request.Request(url + "/api/v1/rpc", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60).read()
        print("answered before the kill")
    except Exception:
        pass
t = threading.Thread(target=start)
t.start()
hit = None
while t.is_alive() and hit is None:
    try:
        names = os.listdir(layer)
    except OSError:
        names = []
    if what == "mkfs" and any(n.startswith("layer.img.") for n in names):
        hit = "mkfs"
    elif what == "create" and os.path.exists(lock):
        hit = "create"
if hit:
    os.kill(pid, signal.SIGKILL)
print("hit %s" % (hit or "nothing"), flush=True)
t.join()
PY
}

srv_start "$state" || FAILS+=("the server starts")
defer srv_stop "$SRV_PID"
for point in mkfs create; do
    name="ks-$point"
    id=$(engine_id_of "$name")
    start_and_kill "$name" "$point" "$id" >"$OUT" 2>&1
    srv_gone
    expect "the kill came $( [ $point = mkfs ] && echo 'while the layer image was being made' || echo 'while the sandbox was being created') ($(tr '\n' ' ' <"$OUT"))" \
        grep -qx "hit $point" "$OUT"
    expect "[$point] no sandbox process is left" wait_for 30 bash -c "! cat /sys/fs/cgroup/pids/sbx/$id/cgroup.procs 2>/dev/null | grep -q ."
    expect "[$point] the layer's loop device is freed" wait_for 30 no_loop "$state"
    expect "[$point] no mount of the state dir is left" no_mount "$state"
    srv_start "$state" || FAILS+=("[$point] the server restarts on the same state dir")
    defer srv_stop "$SRV_PID"
    call sandbox.metrics.get '{"namespace": "*"}' >"$TMP/m.json"
    expect "[$point] the registry lists the sandbox" bash -c "grep -q '\"name\": \"$name\"' $TMP/m.json"
    expect "[$point] the restart swept its cgroups" cg_gone "$id"
    expect "[$point] the restart swept its lock" no_lock "$id"
    expect "[$point] a layer image, if any, is a whole ext4 file system" \
        bash -c "[ ! -e $state/layers/default/$name/layer.img ] || e2fsck -fn $state/layers/default/$name/layer.img"
    call sandbox.start "{\"sandbox\": \"$name\"}" >"$TMP/s.json"
    in_sb server --sb "$name" -- echo works
    expect "[$point] the sandbox starts and runs commands" out_has '^works$'
    call sandbox.stop "{\"sandbox\": \"$name\"}" >/dev/null
done
expect "no temporary image is left in the layer dirs ($(ls "$state"/layers/default/*/ | tr '\n' ' '))" \
    bash -c "! ls $state/layers/default/*/layer.img.* 2>/dev/null | grep -q ."
report server
