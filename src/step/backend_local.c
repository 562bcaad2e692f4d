/* The `local` step backend: the engine in this process, no server.
 *
 * Commands run as the sandbox's user (uid 1000), files are written and
 * read as that user (sbx_sandbox_open), so a step sees its staged files as
 * its own. cpu and memory map onto the engine's CFS quota and hard memory
 * limit, gpu onto the engine's GPU request, image onto an engine image
 * (default `host`). A sandbox dies with the thread that created it; debug
 * mode keeps it by handing it to the keeper (keeper.h) instead of
 * destroying it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "keeper.h"
#include "util.h"

#define PIDS_LIMIT 4096

struct sbx_step_box {
    sbx_engine *eng;
    sbx_sandbox *sb;
    char **env; /* res->env, copied: set for every command */
};

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* a then b, as one NULL-terminated list (copies when own, else borrowed
 * pointers in a new array). */
static char **join_strv(char *const *a, char *const *b, bool own)
{
    size_t na = 0, nb = 0;
    while (a && a[na])
        na++;
    while (b && b[nb])
        nb++;
    char **v = calloc(na + nb + 1, sizeof(char *));
    for (size_t i = 0; v && i < na + nb; i++) {
        char *s = i < na ? a[i] : b[i - na];
        if (!(v[i] = own ? strdup(s) : s)) {
            if (own)
                free_strv(v);
            else
                free(v);
            return NULL;
        }
    }
    return v;
}

/* An engine error's class: bad input is the request's fault, anything
 * else (a syscall, a resource of the host) is infrastructure. */
static int engine_class(const sbx_err *e)
{
    return e->code == SBX_E_SYSTEM ? SBX_STEP_INFRA : SBX_STEP_REFUSED;
}

static int local_check(const sbx_step_resources *res, int *fail, sbx_err *err)
{
    if (res->cpu <= 0 || res->cpu > 1024)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_INVALID,
                     "local backend: cpu %g cannot be honoured (allowed: more than 0, at most 1024 vCPUs)", res->cpu);
    if (res->memory_mb < 6 || res->memory_mb > 16777216)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_INVALID,
                     "local backend: memory %llu MB cannot be honoured (allowed: 6 to 16777216)",
                     (unsigned long long)res->memory_mb);
    sbx_err ge = {0};
    if (res->gpu && sbx_gpu_spec_check(res->gpu, &ge) < 0)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_INVALID, "local backend: gpu: %s", ge.msg);
    return 0;
}

/* Engine configuration from the SBX_* variables, as `sbx run` reads them. */
static int open_engine(sbx_engine **eng, sbx_err *err)
{
    sbx_engine_config cfg = {
        .run_dir = getenv("SBX_RUN_DIR"),
        .image_dir = getenv("SBX_IMAGE_DIR"),
        .cgroup_name = getenv("SBX_CGROUP_NAME"),
        .gpu_root = getenv("SBX_GPU_ROOT"), /* tests: a fake driver tree */
    };
    const char *keep = getenv("SBX_CGROUP_KEEP_MOUNT");
    cfg.keep_cgroup_mount = keep && *keep && strcmp(keep, "0") != 0;
    const char *base = getenv("SBX_UID_BASE");
    if (base && *base) {
        uint64_t v;
        if (sbx_parse_u64(base, 1, 0xFFFEFFFEull, &v) < 0)
            return sbx_fail(err, SBX_E_INVALID, "SBX_UID_BASE '%s' is invalid (allowed: 1 to 4294901758)", base);
        cfg.uid_base = (uint32_t)v;
    }
    /* The sandbox's init: the small `sbx` beside us, not a copy of this
     * process (see sbx_engine_config.init_exe). */
    char init_exe[PATH_MAX];
    if (sbx_default_init_exe(init_exe, sizeof(init_exe), err) < 0)
        return -1;
    cfg.init_exe = init_exe;
    return sbx_engine_open(&cfg, eng, err);
}

static int local_create(const sbx_step_resources *res, sbx_step_box **out, int *fail, sbx_err *err)
{
    *out = NULL;
    sbx_step_box *b = calloc(1, sizeof(*b));
    if (!b)
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: out of memory");
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        free(b);
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: getrandom: %s", strerror(errno));
    }
    char id[32];
    snprintf(id, sizeof(id), "step-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    sbx_spec spec = {
        .id = id,
        .image = res->image,
        .cpus = res->cpu,
        .memory_mib = res->memory_mb,
        .pids = PIDS_LIMIT,
        .gpu = res->gpu,
        .track_cpu = true, /* the record's cpu time */
    };
    sbx_err e = {0};
    if (open_engine(&b->eng, &e) < 0 || sbx_sandbox_create(b->eng, &spec, &b->sb, &e) < 0) {
        sbx_engine_close(b->eng);
        free(b);
        return sbx_step_fail(fail, engine_class(&e), err, e.code, "local backend: %s", e.msg);
    }
    /* The engine takes environment per command: res->env goes to each. */
    if (!(b->env = join_strv(res->env, NULL, true))) {
        sbx_sandbox_destroy(b->sb);
        sbx_engine_close(b->eng);
        free(b);
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: out of memory");
    }
    *out = b;
    return 0;
}

static const char *local_id(const sbx_step_box *b)
{
    return sbx_sandbox_id(b->sb);
}

/* Whether the sandbox's init still answers: a command killed with the
 * whole sandbox (init gone) is an infrastructure failure, not the step's. */
static bool alive(sbx_step_box *b)
{
    char *argv[] = {"true", NULL};
    sbx_exec_spec xs = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .signal_fd = -1,
                        .capture_max = 1, .timeout_ms = 30000};
    sbx_exec_result r;
    sbx_err e = {0};
    if (sbx_sandbox_exec(b->sb, &xs, &r, &e) < 0)
        return false;
    bool ok = !(r.signal == SIGKILL && !r.exec_errno);
    sbx_exec_result_free(&r);
    return ok;
}

static int local_upload(sbx_step_box *b, const char *host_path, const char *guest_path, unsigned mode, int *fail,
                        sbx_err *err)
{
    int in = open(host_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_NOTFOUND, "local backend: cannot read %s: %s", host_path,
                     strerror(errno));
    sbx_err e = {0};
    int fd = sbx_sandbox_open(b->sb, guest_path, O_WRONLY | O_CREAT | O_TRUNC, mode & 07777, NULL, SBX_FS_MKDIRS, &e);
    if (fd < 0) {
        close(in);
        if (!alive(b))
            return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: the sandbox is gone: %s", e.msg);
        err->sys_errno = e.sys_errno;
        return sbx_step_fail(fail, engine_class(&e), err, e.code, "local backend: cannot write %s in the sandbox: %s", guest_path, e.msg);
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_SYSTEM, "local backend: cannot read %s: %s", host_path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n && rc == 0;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                rc = sbx_step_fail(fail, errno == ENOSPC || errno == EDQUOT ? SBX_STEP_REFUSED : SBX_STEP_INFRA, err,
                           SBX_E_SYSTEM, "local backend: cannot write %s in the sandbox: %s", guest_path,
                           strerror(w < 0 ? errno : EIO));
            else
                off += w;
        }
        if (rc)
            break;
    }
    /* The mode as asked, whatever the sandbox's umask made of it. */
    if (rc == 0 && fchmod(fd, mode & 07777) < 0)
        rc = sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: chmod %s: %s", guest_path, strerror(errno));
    close(fd);
    close(in);
    return rc;
}

static int local_download(sbx_step_box *b, const char *guest_path, const char *host_path, int *fail, sbx_err *err)
{
    sbx_err e = {0};
    int fd = sbx_sandbox_open(b->sb, guest_path, O_RDONLY, 0, NULL, 0, &e);
    if (fd < 0) {
        if (!alive(b))
            return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: the sandbox is gone: %s", e.msg);
        sbx_step_fail(fail, SBX_STEP_REFUSED, err, e.code, "local backend: cannot read %s in the sandbox: %s", guest_path, e.msg);
        err->sys_errno = e.sys_errno;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_INVALID, "local backend: %s is not a file (outputs are files)",
                     guest_path);
    }
    int out = open(host_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e2 = errno;
        close(fd);
        return sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_SYSTEM, "local backend: cannot write %s: %s", host_path, strerror(e2));
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                rc = sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: cannot read %s in the sandbox: %s",
                           guest_path, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < n && rc == 0;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                rc = sbx_step_fail(fail, SBX_STEP_REFUSED, err, SBX_E_SYSTEM, "local backend: cannot write %s: %s", host_path,
                           strerror(w < 0 ? errno : EIO));
            else
                off += w;
        }
        if (rc)
            break;
    }
    close(out);
    close(fd);
    return rc;
}

struct relay {
    sbx_step_output_fn out;
    void *ud;
};

static void on_output(void *ud, int stream, const char *data, size_t len)
{
    struct relay *r = ud;
    if (r->out)
        r->out(r->ud, stream, data, len);
}

static int local_exec(sbx_step_box *b, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                      sbx_step_output_fn out, void *ud, sbx_step_exit *ex, int *fail, sbx_err *err)
{
    memset(ex, 0, sizeof(*ex));
    struct relay r = {out, ud};
    char **all_env = join_strv(b->env, env, false);
    if (!all_env)
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: out of memory");
    sbx_exec_spec xs = {
        .argv = argv,
        .env = all_env,
        .workdir = workdir,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = -1,
        .signal_fd = sbx_step_interrupt_fd(), /* an interrupt kills the command's process group */
        .capture_max = 1, /* the output is streamed, not kept */
        .timeout_ms = timeout_ms,
        .on_output = on_output,
        .ud = &r,
    };
    sbx_stats before = {0};
    sbx_sandbox_stats(b->sb, &before, NULL);
    sbx_exec_result res;
    sbx_err e = {0};
    int erc = sbx_sandbox_exec(b->sb, &xs, &res, &e);
    free(all_env);
    if (erc < 0) {
        if (sbx_step_stopping(false))
            return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: interrupted: %s", e.msg);
        if (!alive(b))
            return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM, "local backend: the sandbox is gone: %s", e.msg);
        return sbx_step_fail(fail, engine_class(&e), err, e.code, "local backend: cannot run %s: %s", argv[0], e.msg);
    }
    bool killed = res.signal == SIGKILL || res.exit_code == 128 + SIGKILL;
    if (killed && !res.timed_out && !res.oom_killed && !sbx_step_stopping(false) && !alive(b)) {
        sbx_exec_result_free(&res);
        return sbx_step_fail(fail, SBX_STEP_INFRA, err, SBX_E_SYSTEM,
                     "local backend: the sandbox vanished while the command ran (its init was killed)");
    }
    ex->exit_code = res.signal ? 128 + res.signal : res.exit_code;
    ex->signal = res.signal;
    ex->timed_out = res.timed_out;
    ex->oom_killed = res.oom_killed;
    ex->cpu_usec = res.cpu_usec;
    ex->memory_peak = res.memory_peak;
    /* The cgroup's figures cover every process of the run, not only the
     * command's own children. */
    sbx_stats after;
    if (sbx_sandbox_stats(b->sb, &after, NULL) == 0) {
        if (after.cpu_usec > before.cpu_usec && after.cpu_usec - before.cpu_usec > ex->cpu_usec)
            ex->cpu_usec = after.cpu_usec - before.cpu_usec;
        if (after.memory_peak > ex->memory_peak)
            ex->memory_peak = after.memory_peak;
    }
    if (res.exec_errno && out) {
        char line[400];
        int n = snprintf(line, sizeof(line), "sbx: %s\n", res.exec_error);
        out(ud, 2, line, (size_t)n);
    }
    sbx_exec_result_free(&res);
    return 0;
}

static int local_destroy(sbx_step_box *b, bool keep, sbx_err *err)
{
    if (!b)
        return 0;
    if (keep) {
        sbx_step_keeper_add(b->eng, b->sb, b->env);
    } else {
        sbx_sandbox_destroy(b->sb);
        sbx_engine_close(b->eng);
    }
    free_strv(b->env);
    free(b);
    return 0;
}

static void local_shell_hint(const sbx_step_box *b, char *buf, size_t len)
{
    snprintf(buf, len, "sbx exec %s -- sh   (remove it: sbx rm %s)", sbx_sandbox_id(b->sb), sbx_sandbox_id(b->sb));
}

const sbx_step_backend sbx_step_backend_local = {
    .name = "local",
    .check = local_check,
    .create = local_create,
    .id = local_id,
    .upload = local_upload,
    .download = local_download,
    .exec = local_exec,
    .destroy = local_destroy,
    .shell_hint = local_shell_hint,
};
