/* Unit tests for src/client/: MSB_* configuration, volume mappings, .env,
 * the Python-compatible number parsing behind the wrapper's messages.
 * Expected texts are the ones in shared/protocols/sessions.md §1 and §6. */
#include "../../src/client/client_internal.h"
#include "sbx/client.h"
#include "t.h"
#include "util.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static char cwd[4096];

#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Sets the pairs, loads, unsets them again. */
static int load(const char *const *kv, sbx_client_config *c, sbx_err *e)
{
    for (size_t i = 0; kv[i]; i += 2)
        setenv(kv[i], kv[i + 1], 1);
    memset(e, 0, sizeof(*e));
    int rc = sbx_client_config_from_env(c, e);
    for (size_t i = 0; kv[i]; i += 2)
        unsetenv(kv[i]);
    return rc;
}

/* Loading kv fails with exactly msg. */
static void expect_err(const char *const *kv, const char *msg, const char *what)
{
    sbx_client_config c;
    sbx_err e;
    int rc = load(kv, &c, &e);
    T_OK(rc == -1 && e.code == SBX_E_INVALID, "%s: refused", what);
    T_STREQ(e.msg, msg, "%s: message", what);
    T_OK(c.n_shared_volume_mappings == 0 && c.session_timeout == 1800, "%s: cfg left at defaults", what);
    sbx_client_config_free(&c);
}

static void clear_msb_env(void)
{
    for (;;) {
        char **e = environ, name[256] = "";
        for (; e && *e; e++)
            if (strncmp(*e, "MSB_", 4) == 0)
                break;
        if (!e || !*e)
            return;
        const char *eq = strchr(*e, '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq ? eq - *e : (long)strlen(*e)), *e);
        unsetenv(name);
    }
}

static bool is_defaults(const sbx_client_config *c)
{
    return strcmp(c->server_url, "http://127.0.0.1:5555") == 0 && c->api_key[0] == '\0' &&
           c->session_timeout == 1800 && c->max_concurrent_sessions == 10 && c->cleanup_interval == 60 &&
           c->default_flavor == SBX_FLAVOR_SMALL && c->sandbox_start_timeout == 180.0 &&
           c->default_execution_timeout == 300 && c->max_total_memory_mb == 0 &&
           c->n_shared_volume_mappings == 0 && c->shared_volume_mappings == NULL &&
           c->orphan_cleanup_interval == 600 && c->enable_lru_eviction && c->log_level == SBX_CLIENT_LOG_INFO;
}

static void test_defaults(void)
{
    sbx_client_config c;
    sbx_client_config_defaults(&c);
    T_STREQ(c.server_url, "http://127.0.0.1:5555", "default MSB_SERVER_URL");
    T_STREQ(c.api_key, "", "default MSB_API_KEY: none");
    T_OK(c.session_timeout == 1800, "default MSB_SESSION_TIMEOUT 1800");
    T_OK(c.max_concurrent_sessions == 10, "default MSB_MAX_SESSIONS 10");
    T_OK(c.cleanup_interval == 60, "default MSB_CLEANUP_INTERVAL 60");
    T_OK(c.default_flavor == SBX_FLAVOR_SMALL, "default MSB_DEFAULT_FLAVOR small");
    T_OK(c.sandbox_start_timeout == 180.0, "default MSB_SANDBOX_START_TIMEOUT 180.0");
    T_OK(c.default_execution_timeout == 300, "default MSB_EXECUTION_TIMEOUT 300");
    T_OK(c.max_total_memory_mb == 0, "default MSB_MAX_TOTAL_MEMORY_MB: no limit");
    T_OK(c.n_shared_volume_mappings == 0, "default MSB_SHARED_VOLUME_PATH: none");
    T_OK(c.orphan_cleanup_interval == 600, "default MSB_ORPHAN_CLEANUP_INTERVAL 600");
    T_OK(c.enable_lru_eviction, "default MSB_ENABLE_LRU_EVICTION true");
    T_OK(c.log_level == SBX_CLIENT_LOG_INFO, "default MSB_LOG_LEVEL INFO");
    sbx_err e = {0};
    T_OK(sbx_client_config_validate(&c, &e) == 0, "defaults validate (%s)", e.msg);

    T_OK(load(KV("MSB_UNRELATED", "x"), &c, &e) == 0 && is_defaults(&c), "empty environment: defaults (%s)",
         e.msg);
    sbx_client_config_free(&c);

    /* An empty or blank variable takes the default. */
    static const char *const vars[] = {
        "MSB_SERVER_URL",         "MSB_API_KEY",           "MSB_SESSION_TIMEOUT",         "MSB_MAX_SESSIONS",
        "MSB_CLEANUP_INTERVAL",   "MSB_DEFAULT_FLAVOR",    "MSB_SANDBOX_START_TIMEOUT",   "MSB_EXECUTION_TIMEOUT",
        "MSB_MAX_TOTAL_MEMORY_MB", "MSB_SHARED_VOLUME_PATH", "MSB_ORPHAN_CLEANUP_INTERVAL", "MSB_ENABLE_LRU_EVICTION",
        "MSB_LOG_LEVEL",
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(vars); i++) {
        T_OK(load(KV(vars[i], ""), &c, &e) == 0 && is_defaults(&c), "%s=\"\" -> default (%s)", vars[i], e.msg);
        sbx_client_config_free(&c);
        T_OK(load(KV(vars[i], " \t "), &c, &e) == 0 && is_defaults(&c), "%s blank -> default (%s)", vars[i],
             e.msg);
        sbx_client_config_free(&c);
    }
}

static void test_values(void)
{
    sbx_client_config c;
    sbx_err e;
    int rc = load(KV("MSB_SERVER_URL", "https://sbx.example:8443", "MSB_API_KEY", " msb_abc ", "MSB_SESSION_TIMEOUT",
                     "3600", "MSB_MAX_SESSIONS", "20", "MSB_CLEANUP_INTERVAL", "30", "MSB_DEFAULT_FLAVOR", "medium",
                     "MSB_SANDBOX_START_TIMEOUT", "300.5", "MSB_EXECUTION_TIMEOUT", "600", "MSB_MAX_TOTAL_MEMORY_MB",
                     "16384", "MSB_ORPHAN_CLEANUP_INTERVAL", "300", "MSB_ENABLE_LRU_EVICTION", "false",
                     "MSB_LOG_LEVEL", "debug", "MSB_SHARED_VOLUME_PATH", "/data/in:/sandbox/in"),
                  &c, &e);
    T_OK(rc == 0, "every variable set: loads (%s)", e.msg);
    T_STREQ(c.server_url, "https://sbx.example:8443", "MSB_SERVER_URL read");
    T_STREQ(c.api_key, "msb_abc", "MSB_API_KEY read, trimmed");
    T_OK(c.session_timeout == 3600, "MSB_SESSION_TIMEOUT read");
    T_OK(c.max_concurrent_sessions == 20, "MSB_MAX_SESSIONS read");
    T_OK(c.cleanup_interval == 30, "MSB_CLEANUP_INTERVAL read");
    T_OK(c.default_flavor == SBX_FLAVOR_MEDIUM, "MSB_DEFAULT_FLAVOR read");
    T_OK(c.sandbox_start_timeout == 300.5, "MSB_SANDBOX_START_TIMEOUT read (float)");
    T_OK(c.default_execution_timeout == 600, "MSB_EXECUTION_TIMEOUT read");
    T_OK(c.max_total_memory_mb == 16384, "MSB_MAX_TOTAL_MEMORY_MB read");
    T_OK(c.orphan_cleanup_interval == 300, "MSB_ORPHAN_CLEANUP_INTERVAL read");
    T_OK(!c.enable_lru_eviction, "MSB_ENABLE_LRU_EVICTION read");
    T_OK(c.log_level == SBX_CLIENT_LOG_DEBUG, "MSB_LOG_LEVEL read");
    T_OK(c.n_shared_volume_mappings == 1 && strcmp(c.shared_volume_mappings[0].host, "/data/in") == 0 &&
             strcmp(c.shared_volume_mappings[0].guest, "/sandbox/in") == 0 && !c.shared_volume_mappings[0].readonly,
         "MSB_SHARED_VOLUME_PATH read");

    sbx_client_config d;
    T_OK(sbx_client_config_copy(&d, &c, &e) == 0 && d.shared_volume_mappings != c.shared_volume_mappings &&
             d.shared_volume_mappings[0].host != c.shared_volume_mappings[0].host &&
             strcmp(d.shared_volume_mappings[0].guest, "/sandbox/in") == 0 && d.max_total_memory_mb == 16384,
         "copy is deep");
    sbx_client_config_free(&c);
    T_OK(is_defaults(&c), "free resets to defaults");
    T_OK(strcmp(d.shared_volume_mappings[0].host, "/data/in") == 0, "copy survives the original's free");
    sbx_client_config_free(&d);

    T_OK(load(KV("MSB_SERVER_URL", "http://x"), &c, &e) == 0 && strcmp(c.server_url, "http://x") == 0,
         "http:// accepted");
    sbx_client_config_free(&c);
    expect_err(KV("MSB_SERVER_URL", "ftp://host:5555"),
               "Invalid server URL format: ftp://host:5555. Must start with http:// or https://", "URL scheme");
    expect_err(KV("MSB_SERVER_URL", "127.0.0.1:5555"),
               "Invalid server URL format: 127.0.0.1:5555. Must start with http:// or https://", "URL no scheme");
    expect_err(KV("MSB_SERVER_URL", "HTTP://x"),
               "Invalid server URL format: HTTP://x. Must start with http:// or https://",
               "URL scheme is case-sensitive (startswith)");
    char longurl[1100];
    memset(longurl, 'a', sizeof(longurl) - 1);
    memcpy(longurl, "http://", 7);
    longurl[sizeof(longurl) - 1] = '\0';
    expect_err(KV("MSB_SERVER_URL", longurl), "MSB_SERVER_URL is too long (1099 bytes, at most 1023)", "URL too long");
}

typedef struct {
    const char *var;
    int lo, hi;
    const char *unit;
    size_t off;
} range_case;

static void test_int_ranges(void)
{
    static const range_case cases[] = {
        {"MSB_SESSION_TIMEOUT", 60, 86400, " seconds", offsetof(sbx_client_config, session_timeout)},
        {"MSB_MAX_SESSIONS", 1, 100, "", offsetof(sbx_client_config, max_concurrent_sessions)},
        {"MSB_CLEANUP_INTERVAL", 10, 3600, " seconds", offsetof(sbx_client_config, cleanup_interval)},
        {"MSB_EXECUTION_TIMEOUT", 10, 3600, " seconds", offsetof(sbx_client_config, default_execution_timeout)},
        {"MSB_ORPHAN_CLEANUP_INTERVAL", 60, 3600, " seconds", offsetof(sbx_client_config, orphan_cleanup_interval)},
    };
    char msg[512], v[64];
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        const range_case *k = &cases[i];
        /* Keep the cross-field rule out of the way: cleanup 10 < session 86400. */
        const char *sess = strcmp(k->var, "MSB_SESSION_TIMEOUT") ? "86400" : NULL;
        const char *clean = strcmp(k->var, "MSB_CLEANUP_INTERVAL") ? "10" : NULL;
        int bounds[2] = {k->lo, k->hi};
        for (int b = 0; b < 2; b++) {
            sbx_client_config c;
            sbx_err e;
            snprintf(v, sizeof(v), " %d\n", bounds[b]);
            int rc;
            if (sess && clean)
                rc = load(KV(k->var, v, "MSB_SESSION_TIMEOUT", sess, "MSB_CLEANUP_INTERVAL", clean), &c, &e);
            else if (sess)
                rc = load(KV(k->var, v, "MSB_SESSION_TIMEOUT", sess), &c, &e);
            else
                rc = load(KV(k->var, v, "MSB_CLEANUP_INTERVAL", clean), &c, &e);
            T_OK(rc == 0 && *(int *)((char *)&c + k->off) == bounds[b], "%s=%d (bound, padded) accepted (%s)", k->var,
                 bounds[b], e.msg);
            sbx_client_config_free(&c);
        }
        snprintf(v, sizeof(v), "%d", k->lo - 1);
        if (k->lo - 1 > 0)
            snprintf(msg, sizeof(msg), "%s must be between %d and %d%s, got %d", k->var, k->lo, k->hi, k->unit,
                     k->lo - 1);
        else /* MSB_MAX_SESSIONS=0: the wrapper's own message comes first */
            snprintf(msg, sizeof(msg), "%s must be a positive integer, got 0", k->var);
        expect_err(KV(k->var, v), msg, "below range");
        snprintf(v, sizeof(v), "%d", k->hi + 1);
        snprintf(msg, sizeof(msg), "%s must be between %d and %d%s, got %d", k->var, k->lo, k->hi, k->unit, k->hi + 1);
        expect_err(KV(k->var, v), msg, "above range");
        snprintf(msg, sizeof(msg), "%s must be between %d and %d%s, got 99999999999999999999999", k->var, k->lo,
                 k->hi, k->unit);
        expect_err(KV(k->var, "99999999999999999999999"), msg, "beyond long long");
        snprintf(msg, sizeof(msg), "%s must be a positive integer, got 0", k->var);
        expect_err(KV(k->var, "0"), msg, "zero");
        expect_err(KV(k->var, "-00"), msg, "-00 is 0");
        snprintf(msg, sizeof(msg), "%s must be a positive integer, got -5", k->var);
        expect_err(KV(k->var, " -0005 "), msg, "negative, normalized like int()");
        static const char *const junk[] = {"abc", "12.5", "1e3", "0x10", "1__0", "_10", "10_", "+", "1 0"};
        for (size_t j = 0; j < SBX_ARRAY_LEN(junk); j++) {
            snprintf(msg, sizeof(msg), "%s must be a valid integer, got '%s'", k->var, junk[j]);
            expect_err(KV(k->var, junk[j]), msg, "not an integer");
        }
    }
    sbx_client_config c;
    sbx_err e;
    T_OK(load(KV("MSB_MAX_SESSIONS", "+0_50"), &c, &e) == 0 && c.max_concurrent_sessions == 50,
         "int() forms: sign, leading zeros, underscores (%s)", e.msg);
    sbx_client_config_free(&c);
    expect_err(KV("MSB_MAX_SESSIONS", " x "), "MSB_MAX_SESSIONS must be a valid integer, got ' x '",
               "raw value (untrimmed) quoted");
}

static void test_float(void)
{
    static const struct {
        const char *in;
        double want;
    } good[] = {{"30", 30}, {"600", 600}, {"300.0", 300}, {" 45.5 ", 45.5}, {"3e2", 300}, {"1_2_0.", 120},
                {".5e3", 500}, {"+60", 60}, {"6_0.0_1", 60.01}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(good); i++) {
        sbx_client_config c;
        sbx_err e;
        T_OK(load(KV("MSB_SANDBOX_START_TIMEOUT", good[i].in), &c, &e) == 0 && c.sandbox_start_timeout == good[i].want,
             "MSB_SANDBOX_START_TIMEOUT '%s' -> %g (%s)", good[i].in, good[i].want, e.msg);
        sbx_client_config_free(&c);
    }
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"0", "MSB_SANDBOX_START_TIMEOUT must be a positive number, got 0.0"},
        {"-0", "MSB_SANDBOX_START_TIMEOUT must be a positive number, got -0.0"},
        {"-1", "MSB_SANDBOX_START_TIMEOUT must be a positive number, got -1.0"},
        {"-inf", "MSB_SANDBOX_START_TIMEOUT must be a positive number, got -inf"},
        {"-1e-5", "MSB_SANDBOX_START_TIMEOUT must be a positive number, got -1e-05"},
        {"abc", "MSB_SANDBOX_START_TIMEOUT must be a valid number, got 'abc'"},
        {"0x1p5", "MSB_SANDBOX_START_TIMEOUT must be a valid number, got '0x1p5'"},
        {"1e", "MSB_SANDBOX_START_TIMEOUT must be a valid number, got '1e'"},
        {".", "MSB_SANDBOX_START_TIMEOUT must be a valid number, got '.'"},
        {"29.9", "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got 29.9"},
        {"600.5", "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got 600.5"},
        {"1e20", "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got 1e+20"},
        {"inf", "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got inf"},
        {"NaN", "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got nan"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(bad); i++)
        expect_err(KV("MSB_SANDBOX_START_TIMEOUT", bad[i].in), bad[i].msg, bad[i].in);

    static const struct {
        double x;
        const char *repr;
    } reprs[] = {{1, "1.0"},         {0.1, "0.1"},       {1e16, "1e+16"},     {1e15, "1000000000000000.0"},
                 {1.5e-5, "1.5e-05"}, {0.0001, "0.0001"}, {123.456, "123.456"}, {-2.5, "-2.5"},
                 {1e-300, "1e-300"}, {12345678901234567890.0, "1.2345678901234567e+19"}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(reprs); i++) {
        char buf[64];
        sbx_py_float_repr(reprs[i].x, buf, sizeof(buf));
        T_STREQ(buf, reprs[i].repr, "repr(%.17g)", reprs[i].x);
    }
}

static void test_bool_flavor_level(void)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "enabled", " TRUE ", "Yes", "ON", "Enabled"};
    static const char *const no[] = {"false", "0", "no", "off", "disabled", "False", " NO", "Off ", "DISABLED"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(yes); i++) {
        sbx_client_config c;
        sbx_err e;
        T_OK(load(KV("MSB_ENABLE_LRU_EVICTION", "false"), &c, &e) == 0 && !c.enable_lru_eviction, "false first");
        sbx_client_config_free(&c);
        T_OK(load(KV("MSB_ENABLE_LRU_EVICTION", yes[i]), &c, &e) == 0 && c.enable_lru_eviction,
             "MSB_ENABLE_LRU_EVICTION '%s' -> true", yes[i]);
        sbx_client_config_free(&c);
        T_OK(load(KV("MSB_ENABLE_LRU_EVICTION", no[i]), &c, &e) == 0 && !c.enable_lru_eviction,
             "MSB_ENABLE_LRU_EVICTION '%s' -> false", no[i]);
        sbx_client_config_free(&c);
    }
    expect_err(KV("MSB_ENABLE_LRU_EVICTION", " Maybe "),
               "MSB_ENABLE_LRU_EVICTION must be a valid boolean value (true/false, 1/0, yes/no, on/off, "
               "enabled/disabled), got 'maybe'",
               "bad boolean");
    expect_err(KV("MSB_ENABLE_LRU_EVICTION", "2"),
               "MSB_ENABLE_LRU_EVICTION must be a valid boolean value (true/false, 1/0, yes/no, on/off, "
               "enabled/disabled), got '2'",
               "bad boolean 2");

    static const struct {
        const char *in;
        sbx_flavor f;
    } fl[] = {{"small", SBX_FLAVOR_SMALL}, {" Medium ", SBX_FLAVOR_MEDIUM}, {"LARGE", SBX_FLAVOR_LARGE},
              {"\tlarge\n", SBX_FLAVOR_LARGE}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(fl); i++) {
        sbx_client_config c;
        sbx_err e;
        char r[64];
        sbx_py_repr(fl[i].in, r, sizeof(r));
        T_OK(load(KV("MSB_DEFAULT_FLAVOR", fl[i].in), &c, &e) == 0 && c.default_flavor == fl[i].f,
             "MSB_DEFAULT_FLAVOR %s (%s)", r, e.msg);
        sbx_client_config_free(&c);
    }
    expect_err(KV("MSB_DEFAULT_FLAVOR", " XLarge "),
               "Invalid MSB_DEFAULT_FLAVOR 'xlarge'. Valid options are: small, medium, large", "xlarge refused");

    const sbx_flavor_info *s = sbx_flavor_get(SBX_FLAVOR_SMALL), *m = sbx_flavor_get(SBX_FLAVOR_MEDIUM),
                          *l = sbx_flavor_get(SBX_FLAVOR_LARGE);
    T_OK(s && s->cpus == 1 && s->memory_mb == 1024 && strcmp(s->name, "small") == 0, "small = 1 CPU, 1024 MiB");
    T_OK(m && m->cpus == 2 && m->memory_mb == 2048 && strcmp(m->name, "medium") == 0, "medium = 2 CPUs, 2048 MiB");
    T_OK(l && l->cpus == 4 && l->memory_mb == 4096 && strcmp(l->name, "large") == 0, "large = 4 CPUs, 4096 MiB");
    T_OK(sbx_flavor_get((sbx_flavor)3) == NULL && sbx_flavor_name((sbx_flavor)-1) == NULL, "no fourth flavor");
    sbx_flavor f = SBX_FLAVOR_SMALL;
    T_OK(sbx_flavor_parse(" mEdIuM ", &f) == 0 && f == SBX_FLAVOR_MEDIUM, "flavor parse trimmed, any case");
    T_OK(sbx_flavor_parse("", &f) < 0 && sbx_flavor_parse("smal", &f) < 0 && sbx_flavor_parse(NULL, &f) < 0,
         "flavor parse refuses junk");
    T_STREQ(sbx_flavor_name(SBX_FLAVOR_LARGE), "large", "flavor name");

    static const struct {
        const char *in;
        sbx_client_log_level l;
    } lv[] = {{"DEBUG", SBX_CLIENT_LOG_DEBUG}, {"info", SBX_CLIENT_LOG_INFO}, {" Warning ", SBX_CLIENT_LOG_WARNING},
              {"error", SBX_CLIENT_LOG_ERROR}, {"CRITICAL", SBX_CLIENT_LOG_CRITICAL}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(lv); i++) {
        sbx_client_config c;
        sbx_err e;
        T_OK(load(KV("MSB_LOG_LEVEL", lv[i].in), &c, &e) == 0 && c.log_level == lv[i].l, "MSB_LOG_LEVEL '%s'",
             lv[i].in);
        sbx_client_config_free(&c);
    }
    expect_err(KV("MSB_LOG_LEVEL", "warn"),
               "Invalid MSB_LOG_LEVEL 'warn'. Valid options are: DEBUG, INFO, WARNING, ERROR, CRITICAL",
               "MSB_LOG_LEVEL warn refused");
    T_STREQ(sbx_client_log_level_name(SBX_CLIENT_LOG_CRITICAL), "CRITICAL", "log level name");
}

static void test_memory_and_cross(void)
{
    sbx_client_config c;
    sbx_err e;
    T_OK(load(KV("MSB_MAX_TOTAL_MEMORY_MB", "1024"), &c, &e) == 0 && c.max_total_memory_mb == 1024,
         "memory = small's 1024 accepted");
    sbx_client_config_free(&c);
    T_OK(load(KV("MSB_MAX_TOTAL_MEMORY_MB", "4096", "MSB_DEFAULT_FLAVOR", "large"), &c, &e) == 0 &&
             c.max_total_memory_mb == 4096,
         "memory = large's 4096 accepted");
    sbx_client_config_free(&c);
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "1000"),
               "Max total memory (1000MB) is less than minimum needed for default flavor (1024MB)", "memory < small");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "4095", "MSB_DEFAULT_FLAVOR", "large"),
               "Max total memory (4095MB) is less than minimum needed for default flavor (4096MB)", "memory < large");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "2048", "MSB_DEFAULT_FLAVOR", "large"),
               "Max total memory (2048MB) is less than minimum needed for default flavor (4096MB)",
               "memory below the default flavor");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "0"), "MSB_MAX_TOTAL_MEMORY_MB must be a positive integer, got 0",
               "memory 0");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "-8192"), "MSB_MAX_TOTAL_MEMORY_MB must be a positive integer, got -8192",
               "memory negative");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "8GB"), "MSB_MAX_TOTAL_MEMORY_MB must be a valid integer, got '8GB'",
               "memory with unit");
    expect_err(KV("MSB_MAX_TOTAL_MEMORY_MB", "99999999999999999999"),
               "MSB_MAX_TOTAL_MEMORY_MB must be at most 9223372036854775807, got 99999999999999999999", "memory huge");

    expect_err(KV("MSB_CLEANUP_INTERVAL", "1800"), "Cleanup interval (1800s) must be less than session timeout (1800s)",
               "cleanup = session timeout");
    expect_err(KV("MSB_SESSION_TIMEOUT", "60"), "Cleanup interval (60s) must be less than session timeout (60s)",
               "session timeout = default cleanup");
    T_OK(load(KV("MSB_SESSION_TIMEOUT", "61"), &c, &e) == 0, "cleanup 60 < session 61");
    sbx_client_config_free(&c);
    T_OK(load(KV("MSB_SESSION_TIMEOUT", "600", "MSB_EXECUTION_TIMEOUT", "3600"), &c, &e) == 0,
         "execution timeout > session timeout loads (only a warning in config check)");
    sbx_client_config_free(&c);

    /* Errors come in the wrapper's order: mappings, flavor, numbers. */
    expect_err(KV("MSB_SHARED_VOLUME_PATH", "nocolon", "MSB_DEFAULT_FLAVOR", "x", "MSB_SESSION_TIMEOUT", "1"),
               "Invalid volume mapping at position 0 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: "
               "nocolon. Expected 'host_path:container_path'\nGot: 'nocolon'\nExpected format: "
               "'host_path:sandbox_path' (e.g., './data:/workspace')",
               "mappings checked first");
    expect_err(KV("MSB_DEFAULT_FLAVOR", "x", "MSB_SESSION_TIMEOUT", "1"),
               "Invalid MSB_DEFAULT_FLAVOR 'x'. Valid options are: small, medium, large", "then the flavor");
}

static void test_validate_by_hand(void)
{
    sbx_client_config c;
    sbx_err e = {0};
    sbx_client_config_defaults(&c);
#define BAD(stmt, want_msg, what)                                                                                     \
    do {                                                                                                         \
        sbx_client_config_defaults(&c);                                                                          \
        stmt;                                                                                                    \
        memset(&e, 0, sizeof(e));                                                                                \
        T_OK(sbx_client_config_validate(&c, &e) == -1 && e.code == SBX_E_INVALID, "by hand: %s refused", what);  \
        T_STREQ(e.msg, want_msg, "by hand: %s message", what);                                                     \
    } while (0)
    BAD(c.max_concurrent_sessions = 0, "Max concurrent sessions must be at least 1", "max sessions 0");
    BAD(c.max_concurrent_sessions = 101, "MSB_MAX_SESSIONS must be between 1 and 100, got 101", "max sessions 101");
    BAD(c.session_timeout = 59, "MSB_SESSION_TIMEOUT must be between 60 and 86400 seconds, got 59", "session 59");
    BAD(c.cleanup_interval = 5, "MSB_CLEANUP_INTERVAL must be between 10 and 3600 seconds, got 5", "cleanup 5");
    BAD(c.default_execution_timeout = 3601, "MSB_EXECUTION_TIMEOUT must be between 10 and 3600 seconds, got 3601",
        "exec 3601");
    BAD(c.orphan_cleanup_interval = 30, "MSB_ORPHAN_CLEANUP_INTERVAL must be between 60 and 3600 seconds, got 30",
        "orphan 30");
    BAD(c.sandbox_start_timeout = 10, "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got 10.0",
        "start 10");
    BAD(c.sandbox_start_timeout = NAN, "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got nan",
        "start NaN");
    BAD((c.session_timeout = 600, c.cleanup_interval = 600),
        "Cleanup interval (600s) must be less than session timeout (600s)", "cleanup = session");
    BAD((c.default_flavor = SBX_FLAVOR_MEDIUM, c.max_total_memory_mb = 2047),
        "Max total memory (2047MB) is less than minimum needed for default flavor (2048MB)", "memory < medium");
    BAD(snprintf(c.server_url, sizeof(c.server_url), "localhost:5555"),
        "Invalid server URL format: localhost:5555. Must start with http:// or https://", "url");
    BAD(c.default_flavor = (sbx_flavor)7, "Invalid MSB_DEFAULT_FLAVOR '7'. Valid options are: small, medium, large",
        "flavor 7");
    BAD(c.log_level = (sbx_client_log_level)9,
        "Invalid MSB_LOG_LEVEL '9'. Valid options are: DEBUG, INFO, WARNING, ERROR, CRITICAL", "log level 9");
    sbx_volume_mapping bad_map = {.host = (char *)"", .guest = (char *)"/x"};
    BAD((c.shared_volume_mappings = &bad_map, c.n_shared_volume_mappings = 1),
        "Invalid volume mapping format: :/x. Both paths must be non-empty", "mapping with empty host");
#undef BAD
    sbx_client_config_defaults(&c);
    c.max_concurrent_sessions = 15;
    c.default_flavor = SBX_FLAVOR_LARGE;
    c.max_total_memory_mb = 16384;
    T_OK(sbx_client_config_validate(&c, &e) == 0, "hand-set good config validates (%s)", e.msg);

    T_OK(sbx_client_config_add_mapping(&c, "/custom/path:/sandbox/custom", &e) == 0 &&
             sbx_client_config_add_mapping(&c, " data/x : /sandbox/x :ro ", &e) == 0 &&
             c.n_shared_volume_mappings == 2,
         "add_mapping appends (%s)", e.msg);
    char want[4200];
    snprintf(want, sizeof(want), "%s/data/x", cwd);
    T_STREQ(c.shared_volume_mappings[1].host, want, "add_mapping resolves a relative host path");
    T_OK(strcmp(c.shared_volume_mappings[1].guest, "/sandbox/x") == 0 && c.shared_volume_mappings[1].readonly,
         "add_mapping :ro");
    T_OK(sbx_client_config_add_mapping(&c, "nope", &e) == -1 && c.n_shared_volume_mappings == 2, "add_mapping refuses");
    T_STREQ(e.msg, "Invalid volume mapping format: nope. Expected 'host_path:container_path'", "add_mapping message");
    T_OK(sbx_client_config_validate(&c, &e) == 0, "validates with mappings");
    sbx_client_config_free(&c);
}

static void check_maps(const char *value, size_t n, const char *const *hgr, const char *what)
{
    sbx_volume_mapping *m = NULL;
    size_t got = 99;
    sbx_err e = {0};
    int rc = sbx_volume_mappings_parse(value, &m, &got, &e);
    bool ok = rc == 0 && got == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(m[i].host, hgr[3 * i]) == 0 && strcmp(m[i].guest, hgr[3 * i + 1]) == 0 &&
             m[i].readonly == (hgr[3 * i + 2][0] == 'r');
    T_OK(ok, "mappings %s (%s)", what, e.msg);
    if (!ok)
        for (size_t i = 0; rc == 0 && i < got; i++)
            printf("#   [%zu] '%s' -> '%s' %s\n", i, m[i].host, m[i].guest, m[i].readonly ? "ro" : "rw");
    sbx_volume_mappings_free(m, got);
}

static void map_err(const char *value, const char *msg)
{
    sbx_volume_mapping *m = (sbx_volume_mapping *)1;
    size_t n = 99;
    sbx_err e = {0};
    T_OK(sbx_volume_mappings_parse(value, &m, &n, &e) == -1 && m == NULL && n == 0 && e.code == SBX_E_INVALID,
         "mapping value refused: %s", value);
    T_STREQ(e.msg, msg, "mapping error text for %s", value);
}

static void test_mappings(void)
{
    check_maps("[\"/host/data:/sandbox/data\"]", 1, KV("/host/data", "/sandbox/data", "-"), "JSON single");
    check_maps("[\"/host/input:/sandbox/input\", \"/host/output:/sandbox/output\"]", 2,
               KV("/host/input", "/sandbox/input", "-", "/host/output", "/sandbox/output", "-"), "JSON two");
    check_maps("[\n  \"/project/src:/sandbox/src:ro\",\n  \"/project/data:/sandbox/data\",\n  "
               "\"/project/output:/sandbox/output:rw\"\n]",
               3,
               KV("/project/src", "/sandbox/src", "ro", "/project/data", "/sandbox/data", "-", "/project/output",
                  "/sandbox/output", "-"),
               "JSON multi-line with :ro and :rw (the guide's example)");
    check_maps("  [ \" /a : /b \", \"\", \"  \" ]  ", 1, KV("/a", "/b", "-"), "JSON entries trimmed, empty skipped");
    check_maps("[]", 0, KV("x"), "JSON empty array");
    check_maps("/host/data:/sandbox/data,/host/logs:/sandbox/logs", 2,
               KV("/host/data", "/sandbox/data", "-", "/host/logs", "/sandbox/logs", "-"), "comma form");
    check_maps(" /a:/b:ro , , /c:/d ,", 2, KV("/a", "/b", "ro", "/c", "/d", "-"),
               "comma form trimmed, empties skipped");
    check_maps("/a:/b", 1, KV("/a", "/b", "-"), "single mapping");
    check_maps("./data:/workspace", 1, KV("./data", "/workspace", "-"), "parser keeps paths as written");
    check_maps("/a:/b:/c", 1, KV("/a", "/b:/c", "-"), "split at the first colon");
    check_maps("/a:b:ro", 1, KV("/a", "b", "ro"), ":ro with a relative guest");
    check_maps("", 0, KV("x"), "empty value");
    check_maps("   ", 0, KV("x"), "blank value");
    check_maps(NULL, 0, KV("x"), "NULL value");

    const char *hint = "\nExpected format: 'host_path:sandbox_path' (e.g., './data:/workspace')";
    char msg[512];
    snprintf(msg, sizeof(msg),
             "Invalid volume mapping at position 0 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: "
             "/only/host. Expected 'host_path:container_path'\nGot: '/only/host'%s",
             hint);
    map_err("/only/host", msg);
    snprintf(msg, sizeof(msg),
             "Invalid volume mapping at position 2 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: "
             ":/guest. Both paths must be non-empty\nGot: ':/guest'%s",
             hint);
    map_err("/a:/b,, :/guest", msg);
    snprintf(msg, sizeof(msg),
             "Invalid volume mapping at position 1 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: "
             "/host:. Both paths must be non-empty\nGot: '/host:'%s",
             hint);
    map_err("[\"/a:/b\", \"/host:\"]", msg);
    snprintf(msg, sizeof(msg),
             "Invalid volume mapping at position 0 in MSB_SHARED_VOLUME_PATH: Invalid volume mapping format: "
             "/host: :ro. Both paths must be non-empty\nGot: '/host: :ro'%s",
             hint);
    map_err("/host: :ro", msg);
    map_err("{\"a\": \"/x:/y\"}", "MSB_SHARED_VOLUME_PATH must be an array of strings, not a JSON object. Got: "
                                  "'{\"a\": \"/x:/y\"}'\nExample: ['./data:/workspace', './shared:/sandbox/shared']");
    map_err("[\"/a:/b\"", "MSB_SHARED_VOLUME_PATH appears to be JSON array but is malformed: missing closing bracket. "
                          "Got: '[\"/a:/b\"'");
    map_err("[[\"/a:/b\"]", "MSB_SHARED_VOLUME_PATH has mismatched brackets. Got: '[[\"/a:/b\"]'");
    map_err("[1]", "MSB_SHARED_VOLUME_PATH item 0 must be a string, got int. All volume mappings must be strings "
                   "like 'host_path:sandbox_path'");
    map_err("[\"/a:/b\", null]", "MSB_SHARED_VOLUME_PATH item 1 must be a string, got NoneType. All volume mappings "
                                 "must be strings like 'host_path:sandbox_path'");
    map_err("[\"/a:/b\", [\"/c:/d\"]]", "MSB_SHARED_VOLUME_PATH item 1 must be a string, got list. All volume "
                                        "mappings must be strings like 'host_path:sandbox_path'");
    map_err("[true, 1.5]", "MSB_SHARED_VOLUME_PATH item 0 must be a string, got bool. All volume mappings must be "
                           "strings like 'host_path:sandbox_path'");

    /* Syntax errors: the parser's words vary, the frame and hints do not. */
    static const struct {
        const char *value, *hint;
    } syn[] = {
        {"['/a:/b']", "- Strings in JSON arrays must be quoted with double quotes"},
        {"[\"/a:/b\" \"/c:/d\"]", "- Multiple items in JSON arrays must be separated by commas"},
        {"[\"/a:/b]", "- Check that all quotes are properly paired"},
        {"[\"/a:/b\",]", "- Ensure the value is valid JSON array format: [\"item1\", \"item2\"]"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(syn); i++) {
        sbx_volume_mapping *m = NULL;
        size_t n = 0;
        sbx_err e = {0};
        int rc = sbx_volume_mappings_parse(syn[i].value, &m, &n, &e);
        bool ok = rc == -1 && strncmp(e.msg, "Invalid JSON format in MSB_SHARED_VOLUME_PATH: ", 47) == 0 &&
                  strstr(e.msg, "\nHelpful suggestions:\n") && strstr(e.msg, syn[i].hint);
        T_OK(ok, "JSON syntax error %s: message frame and hint", syn[i].value);
        if (!ok)
            printf("#   got: %s\n", e.msg);
        if (rc == 0)
            sbx_volume_mappings_free(m, n);
    }

    sbx_volume_mapping one;
    sbx_err e = {0};
    T_OK(sbx_volume_mapping_parse("/x:/y:ro", &one, &e) == 0 && one.readonly && strcmp(one.guest, "/y") == 0,
         "single entry parse :ro");
    free(one.host);
    free(one.guest);
    T_OK(sbx_volume_mapping_parse("/x", &one, &e) == -1, "single entry without colon refused");
    T_STREQ(e.msg, "Invalid volume mapping format: /x. Expected 'host_path:container_path'", "bare entry error");

    /* From the environment, relative host paths become absolute (sbx rule). */
    sbx_client_config c;
    T_OK(load(KV("MSB_SHARED_VOLUME_PATH", "[\"./data:/sandbox/data:ro\", \"../up/./x/:/u\", \"/abs/./p:/p\"]"), &c,
              &e) == 0 &&
             c.n_shared_volume_mappings == 3,
         "env mappings load (%s)", e.msg);
    char want[4200], up[4096];
    snprintf(want, sizeof(want), "%s/data", cwd);
    T_STREQ(c.n_shared_volume_mappings ? c.shared_volume_mappings[0].host : NULL, want, "./data resolved against cwd");
    snprintf(up, sizeof(up), "%s", cwd);
    *strrchr(up, '/') = '\0';
    snprintf(want, sizeof(want), "%s/up/x", up);
    T_STREQ(c.n_shared_volume_mappings > 1 ? c.shared_volume_mappings[1].host : NULL, want,
            "../up/./x/ normalized like os.path.abspath");
    T_STREQ(c.n_shared_volume_mappings > 2 ? c.shared_volume_mappings[2].host : NULL, "/abs/./p",
            "absolute host kept as written");
    T_OK(c.n_shared_volume_mappings && c.shared_volume_mappings[0].readonly, "env mapping :ro");
    sbx_client_config_free(&c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_dotenv(const char *dir)
{
    char sub[4200], path[4300];
    snprintf(sub, sizeof(sub), "%s/envdir", dir);
    mkdir(sub, 0700);
    if (chdir(sub) != 0) {
        T_OK(0, "chdir %s", sub);
        return;
    }
    snprintf(path, sizeof(path), "%s/.env", sub);
    sbx_client_config c;
    sbx_err e = {0};

    T_OK(load(KV("MSB_X", "1"), &c, &e) == 0 && is_defaults(&c), "no .env: defaults");
    sbx_client_config_free(&c);

    write_file(path, "# .env file template\n"
                     "\n"
                     "MSB_SERVER_URL=http://127.0.0.1:7777\n"
                     "MSB_API_KEY=\n"
                     "export MSB_SESSION_TIMEOUT=3600   # one hour\n"
                     "  MSB_MAX_SESSIONS = 20\n"
                     "MSB_CLEANUP_INTERVAL='30'\n"
                     "MSB_DEFAULT_FLAVOR=\"medium\" # inline comment after quotes\n"
                     "MSB_SANDBOX_START_TIMEOUT=180.0\r\n"
                     "MSB_MAX_TOTAL_MEMORY_MB=\n"
                     "OTHER_APP_LINE without equals sign\n"
                     "lowercase.key=ok\n"
                     "BASE=/srv\n"
                     "MSB_SHARED_VOLUME_PATH='[\n"
                     "  \"/data/in:/sandbox/in\",\n"
                     "  \"${BASE}/out:/sandbox/out:ro\"\n"
                     "]'\n"
                     "MSB_ORPHAN_CLEANUP_INTERVAL=\"${ORPHAN_FROM_ENV:-300}\"\n"
                     "MSB_LOG_LEVEL=DEBUG#not-a-comment-without-space\n"
                     "MSB_ENABLE_LRU_EVICTION=off\n");
    int rc = load(KV("MSB_UNRELATED", "1"), &c, &e);
    T_OK(rc == -1, ".env: value with '#' glued is the value (refused as a log level)");
    T_STREQ(e.msg,
            "Invalid MSB_LOG_LEVEL 'DEBUG#not-a-comment-without-space'. Valid options are: DEBUG, INFO, WARNING, "
            "ERROR, CRITICAL",
            ".env: error names the variable and value");
    sbx_client_config_free(&c);

    rc = load(KV("MSB_LOG_LEVEL", "warning", "MSB_MAX_SESSIONS", "7", "MSB_API_KEY", "real-key"), &c, &e);
    T_OK(rc == 0, ".env loads with the real environment fixing one line (%s)", e.msg);
    T_STREQ(c.server_url, "http://127.0.0.1:7777", ".env: plain value");
    T_STREQ(c.api_key, "real-key", ".env: real environment wins over an empty entry");
    T_OK(c.session_timeout == 3600, ".env: export prefix and trailing comment");
    T_OK(c.max_concurrent_sessions == 7, ".env: real environment wins (7 over 20)");
    T_OK(c.cleanup_interval == 30, ".env: single-quoted value");
    T_OK(c.default_flavor == SBX_FLAVOR_MEDIUM, ".env: double-quoted value, comment after");
    T_OK(c.sandbox_start_timeout == 180.0, ".env: CRLF line");
    T_OK(c.max_total_memory_mb == 0, ".env: empty value = default");
    T_OK(c.n_shared_volume_mappings == 2, ".env: multi-line single-quoted JSON");
    char lit[4300];
    snprintf(lit, sizeof(lit), "%s/${BASE}/out", sub);
    T_STREQ(c.n_shared_volume_mappings == 2 ? c.shared_volume_mappings[1].host : NULL, lit,
            ".env: no expansion inside single quotes");
    T_OK(c.orphan_cleanup_interval == 300, ".env: ${VAR:-default} expansion in double quotes");
    T_OK(c.log_level == SBX_CLIENT_LOG_WARNING, ".env: real environment wins");
    T_OK(!c.enable_lru_eviction, ".env: boolean");
    sbx_client_config_free(&c);

    rc = load(KV("MSB_LOG_LEVEL", "info", "ORPHAN_FROM_ENV", "120", "MSB_SESSION_TIMEOUT", ""), &c, &e);
    T_OK(rc == 0 && c.orphan_cleanup_interval == 120, ".env: ${VAR} taken from the real environment (%s)", e.msg);
    T_OK(c.session_timeout == 1800, ".env: a variable set empty in the environment still wins (default)");
    sbx_client_config_free(&c);

    write_file(path, "BASE=/srv\nMSB_SHARED_VOLUME_PATH=${BASE}/in:/in,${NOPE}/x:/x\n");
    rc = load(KV("MSB_X", ""), &c, &e);
    T_OK(rc == 0 && c.n_shared_volume_mappings == 2 && strcmp(c.shared_volume_mappings[0].host, "/srv/in") == 0,
         ".env: ${VAR} from an earlier entry, unquoted (%s)", e.msg);
    T_STREQ(c.n_shared_volume_mappings == 2 ? c.shared_volume_mappings[1].host : NULL, "/x",
            ".env: unknown ${VAR} is empty");
    sbx_client_config_free(&c);

    write_file(path, "MSB_SESSION_TIMEOUT=30\n");
    expect_err(KV("MSB_X", ""), "MSB_SESSION_TIMEOUT must be between 60 and 86400 seconds, got 30",
               ".env out-of-range value");
    write_file(path, "MSB_EXECUTION_TIMEOUT=\"5 minutes\"\n");
    expect_err(KV("MSB_X", ""), "MSB_EXECUTION_TIMEOUT must be a valid integer, got '5 minutes'", ".env bad integer");
    write_file(path, "A=1\nMSB_MAX_SESSIONS 5\n");
    expect_err(KV("MSB_X", ""), ".env line 2: cannot parse 'MSB_MAX_SESSIONS 5' (expected KEY=VALUE)",
               ".env malformed MSB_ line");
    write_file(path, "\n\nMSB_API_KEY=\"abc\n");
    expect_err(KV("MSB_X", ""), ".env line 3: MSB_API_KEY has an unterminated \" quote", ".env unterminated quote");
    write_file(path, "MSB_API_KEY=\"abc\" trailing\n");
    expect_err(KV("MSB_X", ""), ".env line 1: cannot parse 'MSB_API_KEY=\"abc\" trailing' (expected KEY=VALUE)",
               ".env junk after quotes");
    write_file(path, "OTHER=\"never closed\nMSB_MAX_SESSIONS=5\n");
    rc = load(KV("MSB_X", ""), &c, &e);
    T_OK(rc == 0 && c.max_concurrent_sessions == 5, "another program's unterminated quote does not eat the file (%s)",
         e.msg);
    sbx_client_config_free(&c);
    write_file(path, "MSB_API_KEY=\"a\\\"b\\\\c\\n\"\nMSB_SERVER_URL='http://h/\\'q'\n");
    rc = load(KV("MSB_X", ""), &c, &e);
    T_STREQ(c.api_key, "a\"b\\c", ".env double-quote escapes (\\n then trimmed)");
    T_STREQ(c.server_url, "http://h/'q", ".env single-quote escape");
    sbx_client_config_free(&c);

    unlink(path);
    mkdir(path, 0700);
    rc = load(KV("MSB_X", ""), &c, &e);
    T_OK(rc == -1 && e.code == SBX_E_SYSTEM && is_defaults(&c), ".env that is a directory: refused");
    T_STREQ(e.msg, "Failed to load configuration from environment: cannot read .env: not a regular file",
            ".env that is a directory: the wrapper's catch-all message");
    sbx_client_config_free(&c);
    rmdir(path);

    /* The parser on its own. */
    sbx_dotenv d;
    T_OK(sbx_dotenv_parse("A=1\nA=2\nexport\tB = ' x '\n#C=3\n", "t", &d, &e) == 0, "parse");
    T_STREQ(sbx_dotenv_get(&d, "A"), "2", "later duplicate wins");
    T_STREQ(sbx_dotenv_get(&d, "B"), " x ", "quoted value keeps its spaces");
    T_OK(sbx_dotenv_get(&d, "C") == NULL && sbx_dotenv_get(&d, "#C") == NULL, "comment line ignored");
    sbx_dotenv_free(&d);
    T_OK(sbx_dotenv_load("/nonexistent/dir/.env", &d, &e) == 0 && d.n == 0, "missing file: empty");

    if (chdir(cwd) != 0)
        T_OK(0, "chdir back");
}

int main(void)
{
    char dir[] = "/tmp/sbx-test-client-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* Work in an empty directory: no stray .env, known relative paths. */
    if (chdir(dir) != 0 || !getcwd(cwd, sizeof(cwd))) {
        perror(dir);
        return 1;
    }
    clear_msb_env();
    test_defaults();
    test_values();
    test_int_ranges();
    test_float();
    test_bool_flavor_level();
    test_memory_and_cross();
    test_validate_by_hand();
    test_mappings();
    test_dotenv(dir);
    if (chdir("/") != 0)
        printf("# chdir / failed\n");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    T_DONE();
}
