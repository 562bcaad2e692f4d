# Hostile code ptraces (PTRACE_SEIZE, process_vm_readv) what lies outside
# its processes: host processes by host pid (the server, this test's
# shell, a sleeper), and the sandbox's init, a clone of sbx or the server
# holding their memory. ptrace itself is allowed (debuggers work inside:
# the control attaches to a sibling inside), and on the host the probe
# attaches to the sleeper (the control that the probe works).
. "$(dirname "$0")/lib.sh"

sleep 600 &
sleeper=$!
defer "kill -9 $sleeper"
body() {
    in_sb "$1" -- sh -c "sleep 300 & s=\$!; /opt/helpers/probe ptrace_attach \$s -- ptrace_attach 1 -- vm_read 1 \
        -- ptrace_attach $sleeper -- vm_read $sleeper -- ptrace_attach $SRV_PID -- vm_read $SRV_PID -- ptrace_attach $$;
        kill \$s; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "control: a sibling inside can be traced" bash -c "[ \"\$(head -1 $OUT)\" = 'ptrace_attach OK' ]"
    expect "init cannot be traced or read (EPERM)" bash -c "sed -n 2,3p $OUT | tr '\n' ' ' | grep -qx 'ptrace_attach EPERM vm_read EPERM '"
    expect "host processes are not found (ESRCH)" bash -c "[ \$(tail -n +4 $OUT | grep -c ' ESRCH$') = 5 ]"
}
expect "control: the probe traces and reads a process on the host" \
    bash -c "[ \"\$('$PROBE' ptrace_attach $sleeper -- vm_read $sleeper | tr '\n' ' ')\" = 'ptrace_attach OK vm_read EFAULT ' ]"
both
