# Hard links and host-owned files in a writable volume (a sticky dir, as
# /tmp is): hostile code links a host-root-owned file to write or chmod it
# through the link, and has the server's file API (root inside) overwrite
# it, write through links it planted, or chmod a world-writable root-owned
# file setuid. The host files keep content, owner and mode, and no
# root-owned set-id file appears. sandbox.fs.write replaces a file rather
# than writing into it, so it never writes through a link at all. Control:
# linking a file the sandbox owns works inside.
. "$(dirname "$0")/lib.sh"

chmod 1777 "$TMP/vol"
echo "ROOT-OWNED-$$" >"$TMP/vol/rootfile"
chmod 644 "$TMP/vol/rootfile"
: >"$TMP/vol/wwfile"
chmod 666 "$TMP/vol/wwfile"
before=$(stat -c '%u %a %s' "$TMP/vol/rootfile" "$TMP/vol/wwfile")
host_same() { [ "$(cat "$TMP/vol/rootfile")" = "ROOT-OWNED-$$" ] &&
    [ "$(stat -c '%u %a %s' "$TMP/vol/rootfile" "$TMP/vol/wwfile")" = "$before" ]; }
no_root_setid() { [ -z "$(find "$TMP/vol" -user 0 -perm /6000)" ]; }

body() {
    rm -f "$TMP/vol/hl" "$TMP/vol/own" "$TMP/vol/own-link"
    # (fs.protected_hardlinks refuses the link; where it is off, writing
    # through it must fail all the same.)
    in_sb "$1" -- sh -c 'ln /data/rootfile /data/hl 2>&1 && { echo pwned > /data/hl; chmod 666 /data/hl; } 2>&1;
        echo pwned > /data/rootfile 2>&1; chmod 666 /data/rootfile 2>&1;
        echo mine > /data/own && ln /data/own /data/own-link && echo linked; echo end'
    expect "the command ran to its end" out_has '^end$'
    expect "control: a file the sandbox owns can be hard-linked" out_has '^linked$'
    if [ "$1" = server ]; then
        local p
        for p in /data/rootfile /data/wwfile; do
            call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"$p\", \"content\": \"cHduZWQ=\", \"mode\": 3565}" >"$TMP/fs.json"
            expect "sandbox.fs.write of root-owned $p in a sticky dir is refused" grep -q '"http": 400' "$TMP/fs.json"
        done
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/data/hl\", \"content\": \"cHduZWQ=\", \"mode\": 4095}" >/dev/null
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/data/own-link\", \"content\": \"d3JpdHRlbg==\"}" >"$TMP/fs.json"
        expect "sandbox.fs.write of a linked name writes that name" grep -qx written "$TMP/vol/own-link"
        expect "... and not through the link" grep -qx mine "$TMP/vol/own"
    fi
    expect "the host files keep content, owner and mode" host_same
    expect "no root-owned set-id file appears in the volume" no_root_setid
}
both
