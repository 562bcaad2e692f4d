/* Daytona front door, control plane (shared/protocols/daytona.md §2, §3,
 * §7): create, get, list, delete, start, stop, labels and the lifecycle
 * intervals of sandboxes; the table of Daytona sandboxes (what the
 * server's live entry does not hold: name, labels, env, resources as
 * asked); the reaper that applies autoStopInterval and autoDeleteInterval;
 * the auth check; and the routing of /api/sandbox, /api/socket.io
 * (daytona_socket.c) and /toolbox/{id} (daytona_toolbox.c).
 *
 * Every Daytona sandbox is a server sandbox in namespace "daytona" named by
 * its id, with its registry row carrying the Daytona fields, so the
 * microsandbox API sees it and a restarted server knows it (stopped). */
#include "daytona.h"
#include "daytona_internal.h"
#include "connect.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REAPER_TICK_MS 1000
#define DEFAULT_CPU 1
#define DEFAULT_MEMORY_GIB 1
#define DEFAULT_DISK_GIB 3
#define MAX_CPU 1024
#define MAX_MEMORY_GIB 16384 /* the engine's ceiling, 16 TiB */
#define MAX_DISK_GIB 1024 /* a sparse ext4 image, but mkfs still writes its metadata */
#define DEFAULT_AUTO_STOP_MIN 15 /* as Daytona: minutes without toolbox activity */
#define MAX_INTERVAL_MIN (1 << 24)
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 200
#define LIST_MAX_STATES 32

static struct {
    sbx_server *srv;
    pthread_mutex_t lock; /* list, refs and the fields marked "module lock" */
    pthread_cond_t cond;  /* wakes the reaper */
    dt_sandbox *list;
    pthread_t reaper;
    bool reaper_running, quit, closing;
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Error";
    }
}

void dt_error(sbx_http_resp *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sbx_utf8_sanitize(msg);
    json_t *j = json_pack("{s:i, s:s, s:s}", "statusCode", status, "message", msg, "error", reason(status));
    if (j && code) {
        /* (source, code) is how the SDK picks the precise error class. */
        json_object_set_new(j, "code", json_string(code));
        json_object_set_new(j, "source", json_string(DT_DAEMON));
    }
    sbx_resp_json(resp, status, j);
}

/* ---- the table -------------------------------------------------------------- */

static void sandbox_free(dt_sandbox *sb)
{
    json_decref(sb->info);
    for (size_t i = 0; i < sb->n_envs; i++)
        free(sb->envs[i]);
    free(sb->envs);
    free(sb);
}

dt_sandbox *dt_sandbox_get(const char *id_or_name)
{
    pthread_mutex_lock(&G.lock);
    dt_sandbox *sb = G.list;
    while (sb && strcmp(sb->id, id_or_name) != 0)
        sb = sb->next;
    for (dt_sandbox *x = G.list; !sb && x; x = x->next)
        if (strcmp(x->name, id_or_name) == 0)
            sb = x;
    if (sb)
        sb->refs++;
    pthread_mutex_unlock(&G.lock);
    return sb;
}

void dt_sandbox_put(dt_sandbox *sb)
{
    pthread_mutex_lock(&G.lock);
    bool last = --sb->refs == 0;
    pthread_mutex_unlock(&G.lock);
    if (last)
        sandbox_free(sb);
}

bool dt_sandbox_busy(dt_sandbox *sb, int delta)
{
    pthread_mutex_lock(&G.lock);
    /* A call does not begin while the sandbox is being stopped or deleted. */
    bool ok = delta <= 0 || (!sb->dead && !sb->transition);
    if (ok)
        sb->busy += delta;
    sb->activity_ms = now_ms();
    pthread_mutex_unlock(&G.lock);
    return ok;
}

void dt_sandbox_label(dt_sandbox *sb, const char *key, char *out, size_t len)
{
    pthread_mutex_lock(&G.lock);
    const char *v = json_string_value(json_object_get(json_object_get(sb->info, "labels"), key));
    snprintf(out, len, "%s", v ? v : "");
    pthread_mutex_unlock(&G.lock);
}

/* Takes sb out of the table (G.lock held); false when another caller
 * already did: exactly one caller goes on to delete it. */
static bool claim_locked(dt_sandbox *sb)
{
    if (sb->dead)
        return false;
    for (dt_sandbox **pp = &G.list; *pp; pp = &(*pp)->next)
        if (*pp == sb) {
            *pp = sb->next;
            break;
        }
    sb->dead = true;
    return true;
}

static bool is_live(const char *id)
{
    sbx_live *l = sbx_server_acquire(G.srv, DT_NS, id);
    if (l)
        sbx_server_release(G.srv, l);
    return l != NULL;
}

/* The Daytona state (G.lock held). */
static const char *state_locked(const dt_sandbox *sb)
{
    if (sb->dead)
        return "destroyed";
    if (sb->transition)
        return sb->transition;
    return is_live(sb->id) ? "started" : "stopped";
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Deletes a claimed sandbox, its layer and registry row, and drops the
 * table's reference. */
static void finish_delete(dt_sandbox *sb, const char *why)
{
    sbx_server *srv = G.srv;
    sbx_err err = {0};
    /* Its processes die and its layer leaves now; the unmount and the
     * removal finish in the background (server.c), off this request. */
    sbx_server_delete_sandbox(srv, DT_NS, sb->id);
    if (sbx_reg_delete(srv->reg, DT_NS, sb->id, &err) < 0)
        sbx_log(SBX_LOG_WARN, "daytona: registry row of %s: %s", sb->id, err.msg);
    sbx_log(SBX_LOG_INFO, "daytona: sandbox %s deleted (%s)", sb->id, why);
    dt_sandbox_put(sb);
}

/* ---- registry rows ------------------------------------------------------------ */

/* The server config of sb (what sandbox.start understands) with the Daytona
 * fields under "daytona" (G.lock held). */
static json_t *config_locked(const dt_sandbox *sb)
{
    json_t *envs = json_array();
    for (size_t i = 0; i < sb->n_envs; i++)
        json_array_append_new(envs, json_string(sb->envs[i]));
    json_t *info = json_object_get(sb->info, "sbx");
    return json_pack("{s:O, s:I, s:I, s:o, s:s, s:O}", "image", json_object_get(info, "image"), "memory",
                     json_integer_value(json_object_get(sb->info, "memory")) * 1024, "cpus",
                     json_integer_value(json_object_get(sb->info, "cpu")), "envs", envs, "user_name", sb->account,
                     "daytona", sb->info);
}

static int save(const dt_sandbox *sb, bool running, sbx_err *err)
{
    pthread_mutex_lock(&G.lock);
    json_t *cfg = config_locked(sb);
    pthread_mutex_unlock(&G.lock);
    char *text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    if (!text)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    sbx_reg_row row = {.config = text};
    snprintf(row.ns, sizeof(row.ns), "%s", DT_NS);
    snprintf(row.name, sizeof(row.name), "%s", sb->id);
    snprintf(row.status, sizeof(row.status), "%s", running ? "running" : "stopped");
    snprintf(row.origin, sizeof(row.origin), "daytona");
    int r = sbx_reg_put(G.srv->reg, &row, err);
    free(text);
    return r;
}

/* The server conf to start sb with. */
static int conf_of(const dt_sandbox *sb, sbx_sandbox_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    pthread_mutex_lock(&G.lock);
    json_t *x = json_object_get(sb->info, "sbx");
    snprintf(conf->image, sizeof(conf->image), "%s", json_string_value(json_object_get(x, "image")));
    conf->memory_mib = (uint64_t)json_integer_value(json_object_get(sb->info, "memory")) * 1024;
    conf->disk_mib = (uint64_t)json_integer_value(json_object_get(sb->info, "disk")) * 1024;
    conf->cpus = (double)json_integer_value(json_object_get(sb->info, "cpu"));
    pthread_mutex_unlock(&G.lock);
    snprintf(conf->user_name, sizeof(conf->user_name), "%s", sb->account);
    conf->envs = sb->envs; /* borrowed: sbx_server_start_sandbox copies */
    conf->n_envs = sb->n_envs;
    return 0;
}

/* ---- reaper --------------------------------------------------------------------- */

static int interval_of(const dt_sandbox *sb, const char *field)
{
    json_t *v = json_object_get(sb->info, field);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static void stop_one(dt_sandbox *sb, const char *why, bool marked);

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&G.lock);
    while (!G.quit) {
        /* A snapshot with references: the work below runs unlocked. */
        size_t n = 0, k = 0;
        for (dt_sandbox *sb = G.list; sb; sb = sb->next)
            n++;
        dt_sandbox **snap = n ? calloc(n, sizeof(*snap)) : NULL;
        for (dt_sandbox *sb = G.list; sb && snap; sb = sb->next) {
            sb->refs++;
            snap[k++] = sb;
        }
        pthread_mutex_unlock(&G.lock);
        for (size_t i = 0; i < k; i++) {
            dt_sandbox *sb = snap[i];
            sbx_reg_row row;
            sbx_err err = {0};
            int r = sbx_reg_get(G.srv->reg, DT_NS, sb->id, &row, &err);
            if (r == 0)
                sbx_reg_row_free(&row);
            bool live = is_live(sb->id);
            int64_t now = now_ms();
            pthread_mutex_lock(&G.lock);
            if (sb->was_live && !live && !sb->transition)
                sb->stopped_ms = now; /* stopped outside this API (sandbox.stop) */
            sb->was_live = live;
            int stop_min = interval_of(sb, "autoStopInterval"), del_min = interval_of(sb, "autoDeleteInterval");
            bool gone = r == 1 && claim_locked(sb);
            bool idle = !gone && !sb->dead && live && !sb->transition && sb->busy == 0 && stop_min > 0 &&
                        now - sb->activity_ms >= (int64_t)stop_min * 60000;
            if (idle)
                sb->transition = "stopping"; /* with the idle check: no call begins in between */
            bool expired = !gone && !idle && !live && !sb->transition && del_min > 0 &&
                           now - sb->stopped_ms >= (int64_t)del_min * 60000 && claim_locked(sb);
            pthread_mutex_unlock(&G.lock);
            if (gone) { /* deleted through the microsandbox API: nothing left to remove */
                sbx_log(SBX_LOG_INFO, "daytona: sandbox %s was deleted outside the Daytona API", sb->id);
                dt_sandbox_put(sb);
            } else if (idle) {
                stop_one(sb, "autoStopInterval", true);
            } else if (expired) {
                finish_delete(sb, "autoDeleteInterval");
            }
            dt_sandbox_put(sb);
        }
        free(snap);
        pthread_mutex_lock(&G.lock);
        if (G.quit)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += REAPER_TICK_MS / 1000;
        pthread_cond_timedwait(&G.cond, &G.lock, &ts);
    }
    pthread_mutex_unlock(&G.lock);
    return NULL;
}

/* ---- lifecycle of the module ------------------------------------------------------ */

static int strv_from_object(json_t *env, char ***out, size_t *n)
{
    size_t cnt = json_is_object(env) ? json_object_size(env) : 0, i = 0;
    char **v = calloc(cnt + 1, sizeof(char *));
    if (!v)
        return -1;
    const char *k;
    json_t *val;
    json_object_foreach(env, k, val) {
        if (asprintf(&v[i], "%s=%s", k, json_string_value(val)) < 0) {
            v[i] = NULL;
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return -1;
        }
        i++;
    }
    *out = v;
    *n = i;
    return 0;
}

/* A table entry from a registry row of an earlier run; NULL if the row is
 * not a Daytona sandbox's. */
static dt_sandbox *from_row(const sbx_reg_row *row)
{
    json_t *cfg = json_loads(row->config, 0, NULL), *info = json_object_get(cfg, "daytona");
    const char *name = json_string_value(json_object_get(info, "name")),
               *account = json_string_value(json_object_get(cfg, "user_name")),
               *user = json_string_value(json_object_get(info, "user")),
               *created = json_string_value(json_object_get(info, "createdAt"));
    dt_sandbox *sb = NULL;
    if (!json_is_object(info) || !name || !account || !user || !json_is_object(json_object_get(info, "sbx")) ||
        !(sb = calloc(1, sizeof(*sb))))
        goto out;
    snprintf(sb->id, sizeof(sb->id), "%.39s", row->name);
    snprintf(sb->name, sizeof(sb->name), "%s", name);
    snprintf(sb->account, sizeof(sb->account), "%s", account);
    sb->as_root = strcmp(user, "root") == 0;
    sb->info = json_incref(info);
    if (!created || sbx_rfc3339_parse(created, &sb->created_ms) < 0)
        sb->created_ms = row->created * 1000;
    sb->updated_ms = sb->activity_ms = sb->stopped_ms = now_ms();
    sb->refs = 1;
    if (strv_from_object(json_object_get(info, "env"), &sb->envs, &sb->n_envs) < 0) {
        json_decref(sb->info);
        free(sb);
        sb = NULL;
    }
out:
    json_decref(cfg);
    return sb;
}

int sbx_daytona_init(sbx_server *srv, sbx_err *err)
{
    pthread_mutex_lock(&G.lock);
    if (G.srv && G.srv != srv && !G.closing) {
        pthread_mutex_unlock(&G.lock);
        return sbx_fail(err, SBX_E_INVALID, "daytona: another server in this process already serves Daytona");
    }
    G.srv = srv;
    G.list = NULL;
    G.quit = G.closing = false;
    pthread_mutex_unlock(&G.lock);
    /* Sandboxes of an earlier run: kept, stopped, as the registry says. */
    sbx_reg_row *rows = NULL;
    size_t n = 0, loaded = 0;
    if (sbx_reg_list(srv->reg, DT_NS, &rows, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        dt_sandbox *sb = from_row(&rows[i]);
        if (!sb) {
            sbx_log(SBX_LOG_WARN, "daytona: %s/%s has no Daytona fields; not served by the Daytona API", DT_NS,
                    rows[i].name);
            continue;
        }
        pthread_mutex_lock(&G.lock);
        sb->next = G.list;
        G.list = sb;
        pthread_mutex_unlock(&G.lock);
        loaded++;
    }
    sbx_reg_rows_free(rows, n);
    if (loaded)
        sbx_log(SBX_LOG_INFO, "daytona: %zu sandbox(es) of an earlier run, stopped", loaded);
    /* Most creates take the default disk: their layer images come ready. */
    sbx_server_pool_size(srv, (uint64_t)DEFAULT_DISK_GIB * 1024);
    int r = pthread_create(&G.reaper, NULL, reaper_main, NULL);
    if (r != 0)
        return sbx_fail_errno(err, r, "daytona: start reaper thread");
    G.reaper_running = true;
    return 0;
}

void sbx_daytona_shutdown(sbx_server *srv)
{
    pthread_mutex_lock(&G.lock);
    if (G.srv != srv || G.closing) {
        pthread_mutex_unlock(&G.lock);
        return;
    }
    G.closing = true; /* new requests get 503 */
    G.quit = true;
    pthread_cond_broadcast(&G.cond);
    pthread_mutex_unlock(&G.lock);
    if (G.reaper_running) {
        pthread_join(G.reaper, NULL);
        G.reaper_running = false;
    }
    /* The table goes; the registry keeps the sandboxes for the next run. */
    for (;;) {
        pthread_mutex_lock(&G.lock);
        dt_sandbox *sb = G.list;
        if (sb)
            claim_locked(sb);
        pthread_mutex_unlock(&G.lock);
        if (!sb)
            break;
        dt_sandbox_put(sb);
    }
}

/* ---- auth ------------------------------------------------------------------------- */

int dt_check_key(sbx_server *srv, const char *key, char *msg, size_t len)
{
    const char *k = key;
    if (k && strncmp(k, "Bearer ", 7) == 0)
        k += 7;
    while (k && *k == ' ')
        k++;
    if (!k || !*k) {
        snprintf(msg, len, "missing API key: send it as Authorization: Bearer <key>");
        return 401;
    }
    if (srv->cfg.dev)
        return 0; /* dev mode: any non-empty key */
    char *ns = NULL;
    int a = srv->have_key ? sbx_auth_check(srv->key, k, (int64_t)time(NULL), &ns) : SBX_AUTH_INVALID_CREDENTIALS;
    if (a != SBX_AUTH_OK) {
        snprintf(msg, len, "invalid API key: use a key from `sbx server keygen`%s",
                 a == SBX_AUTH_INVALID_TOKEN ? " (this one is expired or not signed by this server)" : "");
        return 401;
    }
    bool ok = strcmp(ns, "*") == 0 || strcmp(ns, DT_NS) == 0;
    if (!ok)
        snprintf(msg, len, "this API key is limited to namespace '%s'; Daytona sandboxes live in namespace '%s'", ns,
                 DT_NS);
    free(ns);
    return ok ? 0 : 403;
}

static bool check_auth(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp)
{
    char msg[256];
    int st = dt_check_key(srv, sbx_http_header(req, "Authorization"), msg, sizeof(msg));
    if (st)
        dt_error(resp, st, NULL, "%s", msg);
    return st == 0;
}

/* ---- the DTO ------------------------------------------------------------------------ */

/* <scheme>://<host the client used>/toolbox: the SDK sends toolbox calls there. */
static void proxy_url(const sbx_http_req *req, char *out, size_t len)
{
    const char *host = sbx_http_header(req, "Host"), *proto = sbx_http_header(req, "X-Forwarded-Proto");
    bool ok = host && *host && strlen(host) < 256;
    for (const char *p = host; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr(".-:[]_", *p);
    if (ok)
        snprintf(out, len, "%s://%s/toolbox", proto && strcmp(proto, "https") == 0 ? "https" : "http", host);
    else
        snprintf(out, len, "http://%s:%u/toolbox", G.srv->host, G.srv->port);
}

static json_t *dto_locked(const dt_sandbox *sb, const char *proxy)
{
    json_t *j = json_deep_copy(sb->info);
    if (!j)
        return NULL;
    json_object_del(j, "sbx"); /* sbx's own bookkeeping */
    const char *state = state_locked(sb);
    char updated[40];
    sbx_rfc3339_ms(updated, sb->updated_ms);
    bool running = strcmp(state, "started") == 0 || strcmp(state, "starting") == 0;
    json_object_set_new(j, "id", json_string(sb->id));
    json_object_set_new(j, "name", json_string(sb->name));
    json_object_set_new(j, "organizationId", json_string("local"));
    json_object_set_new(j, "state", json_string(state));
    json_object_set_new(j, "desiredState", json_string(sb->dead ? "destroyed" : running ? "started" : "stopped"));
    json_object_set_new(j, "recoverable", json_false());
    json_object_set_new(j, "backupState", json_string("None"));
    json_object_set_new(j, "volumes", json_array());
    json_object_set_new(j, "updatedAt", json_string(updated));
    json_object_set_new(j, "toolboxProxyUrl", json_string(proxy));
    return j;
}

static json_t *dto(const dt_sandbox *sb, const sbx_http_req *req)
{
    char proxy[320];
    proxy_url(req, proxy, sizeof(proxy));
    pthread_mutex_lock(&G.lock);
    json_t *j = dto_locked(sb, proxy);
    pthread_mutex_unlock(&G.lock);
    return j;
}

static void reply_dto(dt_sandbox *sb, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *j = dto(sb, req);
    if (j)
        sbx_resp_json(resp, 200, j);
    else
        dt_error(resp, 500, NULL, "out of memory");
}

/* ---- POST /api/sandbox ----------------------------------------------------------------- */

static json_t *body_object(const sbx_http_req *req, sbx_http_resp *resp)
{
    if (req->body_len == 0)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        dt_error(resp, 400, NULL, "invalid request body: %s", j ? "expected a JSON object" : jerr.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A JSON value, short, for messages. */
static void show(json_t *v, char *out, size_t len)
{
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(out, len, "%.60s", t ? t : "?");
    free(t);
}

/* An optional whole number in [min, max] (absent or null: def). 0, or -1
 * with the 400 reply set. */
static int whole(json_t *body, const char *field, long long def, long long min, long long max, const char *what,
                 long long *out, sbx_http_resp *resp)
{
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d >= (double)min && d <= (double)max) || d != floor(d)) {
        char got[64];
        show(v, got, sizeof(got));
        dt_error(resp, 400, NULL, "%s must be a whole number of %s from %lld to %lld (got %s)", field, what, min, max,
                 got);
        return -1;
    }
    *out = (long long)d;
    return 0;
}

/* An optional object of strings; env keys must be variable names. */
static int strmap(json_t *obj, const char *field, bool env_names, sbx_http_resp *resp)
{
    if (!obj || json_is_null(obj))
        return 0;
    if (!json_is_object(obj)) {
        dt_error(resp, 400, NULL, "%s must be an object of strings", field);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (!json_is_string(v)) {
            dt_error(resp, 400, NULL, "%s.%s must be a string", field, k);
            return -1;
        }
        if (env_names && (!*k || strchr(k, '='))) {
            dt_error(resp, 400, NULL, "%s key '%s' is not a valid variable name (non-empty, no '=')", field, k);
            return -1;
        }
    }
    return 0;
}

static bool valid_account(const char *s)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 32 && ((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_');
    for (size_t i = 1; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-';
    return ok;
}

/* A snapshot or base image reference -> sbx image. Daytona's own
 * snapshots and the python / node bases run on sbx's host image (it has
 * python3 and node); any other name is an sbx image of that name (without
 * registry or tag). 0, or -1 with the 400 reply set. */
static int map_image(const char *ref, const char *field, char *out, size_t len, sbx_http_resp *resp)
{
    char r[256];
    snprintf(r, sizeof(r), "%s", ref);
    char *at = strchr(r, '@');
    if (at)
        *at = '\0'; /* digest */
    char *slash = strrchr(r, '/'), *colon = strrchr(r, ':');
    if (colon && (!slash || colon > slash))
        *colon = '\0'; /* tag */
    const char *name = r;
    if (strncmp(name, "docker.io/", 10) == 0)
        name += 10;
    if (strncmp(name, "library/", 8) == 0)
        name += 8;
    static const char *const builtin[] = {"host", "python", "node", "daytonaio/sandbox", "daytonaio/sandbox-slim"};
    bool host = strncmp(name, "daytona", 7) == 0 && !strchr(name, '/');
    for (size_t i = 0; !host && i < SBX_ARRAY_LEN(builtin); i++)
        host = strcmp(name, builtin[i]) == 0;
    if (host) {
        snprintf(out, len, "host");
        return 0;
    }
    if (!sbx_valid_name(name)) {
        dt_error(resp, 400, NULL,
                 "%s '%s' is not available: sbx runs Daytona snapshots, python and node on its host image; other "
                 "names must be sbx images ([A-Za-z0-9_.-]{1,63}, no registry path)",
                 field, ref);
        return -1;
    }
    snprintf(out, len, "%s", name);
    return 0;
}

/* buildInfo.dockerfileContent: sbx builds nothing, so only "FROM <image>". */
static int dockerfile_image(json_t *build, char *out, size_t len, char *base, size_t blen, sbx_http_resp *resp)
{
    json_t *hashes = json_object_get(build, "contextHashes");
    const char *df = json_string_value(json_object_get(build, "dockerfileContent"));
    if (!json_is_object(build) || !df) {
        dt_error(resp, 400, NULL, "buildInfo must be an object with a dockerfileContent string");
        return -1;
    }
    if (json_is_array(hashes) && json_array_size(hashes) > 0) {
        dt_error(resp, 400, NULL, "buildInfo.contextHashes is not supported: sbx does not build images");
        return -1;
    }
    char from[256] = "";
    for (const char *line = df; *line;) {
        size_t n = strcspn(line, "\n");
        const char *p = line, *end = line + n;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p < end && *p != '#') {
            /* The keyword first: on a line shorter than "FROM x", p + 4 may
             * lie past the string's end (found by tests/fuzz/fuzz_daytona.c). */
            bool is_from =
                (size_t)(end - p) >= 5 && strncasecmp(p, "FROM", 4) == 0 && (p[4] == ' ' || p[4] == '\t');
            const char *arg = is_from ? p + 4 : end;
            while (arg < end && (*arg == ' ' || *arg == '\t'))
                arg++;
            size_t an = strcspn(arg, " \t\r\n");
            if (from[0] || !is_from || an == 0 || an >= sizeof(from)) {
                dt_error(resp, 400, NULL,
                         "buildInfo: only a Dockerfile of a single FROM line is supported (sbx does not build "
                         "images); got '%.*s'",
                         (int)(end - p > 80 ? 80 : end - p), p);
                return -1;
            }
            memcpy(from, arg, an);
            from[an] = '\0';
        }
        line = *end ? end + 1 : end;
    }
    if (!from[0]) {
        dt_error(resp, 400, NULL, "buildInfo.dockerfileContent has no FROM line");
        return -1;
    }
    snprintf(base, blen, "%s", from);
    return map_image(from, "image", out, len, resp);
}

/* Fields sbx cannot honour are refused, not dropped. 0, or -1 with 400. */
static int refuse_unsupported(json_t *body, sbx_http_resp *resp)
{
    static const struct { const char *field, *why; } lists[] = {
        {"volumes", "volumes are not supported by sbx's Daytona API"},
        {"secrets", "secrets are not supported by sbx's Daytona API"},
        {"networkAllowList", "the sandbox network is loopback only: there is nothing to allow"},
        {"domainAllowList", "the sandbox network is loopback only: there is nothing to allow"},
        {"gpuType", "GPUs are not supported by sbx's Daytona API"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(lists); i++) {
        json_t *v = json_object_get(body, lists[i].field);
        if (v && !json_is_null(v) &&
            !((json_is_array(v) && json_array_size(v) == 0) || (json_is_string(v) && !*json_string_value(v)))) {
            dt_error(resp, 400, NULL, "%s: %s", lists[i].field, lists[i].why);
            return -1;
        }
    }
    json_t *v;
    if ((v = json_object_get(body, "gpu")) && json_is_number(v) && json_number_value(v) != 0) {
        dt_error(resp, 400, NULL, "gpu: GPUs are not supported by sbx's Daytona API (allowed: 0)");
        return -1;
    }
    if (json_is_true(json_object_get(body, "kvm"))) {
        dt_error(resp, 400, NULL, "kvm: /dev/kvm is not offered by sbx sandboxes");
        return -1;
    }
    if ((v = json_object_get(body, "autoPauseInterval")) && json_is_number(v) && json_number_value(v) != 0) {
        dt_error(resp, 400, NULL, "autoPauseInterval: pausing is not supported by sbx (use autoStopInterval)");
        return -1;
    }
    if ((v = json_object_get(body, "outboundProxyUrl")) && json_is_string(v) && *json_string_value(v)) {
        dt_error(resp, 400, NULL, "outboundProxyUrl: the sandbox network is loopback only");
        return -1;
    }
    return 0;
}

static void uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) { /* only without entropy */
        sbx_log(SBX_LOG_ERROR, "daytona: no random bytes");
        abort();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static bool name_taken_locked(const char *name)
{
    for (dt_sandbox *x = G.list; x; x = x->next)
        if (strcmp(x->name, name) == 0 || strcmp(x->id, name) == 0)
            return true;
    return false;
}

static void create(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    dt_sandbox *sb = NULL;
    sbx_sandbox_conf conf = {0};
    bool registered = false;
    json_t *env = json_object_get(body, "env"), *labels = json_object_get(body, "labels"), *v;
    const char *name = json_string_value(json_object_get(body, "name")),
               *snapshot = json_string_value(json_object_get(body, "snapshot")),
               *user = json_string_value(json_object_get(body, "user")),
               *target = json_string_value(json_object_get(body, "target"));
    long long cpu, mem, disk, auto_stop, auto_archive, auto_delete;
    char image[256] = "host", base[256] = "";
    static const char *const strings[] = {"name", "snapshot", "user", "target"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(strings); i++)
        if ((v = json_object_get(body, strings[i])) && !json_is_null(v) && !json_is_string(v)) {
            dt_error(resp, 400, NULL, "%s must be a string", strings[i]);
            goto out;
        }
    if (strmap(env, "env", true, resp) < 0 || strmap(labels, "labels", false, resp) < 0 ||
        refuse_unsupported(body, resp) < 0 ||
        whole(body, "cpu", DEFAULT_CPU, 1, MAX_CPU, "CPU cores", &cpu, resp) < 0 ||
        whole(body, "memory", DEFAULT_MEMORY_GIB, 1, MAX_MEMORY_GIB, "GiB", &mem, resp) < 0 ||
        whole(body, "disk", DEFAULT_DISK_GIB, 1, MAX_DISK_GIB, "GiB", &disk, resp) < 0 ||
        whole(body, "autoStopInterval", DEFAULT_AUTO_STOP_MIN, 0, MAX_INTERVAL_MIN, "minutes (0: never)", &auto_stop,
              resp) < 0 ||
        whole(body, "autoArchiveInterval", 0, 0, MAX_INTERVAL_MIN, "minutes", &auto_archive, resp) < 0 ||
        whole(body, "autoDeleteInterval", -1, -1, MAX_INTERVAL_MIN, "minutes (-1: never, 0: when stopped)",
              &auto_delete, resp) < 0)
        goto out;
    if (name && (!*name || !sbx_valid_name(name))) {
        dt_error(resp, 400, NULL, "name '%s' is invalid (allowed: 1-63 of [A-Za-z0-9_.-], not starting with '.')",
                 name);
        goto out;
    }
    if (user && strcmp(user, "root") != 0 && !valid_account(user)) {
        dt_error(resp, 400, NULL, "user '%s' is invalid (allowed: root, or a user name [a-z_][a-z0-9_-]{0,31})", user);
        goto out;
    }
    if ((v = json_object_get(body, "buildInfo")) && !json_is_null(v)) {
        if (snapshot && *snapshot) {
            dt_error(resp, 400, NULL, "give either snapshot or buildInfo (an image), not both");
            goto out;
        }
        if (dockerfile_image(v, image, sizeof(image), base, sizeof(base), resp) < 0)
            goto out;
    } else if (snapshot && *snapshot && map_image(snapshot, "snapshot", image, sizeof(image), resp) < 0) {
        goto out;
    }

    sb = calloc(1, sizeof(*sb));
    if (!sb) {
        dt_error(resp, 500, NULL, "out of memory");
        goto out;
    }
    uuid4(sb->id);
    snprintf(sb->name, sizeof(sb->name), "%s", name ? name : sb->id);
    snprintf(sb->account, sizeof(sb->account), "%s", user && strcmp(user, "root") != 0 ? user : DT_ACCOUNT);
    sb->as_root = user && strcmp(user, "root") == 0;
    sb->created_ms = sb->updated_ms = sb->activity_ms = sb->stopped_ms = now_ms();
    char created[40];
    sbx_rfc3339_ms(created, sb->created_ms);
    json_t *lab = json_is_object(labels) ? json_deep_copy(labels) : json_object();
    sb->info = json_pack("{s:s, s:o, s:o, s:b, s:s, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:b, s:s, s:{s:s}}", "user",
                         user ? user : DT_ACCOUNT, "env", json_is_object(env) ? json_deep_copy(env) : json_object(),
                         "labels", lab, "public", json_is_true(json_object_get(body, "public")), "target",
                         target && *target ? target : "local", "cpu", (json_int_t)cpu, "gpu", 0, "memory",
                         (json_int_t)mem, "disk", (json_int_t)disk, "autoStopInterval", (json_int_t)auto_stop,
                         "autoArchiveInterval", (json_int_t)auto_archive, "autoDeleteInterval", (json_int_t)auto_delete,
                         "networkBlockAll", true, "createdAt", created, "sbx", "image", image);
    if (!sb->info || strv_from_object(env, &sb->envs, &sb->n_envs) < 0) {
        dt_error(resp, 500, NULL, "out of memory");
        goto out;
    }
    json_object_set_new(sb->info, "name", json_string(sb->name));
    if (snapshot && *snapshot)
        json_object_set_new(sb->info, "snapshot", json_string(snapshot));
    if (base[0])
        json_object_set(sb->info, "buildInfo", json_object_get(body, "buildInfo"));

    pthread_mutex_lock(&G.lock);
    bool taken = name && name_taken_locked(name);
    pthread_mutex_unlock(&G.lock);
    if (taken) {
        dt_error(resp, 409, NULL, "a sandbox named '%s' already exists", name);
        goto out;
    }
    /* The registry row first, so the microsandbox API lists it as it runs. */
    sbx_err err = {0};
    if (save(sb, false, &err) < 0) {
        dt_error(resp, 500, NULL, "cannot register the sandbox: %s", err.msg);
        goto out;
    }
    registered = true;
    conf_of(sb, &conf);
    if (sbx_server_start_sandbox(srv, DT_NS, sb->id, &conf, &err) < 0) {
        if (err.code == SBX_E_NOTFOUND)
            dt_error(resp, 400, NULL, "%s '%s' is not available: %s", base[0] ? "image" : "snapshot",
                     base[0] ? base : snapshot, err.msg);
        else
            dt_error(resp, err.code == SBX_E_SYSTEM ? 500 : 400, NULL, "cannot start the sandbox: %s", err.msg);
        goto out;
    }
    pthread_mutex_lock(&G.lock);
    bool closing = G.closing;
    taken = name && name_taken_locked(name); /* a create racing with this one */
    if (!closing && !taken) {
        sb->was_live = true;
        sb->refs = 2; /* the table's and ours, until the reply is built */
        sb->next = G.list;
        G.list = sb;
    }
    pthread_mutex_unlock(&G.lock);
    if (closing || taken) {
        sbx_server_stop_sandbox(srv, DT_NS, sb->id);
        if (closing)
            dt_error(resp, 503, NULL, "the server is shutting down");
        else
            dt_error(resp, 409, NULL, "a sandbox named '%s' already exists", name);
        goto out;
    }
    registered = false;
    sbx_log(SBX_LOG_INFO, "daytona: sandbox %s created (name %s, image %s, %lld CPU, %lld GiB, %lld GiB disk)", sb->id,
            sb->name, image, cpu, mem, disk);
    reply_dto(sb, req, resp);
    dt_sandbox_put(sb);
    sb = NULL;
out:
    if (registered) {
        char layer[PATH_MAX];
        sbx_err e2 = {0};
        if (sbx_server_layer_dir(srv, DT_NS, sb->id, layer, sizeof(layer)) == 0)
            nftw(layer, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        sbx_reg_delete(srv->reg, DT_NS, sb->id, &e2);
    }
    if (sb)
        sandbox_free(sb);
    json_decref(body);
}

/* ---- GET /api/sandbox ----------------------------------------------------------------- */

static const char *const STATES[] = {
    "creating", "restoring", "destroyed", "destroying", "started", "stopped", "starting", "stopping",
    "error", "build_failed", "pending_build", "building_snapshot", "unknown", "pulling_snapshot", "archived",
    "archiving", "resizing", "snapshotting", "forking", "pausing", "paused", "resuming"};

struct listed {
    int64_t created;
    char id[40];
    json_t *j;
};

static int by_created_asc(const void *a, const void *b)
{
    const struct listed *x = a, *y = b;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int by_created_desc(const void *a, const void *b)
{
    return by_created_asc(b, a);
}

/* A numeric bound query argument; absent: ok with *set false. */
static int bound(const sbx_http_req *req, const char *name, double *out, bool *set, sbx_http_resp *resp)
{
    const char *s = sbx_http_query(req, name);
    *set = s && *s;
    if (!*set)
        return 0;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || *end || !isfinite(*out)) {
        dt_error(resp, 400, NULL, "%s must be a number (got '%s')", name, s);
        return -1;
    }
    return 0;
}

static void list(const sbx_http_req *req, sbx_http_resp *resp)
{
    const char *limit_s = sbx_http_query(req, "limit"), *cursor = sbx_http_query(req, "cursor"),
               *idp = sbx_http_query(req, "id"), *namep = sbx_http_query(req, "name"),
               *labels_s = sbx_http_query(req, "labels"), *sort = sbx_http_query(req, "sort"),
               *order = sbx_http_query(req, "order"), *states[LIST_MAX_STATES];
    size_t nstates = sbx_http_query_all(req, "states", states, LIST_MAX_STATES);
    if (nstates > LIST_MAX_STATES) {
        dt_error(resp, 400, NULL, "at most %d states may be given", LIST_MAX_STATES);
        return;
    }
    for (size_t i = 0; i < nstates; i++) {
        bool known = false;
        for (size_t k = 0; k < SBX_ARRAY_LEN(STATES) && !known; k++)
            known = strcmp(states[i], STATES[k]) == 0;
        if (!known) {
            dt_error(resp, 400, NULL, "states: unknown state '%s' (e.g. started, stopped, destroyed)", states[i]);
            return;
        }
    }
    uint64_t limit = LIST_DEFAULT_LIMIT;
    if (limit_s && *limit_s && sbx_parse_u64(limit_s, 1, LIST_MAX_LIMIT, &limit) < 0) {
        dt_error(resp, 400, NULL, "limit must be a whole number from 1 to %d (got '%s')", LIST_MAX_LIMIT, limit_s);
        return;
    }
    if (sort && *sort && strcmp(sort, "createdAt") != 0) {
        dt_error(resp, 400, NULL, "sort '%s' is not supported (allowed: createdAt)", sort);
        return;
    }
    bool asc = false; /* newest first */
    if (order && *order) {
        if (strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
            dt_error(resp, 400, NULL, "order must be asc or desc (got '%s')", order);
            return;
        }
        asc = strcmp(order, "asc") == 0;
    }
    json_t *want_labels = NULL;
    if (labels_s && *labels_s) {
        want_labels = json_loads(labels_s, 0, NULL);
        const char *k;
        json_t *lv;
        bool ok = json_is_object(want_labels);
        json_object_foreach(want_labels, k, lv) ok = ok && json_is_string(lv);
        if (!ok) {
            json_decref(want_labels);
            dt_error(resp, 400, NULL, "labels must be a JSON object of strings, e.g. {\"env\":\"dev\"}");
            return;
        }
    }
    static const struct { const char *q, *field; bool min; } ranges[] = {
        {"minCpu", "cpu", true},         {"maxCpu", "cpu", false},          {"minMemoryGiB", "memory", true},
        {"maxMemoryGiB", "memory", false}, {"minDiskGiB", "disk", true}, {"maxDiskGiB", "disk", false}};
    double lim[SBX_ARRAY_LEN(ranges)];
    bool has[SBX_ARRAY_LEN(ranges)];
    for (size_t i = 0; i < SBX_ARRAY_LEN(ranges); i++)
        if (bound(req, ranges[i].q, &lim[i], &has[i], resp) < 0) {
            json_decref(want_labels);
            return;
        }
    /* cursor: "<createdAt ms>_<id>" of the last item served. */
    struct listed cur = {0};
    bool have_cursor = false;
    if (cursor && *cursor) {
        const char *us = strchr(cursor, '_');
        char num[24];
        uint64_t ms;
        size_t nl = us ? (size_t)(us - cursor) : 0;
        if (!us || nl == 0 || nl >= sizeof(num) || strlen(us + 1) >= sizeof(cur.id) ||
            (memcpy(num, cursor, nl), num[nl] = '\0', sbx_parse_u64(num, 0, INT64_MAX, &ms) < 0)) {
            json_decref(want_labels);
            dt_error(resp, 400, NULL, "invalid cursor '%s' (pass back a nextCursor)", cursor);
            return;
        }
        cur.created = (int64_t)ms;
        snprintf(cur.id, sizeof(cur.id), "%s", us + 1);
        have_cursor = true;
    }

    char proxy[320];
    proxy_url(req, proxy, sizeof(proxy));
    size_t n = 0, cap = 0;
    struct listed *items = NULL;
    pthread_mutex_lock(&G.lock);
    for (dt_sandbox *sb = G.list; sb; sb = sb->next) {
        if ((idp && *idp && strncmp(sb->id, idp, strlen(idp)) != 0) ||
            (namep && *namep && strncmp(sb->name, namep, strlen(namep)) != 0))
            continue;
        bool match = true;
        const char *k;
        json_t *lv;
        json_t *have_labels = json_object_get(sb->info, "labels");
        json_object_foreach(want_labels, k, lv) {
            const char *hv = json_string_value(json_object_get(have_labels, k));
            match = match && hv && strcmp(hv, json_string_value(lv)) == 0;
        }
        for (size_t i = 0; match && i < SBX_ARRAY_LEN(ranges); i++) {
            double val = (double)json_integer_value(json_object_get(sb->info, ranges[i].field));
            if (has[i])
                match = ranges[i].min ? val >= lim[i] : val <= lim[i];
        }
        if (match && nstates) {
            const char *st = state_locked(sb);
            bool any = false;
            for (size_t i = 0; i < nstates && !any; i++)
                any = strcmp(st, states[i]) == 0;
            match = any;
        }
        if (!match)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct listed *ni = realloc(items, nc * sizeof(*items));
            if (!ni)
                break;
            items = ni;
            cap = nc;
        }
        items[n].created = sb->created_ms;
        snprintf(items[n].id, sizeof(items[n].id), "%s", sb->id);
        items[n].j = dto_locked(sb, proxy);
        n++;
    }
    pthread_mutex_unlock(&G.lock);
    json_decref(want_labels);

    int (*cmp)(const void *, const void *) = asc ? by_created_asc : by_created_desc;
    if (n > 1)
        qsort(items, n, sizeof(*items), cmp);
    json_t *arr = json_array();
    size_t i = 0, served = 0, last = SIZE_MAX;
    if (have_cursor)
        while (i < n && cmp(&items[i], &cur) <= 0)
            i++;
    for (; i < n && served < limit; i++, served++) {
        if (items[i].j)
            json_array_append(arr, items[i].j);
        last = i;
    }
    json_t *next = json_null();
    if (i < n && last != SIZE_MAX) {
        char nc[80];
        snprintf(nc, sizeof(nc), "%lld_%s", (long long)items[last].created, items[last].id);
        next = json_string(nc);
    }
    for (size_t k = 0; k < n; k++)
        json_decref(items[k].j);
    free(items);
    sbx_resp_json(resp, 200, json_pack("{s:o, s:o, s:I}", "items", arr, "nextCursor", next, "total", (json_int_t)n));
}

/* ---- one sandbox ---------------------------------------------------------------------- */

static void not_found(sbx_http_resp *resp, const char *id)
{
    dt_error(resp, 404, NULL, "Sandbox with ID or name %s not found", id);
}

static void delete_one(dt_sandbox *sb, const sbx_http_req *req, sbx_http_resp *resp)
{
    pthread_mutex_lock(&G.lock);
    bool mine = claim_locked(sb);
    if (mine)
        sb->refs++; /* for the reply, after finish_delete drops the table's */
    pthread_mutex_unlock(&G.lock);
    if (!mine) {
        not_found(resp, sb->id);
        return;
    }
    finish_delete(sb, "deleted by request");
    reply_dto(sb, req, resp); /* state "destroyed": a wait is over at once */
    dt_sandbox_put(sb);
}

/* Stops sb (waiting for calls in flight); with autoDeleteInterval 0 it is
 * deleted too (Daytona's ephemeral sandboxes). marked: the caller already
 * set its transition to "stopping". */
static void stop_one(dt_sandbox *sb, const char *why, bool marked)
{
    if (!marked) {
        pthread_mutex_lock(&G.lock);
        bool busy = sb->transition != NULL || sb->dead;
        if (!busy)
            sb->transition = "stopping";
        pthread_mutex_unlock(&G.lock);
        if (busy)
            return;
    }
    bool was = sbx_server_stop_sandbox(G.srv, DT_NS, sb->id) == 1;
    pthread_mutex_lock(&G.lock);
    sb->transition = NULL;
    sb->was_live = false;
    sb->stopped_ms = sb->updated_ms = now_ms();
    bool ephemeral = interval_of(sb, "autoDeleteInterval") == 0 && claim_locked(sb);
    pthread_mutex_unlock(&G.lock);
    if (was)
        sbx_log(SBX_LOG_INFO, "daytona: sandbox %s stopped (%s)", sb->id, why);
    if (ephemeral)
        finish_delete(sb, "autoDeleteInterval 0: deleted when stopped");
}

static void start_one(sbx_server *srv, dt_sandbox *sb, const sbx_http_req *req, sbx_http_resp *resp)
{
    pthread_mutex_lock(&G.lock);
    const char *busy = sb->dead ? "destroyed" : sb->transition;
    if (!busy)
        sb->transition = "starting";
    pthread_mutex_unlock(&G.lock);
    if (busy) {
        dt_error(resp, 409, NULL, "sandbox %s is %s", sb->id, busy);
        return;
    }
    sbx_sandbox_conf conf;
    conf_of(sb, &conf);
    sbx_err err = {0};
    int r = sbx_server_start_sandbox(srv, DT_NS, sb->id, &conf, &err);
    pthread_mutex_lock(&G.lock);
    sb->transition = NULL;
    if (r == 0) {
        sb->was_live = true;
        sb->updated_ms = sb->activity_ms = now_ms();
    }
    pthread_mutex_unlock(&G.lock);
    if (r < 0) {
        dt_error(resp, err.code == SBX_E_SYSTEM ? 500 : 400, NULL, "cannot start sandbox %s: %s", sb->id, err.msg);
        return;
    }
    if (r == 0)
        sbx_log(SBX_LOG_INFO, "daytona: sandbox %s started", sb->id);
    reply_dto(sb, req, resp);
}

/* Replaces a field of info and saves the row. */
static void update(dt_sandbox *sb, const char *field, json_t *value, sbx_http_resp *resp)
{
    pthread_mutex_lock(&G.lock);
    json_object_set_new(sb->info, field, value);
    sb->updated_ms = now_ms();
    pthread_cond_broadcast(&G.cond); /* a shorter interval: the reaper looks now */
    pthread_mutex_unlock(&G.lock);
    sbx_err err = {0};
    if (save(sb, is_live(sb->id), &err) < 0)
        dt_error(resp, 500, NULL, "cannot save the sandbox: %s", err.msg);
}

static void set_labels(dt_sandbox *sb, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    json_t *labels = json_object_get(body, "labels");
    if (!json_is_object(labels))
        dt_error(resp, 400, NULL, "labels is required: an object of strings");
    else if (strmap(labels, "labels", false, resp) == 0) {
        update(sb, "labels", json_deep_copy(labels), resp);
        if (!resp->status)
            sbx_resp_json(resp, 200, json_pack("{s:O}", "labels", labels));
    }
    json_decref(body);
}

static void set_interval(dt_sandbox *sb, const char *field, const char *arg, long long min, sbx_http_resp *resp)
{
    char *end;
    errno = 0;
    long long m = strtoll(arg, &end, 10);
    if (errno || !*arg || *end || m < min || m > MAX_INTERVAL_MIN) {
        dt_error(resp, 400, NULL, "%s must be a whole number of minutes from %lld to %d (got '%s')", field, min,
                 MAX_INTERVAL_MIN, arg);
        return;
    }
    update(sb, field, json_integer(m), resp);
    if (!resp->status)
        resp->status = 200;
}

static void toolbox_url(const sbx_http_req *req, sbx_http_resp *resp)
{
    char proxy[320];
    proxy_url(req, proxy, sizeof(proxy));
    sbx_resp_json(resp, 200, json_pack("{s:s}", "url", proxy));
}

/* ---- routing -------------------------------------------------------------------------- */

static void sandbox_routes(sbx_server *srv, const sbx_http_req *req, const char *rest, sbx_http_resp *resp)
{
    const char *m = req->method;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    if (!*rest || strcmp(rest, "/") == 0) {
        if (post)
            create(srv, req, resp);
        else if (get)
            list(req, resp);
        else
            dt_error(resp, 405, NULL, "method %s not allowed on /api/sandbox (allowed: GET, POST)", m);
        return;
    }
    rest++; /* '/' */
    char id[64];
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= sizeof(id)) {
        not_found(resp, n ? "(too long)" : "(empty)");
        return;
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    const char *action = rest + n;
    if (*action == '/')
        action++;
    char verb[32], arg[64] = "";
    size_t vn = strcspn(action, "/");
    if (vn >= sizeof(verb) || (action[vn] == '/' && strlen(action + vn + 1) >= sizeof(arg)) ||
        (action[vn] == '/' && strchr(action + vn + 1, '/'))) {
        dt_error(resp, 404, NULL, "no such route: %s %s", m, req->path);
        return;
    }
    memcpy(verb, action, vn);
    verb[vn] = '\0';
    bool has_arg = action[vn] == '/';
    if (has_arg)
        snprintf(arg, sizeof(arg), "%s", action + vn + 1);
    dt_sandbox *sb = dt_sandbox_get(id);
    if (!sb) {
        not_found(resp, id);
        return;
    }
    if (!*verb && !has_arg) {
        if (get)
            reply_dto(sb, req, resp);
        else if (strcmp(m, "DELETE") == 0)
            delete_one(sb, req, resp);
        else
            dt_error(resp, 405, NULL, "method %s not allowed here (allowed: GET, DELETE)", m);
    } else if (strcmp(verb, "start") == 0 && post && !has_arg) {
        start_one(srv, sb, req, resp);
    } else if (strcmp(verb, "stop") == 0 && post && !has_arg) {
        stop_one(sb, "stopped by request", false);
        reply_dto(sb, req, resp);
    } else if (strcmp(verb, "toolbox-proxy-url") == 0 && get && !has_arg) {
        toolbox_url(req, resp);
    } else if (strcmp(verb, "labels") == 0 && strcmp(m, "PUT") == 0 && !has_arg) {
        set_labels(sb, req, resp);
    } else if (strcmp(verb, "autostop") == 0 && post && has_arg) {
        set_interval(sb, "autoStopInterval", arg, 0, resp);
    } else if (strcmp(verb, "autodelete") == 0 && post && has_arg) {
        set_interval(sb, "autoDeleteInterval", arg, -1, resp);
    } else if (strcmp(verb, "autoarchive") == 0 && post && has_arg) {
        set_interval(sb, "autoArchiveInterval", arg, 0, resp);
    } else if (strcmp(verb, "last-activity") == 0 && post && !has_arg) {
        dt_sandbox_busy(sb, 0);
        resp->status = 200;
    } else {
        static const char *const unsupported[] = {
            "archive", "backup", "snapshot", "fork", "forks", "pause", "recover", "resize", "public", "ttl",
            "autopause", "network-settings", "secrets", "ssh-access", "ports", "build-logs", "build-logs-url",
            "signing-key", "telemetry", "region-quota", "organization", "ancestors", "parent", "state", "env"};
        bool known = false;
        for (size_t i = 0; i < SBX_ARRAY_LEN(unsupported) && !known; i++)
            known = strcmp(verb, unsupported[i]) == 0;
        if (known)
            dt_error(resp, 501, NULL, "%s is not supported by sbx's Daytona API", verb);
        else
            dt_error(resp, 404, NULL, "no such route: %s %s", m, req->path);
    }
    dt_sandbox_put(sb);
}

static void toolbox(sbx_server *srv, const char *rest, const sbx_http_req *req, sbx_http_resp *resp)
{
    char id[64];
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= sizeof(id)) {
        not_found(resp, n ? "(too long)" : "(empty)");
        return;
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    const char *path = rest + n;
    dt_sandbox *sb = dt_sandbox_get(id);
    if (!sb) {
        not_found(resp, id);
        return;
    }
    dt_call c = {.srv = srv, .sb = sb, .live = sbx_server_acquire(srv, DT_NS, sb->id),
                 .user = sb->as_root ? "root" : NULL};
    snprintf(c.home, sizeof(c.home), "%s%s", sb->as_root ? "/root" : "/home/", sb->as_root ? "" : sb->account);
    if (!c.live || !dt_sandbox_busy(sb, +1)) {
        pthread_mutex_lock(&G.lock);
        const char *st = state_locked(sb);
        pthread_mutex_unlock(&G.lock);
        dt_error(resp, 409, NULL, "sandbox %s is %s: start it first (POST /api/sandbox/%s/start)", sb->id, st, sb->id);
    } else {
        dt_toolbox_handle(&c, *path ? path : "/", req, resp);
        dt_sandbox_busy(sb, -1);
    }
    if (c.live)
        sbx_server_release(srv, c.live);
    dt_sandbox_put(sb);
}

bool sbx_daytona_route(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp)
{
    const char *p = req->path;
    enum { API, SOCKET, TOOLBOX } kind;
    char legacy[PATH_MAX];
    const char *tb = NULL;
    if (strncmp(p, "/api/sandbox", 12) == 0 && (p[12] == '\0' || p[12] == '/')) {
        kind = API;
    } else if (strncmp(p, "/api/socket.io", 14) == 0 && (p[14] == '\0' || p[14] == '/')) {
        kind = SOCKET;
    } else if (strncmp(p, "/toolbox/", 9) == 0) {
        kind = TOOLBOX;
        tb = p + 9;
    } else if (strncmp(p, "/api/toolbox/", 13) == 0) {
        /* Old SDKs: <apiUrl>/toolbox/{id}/toolbox/<route>. */
        size_t n = strcspn(p + 13, "/");
        if (strncmp(p + 13 + n, "/toolbox", 8) != 0 || (p[21 + n] != '\0' && p[21 + n] != '/') ||
            snprintf(legacy, sizeof(legacy), "%.*s%s", (int)n, p + 13, p + 21 + n) >= (int)sizeof(legacy))
            return false;
        kind = TOOLBOX;
        tb = legacy;
    } else {
        return false;
    }
    pthread_mutex_lock(&G.lock);
    bool serving = G.srv == srv && !G.closing;
    pthread_mutex_unlock(&G.lock);
    if (!serving) {
        dt_error(resp, 503, NULL, "the server is shutting down");
        return true;
    }
    if (strcmp(req->method, "OPTIONS") == 0) {
        resp->status = 204; /* CORS preflight, no auth */
        return true;
    }
    if (kind == SOCKET) /* authenticated in its connect packet */
        dt_socket_serve(srv, req, resp);
    else if (check_auth(srv, req, resp)) {
        if (kind == API)
            sandbox_routes(srv, req, p + 12, resp);
        else
            toolbox(srv, tb, req, resp);
    }
    return true;
}
