# Runs last: nothing of any sandbox may remain on the host.
. "$(dirname "$0")/lib.sh"
RC=0
: >"$OUT"; : >"$ERR"
# The idle network namespaces that sandboxes hand on, and the parent
# cgroups of all sandboxes, are kept on purpose (src/engine/netns.c,
# cgroup.h); dropped first, nothing else may remain.
"$SBX" run -- true
check "the sandboxes' parent cgroup stays after its last sandbox" bash -c 'ls -d /sys/fs/cgroup/*/sbx /sys/fs/cgroup/sbx 2>/dev/null | grep -q .'
"$SBX" prune >"$OUT" 2>"$ERR"
check "sbx prune drops the pooled network namespaces" bash -c "grep -q '^dropped' $OUT && ! grep -q 'in use' $OUT"
check "no sbx cgroup remains" bash -c '! ls -d /sys/fs/cgroup/*/sbx/* /sys/fs/cgroup/sbx/* 2>/dev/null | grep -q .'
# Nor one of the suites' own names (unit tests, the security suite, ...).
check "no cgroup named sbx* remains" bash -c '! ls -d /sys/fs/cgroup/*/sbx* /sys/fs/cgroup/sbx* 2>/dev/null | grep -q .'
check "no sbx mount remains" bash -c '! grep -q "sbx" /proc/self/mountinfo'
check "no sandboxed process remains" bash -c "! pgrep -u $SBX_USER_HOST_UID >/dev/null && ! pgrep -u ${SBX_UID_BASE:-1000000000} >/dev/null"
check "no sandbox lock remains" bash -c '! ls /run/sbx/sandboxes/ 2>/dev/null | grep -q .'
check "no loop device of an sbx layer remains" bash -c '! losetup -a 2>/dev/null | grep -q "layer.img"'
