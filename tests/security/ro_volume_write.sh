# Writes through a ":ro" volume whose files the sandbox's root owns (so
# only the read-only mount stops it): overwrite, truncate, append, remove,
# rename, create, mkdir, chmod, link, remount read-write, and (server)
# sandbox.fs.write. The control runs the same writes on a writable volume.
. "$(dirname "$0")/lib.sh"

writes='exec 2>&1; d=$1; echo pwned > $d/f; true > $d/f; echo more >> $d/f 2>&1; chmod 777 $d/f 2>&1; ln $d/f $d/l 2>&1;
    mv $d/g $d/g2 2>&1; rm -f $d/h 2>&1; touch $d/new 2>&1; mkdir $d/dir 2>&1; echo end'
setup() { # DIR OWNER: the files the writes go for, owned by the sandbox's root
    rm -rf "${1:?}"/*
    echo "RO-$$" >"$1/f"
    echo g >"$1/g"
    echo h >"$1/h"
    chmod 644 "$1"/*
    chown -R "$2:$2" "$1"
    chmod 777 "$1"
}
unchanged() { [ "$(cat "$TMP/rovol/f")" = "RO-$$" ] && [ "$(ls "$TMP/rovol" | tr '\n' ' ')" = "f g h " ] &&
    [ "$(stat -c %a "$TMP/rovol/f")" = 644 ]; }

body() {
    local owner=$RUN_ROOT_UID
    [ "$1" = server ] && owner=$SRV_ROOT_UID
    setup "$TMP/rovol" "$owner"
    setup "$TMP/vol" "$owner"
    in_sb "$1" -- sh -c "$writes" sh /data
    expect "control: the same writes work on a writable volume" \
        bash -c "[ \"\$(cat $TMP/vol/f)\" = more ] && [ \"\$(ls $TMP/vol | tr '\n' ' ')\" = 'dir f g2 l new ' ]"
    in_sb "$1" -- sh -c "$writes; /opt/helpers/probe mount -- umount; mount -o remount,rw /rodata 2>&1" sh /rodata
    expect "the command ran to its end" out_has '^end$'
    expect "every write fails with EROFS" bash -c "[ \$(grep -c 'Read-only file system' $OUT) -ge 8 ]"
    expect "remounting is refused" bash -c "grep -qx 'mount EPERM' $OUT && grep -q 'permission denied\|must be superuser' $OUT"
    if [ "$1" = server ]; then
        local p
        for p in /rodata/f /rodata/new /rodata/dir/new; do
            call sandbox.fs.write "{\"sandbox\": \"$SB\", \"path\": \"$p\", \"content\": \"cHduZWQ=\", \"mode\": 511}" >"$TMP/fs.json"
            expect "sandbox.fs.write $p is refused" grep -q '"http": 400' "$TMP/fs.json"
        done
    fi
    expect "the read-only volume is unchanged on the host" unchanged
}
both
