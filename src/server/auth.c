/* Server authentication (microsandbox v0.2 compatible): server key file,
 * "msb_" + HS256 JWT API keys, keygen duration parser. See auth.h and
 * shared/protocols/microsandbox.md §1 and §3. */
#include "auth.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SBX_AUTH_PREFIX "msb_"
#define SBX_AUTH_MAX_TOKEN 8192 /* longer header values are refused outright */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- base64url, no padding ------------------------------------------- */

/* Returns a malloc'd NUL-terminated encoding, or NULL on allocation failure. */
static char *b64url_encode(const unsigned char *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes exactly len chars (no padding, no whitespace, canonical trailing
 * bits). Returns a malloc'd buffer (NUL-terminated for convenience) and its
 * length in *outlen, or NULL when the input is not valid base64url. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    /* Leftover bits (2 or 4) must be zero, as the Rust base64 crate demands. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* ---- HMAC ------------------------------------------------------------- */

static int hs256(const char *key, const char *data, size_t len, unsigned char mac[32])
{
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, len, mac, &maclen))
        return -1;
    return maclen == 32 ? 0 : -1;
}

/* ---- key file ---------------------------------------------------------- */

static int is_alnum_ascii(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int gen_key(char key[SBX_AUTH_KEY_LEN + 1])
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char buf[64];
    size_t n = 0;
    while (n < SBX_AUTH_KEY_LEN) {
        if (RAND_bytes(buf, sizeof(buf)) != 1)
            return -1;
        for (size_t i = 0; i < sizeof(buf) && n < SBX_AUTH_KEY_LEN; i++) {
            if (buf[i] >= 248) /* 248 = 4 * 62: reject to keep it unbiased */
                continue;
            key[n++] = alnum[buf[i] % 62];
        }
    }
    key[SBX_AUTH_KEY_LEN] = '\0';
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

enum { KEY_OK, KEY_NOENT, KEY_SHORT, KEY_BAD, KEY_IOERR };

/* Reads an existing key file (trailing whitespace tolerated). KEY_SHORT: an
 * alphanumeric prefix shorter than a key (a creator may still be writing). */
static int read_key(const char *path, char key[SBX_AUTH_KEY_LEN + 1], int *errnum)
{
    char buf[SBX_AUTH_KEY_LEN + 64];
    size_t len = 0;
    int rc = sbx_read_file(path, buf, sizeof(buf), &len);
    if (rc < 0) {
        *errnum = -rc;
        return rc == -ENOENT ? KEY_NOENT : KEY_IOERR;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    int alnum = 1;
    for (size_t i = 0; alnum && i < len; i++)
        alnum = is_alnum_ascii((unsigned char)buf[i]);
    int res = !alnum || len > SBX_AUTH_KEY_LEN ? KEY_BAD : len < SBX_AUTH_KEY_LEN ? KEY_SHORT : KEY_OK;
    if (res == KEY_OK) {
        memcpy(key, buf, SBX_AUTH_KEY_LEN);
        key[SBX_AUTH_KEY_LEN] = '\0';
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return res;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Publishes a new key at path: write a private temp file, then link() it into
 * place, so the key file never exists half-written. 0 created, 1 another
 * process won the race (EEXIST), -1 error. */
static int create_key(const char *path, const char key[SBX_AUTH_KEY_LEN + 1], sbx_err *err)
{
    char tmp[4096];
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return sbx_fail(err, SBX_E_SYSTEM, "cannot generate server key: RAND_bytes failed");
    if (sbx_pathf(tmp, sizeof(tmp), "%s.tmp.%ld.%02x%02x%02x%02x%02x%02x", path, (long)getpid(),
                  rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]) < 0)
        return sbx_fail(err, SBX_E_INVALID, "server key file path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_fail_errno(err, errno, "cannot create server key file %s", tmp);
    int rc = write_all(fd, key, SBX_AUTH_KEY_LEN);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return sbx_fail_errno(err, -rc, "cannot write server key file %s", tmp);
    }
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return 0;
    }
    int e = errno;
    unlink(tmp);
    if (e == EEXIST)
        return 1;
    if (e != EPERM && e != EOPNOTSUPP && e != ENOSYS && e != EXDEV)
        return sbx_fail_errno(err, e, "cannot create server key file %s", path);

    /* Filesystem without hard links: create the file itself exclusively. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 1;
        return sbx_fail_errno(err, errno, "cannot create server key file %s", path);
    }
    rc = write_all(fd, key, SBX_AUTH_KEY_LEN);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        unlink(path);
        return sbx_fail_errno(err, -rc, "cannot write server key file %s", path);
    }
    return 0;
}

int sbx_auth_load_key(const char *path, char key[SBX_AUTH_KEY_LEN + 1], sbx_err *err)
{
    if (!path || !*path)
        return sbx_fail(err, SBX_E_INVALID, "server key file path is empty");

    /* Parent directory, 0700. */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char dir[4096];
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return sbx_fail(err, SBX_E_INVALID, "server key file path too long: %s", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
        int rc = sbx_mkdir_p(dir, 0700);
        if (rc < 0)
            return sbx_fail_errno(err, -rc, "cannot create directory %s for server key file", dir);
    }

    for (int attempt = 0; attempt < 100; attempt++) {
        int errnum = 0;
        switch (read_key(path, key, &errnum)) {
        case KEY_OK:
            return 0;
        case KEY_IOERR:
            return sbx_fail_errno(err, errnum, "cannot read server key file %s", path);
        case KEY_BAD:
            return sbx_fail(err, SBX_E_INVALID,
                            "server key file %s is malformed: want exactly %d alphanumeric "
                            "characters [A-Za-z0-9]",
                            path, SBX_AUTH_KEY_LEN);
        case KEY_SHORT:
            if (attempt >= 25)
                return sbx_fail(err, SBX_E_INVALID,
                                "server key file %s is malformed: want exactly %d alphanumeric "
                                "characters [A-Za-z0-9]",
                                path, SBX_AUTH_KEY_LEN);
            nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
            continue;
        case KEY_NOENT:
            break;
        }
        char fresh[SBX_AUTH_KEY_LEN + 1];
        if (gen_key(fresh) < 0)
            return sbx_fail(err, SBX_E_SYSTEM, "cannot generate server key: RAND_bytes failed");
        int rc = create_key(path, fresh, err);
        if (rc == 0)
            memcpy(key, fresh, sizeof(fresh));
        OPENSSL_cleanse(fresh, sizeof(fresh));
        if (rc <= 0)
            return rc;
        /* rc == 1: lost the race; loop and read the winner's key. */
    }
    return sbx_fail(err, SBX_E_SYSTEM, "cannot create server key file %s: it keeps vanishing", path);
}

/* ---- keygen duration ----------------------------------------------------- */

int64_t sbx_auth_parse_duration(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return -1; /* empty, sign, space, or unit without a number */
    int64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (n > (INT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    int64_t mult;
    if (*p == '\0' || strcmp(p, "h") == 0)
        mult = 3600;
    else if (strcmp(p, "s") == 0)
        mult = 1;
    else if (strcmp(p, "m") == 0)
        mult = 60;
    else if (strcmp(p, "d") == 0)
        mult = 86400;
    else if (strcmp(p, "w") == 0)
        mult = 7 * 86400;
    else if (strcmp(p, "mo") == 0)
        mult = 30 * 86400;
    else if (strcmp(p, "y") == 0)
        mult = 365 * 86400;
    else
        return -1;
    if (n == 0 || n > INT64_MAX / mult)
        return -1;
    return n * mult;
}

/* ---- tokens ---------------------------------------------------------------- */

char *sbx_auth_make_token(const char *key, int64_t exp, const char *ns)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    if (!key || !*key || exp < 0)
        return NULL;
    json_t *claims = json_object();
    char *payload = NULL, *h64 = NULL, *p64 = NULL, *s64 = NULL, *out = NULL;
    if (!claims || json_object_set_new(claims, "exp", json_integer((json_int_t)exp)) < 0 ||
        json_object_set_new(claims, "namespace", json_string(ns ? ns : "*")) < 0)
        goto done;
    payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!payload)
        goto done;
    h64 = b64url_encode((const unsigned char *)header, strlen(header));
    p64 = b64url_encode((const unsigned char *)payload, strlen(payload));
    if (!h64 || !p64)
        goto done;
    size_t hl = strlen(h64), pl = strlen(p64);
    /* "msb_" h64 "." p64 "." sig64(43) NUL */
    out = malloc(4 + hl + 1 + pl + 1 + 43 + 1);
    if (!out)
        goto done;
    memcpy(out, SBX_AUTH_PREFIX, 4);
    memcpy(out + 4, h64, hl);
    out[4 + hl] = '.';
    memcpy(out + 5 + hl, p64, pl + 1);
    unsigned char mac[32];
    if (hs256(key, out + 4, hl + 1 + pl, mac) < 0 || !(s64 = b64url_encode(mac, sizeof(mac)))) {
        free(out);
        out = NULL;
        goto done;
    }
    out[5 + hl + pl] = '.';
    memcpy(out + 6 + hl + pl, s64, strlen(s64) + 1);
done:
    json_decref(claims);
    free(payload);
    free(h64);
    free(p64);
    free(s64);
    return out;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Decodes one base64url JWT segment into a JSON object; NULL when invalid. */
static json_t *decode_segment(const char *seg, size_t len)
{
    size_t n = 0;
    unsigned char *raw = b64url_decode(seg, len, &n);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int sbx_auth_check(const char *key, const char *header, int64_t now, char **ns)
{
    if (ns)
        *ns = NULL;
    if (!key || !*key || !header)
        return SBX_AUTH_INVALID_CREDENTIALS;

    /* Trim, strip "Bearer " (case-sensitive, as upstream), trim again. */
    const char *b = header;
    while (is_space(*b))
        b++;
    if (strncmp(b, "Bearer ", 7) == 0)
        b += 7;
    while (is_space(*b))
        b++;
    const char *e = b + strlen(b);
    while (e > b && is_space(e[-1]))
        e--;
    size_t len = (size_t)(e - b);
    if (len < 4 || memcmp(b, SBX_AUTH_PREFIX, 4) != 0)
        return SBX_AUTH_INVALID_CREDENTIALS;
    const char *jwt = b + 4;
    len -= 4;
    if (len > SBX_AUTH_MAX_TOKEN)
        return SBX_AUTH_INVALID_TOKEN;

    /* Exactly three dot-separated parts. */
    const char *d1 = memchr(jwt, '.', len);
    if (!d1)
        return SBX_AUTH_INVALID_TOKEN;
    const char *d2 = memchr(d1 + 1, '.', (size_t)(jwt + len - (d1 + 1)));
    if (!d2 || memchr(d2 + 1, '.', (size_t)(jwt + len - (d2 + 1))))
        return SBX_AUTH_INVALID_TOKEN;

    int rc = SBX_AUTH_INVALID_TOKEN;
    json_t *hdr = NULL, *claims = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;

    /* Header: alg must be HS256. */
    hdr = decode_segment(jwt, (size_t)(d1 - jwt));
    if (!hdr)
        goto done;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg || strcmp(alg, "HS256") != 0)
        goto done;

    /* Signature over "<b64header>.<b64payload>", constant-time compare. */
    sig = b64url_decode(d2 + 1, (size_t)(jwt + len - (d2 + 1)), &siglen);
    if (!sig || siglen != 32)
        goto done;
    unsigned char mac[32];
    if (hs256(key, jwt, (size_t)(d2 - jwt), mac) < 0)
        goto done;
    if (CRYPTO_memcmp(mac, sig, 32) != 0)
        goto done;

    /* Claims: integer exp >= 0 required; namespace string or absent. */
    claims = decode_segment(d1 + 1, (size_t)(d2 - (d1 + 1)));
    if (!claims)
        goto done;
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_integer(exp) || json_integer_value(exp) < 0)
        goto done;
    int64_t expv = (int64_t)json_integer_value(exp);
    if (now > expv && now - expv > 60)
        goto done;
    json_t *jns = json_object_get(claims, "namespace");
    const char *nsv = "*";
    if (jns) {
        if (!json_is_string(jns))
            goto done;
        nsv = json_string_value(jns);
    }
    if (ns) {
        *ns = strdup(nsv);
        if (!*ns)
            goto done;
    }
    rc = SBX_AUTH_OK;
done:
    json_decref(hdr);
    json_decref(claims);
    free(sig);
    return rc;
}
