#!/usr/bin/python3
"""A small JSON-RPC client for the escape suite (stdlib only).

  sbxc.py URL health                     exit 0 when /api/v1/health answers 200
  sbxc.py URL call METHOD [PARAMS_JSON|@FILE]
                                         prints the result (JSON); exit 0, or
                                         prints the error body and exits 1
  sbxc.py URL run SANDBOX [--timeout S] -- CMD [ARG...]
                                         sandbox.command.run: the command's
                                         stdout/stderr lines on ours, its exit
                                         code as ours (125: the call failed)
"""
import json, sys, urllib.error, urllib.request


def http(url, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call(url, method, params):
    code, text = http(url + "/api/v1/rpc", {"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    try:
        body = json.loads(text)
    except ValueError:
        body = {"error": text}
    return code, body


def main():
    url, what = sys.argv[1], sys.argv[2]
    if what == "health":
        try:
            code, _ = http(url + "/api/v1/health", timeout=30)
        except OSError as e:
            print("health: %s" % e, file=sys.stderr)
            return 1
        return 0 if code == 200 else 1
    if what == "call":
        arg = sys.argv[4] if len(sys.argv) > 4 else "{}"
        params = json.loads(open(arg[1:]).read() if arg.startswith("@") else arg)
        code, body = call(url, sys.argv[3], params)
        if code == 200 and "result" in body:
            print(json.dumps(body["result"]))
            return 0
        print(json.dumps({"http": code, "body": body}))
        return 1
    if what == "run":
        args = sys.argv[3:]
        name, timeout = args[0], None
        args = args[1:]
        if args[:1] == ["--timeout"]:
            timeout, args = float(args[1]), args[2:]
        if args[:1] == ["--"]:
            args = args[1:]
        params = {"sandbox": name, "command": args[0], "args": args[1:]}
        if timeout:
            params["timeout"] = timeout
        code, body = call(url, "sandbox.command.run", params)
        if code != 200 or "result" not in body:
            print("sbxc: command.run failed: %d %s" % (code, json.dumps(body)[:2000]), file=sys.stderr)
            return 125
        res = body["result"]
        for line in res["output"]:
            (sys.stdout if line["stream"] == "stdout" else sys.stderr).write(line["text"] + "\n")
        return res["exit_code"]
    print("sbxc: unknown request %s" % what, file=sys.stderr)
    return 2


try:
    sys.exit(main())
except OSError as e:  # no answer at all: say so in one line
    print("sbxc: %s: %s" % (type(e).__name__, e), file=sys.stderr)
    sys.exit(125)
