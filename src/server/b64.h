/* Base64 for the wire protocols, on OpenSSL's codec: one encoder, a
 * strict decoder (sbx's own fields) and a lenient one (proto3 JSON and
 * HTTP headers, which allow the URL alphabet and missing padding). */
#ifndef SBX_B64_H
#define SBX_B64_H

#include <stddef.h>

/* Standard base64 with padding, NUL-terminated, malloc'd; NULL if out of memory. */
char *sbx_b64_encode(const void *data, size_t len);
/* RFC 4648 §4 exactly: standard alphabet, padded, no whitespace. 0 with
 * *out malloc'd (NUL-terminated), or -1 on bad input. */
int sbx_b64_decode_strict(const char *s, size_t n, unsigned char **out, size_t *len);
/* Standard or URL-safe alphabet, padding optional. Same returns. */
int sbx_b64_decode(const char *s, unsigned char **out, size_t *len);

#endif
