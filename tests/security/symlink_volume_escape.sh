# Hostile code plants symlinks in a writable volume (and in the server
# sandbox's persistent layer) that point at a host dir next to the volume
# (relative), at its host path (absolute) and at "/". Then: following them
# inside; the file APIs (server: sandbox.fs.read/write as root) on paths
# through them; and the next start, whose volume mount points lie through
# them (those mounts are made by host root before the sandbox's root is
# entered). A mount point through a link is either made inside the
# sandbox or refused; it never lands in the host dir. The control shows
# that on the host the planted link does lead to the canary.
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/hostdir" "$TMP/vol2"
echo "LINK-SECRET-$$" >"$TMP/hostdir/canary"
chmod 644 "$TMP/hostdir/canary"
echo "VOL2-$$" >"$TMP/vol2/marker"
plant='ln -sfn ../hostdir /data/rel && ln -sfn '"$TMP"'/hostdir /data/abs && ln -sfn / /data/root &&
    ln -sfn ../hostdir/canary /data/relfile && mkdir -p /mnt && ln -sfn '"$TMP"'/hostdir /mnt/evil &&
    ln -sfn / /mnt/root && echo planted'
looks='cat /data/rel/canary /data/abs/canary /data/relfile /data/root'"$TMP"'/hostdir/canary 2>&1;
    echo x > /data/rel/planted 2>&1; echo x > /data/abs/planted 2>&1; echo end'
host_clean() { [ "$(ls -A "$TMP/hostdir")" = canary ]; }
# Mount points through the links (the layer ones only on the server).
targets=(/data/rel/mnt /data/abs/mnt "/data/root$TMP/hostdir/sub")
layer_targets=(/mnt/evil/sub "/mnt/root$TMP/hostdir/sub2")

# mounted_or_refused TARGET: the last start either failed on that mount
# point, or the volume is visible there inside.
mounted_or_refused() {
    grep -q "VOL2-$$" "$OUT" || grep -Eq 'volume mount point|Internal server error' "$ERR" "$TMP/start2.json" 2>/dev/null
}

body() {
    in_sb "$1" -- sh -c "$plant"
    expect "the links are planted" out_has planted
    expect "control: on the host the planted link leads to the canary" grep -q "LINK-SECRET-$$" "$TMP/vol/rel/canary"
    in_sb "$1" -- sh -c "$looks"
    expect "the command ran to its end" out_has '^end$'
    expect "following the links does not reach the host" nowhere "LINK-SECRET-$$"
    local t p
    if [ "$1" = run ]; then
        for t in "${targets[@]}"; do
            in_sb run --opts "-v $TMP/vol2:$t" -- cat "$t/marker"
            expect "a volume at $t is mounted inside or refused" mounted_or_refused
        done
        in_sb run --opts "-v $TMP/vol2:${targets[2]}" -- cat "${targets[2]}/marker"
        expect "a volume through the link to / lands inside the sandbox" out_has "VOL2-$$"
    else
        for p in /data/rel/canary /data/abs/canary /data/relfile "/data/root$TMP/hostdir/canary"; do
            call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"$p\"}" >"$TMP/fs.json"
            expect "sandbox.fs.read $p does not reach the host" grep -q '"http": 404' "$TMP/fs.json"
        done
        for p in /data/rel/planted /data/abs/planted "/data/root$TMP/hostdir/planted" /mnt/evil/planted; do
            call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"$p\", \"content\": \"eA==\"}" >/dev/null
        done
        for t in "${targets[@]}" "${layer_targets[@]}"; do
            call sandbox.stop "{\"sandbox\": \"$SB\"}" >/dev/null
            call sandbox.start "{\"sandbox\": \"$SB\", \"config\": {\"image\": \"microsandbox/python\", \"volumes\": [
                \"$TMP/vol:/data\", \"$TMP/vol2:$t\"]}}" >"$TMP/start2.json"
            in_sb server -- cat "$t/marker"
            expect "a volume at $t is mounted inside or refused" mounted_or_refused
        done
        expect "a volume through the layer's link to / lands inside the sandbox" out_has "VOL2-$$"
    fi
    expect "nothing was created in the host dir the links point at" host_clean
}
both
