/* multipart/form-data request bodies (RFC 7578) as browsers and fetch()
 * implementations send them, parsed from a whole buffered body. Shared by
 * the protocol modules that take file uploads. */
#ifndef SBX_MULTIPART_H
#define SBX_MULTIPART_H

#include <stddef.h>

typedef struct sbx_mpart {
    char *name;         /* form field name (decoded) */
    char *filename;     /* the part's filename parameter (decoded), or NULL */
    char *content_type; /* the part's Content-Type, or NULL */
    const char *data;   /* points into the body given to sbx_multipart_parse */
    size_t len;
} sbx_mpart;

#define SBX_MULTIPART_MAX_PARTS 10000

/* Parses body by the boundary of content_type ("multipart/form-data;
 * boundary=..."). 0 with the parts (free with sbx_multipart_free), or -1
 * with a readable reason in errmsg (not multipart, no boundary, malformed,
 * too many parts). Quoted parameter values are taken as the WHATWG form
 * encoding writes them: %0A, %0D and %22 stand for LF, CR and '"'. */
int sbx_multipart_parse(const char *content_type, const char *body, size_t len, sbx_mpart **parts, size_t *n,
                        char *errmsg, size_t errlen);
void sbx_multipart_free(sbx_mpart *parts, size_t n);

#endif
