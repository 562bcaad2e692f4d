# A crashed sbx (kill -9) leaves no process behind, and the next engine
# start removes its cgroups and lock.
. "$(dirname "$0")/lib.sh"
RC=0
: >"$OUT"; : >"$ERR"
before=$(ls /run/sbx/sandboxes 2>/dev/null | wc -l)
"$SBX" run -- sleep 30 >/dev/null 2>&1 &
pid=$!
for i in $(seq 50); do
    [ "$(ls /run/sbx/sandboxes 2>/dev/null | wc -l)" -gt "$before" ] && pgrep -u "$SBX_USER_HOST_UID" -x sleep >/dev/null && break
    sleep 0.05
done
id=$(ls -t /run/sbx/sandboxes | head -1)
check "the sandbox is running before the crash" bash -c "[ -n '$id' ] && pgrep -u $SBX_USER_HOST_UID -x sleep >/dev/null"
{ kill -9 "$pid"; wait "$pid"; } 2>/dev/null
for i in $(seq 40); do pgrep -u "$SBX_USER_HOST_UID" >/dev/null || break; sleep 0.05; done
check "killing sbx kills the sandbox's processes" bash -c "! pgrep -u $SBX_USER_HOST_UID >/dev/null"
check "the crash left a cgroup and a lock (to be swept)" bash -c "[ -e /run/sbx/sandboxes/$id ] && ls -d /sys/fs/cgroup/*/sbx/$id /sys/fs/cgroup/sbx/$id 2>/dev/null | grep -q ."
"$SBX" info >/dev/null 2>&1
check "the next engine start removes the leftover cgroup" bash -c "! ls -d /sys/fs/cgroup/*/sbx/$id /sys/fs/cgroup/sbx/$id 2>/dev/null | grep -q ."
check "the next engine start removes the leftover lock" bash -c "[ ! -e /run/sbx/sandboxes/$id ]"
