# A client that disconnects in the middle of a call, streamed
# ("stream": true) or not, stops the work it asked for: sandbox.command.run's
# command (a shell and its sleep) is killed, sandbox.repl.run's code (a
# subprocess.run of a sleep) is interrupted; nothing of either stays in
# the sandbox, and the server, the sandbox and the interpreter go on.
# Control: while the client stays connected, the work does run (seen from
# a second call).
. "$(dirname "$0")/lib.sh"

sb_start sec-disc
# client command|repl: starts the streamed call, reads its first output
# line, counts the work's processes from a second call, closes the
# connection, and counts again until they are gone (at most 30 s).
client() {
    python3 - "$SRV_URL" "sleep 6$$" "$1" <<'PY'
import json, socket, sys, time, urllib.parse, urllib.request
url, marker = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(url)
def count():
    body = {"jsonrpc": "2.0", "id": 2, "method": "sandbox.command.run", "params": {
        "sandbox": "sec-disc", "command": "sh", "args": ["-c", "ps -eo args | grep -c '^%s$'" % marker]}}
    req = urllib.request.Request(url + "/api/v1/rpc", json.dumps(body).encode(), {"Content-Type": "application/json"})
    r = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60).read())
    return int(r["result"]["output"][0]["text"])
def call(method, params):
    body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
    req = urllib.request.Request(url + "/api/v1/rpc", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60).read())
which, streamed = sys.argv[3].split("-")[0], not sys.argv[3].endswith("-plain")
if which == "command":
    params = {"sandbox": "sec-disc", "command": "sh", "args": ["-c", "echo started; %s; echo finished" % marker]}
else:
    params = {"sandbox": "sec-disc", "language": "python", "code":
              "import subprocess\nprint('started', flush=True)\nsubprocess.run(%r.split())\nprint('finished')" % marker}
if streamed:
    params["stream"] = True
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sandbox.%s.run" % ("command" if which == "command" else "repl"),
                   "params": params})
s = socket.create_connection((u.hostname, u.port))
s.sendall(("POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode())
buf = b""
if streamed:
    while b"started" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
else:  # no output before the end: started once its process is seen
    for _ in range(100):
        if count() == 1:
            buf = b"started"
            break
        time.sleep(0.1)
print("started" if b"started" in buf else "no output", flush=True)
print("while connected: %d" % count(), flush=True)
s.close()
n = count()
for _ in range(300):
    if n == 0:
        break
    time.sleep(0.1)
    n = count()
print("after the disconnect: %d" % n, flush=True)
if which == "repl":
    r = call("sandbox.repl.run", {"sandbox": "sec-disc", "language": "python", "code": "print('interpreter' + ' alive')", "timeout": 30})
    print([o["text"] for o in r["result"]["output"]][-1])
PY
}
for which in command repl command-plain repl-plain; do
    client "$which" >"$OUT" 2>&1
    expect "[$which] the call started" grep -qx started "$OUT"
    expect "[$which] control: its work runs while its client is connected" grep -qx 'while connected: 1' "$OUT"
    expect "[$which] its work is gone once the client has gone" grep -qx 'after the disconnect: 0' "$OUT"
done
expect "[repl] the interpreter is still there, and free" grep -qx 'interpreter alive' "$OUT"
in_sb server --sb sec-disc -- echo still-usable
expect "the sandbox still runs commands" out_has still-usable
report server
