# sbx REPL driver for Python, run as `python3 -u -c <this>` inside a sandbox.
#
# It talks to the host over fd 3 with frames: a 4-byte little-endian length,
# then a JSON object. Requests: {"code": str, "mode": 0|1}. Replies, in
# order: {"t":"out","s":1|2,"d":str}... then optionally {"t":"value","d":repr}
# and {"t":"error","name","value","tb"}, then {"t":"done"}. The host never
# parses anything the code prints, so no output can break the framing.
#
# The user's code runs in its own globals dict; nothing defined here is
# visible to it. Interrupts (SIGINT from the host on a timeout) only raise
# while user code runs, never half-way through writing a frame.
import ast
import builtins
import inspect
import io
import json
import linecache
import os
import signal
import struct
import sys
import traceback

_FD = 3
_state = {"user": False, "pending": False}


def _send(obj):
    data = json.dumps(obj).encode("utf-8", "surrogatepass")
    buf = struct.pack("<I", len(data)) + data
    was = _state["user"]
    _state["user"] = False  # no KeyboardInterrupt in the middle of a frame
    try:
        view = memoryview(buf)
        while view:
            n = os.write(_FD, view)
            view = view[n:]
    finally:
        _state["user"] = was
    if was and _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt


def _readn(n):
    b = bytearray()
    while len(b) < n:
        c = os.read(_FD, n - len(b))
        if not c:
            os._exit(0)  # the host is gone
        b += c
    return bytes(b)


def _recv():
    (n,) = struct.unpack("<I", _readn(4))
    return json.loads(_readn(n))


def _on_sigint(signum, frame):
    if _state["user"]:
        raise KeyboardInterrupt
    _state["pending"] = True


class _Out(io.TextIOBase):
    """sys.stdout/sys.stderr: each write becomes one frame on its stream."""

    def __init__(self, stream):
        self._s = stream

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "surrogateescape"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._s  # the real fd 1/2 (host pipes), for subprocesses

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if text:
            _send({"t": "out", "s": self._s, "d": text})
        return len(text)

    def flush(self):
        pass


_globals = {"__name__": "__main__", "__doc__": None, "__builtins__": builtins}
_loop = None


def _exec(code):
    global _loop
    r = eval(code, _globals)
    if code.co_flags & inspect.CO_COROUTINE:  # top-level await
        if _loop is None:
            import asyncio

            _loop = asyncio.new_event_loop()
        r = _loop.run_until_complete(r)
    return r


def _error(e, syntax=False):
    if syntax:
        tb = "".join(traceback.format_exception_only(type(e), e))
    else:
        t = e.__traceback__
        # Drop this driver's own frames from the top of the traceback.
        while t is not None and t.tb_frame.f_code.co_filename != "<stdin>":
            t = t.tb_next
        tb = "".join(traceback.format_exception(type(e), e, t))
    _send({"t": "error", "name": type(e).__name__, "value": str(e), "tb": tb})


def _run(req):
    src = req.get("code", "")
    mode = req.get("mode", 0)
    linecache.cache["<stdin>"] = (len(src), None, src.splitlines(True), "<stdin>")
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    # Compile everything before running anything: a syntax error anywhere
    # comes back at once and nothing runs.
    try:
        tree = ast.parse(src, "<stdin>", "exec")
        last = None
        if mode == 1 and tree.body and isinstance(tree.body[-1], ast.Expr):
            last = compile(ast.Expression(tree.body.pop().value), "<stdin>", "eval", flags)
        if mode == 0:
            codes = [compile(ast.Interactive([n]), "<stdin>", "single", flags) for n in tree.body]
        else:
            codes = [compile(tree, "<stdin>", "exec", flags)]
    except (SyntaxError, ValueError) as e:
        _error(e, syntax=isinstance(e, SyntaxError))
        return
    try:
        _state["user"] = True
        for c in codes:  # "single" mode echoes each expression statement's value
            _exec(c)
        if last is not None:
            v = _exec(last)
            _state["user"] = False
            if v is not None:
                builtins._ = v
                _send({"t": "value", "d": repr(v)})
    except BaseException as e:  # SystemExit and KeyboardInterrupt included: the REPL lives on
        _state["user"] = False
        _error(e)
    finally:
        _state["user"] = False
        _state["pending"] = False


def _main():
    signal.signal(signal.SIGINT, _on_sigint)
    sys.stdout = _Out(1)
    sys.stderr = _Out(2)
    sys.stdin = open(os.devnull)
    sys.argv = [""]
    sys.ps1 = sys.ps2 = ""
    _send({"t": "ready"})
    while True:
        req = _recv()
        try:
            _run(req)
        except KeyboardInterrupt:
            pass
        _send({"t": "done"})


_main()
