# Hostile code looks for any way out: the interfaces it sees (only lo),
# adding an interface or route, TCP to public and private addresses and to
# the host's default gateway. Control: the host itself has an interface
# besides lo and a default route.
. "$(dirname "$0")/lib.sh"

gw=$(ip -4 route show default | awk '{ print $3; exit }')
body() {
    in_sb "$1" -- sh -c "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /proc/net/route | wc -l;
        ip link add sbxdummy0 type dummy 2>&1 | head -1; ip route add default dev lo 2>&1 | head -1;
        /opt/helpers/probe tcp 1.1.1.1 443 -- tcp 10.0.0.1 80 -- tcp 192.168.0.1 80 -- tcp ${gw:-10.0.0.1} 80; echo end"
    expect "the command ran to its end" out_has '^end$'
    expect "lo is the only interface" bash -c "[ \"\$(head -1 $OUT)\" = lo ] && ! sed -n 2p $OUT | grep -qv '^1$'"
    expect "no interface or route can be added" bash -c "[ \$(grep -c 'Operation not permitted' $OUT) = 2 ]"
    expect "every outside address is unreachable" bash -c "[ \$(grep -c '^tcp ENETUNREACH$' $OUT) = 4 ]"
    expect "the host has no interface of the sandbox's making" bash -c "! ip link show sbxdummy0"
}
expect "control: the host has a default route and an interface besides lo" \
    bash -c "[ -n '$gw' ] && [ \$(tail -n +3 /proc/net/dev | grep -vc 'lo:') -ge 1 ]"
both
