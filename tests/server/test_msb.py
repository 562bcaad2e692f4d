"""The server over real HTTP: the microsandbox v0.2 contract (envelope,
errors, auth, methods), restart and crash behaviour. Prints one
"ok - ..." / "not ok - ..." line per check."""
import base64, concurrent.futures, hashlib, hmac, json, os, shutil, signal, subprocess, sys, tempfile, time
import urllib.request, urllib.error

import common
from common import SBX, Server, check
UID_USER = 1000000000 + 1000


def http(url, body=None, headers=None, method=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rpc(srv, method, params=None, token=None, rid=1, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    code, text = http(srv.url + "/api/v1/rpc", {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}, h)
    try:
        return code, json.loads(text) if text else None
    except ValueError:
        return code, text


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(key, exp, ns=None, alg="HS256"):
    payload = {"exp": exp}
    if ns is not None:
        payload["namespace"] = ns
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    sig = b64(hmac.new(key.encode(), head.encode(), hashlib.sha256).digest())
    return "msb_" + head + "." + sig


def sandbox_procs():
    out = subprocess.run(["pgrep", "-u", "%d,%d" % (UID_USER - 1000, UID_USER)], capture_output=True, text=True)
    return out.stdout.split()


tmp = tempfile.mkdtemp(prefix="sbx-srv-test.")
os.chmod(tmp, 0o755)
state = os.path.join(tmp, "state")
try:
    # ---- envelope and routes (dev mode) ----------------------------------
    dev = Server(state, dev=True, env={"SBX_TEST_SERVER_SECRET": "canary-5f1d"}).start()
    code, text = http(dev.url + "/api/v1/health", method="GET")
    check("health answers 200 with the message", code == 200 and json.loads(text) == {"message": "Service is healthy"}, text)
    check("unknown path is 404 with an empty body", http(dev.url + "/nope", method="GET") == (404, ""))
    check("wrong method on a known path is 405", http(dev.url + "/api/v1/rpc", method="GET")[0] == 405)
    check("CORS preflight is answered", http(dev.url + "/api/v1/rpc", method="OPTIONS")[0] in (200, 204))
    code, _ = http(dev.url + "/api/v1/rpc", raw=b"{}", headers={"Content-Type": "text/plain"})
    check("non-JSON content type is 415", code == 415)
    code, _ = http(dev.url + "/api/v1/rpc", raw=b"{not json")
    check("malformed JSON is 400", code == 400)
    code, _ = http(dev.url + "/api/v1/rpc", raw=b'{"id":1}')
    check("JSON without jsonrpc/method is 422", code == 422)
    code, body = rpc(dev, "sandbox.list", rid="x")
    code, body = http(dev.url + "/api/v1/rpc", {"jsonrpc": "1.0", "method": "sandbox.list", "id": 7})
    body = json.loads(body)
    check("wrong jsonrpc version is 400 / -32600 with the id", code == 400 and body["error"]["code"] == -32600 and body["id"] == 7, body)
    code, body = rpc(dev, "sandbox.nope", rid="a")
    check("unknown method is 404 / -32601 naming it", code == 404 and body["error"] == {"code": -32601, "message": "Method not found: sandbox.nope"} and body["id"] == "a", body)
    code, text = http(dev.url + "/api/v1/rpc", {"jsonrpc": "2.0", "method": "sandbox.list"})
    check("a request without id gets a response without id", code == 200 and "id" not in json.loads(text), text)
    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "*", "sandbox": None})
    check("metrics with nothing configured is an empty list", code == 200 and body["result"] == {"sandboxes": []}, body)
    for bad, msg in [("", "Sandbox name cannot be empty"), ("a" * 64, "Sandbox name cannot exceed 63 characters"),
                     ("a.b", "Sandbox name can only contain alphanumeric characters, hyphens, or underscores"),
                     ("-ab", "Sandbox name must start with an alphanumeric character")]:
        code, body = rpc(dev, "sandbox.start", {"sandbox": bad, "config": {"image": "microsandbox/python"}})
        check("invalid name %r: 400 / 2001 '%s'" % (bad[:8], msg), code == 400 and body == {"error": msg, "code": 2001}, body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "x", "namespace": "*", "config": {"image": "microsandbox/python"}})
    check("wildcard namespace refused for start", code == 400 and "Wildcard namespace" in body["error"], body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "ghost"})
    check("start without config or stored config: 400 with the message", code == 400 and body["error"] ==
          "No configuration provided and no existing configuration found for sandbox 'ghost'", body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "p", "config": {"image": "microsandbox/python", "ports": ["8080:80"]}})
    check("unsupported config field is a clear 400", code == 400 and "ports" in body["error"], body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "p", "config": {"image": "microsandbox/python", "cpus": 1.5}})
    check("fractional cpus refused with the allowed range", code == 400 and "whole number" in body["error"], body)

    # ---- a sandbox's life ------------------------------------------------
    code, body = rpc(dev, "sandbox.start", {"sandbox": "py", "config": {"image": "microsandbox/python", "memory": 256,
                                                                        "envs": ["GREETING=hello"], "workdir": "/work"}})
    check("start returns the success string", code == 200 and body["result"] == "Sandbox py started successfully", body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "py", "config": {"image": "microsandbox/python"}})
    check("start of a running sandbox is a no-op success", code == 200 and body["result"] == "Sandbox py started successfully", body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sh",
                                                  "args": ["-c", "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three; printf tail; pwd; sleep 0.05; echo $GREETING >&2"]})
    r = body.get("result", {})
        # Order across the two streams is the order sbx sees them arrive (two
    # pipes: a burst written to both at once has no order to recover).
    check("command.run: output lines in arrival order, streams kept", code == 200 and r.get("output") == [
        {"stream": "stdout", "text": "one"}, {"stream": "stderr", "text": "two"}, {"stream": "stdout", "text": "three"},
        {"stream": "stdout", "text": "tail/work"}, {"stream": "stderr", "text": "hello"}] and r["exit_code"] == 0 and r["success"] is True, body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "echo", "args": ["$HOME", ";", "id"]})
    check("command.run has no shell", body["result"]["output"] == [{"stream": "stdout", "text": "$HOME ; id"}], body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "printf", "args": ["a\\377b\\n\\303"]})
    check("output that is not UTF-8 is shown with U+FFFD, not dropped", code == 200 and
          [o["text"] for o in body["result"]["output"]] == ["a\ufffdb", "\ufffd"], body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "exit 3"]})
    check("non-zero exit is a normal result with success false", code == 200 and body["result"]["exit_code"] == 3 and body["result"]["success"] is False, body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "no-such-tool"})
    check("unknown command: exit 127 and 'command not found'", code == 200 and body["result"]["exit_code"] == 127 and
          {"stream": "stderr", "text": "no-such-tool: command not found"} in body["result"]["output"], body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sleep", "args": ["30"], "timeout": 0.5})
    check("command timeout is 500 / 5002", code == 500 and body == {"error": "Internal server error", "code": 5002}, body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "pgrep sleep || echo none"]})
    check("the timed-out command was killed and the sandbox still works", code == 200 and body["result"]["output"][-1]["text"] == "none", body)
    # Huge timeouts are none: 1e300 s once became an integer by undefined
    # behaviour (UBSan float-cast-overflow), 1e16 s wrapped the µs deadline
    # around. A tiny positive one is still a timeout (it was none).
    for t in (1e300, 1e16):
        code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "echo", "args": ["t"], "timeout": t})
        check("command.run with timeout %g runs to its end" % t, code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "t"}], body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sleep", "args": ["30"], "timeout": 1e-9})
    check("command timeout of 1e-9 s is a timeout, not none", code == 500 and body == {"error": "Internal server error", "code": 5002}, body)
    code, body = rpc(dev, "sandbox.command.run", {"command": "true"})
    check("command.run without sandbox: 400 with the portal message", code == 400 and body["error"] == "Missing required 'sandbox' parameter for portal request", body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "nothere", "command": "true"})
    check("command.run in a sandbox that is not running: 500", code == 500, body)

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        slow = ex.submit(rpc, dev, "sandbox.command.run", {"sandbox": "py", "command": "sleep", "args": ["3"]})
        time.sleep(0.3)
        t0 = time.time()
        code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "python3", "args": ["-c", "print(1+1)"]})
        quick = time.time() - t0
        slow.result()
    check("a slow command does not delay a parallel one (%.2fs)" % quick, code == 200 and quick < 2.0 and body["result"]["output"][0]["text"] == "2", body)

    # ---- sandbox.repl.run ----
    def repl(lang, code_, timeout=None, sandbox="py"):
        p = {"sandbox": sandbox, "language": lang, "code": code_}
        if timeout is not None:
            p["timeout"] = timeout
        return rpc(dev, "sandbox.repl.run", p)

    code, body = repl("python", "x = 21")
    check("repl.run python: the result shape", code == 200 and body["result"] == {"status": "success", "language": "python", "output": []}, body)
    code, body = repl("python", "x * 2")
    check("repl.run python: state kept across calls, expressions echo", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "42"}], body)
    for t in (1e300, 1e16):  # as for command.run above
        code, body = repl("python", "x * 3", timeout=t)
        check("repl.run with timeout %g runs to its end" % t, code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "63"}], body)
    t0 = time.time()
    code, body = repl("python", "print((1", timeout=30)
    out = body["result"]["output"] if code == 200 else []
    check("repl.run: an unclosed bracket is a syntax error at once, not a hang", code == 200 and time.time() - t0 < 10 and
          all(o["stream"] == "stderr" for o in out) and out and out[-1]["text"].startswith("SyntaxError"), body)
    code, body = repl("python", "print('abc', end='')")
    check("repl.run: output without a trailing newline is returned", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "abc"}], body)
    code, body = repl("python", "1/0")
    out = body["result"]["output"] if code == 200 else []
    check("repl.run: an exception is stderr lines with the traceback", code == 200 and body["result"]["status"] == "success" and
          out[0] == {"stream": "stderr", "text": "Traceback (most recent call last):"} and
          out[-1] == {"stream": "stderr", "text": "ZeroDivisionError: division by zero"}, body)
    code, body = repl("python", "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')")
    check("repl.run: stdout and stderr keep their order", code == 200 and body["result"]["output"] == [
        {"stream": "stdout", "text": "a"}, {"stream": "stderr", "text": "b"}, {"stream": "stdout", "text": "c"}], body)
    code, body = repl("node", "let a = 5; var b = 2")
    code, body = repl("javascript", "a * b + 1")
    check("repl.run node: state kept, node/javascript share the interpreter", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "11"}]
          and body["result"]["language"] == "javascript", body)
    code, body = repl("nodejs", "console.log('x'); function (")
    check("repl.run node: syntax error at once as stderr", code == 200 and any("SyntaxError" in o["text"] for o in body["result"]["output"]), body)
    t0 = time.time()
    code, body = repl("python", "while True:\n    pass", timeout=1)
    check("repl.run timeout: 500 / 5002 after the timeout", code == 500 and body == {"error": "Internal server error", "code": 5002}
          and time.time() - t0 < 10, body)
    code, body = repl("python", "x")
    check("repl.run after an interrupt: state kept", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "21"}], body)
    code, body = repl("python", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)", timeout=1)
    check("repl.run timeout of code that ignores the interrupt: 500", code == 500, body)
    code, body = repl("python", "print(1+1)")
    check("repl.run after a forced restart works again", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "2"}], body)
    code, body = repl("python", "import os\nos._exit(1)")
    check("repl.run: an interpreter that exits gives a clear notice", code == 200 and any("interpreter exited" in o["text"] and o["stream"] == "stderr"
          for o in body["result"]["output"]), body)
    code, body = repl("ruby", "1")
    check("repl.run of an unsupported language: 500 / 5002", code == 500 and body["code"] == 5002, body)
    code, body = rpc(dev, "sandbox.repl.run", {"language": "python", "code": "1"})
    check("repl.run without sandbox: 400 with the portal message", code == 400 and body["error"] == "Missing required 'sandbox' parameter for portal request", body)
    code, body = repl("python", "1", sandbox="nothere")
    check("repl.run in a sandbox that is not running: 500", code == 500, body)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        slow = ex.submit(repl, "python", "import time\ntime.sleep(3)")
        time.sleep(0.3)
        t0 = time.time()
        code, body = repl("node", "1+1")
        quick = time.time() - t0
        slow.result()
    check("a slow python call does not delay a parallel node 1+1 (%.2fs)" % quick, code == 200 and quick < 2.0 and
          body["result"]["output"] == [{"stream": "stdout", "text": "2"}], body)

    # ---- session.* (the session layer over JSON-RPC) ----
    code, body = rpc(dev, "session.execute_code", {"code": "y = 6\nprint(y * 7)", "template": "python"})
    sid = body.get("result", {}).get("session_id") if isinstance(body, dict) else None
    check("session.execute_code: a new session runs the code", code == 200 and body["result"]["stdout"] == "42" and
          body["result"]["session_created"] is True and body["result"]["success"] is True, body)
    code, body = rpc(dev, "session.execute_code", {"code": "y", "session_id": sid})
    check("session.execute_code: reuse by id keeps state", code == 200 and body["result"]["stdout"] == "6" and body["result"]["session_created"] is False, body)
    code, body = rpc(dev, "session.execute_command", {"command": "sh", "args": ["-c", "echo hi"], "session_id": sid})
    check("session.execute_command", code == 200 and body["result"]["stdout"] == "hi" and body["result"]["exit_code"] == 0, body)
    code, body = rpc(dev, "session.list", {"session_id": sid})
    check("session.list shows it ready", code == 200 and len(body["result"]) == 1 and body["result"][0]["status"] == "ready", body)
    code, body = rpc(dev, "sandbox.list", {})
    check("its sandbox is listed with origin session", code == 200 and any(s["origin"] == "session" and s["name"] == "session-" + sid[:8]
          for s in body["result"]["sandboxes"]), body)
    code, body = rpc(dev, "session.execute_code", {"code": "1", "template": "ruby"})
    check("session errors carry error_code", code == 400 and body["error_code"] == "INVALID_PARAMETERS" and "Unsupported template: ruby" in body["error"], body)
    code, body = rpc(dev, "session.stats", {})
    check("session.stats", code == 200 and body["result"]["active_sessions"] == 1 and body["result"]["max_sessions"] == 10, body)
    code, body = rpc(dev, "session.stop", {"session_id": sid})
    code2, body2 = rpc(dev, "session.stop", {"session_id": sid})
    check("session.stop: true, then false", code == 200 and body["result"] is True and body2["result"] is False, (body, body2))

    # ---- sandbox.fs.write / sandbox.fs.read ----
    enc = lambda b: base64.b64encode(b).decode()
    code, body = rpc(dev, "sandbox.fs.write", {"sandbox": "py", "path": "/sandbox/in/a.csv", "content": enc(b"x,y\n1,2\n")})
    check("fs.write: path and size, parents made", code == 200 and body["result"] == {"path": "/sandbox/in/a.csv", "size": 8}, body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "cat /sandbox/in/a.csv; stat -c %a /sandbox/in/a.csv"]})
    check("the sandbox sees the written file with mode 644", code == 200 and [o["text"] for o in body["result"]["output"]] == ["x,y", "1,2", "644"], body)
    code, body = rpc(dev, "sandbox.fs.read", {"sandbox": "py", "path": "/sandbox/in/a.csv"})
    check("fs.read returns the content", code == 200 and body["result"] == {"path": "/sandbox/in/a.csv", "content": enc(b"x,y\n1,2\n"), "size": 8, "truncated": False}, body)
    code, body = rpc(dev, "sandbox.fs.read", {"sandbox": "py", "path": "/sandbox/in/a.csv", "max_bytes": 3})
    check("fs.read with max_bytes: truncated", code == 200 and body["result"]["content"] == enc(b"x,y") and body["result"]["truncated"] is True and body["result"]["size"] == 8, body)
    blob = os.urandom(300000)
    code, body = rpc(dev, "sandbox.fs.write", {"sandbox": "py", "path": "/tmp/bin", "content": enc(blob), "mode": 0o755})
    code2, body2 = rpc(dev, "sandbox.fs.read", {"sandbox": "py", "path": "/tmp/bin"})
    check("binary content round-trips", code == 200 and code2 == 200 and base64.b64decode(body2["result"]["content"]) == blob, body2 if code2 != 200 else "")
    code, body = rpc(dev, "sandbox.fs.write", {"sandbox": "py", "path": "rel/a", "content": ""})
    check("fs.write of a relative path: 400 / 2001", code == 400 and body["code"] == 2001 and "absolute" in body["error"], body)
    code, body = rpc(dev, "sandbox.fs.write", {"sandbox": "py", "path": "/a", "content": "not base64!"})
    check("fs.write of bad base64: 400 / 2001", code == 400 and body["code"] == 2001 and "base64" in body["error"], body)
    code, body = rpc(dev, "sandbox.fs.read", {"sandbox": "py", "path": "/nope/x"})
    check("fs.read of a missing file: 404 / 4001", code == 404 and body == {"error": "File not found: /nope/x", "code": 4001}, body)
    code, body = rpc(dev, "sandbox.fs.read", {"sandbox": "py", "path": "/../../../etc/shadow"})
    check("fs paths are confined to the sandbox (no host /etc/shadow)", code == 404, body)
    code, body = rpc(dev, "sandbox.fs.write", {"sandbox": "nothere", "path": "/a", "content": ""})
    check("fs.write in a sandbox that is not running: 400 / 2001", code == 400 and body == {"error": "Sandbox 'nothere' is not running", "code": 2001}, body)

    # ---- streaming ----
    def stream_call(method, params):
        req = urllib.request.Request(dev.url + "/api/v1/rpc", data=json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 9}).encode(),
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        lines, times = [], []
        try:
            with opener.open(req, timeout=60) as r:
                ctype = r.headers.get("Content-Type")
                for raw in r:
                    lines.append(json.loads(raw))
                    times.append(time.time())
                return r.status, ctype, lines, times
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), [json.loads(e.read())], []

    st, ctype, lines, times = stream_call("sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "echo first; sleep 1; echo second >&2"], "stream": True})
    check("stream: NDJSON with one notification per line, then the response", st == 200 and ctype == "application/x-ndjson" and len(lines) == 3 and
          lines[0] == {"jsonrpc": "2.0", "method": "sandbox.output", "params": {"id": 9, "stream": "stdout", "text": "first"}} and
          lines[1]["params"]["stream"] == "stderr" and lines[2]["id"] == 9 and lines[2]["result"]["output"] == [
              {"stream": "stdout", "text": "first"}, {"stream": "stderr", "text": "second"}], lines)
    check("stream: output arrives while the command runs", len(times) == 3 and times[1] - times[0] > 0.5, times)
    st, ctype, lines, _ = stream_call("sandbox.repl.run", {"sandbox": "py", "language": "python", "code": "print(1)\nprint(2)", "stream": True})
    check("stream: repl.run streams too", st == 200 and [l.get("params", {}).get("text") for l in lines[:2]] == ["1", "2"] and
          lines[-1]["result"]["output"] == [{"stream": "stdout", "text": "1"}, {"stream": "stdout", "text": "2"}], lines)
    st, ctype, lines, _ = stream_call("sandbox.command.run", {"command": "true", "stream": True})
    check("stream: a bad request still gets its plain error", st == 400 and lines[0]["error"] == "Missing required 'sandbox' parameter for portal request", lines)
    st, ctype, lines, _ = stream_call("sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "echo before; sleep 30"], "timeout": 1, "stream": True})
    check("stream: a failure after streaming began ends with a -32603 error line", st == 200 and lines[0]["params"]["text"] == "before" and
          lines[-1]["error"]["code"] == -32603 and lines[-1]["id"] == 9, lines)

    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "*", "sandbox": None})
    ent = body["result"]["sandboxes"]
    py = [e for e in ent if e["name"] == "py"]
    check("metrics lists every sandbox with namespace and numbers", code == 200 and len(py) == 1 and py[0]["namespace"] == "default"
          and py[0]["running"] is True and isinstance(py[0]["cpu_usage"], (int, float)) and isinstance(py[0]["memory_usage"], int)
          and py[0]["disk_usage"] > 0, body)
    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "elsewhere"})
    check("metrics of an unknown namespace: 400", code == 400 and body["error"] == "Namespace directory 'elsewhere' does not exist", body)

    rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "sh", "args": ["-c", "echo kept > /root/note"]})
    code, body = rpc(dev, "sandbox.stop", {"sandbox": "py"})
    check("stop returns the success string", code == 200 and body["result"] == "Sandbox py stopped successfully", body)
    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "default", "sandbox": "py"})
    check("a stopped sandbox is listed with nulls", body["result"]["sandboxes"] == [{"namespace": "default", "name": "py", "running": False,
                                                                                 "cpu_usage": None, "memory_usage": None, "disk_usage": None}], body)
    code, body = rpc(dev, "sandbox.stop", {"sandbox": "py", "namespace": "nons"})
    check("stop in a namespace never created: 400", code == 400 and body["error"] == "Namespace directory 'nons' does not exist", body)

    # ---- a sandbox whose init dies by itself (OOM killer, say) ----------
    rpc(dev, "sandbox.start", {"sandbox": "dies", "config": {"image": "microsandbox/python", "memory": 128}})
    eid = [l.split("engine id ")[1].rstrip(")\n") for l in open(state + ".log") if "default/dies started" in l][-1]
    init = None
    for cg in ("/sys/fs/cgroup/pids/sbx/%s" % eid, "/sys/fs/cgroup/sbx/%s" % eid):
        if os.path.exists(cg + "/cgroup.procs"):
            for pid in open(cg + "/cgroup.procs").read().split():
                if open("/proc/%s/comm" % pid).read().strip() == "sbx-init":
                    init = int(pid)
    check("the sandbox's init is found on the host", init is not None, eid)
    # init is the small `sbx` beside the server, re-executed as host root
    # right after the clone, not a copy of the server: the OOM killer
    # counts a copy's whole resident memory (it killed init, and with it
    # the sandbox, before the process that ate the memory), and a copy
    # holds the server's secrets.
    sbx_bin = os.path.realpath(os.path.join(os.path.dirname(SBX), "sbx"))
    check("a server sandbox's init runs the sbx binary, not a copy of the server",
          os.readlink("/proc/%d/exe" % init) == sbx_bin, os.readlink("/proc/%d/exe" % init))
    environ = open("/proc/%d/environ" % init, "rb").read()
    check("its environment holds nothing of the server's", b"canary-5f1d" not in environ and b"PATH=" not in environ, environ[:200])
    rss = lambda pid: int([l.split()[1] for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS:")][0])
    check("its resident memory is a small part of the server's (%d KiB, server %d KiB)" % (rss(init), rss(dev.p.pid)),
          rss(init) * 4 < rss(dev.p.pid))
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "dies", "command": "sh", "args": ["-c", "readlink /proc/1/exe || echo denied; cat /proc/1/environ || echo denied"]})
    check("inside, init's binary and environment are out of reach", code == 200 and
          [o["text"] for o in body["result"]["output"] if o["stream"] == "stdout"] == ["denied", "denied"], body)
    os.kill(init, signal.SIGKILL)
    time.sleep(0.2)
    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "default", "sandbox": "dies"})
    check("a sandbox whose init died is listed as not running", code == 200 and body["result"]["sandboxes"][0]["running"] is False, body)
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "dies", "command": "true"})
    check("... and a command in it fails with 500 (the contract's not-running answer)", code == 500, body)
    common.wait_for(lambda: "sandbox default/dies died: its init was killed by signal 9" in open(state + ".log").read(), 5)
    check("the server logs why it stopped", "default/dies died: its init was killed by signal 9" in open(state + ".log").read())
    common.wait_for(lambda: not any(os.path.exists(p % eid) for p in ("/sys/fs/cgroup/pids/sbx/%s", "/sys/fs/cgroup/sbx/%s")), 5)
    check("its cgroups are gone", not any(os.path.exists(p % eid) for p in ("/sys/fs/cgroup/pids/sbx/%s", "/sys/fs/cgroup/memory/sbx/%s", "/sys/fs/cgroup/sbx/%s")))
    code, body = rpc(dev, "sandbox.start", {"sandbox": "dies"})
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "dies", "command": "echo", "args": ["back"]})
    check("a start brings it back", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "back"}], body)
    rpc(dev, "sandbox.delete", {"sandbox": "dies"})

    # ---- restart: state survives -----------------------------------------
    rpc(dev, "sandbox.start", {"sandbox": "py"})
    # A call that never ends must not hold up SIGTERM: it gets a grace,
    # then its sandbox is stopped.
    hung = concurrent.futures.ThreadPoolExecutor(1)
    hung_call = hung.submit(rpc, dev, "sandbox.repl.run", {"sandbox": "py", "language": "python", "code": "while True:\n    pass"})
    time.sleep(0.5)
    t0 = time.time()
    check("graceful stop exits 0", dev.stop() == 0)
    check("a runaway call does not hold up the stop (%.1fs)" % (time.time() - t0), time.time() - t0 < 20)
    try:
        hung_call.result(timeout=10)
    except Exception:
        pass
    hung.shutdown(wait=False)
    check("no sandbox process survives a graceful stop", sandbox_procs() == [], sandbox_procs())
    dev = Server(state, dev=True, env={"SBX_TEST_SERVER_SECRET": "canary-5f1d"}).start()
    code, body = rpc(dev, "sandbox.list", {"namespace": "*"})
    check("after restart the sandbox is listed, stopped", code == 200 and body["result"]["sandboxes"][0]["name"] == "py" and
          body["result"]["sandboxes"][0]["running"] is False, body)
    code, body = rpc(dev, "sandbox.start", {"sandbox": "py"})
    code, body = rpc(dev, "sandbox.command.run", {"sandbox": "py", "command": "cat", "args": ["/root/note"]})
    check("start without config resumes it with its files", code == 200 and body["result"]["output"] == [{"stream": "stdout", "text": "kept"}], body)

    # ---- kill -9: nothing survives, nothing is lost -----------------------
    dev.stop(signal.SIGKILL)
    for _ in range(50):
        if not sandbox_procs():
            break
        time.sleep(0.05)
    check("kill -9 of the server leaves no sandbox process", sandbox_procs() == [], sandbox_procs())
    dev = Server(state, dev=True, env={"SBX_TEST_SERVER_SECRET": "canary-5f1d"}).start()
    code, body = rpc(dev, "sandbox.list", {"namespace": "*"})
    check("after kill -9 the registry still has the sandbox", code == 200 and [s["name"] for s in body["result"]["sandboxes"]] == ["py"], body)
    code, body = rpc(dev, "sandbox.delete", {"sandbox": "py"})
    check("delete returns the success string", code == 200 and body["result"] == "Sandbox py deleted successfully", body)
    check("delete removes the writable layer", not os.path.exists(os.path.join(state, "layers", "default", "py")))
    code, body = rpc(dev, "sandbox.delete", {"sandbox": "py"})
    check("delete of an unknown sandbox: 404 / 4001", code == 404 and body == {"error": "Sandbox 'py' not found", "code": 4001}, body)
    dev.stop()

    # ---- auth ---------------------------------------------------------------
    srv = Server(state).start()
    key = open(os.path.join(state, "server.key")).read().strip()
    out = subprocess.run([SBX, "server", "keygen", "--state-dir", state, "--expire", "1h", "--namespace", "team"],
                         capture_output=True, text=True).stdout.splitlines()
    check("keygen prints Token and Token expires", len(out) == 2 and out[0].startswith("Token: msb_") and out[1].startswith("Token expires: "), out)
    team = out[0].split(" ", 1)[1]
    now = int(time.time())
    code, body = rpc(srv, "sandbox.list")
    check("no Authorization: 401 / 1001", code == 401 and body == {"error": "Invalid credentials", "code": 1001}, body)
    code, body = rpc(srv, "sandbox.list", headers={"Authorization": "Bearer " + team[4:]})
    check("a key without msb_: 401 / 1001", code == 401 and body["code"] == 1001, body)
    code, body = rpc(srv, "sandbox.list", token=token("x" * 32, now + 3600))
    check("a key signed with another secret: 401 / 1004", code == 401 and body == {"error": "Invalid or expired token", "code": 1004}, body)
    code, body = rpc(srv, "sandbox.list", token=token(key, now - 120))
    check("an expired key: 401 / 1004", code == 401 and body["code"] == 1004, body)
    code, body = rpc(srv, "sandbox.list", token=token(key, now - 30))
    check("a key within the 60 s leeway is accepted", code == 200, body)
    code, body = rpc(srv, "sandbox.list", headers={"Proxy-Authorization": token(key, now + 60)})
    check("Proxy-Authorization with a raw key is accepted", code == 200, body)
    code, body = rpc(srv, "sandbox.list", {"namespace": "team"}, token=team)
    check("a namespace key works in its namespace", code == 200, body)
    code, body = rpc(srv, "sandbox.list", {"namespace": "other"}, token=team)
    check("a namespace key elsewhere: 403 / 3001", code == 403 and body == {"error": "Access denied", "code": 3001}, body)
    code, body = rpc(srv, "sandbox.list", {}, token=team)
    check("a namespace key without namespace: 400 / 2001", code == 400 and body["error"] ==
          "Missing or invalid 'namespace' in params for method 'sandbox.list'", body)
    code, _ = http(srv.url + "/api/v1/health", method="GET")
    check("health needs no auth", code == 200)
    check("graceful stop exits 0 (auth server)", srv.stop() == 0)
finally:
    for s in ("dev", "srv"):
        p = globals().get(s)
        if p and getattr(p, "p", None) and p.p.poll() is None:
            p.p.kill()
            p.p.wait()
    log = state + ".log"
    if common.failed and os.path.exists(log):
        print("# server log tail:")
        for line in open(log).read().splitlines()[-15:]:
            print("#   " + line)
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if common.failed else 0)
