/* The microsandbox v0.2 JSON-RPC methods (shared/protocols/microsandbox.md
 * §5, §6, §9): names and params in, server sandbox operations out. */
#include "b64.h"
#include "log.h"
#include "repl.h"
#include "rpc.h"
#include "util.h"

#include <fcntl.h>
#include <openssl/rand.h>

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_OUTPUT (16u << 20)
/* Each line kept costs ~600 bytes of JSON objects beside its text, so a
 * flood of short lines ("yes") would take ~10 GB of the server before the
 * 16 MiB of text ran out: lines are capped too (~80 MB at most). */
#define MAX_LINES 131072u
#define MAX_FILE (16u << 20) /* sandbox.fs.* content, decoded */

/* ---- params ------------------------------------------------------------- */

static int check_name(const char *what, const char *s, sbx_rpc_err *e)
{
    size_t n = strlen(s);
    if (n == 0)
        return sbx_rpc_fail(e, 400, 2001, "%s cannot be empty", what);
    if (n > 63)
        return sbx_rpc_fail(e, 400, 2001, "%s cannot exceed 63 characters", what);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return sbx_rpc_fail(e, 400, 2001,
                                "%s can only contain alphanumeric characters, hyphens, or underscores", what);
    }
    char c = s[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
        return sbx_rpc_fail(e, 400, 2001, "%s must start with an alphanumeric character", what);
    return 0;
}

/* namespace: optional, default "default"; "*" only where allowed. */
static int get_ns(const char *method, json_t *params, bool wildcard_ok, const char **ns, sbx_rpc_err *e)
{
    json_t *j = json_object_get(params, "namespace");
    if (!j || json_is_null(j)) {
        *ns = "default";
        return 0;
    }
    if (!json_is_string(j))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: namespace must be a string", method);
    *ns = json_string_value(j);
    if (strcmp(*ns, "*") == 0)
        return wildcard_ok ? 0 : sbx_rpc_fail(e, 400, 2001, "Wildcard namespace (*) is not valid for sandbox creation");
    return check_name("Namespace", *ns, e);
}

static int get_sandbox(const char *method, json_t *params, const char **name, sbx_rpc_err *e)
{
    json_t *j = json_object_get(params, "sandbox");
    if (!j)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: missing field `sandbox`", method);
    if (!json_is_string(j))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: field `sandbox` must be a string", method);
    *name = json_string_value(j);
    return check_name("Sandbox name", *name, e);
}

static int strv_from_json(const char *field, json_t *arr, char ***out, size_t *n, sbx_rpc_err *e)
{
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.%s must be an array of strings",
                            field);
    size_t len = json_array_size(arr);
    char **v = calloc(len + 1, sizeof(char *));
    if (!v)
        return sbx_rpc_internal(e, "out of memory");
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s) || !(v[i] = strdup(json_string_value(s)))) {
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.%s[%zu] must be a string",
                                field, i);
        }
    }
    *out = v;
    *n = len;
    return 0;
}

static bool empty_or_null(json_t *j)
{
    return !j || json_is_null(j) || (json_is_array(j) && json_array_size(j) == 0) ||
           (json_is_object(j) && json_object_size(j) == 0);
}

/* config object -> sbx_sandbox_conf. Fields sbx cannot honour are refused
 * with a message saying so, never silently dropped. */
static int parse_conf(json_t *cfg, sbx_sandbox_conf *c, sbx_rpc_err *e)
{
    memset(c, 0, sizeof(*c));
    c->memory_mib = 1024;
    c->cpus = 1;
    json_t *j;
    if ((j = json_object_get(cfg, "image")) && !json_is_null(j)) {
        if (!json_is_string(j))
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.image must be a string");
        snprintf(c->image, sizeof(c->image), "%s", json_string_value(j));
    }
    if ((j = json_object_get(cfg, "memory")) && !json_is_null(j)) {
        if (!json_is_integer(j) || json_integer_value(j) < 6 || json_integer_value(j) > (1 << 24))
            return sbx_rpc_fail(e, 400, 2001,
                                "Invalid params for sandbox.start: config.memory must be an integer number of MiB (6 to 16777216)");
        c->memory_mib = (uint64_t)json_integer_value(j);
    }
    if ((j = json_object_get(cfg, "cpus")) && !json_is_null(j)) {
        double v = json_is_number(j) ? json_number_value(j) : -1;
        if (v < 1 || v > 1024 || floor(v) != v)
            return sbx_rpc_fail(e, 400, 2001,
                                "Invalid params for sandbox.start: config.cpus must be a whole number of CPUs (1 to 1024)");
        c->cpus = v;
    }
    if ((j = json_object_get(cfg, "workdir")) && !json_is_null(j)) {
        if (!json_is_string(j) || json_string_value(j)[0] != '/')
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.workdir must be an absolute path");
        snprintf(c->workdir, sizeof(c->workdir), "%s", json_string_value(j));
    }
    /* sbx extension, written by the Daytona front door: the name of the
     * uid-1000 account, kept when such a sandbox is started again here. */
    if ((j = json_object_get(cfg, "user_name")) && !json_is_null(j)) {
        if (!json_is_string(j) || json_string_length(j) == 0 || json_string_length(j) >= sizeof(c->user_name))
            return sbx_rpc_fail(e, 400, 2001,
                                "Invalid params for sandbox.start: config.user_name must be a user name of 1 to %zu characters",
                                sizeof(c->user_name) - 1);
        snprintf(c->user_name, sizeof(c->user_name), "%s", json_string_value(j));
    }
    /* sbx extension: NVIDIA GPUs (docs/gpu.md). A number is a count, a
     * string is what `sbx run --gpu` takes, an array lists host indices. */
    if ((j = json_object_get(cfg, "gpu")) && !json_is_null(j)) {
        size_t n = 0, i;
        json_t *v;
        if (json_is_integer(j) && json_integer_value(j) >= 0 && json_integer_value(j) <= 9999)
            snprintf(c->gpu, sizeof(c->gpu), "%d", (int)json_integer_value(j));
        else if (json_is_string(j) && json_string_length(j) < sizeof(c->gpu))
            snprintf(c->gpu, sizeof(c->gpu), "%s", json_string_value(j));
        else if (json_is_array(j) && json_array_size(j) > 0) {
            n = (size_t)snprintf(c->gpu, sizeof(c->gpu), "device=");
            json_array_foreach(j, i, v) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 9999 ||
                    n + 6 >= sizeof(c->gpu)) {
                    c->gpu[0] = '\0';
                    break;
                }
                n += (size_t)snprintf(c->gpu + n, sizeof(c->gpu) - n, "%s%d", i ? "," : "", (int)json_integer_value(v));
            }
        }
        sbx_err ge = {0};
        if (!c->gpu[0] || sbx_gpu_spec_check(c->gpu, &ge) < 0)
            return sbx_rpc_fail(e, 400, 2001,
                                "Invalid params for sandbox.start: config.gpu must be \"all\", a number of GPUs (1 or "
                                "more) or an array of device indices such as [0, 2]%s%s",
                                ge.msg[0] ? ": " : "", ge.msg);
    }
    static const struct { const char *field, *why; } unsupported[] = {
        {"ports", "ports are not supported: a sandbox's network is loopback only"},
        {"scripts", "scripts are not supported yet"},
        {"depends_on", "depends_on is not supported yet"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(unsupported); i++)
        if (!empty_or_null(json_object_get(cfg, unsupported[i].field)))
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.%s: %s", unsupported[i].field,
                                unsupported[i].why);
    if (strv_from_json("volumes", json_object_get(cfg, "volumes"), &c->volumes, &c->n_volumes, e) < 0 ||
        strv_from_json("envs", json_object_get(cfg, "envs"), &c->envs, &c->n_envs, e) < 0) {
        sbx_conf_free(c);
        return -1;
    }
    for (size_t i = 0; i < c->n_envs; i++)
        if (!strchr(c->envs[i], '=') || c->envs[i][0] == '=') {
            sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config.envs entry '%s' must be KEY=VALUE",
                         c->envs[i]);
            sbx_conf_free(c);
            return -1;
        }
    return 0;
}

/* ---- sandbox.start / stop ----------------------------------------------- */

/* An internal error (logged with its detail, 500/5002); when the server's
 * own disk is full the client is told so, since only an operator can act
 * (tests/security/state_dir_full.sh). */
static int __attribute__((format(printf, 3, 4))) storage_fail(sbx_rpc_err *e, const sbx_err *err, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    sbx_rpc_internal(e, "%s: %s", what, err->msg);
    if (err->sys_errno == ENOSPC || err->sys_errno == EDQUOT)
        snprintf(e->msg, sizeof(e->msg), "Internal server error: no space left on the server's disk");
    return -1;
}

static int m_start(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name;
    if (get_sandbox("sandbox.start", params, &name, e) < 0 || get_ns("sandbox.start", params, false, &ns, e) < 0)
        return -1;
    json_t *cfg = json_object_get(params, "config");
    if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.start: config must be an object");
    json_t *image = json_object_get(cfg, "image");
    sbx_err err = {0};
    json_t *stored = NULL;
    if (image && !json_is_null(image)) {
        /* A config with an image replaces the stored one. */
        sbx_sandbox_conf probe;
        if (parse_conf(cfg, &probe, e) < 0)
            return -1;
        sbx_conf_free(&probe);
        char *text = json_dumps(cfg, JSON_COMPACT);
        sbx_reg_row row = {.config = text};
        snprintf(row.ns, sizeof(row.ns), "%s", ns);
        snprintf(row.name, sizeof(row.name), "%s", name);
        snprintf(row.status, sizeof(row.status), "stopped");
        snprintf(row.origin, sizeof(row.origin), "rpc");
        int r = text ? sbx_reg_put(srv->reg, &row, &err) : -1;
        free(text);
        if (r < 0)
            return storage_fail(e, &err, "sandbox.start %s/%s", ns, name);
        stored = json_incref(cfg);
    } else {
        sbx_reg_row row;
        int r = sbx_reg_get(srv->reg, ns, name, &row, &err);
        if (r < 0)
            return sbx_rpc_internal(e, "sandbox.start %s/%s: %s", ns, name, err.msg);
        if (r == 1)
            return sbx_rpc_fail(e, 400, 2001,
                                "No configuration provided and no existing configuration found for sandbox '%s'", name);
        stored = json_loads(row.config, 0, NULL);
        sbx_reg_row_free(&row);
        if (!stored)
            return sbx_rpc_internal(e, "stored config of %s/%s is not JSON", ns, name);
    }
    sbx_sandbox_conf conf;
    int rc = parse_conf(stored, &conf, e);
    json_decref(stored);
    if (rc < 0)
        return -1;
    rc = sbx_server_start_sandbox(srv, ns, name, &conf, &err);
    sbx_conf_free(&conf);
    if (rc < 0) {
        if (err.code == SBX_E_SYSTEM)
            return storage_fail(e, &err, "sandbox.start %s/%s", ns, name);
        return sbx_rpc_fail(e, 400, 2001, "%s", err.msg);
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "Sandbox %s started successfully", name);
    *result = json_string(msg);
    return 0;
}

static int m_stop(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name;
    if (get_sandbox("sandbox.stop", params, &name, e) < 0 || get_ns("sandbox.stop", params, false, &ns, e) < 0)
        return -1;
    sbx_err err = {0};
    int ex = sbx_reg_namespace_exists(srv->reg, ns, &err);
    if (ex < 0)
        return sbx_rpc_internal(e, "sandbox.stop: %s", err.msg);
    if (ex == 0)
        return sbx_rpc_fail(e, 400, 2001, "Namespace directory '%s' does not exist", ns);
    sbx_reg_row row;
    int r = sbx_reg_get(srv->reg, ns, name, &row, &err);
    if (r != 0)
        return sbx_rpc_internal(e, "sandbox.stop %s/%s: %s", ns, name, r == 1 ? "not configured" : err.msg);
    sbx_reg_row_free(&row);
    sbx_server_stop_sandbox(srv, ns, name);
    char msg[128];
    snprintf(msg, sizeof(msg), "Sandbox %s stopped successfully", name);
    *result = json_string(msg);
    return 0;
}

/* ---- metrics / list / delete -------------------------------------------- */

static json_t *metrics_entry(sbx_server *srv, const sbx_reg_row *row)
{
    json_t *o = json_pack("{s:s, s:s}", "namespace", row->ns, "name", row->name);
    sbx_live *l = sbx_server_acquire(srv, row->ns, row->name);
    if (!l) {
        json_object_set_new(o, "running", json_false());
        json_object_set_new(o, "cpu_usage", json_null());
        json_object_set_new(o, "memory_usage", json_null());
        json_object_set_new(o, "disk_usage", json_null());
        return o;
    }
    sbx_stats st = {0};
    sbx_sandbox_stats(l->sb, &st, NULL);
    uint64_t now = sbx_now_usec();
    /* cpu %: cpu time over wall time since the previous metrics call. */
    pthread_mutex_lock(&srv->lock);
    double cpu = 0;
    if (now > l->wall_mark_usec && st.cpu_usec >= l->cpu_mark_usec)
        cpu = 100.0 * (double)(st.cpu_usec - l->cpu_mark_usec) / (double)(now - l->wall_mark_usec);
    l->cpu_mark_usec = st.cpu_usec;
    l->wall_mark_usec = now;
    pthread_mutex_unlock(&srv->lock);
    sbx_server_release(srv, l);
    char layer[PATH_MAX + 16];
    struct stat sst;
    uint64_t disk = 0;
    sbx_server_layer_dir(srv, row->ns, row->name, layer, sizeof(layer) - 16);
    strcat(layer, "/layer.img");
    if (stat(layer, &sst) == 0)
        disk = (uint64_t)sst.st_blocks * 512;
    json_object_set_new(o, "running", json_true());
    json_object_set_new(o, "cpu_usage", json_real(round(cpu * 100) / 100));
    json_object_set_new(o, "memory_usage", json_integer((json_int_t)(st.memory_bytes >> 20)));
    json_object_set_new(o, "disk_usage", json_integer((json_int_t)disk));
    return o;
}

static int m_metrics(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns;
    if (get_ns("sandbox.metrics.get", params, true, &ns, e) < 0)
        return -1;
    json_t *js = json_object_get(params, "sandbox");
    const char *only = NULL;
    if (js && !json_is_null(js)) {
        if (!json_is_string(js))
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.metrics.get: sandbox must be a string or null");
        only = json_string_value(js);
    }
    sbx_err err = {0};
    sbx_reg_row *rows = NULL;
    size_t n = 0;
    if (sbx_reg_list(srv->reg, NULL, &rows, &n, &err) < 0)
        return sbx_rpc_internal(e, "metrics: %s", err.msg);
    bool wild = strcmp(ns, "*") == 0, ns_seen = false, found = false;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!wild && strcmp(rows[i].ns, ns) != 0)
            continue;
        ns_seen = true;
        if (only && strcmp(rows[i].name, only) != 0)
            continue;
        found = true;
        json_array_append_new(arr, metrics_entry(srv, &rows[i]));
    }
    size_t total = n;
    sbx_reg_rows_free(rows, n);
    if (total > 0 && !wild && !ns_seen) {
        json_decref(arr);
        return sbx_rpc_fail(e, 400, 2001, "Namespace directory '%s' does not exist", ns);
    }
    if (only && !found && total > 0) {
        json_decref(arr);
        return sbx_rpc_internal(e, "metrics: sandbox %s/%s is not configured", ns, only);
    }
    *result = json_pack("{s:o}", "sandboxes", arr);
    return 0;
}

static int m_list(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns;
    if (get_ns("sandbox.list", params, true, &ns, e) < 0)
        return -1;
    sbx_err err = {0};
    sbx_reg_row *rows = NULL;
    size_t n = 0;
    if (sbx_reg_list(srv->reg, ns, &rows, &n, &err) < 0)
        return sbx_rpc_internal(e, "list: %s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *cfg = json_loads(rows[i].config, 0, NULL);
        sbx_live *l = sbx_server_acquire(srv, rows[i].ns, rows[i].name);
        if (l)
            sbx_server_release(srv, l);
        json_t *img = json_object_get(cfg, "image"), *mem = json_object_get(cfg, "memory"),
               *cpus = json_object_get(cfg, "cpus");
        /* "o" steals: existing values get a reference, defaults are new. */
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:s}", "namespace", rows[i].ns, "name",
                                             rows[i].name, "running", l != NULL, "image",
                                             img ? json_incref(img) : json_null(), "memory",
                                             mem ? json_incref(mem) : json_integer(1024), "cpus",
                                             cpus ? json_incref(cpus) : json_integer(1), "origin", rows[i].origin));
        json_decref(cfg);
    }
    sbx_reg_rows_free(rows, n);
    *result = json_pack("{s:o}", "sandboxes", arr);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int m_delete(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name;
    if (get_sandbox("sandbox.delete", params, &name, e) < 0 || get_ns("sandbox.delete", params, false, &ns, e) < 0)
        return -1;
    sbx_err err = {0};
    sbx_reg_row row;
    int r = sbx_reg_get(srv->reg, ns, name, &row, &err);
    if (r < 0)
        return sbx_rpc_internal(e, "delete: %s", err.msg);
    if (r == 1)
        return sbx_rpc_fail(e, 404, 4001, "Sandbox '%s' not found", name);
    sbx_reg_row_free(&row);
    sbx_server_stop_sandbox(srv, ns, name);
    char layer[PATH_MAX];
    sbx_server_layer_dir(srv, ns, name, layer, sizeof(layer));
    if (nftw(layer, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return sbx_rpc_internal(e, "delete %s/%s: remove layer: %s", ns, name, strerror(errno));
    if (sbx_reg_delete(srv->reg, ns, name, &err) < 0)
        return sbx_rpc_internal(e, "delete: %s", err.msg);
    char msg[128];
    snprintf(msg, sizeof(msg), "Sandbox %s deleted successfully", name);
    *result = json_string(msg);
    return 0;
}

/* ---- sandbox.command.run ------------------------------------------------- */

/* Output as ordered lines: chunks arrive in order per stream, and lines
 * are emitted when complete, so stdout/stderr interleave as they came. */
struct lines {
    json_t *arr;
    char *part[3];
    size_t part_len[3];
    size_t total, nlines;
    bool truncated;
};

static void add_line(struct lines *L, int stream, const char *s, size_t n)
{
    if (L->truncated)
        return;
    if (L->total + n > MAX_OUTPUT || L->nlines >= MAX_LINES) {
        L->truncated = true;
        return;
    }
    L->total += n;
    L->nlines++;
    const char *name = stream == SBX_STDOUT ? "stdout" : "stderr";
    json_array_append_new(L->arr, json_pack("{s:s, s:o}", "stream", name, "text", sbx_rpc_text(s, n)));
    sbx_rpc_stream_output(name, s, n); /* "stream": true callers see it now */
}

/* The last line, past the caps on purpose: the caller must learn that the
 * output was cut. */
static void add_note(struct lines *L, const char *note)
{
    L->truncated = false;
    L->total = L->nlines = 0;
    add_line(L, SBX_STDERR, note, strlen(note));
}

static void flush_lines(struct lines *L)
{
    for (int s = 1; s <= 2; s++) {
        if (L->part_len[s])
            add_line(L, s, L->part[s], L->part_len[s]);
        free(L->part[s]);
        L->part[s] = NULL;
        L->part_len[s] = 0;
    }
}

static void on_output(void *ud, int stream, const char *d, size_t n)
{
    struct lines *L = ud;
    while (n) {
        const char *nl = memchr(d, '\n', n);
        size_t take = nl ? (size_t)(nl - d) : n;
        if (nl && !L->part_len[stream]) {
            add_line(L, stream, d, take);
        } else {
            /* A line that cannot fit in what is left of MAX_OUTPUT would be
             * dropped when it ends: do not hold it meanwhile, or a command
             * printing gigabytes without a newline grows the server by as
             * much (tests/security/stdout_flood.sh). */
            if (L->truncated || L->total + L->part_len[stream] + take > MAX_OUTPUT) {
                L->truncated = true;
                L->part_len[stream] = 0;
                return;
            }
            char *p = realloc(L->part[stream], L->part_len[stream] + take + 1);
            if (!p)
                return;
            memcpy(p + L->part_len[stream], d, take);
            L->part[stream] = p;
            L->part_len[stream] += take;
            if (nl) {
                add_line(L, stream, p, L->part_len[stream]);
                L->part_len[stream] = 0;
            }
        }
        if (!nl)
            break;
        d += take + 1;
        n -= take + 1;
    }
}

/* A streamed call whose client goes away stops its command: a thread
 * watches the client's socket and, on hang-up, sends SIGKILL to the
 * command's process group through the exec's signal_fd (as a timeout
 * would). Nothing else could notice: the connection's thread waits for
 * output that a silent command never writes. */
struct hangup {
    pthread_t t;
    int client, sig[2], stop[2];
};

static void *hangup_main(void *arg)
{
    struct hangup *h = arg;
    struct pollfd pf[2] = {{h->client, POLLRDHUP, 0}, {h->stop[0], POLLIN, 0}};
    while (poll(pf, 2, -1) < 0 && errno == EINTR) {
    }
    /* POLLIN alone (a pipelined request) is not a hang-up: stop watching. */
    if (pf[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        int sig = SIGKILL;
        if (write(h->sig[1], &sig, sizeof(sig)) < 0)
            sbx_log(SBX_LOG_WARN, "command.run: cannot stop the command of a client that went away");
    }
    return NULL;
}

/* 0 with h->sig[0] to use as signal_fd, or -1 (nothing to watch). */
static int hangup_watch(struct hangup *h, int client)
{
    h->client = client;
    h->sig[0] = h->sig[1] = h->stop[0] = h->stop[1] = -1;
    if (client < 0 || pipe2(h->sig, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(h->stop, O_CLOEXEC) == 0 && pthread_create(&h->t, NULL, hangup_main, h) == 0)
        return 0;
    for (int i = 0; i < 2; i++) {
        close(h->sig[i]);
        if (h->stop[i] >= 0)
            close(h->stop[i]);
    }
    return -1;
}

static void hangup_unwatch(struct hangup *h)
{
    if (h->sig[0] < 0)
        return;
    char b = 0;
    ssize_t n = write(h->stop[1], &b, 1);
    (void)n; /* a pipe of our own, empty: cannot fail */
    pthread_join(h->t, NULL);
    for (int i = 0; i < 2; i++) {
        close(h->sig[i]);
        close(h->stop[i]);
    }
}

static int m_command_run(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name;
    json_t *js = json_object_get(params, "sandbox");
    if (!json_is_string(js))
        return sbx_rpc_fail(e, 400, 2001, "Missing required 'sandbox' parameter for portal request");
    if (get_sandbox("sandbox.command.run", params, &name, e) < 0 ||
        get_ns("sandbox.command.run", params, false, &ns, e) < 0)
        return -1;
    json_t *jc = json_object_get(params, "command"), *ja = json_object_get(params, "args"),
           *jt = json_object_get(params, "timeout");
    if (!json_is_string(jc) || !json_string_value(jc)[0])
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.command.run: missing field `command`");
    if (ja && !json_is_null(ja) && !json_is_array(ja))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.command.run: args must be an array of strings");
    double timeout = 0;
    if (jt && !json_is_null(jt)) {
        if (!json_is_number(jt) || json_number_value(jt) <= 0)
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.command.run: timeout must be a positive number of seconds");
        timeout = json_number_value(jt);
    }
    size_t nargs = json_array_size(ja);
    char **argv = calloc(nargs + 2, sizeof(char *));
    if (!argv)
        return sbx_rpc_internal(e, "out of memory");
    argv[0] = (char *)json_string_value(jc);
    for (size_t i = 0; i < nargs; i++) {
        json_t *a = json_array_get(ja, i);
        if (!json_is_string(a)) {
            free(argv);
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.command.run: args[%zu] must be a string", i);
        }
        argv[i + 1] = (char *)json_string_value(a);
    }
    sbx_live *l = sbx_server_acquire(srv, ns, name);
    if (!l) {
        free(argv);
        return sbx_rpc_internal(e, "command.run: sandbox %s/%s is not running", ns, name);
    }
    struct lines L = {.arr = json_array()};
    sbx_exec_spec xs = {
        .argv = argv,
        .env = l->conf.envs,
        .workdir = l->conf.workdir[0] ? l->conf.workdir : "/",
        .user = "root",
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = -1,
        .signal_fd = -1,
        .capture_max = 1, /* the lines above are the capture */
        .timeout_ms = sbx_timeout_ms(timeout),
        .on_output = on_output,
        .ud = &L,
    };
    sbx_exec_result res;
    sbx_err err = {0};
    sbx_rpc_stream_begin();
    struct hangup hup;
    if (hangup_watch(&hup, sbx_rpc_client_fd()) == 0)
        xs.signal_fd = hup.sig[0];
    int rc = sbx_sandbox_exec(l->sb, &xs, &res, &err);
    hangup_unwatch(&hup);
    sbx_server_release(srv, l);
    flush_lines(&L);
    if (rc < 0) {
        free(argv);
        json_decref(L.arr);
        return sbx_rpc_internal(e, "command.run %s/%s: %s", ns, name, err.msg);
    }
    if (res.timed_out) {
        sbx_exec_result_free(&res);
        free(argv);
        json_decref(L.arr);
        return sbx_rpc_internal(e, "command.run %s/%s: Execution timed out after %g seconds", ns, name, timeout);
    }
    int code = res.signal ? 1 : res.exit_code;
    if (res.exec_errno) {
        char line[512];
        if (res.exec_errno == ENOENT)
            snprintf(line, sizeof(line), "%s: command not found", argv[0]);
        else
            snprintf(line, sizeof(line), "%s: %s", argv[0], res.exec_error);
        add_line(&L, SBX_STDERR, line, strlen(line));
        code = res.exit_code;
    }
    if (L.truncated) {
        add_note(&L, "[sbx: output truncated at 16 MiB or 131072 lines]");
    }
    sbx_exec_result_free(&res);
    free(argv);
    json_t *jargs = ja && json_is_array(ja) ? json_incref(ja) : json_array();
    *result = json_pack("{s:O, s:o, s:i, s:b, s:o}", "command", jc, "args", jargs, "exit_code", code, "success",
                        code == 0, "output", L.arr);
    return 0;
}

/* ---- sandbox.repl.run ---------------------------------------------------- */

static void on_repl_output(void *ud, int stream, const char *d, size_t n)
{
    on_output(ud, stream, d, n);
}

static int m_repl_run(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name;
    if (!json_is_string(json_object_get(params, "sandbox")))
        return sbx_rpc_fail(e, 400, 2001, "Missing required 'sandbox' parameter for portal request");
    if (get_sandbox("sandbox.repl.run", params, &name, e) < 0 || get_ns("sandbox.repl.run", params, false, &ns, e) < 0)
        return -1;
    json_t *jl = json_object_get(params, "language"), *jc = json_object_get(params, "code"),
           *jt = json_object_get(params, "timeout");
    if (!json_is_string(jl))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.repl.run: missing field `language`");
    if (!json_is_string(jc))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.repl.run: missing field `code`");
    double timeout = 0;
    if (jt && !json_is_null(jt)) {
        if (!json_is_number(jt) || json_number_value(jt) <= 0)
            return sbx_rpc_fail(e, 400, 2001,
                                "Invalid params for sandbox.repl.run: timeout must be a positive number of seconds");
        timeout = json_number_value(jt);
    }
    int lang = sbx_repl_lang_parse(json_string_value(jl));
    if (!lang)
        return sbx_rpc_internal(e, "repl.run: Unsupported language: %s (allowed: python, node, nodejs, javascript)",
                                json_string_value(jl));
    sbx_live *l = sbx_server_acquire(srv, ns, name);
    if (!l)
        return sbx_rpc_internal(e, "repl.run: sandbox %s/%s is not running", ns, name);

    int rc = -1;
    struct lines L = {.arr = json_array()};
    sbx_repl_result res = {0};
    sbx_err err = {0};
    bool fresh = false;
    sbx_rpc_stream_begin();
    /* A streamed call whose client goes away interrupts its code (as a
     * timeout does; tests/security/client_disconnect_stream.sh). */
    struct pollfd gone = {sbx_rpc_client_fd(), POLLRDHUP, 0};
    sbx_repl_run_opts ro = {.timeout_ms = sbx_timeout_ms(timeout), .cancel = &gone, .n_cancel = gone.fd >= 0};
    if (sbx_server_repl_exec(l, lang, json_string_value(jc), SBX_REPL_ECHO, &ro, on_repl_output, &L, &res, &fresh,
                             &err) < 0) {
        flush_lines(&L);
        rc = sbx_rpc_internal(e, "repl.run %s/%s: %s", ns, name, err.msg);
        goto out;
    }
    flush_lines(&L);
    const char *lname = sbx_repl_lang_name(lang);
    if (res.cancelled) { /* nobody is left to read this */
        rc = sbx_rpc_internal(e, "repl.run %s/%s: the client went away; the code was interrupted", ns, name);
        goto out;
    }
    if (res.timed_out) {
        if (res.restarted)
            sbx_log(SBX_LOG_WARN, "repl.run %s/%s: %s did not stop when interrupted; restarted it (state lost)", ns,
                    name, lname);
        rc = sbx_rpc_internal(e, "repl.run %s/%s: Execution timed out after %g seconds%s", ns, name, timeout,
                              res.restarted ? "; the interpreter did not stop and was restarted, its state is lost"
                                            : "; the code was interrupted, state is kept");
        goto out;
    }
    if (res.restarted && !fresh) {
        char note[256];
        if (res.err_name && strcmp(res.err_name, "InterpreterExited") == 0)
            snprintf(note, sizeof(note), "[sbx] the %s interpreter exited; a fresh one was started and earlier state is lost",
                     lname);
        else
            snprintf(note, sizeof(note), "[sbx] the %s interpreter had exited and was restarted; earlier state is lost",
                     lname);
        add_line(&L, SBX_STDERR, note, strlen(note));
    }
    if (L.truncated) {
        add_note(&L, "[sbx: output truncated at 16 MiB or 131072 lines]");
    }
    *result = json_pack("{s:s, s:s, s:O}", "status", "success", "language", json_string_value(jl), "output", L.arr);
    rc = 0;
out:
    sbx_server_release(srv, l);
    sbx_repl_result_free(&res);
    flush_lines(&L);
    json_decref(L.arr);
    return rc;
}

/* ---- sandbox.fs.write / sandbox.fs.read (sbx extensions) --------------- */

static int fs_common(const char *method, json_t *params, const char **ns, const char **name, const char **path,
                     sbx_rpc_err *e)
{
    if (get_sandbox(method, params, name, e) < 0 || get_ns(method, params, false, ns, e) < 0)
        return -1;
    json_t *jp = json_object_get(params, "path");
    if (!json_is_string(jp))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: missing field `path`", method);
    *path = json_string_value(jp);
    if ((*path)[0] != '/')
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: path '%s' must be absolute", method, *path);
    return 0;
}

static int fs_error(const sbx_err *err, const char *path, sbx_rpc_err *e)
{
    if (err->sys_errno == ENOENT)
        return sbx_rpc_fail(e, 404, 4001, "File not found: %s", path);
    if (err->sys_errno && err->sys_errno != EIO)
        return sbx_rpc_fail(e, 400, 2001, "%s", err->msg);
    return sbx_rpc_internal(e, "%s", err->msg);
}

static int m_fs_write(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name, *path;
    if (fs_common("sandbox.fs.write", params, &ns, &name, &path, e) < 0)
        return -1;
    json_t *jc = json_object_get(params, "content"), *jm = json_object_get(params, "mode"),
           *jd = json_object_get(params, "mkdirs");
    if (!json_is_string(jc))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: missing field `content` (base64)");
    if (jm && !json_is_null(jm) && (!json_is_integer(jm) || json_integer_value(jm) < 0 || json_integer_value(jm) > 07777))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: mode must be an integer 0-4095 (e.g. 420 = 0644)");
    if (jd && !json_is_null(jd) && !json_is_boolean(jd))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: mkdirs must be a boolean");
    unsigned mode = jm && json_is_integer(jm) ? (unsigned)json_integer_value(jm) : 0644;
    bool mkdirs = !jd || json_is_null(jd) || json_is_true(jd);
    size_t n = json_string_length(jc), len = 0;
    if (n / 4 * 3 > MAX_FILE + 2)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: content is larger than %u MiB",
                            MAX_FILE >> 20);
    unsigned char *data = NULL;
    if (sbx_b64_decode_strict(json_string_value(jc), n, &data, &len) < 0)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: content is not valid standard base64");
    if (len > MAX_FILE) {
        free(data);
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: content is larger than %u MiB",
                            MAX_FILE >> 20);
    }
    sbx_live *l = sbx_server_acquire(srv, ns, name);
    if (!l) {
        free(data);
        return sbx_rpc_fail(e, 400, 2001, "Sandbox '%s' is not running", name);
    }
    /* The content goes to a new file beside the target, which is renamed
     * over it once complete: a crash or a full disk mid-write never leaves
     * a half-written file under the name (tests/security/
     * kill9_during_upload.sh), and the mode is the new file's own, set
     * inside the sandbox (an fchmod from here would be host root's: it
     * could make a root-owned world-writable file in a volume setuid). */
    char tmp[PATH_MAX], rnd_hex[17];
    unsigned char rnd[8];
    const char *slash = strrchr(path, '/');
    if (RAND_bytes(rnd, sizeof(rnd)) != 1 || !slash[1]) {
        sbx_server_release(srv, l);
        free(data);
        return slash[1] ? sbx_rpc_internal(e, "fs.write: no randomness")
                        : sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: path '%s' names a directory", path);
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(rnd_hex + 2 * i, 3, "%02x", rnd[i]);
    if (snprintf(tmp, sizeof(tmp), "%.*s.%s.sbx-upload-%s", (int)(slash + 1 - path), path, slash + 1, rnd_hex) >=
        (int)sizeof(tmp)) {
        sbx_server_release(srv, l);
        free(data);
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.write: path is too long");
    }
    sbx_err err = {0};
    int rc = -1;
    bool made = false;
    /* An existing file's owner is kept when it is one of the sandbox's own
     * ids (fchown below is host root's: never to an id outside them). */
    struct stat old = {0};
    int ofd = sbx_sandbox_open(l->sb, path, O_PATH, 0, "root", 0, &err);
    if (ofd >= 0) {
        if (fstat(ofd, &old) < 0 || !S_ISREG(old.st_mode))
            old.st_mode = 0;
        close(ofd);
    }
    err = (sbx_err){0};
    /* As root inside, like sandbox.command.run. */
    int fd = sbx_sandbox_open(l->sb, tmp, O_WRONLY | O_CREAT | O_EXCL, mode, "root", mkdirs ? SBX_FS_MKDIRS : 0, &err);
    if (fd < 0) {
        if (err.sys_errno && err.sys_errno != EIO && err.sys_errno != ENOENT)
            snprintf(err.msg, sizeof(err.msg), "write '%s': %s", path, strerror(err.sys_errno));
        rc = fs_error(&err, path, e);
        goto out;
    }
    made = true;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = errno == ENOSPC || errno == EDQUOT
                     ? sbx_rpc_fail(e, 400, 2001, "No space left in sandbox '%s' for %s", name, path)
                     : sbx_rpc_internal(e, "fs.write %s: %s", path, strerror(errno));
            close(fd);
            goto out;
        }
        off += (size_t)w;
    }
    /* On disk before it takes the name: a layer is a sparse image, so a
     * full host disk shows only when the data is written back; and a
     * crash after the rename must not leave an empty file under it. */
    if (fdatasync(fd) < 0) {
        rc = errno == ENOSPC || errno == EDQUOT
                 ? sbx_rpc_fail(e, 400, 2001, "No space left in sandbox '%s' for %s", name, path)
                 : sbx_rpc_internal(e, "fs.write %s: %s", path, strerror(errno));
        close(fd);
        goto out;
    }
    if (S_ISREG(old.st_mode) && sbx_sandbox_guest_id(l->sb, old.st_uid) != 65534 &&
        sbx_sandbox_guest_id(l->sb, old.st_gid) != 65534 && fchown(fd, old.st_uid, old.st_gid) == 0)
        fchmod(fd, mode); /* chown dropped set-id bits; the new file is ours, its mode was ours to set */
    close(fd);
    if (sbx_sandbox_rename(l->sb, tmp, path, "root", 0, &err) < 0) {
        if (err.sys_errno && err.sys_errno != EIO)
            snprintf(err.msg, sizeof(err.msg), "write '%s': %s", path, strerror(err.sys_errno));
        rc = err.sys_errno == ENOENT ? sbx_rpc_internal(e, "fs.write %s: %s", path, err.msg) : fs_error(&err, path, e);
        goto out;
    }
    made = false;
    *result = json_pack("{s:s, s:I}", "path", path, "size", (json_int_t)len);
    rc = 0;
out:
    if (made) {
        sbx_err ignored;
        sbx_sandbox_remove(l->sb, tmp, "root", &ignored);
    }
    sbx_server_release(srv, l);
    free(data);
    return rc;
}

static int m_fs_read(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *ns, *name, *path;
    if (fs_common("sandbox.fs.read", params, &ns, &name, &path, e) < 0)
        return -1;
    json_t *jx = json_object_get(params, "max_bytes");
    size_t max = MAX_FILE;
    if (jx && !json_is_null(jx)) {
        if (!json_is_integer(jx) || json_integer_value(jx) < 0 || json_integer_value(jx) > MAX_FILE)
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for sandbox.fs.read: max_bytes must be an integer 0-%u",
                                MAX_FILE);
        max = (size_t)json_integer_value(jx);
    }
    sbx_live *l = sbx_server_acquire(srv, ns, name);
    if (!l)
        return sbx_rpc_fail(e, 400, 2001, "Sandbox '%s' is not running", name);
    sbx_err err = {0};
    int fd = sbx_sandbox_open(l->sb, path, O_RDONLY, 0, "root", 0, &err);
    sbx_server_release(srv, l);
    if (fd < 0)
        return fs_error(&err, path, e);
    struct stat st;
    if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return sbx_rpc_fail(e, 400, 2001, "%s is a directory, not a file", path);
    }
    unsigned char *buf = malloc(max + 1);
    size_t got = 0;
    while (buf && got < max) {
        ssize_t r = read(fd, buf + got, max - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    /* More than max? The size is what fstat said, or what reading found. */
    char probe;
    bool more = buf && got == max && read(fd, &probe, 1) == 1;
    close(fd);
    if (!buf)
        return sbx_rpc_internal(e, "out of memory");
    char *b64 = sbx_b64_encode(buf, got);
    free(buf);
    if (!b64)
        return sbx_rpc_internal(e, "out of memory");
    uint64_t size = (uint64_t)st.st_size > got ? (uint64_t)st.st_size : got + (more ? 1 : 0);
    *result = json_pack("{s:s, s:s, s:I, s:b}", "path", path, "content", b64, "size", (json_int_t)size, "truncated",
                        more || (uint64_t)st.st_size > got);
    free(b64);
    return 0;
}

static const sbx_rpc_method methods[] = {
    {"sandbox.start", m_start, false},
    {"sandbox.stop", m_stop, false},
    {"sandbox.metrics.get", m_metrics, false},
    {"sandbox.command.run", m_command_run, true},
    {"sandbox.repl.run", m_repl_run, true},
    {"sandbox.list", m_list, false},
    {"sandbox.delete", m_delete, false},
    {"sandbox.fs.write", m_fs_write, false},
    {"sandbox.fs.read", m_fs_read, false},
};

const sbx_rpc_method *sbx_msb_find(const char *name)
{
    for (size_t i = 0; i < SBX_ARRAY_LEN(methods); i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}
