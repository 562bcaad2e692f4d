# Hostile code resolves names and sends DNS queries: to the host's
# nameserver, to a public resolver, to the sandbox's own loopback. Nothing
# leaves: ENETUNREACH for outside addresses, and name lookups fail.
# Control: from the host the query to its nameserver goes out (answered,
# or at least sent: anything but ENETUNREACH).
. "$(dirname "$0")/lib.sh"

ns=$(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ { print $2; exit }' /etc/resolv.conf)
ns=${ns:-10.0.0.1}
body() {
    in_sb "$1" -- sh -c "/opt/helpers/probe dns $ns -- dns 8.8.8.8 -- dns 1.1.1.1; getent hosts deb.debian.org || echo lookup-failed;
        python3 -c 'import socket; socket.getaddrinfo(\"deb.debian.org\", 443)' 2>&1 | tail -1"
    expect "queries to outside resolvers are unreachable" \
        bash -c "[ \"\$(head -3 $OUT | tr '\n' ' ')\" = 'dns ENETUNREACH dns ENETUNREACH dns ENETUNREACH ' ]"
    expect "name lookups fail" bash -c "grep -qx lookup-failed $OUT && grep -q gaierror $OUT"
}
expect "control: from the host a query to the nameserver $ns goes out" \
    bash -c "'$PROBE' dns $ns | grep -Eqx 'dns (OK|ETIMEDOUT|ECONNREFUSED)'"
both
