/* Server authentication, as microsandbox v0.2 does it: a server key file
 * (32 random alphanumeric chars) and API keys "msb_" + a compact HS256
 * JWT signed with that key, carrying `exp` and a `namespace` claim. */
#ifndef SBX_AUTH_H
#define SBX_AUTH_H

#include <stdint.h>
#include "sbx/engine.h"

#define SBX_AUTH_KEY_LEN 32

/* Reads the key file, creating it (mode 0600, parent dirs 0700) with a new
 * random key when it does not exist. key gets SBX_AUTH_KEY_LEN chars + NUL. */
int sbx_auth_load_key(const char *path, char key[SBX_AUTH_KEY_LEN + 1], sbx_err *err);

/* "<n><unit>" with unit s|m|h|d|w|mo|y (mo = 30 d, y = 365 d); a bare
 * number means hours. Returns seconds, or -1 when malformed/zero/overflow. */
int64_t sbx_auth_parse_duration(const char *s);

/* "msb_" + JWT {"exp":exp,"namespace":ns} (HS256 with key). malloc'd. */
char *sbx_auth_make_token(const char *key, int64_t exp, const char *ns);

enum {
    SBX_AUTH_OK = 0,
    SBX_AUTH_INVALID_CREDENTIALS = 1001, /* no header, no msb_ prefix, or no server key */
    SBX_AUTH_INVALID_TOKEN = 1004,       /* bad signature/alg, expired, undecodable, no exp */
};

/* Checks the value of an Authorization / Proxy-Authorization header
 * ("Bearer <token>" or "<token>") against key at time now (seconds).
 * Accepts while now <= exp + 60. On SBX_AUTH_OK, *ns gets the namespace
 * claim (malloc'd; "*" when absent). Signature compared in constant time. */
int sbx_auth_check(const char *key, const char *header, int64_t now, char **ns);

#endif
