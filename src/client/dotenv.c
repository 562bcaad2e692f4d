/* .env reader, close to python-dotenv (what the wrapper's users run). */
#include "client_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOTENV_MAX (1 << 20) /* a .env is a few lines; refuse anything silly */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_putc(sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

const char *sbx_dotenv_get(const sbx_dotenv *d, const char *key)
{
    for (size_t i = d->n; i-- > 0;)
        if (strcmp(d->keys[i], key) == 0)
            return d->vals[i];
    return NULL;
}

void sbx_dotenv_free(sbx_dotenv *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->keys[i]);
        free(d->vals[i]);
    }
    free(d->keys);
    free(d->vals);
    memset(d, 0, sizeof(*d));
}

static int add(sbx_dotenv *d, const char *k, size_t kn, char *v)
{
    char **ks = realloc(d->keys, (d->n + 1) * sizeof(*ks));
    if (ks)
        d->keys = ks;
    char **vs = realloc(d->vals, (d->n + 1) * sizeof(*vs));
    if (vs)
        d->vals = vs;
    char *key = strndup(k, kn);
    if (!ks || !vs || !key || !v) {
        free(key);
        free(v);
        return -1;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = v;
    d->n++;
    return 0;
}

/* ${NAME} and ${NAME:-default}: the real environment first, then entries
 * already read (python-dotenv without override); unknown -> default or "". */
static void expand(sbuf *b, const char *s, size_t n, const sbx_dotenv *d)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', n - i - 2);
            if (close) {
                const char *in = s + i + 2;
                size_t len = (size_t)(close - in), nl = 0;
                while (nl < len && in[nl] != ':')
                    nl++;
                bool ok = nl == len || (nl + 1 < len && in[nl + 1] == '-');
                if (ok) {
                    char *name = strndup(in, nl);
                    const char *v = name ? getenv(name) : NULL;
                    if (name && !v)
                        v = sbx_dotenv_get(d, name);
                    free(name);
                    if (v)
                        sb_put(b, v, strlen(v));
                    else if (nl < len)
                        sb_put(b, in + nl + 2, len - nl - 2);
                    i = (size_t)(close - s);
                    continue;
                }
            }
        }
        sb_putc(b, s[i]);
    }
}

static const char *eol(const char *p)
{
    const char *e = strchr(p, '\n');
    return e ? e : p + strlen(p);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int sbx_dotenv_parse(const char *text, const char *name, sbx_dotenv *out, sbx_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *p = text;
    int line = 1;
    while (*p) {
        while (blank(*p))
            p++;
        if (*p == '\n' || *p == '#' || *p == '\0') {
            p = eol(p);
            if (*p == '\n') {
                p++;
                line++;
            }
            continue;
        }
        const char *start = p;
        if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
            p += 6;
            while (blank(*p))
                p++;
        }
        const char *k = p;
        while (*p && *p != '=' && *p != '#' && *p != '\n' && !blank(*p))
            p++;
        size_t kn = (size_t)(p - k);
        bool msb = kn >= 4 && strncmp(k, "MSB_", 4) == 0;
        while (blank(*p))
            p++;
        sbuf b = {0};
        const char *next = NULL; /* where the following line starts */
        int lines = 0;           /* newlines inside a quoted value */
        if (kn == 0 || *p != '=')
            goto malformed;
        p++;
        while (blank(*p))
            p++;
        if (*p == '\'' || *p == '"') {
            char q = *p;
            const char *v = p + 1, *c = v;
            while (*c && *c != q) {
                if (*c == '\\' && c[1])
                    c++;
                c++;
            }
            if (*c == q) {
                const char *after = c + 1;
                while (blank(*after))
                    after++;
                if (*after == '#')
                    after = eol(after);
                if (*after != '\n' && *after != '\0')
                    goto malformed;
                sbuf raw = {0};
                for (const char *s = v; s < c; s++) {
                    if (*s == '\n')
                        lines++;
                    if (*s == '\\' && s + 1 < c) {
                        char e = s[1], r = 0;
                        if (q == '\'')
                            r = e == '\\' || e == '\'' ? e : 0;
                        else
                            switch (e) {
                            case '\\': case '\'': case '"': r = e; break;
                            case 'a': r = '\a'; break;
                            case 'b': r = '\b'; break;
                            case 'f': r = '\f'; break;
                            case 'n': r = '\n'; break;
                            case 'r': r = '\r'; break;
                            case 't': r = '\t'; break;
                            case 'v': r = '\v'; break;
                            default: break;
                            }
                        if (r) {
                            sb_putc(&raw, r);
                            s++;
                            continue;
                        }
                    }
                    sb_putc(&raw, *s);
                }
                if (q == '"')
                    expand(&b, raw.s ? raw.s : "", raw.n, out);
                else
                    sb_put(&b, raw.s ? raw.s : "", raw.n);
                b.oom |= raw.oom;
                free(raw.s);
                next = after;
            } else if (msb) {
                free(b.s);
                sbx_dotenv_free(out);
                return sbx_fail(err, SBX_E_INVALID, "%s line %d: %.*s has an unterminated %c quote", name, line,
                                (int)kn, k, q);
            }
        }
        if (!next) {
            /* Unquoted (or a quote that never closes: python-dotenv reads
             * that as plain text too). " #" starts a comment. */
            const char *e = eol(p), *v = p, *end = p;
            for (const char *s = p; s < e; s++) {
                if (*s == '#' && s > v && blank(s[-1]))
                    break;
                end = s + 1;
            }
            while (end > v && blank(end[-1]))
                end--;
            expand(&b, v, (size_t)(end - v), out);
            next = e;
        }
        if (b.oom || add(out, k, kn, b.s ? b.s : strdup("")) < 0) {
            if (b.oom)
                free(b.s);
            sbx_dotenv_free(out);
            return sbx_fail(err, SBX_E_SYSTEM, "%s: out of memory", name);
        }
        line += lines;
        p = next;
        if (*p == '\n') {
            p++;
            line++;
        }
        continue;
    malformed:
        free(b.s);
        if (msb) {
            const char *e = eol(start);
            while (e > start && blank(e[-1]))
                e--;
            sbx_dotenv_free(out);
            return sbx_fail(err, SBX_E_INVALID, "%s line %d: cannot parse '%.*s' (expected KEY=VALUE)", name,
                            line, (int)(e - start), start);
        }
        p = eol(start); /* another program's line: skip it, like python-dotenv */
        if (*p == '\n') {
            p++;
            line++;
        }
    }
    return 0;
}

int sbx_dotenv_load(const char *path, sbx_dotenv *out, sbx_err *err)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return sbx_fail(err, SBX_E_SYSTEM, "cannot read %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode) || st.st_size > DOTENV_MAX) {
        close(fd);
        if (!S_ISREG(st.st_mode))
            return sbx_fail(err, SBX_E_SYSTEM, "cannot read %s: not a regular file", path);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot read %s: larger than %d bytes", path, DOTENV_MAX);
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (text && n < (size_t)st.st_size) {
        ssize_t r = read(fd, text + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!text)
        return sbx_fail(err, SBX_E_SYSTEM, "cannot read %s: out of memory", path);
    text[n] = '\0';
    int rc = sbx_dotenv_parse(text, path, out, err);
    free(text);
    return rc;
}
