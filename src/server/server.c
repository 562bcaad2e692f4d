#include "server.h"
#include "../proto/daytona.h"
#include "../proto/e2b.h"
#include "../proto/mcp.h"
#include "log.h"
#include "repl.h"
#include "rpc.h"
#include "sessions.h"
#include "util.h"

#include <openssl/rand.h>

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (32u << 20)
#define SHUTDOWN_GRACE_MS 5000
#define POOL_WANT 3 /* ready layer images per size: a burst of creates outruns one mkfs at a time */

/* ---- the spawner thread ------------------------------------------------ */

struct spawn_job {
    const sbx_spec *spec;
    sbx_sandbox *sb;
    sbx_err err;
    int rc;
    bool done;
    struct spawn_job *next;
};

static void *spawner_main(void *arg)
{
    sbx_server *srv = arg;
    pthread_mutex_lock(&srv->spawn_lock);
    for (;;) {
        while (!srv->jobs && !srv->spawner_quit)
            pthread_cond_wait(&srv->spawn_cond, &srv->spawn_lock);
        if (!srv->jobs)
            break;
        struct spawn_job *j = srv->jobs;
        srv->jobs = j->next;
        pthread_mutex_unlock(&srv->spawn_lock);
        j->rc = sbx_sandbox_create(srv->eng, j->spec, &j->sb, &j->err);
        pthread_mutex_lock(&srv->spawn_lock);
        j->done = true;
        pthread_cond_broadcast(&srv->spawn_cond);
    }
    pthread_mutex_unlock(&srv->spawn_lock);
    return NULL;
}

static int spawn(sbx_server *srv, const sbx_spec *spec, sbx_sandbox **out, sbx_err *err)
{
    struct spawn_job j = {.spec = spec};
    pthread_mutex_lock(&srv->spawn_lock);
    struct spawn_job **tail = &srv->jobs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &j;
    pthread_cond_broadcast(&srv->spawn_cond);
    while (!j.done)
        pthread_cond_wait(&srv->spawn_cond, &srv->spawn_lock);
    pthread_mutex_unlock(&srv->spawn_lock);
    *out = j.sb;
    if (j.rc < 0)
        *err = j.err;
    return j.rc;
}

/* ---- configs ----------------------------------------------------------- */

static char **strv_copy(char **v, size_t n)
{
    char **c = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; c && i < n; i++)
        if (!(c[i] = strdup(v[i]))) {
            for (size_t k = 0; k < i; k++)
                free(c[k]);
            free(c);
            return NULL;
        }
    return c;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void sbx_conf_free(sbx_sandbox_conf *c)
{
    strv_free(c->volumes, c->n_volumes);
    strv_free(c->envs, c->n_envs);
    c->volumes = c->envs = NULL;
    c->n_volumes = c->n_envs = 0;
}

int sbx_conf_copy(sbx_sandbox_conf *dst, const sbx_sandbox_conf *src)
{
    *dst = *src;
    dst->volumes = strv_copy(src->volumes, src->n_volumes);
    dst->envs = strv_copy(src->envs, src->n_envs);
    if (!dst->volumes || !dst->envs) {
        sbx_conf_free(dst);
        return -1;
    }
    return 0;
}

int sbx_server_layer_dir(const sbx_server *srv, const char *ns, const char *name, char *buf, size_t len)
{
    return sbx_pathf(buf, len, "%s/layers/%s/%s", srv->state_dir, ns, name);
}

/* Engine ids are short; namespace and name may be 63 chars each. The
 * state dir is part of the hash: two servers on one host never collide. */
static void engine_id(const char *state_dir, const char *ns, const char *name, char out[32])
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = state_dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = ns; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(out, 32, "msb-%016llx", (unsigned long long)h);
}

/* microsandbox's images run on sbx's host image (it has python3 and node);
 * other names are sbx images. */
static const char *map_image(const char *image)
{
    static const char *const builtin[] = {"microsandbox/python", "microsandbox/node", "python", "node", "host"};
    char ref[256];
    snprintf(ref, sizeof(ref), "%s", image);
    char *tag = strrchr(ref, ':');
    if (tag && !strchr(tag, '/'))
        *tag = '\0';
    const char *r = ref;
    if (strncmp(r, "docker.io/", 10) == 0)
        r += 10;
    if (!*r)
        return "host";
    for (size_t i = 0; i < SBX_ARRAY_LEN(builtin); i++)
        if (strcmp(r, builtin[i]) == 0)
            return "host";
    return image;
}

/* ---- live sandboxes ---------------------------------------------------- */

static void free_live(sbx_live *l)
{
    for (int i = 0; i < 3; i++)
        pthread_mutex_destroy(&l->repl_lock[i]);
    pthread_mutex_destroy(&l->ext_lock);
    sbx_conf_free(&l->conf);
    free(l);
}

int sbx_server_repl_run(sbx_live *l, int lang, const char *code, int mode, uint64_t timeout_ms,
                        void (*cb)(void *ud, int stream, const char *data, size_t len), void *ud,
                        sbx_repl_result *res, bool *fresh, sbx_err *err)
{
    sbx_repl_run_opts o = {.timeout_ms = timeout_ms};
    return sbx_server_repl_exec(l, lang, code, mode, &o, cb, ud, res, fresh, err);
}

int sbx_server_repl_exec(sbx_live *l, int lang, const char *code, int mode, const sbx_repl_run_opts *ro,
                         void (*cb)(void *ud, int stream, const char *data, size_t len), void *ud,
                         sbx_repl_result *res, bool *fresh, sbx_err *err)
{
    *fresh = false;
    memset(res, 0, sizeof(*res));
    if (lang != SBX_REPL_PYTHON && lang != SBX_REPL_NODE)
        return sbx_fail(err, SBX_E_INVALID, "unsupported language (allowed: python, node, nodejs, javascript)");
    pthread_mutex_lock(&l->repl_lock[lang]);
    int rc = 0;
    if (!l->repl[lang]) {
        sbx_repl_opts o = {.user = "root", .workdir = l->conf.workdir[0] ? l->conf.workdir : "/", .env = l->conf.envs};
        rc = sbx_repl_open(l->sb, lang, &o, &l->repl[lang], err);
        *fresh = rc == 0;
    }
    if (rc == 0)
        rc = sbx_repl_exec(l->repl[lang], code, mode, ro, cb, ud, res, err);
    pthread_mutex_unlock(&l->repl_lock[lang]);
    return rc;
}

void *sbx_live_ext_get(sbx_live *l, const char *key)
{
    void *d = NULL;
    pthread_mutex_lock(&l->ext_lock);
    for (sbx_live_ext *x = l->ext; x; x = x->next)
        if (strcmp(x->key, key) == 0)
            d = x->data;
    pthread_mutex_unlock(&l->ext_lock);
    return d;
}

int sbx_live_ext_set(sbx_live *l, const char *key, void *data, void (*free_fn)(void *data))
{
    pthread_mutex_lock(&l->ext_lock);
    sbx_live_ext *x = l->ext;
    while (x && strcmp(x->key, key) != 0)
        x = x->next;
    if (x) {
        if (x->free_fn && x->data != data)
            x->free_fn(x->data);
    } else if ((x = calloc(1, sizeof(*x)))) {
        snprintf(x->key, sizeof(x->key), "%s", key);
        x->next = l->ext;
        l->ext = x;
    }
    if (x) {
        x->data = data;
        x->free_fn = free_fn;
    }
    pthread_mutex_unlock(&l->ext_lock);
    return x ? 0 : -1;
}

/* Whether the sandbox's init has ended on its own (the kernel's OOM
 * killer picks it when tmpfs pages fill the memory limit, say). WNOWAIT:
 * it stays a zombie for sbx_sandbox_destroy to reap. */
static bool init_exited(const sbx_live *l, siginfo_t *si)
{
    memset(si, 0, sizeof(*si));
    return waitid(P_PID, (id_t)sbx_sandbox_pid(l->sb), si, WEXITED | WNOHANG | WNOWAIT) == 0 && si->si_pid != 0;
}

static sbx_live *find_live(sbx_server *srv, const char *ns, const char *name)
{
    for (sbx_live *l = srv->live; l; l = l->next)
        if (!l->stopping && strcmp(l->ns, ns) == 0 && strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

/* Under srv->lock: takes the sandbox out of the live list and marks it
 * stopping (calls holding it finish on their own); NULL if not live. */
static sbx_live *unlink_live_locked(sbx_server *srv, const char *ns, const char *name)
{
    for (sbx_live **pp = &srv->live; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->ns, ns) == 0 && strcmp((*pp)->name, name) == 0) {
            sbx_live *l = *pp;
            *pp = l->next;
            l->stopping = true;
            return l;
        }
    return NULL;
}

static void sweep_dead_locked(sbx_server *srv);

sbx_live *sbx_server_acquire(sbx_server *srv, const char *ns, const char *name)
{
    pthread_mutex_lock(&srv->lock);
    sbx_live *l = find_live(srv, ns, name);
    siginfo_t si;
    if (l && init_exited(l, &si)) {
        sweep_dead_locked(srv);
        l = find_live(srv, ns, name); /* still there only if its teardown could not be queued */
    }
    if (l)
        l->refs++;
    pthread_mutex_unlock(&srv->lock);
    return l;
}

void sbx_server_release(sbx_server *srv, sbx_live *l)
{
    pthread_mutex_lock(&srv->lock);
    l->refs--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static bool pending_teardown_locked(sbx_server *srv, const char *ns, const char *name);
static void pool_claim(sbx_server *srv, uint64_t disk_mib, const char *layer_dir, const char *ns, const char *name);

int sbx_server_start_sandbox(sbx_server *srv, const char *ns, const char *name, const sbx_sandbox_conf *conf,
                             sbx_err *err)
{
    pthread_mutex_lock(&srv->start_lock);
    pthread_mutex_lock(&srv->lock);
    /* The engine id, cgroups and lock of a deleted incarnation go first. */
    while (pending_teardown_locked(srv, ns, name))
        pthread_cond_wait(&srv->cond, &srv->lock);
    bool running = find_live(srv, ns, name) != NULL;
    pthread_mutex_unlock(&srv->lock);
    if (running) {
        pthread_mutex_unlock(&srv->start_lock);
        return 1; /* keeps its identity: a running sandbox is not restarted */
    }
    int rc = -1;
    sbx_live *l = calloc(1, sizeof(*l));
    sbx_volume *vols = calloc(conf->n_volumes + 1, sizeof(*vols));
    char **volbufs = calloc(conf->n_volumes + 1, sizeof(char *));
    char layer[PATH_MAX], id[32], host[64];
    if (!l || !vols || !volbufs || sbx_conf_copy(&l->conf, conf) < 0) {
        sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        goto out;
    }
    snprintf(l->ns, sizeof(l->ns), "%s", ns);
    snprintf(l->name, sizeof(l->name), "%s", name);
    for (int i = 0; i < 3; i++)
        pthread_mutex_init(&l->repl_lock[i], NULL);
    pthread_mutex_init(&l->ext_lock, NULL);
    for (size_t i = 0; i < conf->n_volumes; i++) {
        const char *v = conf->volumes[i];
        /* Relative host paths are relative to the namespace's project dir. */
        if (v[0] != '/' && asprintf(&volbufs[i], "%s/namespaces/%s/%s", srv->state_dir, ns, v) < 0)
            volbufs[i] = NULL;
        else if (v[0] == '/')
            volbufs[i] = strdup(v);
        if (!volbufs[i] || sbx_volume_parse(volbufs[i], &vols[i], err) < 0) {
            if (!volbufs[i])
                sbx_fail(err, SBX_E_SYSTEM, "out of memory");
            goto out;
        }
    }
    sbx_server_layer_dir(srv, ns, name, layer, sizeof(layer));
    engine_id(srv->state_dir, ns, name, id);
    snprintf(host, sizeof(host), "%s", name);
    for (char *p = host; *p; p++)
        if (*p == '_')
            *p = '-';
    sbx_spec spec = {
        .id = id,
        .image = map_image(conf->image),
        .hostname = host,
        .cpus = conf->cpus,
        .memory_mib = conf->memory_mib,
        .disk_mib = conf->disk_mib,
        .user_name = conf->user_name[0] ? conf->user_name : NULL,
        .pids = 4096,
        .layer_dir = conf->ephemeral ? NULL : layer,
        .volumes = vols,
        .n_volumes = conf->n_volumes,
        .track_cpu = true,
        .gpu = conf->gpu[0] ? conf->gpu : NULL,
    };
    if (!srv->eng) { /* opened with no_engine (fuzzing): requests get this far, never further */
        sbx_fail(err, SBX_E_SYSTEM, "this server runs without the sandbox engine (no_engine)");
        goto out;
    }
    if (spec.layer_dir)
        pool_claim(srv, conf->disk_mib ? conf->disk_mib : SBX_DEFAULT_DISK_MIB, layer, ns, name);
    if (spawn(srv, &spec, &l->sb, err) < 0)
        goto out;
    l->wall_mark_usec = sbx_now_usec();
    pthread_mutex_lock(&srv->lock);
    l->next = srv->live;
    srv->live = l;
    pthread_mutex_unlock(&srv->lock);
    sbx_reg_set_status(srv->reg, ns, name, "running", (int64_t)time(NULL), NULL);
    sbx_log(SBX_LOG_INFO, "sandbox %s/%s started (engine id %s)", ns, name, id);
    l = NULL;
    rc = 0;
out:
    for (size_t i = 0; i < conf->n_volumes && volbufs; i++)
        free(volbufs[i]);
    free(volbufs);
    free(vols);
    if (l)
        free_live(l);
    pthread_mutex_unlock(&srv->start_lock);
    return rc;
}

/* mark_stopped: the registry row stays and is marked stopped (a delete
 * removes the row instead). */
static void stop_live(sbx_server *srv, sbx_live *l, bool mark_stopped)
{
    /* Calls in flight end when the sandbox's processes die; then it goes. */
    pthread_mutex_lock(&srv->lock);
    kill(sbx_sandbox_pid(l->sb), SIGKILL);
    while (l->refs > 0)
        pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    /* Module state (processes, interpreters) refers to the sandbox: it
     * goes first. */
    for (int i = 0; i < 3; i++) {
        sbx_repl_close(l->repl[i]);
        l->repl[i] = NULL;
    }
    for (sbx_live_ext *x = l->ext, *nx; x; x = nx) {
        nx = x->next;
        if (x->free_fn)
            x->free_fn(x->data);
        free(x);
    }
    l->ext = NULL;
    sbx_sandbox_destroy(l->sb);
    if (mark_stopped)
        sbx_reg_set_status(srv->reg, l->ns, l->name, "stopped", 0, NULL);
    sbx_log(SBX_LOG_INFO, "sandbox %s/%s stopped", l->ns, l->name);
    free_live(l);
}

int sbx_server_stop_sandbox(sbx_server *srv, const char *ns, const char *name)
{
    pthread_mutex_lock(&srv->start_lock);
    pthread_mutex_lock(&srv->lock);
    sbx_live *l = unlink_live_locked(srv, ns, name);
    pthread_mutex_unlock(&srv->lock);
    if (l)
        stop_live(srv, l, true);
    pthread_mutex_unlock(&srv->start_lock);
    return l != NULL;
}

/* ---- background work: teardowns, then the layer pool ---------------------- */

struct teardown {
    char ns[64], name[64];
    sbx_live *live;       /* killed, out of the live table; NULL: not running */
    bool mark_stopped;    /* it died by itself: its registry row stays, as stopped */
    char path[PATH_MAX];  /* layer dir to remove (in the trash); "": none */
    struct teardown *next;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int rm_tree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT ? -1 : 0;
}

static void teardown_run(sbx_server *srv, struct teardown *t)
{
    if (srv->teardown_delay_ms)
        usleep(srv->teardown_delay_ms * 1000u);
    if (t->live)
        stop_live(srv, t->live, t->mark_stopped);
    if (t->path[0] && rm_tree(t->path) < 0)
        sbx_log(SBX_LOG_WARN, "remove layer of deleted sandbox %s/%s (%s): %s", t->ns, t->name, t->path,
                strerror(errno));
}

static bool pending_teardown_locked(sbx_server *srv, const char *ns, const char *name)
{
    for (struct teardown *t = srv->teardowns; t; t = t->next)
        if (strcmp(t->ns, ns) == 0 && strcmp(t->name, name) == 0)
            return true;
    return false;
}

/* Appends t to the teardown thread's queue (in order: a start of the
 * same name waits for all of its name). */
static void queue_teardown_locked(sbx_server *srv, struct teardown *t)
{
    struct teardown **tail = &srv->teardowns;
    while (*tail)
        tail = &(*tail)->next;
    *tail = t;
    pthread_cond_signal(&srv->teardown_cond);
}

/* A sandbox whose init died by itself is not running any more: it leaves
 * the live table at once (calls see "not running", lists running:false, a
 * start makes it anew) and its teardown marks its row stopped. Called with
 * srv->lock held, from lookups and every second from the teardown thread. */
static void sweep_dead_locked(sbx_server *srv)
{
    if (!srv->bg_running || srv->bg_quit)
        return; /* the server is closing: it stops every sandbox anyway */
    for (sbx_live **pp = &srv->live; *pp;) {
        sbx_live *l = *pp;
        siginfo_t si;
        if (l->stopping || !init_exited(l, &si)) {
            pp = &l->next;
            continue;
        }
        struct teardown *t = calloc(1, sizeof(*t));
        if (!t)
            return; /* tried again at the next sweep */
        *pp = l->next;
        l->stopping = true;
        snprintf(t->ns, sizeof(t->ns), "%s", l->ns);
        snprintf(t->name, sizeof(t->name), "%s", l->name);
        t->live = l;
        t->mark_stopped = true;
        queue_teardown_locked(srv, t);
        sbx_stats st;
        sbx_err err = {0};
        bool oom = sbx_sandbox_stats(l->sb, &st, &err) == 0 && st.oom_kills > 0;
        char why[160];
        if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)
            snprintf(why, sizeof(why), "killed by signal %d", si.si_status);
        else
            snprintf(why, sizeof(why), "exited with status %d", si.si_status);
        sbx_log(SBX_LOG_WARN, "sandbox %s/%s died: its init was %s%s; it is stopped now (start it again to use it)",
                l->ns, l->name, why, oom ? " (the kernel's OOM killer fired at its memory limit)" : "");
    }
}

/* Makes at most one pool image (lock not held): true if there may be more to do. */
static bool pool_fill_one(sbx_server *srv, const uint64_t *mib, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (sbx_layer_pool_count(srv->pool_dir, mib[i]) >= POOL_WANT)
            continue;
        sbx_err err = {0};
        if (sbx_layer_pool_add(srv->pool_dir, mib[i], &err) < 0) {
            /* First starts make their own image, as without a pool. */
            sbx_log(SBX_LOG_WARN, "layer pool: %s; sandboxes make their layer images themselves", err.msg);
            pthread_mutex_lock(&srv->lock);
            srv->pool_failed = true;
            pthread_mutex_unlock(&srv->lock);
            return false;
        }
        return true;
    }
    return false;
}

/* Teardowns are mostly waiting (for init's exit: the ext4 unmount and
 * the loop release happen then), so they have a thread of their own and
 * never hold up the pool. */
static void *teardown_main(void *arg)
{
    sbx_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        struct teardown *t = srv->teardowns;
        if (!t) {
            if (srv->bg_quit)
                break;
            /* Every second, sandboxes that died by themselves are noticed
             * (and lookups notice them at once). */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&srv->teardown_cond, &srv->lock, &ts) == ETIMEDOUT)
                sweep_dead_locked(srv);
            continue;
        }
        pthread_mutex_unlock(&srv->lock);
        teardown_run(srv, t);
        pthread_mutex_lock(&srv->lock);
        srv->teardowns = t->next;
        free(t);
        pthread_cond_broadcast(&srv->cond); /* starts of that name wait for it */
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void *pool_main(void *arg)
{
    sbx_server *srv = arg;
    /* Lowest priority (the mkfs it runs inherits it): requests come first;
     * the pool uses what they leave idle. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    pthread_mutex_lock(&srv->lock);
    while (!srv->bg_quit) {
        if (!srv->pool_dirty || srv->pool_failed) {
            pthread_cond_wait(&srv->pool_cond, &srv->lock);
            continue;
        }
        uint64_t mib[SBX_ARRAY_LEN(srv->pool_mib)];
        size_t n = srv->n_pool_mib;
        memcpy(mib, srv->pool_mib, n * sizeof(mib[0]));
        pthread_mutex_unlock(&srv->lock);
        bool more = pool_fill_one(srv, mib, n);
        pthread_mutex_lock(&srv->lock);
        if (!more)
            srv->pool_dirty = false; /* a claim sets it again */
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

void sbx_server_pool_size(sbx_server *srv, uint64_t disk_mib)
{
    pthread_mutex_lock(&srv->lock);
    bool have = !srv->eng; /* no engine (fuzzing): no sandbox ever needs one */
    for (size_t i = 0; i < srv->n_pool_mib; i++)
        have = have || srv->pool_mib[i] == disk_mib;
    if (!have && srv->n_pool_mib < SBX_ARRAY_LEN(srv->pool_mib)) {
        srv->pool_mib[srv->n_pool_mib++] = disk_mib;
        srv->pool_dirty = true;
        pthread_cond_signal(&srv->pool_cond);
    }
    pthread_mutex_unlock(&srv->lock);
}

/* A first start takes a ready image (when its size is pooled); the
 * background thread makes the next. */
static void pool_claim(sbx_server *srv, uint64_t disk_mib, const char *layer_dir, const char *ns, const char *name)
{
    pthread_mutex_lock(&srv->lock);
    bool pooled = false;
    for (size_t i = 0; i < srv->n_pool_mib; i++)
        pooled = pooled || srv->pool_mib[i] == disk_mib;
    pthread_mutex_unlock(&srv->lock);
    if (!pooled || sbx_layer_pool_claim(srv->pool_dir, disk_mib, layer_dir) != 1)
        return;
    sbx_log(SBX_LOG_DEBUG, "sandbox %s/%s: layer image of %llu MiB from the pool", ns, name,
            (unsigned long long)disk_mib);
    pthread_mutex_lock(&srv->lock);
    srv->pool_dirty = true;
    pthread_cond_signal(&srv->pool_cond);
    pthread_mutex_unlock(&srv->lock);
}

int sbx_server_delete_sandbox(sbx_server *srv, const char *ns, const char *name)
{
    static unsigned seq; /* trash names, unique within this run */
    struct teardown *t = calloc(1, sizeof(*t));
    pthread_mutex_lock(&srv->start_lock);
    pthread_mutex_lock(&srv->lock);
    sbx_live *l = unlink_live_locked(srv, ns, name);
    if (l) /* calls in flight end as its processes die */
        kill(sbx_sandbox_pid(l->sb), SIGKILL);
    bool async = t && srv->bg_running && !srv->bg_quit;
    pthread_mutex_unlock(&srv->lock);
    char layer[PATH_MAX], trash[PATH_MAX];
    bool have_layer = sbx_server_layer_dir(srv, ns, name, layer, sizeof(layer)) == 0 && access(layer, F_OK) == 0;
    if (!async) { /* out of memory, or the server is closing: here and now */
        if (l)
            stop_live(srv, l, false);
        if (have_layer && rm_tree(layer) < 0)
            sbx_log(SBX_LOG_WARN, "remove layer of %s/%s: %s", ns, name, strerror(errno));
        free(t);
        pthread_mutex_unlock(&srv->start_lock);
        return l != NULL;
    }
    snprintf(t->ns, sizeof(t->ns), "%s", ns);
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->live = l;
    if (have_layer) {
        /* Into the trash by rename: the name is free at once, and a crash
         * leaves it where the next start clears it. Where that fails it is
         * removed in place (a start of the name waits for the teardown). */
        unsigned n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
        if (sbx_mkdir_p(srv->trash_dir, 0700) == 0 &&
            sbx_pathf(trash, sizeof(trash), "%s/%u-%s", srv->trash_dir, n, name) == 0 && rename(layer, trash) == 0)
            snprintf(t->path, sizeof(t->path), "%s", trash);
        else
            snprintf(t->path, sizeof(t->path), "%s", layer);
    }
    if (!l && !t->path[0]) { /* neither running nor ever started */
        free(t);
        pthread_mutex_unlock(&srv->start_lock);
        return 0;
    }
    pthread_mutex_lock(&srv->lock);
    queue_teardown_locked(srv, t);
    pthread_mutex_unlock(&srv->lock);
    pthread_mutex_unlock(&srv->start_lock);
    return l != NULL;
}

/* ---- routes ------------------------------------------------------------ */

static void auth_fail(sbx_http_resp *resp, int code)
{
    sbx_resp_json(resp, 401, json_pack("{s:s, s:i}", "error", code == SBX_AUTH_INVALID_TOKEN ? "Invalid or expired token"
                                                                                            : "Invalid credentials",
                                       "code", code));
}

/* ---- MCP over HTTP (POST /mcp, JSON replies, no SSE) --------------------- */

/* MCP tools run the msb methods in process, as POST /api/v1/rpc would. */
static int mcp_call(void *ud, const char *method, json_t *params, json_t **result, char *errmsg, size_t errlen)
{
    const sbx_rpc_method *m = sbx_rpc_find(method);
    if (!m) {
        snprintf(errmsg, errlen, "Method not found: %s", method);
        return -1;
    }
    sbx_rpc_err e = {0};
    *result = NULL;
    if (m->fn(ud, json_is_object(params) ? params : NULL, result, &e) < 0) {
        snprintf(errmsg, errlen, "%s", e.msg);
        return -1;
    }
    return 0;
}

/* A key bound to a namespace: every tools/call must name it in
 * params.arguments.namespace (§3). 0, or -1 with the response set. */
static int mcp_check_ns(json_t *body, const char *ns_claim, sbx_http_resp *resp)
{
    size_t n = json_is_array(body) ? json_array_size(body) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_is_array(body) ? json_array_get(body, i) : body;
        const char *method = json_string_value(json_object_get(m, "method"));
        if (!method || strcmp(method, "tools/call") != 0)
            continue;
        const char *ns = json_string_value(json_object_get(json_object_get(json_object_get(m, "params"), "arguments"),
                                                           "namespace"));
        if (!ns) {
            sbx_resp_json(resp, 400, json_pack("{s:s, s:i}", "error",
                                               "Missing or invalid 'namespace' in params for method 'tools/call'",
                                               "code", 2001));
            return -1;
        }
        if (strcmp(ns, ns_claim) != 0) {
            sbx_resp_json(resp, 403, json_pack("{s:s, s:i}", "error", "Access denied", "code", 3001));
            return -1;
        }
    }
    return 0;
}

static void mcp_post(sbx_server *srv, const sbx_http_req *req, const char *ns_claim, sbx_http_resp *resp)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body) { /* every MCP reply is HTTP 200, parse errors included */
        char msg[300];
        snprintf(msg, sizeof(msg), "Parse error: %s at line %d column %d", jerr.text, jerr.line, jerr.column);
        sbx_resp_json(resp, 200, sbx_mcp_error(NULL, -32700, msg));
        return;
    }
    if (ns_claim && strcmp(ns_claim, "*") != 0 && mcp_check_ns(body, ns_claim, resp) < 0) {
        json_decref(body);
        return;
    }
    sbx_mcp_ctx ctx = {.call = mcp_call, .ud = srv, .protocol_version = sbx_http_header(req, "MCP-Protocol-Version")};
    json_t *reply = sbx_mcp_handle(&ctx, body);
    /* Sessions are nominal: sbx keeps no per-session state, so any id (or
     * none) is accepted later; clients still expect one from initialize. */
    unsigned char rnd[16];
    if (reply && sbx_mcp_has_initialize(body) && RAND_bytes(rnd, sizeof(rnd)) == 1) {
        char sid[2 * sizeof(rnd) + 1];
        for (size_t i = 0; i < sizeof(rnd); i++)
            snprintf(sid + 2 * i, 3, "%02x", rnd[i]);
        sbx_http_add_header(resp, "Mcp-Session-Id", sid);
    }
    json_decref(body);
    if (reply)
        sbx_resp_json(resp, 200, reply);
    else
        resp->status = 200; /* notifications only: an empty body (§7) */
}

static void route_request(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp);

/* Every request, at debug level (MSB_LOG_LEVEL=DEBUG, --log-level debug):
 * method, path, status and the handler's time (a streamed body goes on). */
static void route(void *ud, const sbx_http_req *req, sbx_http_resp *resp)
{
    uint64_t t0 = sbx_now_usec();
    route_request(ud, req, resp);
    sbx_log(SBX_LOG_DEBUG, "%s %s -> %d (%.1f ms%s)", req->method, req->path, resp->status ? resp->status : 200,
            (double)(sbx_now_usec() - t0) / 1000.0, resp->stream || resp->stream_obj ? ", streaming" : "");
}

static void route_request(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp)
{
    if (sbx_e2b_route(srv, req, resp)) /* E2B control plane and envd (proto/e2b.c) */
        return;
    if (sbx_daytona_route(srv, req, resp)) /* Daytona API, event stream, toolbox (proto/daytona.c) */
        return;
    static const struct { const char *path, *method; } aliases[] = {
        {"/api/v1/sandbox/start", "sandbox.start"},
        {"/api/v1/sandbox/stop", "sandbox.stop"},
        {"/api/v1/sandbox/command/run", "sandbox.command.run"},
    };
    const char *alias = NULL;
    bool rpc = strcmp(req->path, "/api/v1/rpc") == 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(aliases); i++)
        if (strcmp(req->path, aliases[i].path) == 0)
            alias = aliases[i].method;
    bool health = strcmp(req->path, "/api/v1/health") == 0;
    bool mcp = strcmp(req->path, "/mcp") == 0;

    if (strcmp(req->method, "OPTIONS") == 0 && (rpc || alias || health || mcp)) {
        resp->status = 204; /* CORS preflight, no auth */
        return;
    }
    if (health) {
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
            resp->status = 405;
            return;
        }
        sbx_resp_json(resp, 200, json_pack("{s:s}", "message", "Service is healthy"));
        return;
    }
    if (!rpc && !alias && !mcp) {
        resp->status = 404;
        return;
    }
    /* DELETE /mcp ends an MCP session; GET /mcp would open an SSE stream,
     * which sbx does not offer (405 tells MCP clients so). */
    bool mcp_delete = mcp && strcmp(req->method, "DELETE") == 0;
    if (strcmp(req->method, "POST") != 0 && !mcp_delete) {
        resp->status = 405;
        if (mcp)
            sbx_http_add_header(resp, "Allow", "POST, DELETE, OPTIONS");
        return;
    }
    char *ns_claim = NULL;
    if (!srv->cfg.dev) {
        const char *h = sbx_http_header(req, "Proxy-Authorization");
        if (!h)
            h = sbx_http_header(req, "Authorization");
        int a = srv->have_key ? sbx_auth_check(srv->key, h, (int64_t)time(NULL), &ns_claim)
                              : SBX_AUTH_INVALID_CREDENTIALS;
        if (a != SBX_AUTH_OK) {
            auth_fail(resp, a);
            return;
        }
    }
    if (mcp_delete)
        resp->status = 200;
    else if (mcp)
        mcp_post(srv, req, ns_claim, resp);
    else
        sbx_rpc_handle(srv, req, alias, ns_claim, resp);
    free(ns_claim);
}

/* ---- lifecycle ----------------------------------------------------------- */

int sbx_server_open(const sbx_server_config *cfg, sbx_server **out, sbx_err *err)
{
    sbx_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    srv->cfg = *cfg;
    snprintf(srv->host, sizeof(srv->host), "%s", cfg->host ? cfg->host : "127.0.0.1");
    srv->cfg.host = srv->host;
    const char *home = getenv("HOME");
    if (cfg->state_dir && *cfg->state_dir)
        snprintf(srv->state_dir, sizeof(srv->state_dir), "%s", cfg->state_dir);
    else
        snprintf(srv->state_dir, sizeof(srv->state_dir), "%s/.sbx", home && *home ? home : "/root");
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_mutex_init(&srv->spawn_lock, NULL);
    pthread_cond_init(&srv->spawn_cond, NULL);
    pthread_cond_init(&srv->teardown_cond, NULL);
    pthread_cond_init(&srv->pool_cond, NULL);

    char path[PATH_MAX + 32];
    int r = sbx_mkdir_p(srv->state_dir, 0700);
    if (r < 0) {
        sbx_fail_errno(err, -r, "state dir %s", srv->state_dir);
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/server.key", srv->state_dir);
    if (sbx_auth_load_key(path, srv->key, err) < 0)
        goto fail;
    srv->have_key = true;
    snprintf(path, sizeof(path), "%s/registry.db", srv->state_dir);
    if (sbx_reg_open(path, &srv->reg, err) < 0)
        goto fail;
    /* Sandboxes do not outlive the server: whatever was running is not. */
    if (sbx_reg_mark_all_stopped(srv->reg, err) < 0)
        goto fail;
    /* SBX_GPU_ROOT: a fake GPU driver tree, for tests (docs/gpu.md). */
    /* Sandboxes' init processes are the small `sbx` beside us, not
     * copies of the server (see sbx_engine_config.init_exe). */
    char init_exe[PATH_MAX];
    sbx_engine_config ecfg = {.gpu_root = getenv("SBX_GPU_ROOT"), .init_exe = init_exe};
    if (!cfg->no_engine &&
        (sbx_default_init_exe(init_exe, sizeof(init_exe), err) < 0 || sbx_engine_open(&ecfg, &srv->eng, err) < 0))
        goto fail;
    if ((r = pthread_create(&srv->spawner, NULL, spawner_main, srv)) != 0) {
        sbx_fail_errno(err, r, "start spawner thread");
        goto fail;
    }
    /* Pool images and deleted layers of an earlier run: sandboxes do not
     * outlive the server, so nothing in either is in use. */
    snprintf(srv->pool_dir, sizeof(srv->pool_dir), "%.*s/layers/.pool", PATH_MAX - 32, srv->state_dir);
    snprintf(srv->trash_dir, sizeof(srv->trash_dir), "%.*s/layers/.trash", PATH_MAX - 32, srv->state_dir);
    sbx_layer_pool_clear(srv->pool_dir);
    if (rm_tree(srv->trash_dir) < 0)
        sbx_log(SBX_LOG_WARN, "remove %s: %s", srv->trash_dir, strerror(errno));
    const char *delay = getenv("SBX_TEARDOWN_DELAY_MS");
    uint64_t d;
    if (delay && *delay && sbx_parse_u64(delay, 0, 60000, &d) == 0)
        srv->teardown_delay_ms = (unsigned)d;
    if ((r = pthread_create(&srv->teardown_thread, NULL, teardown_main, srv)) != 0) {
        sbx_fail_errno(err, r, "start teardown thread");
        sbx_server_close(srv);
        return -1;
    }
    if ((r = pthread_create(&srv->pool_thread, NULL, pool_main, srv)) != 0) {
        sbx_fail_errno(err, r, "start layer pool thread");
        pthread_mutex_lock(&srv->lock);
        srv->bg_quit = true;
        pthread_cond_signal(&srv->teardown_cond);
        pthread_mutex_unlock(&srv->lock);
        pthread_join(srv->teardown_thread, NULL);
        sbx_server_close(srv);
        return -1;
    }
    srv->bg_running = true;
    /* The session layer, with the MSB_* settings main.c loaded (a server
     * made in code without them gets the documented defaults). */
    sbx_client_config defaults;
    const sbx_client_config *mc = &srv->cfg.msb;
    if (mc->session_timeout == 0) {
        sbx_client_config_defaults(&defaults);
        mc = &defaults;
    }
    if (sbx_sessions_open(srv, mc, &srv->sessions, err) < 0) {
        srv->sessions = NULL;
        sbx_server_close(srv);
        return -1;
    }
    if (sbx_e2b_init(srv, err) < 0 || sbx_daytona_init(srv, err) < 0) {
        sbx_server_close(srv);
        return -1;
    }
    *out = srv;
    return 0;
fail:
    sbx_engine_close(srv->eng);
    sbx_reg_close(srv->reg);
    free(srv);
    return -1;
}

int sbx_server_listen(sbx_server *srv, sbx_err *err)
{
    return sbx_http_start(srv->host, srv->cfg.port, MAX_BODY, route, srv, &srv->http, &srv->port, err);
}

void sbx_server_close(sbx_server *srv)
{
    if (!srv)
        return;
    /* Requests in flight get a bounded grace; then their sandboxes are
     * killed, which ends them (with an error), so a runaway command cannot
     * hold up a SIGTERM. */
    if (sbx_http_quiesce(srv->http, SHUTDOWN_GRACE_MS) > 0) {
        sbx_log(SBX_LOG_WARN, "stopping: requests still running after %d ms; stopping their sandboxes",
                SHUTDOWN_GRACE_MS);
        pthread_mutex_lock(&srv->lock);
        for (sbx_live *l = srv->live; l; l = l->next)
            kill(sbx_sandbox_pid(l->sb), SIGKILL);
        pthread_mutex_unlock(&srv->lock);
    }
    sbx_e2b_shutdown(srv); /* E2B sandboxes go with the server; their streams end */
    sbx_daytona_shutdown(srv); /* Daytona's stay in the registry, stopped below */
    sbx_http_stop(srv->http); /* waits for requests in flight */
    sbx_sessions_close(srv->sessions);
    srv->sessions = NULL;
    pthread_mutex_lock(&srv->start_lock);
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        sbx_live *l = srv->live;
        if (l) {
            srv->live = l->next;
            l->stopping = true;
        }
        pthread_mutex_unlock(&srv->lock);
        if (!l)
            break;
        stop_live(srv, l, true);
    }
    pthread_mutex_unlock(&srv->start_lock);
    /* Deleted sandboxes finish their teardown before the server exits:
     * nothing of them is left behind. Then the pool goes. */
    if (srv->bg_running) {
        pthread_mutex_lock(&srv->lock);
        srv->bg_quit = true;
        pthread_cond_signal(&srv->teardown_cond);
        pthread_cond_signal(&srv->pool_cond);
        pthread_mutex_unlock(&srv->lock);
        pthread_join(srv->teardown_thread, NULL);
        pthread_join(srv->pool_thread, NULL);
        srv->bg_running = false;
    }
    if (srv->pool_dir[0])
        sbx_layer_pool_clear(srv->pool_dir);
    if (srv->trash_dir[0])
        rm_tree(srv->trash_dir);
    pthread_mutex_lock(&srv->spawn_lock);
    srv->spawner_quit = true;
    pthread_cond_broadcast(&srv->spawn_cond);
    pthread_mutex_unlock(&srv->spawn_lock);
    pthread_join(srv->spawner, NULL);
    sbx_reg_close(srv->reg);
    sbx_engine_close(srv->eng);
    free(srv);
}
