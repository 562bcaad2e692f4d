#!/usr/bin/env python3
"""A/B of two launch commands, for changes worth a few hundredths of a ms.

usage: ab.py [RUNS [BLOCK]] 'A CMD' 'B CMD'
  e.g. ab.py 3000 50 '/tmp/old/build/sbx run -- /bin/true' 'build/sbx run -- /bin/true'
  (each command one argument, split on spaces; leading KEY=VALUE words go
  to its environment; RUNS per command, default 3000; BLOCK launches per
  block, default 50)

Why blocks, not A B A B: a launch leaves work behind (its teardown, the
kernel's deferred frees) that the next launch pays for. Alternating single
launches charges each command for the other's leftovers, so a change to
that work shows up on the wrong side. Back to back in blocks, each command
follows itself, as in a benchmark; blocks alternate (ABBA) so that drift of
the machine hits both, and each block is summarised by its median.

Prints each command's median of block medians, then B - A over the block
pairs: mean, its standard error, and median. On the 2-vCPU dev VM, 3000
runs each give a standard error of ~0.01 ms."""
import os
import statistics
import sys
import time


def parse(args):
    nums = [int(a) for a in args if a.isdigit()]
    words = [a for a in args if not a.isdigit()]
    runs = nums[0] if nums else 3000
    block = nums[1] if len(nums) > 1 else 50
    if len(words) != 2 or len(nums) > 2 or block < 4 or runs < 2 * block:
        sys.exit(__doc__)
    cmds = []
    for w in words:
        env, argv = dict(os.environ), w.split()
        while argv and "=" in argv[0] and not argv[0].startswith("/"):
            k, v = argv.pop(0).split("=", 1)
            env[k] = v
        if not argv:
            sys.exit(__doc__)
        cmds.append((env, argv))
    return runs, block, cmds


def launch(argv, env):
    t = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env)
    _, status = os.waitpid(pid, 0)
    if status:
        sys.exit("ab.py: %s failed (wait status %d)" % (" ".join(argv), status))
    return time.perf_counter() - t


def main():
    runs, block, cmds = parse(sys.argv[1:])
    medians = [[], []]
    for r in range(runs // block):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            env, argv = cmds[i]
            t = [launch(argv, env) for _ in range(block)]
            medians[i].append(statistics.median(t[3:]) * 1e3)  # the first follow the other command
    for (env, argv), m in zip(cmds, medians):
        extra = " ".join("%s=%s" % (k, v) for k, v in env.items() if os.environ.get(k) != v)
        print("%-60s %.3f ms" % ((extra + " " + " ".join(argv)).strip()[:60], statistics.median(m)))
    d = [(b - a) * 1e3 for a, b in zip(*medians)]
    print("B - A: mean %+.1f us (standard error %.1f us, %d block pairs), median %+.1f us"
          % (statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5, len(d), statistics.median(d)))


if __name__ == "__main__":
    main()
