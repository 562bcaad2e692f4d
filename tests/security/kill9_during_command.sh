# kill -9 of the server while a command runs in one of its sandboxes (and
# another sandbox idles): every process of both dies with the server; the
# layers' loop devices and mounts go with them; on restart on the same
# state dir the registry lists both sandboxes (stopped), the sweep has
# removed their cgroups and locks, and they start again with their files.
. "$(dirname "$0")/lib.sh"

state="$TMP/k9-state"
srv_start "$state" || FAILS+=("the server starts")
sb_start k9-busy
sb_start k9-idle
busy=$(engine_id k9-busy) idle=$(engine_id k9-idle)
in_sb server --sb k9-busy -- sh -c 'echo kept > /root/marker'
python3 "$SEC/sbxc.py" "$SRV_URL" run k9-busy -- sh -c 'sleep 600 & sleep 600' >/dev/null 2>&1 &
client=$!
wait_for 10 bash -c "[ \$(cat /sys/fs/cgroup/pids/sbx/$busy/cgroup.procs | wc -l) -ge 3 ]"
procs=$(sb_pids "$busy"; sb_pids "$idle")
expect "control: the command's processes run before the kill ($(echo $procs | wc -w))" test "$(echo $procs | wc -w)" -ge 4
expect "control: the layers are mounted on loop devices" bash -c "losetup -a | grep -qF '$state'"

kill -9 "$SRV_PID"
srv_gone
wait "$client" 2>/dev/null
# shellcheck disable=SC2086
expect "every sandbox process dies with the server" wait_for 30 pids_gone $procs
expect "the layers' loop devices are freed" wait_for 30 no_loop "$state"
expect "no mount of the state dir is left" no_mount "$state"

srv_start "$state" || FAILS+=("the server restarts on the same state dir")
defer srv_stop "$SRV_PID"
call sandbox.metrics.get '{"namespace": "*"}' >"$TMP/m.json"
stopped=$(jget 'sorted(s["name"] for s in d["sandboxes"] if not s["running"])' <"$TMP/m.json")
expect "the registry lists both sandboxes, not running ($stopped)" test "$stopped" = "['k9-busy', 'k9-idle']"
for id in "$busy" "$idle"; do
    expect "the restart swept the cgroups of $id" cg_gone "$id"
    expect "the restart swept the lock of $id" no_lock "$id"
done
call sandbox.start '{"sandbox": "k9-busy"}' >/dev/null
in_sb server --sb k9-busy -- cat /root/marker
expect "the sandbox starts again with its layer's files" out_has '^kept$'
report server
