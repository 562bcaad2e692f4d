#!/usr/bin/python3
"""The session layer through a real server, configured only by MSB_*
variables (and ./.env), the way a user sets it up: each variable's range
check at start, its default and its effect; the exact limit messages; LRU
order; the execution timeout killing the work in the sandbox; shared
volumes (:ro too); then `sbx session exec|cmd|ls|stop` and the MCP session
tools over HTTP and stdio. Idle and orphan cleanup with second-long
intervals, below the documented minimums, are in tests/unit/test_sessions.c.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import SBX, Server, check  # noqa: E402

# Every test server starts from an environment without MSB_* and in a
# directory without .env, so only what a case sets counts.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MSB_")}


def http(url, body, headers=None):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rpc(srv, method, params=None):
    code, text = http(srv.url + "/api/v1/rpc", {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": 1})
    return code, json.loads(text)


def result(srv, method, params=None):
    code, body = rpc(srv, method, params)
    return body.get("result") if code == 200 else None


def tool(srv, name, arguments):
    code, text = http(srv.url + "/mcp", {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                         "params": {"name": name, "arguments": arguments}},
                      {"Accept": "application/json, text/event-stream"})
    r = json.loads(text).get("result", {})
    return r.get("content", [{}])[0].get("text"), r.get("isError", False)


def sbx(args, env=None, cwd=None, timeout=120):
    e = dict(BASE_ENV, **(env or {}))
    return subprocess.run([SBX] + args, capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)


tmp = tempfile.mkdtemp(prefix="sbx-sessions-test.")
os.chmod(tmp, 0o755)
empty = os.path.join(tmp, "cwd")  # no .env here
os.mkdir(empty)
servers = []
n_state = 0


def start(env, cwd=empty, args=()):
    global n_state
    n_state += 1
    s = Server(os.path.join(tmp, "state%d" % n_state), dev=True, env=env, cwd=cwd, args=args)
    s.env = dict(BASE_ENV, **env)
    servers.append(s.start())
    return s


def stop(s):
    rc = s.stop()
    servers.remove(s)
    return rc


try:
    # ---- each variable refused at start when out of range or malformed --------------------
    bad = [
        ("MSB_SERVER_URL", "ftp://h", "Invalid server URL format: ftp://h. Must start with http:// or https://"),
        ("MSB_SESSION_TIMEOUT", "59", "MSB_SESSION_TIMEOUT"),
        ("MSB_SESSION_TIMEOUT", "abc", "MSB_SESSION_TIMEOUT must be a valid integer, got 'abc'"),
        ("MSB_MAX_SESSIONS", "101", "MSB_MAX_SESSIONS"),
        ("MSB_MAX_SESSIONS", "0", "MSB_MAX_SESSIONS must be a positive integer, got 0"),
        ("MSB_CLEANUP_INTERVAL", "9", "MSB_CLEANUP_INTERVAL"),
        ("MSB_DEFAULT_FLAVOR", "huge", "Invalid MSB_DEFAULT_FLAVOR 'huge'. Valid options are: small, medium, large"),
        ("MSB_SANDBOX_START_TIMEOUT", "fast", "MSB_SANDBOX_START_TIMEOUT must be a valid number, got 'fast'"),
        ("MSB_SANDBOX_START_TIMEOUT", "601", "MSB_SANDBOX_START_TIMEOUT"),
        ("MSB_EXECUTION_TIMEOUT", "3601", "MSB_EXECUTION_TIMEOUT"),
        ("MSB_MAX_TOTAL_MEMORY_MB", "512",
         "Max total memory (512MB) is less than minimum needed for default flavor (1024MB)"),
        ("MSB_SHARED_VOLUME_PATH", "[1]", "MSB_SHARED_VOLUME_PATH"),
        ("MSB_ORPHAN_CLEANUP_INTERVAL", "59", "MSB_ORPHAN_CLEANUP_INTERVAL"),
        ("MSB_ENABLE_LRU_EVICTION", "maybe", "MSB_ENABLE_LRU_EVICTION must be a valid boolean value (true/false, "
         "1/0, yes/no, on/off, enabled/disabled), got 'maybe'"),
        ("MSB_LOG_LEVEL", "LOUD", "MSB_LOG_LEVEL"),
    ]
    for var, val, want in bad:
        p = sbx(["server", "start", "--dev", "--port", "0", "--state-dir", os.path.join(tmp, "refused")],
                {var: val}, cwd=empty, timeout=30)
        check("%s=%s refuses the start (exit 125) saying: %s" % (var, val, want[:60]),
              p.returncode == 125 and want in p.stderr and (val in p.stderr or var == "MSB_SHARED_VOLUME_PATH"),
              (p.returncode, p.stderr))
    p = sbx(["server", "start", "--dev", "--port", "0", "--state-dir", os.path.join(tmp, "refused")],
            {"MSB_SESSION_TIMEOUT": "60", "MSB_CLEANUP_INTERVAL": "60"}, cwd=empty, timeout=30)
    check("MSB_CLEANUP_INTERVAL not below MSB_SESSION_TIMEOUT refuses the start",
          p.returncode == 125 and "Cleanup interval (60s) must be less than session timeout (60s)" in p.stderr,
          p.stderr)

    # ---- defaults ------------------------------------------------------------------------
    s = start({})
    st = result(s, "session.stats")
    check("default MSB_MAX_SESSIONS 10, no memory budget, orphan sweep every 600 s",
          st and st["max_sessions"] == 10 and st["max_total_memory_mb"] is None and
          st["orphan_cleanup"]["cleanup_interval_seconds"] == 600, st)
    check("default MSB_SHARED_VOLUME_PATH: no mappings", result(s, "session.volumes") == [])
    r = result(s, "session.execute_code", {"code": "print(2 + 3)"})
    lst = result(s, "session.list")
    check("default MSB_DEFAULT_FLAVOR small, template python",
          r and r["stdout"] == "5" and lst and lst[0]["flavor"] == "small" and lst[0]["template"] == "python", lst)
    # A huge timeout is none: 1e300 s once became an integer by undefined
    # behaviour (UBSan float-cast-overflow), 1e16 s wrapped the deadline.
    for t in (1e300, 1e16):
        r = result(s, "session.execute_code", {"code": "print(6 * 7)", "timeout": t})
        check("session.execute_code with timeout %g runs to its end" % t, r and r["stdout"] == "42", r)
    log = open(s.state + ".log").read()
    check("default MSB_LOG_LEVEL INFO: info lines, no debug lines", " info " in log and " debug " not in log, log[-300:])
    check("graceful stop of the defaults server", stop(s) == 0)

    # ---- .env in the working directory, the real environment wins --------------------------
    envdir = os.path.join(tmp, "envdir")
    os.mkdir(envdir)
    with open(os.path.join(envdir, ".env"), "w") as f:
        f.write("# sbx settings\nMSB_MAX_SESSIONS=3\nexport MSB_DEFAULT_FLAVOR='medium'\nOTHER=1\n")
    s = start({}, cwd=envdir)
    r = result(s, "session.execute_code", {"code": "1"})
    st = result(s, "session.stats")
    check(".env is loaded: MSB_MAX_SESSIONS=3 and MSB_DEFAULT_FLAVOR=medium take effect",
          st["max_sessions"] == 3 and st["sessions_by_flavor"] == {"medium": 1}, st)
    stop(s)
    s = start({"MSB_MAX_SESSIONS": "4"}, cwd=envdir)
    check("a variable in the real environment wins over .env", result(s, "session.stats")["max_sessions"] == 4)
    stop(s)

    # ---- MSB_MAX_SESSIONS without LRU: the exact message -----------------------------------
    s = start({"MSB_MAX_SESSIONS": "1", "MSB_ENABLE_LRU_EVICTION": "false", "MSB_LOG_LEVEL": "DEBUG"})
    a = result(s, "session.execute_code", {"code": "1"})
    code, body = rpc(s, "session.execute_code", {"code": "2"})
    check("MSB_MAX_SESSIONS=1, LRU off: a second session gets 'Maximum concurrent sessions (1) exceeded'",
          code == 429 and body.get("error") == "Maximum concurrent sessions (1) exceeded" and
          body.get("error_code") == "RESOURCE_LIMIT_ERROR", (code, body))
    code, body = rpc(s, "session.execute_code", {"code": "3", "session_id": a["session_id"]})
    check("... while the existing session still runs", code == 200 and body["result"]["stdout"] == "3", body)
    p = sbx(["session", "exec", "--python", "1"], {"MSB_SERVER_URL": s.url})
    check("sbx session exec shows the limit message and exits 1",
          p.returncode == 1 and "Maximum concurrent sessions (1) exceeded" in p.stderr, (p.returncode, p.stderr))
    log = open(s.state + ".log").read()
    check("MSB_LOG_LEVEL=DEBUG logs each request", re.search(r" debug .*POST /api/v1/rpc -> 200", log) is not None,
          log[-300:])
    stop(s)

    # ---- MSB_MAX_TOTAL_MEMORY_MB: the exact message -----------------------------------------
    s = start({"MSB_MAX_TOTAL_MEMORY_MB": "2048", "MSB_ENABLE_LRU_EVICTION": "off", "MSB_LOG_LEVEL": "ERROR"})
    result(s, "session.execute_code", {"code": "1", "flavor": "medium"})
    code, body = rpc(s, "session.execute_code", {"code": "1", "flavor": "small"})
    check("MSB_MAX_TOTAL_MEMORY_MB=2048 with a medium session: 'Total memory limit (2048 MB) would be exceeded'",
          code == 429 and body.get("error") == "Total memory limit (2048 MB) would be exceeded", body)
    st = result(s, "session.stats")
    check("session.stats: memory in use against the budget", st["total_memory_mb"] == 2048 and
          st["max_total_memory_mb"] == 2048, st)
    stop(s)
    log = open(s.state + ".log").read()
    check("MSB_LOG_LEVEL=ERROR: no info lines", " info " not in log and " debug " not in log, log[-300:])

    # ---- --log-format json: one JSON object per line, MSB_LOG_LEVEL still applies ------------------
    s = start({"MSB_LOG_LEVEL": "debug"}, args=["--log-format", "json"])
    result(s, "session.stats")
    stop(s)
    try:
        lines = [json.loads(l) for l in open(s.state + ".log").read().splitlines()]
    except ValueError as e:
        lines = [str(e)]
    check("--log-format json: every line a {time, level, msg} object, debug lines included",
          lines and all(isinstance(l, dict) and set(l) == {"time", "level", "msg"} and l["time"].endswith("Z")
                        for l in lines) and any(l["level"] == "debug" for l in lines), lines[:3])

    # ---- LRU eviction (default on), never the session with a call in flight -----------------
    s = start({"MSB_MAX_SESSIONS": "2"})
    ids = {}
    for name in ("a", "b"):
        r = result(s, "session.execute_code", {"code": "v = '%s'" % name, "session_id": "lru-" + name})
        ids[name] = r and r["session_id"]
    result(s, "session.execute_code", {"code": "v", "session_id": "lru-a"})  # b is now least recently used
    result(s, "session.execute_code", {"code": "1", "session_id": "lru-c"})
    live = sorted(x["session_id"] for x in result(s, "session.list"))
    check("MSB_MAX_SESSIONS=2 with LRU: a third session evicts the least recently used (lru-b)",
          live == ["lru-a", "lru-c"], live)
    # lru-a busy for 3 s; lru-c is the LRU one and idle, so it goes, not lru-a.
    result(s, "session.execute_code", {"code": "1", "session_id": "lru-c"})
    busy = threading.Thread(target=result, args=(s, "session.execute_code",
                                                 {"code": "import time; time.sleep(3)", "session_id": "lru-a"}))
    busy.start()
    time.sleep(0.5)
    result(s, "session.execute_code", {"code": "1", "session_id": "lru-d"})
    live = sorted(x["session_id"] for x in result(s, "session.list"))
    busy.join()
    check("a session with a call in flight is never evicted (lru-c goes, lru-a stays)",
          live == ["lru-a", "lru-d"], live)
    r = result(s, "session.execute_code", {"code": "v", "session_id": "lru-a"})
    check("... and it kept its state", r and r["stdout"] == "'a'", r)
    stop(s)

    # ---- MSB_EXECUTION_TIMEOUT: the work is stopped in the sandbox ---------------------------
    s = start({"MSB_EXECUTION_TIMEOUT": "10"})
    code, body = rpc(s, "session.execute_command", {"command": "sh", "args": ["-c", "sleep 1000 & sleep 1000"],
                                                    "session_id": "slow"})
    check("MSB_EXECUTION_TIMEOUT=10 stops a command: 'Command execution timed out after 10 seconds'",
          code != 200 and body.get("error", "").startswith("Command execution timed out after 10 seconds"), body)
    r = result(s, "session.execute_command", {"command": "ps", "args": ["-eo", "args"], "session_id": "slow"})
    check("... and no process of it is left in the sandbox (background child included)",
          r is not None and "sleep" not in r["stdout"], r)
    stop(s)

    # ---- MSB_SHARED_VOLUME_PATH: JSON and legacy forms, :ro ------------------------------------
    d_in, d_out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
    for d in (d_in, d_out):
        os.mkdir(d)
        os.chmod(d, 0o777)
    with open(os.path.join(d_in, "data.txt"), "w") as f:
        f.write("shared\n")
    os.chmod(os.path.join(d_in, "data.txt"), 0o644)
    for form, value in (("JSON array", json.dumps([d_in + ":/data/in:ro", d_out + ":/data/out"])),
                        ("legacy comma-separated", "%s:/data/in:ro,%s:/data/out" % (d_in, d_out))):
        s = start({"MSB_SHARED_VOLUME_PATH": value})
        vols = result(s, "session.volumes")
        check("MSB_SHARED_VOLUME_PATH (%s): both mappings listed, :ro marked" % form, vols == [
            {"host_path": d_in, "container_path": "/data/in", "read_only": True},
            {"host_path": d_out, "container_path": "/data/out", "read_only": False}], vols)
        r = result(s, "session.execute_command", {"command": "sh", "args": ["-c",
                    "cat /data/in/data.txt; echo x > /data/in/y 2>/dev/null || echo refused; echo w > /data/out/w"]})
        check("... visible inside, read-only really refused, the rw one writable",
              r and r["stdout"] == "shared\nrefused" and open(os.path.join(d_out, "w")).read() == "w\n", r)
        text, err = tool(s, "get_volume_mappings", {})
        check("... get_volume_mappings tool text",
              text == "Host: %s -> Container: /data/in (read-only)\nHost: %s -> Container: /data/out" % (d_in, d_out),
              text)
        stop(s)
        os.unlink(os.path.join(d_out, "w"))

    # ---- sbx session exec|cmd|ls|stop, MSB_SERVER_URL and MSB_API_KEY -------------------------
    s = Server(os.path.join(tmp, "keyed"), env={}, cwd=empty)  # not --dev: keys required
    s.env = dict(BASE_ENV)
    servers.append(s.start())
    key = re.search(r"Token: (\S+)", sbx(["server", "keygen", "--state-dir", s.state]).stdout).group(1)
    env = {"MSB_SERVER_URL": s.url, "MSB_API_KEY": key}
    p = sbx(["session", "exec", "--session", "cli-1", "--python", "n = 6\nprint(n * 7)"], env)
    check("sbx session exec --python: output, session created, exit 0",
          p.returncode == 0 and p.stdout == "42\n" and "[session cli-1 created]" in p.stderr, (p.stdout, p.stderr))
    p = sbx(["session", "exec", "--session", "cli-1", "--python", "n"], env)
    check("sbx session exec --session reuses the state", p.returncode == 0 and p.stdout == "6\n", p.stdout)
    p = sbx(["session", "exec", "--session", "cli-js", "--node", "console.log([1,2].map(x => x * 2).join())"], env)
    check("sbx session exec --node", p.returncode == 0 and p.stdout == "2,4\n", (p.stdout, p.stderr))
    p = sbx(["session", "cmd", "--session", "cli-1", "--", "sh", "-c", "echo out; echo err >&2; exit 7"], env)
    check("sbx session cmd: stdout, stderr and the command's exit status",
          p.returncode == 7 and p.stdout == "out\n" and p.stderr.startswith("err\n"), (p.returncode, p.stderr))
    p = sbx(["session", "cmd", "--json", "--session", "cli-1", "--", "echo", "a b"], env)
    j = json.loads(p.stdout) if p.returncode == 0 else {}
    check("sbx session cmd --json", j.get("stdout") == "a b" and j.get("exit_code") == 0 and
          j.get("session_id") == "cli-1" and j.get("session_created") is False, p.stdout)
    p = sbx(["session", "exec", "--session", "cli-1", "--timeout", "1", "--python", "while True: pass"], env)
    check("sbx session exec --timeout: exit 124 with the message",
          p.returncode == 124 and "Code execution timed out" in p.stderr, (p.returncode, p.stderr))
    p = sbx(["session", "ls"], env)
    rows = p.stdout.splitlines()
    check("sbx session ls: a header and one row per session",
          p.returncode == 0 and rows[0].split()[:2] == ["SESSION", "ID"] and
          sorted(r.split()[0] for r in rows[1:]) == ["cli-1", "cli-js"], p.stdout)
    p = sbx(["session", "stop", "cli-js"], env)
    p2 = sbx(["session", "stop", "cli-js"], env)
    check("sbx session stop: stopped, then not found (exit 1)",
          p.returncode == 0 and p.stdout == "Session cli-js stopped successfully\n" and p2.returncode == 1 and
          "not found or already stopped" in p2.stderr, (p.stdout, p2.stderr))
    p = sbx(["session", "ls"], {"MSB_SERVER_URL": s.url})
    check("without MSB_API_KEY: exit 125 with the server's 'Invalid credentials'",
          p.returncode == 125 and "Invalid credentials" in p.stderr, p.stderr)
    p = sbx(["session", "ls"], {"MSB_SERVER_URL": "http://127.0.0.1:1"})
    check("no server at MSB_SERVER_URL: exit 125 saying so", p.returncode == 125 and
          "cannot reach the sbx server at http://127.0.0.1:1" in p.stderr, p.stderr)
    p = sbx(["session", "exec", "--flavor", "huge", "--python", "1"], env)
    check("a bad flavor: exit 125 with the message", p.returncode == 125 and
          "Invalid flavor 'huge'. Valid options are: small, medium, large" in p.stderr, p.stderr)
    p = sbx(["session", "exec", "--python"], env)
    check("usage errors exit 125", p.returncode == 125 and "usage: sbx session" in p.stderr, p.stderr)

    # ---- the MCP session tools (wrapper shape: one `params` argument) -------------------------
    def mtool(name, arguments):
        code, text = http(s.url + "/mcp", {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                           "params": {"name": name, "arguments": arguments}},
                          {"Accept": "application/json, text/event-stream", "Authorization": "Bearer " + key})
        r = json.loads(text).get("result", {})
        return r.get("content", [{}])[0].get("text", ""), r.get("isError", False)

    text, err = mtool("execute_code", {"params": {"code": "z = 5\nprint(z)", "template": "python"}})
    m = re.fullmatch(r"5\n\[Session: ([0-9a-f-]{36})\] \[Time: \d+ms\] \[Template: python\] \[Success: True\]", text)
    check("execute_code: output then [Session] [Time] [Template] [Success: True]", m is not None and not err, text)
    sid = m.group(1) if m else ""
    text, err = mtool("execute_code", {"params": {"code": "import sys\nprint(z + 1)\nprint('w', file=sys.stderr)",
                                                  "session_id": sid}})
    check("execute_code reuses the session: stdout, stderr, Success: False",
          text.startswith("6\nw\n[Session: %s]" % sid) and text.endswith("[Success: False]"), text)
    text, err = mtool("execute_command", {"params": {"command": "echo hi | tr a-z A-Z; exit 3", "session_id": sid}})
    check("execute_command runs a shell line: [Command: line] [Exit Code: 3]",
          re.fullmatch(r"HI\n\[Session: %s\] \[Command: echo hi \| tr a-z A-Z; exit 3\] \[Exit Code: 3\] "
                       r"\[Time: \d+ms\] \[Success: False\]" % sid, text) is not None, text)
    text, err = mtool("execute_command", {"command": "echo flat", "session_id": sid})
    check("flat arguments are accepted too", text.startswith("flat\n[Session: %s]" % sid), text)
    text, err = mtool("get_sessions", {"params": {"session_id": sid}})
    check("get_sessions: the wrapper's block", re.fullmatch(
        r"Session ID: %s\n  Template: python\n  Flavor: small\n  Status: ready\n  Created: \S+\n"
        r"  Last Accessed: \S+\n  Namespace: default\n  Sandbox Name: session-%s" % (sid, sid[:8]), text) is not None,
        text)
    text, err = mtool("get_sessions", {})
    check("get_sessions without an id: blocks joined by a blank line", text.count("Session ID: ") == 2 and
          "\n\nSession ID: " in text, text)
    text, err = mtool("execute_code", {"params": {"code": "1", "timeout": 301}})
    check("execute_code timeout above 300: isError naming the range",
          err and "params.timeout must be between 1 and 300" in text, text)
    text, err = mtool("execute_code", {"params": {"code": "1", "template": "ruby"}})
    check("a bad template: isError with the session layer's message", err and "ruby" in text, text)
    text, err = mtool("execute_code", {"params": {"template": "python"}})
    check("a missing code: isError", err and "missing field `params.code`" in text, text)
    text, err = mtool("stop_session", {"params": {"session_id": sid}})
    text2, err2 = mtool("stop_session", {"params": {"session_id": sid}})
    check("stop_session: stopped, then not found",
          text == "Session %s stopped successfully" % sid and text2 == "Session %s not found or already stopped" % sid,
          (text, text2))
    text, err = mtool("get_volume_mappings", {})
    check("get_volume_mappings without mappings", text == "No volume mappings configured." and not err, text)

    # Over stdio: `sbx mcp` forwards the same tools to this server.
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "execute_code", "arguments": {"params": {"code": "print('via stdio')",
                                                                          "session_id": "stdio-1"}}}},
             {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "stop_session", "arguments": {"params": {"session_id": "stdio-1"}}}}]
    p = subprocess.run([SBX, "mcp"], input="".join(json.dumps(m) + "\n" for m in lines), capture_output=True,
                       text=True, timeout=60, env=dict(BASE_ENV, **env), cwd=empty)
    replies = [json.loads(l) for l in p.stdout.splitlines()]
    texts = [r.get("result", {}).get("content", [{}])[0].get("text", "") for r in replies[1:]]
    check("sbx mcp (stdio): execute_code and stop_session on the server",
          len(texts) == 2 and texts[0].startswith("via stdio\n[Session: stdio-1]") and
          texts[1] == "Session stdio-1 stopped successfully", p.stdout)

    check("graceful stop of the keyed server", stop(s) == 0)
finally:
    for s in servers:
        if s.p.poll() is None:
            s.p.kill()
            s.p.wait()
    if common.failed:
        for s in servers[:1]:
            print("# server log tail: " + open(s.state + ".log").read()[-800:].replace("\n", " | "))
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if common.failed else 0)
