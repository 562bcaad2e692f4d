# Processes that ignore SIGTERM (and detach: setsid, in the background):
# the timeout of `sbx run` and of sandbox.command.run, sandbox.stop, a
# SIGTERM to sbx run followed by SIGKILL, and a SIGTERM to the server with
# such a command in flight all end them; nothing is left behind. Control:
# the shell does ignore SIGTERM (one it sends itself leaves it running).
. "$(dirname "$0")/lib.sh"

stubborn='trap "" TERM; setsid sh -c "trap \"\" TERM; sleep 600" & sleep 600'
no_run_procs() { ! pgrep -u "$RUN_ROOT_UID,$((RUN_ROOT_UID + 1000))" >/dev/null; }

body() {
    in_sb "$1" -- sh -c 'trap "" TERM; kill -TERM $$; echo survived-term'
    expect "control: the stubborn shell survives a SIGTERM" out_has survived-term
    if [ "$1" = run ]; then
        in_sb run --timeout 1 -- sh -c "$stubborn"
        expect "the timeout ends it (124)" rc_is 124
        expect "no process is left (timeout)" no_run_procs
        "$SBX" run -- sh -c "$stubborn" >/dev/null 2>&1 </dev/null &
        local pid=$! i
        for ((i = 0; i < 200; i++)); do pgrep -u $((RUN_ROOT_UID + 1000)) -x sleep >/dev/null && break; sleep 0.05; done
        kill -TERM $pid
        kill -KILL $pid
        wait $pid 2>/dev/null
        for ((i = 0; i < 200; i++)); do no_run_procs && break; sleep 0.05; done
        expect "SIGKILL to sbx run leaves no process" no_run_procs
    else
        local id
        id=$(engine_id "$SB")
        in_sb server --timeout 2 -- sh -c "$stubborn"
        expect "the command timeout ends it (500, timed out)" err_has 'command.run failed: 500'
        in_sb server -- sh -c 'ps -eo args | grep -c "^sleep 600"'
        expect "the command's group is gone; the detached one lives on" out_has '^1$'
        call sandbox.stop "{\"sandbox\": \"$SB\"}" >/dev/null
        expect "sandbox.stop ends the detached one (no cgroup left)" cg_gone "$id"
        call sandbox.start "{\"sandbox\": \"$SB\"}" >/dev/null
        # A server of its own, stopped with SIGTERM while the stubborn
        # command runs (no timeout).
        local main_url=$SRV_URL main_pid=$SRV_PID main_log=$SRV_LOG
        srv_start "$TMP/own-state"
        defer srv_stop "$SRV_PID"
        call sandbox.start '{"sandbox": "stubborn", "config": {"image": "microsandbox/python"}}' >/dev/null
        local own_id
        own_id=$(engine_id stubborn)
        python3 "$SEC/sbxc.py" "$SRV_URL" run stubborn -- sh -c "$stubborn" >/dev/null 2>&1 &
        local client=$! i
        for ((i = 0; i < 200; i++)); do [ "$(sb_pids "$own_id" | wc -l)" -ge 4 ] && break; sleep 0.05; done
        kill -TERM "$SRV_PID"
        expect "the server exits on SIGTERM despite the stubborn command" srv_gone
        wait "$client" 2>/dev/null
        expect "nothing of its sandbox is left (cgroup)" cg_gone "$own_id"
        expect "no loop device of its layer is left" bash -c "! losetup -a | grep -q '$TMP/own-state'"
        SRV_URL=$main_url SRV_PID=$main_pid SRV_LOG=$main_log
    fi
}
both
