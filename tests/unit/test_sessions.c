/* The session layer in process (src/server/sessions.c) with short
 * intervals set in code: lazy start, reuse by id, executions and their
 * timeouts, limits with their exact messages, LRU order and in-flight
 * protection, idle cleanup, the orphan rule, shared volumes. Needs root
 * (skips otherwise). */
#include "t.h"
#include "server.h"
#include "sessions.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sbx_server *srv;
static sbx_sessions *ss;

static json_t *code(const char *id, const char *c, double timeout, sbx_sess_err *e)
{
    sbx_sess_call call = {.session_id = id, .code = c, .timeout = timeout};
    return sbx_sessions_execute_code(ss, &call, e);
}

static const char *str(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    return s ? s : "(none)";
}

static void *slow_call(void *arg)
{
    sbx_sess_err e;
    json_decref(code((const char *)arg, "import time\ntime.sleep(2)", 0, &e));
    return NULL;
}

static void reopen(sbx_client_config *mc)
{
    sbx_sessions_close(srv->sessions);
    sbx_err err;
    sbx_sessions_open(srv, mc, &srv->sessions, &err);
    ss = srv->sessions;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("ok - session tests skipped: need root\n");
        return 0;
    }
    char state[] = "/tmp/sbx-sessions-XXXXXX", shared[] = "/tmp/sbx-shared-XXXXXX";
    T_OK(mkdtemp(state) && mkdtemp(shared), "temp dirs");
    char f[128];
    snprintf(f, sizeof(f), "%s/input.txt", shared);
    FILE *fp = fopen(f, "w");
    fputs("shared data\n", fp);
    fclose(fp);
    /* Volumes keep host ownership: the sandbox's users need "other" access. */
    chmod(shared, 0755);
    chmod(f, 0644);

    sbx_client_config mc;
    sbx_client_config_defaults(&mc);
    sbx_err err;
    char map[160];
    snprintf(map, sizeof(map), "%s:/shared/input:ro", shared);
    T_OK(sbx_client_config_add_mapping(&mc, map, &err) == 0, "add a :ro mapping");
    sbx_server_config cfg = {.host = "127.0.0.1", .dev = true, .state_dir = state, .msb = mc};
    T_OK(sbx_server_open(&cfg, &srv, &err) == 0, "server opens in process (%s)", srv ? "" : err.msg);
    if (!srv)
        T_DONE();
    ss = srv->sessions;

    sbx_sess_err e;
    json_t *r = code(NULL, "x = 20\nprint(x + 1)", 0, &e);
    T_OK(r && strcmp(str(r, "stdout"), "21") == 0 && json_is_true(json_object_get(r, "success")) &&
             json_is_true(json_object_get(r, "session_created")) && strcmp(str(r, "template"), "python") == 0 &&
             strlen(str(r, "session_id")) == 36,
         "execute_code without an id: a new session (uuid4), output, success");
    char id[64];
    snprintf(id, sizeof(id), "%s", r ? str(r, "session_id") : "");
    json_decref(r);
    r = code(id, "x * 2", 0, &e);
    T_OK(r && strcmp(str(r, "stdout"), "40") == 0 && json_is_false(json_object_get(r, "session_created")),
         "the same id reuses the session and its state");
    json_decref(r);
    json_t *l = sbx_sessions_list(ss, id);
    char want[32];
    snprintf(want, sizeof(want), "session-%.8s", id);
    T_OK(json_array_size(l) == 1 && strcmp(str(json_array_get(l, 0), "status"), "ready") == 0 &&
             strcmp(str(json_array_get(l, 0), "sandbox_name"), want) == 0 &&
             strcmp(str(json_array_get(l, 0), "flavor"), "small") == 0,
         "listed as ready, flavor small, sandbox session-<id[:8]>");
    json_decref(l);

    r = code(id, "import sys\nprint('warn', file=sys.stderr)", 0, &e);
    T_OK(r && json_is_false(json_object_get(r, "success")) && strcmp(str(r, "stderr"), "warn") == 0,
         "stderr output means success false");
    json_decref(r);
    r = code(id, "open('/shared/input/input.txt').read().strip()", 0, &e);
    T_OK(r && strcmp(str(r, "stdout"), "'shared data'") == 0, "the shared mapping is mounted (%s %s)", r ? str(r, "stdout") : e.msg, r ? str(r, "stderr") : "");
    json_decref(r);
    r = code(id, "open('/shared/input/x', 'w')", 0, &e);
    T_OK(r && strstr(str(r, "stderr"), "Read-only file system"), "and read-only with :ro");
    json_decref(r);

    r = code(id, "while True:\n    pass", 1, &e);
    T_OK(!r && e.cls == SBX_SESS_CODE && strncmp(e.msg, "Code execution timed out", 24) == 0,
         "a timeout is a CodeExecutionError 'Code execution timed out' (%s)", e.msg);
    l = sbx_sessions_list(ss, id);
    T_OK(strcmp(str(json_array_get(l, 0), "status"), "error") == 0, "status error after the timeout");
    json_decref(l);
    r = code(id, "x", 0, &e);
    T_OK(r && strcmp(str(r, "stdout"), "20") == 0, "the next call works and the state is kept");
    json_decref(r);

    char *args[] = {"-c", "echo hi; exit 3", NULL};
    sbx_sess_call cc = {.session_id = id, .command = "sh", .args = args};
    r = sbx_sessions_execute_command(ss, &cc, &e);
    T_OK(r && strcmp(str(r, "stdout"), "hi") == 0 && json_integer_value(json_object_get(r, "exit_code")) == 3 &&
             json_is_false(json_object_get(r, "success")) && strcmp(str(r, "command"), "sh") == 0,
         "execute_command: output and exit code; non-zero is a result");
    json_decref(r);
    sbx_sess_call nc = {.session_id = id, .command = "no-such-cmd"};
    r = sbx_sessions_execute_command(ss, &nc, &e);
    T_OK(r && json_integer_value(json_object_get(r, "exit_code")) == 127 &&
             strcmp(str(r, "stderr"), "no-such-cmd: command not found") == 0,
         "a missing command: exit 127 with 'command not found'");
    json_decref(r);
    char *slp[] = {"30", NULL};
    sbx_sess_call tc = {.session_id = id, .command = "sleep", .args = slp, .timeout = 1};
    r = sbx_sessions_execute_command(ss, &tc, &e);
    T_OK(!r && e.cls == SBX_SESS_COMMAND && strcmp(e.msg, "Command execution timed out after 1 seconds") == 0,
         "command timeout message (%s)", e.msg);

    r = code("my id.with dots", "1", 0, &e);
    l = sbx_sessions_list(ss, "my id.with dots");
    T_OK(r && json_is_true(json_object_get(r, "session_created")) && json_array_size(l) == 1 &&
             strncmp(str(json_array_get(l, 0), "sandbox_name"), "session-", 8) == 0 &&
             strcmp(str(json_array_get(l, 0), "sandbox_name"), "session-my id.wi") != 0,
         "an unknown id is created under that id; an invalid name prefix is hashed (%s)",
         str(json_array_get(l, 0), "sandbox_name"));
    json_decref(r);
    json_decref(l);
    sbx_sess_call nodec = {.template = "node", .code = "let a = 2; a * 21"};
    r = sbx_sessions_execute_code(ss, &nodec, &e);
    T_OK(r && strcmp(str(r, "stdout"), "42") == 0 && strcmp(str(r, "template"), "node") == 0, "node template");
    char nid[64];
    snprintf(nid, sizeof(nid), "%s", r ? str(r, "session_id") : "");
    json_decref(r);

    json_t *st = sbx_sessions_stats(ss);
    T_OK(json_integer_value(json_object_get(st, "active_sessions")) == 3 &&
             json_integer_value(json_object_get(st, "total_memory_mb")) == 3072 &&
             json_integer_value(json_object_get(json_object_get(st, "sessions_by_flavor"), "small")) == 3,
         "stats: sessions, memory, by flavor");
    json_decref(st);
    T_OK(sbx_sessions_stop(ss, nid) && !sbx_sessions_stop(ss, nid), "stop: true, then false for the gone id");
    T_OK(sbx_sessions_stop(ss, "my id.with dots"), "stop the second");

    /* Limits: 2 sessions, no LRU. */
    mc.max_concurrent_sessions = 2;
    mc.enable_lru_eviction = false;
    reopen(&mc);
    r = code("a", "1", 0, &e), json_decref(r);
    r = code("b", "1", 0, &e), json_decref(r);
    r = code("c", "1", 0, &e);
    T_OK(!r && e.cls == SBX_SESS_RESOURCE && strcmp(e.msg, "Maximum concurrent sessions (2) exceeded") == 0,
         "limit: '%s'", e.msg);
    r = code("a", "2", 0, &e);
    T_OK(r != NULL, "reusing a session is never refused by the limit");
    json_decref(r);

    /* LRU on: the least recently used idle session goes; one in flight never. */
    mc.enable_lru_eviction = true;
    reopen(&mc);
    r = code("a", "1", 0, &e), json_decref(r);
    r = code("b", "1", 0, &e), json_decref(r);
    r = code("c", "1", 0, &e), json_decref(r);
    l = sbx_sessions_list(ss, "a");
    json_t *lb = sbx_sessions_list(ss, "b");
    T_OK(json_array_size(l) == 0 && json_array_size(lb) == 1, "LRU evicts the oldest (a), keeps b");
    json_decref(l);
    json_decref(lb);
    pthread_t t;
    pthread_create(&t, NULL, slow_call, "b"); /* b is now the oldest, but busy */
    usleep(500000);
    r = code("d", "1", 0, &e), json_decref(r);
    l = sbx_sessions_list(ss, "b");
    lb = sbx_sessions_list(ss, "c");
    T_OK(json_array_size(l) == 1 && json_array_size(lb) == 0, "a session with a call in flight is not evicted (c went)");
    json_decref(l);
    json_decref(lb);
    pthread_join(t, NULL);

    /* Memory budget. */
    mc.max_concurrent_sessions = 10;
    mc.max_total_memory_mb = 2048;
    mc.enable_lru_eviction = false;
    reopen(&mc);
    sbx_sess_call med = {.session_id = "m", .flavor = "medium", .code = "1"};
    r = sbx_sessions_execute_code(ss, &med, &e);
    T_OK(r != NULL, "a medium session fits 2048 MB");
    json_decref(r);
    r = code("s", "1", 0, &e);
    T_OK(!r && strcmp(e.msg, "Total memory limit (2048 MB) would be exceeded") == 0, "memory limit: '%s'", e.msg);

    /* Idle cleanup and orphans with short intervals. */
    mc.max_total_memory_mb = 0;
    mc.session_timeout = 2;
    mc.cleanup_interval = 1;
    mc.orphan_cleanup_interval = 1;
    reopen(&mc);
    r = code("idle", "1", 0, &e), json_decref(r);
    sbx_sandbox_conf rc = {.memory_mib = 256, .cpus = 1};
    snprintf(rc.image, sizeof(rc.image), "host");
    T_OK(sbx_server_start_sandbox(srv, "default", "byname", &rc, &err) == 0, "a sandbox started by name (origin rpc)");
    sleep(4);
    l = sbx_sessions_list(ss, "idle");
    T_OK(json_array_size(l) == 0, "an idle session is removed by the cleanup pass");
    json_decref(l);
    sbx_live *lv = sbx_server_acquire(srv, "default", "byname");
    T_OK(lv != NULL, "the orphan sweep never touches a sandbox started by name");
    if (lv)
        sbx_server_release(srv, lv);
    /* The previous layer's sessions (m) were dropped with it: orphans. */
    lv = sbx_server_acquire(srv, "default", "session-m");
    T_OK(lv == NULL, "a session sandbox no session holds is stopped as an orphan");
    if (lv)
        sbx_server_release(srv, lv);
    st = sbx_sessions_stats(ss);
    T_OK(json_integer_value(json_object_get(json_object_get(st, "orphan_cleanup"), "total_cleanup_cycles")) >= 2,
         "orphan sweep stats count cycles");
    json_decref(st);

    sbx_server_close(srv);
    sbx_client_config_free(&mc);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", state, shared);
    T_OK(system(cmd) == 0, "cleaned up");
    T_DONE();
}
