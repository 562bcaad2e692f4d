# Hostile code goes for the server's key file and state dir (registry,
# other sandboxes' layers): by path, through /proc/1/root, by searching,
# and (server) through sandbox.fs.read as root. A secret kept in another
# sandbox's stored config must not be found either.
. "$(dirname "$0")/lib.sh"

key_hex=$(od -An -tx1 "$SRV_STATE/server.key" | tr -d ' \n')
canary="REGISTRY-SECRET-$$-$RANDOM"
sb_start "sec-state-other" "\"envs\": [\"TOKEN=$canary\"]"

body() {
    local s=$SRV_STATE
    in_sb "$1" -- sh -c "for f in $s/server.key /proc/1/root$s/server.key /proc/self/root$s/server.key \
            $s/../$(basename "$s")/server.key; do od -An -tx1 \$f 2>&1; done | tr -d ' \n'; echo;
        ls -la $s $s/layers /proc/1/root$s 2>&1; cat $s/registry.db $s/registry.db-wal 2>&1;
        find / -xdev \\( -name 'server.key' -o -name 'registry.db*' -o -name 'layer.img' \\) 2>/dev/null;
        grep -rs $canary /home /root /tmp /var /mnt /data /rodata /etc /run 2>/dev/null; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "the key's bytes are not read" nowhere "$key_hex"
    expect "the stored secret of another sandbox is not found" nowhere "$canary"
    expect "no state file is found inside" bash -c "! grep -Eq '^/.*(server\.key|registry\.db|layer\.img)$' '$OUT'"
    if [ "$1" = server ]; then
        local p
        for p in "$s/server.key" "/proc/1/root$s/server.key" "$s/registry.db" "$s/layers"; do
            call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"$p\"}" >"$TMP/fs.json"
            expect "sandbox.fs.read $p is refused (404 or 400)" grep -Eq '"http": (404|400)' "$TMP/fs.json"
        done
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/tmp/x\", \"content\": \"aGk=\"}" >/dev/null
        call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"/tmp/x\"}" >"$TMP/fs.json"
        expect "control: sandbox.fs.read works for a sandbox file" grep -q '"content": "aGk="' "$TMP/fs.json"
    fi
}
expect "control: the key file is there and not empty" test -s "$SRV_STATE/server.key"
expect "control: the registry holds the other sandbox's secret" grep -aq "$canary" "$SRV_STATE/registry.db" "$SRV_STATE/registry.db-wal"
both
