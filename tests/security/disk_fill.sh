# Disk fill of the writable layer: `sbx run --disk 16` (a tmpfs root) and
# a server sandbox (an ext4 image of 1 GiB on the host's disk). The writes
# stop at the layer's size with ENOSPC; the host's disk loses at most the
# image's size; the server's file API then answers a clear "No space left"
# (400) and works again once space is freed. Control: the host has far
# more free space than the layer, so the layer's size is what stopped it.
. "$(dirname "$0")/lib.sh"

avail() { df -B1 --output=avail "$1" | tail -1; }
fill='dd if=/dev/zero of=/tmp/fill bs=1M count=$1 2>&1; stat -c %s /tmp/fill'
bytes() { sed -n '$p' "$OUT"; }

body() {
    if [ "$1" = run ]; then
        in_sb run --opts "--disk 16" -- sh -c "$fill" sh 64
        expect "the fill stops with ENOSPC" out_has 'No space left'
        expect "at most 16 MiB were written" bash -c "[ \$(sed -n '\$p' $OUT) -le $((16 << 20)) ]"
    else
        local before after
        before=$(avail "$SRV_STATE")
        sb_start sec-disk
        in_sb server --sb sec-disk -- sh -c "$fill" sh 2048
        after=$(avail "$SRV_STATE")
        expect "the fill stops with ENOSPC" out_has 'No space left'
        expect "at most 1 GiB was written" bash -c "[ \$(sed -n '\$p' $OUT) -le $((1 << 30)) ]"
        expect "the host's disk lost at most the layer's size" bash -c "[ $((before - after)) -le $(((1 << 30) + (64 << 20))) ]"
        echo '{"sandbox": "sec-disk", "path": "/tmp/more", "content": "'"$(head -c 4194304 /dev/zero | base64 -w0)"'"}' >"$TMP/big.json"
        call sandbox.fs.write "@$TMP/big.json" >"$TMP/fs.json"
        expect "sandbox.fs.write says the sandbox is full (400)" \
            bash -c "grep -q '\"http\": 400' $TMP/fs.json && grep -q 'No space left' $TMP/fs.json"
        in_sb server --sb sec-disk -- rm /tmp/fill
        call sandbox.fs.write '{"sandbox": "sec-disk", "path": "/tmp/more", "content": "aGk="}' >"$TMP/fs.json"
        expect "writes work again once space is freed" grep -q '"size": 2' "$TMP/fs.json"
    fi
}
expect "control: the host has far more free space than the layer" bash -c "[ $(avail /tmp) -gt $((4 << 30)) ]"
both
