# Memory bombs: anonymous memory (python, 256 MiB) and tmpfs memory
# (/dev/shm) in a sandbox limited to 48 MiB. The memory cgroup stops both
# (OOM kill, or ENOSPC/ENOMEM), its peak stays at the limit, the host and
# the server go on, and the server sandbox runs commands afterwards (its
# init may be OOM-killed by the tmpfs bomb: then after a stop and start).
# Control: without a limit the same allocation succeeds.
. "$(dirname "$0")/lib.sh"

hog='x = bytearray(256 << 20)
for i in range(0, len(x), 4096): x[i] = 1
print("survived", flush=True)'
shm='dd if=/dev/zero of=/dev/shm/fill bs=1M count=256 2>&1 | tail -1; echo shm-end'

# peak_within ID BYTES NAME: the memory cgroup's peak is at most BYTES;
# or the cgroup is gone because the sandbox died, which the server logs.
peak_within() {
    local v
    v=$(cat "/sys/fs/cgroup/memory/sbx/$1/memory.max_usage_in_bytes" 2>/dev/null)
    if [ -n "$v" ]; then
        [ "$v" -le "$2" ]
    else
        wait_for 5 grep -q "default/$3 died: its init was killed by signal 9 (the kernel's OOM killer" "$SRV_LOG"
    fi
}

body() {
    if [ "$1" = run ]; then
        in_sb run --opts "--memory 48" -- python3 -c "$hog"
        expect "the anonymous bomb is OOM-killed (137)" bash -c "[ $RC = 137 ] && grep -q OOM $ERR"
        in_sb run --opts "--memory 48" -- sh -c "$shm"
        expect "the tmpfs bomb is stopped" bash -c "! grep -q '268435456 bytes' $OUT"
    else
        sb_start sec-mem '"memory": 48'
        local id
        id=$(engine_id sec-mem)
        in_sb server --sb sec-mem -- python3 -c "$hog"
        expect "the anonymous bomb does not survive" bash -c "[ $RC != 0 ] && ! grep -q survived $OUT"
        in_sb server --sb sec-mem -- sh -c "$shm"
        expect "the tmpfs bomb is stopped" bash -c "! grep -q '268435456 bytes' $OUT"
        # tmpfs pages cannot be reclaimed by killing their writer: the OOM
        # killer may go on to the sandbox's init, and the sandbox dies (the
        # server then tears it down within a second, logs why and lists it
        # as stopped; a start brings it back).
        expect "the sandbox's memory peak stays within its limit (or the OOM killer ended the sandbox)" \
            peak_within "$id" $((48 << 20)) sec-mem
        in_sb server --sb sec-mem -- sh -c 'rm -f /dev/shm/fill; echo usable'
        if [ $RC != 0 ]; then
            call sandbox.stop '{"sandbox": "sec-mem"}' >/dev/null
            call sandbox.start '{"sandbox": "sec-mem"}' >/dev/null
            in_sb server --sb sec-mem -- sh -c 'echo usable'
        fi
        expect "the sandbox runs commands afterwards (after a stop and start if it died)" out_has usable
    fi
    expect "the host still runs programs" bash -c 'python3 -c "x = bytearray(64 << 20)"'
}
in_sb run --opts "--memory 0" -- python3 -c "$hog"
expect "control: without a limit the allocation succeeds" out_has survived
both
