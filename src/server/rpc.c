#include "rpc.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    sbx_log(SBX_LOG_ERROR, "internal error: %s", detail);
    return sbx_rpc_fail(e, 500, 5002, "Internal server error");
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
    if (e->jsonrpc) {
        json_t *j = json_pack("{s:s, s:{s:i, s:s}}", "jsonrpc", "2.0", "error", "code", e->code, "message", e->msg);
        if (id)
            json_object_set(j, "id", id);
        sbx_resp_json(resp, e->http, j);
    } else {
        sbx_resp_json(resp, e->http, json_pack("{s:s, s:i}", "error", e->msg, "code", e->code));
    }
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
            e = (sbx_rpc_err){400, -32600, true, "Invalid or missing jsonrpc version field"};
            goto fail;
        }
        method = json_string_value(jm);
    } else if (json_is_object(body) && !params && !json_object_get(body, "method")) {
        params = body; /* alias routes may post the params object itself */
    }
    const sbx_rpc_method *m = sbx_msb_find(method);
    if (!m) {
        e = (sbx_rpc_err){404, -32601, true, ""};
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
    if (m->fn(srv, json_is_object(params) ? params : NULL, &result, &e) < 0)
        goto fail;
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
