/* The wrapper's messages quote values as Python parses and prints them
 * (int(), float(), repr()); these helpers reproduce just that much. */
#include "client_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool sbx_py_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

char *sbx_py_strip(const char *s)
{
    while (*s && sbx_py_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && sbx_py_space(s[n - 1]))
        n--;
    return strndup(s, n);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Copies a run of digits with single '_' between digits into out (without
 * the underscores); returns the characters consumed, 0 when no digit. */
static size_t digit_run(const char *s, char *out, size_t *olen)
{
    size_t i = 0;
    if (!is_digit(s[0]))
        return 0;
    while (is_digit(s[i]) || (s[i] == '_' && is_digit(s[i + 1]) && i > 0)) {
        if (s[i] != '_')
            out[(*olen)++] = s[i];
        i++;
    }
    return i;
}

int sbx_py_int(const char *s, char **canon, long long *val, bool *fits)
{
    char *t = sbx_py_strip(s);
    if (!t)
        return -1;
    char *digits = malloc(strlen(t) + 2);
    if (!digits) {
        free(t);
        return -1;
    }
    const char *p = t;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    size_t n = 0, used = digit_run(p, digits, &n);
    if (used == 0 || p[used] != '\0') {
        free(t);
        free(digits);
        return -1;
    }
    digits[n] = '\0';
    size_t z = 0;
    while (z + 1 < n && digits[z] == '0')
        z++;
    const char *d = digits + z;
    bool zero = strcmp(d, "0") == 0;
    *canon = malloc(strlen(d) + 2);
    if (!*canon) {
        free(t);
        free(digits);
        return -1;
    }
    snprintf(*canon, strlen(d) + 2, "%s%s", neg && !zero ? "-" : "", d);
    errno = 0;
    long long v = strtoll(*canon, NULL, 10);
    *fits = errno != ERANGE;
    *val = v;
    free(t);
    free(digits);
    return 0;
}

int sbx_py_float(const char *s, double *out)
{
    char *t = sbx_py_strip(s);
    if (!t)
        return -1;
    size_t cap = strlen(t) + 2, n = 0;
    char *c = malloc(cap);
    if (!c) {
        free(t);
        return -1;
    }
    const char *p = t;
    if (*p == '+' || *p == '-')
        c[n++] = *p++;
    int rc = -1;
    if (!strcasecmp(p, "inf") || !strcasecmp(p, "infinity") || !strcasecmp(p, "nan")) {
        double v = tolower((unsigned char)p[0]) == 'n' ? NAN : INFINITY;
        *out = c[0] == '-' ? -v : v;
        rc = 0;
        goto done;
    }
    /* mantissa: d+ | d+. | d+.d+ | .d+ */
    size_t a = digit_run(p, c, &n);
    p += a;
    size_t b = 0;
    if (*p == '.') {
        c[n++] = *p++;
        b = digit_run(p, c, &n);
        p += b;
    }
    if (a == 0 && b == 0)
        goto done;
    if (*p == 'e' || *p == 'E') {
        c[n++] = *p++;
        if (*p == '+' || *p == '-')
            c[n++] = *p++;
        size_t e = digit_run(p, c, &n);
        if (e == 0)
            goto done;
        p += e;
    }
    if (*p != '\0')
        goto done;
    c[n] = '\0';
    /* The grammar is checked above; strtod only converts (the C locale's
     * '.' is the server's: nothing calls setlocale). */
    *out = strtod(c, NULL);
    rc = 0;
done:
    free(t);
    free(c);
    return rc;
}

void sbx_py_float_repr(double x, char *buf, size_t cap)
{
    if (isnan(x)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, cap, "%sinf", x < 0 ? "-" : "");
        return;
    }
    if (x == 0) {
        snprintf(buf, cap, "%s0.0", signbit(x) ? "-" : "");
        return;
    }
    char tmp[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx -> sign, digit string, decimal exponent */
    const char *q = tmp;
    bool neg = *q == '-';
    if (neg)
        q++;
    char dig[32];
    size_t nd = 0;
    for (; *q && *q != 'e'; q++)
        if (is_digit(*q))
            dig[nd++] = *q;
    dig[nd] = '\0';
    int exp = atoi(q + 1);
    char out[96];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                out[o++] = (size_t)i < nd ? dig[i] : '0';
            out[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++)
                    out[o++] = dig[i];
            else
                out[o++] = '0';
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp - 1; i++)
                out[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[o++] = dig[i];
        }
        out[o] = '\0';
    } else {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = dig[i];
        }
        snprintf(out + o, sizeof(out) - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(buf, cap, "%s", out);
}

void sbx_py_repr(const char *s, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    /* Python prefers '...' and switches to "..." when only ' occurs. */
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    size_t o = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 < cap)                                                                           \
            buf[o++] = (c);                                                                        \
    } while (0)
    PUT(q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\\' || c == (unsigned char)q) {
            PUT('\\');
            PUT((char)c);
        } else if (c == '\n') {
            PUT('\\');
            PUT('n');
        } else if (c == '\r') {
            PUT('\\');
            PUT('r');
        } else if (c == '\t') {
            PUT('\\');
            PUT('t');
        } else if (c < 0x20 || c == 0x7f) {
            char hex[5];
            snprintf(hex, sizeof(hex), "\\x%02x", c);
            for (int i = 0; i < 4; i++)
                PUT(hex[i]);
        } else {
            PUT((char)c); /* UTF-8 bytes pass through, as Python prints them */
        }
    }
    PUT(q);
#undef PUT
    buf[o] = '\0';
}

char *sbx_abspath(const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return NULL;
    size_t cap = strlen(cwd) + strlen(p) + 3;
    char *joined = malloc(cap), *out = malloc(cap);
    if (!joined || !out) {
        free(joined);
        free(out);
        return NULL;
    }
    snprintf(joined, cap, "%s/%s", cwd, p);
    /* Lexical normalization (os.path.normpath): drop "." and empty parts,
     * ".." removes the previous part and stops at the root. */
    size_t o = 0;
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the '/' before the removed part */
            continue;
        }
        out[o++] = '/';
        size_t l = strlen(part);
        memcpy(out + o, part, l);
        o += l;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    free(joined);
    return out;
}
