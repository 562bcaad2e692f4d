/* envd's process.Process service (shared/protocols/e2b.md §3): Start,
 * Connect, List, SendInput, CloseStdin, SendSignal, Update.
 *
 * Each process started here is an sbx_proc (sbx_sandbox_spawn) in the
 * sandbox's process table, with one pump thread that reads its output
 * and exit status and hands events to its subscribers: the Start stream
 * that launched it and any Connect streams attached later. The pump, not
 * the stream, owns the process, so a client that goes away (a background
 * command, a disconnect) leaves it running, as envd does; the deadline of
 * Start (Connect-Timeout-Ms) kills it. Subscribers queue encoded envelopes;
 * a subscriber far behind holds the pump back (so the process blocks on
 * its pipe) rather than letting memory grow. */
#include "e2b_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEEPALIVE_MAX_S 50          /* the contract: a keepalive at least every 50 s of silence */
#define DRAIN_GRACE_MS 100          /* after the exit, quiet this long ends the output (a background child may hold the pipe) */
#define DRAIN_MAX (1u << 20)        /* read at most this much after the exit: a background child may write on */
#define SUB_MAX_QUEUED (4u << 20)   /* a subscriber this far behind holds the pump back */
#define READ_CHUNK (32u << 10)      /* as envd's */
#define STDIN_WRITE_TIMEOUT_MS 30000

typedef struct e2b_sub {
    struct e2b_sub *next;
    struct e2b_proc *proc;
    char *buf;                /* envelopes not yet written (proc lock) */
    size_t len, cap;
    bool ended;               /* the end event is queued: nothing follows (proc lock) */
    bool gone;                /* the stream is over (proc lock) */
    uint64_t deadline_us;     /* monotonic; 0: none */
    unsigned keepalive_s;
} e2b_sub;

typedef struct e2b_proc {
    struct e2b_proc *next;    /* in sb->procs (sb->plock) */
    pthread_mutex_t lock;     /* subs, p, ended, refs */
    pthread_cond_t cond;      /* queued data, dropped subscribers (CLOCK_MONOTONIC) */
    pthread_mutex_t in_lock;  /* stdin writes and close; taken before lock */
    int refs;
    e2b_sandbox *sb;          /* referenced */
    sbx_server *srv;
    sbx_live *live;           /* the pump's reference: the sandbox outlives its processes */
    sbx_proc *p;              /* NULL once the pump has freed it */
    uint32_t pid;
    char *tag;
    json_t *config;           /* ProcessConfig, for List */
    bool has_stdin;           /* a pipe, not /dev/null */
    bool ended;               /* the end event went out */
    uint64_t kill_at_us;      /* Start's deadline; 0: none */
    e2b_sub *subs;
} e2b_proc;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void abs_mono(struct timespec *ts, uint64_t at_us)
{
    ts->tv_sec = (time_t)(at_us / 1000000u);
    ts->tv_nsec = (long)(at_us % 1000000u) * 1000;
}

static void proc_unref(e2b_proc *pr)
{
    pthread_mutex_lock(&pr->lock);
    bool last = --pr->refs == 0;
    pthread_mutex_unlock(&pr->lock);
    if (!last)
        return;
    free(pr->tag);
    json_decref(pr->config);
    e2b_sandbox_put(pr->sb);
    pthread_mutex_destroy(&pr->lock);
    pthread_mutex_destroy(&pr->in_lock);
    pthread_cond_destroy(&pr->cond);
    free(pr);
}

/* Appends an envelope to a subscriber's queue (proc lock held). */
static void sub_push(e2b_sub *s, const char *env, size_t n)
{
    if (s->gone || s->ended)
        return;
    if (s->len + n > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->len + n)
            nc *= 2;
        char *nb = realloc(s->buf, nc);
        if (!nb) {
            s->gone = true; /* cannot queue: this stream ends rather than lie */
            return;
        }
        s->buf = nb;
        s->cap = nc;
    }
    memcpy(s->buf + s->len, env, n);
    s->len += n;
}

static char *event_envelope(json_t *event, size_t *n)
{
    json_t *j = json_pack("{s:o}", "event", event);
    char *env = j ? sbx_connect_envelope(0, j, n) : NULL;
    json_decref(j);
    return env;
}

/* Output to every subscriber; waits while one is far behind. */
static void broadcast_data(e2b_proc *pr, const char *key, const char *data, size_t len)
{
    char *b64 = sbx_b64_encode(data, len);
    size_t n;
    char *env = b64 ? event_envelope(json_pack("{s:{s:s}}", "data", key, b64), &n) : NULL;
    free(b64);
    if (!env)
        return;
    pthread_mutex_lock(&pr->lock);
    for (e2b_sub *s = pr->subs; s; s = s->next) {
        while (!s->gone && s->len > SUB_MAX_QUEUED && !__atomic_load_n(&pr->sb->dead, __ATOMIC_RELAXED)) {
            struct timespec ts;
            abs_mono(&ts, mono_us() + 100000);
            pthread_cond_timedwait(&pr->cond, &pr->lock, &ts);
        }
        sub_push(s, env, n);
    }
    pthread_cond_broadcast(&pr->cond);
    pthread_mutex_unlock(&pr->lock);
    free(env);
}

/* envd's end event, from a wait(2) status: Go's ProcessState words. */
static json_t *end_event(int status)
{
    char st[96];
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        snprintf(st, sizeof(st), "exit status %d", code);
        json_t *e = json_pack("{s:i, s:b, s:s}", "exitCode", code, "exited", 1, "status", st);
        if (code != 0)
            json_object_set_new(e, "error", json_string(st));
        return json_pack("{s:o}", "end", e);
    }
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
    const char *d = sigdescr_np(sig);
    snprintf(st, sizeof(st), "signal: %s%s", d ? d : "unknown signal", WCOREDUMP(status) ? " (core dumped)" : "");
    st[8] = (char)(st[8] >= 'A' && st[8] <= 'Z' ? st[8] - 'A' + 'a' : st[8]); /* Go: "signal: killed" */
    return json_pack("{s:{s:i, s:b, s:s, s:s}}", "end", "exitCode", -1, "exited", 0, "status", st, "error", st);
}

static void *pump_main(void *arg)
{
    e2b_proc *pr = arg;
    int fds[2] = {sbx_proc_fd(pr->p, 1), sbx_proc_fd(pr->p, 2)}, st = sbx_proc_status_fd(pr->p);
    static const char *const keys[2] = {"stdout", "stderr"};
    bool open_[2] = {fds[0] >= 0, fds[1] >= 0}, exited = false;
    int status = 0;
    uint64_t exit_at = 0; /* the exit, then the last output after it */
    size_t drained = 0;
    char *buf = malloc(READ_CHUNK);
    while (buf) {
        uint64_t now = mono_us();
        if (exited && ((!open_[0] && !open_[1]) || now >= exit_at + DRAIN_GRACE_MS * 1000u))
            break;
        if (!exited && pr->kill_at_us && now >= pr->kill_at_us) {
            pthread_mutex_lock(&pr->lock);
            sbx_proc_signal(pr->p, SIGKILL); /* Start's deadline passed */
            pr->kill_at_us = 0;
            pthread_mutex_unlock(&pr->lock);
        }
        struct pollfd pf[3];
        int np = 0, idx[3];
        for (int i = 0; i < 2; i++)
            if (open_[i]) {
                idx[np] = i;
                pf[np++] = (struct pollfd){fds[i], POLLIN, 0};
            }
        if (!exited) {
            idx[np] = 2;
            pf[np++] = (struct pollfd){st, POLLIN, 0};
        }
        int timeout = -1;
        if (exited)
            timeout = (int)((exit_at + DRAIN_GRACE_MS * 1000u - now) / 1000u) + 1;
        else if (pr->kill_at_us)
            timeout = (int)((pr->kill_at_us - now) / 1000u) + 1;
        int r = poll(pf, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            break;
        for (int k = 0; r > 0 && k < np; k++) {
            if (!pf[k].revents)
                continue;
            if (idx[k] == 2) {
                pthread_mutex_lock(&pr->lock);
                int w = sbx_proc_wait(pr->p, 0, &status);
                pthread_mutex_unlock(&pr->lock);
                if (w != 0) { /* 1: exited; -1: the sandbox died, status says SIGKILL */
                    exited = true;
                    exit_at = mono_us();
                }
                continue;
            }
            ssize_t n = read(pf[k].fd, buf, READ_CHUNK);
            if (n > 0) {
                broadcast_data(pr, keys[idx[k]], buf, (size_t)n);
                /* What the process wrote before exiting is all delivered,
                 * however long a slow reader takes. */
                if (exited && (drained += (size_t)n) < DRAIN_MAX)
                    exit_at = mono_us();
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                open_[idx[k]] = false;
        }
    }
    free(buf);
    if (!exited) { /* only on an internal failure: make sure it goes */
        pthread_mutex_lock(&pr->lock);
        sbx_proc_signal(pr->p, SIGKILL);
        pthread_mutex_unlock(&pr->lock);
        sbx_proc_wait(pr->p, 5000, &status);
    }
    /* Out of the table first: List, Connect and signals see it gone. */
    pthread_mutex_lock(&pr->sb->plock);
    for (e2b_proc **pp = &pr->sb->procs; *pp; pp = &(*pp)->next)
        if (*pp == pr) {
            *pp = pr->next;
            break;
        }
    pthread_mutex_unlock(&pr->sb->plock);
    size_t n;
    char *env = event_envelope(end_event(status), &n);
    pthread_mutex_lock(&pr->in_lock);
    pthread_mutex_lock(&pr->lock);
    for (e2b_sub *s = pr->subs; s; s = s->next) {
        if (env)
            sub_push(s, env, n);
        s->ended = true;
    }
    pr->ended = true;
    sbx_proc_free(pr->p);
    pr->p = NULL;
    pthread_cond_broadcast(&pr->cond);
    pthread_mutex_unlock(&pr->lock);
    pthread_mutex_unlock(&pr->in_lock);
    free(env);
    sbx_server_release(pr->srv, pr->live);
    proc_unref(pr);
    return NULL;
}

/* ---- subscriber streams --------------------------------------------------- */

static int send_keepalive(sbx_http_stream *s)
{
    json_t *j = json_pack("{s:{s:{}}}", "event", "keepalive");
    int r = j ? sbx_connect_stream_send(s, 0, j) : -1;
    json_decref(j);
    return r;
}

/* Runs on the HTTP layer's stream thread: queued envelopes out, keepalives
 * in silences, then the end-of-stream envelope. */
static void sub_stream(void *ud, sbx_http_stream *hs)
{
    e2b_sub *s = ud;
    e2b_proc *pr = s->proc;
    uint64_t ka = (uint64_t)s->keepalive_s * 1000000u, next_ka = mono_us() + ka;
    pthread_mutex_lock(&pr->lock);
    for (;;) {
        if (s->gone)
            break;
        if (s->len) {
            char *b = s->buf;
            size_t n = s->len;
            s->buf = NULL;
            s->len = s->cap = 0;
            pthread_cond_broadcast(&pr->cond); /* room again for the pump */
            pthread_mutex_unlock(&pr->lock);
            int r = sbx_http_stream_write(hs, b, n);
            free(b);
            pthread_mutex_lock(&pr->lock);
            if (r < 0)
                break;
            next_ka = mono_us() + ka;
            continue;
        }
        if (s->ended) {
            pthread_mutex_unlock(&pr->lock);
            sbx_connect_stream_end(hs, NULL);
            pthread_mutex_lock(&pr->lock);
            break;
        }
        uint64_t now = mono_us();
        if (s->deadline_us && now >= s->deadline_us) {
            pthread_mutex_unlock(&pr->lock);
            sbx_connect_err e;
            sbx_connect_fail(&e, SBX_CONNECT_DEADLINE_EXCEEDED, "the call ran past its timeout (Connect-Timeout-Ms)");
            sbx_connect_stream_end(hs, &e);
            pthread_mutex_lock(&pr->lock);
            break;
        }
        if (now >= next_ka) {
            pthread_mutex_unlock(&pr->lock);
            int r = send_keepalive(hs);
            pthread_mutex_lock(&pr->lock);
            if (r < 0)
                break;
            next_ka = mono_us() + ka;
            continue;
        }
        uint64_t wake = next_ka;
        if (s->deadline_us && s->deadline_us < wake)
            wake = s->deadline_us;
        struct timespec ts;
        abs_mono(&ts, wake);
        pthread_cond_timedwait(&pr->cond, &pr->lock, &ts);
    }
    s->gone = true;
    for (e2b_sub **pp = &pr->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_cond_broadcast(&pr->cond);
    pthread_mutex_unlock(&pr->lock);
    free(s->buf);
    free(s);
    proc_unref(pr);
}

/* A subscriber with the start event queued (proc lock held); NULL when out of memory. */
static e2b_sub *sub_new_locked(e2b_proc *pr, const sbx_http_req *req)
{
    e2b_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->proc = pr;
    uint64_t t = sbx_connect_timeout_ms(req);
    s->deadline_us = t ? mono_us() + t * 1000u : 0;
    const char *k = sbx_http_header(req, "Keepalive-Ping-Interval");
    long ka = k ? strtol(k, NULL, 10) : KEEPALIVE_MAX_S;
    s->keepalive_s = ka >= 1 && ka <= KEEPALIVE_MAX_S ? (unsigned)ka : KEEPALIVE_MAX_S;
    size_t n;
    char *env = event_envelope(json_pack("{s:{s:I}}", "start", "pid", (json_int_t)pr->pid), &n);
    if (!env) {
        free(s);
        return NULL;
    }
    sub_push(s, env, n);
    free(env);
    s->next = pr->subs;
    pr->subs = s;
    pr->refs++;
    return s;
}

/* ---- requests ------------------------------------------------------------- */

/* Finds a process by selector {"pid":N} or {"tag":"..."}, referenced. */
static e2b_proc *find_proc(e2b_call *c, json_t *sel, sbx_connect_err *e)
{
    json_t *jp = json_object_get(sel, "pid"), *jt = json_object_get(sel, "tag");
    long long pid = -1;
    if (json_is_integer(jp))
        pid = json_integer_value(jp);
    else if (json_is_string(jp)) /* proto3 JSON may quote integers */
        pid = strtoll(json_string_value(jp), NULL, 10);
    const char *tag = json_string_value(jt);
    if (pid < 0 && !tag) {
        sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "process selector needs a pid or a tag");
        return NULL;
    }
    e2b_proc *found = NULL;
    pthread_mutex_lock(&c->sb->plock);
    for (e2b_proc *pr = c->sb->procs; pr && !found; pr = pr->next)
        if (pid >= 0 ? pr->pid == (uint32_t)pid : (pr->tag && strcmp(pr->tag, tag) == 0))
            found = pr;
    if (found) {
        pthread_mutex_lock(&found->lock);
        found->refs++;
        pthread_mutex_unlock(&found->lock);
    }
    pthread_mutex_unlock(&c->sb->plock);
    if (!found) {
        if (pid >= 0)
            sbx_connect_fail(e, SBX_CONNECT_NOT_FOUND, "process with pid %lld not found", pid);
        else
            sbx_connect_fail(e, SBX_CONNECT_NOT_FOUND, "process with tag %s not found", tag);
    }
    return found;
}

/* Undoes a process whose pump never ran: kills it, drops its references. */
static void proc_abort(e2b_proc *pr)
{
    sbx_proc_free(pr->p);
    pr->p = NULL;
    sbx_server_release(pr->srv, pr->live);
    proc_unref(pr);
}

/* Starts the process and its pump; *out: the Start stream's subscriber. */
static int start_process(e2b_call *c, json_t *msg, const sbx_http_req *req, e2b_sub **out, sbx_connect_err *e)
{
    json_t *proc = json_object_get(msg, "process");
    const char *cmd = json_string_value(json_object_get(proc, "cmd"));
    json_t *args = json_object_get(proc, "args"), *envs = json_object_get(proc, "envs"),
           *jcwd = json_object_get(proc, "cwd"), *jstdin = json_object_get(msg, "stdin"),
           *jtag = json_object_get(msg, "tag"), *jpty = json_object_get(msg, "pty");
    if (!cmd || !*cmd)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "process.cmd is required");
    if (jpty && !json_is_null(jpty))
        return sbx_connect_fail(e, SBX_CONNECT_UNIMPLEMENTED, "PTY processes are not supported by sbx yet");
    if ((args && !json_is_null(args) && !json_is_array(args)) || (envs && !json_is_null(envs) && !json_is_object(envs)))
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "process.args must be a list and process.envs a map");
    if (jtag && !json_is_null(jtag) && !json_is_string(jtag))
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "tag must be a string");
    size_t nargs = json_is_array(args) ? json_array_size(args) : 0;
    size_t nenv = json_is_object(envs) ? json_object_size(envs) : 0;
    char **argv = calloc(nargs + 2, sizeof(char *));
    char **env = calloc(c->sb->n_envs + nenv + 1, sizeof(char *));
    char cwd[PATH_MAX];
    int devnull = -1, rc = -1;
    size_t ne = 0;
    e2b_sandbox *sbref = NULL;
    sbx_live *live = NULL;
    sbx_proc *p = NULL;
    e2b_proc *pr = NULL;
    json_t *config = NULL;
    if (!argv || !env) {
        sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    argv[0] = (char *)cmd;
    for (size_t i = 0; i < nargs; i++)
        if (!(argv[i + 1] = (char *)json_string_value(json_array_get(args, i)))) {
            sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "process.args[%zu] must be a string", i);
            goto out;
        }
    /* The sandbox's envVars, then the call's: later entries win. */
    for (size_t i = 0; i < c->sb->n_envs; i++)
        if (!(env[ne++] = strdup(c->sb->envs[i]))) {
            sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
    const char *k;
    json_t *v;
    json_object_foreach(envs, k, v) {
        if (!json_is_string(v) || !*k || strchr(k, '=')) {
            sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "process.envs: '%s' is not NAME: string", k);
            goto out;
        }
        if (asprintf(&env[ne], "%s=%s", k, json_string_value(v)) < 0) {
            env[ne] = NULL;
            sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        ne++;
    }
    const char *cw = json_string_value(jcwd);
    if (e2b_clean_path(cw && *cw ? cw : c->home, c->home, cwd, sizeof(cwd)) < 0) {
        sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "cwd is too long");
        goto out;
    }
    bool want_stdin = !json_is_false(jstdin); /* envd: unset means a stdin pipe */
    if (!want_stdin && (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        sbx_connect_fail(e, SBX_CONNECT_INTERNAL, "open /dev/null: %s", strerror(errno));
        goto out;
    }
    config = json_pack("{s:s, s:o, s:o}", "cmd", cmd, "args", json_is_array(args) ? json_deep_copy(args) : json_array(),
                       "envs", json_is_object(envs) ? json_deep_copy(envs) : json_object());
    if (config && cw && *cw)
        json_object_set_new(config, "cwd", json_string(cw));
    /* References the pump will hold: both fail only if the sandbox is going. */
    sbref = e2b_sandbox_get(c->sb->id);
    live = sbref ? sbx_server_acquire(c->srv, E2B_NS, c->sb->id) : NULL;
    if (!live) {
        sbx_connect_fail(e, SBX_CONNECT_UNAVAILABLE, "the sandbox is stopping");
        goto out;
    }
    pr = calloc(1, sizeof(*pr));
    if (!pr || !config) {
        sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    sbx_spawn_spec ss = {.argv = argv, .env = env, .workdir = cwd, .user = c->user, .stdin_fd = devnull,
                         .stdout_fd = -1, .stderr_fd = -1};
    sbx_err err = {0};
    if (sbx_sandbox_spawn(c->live->sb, &ss, &p, &err) < 0) {
        if (err.sys_errno == ENOENT && strstr(err.msg, cwd))
            sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "cwd '%s' does not exist", cwd);
        else if (err.sys_errno == EIO)
            sbx_connect_fail(e, SBX_CONNECT_UNAVAILABLE, "error starting process '%s': %s", cmd, err.msg);
        else
            sbx_connect_fail(e, err.code == SBX_E_SYSTEM ? SBX_CONNECT_INTERNAL : SBX_CONNECT_INVALID_ARGUMENT,
                             "error starting process '%s': %s", cmd, err.msg);
        goto out;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&pr->lock, NULL);
    pthread_mutex_init(&pr->in_lock, NULL);
    pthread_cond_init(&pr->cond, &ca);
    pthread_condattr_destroy(&ca);
    pr->refs = 1; /* the pump's */
    pr->sb = sbref;
    pr->srv = c->srv;
    pr->live = live;
    pr->p = p;
    pr->pid = (uint32_t)sbx_proc_pid(p);
    pr->has_stdin = want_stdin;
    pr->config = config;
    pr->tag = json_is_string(jtag) ? strdup(json_string_value(jtag)) : NULL;
    uint64_t t = sbx_connect_timeout_ms(req);
    pr->kill_at_us = t ? mono_us() + t * 1000u : 0;
    sbref = NULL, live = NULL, p = NULL, config = NULL;

    /* The pump starts with the lock held here, so no output can be handed
     * out before the Start stream subscribes. */
    pthread_mutex_lock(&c->sb->plock);
    pr->next = c->sb->procs;
    c->sb->procs = pr;
    pthread_mutex_unlock(&c->sb->plock);
    pthread_mutex_lock(&pr->lock);
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&th, &a, pump_main, pr);
    pthread_attr_destroy(&a);
    if (r != 0) {
        pthread_mutex_unlock(&pr->lock);
        pthread_mutex_lock(&c->sb->plock);
        for (e2b_proc **pp = &c->sb->procs; *pp; pp = &(*pp)->next)
            if (*pp == pr) {
                *pp = pr->next;
                break;
            }
        pthread_mutex_unlock(&c->sb->plock);
        proc_abort(pr);
        pr = NULL;
        sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "cannot start a thread: %s", strerror(r));
        goto out;
    }
    *out = sub_new_locked(pr, req);
    if (!*out) /* the pump reaps it */
        sbx_proc_signal(pr->p, SIGKILL);
    pthread_mutex_unlock(&pr->lock);
    pr = NULL;
    if (!*out) {
        sbx_connect_fail(e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (pr)
        free(pr); /* never initialised: nothing else refers to it */
    sbx_proc_free(p);
    if (live)
        sbx_server_release(c->srv, live);
    if (sbref)
        e2b_sandbox_put(sbref);
    json_decref(config);
    if (devnull >= 0)
        close(devnull);
    for (size_t i = 0; env && i < ne; i++)
        free(env[i]);
    free(env);
    free(argv);
    return rc;
}

/* Reads the request; on failure the reply is set and -1 returned. */
static int read_req(const sbx_http_req *req, bool stream, json_t **msg, sbx_http_resp *resp)
{
    sbx_connect_err e = {0};
    int status;
    if (sbx_connect_read_request(req, stream, msg, &e, &status) == 0)
        return 0;
    if (status || !stream) {
        sbx_connect_reply_error(resp, &e);
        if (status)
            resp->status = status;
    } else {
        sbx_connect_reply_stream_error(resp, &e);
    }
    return -1;
}

static void m_start(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, true, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    e2b_sub *s = NULL;
    if (start_process(c, msg, req, &s, &e) < 0)
        sbx_connect_reply_stream_error(resp, &e);
    else
        sbx_connect_reply_stream(resp, sub_stream, s);
    json_decref(msg);
}

static void m_connect(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, true, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    e2b_sub *s = NULL;
    e2b_proc *pr = find_proc(c, json_object_get(msg, "process"), &e);
    if (pr) {
        pthread_mutex_lock(&pr->lock);
        if (pr->ended)
            sbx_connect_fail(&e, SBX_CONNECT_NOT_FOUND, "process with pid %u not found", pr->pid);
        else if (!(s = sub_new_locked(pr, req)))
            sbx_connect_fail(&e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
        pthread_mutex_unlock(&pr->lock);
        proc_unref(pr);
    }
    if (s)
        sbx_connect_reply_stream(resp, sub_stream, s);
    else
        sbx_connect_reply_stream_error(resp, &e);
    json_decref(msg);
}

static void m_list(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, false, &msg, resp) < 0)
        return;
    json_decref(msg);
    json_t *arr = json_array();
    pthread_mutex_lock(&c->sb->plock);
    for (e2b_proc *pr = c->sb->procs; pr; pr = pr->next) {
        json_t *o = json_pack("{s:o, s:I}", "config", json_deep_copy(pr->config), "pid", (json_int_t)pr->pid);
        if (o && pr->tag)
            json_object_set_new(o, "tag", json_string(pr->tag));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&c->sb->plock);
    sbx_connect_reply(resp, json_pack("{s:o}", "processes", arr));
}

/* Writes all of data to the non-blocking stdin pipe (in_lock held). */
static int write_stdin(int fd, const unsigned char *data, size_t len, sbx_connect_err *e)
{
    uint64_t until = mono_us() + STDIN_WRITE_TIMEOUT_MS * 1000u;
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return sbx_connect_fail(e, SBX_CONNECT_INTERNAL, "error writing to stdin: %s", strerror(errno));
        uint64_t now = mono_us();
        if (now >= until)
            return sbx_connect_fail(e, SBX_CONNECT_DEADLINE_EXCEEDED,
                                    "error writing to stdin: the process has not read its input for %d s",
                                    STDIN_WRITE_TIMEOUT_MS / 1000);
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, (int)((until - now) / 1000u) + 1);
    }
    return 0;
}

static void m_send_input(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, false, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    json_t *in = json_object_get(msg, "input");
    const char *b64 = json_string_value(json_object_get(in, "stdin"));
    unsigned char *data = NULL;
    size_t len = 0;
    e2b_proc *pr = NULL;
    if (json_object_get(in, "pty"))
        sbx_connect_fail(&e, SBX_CONNECT_INTERNAL, "error writing to tty: tty not assigned to process");
    else if (!b64)
        sbx_connect_fail(&e, SBX_CONNECT_UNIMPLEMENTED, "input needs stdin (base64 bytes)");
    else if (sbx_b64_decode(b64, &data, &len) < 0)
        sbx_connect_fail(&e, SBX_CONNECT_INVALID_ARGUMENT, "input.stdin is not base64");
    else if ((pr = find_proc(c, json_object_get(msg, "process"), &e))) {
        pthread_mutex_lock(&pr->in_lock); /* the pump frees p only under in_lock */
        int fd = pr->p ? sbx_proc_fd(pr->p, 0) : -1;
        if (fd < 0)
            sbx_connect_fail(&e, SBX_CONNECT_INTERNAL, "error writing to stdin: stdin not enabled or closed");
        else
            write_stdin(fd, data, len, &e);
        pthread_mutex_unlock(&pr->in_lock);
        proc_unref(pr);
    }
    free(data);
    json_decref(msg);
    if (e.code)
        sbx_connect_reply_error(resp, &e);
    else
        sbx_connect_reply(resp, json_object());
}

static void m_close_stdin(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, false, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    e2b_proc *pr = find_proc(c, json_object_get(msg, "process"), &e);
    if (pr) {
        pthread_mutex_lock(&pr->in_lock);
        if (pr->p)
            sbx_proc_close_fd(pr->p, 0); /* EOF for the process; a second close is a no-op */
        pthread_mutex_unlock(&pr->in_lock);
        proc_unref(pr);
    }
    json_decref(msg);
    if (e.code)
        sbx_connect_reply_error(resp, &e);
    else
        sbx_connect_reply(resp, json_object());
}

static void m_send_signal(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, false, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    json_t *js = json_object_get(msg, "signal");
    const char *name = json_string_value(js);
    int sig = 0;
    if ((name && strcmp(name, "SIGNAL_SIGKILL") == 0) || (json_is_integer(js) && json_integer_value(js) == SIGKILL))
        sig = SIGKILL;
    else if ((name && strcmp(name, "SIGNAL_SIGTERM") == 0) ||
             (json_is_integer(js) && json_integer_value(js) == SIGTERM))
        sig = SIGTERM;
    e2b_proc *pr = NULL;
    if (!sig)
        sbx_connect_fail(&e, SBX_CONNECT_INVALID_ARGUMENT, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
    else if ((pr = find_proc(c, json_object_get(msg, "process"), &e))) {
        pthread_mutex_lock(&pr->lock);
        if (pr->p && !pr->ended)
            sbx_proc_signal(pr->p, sig); /* to its process group, as sbx runs each command in its own */
        pthread_mutex_unlock(&pr->lock);
        proc_unref(pr);
    }
    json_decref(msg);
    if (e.code)
        sbx_connect_reply_error(resp, &e);
    else
        sbx_connect_reply(resp, json_object());
}

static void m_update(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    if (read_req(req, false, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    e2b_proc *pr = find_proc(c, json_object_get(msg, "process"), &e);
    if (pr) {
        /* Only a PTY can be updated (resized), and sbx starts none yet. */
        json_t *pty = json_object_get(msg, "pty");
        if (pty && !json_is_null(pty))
            sbx_connect_fail(&e, SBX_CONNECT_FAILED_PRECONDITION, "error resizing tty: tty not assigned to process");
        proc_unref(pr);
    }
    json_decref(msg);
    if (e.code)
        sbx_connect_reply_error(resp, &e);
    else
        sbx_connect_reply(resp, json_object());
}

bool e2b_process_rpc(e2b_call *c, const char *method, const sbx_http_req *req, sbx_http_resp *resp)
{
    static const struct { const char *name; void (*fn)(e2b_call *, const sbx_http_req *, sbx_http_resp *); } m[] = {
        {"Start", m_start},           {"Connect", m_connect},       {"List", m_list},
        {"SendInput", m_send_input},  {"CloseStdin", m_close_stdin}, {"SendSignal", m_send_signal},
        {"Update", m_update},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strcmp(method, m[i].name) == 0) {
            m[i].fn(c, req, resp);
            return true;
        }
    if (strcmp(method, "StreamInput") == 0) { /* client streaming: not over HTTP/1.1 request-response */
        sbx_connect_err e;
        sbx_connect_fail(&e, SBX_CONNECT_UNIMPLEMENTED, "StreamInput is not supported: use SendInput");
        sbx_connect_reply_error(resp, &e);
        return true;
    }
    return false;
}
