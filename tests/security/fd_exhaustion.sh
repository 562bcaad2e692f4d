# File-descriptor exhaustion: 48 processes each open files until refused
# (RLIMIT_NOFILE, 20000 here) and hold them. Open files are kernel memory
# charged to the sandbox's memory cgroup, so a 64 MiB sandbox holds far
# fewer than 48 x 20000 (the holders are OOM-killed first) and the host's
# file table stays usable. Control: with no memory limit the same attack
# holds every one of them, so only the limit bounds it.
. "$(dirname "$0")/lib.sh"

n=48
cat >"$TMP/vol/fds.sh" <<INNER
pids=""
for i in \$(seq $n); do
    sh -c 'echo \$\$; echo 1000 > /proc/self/oom_score_adj; exec /opt/helpers/probe fds hold' >/tmp/fds.\$i 2>&1 &
    pids="\$pids \$!"
done
# Wait until every holder has either reported or died (OOM).
while :; do
    pending=0
    for i in \$(seq $n); do
        p=\$(head -1 /tmp/fds.\$i 2>/dev/null)
        [ -n "\$p" ] && kill -0 \$p 2>/dev/null && [ \$(wc -l </tmp/fds.\$i) -lt 2 ] && pending=1
        [ -z "\$p" ] && pending=1
    done
    [ \$pending = 0 ] && break
    sleep 0.1
done
total=0 alive=0
for i in \$(seq $n); do
    p=\$(head -1 /tmp/fds.\$i)
    kill -0 \$p 2>/dev/null && total=\$((total + \$(sed -n 2p /tmp/fds.\$i | cut -d' ' -f3))) alive=\$((alive + 1))
done
# Report only once the holders are gone: while the sandbox is at its
# memory limit even a write to stdout (a pipe page, charged to it) can
# fail with ENOMEM, and the counts would be lost.
kill -9 \$pids 2>/dev/null
wait
echo "held \$total"
echo "alive \$alive"
echo end
INNER
held() { sed -n 's/^held //p' "$OUT"; }
export -f held
export OUT
host_opens() { local i; for ((i = 0; i < 100; i++)); do exec {fd}</dev/null || return 1; exec {fd}<&-; done; }

body() {
    if [ "$1" = run ]; then
        in_sb run --opts "--memory 64 --pids 256" -- sh /data/fds.sh
    else
        sb_start sec-fds '"memory": 64'
        in_sb server --sb sec-fds -- sh /data/fds.sh
    fi
    expect "the attack ran to its end" out_has '^end$'
    expect "the sandbox held far fewer files than 48 x 20000 (bounded by 64 MiB)" \
        bash -c "h=\$(sed -n 's/^held //p' $OUT); [ -n \"\$h\" ] && [ \$h -lt 400000 ]"
    expect "the host still opens files" host_opens
}
in_sb run --opts "--memory 0 --pids 256" -- sh /data/fds.sh
expect "control: without a memory limit every holder keeps all it opened ($(held) files)" \
    bash -c "grep -qx 'alive $n' $OUT && [ \$(held) -ge $((n * 10000)) ]"
both
