"""What the HTTP test scripts share: the check line printer with its
failure count, and a server started on a free loopback port."""
import os, signal, subprocess, time

SBX = os.environ["SBX"]
failed = 0


def check(name, cond, detail=""):
    global failed
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failed += 1
        if detail != "":
            print("#   " + str(detail)[:600].replace("\n", " | "))


class Server:
    """`sbx server start --port 0` with its own state dir; the log goes
    to <state>.log."""

    def __init__(self, state, dev=False, env=None, cwd=None, args=()):
        self.state, self.dev, self.cwd, self.args = state, dev, cwd, list(args)
        self.env = dict(os.environ, **(env or {}))

    def start(self):
        args = [SBX, "server", "start", "--port", "0", "--state-dir", self.state] + (["--dev"] if self.dev else []) + self.args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.state + ".log", "a"), text=True,
                                  env=self.env, cwd=self.cwd)
        line = self.p.stdout.readline()
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port
        return self

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        return self.p.wait(timeout=30)


def wait_for(cond, seconds):
    """Polls cond() until it is true or `seconds` pass; returns its last value."""
    end = time.time() + seconds
    while True:
        v = cond()
        if v or time.time() >= end:
            return v
        time.sleep(0.05)
