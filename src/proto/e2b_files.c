/* envd's /files (shared/protocols/e2b.md §4): GET reads a file, POST
 * writes files from a multipart/form-data or application/octet-stream
 * body (the HTTP layer has already collected a chunked body whole).
 * Files are opened inside the sandbox as the acting user; the host only
 * reads or writes the returned fd. */
#include "e2b_internal.h"
#include "log.h"
#include "multipart.h"
#include "rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_WHOLE_MAX (16u << 20) /* larger files are streamed */
#define STREAM_CHUNK (256u << 10)

/* An engine error of opening path as a /files status and message. */
static void open_error(sbx_http_resp *resp, const char *path, const sbx_err *err)
{
    switch (err->sys_errno) {
    case ENOENT: e2b_error(resp, 404, "path '%s' does not exist", path); break;
    case EISDIR: e2b_error(resp, 400, "path '%s' is a directory", path); break;
    case ENOSPC:
    case EDQUOT: e2b_error(resp, 507, "not enough disk space available: %s", err->msg); break;
    case EACCES:
    case EPERM:
    case EROFS: e2b_error(resp, 403, "permission denied: %s", err->msg); break;
    case EIO: e2b_error(resp, 502, "the sandbox is gone: %s", err->msg); break;
    default: e2b_error(resp, err->code == SBX_E_SYSTEM ? 500 : 400, "%s", err->msg); break;
    }
}

/* ---- GET /files ------------------------------------------------------------- */

struct file_stream {
    int fd;
    e2b_sandbox *sb; /* referenced: a kill ends the stream at the next chunk */
};

static void file_stream(void *ud, sbx_http_stream *hs)
{
    struct file_stream *f = ud;
    char *buf = malloc(STREAM_CHUNK);
    while (buf && !__atomic_load_n(&f->sb->dead, __ATOMIC_RELAXED)) {
        ssize_t n = read(f->fd, buf, STREAM_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || sbx_http_stream_write(hs, buf, (size_t)n) < 0)
            break;
    }
    free(buf);
    close(f->fd);
    e2b_sandbox_put(f->sb);
    free(f);
}

void e2b_files_get(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    const char *q = sbx_http_query(req, "path");
    char path[PATH_MAX];
    if (e2b_clean_path(q ? q : "", c->home, path, sizeof(path)) < 0) {
        e2b_error(resp, 400, "path is too long");
        return;
    }
    sbx_err err = {0};
    int fd = sbx_sandbox_open(c->live->sb, path, O_RDONLY, 0, c->user, 0, &err);
    if (fd < 0) {
        open_error(resp, path, &err);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        e2b_error(resp, 500, "error checking '%s': %s", path, strerror(errno));
        close(fd);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        e2b_error(resp, 400, "path '%s' is a directory", path);
        close(fd);
        return;
    }
    resp->content_type = "application/octet-stream";
    if ((uint64_t)st.st_size > READ_WHOLE_MAX) {
        struct file_stream *f = calloc(1, sizeof(*f));
        e2b_sandbox *sb = e2b_sandbox_get(c->sb->id);
        if (!f || !sb) {
            free(f);
            if (sb)
                e2b_sandbox_put(sb);
            close(fd);
            e2b_error(resp, sb ? 500 : 502, sb ? "out of memory" : "the sandbox is gone");
            return;
        }
        f->fd = fd;
        f->sb = sb;
        resp->status = 200;
        resp->stream = file_stream;
        resp->stream_ud = f;
        return;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len == cap) { /* grew since the fstat */
            char *nb = len < READ_WHOLE_MAX * 2 ? realloc(buf, cap *= 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e2b_error(resp, 500, "error reading '%s': %s", path, strerror(errno));
            free(buf);
            close(fd);
            return;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!buf) {
        e2b_error(resp, 500, "out of memory reading '%s'", path);
        return;
    }
    resp->status = 200;
    resp->body = buf;
    resp->body_len = len;
}

/* ---- POST /files -------------------------------------------------------------- */

/* Writes one file (path cleaned); 0, or -1 with the reply set. */
static int write_file(e2b_call *c, const char *path, const char *data, size_t len, sbx_http_resp *resp)
{
    sbx_err err = {0};
    /* Missing parents are made (0755), the file 0644, both as the user. */
    int fd = sbx_sandbox_open(c->live->sb, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, c->user, SBX_FS_MKDIRS, &err);
    if (fd < 0) {
        open_error(resp, path, &err);
        return -1;
    }
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            if (e == ENOSPC || e == EDQUOT || e == EFBIG)
                e2b_error(resp, 507, "not enough disk space available: attempted to write %zu more bytes to '%s'",
                          len, path);
            else
                e2b_error(resp, 500, "error writing file '%s': %s", path, strerror(e));
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    if (close(fd) < 0 && (errno == ENOSPC || errno == EDQUOT)) {
        e2b_error(resp, 507, "not enough disk space available writing '%s'", path);
        return -1;
    }
    return 0;
}

static json_t *written(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", path);
    sbx_utf8_sanitize(p);
    const char *base = strrchr(p, '/');
    return json_pack("{s:s, s:s, s:s}", "name", base && base[1] ? base + 1 : p, "type", "file", "path", p);
}

static bool media_is(const char *ct, const char *want)
{
    size_t n = ct ? strcspn(ct, "; \t") : 0, wl = strlen(want);
    return ct && n >= wl && strncasecmp(ct, want, wl) == 0 && (want[wl - 1] == '/' || n == wl);
}

void e2b_files_post(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    const char *ct = sbx_http_header(req, "Content-Type"), *q = sbx_http_query(req, "path"),
               *enc = sbx_http_header(req, "Content-Encoding");
    char path[PATH_MAX];
    if (enc && strcasecmp(enc, "identity") != 0) {
        /* gzip uploads need zlib, which sbx does not link yet. */
        e2b_error(resp, 400, "error decompressing request body: Content-Encoding '%s' is not supported by sbx", enc);
        return;
    }
    if (media_is(ct, "application/octet-stream")) {
        if (!q || !*q) {
            e2b_error(resp, 400, "path query parameter is required for raw body upload");
            return;
        }
        if (e2b_clean_path(q, c->home, path, sizeof(path)) < 0) {
            e2b_error(resp, 400, "path is too long");
            return;
        }
        if (write_file(c, path, req->body, req->body_len, resp) == 0)
            sbx_resp_json(resp, 200, json_pack("[o]", written(path)));
        return;
    }
    if (!media_is(ct, "multipart/")) {
        e2b_error(resp, 400, "unsupported content type: %s, expected multipart/form-data or application/octet-stream",
                  ct ? ct : "(none)");
        return;
    }
    sbx_mpart *parts;
    size_t n;
    char why[256];
    if (sbx_multipart_parse(ct, req->body, req->body_len, &parts, &n, why, sizeof(why)) < 0) {
        e2b_error(resp, 400, "error parsing multipart form: %s", why);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(parts[i].name, "file") != 0)
            continue; /* as envd: other fields are ignored */
        const char *dest = q && *q ? q : parts[i].filename;
        if (!dest || !*dest) {
            e2b_error(resp, 400, "a file part has no filename and the request no path");
            goto fail;
        }
        if (e2b_clean_path(dest, c->home, path, sizeof(path)) < 0) {
            e2b_error(resp, 400, "path is too long");
            goto fail;
        }
        size_t k;
        json_t *prev;
        json_array_foreach(out, k, prev) {
            if (strcmp(json_string_value(json_object_get(prev, "path")), path) == 0) {
                e2b_error(resp, 400, "you cannot upload multiple files to the same path '%s' in one upload request",
                          path);
                goto fail;
            }
        }
        if (write_file(c, path, parts[i].data, parts[i].len, resp) < 0)
            goto fail;
        json_array_append_new(out, written(path));
    }
    sbx_multipart_free(parts, n);
    sbx_resp_json(resp, 200, out);
    return;
fail:
    sbx_multipart_free(parts, n);
    json_decref(out);
}
