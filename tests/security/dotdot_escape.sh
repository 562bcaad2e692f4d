# Hostile code climbs out with "..": from the root, from inside a volume
# (whose host dir has a sibling with a canary, as the control shows), and
# (server) through sandbox.fs.read/write paths and a volume's guest path.
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/hostdir"
echo "DOTDOT-SECRET-$$" >"$TMP/hostdir/canary"
chmod 644 "$TMP/hostdir/canary"
up="../../../../../../../../.."

body() {
    in_sb "$1" -- sh -c "cat /$up$TMP/hostdir/canary /data/../hostdir/canary /data/$up$TMP/hostdir/canary 2>&1;
        cd /data && cat ../hostdir/canary $up$TMP/hostdir/canary 2>&1; cd /data/$up && pwd && ls;
        echo x > /data/$up$TMP/hostdir/planted 2>&1; echo x > /data/../hostdir/planted 2>&1; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "the sibling of the volume is not reached" nowhere "DOTDOT-SECRET-$$"
    expect ".. from a volume stops at the sandbox root" grep -qx / "$OUT"
    expect "nothing is planted next to the volume on the host" test ! -e "$TMP/hostdir/planted"
    if [ "$1" = server ]; then
        call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"/data/../hostdir/canary\"}" >"$TMP/a.json"
        call sandbox.fs.read "{\"sandbox\": \"$SB\", \"path\": \"/data/$up$TMP/hostdir/canary\"}" >"$TMP/b.json"
        expect "sandbox.fs.read with .. finds nothing" \
            bash -c "grep -q '\"http\": 404' $TMP/a.json && grep -q '\"http\": 404' $TMP/b.json"
        expect "sandbox.fs.read with .. does not return the canary" bash -c "! grep -q '$(printf 'DOTDOT-SECRET-%s\n' $$ | base64)' $TMP/a.json $TMP/b.json"
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/data/$up$TMP/hostdir/planted\", \"content\": \"eA==\"}" >/dev/null
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/data/../hostdir/planted\", \"content\": \"eA==\"}" >/dev/null
        expect "sandbox.fs.write with .. plants nothing on the host" test ! -e "$TMP/hostdir/planted"
        call sandbox.start "{\"sandbox\": \"sec-dotdot-vol\", \"config\": {\"image\": \"microsandbox/python\", \"volumes\": [\"$TMP/vol:/data/$up$TMP/hostdir\"]}}" >"$TMP/c.json"
        defer "call sandbox.delete '{\"sandbox\": \"sec-dotdot-vol\"}'"
        expect "a volume guest path with .. is refused" grep -q "leaves the sandbox root" "$TMP/c.json"
    fi
}
expect "control: the sandbox's uid reaches the sibling through .. on the host" \
    bash -c "setpriv --reuid=$RUN_ROOT_UID --regid=$RUN_ROOT_UID --clear-groups cat $TMP/vol/../hostdir/canary | grep -q DOTDOT"
both
