# Hostile code goes through /proc to the host: /proc/<pid>/root and cwd of
# every process it can see (pid 1 first: the sandbox's init, a clone of
# sbx, or for the server the sbx binary it re-executes), /proc/self/cwd,
# init's environ, memory, fds and exe, and (server) sandbox.fs.read of the
# same paths as root. The canaries: a host file the sandbox's uid could
# read on the host, and a secret in the environment of sbx and the server:
# an sbx run init inherits it (the control reads it on the host), a server
# sandbox's init never has it.
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/hostdir"
echo "PROC-SECRET-$$" >"$TMP/hostdir/canary"
chmod 644 "$TMP/hostdir/canary"
c="$TMP/hostdir/canary"

body() {
    in_sb "$1" -- sh -c "for p in /proc/[0-9]* /proc/self /proc/thread-self; do
            cat \$p/root$c \$p/cwd$c \$p/cwd/../../../..$c \$p/environ \$p/fd/*/$c 2>&1; readlink \$p/root \$p/cwd;
            ls -l \$p/fd/ 2>&1; done;
        cat /proc/1/cwd/../../..$c /proc/1/environ 2>&1; ls /proc/1/map_files 2>&1 | head -3;
        python3 -c 'open(\"/proc/1/mem\", \"rb\")' 2>&1 | tail -1; dd if=/proc/1/exe bs=1 count=0 2>&1; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "the host file is not reached" nowhere "PROC-SECRET-$$"
    expect "init's environment (the server's / sbx's) is not read" nowhere "$SBX_SEC_CANARY"
    expect "init's memory cannot be opened" grep -q "PermissionError.*'/proc/1/mem'" "$OUT"
    expect "init's root and cwd are not followed" grep -q "/proc/1/root$c: Permission denied" "$OUT"
    if [ "$1" = server ]; then
        local p
        for p in /proc/1/root$c /proc/1/cwd$c /proc/1/environ /proc/1/mem /proc/1/fd/0 /proc/1/fd/3 /proc/1/fd/4 \
            /proc/self/root$c /proc/1/map_files; do
            call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"$p\"}" >"$TMP/fs.json"
            expect "sandbox.fs.read $p is refused" grep -Eq '"http": (400|404)' "$TMP/fs.json"
        done
        # The server has the secret, its sandbox's init (host view) not: it
        # is the sbx binary re-executed with the sanitizers' settings only.
        local init
        init=$(for p in $(sb_pids "$(engine_id "$SB")"); do
            [ "$(tr -d '\0' </proc/$p/cmdline)" = sbx-init ] && echo $p; done | head -1)
        expect "control: the server holds the secret (host view)" \
            bash -c "tr '\0' '\n' </proc/$SRV_PID/environ | grep -q '$SBX_SEC_CANARY'"
        expect "the server sandbox's init does not hold it (host view)" \
            bash -c "[ -n '$init' ] && ! tr '\0' '\n' </proc/$init/environ | grep -q '$SBX_SEC_CANARY'"
    fi
}
expect "control: the sandbox's uid reads the host file on the host" \
    bash -c "setpriv --reuid=$RUN_ROOT_UID --regid=$RUN_ROOT_UID --clear-groups cat $c | grep -q PROC-SECRET"
# Control: an sbx run sandbox's init holds the secret (host view).
"$SBX" run -- sleep 30 >/dev/null 2>&1 &
runpid=$!
defer "kill $runpid"
init=""
for ((i = 0; i < 200; i++)); do
    init=$(pgrep -P $runpid | head -1)
    [ -n "$init" ] && tr '\0' '\n' </proc/$init/environ 2>/dev/null | grep -q "$SBX_SEC_CANARY" && break
    sleep 0.05
done
expect "control: an sbx run init holds the secret (host view)" \
    bash -c "tr '\0' '\n' </proc/$init/environ | grep -q '$SBX_SEC_CANARY'"
kill $runpid 2>/dev/null
wait $runpid 2>/dev/null
both
