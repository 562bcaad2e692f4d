# Setuid and file-capability binaries gain nothing: a setuid-root copy of
# the probe owned by host root (in a volume), one with file capabilities
# (setcap, where installed), and one the sandbox's root makes setuid in its
# own writable layer; run as the user (sbx run) they keep uid 1000 and no
# capability, run as root inside they keep no capability; so does one the
# sandbox's root leaves setuid in a writable volume. The host's own
# setuid binaries (su, mount) give nothing either. Control: on the host,
# an unprivileged uid running the setuid copy becomes euid 0.
. "$(dirname "$0")/lib.sh"

cp "$PROBE" "$TMP/rovol/suid"
chown 0:0 "$TMP/rovol/suid"
chmod 4755 "$TMP/rovol/suid"
have_caps=0
if command -v setcap >/dev/null; then
    cp "$PROBE" "$TMP/rovol/fcap"
    setcap cap_sys_admin,cap_setuid,cap_dac_override+ep "$TMP/rovol/fcap" && have_caps=1
fi
script='cp /opt/helpers/probe /tmp/own; chmod 4755 /tmp/own; chown 0 /tmp/own 2>/dev/null; chmod 4755 /tmp/own;
    ls -l /tmp/own | cut -c1-10;
    for b in /rodata/suid /rodata/fcap /tmp/own /data/rsuid; do [ -e $b ] && $b ids; done;
    su -c "echo su-worked" root </dev/null 2>&1 | tail -1; grep NoNewPrivs /proc/self/status; echo end'

body() {
    local u users=(root)
    [ "$1" = run ] && users=(user root)
    # A setuid binary owned by the sandbox's root, left in the volume.
    in_sb "$1" --user root -- sh -c 'cp /opt/helpers/probe /data/rsuid && chmod 4755 /data/rsuid'
    for u in "${users[@]}"; do
        in_sb "$1" --user "$u" -- sh -c "$script"
        expect "[$u] the command ran to its end" out_has '^end$'
        expect "[$u] the sandbox's own file is setuid" bash -c "head -1 $OUT | grep -q '^-rws'"
        if [ "$u" = user ]; then
            expect "[$u] every setuid/fcap binary runs as uid 1000 without capabilities" \
                bash -c "[ \$(grep -c '^ids uid=1000 euid=1000 capeff=0000000000000000$' $OUT) = $((3 + have_caps)) ]"
        else
            expect "[$u] every setuid/fcap binary runs without capabilities" \
                bash -c "[ \$(grep -c '^ids uid=0 euid=0 capeff=0000000000000000$' $OUT) = $((3 + have_caps)) ]"
        fi
        expect "[$u] no binary gains anything" bash -c "! grep '^ids' $OUT | grep -qv 'capeff=0000000000000000$'"
        expect "[$u] su does not work" bash -c "! grep -q su-worked $OUT"
        expect "[$u] no_new_privs is set" grep -q 'NoNewPrivs:.1' "$OUT"
    done
}
expect "control: on the host, uid 65534 running the setuid copy gets euid 0" \
    bash -c "setpriv --reuid=65534 --regid=65534 --clear-groups $TMP/rovol/suid ids | grep -q 'uid=65534 euid=0 '"
if [ $have_caps = 1 ]; then
    expect "control: on the host, uid 65534 running the fcap copy gets capabilities" \
        bash -c "setpriv --reuid=65534 --regid=65534 --clear-groups $TMP/rovol/fcap ids | grep -qv 'capeff=0000000000000000$'"
fi
both
