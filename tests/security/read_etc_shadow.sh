# Hostile code reads /etc/shadow: directly, through "..", through
# /proc/1/root and /proc/self/root, and by opening every shadow-like file
# it can find. The host's shadow is readable by root on the host (the
# control); inside, /etc is the mask overlay, where shadow is whited out.
. "$(dirname "$0")/lib.sh"

# A fragment of the host's secret to look for: root's password field.
secret=$(awk -F: '$1 == "root" { print $2 }' /etc/shadow)
body() {
    in_sb "$1" -- sh -c 'for f in /etc/shadow /etc/../etc/shadow /usr/../etc/shadow /proc/1/root/etc/shadow \
        /proc/self/root/etc/shadow /etc/gshadow /etc/shadow- /var/backups/shadow.bak; do
            cat "$f" 2>&1; done; find / -xdev -name "*shadow*" -type f 2>/dev/null | xargs -r cat 2>&1; echo end'
    expect "the command ran to its end" out_has '^end$'
    expect "no line of the host's /etc/shadow shows up" nowhere "root:$secret"
    expect "no host shadow file is readable at all" bash -c "! grep -q '^root:' '$OUT'"
    expect "/etc/shadow is absent inside" grep -q '/etc/shadow: No such file' "$OUT"
}
# Control: the host file has the root entry the check looks for.
expect "control: the host's /etc/shadow has a root entry" grep -q "^root:$secret" /etc/shadow
both
