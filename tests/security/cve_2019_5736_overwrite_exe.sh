# The runc CVE-2019-5736 class: overwrite the host binary behind the
# sandbox. A sandbox's init is a clone of sbx (sbx run) or sbx re-executed
# by the server, so /proc/1/exe is the host's sbx; a script starting
# "#!/proc/self/exe" makes the exec of a command re-run that binary inside
# the sandbox (with LD_PRELOAD from the sandbox's environment where sbx is
# dynamically linked, as in the sanitizer build: cve_preload.c), which
# then tries to reopen it for writing through an O_PATH handle once it
# stops running. Also: writing
# /proc/self/exe, /proc/1/exe and sbx's paths directly, and (server)
# through sandbox.fs.write. The host binaries must keep their hashes.
# Control: the same preloaded attack on the host opens a scratch binary
# for writing.
. "$(dirname "$0")/lib.sh"

SBX_SERVER_BIN="$(dirname "$SBX")/sbx-server"
hashes() { sha256sum "$SBX" "$SBX_SERVER_BIN" "$PROBE"; }
before=$(hashes)
printf '#!/proc/self/exe\n' >"$TMP/vol/evil"
# Under ASan (make asan) the binaries refuse a library preloaded before
# their runtime unless told otherwise.
asan_env=ASAN_OPTIONS=verify_asan_link_order=0
chmod 755 "$TMP/vol/evil"
cc_ok=0
cc -std=c17 -D_GNU_SOURCE -O1 -shared -fPIC "$SEC/cve_preload.c" -o "$TMP/vol/cve.so" && cc_ok=1
expect "the preload library builds (cc)" test $cc_ok = 1

# Where sbx is dynamically linked the preloaded attack rides along.
dynamic=0
readelf -l "$SBX" 2>/dev/null | grep -q INTERP && dynamic=1

# reexec_checks PATH: after /data/evil ran (with the preload in its
# environment).
reexec_checks() {
    expect "the re-exec of the host binary ran (sbx's usage)" bash -c "grep -qi 'usage\|unknown' $OUT $ERR"
    [ $dynamic = 1 ] || return 0
    local i
    # A server sandbox lives on: the attack's child gets to its reopen. An
    # sbx run sandbox (its whole pid namespace) is gone when sbx returns,
    # usually before the child got that far.
    for ((i = 0; i < 200; i++)); do
        [ "$1" != server ] || [ "$(wc -l <"$TMP/vol/cve.log" 2>/dev/null)" = 2 ] && break
        sleep 0.05
    done
    expect "the preloaded attack ran inside the host's sbx (dynamically linked here)" \
        bash -c "head -1 $TMP/vol/cve.log | grep -q '/sbx\$'"
    if [ "$1" = server ]; then
        expect "reopening the host binary for writing is refused (EACCES)" \
            bash -c "sed -n 2p $TMP/vol/cve.log | grep -qx 'open_rw EACCES'"
    else
        expect "reopening the host binary for writing never succeeds" \
            bash -c "! sed -n 2p $TMP/vol/cve.log | grep -q 'open_rw OK'"
    fi
}

body() {
    in_sb "$1" -- /opt/helpers/probe write /proc/self/exe x -- reopen_write /proc/self/exe -- write /proc/1/exe x \
        -- reopen_write /proc/1/exe -- open_rw "$SBX" -- open_rw "$SBX_SERVER_BIN"
    expect "the probe's own exe cannot be written" bash -c "head -2 $OUT | grep -c -E ' (open|reopen)-(ETXTBSY|EROFS|EACCES)$' | grep -qx 2"
    expect "init's exe (the host binary) cannot even be opened" \
        bash -c "sed -n 3,4p $OUT | tr '\n' ' ' | grep -qx 'write open-EACCES reopen_write open-EACCES '"
    expect "sbx's binaries are not in the sandbox" bash -c "[ \$(tail -2 $OUT | grep -c 'open_rw ENOENT') = 2 ]"
    rm -f "$TMP/vol/cve.log"
    if [ "$1" = run ]; then
        in_sb run --opts "-e LD_PRELOAD=/data/cve.so -e SBX_CVE_LOG=/data/cve.log -e $asan_env" -- /data/evil
        reexec_checks run
    else
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/proc/1/exe\", \"content\": \"eA==\"}" >"$TMP/fs.json"
        expect "sandbox.fs.write /proc/1/exe is refused" grep -Eq '"http": (400|404)' "$TMP/fs.json"
        call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"/proc/self/exe\", \"content\": \"eA==\"}" >"$TMP/fs.json"
        expect "sandbox.fs.write /proc/self/exe is refused" grep -Eq '"http": (400|404)' "$TMP/fs.json"
        sb_start sec-cve-preload '"envs": ["LD_PRELOAD=/data/cve.so", "SBX_CVE_LOG=/data/cve.log", "'"$asan_env"'"]'
        in_sb server --sb sec-cve-preload -- /data/evil
        reexec_checks server
    fi
    expect "sbx, sbx-server and the probe keep their hashes" bash -c "[ \"\$(sha256sum $SBX $SBX_SERVER_BIN $PROBE)\" = \"$before\" ]"
}
cp /usr/bin/true "$TMP/victim"
SBX_CVE_PROBE="$PROBE" SBX_CVE_CONTROL=1 SBX_CVE_LOG="$TMP/ctl.log" LD_PRELOAD="$TMP/vol/cve.so" "$TMP/victim"
for ((i = 0; i < 200; i++)); do [ "$(wc -l <"$TMP/ctl.log" 2>/dev/null)" = 2 ] && break; sleep 0.05; done
expect "control: on the host the attack opens a scratch binary for writing" grep -qx 'open_rw OK' "$TMP/ctl.log"
both
