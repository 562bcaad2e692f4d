#include "rpc.h"
#include "../proto/connect.h" /* sbx_utf8_sanitize */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int sbx_rpc_fail(sbx_rpc_err *e, int http, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->http = http;
    e->code = code;
    e->jsonrpc = false;
    return -1;
}

int sbx_rpc_internal(sbx_rpc_err *e, const char *fmt, ...)
{
    char detail[sizeof(e->detail)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    sbx_log(SBX_LOG_ERROR, "internal error: %s", detail);
    sbx_rpc_fail(e, 500, 5002, "Internal server error");
    memcpy(e->detail, detail, sizeof(detail));
    return -1;
}

void sbx_resp_json(sbx_http_resp *resp, int status, json_t *j)
{
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(j);
}

void sbx_resp_text(sbx_http_resp *resp, int status, const char *text)
{
    resp->status = status;
    resp->content_type = "text/plain; charset=utf-8";
    resp->body = strdup(text);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
}

static void reply_error(sbx_http_resp *resp, const sbx_rpc_err *e, json_t *id)
{
    /* Messages are cut at their buffer's size, possibly inside a UTF-8
     * character; jansson refuses invalid UTF-8 and the body would be
     * empty (found by tests/fuzz/fuzz_rpc.c). */
    char msg[sizeof(e->msg)];
    snprintf(msg, sizeof(msg), "%s", e->msg);
    sbx_utf8_sanitize(msg);
    if (e->jsonrpc) {
        json_t *j = json_pack("{s:s, s:{s:i, s:s}}", "jsonrpc", "2.0", "error", "code", e->code, "message", msg);
        if (id)
            json_object_set(j, "id", id);
        sbx_resp_json(resp, e->http, j);
    } else {
        json_t *j = json_pack("{s:s, s:i}", "error", msg, "code", e->code);
        if (e->kind[0])
            json_object_set_new(j, "error_code", json_string(e->kind));
        sbx_resp_json(resp, e->http, j);
    }
}

const sbx_rpc_method *sbx_rpc_find(const char *name)
{
    const sbx_rpc_method *m = sbx_msb_find(name);
    return m ? m : sbx_sessions_find(name);
}

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, "application/json", 16) == 0 &&
           (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

/* ---- streamed calls ("stream": true) --------------------------------------
 * The method runs on its own thread. Until it calls sbx_rpc_stream_begin
 * (after validating and finding its sandbox) nothing is sent, so early
 * failures keep their status codes; after that, the request thread answers
 * with an NDJSON body fed by sbx_rpc_stream_output, ended by the ordinary
 * response envelope (or a -32603 error line). */
enum { JOB_PENDING, JOB_STREAMING, JOB_DONE };
struct stream_job {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state, refs;
    sbx_server *srv;
    const sbx_rpc_method *m;
    json_t *params, *id, *result;
    sbx_rpc_err e;
    int rc;
    sbx_http_stream *stream;
    int client_fd; /* a duplicate of the client's socket, or -1 */
};

static _Thread_local struct stream_job *cur_job;
static _Thread_local int cur_client = -1; /* unstreamed calls: see sbx_rpc_client_fd */

static void job_unref(struct stream_job *j)
{
    pthread_mutex_lock(&j->lock);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->lock);
    if (last) {
        if (j->client_fd >= 0)
            close(j->client_fd);
        json_decref(j->params);
        json_decref(j->id);
        json_decref(j->result);
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->cond);
        free(j);
    }
}

bool sbx_rpc_stream_begin(void)
{
    struct stream_job *j = cur_job;
    if (!j || j->stream)
        return j != NULL;
    sbx_http_stream *s = sbx_http_stream_open();
    if (!s)
        return false;
    pthread_mutex_lock(&j->lock);
    j->stream = s;
    j->state = JOB_STREAMING;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
    return true;
}

int sbx_rpc_client_fd(void)
{
    struct stream_job *j = cur_job;
    if (j)
        return j->stream ? j->client_fd : -1;
    return cur_client;
}

static void stream_line(struct stream_job *j, json_t *msg)
{
    char *line = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(msg);
    if (!line)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* replaces the NUL; written with its length */
    sbx_http_stream_write(j->stream, line, n + 1);
    free(line);
}

json_t *sbx_rpc_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    /* Not UTF-8: copy valid sequences, U+FFFD for each bad byte. */
    char *o = malloc(n * 3 + 1);
    if (!o)
        return json_string("");
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && !(len == 2 && c < 0xC2) && !(len == 4 && c > 0xF4);
        for (size_t t = 1; ok && t < len; t++)
            ok = (p[i + t] & 0xC0) == 0x80;
        if (ok && len == 3) { /* no overlongs, no surrogates */
            unsigned cp = (c & 0x0Fu) << 12 | (p[i + 1] & 0x3Fu) << 6 | (p[i + 2] & 0x3Fu);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && len == 4) {
            unsigned cp = (c & 0x07u) << 18 | (p[i + 1] & 0x3Fu) << 12;
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
            continue;
        }
        memcpy(o + k, p + i, len);
        k += len;
        i += len;
    }
    j = json_stringn(o, k);
    free(o);
    return j ? j : json_string("");
}

void sbx_rpc_stream_output(const char *stream, const char *text, size_t len)
{
    struct stream_job *j = cur_job;
    if (!j || !j->stream)
        return;
    json_t *params = json_pack("{s:O?, s:s, s:o}", "id", j->id, "stream", stream, "text", sbx_rpc_text(text, len));
    stream_line(j, json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", "sandbox.output", "params", params));
}

static void *stream_main(void *arg)
{
    struct stream_job *j = arg;
    cur_job = j;
    json_t *result = NULL;
    sbx_rpc_err e = {0};
    int rc = j->m->fn(j->srv, j->params, &result, &e);
    cur_job = NULL;
    pthread_mutex_lock(&j->lock);
    bool streaming = j->state == JOB_STREAMING;
    if (!streaming) {
        j->rc = rc;
        j->result = result;
        j->e = e;
        j->state = JOB_DONE;
        pthread_cond_broadcast(&j->cond);
    }
    pthread_mutex_unlock(&j->lock);
    if (streaming) {
        json_t *last;
        if (rc == 0) {
            last = json_pack("{s:s, s:o}", "jsonrpc", "2.0", "result", result ? result : json_null());
        } else {
            char msg[sizeof(e.msg)]; /* as in reply_error: valid UTF-8, or no last line at all */
            snprintf(msg, sizeof(msg), "%s", e.detail[0] ? e.detail : e.msg);
            sbx_utf8_sanitize(msg);
            last = json_pack("{s:s, s:{s:i, s:s}}", "jsonrpc", "2.0", "error", "code", -32603, "message", msg);
        }
        if (j->id)
            json_object_set(last, "id", j->id);
        stream_line(j, last);
        sbx_http_stream_close(j->stream);
    }
    job_unref(j);
    return NULL;
}

/* Runs m with streaming; 1 if the response is a stream, 0 if it finished
 * before streaming (then *result / *e as for a plain call, and rc). */
static int run_streamed(sbx_server *srv, const sbx_rpc_method *m, json_t *params, json_t *id, json_t **result,
                        sbx_rpc_err *e, int *rc, sbx_http_resp *resp, int client_fd)
{
    struct stream_job *j = calloc(1, sizeof(*j));
    if (!j) {
        if (client_fd >= 0)
            close(client_fd);
        *rc = sbx_rpc_internal(e, "out of memory");
        return 0;
    }
    j->client_fd = client_fd;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    j->srv = srv;
    j->m = m;
    j->params = json_incref(params);
    j->id = id ? json_incref(id) : NULL;
    j->refs = 2;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, stream_main, j) != 0) {
        pthread_attr_destroy(&a);
        j->refs = 1;
        job_unref(j);
        *rc = sbx_rpc_internal(e, "cannot start a thread");
        return 0;
    }
    pthread_attr_destroy(&a);
    pthread_mutex_lock(&j->lock);
    while (j->state == JOB_PENDING)
        pthread_cond_wait(&j->cond, &j->lock);
    int streaming = j->state == JOB_STREAMING;
    if (!streaming) {
        *rc = j->rc;
        *result = j->result;
        j->result = NULL;
        *e = j->e;
    }
    pthread_mutex_unlock(&j->lock);
    if (streaming) {
        resp->status = 200;
        resp->content_type = "application/x-ndjson";
        resp->stream_obj = j->stream;
    }
    job_unref(j);
    return streaming;
}

void sbx_rpc_handle(sbx_server *srv, const sbx_http_req *req, const char *fixed_method, const char *ns_claim,
                    sbx_http_resp *resp)
{
    if (!is_json_type(sbx_http_header(req, "Content-Type"))) {
        sbx_resp_text(resp, 415, "Expected request with `Content-Type: application/json`");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Failed to parse the request body as JSON: %s at line %d column %d", jerr.text,
                 jerr.line, jerr.column);
        sbx_resp_text(resp, 400, msg);
        return;
    }
    sbx_rpc_err e = {0};
    json_t *id = json_object_get(body, "id");
    json_t *params = json_object_get(body, "params");
    const char *method = fixed_method;
    if (!fixed_method) {
        json_t *jv = json_object_get(body, "jsonrpc"), *jm = json_object_get(body, "method");
        if (!json_is_object(body) || !jv || !json_is_string(jm)) {
            sbx_resp_text(resp, 422,
                          "Failed to deserialize the JSON body into the target type: missing field `jsonrpc` or `method`");
            json_decref(body);
            return;
        }
        if (!json_is_string(jv) || strcmp(json_string_value(jv), "2.0") != 0) {
            e = (sbx_rpc_err){.http = 400, .code = -32600, .jsonrpc = true, .msg = "Invalid or missing jsonrpc version field"};
            goto fail;
        }
        method = json_string_value(jm);
    } else if (json_is_object(body) && !params && !json_object_get(body, "method")) {
        params = body; /* alias routes may post the params object itself */
    }
    const sbx_rpc_method *m = sbx_rpc_find(method);
    if (!m) {
        e = (sbx_rpc_err){.http = 404, .code = -32601, .jsonrpc = true};
        snprintf(e.msg, sizeof(e.msg), "Method not found: %s", method);
        goto fail;
    }
    if (params && !json_is_object(params) && !json_is_null(params)) {
        sbx_rpc_fail(&e, 400, 2001, "Invalid params for %s: params must be an object", method);
        goto fail;
    }
    /* A key bound to a namespace may only act in it. */
    if (ns_claim && strcmp(ns_claim, "*") != 0) {
        json_t *ns = json_object_get(params, "namespace");
        if (!json_is_string(ns)) {
            sbx_rpc_fail(&e, 400, 2001, "Missing or invalid 'namespace' in params for method '%s'", method);
            goto fail;
        }
        if (strcmp(json_string_value(ns), ns_claim) != 0) {
            sbx_rpc_fail(&e, 403, 3001, "Access denied");
            goto fail;
        }
    }
    json_t *result = NULL;
    json_t *jstream = json_object_get(params, "stream");
    if (m->streams && json_is_true(jstream)) {
        int rc = 0;
        if (run_streamed(srv, m, params, id, &result, &e, &rc, resp, sbx_http_client_socket(req))) {
            json_decref(body);
            return;
        }
        if (rc < 0)
            goto fail;
    } else {
        /* Work a client asked for stops when it goes away, answer or not. */
        cur_client = m->streams ? sbx_http_client_socket(req) : -1;
        int rc = m->fn(srv, json_is_object(params) ? params : NULL, &result, &e);
        if (cur_client >= 0)
            close(cur_client);
        cur_client = -1;
        if (rc < 0)
            goto fail;
    }
    json_t *ok = json_pack("{s:s, s:o}", "jsonrpc", "2.0", "result", result ? result : json_null());
    if (id)
        json_object_set(ok, "id", id);
    sbx_resp_json(resp, 200, ok);
    json_decref(body);
    return;
fail:
    reply_error(resp, &e, id);
    json_decref(body);
}
