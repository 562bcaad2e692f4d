# The host image's /etc: one overlay of the mask over the host's /etc,
# shared by sandboxes through mounts of their own (src/engine/image.c),
# remade when the host's /etc changes and once a second.
. "$(dirname "$0")/lib.sh"
RC=0
RUN="$TMP/run"
export SBX_RUN_DIR="$RUN"
PROBE=/etc/sbx-view-probe.$$
trap '"$SBX" prune >/dev/null 2>&1; rm -rf "$PROBE" "$TMP"' EXIT
views() { grep -c " $RUN/etc-view/" /proc/self/mountinfo; }

for i in 1 2 3; do sbx_run -- sh -c 'test -e /etc/shadow || echo hidden; id -un'; done
check "through the view: secrets hidden, the sandbox user known" out_is "$(printf 'hidden\nuser')"
check "three sandboxes in a second: one view mounted on the host" bash -c "[ \$(grep -c ' $RUN/etc-view/' /proc/self/mountinfo) = 1 ]"
sbx_run -- sh -c 'grep " /etc " /proc/self/mountinfo'
check "a sandbox's /etc: its own read-only mount of the overlay" bash -c "grep -q ' /etc ro,nosuid,nodev' $OUT && grep -q 'overlay sbx-etc' $OUT"

# A file made in the host's /etc: /etc itself changed, so the next sandbox
# sees it at once; gone again, at once too.
echo probe >"$PROBE"
sbx_run -- cat "$PROBE"
check "a file added to the host's /etc shows in the next sandbox" out_is probe
rm -f "$PROBE"
sbx_run -- sh -c "test -e $PROBE && echo still || echo gone"
check "... and its removal too" out_is gone

# A change below /etc (not /etc itself) that a sandbox has looked up:
# within a second of it, a new sandbox sees it.
mkdir "$PROBE"
sbx_run -- sh -c "test -e $PROBE/f || echo absent"
check "a sandbox looks up a file not there yet" out_is absent
echo late >"$PROBE/f"
sleep 1.2
sbx_run -- cat "$PROBE/f"
check "a sandbox started a second after a change below /etc sees it" out_is late
rm -rf "$PROBE"

# A live sandbox keeps its /etc while views are remade or dropped.
"$SBX" run -- sh -c 'sleep 2; id -un; test -e /etc/shadow || echo hidden' >"$TMP/live" 2>&1 &
live=$!
sleep 1.2
sbx_run -- true # remakes the view (over a second old)
"$SBX" prune >"$OUT" 2>"$ERR"; RC=$?
check "sbx prune drops the view" bash -c "[ $RC = 0 ] && grep -q ', 1 /etc view' $OUT && [ \$(grep -c ' $RUN/etc-view/' /proc/self/mountinfo) = 0 ] && [ ! -e $RUN/etc-view ]"
wait $live
check "a live sandbox keeps its /etc through a remake and a prune" bash -c "[ \"\$(cat $TMP/live)\" = \"\$(printf 'user\nhidden')\" ]"

# A live sandbox keeps its /etc when a change of the host's /etc rebuilds
# the mask: the mask it reads is retired, not removed (removed, it would
# see the host's uid 1000 or none, and where the secrets are); prune
# removes it once no sandbox alive is that old.
"$SBX" run -- sh -c 'sleep 1.5; id -un; test -e /etc/shadow || echo hidden' >"$TMP/live" 2>&1 &
live=$!
sleep 0.5
echo probe >"$PROBE"
sbx_run -- cat "$PROBE"
check "a change of the host's /etc rebuilds the mask and retires the old one" \
    bash -c "[ \"\$(cat $OUT)\" = probe ] && ls $RUN | grep -q '^etc-mask.retired.'"
rm -f "$PROBE"
wait $live
check "a sandbox started before the rebuild still reads its own mask" bash -c "[ \"\$(cat $TMP/live)\" = \"\$(printf 'user\nhidden')\" ]"
sleep 2.1
"$SBX" prune >/dev/null 2>&1
check "prune removes retired masks no live sandbox reads" bash -c "! ls $RUN | grep -q retired"

# No view to be had (the run dir's etc-view is a file): each sandbox
# mounts its own overlay, as before the views.
mkdir -p "$RUN" && : >"$RUN/etc-view"
sbx_run -- sh -c 'test -e /etc/shadow || echo hidden; id -un; grep -c " /etc .* overlay sbx-etc" /proc/self/mountinfo'
check "without a view, a sandbox mounts its own overlay of the mask" out_is "$(printf 'hidden\nuser\n1')"
rm -f "$RUN/etc-view"
