# What the escape suite's cases share (tests/security/*.sh, docs/security.md).
#
# A case runs hostile code through the public API, once through `sbx run`
# and once in a server sandbox (sandbox.command.run, as root inside), and
# asserts the host is untouched. Its checks are collected with `expect`;
# `report PATH` prints the one line for that path, "ok - <case> (sbx run)"
# or "not ok - <case> (server)" with the failed checks, and on the server
# path first checks that the server still answers /api/v1/health.
#
# Where a probe could pass for a reason other than the sandbox (a typo, a
# kernel without the feature), a case also runs a *control*: the same
# probe where nothing confines it, which must get through.
#
# Run by tests/security/run.sh, which shares one server between cases
# (SBX_SEC_URL, SBX_SEC_PID, SBX_SEC_LOG); a case run on its own starts one.
set -u
: "${SBX:?SBX must point at the sbx binary}"
: "${SBX_HELPERS:?SBX_HELPERS must point at the built helpers}"
: "${SBX_ROOT:?SBX_ROOT must point at the source tree}"
SEC="$SBX_ROOT/tests/security"
CASE=${CASE:-$(basename "$0" .sh)}
TMP=$(mktemp -d /tmp/sbx-sec.XXXXXX)
chmod 755 "$TMP"
OUT="$TMP/out" ERR="$TMP/err" RC=0
: >"$OUT"
: >"$ERR"
PROBE="$SBX_HELPERS/probe"

# `sbx run` sandboxes get their own run dir, cgroup parent and uid range:
# whatever they left behind is then this suite's to find (and no other
# test's sweep or leftover check mistakes them for its own). Server
# sandboxes use the defaults (the server reads none of these).
export SBX_RUN_DIR=/run/sbx-sec SBX_CGROUP_NAME=sbx-sec SBX_UID_BASE=1100000000
RUN_ROOT_UID=$SBX_UID_BASE
SRV_ROOT_UID=1000000000
# A secret in the environment of the server and of `sbx run`: an sbx run
# sandbox's init is a clone of sbx, so its memory and environ hold it (a
# server sandbox's init is sbx re-executed without it).
export SBX_SEC_CANARY=${SBX_SEC_CANARY:-ENV-SECRET-$$-$RANDOM}
# Engine ids of server sandboxes, for run.sh's final leftover check.
SEC_IDS=${SBX_SEC_IDS:-$TMP/ids}

# ---- cleanup -------------------------------------------------------------
CLEANUP=()
defer() { CLEANUP+=("$*"); }
on_exit() {
    local i
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[i]}" >/dev/null 2>&1
    done
    rm -rf "$TMP"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---- checks --------------------------------------------------------------
FAILS=()
# expect DESCRIPTION COMMAND...: the command must succeed.
expect() {
    local d=$1
    shift
    "$@" >/dev/null 2>&1 || FAILS+=("$d")
}
# report PATH: one line for the case on that path ("sbx run" or "server").
report() {
    local label=$1
    [ "$label" = run ] && label="sbx run"
    if [ "$label" = server ]; then
        expect "the server still answers /api/v1/health" python3 "$SEC/sbxc.py" "$SRV_URL" health
    fi
    if [ ${#FAILS[@]} -eq 0 ]; then
        echo "ok - $CASE ($label)"
    else
        echo "not ok - $CASE ($label)"
        local f
        for f in "${FAILS[@]}"; do echo "#   failed: $f"; done
        echo "#   last rc=$RC stdout: $(head -c 700 "$OUT" | tr '\n' '|')"
        echo "#   stderr: $(head -c 500 "$ERR" | tr '\n' '|')"
    fi
    FAILS=()
}
rc_is() { [ "$RC" -eq "$1" ]; }
out_has() { grep -q -- "$1" "$OUT"; }
err_has() { grep -q -- "$1" "$ERR"; }
# Neither stream of the last run contains the string.
nowhere() { ! grep -q -F -- "$1" "$OUT" "$ERR"; }
# probe_is NAME RESULT: the probe line of the last run.
probe_is() { grep -qx -- "$1 $2" "$OUT"; }
# The probe, on the host: the control.
host_probe() { "$PROBE" "$@"; }

# ---- the server ------------------------------------------------------------
# srv_start STATE [ARGS...]: a server on a free loopback port; sets SRV_PID,
# SRV_URL and SRV_LOG (<state>.log).
srv_start() {
    local state=$1
    shift
    SRV_LOG="$state.log"
    local portf="$state.port"
    : >"$portf"
    "$SBX" server start --dev --port 0 --state-dir "$state" "$@" >"$portf" 2>>"$SRV_LOG" </dev/null &
    SRV_PID=$!
    disown "$SRV_PID" # no "Killed" notices from the shell when a case kills it
    local i
    for ((i = 0; i < 600; i++)); do
        grep -q 'listening on' "$portf" && break
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.05
    done
    SRV_URL="http://127.0.0.1:$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$portf" | head -1)"
    grep -q 'listening on' "$portf"
}
# srv_gone [PID]: waits (bounded) until the server has exited.
srv_gone() {
    local pid=${1:-$SRV_PID} i
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}
# srv_stop [PID]: SIGTERM to the server (default: the current one), waits.
srv_stop() {
    local pid=${1:-$SRV_PID}
    kill -TERM "$pid" 2>/dev/null && srv_gone "$pid"
}
if [ -n "${SBX_SEC_URL:-}" ]; then
    SRV_URL=$SBX_SEC_URL SRV_PID=$SBX_SEC_PID SRV_LOG=$SBX_SEC_LOG SRV_STATE=$SBX_SEC_STATE
else
    SRV_STATE="$TMP/state"
    srv_start "$SRV_STATE" || { echo "not ok - $CASE: the server did not start"; exit 1; }
    defer srv_stop "$SRV_PID"
fi

# call METHOD PARAMS_JSON: the result (JSON) on stdout; status 1 on an error
# (then the HTTP status and body, as JSON).
call() { python3 "$SEC/sbxc.py" "$SRV_URL" call "$@"; }
# jget PY_EXPR: evaluates a Python expression over the JSON on stdin (`d`).
jget() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# Volumes every sandbox of a case gets: the helpers (read-only), a
# writable dir and a read-only one.
mkdir -p "$TMP/vol" "$TMP/rovol"
chmod 777 "$TMP/vol"
chmod 755 "$TMP/rovol"

# sb_start NAME [CONFIG_JSON_FIELDS]: starts a server sandbox with the
# case's volumes; extra config fields are a JSON fragment, e.g.
# '"memory": 64'. It is deleted when the case ends.
sb_start() {
    local name=$1 extra=${2:-}
    local cfg="\"image\": \"microsandbox/python\", \"volumes\": [\"$SBX_HELPERS:/opt/helpers:ro\", \"$TMP/vol:/data\", \"$TMP/rovol:/rodata:ro\"]"
    [ -n "$extra" ] && cfg="$cfg, $extra"
    defer "call sandbox.delete '{\"sandbox\": \"$name\"}'"
    call sandbox.start "{\"sandbox\": \"$name\", \"config\": {$cfg}}" >"$TMP/start.json" || return 1
    local id
    id=$(sed -n "s/.*sandbox default\/$name started (engine id \([^)]*\)).*/\1/p" "$SRV_LOG" | tail -1)
    [ -n "$id" ] && echo "$id" >>"$SEC_IDS"
    return 0
}
# engine_id NAME: the engine id of a running server sandbox (from the log).
engine_id() { sed -n "s/.*sandbox default\/$1 started (engine id \([^)]*\)).*/\1/p" "$SRV_LOG" | tail -1; }
# sb_pids ID: host pids of a sandbox's processes (its pids cgroup).
sb_pids() { cat /sys/fs/cgroup/pids/sbx/"$1"/cgroup.procs 2>/dev/null; }
# cg_gone ID [PARENT]: no cgroup of that sandbox is left in any hierarchy.
cg_gone() { ! ls -d /sys/fs/cgroup/*/"${2:-sbx}/$1" /sys/fs/cgroup/"${2:-sbx}/$1" >/dev/null 2>&1; }

# ---- running hostile code ----------------------------------------------------
# in_sb PATH [--user U] [--sb NAME] [--opts "sbx run flags"] -- CMD [ARG...]:
# runs CMD in a sandbox, stdout in $OUT, stderr in $ERR, status in $RC.
# PATH "run": a fresh `sbx run` sandbox with the case's volumes; "server":
# sandbox.command.run in the server sandbox $SB (or --sb), always as root
# inside (the API has no user; root inside cannot become another one).
in_sb() {
    local path=$1 user=root sb=${SB:-} opts="" tmo=""
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case $1 in
        --user) user=$2; shift 2 ;;
        --sb) sb=$2; shift 2 ;;
        --opts) opts=$2; shift 2 ;;
        --timeout) tmo=$2; shift 2 ;;
        *) echo "in_sb: unknown option $1" >&2; return 2 ;;
        esac
    done
    shift
    if [ "$path" = run ]; then
        # shellcheck disable=SC2086
        "$SBX" run --user "$user" ${tmo:+--timeout $tmo} -v "$SBX_HELPERS:/opt/helpers:ro" -v "$TMP/vol:/data" \
            -v "$TMP/rovol:/rodata:ro" $opts -- "$@" >"$OUT" 2>"$ERR" </dev/null
        RC=$?
    else
        python3 "$SEC/sbxc.py" "$SRV_URL" run "$sb" ${tmo:+--timeout $tmo} -- "$@" >"$OUT" 2>"$ERR" </dev/null
        RC=$?
    fi
    return 0
}

# both: runs the case's `body PATH` on each path and reports. The server
# sandbox "sec-<case>" is made first.
both() {
    body run
    report run
    SB="sec-${CASE//_/-}"
    if sb_start "$SB" "${SB_CONFIG:-}"; then
        body server
    else
        FAILS+=("start the server sandbox: $(head -c 300 "$TMP/start.json")")
    fi
    report server
}

# syscall_case PROBE...: each probe (a tests/helpers/probe.c name with its
# arguments, one word list per argument) is refused inside with EPERM, as
# root and (sbx run) as the user; on the host, as root, the same probe gets past the
# permission checks (any result but EPERM/EACCES): the control that the
# refusal comes from the sandbox and that the probe reaches the kernel.
syscall_case() {
    local p args=()
    for p in "$@"; do
        # shellcheck disable=SC2206
        args+=($p --)
    done
    unset 'args[${#args[@]}-1]'
    local host
    for p in "$@"; do
        # shellcheck disable=SC2086
        host=$("$PROBE" $p)
        expect "control: on the host, as root, '$p' gets through (got '$host')" \
            bash -c "[ -n '$host' ] && ! echo '$host' | grep -Eq ' (EPERM|EACCES|CRASHED)$'"
    done
    SYSCALLS=("$@") PROBE_ARGS=("${args[@]}")
    body() {
        local u p users=(root)
        [ "$1" = run ] && users=(root 1000)
        for u in "${users[@]}"; do
            in_sb "$1" --user $u -- /opt/helpers/probe "${PROBE_ARGS[@]}"
            for p in "${SYSCALLS[@]}"; do
                expect "'$p' as $u is refused with EPERM" probe_is "${p%% *}" EPERM
            done
        done
    }
    both
}

# listener ADDR: a TCP listener on the host (a free port) that records every
# connection in $TMP/conns.<port>; sets LPORT. Stopped when the case ends.
listener() {
    python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, a = s.accept()
    with open(sys.argv[2] + "." + str(s.getsockname()[1]), "a") as f:
        f.write("%s:%d\n" % a)
    c.close()' "$1" "$TMP/conns" >"$TMP/lport.$$" &
    local pid=$! i
    defer "kill $pid"
    for ((i = 0; i < 200; i++)); do
        [ -s "$TMP/lport.$$" ] && break
        sleep 0.05
    done
    LPORT=$(cat "$TMP/lport.$$")
    rm -f "$TMP/lport.$$"
    : >"$TMP/conns.$LPORT"
}
# The host's addresses other than loopback.
host_addrs() { ip -4 -o addr show | awk '$2 != "lo" { sub("/.*", "", $4); print $4 }'; }

# ---- faults ----------------------------------------------------------------
# wait_for SECONDS COMMAND...: polls until the command succeeds (status 1
# when it never did). A bound on waiting, not a timing assertion.
wait_for() {
    local n=$(($1 * 20)) i
    shift
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}
pids_gone() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
# left_nothing ID STATE: no cgroup, lock, mount or loop device of that
# server sandbox is left on the host.
no_lock() { [ ! -e "/run/sbx/sandboxes/$1" ]; }
no_mount() { ! grep -qF "$1" /proc/self/mountinfo; }
no_loop() { ! losetup -a 2>/dev/null | grep -qF "$1"; }
