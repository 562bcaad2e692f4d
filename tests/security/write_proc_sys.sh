# Hostile root writes host-wide kernel settings: /proc/sys (each file gets
# its current value back, so even a write that got through would change
# nothing), /proc/sysrq-trigger ("h": help only) where the kernel has it,
# and /sys (cgroup limits, kernel knobs). Every write is refused and the
# host values stay. Control: host root writes the same values back.
. "$(dirname "$0")/lib.sh"

files=(kernel/core_pattern vm/overcommit_memory fs/file-max kernel/pid_max vm/max_map_count)
snapshot() { local f; for f in "${files[@]}"; do cat "/proc/sys/$f"; done; }
before=$(snapshot)
probes=()
for f in "${files[@]}"; do probes+=(write "/proc/sys/$f" "$(cat "/proc/sys/$f")" --); done
probes+=(write /proc/sysrq-trigger h -- write /sys/fs/cgroup/memory/memory.limit_in_bytes -1
    -- write /sys/kernel/mm/transparent_hugepage/enabled never -- write /proc/1/oom_score_adj -1000)

body() {
    in_sb "$1" -- /opt/helpers/probe "${probes[@]}"
    expect "every /proc/sys write is refused" bash -c "[ \$(head -${#files[@]} $OUT | grep -Ec ' (open|write)-(EROFS|EACCES|EPERM)$') = ${#files[@]} ]"
    expect "sysrq-trigger is refused or absent" bash -c "grep -Eqx 'write (open|write)-(EROFS|EACCES|EPERM|ENOENT)' <(sed -n $((${#files[@]} + 1))p $OUT)"
    expect "/sys is not there to write" bash -c "[ \$(grep -c '^write open-ENOENT$' $OUT) -ge 2 ]"
    expect "init's oom score cannot be lowered" bash -c "tail -1 $OUT | grep -Eqx 'write (open|write)-(EACCES|EPERM)'"
    expect "nothing is OK" bash -c "! grep -q ' OK$' $OUT"
    expect "the host's values are unchanged" bash -c "[ \"\$(for f in ${files[*]}; do cat /proc/sys/\$f; done)\" = \"$before\" ]"
}
ctl=()
for f in "${files[@]}"; do ctl+=(write "/proc/sys/$f" "$(cat "/proc/sys/$f")" --); done
unset 'ctl[${#ctl[@]}-1]'
expect "control: host root writes the same values back" \
    bash -c "[ \$('$PROBE' $(printf '%q ' "${ctl[@]}") | grep -c ' OK$') = ${#files[@]} ]"
both
