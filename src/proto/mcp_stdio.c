/* `sbx mcp`: the MCP server over stdio for agents that spawn their tools
 * (newline-delimited JSON-RPC: one message per line in, one reply per line
 * out; stdout carries nothing else, diagnostics go to stderr). Each tool
 * call is forwarded to a running sbx server's POST /api/v1/rpc, found at
 * MSB_SERVER_URL (default http://127.0.0.1:5555) with MSB_API_KEY as its
 * key, as the microsandbox SDKs do. Messages are handled one at a time. */
#include "mcp.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fwd {
    CURL *curl;
    char url[2048];
    char *auth; /* "Authorization: Bearer <key>" or NULL */
    json_int_t next_id;
} fwd;

typedef struct buf {
    char *p;
    size_t len;
} buf;

static size_t collect(char *d, size_t s, size_t n, void *ud)
{
    buf *b = ud;
    char *np = realloc(b->p, b->len + s * n + 1);
    if (!np)
        return 0; /* curl reports a write error */
    memcpy(np + b->len, d, s * n);
    b->len += s * n;
    np[b->len] = '\0';
    b->p = np;
    return s * n;
}

/* The server's failure as a readable text: a plain {"error","code"} body
 * (§4), a JSON-RPC error object, or the raw body. */
static void error_text(long status, const buf *b, json_t *j, char *errmsg, size_t errlen)
{
    json_t *e = json_object_get(j, "error");
    if (json_is_string(e))
        snprintf(errmsg, errlen, "%s", json_string_value(e));
    else if (json_is_string(json_object_get(e, "message")))
        snprintf(errmsg, errlen, "%s", json_string_value(json_object_get(e, "message")));
    else if (b->len)
        snprintf(errmsg, errlen, "HTTP %ld: %.300s", status, b->p);
    else
        snprintf(errmsg, errlen, "HTTP %ld", status);
}

static int forward(void *ud, const char *method, json_t *params, json_t **result, char *errmsg, size_t errlen)
{
    fwd *f = ud;
    *result = NULL;
    json_t *req = json_pack("{s:s, s:s, s:O, s:I}", "jsonrpc", "2.0", "method", method, "params",
                            params ? params : json_null(), "id", f->next_id++);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (f->auth)
        h = curl_slist_append(h, f->auth);
    buf b = {0};
    curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(f->curl);
    long status = 0;
    curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    free(body);
    int ret = -1;
    if (rc != CURLE_OK) {
        snprintf(errmsg, errlen, "cannot reach the sbx server at %s: %s", f->url, curl_easy_strerror(rc));
        goto out;
    }
    json_t *j = json_loadb(b.p ? b.p : "", b.len, 0, NULL);
    if (status == 200 && json_is_object(j) && json_object_get(j, "result")) {
        *result = json_incref(json_object_get(j, "result"));
        ret = 0;
    } else {
        error_text(status, &b, j, errmsg, errlen);
    }
    json_decref(j);
out:
    free(b.p);
    return ret;
}

static void write_reply(json_t *reply)
{
    char *line = json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(12)); /* strings escape \n: one line */
    if (line) {
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(line);
}

int sbx_mcp_stdio_main(int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "usage: sbx mcp\n\nServes MCP over stdio (one JSON-RPC message per line) for agents that spawn\n"
                "their tools; every tool call goes to a running sbx server:\n"
                "  MSB_SERVER_URL  the server (default http://127.0.0.1:5555)\n"
                "  MSB_API_KEY     its API key (sbx server keygen), unless it runs with --dev\n");
        return help ? 0 : 125;
    }
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up ends the loop, not the process by signal */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "sbx mcp: cannot initialise libcurl\n");
        return 1;
    }
    fwd f = {.next_id = 1};
    const char *base = getenv("MSB_SERVER_URL");
    if (!base || !*base)
        base = "http://127.0.0.1:5555";
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(f.url, sizeof(f.url), "%.*s/api/v1/rpc", (int)(bl < 2000 ? bl : 2000), base);
    const char *key = getenv("MSB_API_KEY");
    if (key && *key && asprintf(&f.auth, "Authorization: Bearer %s", key) < 0)
        f.auth = NULL;
    f.curl = curl_easy_init();
    if (!f.curl) {
        fprintf(stderr, "sbx mcp: cannot initialise libcurl\n");
        free(f.auth);
        return 1;
    }
    curl_easy_setopt(f.curl, CURLOPT_URL, f.url);
    curl_easy_setopt(f.curl, CURLOPT_NOPROXY, "*"); /* a proxy must not see our loopback traffic (§8.4) */
    curl_easy_setopt(f.curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(f.curl, CURLOPT_WRITEFUNCTION, collect);
    /* No overall timeout: a start may take minutes, commands carry their own. */

    /* The revision negotiated by initialize decides whether batches are allowed. */
    char version[32] = "";
    sbx_mcp_ctx ctx = {.call = forward, .ud = &f};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        json_error_t jerr;
        json_t *msg = json_loadb(line, (size_t)n, 0, &jerr);
        json_t *reply;
        if (!msg) {
            char m[300];
            snprintf(m, sizeof(m), "Parse error: %s at column %d", jerr.text, jerr.column);
            reply = sbx_mcp_error(NULL, -32700, m);
        } else {
            ctx.protocol_version = version[0] ? version : NULL;
            reply = sbx_mcp_handle(&ctx, msg);
            if (!json_is_array(msg) && json_is_string(json_object_get(msg, "method")) &&
                strcmp(json_string_value(json_object_get(msg, "method")), "initialize") == 0)
                snprintf(version, sizeof(version), "%s", sbx_mcp_negotiate(json_object_get(msg, "params")));
        }
        if (reply)
            write_reply(reply);
        json_decref(reply);
        json_decref(msg);
        if (ferror(stdout)) {
            fprintf(stderr, "sbx mcp: stdout closed\n");
            rc = 1;
            break;
        }
    }
    free(line);
    curl_easy_cleanup(f.curl);
    curl_global_cleanup();
    free(f.auth);
    return rc;
}
