/* Unit tests for src/server/auth.c: tokens, key file, duration parser. */
#include "auth.h"
#include "t.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY_K "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk" /* "k" * 32 */
#define EXP 2000000000LL

/* Vectors computed independently with python3 hmac + base64.urlsafe_b64encode
 * (padding stripped), key "k"*32, header {"alg":"HS256","typ":"JWT"} unless
 * noted, compact JSON payloads as shown. */
/* {"exp":2000000000,"namespace":"team-a"} */
static const char VECTOR[] =
    "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6InRlYW0tYSJ9."
    "9MZAKNzNMi7gkMS2IWZbSDK7NApUOtmKGYkKAy--n7Y";
/* {"exp":2000000000} */
static const char NONS[] = "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDB9."
                           "LzS6qhryOG9h9wypVF1-wkuQP4IIVSjbpdYdDKkP1x0";
/* header {"alg":"HS512","typ":"JWT"}, HMAC-SHA512 */
static const char HS512[] =
    "msb_eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6IngifQ."
    "ZqurxfVUXEaxZN_YE4GrkyFgqp7AuxPtU6lRx1v_44VwgFTXB76Zufc36irhZd6caB7T2EtHlU7Vr5byELDRLA";
/* header {"alg":"none","typ":"JWT"}, empty signature */
static const char NONE[] =
    "msb_eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6IngifQ.";
/* header {"alg":"none",...} but with a valid HS256 signature */
static const char NONE_SIGNED[] =
    "msb_eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6IngifQ."
    "U0-aaRXMBKKr-ybcfZMgdHrnuSb3-V05S9EhIivCe_I";
/* {"namespace":"x"} */
static const char NOEXP[] = "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYW1lc3BhY2UiOiJ4In0."
                            "dN5-GUmkqi1wb5ECSg7RgFZf_FoBWzit705wGCl9wl4";
/* {"exp":"2000000000","namespace":"x"} */
static const char EXPSTR[] =
    "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOiIyMDAwMDAwMDAwIiwibmFtZXNwYWNlIjoieCJ9."
    "MD9pGy-1JCEgOvWqr4zr7qG2p3KAgAJ0KCLjXvfVgJg";
/* {"exp":2000000000.5,"namespace":"x"} */
static const char EXPFLOAT[] =
    "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDAuNSwibmFtZXNwYWNlIjoieCJ9."
    "RroqHIbfRfhtN0IS4xWEfOwCqEMvgBX-mB-s-rUHybs";
/* {"exp":-5,"namespace":"x"} */
static const char EXPNEG[] = "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOi01LCJuYW1lc3BhY2UiOiJ4In0."
                             "Mw8xxg1exyETxJt5h7-vf6KbP43obrs0SkVFjeNJr_E";
/* {"exp":2000000000,"namespace":7} */
static const char NSNUM[] =
    "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6N30."
    "poeKRY89CqvoRbggu7ea-66ucQRg3hcnf_o1FaKCpuo";
/* {"exp":2000000000,"namespace":null} */
static const char NSNULL[] =
    "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6bnVsbH0."
    "IWQtb5Y21l4cQOZRTKT3xOn8J0DxHsDnzt1Qq_k9dUE";
/* payload [1,2] */
static const char PAYARRAY[] = "msb_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.WzEsMl0."
                               "pLgaZq8RQBm-lQ6mlaNPA0kZov_iTD8KAuHabVlS_54";
/* header "hello" (not JSON), payload {"exp":2000000000} */
static const char HDRNOTJSON[] = "msb_aGVsbG8.eyJleHAiOjIwMDAwMDAwMDB9."
                                 "ZDhvYbosQ3SsvXpB2l0C0s2PPTfOKo_tVGGeXL7MQ5U";

static int check(const char *key, const char *hdr, int64_t now, char **ns)
{
    char *tmp = NULL;
    int rc = sbx_auth_check(key, hdr, now, ns ? ns : &tmp);
    free(tmp);
    return rc;
}

static int all_alnum(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

static void test_vector(void)
{
    char *ns = NULL;
    T_OK(check(KEY_K, VECTOR, EXP, &ns) == SBX_AUTH_OK, "external HS256 vector verifies");
    T_STREQ(ns, "team-a", "external vector namespace");
    free(ns);
    char *tok = sbx_auth_make_token(KEY_K, EXP, "team-a");
    T_STREQ(tok, VECTOR, "make_token matches the python-computed token byte for byte");
    free(tok);

    ns = NULL;
    T_OK(check(KEY_K, NONS, EXP, &ns) == SBX_AUTH_OK, "token without namespace claim accepted");
    T_STREQ(ns, "*", "missing namespace claim defaults to \"*\"");
    free(ns);
}

static void test_round_trip(void)
{
    const char *key = "Abc123Abc123Abc123Abc123Abc123Zz";
    int64_t now = 1700000000;
    char *tok = sbx_auth_make_token(key, now + 3600, "my-ns");
    T_OK(tok && strncmp(tok, "msb_", 4) == 0, "make_token returns msb_ token");
    char *ns = NULL;
    T_OK(check(key, tok, now, &ns) == SBX_AUTH_OK, "round trip raw form");
    T_STREQ(ns, "my-ns", "round trip namespace");
    free(ns);

    char hdr[2048];
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    ns = NULL;
    T_OK(check(key, hdr, now, &ns) == SBX_AUTH_OK, "Bearer form accepted");
    T_STREQ(ns, "my-ns", "Bearer form namespace");
    free(ns);
    snprintf(hdr, sizeof(hdr), "  Bearer %s \r\n", tok);
    T_OK(check(key, hdr, now, NULL) == SBX_AUTH_OK, "surrounding whitespace trimmed");
    snprintf(hdr, sizeof(hdr), "bearer %s", tok);
    T_OK(check(key, hdr, now, NULL) == SBX_AUTH_INVALID_CREDENTIALS,
         "lowercase bearer is not stripped (upstream strip_prefix) -> 1001");
    /* Proxy-Authorization values go through the same function. */
    T_OK(check(key, tok, now, NULL) == SBX_AUTH_OK, "Proxy-Authorization style value accepted");

    char *star = sbx_auth_make_token(key, now + 10, NULL);
    ns = NULL;
    T_OK(check(key, star, now, &ns) == SBX_AUTH_OK, "NULL ns token accepted");
    T_STREQ(ns, "*", "NULL ns becomes \"*\"");
    free(ns);
    free(star);

    char *quoted = sbx_auth_make_token(key, now + 10, "we\"ird\\ns");
    ns = NULL;
    T_OK(check(key, quoted, now, &ns) == SBX_AUTH_OK, "namespace with quotes/backslash round-trips");
    T_STREQ(ns, "we\"ird\\ns", "escaped namespace value");
    free(ns);
    free(quoted);

    T_OK(check(key, tok, now, NULL) == SBX_AUTH_OK && sbx_auth_check(key, tok, now, NULL) == 0,
         "ns pointer may be NULL");
    free(tok);
}

static void test_credentials(void)
{
    char *tok = sbx_auth_make_token(KEY_K, EXP, "x");
    T_OK(check(KEY_K, NULL, EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "missing header -> 1001");
    T_OK(check(KEY_K, "", EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "empty header -> 1001");
    T_OK(check(KEY_K, "Bearer ", EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "bare Bearer -> 1001");
    T_OK(check(KEY_K, tok + 4, EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS,
         "JWT without msb_ prefix -> 1001");
    T_OK(check(KEY_K, "Bearer abc", EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "random -> 1001");
    T_OK(check(NULL, tok, EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "no server key -> 1001");
    T_OK(check("", tok, EXP, NULL) == SBX_AUTH_INVALID_CREDENTIALS, "empty server key -> 1001");
    char *ns = (char *)"junk";
    T_OK(sbx_auth_check(KEY_K, NULL, EXP, &ns) != 0 && ns == NULL, "ns set to NULL on failure");
    free(tok);
}

static void test_invalid_tokens(void)
{
    char *tok = sbx_auth_make_token(KEY_K, EXP, "team-a");
    size_t n = strlen(tok);
    char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    char buf[2048];

    /* Tampered payload: re-encode a different payload with the old signature. */
    snprintf(buf, sizeof(buf), "%.*s.eyJleHAiOjIwMDAwMDAwMDAsIm5hbWVzcGFjZSI6IioifQ%s",
             (int)(d1 - tok), tok, d2); /* {"exp":2000000000,"namespace":"*"} */
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "tampered payload -> 1004");

    /* Tampered signature: flip one early char (keeps canonical trailing bits). */
    strcpy(buf, tok);
    buf[(d2 - tok) + 1] = buf[(d2 - tok) + 1] == 'A' ? 'B' : 'A';
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "tampered signature -> 1004");
    strcpy(buf, tok);
    buf[n - 1] = buf[n - 1] == 'Y' ? 'Z' : 'Y';
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "tampered last sig char -> 1004");
    strcpy(buf, tok);
    buf[n - 1] = '\0';
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "truncated signature -> 1004");
    snprintf(buf, sizeof(buf), "%sA", tok);
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "extended signature -> 1004");

    T_OK(check("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkK", tok, EXP, NULL) == SBX_AUTH_INVALID_TOKEN,
         "wrong key -> 1004");
    T_OK(check(KEY_K, HS512, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "alg HS512 -> 1004");
    T_OK(check(KEY_K, NONE, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "alg none unsigned -> 1004");
    T_OK(check(KEY_K, NONE_SIGNED, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "alg none signed -> 1004");
    T_OK(check(KEY_K, NOEXP, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "missing exp -> 1004");
    T_OK(check(KEY_K, EXPSTR, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "string exp -> 1004");
    T_OK(check(KEY_K, EXPFLOAT, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "float exp -> 1004");
    T_OK(check(KEY_K, EXPNEG, -100, NULL) == SBX_AUTH_INVALID_TOKEN, "negative exp -> 1004");
    T_OK(check(KEY_K, NSNUM, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "numeric namespace -> 1004");
    T_OK(check(KEY_K, NSNULL, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "null namespace -> 1004");
    T_OK(check(KEY_K, PAYARRAY, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "payload not object -> 1004");
    T_OK(check(KEY_K, HDRNOTJSON, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "header not JSON -> 1004");

    T_OK(check(KEY_K, "msb_", 0, NULL) == SBX_AUTH_INVALID_TOKEN, "msb_ alone -> 1004");
    T_OK(check(KEY_K, "msb_!!!.@@@.###", 0, NULL) == SBX_AUTH_INVALID_TOKEN, "garbage base64 -> 1004");
    T_OK(check(KEY_K, "msb_..", 0, NULL) == SBX_AUTH_INVALID_TOKEN, "empty parts -> 1004");
    snprintf(buf, sizeof(buf), "%.*s", (int)(d2 - tok), tok);
    T_OK(check(KEY_K, buf, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "2 parts -> 1004");
    snprintf(buf, sizeof(buf), "%s.%s", tok, d2 + 1);
    T_OK(check(KEY_K, buf, 0, NULL) == SBX_AUTH_INVALID_TOKEN, "4 parts -> 1004");
    /* Standard base64 characters / padding are not base64url. */
    strcpy(buf, VECTOR);
    char *dash = strstr(buf, "--");
    dash[0] = '+';
    dash[1] = '+';
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "'+' in signature -> 1004");
    snprintf(buf, sizeof(buf), "%s=", VECTOR);
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "padding '=' -> 1004");
    snprintf(buf, sizeof(buf), "msb_%.*s %s", (int)(d1 - tok - 4), tok + 4, d1);
    T_OK(check(KEY_K, buf, EXP, NULL) == SBX_AUTH_INVALID_TOKEN, "embedded space -> 1004");
    free(tok);
}

static void test_expiry(void)
{
    int64_t exp = 1700000000;
    char *tok = sbx_auth_make_token(KEY_K, exp, "e");
    T_OK(check(KEY_K, tok, 0, NULL) == SBX_AUTH_OK, "far before exp accepted");
    T_OK(check(KEY_K, tok, exp, NULL) == SBX_AUTH_OK, "now = exp accepted");
    T_OK(check(KEY_K, tok, exp + 60, NULL) == SBX_AUTH_OK, "now = exp + 60 accepted (leeway)");
    T_OK(check(KEY_K, tok, exp + 61, NULL) == SBX_AUTH_INVALID_TOKEN, "now = exp + 61 -> 1004");
    T_OK(check(KEY_K, tok, INT64_MAX, NULL) == SBX_AUTH_INVALID_TOKEN, "now = INT64_MAX -> 1004");
    free(tok);
    tok = sbx_auth_make_token(KEY_K, INT64_MAX, "e");
    T_OK(tok && check(KEY_K, tok, INT64_MAX, NULL) == SBX_AUTH_OK, "exp = INT64_MAX no overflow");
    free(tok);
    T_OK(sbx_auth_make_token(KEY_K, -1, "e") == NULL, "make_token refuses negative exp");
    T_OK(sbx_auth_make_token("", 5, "e") == NULL, "make_token refuses empty key");
}

static void test_key_file(const char *dir)
{
    char path[512], key1[SBX_AUTH_KEY_LEN + 1], key2[SBX_AUTH_KEY_LEN + 1];
    sbx_err err = {0};
    snprintf(path, sizeof(path), "%s/a/b/server.key", dir);
    T_OK(sbx_auth_load_key(path, key1, &err) == 0, "key file created (%s)", err.msg);
    struct stat st;
    T_OK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "key file mode 0600");
    T_OK(st.st_size == SBX_AUTH_KEY_LEN, "key file holds 32 bytes");
    char pdir[512];
    snprintf(pdir, sizeof(pdir), "%s/a/b", dir);
    T_OK(stat(pdir, &st) == 0 && (st.st_mode & 0777) == 0700, "parent dir mode 0700");
    T_OK(strlen(key1) == SBX_AUTH_KEY_LEN && all_alnum(key1, SBX_AUTH_KEY_LEN), "key is 32 alnum");
    T_OK(sbx_auth_load_key(path, key2, &err) == 0, "key file re-read");
    T_STREQ(key2, key1, "re-read key identical");
    char filebuf[64];
    size_t len = 0;
    T_OK(sbx_read_file(path, filebuf, sizeof(filebuf), &len) == 0 && len == 32 &&
             memcmp(filebuf, key1, 32) == 0,
         "file content is the key");

    char path2[512], key3[SBX_AUTH_KEY_LEN + 1];
    snprintf(path2, sizeof(path2), "%s/other.key", dir);
    T_OK(sbx_auth_load_key(path2, key3, &err) == 0 && strcmp(key3, key1) != 0,
         "second key file gets a different key");

    /* Hand-written key with trailing newline is accepted. */
    int fd = open(path2, O_WRONLY | O_TRUNC);
    T_OK(fd >= 0 && write(fd, "0123456789abcdefghijABCDEFGHIJxy\n", 33) == 33, "write key+newline");
    close(fd);
    T_OK(sbx_auth_load_key(path2, key3, &err) == 0 && strcmp(key3, "0123456789abcdefghijABCDEFGHIJxy") == 0,
         "trailing newline tolerated");

    static const char *bad[] = {"0123456789abcdefghijABCDEFGHIJx", "0123456789abcdefghijABCDEFGHIJxyz",
                                "0123456789abcdefghij-BCDEFGHIJxy", "0123456789abcdefghij BCDEFGHIJxy",
                                ""};
    for (size_t i = 0; i < SBX_ARRAY_LEN(bad); i++) {
        fd = open(path2, O_WRONLY | O_TRUNC);
        T_OK(fd >= 0 && write(fd, bad[i], strlen(bad[i])) == (ssize_t)strlen(bad[i]), "write bad key %zu", i);
        close(fd);
        memset(&err, 0, sizeof(err));
        int rc = sbx_auth_load_key(path2, key3, &err);
        T_OK(rc == -1 && strstr(err.msg, path2) != NULL, "malformed key file \"%s\" rejected: %s", bad[i],
             err.msg);
    }

    /* Concurrent first start: everyone ends up with the same key. */
    char path3[512];
    snprintf(path3, sizeof(path3), "%s/race/server.key", dir);
    enum { N = 8 };
    int fds[2];
    T_OK(pipe(fds) == 0, "pipe");
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char k[SBX_AUTH_KEY_LEN + 1];
            sbx_err e = {0};
            if (sbx_auth_load_key(path3, k, &e) != 0)
                memset(k, '!', SBX_AUTH_KEY_LEN);
            if (write(fds[1], k, SBX_AUTH_KEY_LEN) != SBX_AUTH_KEY_LEN)
                _exit(2);
            _exit(0);
        }
    }
    close(fds[1]);
    char keys[N][SBX_AUTH_KEY_LEN];
    int got = 0;
    for (int i = 0; i < N; i++)
        if (read(fds[0], keys[i], SBX_AUTH_KEY_LEN) == SBX_AUTH_KEY_LEN)
            got++;
    close(fds[0]);
    int same = got == N;
    for (int i = 0; i < N; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        same = same && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        same = same && memcmp(keys[i], keys[0], SBX_AUTH_KEY_LEN) == 0;
    }
    char key4[SBX_AUTH_KEY_LEN + 1];
    same = same && sbx_auth_load_key(path3, key4, &err) == 0 && memcmp(key4, keys[0], 32) == 0;
    T_OK(same, "%d racing processes agree on one key", N);
}

static void test_duration(void)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"1h", 3600},          {"7d", 604800},     {"3mo", 7776000},    {"1y", 31536000},
        {"30", 108000},        {"90s", 90},        {"15m", 900},        {"2w", 1209600},
        {"1s", 1},             {"24", 86400},      {"010m", 600},
        {"", -1},              {"0", -1},          {"0h", -1},          {"h", -1},
        {"-1h", -1},           {"+1h", -1},        {"5x", -1},          {"1hh", -1},
        {"1 h", -1},           {" 1h", -1},        {"1h ", -1},         {"1H", -1},
        {"1mo1", -1},          {"1M", -1},         {"m", -1},           {"mo", -1},
        {"1.5h", -1},          {"99999999999999999999", -1},            {"9223372036854775807s", INT64_MAX},
        {"9223372036854775808s", -1},              {"2562047788015216h", -1},
        {"106751991167301d", -1},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        int64_t got = sbx_auth_parse_duration(cases[i].in);
        T_OK(got == cases[i].want, "duration \"%s\" -> %lld (want %lld)", cases[i].in, (long long)got,
             (long long)cases[i].want);
    }
    T_OK(sbx_auth_parse_duration(NULL) == -1, "duration NULL -> -1");
}

int main(void)
{
    char dir[] = "/tmp/sbx-test-auth-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_vector();
    test_round_trip();
    test_credentials();
    test_invalid_tokens();
    test_expiry();
    test_key_file(dir);
    test_duration();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    T_DONE();
}
