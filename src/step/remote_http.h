/* HTTP for the remote step backends (backend_e2b.c, backend_daytona.c):
 * one libcurl request at a time per call, a kept connection per sandbox,
 * and the failure classes of backend.h from transport errors and HTTP
 * statuses. */
#ifndef SBX_STEP_REMOTE_HTTP_H
#define SBX_STEP_REMOTE_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sbx/engine.h"

/* A keeper of one idle connection, so the calls on one sandbox reuse it;
 * concurrent calls each get their own. Thread-safe. */
typedef struct remote_http remote_http;

remote_http *remote_http_new(void);
void remote_http_free(remote_http *h);

/* Streams a response body: called for each chunk with the HTTP status;
 * false aborts the transfer. */
typedef bool (*remote_http_sink)(void *ud, long status, const char *data, size_t len);
/* For sinks: keeps what fits of an error reply's body in buf (cap bytes,
 * NUL-terminated, *len so far), for the failure message. */
void remote_http_keep_error(char *buf, size_t cap, size_t *len, const char *data, size_t n);

/* One multipart/form-data part: text (data) or a host file (file). */
typedef struct remote_http_part {
    const char *name;
    const char *data;     /* a text value, or NULL */
    const char *file;     /* a host file sent as the part's content, or NULL */
    const char *filename; /* the filename parameter, or NULL */
} remote_http_part;

typedef struct remote_http_req {
    const char *method;          /* "GET", "POST", "DELETE" */
    const char *url;
    const char *const *headers;  /* "Name: value", NULL-terminated; or NULL */
    const char *body;            /* the request body (body_len bytes), or NULL */
    size_t body_len;
    const remote_http_part *parts; /* multipart body instead, or NULL */
    size_t n_parts;
    uint64_t timeout_ms;         /* the whole exchange; 0: no limit */
    unsigned idle_s;             /* abort when nothing moves this long; 0: no limit */
    remote_http_sink sink;       /* NULL: the body is collected into the response */
    void *ud;
    bool no_proxy;               /* never through a proxy (sbx's own servers, as the sbx client) */
    bool must_finish;            /* creates or removes a sandbox: runs through a first interrupt
                                    (backend.h), a second stops it */
} remote_http_req;

typedef struct remote_http_resp {
    long status;            /* the HTTP status; 0 when no response came */
    char *body;             /* collected body, NUL-terminated (no sink) */
    size_t len;
    char content_type[256];
    int curl_code;          /* CURLE_OK, or why the exchange failed */
    char error[256];        /* libcurl's words for it */
    bool aborted;           /* the sink stopped it */
    bool interrupted;       /* an interrupt of the launcher stopped it (no response) */
} remote_http_resp;

/* 0 when a response came back (whatever its status; a sink's abort also
 * returns 0 with resp->aborted), -1 when the exchange failed (curl_code,
 * error say why). Free resp with remote_http_resp_free either way. */
int remote_http_do(remote_http *h, const remote_http_req *req, remote_http_resp *resp);
void remote_http_resp_free(remote_http_resp *resp);
/* True when the exchange failed by running past timeout_ms. */
bool remote_http_timed_out(const remote_http_resp *resp);

/* What an error body says: its "message" (or "error") string, else its
 * first bytes as text, else the status line's meaning. */
void remote_http_reason(const remote_http_resp *resp, char *out, size_t len);

/* Percent-encodes s for a query value (RFC 3986 unreserved kept);
 * malloc'd, NULL if out of memory. */
char *remote_http_escape(const char *s);

/* A base URL from an environment variable or a default: trailing '/'
 * dropped; must be http:// or https://. 0, or -1 with err (SBX_E_INVALID)
 * naming the variable and what is allowed. */
int remote_http_base_url(const char *var, const char *value, char *out, size_t len, sbx_err *err);

/* Fills err for a failed call and returns -1 with *fail set: no response,
 * 5xx, 408 and 429 are SBX_STEP_INFRA (retried), other statuses
 * SBX_STEP_REFUSED. who: the backend ("e2b"); what: the call ("create
 * the sandbox"); hint: appended for 401/403 (which variable to check). */
/* "K=V" entries as the JSON object of strings the remote APIs take for
 * env; a malformed entry is refused (SBX_STEP_REFUSED) naming who. */

json_t *remote_http_env_object(const char *who, char *const *env, int *fail, sbx_err *err);

int remote_http_fail(const char *who, const char *what, const remote_http_resp *resp, const char *hint, int *fail,
                     sbx_err *err);

#endif
