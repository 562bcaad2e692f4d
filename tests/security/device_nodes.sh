# Device nodes: /dev holds exactly the allowlist (null zero full random
# urandom tty, a private devpts), with the right numbers; no node can be
# made; host devices are absent; and nodes that come with a directory
# image (a loop device over a disk file with a canary, /dev/kmsg, both
# 0666) or sit in a volume are dead (an image's root and volumes are
# nodev; the throwaway tmpfs root, which holds /dev, has only sbx's nodes).
# Control: on the host, the sandbox's own uid reads the canary through the
# image's node.
. "$(dirname "$0")/lib.sh"

img="$TMP/img"
mkdir -p "$img/bin"
cp "$PROBE" "$img/bin/probe"
head -c 1048576 /dev/zero >"$TMP/disk.raw"
echo "DISK-SECRET-$$" | dd of="$TMP/disk.raw" conv=notrunc status=none
loop=$(losetup -f --show "$TMP/disk.raw")
defer "losetup -d $loop"
mknod -m 666 "$img/disk" b "$(stat -c '%t' "$loop" | xargs printf '%d')" "$(stat -c '%T' "$loop" | xargs printf '%d')"
mknod -m 666 "$img/kmsg" c 1 11
mknod -m 666 "$TMP/vol/disk" b "$(stat -c '%t' "$loop" | xargs printf '%d')" "$(stat -c '%T' "$loop" | xargs printf '%d')"

want_dev="fd full null ptmx pts random shm stderr stdin stdout tty urandom zero "
nodes='for n in null zero full random urandom tty pts/ptmx; do stat -c "%n %t:%T" /dev/$n; done'
body() {
    in_sb "$1" -- sh -c "ls /dev | tr '\n' ' '; echo; $nodes; /opt/helpers/probe mknod /tmp/n -- mknod_blk /tmp/b \
        -- open_rw /dev/vda -- open_rw /dev/sda -- open_rw /dev/mem -- open_rw /dev/kmsg -- open_rw /dev/loop-control \
        -- open_rw /dev/net/tun -- open_rw /dev/fuse -- open_rw /dev/ptmx -- open_rw /data/disk; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "/dev lists the allowlist only" bash -c "[ \"\$(head -1 $OUT)\" = '$want_dev' ]"
    expect "the nodes are the right devices" bash -c "[ \"\$(sed -n 2,8p $OUT | tr '\n' ' ')\" = \
        '/dev/null 1:3 /dev/zero 1:5 /dev/full 1:7 /dev/random 1:8 /dev/urandom 1:9 /dev/tty 5:0 /dev/pts/ptmx 5:2 ' ]"
    expect "no device node can be made (EPERM)" bash -c "grep -qx 'mknod EPERM' $OUT && grep -qx 'mknod_blk EPERM' $OUT"
    expect "host devices are absent" bash -c "[ \$(grep -c '^open_rw ENOENT$' $OUT) = 7 ]"
    expect "control: the private ptmx opens" bash -c "grep -n '^open_rw OK' $OUT | grep -q ."
    expect "a device node in a volume is dead (EACCES)" bash -c "tail -2 $OUT | head -1 | grep -qx 'open_rw EACCES'"
    # A directory image with device nodes.
    if [ "$1" = run ]; then
        "$SBX" run --user root --image "$img" -- /bin/probe open_rw /disk -- open_rw /kmsg >"$OUT" 2>"$ERR" </dev/null
    else
        call sandbox.start "{\"sandbox\": \"sec-devimg\", \"config\": {\"image\": \"$img\"}}" >"$TMP/s.json"
        defer "call sandbox.delete '{\"sandbox\": \"sec-devimg\"}'"
        in_sb server --sb sec-devimg -- /bin/probe open_rw /disk -- open_rw /kmsg
    fi
    expect "device nodes of the image are dead (EACCES)" \
        bash -c "[ \"\$(tr '\n' ' ' < $OUT)\" = 'open_rw EACCES open_rw EACCES ' ]"
}
expect "control: on the host the sandbox's uid reads the disk through the image's node" \
    bash -c "setpriv --reuid=$RUN_ROOT_UID --regid=$RUN_ROOT_UID --clear-groups head -c 100 $img/disk | grep -aq DISK-SECRET"
both
