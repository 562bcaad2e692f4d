/* The engine handle: configuration, cgroup detection, run directory, and
 * the sweep that removes what crashed runs left behind. */
#include "internal.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_UID_BASE 1000000000u
#define DEFAULT_NETNS_POOL 8
#define MAX_NETNS_POOL 256

static int set_path(char *dst, const char *src, const char *def, const char *what, sbx_err *err)
{
    const char *v = src && *src ? src : def;
    if (v[0] != '/')
        return sbx_fail(err, SBX_E_INVALID, "%s '%s' must be an absolute path", what, v);
    size_t n = strlen(v);
    if (n >= SBX_BASE_PATH_MAX)
        return sbx_fail(err, SBX_E_INVALID, "%s '%.60s...' is too long (%zu bytes; at most %d)", what, v, n,
                        SBX_BASE_PATH_MAX - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

/* Leftovers of crashed runs. A sandbox's lock file exists from before its
 * cgroups are made until after they are removed, and is flock'd by its
 * host process and its init; a lock nobody holds marks a dead sandbox. */
struct stale {
    char (*ids)[256];
    size_t n;
    const char *lock_dir;
};

static bool cg_is_live(const char *id, void *ud)
{
    const struct stale *st = ud;
    char path[PATH_MAX];
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->ids[i], id) == 0)
            return false;
    /* No lock file at all: nothing can own it. */
    return sbx_pathf(path, sizeof(path), "%s/%s", st->lock_dir, id) == 0 && access(path, F_OK) == 0;
}

static void sweep(sbx_engine *eng)
{
    DIR *d = opendir(eng->lock_dir);
    if (!d)
        return;
    struct stale st = {NULL, 0, eng->lock_dir};
    int *fds = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[PATH_MAX];
        if (e->d_name[0] == '.' || sbx_pathf(path, sizeof(path), "%s/%s", eng->lock_dir, e->d_name) < 0)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd); /* live */
            continue;
        }
        if (st.n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            void *ni = realloc(st.ids, ncap * sizeof(*st.ids)), *nf = ni ? realloc(fds, ncap * sizeof(int)) : NULL;
            if (ni)
                st.ids = ni;
            if (!nf) {
                close(fd);
                break;
            }
            fds = nf;
            cap = ncap;
        }
        snprintf(st.ids[st.n], sizeof(st.ids[0]), "%s", e->d_name);
        fds[st.n++] = fd; /* keep holding it while its cgroups go */
    }
    closedir(d);
    /* Cgroups first, then the locks: a crash in between is swept again. */
    if (st.n)
        sbx_cg_sweep(&eng->cg, eng->cg_name, cg_is_live, &st);
    for (size_t i = 0; i < st.n; i++) {
        char path[PATH_MAX];
        if (sbx_pathf(path, sizeof(path), "%s/%s", eng->lock_dir, st.ids[i]) == 0)
            unlink(path);
        close(fds[i]);
    }
    free(st.ids);
    free(fds);
}

/* The binary a sandbox's first process re-executes (see engine.h), kept
 * open so that the child needs no path lookup, with the environment it gets:
 * nothing of ours (the server's may hold secrets) but the sanitizers'
 * settings, so that a sanitizer build's init reports like every process. */
static int open_init_exe(sbx_engine *eng, const char *path, sbx_err *err)
{
    eng->init_exe_fd = open(path, O_PATH | O_CLOEXEC);
    struct stat st;
    if (eng->init_exe_fd < 0 || fstat(eng->init_exe_fd, &st) < 0)
        return sbx_fail_errno(err, errno, "sandbox init binary %s (the static sbx of this build, beside "
                              "sbx-server; SBX_INIT_EXE names another)", path);
    if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
        return sbx_fail(err, SBX_E_INVALID, "sandbox init binary %s is not an executable file", path);
    static const char *const keep[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "SBX_SAN_LOG_DIR"};
    size_t off = 0, n = 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(keep); i++) {
        const char *v = getenv(keep[i]);
        if (!v)
            continue;
        int w = snprintf(eng->init_env_buf + off, sizeof(eng->init_env_buf) - off, "%s=%s", keep[i], v);
        if (w < 0 || (size_t)w >= sizeof(eng->init_env_buf) - off)
            return sbx_fail(err, SBX_E_INVALID, "%s is too long for the sandbox init's environment", keep[i]);
        eng->init_env[n++] = eng->init_env_buf + off;
        off += (size_t)w + 1;
    }
    eng->init_env[n] = NULL;
    return 0;
}

static int netns_pool_size(int asked, int *out, sbx_err *err)
{
    if (asked < 0) {
        *out = 0;
        return 0;
    }
    if (asked > 0) {
        *out = asked > MAX_NETNS_POOL ? MAX_NETNS_POOL : asked;
        return 0;
    }
    const char *env = getenv("SBX_NETNS_POOL");
    uint64_t v = DEFAULT_NETNS_POOL;
    if (env && *env && sbx_parse_u64(env, 0, MAX_NETNS_POOL, &v) < 0)
        return sbx_fail(err, SBX_E_INVALID, "SBX_NETNS_POOL '%s' is invalid (allowed: 0 to %d; 0 keeps none)", env,
                        MAX_NETNS_POOL);
    *out = (int)v;
    return 0;
}

int sbx_engine_prune(sbx_engine *eng, int *busy, int *views, sbx_err *err)
{
    *views = sbx_etc_view_drop(eng);
    sbx_etc_masks_gc(eng);
    sbx_cg_remove_parents(&eng->cg, eng->cg_name);
    int n = sbx_netns_drain(eng->netns_dir, busy);
    if (n < 0)
        return sbx_fail_errno(err, -n, "read %s", eng->netns_dir);
    return n;
}

int sbx_engine_alloc(const sbx_engine_config *cfg, sbx_engine **out, sbx_err *err)
{
    *out = NULL;
    sbx_engine *eng = calloc(1, sizeof(*eng));
    if (!eng)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    eng->init_exe_fd = -1;
    if (set_path(eng->run_dir, cfg->run_dir, "/run/sbx", "run directory", err) < 0 ||
        set_path(eng->image_dir, cfg->image_dir, "/var/lib/sbx/images", "image directory", err) < 0 ||
        set_path(eng->cg_fs, cfg->cgroup_fs, "/sys/fs/cgroup", "cgroup filesystem", err) < 0 ||
        set_path(eng->gpu_root, cfg->gpu_root, "/", "GPU discovery root", err) < 0)
        goto fail;
    const char *name = cfg->cgroup_name && *cfg->cgroup_name ? cfg->cgroup_name : "sbx";
    if (!sbx_valid_name(name)) {
        sbx_fail(err, SBX_E_INVALID, "cgroup name '%s' is invalid (allowed: [A-Za-z0-9_.-]{1,63})", name);
        goto fail;
    }
    snprintf(eng->cg_name, sizeof(eng->cg_name), "%s", name);
    eng->uid_base = cfg->uid_base ? cfg->uid_base : DEFAULT_UID_BASE;
    eng->uid_count = cfg->uid_count ? cfg->uid_count : 65536;
    if (eng->uid_count < 65536 || eng->uid_base == 0 || (uint64_t)eng->uid_base + eng->uid_count > 0xFFFFFFFEull) {
        sbx_fail(err, SBX_E_INVALID,
                 "uid range %u+%u is invalid (the base must be above 0, so root inside is never host root; "
                 "at least 65536 ids; below 2^32-1)",
                 eng->uid_base, eng->uid_count);
        goto fail;
    }
    if (sbx_pathf(eng->lock_dir, sizeof(eng->lock_dir), "%s/sandboxes", eng->run_dir) < 0 ||
        sbx_pathf(eng->stage_dir, sizeof(eng->stage_dir), "%s/root", eng->run_dir) < 0 ||
        sbx_pathf(eng->layer_dir, sizeof(eng->layer_dir), "%s/layer", eng->run_dir) < 0 ||
        sbx_pathf(eng->empty_dir, sizeof(eng->empty_dir), "%s/empty", eng->run_dir) < 0 ||
        sbx_pathf(eng->etc_mask, sizeof(eng->etc_mask), "%s/etc-mask", eng->run_dir) < 0 ||
        sbx_pathf(eng->gpu_lock_dir, sizeof(eng->gpu_lock_dir), "%s/gpus", eng->run_dir) < 0 ||
        sbx_pathf(eng->netns_dir, sizeof(eng->netns_dir), "%s/netns", eng->run_dir) < 0 ||
        sbx_pathf(eng->etc_view_dir, sizeof(eng->etc_view_dir), "%s/etc-view", eng->run_dir) < 0) {
        sbx_fail(err, SBX_E_INVALID, "run directory path is too long");
        goto fail;
    }
    if (netns_pool_size(cfg->netns_pool, &eng->netns_pool, err) < 0)
        goto fail;
    if (cfg->init_exe && open_init_exe(eng, cfg->init_exe, err) < 0)
        goto fail;
    *out = eng;
    return 0;
fail:
    sbx_engine_close(eng);
    return -1;
}

int sbx_engine_start(sbx_engine *eng, const sbx_engine_config *cfg, sbx_err *err)
{
    const char *dirs[] = {eng->run_dir, eng->lock_dir, eng->stage_dir, eng->layer_dir, eng->empty_dir};
    for (size_t i = 0; i < SBX_ARRAY_LEN(dirs); i++) {
        int r = sbx_mkdir_p(dirs[i], 0711);
        if (r < 0)
            return sbx_fail_errno(err, -r, "create %s", dirs[i]);
    }
    char cache[PATH_MAX];
    if (sbx_pathf(cache, sizeof(cache), "%s/cgroup-layout", eng->run_dir) < 0)
        return sbx_fail(err, SBX_E_INVALID, "run directory path is too long");
    if (sbx_cg_detect_cached(eng->cg_fs, cache, cfg->keep_cgroup_mount, &eng->cg, &eng->favor_dynmods, err) < 0)
        return -1;
    sweep(eng);
    return 0;
}

int sbx_engine_open(const sbx_engine_config *cfg, sbx_engine **out, sbx_err *err)
{
    static const sbx_engine_config none;
    if (!cfg)
        cfg = &none;
    if (sbx_engine_alloc(cfg, out, err) < 0)
        return -1;
    if (sbx_engine_start(*out, cfg, err) < 0) {
        sbx_engine_close(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

void sbx_engine_close(sbx_engine *eng)
{
    if (eng && eng->init_exe_fd >= 0)
        close(eng->init_exe_fd);
    free(eng);
}

int sbx_default_init_exe(char *buf, size_t len, sbx_err *err)
{
    const char *env = getenv("SBX_INIT_EXE");
    if (env && *env) {
        if (sbx_pathf(buf, len, "%s", env) < 0)
            return sbx_fail(err, SBX_E_INVALID, "SBX_INIT_EXE is too long");
        return 0;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return sbx_fail_errno(err, errno, "find my own binary (/proc/self/exe)");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    if (sbx_pathf(buf, len, "%s/sbx", slash ? self : ".") < 0)
        return sbx_fail(err, SBX_E_INVALID, "path of the sbx beside %s is too long", self);
    return 0;
}

int sbx_engine_describe(const sbx_engine *eng, char *buf, size_t len)
{
    size_t off = 0;
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        const char *v = eng->cg.ver[c] == SBX_CG_V1 ? "v1" : eng->cg.ver[c] == SBX_CG_V2 ? "v2" : "none";
        int n = snprintf(buf + off, len - off, "cgroup %-8s %-4s %s\n", sbx_cg_ctl_name(c), v,
                         eng->cg.ver[c] ? eng->cg.mount[c] : "-");
        if (n < 0 || (size_t)n >= len - off)
            return -1;
        off += (size_t)n;
    }
    char fav[PATH_MAX + 32];
    if (eng->favor_dynmods == 0)
        snprintf(fav, sizeof(fav), "on (%s)", eng->cg.v2_mount);
    else if (eng->favor_dynmods == 1)
        snprintf(fav, sizeof(fav), "left alone (SBX_CGROUP_KEEP_MOUNT)");
    else
        snprintf(fav, sizeof(fav), "unavailable: %s", strerror(-eng->favor_dynmods));
    int n = snprintf(buf + off, len - off,
                     "cgroup favordynmods %s\nuid map  0 -> %u (%u ids)\nrun dir  %s\nnetns pool up to %d idle in %s\n",
                     fav, eng->uid_base, eng->uid_count, eng->run_dir, eng->netns_pool, eng->netns_dir);
    if (n < 0 || (size_t)n >= len - off)
        return -1;
    off += (size_t)n;
    return sbx_gpu_describe(eng->gpu_root, buf + off, len - off);
}
