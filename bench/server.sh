#!/bin/bash
# Server benchmark: starts `sbx server --dev` on a free loopback port with
# a scratch state dir, runs bench/server_bench.c against it (and the same
# work in process), stops the server and removes the scratch state. With
# --update-docs the table goes into docs/benchmarks.md.
set -eu
BUILD=${1:-build}
N=${N:-500}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bench/results"
mkdir -p "$out"
state=$(mktemp -d /tmp/sbx-bench.XXXXXX)
"$root/$BUILD/sbx" server start --dev --port 0 --state-dir "$state/srv" --log-level error >"$state/port" 2>"$state/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do grep -q listening "$state/port" && break; sleep 0.05; done
url="http://$(sed -n 's/.*listening on //p' "$state/port")"
"$root/$BUILD/bench/server_bench" "$url" "$N" "$state" | tee "$out/server.md"
if [ "${2:-}" = "--update-docs" ]; then
    python3 - "$root/docs/benchmarks.md" "$out/server.md" <<'PY'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read().strip()
s = open(doc).read()
start, end = "<!-- server:start -->", "<!-- server:end -->"
a, b = s.index(start) + len(start), s.index(end)
open(doc, "w").write(s[:a] + "\n" + table + "\n" + s[b:])
PY
fi
