/* JSON-RPC 2.0 over POST, with microsandbox's error transport: envelope
 * errors as JSON-RPC errors, method failures as plain {"error","code"}
 * bodies with an HTTP status (see shared/protocols/microsandbox.md §4). */
#ifndef SBX_RPC_H
#define SBX_RPC_H

#include <jansson.h>
#include <stdbool.h>
#include "server.h"

typedef struct sbx_rpc_err {
    int http;
    int code;
    bool jsonrpc; /* as a JSON-RPC error object (else plain body) */
    char msg[1024];
    char detail[512]; /* sbx_rpc_internal's detail: logged, and the message of a stream's error line */
    char kind[40];    /* optional "error_code" of the plain body, e.g. RESOURCE_LIMIT_ERROR */
} sbx_rpc_err;

/* Fills e and returns -1. */
int sbx_rpc_fail(sbx_rpc_err *e, int http, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 500 {"error":"Internal server error","code":5002}; the detail is logged. */
int sbx_rpc_internal(sbx_rpc_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A method: params is an object or null; on success *result is set. */
typedef int (*sbx_rpc_fn)(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e);
typedef struct sbx_rpc_method {
    const char *name;
    sbx_rpc_fn fn;
    bool streams; /* honours "stream": true (see sbx_rpc_stream_begin) */
} sbx_rpc_method;

/* For streaming methods, on the calling thread: begin says the call is
 * valid and the reply may now be a stream (false when the caller did not
 * ask for one); output sends one line as a sandbox.output notification
 * (no-op when not streaming). */
bool sbx_rpc_stream_begin(void);
/* The calling client's socket (a duplicate owned by the call), to poll
 * for POLLRDHUP so the work stops when the client goes away: in a
 * streamed call, and in an unstreamed one of a method that can stream
 * (those run commands and code); -1 otherwise. */
int sbx_rpc_client_fd(void);
void sbx_rpc_stream_output(const char *stream, const char *text, size_t len);

/* Program output as a JSON string: bytes that are not UTF-8 become
 * U+FFFD, so binary or latin-1 output is shown, never dropped. */
json_t *sbx_rpc_text(const char *s, size_t n);

/* POST /api/v1/rpc (method from the body) or an alias route (method fixed). */
void sbx_rpc_handle(sbx_server *srv, const sbx_http_req *req, const char *fixed_method, const char *ns_claim,
                    sbx_http_resp *resp);

/* Set a response body from JSON (steals j). */
void sbx_resp_json(sbx_http_resp *resp, int status, json_t *j);
void sbx_resp_text(sbx_http_resp *resp, int status, const char *text);

/* Methods of src/proto/msb.c and src/proto/sessions_rpc.c; sbx_rpc_find
 * looks in both. */
const sbx_rpc_method *sbx_msb_find(const char *name);
const sbx_rpc_method *sbx_sessions_find(const char *name);
const sbx_rpc_method *sbx_rpc_find(const char *name);

#endif
