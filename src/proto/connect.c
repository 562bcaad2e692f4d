/* Connect protocol framing, JSON codec (see connect.h). */
#include "connect.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const code_names[] = {
    "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
    "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented",
    "internal", "unavailable", "data_loss", "unauthenticated",
};

const char *sbx_connect_code_name(int code)
{
    return code > 0 && code < (int)(sizeof(code_names) / sizeof(code_names[0])) ? code_names[code] : "unknown";
}

/* connectrpc.com/docs/protocol#error-codes */
int sbx_connect_code_http(int code)
{
    switch (code) {
    case SBX_CONNECT_CANCELED: return 499;
    case SBX_CONNECT_INVALID_ARGUMENT: return 400;
    case SBX_CONNECT_DEADLINE_EXCEEDED: return 504;
    case SBX_CONNECT_NOT_FOUND: return 404;
    case SBX_CONNECT_ALREADY_EXISTS: return 409;
    case SBX_CONNECT_PERMISSION_DENIED: return 403;
    case SBX_CONNECT_RESOURCE_EXHAUSTED: return 429;
    case SBX_CONNECT_FAILED_PRECONDITION: return 400;
    case SBX_CONNECT_ABORTED: return 409;
    case SBX_CONNECT_OUT_OF_RANGE: return 400;
    case SBX_CONNECT_UNIMPLEMENTED: return 501;
    case SBX_CONNECT_UNAVAILABLE: return 503;
    case SBX_CONNECT_UNAUTHENTICATED: return 401;
    default: return 500;
    }
}

int sbx_connect_fail(sbx_connect_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->code = code;
    return -1;
}

/* The media type of a Content-Type value, without parameters. */
static bool media_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; \t");
    return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

static int parse_json(const char *data, size_t len, json_t **msg, sbx_connect_err *e)
{
    if (len == 0) { /* an empty message may be sent as nothing at all */
        *msg = json_object();
        return 0;
    }
    json_error_t jerr;
    json_t *j = json_loadb(data, len, 0, &jerr);
    if (!j)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "request message is not valid JSON: %s", jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "request message must be a JSON object");
    }
    *msg = j;
    return 0;
}

int sbx_connect_read_request(const sbx_http_req *req, bool stream, json_t **msg, sbx_connect_err *e,
                             int *http_status)
{
    *msg = NULL;
    *http_status = 0;
    const char *ct = sbx_http_header(req, "Content-Type");
    const char *want = stream ? "application/connect+json" : "application/json";
    if (!media_is(ct, want)) {
        *http_status = 415; /* the codec itself is refused (binary protobuf, ...) */
        return sbx_connect_fail(e, SBX_CONNECT_UNIMPLEMENTED, "content type '%s' is not supported (sbx speaks %s)",
                                ct ? ct : "(none)", want);
    }
    const char *enc = sbx_http_header(req, stream ? "Connect-Content-Encoding" : "Content-Encoding");
    if (enc && strcasecmp(enc, "identity") != 0)
        return sbx_connect_fail(e, SBX_CONNECT_UNIMPLEMENTED, "compression '%s' is not supported (only identity)", enc);
    if (!stream)
        return parse_json(req->body, req->body_len, msg, e);
    const unsigned char *b = (const unsigned char *)req->body;
    if (req->body_len < 5)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT,
                                "malformed envelope: %zu bytes, a frame needs at least 5", req->body_len);
    uint32_t n = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
    if (b[0] & SBX_CONNECT_FLAG_COMPRESSED)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "compressed envelopes are not supported");
    if (b[0] != 0)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "malformed envelope: unexpected flags 0x%02x", b[0]);
    if ((uint64_t)n > req->body_len - 5)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT,
                                "malformed envelope: frame of %u bytes but only %zu follow", n, req->body_len - 5);
    if ((uint64_t)n < req->body_len - 5)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT,
                                "a server-streaming call takes exactly one message (%zu trailing bytes)",
                                req->body_len - 5 - n);
    return parse_json(req->body + 5, n, msg, e);
}

uint64_t sbx_connect_timeout_ms(const sbx_http_req *req)
{
    const char *s = sbx_http_header(req, "Connect-Timeout-Ms");
    if (!s || !*s || strlen(s) > 10)
        return 0; /* the protocol allows at most 10 digits */
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

void sbx_connect_reply(sbx_http_resp *resp, json_t *msg)
{
    resp->status = 200;
    resp->content_type = "application/json";
    resp->body = json_dumps(msg, JSON_COMPACT);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(msg);
}

static json_t *error_json(const sbx_connect_err *e)
{
    char msg[sizeof(e->msg)];
    snprintf(msg, sizeof(msg), "%s", e->msg);
    sbx_utf8_sanitize(msg); /* messages quote paths, which need not be UTF-8 */
    return json_pack("{s:s, s:s}", "code", sbx_connect_code_name(e->code), "message", msg);
}

void sbx_connect_reply_error(sbx_http_resp *resp, const sbx_connect_err *e)
{
    json_t *j = error_json(e);
    resp->status = sbx_connect_code_http(e->code);
    resp->content_type = "application/json";
    resp->body = json_dumps(j, JSON_COMPACT);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(j);
}

char *sbx_connect_envelope(int flags, json_t *j, size_t *len)
{
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *buf = malloc(n + 5);
    if (buf) {
        buf[0] = (char)flags;
        buf[1] = (char)(n >> 24);
        buf[2] = (char)(n >> 16);
        buf[3] = (char)(n >> 8);
        buf[4] = (char)n;
        memcpy(buf + 5, text, n);
        *len = n + 5;
    }
    free(text);
    return buf;
}

char *sbx_connect_end_envelope(const sbx_connect_err *e, size_t *len)
{
    json_t *j = e && e->code ? json_pack("{s:o, s:{}}", "error", error_json(e), "metadata") : json_object();
    char *buf = sbx_connect_envelope(SBX_CONNECT_FLAG_END, j, len);
    json_decref(j);
    return buf;
}

void sbx_connect_reply_stream_error(sbx_http_resp *resp, const sbx_connect_err *e)
{
    resp->status = 200;
    resp->content_type = "application/connect+json";
    resp->body = sbx_connect_end_envelope(e, &resp->body_len);
    if (!resp->body)
        resp->body_len = 0;
}

void sbx_connect_reply_stream(sbx_http_resp *resp, sbx_http_stream_fn fn, void *ud)
{
    resp->status = 200;
    resp->content_type = "application/connect+json";
    resp->stream = fn;
    resp->stream_ud = ud;
}

int sbx_connect_stream_send(sbx_http_stream *s, int flags, json_t *j)
{
    size_t n;
    char *buf = sbx_connect_envelope(flags, j, &n);
    if (!buf)
        return -1;
    int r = sbx_http_stream_write(s, buf, n);
    free(buf);
    return r;
}

int sbx_connect_stream_end(sbx_http_stream *s, const sbx_connect_err *e)
{
    size_t n;
    char *buf = sbx_connect_end_envelope(e, &n);
    if (!buf)
        return -1;
    int r = sbx_http_stream_write(s, buf, n);
    free(buf);
    return r;
}

/* ---- proto3 JSON helpers ------------------------------------------------- */

void sbx_utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : (*p & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = n > 0 && !(n == 2 && *p < 0xC2) && !(n == 4 && *p > 0xF4);
        for (int i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (ok && n == 3) { /* no overlongs, no surrogates */
            unsigned cp = (unsigned)(p[0] & 0x0F) << 12 | (unsigned)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && n == 4) {
            unsigned cp = (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3F) << 12;
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

void sbx_rfc3339(char out[40], time_t sec, long nsec)
{
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (nsec > 0)
        snprintf(out + n, 40 - n, ".%09ldZ", nsec);
    else
        snprintf(out + n, 40 - n, "Z");
}

void sbx_rfc3339_ms(char out[40], int64_t unix_ms)
{
    time_t sec = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)(unix_ms % 1000));
}

static int digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

int sbx_rfc3339_parse(const char *s, int64_t *unix_ms)
{
    int Y, M, D, h, m, sec;
    const char *p = s;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D) ||
        (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' || digits(&p, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    int64_t ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        for (; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd < 3)
                ms = ms * 10 + (*p - '0');
        if (nd == 0)
            return -1;
        for (; nd < 3; nd++)
            ms *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return -1;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    *unix_ms = ((int64_t)t - off) * 1000 + ms;
    return 0;
}
