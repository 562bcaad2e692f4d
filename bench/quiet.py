#!/usr/bin/env python3
"""Waits until the machine is quiet: two 100 ms samples of /proc/stat in a
row with all CPUs together at most 3% busy (at most 5 s).

bench/start.sh runs it before each command's block of launches. bwrap and
unshare leave kernel work behind them (above all the teardown of each
network namespace, done later by a kworker); without the wait, the first
few dozen launches of the next block pay for it (measured here: sbx's
first launches after 60 of bwrap's ~0.1 ms slower). Within its own block
each command still pays for its own."""
import time


def busy_idle():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v) - v[3] - v[4], v[3] + v[4]


def main():
    deadline = time.monotonic() + 5
    calm = 0
    b0, i0 = busy_idle()
    while calm < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        b1, i1 = busy_idle()
        total = (b1 - b0) + (i1 - i0)
        calm = calm + 1 if total and (b1 - b0) <= 0.03 * total else 0
        b0, i0 = b1, i1


if __name__ == "__main__":
    main()
