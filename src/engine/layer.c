/* On-disk writable layers with a real size limit.
 *
 * A persistent layer (spec.layer_dir) is an ext4 filesystem in a sparse
 * image file, <layer_dir>/layer.img, sized by spec.disk_mib when first
 * made. The child attaches it to a free loop device with AUTOCLEAR and
 * mounts it in its own mount namespace: the kernel enforces the size, and
 * when the sandbox's mount namespace dies the filesystem is unmounted and
 * the loop device freed, so nothing outlives the sandbox.
 */
#include "internal.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int run_mkfs(const char *img, sbx_err *err)
{
    /* -m 0: no blocks reserved for root; the layer is all the sandbox's. */
    char *argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1", (char *)img, NULL};
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
        /* Made aside and renamed in: a crash never leaves half an image. */
        remove_stale_images(dir);
        char tmp[PATH_MAX + 16];
        snprintf(tmp, sizeof(tmp), "%s.%d", img, (int)getpid());
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return sbx_fail_errno(err, errno, "layer: create %s", tmp);
        if (ftruncate(fd, (off_t)bytes) < 0 || run_mkfs(tmp, err) < 0 || rename(tmp, img) < 0) {
            if (err && !err->msg[0])
                sbx_fail_errno(err, errno, "layer: prepare %s", img);
            close(fd);
            unlink(tmp);
            return -1;
        }
    }
    if (fd < 0)
        return sbx_fail_errno(err, errno, "layer: open %s", img);
    *img_fd = fd;
    return 0;
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
