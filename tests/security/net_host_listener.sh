# Hostile code connects to a TCP listener on the host's 127.0.0.1, and to
# one on every host interface address. The sandbox's 127.0.0.1 is its own
# loopback (refused), the host's addresses are unreachable; the listeners
# see nothing. Control: from the host both listeners take the connection.
. "$(dirname "$0")/lib.sh"

listener 127.0.0.1
lo_port=$LPORT
listener 0.0.0.0
any_port=$LPORT
probes=(tcp 127.0.0.1 "$lo_port")
for a in $(host_addrs); do probes+=(-- tcp "$a" "$any_port"); done

body() {
    in_sb "$1" -- /opt/helpers/probe "${probes[@]}"
    expect "the sandbox's 127.0.0.1 is its own loopback (ECONNREFUSED)" bash -c "head -1 $OUT | grep -qx 'tcp ECONNREFUSED'"
    expect "host addresses are unreachable (ENETUNREACH)" \
        bash -c "[ \$(tail -n +2 $OUT | grep -c ' ENETUNREACH$') = $(host_addrs | wc -l) ]"
    expect "the loopback listener saw no connection" test ! -s "$TMP/conns.$lo_port"
    expect "the any-address listener saw no connection" test ! -s "$TMP/conns.$any_port"
}
expect "control: the host has an address besides loopback" test -n "$(host_addrs)"
expect "control: from the host the loopback listener takes the connection" \
    bash -c "'$PROBE' tcp 127.0.0.1 $lo_port | grep -qx 'tcp OK'"
expect "control: from the host the any-address listener takes it on $(host_addrs | head -1)" \
    bash -c "'$PROBE' tcp $(host_addrs | head -1) $any_port | grep -qx 'tcp OK'"
for ((i = 0; i < 100; i++)); do [ -s "$TMP/conns.$any_port" ] && [ -s "$TMP/conns.$lo_port" ] && break; sleep 0.05; done
expect "control: the listeners recorded the host's connections" test -s "$TMP/conns.$lo_port" -a -s "$TMP/conns.$any_port"
: >"$TMP/conns.$lo_port"
: >"$TMP/conns.$any_port"
both
