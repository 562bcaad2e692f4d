# The pool of idle network namespaces (src/engine/netns.c): a sandbox that
# left no trace in its namespace hands it on; one that did (sockets,
# traffic) does not, nor does one whose creator died.
. "$(dirname "$0")/lib.sh"
RC=0
RUN="$TMP/run"
export SBX_RUN_DIR="$RUN"
trap '"$SBX" prune >/dev/null 2>&1; rm -rf "$TMP"' EXIT

# The namespace's cookie (SO_NETNS_COOKIE): unique for the boot, never reused
# (inode numbers are).
COOKIE='import socket,struct; s=socket.socket(); print(struct.unpack("Q", s.getsockopt(socket.SOL_SOCKET, 71, 8))[0])'
# Until every reaper has handed its namespace back (they run when the CPU is idle).
settle() {
    for _ in $(seq 100); do
        grep -qs B "$RUN"/netns/*.state || return 0
        sleep 0.05
    done
}

sbx_run -- python3 -c "$COOKIE"
first=$(cat "$OUT")
settle
sbx_run -- python3 -c "$COOKIE"
second=$(cat "$OUT")
check "a quiet sandbox's network namespace goes to the next sandbox" bash -c "[ -n '$first' ] && [ '$first' = '$second' ]"
check "... where it is a mount in the run dir's pool" grep -q "$RUN/netns/0 .* nsfs " /proc/self/mountinfo
settle
sbx_run -- python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname()); print(s.accept()[0].fileno() > 0)'
check "lo is up in a reused namespace" out_is True

# Traffic over lo, a TIME_WAIT socket left behind.
settle
sbx_run -- python3 -c "$COOKIE"
used=$(cat "$OUT")
sbx_run -- sh -c "python3 -c '$COOKIE'; python3 -c 'import socket
s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen()
c = socket.create_connection(s.getsockname()); a = s.accept()[0]; c.close(); a.close()'"
dirty=$(cat "$OUT")
settle
sbx_run -- sh -c "python3 -c '$COOKIE'; tail -n 1 /proc/net/dev | tr -s ' ' | cut -d' ' -f3,4,11,12; grep -o 'tw [0-9]*' /proc/net/sockstat"
read -r next < "$OUT"
check "one a sandbox sent traffic in is not reused" bash -c "[ '$used' = '$dirty' ] && [ -n '$next' ] && [ '$next' != '$dirty' ]"
check "... and the next sandbox sees no packet nor socket of it" bash -c "[ \"\$(tail -n +2 $OUT | tr '\n' ' ')\" = '0 0 0 0 tw 0 ' ]"

# Traces without a socket left: only counters show them (a datagram to a
# closed port; one with no route, which sends nothing at all).
for trace in 'socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))' \
             'socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect_ex(("10.1.2.3", 9))'; do
    settle
    sbx_run -- sh -c "python3 -c '$COOKIE'; python3 -c 'import socket; $trace'"
    dirty=$(head -n 1 "$OUT")
    settle
    sbx_run -- python3 -c "$COOKIE"
    check "not reused after: ${trace#*.SOCK_DGRAM).}" bash -c "[ -n '$dirty' ] && [ -s $OUT ] && [ \"\$(cat $OUT)\" != '$dirty' ]"
done

# A creator killed outright: its slot stays claimed, and its namespace is
# never handed on, whatever the sandbox did in it.
settle
"$SBX" run -- sh -c "python3 -c '$COOKIE'; exec sleep 30" >"$TMP/killed" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$TMP/killed" ] && break; sleep 0.05; done
{ kill -9 "$pid"; wait "$pid"; } 2>/dev/null
killed=$(cat "$TMP/killed")
seen=""
for _ in 1 2 3 4 5 6; do
    sleep 0.1
    sbx_run -- python3 -c "$COOKIE"
    seen="$seen $(cat "$OUT")"
done
check "a namespace whose creator was killed is not handed on" bash -c "[ -n '$killed' ] && ! grep -qw '$killed' <<<'$seen'"

SBX_NETNS_POOL=0 "$SBX" run -- python3 -c "$COOKIE" >"$TMP/a" 2>&1
SBX_NETNS_POOL=0 "$SBX" run -- python3 -c "$COOKIE" >"$TMP/b" 2>&1
check "SBX_NETNS_POOL=0: every sandbox gets a new namespace" bash -c "[ -s $TMP/a ] && [ \"\$(cat $TMP/a)\" != \"\$(cat $TMP/b)\" ]"
SBX_NETNS_POOL=lots "$SBX" run -- true >"$OUT" 2>"$ERR"
RC=$?
check "a bad SBX_NETNS_POOL: 125 and what is allowed" bash -c "[ $RC = 125 ] && grep -q \"SBX_NETNS_POOL 'lots' is invalid (allowed: 0 to 256\" $ERR"

settle
"$SBX" prune >"$OUT" 2>"$ERR"
RC=$?
check "sbx prune drops the idle namespaces" bash -c "[ $RC = 0 ] && grep -Eq '^dropped [1-9][0-9]* idle network namespaces?' $OUT && ! grep -q '$RUN/netns' /proc/self/mountinfo && [ ! -e $RUN/netns ]"
"$SBX" prune extra >"$OUT" 2>"$ERR"
RC=$?
check "sbx prune with an argument: 125 and usage" bash -c "[ $RC = 125 ] && grep -q 'takes no arguments' $ERR"
