/* The engine through its C API: several live sandboxes in one process,
 * repeated execs, captured and streamed output, exec-level timeouts,
 * stats, and clean destruction. Needs root (skips otherwise). */
#include "t.h"
#include "sbx/engine.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t streamed;
static void on_out(void *ud, int stream, const char *d, size_t n)
{
    (void)ud;
    (void)d;
    if (stream == SBX_STDOUT)
        streamed += n;
}

static int run(sbx_sandbox *sb, const char *cmd, sbx_exec_result *r, uint64_t timeout_ms, size_t cap)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    sbx_exec_spec xs = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .signal_fd = -1,
                        .timeout_ms = timeout_ms, .capture_max = cap, .on_output = on_out};
    sbx_err e;
    int rc = sbx_sandbox_exec(sb, &xs, r, &e);
    if (rc < 0)
        printf("# exec error: %s\n", e.msg);
    return rc;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("ok - engine tests skipped: need root\n");
        return 0;
    }
    sbx_engine *eng;
    sbx_err e;
    T_OK(sbx_engine_open(NULL, &eng, &e) == 0, "engine opens");

    enum { N = 3 };
    sbx_sandbox *sb[N] = {0};
    for (int i = 0; i < N; i++) {
        char host[16];
        snprintf(host, sizeof(host), "box%d", i);
        sbx_spec spec = {.hostname = host, .memory_mib = 128, .pids = 64, .track_cpu = true};
        T_OK(sbx_sandbox_create(eng, &spec, &sb[i], &e) == 0, "sandbox %d created (%s)", i,
             sb[i] ? "" : e.msg);
    }
    if (!sb[0] || !sb[1] || !sb[2])
        T_DONE();
    T_OK(strcmp(sbx_sandbox_id(sb[0]), sbx_sandbox_id(sb[1])) != 0, "ids are distinct");

    sbx_exec_result r;
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof(want), "box%d\n", i);
        T_OK(run(sb[i], "hostname", &r, 0, 0) == 0 && strcmp(r.out, want) == 0, "exec in sandbox %d sees its hostname",
             i);
        sbx_exec_result_free(&r);
    }

    /* State persists across execs in one sandbox, and is private to it. */
    T_OK(run(sb[0], "echo kept > /tmp/state", &r, 0, 0) == 0 && r.exit_code == 0, "write state in sandbox 0");
    sbx_exec_result_free(&r);
    T_OK(run(sb[0], "cat /tmp/state", &r, 0, 0) == 0 && strcmp(r.out, "kept\n") == 0, "state persists across execs");
    sbx_exec_result_free(&r);
    T_OK(run(sb[1], "cat /tmp/state 2>/dev/null || echo none", &r, 0, 0) == 0 && strcmp(r.out, "none\n") == 0,
         "other sandboxes do not see it");
    sbx_exec_result_free(&r);

    T_OK(run(sb[0], "echo out; echo err >&2; exit 3", &r, 0, 0) == 0 && r.exit_code == 3 &&
             strcmp(r.out, "out\n") == 0 && strcmp(r.err, "err\n") == 0,
         "exit code and separate stdout/stderr");
    sbx_exec_result_free(&r);

    streamed = 0;
    T_OK(run(sb[0], "head -c 100000 /dev/zero", &r, 0, 1000) == 0 && r.out_len == 1000 && r.out_truncated,
         "capture is capped and truncation flagged");
    T_OK(streamed == 100000, "the stream callback sees all output (%zu bytes)", streamed);
    sbx_exec_result_free(&r);

    T_OK(run(sb[1], "sleep 30", &r, 300, 0) == 0 && r.timed_out && r.signal == SIGKILL,
         "exec timeout kills the command");
    sbx_exec_result_free(&r);
    T_OK(run(sb[1], "echo alive", &r, 0, 0) == 0 && strcmp(r.out, "alive\n") == 0,
         "the sandbox lives on after an exec timeout");
    sbx_exec_result_free(&r);

    T_OK(run(sb[2], "exec no-such-cmd-xyz", &r, 0, 0) == 0 && r.exit_code == 127, "missing command gives 127");
    sbx_exec_result_free(&r);
    char *bad[] = {"no-such-cmd-xyz", NULL};
    sbx_exec_spec xs = {.argv = bad, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .signal_fd = -1};
    T_OK(sbx_sandbox_exec(sb[2], &xs, &r, &e) == 0 && r.exec_errno && strstr(r.exec_error, "not found"),
         "exec of a missing binary reports exec_errno and a message");
    sbx_exec_result_free(&r);

    T_OK(run(sb[2], "python3 -c 'x = bytearray(64 << 20); x[::4096] = b\"a\" * len(x[::4096]); print(len(x))'", &r, 0,
             0) == 0 &&
             r.exit_code == 0 && r.memory_peak >= (60u << 20),
         "peak memory of a run is reported (%llu bytes)", (unsigned long long)r.memory_peak);
    sbx_exec_result_free(&r);
    T_OK(run(sb[2], "exec python3 -c 'x = b\"a\" * (300 << 20)'", &r, 0, 0) == 0 && r.oom_killed && r.signal == SIGKILL,
         "OOM kill in a live sandbox is reported");
    sbx_exec_result_free(&r);

    sbx_stats st;
    T_OK(sbx_sandbox_stats(sb[2], &st, &e) == 0 && st.oom_kills >= 1 && st.cpu_usec > 0, "stats: oom %llu cpu %llu",
         (unsigned long long)st.oom_kills, (unsigned long long)st.cpu_usec);

    sbx_spec dup = {.id = sbx_sandbox_id(sb[0])};
    sbx_sandbox *x = NULL;
    T_OK(sbx_sandbox_create(eng, &dup, &x, &e) < 0 && e.code == SBX_E_INVALID && strstr(e.msg, "already in use"),
         "a live sandbox's id cannot be reused");

    /* An on-disk layer keeps the sandbox's writes across sandboxes. */
    char layer[] = "/tmp/sbx-layer-XXXXXX";
    if (mkdtemp(layer)) {
        sbx_spec ps = {.layer_dir = layer};
        sbx_sandbox *p1 = NULL, *p2 = NULL;
        T_OK(sbx_sandbox_create(eng, &ps, &p1, &e) == 0, "sandbox with an on-disk layer (%s)", p1 ? "" : e.msg);
        T_OK(p1 && run(p1, "echo persisted > /home/user/note && echo y > /tmp/t", &r, 0, 0) == 0 && r.exit_code == 0,
             "write into the on-disk layer");
        if (p1)
            sbx_exec_result_free(&r);
        sbx_sandbox_destroy(p1);
        T_OK(sbx_sandbox_create(eng, &ps, &p2, &e) == 0, "second sandbox on the same layer");
        T_OK(p2 && run(p2, "cat /home/user/note", &r, 0, 0) == 0 && strcmp(r.out, "persisted\n") == 0,
             "the layer's files survive the sandbox");
        if (p2)
            sbx_exec_result_free(&r);
        sbx_sandbox_destroy(p2);
        sbx_spec small = {.layer_dir = layer, .disk_mib = 16};
        char small_dir[64];
        snprintf(small_dir, sizeof(small_dir), "%s/small", layer);
        small.layer_dir = small_dir;
        sbx_sandbox *p3 = NULL;
        T_OK(sbx_sandbox_create(eng, &small, &p3, &e) == 0, "sandbox with a 16 MiB on-disk layer (%s)",
             p3 ? "" : e.msg);
        T_OK(p3 && run(p3, "dd if=/dev/zero of=/home/user/fill bs=1M count=32 2>&1; echo rc=$?", &r, 0, 0) == 0 &&
                 strstr(r.out, "No space left") && strstr(r.out, "rc=1"),
             "the on-disk layer's size is enforced by the kernel");
        if (p3)
            sbx_exec_result_free(&r);
        sbx_sandbox_destroy(p3);
        char cmd[192];
        /* The loop device goes with the sandbox's mount namespace. */
        snprintf(cmd, sizeof(cmd), "for i in $(seq 50); do losetup -j %s/layer.img | grep -q . || exit 0; sleep 0.02; done; exit 1",
                 small_dir);
        T_OK(system(cmd) == 0, "no loop device stays attached after destroy");
        snprintf(cmd, sizeof(cmd), "rm -rf %s", layer);
        T_OK(system(cmd) == 0, "layer removed");
    }

    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = sbx_sandbox_pid(sb[i]);
        sbx_sandbox_destroy(sb[i]);
    }
    for (int i = 0; i < N; i++)
        T_OK(kill(pids[i], 0) < 0, "sandbox %d's init is gone after destroy", i);
    sbx_engine_close(eng);
    T_DONE();
}
