#!/usr/bin/env python3
"""CPU time per launch, all CPUs together: what a launch costs the machine,
including work that outlives it (a reaper's teardown, kworkers, RCU
callbacks), which a wall-clock benchmark misses and which, on a small
machine, the next launch pays for.

usage: cpu.py OUT.json RUNS NAME=CMD... (CMD split on spaces)

Each command runs RUNS times back to back after a warm-up; the busy time
of /proc/stat (everything but idle and iowait) over the block, less the
machine's busy rate measured while idle just before, divided by RUNS.
/proc/stat counts in clock ticks (10 ms), so RUNS of a few hundred give
~0.03 ms resolution."""
import json
import os
import sys
import time


def busy_ticks():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v) - v[3] - v[4]


def launch(argv):
    os.waitpid(os.posix_spawnp(argv[0], argv, os.environ), 0)


def main():
    out, runs = sys.argv[1], int(sys.argv[2])
    hz = os.sysconf("SC_CLK_TCK")
    results = []
    for spec in sys.argv[3:]:
        name, cmd = spec.split("=", 1)
        argv = cmd.split()
        for _ in range(20):
            launch(argv)
        time.sleep(0.5)  # the warm-up's leftovers settle
        b0, t0 = busy_ticks(), time.monotonic()
        time.sleep(1.0)
        idle_rate = (busy_ticks() - b0) / hz / (time.monotonic() - t0)
        b0, t0 = busy_ticks(), time.monotonic()
        for _ in range(runs):
            launch(argv)
        wall = time.monotonic() - t0
        time.sleep(0.3)  # what the last launches left running finishes
        span = time.monotonic() - t0
        cpu = (busy_ticks() - b0) / hz - idle_rate * span
        results.append({"name": name, "command": cmd, "cpu_ms": cpu / runs * 1e3, "wall_ms": wall / runs * 1e3})
    json.dump(results, open(out, "w"), indent=1)


main()
