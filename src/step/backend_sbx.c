/* The `sbx` step backend: a step's sandbox on a running sbx server, over
 * its microsandbox JSON-RPC API (docs/api.md) at MSB_SERVER_URL with
 * MSB_API_KEY (read and checked as every sbx client reads them, .env
 * included), in namespace SBX_STEP_NAMESPACE (default "default").
 *
 * sandbox.start gets cpu (whole CPUs), memory (MiB), gpu and image
 * (default `host`) and the env; sandbox.fs.write / fs.read move files
 * (base64, at most 16 MiB each); sandbox.command.run with "stream": true
 * runs commands with live output and the server-side timeout;
 * sandbox.delete removes the sandbox. command.run takes no env, workdir
 * or status beyond the exit code, so each command is wrapped in a small
 * sh script that changes directory, exports the env, and waits for the
 * command so that a signal comes back as exit code 128+N. Commands run as
 * root in the sandbox (unprivileged on the host), as the API runs them.
 *
 * Never through a proxy, as sbx's client (a proxy must not see loopback
 * traffic). No response, a 5xx or a sandbox that stopped running is an
 * infrastructure failure; other statuses are refusals. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "backend.h"
#include "remote_http.h"
#include "sbx/client.h"
#include "spec.h"
#include "util.h"

#define WHO "sbx backend"
#define DEFAULT_IMAGE "host"
#define FILE_MAX (16u << 20)          /* sandbox.fs.write / fs.read */
#define CALL_TIMEOUT_MS (600u * 1000) /* a start may pull nothing, but may wait for a busy spawner */
#define EXEC_MARGIN_MS (120u * 1000)  /* after the step's own timeout, the server's answer */
#define KEY_HINT "check MSB_API_KEY (a key from `sbx server keygen` on the server)"

/* Changes to $1 (home when empty), exports $3.. ($2 of them), runs the
 * rest and waits for it (not exec), so a signal reads as 128+N. */
static const char wrap[] = "if [ -n \"$1\" ]; then cd \"$1\" || exit 125; else cd; fi; shift; n=$1; shift; "
                           "while [ \"$n\" -gt 0 ]; do export \"$1\"; shift; n=$((n-1)); done; \"$@\"; exit $?";

struct sbx_step_box {
    remote_http *http;
    char url[SBX_CLIENT_URL_MAX + 32]; /* .../api/v1/rpc */
    char base[SBX_CLIENT_URL_MAX];
    char auth[SBX_CLIENT_KEY_MAX + 32]; /* "Authorization: Bearer ..." or "" */
    char ns[64];
    char name[64];
};

/* MSB_SERVER_URL, MSB_API_KEY and the namespace into b (no sandbox yet). */
static int load_conf(sbx_step_box *b, int *fail, sbx_err *err)
{
    sbx_client_config cfg;
    sbx_err ce = {0};
    if (sbx_client_config_from_env(&cfg, &ce) < 0) {
        sbx_client_config_free(&cfg);
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": %s", ce.msg);
    }
    size_t n = strlen(cfg.server_url);
    while (n && cfg.server_url[n - 1] == '/')
        n--;
    snprintf(b->base, sizeof(b->base), "%.*s", (int)n, cfg.server_url);
    snprintf(b->url, sizeof(b->url), "%s/api/v1/rpc", b->base);
    if (cfg.api_key[0])
        snprintf(b->auth, sizeof(b->auth), "Authorization: Bearer %s", cfg.api_key);
    sbx_client_config_free(&cfg);
    const char *ns = getenv("SBX_STEP_NAMESPACE");
    if (ns && *ns) {
        bool ok = strlen(ns) < sizeof(b->ns);
        for (const char *p = ns; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                 *p == '_';
        if (!ok)
            return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0,
                         WHO ": SBX_STEP_NAMESPACE '%.80s' is not a namespace name (allowed: A-Z a-z 0-9 _ -, at most 63)",
                         ns);
        snprintf(b->ns, sizeof(b->ns), "%s", ns);
    } else {
        snprintf(b->ns, sizeof(b->ns), "default");
    }
    return 0;
}

static void box_free(sbx_step_box *b)
{
    if (!b)
        return;
    remote_http_free(b->http);
    free(b);
}

static sbx_step_box *box_new(const char *name, int *fail, sbx_err *err)
{
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b || !(b->http = remote_http_new())) {
        free(b);
        sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": out of memory");
        return NULL;
    }
    if (load_conf(b, fail, err) < 0) {
        box_free(b);
        return NULL;
    }
    snprintf(b->name, sizeof(b->name), "%s", name);
    return b;
}

/* ---- JSON-RPC ---------------------------------------------------------------- */

/* One call: params gets "sandbox" and "namespace". 0 with *result (a new
 * reference; NULL allowed), or -1 classified. what: for messages. */
static int call(sbx_step_box *b, const char *method, json_t *params, const char *what, json_t **result, long *status,
                int *fail, sbx_err *err)
{
    if (result)
        *result = NULL;
    json_object_set_new(params, "sandbox", json_string(b->name));
    json_object_set_new(params, "namespace", json_string(b->ns));
    json_t *env = json_pack("{s:s, s:s, s:O, s:i}", "jsonrpc", "2.0", "method", method, "params", params, "id", 1);
    char *body = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    if (!body)
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": out of memory");
    const char *hdrs[] = {"Content-Type: application/json", b->auth[0] ? b->auth : NULL, NULL};
    /* Starting and deleting run through a first interrupt: a start cut
     * short may still make the sandbox, after the delete looked for it. */
    bool must_finish = strcmp(method, "sandbox.start") == 0 || strcmp(method, "sandbox.delete") == 0;
    remote_http_req rq = {.method = "POST", .url = b->url, .headers = hdrs, .body = body, .body_len = strlen(body),
                          .timeout_ms = CALL_TIMEOUT_MS, .no_proxy = true, .must_finish = must_finish};
    remote_http_resp resp;
    int rc = remote_http_do(b->http, &rq, &resp);
    free(body);
    if (status)
        *status = resp.status;
    if (rc < 0 || resp.status != 200) {
        remote_http_fail(WHO, what, &resp, KEY_HINT, fail, err);
        remote_http_resp_free(&resp);
        return -1;
    }
    json_t *j = json_loadb(resp.body ? resp.body : "", resp.len, 0, NULL);
    remote_http_resp_free(&resp);
    json_t *r = json_object_get(j, "result");
    if (!r) {
        json_decref(j);
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": cannot %s: the server's answer is not a JSON-RPC result", what);
    }
    if (result)
        *result = json_incref(r);
    json_decref(j);
    return 0;
}

/* Whether JSON can carry s (jansson refuses other strings). */
static bool utf8(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* ---- the interface -------------------------------------------------------------- */

static int sbx_check(const sbx_step_resources *res, int *fail, sbx_err *err)
{
    sbx_step_box probe = {0};
    if (load_conf(&probe, fail, err) < 0)
        return -1;
    if (res->cpu < 1 || res->cpu > 1024 || res->cpu != (double)(long)res->cpu)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0,
                     WHO ": cpu %g cannot be honoured: the sbx backend gives whole CPUs (allowed: 1 to 1024)", res->cpu);
    if (res->memory_mb < 6 || res->memory_mb > 16777216)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": memory %llu MB cannot be honoured (allowed: 6 to 16777216)",
                     (unsigned long long)res->memory_mb);
    for (size_t i = 0; res->env && res->env[i]; i++) {
        if (!strchr(res->env[i], '=') || res->env[i][0] == '=')
            return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": env entry '%.60s' is not KEY=VALUE", res->env[i]);
        if (!utf8(res->env[i]))
            return sbx_step_refuse(fail, err, WHO ": env entry '%.60s' is not UTF-8 text (the msb API carries JSON strings)",
                                   res->env[i]);
    }
    return 0;
}

static int sbx_create(const sbx_step_resources *res, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": getrandom: %s", strerror(errno));
    char name[32];
    snprintf(name, sizeof(name), "step-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    sbx_step_box *b = box_new(name, fail, err);
    if (!b)
        return -1;
    /* Every entry or none: one that JSON cannot carry (not UTF-8) is refused, not dropped. */
    json_t *envs = json_array();
    for (size_t i = 0; envs && res->env && res->env[i]; i++)
        if (json_array_append_new(envs, json_string(res->env[i])) < 0) {
            json_decref(envs);
            box_free(b);
            return sbx_step_refuse(fail, err, WHO ": env entry '%.60s' is not UTF-8 text (the msb API carries JSON strings)",
                                   res->env[i]);
        }
    json_t *cfg = envs ? json_pack("{s:s, s:I, s:I, s:o}", "image", res->image ? res->image : DEFAULT_IMAGE, "memory",
                                   (json_int_t)res->memory_mb, "cpus", (json_int_t)res->cpu, "envs", envs)
                       : NULL;
    if (!cfg) {
        box_free(b);
        return sbx_step_infra(fail, err, WHO ": out of memory");
    }
    if (res->gpu)
        json_object_set_new(cfg, "gpu", json_string(res->gpu));
    json_t *p = json_pack("{s:o}", "config", cfg);
    int rc = call(b, "sandbox.start", p, "start the sandbox", NULL, NULL, fail, err);
    json_decref(p);
    if (rc < 0) {
        if (*fail == SBX_STEP_INFRA) {
            /* It may have started after all; never leave it behind. */
            json_t *d = json_object();
            int f2;
            sbx_err e2 = {0};
            call(b, "sandbox.delete", d, "delete the sandbox", NULL, NULL, &f2, &e2);
            json_decref(d);
        }
        box_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

static const char *sbx_id(const sbx_step_box *b)
{
    return b->name;
}

static int sbx_upload(sbx_step_box *b, const char *host_path, const char *guest_path, unsigned mode, int *fail,
                      sbx_err *err)
{
    struct stat st;
    if (stat(host_path, &st) < 0)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": cannot read %s: %s", host_path, strerror(errno));
    if (st.st_size > (off_t)FILE_MAX)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0,
                     WHO ": %s is %lld bytes; the sbx backend moves files of at most %u MiB (sandbox.fs.write)",
                     host_path, (long long)st.st_size, FILE_MAX >> 20);
    size_t len;
    char *data = sbx_slurp(host_path, &len);
    if (!data)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": cannot read %s: %s", host_path, strerror(errno));
    char *b64 = sbx_b64_encode(data, len);
    free(data);
    if (!b64)
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": out of memory");
    json_t *p = json_pack("{s:s, s:s, s:i, s:b}", "path", guest_path, "content", b64, "mode", (int)(mode & 07777),
                          "mkdirs", 1);
    free(b64);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "write %s", guest_path);
    int rc = call(b, "sandbox.fs.write", p, what, NULL, NULL, fail, err);
    json_decref(p);
    return rc;
}

static int sbx_download(sbx_step_box *b, const char *guest_path, const char *host_path, int *fail, sbx_err *err)
{
    json_t *p = json_pack("{s:s}", "path", guest_path), *r;
    long status = 0;
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "read %s", guest_path);
    int rc = call(b, "sandbox.fs.read", p, what, &r, &status, fail, err);
    json_decref(p);
    if (rc < 0) {
        if (status == 404) {
            err->code = SBX_E_NOTFOUND;
            err->sys_errno = ENOENT;
        }
        return -1;
    }
    const char *c = json_string_value(json_object_get(r, "content"));
    if (json_is_true(json_object_get(r, "truncated"))) {
        json_decref(r);
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0,
                     WHO ": %s is larger than %u MiB, the most the sbx backend moves (sandbox.fs.read)", guest_path,
                     FILE_MAX >> 20);
    }
    unsigned char *data = NULL;
    size_t len = 0;
    if (!c || sbx_b64_decode_strict(c, strlen(c), &data, &len) < 0) {
        json_decref(r);
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": cannot %s: the content is not base64", what);
    }
    json_decref(r);
    int fd = open(host_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(data);
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": cannot write %s: %s", host_path, strerror(errno));
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(data);
    if (close(fd) < 0 || off < len)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": cannot write %s", host_path);
    return 0;
}

/* The NDJSON stream of a streamed sandbox.command.run. */
typedef struct stream {
    sbx_step_output_fn out;
    void *ud;
    char *line;
    size_t len, cap;
    json_t *final; /* the closing envelope (result or error) */
    char *plain;   /* a body that is no stream (a refusal before the run) */
    size_t plain_len;
} stream;

static void stream_line(stream *s, const char *l, size_t n)
{
    json_t *j = json_loadb(l, n, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    const char *m = json_string_value(json_object_get(j, "method"));
    if (m && strcmp(m, "sandbox.output") == 0) {
        json_t *p = json_object_get(j, "params");
        const char *st = json_string_value(json_object_get(p, "stream"));
        json_t *t = json_object_get(p, "text");
        if (s->out && json_is_string(t)) {
            size_t tl = json_string_length(t);
            char *buf = malloc(tl + 1);
            if (buf) {
                memcpy(buf, json_string_value(t), tl);
                buf[tl] = '\n';
                s->out(s->ud, st && strcmp(st, "stderr") == 0 ? 2 : 1, buf, tl + 1);
                free(buf);
            }
        }
        json_decref(j);
        return;
    }
    json_decref(s->final);
    s->final = j;
}

static bool on_stream(void *ud, long status, const char *data, size_t len)
{
    stream *s = ud;
    if (status != 200) {
        char *np = realloc(s->plain, s->plain_len + len + 1);
        if (!np)
            return false;
        memcpy(np + s->plain_len, data, len);
        s->plain = np;
        s->plain_len += len;
        np[s->plain_len] = '\0';
        return s->plain_len < (1u << 20);
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            stream_line(s, s->line ? s->line : "", s->len);
            s->len = 0;
            continue;
        }
        if (s->len + 1 >= s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 4096;
            char *nl = realloc(s->line, nc);
            if (!nl)
                return false;
            s->line = nl;
            s->cap = nc;
        }
        s->line[s->len++] = data[i];
    }
    return true;
}

/* Runs argv through the wrapper, streaming; fills *code. */
static int run_streamed(sbx_step_box *b, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                        sbx_step_output_fn out, void *ud, int *code, bool *timed_out, int *fail, sbx_err *err)
{
    *timed_out = false;
    /* An argument or entry JSON cannot carry would be dropped: another command. */
    for (size_t i = 0; argv[i]; i++)
        if (!utf8(argv[i]))
            return sbx_step_refuse(fail, err, WHO ": argument %zu '%.60s' is not UTF-8 text (the msb API carries JSON strings)",
                                   i, argv[i]);
    for (size_t i = 0; env && env[i]; i++)
        if (!utf8(env[i]))
            return sbx_step_refuse(fail, err, WHO ": env entry '%.60s' is not UTF-8 text (the msb API carries JSON strings)",
                                   env[i]);
    json_t *args = json_array();
    size_t ne = 0;
    while (env && env[ne])
        ne++;
    char nbuf[24];
    snprintf(nbuf, sizeof(nbuf), "%zu", ne);
    json_array_append_new(args, json_string("-c"));
    json_array_append_new(args, json_string(wrap));
    json_array_append_new(args, json_string("sh"));
    json_array_append_new(args, json_string(workdir ? workdir : ""));
    json_array_append_new(args, json_string(nbuf));
    for (size_t i = 0; i < ne; i++)
        json_array_append_new(args, json_string(env[i]));
    for (size_t i = 0; argv[i]; i++)
        json_array_append_new(args, json_string(argv[i]));
    json_t *params = json_pack("{s:s, s:s, s:s, s:o, s:b}", "sandbox", b->name, "namespace", b->ns, "command", "sh",
                               "args", args, "stream", 1);
    if (timeout_ms)
        json_object_set_new(params, "timeout", json_real((double)timeout_ms / 1000.0));
    json_t *envl = json_pack("{s:s, s:s, s:o, s:i}", "jsonrpc", "2.0", "method", "sandbox.command.run", "params",
                             params, "id", 1);
    char *body = envl ? json_dumps(envl, JSON_COMPACT) : NULL;
    json_decref(envl);
    if (!body)
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": out of memory");
    const char *hdrs[] = {"Content-Type: application/json", b->auth[0] ? b->auth : NULL, NULL};
    stream s = {.out = out, .ud = ud};
    remote_http_req rq = {.method = "POST", .url = b->url, .headers = hdrs, .body = body, .body_len = strlen(body),
                          .timeout_ms = timeout_ms ? timeout_ms + EXEC_MARGIN_MS : 0, .sink = on_stream, .ud = &s,
                          .no_proxy = true};
    remote_http_resp resp;
    int rc = remote_http_do(b->http, &rq, &resp);
    free(body);
    if (s.len)
        stream_line(&s, s.line, s.len);
    int ret = -1;
    bool unreached = resp.curl_code == CURLE_COULDNT_CONNECT || resp.curl_code == CURLE_COULDNT_RESOLVE_HOST;
    if (rc < 0 && unreached) {
        sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": cannot reach the server at %s to run the command: %s", b->base,
              resp.error[0] ? resp.error : "no reply");
    } else if (rc < 0 || resp.aborted) {
        sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": the connection to the server at %s broke during the command: %s",
              b->base, resp.error[0] ? resp.error : "aborted");
    } else if (resp.status != 200) {
        resp.body = s.plain;
        resp.len = s.plain_len;
        s.plain = NULL;
        remote_http_fail(WHO, "run the command", &resp, KEY_HINT, fail, err);
    } else if (!s.final) {
        sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": the server ended the command's stream without a result");
    } else if (json_object_get(s.final, "result")) {
        json_t *r = json_object_get(s.final, "result");
        *code = (int)json_integer_value(json_object_get(r, "exit_code"));
        ret = 0;
    } else {
        const char *m = json_string_value(json_object_get(json_object_get(s.final, "error"), "message"));
        if (m && strstr(m, "timed out after")) {
            *timed_out = true;
            *code = 124;
            ret = 0;
        } else {
            /* A failure during the run: the sandbox stopped or the server
             * broke down; either way not the step's doing. */
            sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, WHO ": the command failed on the server: %s", m ? m : "no message");
        }
    }
    remote_http_resp_free(&resp);
    free(s.line);
    free(s.plain);
    json_decref(s.final);
    return ret;
}

static int sbx_exec(sbx_step_box *b, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                    sbx_step_output_fn out, void *ud, sbx_step_exit *ex, int *fail, sbx_err *err)
{
    memset(ex, 0, sizeof(*ex));
    int code = 0;
    bool to = false;
    if (run_streamed(b, argv, env, workdir, timeout_ms, out, ud, &code, &to, fail, err) < 0)
        return -1;
    ex->exit_code = code;
    ex->timed_out = to;
    return 0;
}

static int sbx_destroy(sbx_step_box *b, bool keep, sbx_err *err)
{
    if (!b)
        return 0;
    int rc = 0;
    if (!keep) {
        json_t *p = json_object();
        int fail;
        long status = 0;
        rc = call(b, "sandbox.delete", p, "delete the sandbox", NULL, &status, &fail, err);
        json_decref(p);
        if (rc < 0 && status == 404)
            err->code = SBX_E_NOTFOUND; /* gone already (the server restarted, or sbx rm) */
    }
    box_free(b);
    return rc;
}

static void sbx_shell_hint(const sbx_step_box *b, char *buf, size_t len)
{
    snprintf(buf, len,
             "MSB_SERVER_URL=%s sbx exec %s -- sh -c 'CMD'   (commands only: the msb API has no stdin; remove it: "
             "sbx rm %s)",
             b->base, b->name, b->name);
}

/* A kept sandbox: the name is all the calls need; its existence shows
 * at the first call (404 from sandbox.delete, 500 not running from
 * command.run). */
static int sbx_attach(const char *id, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    if (!*id || strlen(id) >= sizeof(((sbx_step_box *)0)->name))
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, WHO ": '%.80s' is not a sandbox name", id);
    return (*out = box_new(id, fail, err)) ? 0 : -1;
}

const sbx_step_backend sbx_step_backend_sbx = {
    .name = "sbx",
    .check = sbx_check,
    .create = sbx_create,
    .id = sbx_id,
    .upload = sbx_upload,
    .download = sbx_download,
    .exec = sbx_exec,
    .destroy = sbx_destroy,
    .shell_hint = sbx_shell_hint,
    .attach = sbx_attach,
};
