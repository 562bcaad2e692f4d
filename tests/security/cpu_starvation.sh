# One sandbox tries to starve another of cpu: A runs 4 busy processes, B
# one, both at once for 3 s, each limited to 1 cpu (sbx run --cpu 1; server
# config cpus 1). B must get at least 0.6 of A's cpu time (fair: 1.0),
# and A no more than its quota (cpu <= 1.3 x wall). Control: the same two
# loads as plain host processes (no sandbox, so no cgroups between them)
# share per process, B getting ~1/4 of A: the check would fail there.
. "$(dirname "$0")/lib.sh"

cat >"$TMP/vol/burn.py" <<'PY'
import os, sys, time
k, secs = int(sys.argv[1]), float(sys.argv[2])
t0 = time.time()
for _ in range(k):
    if os.fork() == 0:
        while time.time() - t0 < secs:
            pass
        os._exit(0)
for _ in range(k):
    os.wait()
c = os.times()
print("cpu %.3f wall %.3f" % (c.children_user + c.children_system, time.time() - t0), flush=True)
PY
cpu_of() { sed -n 's/^cpu \([0-9.]*\) .*/\1/p' "$1"; }
wall_of() { sed -n 's/.* wall \([0-9.]*\)$/\1/p' "$1"; }
# fair A_OUT B_OUT: B got >= 0.6 of A's cpu time.
fair() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if a > 0 and b >= 0.6 * a else 1)" "$(cpu_of "$1")" "$(cpu_of "$2")"; }
capped() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 1.3 * float(sys.argv[2]) else 1)" "$(cpu_of "$1")" "$(wall_of "$1")"; }

body() {
    if [ "$1" = run ]; then
        "$SBX" run --cpu 1 -v "$TMP/vol:/data" -- python3 /data/burn.py 4 3 >"$TMP/a" 2>&1 </dev/null &
        local a=$!
        "$SBX" run --cpu 1 -v "$TMP/vol:/data" -- python3 /data/burn.py 1 3 >"$TMP/b" 2>&1 </dev/null
        wait $a
    else
        sb_start sec-cpu-a '"cpus": 1'
        sb_start sec-cpu-b '"cpus": 1'
        python3 "$SEC/sbxc.py" "$SRV_URL" run sec-cpu-a -- python3 /data/burn.py 4 3 >"$TMP/a" 2>&1 &
        local a=$!
        python3 "$SEC/sbxc.py" "$SRV_URL" run sec-cpu-b -- python3 /data/burn.py 1 3 >"$TMP/b" 2>&1
        wait $a
    fi
    cat "$TMP/a" "$TMP/b" >"$OUT"
    expect "both loads ran ($(tr '\n' ' ' <"$OUT"))" bash -c "[ -n '$(cpu_of "$TMP/a")' ] && [ -n '$(cpu_of "$TMP/b")' ]"
    expect "B gets at least 0.6 of A's cpu time" fair "$TMP/a" "$TMP/b"
    expect "A stays within its 1-cpu quota" capped "$TMP/a"
}
export -f fair cpu_of
python3 "$TMP/vol/burn.py" 4 3 >"$TMP/ca" &
ca=$!
python3 "$TMP/vol/burn.py" 1 3 >"$TMP/cb"
wait $ca
expect "control: unconfined, B gets less than 0.6 of A ($(cat "$TMP/ca" "$TMP/cb" | tr '\n' ' '))" bash -c "! fair $TMP/ca $TMP/cb"
both
