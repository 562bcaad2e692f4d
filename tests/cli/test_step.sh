# The step runner (`sbx run` with step options, src/step/): one step
# matrix run against every backend (local in process, sbx against a test
# server started here; e2b and daytona against that server's front
# doors), then what belongs to no backend: step files and the example
# pipeline, micromamba staging, bad input, the engine's fast path.
#
# Adding a backend to the matrix is one word in BACKENDS plus its
# backend_env_<name> (and, for a remote one, backend_closed_env_<name>,
# which points it at a closed port). Every backend's kept (debug) and lost
# sandboxes are reached again by `sbx exec` and removed by `sbx rm`.
. "$(dirname "$0")/lib.sh"
RC=0
: >"$OUT"; : >"$ERR"
for v in $(env | sed -n 's/^\(METAFLOW_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset MSB_SERVER_URL MSB_API_KEY SBX_STEP_NAMESPACE SBX_MICROMAMBA_URL
export SBX_RUNS_DIR="$TMP/runs"
export METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR="$TMP/mcache0" # empty: nothing cached

SRV_PID="" SRV_URL="" HTTP_PID=""
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null && wait "$HTTP_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---- the test server (sbx backend; e2b and daytona front doors) ---------------
start_server() {
    "$SBX" server start --dev --port 0 --state-dir "$TMP/state" >"$TMP/srv.out" 2>>"$TMP/srv.log" &
    SRV_PID=$!
    for _ in $(seq 300); do
        grep -q "listening on" "$TMP/srv.out" 2>/dev/null && break
        sleep 0.1
    done
    SRV_URL="http://127.0.0.1:$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$TMP/srv.out")"
}
stop_server() {
    kill "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=""
}
# A port nothing listens on: bound, then closed.
CLOSED_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server

# ---- backends: one line each, with what each needs ---------------------------
BACKENDS="local sbx e2b daytona"
backend_env_local() { :; }
backend_env_sbx() { export MSB_SERVER_URL="$SRV_URL"; }
backend_closed_env_sbx() { export MSB_SERVER_URL="http://127.0.0.1:$CLOSED_PORT"; }
backend_env_e2b() { export E2B_API_URL="$SRV_URL" E2B_SANDBOX_URL="$SRV_URL" E2B_API_KEY=x; }
backend_closed_env_e2b() { export E2B_API_URL="http://127.0.0.1:$CLOSED_PORT" E2B_SANDBOX_URL="http://127.0.0.1:$CLOSED_PORT"; }
backend_env_daytona() { export DAYTONA_API_URL="$SRV_URL/api" DAYTONA_API_KEY=x; }
backend_closed_env_daytona() { export DAYTONA_API_URL="http://127.0.0.1:$CLOSED_PORT/api"; }
unset E2B_DOMAIN E2B_DEBUG DAYTONA_SERVER_URL DAYTONA_JWT_TOKEN DAYTONA_ORGANIZATION_ID DAYTONA_TARGET
# How many sandboxes the test server's e2b and daytona front doors list.
front_door_sandboxes() {
    python3 - "$SRV_URL" <<'EOF'
import json, sys, urllib.request
n = 0
for path, hdr in (("/v2/sandboxes", ("X-API-KEY", "x")), ("/api/sandbox", ("Authorization", "Bearer x"))):
    rq = urllib.request.Request(sys.argv[1] + path, headers=dict([hdr]))
    j = json.load(urllib.request.urlopen(rq, timeout=30))
    n += len(j if isinstance(j, list) else j.get("items", []))
print(n)
EOF
}

# ---- helpers --------------------------------------------------------------------
# run_id: the id in the summary line of the last run (stderr)
run_id() { sed -n 's/^sbx: run \([0-9a-f-]*\): .*/\1/p' "$ERR" | tail -1; }
# rec ID EXPR: a Python expression over the record r, printed
rec() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$SBX_RUNS_DIR/$1/record.json" 2>/dev/null; }
rec_is() { [ "$(rec "$1" "$2")" = "$3" ]; }
n_runs() { ls "$SBX_RUNS_DIR" 2>/dev/null | wc -l; }
# wait_record_sandbox: the sandbox of the newest running record, once it has one
wait_record_sandbox() {
    for _ in $(seq 300); do
        s=$(python3 - "$SBX_RUNS_DIR" <<'EOF' 2>/dev/null
import json, os, sys
d = sys.argv[1]
for i in sorted(os.listdir(d), reverse=True):
    try:
        r = json.load(open(os.path.join(d, i, "record.json")))
    except Exception:
        continue
    a = r["attempts"]
    if r["status"] == "running" and a and a[-1].get("sandbox") and a[-1].get("logs"):
        print(i, a[-1]["sandbox"], len(a))
        break
EOF
)
        [ -n "$s" ] && { echo "$s"; return 0; }
        sleep 0.1
    done
    return 1
}

WORK="$TMP/work"
mkdir -p "$WORK/.git" "$WORK/sub" "$WORK/__pycache__"
cd "$WORK" || exit 1
echo 'print("code package here")' >hello.py
echo "nested" >sub/nested.txt
echo "not packed" >.git/HEAD
echo "not packed" >__pycache__/x.pyc
echo "big.bin" >.sbxignore
echo "ignored by .sbxignore" >big.bin
printf 'line one\nline two\n' >"$TMP/input.txt"
echo '{"a": 1}' >"$TMP/conf.json"

# ---- the matrix ----------------------------------------------------------------
step_matrix() {
    local b=$1 id sb
    ( # each backend in a subshell: its variables stay its own
    "backend_env_$b"
    T="[$b]"

    # everything a successful step does
    METAFLOW_SANDBOX_UPLOADS="[\"$TMP/conf.json\"]" \
    sbx_run --backend "$b" --name ok -e GREETING=hello --upload "$TMP/input.txt:data/in.txt" --output out.txt \
        --output sub/made.txt -- sh -c 'echo "env GREETING=$GREETING"; python3 hello.py; cat data/in.txt conf.json;
            cat sub/nested.txt; ls -a; echo err-line >&2; echo result-$SBX_STEP_ATTEMPT >out.txt; echo made >sub/made.txt'
    id=$(run_id)
    check "$T a step succeeds (exit 0)" rc_is 0
    check "$T output streams with the step's prefix" out_has "^\[ok\] code package here"
    check "$T stderr streams to stderr" err_has "^\[ok\] err-line"
    check "$T env reaches the step" out_has "^\[ok\] env GREETING=hello"
    check "$T the working directory is the code package" out_has "^\[ok\] nested"
    check "$T ignored files stay out of the package (.git, __pycache__, .sbxignore)" \
        bash -c "! grep -qE '\] (\.git|__pycache__|big\.bin)$' $OUT"
    check "$T --upload arrives with its contents" bash -c "grep -q '^\[ok\] line one' $OUT && grep -q '^\[ok\] line two' $OUT"
    check "$T METAFLOW_SANDBOX_UPLOADS arrives with its contents" out_has '^\[ok\] {"a": 1}'
    check "$T outputs come back into the artifacts dir" bash -c \
        "[ \"\$(cat artifacts/out.txt)\" = result-1 ] && [ \"\$(cat artifacts/sub/made.txt)\" = made ]"
    check "$T record: succeeded, verdict ok, exit 0, one attempt" bash -c \
        "[ \"$(rec "$id" '(r["status"], r["verdict"], r["exit_code"], len(r["attempts"]))')\" = \"('succeeded', 'ok', 0, 1)\" ]"
    check "$T record: spec, backend, launcher, times, sandbox, cpu time, peak memory" bash -c \
        "[ \"$(rec "$id" 'all([r["backend"] == "'"$b"'", r["spec"]["command"][0] == "sh", r["launcher"]["pid"] > 0,
            r["created_at"] < r["finished_at"], r["attempts"][0]["sandbox"], r["attempts"][0]["verdict"] == "ok",
            r["attempts"][0]["exit_code"] == 0, "cpu_usec" in r, "memory_peak" in r])')\" = True ]"
    check "$T record: the logs hold the step's output" bash -c \
        "grep -q 'code package here' \"$(rec "$id" 'r["logs"]["stdout"]')\" && grep -q err-line \"$(rec "$id" 'r["logs"]["stderr"]')\""
    check "$T record: outputs listed as collected" rec_is "$id" '[o["status"] for o in r["outputs"]]' "['collected', 'collected']"
    check "$T sbx runs show prints the record" bash -c "$SBX runs show $id | grep -q '\"status\": \"succeeded\"'"
    check "$T sbx runs ls lists it" bash -c "$SBX runs ls | grep -q '^$id .*succeeded'"

    sbx_run --backend "$b" --output never-written.txt -- true
    id=$(run_id)
    check "$T a declared output the step did not write fails it (exit 1), naming it" bash -c \
        "[ $RC = 1 ] && grep -q 'declared output not produced: never-written.txt' $ERR"
    check "$T ... recorded as missing" rec_is "$id" '(r["verdict"], r["outputs"][0]["status"])' "('user', 'missing')"

    # the step's own failures: never retried
    METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend "$b" -- sh -c 'echo failing; exit 3'
    id=$(run_id)
    check "$T a non-zero exit passes through" rc_is 3
    check "$T ... is a user failure, said so, not retried" bash -c \
        "grep -q 'user failure, not retried; 1 attempt' $ERR && [ \"$(rec "$id" '(r["status"], r["verdict"], len(r["attempts"]))')\" = \"('failed', 'user', 1)\" ]"

    METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend "$b" --timeout 1 -- sleep 30
    id=$(run_id)
    check "$T timeout -> 124" rc_is 124
    check "$T ... not retried, recorded as the user's" bash -c \
        "grep -q 'timed out after 1 s' $ERR && [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]), r["attempts"][0]["timed_out"])')\" = \"('user', 1, True)\" ]"

    # 1024 MB: a size every backend can give (daytona sizes in GiB, e2b by template)
    METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend "$b" --memory 1024 -- python3 -c 'x = bytearray(2048 << 20); print("survived")'
    id=$(run_id)
    check "$T OOM -> 137" rc_is 137
    check "$T ... not retried, recorded as the user's" bash -c \
        "! grep -q survived $OUT && [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]), r["exit_code"])')\" = \"('user', 1, 137)\" ]"

    sbx_run --backend "$b" --memory 1024 -- python3 -c 'x = bytearray(600 << 20); print("fits", len(x) >> 20)'
    check "$T memory under the limit is usable" bash -c "[ $RC = 0 ] && grep -q 'fits 600' $OUT"

    # two busy processes for 1.5 s: at most 1 CPU's worth under --cpu 1.
    # E2B sizes a sandbox by its template (2 vCPUs on sbx's front door) and
    # cannot limit one below it: an asked-for cpu that is not the
    # template's is refused, naming the template's size, not retried.
    if [ "$b" = e2b ]; then
        METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend "$b" --cpu 1 -- true
        id=$(run_id)
        check "$T --cpu 1 is refused: the template gives 2 vCPUs and nothing would enforce 1" bash -c \
            "[ $RC = 125 ] && grep -q \"e2b: cpu 1 cannot be honoured: template 'base' gives 2 vCPUs and 1024 MiB\" $ERR &&
             grep -q 'nothing would hold the step to less than its template' $ERR &&
             [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]))')\" = \"('refused', 1)\" ]"
    else
    sbx_run --backend "$b" --cpu 1 --prefix '' -- python3 -c '
import os, time
t = time.time()
kids = []
for i in range(2):
    p = os.fork()
    if p == 0:
        while time.time() - t < 1.5: pass
        os._exit(0)
    kids.append(p)
for p in kids: os.waitpid(p, 0)
c = os.times(); print(c.children_user + c.children_system, time.time() - t)'
    check "$T the cpu limit holds (cpu <= 1 x wall + slack)" bash -c \
        "read cpu wall < $OUT && python3 -c \"import sys; sys.exit(0 if \$cpu <= 1.0 * \$wall + 0.3 else 1)\""
    fi

    # a missing upload: an error before anything is created
    before=$(n_runs)
    sbx_run --backend "$b" --upload "$TMP/no-such-file" -- true
    check "$T a missing upload fails at once (125) naming the file" bash -c "[ $RC = 125 ] && grep -q 'no-such-file' $ERR"
    check "$T ... before any sandbox or record" bash -c "[ $(n_runs) = $before ] && ! grep -q 'attempt' $ERR"
    before=$(n_runs)
    METAFLOW_SANDBOX_UPLOADS="[\"$TMP/missing.csv\"]" sbx_run --backend "$b" -- true
    check "$T a missing METAFLOW_SANDBOX_UPLOADS file fails at once" bash -c \
        "[ $RC = 125 ] && grep -q 'missing.csv' $ERR && [ $(n_runs) = $before ]"

    # debug mode keeps the sandbox and writes the dump
    METAFLOW_SANDBOX_DEBUG="$TMP/debug-$b" sbx_run --backend "$b" --name dbg -e API_TOKEN=s3cr3t-value -- \
        sh -c 'echo kept-here > marker.txt; echo debug run'
    id=$(run_id)
    sb=$(rec "$id" 'r["debug"]["sandbox"]')
    check "$T debug: the step ran" bash -c "[ $RC = 0 ] && grep -q 'debug run' $OUT"
    check "$T debug: the dump holds the script and the environment" bash -c \
        "grep -q \"'sh' '-c'\" $TMP/debug-$b/$id/step.sh && grep -q '^API_TOKEN=\*\*\*\*$' $TMP/debug-$b/$id/env"
    check "$T debug: secrets are masked in the dump and the record" bash -c \
        "! grep -rq s3cr3t-value $TMP/debug-$b $SBX_RUNS_DIR/$id/record.json"
    hint=$(rec "$id" 'r["debug"]["shell"]')
    check "$T debug: it says how to get a shell in the kept sandbox" bash -c \
        "[ -n \"$sb\" ] && [ -n \"\$1\" ] && grep -qF \"sandbox $sb was kept: \$1\" $ERR" _ "$hint"
    check "$T debug: the way in is sbx exec" bash -c "[ -z \"\${1##*sbx exec $sb *}\" ]" _ "$hint"
    # every backend is reached again by sbx exec / sbx rm (its attach)
    "$SBX" exec "$sb" -- sh -c 'cat marker.txt' >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    check "$T debug: the kept sandbox answers sbx exec after the launcher exited" bash -c "[ $RC = 0 ] && grep -q kept-here $OUT"
    "$SBX" exec "$sb" -- sh -c 'exit 5' >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    check "$T debug: sbx exec passes the exit status through" rc_is 5
    if [ "$b" = local ]; then
        echo 'echo "via stdin in $PWD"' | "$SBX" exec "$sb" -- sh >"$OUT" 2>"$ERR"
        RC=$?
        check "$T debug: sbx exec -- sh reads this terminal's stdin" bash -c \
            "[ $RC = 0 ] && grep -q 'via stdin in /tmp/sbx-step/code' $OUT"
    fi
    "$SBX" rm "$sb" >"$OUT" 2>"$ERR"
    RC=$?
    check "$T debug: sbx rm removes it" rc_is 0
    "$SBX" exec "$sb" -- true >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    check "$T debug: ... after which sbx exec finds nothing" bash -c "[ $RC != 0 ]"

    # an infrastructure failure: a backend that cannot be reached
    if type "backend_closed_env_$b" >/dev/null 2>&1; then
        ( "backend_closed_env_$b"
          METAFLOW_SANDBOX_MAX_INFRA_RETRIES=2 sbx_run --backend "$b" -- echo never
          id=$(run_id)
          check "$T unreachable backend: retried exactly MAX_INFRA_RETRIES times, then 125" bash -c \
              "[ $RC = 125 ] && [ \"$(rec "$id" '[a["verdict"] for a in r["attempts"]]')\" = \"['infra', 'infra', 'infra']\" ]"
          check "$T ... the message says infrastructure and the attempts" err_has "infrastructure failure after 3 attempts"
          check "$T ... the record says infra" rec_is "$id" '(r["status"], r["verdict"], r["exit_code"])' "('failed', 'infra', 125)"
          METAFLOW_SANDBOX_MAX_INFRA_RETRIES=0 sbx_run --backend "$b" -- echo never
          check "$T ... with MAX_INFRA_RETRIES=0 one attempt only" bash -c \
              "[ $RC = 125 ] && grep -q 'after 1 attempt on' $ERR" )
    fi
    )
}

for b in $BACKENDS; do
    step_matrix "$b"
done

# ---- infrastructure failures mid-run ----------------------------------------------
# local: the sandbox vanishes (its processes killed from outside) during
# attempt 1; attempt 2 runs on a fresh sandbox and succeeds.
cgroup_procs() {
    for c in memory pids unified; do
        [ -f "/sys/fs/cgroup/$c/${SBX_CGROUP_NAME:-sbx}/$1/cgroup.procs" ] &&
            { cat "/sys/fs/cgroup/$c/${SBX_CGROUP_NAME:-sbx}/$1/cgroup.procs"; return; }
    done
    cat "/sys/fs/cgroup/${SBX_CGROUP_NAME:-sbx}/$1/cgroup.procs" 2>/dev/null
}
"$SBX" run --backend local --name vanish -- sh -c 'if [ "$SBX_STEP_ATTEMPT" = 1 ]; then echo first; sleep 60; fi; echo attempt $SBX_STEP_ATTEMPT' \
    >"$OUT" 2>"$ERR" </dev/null &
L=$!
set -- $(wait_record_sandbox)
id=$1 sb=$2
for p in $(cgroup_procs "$sb"); do kill -9 "$p" 2>/dev/null; done
wait $L
RC=$?
check "[local] a sandbox that vanishes mid-run is retried on a fresh one" bash -c "[ $RC = 0 ] && grep -q 'attempt 2' $OUT"
check "[local] ... attempt 1 recorded as infra, attempt 2 ok" rec_is "$id" '[a["verdict"] for a in r["attempts"]]' "['infra', 'ok']"
check "[local] ... the retry is announced" err_has "attempt 1 of 2 on local: infrastructure failure"

# sbx: the server is killed (-9) while the step runs: infra, retried, and
# the retry finds no server.
MSB_SERVER_URL="$SRV_URL" "$SBX" run --backend sbx --name srvkill -- sh -c 'echo started; sleep 60' >"$OUT" 2>"$ERR" </dev/null &
L=$!
set -- $(wait_record_sandbox)
id=$1
{ kill -9 "$SRV_PID" && wait "$SRV_PID"; } 2>/dev/null
SRV_PID=""
wait $L
RC=$?
check "[sbx] server killed mid-run: infra, retried exactly once, then 125" bash -c \
    "[ $RC = 125 ] && [ \"$(rec "$id" '[a["verdict"] for a in r["attempts"]]')\" = \"['infra', 'infra']\" ]"
check "[sbx] ... the message says infrastructure after 2 attempts" err_has "infrastructure failure after 2 attempts on sbx"
start_server

# ---- a killed launcher: the record is completed as lost ------------------------------
for b in $BACKENDS; do
    (
    "backend_env_$b"
    "$SBX" run --backend "$b" --name killed -- sleep 60 >"$OUT" 2>"$ERR" </dev/null &
    L=$!
    set -- $(wait_record_sandbox)
    id=$1 sb=$2
    kill -9 $L
    wait $L 2>/dev/null
    check "[$b] killed launcher: sbx runs show marks the run lost" bash -c "$SBX runs show $id | grep -q '\"status\": \"lost\"'"
    check "[$b] ... and completes its attempt as lost" rec_is "$id" '(r["verdict"], r["attempts"][-1]["verdict"], bool(r["finished_at"]))' "('lost', 'lost', True)"
    check "[$b] ... sbx runs ls shows it lost" bash -c "$SBX runs ls | grep -q '^$id .*lost'"
    [ "$b" != local ] && check "[$b] ... the record names the sandbox that may remain" \
        bash -c "$SBX runs show $id | grep -q 'may still exist (sbx rm $sb)'"
    # a remote sandbox outlives its launcher: sbx rm finds it by the record
    if [ "$b" != local ]; then
        "$SBX" rm "$sb" >"$OUT" 2>"$ERR"
        RC=$?
        check "[$b] ... sbx rm removes the sandbox the lost run left" rc_is 0
    fi
    )
done
# The local sandbox died with its launcher; an engine start sweeps its cgroups.
"$SBX" run -- true

# ---- interrupts: a signal to the launcher stops the step, removes its sandbox ----
# sandbox_gone BACKEND ID: no cgroup of a local sandbox is left; the test
# server lists no such sandbox in any namespace (sbx, e2b, daytona).
sandbox_gone() {
    if [ "$1" = local ]; then
        ! find /sys/fs/cgroup -maxdepth 4 -name "$2" 2>/dev/null | grep -q .
        return
    fi
    python3 - "$SRV_URL" "$2" <<'EOF'
import json, sys, urllib.request
rq = urllib.request.Request(sys.argv[1] + "/api/v1/rpc", headers={"Content-Type": "application/json"},
    data=json.dumps({"jsonrpc": "2.0", "method": "sandbox.list", "params": {"namespace": "*"}, "id": 1}).encode())
names = [s["name"] for s in json.load(urllib.request.urlopen(rq, timeout=30))["result"]["sandboxes"]]
sys.exit(3 if sys.argv[2] in names else 0)
EOF
}
sandbox_there() { ! sandbox_gone "$@"; }
# start_long NAME [VAR=VALUE...]: a long step on backend $b in the
# background (pid L); once its command is under way, id and sb from its record.
start_long() {
    local name=$1; shift
    env "$@" "$SBX" run --backend "$b" --name "$name" -- sh -c 'echo started; sleep 30' >"$OUT" 2>"$ERR" </dev/null &
    L=$!
    set -- $(wait_record_sandbox)
    id=${1:-} sb=${2:-}
    sleep 0.5
}
# stop_long SIG: sends SIG to the launcher and waits: RC, and MS it took
stop_long() {
    local t0
    t0=$(date +%s%N)
    kill -"$1" "$L"
    wait "$L"
    RC=$?
    MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
for b in $BACKENDS; do
    (
    "backend_env_$b"
    start_long intr METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3
    check "[$b] interrupt: the step's sandbox exists while it runs" sandbox_there "$b" "$sb"
    stop_long INT
    check "[$b] ^C (SIGINT) to the launcher: exit 130 at once" bash -c "[ $RC = 130 ] && [ $MS -lt 10000 ]"
    check "[$b] ... the sandbox is gone" sandbox_gone "$b" "$sb"
    check "[$b] ... the record says interrupted by SIGINT, one attempt: no infra retry" rec_is "$id" \
        '(r["status"], r["verdict"], r["exit_code"], r["interrupt"]["name"], r["interrupt"]["sandbox_left"], [a["verdict"] for a in r["attempts"]], bool(r["finished_at"]))' \
        "('interrupted', 'interrupted', 130, 'SIGINT', None, ['interrupted'], True)"
    check "[$b] ... the message says what happened" \
        err_has "step intr was interrupted by SIGINT during attempt 1 of 4 on $b: the step was stopped, not retried, and its sandbox $sb removed"
    check "[$b] ... sbx runs ls shows it interrupted" bash -c "$SBX runs ls | grep -q '^$id .*interrupted *130 '"

    # SIGTERM and SIGHUP as ^C, with their own exit codes
    if [ "$b" = local ] || [ "$b" = e2b ]; then sig=TERM code=143; else sig=HUP code=129; fi
    start_long "intr$sig"
    stop_long "$sig"
    check "[$b] SIG$sig: exit $code at once, recorded" bash -c \
        "[ $RC = $code ] && [ $MS -lt 10000 ] && [ \"$(rec "$id" '(r["verdict"], r["interrupt"]["name"])')\" = \"('interrupted', 'SIG$sig')\" ]"
    check "[$b] ... the sandbox is gone" sandbox_gone "$b" "$sb"

    # debug mode keeps the sandbox, and says how to reach it
    if [ "$b" = local ] || [ "$b" = sbx ]; then
        start_long dintr METAFLOW_SANDBOX_DEBUG="$TMP/debug-intr"
        stop_long INT
        check "[$b] debug: ^C exits 130 and keeps the sandbox, saying how to reach it" bash -c \
            "[ $RC = 130 ] && grep -q 'its sandbox $sb was kept (debug mode)' $ERR && grep -q 'sandbox $sb was kept: .*sbx exec $sb' $ERR"
        check "[$b] ... it is there" sandbox_there "$b" "$sb"
        "$SBX" rm "$sb" >/dev/null 2>&1
        check "[$b] ... sbx rm removes it" sandbox_gone "$b" "$sb"
    fi
    )
done
# A second ^C stops the cleanup too: the server is frozen, so removing
# the sandbox hangs; the launcher exits at once, naming what was left.
(
b=sbx
backend_env_sbx
start_long intr2
kill -STOP "$SRV_PID"
kill -INT "$L"
sleep 1
stop_long INT
kill -CONT "$SRV_PID"
check "[sbx] a second ^C during the cleanup: exit 130 at once" bash -c "[ $RC = 130 ] && [ $MS -lt 10000 ]"
check "[sbx] ... saying which sandbox was left and how to remove it" \
    err_has "sandbox $sb was left: a second interrupt stopped its removal (remove it: sbx rm $sb)"
check "[sbx] ... the record names it" rec_is "$id" '(r["interrupt"]["signals"], r["interrupt"]["sandbox_left"])' "(2, '$sb')"
"$SBX" rm "$sb" >/dev/null 2>&1 # the frozen server may have removed it on waking
check "[sbx] ... sbx rm leaves nothing" sandbox_gone sbx "$sb"
)

# ---- step files and the example pipeline ---------------------------------------------
cat >"$TMP/step.json" <<'EOF'
{"name": "fromfile", "backend": "local", "cpu": 1, "memory": 256, "timeout": 30,
 "env": {"MODE": "file", "N": 3}, "command": ["sh", "-c", "echo mode=$MODE n=$N; cat payload.txt > got.txt"],
 "uploads": ["payload.txt"], "outputs": ["got.txt"], "code_dir": null, "artifacts": "art"}
EOF
echo "payload" >"$TMP/payload.txt"
sbx_run -f "$TMP/step.json"
id=$(run_id)
check "step file: runs with its fields" bash -c "[ $RC = 0 ] && grep -q '^\[fromfile\] mode=file n=3' $OUT"
check "step file: relative paths are the file's (uploads, artifacts)" bash -c "[ \"\$(cat $TMP/art/got.txt)\" = payload ]"
check "step file: recorded with its spec" rec_is "$id" '(r["name"], r["spec"]["memory"], r["spec"]["timeout"])' "('fromfile', 256, 30)"
sbx_run -f "$TMP/step.json" -e MODE=flag --name override
check "step file: flags win over the file" bash -c "[ $RC = 0 ] && grep -q '^\[override\] mode=flag' $OUT"
echo '{"command": ["true"], "memroy": 5}' >"$TMP/bad.json"
sbx_run -f "$TMP/bad.json"
check "step file: an unknown field is refused, naming it and the allowed ones" bash -c \
    "[ $RC = 125 ] && grep -q \"unknown field 'memroy' (allowed: name, backend, cpu, memory\" $ERR"

EX="$SBX_ROOT/examples/pipeline"
if [ -f "$EX/run.sh" ]; then
    rm -rf "$TMP/pipe" && cp -r "$EX" "$TMP/pipe"
    (cd "$TMP/pipe" && SBX="$SBX" bash run.sh) >"$OUT" 2>"$ERR"
    RC=$?
    check "examples/pipeline runs end to end" bash -c "[ $RC = 0 ] && [ -s $TMP/pipe/artifacts/report.txt ]"
else
    not_ok "examples/pipeline/run.sh exists"
fi

# ---- micromamba staging ---------------------------------------------------------------
# This host's conda platform, and the other one with its ELF machine number.
case $(uname -m) in
    aarch64) HOSTP=linux-aarch64 OTHERP=linux-64 OTHER_EM=62 ;;
    *) HOSTP=linux-64 OTHERP=linux-aarch64 OTHER_EM=183 ;;
esac
mkdir -p "$TMP/envstep"
echo "name: demo" >"$TMP/envstep/environment.yml"
cp /bin/echo "$TMP/fake-micromamba"
ENVSTEP=(--backend local --code-dir "$TMP/envstep" --environment environment.yml)
METAFLOW_SANDBOX_MICROMAMBA_PATH="$TMP/fake-micromamba" sbx_run "${ENVSTEP[@]}" -- \
    sh -c 'micromamba staged; echo env=$SBX_STEP_ENVIRONMENT root=$MAMBA_ROOT_PREFIX'
check "micromamba: METAFLOW_SANDBOX_MICROMAMBA_PATH is staged on PATH" bash -c "[ $RC = 0 ] && grep -q '\] staged$' $OUT"
check "micromamba: the environment file is named to the step" out_has "env=/tmp/sbx-step/code/environment.yml root="
METAFLOW_SANDBOX_STAGE_MICROMAMBA=0 sbx_run "${ENVSTEP[@]}" -- sh -c 'command -v micromamba || echo none'
check "micromamba: METAFLOW_SANDBOX_STAGE_MICROMAMBA=0 stages none" bash -c "[ $RC = 0 ] && grep -q '\] none$' $OUT"
METAFLOW_SANDBOX_AUTO_DOWNLOAD_MICROMAMBA=0 sbx_run "${ENVSTEP[@]}" -- true
check "micromamba: none found and no download: a clear error naming the variables" bash -c \
    "[ $RC = 125 ] && grep -q METAFLOW_SANDBOX_MICROMAMBA_PATH $ERR && grep -q METAFLOW_SANDBOX_AUTO_DOWNLOAD_MICROMAMBA $ERR"
echo '#!/bin/sh' >"$TMP/script-mamba" && chmod +x "$TMP/script-mamba"
METAFLOW_SANDBOX_MICROMAMBA_PATH="$TMP/script-mamba" sbx_run "${ENVSTEP[@]}" -- true
check "micromamba: a binary that is no Linux executable is refused" bash -c "[ $RC = 125 ] && grep -q 'not a Linux executable' $ERR"
METAFLOW_SANDBOX_TARGET_PLATFORM=$OTHERP METAFLOW_SANDBOX_MICROMAMBA_PATH="$TMP/fake-micromamba" \
    sbx_run "${ENVSTEP[@]}" -- true
check "micromamba: a binary for another platform is refused" bash -c "[ $RC = 125 ] && grep -q 'is for $HOSTP, not for $OTHERP' $ERR"
# a "binary" for the other platform (an ELF header is all the check reads)
# passes the binary's check; the image (this host's) is not for it
python3 -c 'import struct,sys; sys.stdout.buffer.write(b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 2, int(sys.argv[1])) + bytes(44))' \
    "$OTHER_EM" >"$TMP/other-mamba"
chmod +x "$TMP/other-mamba"
METAFLOW_SANDBOX_TARGET_PLATFORM=$OTHERP METAFLOW_SANDBOX_MICROMAMBA_PATH="$TMP/other-mamba" \
    sbx_run "${ENVSTEP[@]}" -- true
id=$(run_id)
check "micromamba: the target platform is checked against the image, refused, not retried" bash -c \
    "[ $RC = 125 ] && grep -q \"TARGET_PLATFORM is $OTHERP but the image's machine is '$(uname -m)'\" $ERR &&
     [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]))')\" = \"('refused', 1)\" ]"
METAFLOW_SANDBOX_TARGET_PLATFORM=linux-arm sbx_run --backend local -- true
check "METAFLOW_SANDBOX_TARGET_PLATFORM: a bad value names the allowed ones" bash -c \
    "[ $RC = 125 ] && grep -q 'allowed: linux-64, linux-aarch64' $ERR"
# auto-download from a mirror (SBX_MICROMAMBA_URL) into the cache
mkdir -p "$TMP/mirror/$HOSTP" "$TMP/pkg/bin"
cp /bin/echo "$TMP/pkg/bin/micromamba"
tar -cjf "$TMP/mirror/$HOSTP/latest" -C "$TMP/pkg" bin/micromamba
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$TMP/mirror" >"$TMP/http.out" 2>"$TMP/http.log" &
HTTP_PID=$!
for _ in $(seq 100); do grep -q "port" "$TMP/http.out" 2>/dev/null && break; sleep 0.1; done
HPORT=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$TMP/http.out")
SBX_MICROMAMBA_URL="http://127.0.0.1:$HPORT" METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR="$TMP/mcache" \
    sbx_run "${ENVSTEP[@]}" -- micromamba downloaded
check "micromamba: auto-downloaded into the cache and staged" bash -c \
    "[ $RC = 0 ] && grep -q '\] downloaded$' $OUT && [ -x $TMP/mcache/$HOSTP/micromamba ]"
kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null; HTTP_PID=""
SBX_MICROMAMBA_URL="http://127.0.0.1:$CLOSED_PORT" METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR="$TMP/mcache2" \
    sbx_run "${ENVSTEP[@]}" -- true
check "micromamba: offline, the error says which variable to set" bash -c \
    "[ $RC = 125 ] && grep -q 'cannot download micromamba' $ERR && grep -q METAFLOW_SANDBOX_MICROMAMBA_PATH $ERR"
# ^C while micromamba downloads (a mirror that never answers): before any
# sandbox or record, the launcher stops at once and leaves nothing.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(120)' >"$TMP/mute.port" &
MUTE_PID=$!
for _ in $(seq 100); do [ -s "$TMP/mute.port" ] && break; sleep 0.1; done
before=$(n_runs)
SBX_MICROMAMBA_URL="http://127.0.0.1:$(cat "$TMP/mute.port")" METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR="$TMP/mcache3" \
    "$SBX" run "${ENVSTEP[@]}" -- true >"$OUT" 2>"$ERR" </dev/null &
L=$!
sleep 1.5
stop_long INT
kill "$MUTE_PID"; wait "$MUTE_PID" 2>/dev/null
check "^C during the micromamba download: exit 130 at once, nothing created, no record" bash -c \
    "[ $RC = 130 ] && [ $MS -lt 10000 ] && grep -q 'interrupted by SIGINT before the step started: nothing was created' $ERR &&
     [ $(n_runs) = $before ] && ! ls $TMP/mcache3/*/ 2>/dev/null | grep -q ."

# ---- bad input, backends, the fast path --------------------------------------------------
sbx_run --backend nosuch -- true
check "an unknown backend is refused with the allowed ones" bash -c "[ $RC = 125 ] && grep -q 'allowed: local, sbx, e2b, daytona' $ERR"
METAFLOW_SANDBOX_BACKEND=nosuch sbx_run -- true
check "METAFLOW_SANDBOX_BACKEND chooses the default backend, and a bad one is named with the variable" bash -c \
    "[ $RC = 125 ] && grep -q \"METAFLOW_SANDBOX_BACKEND 'nosuch' is not a backend (allowed: local, sbx, e2b, daytona)\" $ERR"
METAFLOW_SANDBOX_BACKEND=nosuch sbx_run --backend local -- true
check "... --backend wins over METAFLOW_SANDBOX_BACKEND" rc_is 0
sbx_run --backend local --cpu
check "an option without its value says so (not 'unknown option')" bash -c "[ $RC = 125 ] && grep -q 'option needs a value: --cpu' $ERR"
mkdir "$TMP/gone" && (cd "$TMP/gone" && rmdir "$TMP/gone" && "$SBX" run --backend local -- true >"$OUT" 2>"$ERR" </dev/null; echo $? >"$TMP/rc")
RC=$(cat "$TMP/rc")
check "a current directory that is gone is named as the problem" bash -c \
    "[ $RC = 125 ] && grep -q 'cannot resolve against the current directory' $ERR"
sbx_run --backend local --cpu 0 -- true
check "a bad --cpu is refused naming what is allowed" bash -c "[ $RC = 125 ] && grep -q 'more than 0, at most 1024' $ERR"
sbx_run --backend local --memory lots -- true
check "a bad --memory is refused naming what is allowed" bash -c "[ $RC = 125 ] && grep -q 'whole number of MB (6 to 16777216)' $ERR"
sbx_run --backend local --volume /tmp:/x -- true
check "an engine-only flag on a step is refused with the reason" bash -c "[ $RC = 125 ] && grep -q 'not a step option' $ERR"
( backend_env_sbx; sbx_run --backend sbx --cpu 1.5 -- true
  check "[sbx] a fractional cpu is refused by the backend before anything is created" bash -c \
      "[ $RC = 125 ] && grep -q 'whole CPUs (allowed: 1 to 1024)' $ERR" )
if ! ls /proc/driver/nvidia/gpus/*/information >/dev/null 2>&1; then
    METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend local --gpu 1 -- true
    id=$(run_id)
    check "[local] no GPU here: --gpu 1 is refused with the engine's reason, not retried" bash -c \
        "[ $RC = 125 ] && grep -q 'no NVIDIA driver loaded' $ERR && [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]))')\" = \"('refused', 1)\" ]"
    ( backend_env_sbx; METAFLOW_SANDBOX_MAX_INFRA_RETRIES=3 sbx_run --backend sbx --gpu 1 -- true
      id=$(run_id)
      check "[sbx] no GPU on the server: --gpu 1 is refused by it, not retried" bash -c \
          "[ $RC = 125 ] && grep -q 'HTTP 400' $ERR && [ \"$(rec "$id" '(r["verdict"], len(r["attempts"]))')\" = \"('refused', 1)\" ]" )
else
    echo "ok - # SKIP this host has GPUs: the step runner's GPU refusals are checked on hosts without"
fi
METAFLOW_SANDBOX_MAX_INFRA_RETRIES=many sbx_run --backend local -- true
check "METAFLOW_SANDBOX_MAX_INFRA_RETRIES: a bad value is refused" bash -c "[ $RC = 125 ] && grep -q 'from 0 to 10' $ERR"
before=$(n_runs)
sbx_run -- sh -c 'echo plain'
check "plain sbx run stays the engine's fast path: no record, no prefix" bash -c \
    "[ $RC = 0 ] && [ \"\$(cat $OUT)\" = plain ] && [ $(n_runs) = $before ]"
before=$(n_runs)
sbx_run -e K=--backend --memory 64 -- echo --output
check "option values and the command's own arguments are no step options" bash -c \
    "[ $RC = 0 ] && [ \"\$(cat $OUT)\" = --output ] && [ $(n_runs) = $before ]"
sbx_run --step --help
check "sbx run --step --help documents the step options" bash -c \
    "[ $RC = 0 ] && for f in backend file cpu memory gpu image timeout env upload output artifacts; do grep -q -- \"--\$f\" $OUT || exit 1; done"

# records reach the local datastore
METAFLOW_DATASTORE_SYSROOT_LOCAL="$TMP/ds" sbx_run --backend local -- echo stored
id=$(run_id)
check "records are copied to the local datastore with the logs" bash -c \
    "grep -q '\"status\": \"succeeded\"' $TMP/ds/sbx/runs/$id/record.json && grep -q stored $TMP/ds/sbx/runs/$id/attempt-1.stdout.log"

check "the front doors list no sandbox: every e2b and daytona one was removed" [ "$(front_door_sandboxes)" = 0 ]
stop_server
left=$(ps -o pid=,stat=,args= -u "$SBX_USER_HOST_UID,${SBX_UID_BASE:-1000000000}" 2>/dev/null | awk '$2 !~ /^Z/' | grep -c 'sleep 60$')
check "no step's process is left" [ "$left" = 0 ]
check "no keeper socket is left" bash -c "! ls ${SBX_RUN_DIR:-/run/sbx}/step-keep/ 2>/dev/null | grep -q ."
exit 0
