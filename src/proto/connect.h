/* The Connect protocol (connectrpc.com/docs/protocol) over HTTP/1.1 with
 * the JSON codec only: unary calls (bare JSON in and out) and server
 * streams (5-byte envelopes: flags u8, length u32 big-endian, JSON; the
 * last one flagged end-of-stream). Also the proto3-JSON helpers the
 * services need (bytes as base64, RFC 3339 timestamps). Service logic
 * lives in the protocol modules; this file only frames. */
#ifndef SBX_CONNECT_H
#define SBX_CONNECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "b64.h"
#include "http.h"

/* Connect error codes, numbered as gRPC's. */
enum sbx_connect_code {
    SBX_CONNECT_OK = 0,
    SBX_CONNECT_CANCELED = 1,
    SBX_CONNECT_UNKNOWN = 2,
    SBX_CONNECT_INVALID_ARGUMENT = 3,
    SBX_CONNECT_DEADLINE_EXCEEDED = 4,
    SBX_CONNECT_NOT_FOUND = 5,
    SBX_CONNECT_ALREADY_EXISTS = 6,
    SBX_CONNECT_PERMISSION_DENIED = 7,
    SBX_CONNECT_RESOURCE_EXHAUSTED = 8,
    SBX_CONNECT_FAILED_PRECONDITION = 9,
    SBX_CONNECT_ABORTED = 10,
    SBX_CONNECT_OUT_OF_RANGE = 11,
    SBX_CONNECT_UNIMPLEMENTED = 12,
    SBX_CONNECT_INTERNAL = 13,
    SBX_CONNECT_UNAVAILABLE = 14,
    SBX_CONNECT_DATA_LOSS = 15,
    SBX_CONNECT_UNAUTHENTICATED = 16,
};

#define SBX_CONNECT_FLAG_COMPRESSED 0x01
#define SBX_CONNECT_FLAG_END 0x02

/* "not_found", ... ; "unknown" for anything out of range. */
const char *sbx_connect_code_name(int code);
/* The HTTP status a unary error travels with (not_found 404, ...). */
int sbx_connect_code_http(int code);

/* An error as a call reports it: code and a readable message. */
typedef struct sbx_connect_err {
    int code;
    char msg[1024];
} sbx_connect_err;

/* Fills e and returns -1. */
int sbx_connect_fail(sbx_connect_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads the request message: for a unary call the body is the JSON
 * message (Content-Type application/json); for a server stream it is
 * exactly one envelope (application/connect+json). 0 with *msg (an
 * object), or -1 with e set; *http_status is what the reply must carry
 * when the content type itself is refused (415), else 0. */
int sbx_connect_read_request(const sbx_http_req *req, bool stream, json_t **msg, sbx_connect_err *e,
                             int *http_status);

/* Connect-Timeout-Ms of the request, 0 when absent or malformed. */
uint64_t sbx_connect_timeout_ms(const sbx_http_req *req);

/* Unary replies: 200 with the message (stolen), or the error as JSON
 * {"code":"...","message":"..."} with its HTTP status. */
void sbx_connect_reply(sbx_http_resp *resp, json_t *msg);
void sbx_connect_reply_error(sbx_http_resp *resp, const sbx_connect_err *e);

/* One envelope: flags, then JSON text of j (not stolen). malloc'd. */
char *sbx_connect_envelope(int flags, json_t *j, size_t *len);
/* The end-of-stream envelope: {} or {"error":{...}} when e and e->code. */
char *sbx_connect_end_envelope(const sbx_connect_err *e, size_t *len);
/* A whole streamed reply that is only an end-of-stream envelope (an error
 * found before the stream started): HTTP 200, as Connect streams report
 * errors in the body. */
void sbx_connect_reply_stream_error(sbx_http_resp *resp, const sbx_connect_err *e);
/* Marks resp as a Connect stream produced by fn(ud) (http.h streams). */
void sbx_connect_reply_stream(sbx_http_resp *resp, sbx_http_stream_fn fn, void *ud);
/* Writes one envelope to a stream; 0, or -1 once the client has gone. */
int sbx_connect_stream_send(sbx_http_stream *s, int flags, json_t *j);
int sbx_connect_stream_end(sbx_http_stream *s, const sbx_connect_err *e);

/* ---- proto3 JSON helpers --------------------------------------------- */

/* bytes fields: sbx_b64_encode / sbx_b64_decode (b64.h). */
/* Replaces bytes that are not valid UTF-8 with '?', in place, so text
 * from file names or errno messages can always become a JSON string. */
void sbx_utf8_sanitize(char *s);
/* RFC 3339 in UTC: "2025-01-01T00:00:00Z", with 9 fractional digits when
 * nsec is non-zero, or 3 when millis is set (and nsec ignored). */
void sbx_rfc3339(char out[40], time_t sec, long nsec);
void sbx_rfc3339_ms(char out[40], int64_t unix_ms);
/* Parses RFC 3339 ("Z" or +hh:mm offsets, optional fraction) into unix
 * milliseconds; 0 ok, -1 malformed. */
int sbx_rfc3339_parse(const char *s, int64_t *unix_ms);

#endif
