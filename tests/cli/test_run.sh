# sbx run: isolation, limits and error handling, through the real CLI.
. "$(dirname "$0")/lib.sh"

# --- basics -------------------------------------------------------------
sbx_run -- /bin/echo hello
check "echo prints its output" out_is hello
check "exit code 0 passes through" rc_is 0

sbx_run -- sh -c 'exit 42'
check "exit code 42 passes through" rc_is 42

sbx_run -- sh -c 'kill -TERM $$'
check "death by SIGTERM gives 143" rc_is 143

sbx_run -e FOO=bar -e 'SPACED=a b' -- sh -c 'echo "$FOO/$SPACED"'
check "--env sets variables" out_is "bar/a b"

sbx_run -w /tmp/work/dir -- pwd
check "--workdir is created and entered" out_is /tmp/work/dir

sbx_run --hostname box1 -- hostname
check "--hostname sets the hostname" out_is box1

sbx_run -- sh -c 'id -u; id -g; echo $HOME; pwd'
check "default user is uid 1000 with home /home/user" out_is "$(printf '1000\n1000\n/home/user\n/home/user')"

sbx_run --user root -- id -u
check "--user root runs as uid 0 inside" out_is 0

echo "from stdin" | "$SBX" run -- cat >"$OUT" 2>"$ERR"; RC=$?
check "stdin passes through" out_is "from stdin"

sbx_run -- sh -c 'echo out; echo err >&2'
check "stdout and stderr stay separate" bash -c "[ \"\$(cat $OUT)\" = out ] && [ \"\$(cat $ERR)\" = err ]"

sbx_run -- python3 -c 'print(6*7)'
check "python3 works out of the box" out_is 42
sbx_run -- node -e 'console.log(6*7)'
check "node works out of the box" out_is 42

# --- root filesystem ----------------------------------------------------
sbx_run -- sh -c 'test -e /etc/shadow || echo absent'
check "/etc/shadow is absent" out_is absent

# Launches that start together on a fresh run dir all build the /etc mask
# at first: one builds it, the others wait and use it (two swaps raced and
# one launch failed with "etc mask: rename ...: Directory not empty").
fresh=$(mktemp -d /tmp/sbx-run-fresh.XXXXXX)
cgname=sbx-fresh-$$
for i in 1 2 3 4 5 6; do
    SBX_RUN_DIR=$fresh/run SBX_CGROUP_NAME=$cgname "$SBX" run -- cat /etc/hostname >"$fresh/out.$i" 2>&1 &
done
wait
check "six launches at once on a fresh run dir all run" \
    bash -c "[ \"\$(cat $fresh/out.* | sort | uniq -c | sed 's/^ *//')\" = '6 sbx' ]"
check "... and leave no half-built mask" bash -c "! ls -d $fresh/run/etc-mask.new.* 2>/dev/null | grep -q ."
for d in /sys/fs/cgroup/*/"$cgname" /sys/fs/cgroup/"$cgname"; do
    [ -d "$d" ] && rmdir "$d"
done
SBX_RUN_DIR=$fresh/run "$SBX" prune >/dev/null
rm -rf "$fresh"
# A run dir whose parents only host root may enter (one under /root, say):
# the root's dirs are made relative to it, not through those parents.
closed=$(mktemp -d /tmp/sbx-run-closed.XXXXXX) # mode 0700
SBX_RUN_DIR=$closed/run "$SBX" run -- sh -c 'cat /etc/hostname; ls -d /tmp /home/user' >"$OUT" 2>"$ERR"; RC=$?
check "a run dir under a directory closed to others works" out_is "$(printf 'sbx\n/home/user\n/tmp')"
SBX_RUN_DIR=$closed/run "$SBX" prune >/dev/null
rm -rf "$closed"
# Paths sbx makes under the run dir live in short buffers (util.h): a run
# dir past their bound is refused up front, naming the bound, not cut.
long=/tmp/$(printf 'd%.0s' $(seq 300))
SBX_RUN_DIR=$long "$SBX" run -- true >"$OUT" 2>"$ERR"; RC=$?
check "a run dir over 255 bytes is refused with exit 125" \
    bash -c "[ $RC = 125 ] && grep -q 'run directory .* is too long (305 bytes; at most 255)' $ERR && [ ! -e $long ]"
sbx_run -- sh -c 'touch /usr/sbx-probe 2>&1; touch /etc/sbx-probe 2>&1; echo done'
check "/usr and /etc are read-only" bash -c "grep -q 'Read-only' $OUT && [ ! -e /usr/sbx-probe ] && [ ! -e /etc/sbx-probe ]"
sbx_run -- sh -c 'echo x > /tmp/f && cat /tmp/f && echo y > /home/user/g && cat /home/user/g'
check "/tmp and home are writable" out_is "$(printf 'x\ny')"
sbx_run -- sh -c 'getent passwd user | cut -d: -f6'
check "passwd has user with home /home/user" out_is /home/user
sbx_run -- sh -c 'ls /dev | tr "\n" " "'
check "/dev has only the minimal nodes" out_is "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero "
sbx_run --disk 8 -- sh -c 'dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>&1; echo rc=$?'
check "--disk caps the writable layer" bash -c "grep -q 'No space left' $OUT && grep -q 'rc=1' $OUT"

# --- isolation ----------------------------------------------------------
sbx_run -- sh -c 'ls /proc | grep -c "^[0-9][0-9]*$"'
check "no host processes are visible" bash -c "[ \$(cat $OUT) -le 4 ]"
sbx_run -- sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "'
check "only lo exists in the network namespace" out_is lo
sbx_run -- sh -c 'grep -E "^Cap(Inh|Prm|Eff|Bnd|Amb)" /proc/self/status | cut -f2 | sort -u'
check "capabilities are empty (user)" out_is 0000000000000000
sbx_run --user root -- sh -c 'grep -E "^Cap(Inh|Prm|Eff|Bnd|Amb)" /proc/self/status | cut -f2 | sort -u'
check "capabilities are empty (root)" out_is 0000000000000000
sbx_run -- sh -c 'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status | cut -f2 | tr "\n" " "'
check "no_new_privs and seccomp filter are on" out_is "1 2 "
# sbx moves its first process with a passing change of policy (sandbox.c,
# spawn): the command still gets the creator's scheduling policy.
sbx_run -- sh -c 'grep -E "^policy" /proc/self/sched | tr -dc 0-9'
check "the command runs with the creator's policy (SCHED_OTHER)" out_is 0
chrt -b 0 "$SBX" run -- sh -c 'grep -E "^policy" /proc/self/sched | tr -dc 0-9' >"$OUT" 2>"$ERR"
check "... and under chrt --batch, SCHED_BATCH" out_is 3
chrt -i 0 "$SBX" run -- sh -c 'grep -E "^policy" /proc/self/sched | tr -dc 0-9' >"$OUT" 2>"$ERR"
check "... and under chrt --idle, SCHED_IDLE" out_is 5
sbx_run --user root -- cat /proc/self/uid_map
check "root inside maps to an unprivileged host uid" bash -c "read a b c < $OUT; [ \$a = 0 ] && [ \$b -ge 65536 ]"

secret="$TMP/host-secret"
echo "TOP-SECRET" >"$secret"
chmod 644 "$secret"
mkdir -p "$TMP/vol"
chmod 777 "$TMP/vol"
ln -s "$secret" "$TMP/vol/abs-link"
ln -s "../../../../../../../../$secret" "$TMP/vol/rel-link"
sbx_run -v "$TMP/vol:/data" -- sh -c "cat $secret; cat /data/../$secret; cat /home/user/../../..$secret; cat /proc/1/root$secret; cat /data/abs-link; cat /data/rel-link; echo end"
check "host files are unreachable (path, .., /proc/1/root, symlinks)" bash -c "! grep -q TOP-SECRET $OUT $ERR && grep -q end $OUT"

sbx_run -v "$TMP/vol:/data:ro" -- sh -c 'echo x > /data/new 2>&1; echo rc=$?'
check ":ro volume refuses writes" bash -c "grep -q 'Read-only file system' $OUT $ERR && [ ! -e $TMP/vol/new ]"
sbx_run -v "$TMP/vol:/data" -- sh -c 'echo written > /data/new && ls -n /data/new | cut -d" " -f3'
check "rw volume writes reach the host as uid 1000 inside" bash -c "[ \"\$(cat $TMP/vol/new)\" = written ] && [ \$(cat $OUT) = 1000 ] && [ \$(stat -c %u $TMP/vol/new) = $SBX_USER_HOST_UID ]"

if [ -x "${SBX_HELPERS:-}/syscall_probe" ]; then
    sbx_run -v "$SBX_HELPERS:/opt/helpers:ro" -- /opt/helpers/syscall_probe
    check "every refused syscall returns EPERM" bash -c "[ \$(wc -l < $OUT) -ge 20 ] && ! grep -v ' EPERM\$' $OUT"
    sbx_run --user root -v "$SBX_HELPERS:/opt/helpers:ro" -- /opt/helpers/syscall_probe
    check "refused syscalls return EPERM for root too" bash -c "[ \$(wc -l < $OUT) -ge 20 ] && ! grep -v ' EPERM\$' $OUT"
else
    not_ok "syscall probe helper missing at ${SBX_HELPERS:-}"
fi

# --- limits -------------------------------------------------------------
sbx_run --memory 48 -- python3 -c 'x = b"a" * (256 << 20); print("survived")'
check "memory hog exits 137 at the limit" rc_is 137
check "OOM kill is reported as such" err_has "OOM"

sbx_run --cpu 0.2 -- python3 -c '
import os, time
t = time.time()
while time.time() - t < 1.5: pass
c = os.times(); print(c.user + c.system, time.time() - t)'
check "cpu quota throttles (cpu <= quota x wall + slack)" bash -c "read cpu wall < $OUT && python3 -c \"import sys; sys.exit(0 if \$cpu <= 0.2 * \$wall + 0.15 else 1)\""

start=$(date +%s%N)
sbx_run --pids 32 --timeout 3 -- sh -c 'bomb() { bomb | bomb & }; bomb; sleep 10'
check "fork bomb is stopped by the pids limit and the timeout" rc_is 124
check "host still forks normally after the fork bomb" bash -c 'for i in 1 2 3 4 5; do /bin/true || exit 1; done'

sbx_run --timeout 1 -- sh -c 'setsid sh -c "sleep 3; echo escaped > /tmp/x" & sleep 30'
check "timeout exits 124 with an explanation" bash -c "[ $RC = 124 ] && grep -q 'timed out' $ERR"
sleep 0.2
check "timeout killed the detached grandchild" bash -c "! pgrep -u $SBX_USER_HOST_UID >/dev/null"

# --- bad input: exit 125 with a message naming the problem --------------
sbx_run --bogus -- true
check "unknown flag: 125 and message" bash -c "[ $RC = 125 ] && grep -q \"unknown option '--bogus'\" $ERR"
sbx_run --memory lots -- true
check "bad --memory: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'memory' $ERR"
sbx_run --image no-such-image -- true
check "missing image: 125 and message" bash -c "[ $RC = 125 ] && grep -q \"image 'no-such-image' not found\" $ERR"
sbx_run -v /no/such/dir:/data -- true
check "volume with missing host path: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'does not exist' $ERR"
sbx_run -v "$TMP:../x" -- true
check "volume with relative guest path: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'must be absolute' $ERR"
sbx_run -v "$TMP:/data/../../x" -- true
check "volume guest path escaping the root: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'leaves the sandbox root' $ERR"
sbx_run -v "$TMP:/data:rx" -- true
check "volume with unknown option: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'unknown option' $ERR"
# Found only inside the sandbox (a mount point through a dangling link in
# a volume): the reason still reaches the user, not a bare "init exited".
mkdir -p "$TMP/linkvol" "$TMP/vol2"
ln -sfn /no/such/target "$TMP/linkvol/abs"
sbx_run -v "$TMP/linkvol:/data" -v "$TMP/vol2:/data/abs/mnt" -- true
check "setup failure inside the sandbox: 125 and its reason" bash -c "[ $RC = 125 ] && grep -q 'volume mount point' $ERR"
sbx_run --network host -- true
check "unsupported network mode: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'allowed: none' $ERR"
sbx_run --
check "no command: 125 and message" bash -c "[ $RC = 125 ] && grep -q 'no command' $ERR"
sbx_run -- no-such-command-xyz
check "unknown command: 127 and message" bash -c "[ $RC = 127 ] && grep -q 'not found' $ERR"
"$SBX" run --help >"$OUT" 2>&1; RC=$?
check "run --help documents every flag" bash -c "[ $RC = 0 ] && for f in cpu memory pids disk timeout image env volume workdir network user; do grep -q -- \"--\$f\" $OUT || exit 1; done"

sbx_run -v "$TMP/vol:/data:ro" -- sh -c 'tr "\0" " " < /proc/1/cmdline'
check "init's command line does not show host paths" bash -c "! grep -q '$TMP' $OUT && grep -q sbx-init $OUT"
# Its bounds come from argv[0] and environ[0] (sandbox.c, hide_cmdline);
# with no environment they are read from /proc/self/stat instead.
env -i "$SBX" run -v "$TMP/vol:/data:ro" -- /bin/sh -c 'tr "\0" " " < /proc/1/cmdline' >"$OUT" 2>"$ERR"
check "... nor with an empty environment" bash -c "! grep -q '$TMP' $OUT && grep -q sbx-init $OUT"

# A directory image: its tree is the lower layer of an overlay root.
mkdir -p "$TMP/img/bin"
cp "$SBX_HELPERS/syscall_probe" "$TMP/img/bin/probe"
echo "image-file" >"$TMP/img/marker"
sbx_run --image "$TMP/img" -- /bin/probe
check "a directory image runs its own binaries" bash -c "grep -q '^mount EPERM' $OUT"
sbx_run --image "$TMP/img" -- /bin/probe
check "the image itself is left untouched" bash -c "[ \"\$(cat $TMP/img/marker)\" = image-file ] && [ ! -e $TMP/img/proc ] && [ ! -e $TMP/img/dev ]"

sbx_run --user root -- sh -c 'echo 1 > /proc/sys/kernel/ns_last_pid; echo 1 > /proc/sys/net/ipv4/ip_forward; head -c1 /proc/kmsg; echo end'
check "/proc/sys is read-only and kmsg unreadable, even for root inside" bash -c "[ \$(grep -c 'Read-only file system' $ERR) = 2 ] && grep 'kmsg' $ERR | grep -q 'Permission denied' && grep -q end $OUT"
