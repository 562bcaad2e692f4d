/* cgroups, the version-independent part: detection, planning and applying
 * creation, joining, stats dispatch, killing, removal and the leftover
 * sweep. Limit files and counters live in cgroup_v1.c / cgroup_v2.c. */
#include <dirent.h>
#include <errno.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_internal.h"
#include "util.h"

static const char *const ctl_names[SBX_CG_NCTL] = {"memory", "cpu", "cpuacct", "pids", "devices"};

const char *sbx_cg_ctl_name(int ctl)
{
    return ctl >= 0 && ctl < SBX_CG_NCTL ? ctl_names[ctl] : "?";
}

/* ---- detection ---------------------------------------------------------- */

/* Is `word` one of the items of `list`, separated by any of `seps`? */
static bool has_word(const char *list, const char *word, const char *seps)
{
    size_t wl = strlen(word);
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, seps);
        if (n == wl && memcmp(p, word, wl) == 0)
            return true;
        p += n;
        p += strspn(p, seps);
    }
    return false;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* `path` is `root` or below it (root "" or NULL: everything counts). */
static bool path_under(const char *path, const char *root)
{
    if (!root || !*root)
        return true;
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int detect_under(const char *mountinfo, const char *v2_controllers, const char *root,
                        sbx_cg_layout *out)
{
    memset(out, 0, sizeof(*out));
    char *text = strdup(mountinfo ? mountinfo : "");
    if (!text)
        return -ENOMEM;

    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *tok[64];
        int nt = 0;
        char *ts = NULL;
        for (char *t = strtok_r(line, " ", &ts); t && nt < (int)SBX_ARRAY_LEN(tok);
             t = strtok_r(NULL, " ", &ts))
            tok[nt++] = t;
        int sep = -1;
        for (int i = 6; i < nt; i++) {
            if (strcmp(tok[i], "-") == 0) {
                sep = i;
                break;
            }
        }
        if (nt < 5 || sep < 0 || sep + 3 >= nt)
            continue;
        const char *fstype = tok[sep + 1], *super = tok[sep + 3];
        char *mnt = tok[4];
        unescape_octal(mnt);
        if (!path_under(mnt, root))
            continue;
        bool is_cg = strcmp(fstype, "cgroup") == 0 || strcmp(fstype, "cgroup2") == 0;
        if (is_cg && strlen(mnt) >= sizeof(out->mount[0])) {
            free(text);
            return -ENAMETOOLONG; /* see SBX_BASE_PATH_MAX */
        }

        if (strcmp(fstype, "cgroup") == 0) {
            for (int c = 0; c < SBX_CG_NCTL; c++) {
                /* First mount of a hierarchy wins (later ones are binds). */
                if (out->ver[c] != SBX_CG_V1 && has_word(super, ctl_names[c], ",")) {
                    out->ver[c] = SBX_CG_V1;
                    strcpy(out->mount[c], mnt);
                }
            }
        } else if (strcmp(fstype, "cgroup2") == 0 && !out->v2_mount[0]) {
            strcpy(out->v2_mount, mnt);
            snprintf(out->v2_opts, sizeof(out->v2_opts), "%s", super);
        }
    }
    free(text);

    if (out->v2_mount[0] && v2_controllers) {
        for (int c = 0; c < SBX_CG_NCTL; c++) {
            if (out->ver[c] == SBX_CG_NONE && c != SBX_CG_CPUACCT && c != SBX_CG_DEVICES &&
                has_word(v2_controllers, ctl_names[c], " \t\n")) {
                out->ver[c] = SBX_CG_V2;
                strcpy(out->mount[c], out->v2_mount);
            }
        }
    }
    /* v2 has no devices controller: a device program on any cgroup2 dir
     * does its work (cgroup.controllers never lists it). */
    if (out->v2_mount[0] && out->ver[SBX_CG_DEVICES] == SBX_CG_NONE) {
        out->ver[SBX_CG_DEVICES] = SBX_CG_V2;
        strcpy(out->mount[SBX_CG_DEVICES], out->v2_mount);
    }
    /* v2 has no cpuacct: cpu.stat's usage_usec stands in for it. */
    if (out->ver[SBX_CG_CPUACCT] == SBX_CG_NONE && out->ver[SBX_CG_CPU] == SBX_CG_V2) {
        out->ver[SBX_CG_CPUACCT] = SBX_CG_V2;
        strcpy(out->mount[SBX_CG_CPUACCT], out->v2_mount);
    }
    return 0;
}

int sbx_cg_detect_text(const char *mountinfo, const char *v2_controllers, sbx_cg_layout *out)
{
    return detect_under(mountinfo, v2_controllers, NULL, out);
}

int sbx_cg_detect(const char *cgroup_fs, sbx_cg_layout *out, sbx_err *err)
{
    char *mi = sbx_slurp("/proc/self/mountinfo", NULL);
    if (!mi)
        return sbx_fail_errno(err, errno, "cgroup: read /proc/self/mountinfo");

    /* First pass finds the v2 mount, whose cgroup.controllers the second
     * pass needs. */
    char ctl[1024] = "";
    int r = detect_under(mi, NULL, cgroup_fs, out);
    if (!r && out->v2_mount[0]) {
        char path[PATH_MAX];
        if (sbx_pathf(path, sizeof(path), "%s/cgroup.controllers", out->v2_mount) == 0 &&
            sbx_read_file(path, ctl, sizeof(ctl), NULL) < 0)
            ctl[0] = '\0'; /* unreadable: treat as no v2 controllers */
        r = detect_under(mi, ctl, cgroup_fs, out);
    }
    free(mi);
    if (r == -ENAMETOOLONG)
        return sbx_fail(err, SBX_E_SYSTEM, "cgroup: a cgroup mount point under %s is too long (at most %d bytes)",
                        cgroup_fs, SBX_BASE_PATH_MAX - 1);
    if (r < 0)
        return sbx_fail_errno(err, -r, "cgroup: parse /proc/self/mountinfo");
    return 0;
}

/* ---- planning ----------------------------------------------------------- */

static int plan_add(sbx_cg_plan *plan, int kind, const char *dir, const char *file, const char *value,
                    bool optional, bool exist_ok)
{
    if (plan->n >= SBX_CG_MAX_OPS)
        return -ENOSPC;
    sbx_cg_op *op = &plan->ops[plan->n];
    /* Field by field, not a memset of the whole op (~4 KiB): a launch
     * would fault in every page of the plan for nothing. */
    op->value[0] = '\0';
    op->kind = kind;
    op->optional = optional;
    op->exist_ok = exist_ok;
    int r = file ? sbx_pathf(op->path, sizeof(op->path), "%s/%s", dir, file)
                 : sbx_pathf(op->path, sizeof(op->path), "%s", dir);
    if (!r && value && sbx_pathf(op->value, sizeof(op->value), "%s", value) < 0)
        r = -EINVAL;
    if (r)
        return r;
    plan->n++;
    return 0;
}

int sbx_cg_plan_mkdir(sbx_cg_plan *plan, const char *dir, bool exist_ok)
{
    return plan_add(plan, SBX_CG_OP_MKDIR, dir, NULL, NULL, false, exist_ok);
}

int sbx_cg_plan_write(sbx_cg_plan *plan, const char *dir, const char *file, const char *value,
                      bool optional)
{
    return plan_add(plan, SBX_CG_OP_WRITE, dir, file, value, optional, false);
}

uint64_t sbx_cg_cpu_quota(double cpus)
{
    uint64_t q = (uint64_t)(cpus * SBX_CG_PERIOD_US + 0.5);
    return q < 1000 ? 1000 : q; /* the kernel's minimum quota is 1ms */
}

/* Fills cg's dirs for <mount>/<name>/<id>, one per distinct hierarchy in
 * use. only_existing: skip hierarchies where the dir is missing (sweep).
 * devices: include the devices hierarchy (GPU sandboxes, and the sweep). */
static int cg_fill(const sbx_cg_layout *lay, const char *name, const char *id, bool only_existing, bool devices,
                   bool cpu, sbx_cgroup *cg)
{
    memset(cg, 0, sizeof(*cg));
    for (int i = 0; i < SBX_CG_MAX_DIRS; i++)
        cg->procs_fd[i] = -1;
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        cg->dir_of[c] = -1;
        if (lay->ver[c] == SBX_CG_NONE || (c == SBX_CG_DEVICES && !devices) ||
            ((c == SBX_CG_CPU || c == SBX_CG_CPUACCT) && !cpu))
            continue;
        char dir[PATH_MAX];
        if (sbx_pathf(dir, sizeof(dir), "%s/%s/%s", lay->mount[c], name, id) < 0)
            return -ENAMETOOLONG;
        if (only_existing && access(dir, F_OK) < 0)
            continue;
        int d = 0;
        while (d < cg->ndirs && strcmp(cg->dir[d], dir) != 0)
            d++;
        if (d == cg->ndirs)
            strcpy(cg->dir[cg->ndirs++], dir);
        cg->dir_of[c] = d;
        cg->ver[c] = lay->ver[c];
    }
    return 0;
}

static bool dir_is_v2(const sbx_cgroup *cg, int d)
{
    for (int c = 0; c < SBX_CG_NCTL; c++)
        if (cg->dir_of[c] == d && cg->ver[c] == SBX_CG_V2)
            return true;
    return false;
}

static int plan_for(const sbx_cgroup *cg, const sbx_cg_layout *lay, const sbx_cg_limits *lim,
                    sbx_cg_plan *plan)
{
    int r = 0;
    plan->n = 0;
    for (int d = 0; d < cg->ndirs && !r; d++) {
        if (dir_is_v2(cg, d)) {
            r = sbx_cg_v2_plan_dir(lay, cg->dir[d], plan);
        } else {
            char parent[PATH_MAX];
            snprintf(parent, sizeof(parent), "%s", cg->dir[d]);
            *strrchr(parent, '/') = '\0';
            r = sbx_cg_plan_mkdir(plan, parent, true);
            if (!r)
                r = sbx_cg_plan_mkdir(plan, cg->dir[d], false);
        }
    }
    static const int limited[] = {SBX_CG_MEMORY, SBX_CG_CPU, SBX_CG_PIDS};
    for (size_t i = 0; i < SBX_ARRAY_LEN(limited) && !r; i++) {
        int c = limited[i], d = cg->dir_of[c];
        if (d < 0)
            continue;
        r = cg->ver[c] == SBX_CG_V2 ? sbx_cg_v2_plan_limits(c, cg->dir[d], lim, plan)
                                    : sbx_cg_v1_plan_limits(c, cg->dir[d], lim, plan);
    }
    return r;
}

static bool valid_limits(const sbx_cg_limits *lim)
{
    return lim->cpus >= 0 && lim->cpus <= 1e6; /* also rejects NaN */
}

int sbx_cg_plan_create(const sbx_cg_layout *lay, const char *name, const char *id,
                       const sbx_cg_limits *lim, sbx_cg_plan *plan)
{
    plan->n = 0;
    if (!sbx_valid_name(name) || !sbx_valid_name(id) || !valid_limits(lim))
        return -EINVAL;
    sbx_cgroup cg;
    int r = cg_fill(lay, name, id, false, lim->devices, !lim->no_cpu, &cg);
    return r ? r : plan_for(&cg, lay, lim, plan);
}

/* ---- applying ----------------------------------------------------------- */

/* Runs the plan; on failure removes the dirs it made (newest first) and
 * returns -errno with err filled. */
static int plan_apply(const sbx_cg_plan *plan, sbx_err *err)
{
    int made[SBX_CG_MAX_OPS], nmade = 0, r = 0;
    for (int i = 0; i < plan->n && !r; i++) {
        const sbx_cg_op *op = &plan->ops[i], *next = i + 1 < plan->n ? &plan->ops[i + 1] : NULL;
        /* The shared parent (exist_ok) is there but for the first sandbox:
         * its child first, the parent only when that says ENOENT. */
        size_t pl = strlen(op->path);
        if (op->kind == SBX_CG_OP_MKDIR && op->exist_ok && next && next->kind == SBX_CG_OP_MKDIR &&
            strncmp(next->path, op->path, pl) == 0 && next->path[pl] == '/' && mkdir(next->path, 0755) == 0) {
            made[nmade++] = ++i;
            continue;
        }
        if (op->kind == SBX_CG_OP_MKDIR) {
            if (mkdir(op->path, 0755) == 0) {
                made[nmade++] = i;
            } else if (!(errno == EEXIST && op->exist_ok)) {
                r = -errno;
                sbx_fail_errno(err, -r, "cgroup: mkdir %s", op->path);
            }
        } else {
            int w = sbx_write_str(op->path, op->value);
            if (w < 0 && !op->optional) {
                r = w;
                sbx_fail_errno(err, -r, "cgroup: write '%s' to %s", op->value, op->path);
            }
        }
    }
    if (r)
        while (nmade > 0)
            rmdir(plan->ops[made[--nmade]].path);
    return r;
}

int sbx_cg_create(const sbx_cg_layout *lay, const char *name, const char *id,
                  const sbx_cg_limits *lim, sbx_cgroup *cg, sbx_err *err)
{
    /* Whatever happens, cg is safe to destroy afterwards. */
    memset(cg, 0, sizeof(*cg));
    for (int i = 0; i < SBX_CG_MAX_DIRS; i++)
        cg->procs_fd[i] = -1;
    if (!sbx_valid_name(name) || !sbx_valid_name(id))
        return sbx_fail(err, SBX_E_INVALID, "cgroup: bad name '%s/%s'", name, id);
    if (!valid_limits(lim))
        return sbx_fail(err, SBX_E_INVALID, "cgroup: bad cpus %g (allowed: 0 to 1000000)", lim->cpus);
    if (cg_fill(lay, name, id, false, lim->devices, !lim->no_cpu, cg) < 0) {
        cg->ndirs = 0;
        return sbx_fail(err, SBX_E_INVALID, "cgroup: path for '%s/%s' too long", name, id);
    }

    sbx_cg_plan *plan = malloc(sizeof(*plan)); /* ~28 KiB: not for a thread's stack */
    int r = plan ? plan_for(cg, lay, lim, plan) : -ENOMEM;
    if (r < 0) {
        sbx_fail_errno(err, -r, "cgroup: plan for %s/%s", name, id);
    } else {
        /* ENOENT: a concurrent destroy removed the shared <name> parent
         * between our mkdir of it and of the sandbox dir: start over. */
        for (int attempt = 0; attempt < 3; attempt++) {
            r = plan_apply(plan, err);
            if (r != -ENOENT)
                break;
        }
    }
    free(plan);
    if (r < 0) {
        cg->ndirs = 0; /* a later destroy must not touch another sandbox's dir */
        return -1;
    }

    for (int d = 0; d < cg->ndirs; d++) {
        char path[PATH_MAX];
        int e = sbx_pathf(path, sizeof(path), "%s/cgroup.procs", cg->dir[d]);
        if (!e) {
            cg->procs_fd[d] = open(path, O_WRONLY | O_CLOEXEC);
            e = cg->procs_fd[d] < 0 ? errno : 0;
        }
        if (e) {
            sbx_fail_errno(err, e, "cgroup: open %s", path);
            sbx_cg_destroy(cg, NULL);
            cg->ndirs = 0;
            return -1;
        }
    }
    return 0;
}

/* ---- joining ------------------------------------------------------------ */

int sbx_cg_join_pid(const sbx_cgroup *cg, pid_t pid)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
    for (int d = 0; d < cg->ndirs; d++) {
        if (cg->procs_fd[d] < 0)
            return -EBADF;
        /* "0" means the writer; cgroupfs ignores the file offset, so a
         * descriptor shared by several children is fine. */
        if (write(cg->procs_fd[d], buf, (size_t)n) != n)
            return -errno;
    }
    return 0;
}

int sbx_cg_join_self(const sbx_cgroup *cg)
{
    return sbx_cg_join_pid(cg, 0);
}

void sbx_cg_close_fds(sbx_cgroup *cg)
{
    for (int d = 0; d < cg->ndirs; d++) {
        if (cg->procs_fd[d] >= 0)
            close(cg->procs_fd[d]);
        cg->procs_fd[d] = -1;
    }
}

/* ---- device access ------------------------------------------------------ */

int sbx_cg_restrict_devices(const sbx_cgroup *cg, const sbx_cg_dev_rule *rules, int n, sbx_err *err)
{
    int d = cg->dir_of[SBX_CG_DEVICES];
    if (d < 0 || d >= cg->ndirs || !cg->dir[d][0])
        return sbx_fail(err, SBX_E_SYSTEM, "cgroup: this sandbox has no devices cgroup to restrict");
    if (cg->ver[SBX_CG_DEVICES] == SBX_CG_V2) {
        struct bpf_insn *prog = malloc(sizeof(*prog) * (size_t)(16 + 12 * n));
        int len = prog ? sbx_cg_v2_device_prog(rules, n, prog, 16 + 12 * n) : -ENOMEM;
        int r = len < 0 ? sbx_fail_errno(err, -len, "cgroup: device program")
                        : sbx_cg_v2_attach_device_prog(cg->dir[d], prog, len, err);
        free(prog);
        return r;
    }
    sbx_cg_plan *plan = malloc(sizeof(*plan));
    int r = plan ? sbx_cg_v1_plan_devices(cg->dir[d], rules, n, plan) : -ENOMEM;
    if (r < 0)
        sbx_fail_errno(err, -r, "cgroup: device rules for %s", cg->dir[d]);
    else
        r = plan_apply(plan, err);
    free(plan);
    return r < 0 ? -1 : 0;
}

/* ---- stats -------------------------------------------------------------- */

int sbx_cg_parse_keyed(const char *text, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) != 0 || (p[kl] != ' ' && p[kl] != '\t'))
            continue;
        const char *v = p + kl + strspn(p + kl, " \t");
        char num[32];
        size_t n = strspn(v, "0123456789");
        if (n == 0 || n >= sizeof(num))
            return -EINVAL;
        memcpy(num, v, n);
        num[n] = '\0';
        return sbx_parse_u64(num, 0, UINT64_MAX, out) < 0 ? -EINVAL : 0;
    }
    return -ENOENT;
}

static int read_at(const char *dir, const char *file, char *buf, size_t cap)
{
    char path[PATH_MAX];
    int r = sbx_pathf(path, sizeof(path), "%s/%s", dir, file);
    return r ? r : sbx_read_file(path, buf, cap, NULL);
}

int sbx_cg_read_u64(const char *dir, const char *file, uint64_t *out)
{
    char buf[64];
    int r = read_at(dir, file, buf, sizeof(buf));
    if (r < 0)
        return r;
    buf[strcspn(buf, "\n")] = '\0';
    return sbx_parse_u64(buf, 0, UINT64_MAX, out) < 0 ? -EINVAL : 0;
}

int sbx_cg_read_keyed(const char *dir, const char *file, const char *key, uint64_t *out)
{
    char buf[4096];
    int r = read_at(dir, file, buf, sizeof(buf));
    return r < 0 ? r : sbx_cg_parse_keyed(buf, key, out);
}

int sbx_cg_stats_read(const sbx_cgroup *cg, sbx_cg_stats *st)
{
    memset(st, 0, sizeof(*st));
    int ret = 0;
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        int d = cg->dir_of[c];
        if (d < 0 || d >= cg->ndirs || !cg->dir[d][0])
            continue;
        int r = cg->ver[c] == SBX_CG_V2 ? sbx_cg_v2_stats(c, cg->dir[d], st)
                                        : sbx_cg_v1_stats(c, cg->dir[d], st);
        if (r < 0 && !ret)
            ret = r; /* report the first failure, still fill the rest */
    }
    return ret;
}

/* ---- killing and removal ------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* SIGKILLs (when do_kill) the processes listed in <dir>/cgroup.procs.
 * Returns how many were listed, or -errno. A missing dir counts as empty. */
static int procs_kill(const char *dir, bool do_kill)
{
    char path[PATH_MAX];
    if (sbx_pathf(path, sizeof(path), "%s/cgroup.procs", dir) < 0)
        return -ENAMETOOLONG;
    char *text = sbx_slurp(path, NULL);
    if (!text)
        return errno == ENOENT ? 0 : -errno;
    int n = 0;
    for (char *p = text, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0) {
            n++;
            if (do_kill)
                kill((pid_t)pid, SIGKILL);
        }
    }
    free(text);
    return n;
}

/* The process group of host process `pid`, as the host sees it (the first
 * NSpgid field) and as its own pid namespace does (the last). */
static bool pgid_of(long pid, long *host_pgid, long *ns_pgid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *l = strstr(buf, "\nNSpgid:");
    if (!l)
        return false;
    l += strlen("\nNSpgid:");
    char *eol = strchr(l, '\n');
    if (eol)
        *eol = '\0';
    char *end;
    *host_pgid = strtol(l, &end, 10);
    if (end == l)
        return false;
    *ns_pgid = *host_pgid;
    for (char *p = end; *p;) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        *ns_pgid = v;
        p = end;
    }
    return true;
}

int sbx_cg_kill_group(const sbx_cgroup *cg, pid_t ns_pgid)
{
    if (ns_pgid <= 1)
        return -EINVAL;
    for (int d = 0; d < cg->ndirs; d++) {
        if (!cg->dir[d][0])
            continue;
        char path[PATH_MAX];
        if (sbx_pathf(path, sizeof(path), "%s/cgroup.procs", cg->dir[d]) < 0)
            return -ENAMETOOLONG;
        char *text = sbx_slurp(path, NULL);
        if (!text)
            continue;
        int rc = -ESRCH;
        for (char *p = text, *end; *p; p = end) {
            long pid = strtol(p, &end, 10), host_pgid, pgid;
            if (end == p)
                break;
            if (pid > 0 && pgid_of(pid, &host_pgid, &pgid) && pgid == ns_pgid && host_pgid > 1) {
                /* One kill of the whole group: the kernel lets no fork
                 * slip past a group signal. */
                kill((pid_t)-host_pgid, SIGKILL);
                rc = 0;
                break;
            }
        }
        free(text);
        return rc;
    }
    return -ENOENT;
}

int sbx_cg_kill_all(const sbx_cgroup *cg)
{
    bool by_kernel[SBX_CG_MAX_DIRS] = {false};
    for (int d = 0; d < cg->ndirs; d++)
        if (cg->dir[d][0] && dir_is_v2(cg, d))
            by_kernel[d] = sbx_cg_v2_kill(cg->dir[d]) == 0;

    /* Without cgroup.kill, a process may fork between our read and kill:
     * go round until the lists stay empty (~1s at most). */
    int left = 0;
    for (int round = 0; round < 200; round++) {
        left = 0;
        for (int d = 0; d < cg->ndirs; d++) {
            if (!cg->dir[d][0])
                continue;
            int n = procs_kill(cg->dir[d], !by_kernel[d]);
            if (n < 0)
                return n;
            left += n;
        }
        if (!left)
            return 0;
        sleep_ms(round < 10 ? 1 : 5);
    }
    return -EBUSY;
}

int sbx_cg_destroy(sbx_cgroup *cg, sbx_err *err)
{
    sbx_cg_close_fds(cg);
    uint64_t deadline = sbx_now_usec() + 1000000;
    int ret = 0;
    for (int d = 0; d < cg->ndirs; d++) {
        if (!cg->dir[d][0])
            continue; /* removed by an earlier call */
        /* v1 frees a cgroup asynchronously after its last task is reaped:
         * rmdir says EBUSY for a moment. */
        int r;
        while ((r = rmdir(cg->dir[d])) < 0 && errno == EBUSY && sbx_now_usec() < deadline)
            sleep_ms(2);
        if (r < 0 && errno != ENOENT) {
            if (!ret)
                ret = sbx_fail_errno(err, errno, "cgroup: rmdir %s", cg->dir[d]);
            continue;
        }
        /* The shared <name> parent stays for the next sandbox (see
         * sbx_cg_remove_parents). */
        cg->dir[d][0] = '\0';
    }
    return ret;
}

/* ---- leftovers ---------------------------------------------------------- */

typedef struct {
    char (*v)[64];
    size_t n, cap;
} name_list;

static int list_subdirs(const char *dir, name_list *out)
{
    out->n = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return -errno;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!sbx_valid_name(de->d_name))
            continue; /* also skips "." and ".." */
        bool is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat sb;
            is_dir = fstatat(dirfd(dh), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
        }
        if (!is_dir)
            continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            void *nv = realloc(out->v, cap * sizeof(*out->v));
            if (!nv) {
                closedir(dh);
                return -ENOMEM;
            }
            out->v = nv;
            out->cap = cap;
        }
        memcpy(out->v[out->n++], de->d_name, strlen(de->d_name) + 1); /* valid: <= 63 chars */
    }
    closedir(dh);
    return 0;
}

int sbx_cg_sweep(const sbx_cg_layout *lay, const char *name, bool (*is_live)(const char *id, void *ud),
                 void *ud)
{
    if (!sbx_valid_name(name))
        return 0;
    int removed = 0;
    name_list ids = {0};
    /* One pass per distinct hierarchy; an id removed in an earlier pass is
     * gone from the later ones too (destroy covers all hierarchies). */
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        if (lay->ver[c] == SBX_CG_NONE)
            continue;
        bool seen = false;
        for (int p = 0; p < c; p++)
            seen |= lay->ver[p] != SBX_CG_NONE && strcmp(lay->mount[p], lay->mount[c]) == 0;
        if (seen)
            continue;
        char parent[PATH_MAX];
        if (sbx_pathf(parent, sizeof(parent), "%s/%s", lay->mount[c], name) < 0 ||
            list_subdirs(parent, &ids) < 0)
            continue;
        for (size_t i = 0; i < ids.n; i++) {
            if (is_live && is_live(ids.v[i], ud))
                continue;
            sbx_cgroup cg;
            if (cg_fill(lay, name, ids.v[i], true, true, true, &cg) < 0)
                continue;
            sbx_cg_kill_all(&cg);
            if (sbx_cg_destroy(&cg, NULL) == 0)
                removed++;
        }
    }
    free(ids.v);
    return removed;
}

int sbx_cg_remove_parents(const sbx_cg_layout *lay, const char *name)
{
    if (!sbx_valid_name(name))
        return 0;
    int removed = 0;
    uint64_t deadline = sbx_now_usec() + 1000000;
    name_list kids = {0};
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        char parent[SBX_SHORT_PATH_MAX];
        if (lay->ver[c] == SBX_CG_NONE || sbx_pathf(parent, sizeof(parent), "%s/%s", lay->mount[c], name) < 0)
            continue;
        /* Co-mounted controllers share a dir: the second rmdir is ENOENT.
         * EBUSY with no sandbox dir left in it: a sandbox's cgroup just
         * removed is still being freed (v1, as in sbx_cg_destroy). */
        int r;
        while ((r = rmdir(parent)) < 0 && errno == EBUSY && sbx_now_usec() < deadline &&
               list_subdirs(parent, &kids) == 0 && kids.n == 0)
            sleep_ms(2);
        if (r == 0)
            removed++;
    }
    free(kids.v);
    return removed;
}

int sbx_cg_favor_dynmods(sbx_cg_layout *lay)
{
    if (!lay->v2_mount[0])
        return -ENOENT;
    if (has_word(lay->v2_opts, "favordynmods", ","))
        return 0;
    int fd = (int)syscall(SYS_fspick, AT_FDCWD, lay->v2_mount, FSPICK_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* A reconfigure sets exactly the flags it is given: repeat the
     * current ones (nsdelegate, memory_recursiveprot, ...). */
    char opts[sizeof(lay->v2_opts)];
    snprintf(opts, sizeof(opts), "%s", lay->v2_opts);
    int r = 0;
    char *save = NULL;
    for (char *o = strtok_r(opts, ",", &save); o && !r; o = strtok_r(NULL, ",", &save)) {
        if (strcmp(o, "rw") == 0 || strcmp(o, "ro") == 0)
            continue;
        char *eq = strchr(o, '=');
        if (eq)
            *eq = '\0';
        r = (int)syscall(SYS_fsconfig, fd, eq ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, o, eq ? eq + 1 : NULL, 0);
    }
    if (r == 0)
        r = (int)syscall(SYS_fsconfig, fd, FSCONFIG_SET_FLAG, "favordynmods", NULL, 0);
    if (r == 0)
        r = (int)syscall(SYS_fsconfig, fd, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0);
    int e = r < 0 ? errno : 0;
    close(fd);
    if (e)
        return -e;
    size_t n = strlen(lay->v2_opts);
    snprintf(lay->v2_opts + n, sizeof(lay->v2_opts) - n, ",favordynmods");
    return 0;
}
