#include "b64.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

char *sbx_b64_encode(const void *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static bool std_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* in: standard alphabet, padded, checked. EVP_DecodeBlock counts padding
 * as zero bytes; they are taken off. */
static int decode(const char *in, size_t n, size_t pad, unsigned char **out, size_t *len)
{
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return -1;
    int r = n ? EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n) : 0;
    if (r < 0) {
        free(buf);
        return -1;
    }
    *len = (size_t)r - pad;
    buf[*len] = '\0';
    *out = buf;
    return 0;
}

int sbx_b64_decode_strict(const char *s, size_t n, unsigned char **out, size_t *len)
{
    if (n % 4)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && i >= n - 2) {
            pad++;
            continue;
        }
        if (!std_char(s[i]) || pad)
            return -1;
    }
    return decode(s, n, pad, out, len);
}

int sbx_b64_decode(const char *s, unsigned char **out, size_t *len)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t pad = (4 - n % 4) % 4;
    char *norm = malloc(n + pad + 1);
    if (!norm)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        if (!std_char(c)) {
            free(norm);
            return -1;
        }
        norm[i] = c;
    }
    memset(norm + n, '=', pad);
    int r = decode(norm, n + pad, pad, out, len);
    free(norm);
    return r;
}
