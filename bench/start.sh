#!/bin/bash
# Start-latency benchmark: cold start -> exit of a trivial command under
# sbx and the reference sandboxes, measured side by side in one run with
# hyperfine; medians and ratios to bwrap go to bench/results/ and, with
# --update-docs, into docs/benchmarks.md.
#
# The /bin/true launches run in ROUNDS rounds of RUNS/ROUNDS each, the
# commands' order rotated every round, and each command's times pooled:
# this VM's speed drifts by ~10% over seconds, and one block per command
# moved the sbx/bwrap ratio by up to 0.05 between runs of one build.
# Each command's block starts on a quiet machine (bench/quiet.py): bwrap
# and unshare leave their network namespaces' teardown to a kworker, and
# without the wait the next command's first few dozen launches pay for it.
set -eu
BUILD=${1:-build}
RUNS=${RUNS:-300}
ROUNDS=${ROUNDS:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
SBX="$root/$BUILD/sbx"
out="$root/bench/results"
mkdir -p "$out"
command -v hyperfine >/dev/null && command -v bwrap >/dev/null || { echo "bench: needs hyperfine and bwrap (make deps)"; exit 1; }

BW="bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc --die-with-parent"
US="unshare -Urpfmnui"
cd /tmp
names=("sbx run /bin/true" "bwrap /bin/true" "unshare /bin/true" "bare /bin/true")
cmds=("$SBX run -- /bin/true" "$BW /bin/true" "$US /bin/true" "/bin/true")
QUIET="python3 $root/bench/quiet.py"
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#names[@]}; i++)); do
        k=$(((i + r) % ${#names[@]}))
        hyperfine -N --setup "$QUIET" --warmup 10 --runs $((RUNS / ROUNDS)) --export-json "$out/start.$r.$i.json" \
            -n "${names[k]}" "${cmds[k]}" >/dev/null
    done
done
python3 - "$out" "$ROUNDS" "${#names[@]}" <<'PY'
import json, os, sys
out, rounds, ncmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
merged = {}
for r in range(rounds):
    for i in range(ncmd):
        f = os.path.join(out, "start.%d.%d.json" % (r, i))
        for res in json.load(open(f))["results"]:
            merged.setdefault(res["command"], []).extend(res["times"])
        os.remove(f)
order = ["sbx run /bin/true", "bwrap /bin/true", "unshare /bin/true", "bare /bin/true"]
json.dump({"results": [{"command": c, "times": merged[c]} for c in order]}, open(os.path.join(out, "start.json"), "w"))
PY
hyperfine -N --setup "$QUIET" --warmup 5 --runs $((RUNS / 5)) --export-json "$out/python.json" \
    -n "sbx run python3 -c pass" "$SBX run -- /usr/bin/python3 -c pass" \
    -n "bwrap python3 -c pass" "$BW /usr/bin/python3 -c pass" \
    -n "unshare python3 -c pass" "$US /usr/bin/python3 -c pass" \
    -n "bare python3 -c pass" "/usr/bin/python3 -c pass" >/dev/null
# Spaced runs: a launch after a pause, as users see it (kernel state such
# as RCU grace periods is cold), not only back to back.
hyperfine -N --runs 40 --prepare "sleep 0.2" --export-json "$out/spaced.json" \
    -n "sbx run /bin/true, spaced" "$SBX run -- /bin/true" \
    -n "bwrap /bin/true, spaced" "$BW /bin/true" >/dev/null
# CPU per launch, all CPUs, background teardown included (bench/cpu.py).
python3 "$root/bench/cpu.py" "$out/cpu.json" "$RUNS" \
    "sbx run /bin/true=$SBX run -- /bin/true" "bwrap /bin/true=$BW /bin/true" \
    "unshare /bin/true=$(command -v unshare) -Urpfmnui /bin/true" "bare /bin/true=/bin/true"
"$root/$BUILD/bench/idle_mem" 50 >"$out/idle_mem.txt"

python3 - "$out" <<'PY'
import json, statistics, sys, os
out = sys.argv[1]
rows = []
for f in ("start.json", "spaced.json", "python.json"):
    res = json.load(open(os.path.join(out, f)))["results"]
    med = {r["command"]: statistics.median(r["times"]) * 1e3 for r in res}
    ref = next(v for k, v in med.items() if k.startswith("bwrap"))
    for r in res:
        t = sorted(r["times"])
        rows.append((r["command"], med[r["command"]], t[0] * 1e3, t[int(len(t) * 0.9)] * 1e3, med[r["command"]] / ref))
mem = dict(l.split() for l in open(os.path.join(out, "idle_mem.txt")))
lines = ["| command | median ms | min ms | p90 ms | ratio to bwrap (median) |", "|---|---|---|---|---|"]
lines += ["| %s | %.2f | %.2f | %.2f | %.2f |" % r for r in rows]
cpu = json.load(open(os.path.join(out, "cpu.json")))
ref = next(c["cpu_ms"] for c in cpu if c["name"].startswith("bwrap"))
lines += ["", "CPU time per launch, all CPUs together (bench/cpu.py: /proc/stat busy time over back-to-back launches, less the idle machine's; the launcher's own share is in every row, and the work a launch leaves running, such as sbx's reaper tearing the sandbox down, is counted):", "",
          "| command | CPU ms per launch | wall ms per launch | CPU ratio to bwrap |", "|---|---|---|---|"]
lines += ["| %s | %.2f | %.2f | %.2f |" % (c["name"], c["cpu_ms"], c["wall_ms"], c["cpu_ms"] / ref) for c in cpu]
lines += ["", "A command in a pre-created (live) sandbox, through the engine API: /bin/true %.2f ms, python3 -c pass %.2f ms (medians)." % (float(mem["exec_true_ms"]), float(mem["exec_python_ms"]))]
lines += ["", "Idle memory per live sandbox (%s sandboxes): %.0f KiB of host memory each (the drop in free memory, kernel objects included: the median of 5 rounds, as free memory also moves on its own in this VM), and the init process's PSS is %.0f KiB (pages it shares with its creator count in part, though they were there before)." % (mem["sandboxes"], float(mem["host_kib_per_sandbox"]), float(mem["init_pss_kib"]))]
table = "\n".join(lines)
open(os.path.join(out, "table.md"), "w").write(table + "\n")
print(table)
PY
if [ "${2:-}" = "--update-docs" ]; then
    python3 - "$root/docs/benchmarks.md" "$out/table.md" <<'PY'
import sys, re, datetime, platform
doc, table = sys.argv[1], open(sys.argv[2]).read()
s = open(doc).read()
start, end = "<!-- results:start -->", "<!-- results:end -->"
stamp = "Measured %s on %s (%s), one run of bench/start.sh.\n\n" % (datetime.date.today(), platform.node(), platform.release())
s = s[: s.index(start) + len(start)] + "\n" + stamp + table + s[s.index(end):]
open(doc, "w").write(s)
PY
fi
