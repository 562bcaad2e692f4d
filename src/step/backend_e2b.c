/* The `e2b` step backend: a step's sandbox on E2B (or on any server that
 * speaks E2B's API, such as sbx's own front door), configured as E2B's
 * SDKs are: E2B_API_KEY, E2B_API_URL (default https://api.<E2B_DOMAIN>),
 * E2B_SANDBOX_URL, E2B_DOMAIN (default e2b.app). Contract:
 * shared/protocols/e2b.md.
 *
 * The control plane (REST) creates and kills the sandbox; envd inside it
 * runs commands (process.Process/Start: a Connect server stream of start,
 * data and end events, JSON codec) and moves files (GET/POST /files).
 * E2B sizes a sandbox by its template, so cpu and memory are checked
 * against what the template gives rather than requested (see
 * check_size); there are no GPUs. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "backend.h"
#include "remote_http.h"
#include "util.h"

#define WHO "e2b"
#define ENVD_PORT "49983"
#define DEFAULT_DOMAIN "e2b.app"
#define DEFAULT_TEMPLATE "base"
/* The sandbox outlives the step's timeout by this much (staging, results);
 * E2B kills it at its end even if we cannot. */
#define LIFETIME_MARGIN_S 300
#define LIFETIME_NO_TIMEOUT_S 3600
#define LIFETIME_MAX_S 86400u
/* Keepalives are asked for every 30 s; no byte for this long means the
 * sandbox or the way to it is gone. */
#define KEEPALIVE_S 30
#define IDLE_S 120
/* After the step's timeout, how long envd gets to stop the process itself
 * before we give up on the stream and kill it by pid. */
#define KILL_GRACE_MS 15000
#define ENVELOPE_MAX (16u << 20)
#define KEY_HINT "check E2B_API_KEY (an E2B API key, e2b_...; sbx's front door takes any key with --dev)"
#define ENVD_HINT "envd checks the sandbox's access token (envdAccessToken from create) and the user's rights"

typedef struct e2b_conf {
    char api_url[512];
    char sandbox_url[512]; /* E2B_SANDBOX_URL: one base URL for every sandbox; "" if unset */
    char domain[256];
    char key_header[600]; /* "X-API-KEY: ..." */
} e2b_conf;

struct sbx_step_box {
    remote_http *api;  /* control plane */
    remote_http *envd; /* the sandbox's envd */
    e2b_conf conf;
    char id[128];
    char envd_url[700];
    char h_id[160], h_token[600]; /* E2b-Sandbox-Id, X-Access-Token headers */
    bool has_token;
    uint64_t memory_mb; /* what the sandbox has, for the OOM hint; 0 unknown */
    uint64_t lifetime_s;
};

static int load_conf(e2b_conf *c, int *fail, sbx_err *err)
{
    memset(c, 0, sizeof(*c));
    const char *key = getenv("E2B_API_KEY"), *dom = getenv("E2B_DOMAIN"), *api = getenv("E2B_API_URL"),
               *sbu = getenv("E2B_SANDBOX_URL");
    if (!key || !*key)
        return sbx_step_refuse(fail, err,
                      "e2b: E2B_API_KEY is not set: the e2b backend needs an E2B API key (from the E2B dashboard; "
                      "sbx's own E2B front door takes any non-empty key with --dev)");
    if (strlen(key) > 512 || strpbrk(key, "\r\n"))
        return sbx_step_refuse(fail, err, "e2b: E2B_API_KEY must be one line of at most 512 characters");
    snprintf(c->key_header, sizeof(c->key_header), "X-API-KEY: %s", key);
    if (dom && *dom) {
        if (strlen(dom) >= sizeof(c->domain) || strpbrk(dom, "/: \t\r\n"))
            return sbx_step_refuse(fail, err, "e2b: E2B_DOMAIN '%s' is not a domain name (e.g. e2b.app)", dom);
        snprintf(c->domain, sizeof(c->domain), "%s", dom);
    } else {
        snprintf(c->domain, sizeof(c->domain), "%s", DEFAULT_DOMAIN);
    }
    char def[300];
    snprintf(def, sizeof(def), "https://api.%s", c->domain);
    if (remote_http_base_url("E2B_API_URL", api && *api ? api : def, c->api_url, sizeof(c->api_url), err) < 0 ||
        (sbu && *sbu &&
         remote_http_base_url("E2B_SANDBOX_URL", sbu, c->sandbox_url, sizeof(c->sandbox_url), err) < 0)) {
        char m[sizeof(err->msg)];
        snprintf(m, sizeof(m), "e2b: %.480s", err->msg);
        memcpy(err->msg, m, sizeof(m));
        *fail = SBX_STEP_REFUSED;
        return -1;
    }
    return 0;
}

/* "K=V" entries -> {"K":"V"}; NULL with err on a malformed entry. */
static int e2b_check(const sbx_step_resources *res, int *fail, sbx_err *err)
{
    e2b_conf c;
    if (load_conf(&c, fail, err) < 0)
        return -1;
    if (res->gpu && *res->gpu)
        return sbx_step_refuse(fail, err,
                      "e2b: gpu '%s' cannot be honoured: E2B sandboxes have no GPUs (allowed: no gpu; use the local "
                      "or sbx backend for GPU steps)",
                      res->gpu);
    if (res->timeout_s > LIFETIME_MAX_S)
        return sbx_step_refuse(fail, err,
                      "e2b: timeout %llu s cannot be honoured: an E2B sandbox lives at most %u s (24 h; less on "
                      "some plans)",
                      (unsigned long long)res->timeout_s, LIFETIME_MAX_S);
    if (res->image && (!*res->image || strlen(res->image) > 255 || strpbrk(res->image, " \t\r\n\"\\")))
        return sbx_step_refuse(fail, err,
                      "e2b: image '%s' is not an E2B template name or ID (e.g. base, or your template's alias)",
                      res->image);
    json_t *e = remote_http_env_object("e2b", res->env, fail, err);
    if (!e)
        return -1;
    json_decref(e);
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

static int api_call(sbx_step_box *b, const char *method, const char *path, json_t *body, uint64_t timeout_ms,
                    remote_http_resp *r)
{
    char url[1200];
    snprintf(url, sizeof(url), "%s%s", b->conf.api_url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    const char *hdrs[] = {b->conf.key_header, "Accept: application/json",
                          body ? "Content-Type: application/json" : NULL, NULL};
    /* Creating (POST) and killing (DELETE) a sandbox run through a first
     * interrupt: a sandbox whose id we never learn cannot be killed. */
    remote_http_req rq = {.method = method, .url = url, .headers = hdrs, .body = text,
                          .body_len = text ? strlen(text) : 0, .timeout_ms = timeout_ms,
                          .must_finish = strcmp(method, "GET") != 0};
    int rc = remote_http_do(b->api, &rq, r);
    free(text);
    return rc;
}

/* The envd headers every call carries (routing and the sandbox's token),
 * then extra ones; NULL-terminated into out (room for 8). */
static void envd_headers(const sbx_step_box *b, const char **out, const char *const *extra)
{
    size_t n = 0;
    out[n++] = b->h_id;
    out[n++] = "E2b-Sandbox-Port: " ENVD_PORT;
    if (b->has_token)
        out[n++] = b->h_token;
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        out[n++] = extra[i];
    out[n] = NULL;
}

/* ---- create / destroy ------------------------------------------------------ */

static const char *const hosted_domains[] = {"e2b.app", "e2b.dev", "e2b.pro", "e2b-staging.dev"};

/* envd's base URL as E2B's SDKs derive it: E2B_SANDBOX_URL for every
 * sandbox; E2B's hosted domains through one edge host (routed by the
 * E2b-Sandbox-* headers); else a host per sandbox and port. */
static void envd_url(sbx_step_box *b, const char *domain)
{
    if (b->conf.sandbox_url[0]) {
        snprintf(b->envd_url, sizeof(b->envd_url), "%s", b->conf.sandbox_url);
        return;
    }
    for (size_t i = 0; i < sizeof(hosted_domains) / sizeof(hosted_domains[0]); i++)
        if (strcmp(domain, hosted_domains[i]) == 0) {
            snprintf(b->envd_url, sizeof(b->envd_url), "https://sandbox.%s", domain);
            return;
        }
    snprintf(b->envd_url, sizeof(b->envd_url), "https://" ENVD_PORT "-%s.%s", b->id, domain);
}

/* The way to the sandbox's envd (b->id set): routing header, the access
 * token (envdAccessToken, when the API gave one), the base URL. */
static void set_envd(sbx_step_box *b, const char *tok, const char *dom)
{
    snprintf(b->h_id, sizeof(b->h_id), "E2b-Sandbox-Id: %s", b->id);
    if (tok && *tok && strlen(tok) < 500 && !strpbrk(tok, "\r\n")) {
        snprintf(b->h_token, sizeof(b->h_token), "X-Access-Token: %s", tok);
        b->has_token = true;
    }
    envd_url(b, dom && *dom ? dom : b->conf.domain);
}

static void kill_sandbox(sbx_step_box *b)
{
    char path[300];
    char *id = remote_http_escape(b->id);
    snprintf(path, sizeof(path), "/sandboxes/%s", id ? id : b->id);
    free(id);
    remote_http_resp r;
    api_call(b, "DELETE", path, NULL, 60000, &r);
    remote_http_resp_free(&r);
}

static void box_free(sbx_step_box *b)
{
    if (!b)
        return;
    remote_http_free(b->api);
    remote_http_free(b->envd);
    free(b);
}

/* GET /sandboxes/{id}: the SandboxDetail (cpuCount, memoryMB,
 * envdAccessToken, ...). NULL with err; 404 is SBX_E_NOTFOUND (refused). */
static json_t *sandbox_detail(sbx_step_box *b, const char *what, int *fail, sbx_err *err)
{
    char path[300];
    char *id = remote_http_escape(b->id);
    snprintf(path, sizeof(path), "/sandboxes/%s", id ? id : b->id);
    free(id);
    remote_http_resp r;
    json_t *j = NULL;
    if (api_call(b, "GET", path, NULL, 60000, &r) < 0 || r.status != 200) {
        if (r.status == 404) {
            sbx_step_refuse(fail, err, "e2b: there is no sandbox %s at %s (it was removed, or its timeout ended it)", b->id,
                   b->conf.api_url);
            err->code = SBX_E_NOTFOUND;
        } else {
            remote_http_fail(WHO, what, &r, KEY_HINT, fail, err);
        }
    } else {
        j = json_loadb(r.body, r.len, 0, NULL); /* (json_is_object evaluates its argument twice) */
        if (!json_is_object(j)) {
            json_decref(j);
            j = NULL;
            sbx_step_infra(fail, err, "e2b: cannot %s: the reply is not a JSON object", what);
        }
    }
    remote_http_resp_free(&r);
    return j;
}

/* E2B has no cpu or memory on create: the template fixes both, and
 * nothing limits a sandbox below them. A cpu or memory the step asked for
 * must therefore be its template's exactly: more cannot be given, less
 * cannot be enforced (a limit the step relies on would not hold). Asked
 * for neither, the step runs on the template's size. */
static int check_size(sbx_step_box *b, const sbx_step_resources *res, const char *tmpl, int *fail, sbx_err *err)
{
    if (!res->cpu_set && !res->memory_set)
        return 0;
    json_t *j = sandbox_detail(b, "read the new sandbox's size (GET /sandboxes/{id})", fail, err);
    if (!j)
        return -1;
    json_t *jc = json_object_get(j, "cpuCount"), *jm = json_object_get(j, "memoryMB");
    bool known = json_is_integer(jc) && json_is_integer(jm);
    double cpus = known ? (double)json_integer_value(jc) : 0;
    uint64_t mem = known ? (uint64_t)json_integer_value(jm) : 0;
    json_decref(j);
    b->memory_mb = mem;
    if (!known)
        return sbx_step_refuse(fail, err,
                      "e2b: cannot check cpu %g / memory %llu MiB: the E2B API did not report the template's cpuCount "
                      "and memoryMB",
                      res->cpu, (unsigned long long)res->memory_mb);
    char asked[64] = "";
    bool more = false;
    if (res->cpu_set && res->cpu != cpus) {
        snprintf(asked, sizeof(asked), "cpu %g", res->cpu);
        more = res->cpu > cpus;
    } else if (res->memory_set && res->memory_mb != mem) {
        snprintf(asked, sizeof(asked), "memory %llu MiB", (unsigned long long)res->memory_mb);
        more = res->memory_mb > mem;
    }
    if (asked[0])
        return sbx_step_refuse(fail, err,
                      "e2b: %s cannot be honoured: template '%s' gives %g vCPUs and %llu MiB, and E2B sizes "
                      "sandboxes by template (create takes no cpu or memory), so %s; leave cpu and memory unset to "
                      "run on the template's size, or build a template of the size wanted (e2b template build "
                      "--cpu-count N --memory-mb M) and name it in image",
                      asked, tmpl, cpus, (unsigned long long)mem,
                      more ? "a sandbox cannot get more than its template"
                           : "nothing would hold the step to less than its template (allowed: exactly the "
                             "template's size)");
    return 0;
}

static int e2b_create(const sbx_step_resources *res, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    if (e2b_check(res, fail, err) < 0)
        return -1;
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b || !(b->api = remote_http_new()) || !(b->envd = remote_http_new())) {
        box_free(b);
        return sbx_step_infra(fail, err, "e2b: out of memory");
    }
    load_conf(&b->conf, fail, err);
    const char *tmpl = res->image ? res->image : DEFAULT_TEMPLATE;
    b->lifetime_s = res->timeout_s ? res->timeout_s + LIFETIME_MARGIN_S : LIFETIME_NO_TIMEOUT_S;
    if (b->lifetime_s > LIFETIME_MAX_S)
        b->lifetime_s = LIFETIME_MAX_S;
    json_t *envs = remote_http_env_object("e2b", res->env, fail, err);
    if (!envs) {
        box_free(b);
        return -1;
    }
    json_t *body = json_pack("{s:s, s:I, s:o, s:{s:s}}", "templateID", tmpl, "timeout", (json_int_t)b->lifetime_s,
                             "envVars", envs, "metadata", "created-by", "sbx-step");
    remote_http_resp r = {0};
    int rc = body ? api_call(b, "POST", "/v2/sandboxes", body, 120000, &r) : -1;
    json_decref(body);
    if (rc < 0 || (r.status != 201 && r.status != 200)) {
        char what[400];
        snprintf(what, sizeof(what), "create a sandbox of template '%s'", tmpl);
        if (!body)
            sbx_step_infra(fail, err, "e2b: out of memory");
        else
            remote_http_fail(WHO, what, &r, KEY_HINT, fail, err);
        remote_http_resp_free(&r);
        box_free(b);
        return -1;
    }
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    remote_http_resp_free(&r);
    const char *id = json_string_value(json_object_get(j, "sandboxID")),
               *tok = json_string_value(json_object_get(j, "envdAccessToken")),
               *dom = json_string_value(json_object_get(j, "domain"));
    if (!id || !*id || strlen(id) >= sizeof(b->id) || strpbrk(id, "/?#%\r\n ")) {
        json_decref(j);
        box_free(b);
        return sbx_step_infra(fail, err, "e2b: the create reply has no usable sandboxID");
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    set_envd(b, tok, dom);
    json_decref(j);
    if (check_size(b, res, tmpl, fail, err) < 0) {
        kill_sandbox(b);
        box_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

static const char *e2b_id(const sbx_step_box *b)
{
    return b->id;
}

static int e2b_destroy(sbx_step_box *b, bool keep, sbx_err *err)
{
    int rc = 0;
    if (!keep) {
        char path[300];
        char *id = remote_http_escape(b->id);
        snprintf(path, sizeof(path), "/sandboxes/%s", id ? id : b->id);
        free(id);
        remote_http_resp r;
        /* 404: already gone (its timeout, or E2B removed it), which is the goal. */
        if (api_call(b, "DELETE", path, NULL, 60000, &r) < 0 || (r.status / 100 != 2 && r.status != 404)) {
            int fail;
            remote_http_fail(WHO, "kill the sandbox", &r, KEY_HINT, &fail, err);
            rc = -1;
        }
        remote_http_resp_free(&r);
    }
    box_free(b);
    return rc;
}

static void e2b_shell_hint(const sbx_step_box *b, char *buf, size_t len)
{
    snprintf(buf, len,
             "sbx exec %s -- sh -c 'CMD'   (with this run's E2B_* variables; commands only, no stdin; remove it: "
             "sbx rm %s; a terminal: e2b sandbox connect %s, E2B's CLI; it lives %llu s from its creation)",
             b->id, b->id, b->id, (unsigned long long)b->lifetime_s);
}

/* A kept sandbox, as E2B's SDKs connect to one by id: GET /sandboxes/{id}
 * (side-effect free, unlike POST .../connect, which resets its timeout)
 * gives the envd access token and domain. */
static int e2b_attach(const char *id, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    if (!*id || strlen(id) >= sizeof(((sbx_step_box *)0)->id) || strpbrk(id, "/?#%\r\n "))
        return sbx_step_refuse(fail, err, "e2b: '%.80s' is not an E2B sandbox id", id);
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b || !(b->api = remote_http_new()) || !(b->envd = remote_http_new())) {
        box_free(b);
        return sbx_step_infra(fail, err, "e2b: out of memory");
    }
    if (load_conf(&b->conf, fail, err) < 0) {
        box_free(b);
        return -1;
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    json_t *j = sandbox_detail(b, "find the sandbox (GET /sandboxes/{id})", fail, err);
    if (!j) {
        box_free(b);
        return -1;
    }
    json_t *jm = json_object_get(j, "memoryMB");
    b->memory_mb = json_is_integer(jm) && json_integer_value(jm) > 0 ? (uint64_t)json_integer_value(jm) : 0;
    set_envd(b, json_string_value(json_object_get(j, "envdAccessToken")),
             json_string_value(json_object_get(j, "domain")));
    json_decref(j);
    *out = b;
    return 0;
}

/* ---- exec --------------------------------------------------------------------- */

/* One Start call: envelopes parsed as they arrive. */
typedef struct start_stream {
    unsigned char *buf;
    size_t len, cap;
    char errbody[4096]; /* the reply body when the status is not 200 */
    size_t errlen;
    bool bad;           /* not the Connect framing we expect */
    bool got_start, got_end, got_eos;
    long long pid;
    bool exited;
    int exit_code;
    int sig;
    char status[128];
    char eos_code[48], eos_msg[400];
    sbx_step_output_fn out;
    void *ud;
} start_stream;

/* Go's words for a signal ("killed", "terminated", "signal 42") -> number. */
static int signal_from_words(const char *w)
{
    char s[96];
    snprintf(s, sizeof(s), "%s", w);
    char *p = strstr(s, " (core dumped)");
    if (p)
        *p = '\0';
    int n;
    if (sscanf(s, "signal %d", &n) == 1)
        return n;
    for (int i = 1; i < 65; i++) {
        const char *d = sigdescr_np(i);
        if (d && strcasecmp(d, s) == 0)
            return i;
    }
    return 0;
}

static void on_event(start_stream *s, json_t *ev)
{
    json_t *v;
    if ((v = json_object_get(ev, "start"))) {
        s->got_start = true;
        json_t *pid = json_object_get(v, "pid");
        s->pid = json_is_integer(pid) ? (long long)json_integer_value(pid) : 0;
    } else if ((v = json_object_get(ev, "data"))) {
        static const char *const keys[] = {"stdout", "stderr", "pty"};
        for (int i = 0; i < 3; i++) {
            const char *b64 = json_string_value(json_object_get(v, keys[i]));
            unsigned char *d;
            size_t n;
            if (b64 && sbx_b64_decode(b64, &d, &n) == 0) {
                if (s->out && n)
                    s->out(s->ud, i == 1 ? 2 : 1, (const char *)d, n);
                free(d);
            }
        }
    } else if ((v = json_object_get(ev, "end"))) {
        /* proto3 JSON leaves zero values out: no exitCode is 0, no exited is false. */
        s->got_end = true;
        s->exited = json_is_true(json_object_get(v, "exited"));
        json_t *code = json_object_get(v, "exitCode");
        s->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        const char *st = json_string_value(json_object_get(v, "status"));
        snprintf(s->status, sizeof(s->status), "%s", st ? st : "");
        if (!s->exited && strncmp(s->status, "signal: ", 8) == 0)
            s->sig = signal_from_words(s->status + 8);
    }
}

static bool on_start_data(void *ud, long status, const char *data, size_t len)
{
    start_stream *s = ud;
    if (status != 200) {
        remote_http_keep_error(s->errbody, sizeof(s->errbody), &s->errlen, data, len);
        return true;
    }
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + len)
            cap *= 2;
        unsigned char *nb = realloc(s->buf, cap);
        if (!nb)
            return false;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    size_t off = 0;
    while (s->len - off >= 5) {
        unsigned char flags = s->buf[off];
        uint32_t n = (uint32_t)s->buf[off + 1] << 24 | (uint32_t)s->buf[off + 2] << 16 |
                     (uint32_t)s->buf[off + 3] << 8 | s->buf[off + 4];
        if (n > ENVELOPE_MAX || (flags & 0x01) || s->got_eos) {
            s->bad = true;
            return false;
        }
        if (s->len - off - 5 < n)
            break;
        json_t *j = json_loadb((const char *)s->buf + off + 5, n, 0, NULL);
        off += 5 + (size_t)n;
        if (!json_is_object(j)) {
            json_decref(j);
            s->bad = true;
            return false;
        }
        if (flags & 0x02) {
            s->got_eos = true;
            json_t *e = json_object_get(j, "error");
            if (json_is_object(e)) {
                const char *c = json_string_value(json_object_get(e, "code")),
                           *m = json_string_value(json_object_get(e, "message"));
                snprintf(s->eos_code, sizeof(s->eos_code), "%s", c ? c : "unknown");
                snprintf(s->eos_msg, sizeof(s->eos_msg), "%s", m ? m : "");
            }
        } else if (json_is_object(json_object_get(j, "event"))) {
            on_event(s, json_object_get(j, "event"));
        }
        json_decref(j);
    }
    memmove(s->buf, s->buf + off, s->len - off);
    s->len -= off;
    return true;
}

/* SIGKILL to a process by pid, best effort (it may be gone already). */
static void kill_pid(sbx_step_box *b, long long pid)
{
    char url[800], body[128];
    snprintf(url, sizeof(url), "%s/process.Process/SendSignal", b->envd_url);
    snprintf(body, sizeof(body), "{\"process\":{\"pid\":%lld},\"signal\":\"SIGNAL_SIGKILL\"}", pid);
    const char *extra[] = {"Content-Type: application/json", "Connect-Protocol-Version: 1", NULL};
    const char *hdrs[8];
    envd_headers(b, hdrs, extra);
    remote_http_req rq = {.method = "POST", .url = url, .headers = hdrs, .body = body, .body_len = strlen(body),
                          .timeout_ms = 10000};
    remote_http_resp r;
    remote_http_do(b->envd, &rq, &r);
    remote_http_resp_free(&r);
}

static void oom_hint(const sbx_step_box *b, sbx_step_output_fn out, void *ud)
{
    char hint[300];
    int n;
    if (b->memory_mb)
        n = snprintf(hint, sizeof(hint),
                     "sbx: the command was killed (SIGKILL); on e2b that is most often the sandbox running out of "
                     "memory (it has %llu MiB)\n",
                     (unsigned long long)b->memory_mb);
    else
        n = snprintf(hint, sizeof(hint),
                     "sbx: the command was killed (SIGKILL); on e2b that is most often the sandbox running out of "
                     "memory (its template's size)\n");
    if (out)
        out(ud, 2, hint, (size_t)n);
}

/* Whether the sandbox still answers: a SIGKILL is also what a command
 * gets when its sandbox is killed under it (envd's /health is 502 then). */
static bool sandbox_alive(sbx_step_box *b)
{
    char url[800];
    snprintf(url, sizeof(url), "%s/health", b->envd_url);
    const char *hdrs[8];
    envd_headers(b, hdrs, NULL);
    remote_http_req rq = {.method = "GET", .url = url, .headers = hdrs, .timeout_ms = 30000};
    remote_http_resp r;
    bool alive = remote_http_do(b->envd, &rq, &r) == 0 && r.status / 100 == 2;
    remote_http_resp_free(&r);
    return alive;
}

/* Connect end-of-stream error codes that say the request was wrong. */
static bool refused_code(const char *c)
{
    return strcmp(c, "unauthenticated") == 0 || strcmp(c, "permission_denied") == 0;
}

static int e2b_exec(sbx_step_box *b, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                    sbx_step_output_fn out, void *ud, sbx_step_exit *ex, int *fail, sbx_err *err)
{
    memset(ex, 0, sizeof(*ex));
    if (!argv || !argv[0] || !*argv[0])
        return sbx_step_refuse(fail, err, "e2b: no command to run (argv is empty)");
    json_t *envs = remote_http_env_object("e2b", env, fail, err);
    if (!envs)
        return -1;
    json_t *args = json_array();
    for (size_t i = 1; args && argv[i]; i++)
        if (json_array_append_new(args, json_string(argv[i])) < 0) {
            json_decref(args);
            json_decref(envs);
            return sbx_step_refuse(fail, err, "e2b: argument %zu is not UTF-8 text", i);
        }
    json_t *proc = json_pack("{s:s, s:o, s:o}", "cmd", argv[0], "args", args, "envs", envs);
    if (proc && workdir)
        json_object_set_new(proc, "cwd", json_string(workdir));
    json_t *msg = proc ? json_pack("{s:o, s:b}", "process", proc, "stdin", 0) : NULL;
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text)
        return sbx_step_refuse(fail, err, "e2b: cannot encode the command (out of memory, or text that is not UTF-8)");
    /* One Connect envelope: flags 0, big-endian length, the JSON. */
    size_t tl = strlen(text);
    unsigned char *env5 = malloc(tl + 5);
    if (!env5) {
        free(text);
        return sbx_step_infra(fail, err, "e2b: out of memory");
    }
    env5[0] = 0;
    env5[1] = (unsigned char)(tl >> 24);
    env5[2] = (unsigned char)(tl >> 16);
    env5[3] = (unsigned char)(tl >> 8);
    env5[4] = (unsigned char)tl;
    memcpy(env5 + 5, text, tl);
    free(text);

    char url[800], h_timeout[64];
    snprintf(url, sizeof(url), "%s/process.Process/Start", b->envd_url);
    snprintf(h_timeout, sizeof(h_timeout), "Connect-Timeout-Ms: %llu", (unsigned long long)timeout_ms);
    const char *extra[] = {"Content-Type: application/connect+json", "Connect-Protocol-Version: 1",
                           "Keepalive-Ping-Interval: 30", timeout_ms ? h_timeout : NULL, NULL};
    const char *hdrs[8];
    envd_headers(b, hdrs, extra);
    start_stream s = {.out = out, .ud = ud};
    /* envd stops the process at Connect-Timeout-Ms; ours is the backstop. */
    remote_http_req rq = {.method = "POST", .url = url, .headers = hdrs, .body = (const char *)env5,
                          .body_len = tl + 5, .timeout_ms = timeout_ms ? timeout_ms + KILL_GRACE_MS : 0,
                          .idle_s = IDLE_S, .sink = on_start_data, .ud = &s};
    remote_http_resp r;
    uint64_t t0 = (sbx_now_usec() / 1000);
    int rc = remote_http_do(b->envd, &rq, &r);
    uint64_t took = (sbx_now_usec() / 1000) - t0;
    free(env5);
    free(s.buf);
    bool past_deadline = timeout_ms && took >= timeout_ms;
    int ret = 0;
    if (rc < 0 && remote_http_timed_out(&r) && past_deadline && s.got_start) {
        /* envd did not stop it in time: we do. */
        kill_pid(b, s.pid);
        sbx_step_exit_timeout(ex);
    } else if (rc < 0 || s.bad) {
        ret = sbx_step_infra(fail, err, "e2b: the command's stream from sandbox %s broke off%s: %s", b->id,
                    s.got_start ? " mid-run (the sandbox vanished or the connection dropped)" : "",
                    s.bad ? "not Connect envelopes" : r.error);
    } else if (r.status != 200) {
        remote_http_resp er = {.status = r.status, .body = s.errbody, .len = s.errlen};
        if (r.status == 502 || r.status == 404)
            ret = sbx_step_infra(fail, err, "e2b: sandbox %s is gone (HTTP %ld from envd)", b->id, r.status);
        else
            ret = remote_http_fail(WHO, "run the command", &er, ENVD_HINT, fail, err);
    } else if (s.got_end) {
        if (s.exited) {
            ex->exit_code = s.exit_code & 0xff;
        } else {
            ex->signal = s.sig ? s.sig : SIGKILL;
            ex->exit_code = 128 + ex->signal;
        }
        /* The deadline's kill and the end event can race: a kill at or
         * after the timeout is the timeout's. */
        if ((s.got_eos && strcmp(s.eos_code, "deadline_exceeded") == 0) ||
            (past_deadline && ex->signal == SIGKILL))
            sbx_step_exit_timeout(ex);
        else if (ex->signal == SIGKILL && !sandbox_alive(b))
            ret = sbx_step_infra(fail, err, "e2b: sandbox %s vanished while the command ran", b->id);
        else if (ex->signal == SIGKILL)
            oom_hint(b, out, ud);
    } else if (s.got_eos && strcmp(s.eos_code, "deadline_exceeded") == 0) {
        if (s.got_start)
            kill_pid(b, s.pid); /* make sure it is gone */
        sbx_step_exit_timeout(ex);
    } else if (s.got_eos && s.eos_code[0] && !s.got_start && !refused_code(s.eos_code) &&
               (strcmp(s.eos_code, "invalid_argument") == 0 || strcmp(s.eos_code, "not_found") == 0 ||
                strcmp(s.eos_code, "failed_precondition") == 0)) {
        /* It could not be started: as a shell says, 127 not found, 126 otherwise. */
        bool nf = strcasestr(s.eos_msg, "not found") || strcasestr(s.eos_msg, "no such file");
        ex->exit_code = nf ? 127 : 126;
        if (out) {
            char line[600];
            int n = snprintf(line, sizeof(line), "sbx: %s: %s\n", argv[0], s.eos_msg);
            out(ud, 2, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
        }
    } else if (s.got_eos && s.eos_code[0]) {
        if (refused_code(s.eos_code))
            ret = sbx_step_refuse(fail, err, "e2b: envd refused the command: %s: %s; %s", s.eos_code, s.eos_msg, ENVD_HINT);
        else
            ret = sbx_step_infra(fail, err, "e2b: envd failed to run the command in sandbox %s: %s: %s", b->id, s.eos_code,
                        s.eos_msg);
    } else {
        ret = sbx_step_infra(fail, err, "e2b: the command's stream from sandbox %s ended without a result (the sandbox "
                               "vanished?)",
                    b->id);
    }
    remote_http_resp_free(&r);
    return ret;
}

/* ---- files -------------------------------------------------------------------- */

typedef struct out_collect {
    char buf[1024];
    size_t len;
} out_collect;

static void collect(void *ud, int stream, const char *data, size_t len)
{
    out_collect *c = ud;
    size_t n = len < sizeof(c->buf) - 1 - c->len ? len : sizeof(c->buf) - 1 - c->len;
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

static int e2b_upload(sbx_step_box *b, const char *host_path, const char *guest_path, unsigned mode, int *fail,
                      sbx_err *err)
{
    struct stat st;
    int fd = open(host_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        sbx_step_refuse(fail, err, "e2b: cannot upload '%s': %s", host_path, e == EINVAL ? "not a regular file" : strerror(e));
        err->sys_errno = e;
        return -1;
    }
    close(fd);
    if (guest_path[0] != '/')
        return sbx_step_refuse(fail, err, "e2b: guest path '%s' must be absolute", guest_path);
    char *q = remote_http_escape(guest_path);
    if (!q)
        return sbx_step_infra(fail, err, "e2b: out of memory");
    char url[PATH_MAX * 3 + 800];
    snprintf(url, sizeof(url), "%s/files?path=%s", b->envd_url, q);
    free(q);
    const char *hdrs[8];
    envd_headers(b, hdrs, NULL);
    /* The part's filename is the destination, as the SDK sends it. */
    remote_http_part part = {.name = "file", .file = host_path, .filename = guest_path};
    remote_http_req rq = {.method = "POST", .url = url, .headers = hdrs, .parts = &part, .n_parts = 1,
                          .idle_s = IDLE_S};
    remote_http_resp r;
    int rc = remote_http_do(b->envd, &rq, &r);
    int ret = 0;
    if (rc < 0 || r.status != 200) {
        char what[PATH_MAX + 40];
        snprintf(what, sizeof(what), "upload to %s", guest_path);
        if (rc == 0 && r.status == 502)
            ret = sbx_step_infra(fail, err, "e2b: sandbox %s is gone (HTTP 502 from envd)", b->id);
        else /* envd's 401/403 are about the path or the token, not the API key */
            ret = remote_http_fail(WHO, what, &r, NULL, fail, err);
        if (rc == 0 && r.status == 403)
            err->sys_errno = EACCES;
        if (rc == 0 && r.status == 507) {
            *fail = SBX_STEP_REFUSED;
            err->code = SBX_E_LIMIT;
            err->sys_errno = ENOSPC;
        }
    }
    remote_http_resp_free(&r);
    /* envd writes new files 0644: other modes need a chmod. */
    if (ret == 0 && (mode & 07777) != 0644) {
        char m[16];
        snprintf(m, sizeof(m), "%o", mode & 07777);
        char *argv[] = {"chmod", m, (char *)guest_path, NULL};
        out_collect oc = {.len = 0};
        sbx_step_exit ex;
        if (e2b_exec(b, argv, NULL, NULL, 60000, collect, &oc, &ex, fail, err) < 0)
            return -1;
        if (ex.exit_code != 0 || ex.signal)
            return sbx_step_refuse(fail, err, "e2b: cannot set mode %s on %s: %s", m, guest_path,
                          oc.len ? oc.buf : "chmod failed");
    }
    return ret;
}

typedef struct dl_sink {
    const char *host_path;
    int fd;
    int err_no;
    char errbody[4096];
    size_t errlen;
} dl_sink;

static bool on_download(void *ud, long status, const char *data, size_t len)
{
    dl_sink *d = ud;
    if (status != 200) {
        remote_http_keep_error(d->errbody, sizeof(d->errbody), &d->errlen, data, len);
        return true;
    }
    /* The host file is made only once the guest file is known to exist. */
    if (d->fd < 0 && (d->fd = open(d->host_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        d->err_no = errno;
        return false;
    }
    while (len) {
        ssize_t w = write(d->fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            d->err_no = w < 0 ? errno : EIO;
            return false;
        }
        data += w;
        len -= (size_t)w;
    }
    return true;
}

static int e2b_download(sbx_step_box *b, const char *guest_path, const char *host_path, int *fail, sbx_err *err)
{
    char *q = remote_http_escape(guest_path);
    if (!q)
        return sbx_step_infra(fail, err, "e2b: out of memory");
    char url[PATH_MAX * 3 + 800];
    snprintf(url, sizeof(url), "%s/files?path=%s", b->envd_url, q);
    free(q);
    const char *hdrs[8];
    envd_headers(b, hdrs, NULL);
    dl_sink d = {.host_path = host_path, .fd = -1};
    remote_http_req rq = {.method = "GET", .url = url, .headers = hdrs, .idle_s = IDLE_S, .sink = on_download,
                          .ud = &d};
    remote_http_resp r;
    int rc = remote_http_do(b->envd, &rq, &r);
    int ret = 0;
    if (rc == 0 && r.status == 200 && d.fd < 0 && !r.aborted &&
        (d.fd = open(host_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        d.err_no = errno; /* an empty file: no data came */
    if (d.err_no) {
        sbx_step_refuse(fail, err, "e2b: cannot write '%s': %s", host_path, strerror(d.err_no));
        err->code = SBX_E_SYSTEM;
        err->sys_errno = d.err_no;
        ret = -1;
    } else if (rc < 0) {
        ret = remote_http_fail(WHO, "download a file", &r, NULL, fail, err);
    } else if (r.status != 200) {
        remote_http_resp er = {.status = r.status, .body = d.errbody, .len = d.errlen};
        char reason[300];
        remote_http_reason(&er, reason, sizeof(reason));
        if (r.status == 404) {
            sbx_step_refuse(fail, err, "e2b: %s does not exist in sandbox %s", guest_path, b->id);
            err->code = SBX_E_NOTFOUND;
            err->sys_errno = ENOENT;
        } else if (r.status == 400 || r.status == 403) {
            sbx_step_refuse(fail, err, "e2b: cannot download %s: %s", guest_path, reason);
            err->sys_errno = r.status == 403 ? EACCES : EISDIR;
        } else if (r.status == 502) {
            sbx_step_infra(fail, err, "e2b: sandbox %s is gone (HTTP 502 from envd)", b->id);
        } else {
            char what[PATH_MAX + 40];
            snprintf(what, sizeof(what), "download %s", guest_path);
            remote_http_fail(WHO, what, &er, ENVD_HINT, fail, err);
        }
        ret = -1;
    }
    if (d.fd >= 0 && close(d.fd) < 0 && ret == 0) {
        sbx_step_refuse(fail, err, "e2b: cannot write '%s': %s", host_path, strerror(errno));
        err->code = SBX_E_SYSTEM;
        err->sys_errno = errno;
        ret = -1;
    }
    remote_http_resp_free(&r);
    return ret;
}

const sbx_step_backend sbx_step_backend_e2b = {
    .name = "e2b",
    .check = e2b_check,
    .create = e2b_create,
    .id = e2b_id,
    .upload = e2b_upload,
    .download = e2b_download,
    .exec = e2b_exec,
    .destroy = e2b_destroy,
    .shell_hint = e2b_shell_hint,
    .attach = e2b_attach,
};
