/* The detected cgroup layout, kept in the run dir for the next engine.
 *
 * Detecting it reads and parses /proc/self/mountinfo, which cost 0.05-0.2
 * ms of every `sbx run` here: the kernel makes that text under its global
 * mount lock, which the teardown of another sandbox's mounts may hold.
 * The cache is believed only while what it was made from still stands:
 * the same mount namespace; the cgroup root unchanged (mounting or
 * unmounting a hierarchy under it changes its mtime, or its identity
 * where it is a cgroup2 mount itself); every mount the layout names still
 * the same filesystem; and the cgroup2 root's controllers the same (a
 * controller moves there when its v1 hierarchy goes). Checking that is a
 * few stats. Anything else: detect again and rewrite it. */
#include "cgroup_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t mntns_ino(void)
{
    struct stat st;
    return stat("/proc/self/ns/mnt", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static void v2_controllers(const sbx_cg_layout *lay, char *buf, size_t cap)
{
    char path[PATH_MAX];
    buf[0] = '\0';
    if (lay->v2_mount[0] && sbx_pathf(path, sizeof(path), "%s/cgroup.controllers", lay->v2_mount) == 0 &&
        sbx_read_file(path, buf, cap, NULL) < 0)
        buf[0] = '\0';
}

/* Fills the identities of everything the layout rests on; false if one
 * cannot be read (nothing is cached then). */
static bool identify(const char *cgroup_fs, const sbx_cg_layout *lay, struct sbx_cg_ids *id)
{
    struct stat st;
    memset(id, 0, sizeof(*id)); /* compared whole, padding included */
    id->mntns = mntns_ino();
    for (int i = 0; i < SBX_CG_NCTL + 2; i++) {
        const char *p = i < SBX_CG_NCTL ? (lay->ver[i] ? lay->mount[i] : NULL)
                        : i == SBX_CG_NCTL ? (lay->v2_mount[0] ? lay->v2_mount : NULL)
                                           : cgroup_fs;
        if (!p)
            continue;
        if (stat(p, &st) < 0)
            return false;
        id->dev[i] = (uint64_t)st.st_dev;
        id->ino[i] = (uint64_t)st.st_ino;
        if (i == SBX_CG_NCTL + 1) {
            id->fs_mtime_sec = (int64_t)st.st_mtim.tv_sec;
            id->fs_mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
        }
    }
    v2_controllers(lay, id->v2_controllers, sizeof(id->v2_controllers));
    return id->mntns != 0;
}

static bool cache_valid(const char *cgroup_fs, const struct sbx_cg_cache *c)
{
    struct sbx_cg_ids now;
    return c->magic == SBX_CG_CACHE_MAGIC && c->size == sizeof(*c) && strcmp(c->cgroup_fs, cgroup_fs) == 0 &&
           identify(cgroup_fs, &c->lay, &now) && memcmp(&now, &c->ids, sizeof(now)) == 0;
}

static void cache_write(const char *path, const struct sbx_cg_cache *c)
{
    char tmp[PATH_MAX];
    if (sbx_pathf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid()) < 0)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, c, sizeof(*c)) == (ssize_t)sizeof(*c);
    close(fd);
    /* One rename: a reader sees the old cache or the new one, whole. */
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp);
}

int sbx_cg_detect_cached(const char *cgroup_fs, const char *cache_path, bool keep_mount, sbx_cg_layout *out,
                         int *favor, sbx_err *err)
{
    /* ~3 KiB: on the stack, whose pages earlier calls already touched;
     * a malloc'd block comes and goes with fresh pages (page faults). */
    struct sbx_cg_cache cache, *c = &cache;
    int fd = open(cache_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    bool hit = fd >= 0 && read(fd, c, sizeof(*c)) == (ssize_t)sizeof(*c) && cache_valid(cgroup_fs, c) &&
               (keep_mount || c->favor != 1);
    if (fd >= 0)
        close(fd);
    if (hit) {
        *out = c->lay;
        *favor = keep_mount ? 1 : c->favor;
        return 0;
    }
    memset(c, 0, sizeof(*c));
    if (sbx_cg_detect(cgroup_fs, &c->lay, err) < 0)
        return -1;
    /* Before the identities: it may reconfigure the cgroup2 mount. */
    c->favor = keep_mount ? 1 : sbx_cg_favor_dynmods(&c->lay);
    *out = c->lay;
    *favor = c->favor;
    c->magic = SBX_CG_CACHE_MAGIC;
    c->size = sizeof(*c);
    if (strlen(cgroup_fs) < sizeof(c->cgroup_fs) && identify(cgroup_fs, &c->lay, &c->ids)) {
        memcpy(c->cgroup_fs, cgroup_fs, strlen(cgroup_fs) + 1);
        cache_write(cache_path, c);
    }
    return 0;
}
