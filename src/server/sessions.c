/* The session layer: see sessions.h and shared/protocols/sessions.md.
 *
 * Locking: ss->lock guards the session list and every session's status
 * and times; a session's run_lock serializes its executions (and its lazy
 * start). A session with a call in flight (inflight > 0) is never expired
 * or evicted. Sandboxes are stopped outside ss->lock: stopping waits for
 * calls in flight, which may need ss->lock to finish. */
#include "sessions.h"
#include "log.h"
#include "rpc.h"
#include "server.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#define SESSION_NS "default"
#define MAX_CAPTURE (16u << 20)

enum { ST_CREATING, ST_READY, ST_RUNNING, ST_PROCESSING, ST_ERROR, ST_STOPPED };
static const char *const status_names[] = {"creating", "ready", "running", "processing", "error", "stopped"};

typedef struct sess {
    char id[128];
    char template[16]; /* as asked, lower-cased: python | node | nodejs | javascript */
    int lang;          /* SBX_REPL_PYTHON | SBX_REPL_NODE */
    sbx_flavor flavor;
    int status;
    double created, last; /* unix seconds, microsecond precision */
    char sandbox[64];
    bool started;
    int inflight;
    int refs;
    pthread_mutex_t run_lock;
    struct sess *next;
} sess;

struct sbx_sessions {
    sbx_server *srv;
    sbx_client_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    sess *list;
    bool quit;
    pthread_t thread;
    bool have_thread;
    double started_at;
    /* orphan sweep stats (§8) */
    uint64_t cycles, orphans_cleaned, cleanup_errors;
    double last_sweep, last_sweep_secs;
};

static const char *const errcodes[] = {"", "INVALID_PARAMETERS", "SANDBOX_CREATION_ERROR", "CODE_EXECUTION_ERROR",
                                       "COMMAND_EXECUTION_ERROR", "RESOURCE_LIMIT_ERROR", "SESSION_NOT_FOUND_ERROR"};

const char *sbx_sess_errcode(int cls)
{
    return cls > 0 && cls < (int)SBX_ARRAY_LEN(errcodes) ? errcodes[cls] : "INTERNAL_ERROR";
}

static int fail(sbx_sess_err *e, int cls, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sbx_sess_err *e, int cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->cls = cls;
    return -1;
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ISO-8601 local time without a zone, as the wrapper prints it. */
static void iso_time(double t, char *buf, size_t len)
{
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%06d", base, (int)((t - (double)s) * 1e6));
}

static void uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        uint64_t t = sbx_now_usec();
        for (int i = 0; i < 16; i++)
            b[i] = (unsigned char)(t >> (i % 8 * 8)) ^ (unsigned char)(i * 37);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static bool name_ok(const char *s)
{
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

/* session-<id[:8]>, unless that is invalid or taken: then a hash (§3). */
static void sandbox_name(sbx_sessions *ss, const char *id, char out[64])
{
    char head[9];
    size_t k = strnlen(id, 8);
    memcpy(head, id, k);
    head[k] = '\0';
    snprintf(out, 64, "session-%s", head);
    bool taken = false;
    for (sess *s = ss->list; s && !taken; s = s->next)
        taken = strcmp(s->sandbox, out) == 0;
    if (name_ok(head) && !taken)
        return;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (uint32_t salt = 0;; salt++) {
        snprintf(out, 64, "session-%08x", (unsigned)((h >> 32) ^ h ^ salt));
        taken = false;
        for (sess *s = ss->list; s && !taken; s = s->next)
            taken = strcmp(s->sandbox, out) == 0;
        if (!taken)
            return;
    }
}

static void unref(sess *s)
{
    if (--s->refs == 0) {
        pthread_mutex_destroy(&s->run_lock);
        free(s);
    }
}

static bool expired(const sbx_sessions *ss, const sess *s, double now)
{
    return s->status == ST_STOPPED || now - s->last > (double)ss->cfg.session_timeout;
}

static void unlink_sess(sbx_sessions *ss, sess *s)
{
    for (sess **pp = &ss->list; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    s->status = ST_STOPPED;
}

/* Stops and removes a session's sandbox (its layer too: a session's files
 * live as long as the session). Called without ss->lock. */
static void destroy_sandbox(sbx_sessions *ss, const char *name)
{
    const sbx_rpc_method *del = sbx_msb_find("sandbox.delete");
    json_t *params = json_pack("{s:s, s:s}", "sandbox", name, "namespace", SESSION_NS), *res = NULL;
    sbx_rpc_err e = {0};
    if (del && params && del->fn(ss->srv, params, &res, &e) < 0 && e.code != 4001)
        sbx_log(SBX_LOG_WARN, "session sandbox %s: stop failed: %s", name, e.detail[0] ? e.detail : e.msg);
    json_decref(res);
    json_decref(params);
}

/* ---- limits and LRU (§7) ------------------------------------------------- */

static void usage(sbx_sessions *ss, int *n, uint64_t *mem)
{
    *n = 0;
    *mem = 0;
    for (sess *s = ss->list; s; s = s->next)
        if (s->status != ST_STOPPED) {
            (*n)++;
            *mem += sbx_flavor_get(s->flavor)->memory_mb;
        }
}

/* Under ss->lock: makes room for a session of flavor f, moving evicted
 * sessions to *victims (their sandboxes are stopped by the caller). */
static int make_room(sbx_sessions *ss, sbx_flavor f, sess **victims, sbx_sess_err *e)
{
    int n;
    uint64_t mem, fmem = sbx_flavor_get(f)->memory_mb, max_mem = ss->cfg.max_total_memory_mb;
    int max = ss->cfg.max_concurrent_sessions;
    usage(ss, &n, &mem);
    int need_sessions = n >= max ? n - max + 1 : 0;
    uint64_t need_mem = max_mem && mem + fmem > max_mem ? mem + fmem - max_mem : 0;
    if (!need_sessions && !need_mem)
        return 0;
    if (ss->cfg.enable_lru_eviction) {
        int evicted = 0;
        uint64_t freed = 0;
        while (evicted < need_sessions || freed < need_mem) {
            sess *oldest = NULL;
            for (sess *s = ss->list; s; s = s->next)
                if (s->inflight == 0 && s->status != ST_PROCESSING && s->status != ST_CREATING &&
                    (!oldest || s->last < oldest->last))
                    oldest = s;
            if (!oldest)
                break;
            unlink_sess(ss, oldest);
            oldest->next = *victims;
            *victims = oldest;
            evicted++;
            freed += sbx_flavor_get(oldest->flavor)->memory_mb;
            sbx_log(SBX_LOG_INFO, "session %s evicted (least recently used) to make room", oldest->id);
        }
        usage(ss, &n, &mem);
        if (n < max && !(max_mem && mem + fmem > max_mem))
            return 0;
    }
    if (n >= max)
        return fail(e, SBX_SESS_RESOURCE, "Maximum concurrent sessions (%d) exceeded", max);
    return fail(e, SBX_SESS_RESOURCE, "Total memory limit (%llu MB) would be exceeded", (unsigned long long)max_mem);
}

/* ---- lookup --------------------------------------------------------------- */

static int parse_template(const char *t, char out[16], int *lang, sbx_sess_err *e)
{
    char low[16] = "python";
    if (t) {
        size_t n = strlen(t);
        if (n >= sizeof(low))
            return fail(e, SBX_SESS_INVALID, "Unsupported template: %s (allowed: python, node)", t);
        for (size_t i = 0; i <= n; i++)
            low[i] = (char)(t[i] >= 'A' && t[i] <= 'Z' ? t[i] + 32 : t[i]);
    }
    int l = !strcmp(low, "python") ? SBX_REPL_PYTHON
            : (!strcmp(low, "node") || !strcmp(low, "nodejs") || !strcmp(low, "javascript")) ? SBX_REPL_NODE
                                                                                                 : 0;
    if (!l)
        return fail(e, SBX_SESS_INVALID, "Unsupported template: %s (allowed: python, node)", low);
    memcpy(out, low, sizeof(low));
    *lang = l;
    return 0;
}

/* Finds or creates the session for a call, with a reference and inflight
 * taken. *created tells whether this call made it. */
static sess *get_session(sbx_sessions *ss, const sbx_sess_call *c, bool *created, sbx_sess_err *e)
{
    char tmpl[16] = "";
    int lang = 0;
    sbx_flavor fl = ss->cfg.default_flavor;
    if (parse_template(c->template, tmpl, &lang, e) < 0)
        return NULL;
    if (c->flavor && *c->flavor && sbx_flavor_parse(c->flavor, &fl) < 0) {
        fail(e, SBX_SESS_INVALID, "Invalid flavor '%s'. Valid options are: small, medium, large", c->flavor);
        return NULL;
    }
    if (c->session_id && (!*c->session_id || strlen(c->session_id) >= sizeof(((sess *)0)->id))) {
        fail(e, SBX_SESS_INVALID, "session_id must be 1-%zu characters", sizeof(((sess *)0)->id) - 1);
        return NULL;
    }
    sess *victims = NULL, *s = NULL;
    double now = now_s();
    *created = false;
    pthread_mutex_lock(&ss->lock);
    if (c->session_id)
        for (s = ss->list; s && strcmp(s->id, c->session_id) != 0; s = s->next) {
        }
    if (s && s->inflight == 0 && expired(ss, s, now)) {
        /* Expired: goes, and a fresh session takes its id. */
        unlink_sess(ss, s);
        s->next = victims;
        victims = s;
        s = NULL;
    }
    if (s) {
        s->last = now; /* reuse: template and flavor of the call are ignored */
    } else if (make_room(ss, fl, &victims, e) == 0 && (s = calloc(1, sizeof(*s)))) {
        if (c->session_id)
            snprintf(s->id, sizeof(s->id), "%s", c->session_id);
        else
            uuid4(s->id);
        memcpy(s->template, tmpl, sizeof(tmpl));
        s->lang = lang;
        s->flavor = fl;
        s->status = ST_CREATING;
        s->created = s->last = now;
        s->refs = 1; /* the list's */
        pthread_mutex_init(&s->run_lock, NULL);
        sandbox_name(ss, s->id, s->sandbox);
        s->next = ss->list;
        ss->list = s;
        *created = true;
    } else if (!e->cls) {
        fail(e, SBX_SESS_CREATION, "out of memory");
    }
    if (s) {
        s->refs++;
        s->inflight++;
    }
    pthread_mutex_unlock(&ss->lock);
    while (victims) {
        sess *v = victims;
        victims = v->next;
        if (v->started)
            destroy_sandbox(ss, v->sandbox);
        pthread_mutex_lock(&ss->lock);
        unref(v);
        pthread_mutex_unlock(&ss->lock);
    }
    return s;
}

static void put_session(sbx_sessions *ss, sess *s, int status)
{
    pthread_mutex_lock(&ss->lock);
    if (s->status != ST_STOPPED)
        s->status = status;
    s->last = now_s(); /* sbx rule: also when the execution ends */
    s->inflight--;
    unref(s);
    pthread_mutex_unlock(&ss->lock);
}

static void set_status(sbx_sessions *ss, sess *s, int status)
{
    pthread_mutex_lock(&ss->lock);
    if (s->status != ST_STOPPED)
        s->status = status;
    if (status == ST_PROCESSING)
        s->last = now_s();
    pthread_mutex_unlock(&ss->lock);
}

/* Records the sandbox as the session layer's (origin "session": the
 * orphan sweep may stop it once no session holds it) and starts it. */
static int register_and_start(sbx_sessions *ss, const char *name, const sbx_sandbox_conf *conf, sbx_err *err)
{
    json_t *vols = json_array();
    for (size_t i = 0; i < conf->n_volumes; i++)
        json_array_append_new(vols, json_string(conf->volumes[i]));
    json_t *cfg = json_pack("{s:s, s:I, s:i, s:o}", "image", conf->image, "memory", (json_int_t)conf->memory_mib,
                            "cpus", (int)conf->cpus, "volumes", vols);
    char *text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    sbx_reg_row row = {.config = text};
    snprintf(row.ns, sizeof(row.ns), "%s", SESSION_NS);
    snprintf(row.name, sizeof(row.name), "%s", name);
    snprintf(row.status, sizeof(row.status), "stopped");
    snprintf(row.origin, sizeof(row.origin), "session");
    int rc = text ? sbx_reg_put(ss->srv->reg, &row, err) : sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    free(text);
    if (rc < 0)
        return -1;
    return sbx_server_start_sandbox(ss->srv, SESSION_NS, name, conf, err) < 0 ? -1 : 0;
}

/* Under s->run_lock: starts the sandbox on first use (§4.2). */
static int ensure_started(sbx_sessions *ss, sess *s, sbx_sess_err *e)
{
    if (s->started) {
        sbx_live *l = sbx_server_acquire(ss->srv, SESSION_NS, s->sandbox);
        if (l) {
            sbx_server_release(ss->srv, l);
            return 0;
        }
    }
    set_status(ss, s, ST_CREATING);
    const sbx_flavor_info *fi = sbx_flavor_get(s->flavor);
    sbx_sandbox_conf conf = {.memory_mib = fi->memory_mb, .cpus = fi->cpus};
    snprintf(conf.image, sizeof(conf.image), "%s", s->lang == SBX_REPL_PYTHON ? "microsandbox/python" : "microsandbox/node");
    size_t nv = ss->cfg.n_shared_volume_mappings;
    char **vols = calloc(nv + 1, sizeof(char *));
    for (size_t i = 0; vols && i < nv; i++) {
        const sbx_volume_mapping *m = &ss->cfg.shared_volume_mappings[i];
        if (asprintf(&vols[i], "%s:%s%s", m->host, m->guest, m->readonly ? ":ro" : "") < 0)
            vols[i] = NULL;
    }
    conf.volumes = vols;
    conf.n_volumes = nv;
    uint64_t t0 = sbx_now_usec();
    sbx_err err = {0};
    int rc = register_and_start(ss, s->sandbox, &conf, &err);
    double took = (double)(sbx_now_usec() - t0) / 1e6;
    for (size_t i = 0; vols && i < nv; i++)
        free(vols[i]);
    free(vols);
    if (rc < 0) {
        set_status(ss, s, ST_ERROR);
        return fail(e, SBX_SESS_CREATION, "Failed to start sandbox for session %s: %s", s->id, err.msg);
    }
    if (took > ss->cfg.sandbox_start_timeout) {
        /* Start is synchronous; past the bound it still counts as failed. */
        destroy_sandbox(ss, s->sandbox);
        set_status(ss, s, ST_ERROR);
        return fail(e, SBX_SESS_CREATION, "Sandbox start timed out after %g seconds", ss->cfg.sandbox_start_timeout);
    }
    s->started = true;
    set_status(ss, s, ST_READY);
    return 0;
}

/* ---- execution (§5) ------------------------------------------------------- */

struct capture {
    char *buf[3];
    size_t len[3];
};

static void capture_out(void *ud, int stream, const char *d, size_t n)
{
    struct capture *c = ud;
    int i = stream == SBX_STDERR ? 2 : 1;
    if (c->len[i] + n > MAX_CAPTURE)
        return;
    char *nb = realloc(c->buf[i], c->len[i] + n + 1);
    if (!nb)
        return;
    memcpy(nb + c->len[i], d, n);
    c->buf[i] = nb;
    c->len[i] += n;
    nb[c->len[i]] = '\0';
}

/* Lines joined with \n and trailing whitespace stripped, as the wrapper
 * returns them. */
static const char *stripped(struct capture *c, int i)
{
    if (!c->buf[i])
        return "";
    size_t n = c->len[i];
    while (n && (c->buf[i][n - 1] == ' ' || c->buf[i][n - 1] == '\n' || c->buf[i][n - 1] == '\t' ||
                 c->buf[i][n - 1] == '\r'))
        n--;
    c->buf[i][n] = '\0';
    return c->buf[i];
}

static uint64_t timeout_ms(sbx_sessions *ss, double t)
{
    return sbx_timeout_ms(t > 0 ? t : (double)ss->cfg.default_execution_timeout);
}

json_t *sbx_sessions_execute_code(sbx_sessions *ss, const sbx_sess_call *c, sbx_sess_err *e)
{
    memset(e, 0, sizeof(*e));
    if (!c->code) {
        fail(e, SBX_SESS_INVALID, "code is required");
        return NULL;
    }
    bool created;
    sess *s = get_session(ss, c, &created, e);
    if (!s)
        return NULL;
    json_t *out = NULL;
    int final = ST_READY;
    pthread_mutex_lock(&s->run_lock);
    if (ensure_started(ss, s, e) < 0) {
        final = ST_ERROR;
        goto done;
    }
    set_status(ss, s, ST_PROCESSING);
    uint64_t t0 = sbx_now_usec();
    struct capture cap = {0};
    sbx_repl_result res;
    sbx_err err = {0};
    bool fresh;
    sbx_live *l = sbx_server_acquire(ss->srv, SESSION_NS, s->sandbox);
    int rc = l ? sbx_server_repl_run(l, s->lang, c->code, SBX_REPL_ECHO, timeout_ms(ss, c->timeout), capture_out, &cap,
                                     &res, &fresh, &err)
               : (sbx_fail(&err, SBX_E_INVALID, "the session's sandbox is not running"), -1);
    if (l)
        sbx_server_release(ss->srv, l);
    double ms = (double)(sbx_now_usec() - t0) / 1000.0;
    if (rc < 0) {
        final = ST_ERROR;
        fail(e, SBX_SESS_CODE, "Code execution failed with runtime error: %s", err.msg);
    } else if (res.timed_out) {
        final = ST_ERROR;
        fail(e, SBX_SESS_CODE, "Code execution timed out%s",
             res.restarted ? " (the interpreter did not stop and was restarted; session state is lost)"
                           : " (the code was interrupted; session state is kept)");
    } else {
        if (res.restarted && !fresh)
            capture_out(&cap, SBX_STDERR, "[sbx] the interpreter had exited and was restarted; earlier state is lost\n",
                        74);
        const char *err_text = stripped(&cap, 2);
        out = json_pack("{s:s, s:s, s:s, s:b, s:f, s:b, s:s}", "session_id", s->id, "stdout", stripped(&cap, 1),
                        "stderr", err_text, "success", err_text[0] == '\0', "execution_time_ms", round(ms * 10) / 10,
                        "session_created", created, "template", s->template);
    }
    if (rc == 0)
        sbx_repl_result_free(&res);
    free(cap.buf[1]);
    free(cap.buf[2]);
done:
    pthread_mutex_unlock(&s->run_lock);
    put_session(ss, s, final);
    return out;
}

json_t *sbx_sessions_execute_command(sbx_sessions *ss, const sbx_sess_call *c, sbx_sess_err *e)
{
    memset(e, 0, sizeof(*e));
    if (!c->command || !*c->command) {
        fail(e, SBX_SESS_INVALID, "command is required");
        return NULL;
    }
    size_t na = 0;
    while (c->args && c->args[na])
        na++;
    char **argv = calloc(na + 2, sizeof(char *));
    if (!argv) {
        fail(e, SBX_SESS_COMMAND, "out of memory");
        return NULL;
    }
    argv[0] = (char *)c->command;
    for (size_t i = 0; i < na; i++)
        argv[i + 1] = c->args[i];
    bool created;
    sess *s = get_session(ss, c, &created, e);
    if (!s) {
        free(argv);
        return NULL;
    }
    json_t *out = NULL;
    int final = ST_READY;
    pthread_mutex_lock(&s->run_lock);
    if (ensure_started(ss, s, e) < 0) {
        final = ST_ERROR;
        goto done;
    }
    set_status(ss, s, ST_PROCESSING);
    struct capture cap = {0};
    uint64_t tmo = timeout_ms(ss, c->timeout);
    sbx_live *l = sbx_server_acquire(ss->srv, SESSION_NS, s->sandbox);
    sbx_exec_result res;
    sbx_err err = {0};
    sbx_exec_spec xs = {.argv = argv, .env = l ? l->conf.envs : NULL, .workdir = "/", .user = "root",
                        .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .signal_fd = -1, .capture_max = 1,
                        .timeout_ms = tmo, .on_output = capture_out, .ud = &cap};
    int rc = l ? sbx_sandbox_exec(l->sb, &xs, &res, &err)
               : (sbx_fail(&err, SBX_E_INVALID, "the session's sandbox is not running"), -1);
    if (l)
        sbx_server_release(ss->srv, l);
    if (rc < 0) {
        final = ST_ERROR;
        fail(e, SBX_SESS_COMMAND, "Command execution failed: %s", err.msg);
    } else if (res.timed_out) {
        final = ST_ERROR;
        fail(e, SBX_SESS_COMMAND, "Command execution timed out after %g seconds", (double)tmo / 1000.0);
    } else {
        int code = res.exec_errno ? res.exit_code : res.signal ? 1 : res.exit_code;
        if (res.exec_errno == ENOENT) {
            char line[300];
            int n = snprintf(line, sizeof(line), "%s: command not found\n", c->command);
            capture_out(&cap, SBX_STDERR, line, (size_t)n);
        } else if (res.exec_errno) {
            capture_out(&cap, SBX_STDERR, res.exec_error, strlen(res.exec_error));
        }
        json_t *jargs = json_array();
        for (size_t i = 0; i < na; i++)
            json_array_append_new(jargs, json_string(c->args[i]));
        out = json_pack("{s:s, s:s, s:s, s:i, s:b, s:f, s:b, s:s, s:o}", "session_id", s->id, "stdout",
                        stripped(&cap, 1), "stderr", stripped(&cap, 2), "exit_code", code, "success", code == 0,
                        "execution_time_ms", round((double)res.wall_usec / 100.0) / 10, "session_created", created,
                        "command", c->command, "args", jargs);
    }
    if (rc == 0)
        sbx_exec_result_free(&res);
    free(cap.buf[1]);
    free(cap.buf[2]);
done:
    pthread_mutex_unlock(&s->run_lock);
    put_session(ss, s, final);
    free(argv);
    return out;
}

/* ---- queries -------------------------------------------------------------- */

static json_t *info(const sess *s)
{
    char c[40], l[40];
    iso_time(s->created, c, sizeof(c));
    iso_time(s->last, l, sizeof(l));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "session_id", s->id, "template", s->template,
                     "flavor", sbx_flavor_name(s->flavor), "created_at", c, "last_accessed", l, "status",
                     status_names[s->status], "namespace", SESSION_NS, "sandbox_name", s->sandbox);
}

json_t *sbx_sessions_list(sbx_sessions *ss, const char *session_id)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&ss->lock);
    for (sess *s = ss->list; s; s = s->next)
        if (!session_id || strcmp(s->id, session_id) == 0)
            json_array_append_new(arr, info(s));
    pthread_mutex_unlock(&ss->lock);
    return arr;
}

bool sbx_sessions_stop(sbx_sessions *ss, const char *session_id)
{
    pthread_mutex_lock(&ss->lock);
    sess *s = ss->list;
    while (s && strcmp(s->id, session_id) != 0)
        s = s->next;
    if (s) {
        unlink_sess(ss, s);
        s->refs++;
    }
    pthread_mutex_unlock(&ss->lock);
    if (!s)
        return false;
    /* A call in flight ends when its sandbox goes. */
    destroy_sandbox(ss, s->sandbox);
    pthread_mutex_lock(&ss->lock);
    s->refs--; /* the list's; ours goes next */
    unref(s);
    pthread_mutex_unlock(&ss->lock);
    sbx_log(SBX_LOG_INFO, "session %s stopped", session_id);
    return true;
}

json_t *sbx_sessions_volumes(sbx_sessions *ss)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < ss->cfg.n_shared_volume_mappings; i++) {
        const sbx_volume_mapping *m = &ss->cfg.shared_volume_mappings[i];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "host_path", m->host, "container_path", m->guest,
                                             "read_only", m->readonly));
    }
    return arr;
}

json_t *sbx_sessions_stats(sbx_sessions *ss)
{
    int n;
    uint64_t mem;
    double cpus = 0;
    json_t *by = json_object();
    pthread_mutex_lock(&ss->lock);
    usage(ss, &n, &mem);
    for (sess *s = ss->list; s; s = s->next) {
        if (s->status == ST_STOPPED)
            continue;
        const char *f = sbx_flavor_name(s->flavor);
        json_object_set_new(by, f, json_integer(json_integer_value(json_object_get(by, f)) + 1));
        cpus += sbx_flavor_get(s->flavor)->cpus;
    }
    char last[40] = "";
    if (ss->last_sweep > 0)
        iso_time(ss->last_sweep, last, sizeof(last));
    json_t *j = json_pack(
        "{s:i, s:i, s:o, s:I, s:o, s:f, s:I, s:{s:I, s:I, s:I, s:s?, s:f, s:i}}", "active_sessions", n,
        "max_sessions", ss->cfg.max_concurrent_sessions, "sessions_by_flavor", by, "total_memory_mb", (json_int_t)mem,
        "max_total_memory_mb", ss->cfg.max_total_memory_mb ? json_integer((json_int_t)ss->cfg.max_total_memory_mb)
                                                           : json_null(),
        "total_cpus", cpus, "uptime_seconds", (json_int_t)(now_s() - ss->started_at), "orphan_cleanup",
        "total_cleanup_cycles", (json_int_t)ss->cycles, "total_orphans_cleaned", (json_int_t)ss->orphans_cleaned,
        "cleanup_errors", (json_int_t)ss->cleanup_errors, "last_cleanup_time", last[0] ? last : NULL,
        "last_cleanup_duration_seconds", ss->last_sweep_secs, "cleanup_interval_seconds",
        ss->cfg.orphan_cleanup_interval);
    pthread_mutex_unlock(&ss->lock);
    return j;
}

bool sbx_sessions_owns(sbx_sessions *ss, const char *ns, const char *name)
{
    if (strcmp(ns, SESSION_NS) != 0)
        return false;
    bool owned = false;
    pthread_mutex_lock(&ss->lock);
    for (sess *s = ss->list; s && !owned; s = s->next)
        owned = s->status != ST_STOPPED && strcmp(s->sandbox, name) == 0;
    pthread_mutex_unlock(&ss->lock);
    return owned;
}

/* ---- cleanup (§4.5) and orphans (§8) -------------------------------------- */

static void cleanup_expired(sbx_sessions *ss)
{
    sess *victims = NULL;
    double now = now_s();
    pthread_mutex_lock(&ss->lock);
    for (sess *s = ss->list, *nx; s; s = nx) {
        nx = s->next;
        /* sbx rule: a session with a call in flight never expires. */
        if (s->inflight == 0 && s->status != ST_PROCESSING && expired(ss, s, now)) {
            unlink_sess(ss, s);
            s->next = victims;
            victims = s;
        }
    }
    pthread_mutex_unlock(&ss->lock);
    while (victims) {
        sess *v = victims;
        victims = v->next;
        sbx_log(SBX_LOG_INFO, "session %s expired (idle > %d s)", v->id, ss->cfg.session_timeout);
        if (v->started)
            destroy_sandbox(ss, v->sandbox);
        pthread_mutex_lock(&ss->lock);
        unref(v);
        pthread_mutex_unlock(&ss->lock);
    }
}

int sbx_sessions_sweep_orphans(sbx_sessions *ss)
{
    double t0 = now_s();
    sbx_reg_row *rows = NULL;
    size_t n = 0;
    sbx_err err;
    int cleaned = 0, errors = 0;
    if (sbx_reg_list(ss->srv->reg, SESSION_NS, &rows, &n, &err) < 0) {
        errors++;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        /* sbx rule: only the session layer's own sandboxes can be orphans;
         * what a client started by name is never touched. */
        if (strcmp(rows[i].origin, "session") != 0 || strcmp(rows[i].status, "running") != 0)
            continue;
        if (sbx_sessions_owns(ss, rows[i].ns, rows[i].name))
            continue;
        sbx_log(SBX_LOG_INFO, "orphan sandbox %s/%s: no session holds it, stopping", rows[i].ns, rows[i].name);
        if (sbx_server_stop_sandbox(ss->srv, rows[i].ns, rows[i].name) >= 0)
            cleaned++;
        else
            errors++;
    }
    sbx_reg_rows_free(rows, n);
    pthread_mutex_lock(&ss->lock);
    ss->cycles++;
    ss->orphans_cleaned += (uint64_t)cleaned;
    ss->cleanup_errors += (uint64_t)errors;
    ss->last_sweep = t0;
    ss->last_sweep_secs = now_s() - t0;
    pthread_mutex_unlock(&ss->lock);
    return cleaned;
}

static void *cleaner_main(void *arg)
{
    sbx_sessions *ss = arg;
    double next_clean = now_s() + ss->cfg.cleanup_interval, next_orphan = now_s() + ss->cfg.orphan_cleanup_interval;
    pthread_mutex_lock(&ss->lock);
    while (!ss->quit) {
        double wake = next_clean < next_orphan ? next_clean : next_orphan;
        struct timespec ts = {(time_t)wake, (long)((wake - floor(wake)) * 1e9)};
        pthread_cond_timedwait(&ss->cond, &ss->lock, &ts);
        if (ss->quit)
            break;
        double now = now_s();
        pthread_mutex_unlock(&ss->lock);
        if (now >= next_clean) {
            cleanup_expired(ss);
            next_clean = now + ss->cfg.cleanup_interval;
        }
        if (now >= next_orphan) {
            sbx_sessions_sweep_orphans(ss);
            next_orphan = now + ss->cfg.orphan_cleanup_interval;
        }
        pthread_mutex_lock(&ss->lock);
    }
    pthread_mutex_unlock(&ss->lock);
    return NULL;
}

int sbx_sessions_open(sbx_server *srv, const sbx_client_config *cfg, sbx_sessions **out, sbx_err *err)
{
    sbx_sessions *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    ss->srv = srv;
    if (sbx_client_config_copy(&ss->cfg, cfg, err) < 0) {
        free(ss);
        return -1;
    }
    ss->started_at = now_s();
    pthread_mutex_init(&ss->lock, NULL);
    /* Timed waits on CLOCK_REALTIME match now_s(). */
    pthread_cond_init(&ss->cond, NULL);
    if (pthread_create(&ss->thread, NULL, cleaner_main, ss) == 0)
        ss->have_thread = true;
    *out = ss;
    return 0;
}

void sbx_sessions_close(sbx_sessions *ss)
{
    if (!ss)
        return;
    pthread_mutex_lock(&ss->lock);
    ss->quit = true;
    pthread_cond_broadcast(&ss->cond);
    pthread_mutex_unlock(&ss->lock);
    if (ss->have_thread)
        pthread_join(ss->thread, NULL);
    /* The sandboxes themselves are stopped by the server's close. */
    for (sess *s = ss->list, *nx; s; s = nx) {
        nx = s->next;
        pthread_mutex_destroy(&s->run_lock);
        free(s);
    }
    sbx_client_config_free(&ss->cfg);
    pthread_mutex_destroy(&ss->lock);
    pthread_cond_destroy(&ss->cond);
    free(ss);
}
