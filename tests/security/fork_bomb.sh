# Fork bombs: a counting one (python forks `sleep` children until the
# kernel refuses, at most 6000) and the classic shell one. The pids limit
# stops them (sbx run --pids 64; server sandboxes 4096); the host still
# forks; the shell bomb ends with the timeout; stopping the sandbox leaves
# no process or cgroup. Control: with no pids limit the counting bomb gets
# past the limit it met.
. "$(dirname "$0")/lib.sh"

cat >"$TMP/vol/bomb.py" <<'PY'
import os, sys
cap, n, err = int(sys.argv[1]), 0, "none"
null = os.open("/dev/null", os.O_RDWR)
while n < cap:
    try:
        pid = os.fork()
    except OSError as e:
        err = e.strerror
        break
    if pid == 0:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv("/bin/sleep", ["sleep", "600"])
    n += 1
print("forked %d %s" % (n, err), flush=True)
PY
forked() { sed -n 's/^forked \([0-9]*\).*/\1/p' "$OUT"; }
shell_bomb='b() { b | b & }; b; sleep 600'

body() {
    if [ "$1" = run ]; then
        in_sb run --opts "--pids 64" -- python3 /data/bomb.py 6000
        expect "the pids limit stops the bomb (< 64 forks, EAGAIN)" \
            bash -c "[ \$(sed -n 's/^forked \([0-9]*\) .*/\1/p' $OUT) -lt 64 ] && grep -q 'temporarily unavailable' $OUT"
        in_sb run --opts "--pids 64" --timeout 3 -- sh -c "$shell_bomb"
        expect "the shell bomb ends with the timeout (124)" rc_is 124
        expect "no process of the sandbox's uids is left" \
            bash -c "! pgrep -u $RUN_ROOT_UID,$((RUN_ROOT_UID + 1000)) >/dev/null"
    else
        sb_start sec-bomb '"memory": 2048'
        local id
        id=$(engine_id sec-bomb)
        in_sb server --sb sec-bomb -- python3 /data/bomb.py 6000
        expect "the pids limit stops the bomb (<= 4096 forks)" \
            bash -c "[ \$(sed -n 's/^forked \([0-9]*\) .*/\1/p' $OUT) -le 4096 ] && ! grep -q 'forked 6000' $OUT"
        expect "the server answers while the bomb's processes fill the sandbox" \
            python3 "$SEC/sbxc.py" "$SRV_URL" health
        expect "the sandbox's pids cgroup holds at most 4096 and saw the limit hit" bash -c \
            "[ \$(cat /sys/fs/cgroup/pids/sbx/$id/pids.current) -le 4096 ] && grep -q '^max [1-9]' /sys/fs/cgroup/pids/sbx/$id/pids.events"
        call sandbox.stop '{"sandbox": "sec-bomb"}' >/dev/null
        expect "stopping the sandbox removes its processes and cgroups" cg_gone "$id"
        sb_start sec-bomb '"memory": 2048'
        in_sb server --sb sec-bomb --timeout 3 -- sh -c "$shell_bomb"
        expect "the shell bomb is stopped by the command timeout" err_has 'command.run failed: 500'
        in_sb server --sb sec-bomb -- echo usable
        expect "the sandbox runs commands after the bomb" out_has usable
        id=$(engine_id sec-bomb)
        call sandbox.stop '{"sandbox": "sec-bomb"}' >/dev/null
        expect "stopping it removes its processes and cgroups" cg_gone "$id"
    fi
    expect "the host still forks" bash -c 'for i in 1 2 3 4 5; do /bin/true || exit 1; done'
}
in_sb run --opts "--pids 0" -- python3 /data/bomb.py 200
expect "control: without a pids limit the bomb forks 200" bash -c "grep -q '^forked 200 none' $OUT"
both
