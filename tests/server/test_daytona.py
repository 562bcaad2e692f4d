"""The Daytona front door over raw HTTP (Python stdlib): the error shapes
and edge cases an SDK run does not reach (shared/protocols/daytona.md):
auth, unknown sandboxes, bad resources and bodies, bad multipart, paths
and links that try to leave the sandbox, list filters and pagination,
lifecycle (stop/start, ephemeral, a server restart, deletion through the
microsandbox API), and the Socket.IO handshake. Starts its own servers
(dev and keyed). Prints one "ok - ..." / "not ok - ..." line per check."""
import base64, hashlib, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, uuid
import urllib.parse, urllib.request, urllib.error

import common
from common import SBX, Server, check

AUTH = {"Authorization": "Bearer test"}


def http(url, body=None, headers=None, method=None, raw=None):
    """(status, headers, bytes)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers if headers is not None else AUTH)
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def jbody(b):
    try:
        return json.loads(b)
    except ValueError:
        return b


def api(srv, path, body=None, method=None, headers=None):
    code, _, b = http(srv.url + "/api" + path, body, headers, method)
    return code, jbody(b)


def err_ok(code, body, status, text=None):
    """A Daytona error body with that status (and text in the message)."""
    return (code == status and isinstance(body, dict) and body.get("statusCode") == status and
            isinstance(body.get("message"), str) and (text is None or text in body["message"]))


def create(srv, body=None, headers=None):
    return api(srv, "/sandbox", body if body is not None else {}, headers=headers)


def tb(srv, sid, path, body=None, method=None, raw=None, headers=None):
    h = dict(AUTH)
    h.update(headers or {})
    code, hd, b = http(srv.url + "/toolbox/" + sid + path, body, h, method, raw)
    return code, hd, b


def run(srv, sid, cmd):
    code, _, b = tb(srv, sid, "/process/execute", {"command": cmd})
    j = jbody(b)
    return j.get("result") if code == 200 and isinstance(j, dict) else None


def multipart(fields, boundary="XyZbOuNdArY"):
    """fields: [(name, filename or None, bytes)] -> (content type, body)."""
    out = b""
    for name, fn, data in fields:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fn if fn else "")
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + data + b"\r\n"
    return "multipart/form-data; boundary=" + boundary, out + b"--" + boundary.encode() + b"--\r\n"


def parts_of(ct, body):
    """A multipart response -> [(name, filename, bytes)], via the stdlib's email parser."""
    import email.parser, email.policy
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ct.encode() + b"\r\n\r\n" + body)
    return [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
            for p in msg.iter_parts()]


def rpc(srv, method, params):
    code, _, b = http(srv.url + "/api/v1/rpc", {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}, {})
    return code, jbody(b)


def wait_for(cond, tries=100):
    """Polls cond every 0.1 s (up to tries times): for state the server
    changes in the background."""
    for _ in range(tries):
        if cond():
            return True
        time.sleep(0.1)
    return cond()


# ---- a minimal WebSocket client -----------------------------------------------------

def ws_open(srv, path, extra=""):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, srv.port, key, extra)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    return s, head.decode(errors="replace"), want


def ws_send(s, text, op=1):
    data = text.encode() if isinstance(text, str) else text
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def ws_recv(s):
    """(opcode, payload) of the next frame; (None, b"") at EOF."""
    def exact(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                return None
            b += c
        return b
    h = exact(2)
    if not h:
        return None, b""
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    return h[0] & 0x0F, exact(n) or b""


tmp = tempfile.mkdtemp(prefix="sbx-daytona-test.")
os.chmod(tmp, 0o755)
dev = keyed = None
host_secret = "/tmp/sbx-daytona-host-secret-" + uuid.uuid4().hex
escape_name = "sbx-daytona-escape-" + uuid.uuid4().hex
try:
    dev = Server(os.path.join(tmp, "dev"), True).start()

    # ---- unknown sandboxes, routes ---------------------------------------------------
    code, body = api(dev, "/sandbox/nosuchsandbox")
    check("GET of an unknown sandbox: 404 {statusCode,message}", err_ok(code, body, 404, "nosuchsandbox"), body)
    code, body = api(dev, "/sandbox/nosuchsandbox", method="DELETE")
    check("DELETE of an unknown sandbox: 404", err_ok(code, body, 404), body)
    code, body = api(dev, "/sandbox/nosuchsandbox/start", {})
    check("start of an unknown sandbox: 404", err_ok(code, body, 404), body)
    code, _, b = tb(dev, "nosuchsandbox", "/process/execute", {"command": "true"})
    check("toolbox of an unknown sandbox: 404", err_ok(code, jbody(b), 404, "nosuchsandbox"), b)
    code, body = api(dev, "/sandbox", method="PATCH")
    check("a wrong method on /api/sandbox: 405", err_ok(code, body, 405), body)

    # ---- bad create bodies -------------------------------------------------------------
    bad = [
        ({"cpu": 0.5}, "cpu must be a whole number of CPU cores from 1 to 1024 (got 0.5)"),
        ({"cpu": 0}, "cpu must be a whole number"),
        ({"cpu": 5000}, "from 1 to 1024"),
        ({"memory": -1}, "memory must be a whole number of GiB from 1 to"),
        ({"memory": "lots"}, "memory must be a whole number of GiB"),
        ({"memory": 1.5}, "(got 1.5)"),
        ({"disk": 0}, "disk must be a whole number of GiB"),
        ({"gpu": 1}, "GPUs are not supported"),
        ({"volumes": [{"volumeId": "v", "mountPath": "/v"}]}, "volumes are not supported"),
        ({"env": {"A=B": "x"}}, "not a valid variable name"),
        ({"env": {"A": 1}}, "env.A must be a string"),
        ({"labels": ["x"]}, "labels must be an object of strings"),
        ({"name": "no spaces please"}, "name 'no spaces please' is invalid"),
        ({"user": "Bad User"}, "user 'Bad User' is invalid"),
        ({"autoStopInterval": -5}, "autoStopInterval must be a whole number of minutes"),
        ({"buildInfo": {"dockerfileContent": "FROM python:3.12\nRUN pip install x\n"}}, "single FROM line"),
        ({"snapshot": "registry.example.com/team/img:1"}, "is not available"),
        ({"snapshot": "no-such-sbx-image"}, "is not available"),
    ]
    for body_in, text in bad:
        code, body = create(dev, body_in)
        check("create %s: 400 naming what is wrong" % json.dumps(body_in)[:60], err_ok(code, body, 400, text), body)
    code, _, b = http(dev.url + "/api/sandbox", raw=b"{not json", headers=AUTH)
    check("create with a body that is not JSON: 400", err_ok(code, jbody(b), 400, "invalid request body"), b)
    code, body = rpc(dev, "sandbox.list", {"namespace": "daytona"})
    check("refused creates leave no sandbox behind", code == 200 and body["result"]["sandboxes"] == [], body)

    # ---- a sandbox --------------------------------------------------------------------
    code, info = create(dev, {"labels": {"t": "1"}, "env": {"FOO": "bar"}, "autoStopInterval": 0, "memory": 2})
    check("create: 200, started, with a toolboxProxyUrl", code == 200 and info.get("state") == "started" and
          info.get("toolboxProxyUrl") == dev.url + "/toolbox", info)
    sid = info["id"]
    code, body = rpc(dev, "sandbox.metrics.get", {"namespace": "daytona"})
    check("the microsandbox API sees it (sandbox.metrics.get, namespace daytona)", code == 200 and any(
        s["name"] == sid and s["running"] for s in body["result"]["sandboxes"]), body)
    code, body = rpc(dev, "sandbox.list", {"namespace": "daytona"})
    check("... with origin daytona and 2048 MiB", any(s["name"] == sid and s["origin"] == "daytona" and
                                                      s["memory"] == 2048 for s in body["result"]["sandboxes"]), body)
    code, body = api(dev, "/sandbox/%s/toolbox-proxy-url" % sid)
    check("toolbox-proxy-url", code == 200 and body == {"url": dev.url + "/toolbox"}, body)

    # ---- toolbox: process errors -----------------------------------------------------------
    code, _, b = tb(dev, sid, "/process/execute", {"cwd": "/"})
    check("execute without command: 400", err_ok(code, jbody(b), 400, "command is required"), b)
    code, _, b = tb(dev, sid, "/process/execute", {"command": "true", "timeout": -1})
    check("execute with a negative timeout: 400", err_ok(code, jbody(b), 400, "timeout must be"), b)
    code, _, b = tb(dev, sid, "/process/execute", raw=b"[1,2]")
    check("execute with a body that is not an object: 400", err_ok(code, jbody(b), 400), b)
    code, _, b = tb(dev, sid, "/process/code-run", {"code": "x", "language": "cobol"})
    check("code-run in an unknown language: 400", err_ok(code, jbody(b), 400, "allowed: python, javascript"), b)
    code, _, b = tb(dev, sid, "/process/code-run", {"code": "print(1)", "argv": "notalist"})
    check("code-run with argv not a list: 400", err_ok(code, jbody(b), 400, "argv"), b)
    code, _, b = tb(dev, sid, "/process/execute", {"command": "printf 'a\\377b'"})
    check("output that is not UTF-8 still comes back", code == 200 and jbody(b)["result"] == "a?b", b)
    code, _, b = http(dev.url + "/api/toolbox/%s/toolbox/process/execute" % sid, {"command": "echo old"})
    check("the old SDKs' toolbox path (/api/toolbox/{id}/toolbox/...) works too",
          code == 200 and jbody(b).get("result") == "old\n", b)
    code, _, b = tb(dev, sid, "/process/session", {"sessionId": "s"})
    check("a toolbox route sbx lacks: 501", err_ok(code, jbody(b), 501), b)
    code, _, b = tb(dev, sid, "/no/such/route")
    check("an unknown toolbox route: 404", err_ok(code, jbody(b), 404), b)

    # ---- toolbox: bad multipart --------------------------------------------------------------
    ct, body = multipart([("files[0].path", None, b"/home/daytona/a.txt"), ("files[0].file", "a.txt", b"A")])
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body[:-30], headers={"Content-Type": ct})
    check("bulk-upload with a truncated body: 400", err_ok(code, jbody(b), 400, "malformed multipart body"), b)
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body, headers={"Content-Type": "multipart/form-data"})
    check("bulk-upload without a boundary: 400", err_ok(code, jbody(b), 400, "boundary"), b)
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body, headers={"Content-Type": "application/json"})
    check("bulk-upload that is not multipart: 400", err_ok(code, jbody(b), 400, "multipart/form-data"), b)
    ct2, body2 = multipart([("files[0].file", "a.txt", b"A")])
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body2, headers={"Content-Type": ct2})
    check("a file part without its path part: 400", err_ok(code, jbody(b), 400, "files[0].path"), b)
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body, headers={"Content-Type": ct})
    check("a good bulk-upload: 200 {files:[{path,bytes}]}", code == 200 and jbody(b) == {
        "files": [{"path": "/home/daytona/a.txt", "bytes": 1}]}, b)
    for bad_body in ({}, {"paths": []}, {"paths": [1]}, {"paths": "a"}):
        code, _, b = tb(dev, sid, "/files/bulk-download", bad_body)
        check("bulk-download %s: 400" % json.dumps(bad_body), err_ok(code, jbody(b), 400, "paths"), b)

    # ---- toolbox: paths and links that try to leave the sandbox ------------------------------
    with open(host_secret, "w") as f:
        f.write("host secret")
    ct, body = multipart([("files[0].path", None, b"/home/daytona/../../../../../tmp/" + escape_name.encode()),
                          ("files[0].file", "x", b"inside")])
    code, _, b = tb(dev, sid, "/files/bulk-upload", raw=body, headers={"Content-Type": ct})
    check("an upload to ../../../tmp/x lands in the sandbox's /tmp ...",
          code == 200 and run(dev, sid, "cat /tmp/" + escape_name) == "inside", b)
    check("... not the host's", not os.path.exists("/tmp/" + escape_name))
    run(dev, sid, "ln -s %s ~/to-host; ln -s /etc/shadow ~/to-shadow; ln -s / ~/root-link" % host_secret)
    code, hd, b = tb(dev, sid, "/files/bulk-download", {"paths": ["to-host", "to-shadow", "root-link/etc/hostname"]})
    parts = parts_of(hd.get("Content-Type", ""), b) if code == 200 else []
    by = {p[1]: p for p in parts}
    check("a symlink to a host path resolves inside the sandbox: not found, no host bytes",
          by.get("to-host", ("",))[0] == "error" and b"host secret" not in b and
          jbody(by["to-host"][2])["statusCode"] == 404, parts)
    check("a symlink to /etc/shadow finds the sandbox's (masked) /etc: not found",
          by.get("to-shadow", ("",))[0] == "error" and jbody(by["to-shadow"][2])["code"] == "FILE_NOT_FOUND", parts)
    check("a symlink to / stays in the sandbox's root", by.get("root-link/etc/hostname", ("",))[0] == "file", parts)
    code, _, b = tb(dev, sid, "/files?path=/home/daytona")
    names = [e["name"] for e in jbody(b)] if code == 200 else []
    check("listing does not follow a link out of the sandbox (a dangling one is left out)",
          "to-host" not in names and "a.txt" in names, b)
    code, _, b = tb(dev, sid, "/files/info?path=" + urllib.parse.quote(host_secret))
    check("files/info of a host path: 404 (the sandbox has no such file)",
          err_ok(code, jbody(b), 404) and jbody(b).get("code") == "FILE_NOT_FOUND", b)
    code, _, b = tb(dev, sid, "/files/download?path=/root/.bashrc")
    check("a file daytona may not read: 403", err_ok(code, jbody(b), 403), b)
    code, _, b = tb(dev, sid, "/files?path=/home/daytona/nope", method="DELETE")
    check("delete of a missing path: 404", err_ok(code, jbody(b), 404), b)
    run(dev, sid, "mkdir -p ~/full && touch ~/full/x")
    code, _, b = tb(dev, sid, "/files?path=/home/daytona/full", method="DELETE")
    check("delete of a non-empty directory without recursive: 400", err_ok(code, jbody(b), 400, "recursive"), b)
    code, _, b = tb(dev, sid, "/files/permissions?path=/home/daytona/a.txt&mode=9x", method="POST")
    check("permissions with a bad mode: 400", err_ok(code, jbody(b), 400, "octal"), b)
    run(dev, sid, "mkdir -p ~/g/x/y ~/g/z && touch ~/g/a.txt ~/g/b.md ~/g/c.py ~/g/x/d.txt ~/g/x/y/e.py ~/g/z/f.py")
    for pattern, want in (("*.{txt,md}", ["a.txt", "b.md"]), ("**/*.py", ["c.py", "x/y/e.py", "z/f.py"]),
                          ("{x/**,z}/*.py", ["x/y/e.py", "z/f.py"]), ("x/*", ["x/d.txt"]), ("?.py", ["c.py"]),
                          ("[ab].*", ["a.txt", "b.md"])):
        code, _, b = tb(dev, sid, "/files/search?" + urllib.parse.urlencode({"path": "/home/daytona/g",
                                                                            "pattern": pattern}))
        got = sorted(f[len("/home/daytona/g/"):] for f in jbody(b).get("files", [])) if code == 200 else b
        check("search with the glob %s" % pattern, got == want, got)
    code, _, b = tb(dev, sid, "/files/find?path=/home/daytona")
    check("find without a pattern: 400", err_ok(code, jbody(b), 400, "pattern is required"), b)

    # ---- list filters and pagination ---------------------------------------------------------
    code, other = create(dev, {"labels": {"t": "2"}, "name": "second"})
    code, third = create(dev, {"labels": {"t": "2"}, "autoStopInterval": 0})
    code, body = api(dev, "/sandbox/second/stop", {})
    check("stop by name: 200, stopped", code == 200 and body.get("state") == "stopped", body)
    code, body = api(dev, "/sandbox?states=stopped")
    check("list ?states=stopped", code == 200 and [s["name"] for s in body["items"]] == ["second"], body)
    code, body = api(dev, "/sandbox?states=started&states=stopped")
    check("list with two states (repeated key)", code == 200 and len(body["items"]) == 3, body)
    code, body = api(dev, "/sandbox?" + urllib.parse.urlencode({"labels": json.dumps({"t": "2"})}))
    check("list ?labels={t:2}", code == 200 and sorted(s["id"] for s in body["items"]) ==
          sorted([other["id"], third["id"]]), body)
    code, body = api(dev, "/sandbox?states=sleeping")
    check("list with an unknown state: 400", err_ok(code, body, 400, "sleeping"), body)
    code, body = api(dev, "/sandbox?limit=0")
    check("list ?limit=0: 400", err_ok(code, body, 400, "limit"), body)
    code, body = api(dev, "/sandbox?labels=notjson")
    check("list with labels that are not a JSON object: 400", err_ok(code, body, 400, "labels"), body)
    seen, cursor, pages = [], None, 0
    while pages < 10:
        code, body = api(dev, "/sandbox?limit=1" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else ""))
        if code != 200:
            break
        pages += 1
        seen += [s["id"] for s in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    check("pagination with limit=1 walks all three, newest first, once each",
          seen == [third["id"], other["id"], sid], (seen, pages))
    code, _, b = tb(dev, other["id"], "/process/execute", {"command": "true"})
    check("the toolbox of a stopped sandbox: 409", err_ok(code, jbody(b), 409, "stopped"), b)
    code, body = api(dev, "/sandbox/second/start", {})
    check("start: 200, started", code == 200 and body.get("state") == "started", body)
    code, body = api(dev, "/sandbox/%s/labels" % sid, {"labels": {"new": "yes"}}, method="PUT")
    check("PUT labels replaces them", code == 200 and body == {"labels": {"new": "yes"}} and
          api(dev, "/sandbox/" + sid)[1]["labels"] == {"new": "yes"}, body)
    code, body = api(dev, "/sandbox/%s/autostop/30" % sid, {})
    check("autostop/30", code == 200 and api(dev, "/sandbox/" + sid)[1]["autoStopInterval"] == 30, body)
    code, body = api(dev, "/sandbox/%s/autostop/soon" % sid, {})
    check("autostop with a bad interval: 400", err_ok(code, body, 400, "autoStopInterval"), body)
    code, body = api(dev, "/sandbox/%s/fork" % sid, {})
    check("fork: 501", err_ok(code, body, 501), body)

    # ---- deleted through the microsandbox API --------------------------------------------------
    code, body = rpc(dev, "sandbox.delete", {"namespace": "daytona", "sandbox": third["id"]})
    check("sandbox.delete of a Daytona sandbox", code == 200, body)
    check("... and the Daytona API no longer has it", wait_for(
        lambda: api(dev, "/sandbox/" + third["id"])[0] == 404))

    # ---- ephemeral (autoDeleteInterval 0), user root ---------------------------------------------
    code, eph = create(dev, {"autoDeleteInterval": 0})
    code, body = api(dev, "/sandbox/%s/stop" % eph["id"], {})
    check("stopping an ephemeral sandbox deletes it", code == 200 and body.get("state") == "destroyed" and
          api(dev, "/sandbox/" + eph["id"])[0] == 404, body)
    code, rootbox = create(dev, {"user": "root"})
    check("user root: commands run as root in /root", code == 200 and rootbox["user"] == "root" and
          run(dev, rootbox["id"], "whoami; pwd") == "root\n/root\n", rootbox)
    api(dev, "/sandbox/" + rootbox["id"], method="DELETE")

    # ---- the Socket.IO event stream ----------------------------------------------------------------
    s, head, want = ws_open(dev, "/api/socket.io/?EIO=4&transport=websocket&source=test")
    check("WebSocket upgrade: 101 with the right Sec-WebSocket-Accept",
          head.startswith("HTTP/1.1 101") and ("Sec-WebSocket-Accept: " + want) in head, head)
    op, p = ws_recv(s)
    opened = jbody(p[1:]) if op == 1 and p[:1] == b"0" else {}
    check("Engine.IO open packet with sid, pingInterval, pingTimeout", isinstance(opened, dict) and
          opened.get("sid") and opened.get("pingInterval") == 25000 and opened.get("pingTimeout") == 20000, p)
    ws_send(s, '40{"token":"test"}')
    op, p = ws_recv(s)
    check("Socket.IO connect is answered 40{sid}", op == 1 and p.startswith(b'40{"sid":'), p)
    ws_send(s, "2")
    op, p = ws_recv(s)
    check("an Engine.IO ping from the client gets a pong", op == 1 and p == b"3", p)
    ws_send(s, struct.pack(">H", 1000), op=8)
    op, p = ws_recv(s)
    check("a close frame is answered with a close frame", op == 8, (op, p))
    s.close()
    s, head, _ = ws_open(dev, "/api/socket.io/?EIO=4&transport=websocket")
    ws_recv(s)
    ws_send(s, "40")
    op, p = ws_recv(s)
    check("connect without a token: 44 with a message", op == 1 and p.startswith(b"44") and b"API key" in p, p)
    s.close()
    code, _, b = http(dev.url + "/api/socket.io/?EIO=4&transport=polling")
    check("the polling transport: 400 naming the websocket one", err_ok(code, jbody(b), 400, "websocket"), b)
    s, head, _ = ws_open(dev, "/api/socket.io/?EIO=4&transport=websocket")
    ws_recv(s)  # left open: the server's stop must end it

    # ---- a restart keeps the sandboxes (stopped) ---------------------------------------------------
    tb(dev, sid, "/files/bulk-upload", raw=multipart([("files[0].path", None, b"kept.txt"),
                                                      ("files[0].file", "k", b"kept")])[1],
       headers={"Content-Type": multipart([])[0]})
    check("dev server stops cleanly (an event stream open)", dev.stop() == 0)
    s.settimeout(10)
    check("... which ended the event stream", ws_recv(s)[0] in (None, 8))
    s.close()
    dev = Server(os.path.join(tmp, "dev"), True).start()
    code, body = api(dev, "/sandbox/" + sid)
    check("after a restart the sandbox is there, stopped, labels kept", code == 200 and body["state"] == "stopped"
          and body["labels"] == {"new": "yes"} and body["env"] == {"FOO": "bar"}, body)
    code, body = api(dev, "/sandbox/%s/start" % sid, {})
    out = run(dev, sid, "cat ~/kept.txt; echo; echo $FOO")
    check("... starts again with its files and env", code == 200 and out == "kept\nbar\n", (out, body))
    for x in (sid, other["id"]):
        code, body = api(dev, "/sandbox/" + x, method="DELETE")
        check("DELETE: 200 with state destroyed", code == 200 and body.get("state") == "destroyed", body)
    check("dev server stops cleanly", dev.stop() == 0)
    dev = None
    layers = os.path.join(tmp, "dev", "layers", "daytona")
    check("deleted sandboxes leave no layer", not os.path.exists(layers) or os.listdir(layers) == [],
          os.listdir(layers) if os.path.exists(layers) else "")

    # ---- keyed (non-dev) server ------------------------------------------------------------------
    state = os.path.join(tmp, "keyed")
    keyed = Server(state, False).start()
    out = subprocess.run([SBX, "server", "keygen", "--state-dir", state, "--expire", "1h"], capture_output=True,
                         text=True).stdout
    key = out.splitlines()[0].split(" ", 1)[1]
    out = subprocess.run([SBX, "server", "keygen", "--state-dir", state, "--expire", "1h", "--namespace", "team"],
                         capture_output=True, text=True).stdout
    team = out.splitlines()[0].split(" ", 1)[1]
    out = subprocess.run([SBX, "server", "keygen", "--state-dir", state, "--expire", "1h", "--namespace", "daytona"],
                         capture_output=True, text=True).stdout
    dkey = out.splitlines()[0].split(" ", 1)[1]
    code, body = api(keyed, "/sandbox", headers={})
    check("keyed: no Authorization: 401", err_ok(code, body, 401, "Bearer"), body)
    code, body = api(keyed, "/sandbox", headers={"Authorization": "Bearer test"})
    check("keyed: a made-up key: 401", err_ok(code, body, 401, "keygen"), body)
    code, body = api(keyed, "/sandbox", headers={"Authorization": "Bearer " + team})
    check("keyed: a key of another namespace: 403", err_ok(code, body, 403, "daytona"), body)
    code, body = api(keyed, "/sandbox", headers={"Authorization": "Bearer " + dkey})
    check("keyed: a key of namespace daytona lists", code == 200 and body["items"] == [], body)
    code, body = create(keyed, {}, headers={"Authorization": "Bearer " + key})
    check("keyed: create with a key from `sbx server keygen`", code == 200 and body.get("state") == "started", body)
    if code == 200:
        code, _, b = http(keyed.url + "/toolbox/%s/process/execute" % body["id"], {"command": "true"}, {})
        check("keyed: the toolbox needs the key too: 401", err_ok(code, jbody(b), 401), b)
        code, _ = api(keyed, "/sandbox/" + body["id"], method="DELETE", headers={"Authorization": "Bearer " + key})
        check("keyed: DELETE with the key", code == 200)
    s, head, _ = ws_open(keyed, "/api/socket.io/?EIO=4&transport=websocket")
    ws_recv(s)
    ws_send(s, '40{"token":"test"}')
    op, p = ws_recv(s)
    check("keyed: the event stream refuses a made-up key (44)", op == 1 and p.startswith(b"44"), p)
    s.close()
    check("keyed server stops cleanly", keyed.stop() == 0)
    keyed = None

    # ---- the layer image pool ---------------------------------------------------------------------
    state = os.path.join(tmp, "pool")
    pool, trash = os.path.join(state, "layers", ".pool"), os.path.join(state, "layers", ".trash")

    def ready():
        """{inode: name} of the ready 3 GiB images in the pool."""
        names = os.listdir(pool) if os.path.isdir(pool) else []
        return {os.stat(os.path.join(pool, n)).st_ino: n for n in names if n.startswith("3072.") and
                n.endswith(".img")}

    def image(sid):
        return os.stat(os.path.join(state, "layers", "daytona", sid, "layer.img"))

    # Leftovers of a run that crashed: a ready image, a half-made one, a deleted layer.
    os.makedirs(os.path.join(trash, "7-deadbeef"))
    os.makedirs(pool)
    for f in (os.path.join(pool, "3072.1-1.img"), os.path.join(pool, "tmp.1-2"),
              os.path.join(trash, "7-deadbeef", "layer.img")):
        with open(f, "w") as fh:
            fh.write("left over")
    dev = Server(state, True, args=["--log-level", "debug"]).start()
    check("a start clears the pool's and the trash's leftovers of an earlier run", wait_for(
        lambda: not os.path.exists(trash) and not os.path.exists(os.path.join(pool, "3072.1-1.img")) and
        not os.path.exists(os.path.join(pool, "tmp.1-2"))), os.listdir(state + "/layers"))
    check("the pool fills with ready images of the default disk (3 GiB) in the background",
          wait_for(lambda: len(ready()) == 3, 600), os.listdir(pool) if os.path.isdir(pool) else "no pool")
    before = ready()
    code, a = create(dev, {})
    st = image(a["id"]) if code == 200 else None
    check("a create of the default disk takes a ready image (the same inode, 3 GiB)",
          st is not None and st.st_ino in before and st.st_size == 3 << 30, (code, a, before))
    check("... and the pool makes up for it", wait_for(lambda: len(ready()) == 3 and set(ready()) != set(before), 600),
          ready())
    out = run(dev, a["id"], "fallocate -l 4G ~/big 2>&1; echo rc=$?; rm -f ~/big; fallocate -l 1G ~/fits && echo fits")
    check("... whose 3 GiB limit holds", out is not None and "No space left" in out and "rc=1" in out and
          "fits" in out, out)
    before = ready()
    code, b = create(dev, {"disk": 1})
    st = image(b["id"]) if code == 200 else None
    check("a create of another disk size makes its own image (1 GiB), the pool untouched",
          st is not None and st.st_ino not in before and st.st_size == 1 << 30 and ready() == before, (code, b))
    out = run(dev, b["id"], "fallocate -l 2G ~/big 2>&1; echo rc=$?")
    check("... whose 1 GiB limit holds", out is not None and "No space left" in out and "rc=1" in out, out)
    for x in (a, b):
        api(dev, "/sandbox/" + x["id"], method="DELETE")
    check("server with a pool stops cleanly", dev.stop() == 0)
    dev = None
    check("a stop removes the pool and leaves no trash", not os.path.exists(pool) and not os.path.exists(trash),
          os.listdir(state + "/layers"))
    check("deleted sandboxes leave no layer (background teardown)",
          os.listdir(os.path.join(state, "layers", "daytona")) == [])

    # ---- background teardown: the delete answers first, the server's stop waits ---------------------
    dev = Server(state, True, env={"SBX_TEARDOWN_DELAY_MS": "1500"}).start()
    code, a = create(dev, {})
    sid = a.get("id", "")
    with open(state + ".log") as f:
        engine_ids = [l.split("engine id ")[1].strip().rstrip(")") for l in f if
                      ("sandbox daytona/%s started" % sid) in l]
    lock = "/run/sbx/sandboxes/" + (engine_ids[-1] if engine_ids else "none")
    check("a sandbox to delete (its engine lock is there)", code == 200 and os.path.exists(lock), (a, engine_ids))
    run(dev, sid, "touch /tmp/mark")
    t0 = time.time()
    code, body = api(dev, "/sandbox/" + sid, method="DELETE")
    took = time.time() - t0
    check("DELETE answers before the teardown is over (state destroyed)",
          code == 200 and body.get("state") == "destroyed" and took < 1.0 and os.path.exists(lock), (took, body))
    check("... the sandbox is gone at once: 404, not in the registry, its layer dir moved away",
          api(dev, "/sandbox/" + sid)[0] == 404 and
          rpc(dev, "sandbox.list", {"namespace": "daytona"})[1]["result"]["sandboxes"] == [] and
          not os.path.exists(os.path.join(state, "layers", "daytona", sid)))
    # The microsandbox API can reuse the name (Daytona's own ids never repeat).
    code, body = rpc(dev, "sandbox.start", {"namespace": "daytona", "sandbox": sid, "config": {"image": "host"}})
    took = time.time() - t0
    code2, body2 = rpc(dev, "sandbox.command.run", {"namespace": "daytona", "sandbox": sid, "command": "sh",
                                                    "args": ["-c", "test -e /tmp/mark; echo $?"]})
    check("a start of the same name waits for the teardown, then runs with a fresh layer",
          code == 200 and took >= 1.0 and code2 == 200 and
          body2.get("result", {}).get("output") == [{"stream": "stdout", "text": "1"}], (took, body, body2))
    rpc(dev, "sandbox.delete", {"namespace": "daytona", "sandbox": sid})
    code, a = create(dev, {})
    code, body = api(dev, "/sandbox/" + a.get("id", ""), method="DELETE")
    with open(state + ".log") as f:
        engine_ids = [l.split("engine id ")[1].strip().rstrip(")") for l in f if
                      ("sandbox daytona/%s started" % a.get("id")) in l]
    lock = "/run/sbx/sandboxes/" + (engine_ids[-1] if engine_ids else "none")
    pending = os.path.exists(lock)
    t0 = time.time()
    rc = dev.stop()
    took = time.time() - t0
    dev = None
    check("SIGTERM right after a DELETE: the server waits for the teardown, then exits 0",
          rc == 0 and pending and took >= 1.0, (rc, pending, took))
    cg = [p for p in ("/sys/fs/cgroup/sbx/" + os.path.basename(lock),) + tuple(
        "/sys/fs/cgroup/%s/sbx/%s" % (c, os.path.basename(lock)) for c in os.listdir("/sys/fs/cgroup"))
          if os.path.exists(p)]
    with open("/proc/self/mountinfo") as f:
        mounted = state in f.read()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    check("... leaving no lock, cgroup, mount, loop device, layer, trash or pool",
          not os.path.exists(lock) and not cg and not mounted and state not in loops and
          os.listdir(os.path.join(state, "layers", "daytona")) == [] and not os.path.exists(trash) and
          not os.path.exists(pool), (lock, cg, mounted, os.listdir(os.path.join(state, "layers"))))
finally:
    for srv in (dev, keyed):
        if srv:
            srv.p.kill()
            srv.p.wait()
    for f in (host_secret, "/tmp/" + escape_name):
        if os.path.exists(f):
            os.unlink(f)
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if common.failed else 0)
