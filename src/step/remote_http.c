/* HTTP for the remote step backends, on libcurl. See remote_http.h. */
#include "remote_http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"

/* Collected bodies are JSON replies and error texts: anything larger is
 * not what the backends expect. */
#define COLLECT_MAX (8u << 20)

struct remote_http {
    pthread_mutex_t lock;
    CURL *idle; /* its connection stays open for the next call */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

remote_http *remote_http_new(void)
{
    pthread_once(&curl_once, curl_init);
    remote_http *h = calloc(1, sizeof(*h));
    if (h)
        pthread_mutex_init(&h->lock, NULL);
    return h;
}

void remote_http_free(remote_http *h)
{
    if (!h)
        return;
    if (h->idle)
        curl_easy_cleanup(h->idle);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static CURL *take_handle(remote_http *h)
{
    pthread_mutex_lock(&h->lock);
    CURL *c = h->idle;
    h->idle = NULL;
    pthread_mutex_unlock(&h->lock);
    if (c) {
        curl_easy_reset(c); /* options go, the connection stays */
        return c;
    }
    return curl_easy_init();
}

static void give_handle(remote_http *h, CURL *c)
{
    pthread_mutex_lock(&h->lock);
    if (!h->idle) {
        h->idle = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c)
        curl_easy_cleanup(c);
}

typedef struct body_ctx {
    const remote_http_req *req;
    remote_http_resp *resp;
    CURL *c;
    size_t cap;
} body_ctx;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    body_ctx *b = ud;
    size_t len = size * n;
    remote_http_resp *r = b->resp;
    if (!r->status)
        curl_easy_getinfo(b->c, CURLINFO_RESPONSE_CODE, &r->status);
    if (b->req->sink) {
        if (b->req->sink(b->req->ud, r->status, p, len))
            return len;
        r->aborted = true;
        return 0;
    }
    if (r->len + len > COLLECT_MAX) {
        snprintf(r->error, sizeof(r->error), "the reply is larger than %u MiB", COLLECT_MAX >> 20);
        return 0;
    }
    if (r->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            snprintf(r->error, sizeof(r->error), "out of memory");
            return 0;
        }
        r->body = nb;
        b->cap = cap;
    }
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* Called by libcurl at least once a second, also while nothing moves:
 * how an interrupt of the launcher stops an exchange in flight. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    body_ctx *b = ud;
    if (!sbx_step_stopping(b->req->must_finish))
        return 0;
    b->resp->interrupted = true;
    return 1;
}

static int add_parts(CURL *c, const remote_http_req *req, curl_mime **out)
{
    curl_mime *m = curl_mime_init(c);
    if (!m)
        return -1;
    for (size_t i = 0; i < req->n_parts; i++) {
        const remote_http_part *p = &req->parts[i];
        curl_mimepart *mp = curl_mime_addpart(m);
        if (!mp || curl_mime_name(mp, p->name) != CURLE_OK ||
            (p->data && curl_mime_data(mp, p->data, CURL_ZERO_TERMINATED) != CURLE_OK) ||
            (p->file && curl_mime_filedata(mp, p->file) != CURLE_OK) ||
            /* filedata sets the host file's basename: the part's own name wins */
            (p->file && curl_mime_filename(mp, p->filename) != CURLE_OK) ||
            (!p->file && p->filename && curl_mime_filename(mp, p->filename) != CURLE_OK) ||
            (p->file && curl_mime_type(mp, "application/octet-stream") != CURLE_OK)) {
            curl_mime_free(m);
            return -1;
        }
    }
    *out = m;
    return 0;
}

int remote_http_do(remote_http *h, const remote_http_req *req, remote_http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    CURL *c = take_handle(h);
    struct curl_slist *hdrs = NULL;
    curl_mime *mime = NULL;
    bool ok = c != NULL;
    /* No "Expect: 100-continue" pause before bodies. */
    ok = ok && (hdrs = curl_slist_append(hdrs, "Expect:")) != NULL;
    for (size_t i = 0; ok && req->headers && req->headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(hdrs, req->headers[i]);
        ok = n != NULL;
        if (n)
            hdrs = n;
    }
    if (ok && req->parts && add_parts(c, req, &mime) < 0)
        ok = false;
    if (!ok) {
        resp->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(resp->error, sizeof(resp->error), "cannot set up the request (out of memory)");
        curl_slist_free_all(hdrs);
        if (c)
            curl_easy_cleanup(c);
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    body_ctx b = {.req = req, .resp = resp, .c = c};
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sbx-step/1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &b);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (req->timeout_ms)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    if (req->no_proxy)
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (req->idle_s) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)req->idle_s);
    }
    if (mime)
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    else if (req->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
    }
    if (strcmp(req->method, "GET") == 0)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    else if (strcmp(req->method, "POST") == 0) {
        if (!mime && !req->body)
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    } else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);

    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char *ct = NULL;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(resp->content_type, sizeof(resp->content_type), "%s", ct);
    curl_slist_free_all(hdrs);
    curl_mime_free(mime);
    /* A handle whose transfer broke off may hold a connection in an unknown state. */
    if (rc == CURLE_OK)
        give_handle(h, c);
    else
        curl_easy_cleanup(c);
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && resp->aborted)) {
        resp->status = status;
        return 0;
    }
    resp->status = 0;
    resp->curl_code = (int)rc;
    if (resp->interrupted)
        snprintf(resp->error, sizeof(resp->error), "interrupted (the launcher got a signal)");
    else if (!resp->error[0])
        snprintf(resp->error, sizeof(resp->error), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    return -1;
}

void remote_http_resp_free(remote_http_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

bool remote_http_timed_out(const remote_http_resp *resp)
{
    return resp->curl_code == CURLE_OPERATION_TIMEDOUT;
}

void remote_http_reason(const remote_http_resp *resp, char *out, size_t len)
{
    json_t *j = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL;
    const char *m = NULL;
    if (json_is_object(j)) {
        static const char *const keys[] = {"message", "error", "detail"};
        for (size_t i = 0; !m && i < sizeof(keys) / sizeof(keys[0]); i++) {
            json_t *v = json_object_get(j, keys[i]);
            if (json_is_string(v) && *json_string_value(v))
                m = json_string_value(v);
            else if (json_is_object(v) && json_is_string(json_object_get(v, "message")))
                m = json_string_value(json_object_get(v, "message")); /* Connect's {"error":{...}} */
        }
    }
    if (m) {
        snprintf(out, len, "%s", m);
    } else if (resp->len) {
        /* Plain text (a proxy's error page): its first line, printable only. */
        size_t n = 0;
        for (size_t i = 0; i < resp->len && n + 1 < len && n < 200 && resp->body[i] != '\n'; i++)
            out[n++] = resp->body[i] >= 0x20 && resp->body[i] < 0x7f ? resp->body[i] : '?';
        out[n] = '\0';
    } else {
        snprintf(out, len, "no details in the reply");
    }
    json_decref(j);
}

char *remote_http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = malloc(strlen(s) * 3 + 1), *p = o;
    if (!o)
        return NULL;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || strchr("-._~", *q)) {
            *p++ = (char)*q;
        } else {
            *p++ = '%';
            *p++ = hex[*q >> 4];
            *p++ = hex[*q & 15];
        }
    }
    *p = '\0';
    return o;
}

int remote_http_base_url(const char *var, const char *value, char *out, size_t len, sbx_err *err)
{
    size_t n = strlen(value);
    while (n && value[n - 1] == '/')
        n--;
    bool scheme = strncmp(value, "http://", 7) == 0 || strncmp(value, "https://", 8) == 0;
    size_t host = scheme ? (value[4] == 's' ? 8 : 7) : 0;
    if (!scheme || n <= host || strpbrk(value, " \t\r\n?#")) {
        snprintf(err->msg, sizeof(err->msg),
                 "%s '%s' is not a URL: allowed is http://HOST[:PORT][/PATH] or https://...", var, value);
        err->code = SBX_E_INVALID;
        err->sys_errno = 0;
        return -1;
    }
    if (n >= len) {
        snprintf(err->msg, sizeof(err->msg), "%s is too long (at most %zu characters)", var, len - 1);
        err->code = SBX_E_INVALID;
        err->sys_errno = 0;
        return -1;
    }
    memcpy(out, value, n);
    out[n] = '\0';
    return 0;
}

int remote_http_fail(const char *who, const char *what, const remote_http_resp *resp, const char *hint, int *fail,
                     sbx_err *err)
{
    err->sys_errno = 0;
    if (!resp->status) {
        *fail = SBX_STEP_INFRA;
        err->code = SBX_E_SYSTEM;
        snprintf(err->msg, sizeof(err->msg), "%s: cannot %s: %s", who, what,
                 resp->error[0] ? resp->error : "no reply");
        return -1;
    }
    char reason[300];
    remote_http_reason(resp, reason, sizeof(reason));
    long st = resp->status;
    bool infra = st >= 500 || st == 408 || st == 429;
    *fail = infra ? SBX_STEP_INFRA : SBX_STEP_REFUSED;
    err->code = infra ? SBX_E_SYSTEM : SBX_E_INVALID;
    snprintf(err->msg, sizeof(err->msg), "%s: cannot %s: HTTP %ld: %s%s%s", who, what, st, reason,
             (st == 401 || st == 403) && hint ? "; " : "", (st == 401 || st == 403) && hint ? hint : "");
    return -1;
}

json_t *remote_http_env_object(const char *who, char *const *env, int *fail, sbx_err *err)
{
    json_t *o = json_object();
    for (size_t i = 0; o && env && env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        char name[256];
        json_t *v = eq ? json_stringn(eq + 1, strlen(eq + 1)) : NULL;
        if (!eq || eq == env[i] || (size_t)(eq - env[i]) >= sizeof(name) || !v) {
            json_decref(v);
            json_decref(o);
            sbx_step_refuse(fail, err, "%s: environment entry '%.60s' is not NAME=VALUE (a name under 256 bytes, UTF-8 text)",
                            who, env[i]);
            return NULL;
        }
        memcpy(name, env[i], (size_t)(eq - env[i]));
        name[eq - env[i]] = '\0';
        json_object_set_new(o, name, v);
    }
    if (!o)
        sbx_step_refuse(fail, err, "%s: out of memory", who);
    return o;
}

void remote_http_keep_error(char *buf, size_t cap, size_t *len, const char *data, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}
