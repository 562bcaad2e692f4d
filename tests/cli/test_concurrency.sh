# Several sbx runs at once, and signals sent to sbx reaching the command.
. "$(dirname "$0")/lib.sh"
RC=0
: >"$OUT"; : >"$ERR"
okc=0
for round in 1 2 3; do
for i in $(seq 8); do
    ( "$SBX" run --memory 64 --pids 32 -- sh -c "echo run$i" >"$TMP/c$i.out" 2>&1; echo $? >"$TMP/c$i.rc" ) &
done
wait
for i in $(seq 8); do
    [ "$(cat "$TMP/c$i.rc")" = 0 ] && [ "$(cat "$TMP/c$i.out")" = "run$i" ] && okc=$((okc + 1))
done
done
check "3 x 8 concurrent runs all succeed with their own output" [ "$okc" = 24 ]

"$SBX" run -- sh -c 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done' >"$OUT" 2>"$ERR" &
pid=$!
for i in $(seq 50); do grep -q ready "$OUT" && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid"; RC=$?
check "SIGTERM to sbx reaches the command, whose exit code passes through" bash -c "[ $RC = 7 ] && grep -q got-term $OUT"

"$SBX" run -- sleep 30 >"$OUT" 2>"$ERR" &
pid=$!
sleep 0.3
kill -INT "$pid"
wait "$pid"; RC=$?
check "SIGINT to sbx stops a command with default handlers (130)" rc_is 130
