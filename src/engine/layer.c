/* On-disk writable layers with a real size limit.
 *
 * A persistent layer (spec.layer_dir) is an ext4 filesystem in a sparse
 * image file, <layer_dir>/layer.img, sized by spec.disk_mib when first
 * made. The child attaches it to a free loop device with AUTOCLEAR and
 * mounts it in its own mount namespace: the kernel enforces the size, and
 * when the sandbox's mount namespace dies the filesystem is unmounted and
 * the loop device freed, so nothing outlives the sandbox.
 *
 * Making an image (mkfs.ext4) costs milliseconds, so a server keeps a small
 * pool of ready images (sbx_layer_pool_*): a sandbox's first start takes one
 * by rename into its layer dir, and the server makes the next one off the
 * request path.
 */
#include "internal.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#ifndef RENAME_NOREPLACE /* musl's headers */
#define RENAME_NOREPLACE 1
#endif

static int run_mkfs(const char *img, sbx_err *err)
{
    /* -m 0: no blocks reserved for root; the layer is all the sandbox's.
     * The image is a fresh sparse file, all zeros: zeroing the journal
     * (64 MiB of writes for a 3 GiB layer) or discarding would change
     * nothing, so lazy_journal_init and nodiscard skip them. */
    char *argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                    (char *)img, NULL};
    static const char *const dirs[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(dirs); i++) {
        if (access(dirs[i], X_OK) < 0)
            continue;
        pid_t pid;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        int r = posix_spawn(&pid, dirs[i], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r)
            return sbx_fail_errno(err, r, "layer: run %s", dirs[i]);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return sbx_fail(err, SBX_E_SYSTEM, "layer: mkfs.ext4 %s failed (status %d)", img, st);
        return 0;
    }
    return sbx_fail(err, SBX_E_SYSTEM, "layer: mkfs.ext4 not found (install e2fsprogs)");
}

/* Images left half-made by a process that died while making one (a
 * server killed during sandbox.start): "layer.img.<pid>" of a pid that no
 * longer runs. They are never used, only disk taken. */
static void remove_stale_images(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "layer.img.", 10) != 0)
            continue;
        long pid = strtol(e->d_name + 10, &end, 10);
        if (!*end && pid > 0 && pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Makes the ext4 image `img` of `bytes`: aside (tmp) and renamed in, so a
 * crash never leaves half an image under its name. Its fd stays open in
 * *fd_out unless that is NULL. */
static int make_image(const char *img, const char *tmp, uint64_t bytes, int *fd_out, sbx_err *err)
{
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_fail_errno(err, errno, "layer: create %s", tmp);
    if (ftruncate(fd, (off_t)bytes) < 0 || run_mkfs(tmp, err) < 0 || rename(tmp, img) < 0) {
        if (err && !err->msg[0])
            sbx_fail_errno(err, errno, "layer: prepare %s", img);
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (fd_out)
        *fd_out = fd;
    else
        close(fd);
    return 0;
}

int sbx_layer_prepare(const char *dir, uint64_t bytes, int *img_fd, sbx_err *err)
{
    char img[PATH_MAX];
    if (sbx_pathf(img, sizeof(img), "%s/layer.img", dir) < 0)
        return sbx_fail(err, SBX_E_INVALID, "layer directory path too long");
    int r = sbx_mkdir_p(dir, 0700);
    if (r < 0)
        return sbx_fail_errno(err, -r, "layer directory %s", dir);
    int fd = open(img, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        remove_stale_images(dir);
        char tmp[PATH_MAX + 16];
        snprintf(tmp, sizeof(tmp), "%s.%d", img, (int)getpid());
        if (make_image(img, tmp, bytes, &fd, err) < 0)
            return -1;
    }
    if (fd < 0)
        return sbx_fail_errno(err, errno, "layer: open %s", img);
    *img_fd = fd;
    return 0;
}

/* ---- the pool -------------------------------------------------------------
 *
 * <pool>/<MiB>.<pid>-<n>.img are ready images of that size; <pool>/tmp.* are
 * being made. A claim is one rename, so claimers and the maker need no
 * lock between them, and whatever a crash leaves is in <pool>, which the
 * server clears at start. */

static bool pool_name(const char *name, uint64_t disk_mib)
{
    char pre[32];
    int n = snprintf(pre, sizeof(pre), "%llu.", (unsigned long long)disk_mib);
    size_t len = strlen(name);
    return strncmp(name, pre, (size_t)n) == 0 && len > (size_t)n + 4 && strcmp(name + len - 4, ".img") == 0;
}

int sbx_layer_pool_count(const char *pool_dir, uint64_t disk_mib)
{
    DIR *d = opendir(pool_dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += pool_name(e->d_name, disk_mib);
    closedir(d);
    return n;
}

int sbx_layer_pool_add(const char *pool_dir, uint64_t disk_mib, sbx_err *err)
{
    static unsigned seq; /* names only need to differ within one pool */
    unsigned n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    char img[PATH_MAX], tmp[PATH_MAX];
    int r = sbx_mkdir_p(pool_dir, 0700);
    if (r < 0)
        return sbx_fail_errno(err, -r, "layer pool %s", pool_dir);
    if (sbx_pathf(img, sizeof(img), "%s/%llu.%d-%u.img", pool_dir, (unsigned long long)disk_mib, (int)getpid(), n) < 0 ||
        sbx_pathf(tmp, sizeof(tmp), "%s/tmp.%d-%u", pool_dir, (int)getpid(), n) < 0)
        return sbx_fail(err, SBX_E_INVALID, "layer pool path too long");
    return make_image(img, tmp, disk_mib << 20, NULL, err);
}

int sbx_layer_pool_claim(const char *pool_dir, uint64_t disk_mib, const char *layer_dir)
{
    char img[PATH_MAX];
    if (sbx_pathf(img, sizeof(img), "%s/layer.img", layer_dir) < 0 || access(img, F_OK) == 0)
        return 0; /* an existing layer keeps its image */
    DIR *d = opendir(pool_dir);
    if (!d)
        return 0;
    int got = 0;
    struct dirent *e;
    while (!got && (e = readdir(d))) {
        char from[PATH_MAX];
        if (!pool_name(e->d_name, disk_mib) || sbx_pathf(from, sizeof(from), "%s/%s", pool_dir, e->d_name) < 0)
            continue;
        if (sbx_mkdir_p(layer_dir, 0700) < 0)
            break;
        /* NOREPLACE: never over an image that appeared meanwhile. ENOENT:
         * another claimer was first; try the next. (A raw syscall: the
         * static musl build may lack the wrapper.) */
        if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, img, RENAME_NOREPLACE) == 0)
            got = 1;
        else if (errno != ENOENT)
            break;
    }
    closedir(d);
    return got;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void sbx_layer_pool_clear(const char *pool_dir)
{
    nftw(pool_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int sbx_layer_attach(int img_fd, const char *mnt)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;
    int e = EBUSY;
    /* Another process may take the free device first: ask again. */
    for (int tries = 0; tries < 16 && e == EBUSY; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            e = errno;
            break;
        }
        char dev[32];
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        int lfd = open(dev, O_RDWR | O_CLOEXEC);
        if (lfd < 0) {
            e = errno;
            break;
        }
        struct loop_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.fd = (uint32_t)img_fd;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) < 0) {
            e = errno;
            close(lfd);
            continue;
        }
        e = 0;
        if (mount(dev, mnt, "ext4", MS_NOSUID | MS_NODEV, "") < 0)
            e = errno;
        /* With the filesystem mounted (or not), our fd is not needed:
         * AUTOCLEAR frees the device when its last user goes. */
        close(lfd);
    }
    close(ctl);
    return -e;
}
