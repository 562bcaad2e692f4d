/* The step runner (runner.h). */
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "keeper.h"
#include "micromamba.h"
#include "package.h"
#include "records.h"
#include "util.h"

#define PREPARE_TIMEOUT_MS 300000
#define PREPARE_OUTPUT_MAX 2048
#define GUEST_PACKAGE SBX_STEP_GUEST_DIR "/code.tar.gz"
#define GUEST_SCRIPT SBX_STEP_GUEST_DIR "/step.sh"
#define GUEST_MICROMAMBA SBX_STEP_GUEST_BIN "/micromamba"
#define GUEST_MAMBA_ROOT SBX_STEP_GUEST_DIR "/mamba"

enum verdict { V_OK, V_USER, V_INFRA, V_REFUSED, V_INTERRUPTED };
static const char *const verdict_names[] = {"ok", "user", "infra", "refused", "interrupted"};

/* ---- a growing list of strings --------------------------------------------- */

typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static int strv_add(strv *s, const char *str)
{
    if (s->n + 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        char **nv = realloc(s->v, nc * sizeof(char *));
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = nc;
    }
    if (!(s->v[s->n] = strdup(str)))
        return -1;
    s->v[++s->n] = NULL;
    return 0;
}

static int strv_addf(strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int strv_addf(strv *s, const char *fmt, ...)
{
    char *t = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&t, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int rc = strv_add(s, t);
    free(t);
    return rc;
}

static void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- output: prefixed lines to the terminal, raw bytes to the logs --------- */

typedef struct output {
    const char *prefix;
    int log_fd[3];        /* [1] stdout log, [2] stderr log; -1 none */
    char *part[3];        /* an unfinished line per stream */
    size_t part_len[3];
    char *capture;        /* when set: keep the first bytes (prepare's errors) */
    size_t capture_len, capture_cap;
} output;

static void write_all(int fd, const char *d, size_t n)
{
    while (n) {
        ssize_t w = write(fd, d, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        d += w;
        n -= (size_t)w;
    }
}

static void emit_line(output *o, int stream, const char *d, size_t n)
{
    size_t pl = strlen(o->prefix);
    char *line = malloc(pl + n + 1);
    if (!line)
        return;
    memcpy(line, o->prefix, pl);
    memcpy(line + pl, d, n);
    line[pl + n] = '\n';
    write_all(stream == 2 ? 2 : 1, line, pl + n + 1);
    free(line);
}

static void on_output(void *ud, int stream, const char *d, size_t n)
{
    output *o = ud;
    stream = stream == 2 ? 2 : 1;
    if (o->capture) {
        size_t take = o->capture_cap - o->capture_len < n ? o->capture_cap - o->capture_len : n;
        memcpy(o->capture + o->capture_len, d, take);
        o->capture_len += take;
        o->capture[o->capture_len] = '\0';
        return;
    }
    if (o->log_fd[stream] >= 0)
        write_all(o->log_fd[stream], d, n);
    while (n) {
        const char *nl = memchr(d, '\n', n);
        size_t take = nl ? (size_t)(nl - d) : n;
        if (nl && !o->part_len[stream]) {
            emit_line(o, stream, d, take);
        } else {
            char *p = realloc(o->part[stream], o->part_len[stream] + take + 1);
            if (!p)
                return;
            memcpy(p + o->part_len[stream], d, take);
            o->part[stream] = p;
            o->part_len[stream] += take;
            if (nl) {
                emit_line(o, stream, p, o->part_len[stream]);
                o->part_len[stream] = 0;
            }
        }
        if (!nl)
            break;
        d += take + 1;
        n -= take + 1;
    }
}

static void output_flush(output *o)
{
    for (int s = 1; s <= 2; s++) {
        if (o->part_len[s])
            emit_line(o, s, o->part[s], o->part_len[s]);
        free(o->part[s]);
        o->part[s] = NULL;
        o->part_len[s] = 0;
    }
}

/* ---- the run ---------------------------------------------------------------- */

typedef struct run {
    sbx_step_spec *spec;
    const sbx_step_settings *set;
    const sbx_step_backend *be;
    sbx_step_resources res;
    strv env;              /* the resources' env: the step's and the forwarded */
    strv attempt_env;      /* added per command: run id, attempt, environment */
    sbx_step_records rec_store;
    char id[SBX_STEP_RUN_ID_MAX];
    char dir[PATH_MAX];    /* the run's records directory */
    char package[PATH_MAX + 32]; /* host code package, "" none */
    char script[PATH_MAX + 32];
    char micromamba[PATH_MAX];   /* host binary to stage, "" none */
    json_t *rec;
    char prefix[96];
} run;

/* One message line on stderr, "sbx: " first. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char m[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    fprintf(stderr, "sbx: %s\n", m);
    fflush(stderr);
}

static void save(run *r, bool with_logs)
{
    sbx_err e = {0};
    if (sbx_step_record_write(&r->rec_store, r->id, r->rec, with_logs, &e) < 0)
        say("warning: run %s: %s", r->id, e.msg);
}

static void now_into(json_t *o, const char *key)
{
    char t[40];
    sbx_step_now_iso(t);
    json_object_set_new(o, key, json_string(t));
}

/* The datastore and credentials variables of the metaflow-sandbox
 * document, passed into the sandbox as the launcher has them, so code in
 * the step reaches the same datastore. */
static int forward_env(run *r)
{
    static const char *const names[] = {
        "METAFLOW_DEFAULT_DATASTORE", "METAFLOW_DATASTORE_SYSROOT_S3", "METAFLOW_DATASTORE_SYSROOT_GS",
        "METAFLOW_DATASTORE_SYSROOT_AZURE", "METAFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "METAFLOW_S3_WORKER_COUNT"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(names); i++) {
        const char *v = getenv(names[i]);
        if (v && *v && strv_addf(&r->env, "%s=%s", names[i], v) < 0)
            return -1;
    }
    const char *ep = getenv("METAFLOW_S3_ENDPOINT_URL"), *wc = getenv("METAFLOW_S3_WORKER_COUNT");
    bool r2 = ep && strstr(ep, "r2.cloudflarestorage.com");
    if (r2 && !(wc && *wc) && strv_addf(&r->env, "METAFLOW_S3_WORKER_COUNT=%d", r->set->r2_worker_count) < 0)
        return -1;
    const char *tok = getenv("AWS_SESSION_TOKEN");
    bool fwd = r->set->forward_session_token == 1 || (r->set->forward_session_token < 0 && !r2);
    if (tok && *tok && fwd && strv_addf(&r->env, "AWS_SESSION_TOKEN=%s", tok) < 0)
        return -1;
    /* The step's own env comes last: it wins. */
    for (size_t i = 0; i < r->spec->n_env; i++)
        if (strv_add(&r->env, r->spec->env[i]) < 0)
            return -1;
    return 0;
}

/* 'text' with every ' as '\'' inside single quotes. */
static void sh_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

static int write_script(run *r, sbx_err *err)
{
    FILE *f = fopen(r->script, "we");
    if (!f)
        return sbx_fail_errno(err, errno, "cannot write %s", r->script);
    fprintf(f, "#!/bin/sh\n"
               "# sbx step '%s', run %s, backend %s: generated by sbx.\n"
               "# sbx sets the environment and enforces the timeout (%llu s).\n"
               "cd %s || exit 125\n",
            r->spec->name, r->id, r->spec->backend, (unsigned long long)r->spec->timeout_s, SBX_STEP_GUEST_CODE);
    if (r->micromamba[0])
        fprintf(f, "export PATH=\"%s:$PATH\"\n", SBX_STEP_GUEST_BIN);
    for (size_t i = 0; i < r->spec->n_command; i++) {
        if (i)
            fputc(' ', f);
        sh_quote(f, r->spec->command[i]);
    }
    /* Not the last command: the shell waits and turns a signal into 128+N. */
    fputs("\nexit $?\n", f);
    if (fclose(f) != 0)
        return sbx_fail_errno(err, errno, "cannot write %s", r->script);
    return 0;
}

/* The masked environment for records and the dump. */
static void write_env_masked(FILE *f, char *const *v)
{
    for (size_t i = 0; v && v[i]; i++) {
        const char *eq = strchr(v[i], '=');
        size_t kl = eq ? (size_t)(eq - v[i]) : strlen(v[i]);
        if (eq && sbx_step_secret_name(v[i], kl))
            fprintf(f, "%.*s=****\n", (int)kl, v[i]);
        else
            fprintf(f, "%s\n", v[i]);
    }
}

/* METAFLOW_SANDBOX_DEBUG: the script and the environment (secrets
 * masked) into <debug dir>/<run id>/. */
static int debug_dump(run *r, char *dir, size_t cap, sbx_err *err)
{
    if (sbx_pathf(dir, cap, "%s/%s", r->set->debug_dir, r->id) < 0)
        return sbx_fail(err, SBX_E_INVALID, "METAFLOW_SANDBOX_DEBUG path is too long");
    int e = sbx_mkdir_p(dir, 0700);
    if (e < 0)
        return sbx_fail_errno(err, -e, "cannot create the debug dir %s", dir);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/step.sh", dir);
    size_t len;
    char *text = sbx_slurp(r->script, &len);
    FILE *f = text ? fopen(p, "we") : NULL;
    if (!f) {
        free(text);
        return sbx_fail_errno(err, errno, "cannot write %s", p);
    }
    fwrite(text, 1, len, f);
    free(text);
    fclose(f);
    snprintf(p, sizeof(p), "%s/env", dir);
    if (!(f = fopen(p, "we")))
        return sbx_fail_errno(err, errno, "cannot write %s", p);
    fprintf(f, "# the step's environment on backend %s (secrets masked), besides the image's own\n", r->spec->backend);
    write_env_masked(f, r->env.v);
    write_env_masked(f, r->attempt_env.v);
    fclose(f);
    return 0;
}

/* ---- one attempt ------------------------------------------------------------- */

typedef struct attempt {
    int n;
    enum verdict v;
    sbx_step_exit ex;
    bool ran;             /* the step's command ran to an outcome */
    char error[1024];
    char hint[512];       /* debug: how to get a shell in the kept sandbox */
    char sandbox[160];
    char left[800];       /* after an interrupt: why its sandbox remains ("" removed or kept) */
    json_t *outputs;
} attempt;

static const char *sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* An interrupt stops the work: no further backend call is started. */
#define STOP_IF_INTERRUPTED()                                                                                         \
    do {                                                                                                              \
        if (sbx_step_stopping(false))                                                                                 \
            return V_INTERRUPTED;                                                                                     \
    } while (0)

static enum verdict fail_verdict(int fail)
{
    return fail == SBX_STEP_INFRA ? V_INFRA : V_REFUSED;
}

static enum verdict backend_failed(attempt *a, int fail, const char *what, const sbx_err *e)
{
    snprintf(a->error, sizeof(a->error), "%.400s: %.500s", what, e->msg);
    return fail_verdict(fail);
}

static enum verdict stage(run *r, sbx_step_box *box, attempt *a)
{
    const sbx_step_backend *be = r->be;
    int fail = 0;
    sbx_err e = {0};
    output cap = {.prefix = ""};
    char buf[PREPARE_OUTPUT_MAX + 1];
    cap.capture = buf;
    cap.capture_cap = PREPARE_OUTPUT_MAX;
    buf[0] = '\0';
    sbx_step_exit ex;

    /* The platform micromamba was chosen for must be the image's. */
    STOP_IF_INTERRUPTED();
    if (r->micromamba[0]) {
        char *argv[] = {"uname", "-m", NULL};
        if (be->exec(box, argv, NULL, "/", PREPARE_TIMEOUT_MS, on_output, &cap, &ex, &fail, &e) < 0)
            return backend_failed(a, fail, "cannot check the image's platform", &e);
        buf[strcspn(buf, "\r\n")] = '\0';
        const char *p = sbx_step_platform_of_machine(buf);
        if (ex.exit_code != 0 || !p || strcmp(p, r->set->platform) != 0) {
            snprintf(a->error, sizeof(a->error),
                     "METAFLOW_SANDBOX_TARGET_PLATFORM is %s but the image's machine is '%s' (%s): set it to the "
                     "image's platform, or choose an image for %s",
                     r->set->platform, buf, p ? p : "not linux-64 or linux-aarch64", r->set->platform);
            return V_REFUSED;
        }
        cap.capture_len = 0;
        buf[0] = '\0';
    }
    STOP_IF_INTERRUPTED();
    if (r->package[0] && be->upload(box, r->package, GUEST_PACKAGE, 0644, &fail, &e) < 0)
        return backend_failed(a, fail, "cannot stage the code package", &e);
    char *prep[] = {"sh", "-c",
                    "mkdir -p " SBX_STEP_GUEST_CODE " " SBX_STEP_GUEST_BIN " && cd " SBX_STEP_GUEST_CODE
                    " && if [ -e " GUEST_PACKAGE " ]; then tar -xzf " GUEST_PACKAGE " && rm -f " GUEST_PACKAGE "; fi",
                    NULL};
    STOP_IF_INTERRUPTED();
    if (be->exec(box, prep, NULL, "/", PREPARE_TIMEOUT_MS, on_output, &cap, &ex, &fail, &e) < 0)
        return backend_failed(a, fail, "cannot prepare the step's directory", &e);
    if (ex.exit_code != 0) {
        snprintf(a->error, sizeof(a->error),
                 "cannot unpack the code package in the sandbox (the image needs sh, mkdir and tar): exit %d: %.600s",
                 ex.exit_code, buf);
        return V_REFUSED;
    }
    for (size_t i = 0; i < r->spec->n_uploads; i++) {
        const sbx_step_upload *u = &r->spec->uploads[i];
        char guest[PATH_MAX];
        struct stat st;
        STOP_IF_INTERRUPTED();
        if (stat(u->src, &st) < 0) {
            snprintf(a->error, sizeof(a->error), "upload %s: %s", u->src, strerror(errno));
            return V_REFUSED;
        }
        if (sbx_pathf(guest, sizeof(guest), "%s%s%s", u->dst[0] == '/' ? "" : SBX_STEP_GUEST_CODE,
                      u->dst[0] == '/' ? "" : "/", u->dst) < 0) {
            snprintf(a->error, sizeof(a->error), "upload destination %s is too long", u->dst);
            return V_REFUSED;
        }
        if (be->upload(box, u->src, guest, st.st_mode & 0777, &fail, &e) < 0) {
            char what[PATH_MAX + 32];
            snprintf(what, sizeof(what), "cannot stage %s", u->src);
            return backend_failed(a, fail, what, &e);
        }
    }
    STOP_IF_INTERRUPTED();
    if (r->micromamba[0] && be->upload(box, r->micromamba, GUEST_MICROMAMBA, 0755, &fail, &e) < 0)
        return backend_failed(a, fail, "cannot stage micromamba", &e);
    STOP_IF_INTERRUPTED();
    if (be->upload(box, r->script, GUEST_SCRIPT, 0755, &fail, &e) < 0)
        return backend_failed(a, fail, "cannot stage the step's script", &e);
    return V_OK;
}

static enum verdict collect(run *r, sbx_step_box *box, attempt *a)
{
    char missing[512] = "";
    for (size_t i = 0; i < r->spec->n_outputs; i++) {
        const char *o = r->spec->outputs[i];
        char guest[PATH_MAX], host[PATH_MAX];
        STOP_IF_INTERRUPTED();
        const char *local = sbx_step_output_local_name(o);
        if (sbx_pathf(guest, sizeof(guest), "%s%s%s", o[0] == '/' ? "" : SBX_STEP_GUEST_CODE, o[0] == '/' ? "" : "/",
                      o) < 0 ||
            sbx_pathf(host, sizeof(host), "%s/%s", r->spec->artifacts_dir, local) < 0) {
            snprintf(a->error, sizeof(a->error), "output %s: path too long", o);
            return V_REFUSED;
        }
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", host);
        *strrchr(parent, '/') = '\0';
        int me = sbx_mkdir_p(parent, 0755);
        if (me < 0) {
            snprintf(a->error, sizeof(a->error), "cannot create the artifacts directory %.600s: %s", parent, strerror(-me));
            return V_REFUSED;
        }
        int fail = 0;
        sbx_err e = {0};
        const char *status = "collected";
        if (r->be->download(box, guest, host, &fail, &e) < 0) {
            if (fail == SBX_STEP_INFRA)
                return backend_failed(a, fail, "cannot collect the outputs", &e);
            if (e.sys_errno != ENOENT && e.code != SBX_E_NOTFOUND) {
                snprintf(a->error, sizeof(a->error), "cannot collect output %s: %s", o, e.msg);
                return V_REFUSED;
            }
            unlink(host);
            status = "missing";
            size_t l = strlen(missing);
            snprintf(missing + l, sizeof(missing) - l, "%s%s", l ? ", " : "", o);
        }
        json_array_append_new(a->outputs, json_pack("{s:s, s:s, s:s}", "path", o, "local", host, "status", status));
    }
    if (missing[0]) {
        snprintf(a->error, sizeof(a->error), "declared output%s not produced: %s", strchr(missing, ',') ? "s" : "",
                 missing);
        return V_USER;
    }
    return V_OK;
}

static void attempt_logs(run *r, int n, char *out, char *errp, size_t cap)
{
    char f[64];
    snprintf(f, sizeof(f), "attempt-%d.stdout.log", n);
    sbx_step_record_path(&r->rec_store, r->id, f, out, cap);
    snprintf(f, sizeof(f), "attempt-%d.stderr.log", n);
    sbx_step_record_path(&r->rec_store, r->id, f, errp, cap);
}

static void run_attempt(run *r, attempt *a, json_t *att)
{
    const sbx_step_backend *be = r->be;
    sbx_step_box *box = NULL;
    int fail = 0;
    sbx_err e = {0};
    a->outputs = json_array();
    if (be->create(&r->res, &box, &fail, &e) < 0) {
        a->v = backend_failed(a, fail, "cannot create the sandbox", &e);
        if (sbx_step_interrupt_signal()) {
            a->v = V_INTERRUPTED;
            snprintf(a->error, sizeof(a->error), "interrupted by %s while the sandbox was being created",
                     sig_name(sbx_step_interrupt_signal()));
        }
        return;
    }
    snprintf(a->sandbox, sizeof(a->sandbox), "%s", be->id(box));
    json_object_set_new(att, "sandbox", json_string(a->sandbox));
    save(r, false); /* a killed launcher's record names its sandbox */
    char note[400];
    snprintf(note, sizeof(note), "sandbox %.160s on %s may be left (remove it: sbx rm %.160s)", a->sandbox, be->name,
             a->sandbox);
    sbx_step_interrupt_note(note);

    a->v = sbx_step_stopping(false) ? V_INTERRUPTED : stage(r, box, a);
    if (a->v == V_OK) {
        char lo[PATH_MAX], le[PATH_MAX];
        attempt_logs(r, a->n, lo, le, sizeof(lo));
        output o = {.prefix = r->prefix, .log_fd = {-1, -1, -1}};
        o.log_fd[1] = open(lo, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        o.log_fd[2] = open(le, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        json_object_set_new(att, "logs", json_pack("{s:s, s:s}", "stdout", lo, "stderr", le));
        save(r, false); /* where the logs are, before the step starts */
        char *argv[] = {"sh", GUEST_SCRIPT, NULL};
        int rc = be->exec(box, argv, r->attempt_env.v, SBX_STEP_GUEST_CODE, r->spec->timeout_s * 1000, on_output, &o,
                          &a->ex, &fail, &e);
        output_flush(&o);
        for (int i = 1; i <= 2; i++)
            if (o.log_fd[i] >= 0)
                close(o.log_fd[i]);
        if (rc < 0) {
            a->v = backend_failed(a, fail, "the step's command failed to run", &e);
        } else {
            a->ran = true;
            enum verdict cv = collect(r, box, a);
            if (cv == V_INFRA || cv == V_REFUSED)
                a->v = cv;
            else if (a->ex.timed_out || a->ex.oom_killed || a->ex.exit_code != 0)
                a->v = V_USER;
            else
                a->v = cv; /* a missing output fails a step that exited 0 */
        }
    }
    /* Whatever failed meanwhile, an interrupt is why: the run ends here. */
    int sig = sbx_step_interrupt_signal();
    if (sig) {
        a->v = V_INTERRUPTED;
        a->ran = false;
        snprintf(a->error, sizeof(a->error), "interrupted by %s", sig_name(sig));
    }
    /* Debug mode keeps the sandbox of the attempt that ends the run; a
     * broken one (infra) is no use to anyone. */
    bool keep = r->set->debug && a->v != V_INFRA;
    if (keep && be->shell_hint)
        be->shell_hint(box, a->hint, sizeof(a->hint));
    sbx_err de = {0};
    if (be->destroy(box, keep, &de) < 0) {
        if (a->v == V_INTERRUPTED)
            snprintf(a->left, sizeof(a->left), "sandbox %.160s was left: %.300s (remove it: sbx rm %.160s)", a->sandbox,
                     sbx_step_stopping(true) ? "a second interrupt stopped its removal" : de.msg, a->sandbox);
        else if (a->v != V_INFRA) /* after infra, it is likely gone already */
            say("warning: cannot remove sandbox %s: %s", a->sandbox, de.msg);
    }
    sbx_step_interrupt_note(NULL);
}

/* ---- the whole run ----------------------------------------------------------- */

static json_t *new_record(run *r)
{
    json_t *set = json_pack("{s:i, s:b, s:s}", "max_infra_retries", r->set->max_infra_retries, "debug", r->set->debug,
                            "target_platform", r->set->platform);
    json_t *rec = json_object();
    json_object_set_new(rec, "id", json_string(r->id));
    json_object_set_new(rec, "name", json_string(r->spec->name));
    json_object_set_new(rec, "status", json_string("running"));
    json_object_set_new(rec, "verdict", json_null());
    json_object_set_new(rec, "exit_code", json_null());
    json_object_set_new(rec, "message", json_null());
    json_object_set_new(rec, "backend", json_string(r->spec->backend));
    json_object_set_new(rec, "spec", sbx_step_spec_to_json(r->spec, true));
    json_object_set_new(rec, "settings", set);
    json_object_set_new(rec, "launcher", sbx_step_launcher_self());
    now_into(rec, "created_at");
    json_object_set_new(rec, "finished_at", json_null());
    json_object_set_new(rec, "attempts", json_array());
    json_object_set_new(rec, "cpu_usec", json_null());
    json_object_set_new(rec, "memory_peak", json_null());
    json_object_set_new(rec, "logs", json_null());
    json_object_set_new(rec, "outputs", json_array());
    json_object_set_new(rec, "artifacts_dir", json_string(r->spec->artifacts_dir));
    json_object_set_new(rec, "script", json_string(r->script));
    json_t *ds = r->rec_store.datastore[0] ? json_pack("{s:s, s:s}", "kind", "local", "path", r->rec_store.datastore)
                 : r->rec_store.datastore_note[0] ? json_pack("{s:n, s:s}", "kind", "note", r->rec_store.datastore_note)
                                                  : json_null();
    json_object_set_new(rec, "datastore", ds);
    json_object_set_new(rec, "debug", json_null());
    return rec;
}

/* A removed code package; the records directory is kept. */
static void cleanup_stage(run *r)
{
    if (r->package[0])
        unlink(r->package);
}

static int prepare(run *r, sbx_err *err)
{
    if (forward_env(r) < 0)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    r->res = (sbx_step_resources){
        .cpu = r->spec->cpu,
        .memory_mb = r->spec->memory_mb,
        .cpu_set = !r->spec->cpu_defaulted,
        .memory_set = !r->spec->memory_defaulted,
        .gpu = r->spec->gpu,
        .image = r->spec->image,
        .env = r->env.v,
        .timeout_s = r->spec->timeout_s,
    };
    int fail = 0;
    if (r->be->check(&r->res, &fail, err) < 0)
        return -1;
    if (r->spec->environment) {
        char p[PATH_MAX];
        struct stat st;
        if (sbx_pathf(p, sizeof(p), "%s/%s", r->spec->code_dir, r->spec->environment) < 0 || stat(p, &st) < 0 ||
            !S_ISREG(st.st_mode))
            return sbx_fail(err, SBX_E_NOTFOUND, "environment %s is not a file in the code directory %s",
                            r->spec->environment, r->spec->code_dir);
        if (r->set->stage_micromamba && sbx_step_micromamba_find(r->set, r->micromamba, sizeof(r->micromamba), err) < 0)
            return -1;
    }
    if (sbx_step_records_open(&r->rec_store, err) < 0)
        return -1;
    sbx_step_run_id(r->id);
    if (sbx_step_record_path(&r->rec_store, r->id, NULL, r->dir, sizeof(r->dir)) < 0)
        return sbx_fail(err, SBX_E_INVALID, "the records dir path is too long: %s", r->rec_store.dir);
    int e = sbx_mkdir_p(r->dir, 0700);
    if (e < 0)
        return sbx_fail_errno(err, -e, "cannot create the run's directory %s", r->dir);
    snprintf(r->script, sizeof(r->script), "%s/step.sh", r->dir);
    if (r->spec->code_dir) {
        snprintf(r->package, sizeof(r->package), "%s/code.tar.gz", r->dir);
        sbx_step_package_info pi;
        if (sbx_step_package_build(r->spec->code_dir, r->spec->ignore, r->spec->n_ignore, r->spec->artifacts_dir,
                                   r->package, &pi, err) < 0)
            return -1;
    }
    return write_script(r, err);
}

/* Removes a run directory that never got a record (its inputs failed). */
static void drop_run_dir(run *r)
{
    if (!r->dir[0])
        return;
    DIR *d = opendir(r->dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[PATH_MAX + 300];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", r->dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(r->dir);
}

static int finish(run *r, attempt *last, int attempts, uint64_t cpu, uint64_t peak)
{
    const sbx_step_spec *s = r->spec;
    char msg[1600];
    int code;
    int tries = 1 + r->set->max_infra_retries;
    /* An interrupt before the end ends the run, whatever the attempt got to. */
    int sig = sbx_step_interrupt_signal();
    enum verdict v = sig ? V_INTERRUPTED : last->v;
    switch (v) {
    case V_INTERRUPTED: {
        code = 128 + sig;
        int n = snprintf(msg, sizeof(msg), "step %s was interrupted by %s", s->name, sig_name(sig));
        if (attempts == 0)
            snprintf(msg + n, sizeof(msg) - (size_t)n, " before its first attempt: nothing was created");
        else if (last->v != V_INTERRUPTED) /* it came while the last attempt's sandbox was removed */
            snprintf(msg + n, sizeof(msg) - (size_t)n, " after attempt %d of %d on %s had ended (%s%s%s)", last->n,
                     tries, s->backend, verdict_names[last->v], last->error[0] ? ": " : "", last->error);
        else if (!last->sandbox[0])
            snprintf(msg + n, sizeof(msg) - (size_t)n,
                     " during attempt %d of %d on %s, before it had a sandbox: not retried", last->n, tries,
                     s->backend);
        else if (last->left[0])
            snprintf(msg + n, sizeof(msg) - (size_t)n, " during attempt %d of %d on %s: not retried; %s", last->n,
                     tries, s->backend, last->left);
        else if (last->hint[0])
            snprintf(msg + n, sizeof(msg) - (size_t)n,
                     " during attempt %d of %d on %s: the step was stopped, not retried; its sandbox %s was kept "
                     "(debug mode)",
                     last->n, tries, s->backend, last->sandbox);
        else
            snprintf(msg + n, sizeof(msg) - (size_t)n,
                     " during attempt %d of %d on %s: the step was stopped, not retried, and its sandbox %s removed",
                     last->n, tries, s->backend, last->sandbox);
        break;
    }
    case V_OK:
        code = 0;
        snprintf(msg, sizeof(msg), "step %s succeeded on %s (%d attempt%s)", s->name, s->backend, attempts,
                 attempts > 1 ? "s" : "");
        break;
    case V_USER:
        if (last->ex.timed_out) {
            code = SBX_STEP_EXIT_TIMEOUT;
            snprintf(msg, sizeof(msg),
                     "step %s timed out after %llu s: user failure (the step's timeout), not retried; %d attempt%s on %s",
                     s->name, (unsigned long long)s->timeout_s, attempts, attempts > 1 ? "s" : "", s->backend);
        } else if (last->ex.oom_killed || last->ex.exit_code == SBX_STEP_EXIT_OOM) {
            code = SBX_STEP_EXIT_OOM;
            snprintf(msg, sizeof(msg),
                     "step %s was killed %s (memory %llu MB): user failure, not retried; %d attempt%s on %s", s->name,
                     last->ex.oom_killed ? "by the OOM killer at its memory limit"
                                         : "by SIGKILL (exit 137: the memory limit is the usual cause)",
                     (unsigned long long)s->memory_mb, attempts, attempts > 1 ? "s" : "", s->backend);
        } else if (last->ex.exit_code != 0) {
            code = last->ex.exit_code;
            snprintf(msg, sizeof(msg), "step %s failed with exit code %d: user failure, not retried; %d attempt%s on %s",
                     s->name, code, attempts, attempts > 1 ? "s" : "", s->backend);
        } else {
            code = 1;
            snprintf(msg, sizeof(msg), "step %s failed: %s: user failure, not retried; %d attempt%s on %s", s->name,
                     last->error, attempts, attempts > 1 ? "s" : "", s->backend);
        }
        break;
    case V_INFRA:
        code = SBX_STEP_EXIT_ERROR;
        snprintf(msg, sizeof(msg),
                 "step %s failed: infrastructure failure after %d attempt%s on %s "
                 "(METAFLOW_SANDBOX_MAX_INFRA_RETRIES=%d): %s",
                 s->name, attempts, attempts > 1 ? "s" : "", s->backend, tries - 1, last->error);
        break;
    default:
        code = SBX_STEP_EXIT_ERROR;
        snprintf(msg, sizeof(msg), "step %s was not run: %s (refused, not retried; %d attempt%s on %s)", s->name,
                 last->error, attempts, attempts > 1 ? "s" : "", s->backend);
        break;
    }
    json_t *rec = r->rec;
    json_object_set_new(rec, "status",
                        json_string(v == V_OK ? "succeeded" : v == V_INTERRUPTED ? "interrupted" : "failed"));
    json_object_set_new(rec, "verdict", json_string(verdict_names[v]));
    if (sig)
        json_object_set_new(rec, "interrupt",
                            json_pack("{s:i, s:s, s:i, s:o}", "signal", sig, "name", sig_name(sig), "signals",
                                      sbx_step_interrupt_count(), "sandbox_left",
                                      last->left[0] ? json_string(last->sandbox) : json_null()));
    json_object_set_new(rec, "exit_code", json_integer(code));
    json_object_set_new(rec, "message", json_string(msg));
    now_into(rec, "finished_at");
    json_object_set_new(rec, "cpu_usec", cpu ? json_integer((json_int_t)cpu) : json_null());
    json_object_set_new(rec, "memory_peak", peak ? json_integer((json_int_t)peak) : json_null());
    json_t *atts = json_object_get(rec, "attempts");
    json_t *la = json_array_get(atts, json_array_size(atts) - 1);
    json_t *logs = json_object_get(la, "logs");
    json_object_set(rec, "logs", logs ? logs : json_null());
    json_object_set(rec, "outputs", last->outputs);

    if (r->set->debug) {
        char dir[PATH_MAX];
        sbx_err e = {0};
        json_t *dbg = json_object();
        if (debug_dump(r, dir, sizeof(dir), &e) < 0) {
            say("warning: debug dump: %s", e.msg);
        } else {
            json_object_set_new(dbg, "dir", json_string(dir));
        }
        if (last->hint[0]) {
            json_object_set_new(dbg, "sandbox", json_string(last->sandbox));
            json_object_set_new(dbg, "shell", json_string(last->hint));
        }
        json_object_set_new(rec, "debug", dbg);
        r->package[0] = '\0'; /* the code package stays for inspection */
    }
    save(r, true);
    if (code != 0)
        say("run %s: %s", r->id, msg);
    json_t *dbg = json_object_get(rec, "debug");
    if (json_object_get(dbg, "dir"))
        say("debug: script and environment in %s", json_string_value(json_object_get(dbg, "dir")));
    if (last->hint[0])
        say("debug: sandbox %s was kept: %s", last->sandbox, last->hint);
    return code;
}

/* A run that ends before its record exists: nothing to remove. */
static int abandon(run *r, int code)
{
    drop_run_dir(r);
    strv_free(&r->env);
    strv_free(&r->attempt_env);
    sbx_step_interrupt_restore();
    return code;
}

int sbx_step_run(sbx_step_spec *spec, const sbx_step_settings *set, const sbx_step_run_opts *opts)
{
    run r = {.spec = spec, .set = set};
    sbx_err err = {0};
    signal(SIGPIPE, SIG_IGN);
    if (!(r.be = sbx_step_backend_find(spec->backend))) {
        say("backend '%s' is unknown (allowed: local, sbx, e2b, daytona; default METAFLOW_SANDBOX_BACKEND or local)",
            spec->backend);
        return SBX_STEP_EXIT_ERROR;
    }
    if (opts && opts->prefix)
        snprintf(r.prefix, sizeof(r.prefix), "%s", opts->prefix);
    else
        snprintf(r.prefix, sizeof(r.prefix), "[%s] ", spec->name);

    /* From here a signal stops the step and cleans up (backend.h). */
    if (sbx_step_interrupt_install(0, &err) < 0) {
        say("%s", err.msg);
        return SBX_STEP_EXIT_ERROR;
    }
    if (prepare(&r, &err) < 0) {
        if (sbx_step_interrupt_signal())
            say("interrupted by %s before the step started: nothing was created",
                sig_name(sbx_step_interrupt_signal()));
        else
            say("%s", err.msg);
        return abandon(&r, sbx_step_interrupt_signal() ? 128 + sbx_step_interrupt_signal() : SBX_STEP_EXIT_ERROR);
    }
    if (sbx_step_interrupt_signal()) {
        say("interrupted by %s before the step started: nothing was created", sig_name(sbx_step_interrupt_signal()));
        return abandon(&r, 128 + sbx_step_interrupt_signal());
    }
    /* Debug mode on the local backend: the sandbox must outlive this
     * process's exit code, so a worker runs the step (keeper.h). The
     * worker then hears signals from the launcher only, which forwards
     * what it gets (a terminal's ^C reaches both). */
    if (set->debug && r.be == &sbx_step_backend_local) {
        sbx_step_interrupt_install(getpid(), &err);
        if (sbx_step_keeper_split(&err) < 0) {
            say("debug mode: %s", err.msg);
            return abandon(&r, SBX_STEP_EXIT_ERROR);
        }
    }
    r.rec = new_record(&r);
    save(&r, false);

    int tries = 1 + set->max_infra_retries, attempts = 0;
    attempt last = {0};
    uint64_t cpu = 0, peak = 0;
    /* After an interrupt, no attempt starts: infra retries included. */
    while (attempts < tries && !sbx_step_interrupt_signal()) {
        int n = ++attempts;
        json_decref(last.outputs);
        last = (attempt){.n = n};
        strv_free(&r.attempt_env);
        if (strv_addf(&r.attempt_env, "SBX_RUN_ID=%s", r.id) < 0 ||
            strv_addf(&r.attempt_env, "SBX_STEP_NAME=%s", spec->name) < 0 ||
            strv_addf(&r.attempt_env, "SBX_STEP_ATTEMPT=%d", n) < 0 ||
            (spec->environment &&
             strv_addf(&r.attempt_env, "SBX_STEP_ENVIRONMENT=%s/%s", SBX_STEP_GUEST_CODE, spec->environment) < 0) ||
            (r.micromamba[0] && strv_addf(&r.attempt_env, "MAMBA_ROOT_PREFIX=%s", GUEST_MAMBA_ROOT) < 0)) {
            last.v = V_REFUSED;
            snprintf(last.error, sizeof(last.error), "out of memory");
            break;
        }
        json_t *att = json_pack("{s:i}", "attempt", n);
        now_into(att, "started_at");
        json_object_set_new(att, "finished_at", json_null());
        json_object_set_new(att, "sandbox", json_null());
        json_object_set_new(att, "verdict", json_null());
        json_object_set_new(att, "error", json_null());
        json_array_append_new(json_object_get(r.rec, "attempts"), att);
        save(&r, false);

        run_attempt(&r, &last, att);

        now_into(att, "finished_at");
        json_object_set_new(att, "verdict", json_string(verdict_names[last.v]));
        json_object_set_new(att, "error", last.error[0] ? json_string(last.error) : json_null());
        if (last.left[0])
            json_object_set_new(att, "sandbox_left", json_string(last.left));
        if (last.ran) {
            json_object_set_new(att, "exit_code", json_integer(last.ex.exit_code));
            json_object_set_new(att, "signal", json_integer(last.ex.signal));
            json_object_set_new(att, "timed_out", json_boolean(last.ex.timed_out));
            json_object_set_new(att, "oom_killed", json_boolean(last.ex.oom_killed));
            json_object_set_new(att, "cpu_usec", last.ex.cpu_usec ? json_integer((json_int_t)last.ex.cpu_usec) : json_null());
            json_object_set_new(att, "memory_peak",
                                last.ex.memory_peak ? json_integer((json_int_t)last.ex.memory_peak) : json_null());
            cpu += last.ex.cpu_usec;
            if (last.ex.memory_peak > peak)
                peak = last.ex.memory_peak;
        }
        save(&r, false);
        if (last.v != V_INFRA || sbx_step_interrupt_signal())
            break;
        if (n < tries)
            say("attempt %d of %d on %s: infrastructure failure: %s; retrying on a fresh sandbox", n, tries,
                spec->backend, last.error);
    }
    int code = finish(&r, &last, attempts, cpu, peak);
    if (code == 0 && !(opts && opts->quiet))
        say("run %s: step %s succeeded on %s (%d attempt%s)", r.id, spec->name, spec->backend, attempts,
            attempts > 1 ? "s" : "");
    cleanup_stage(&r);
    json_decref(last.outputs);
    json_decref(r.rec);
    strv_free(&r.env);
    strv_free(&r.attempt_env);
    fflush(stdout);
    fflush(stderr);
    /* A keeper serves on with the default handlers (it ignores ^C and hangups). */
    sbx_step_interrupt_restore();
    sbx_step_keeper_release(code);
    if (sbx_step_keeper_holding())
        sbx_step_keeper_serve();
    return code;
}
