/* The `daytona` step backend: a step's sandbox on Daytona (or on any
 * server that speaks Daytona's API, such as sbx's own front door),
 * configured as Daytona's SDKs are: DAYTONA_API_KEY (or DAYTONA_JWT_TOKEN
 * with DAYTONA_ORGANIZATION_ID), DAYTONA_API_URL (default
 * https://app.daytona.io/api; DAYTONA_SERVER_URL is its old name),
 * DAYTONA_TARGET. Contract: shared/protocols/daytona.md.
 *
 * The control plane creates and deletes the sandbox; its toolbox (at the
 * toolboxProxyUrl the sandbox reports, plus /<id>) runs commands
 * (/process/execute, which answers only when the command ends, with
 * stdout and stderr merged) and moves files (/files/bulk-upload,
 * /files/bulk-download, /files/permissions). To keep stdout and stderr
 * apart as every backend does, a command's streams go to two files in the
 * sandbox's /tmp that are fetched in one bulk-download after it ends.
 * Daytona sizes sandboxes in whole vCPUs and whole GiB: other values are
 * refused, not rounded. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../proto/multipart.h"
#include "backend.h"
#include "daytona_command.h"
#include "remote_http.h"
#include "util.h"

#define WHO "daytona"
#define DEFAULT_API_URL "https://app.daytona.io/api"
/* How long a sandbox may take to reach "started" (an image build included). */
#define START_WAIT_MS (600u * 1000u)
/* The sandbox stops itself after this many idle minutes beyond the step's
 * timeout (a long command is one request: no activity meanwhile), so one
 * we fail to delete does not run for ever. */
#define AUTOSTOP_MARGIN_MIN 15
#define AUTOSTOP_NO_TIMEOUT_MIN 60
/* After the step's timeout, how long the toolbox gets to answer 408. */
#define ANSWER_GRACE_MS 60000
/* What "no timeout" is sent as (seconds): a day, the most sbx's front door takes. */
#define NO_TIMEOUT_S 86400u
#define IDLE_S 120
#define OUT_DIR "/tmp"
#define KEY_HINT "check DAYTONA_API_KEY (a Daytona API key; sbx's front door takes any key with --dev)"

typedef struct dt_conf {
    char api_url[512];
    char auth[1100];  /* "Authorization: Bearer ..." */
    char org[300];    /* "X-Daytona-Organization-ID: ...", or "" */
    char target[128]; /* DAYTONA_TARGET, or "" */
} dt_conf;

struct sbx_step_box {
    remote_http *api;
    remote_http *tb;
    dt_conf conf;
    char id[128];
    char toolbox[1200]; /* <toolboxProxyUrl>/<id> */
    uint64_t memory_mb;
    atomic_uint seq;    /* names each command's output files */
    char stopped[32];   /* attach: the state of a sandbox that is not started, or "" */
};

static bool one_line(const char *s, size_t max)
{
    return strlen(s) <= max && !strpbrk(s, "\r\n");
}

static int load_conf(dt_conf *c, int *fail, sbx_err *err)
{
    memset(c, 0, sizeof(*c));
    const char *key = getenv("DAYTONA_API_KEY"), *jwt = getenv("DAYTONA_JWT_TOKEN"),
               *org = getenv("DAYTONA_ORGANIZATION_ID"), *url = getenv("DAYTONA_API_URL"),
               *target = getenv("DAYTONA_TARGET");
    const char *url_var = "DAYTONA_API_URL";
    if (!url || !*url) {
        url = getenv("DAYTONA_SERVER_URL"); /* its deprecated name */
        url_var = "DAYTONA_SERVER_URL";
    }
    if (key && *key) {
        if (!one_line(key, 1000))
            return sbx_step_refuse(fail, err, "daytona: DAYTONA_API_KEY must be one line of at most 1000 characters");
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", key);
    } else if (jwt && *jwt) {
        if (!org || !*org)
            return sbx_step_refuse(fail, err,
                          "daytona: DAYTONA_JWT_TOKEN needs DAYTONA_ORGANIZATION_ID too (or set DAYTONA_API_KEY)");
        if (!one_line(jwt, 1000) || !one_line(org, 200))
            return sbx_step_refuse(fail, err, "daytona: DAYTONA_JWT_TOKEN and DAYTONA_ORGANIZATION_ID must be single lines");
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", jwt);
        snprintf(c->org, sizeof(c->org), "X-Daytona-Organization-ID: %s", org);
    } else {
        return sbx_step_refuse(fail, err,
                      "daytona: DAYTONA_API_KEY is not set: the daytona backend needs a Daytona API key (from the "
                      "Daytona dashboard; sbx's own Daytona front door takes any non-empty key with --dev)");
    }
    if (target && *target) {
        if (strlen(target) >= sizeof(c->target) || strpbrk(target, "\"\\\r\n"))
            return sbx_step_refuse(fail, err, "daytona: DAYTONA_TARGET '%.60s' is not a region name (e.g. us, eu)", target);
        snprintf(c->target, sizeof(c->target), "%s", target);
    }
    if (remote_http_base_url(url && *url ? url_var : "DAYTONA_API_URL", url && *url ? url : DEFAULT_API_URL,
                             c->api_url, sizeof(c->api_url), err) < 0) {
        char m[sizeof(err->msg)];
        snprintf(m, sizeof(m), "daytona: %.400s (it includes the /api prefix, e.g. https://app.daytona.io/api)",
                 err->msg);
        memcpy(err->msg, m, sizeof(m));
        *fail = SBX_STEP_REFUSED;
        return -1;
    }
    return 0;
}

/* gpu "N" -> N; "all" and index lists have no Daytona field. */
static int gpu_count(const char *gpu, long *n, int *fail, sbx_err *err)
{
    *n = 0;
    if (!gpu || !*gpu)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(gpu, &end, 10);
    if (*end || errno || v < 0 || v > 64 || gpu[0] == '-' || gpu[0] == '+')
        return sbx_step_refuse(fail, err,
                      "daytona: gpu '%s' cannot be honoured: Daytona takes a number of GPUs, not 'all' or device "
                      "indices (allowed: a count such as 1)",
                      gpu);
    *n = v;
    return 0;
}

static int dt_check(const sbx_step_resources *res, int *fail, sbx_err *err)
{
    dt_conf c;
    if (load_conf(&c, fail, err) < 0)
        return -1;
    if (!(res->cpu >= 1) || res->cpu != floor(res->cpu) || res->cpu > 1024)
        return sbx_step_refuse(fail, err,
                      "daytona: cpu %g cannot be honoured: Daytona allocates whole vCPUs (allowed: 1, 2, 3, ...)",
                      res->cpu);
    if (res->memory_mb == 0 || res->memory_mb % 1024 != 0)
        return sbx_step_refuse(fail, err,
                      "daytona: memory %llu MiB cannot be honoured: Daytona sizes memory in whole GiB (allowed: "
                      "multiples of 1024 MiB, e.g. 1024, 2048, 4096)",
                      (unsigned long long)res->memory_mb);
    long g;
    if (gpu_count(res->gpu, &g, fail, err) < 0)
        return -1;
    if (res->image && (!*res->image || strlen(res->image) > 255 || strpbrk(res->image, " \t\r\n\"\\")))
        return sbx_step_refuse(fail, err, "daytona: image '%s' is not an image reference (e.g. python:3.12-slim)", res->image);
    json_t *e = remote_http_env_object("daytona", res->env, fail, err);
    if (!e)
        return -1;
    json_decref(e);
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

/* A JSON call; url is the full URL. must_finish: creating or deleting a
 * sandbox, which runs through a first interrupt (backend.h). */
static int call_x(remote_http *h, const dt_conf *c, const char *method, const char *url, json_t *body,
                  uint64_t timeout_ms, bool must_finish, remote_http_resp *r)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    const char *hdrs[5] = {c->auth, "Accept: application/json"};
    size_t n = 2;
    if (c->org[0])
        hdrs[n++] = c->org;
    if (body)
        hdrs[n++] = "Content-Type: application/json";
    hdrs[n] = NULL;
    remote_http_req rq = {.method = method, .url = url, .headers = hdrs, .body = text,
                          .body_len = text ? strlen(text) : 0, .timeout_ms = timeout_ms, .must_finish = must_finish};
    int rc = remote_http_do(h, &rq, r);
    free(text);
    return rc;
}

static int call(remote_http *h, const dt_conf *c, const char *method, const char *url, json_t *body,
                uint64_t timeout_ms, remote_http_resp *r)
{
    return call_x(h, c, method, url, body, timeout_ms, false, r);
}

static void api_url(const sbx_step_box *b, char *out, size_t len, const char *suffix)
{
    char *id = remote_http_escape(b->id);
    snprintf(out, len, "%s/sandbox/%s%s", b->conf.api_url, id ? id : b->id, suffix);
    free(id);
}

/* ---- create / destroy ------------------------------------------------------ */

static void box_free(sbx_step_box *b)
{
    if (!b)
        return;
    remote_http_free(b->api);
    remote_http_free(b->tb);
    free(b);
}

static void delete_sandbox(sbx_step_box *b)
{
    char url[1000];
    api_url(b, url, sizeof(url), "");
    remote_http_resp r;
    call_x(b->api, &b->conf, "DELETE", url, NULL, 60000, true, &r);
    remote_http_resp_free(&r);
}

/* Polls the sandbox until it is started (the create reply may say
 * creating, or an image may be building). 0, or -1 with err. */
static int wait_started(sbx_step_box *b, json_t **dto, int *fail, sbx_err *err)
{
    uint64_t deadline = (sbx_now_usec() / 1000) + START_WAIT_MS;
    unsigned pause = 100;
    for (;;) {
        const char *st = json_string_value(json_object_get(*dto, "state"));
        const char *why = json_string_value(json_object_get(*dto, "errorReason"));
        if (st && strcmp(st, "started") == 0)
            return 0;
        if (st && strcmp(st, "build_failed") == 0)
            return sbx_step_refuse(fail, err, "daytona: sandbox %s failed to build its image: %s", b->id,
                          why ? why : "no reason given");
        if (st && (strcmp(st, "error") == 0 || strcmp(st, "destroyed") == 0 || strcmp(st, "destroying") == 0))
            return sbx_step_infra(fail, err, "daytona: sandbox %s did not start: state %s%s%s", b->id, st, why ? ": " : "",
                         why ? why : "");
        if ((sbx_now_usec() / 1000) >= deadline)
            return sbx_step_infra(fail, err, "daytona: sandbox %s did not start within %u s (state %s)", b->id,
                         START_WAIT_MS / 1000u, st ? st : "unknown");
        if (!sbx_step_sleep_ms(pause))
            return sbx_step_infra(fail, err, "daytona: interrupted while sandbox %s was starting", b->id);
        pause = pause * 2 > 1000 ? 1000 : pause * 2;
        char url[1000];
        api_url(b, url, sizeof(url), "");
        remote_http_resp r;
        if (call(b->api, &b->conf, "GET", url, NULL, 60000, &r) < 0 || r.status != 200) {
            if (r.status == 404)
                sbx_step_infra(fail, err, "daytona: sandbox %s vanished while starting", b->id);
            else
                remote_http_fail(WHO, "read the new sandbox's state", &r, KEY_HINT, fail, err);
            remote_http_resp_free(&r);
            return -1;
        }
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        remote_http_resp_free(&r);
        if (!json_is_object(j)) {
            json_decref(j);
            return sbx_step_infra(fail, err, "daytona: the sandbox reply is not a JSON object");
        }
        json_decref(*dto);
        *dto = j;
    }
}

/* The toolbox base: the sandbox's toolboxProxyUrl (or, for servers that
 * leave it out, GET /sandbox/{id}/toolbox-proxy-url) plus the id. */
static int toolbox_url(sbx_step_box *b, json_t *dto, int *fail, sbx_err *err)
{
    const char *proxy = json_string_value(json_object_get(dto, "toolboxProxyUrl"));
    json_t *j = NULL;
    if (!proxy || !*proxy) {
        char url[1000];
        api_url(b, url, sizeof(url), "/toolbox-proxy-url");
        remote_http_resp r;
        if (call(b->api, &b->conf, "GET", url, NULL, 60000, &r) < 0 || r.status != 200) {
            remote_http_fail(WHO, "find the sandbox's toolbox (toolbox-proxy-url)", &r, KEY_HINT, fail, err);
            remote_http_resp_free(&r);
            return -1;
        }
        j = json_loadb(r.body, r.len, 0, NULL);
        remote_http_resp_free(&r);
        proxy = json_string_value(json_object_get(j, "url"));
    }
    char base[1000];
    sbx_err e2;
    if (!proxy || remote_http_base_url("toolboxProxyUrl", proxy, base, sizeof(base), &e2) < 0) {
        json_decref(j);
        return sbx_step_infra(fail, err, "daytona: sandbox %s reports no usable toolbox URL", b->id);
    }
    char *id = remote_http_escape(b->id);
    snprintf(b->toolbox, sizeof(b->toolbox), "%s/%s", base, id ? id : b->id);
    free(id);
    json_decref(j);
    return 0;
}

static int dt_create(const sbx_step_resources *res, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    if (dt_check(res, fail, err) < 0)
        return -1;
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b || !(b->api = remote_http_new()) || !(b->tb = remote_http_new())) {
        box_free(b);
        return sbx_step_infra(fail, err, "daytona: out of memory");
    }
    load_conf(&b->conf, fail, err);
    b->memory_mb = res->memory_mb;
    long gpus;
    gpu_count(res->gpu, &gpus, fail, err);
    json_t *env = remote_http_env_object("daytona", res->env, fail, err);
    if (!env) {
        box_free(b);
        return -1;
    }
    uint64_t stop_min = res->timeout_s ? (res->timeout_s + 59) / 60 + AUTOSTOP_MARGIN_MIN : AUTOSTOP_NO_TIMEOUT_MIN;
    json_t *body = json_pack("{s:o, s:{s:s}, s:I, s:I, s:I}", "env", env, "labels", "created-by", "sbx-step", "cpu",
                             (json_int_t)res->cpu, "memory", (json_int_t)(res->memory_mb / 1024), "autoStopInterval",
                             (json_int_t)stop_min);
    if (body && gpus)
        json_object_set_new(body, "gpu", json_integer(gpus));
    if (body && b->conf.target[0])
        json_object_set_new(body, "target", json_string(b->conf.target));
    if (body && res->image) {
        /* As the SDKs send an image: a one-line Dockerfile Daytona builds (and caches). */
        char df[300];
        snprintf(df, sizeof(df), "FROM %s\n", res->image);
        json_object_set_new(body, "buildInfo", json_pack("{s:s}", "dockerfileContent", df));
    }
    if (!body) {
        box_free(b);
        return sbx_step_infra(fail, err, "daytona: out of memory");
    }
    char url[700];
    snprintf(url, sizeof(url), "%s/sandbox", b->conf.api_url);
    remote_http_resp r;
    int rc = call_x(b->api, &b->conf, "POST", url, body, 120000, true, &r);
    json_decref(body);
    if (rc < 0 || r.status / 100 != 2) {
        char what[400];
        snprintf(what, sizeof(what), "create a sandbox (cpu %g, memory %llu GiB%s%s)", res->cpu,
                 (unsigned long long)(res->memory_mb / 1024), res->image ? ", image " : "",
                 res->image ? res->image : "");
        remote_http_fail(WHO, what, &r, KEY_HINT, fail, err);
        remote_http_resp_free(&r);
        box_free(b);
        return -1;
    }
    json_t *dto = json_loadb(r.body, r.len, 0, NULL);
    remote_http_resp_free(&r);
    const char *id = json_string_value(json_object_get(dto, "id"));
    if (!id || !*id || strlen(id) >= sizeof(b->id)) {
        json_decref(dto);
        box_free(b);
        return sbx_step_infra(fail, err, "daytona: the create reply has no usable sandbox id");
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    if (wait_started(b, &dto, fail, err) < 0 || toolbox_url(b, dto, fail, err) < 0) {
        json_decref(dto);
        delete_sandbox(b);
        box_free(b);
        return -1;
    }
    json_decref(dto);
    *out = b;
    return 0;
}

static const char *dt_id(const sbx_step_box *b)
{
    return b->id;
}

static int dt_destroy(sbx_step_box *b, bool keep, sbx_err *err)
{
    int rc = 0;
    if (!keep) {
        char url[1000];
        api_url(b, url, sizeof(url), "");
        remote_http_resp r;
        /* 404: already gone, which is the goal. */
        if (call_x(b->api, &b->conf, "DELETE", url, NULL, 60000, true, &r) < 0 || (r.status / 100 != 2 && r.status != 404)) {
            int fail;
            remote_http_fail(WHO, "delete the sandbox", &r, KEY_HINT, &fail, err);
            rc = -1;
        }
        remote_http_resp_free(&r);
    }
    box_free(b);
    return rc;
}

static void dt_shell_hint(const sbx_step_box *b, char *buf, size_t len)
{
    snprintf(buf, len,
             "sbx exec %s -- sh -c 'CMD'   (with this run's DAYTONA_* variables; commands only, no stdin; remove "
             "it: sbx rm %s; a terminal: daytona ssh %s, Daytona's CLI)",
             b->id, b->id, b->id);
}

/* A kept sandbox, by id, as the SDKs' daytona.get(id): GET /sandbox/{id}
 * for its state and toolbox URL. One that Daytona stopped (its
 * autoStopInterval) can be removed; commands need it started first. */
static int dt_attach(const char *id, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    if (!*id || strlen(id) >= sizeof(((sbx_step_box *)0)->id) || strpbrk(id, "/?#%\r\n "))
        return sbx_step_refuse(fail, err, "daytona: '%.80s' is not a Daytona sandbox id", id);
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b || !(b->api = remote_http_new()) || !(b->tb = remote_http_new())) {
        box_free(b);
        return sbx_step_infra(fail, err, "daytona: out of memory");
    }
    if (load_conf(&b->conf, fail, err) < 0) {
        box_free(b);
        return -1;
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    char url[1000];
    api_url(b, url, sizeof(url), "");
    remote_http_resp r;
    json_t *dto = NULL;
    if (call(b->api, &b->conf, "GET", url, NULL, 60000, &r) < 0 || r.status != 200) {
        if (r.status == 404) {
            sbx_step_refuse(fail, err, "daytona: there is no sandbox %s at %s", id, b->conf.api_url);
            err->code = SBX_E_NOTFOUND;
        } else {
            remote_http_fail(WHO, "find the sandbox (GET /sandbox/{id})", &r, KEY_HINT, fail, err);
        }
    } else {
        dto = json_loadb(r.body, r.len, 0, NULL); /* (json_is_object evaluates its argument twice) */
        if (!json_is_object(dto))
            sbx_step_infra(fail, err, "daytona: the sandbox reply is not a JSON object");
    }
    remote_http_resp_free(&r);
    const char *st = json_string_value(json_object_get(dto, "state"));
    json_t *mem = json_object_get(dto, "memory");
    if (json_is_integer(mem) && json_integer_value(mem) > 0)
        b->memory_mb = (uint64_t)json_integer_value(mem) * 1024;
    if (st && strcmp(st, "started") != 0)
        snprintf(b->stopped, sizeof(b->stopped), "%.31s", st);
    if (!json_is_object(dto) || (!b->stopped[0] && toolbox_url(b, dto, fail, err) < 0)) {
        json_decref(dto);
        box_free(b);
        return -1;
    }
    json_decref(dto);
    *out = b;
    return 0;
}

/* ---- files -------------------------------------------------------------------- */

/* A reply body spooled to an unlinked temporary file (a download can be
 * large), or collected when the status is not 200. */
typedef struct spool {
    FILE *f;
    int err_no;
    char errbody[4096];
    size_t errlen;
} spool;

static bool on_spool(void *ud, long status, const char *data, size_t len)
{
    spool *s = ud;
    if (status != 200) {
        remote_http_keep_error(s->errbody, sizeof(s->errbody), &s->errlen, data, len);
        return true;
    }
    if (!s->f && !(s->f = tmpfile())) {
        s->err_no = errno;
        return false;
    }
    if (fwrite(data, 1, len, s->f) != len) {
        s->err_no = errno ? errno : EIO;
        return false;
    }
    return true;
}

/* One requested path's outcome in a bulk-download reply. */
typedef struct dl_item {
    const char *path;
    const char *data; /* into the mapping; NULL if no file part */
    size_t len;
    bool found;       /* a "file" part came */
    int status;       /* an "error" part's statusCode; 0 none */
    char message[300];
} dl_item;

typedef struct dl_reply {
    sbx_mpart *parts;
    size_t n;
    void *map;
    size_t map_len;
} dl_reply;

static void dl_reply_free(dl_reply *d)
{
    sbx_multipart_free(d->parts, d->n);
    if (d->map && d->map != MAP_FAILED)
        munmap(d->map, d->map_len);
    memset(d, 0, sizeof(*d));
}

/* POST /files/bulk-download for paths; fills items. 0, or -1 with err
 * (status 404: the sandbox is gone). */
static int bulk_download(sbx_step_box *b, dl_item *items, size_t n_items, dl_reply *d, int *fail, sbx_err *err)
{
    memset(d, 0, sizeof(*d));
    json_t *paths = json_array();
    for (size_t i = 0; paths && i < n_items; i++)
        json_array_append_new(paths, json_string(items[i].path));
    json_t *body = paths ? json_pack("{s:o}", "paths", paths) : NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return sbx_step_refuse(fail, err, "daytona: cannot encode the paths to download (not UTF-8?)");
    char url[1400];
    snprintf(url, sizeof(url), "%s/files/bulk-download", b->toolbox);
    const char *hdrs[] = {b->conf.auth, "Accept: multipart/form-data", "Content-Type: application/json",
                          b->conf.org[0] ? b->conf.org : NULL, NULL};
    spool s = {0};
    remote_http_req rq = {.method = "POST", .url = url, .headers = hdrs, .body = text, .body_len = strlen(text),
                          .idle_s = IDLE_S, .sink = on_spool, .ud = &s};
    remote_http_resp r;
    int rc = remote_http_do(b->tb, &rq, &r);
    free(text);
    int ret = 0;
    if (s.err_no) {
        ret = sbx_step_infra(fail, err, "daytona: cannot keep the download in a temporary file: %s", strerror(s.err_no));
    } else if (rc < 0) {
        ret = remote_http_fail(WHO, "download files", &r, KEY_HINT, fail, err);
    } else if (r.status != 200) {
        remote_http_resp er = {.status = r.status, .body = s.errbody, .len = s.errlen};
        if (r.status == 404)
            ret = sbx_step_infra(fail, err, "daytona: sandbox %s is gone (HTTP 404 from its toolbox)", b->id);
        else
            ret = remote_http_fail(WHO, "download files", &er, KEY_HINT, fail, err);
    } else {
        long end = s.f ? (fflush(s.f), ftell(s.f)) : 0;
        d->map_len = end > 0 ? (size_t)end : 0;
        if (d->map_len && (d->map = mmap(NULL, d->map_len, PROT_READ, MAP_PRIVATE, fileno(s.f), 0)) == MAP_FAILED) {
            d->map = NULL;
            ret = sbx_step_infra(fail, err, "daytona: cannot map the download: %s", strerror(errno));
        } else {
            char why[200];
            if (sbx_multipart_parse(r.content_type, d->map ? d->map : "", d->map_len, &d->parts, &d->n, why,
                                    sizeof(why)) < 0)
                ret = sbx_step_infra(fail, err, "daytona: the bulk-download reply is not multipart/form-data: %s", why);
        }
    }
    if (s.f)
        fclose(s.f); /* the mapping stays valid */
    remote_http_resp_free(&r);
    if (ret < 0) {
        dl_reply_free(d);
        return -1;
    }
    /* Parts name their path in filename; with one path, any part is its. */
    for (size_t i = 0; i < d->n; i++) {
        sbx_mpart *p = &d->parts[i];
        dl_item *it = NULL;
        for (size_t k = 0; k < n_items && !it; k++)
            if (n_items == 1 || (p->filename && strcmp(p->filename, items[k].path) == 0))
                it = &items[k];
        if (!it)
            continue;
        if (p->name && strcmp(p->name, "error") == 0) {
            json_t *j = json_loadb(p->data, p->len, 0, NULL);
            json_t *sc = json_object_get(j, "statusCode");
            const char *m = json_string_value(json_object_get(j, "message"));
            it->status = json_is_integer(sc) ? (int)json_integer_value(sc) : 500;
            snprintf(it->message, sizeof(it->message), "%s", m ? m : "error");
            json_decref(j);
        } else {
            it->found = true;
            it->data = p->data;
            it->len = p->len;
        }
    }
    return 0;
}

static void delete_file(sbx_step_box *b, const char *path)
{
    char *q = remote_http_escape(path);
    if (!q)
        return;
    char url[1600];
    snprintf(url, sizeof(url), "%s/files?path=%s", b->toolbox, q);
    free(q);
    remote_http_resp r;
    call(b->tb, &b->conf, "DELETE", url, NULL, 30000, &r);
    remote_http_resp_free(&r);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int dt_download(sbx_step_box *b, const char *guest_path, const char *host_path, int *fail, sbx_err *err)
{
    dl_item it = {.path = guest_path};
    dl_reply d;
    if (bulk_download(b, &it, 1, &d, fail, err) < 0)
        return -1;
    int ret = 0;
    if (it.status == 404) {
        sbx_step_refuse(fail, err, "daytona: %s does not exist in sandbox %s", guest_path, b->id);
        err->code = SBX_E_NOTFOUND;
        err->sys_errno = ENOENT;
        ret = -1;
    } else if (it.status) {
        if (it.status >= 500)
            sbx_step_infra(fail, err, "daytona: cannot download %s: %s (status %d)", guest_path, it.message, it.status);
        else
            sbx_step_refuse(fail, err, "daytona: cannot download %s: %s (status %d)", guest_path, it.message, it.status);
        err->sys_errno = it.status == 403 ? EACCES : it.status == 400 ? EISDIR : 0;
        ret = -1;
    } else if (!it.found) {
        ret = sbx_step_infra(fail, err, "daytona: the bulk-download reply has no part for %s", guest_path);
    } else {
        int fd = open(host_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write_all(fd, it.data, it.len) < 0 || close(fd) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            sbx_step_refuse(fail, err, "daytona: cannot write '%s': %s", host_path, strerror(e));
            err->code = SBX_E_SYSTEM;
            err->sys_errno = e;
            ret = -1;
        }
    }
    dl_reply_free(&d);
    return ret;
}

static int dt_upload(sbx_step_box *b, const char *host_path, const char *guest_path, unsigned mode, int *fail,
                     sbx_err *err)
{
    struct stat st;
    int fd = open(host_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        sbx_step_refuse(fail, err, "daytona: cannot upload '%s': %s", host_path,
               e == EINVAL ? "not a regular file" : strerror(e));
        err->sys_errno = e;
        return -1;
    }
    close(fd);
    if (guest_path[0] != '/')
        return sbx_step_refuse(fail, err, "daytona: guest path '%s' must be absolute", guest_path);
    const char *base = strrchr(guest_path, '/') + 1;
    char url[1400];
    snprintf(url, sizeof(url), "%s/files/bulk-upload", b->toolbox);
    const char *hdrs[] = {b->conf.auth, "Accept: application/json", b->conf.org[0] ? b->conf.org : NULL, NULL};
    /* The destination is the files[0].path field; the part's filename only its basename. */
    remote_http_part parts[] = {
        {.name = "files[0].path", .data = guest_path},
        {.name = "files[0].file", .file = host_path, .filename = *base ? base : "file"},
    };
    remote_http_req rq = {.method = "POST", .url = url, .headers = hdrs, .parts = parts, .n_parts = 2,
                          .idle_s = IDLE_S};
    remote_http_resp r;
    int rc = remote_http_do(b->tb, &rq, &r);
    int ret = 0;
    if (rc < 0 || r.status / 100 != 2) {
        char what[PATH_MAX + 40];
        snprintf(what, sizeof(what), "upload to %s", guest_path);
        if (rc == 0 && r.status == 404) /* parents are made: only the sandbox can be missing */
            ret = sbx_step_infra(fail, err, "daytona: sandbox %s is gone (HTTP 404 from its toolbox)", b->id);
        else
            ret = remote_http_fail(WHO, what, &r, KEY_HINT, fail, err);
    }
    remote_http_resp_free(&r);
    if (ret < 0 || (mode & 07777) == 0644) /* new files are 0644 */
        return ret;
    char *q = remote_http_escape(guest_path);
    if (!q)
        return sbx_step_infra(fail, err, "daytona: out of memory");
    char purl[PATH_MAX * 3 + 1400];
    snprintf(purl, sizeof(purl), "%s/files/permissions?path=%s&mode=%o", b->toolbox, q, mode & 07777);
    free(q);
    if (call(b->tb, &b->conf, "POST", purl, NULL, 60000, &r) < 0 || r.status / 100 != 2) {
        char what[PATH_MAX + 40];
        snprintf(what, sizeof(what), "set mode %o on %s", mode & 07777, guest_path);
        ret = remote_http_fail(WHO, what, &r, KEY_HINT, fail, err);
    }
    remote_http_resp_free(&r);
    return ret;
}

/* ---- exec --------------------------------------------------------------------- */

/* The command's two output files, to out (stdout, then stderr), then removed. */
static int deliver_output(sbx_step_box *b, const char *opath, const char *epath, sbx_step_output_fn out, void *ud,
                          int *fail, sbx_err *err)
{
    dl_item items[2] = {{.path = opath}, {.path = epath}};
    dl_reply d;
    if (bulk_download(b, items, 2, &d, fail, err) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (items[i].found && items[i].len && out)
            out(ud, i + 1, items[i].data, items[i].len);
    dl_reply_free(&d);
    delete_file(b, opath);
    delete_file(b, epath);
    return 0;
}

static int dt_exec(sbx_step_box *b, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                   sbx_step_output_fn out, void *ud, sbx_step_exit *ex, int *fail, sbx_err *err)
{
    memset(ex, 0, sizeof(*ex));
    if (!argv || !argv[0] || !*argv[0])
        return sbx_step_refuse(fail, err, "daytona: no command to run (argv is empty)");
    if (b->stopped[0])
        return sbx_step_refuse(fail, err, "daytona: sandbox %s is %s, not started (Daytona stops an idle sandbox after its "
                                 "autoStopInterval): start it first (daytona start %s)",
                      b->id, b->stopped, b->id);
    json_t *envs = remote_http_env_object("daytona", env, fail, err); /* checks the entries */
    if (!envs)
        return -1;
    json_decref(envs);
    unsigned n = atomic_fetch_add(&b->seq, 1);
    char opath[64], epath[64];
    snprintf(opath, sizeof(opath), OUT_DIR "/.sbx-step-%u.out", n);
    snprintf(epath, sizeof(epath), OUT_DIR "/.sbx-step-%u.err", n);
    char *cmd = sbx_daytona_command(argv, env, opath, epath);
    json_t *body = cmd ? json_pack("{s:s}", "command", cmd) : NULL;
    free(cmd);
    if (!body)
        return sbx_step_refuse(fail, err, "daytona: cannot encode the command (out of memory, or text that is not UTF-8)");
    if (workdir)
        json_object_set_new(body, "cwd", json_string(workdir));
    /* Always a timeout: older daemons apply 360 s when none is given. */
    uint64_t tsec = timeout_ms ? (timeout_ms + 999) / 1000 : NO_TIMEOUT_S;
    json_object_set_new(body, "timeout", json_integer((json_int_t)tsec));
    char url[1400];
    snprintf(url, sizeof(url), "%s/process/execute", b->toolbox);
    remote_http_resp r;
    uint64_t t0 = (sbx_now_usec() / 1000);
    int rc = call(b->tb, &b->conf, "POST", url, body, timeout_ms ? tsec * 1000 + ANSWER_GRACE_MS : 0, &r);
    bool past_deadline = timeout_ms && (sbx_now_usec() / 1000) - t0 >= timeout_ms;
    json_decref(body);
    int ret = 0;
    if (rc < 0) {
        if (remote_http_timed_out(&r) && past_deadline)
            sbx_step_exit_timeout(ex); /* the toolbox never answered; the sandbox goes with the step */
        else
            ret = remote_http_fail(WHO, "run the command", &r, KEY_HINT, fail, err);
    } else if (r.status == 408 || (r.status == 504 && past_deadline)) {
        sbx_step_exit_timeout(ex);
    } else if (r.status == 200) {
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        json_t *code = json_object_get(j, "exitCode");
        if (!code)
            code = json_object_get(j, "code"); /* older daemons */
        const char *result = json_string_value(json_object_get(j, "result"));
        if (!json_is_integer(code)) {
            ret = sbx_step_infra(fail, err, "daytona: the execute reply has no exitCode");
        } else if (json_integer_value(code) < 0 && result &&
                   (strstr(result, "executable file not found") || strstr(result, "no such file"))) {
            ret = sbx_step_refuse(fail, err, "daytona: the sandbox cannot run sh (its image needs /bin/sh): %.200s", result);
        } else if (json_integer_value(code) < 0) {
            ex->signal = SIGKILL; /* the shell itself was killed */
            ex->exit_code = 128 + SIGKILL;
        } else {
            ex->exit_code = (int)(json_integer_value(code) & 0xff);
        }
        /* What the shell itself said (outside the command's redirections). */
        if (ret == 0 && result && *result && out)
            out(ud, 2, result, strlen(result));
        json_decref(j);
    } else if (r.status == 404) {
        ret = sbx_step_infra(fail, err, "daytona: sandbox %s is gone (HTTP 404 from its toolbox)", b->id);
    } else {
        ret = remote_http_fail(WHO, "run the command", &r, KEY_HINT, fail, err);
    }
    remote_http_resp_free(&r);
    if (ret < 0)
        return -1;
    /* Output comes after the end (also after a timeout: what it wrote). */
    if (deliver_output(b, opath, epath, out, ud, fail, err) < 0) {
        if (ex->timed_out)
            return 0; /* the timeout is the news; its partial output is lost */
        return -1;
    }
    if (!ex->timed_out && (ex->exit_code == 128 + SIGKILL || ex->signal == SIGKILL) && out) {
        char hint[300];
        int hn = snprintf(hint, sizeof(hint),
                          "sbx: the command was killed (SIGKILL, status 137); on daytona that is most often the "
                          "sandbox running out of memory (it has %llu MiB)\n",
                          (unsigned long long)b->memory_mb);
        out(ud, 2, hint, (size_t)hn);
    }
    return 0;
}

const sbx_step_backend sbx_step_backend_daytona = {
    .name = "daytona",
    .check = dt_check,
    .create = dt_create,
    .id = dt_id,
    .upload = dt_upload,
    .download = dt_download,
    .exec = dt_exec,
    .destroy = dt_destroy,
    .shell_hint = dt_shell_hint,
    .attach = dt_attach,
};
