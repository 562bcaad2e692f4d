/* Step specs from flags and step files (spec.h). */
#include "spec.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int oom(sbx_err *err)
{
    return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
}

/* err's message with prefix before it (cut to fit). */
static int prefix_err(sbx_err *err, const char *prefix)
{
    char m[sizeof(err->msg)];
    memcpy(m, err->msg, sizeof(m));
    m[sizeof(m) - 1] = '\0';
    size_t pl = strnlen(prefix, sizeof(err->msg) - 1);
    memcpy(err->msg, prefix, pl);
    size_t ml = strnlen(m, sizeof(err->msg) - 1 - pl);
    memcpy(err->msg + pl, m, ml);
    err->msg[pl + ml] = '\0';
    return -1;
}

void sbx_step_spec_free(sbx_step_spec *s)
{
    free(s->name);
    free(s->backend);
    free(s->gpu);
    free(s->image);
    for (size_t i = 0; i < s->n_env; i++)
        free(s->env[i]);
    free(s->env);
    for (size_t i = 0; i < s->n_uploads; i++) {
        free(s->uploads[i].src);
        free(s->uploads[i].dst);
    }
    free(s->uploads);
    for (size_t i = 0; i < s->n_outputs; i++)
        free(s->outputs[i]);
    free(s->outputs);
    for (size_t i = 0; i < s->n_command; i++)
        free(s->command[i]);
    free(s->command);
    free(s->code_dir);
    for (size_t i = 0; i < s->n_ignore; i++)
        free(s->ignore[i]);
    free(s->ignore);
    free(s->environment);
    free(s->artifacts_dir);
    memset(s, 0, sizeof(*s));
}

int sbx_step_spec_set_str(char **field, const char *v, sbx_err *err)
{
    char *c = NULL;
    if (v && !(c = strdup(v)))
        return oom(err);
    free(*field);
    *field = c;
    return 0;
}

char *sbx_step_abs_path(const char *base_dir, const char *path)
{
    char cwd[PATH_MAX], *out = NULL;
    if (path[0] == '/')
        return strdup(path);
    if (!base_dir) {
        if (!getcwd(cwd, sizeof(cwd)))
            return NULL;
        base_dir = cwd;
    }
    if (strcmp(path, ".") == 0)
        return strdup(base_dir);
    if (asprintf(&out, "%s/%s", strcmp(base_dir, "/") == 0 ? "" : base_dir, path) < 0)
        return NULL;
    return out;
}

/* Appends a copy of v to a NULL-terminated string list. */
static int push_str(char ***list, size_t *n, const char *v, const char *what, sbx_err *err)
{
    if (*n >= SBX_STEP_MAX_LIST)
        return sbx_fail(err, SBX_E_INVALID, "too many %s entries (at most %d)", what, SBX_STEP_MAX_LIST);
    char **nl = realloc(*list, (*n + 2) * sizeof(char *));
    if (!nl)
        return oom(err);
    *list = nl;
    if (!(nl[*n] = strdup(v)))
        return oom(err);
    nl[++*n] = NULL;
    return 0;
}

/* ---- single values ------------------------------------------------------ */

int sbx_step_parse_cpu(const char *what, const char *v, double *out, sbx_err *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x <= 0 || x > 1024)
        return sbx_fail(err, SBX_E_INVALID, "%s '%s' is not a number of vCPUs (more than 0, at most 1024, e.g. 1, 2, 0.5)",
                        what, v);
    *out = x;
    return 0;
}

int sbx_step_parse_memory(const char *what, const char *v, uint64_t *out, sbx_err *err)
{
    if (sbx_parse_u64(v, 6, 16777216, out) < 0)
        return sbx_fail(err, SBX_E_INVALID, "%s '%s' is not a whole number of MB (6 to 16777216)", what, v);
    return 0;
}

int sbx_step_parse_timeout(const char *what, const char *v, uint64_t *out, sbx_err *err)
{
    if (sbx_parse_u64(v, 1, SBX_STEP_MAX_TIMEOUT_S, out) < 0)
        return sbx_fail(err, SBX_E_INVALID, "%s '%s' is not a whole number of seconds (1 to %d)", what, v,
                        SBX_STEP_MAX_TIMEOUT_S);
    return 0;
}

int sbx_step_check_name(const char *what, const char *v, sbx_err *err)
{
    if (!sbx_valid_name(v))
        return sbx_fail(err, SBX_E_INVALID,
                        "%s '%.80s' is not a step name (allowed: 1 to 63 of A-Z a-z 0-9 _ . -, not starting with '.')",
                        what, v);
    return 0;
}

int sbx_step_check_env(const char *what, const char *kv, sbx_err *err)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return sbx_fail(err, SBX_E_INVALID, "%s '%.80s' must be KEY=VALUE with a non-empty KEY", what, kv);
    return 0;
}

int sbx_step_check_guest_path(const char *what, const char *p, sbx_err *err)
{
    if (!*p)
        return sbx_fail(err, SBX_E_INVALID, "%s is empty (allowed: a path relative to the code directory, or absolute)",
                        what);
    for (const char *c = p; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return sbx_fail(err, SBX_E_INVALID, "%s '%.200s' has a '..' component (not allowed)", what, p);
        c += n;
        while (*c == '/')
            c++;
    }
    if (strcmp(p, ".") == 0 || strcmp(p, "/") == 0)
        return sbx_fail(err, SBX_E_INVALID, "%s '%s' names a directory, not a file", what, p);
    return 0;
}

const char *sbx_step_output_local_name(const char *output)
{
    if (output[0] != '/') {
        while (output[0] == '.' && output[1] == '/')
            output += 2;
        return output;
    }
    const char *b = strrchr(output, '/');
    return b[1] ? b + 1 : output;
}

/* ---- lists --------------------------------------------------------------- */

int sbx_step_spec_add_env(sbx_step_spec *s, const char *kv, sbx_err *err)
{
    if (sbx_step_check_env("env", kv, err) < 0)
        return -1;
    return push_str(&s->env, &s->n_env, kv, "env", err);
}

int sbx_step_spec_add_output(sbx_step_spec *s, const char *path, sbx_err *err)
{
    if (sbx_step_check_guest_path("output", path, err) < 0)
        return -1;
    return push_str(&s->outputs, &s->n_outputs, path, "outputs", err);
}

int sbx_step_spec_add_upload(sbx_step_spec *s, const char *src, const char *dst, sbx_err *err)
{
    if (!*src)
        return sbx_fail(err, SBX_E_INVALID, "upload source is empty (allowed: a host file path)");
    if (s->n_uploads >= SBX_STEP_MAX_LIST)
        return sbx_fail(err, SBX_E_INVALID, "too many uploads (at most %d)", SBX_STEP_MAX_LIST);
    if (!dst) {
        const char *b = strrchr(src, '/');
        dst = b ? b + 1 : src;
        if (!*dst)
            return sbx_fail(err, SBX_E_INVALID, "upload '%.200s' names a directory (allowed: files)", src);
    }
    if (sbx_step_check_guest_path("upload destination", dst, err) < 0)
        return -1;
    sbx_step_upload *nu = realloc(s->uploads, (s->n_uploads + 1) * sizeof(*nu));
    if (!nu)
        return oom(err);
    s->uploads = nu;
    nu[s->n_uploads].src = strdup(src);
    nu[s->n_uploads].dst = strdup(dst);
    if (!nu[s->n_uploads].src || !nu[s->n_uploads].dst) {
        free(nu[s->n_uploads].src);
        free(nu[s->n_uploads].dst);
        return oom(err);
    }
    s->n_uploads++;
    return 0;
}

int sbx_step_spec_set_command(sbx_step_spec *s, char *const *argv, size_t n, sbx_err *err)
{
    for (size_t i = 0; i < s->n_command; i++)
        free(s->command[i]);
    free(s->command);
    s->command = NULL;
    s->n_command = 0;
    if (n == 0 || !argv[0][0])
        return sbx_fail(err, SBX_E_INVALID, "the command is empty (give CMD [ARG...] after --, or \"command\" in the step file)");
    for (size_t i = 0; i < n; i++)
        if (push_str(&s->command, &s->n_command, argv[i], "command", err) < 0)
            return -1;
    return 0;
}

/* One upload entry of a JSON list: "path" or {"src": "...", "dst": "..."}. */
static int upload_from_json(sbx_step_spec *s, json_t *e, const char *what, size_t i, const char *base_dir,
                            sbx_err *err)
{
    const char *src = NULL, *dst = NULL;
    if (json_is_string(e)) {
        src = json_string_value(e);
    } else if (json_is_object(e)) {
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v) {
            if (strcmp(k, "src") != 0 && strcmp(k, "dst") != 0)
                return sbx_fail(err, SBX_E_INVALID, "%s[%zu]: unknown field '%.60s' (allowed: src, dst)", what, i, k);
            if (!json_is_string(v))
                return sbx_fail(err, SBX_E_INVALID, "%s[%zu].%s must be a string", what, i, k);
        }
        src = json_string_value(json_object_get(e, "src"));
        dst = json_string_value(json_object_get(e, "dst"));
        if (!src)
            return sbx_fail(err, SBX_E_INVALID, "%s[%zu] has no \"src\" (the host file to stage)", what, i);
    } else {
        return sbx_fail(err, SBX_E_INVALID,
                        "%s[%zu] must be a file path or an object {\"src\": host path, \"dst\": sandbox path}", what, i);
    }
    char *abs = sbx_step_abs_path(base_dir, src);
    if (!abs)
        return oom(err);
    int rc = sbx_step_spec_add_upload(s, abs, dst, err);
    free(abs);
    if (rc < 0) {
        char p[128];
        snprintf(p, sizeof(p), "%.100s[%zu]: ", what, i);
        prefix_err(err, p);
    }
    return rc;
}

int sbx_step_spec_add_uploads_json(sbx_step_spec *s, const char *text, const char *what, const char *base_dir,
                                   sbx_err *err)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j || !json_is_array(j)) {
        json_decref(j);
        return sbx_fail(err, SBX_E_INVALID, "%s is not a JSON list of files (e.g. [\"data.csv\", \"conf/a.json\"])%s%s",
                        what, j ? "" : ": ", j ? "" : je.text);
    }
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e) {
        if (upload_from_json(s, e, what, i, base_dir, err) < 0) {
            json_decref(j);
            return -1;
        }
    }
    json_decref(j);
    return 0;
}

/* ---- step files ----------------------------------------------------------- */

static const char *const fields[] = {"name", "backend", "cpu", "memory", "gpu", "image", "timeout", "env",
                                     "uploads", "outputs", "command", "code_dir", "ignore", "environment",
                                     "artifacts"};

/* Prefixes err's message with "<file>: ". */
static int in_file(const char *name, sbx_err *err)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "step file %s: ", name);
    return prefix_err(err, p);
}

static int want_string(json_t *v, const char *field, sbx_err *err)
{
    if (!json_is_string(v))
        return sbx_fail(err, SBX_E_INVALID, "field '%s' must be a string", field);
    return 0;
}

/* A number field given as JSON number or numeric string, checked by the
 * same parser as its flag. */
static int number_text(json_t *v, const char *field, char *buf, size_t cap, sbx_err *err)
{
    if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, cap, "%.17g", json_real_value(v));
    else if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_value(v));
    else
        return sbx_fail(err, SBX_E_INVALID, "field '%s' must be a number", field);
    return 0;
}

static int string_list(json_t *v, const char *field, char ***list, size_t *n, sbx_err *err)
{
    if (!json_is_array(v))
        return sbx_fail(err, SBX_E_INVALID, "field '%s' must be a list of strings", field);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return sbx_fail(err, SBX_E_INVALID, "field '%s'[%zu] must be a string", field, i);
        if (push_str(list, n, json_string_value(e), field, err) < 0)
            return -1;
    }
    return 0;
}

static int parse_field(sbx_step_spec *s, const char *k, json_t *v, const char *base_dir, sbx_err *err)
{
    char num[64];
    if (strcmp(k, "name") == 0) {
        if (want_string(v, k, err) < 0 || sbx_step_check_name("name", json_string_value(v), err) < 0)
            return -1;
        return sbx_step_spec_set_str(&s->name, json_string_value(v), err);
    }
    if (strcmp(k, "backend") == 0) {
        if (want_string(v, k, err) < 0)
            return -1;
        return sbx_step_spec_set_str(&s->backend, json_string_value(v), err);
    }
    if (strcmp(k, "image") == 0) {
        if (json_is_null(v))
            return sbx_step_spec_set_str(&s->image, NULL, err);
        if (want_string(v, k, err) < 0)
            return -1;
        return sbx_step_spec_set_str(&s->image, json_string_value(v), err);
    }
    if (strcmp(k, "gpu") == 0) {
        if (json_is_null(v) || json_is_false(v))
            return sbx_step_spec_set_str(&s->gpu, NULL, err);
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            if (json_integer_value(v) == 0)
                return sbx_step_spec_set_str(&s->gpu, NULL, err);
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
            return sbx_step_spec_set_str(&s->gpu, num, err);
        }
        if (!json_is_string(v))
            return sbx_fail(err, SBX_E_INVALID,
                            "field 'gpu' must be null, a number of GPUs, or a string (\"all\", \"2\", \"0,2\")");
        return sbx_step_spec_set_str(&s->gpu, json_string_value(v), err);
    }
    if (strcmp(k, "cpu") == 0)
        return number_text(v, k, num, sizeof(num), err) < 0 ? -1 : sbx_step_parse_cpu("cpu", num, &s->cpu, err);
    if (strcmp(k, "memory") == 0)
        return number_text(v, k, num, sizeof(num), err) < 0 ? -1
                                                              : sbx_step_parse_memory("memory", num, &s->memory_mb, err);
    if (strcmp(k, "timeout") == 0)
        return number_text(v, k, num, sizeof(num), err) < 0 ? -1
                                                              : sbx_step_parse_timeout("timeout", num, &s->timeout_s, err);
    if (strcmp(k, "env") == 0) {
        if (!json_is_object(v))
            return sbx_fail(err, SBX_E_INVALID, "field 'env' must be an object of names to values ({\"K\": \"V\"})");
        const char *ek;
        json_t *ev;
        json_object_foreach(v, ek, ev) {
            char val[64];
            const char *sv = val;
            if (json_is_string(ev))
                sv = json_string_value(ev);
            else if (json_is_integer(ev))
                snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(ev));
            else if (json_is_real(ev))
                snprintf(val, sizeof(val), "%.17g", json_real_value(ev));
            else if (json_is_boolean(ev))
                sv = json_is_true(ev) ? "true" : "false";
            else
                return sbx_fail(err, SBX_E_INVALID, "env '%.60s' must be a string, number or boolean", ek);
            size_t kl = strlen(ek), vl = strlen(sv);
            char *kv = malloc(kl + vl + 2);
            if (!kv)
                return oom(err);
            memcpy(kv, ek, kl);
            kv[kl] = '=';
            memcpy(kv + kl + 1, sv, vl + 1);
            int rc = !*ek || strchr(ek, '=') ? sbx_fail(err, SBX_E_INVALID,
                                                        "env name '%.60s' is invalid (allowed: non-empty, without '=')", ek)
                                            : sbx_step_spec_add_env(s, kv, err);
            free(kv);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(k, "uploads") == 0) {
        if (!json_is_array(v))
            return sbx_fail(err, SBX_E_INVALID, "field 'uploads' must be a list of files");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (upload_from_json(s, e, "uploads", i, base_dir, err) < 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(k, "outputs") == 0) {
        char **tmp = NULL;
        size_t n = 0;
        int rc = string_list(v, k, &tmp, &n, err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = sbx_step_spec_add_output(s, tmp[i], err);
        for (size_t i = 0; i < n; i++)
            free(tmp[i]);
        free(tmp);
        return rc;
    }
    if (strcmp(k, "command") == 0) {
        if (json_is_string(v)) {
            /* A string is a shell command line, as in a Dockerfile. */
            char *argv[] = {"sh", "-c", (char *)json_string_value(v)};
            if (!*argv[2])
                return sbx_fail(err, SBX_E_INVALID, "field 'command' is empty");
            return sbx_step_spec_set_command(s, argv, 3, err);
        }
        char **tmp = NULL;
        size_t n = 0;
        int rc = string_list(v, k, &tmp, &n, err);
        if (rc == 0)
            rc = n ? sbx_step_spec_set_command(s, tmp, n, err)
                   : sbx_fail(err, SBX_E_INVALID, "field 'command' is an empty list");
        for (size_t i = 0; i < n; i++)
            free(tmp[i]);
        free(tmp);
        return rc;
    }
    if (strcmp(k, "code_dir") == 0) {
        s->code_dir_set = true;
        if (json_is_null(v) || json_is_false(v))
            return sbx_step_spec_set_str(&s->code_dir, NULL, err);
        if (want_string(v, k, err) < 0)
            return -1;
        char *abs = sbx_step_abs_path(base_dir, json_string_value(v));
        if (!abs)
            return oom(err);
        free(s->code_dir);
        s->code_dir = abs;
        return 0;
    }
    if (strcmp(k, "ignore") == 0)
        return string_list(v, k, &s->ignore, &s->n_ignore, err);
    if (strcmp(k, "environment") == 0) {
        if (json_is_null(v))
            return sbx_step_spec_set_str(&s->environment, NULL, err);
        if (want_string(v, k, err) < 0 || sbx_step_check_guest_path("environment", json_string_value(v), err) < 0)
            return -1;
        return sbx_step_spec_set_str(&s->environment, json_string_value(v), err);
    }
    if (strcmp(k, "artifacts") == 0) {
        if (want_string(v, k, err) < 0)
            return -1;
        char *abs = sbx_step_abs_path(base_dir, json_string_value(v));
        if (!abs)
            return oom(err);
        free(s->artifacts_dir);
        s->artifacts_dir = abs;
        return 0;
    }
    char allowed[512];
    size_t off = 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(fields); i++)
        off += (size_t)snprintf(allowed + off, sizeof(allowed) - off, "%s%s", i ? ", " : "", fields[i]);
    return sbx_fail(err, SBX_E_INVALID, "unknown field '%.60s' (allowed: %s)", k, allowed);
}

int sbx_step_spec_parse(const char *text, size_t len, const char *name, const char *base_dir, sbx_step_spec *s,
                        sbx_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j)
        return sbx_fail(err, SBX_E_INVALID, "step file %s is not JSON: %s (line %d, column %d)", name, je.text, je.line,
                        je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_fail(err, SBX_E_INVALID, "step file %s must hold a JSON object", name);
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (parse_field(s, k, v, base_dir, err) < 0) {
            json_decref(j);
            return in_file(name, err);
        }
    }
    json_decref(j);
    if (!s->command)
        return sbx_fail(err, SBX_E_INVALID, "step file %s has no \"command\" (a list such as [\"python3\", \"step.py\"], "
                                            "or a shell command line)",
                        name);
    if (!s->code_dir_set) {
        /* A step file's code is its own directory by default ... */
        if (!(s->code_dir = strdup(base_dir)))
            return oom(err);
        s->code_dir_set = true;
    }
    /* ... and its outputs land beside it. */
    if (!s->artifacts_dir && !(s->artifacts_dir = sbx_step_abs_path(base_dir, "artifacts")))
        return oom(err);
    return 0;
}

int sbx_step_spec_load(const char *path, sbx_step_spec *s, sbx_err *err)
{
    size_t len;
    char *text = sbx_slurp(path, &len);
    if (!text)
        return sbx_fail_errno(err, errno, "cannot read step file %s", path);
    char *abs = sbx_step_abs_path(NULL, path);
    char *dir = abs ? strdup(abs) : NULL;
    int rc;
    if (!dir) {
        rc = oom(err);
    } else {
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        rc = sbx_step_spec_parse(text, len, path, dir, s, err);
    }
    free(abs);
    free(dir);
    free(text);
    return rc;
}

/* ---- the whole spec ------------------------------------------------------ */

int sbx_step_spec_finish(sbx_step_spec *s, const char *default_backend, sbx_err *err)
{
    if (!s->command)
        return sbx_fail(err, SBX_E_INVALID, "no command given (CMD [ARG...] after --, or -f STEP.json)");
    if (!s->backend && sbx_step_spec_set_str(&s->backend, default_backend, err) < 0)
        return -1;
    if (s->cpu == 0) {
        s->cpu = SBX_STEP_DEFAULT_CPU;
        s->cpu_defaulted = true;
    }
    if (!s->memory_mb) {
        s->memory_mb = SBX_STEP_DEFAULT_MEMORY_MB;
        s->memory_defaulted = true;
    }
    if (!s->timeout_s)
        s->timeout_s = SBX_STEP_DEFAULT_TIMEOUT_S;
    if (s->gpu && !*s->gpu && sbx_step_spec_set_str(&s->gpu, NULL, err) < 0)
        return -1;
    if (s->image && !*s->image && sbx_step_spec_set_str(&s->image, NULL, err) < 0)
        return -1;
    if (!s->name) {
        /* The command's base name, made a valid name. */
        const char *argv0 = s->command[0];
        if (s->n_command >= 3 && strcmp(argv0, "sh") == 0 && strcmp(s->command[1], "-c") == 0)
            argv0 = "sh";
        const char *b = strrchr(argv0, '/');
        b = b ? b + 1 : argv0;
        char nm[64];
        size_t n = 0;
        for (; *b && n < sizeof(nm) - 1; b++) {
            bool ok = (*b >= 'a' && *b <= 'z') || (*b >= 'A' && *b <= 'Z') || (*b >= '0' && *b <= '9') || *b == '_' ||
                      *b == '-' || (*b == '.' && n);
            nm[n++] = ok ? *b : '_';
        }
        nm[n] = '\0';
        if (sbx_step_spec_set_str(&s->name, n ? nm : "step", err) < 0)
            return -1;
    }
    /* A missing upload is an error now, before any sandbox exists. */
    for (size_t i = 0; i < s->n_uploads; i++) {
        struct stat st;
        if (stat(s->uploads[i].src, &st) < 0)
            return sbx_fail_errno(err, errno, "upload %s", s->uploads[i].src);
        if (!S_ISREG(st.st_mode))
            return sbx_fail(err, SBX_E_INVALID, "upload %s is not a regular file (allowed: files)", s->uploads[i].src);
    }
    if (s->code_dir) {
        struct stat st;
        if (stat(s->code_dir, &st) < 0)
            return sbx_fail_errno(err, errno, "code directory %s", s->code_dir);
        if (!S_ISDIR(st.st_mode))
            return sbx_fail(err, SBX_E_INVALID, "code directory %s is not a directory", s->code_dir);
    }
    if (s->environment && !s->code_dir)
        return sbx_fail(err, SBX_E_INVALID, "environment %s is a file of the code package, and this step has none",
                        s->environment);
    if (!s->artifacts_dir && !(s->artifacts_dir = sbx_step_abs_path(NULL, "artifacts")))
        return oom(err);
    /* Two outputs that land on one artifact would overwrite each other
     * (absolute ones land under their base name). */
    for (size_t i = 0; i < s->n_outputs; i++)
        for (size_t j = i + 1; j < s->n_outputs; j++) {
            const char *a = s->outputs[i], *b = s->outputs[j];
            if (strcmp(sbx_step_output_local_name(a), sbx_step_output_local_name(b)) != 0 ||
                (a[0] != '/' && b[0] != '/')) /* two relative ones: the same file, declared twice */
                continue;
            if (a[0] == '/' && b[0] == '/' && strcmp(a, b) == 0)
                continue;
            return sbx_fail(err, SBX_E_INVALID,
                            "outputs %.200s and %.200s would both be collected as %.200s/%.200s (an absolute output "
                            "lands under its base name): copy one to another name in the step",
                            a, b, s->artifacts_dir, sbx_step_output_local_name(a));
        }
    return 0;
}

bool sbx_step_secret_name(const char *key, size_t len)
{
    static const char *const words[] = {"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH"};
    for (size_t w = 0; w < SBX_ARRAY_LEN(words); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++)
            if (strncasecmp(key + i, words[w], wl) == 0)
                return true;
    }
    return false;
}

json_t *sbx_step_spec_to_json(const sbx_step_spec *s, bool mask)
{
    json_t *o = json_object(), *env = json_object(), *up = json_array(), *outs = json_array(), *cmd = json_array(),
           *ign = json_array();
    for (size_t i = 0; i < s->n_env; i++) {
        const char *eq = strchr(s->env[i], '=');
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - s->env[i]), s->env[i]);
        bool secret = mask && sbx_step_secret_name(s->env[i], (size_t)(eq - s->env[i]));
        json_object_set_new(env, key, json_string(secret ? "****" : eq + 1));
    }
    for (size_t i = 0; i < s->n_uploads; i++)
        json_array_append_new(up, json_pack("{s:s, s:s}", "src", s->uploads[i].src, "dst", s->uploads[i].dst));
    for (size_t i = 0; i < s->n_outputs; i++)
        json_array_append_new(outs, json_string(s->outputs[i]));
    for (size_t i = 0; i < s->n_command; i++)
        json_array_append_new(cmd, json_string(s->command[i]));
    for (size_t i = 0; i < s->n_ignore; i++)
        json_array_append_new(ign, json_string(s->ignore[i]));
    json_object_set_new(o, "name", s->name ? json_string(s->name) : json_null());
    json_object_set_new(o, "backend", s->backend ? json_string(s->backend) : json_null());
    json_object_set_new(o, "cpu", json_real(s->cpu));
    json_object_set_new(o, "memory", json_integer((json_int_t)s->memory_mb));
    json_object_set_new(o, "gpu", s->gpu ? json_string(s->gpu) : json_null());
    json_object_set_new(o, "image", s->image ? json_string(s->image) : json_null());
    json_object_set_new(o, "timeout", json_integer((json_int_t)s->timeout_s));
    json_object_set_new(o, "env", env);
    json_object_set_new(o, "uploads", up);
    json_object_set_new(o, "outputs", outs);
    json_object_set_new(o, "command", cmd);
    json_object_set_new(o, "code_dir", s->code_dir ? json_string(s->code_dir) : json_null());
    json_object_set_new(o, "ignore", ign);
    json_object_set_new(o, "environment", s->environment ? json_string(s->environment) : json_null());
    json_object_set_new(o, "artifacts", s->artifacts_dir ? json_string(s->artifacts_dir) : json_null());
    return o;
}
