/* MSB_* configuration: defaults, the environment (+ .env), validation.
 * Messages are the microsandbox wrapper's where it has one
 * (shared/protocols/sessions.md §1); range refusals are sbx's own rule. */
#include "client_internal.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const sbx_flavor_info flavors[SBX_FLAVOR_COUNT] = {
    [SBX_FLAVOR_SMALL] = {"small", 1, 1024},
    [SBX_FLAVOR_MEDIUM] = {"medium", 2, 2048},
    [SBX_FLAVOR_LARGE] = {"large", 4, 4096},
};

static const char *const log_levels[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

const sbx_flavor_info *sbx_flavor_get(sbx_flavor f)
{
    return (unsigned)f < SBX_FLAVOR_COUNT ? &flavors[f] : NULL;
}

const char *sbx_flavor_name(sbx_flavor f)
{
    return (unsigned)f < SBX_FLAVOR_COUNT ? flavors[f].name : NULL;
}

int sbx_flavor_parse(const char *s, sbx_flavor *out)
{
    char *t = s ? sbx_py_strip(s) : NULL;
    int rc = -1;
    for (int i = 0; t && i < SBX_FLAVOR_COUNT; i++)
        if (strcasecmp(t, flavors[i].name) == 0) {
            *out = (sbx_flavor)i;
            rc = 0;
        }
    free(t);
    return rc;
}

const char *sbx_client_log_level_name(sbx_client_log_level l)
{
    return (unsigned)l < SBX_ARRAY_LEN(log_levels) ? log_levels[l] : NULL;
}

int sbx_client_log_level_parse(const char *s, sbx_client_log_level *out)
{
    char *t = s ? sbx_py_strip(s) : NULL;
    int rc = -1;
    for (size_t i = 0; t && i < SBX_ARRAY_LEN(log_levels); i++)
        if (strcasecmp(t, log_levels[i]) == 0) {
            *out = (sbx_client_log_level)i;
            rc = 0;
        }
    free(t);
    return rc;
}

void sbx_client_config_defaults(sbx_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->server_url, sizeof(cfg->server_url), "http://127.0.0.1:5555");
    cfg->session_timeout = 1800;
    cfg->max_concurrent_sessions = 10;
    cfg->cleanup_interval = 60;
    cfg->default_flavor = SBX_FLAVOR_SMALL;
    cfg->sandbox_start_timeout = 180.0;
    cfg->default_execution_timeout = 300;
    cfg->max_total_memory_mb = 0;
    cfg->orphan_cleanup_interval = 600;
    cfg->enable_lru_eviction = true;
    cfg->log_level = SBX_CLIENT_LOG_INFO;
}

void sbx_client_config_free(sbx_client_config *cfg)
{
    sbx_volume_mappings_free(cfg->shared_volume_mappings, cfg->n_shared_volume_mappings);
    sbx_client_config_defaults(cfg);
}

/* ---- ranges (the configuration guide's, enforced by sbx) ---------------- */

typedef struct int_var {
    const char *name;
    size_t off; /* of the int field */
    int lo, hi;
    const char *unit;
} int_var;

#define F(field) offsetof(sbx_client_config, field)
static const int_var int_vars[] = {
    {"MSB_SESSION_TIMEOUT", F(session_timeout), 60, 86400, " seconds"},
    {"MSB_MAX_SESSIONS", F(max_concurrent_sessions), 1, 100, ""},
    {"MSB_CLEANUP_INTERVAL", F(cleanup_interval), 10, 3600, " seconds"},
    {"MSB_EXECUTION_TIMEOUT", F(default_execution_timeout), 10, 3600, " seconds"},
    {"MSB_ORPHAN_CLEANUP_INTERVAL", F(orphan_cleanup_interval), 60, 3600, " seconds"},
};
#undef F
#define START_LO 30.0
#define START_HI 600.0

static const int_var *int_var_named(const char *name)
{
    for (size_t i = 0; i < SBX_ARRAY_LEN(int_vars); i++)
        if (strcmp(int_vars[i].name, name) == 0)
            return &int_vars[i];
    return NULL;
}

static int range_fail(const int_var *v, const char *value, sbx_err *err)
{
    return sbx_fail(err, SBX_E_INVALID, "%s must be between %d and %d%s, got %s", v->name, v->lo, v->hi, v->unit,
                    value);
}

static int start_range_fail(double x, sbx_err *err)
{
    char got[64];
    sbx_py_float_repr(x, got, sizeof(got));
    return sbx_fail(err, SBX_E_INVALID, "MSB_SANDBOX_START_TIMEOUT must be between 30.0 and 600.0 seconds, got %s",
                    got);
}

/* ---- validation ---------------------------------------------------------- */

static bool url_scheme_ok(const char *u)
{
    return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

static bool blank_str(const char *s)
{
    for (; s && *s; s++)
        if (!sbx_py_space(*s))
            return false;
    return true;
}

int sbx_client_config_validate(const sbx_client_config *cfg, sbx_err *err)
{
    if (!memchr(cfg->server_url, '\0', sizeof(cfg->server_url)))
        return sbx_fail(err, SBX_E_INVALID, "MSB_SERVER_URL is not NUL-terminated");
    if (!url_scheme_ok(cfg->server_url))
        return sbx_fail(err, SBX_E_INVALID, "Invalid server URL format: %s. Must start with http:// or https://",
                        cfg->server_url);
    if (!memchr(cfg->api_key, '\0', sizeof(cfg->api_key)))
        return sbx_fail(err, SBX_E_INVALID, "MSB_API_KEY is not NUL-terminated");
    if (!sbx_flavor_get(cfg->default_flavor))
        return sbx_fail(err, SBX_E_INVALID, "Invalid MSB_DEFAULT_FLAVOR '%d'. Valid options are: small, medium, large",
                        (int)cfg->default_flavor);
    if (cfg->max_concurrent_sessions < 1)
        return sbx_fail(err, SBX_E_INVALID, "Max concurrent sessions must be at least 1");
    for (size_t i = 0; i < SBX_ARRAY_LEN(int_vars); i++) {
        int v = *(const int *)((const char *)cfg + int_vars[i].off);
        if (v < int_vars[i].lo || v > int_vars[i].hi) {
            char got[16];
            snprintf(got, sizeof(got), "%d", v);
            return range_fail(&int_vars[i], got, err);
        }
    }
    /* Written so that NaN fails too. */
    if (!(cfg->sandbox_start_timeout >= START_LO && cfg->sandbox_start_timeout <= START_HI))
        return start_range_fail(cfg->sandbox_start_timeout, err);
    if (cfg->cleanup_interval >= cfg->session_timeout)
        return sbx_fail(err, SBX_E_INVALID, "Cleanup interval (%ds) must be less than session timeout (%ds)",
                        cfg->cleanup_interval, cfg->session_timeout);
    if (cfg->max_total_memory_mb > INT64_MAX)
        return sbx_fail(err, SBX_E_INVALID, "MSB_MAX_TOTAL_MEMORY_MB must be at most %lld, got %llu",
                        (long long)INT64_MAX, (unsigned long long)cfg->max_total_memory_mb);
    unsigned need = flavors[cfg->default_flavor].memory_mb;
    if (cfg->max_total_memory_mb && cfg->max_total_memory_mb < need)
        return sbx_fail(err, SBX_E_INVALID,
                        "Max total memory (%lluMB) is less than minimum needed for default flavor (%uMB)",
                        (unsigned long long)cfg->max_total_memory_mb, need);
    if (cfg->n_shared_volume_mappings && !cfg->shared_volume_mappings)
        return sbx_fail(err, SBX_E_INVALID, "%zu volume mappings counted but none given",
                        cfg->n_shared_volume_mappings);
    for (size_t i = 0; i < cfg->n_shared_volume_mappings; i++) {
        const sbx_volume_mapping *m = &cfg->shared_volume_mappings[i];
        if (blank_str(m->host) || blank_str(m->guest))
            return sbx_fail(err, SBX_E_INVALID, "Invalid volume mapping format: %s:%s. Both paths must be non-empty",
                            m->host ? m->host : "", m->guest ? m->guest : "");
    }
    if (!sbx_client_log_level_name(cfg->log_level))
        return sbx_fail(err, SBX_E_INVALID,
                        "Invalid MSB_LOG_LEVEL '%d'. Valid options are: DEBUG, INFO, WARNING, ERROR, CRITICAL",
                        (int)cfg->log_level);
    return 0;
}

/* ---- the environment ----------------------------------------------------- */

/* The real environment wins over .env, even when set to "". */
static const char *lookup(const sbx_dotenv *d, const char *name)
{
    const char *v = getenv(name);
    return v ? v : sbx_dotenv_get(d, name);
}

/* Unset, empty or blank: keep the default. */
static const char *value_of(const sbx_dotenv *d, const char *name)
{
    const char *v = lookup(d, name);
    return blank_str(v) ? NULL : v;
}

static int env_int(const sbx_dotenv *d, const int_var *v, sbx_client_config *cfg, sbx_err *err)
{
    const char *raw = value_of(d, v->name);
    if (!raw)
        return 0;
    char *canon = NULL;
    long long n = 0;
    bool fits = false;
    if (sbx_py_int(raw, &canon, &n, &fits) < 0)
        return sbx_fail(err, SBX_E_INVALID, "%s must be a valid integer, got '%s'", v->name, raw);
    int rc = 0;
    if (canon[0] == '-' || strcmp(canon, "0") == 0)
        rc = sbx_fail(err, SBX_E_INVALID, "%s must be a positive integer, got %s", v->name, canon);
    else if (!fits || n < v->lo || n > v->hi)
        rc = range_fail(v, canon, err);
    else
        *(int *)((char *)cfg + v->off) = (int)n;
    free(canon);
    return rc;
}

static int env_str(const sbx_dotenv *d, const char *name, char *dst, size_t cap, sbx_err *err)
{
    const char *raw = value_of(d, name);
    if (!raw)
        return 0;
    char *t = sbx_py_strip(raw);
    if (!t)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    int rc = 0;
    if (strlen(t) >= cap)
        rc = sbx_fail(err, SBX_E_INVALID, "%s is too long (%zu bytes, at most %zu)", name, strlen(t), cap - 1);
    else
        snprintf(dst, cap, "%s", t);
    free(t);
    return rc;
}

static int load(sbx_client_config *cfg, const sbx_dotenv *d, sbx_err *err)
{
    if (env_str(d, "MSB_SERVER_URL", cfg->server_url, sizeof(cfg->server_url), err) < 0)
        return -1;
    if (!url_scheme_ok(cfg->server_url))
        return sbx_fail(err, SBX_E_INVALID, "Invalid server URL format: %s. Must start with http:// or https://",
                        cfg->server_url);
    if (env_str(d, "MSB_API_KEY", cfg->api_key, sizeof(cfg->api_key), err) < 0)
        return -1;

    /* The wrapper's order: mappings, flavor, the numbers, memory, LRU. */
    const char *raw = value_of(d, "MSB_SHARED_VOLUME_PATH");
    if (raw) {
        if (sbx_volume_mappings_parse(raw, &cfg->shared_volume_mappings, &cfg->n_shared_volume_mappings, err) < 0)
            return -1;
        /* sbx rule: relative host paths are resolved here, once. */
        for (size_t i = 0; i < cfg->n_shared_volume_mappings; i++) {
            sbx_volume_mapping *m = &cfg->shared_volume_mappings[i];
            char *abs = sbx_abspath(m->host);
            if (!abs)
                return sbx_fail_errno(err, errno, "MSB_SHARED_VOLUME_PATH: cannot resolve %s", m->host);
            free(m->host);
            m->host = abs;
        }
    }

    if ((raw = value_of(d, "MSB_DEFAULT_FLAVOR")) && sbx_flavor_parse(raw, &cfg->default_flavor) < 0) {
        char *t = sbx_py_strip(raw);
        for (char *p = t; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        sbx_fail(err, SBX_E_INVALID, "Invalid MSB_DEFAULT_FLAVOR '%s'. Valid options are: small, medium, large",
                 t ? t : raw);
        free(t);
        return -1;
    }

    static const char *const order[] = {"MSB_SESSION_TIMEOUT", "MSB_MAX_SESSIONS", "MSB_CLEANUP_INTERVAL"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(order); i++)
        if (env_int(d, int_var_named(order[i]), cfg, err) < 0)
            return -1;

    if ((raw = value_of(d, "MSB_SANDBOX_START_TIMEOUT"))) {
        double x;
        if (sbx_py_float(raw, &x) < 0)
            return sbx_fail(err, SBX_E_INVALID, "MSB_SANDBOX_START_TIMEOUT must be a valid number, got '%s'", raw);
        if (x <= 0) {
            char got[64];
            sbx_py_float_repr(x, got, sizeof(got));
            return sbx_fail(err, SBX_E_INVALID, "MSB_SANDBOX_START_TIMEOUT must be a positive number, got %s", got);
        }
        if (!(x >= START_LO && x <= START_HI))
            return start_range_fail(x, err);
        cfg->sandbox_start_timeout = x;
    }

    if (env_int(d, int_var_named("MSB_EXECUTION_TIMEOUT"), cfg, err) < 0 ||
        env_int(d, int_var_named("MSB_ORPHAN_CLEANUP_INTERVAL"), cfg, err) < 0)
        return -1;

    if ((raw = value_of(d, "MSB_MAX_TOTAL_MEMORY_MB"))) {
        char *canon = NULL;
        long long n = 0;
        bool fits = false;
        if (sbx_py_int(raw, &canon, &n, &fits) < 0)
            return sbx_fail(err, SBX_E_INVALID, "MSB_MAX_TOTAL_MEMORY_MB must be a valid integer, got '%s'", raw);
        int rc = 0;
        if (canon[0] == '-' || strcmp(canon, "0") == 0)
            rc = sbx_fail(err, SBX_E_INVALID, "MSB_MAX_TOTAL_MEMORY_MB must be a positive integer, got %s", canon);
        else if (!fits)
            rc = sbx_fail(err, SBX_E_INVALID, "MSB_MAX_TOTAL_MEMORY_MB must be at most %lld, got %s",
                          (long long)INT64_MAX, canon);
        else
            cfg->max_total_memory_mb = (uint64_t)n;
        free(canon);
        if (rc < 0)
            return -1;
    }

    if ((raw = value_of(d, "MSB_ENABLE_LRU_EVICTION"))) {
        static const char *const yes[] = {"true", "1", "yes", "on", "enabled"};
        static const char *const no[] = {"false", "0", "no", "off", "disabled"};
        char *t = sbx_py_strip(raw);
        if (!t)
            return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        for (char *p = t; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        int b = -1;
        for (size_t i = 0; i < SBX_ARRAY_LEN(yes); i++) {
            if (strcmp(t, yes[i]) == 0)
                b = 1;
            if (strcmp(t, no[i]) == 0)
                b = 0;
        }
        if (b < 0) {
            sbx_fail(err, SBX_E_INVALID,
                     "MSB_ENABLE_LRU_EVICTION must be a valid boolean value (true/false, 1/0, yes/no, on/off, "
                     "enabled/disabled), got '%s'",
                     t);
            free(t);
            return -1;
        }
        free(t);
        cfg->enable_lru_eviction = b == 1;
    }

    if ((raw = value_of(d, "MSB_LOG_LEVEL")) && sbx_client_log_level_parse(raw, &cfg->log_level) < 0) {
        char *t = sbx_py_strip(raw);
        sbx_fail(err, SBX_E_INVALID,
                 "Invalid MSB_LOG_LEVEL '%s'. Valid options are: DEBUG, INFO, WARNING, ERROR, CRITICAL",
                 t ? t : raw);
        free(t);
        return -1;
    }
    return sbx_client_config_validate(cfg, err);
}

int sbx_client_config_from_env(sbx_client_config *cfg, sbx_err *err)
{
    sbx_client_config_defaults(cfg);
    sbx_dotenv d = {0};
    int rc = sbx_dotenv_load(".env", &d, err);
    if (rc == 0)
        rc = load(cfg, &d, err);
    sbx_dotenv_free(&d);
    if (rc < 0) {
        /* Not a bad value but a failure (memory, files): the wrapper's
         * catch-all wording. */
        if (err && err->code == SBX_E_SYSTEM) {
            char detail[sizeof(err->msg)];
            snprintf(detail, sizeof(detail), "%s", err->msg);
            snprintf(err->msg, sizeof(err->msg), "Failed to load configuration from environment: %.*s",
                     (int)(sizeof(err->msg) - 50), detail);
        }
        sbx_client_config_free(cfg);
        return -1;
    }
    return 0;
}

int sbx_client_config_add_mapping(sbx_client_config *cfg, const char *entry, sbx_err *err)
{
    sbx_volume_mapping m;
    if (sbx_volume_mapping_parse(entry, &m, err) < 0)
        return -1;
    char *abs = sbx_abspath(m.host);
    sbx_volume_mapping *a =
        abs ? realloc(cfg->shared_volume_mappings, (cfg->n_shared_volume_mappings + 1) * sizeof(*a)) : NULL;
    if (!a) {
        free(abs);
        free(m.host);
        free(m.guest);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot add volume mapping %s: out of memory", entry);
    }
    free(m.host);
    m.host = abs;
    cfg->shared_volume_mappings = a;
    a[cfg->n_shared_volume_mappings++] = m;
    return 0;
}

int sbx_client_config_copy(sbx_client_config *dst, const sbx_client_config *src, sbx_err *err)
{
    size_t n = src->n_shared_volume_mappings;
    sbx_volume_mapping *m = n ? calloc(n, sizeof(*m)) : NULL;
    bool ok = !n || m;
    for (size_t i = 0; ok && i < n; i++) {
        const sbx_volume_mapping *s = &src->shared_volume_mappings[i];
        m[i].host = s->host ? strdup(s->host) : NULL;
        m[i].guest = s->guest ? strdup(s->guest) : NULL;
        m[i].readonly = s->readonly;
        ok = (!s->host || m[i].host) && (!s->guest || m[i].guest);
    }
    if (!ok) {
        sbx_volume_mappings_free(m, n);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot copy the configuration: out of memory");
    }
    *dst = *src;
    dst->shared_volume_mappings = m;
    return 0;
}
