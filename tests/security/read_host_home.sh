# Hostile code looks for host home directories: a world-readable canary
# in /home/<dir> and one in /root. On the host the sandbox's own uid can
# read the /home one (the control), so only the sandbox's root keeps it out.
. "$(dirname "$0")/lib.sh"

canary="sbx-sec-home-$$-$RANDOM"
hdir="/home/$canary"
mkdir -p "$hdir"
defer rm -rf "$hdir"
chmod 755 "$hdir"
echo "HOME-SECRET-$canary" >"$hdir/secret"
echo "ROOT-SECRET-$canary" >"/root/$canary"
defer rm -f "/root/$canary"
chmod 644 "$hdir/secret" "/root/$canary"

body() {
    in_sb "$1" -- sh -c "ls -a /home /root 2>&1; cat $hdir/secret /root/$canary /proc/1/root$hdir/secret \
        /proc/self/root/root/$canary /home/../$hdir/secret 2>&1;
        find / -xdev -name '$canary*' 2>/dev/null; grep -rs SECRET-$canary /home /root /tmp /var /mnt /data /rodata; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "the host's home canary is not readable" nowhere "HOME-SECRET-$canary"
    expect "root's home canary is not readable" nowhere "ROOT-SECRET-$canary"
    expect "no file of that name is found" bash -c "! grep -q '^/.*$canary' '$OUT'"
}
expect "control: the sandbox's uid reads the home canary on the host" \
    bash -c "setpriv --reuid=$RUN_ROOT_UID --regid=$RUN_ROOT_UID --clear-groups cat $hdir/secret | grep -q HOME-SECRET"
both
