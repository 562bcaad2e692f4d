/* The sandbox's root filesystem, assembled in the child's private mount
 * namespace and entered with pivot_root.
 *
 * Layout for the "host" image:
 *   /            tmpfs (the writable layer, size-limited) or an overlay with
 *                an on-disk upper dir
 *   /usr, /lib*  host's, bind-mounted read-only, nosuid, nodev (recursively)
 *   /etc         overlay: the etc mask over the host's /etc, read-only
 *   /proc        fresh procfs of the sandbox's pid namespace
 *   /dev         tmpfs with null zero full random urandom tty, devpts, shm
 *                (a GPU sandbox: also the host's nvidia nodes, with /sys read-only
 *                and the driver's files in /run/sbx-gpu; see gpu.h)
 *   /tmp, /home/<user>, /root in the writable layer
 * For a directory image, / is an overlay with the image as its lower layer.
 *
 * Everything here runs as host root inside new mount and pid namespaces,
 * before any sandboxed code exists; it allocates nothing.
 */
#include "internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RESOLVE_IN_ROOT
#include <linux/openat2.h>
#endif

/* The new mount API through syscall(2): not every libc wraps it. */
static int sys_open_tree(int dfd, const char *path, unsigned flags)
{
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
static int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct mount_attr *attr, size_t size)
{
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, size);
}
static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

/* ---- parent side: volume checks ---------------------------------------- */

int sbx_volume_parse(char *buf, sbx_volume *v, sbx_err *err)
{
    char *c1 = strchr(buf, ':');
    if (!c1 || c1 == buf)
        return sbx_fail(err, SBX_E_INVALID, "volume '%s': expected HOST:GUEST[:ro|:rw]", buf);
    char *c2 = strchr(c1 + 1, ':');
    v->readonly = false;
    if (c2) {
        if (strcmp(c2 + 1, "ro") == 0)
            v->readonly = true;
        else if (strcmp(c2 + 1, "rw") != 0) {
            *c1 = ':';
            return sbx_fail(err, SBX_E_INVALID, "volume '%s': unknown option '%s' (allowed: ro, rw)", buf, c2 + 1);
        }
        *c2 = '\0';
    }
    *c1 = '\0';
    v->host = buf;
    v->guest = c1 + 1;
    if (!*v->guest)
        return sbx_fail(err, SBX_E_INVALID, "volume '%s': empty guest path", buf);
    return 0;
}

/* A guest path must be absolute, normalised enough to stay inside the
 * sandbox (no ".." component), and not "/" or inside /proc. */
static int check_guest(const char *g, sbx_err *err)
{
    if (g[0] != '/')
        return sbx_fail(err, SBX_E_INVALID, "volume guest path '%s' must be absolute", g);
    for (const char *p = g; *p;) {
        while (*p == '/')
            p++;
        const char *e = strchrnul(p, '/');
        if (e - p == 2 && p[0] == '.' && p[1] == '.')
            return sbx_fail(err, SBX_E_INVALID, "volume guest path '%s' leaves the sandbox root ('..' is not allowed)", g);
        p = e;
    }
    const char *q = g;
    while (*q == '/')
        q++;
    if (!*q)
        return sbx_fail(err, SBX_E_INVALID, "volume guest path '/' is not allowed (mount below it)");
    if (strncmp(q, "proc", 4) == 0 && (q[4] == '\0' || q[4] == '/'))
        return sbx_fail(err, SBX_E_INVALID, "volume guest path '%s' is inside /proc, which is not allowed", g);
    return 0;
}

static int depth(const char *p)
{
    int d = 0;
    for (; *p; p++)
        d += (*p == '/' && p[1] && p[1] != '/');
    return d;
}

int sbx_rootfs_plan_volumes(sbx_rootfs_plan *plan, const sbx_volume *v, size_t n, sbx_err *err)
{
    if (n > SBX_MAX_VOLUMES)
        return sbx_fail(err, SBX_E_INVALID, "too many volumes (%zu, at most %d)", n, SBX_MAX_VOLUMES);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!v[i].host || !*v[i].host || !v[i].guest)
            return sbx_fail(err, SBX_E_INVALID, "volume %zu: host and guest paths are required", i + 1);
        if (v[i].host[0] != '/')
            return sbx_fail(err, SBX_E_INVALID, "volume host path '%s' must be absolute", v[i].host);
        if (check_guest(v[i].guest, err) < 0)
            return -1;
        if (stat(v[i].host, &st) < 0)
            return sbx_fail(err, SBX_E_NOTFOUND, "volume host path '%s' does not exist", v[i].host);
        if (sbx_pathf(plan->vol[i].host, PATH_MAX, "%s", v[i].host) < 0 ||
            sbx_pathf(plan->vol[i].guest, PATH_MAX, "%s", v[i].guest) < 0)
            return sbx_fail(err, SBX_E_INVALID, "volume path too long");
        plan->vol[i].ro = v[i].readonly;
        plan->vol[i].is_dir = S_ISDIR(st.st_mode);
    }
    plan->nvol = (int)n;
    if (n < 2)
        return 0;
    /* Parents before children, so a volume inside another lands on top. */
    struct sbx_plan_volume *tmp = malloc(sizeof(*tmp));
    if (!tmp)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    for (int i = 1; i < plan->nvol; i++)
        for (int j = i; j > 0 && depth(plan->vol[j].guest) < depth(plan->vol[j - 1].guest); j--) {
            *tmp = plan->vol[j];
            plan->vol[j] = plan->vol[j - 1];
            plan->vol[j - 1] = *tmp;
        }
    free(tmp);
    return 0;
}

/* ---- child side --------------------------------------------------------- */

#define TRY(what_, expr)                                                                         \
    do {                                                                                         \
        if ((expr) < 0) {                                                                        \
            *what = (what_);                                                                     \
            return -errno;                                                                       \
        }                                                                                        \
    } while (0)

/* Bind src at dst (an O_PATH fd or path under the stage) with attributes,
 * recursively, using the new mount API: the read-only flag then covers
 * every submount too, and the target is opened without following links. */
static int bind_tree(const char *src, int dst_fd, const char *dst_path, uint64_t attrs)
{
    int t = sys_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (t < 0)
        return -1;
    struct mount_attr ma = {.attr_set = attrs};
    if (attrs && sys_mount_setattr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof(ma)) < 0) {
        int e = errno;
        close(t);
        errno = e;
        return -1;
    }
    int r = dst_fd >= 0 ? sys_move_mount(t, "", dst_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
                        : sys_move_mount(t, "", AT_FDCWD, dst_path, MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    close(t);
    errno = e;
    return r;
}

static int mkdir_owned(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    /* The child runs with umask 0, and mkdir keeps the sticky bit: a new
     * dir has the exact mode; one that was there gets it. */
    if (mkdir(path, mode) < 0 && (errno != EEXIST || chmod(path, mode) < 0))
        return -1;
    return chown(path, uid, gid);
}

/* Opens (creating as needed) the mount point for a volume inside the new
 * root. Resolution stays inside root_fd: a symlink planted in a writable
 * layer or volume by an earlier run resolves against the sandbox's root,
 * never the host's, so it cannot aim a mount outside. */
static int open_mountpoint(int root_fd, const char *guest, bool dir, uid_t uid, gid_t gid)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    char part[PATH_MAX];
    size_t n = strlen(guest);
    if (n >= sizeof(part)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* Create missing components one by one, each relative to its parent,
     * which is itself opened inside the root. */
    for (size_t i = 1; i <= n; i++) {
        if (guest[i] != '/' && guest[i] != '\0')
            continue;
        memcpy(part, guest, i);
        part[i] = '\0';
        int fd = (int)syscall(SYS_openat2, root_fd, part, &how, sizeof(how));
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (errno != ENOENT)
            return -1;
        char *slash = strrchr(part, '/');
        *slash = '\0';
        int pfd = (int)syscall(SYS_openat2, root_fd, part[0] ? part : "/", &how, sizeof(how));
        if (pfd < 0)
            return -1;
        const char *name = slash + 1;
        int r;
        bool last = guest[i] == '\0';
        if (!last || dir) {
            r = mkdirat(pfd, name, 0755);
        } else {
            r = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
            if (r >= 0)
                close(r);
        }
        /* O_PATH fds cannot be used for *at creation on every kernel;
         * fall back to the /proc path of the verified parent. */
        if (r < 0 && errno == EBADF) {
            char pp[64];
            snprintf(pp, sizeof(pp), "/proc/self/fd/%d", pfd);
            int dfd = open(pp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                if (!last || dir)
                    r = mkdirat(dfd, name, 0755);
                else if ((r = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644)) >= 0)
                    close(r);
                close(dfd);
            }
        }
        if (r == 0 || (r >= 0 && !dir))
            (void)fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
        int e = errno;
        close(pfd);
        if (r < 0 && e != EEXIST) {
            errno = e;
            return -1;
        }
    }
    return (int)syscall(SYS_openat2, root_fd, guest, &how, sizeof(how));
}

/* The character devices every sandbox's /dev has. */
static const struct { const char *name; unsigned maj, min; } std_nodes[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

int sbx_rootfs_dev_rules(sbx_cg_dev_rule *out, int *n, int cap)
{
    const unsigned rw = SBX_CG_DEV_READ | SBX_CG_DEV_WRITE;
    for (size_t i = 0; i < SBX_ARRAY_LEN(std_nodes); i++) {
        if (*n >= cap)
            return -1;
        out[(*n)++] = (sbx_cg_dev_rule){'c', (int)std_nodes[i].maj, (int)std_nodes[i].min, rw};
    }
    /* The private devpts: its ptmx (5:2) and the terminals it hands out
     * (major 136, Unix98 ptys). */
    if (*n + 2 > cap)
        return -1;
    out[(*n)++] = (sbx_cg_dev_rule){'c', 5, 2, rw};
    out[(*n)++] = (sbx_cg_dev_rule){'c', 136, -1, rw};
    return 0;
}

/* /dev: a tmpfs of its own, or (own_fs false) a directory of the root's
 * tmpfs, mounted without nodev for it (see build_root). */
static int build_dev(const char *stage, uint32_t base, bool own_fs, const char **what)
{
    char p[PATH_MAX], opts[128];
    sbx_pathf(p, sizeof(p), "%s/dev", stage);
    if (own_fs) {
        mkdir(p, 0755);
        snprintf(opts, sizeof(opts), "size=65536k,nr_inodes=4096,mode=0755,uid=%u,gid=%u", base, base);
        /* Device nodes need a mount without nodev; the sandbox cannot make
         * new ones (no CAP_MKNOD in the host's user namespace), so this is
         * safe. */
        TRY("mount /dev tmpfs", mount("sbx-dev", p, "tmpfs", MS_NOSUID | MS_NOEXEC, opts));
    } else {
        TRY("mkdir /dev", mkdir_owned(p, 0755, base, base));
    }
    for (size_t i = 0; i < SBX_ARRAY_LEN(std_nodes); i++) {
        sbx_pathf(p, sizeof(p), "%s/dev/%s", stage, std_nodes[i].name);
        TRY("mknod /dev node", mknod(p, S_IFCHR | 0666, makedev(std_nodes[i].maj, std_nodes[i].min)));
    }
    sbx_pathf(p, sizeof(p), "%s/dev/shm", stage);
    TRY("mkdir /dev/shm", mkdir_owned(p, 01777, base, base));
    sbx_pathf(p, sizeof(p), "%s/dev/pts", stage);
    TRY("mkdir /dev/pts", mkdir(p, 0755));
    snprintf(opts, sizeof(opts), "newinstance,ptmxmode=0666,mode=0620,gid=%u", base + 5);
    TRY("mount devpts", mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, opts));
    static const struct { const char *name, *target; } links[] = {
        {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
        {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(links); i++) {
        sbx_pathf(p, sizeof(p), "%s/dev/%s", stage, links[i].name);
        TRY("symlink in /dev", symlink(links[i].target, p));
    }
    return 0;
}

static int build_proc(const char *stage, const char **what)
{
    char p[PATH_MAX], nul[PATH_MAX];
    sbx_pathf(p, sizeof(p), "%s/proc", stage);
    mkdir(p, 0555);
    TRY("mount /proc", mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    /* Root inside is an unprivileged host uid, so the kernel already
     * refuses writes to /proc/sys and /proc/sysrq-trigger and reads of
     * kcore and kmsg (host-root-only). The two write targets are made
     * read-only anyway, as a second wall; everything else costs a mount
     * per launch for nothing. */
    static const char *const ro[] = {"sys", "sysrq-trigger"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(ro); i++) {
        sbx_pathf(p, sizeof(p), "%s/proc/%s", stage, ro[i]);
        if (access(p, F_OK) < 0)
            continue; /* e.g. no sysrq in this kernel */
        TRY("bind /proc read-only part",
            bind_tree(p, -1, p, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    }
    /* World-readable files that show host-wide kernel state. */
    static const char *const masked[] = {"timer_list", "sched_debug"};
    sbx_pathf(nul, sizeof(nul), "%s/dev/null", stage);
    for (size_t i = 0; i < SBX_ARRAY_LEN(masked); i++) {
        sbx_pathf(p, sizeof(p), "%s/proc/%s", stage, masked[i]);
        if (access(p, F_OK) < 0)
            continue;
        TRY("mask /proc file", mount(nul, p, NULL, MS_BIND, NULL));
    }
    return 0;
}

/* ---- GPU (child side of the parent's sbx_gpu_plan, see gpu.h) ---------- */

static int sys_fsopen(const char *fs, unsigned flags)
{
    return (int)syscall(SYS_fsopen, fs, flags);
}
static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}
static int sys_fsmount(int fd, unsigned flags, unsigned attrs)
{
    return (int)syscall(SYS_fsmount, fd, flags, attrs);
}

/* A new tmpfs, not yet attached anywhere, as a mount fd. */
static int new_tmpfs(const char *size, const char *mode, unsigned attrs)
{
    int fs = sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int m = -1;
    if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) == 0 &&
        sys_fsconfig(fs, FSCONFIG_SET_STRING, "mode", mode, 0) == 0 &&
        sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        m = sys_fsmount(fs, FSMOUNT_CLOEXEC, attrs);
    int e = errno;
    close(fs);
    errno = e;
    return m;
}

/* Binds the host file src onto a new empty file `name` in dfd, with
 * mount attributes set and cleared (device nodes need nodev cleared). */
static int bind_file(const char *src, int dfd, const char *name, uint64_t set, uint64_t clr)
{
    int f = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (f < 0)
        return -1;
    close(f);
    int t = sys_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (t < 0)
        return -1;
    struct mount_attr ma = {.attr_set = set, .attr_clr = clr};
    int r = sys_mount_setattr(t, "", AT_EMPTY_PATH, &ma, sizeof(ma));
    if (r == 0)
        r = sys_move_mount(t, "", dfd, name, MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    close(t);
    errno = e;
    return r;
}

/* The host's device nodes themselves: the kernel knows a device by its
 * numbers, and libcuda opens /dev/nvidia<minor> by the host's minor, so
 * names and numbers stay the host's. The devices cgroup (restricted by
 * the host once the root is built) admits exactly these. */
static int gpu_nodes(const sbx_gpu_plan *g, const char *stage, const char **what)
{
    char p[PATH_MAX];
    sbx_pathf(p, sizeof(p), "%s/dev", stage);
    int dev = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    TRY("GPU: open /dev", dev);
    for (int i = 0; i < g->nnodes; i++) {
        if (bind_file(g->node[i].host, dev, g->node[i].name, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                      MOUNT_ATTR_NODEV) < 0) {
            int e = errno;
            close(dev);
            *what = "GPU: bind device node";
            return -e;
        }
    }
    close(dev);
    return 0;
}

/* CUDA reads sysfs at initialisation (the nvidia modules' parameters, PCI
 * and NUMA topology) and fails without it, so a GPU sandbox gets the
 * host's sysfs read-only, as containers do, without its submounts and
 * with the firmware tables and the energy counters (a known side channel)
 * hidden under empty read-only tmpfs. */
static int gpu_sysfs(int root_fd, uint32_t base, const char **what)
{
    int mp = open_mountpoint(root_fd, "/sys", true, base, base);
    TRY("GPU: /sys mount point", mp);
    int t = sys_open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    struct mount_attr ma = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
    int r = t < 0 ? -1 : sys_mount_setattr(t, "", AT_EMPTY_PATH, &ma, sizeof(ma));
    if (r == 0)
        r = sys_move_mount(t, "", mp, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    if (t >= 0)
        close(t);
    close(mp);
    if (r < 0) {
        *what = "GPU: bind /sys";
        return -e;
    }
    static const char *const masked[] = {"/sys/firmware", "/sys/devices/virtual/powercap"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(masked); i++) {
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS};
        int fd = (int)syscall(SYS_openat2, root_fd, masked[i], &how, sizeof(how));
        if (fd < 0)
            continue; /* not in this kernel */
        int m = new_tmpfs("4k", "0555", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        r = m < 0 ? -1 : sys_move_mount(m, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
        e = errno;
        if (m >= 0)
            close(m);
        close(fd);
        if (r < 0) {
            *what = "GPU: mask part of /sys";
            return -e;
        }
    }
    return 0;
}

/* SBX_GPU_DIR: a small tmpfs (never the sandbox's layer, which may be
 * kept on disk) holding lib/ and bin/, each driver file bound read-only
 * onto an empty file, plus the soname links; then made read-only. */
static int gpu_files(const sbx_gpu_plan *g, int root_fd, uint32_t base, const char **what)
{
    const uint64_t ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    int mp = open_mountpoint(root_fd, SBX_GPU_DIR, true, base, base);
    TRY("GPU: mount point " SBX_GPU_DIR, mp);
    int m = new_tmpfs("1m", "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    int r = m < 0 ? -1 : sys_move_mount(m, "", mp, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    close(mp);
    if (r < 0) {
        if (m >= 0)
            close(m);
        *what = "GPU: mount " SBX_GPU_DIR;
        return -e;
    }
    int top = openat(m, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(m);
    TRY("GPU: open " SBX_GPU_DIR, top);
    int lib = -1, bin = -1;
    r = mkdirat(top, "lib", 0755) < 0 || mkdirat(top, "bin", 0755) < 0 ? -1 : 0;
    if (!r) {
        lib = openat(top, "lib", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        bin = openat(top, "bin", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        r = lib < 0 || bin < 0 ? -1 : 0;
    }
    *what = "GPU: make " SBX_GPU_DIR " dirs";
    for (int i = 0; !r && i < g->nlibs; i++)
        if ((r = bind_file(g->lib[i].host, lib, g->lib[i].name, ro, 0)) < 0)
            *what = "GPU: bind driver library";
    for (int i = 0; !r && i < g->nlinks; i++)
        if ((r = symlinkat(g->link[i].target, lib, g->link[i].name)) < 0)
            *what = "GPU: library link";
    for (int i = 0; !r && i < g->nbins; i++)
        if ((r = bind_file(g->bin[i].host, bin, g->bin[i].name, ro, 0)) < 0)
            *what = "GPU: bind driver program";
    if (!r) {
        /* Nothing may be added beside the driver's files. */
        struct mount_attr ma = {.attr_set = MOUNT_ATTR_RDONLY};
        if ((r = sys_mount_setattr(top, "", AT_EMPTY_PATH, &ma, sizeof(ma))) < 0)
            *what = "GPU: make " SBX_GPU_DIR " read-only";
    }
    e = errno;
    if (lib >= 0)
        close(lib);
    if (bin >= 0)
        close(bin);
    close(top);
    return r < 0 ? -e : 0;
}

static int build_gpu(const sbx_rootfs_plan *pl, const char **what)
{
    int r = gpu_nodes(pl->gpu, pl->stage, what);
    if (r < 0)
        return r;
    int root_fd = open(pl->stage, O_PATH | O_DIRECTORY | O_CLOEXEC);
    TRY("open new root", root_fd);
    r = gpu_sysfs(root_fd, pl->uid_base, what);
    if (r == 0)
        r = gpu_files(pl->gpu, root_fd, pl->uid_base, what);
    close(root_fd);
    return r;
}

/* The host image: host system dirs read-only, /etc through the mask. */
static int build_host_image(const sbx_rootfs_plan *pl, const char **what)
{
    char p[PATH_MAX], opts[PATH_MAX + 64];
    const uint64_t ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    static const char *const sysdirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(sysdirs); i++) {
        char host[64], link[PATH_MAX];
        struct stat st;
        snprintf(host, sizeof(host), "/%s", sysdirs[i]);
        /* readlink first: on a merged-/usr host most of these are links,
         * and it says so (or that there is nothing) in one call. */
        ssize_t n = readlink(host, link, sizeof(link) - 1);
        if (n < 0 && errno != EINVAL)
            continue; /* absent (or unreadable, as lstat would be) */
        sbx_pathf(p, sizeof(p), "%s/%s", pl->stage, sysdirs[i]);
        if (n >= 0) {
            /* Merged-/usr hosts: /bin -> usr/bin; keep the same links. */
            link[n] = '\0';
            if (symlink(link, p) < 0 && errno != EEXIST)
                TRY("symlink system dir", -1);
        } else if (lstat(host, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                TRY("mkdir system dir", -1);
            TRY("bind host system dir", bind_tree(host, -1, p, ro));
        }
    }
    sbx_pathf(p, sizeof(p), "%s/etc", pl->stage);
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        TRY("mkdir /etc", -1);
    if (pl->etc_view_fd >= 0) {
        /* The shared view's new mount, made by the host (image.c). */
        int r = sys_move_mount(pl->etc_view_fd, "", AT_FDCWD, p, MOVE_MOUNT_F_EMPTY_PATH);
        int e = errno;
        close(pl->etc_view_fd);
        if (r < 0) {
            *what = "mount /etc view";
            return -e;
        }
        return 0;
    }
    /* lowerdir order: leftmost is on top, so the mask hides host files. */
    if (sbx_pathf(opts, sizeof(opts), "lowerdir=%s:/etc", pl->etc_mask) < 0) {
        *what = "etc overlay options";
        return -ENAMETOOLONG;
    }
    TRY("mount /etc overlay", mount("sbx-etc", p, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts));
    return 0;
}

/* A throwaway root on the host image: a tmpfs of its own, built in the
 * order of sbx_rootfs_build_base, then the image. */
static bool fresh_root(const sbx_rootfs_plan *pl)
{
    return pl->image_kind == SBX_IMAGE_HOST && pl->layer_img_fd < 0;
}

/* The writable layer and the root mount at plan->stage. */
static int build_root(const sbx_rootfs_plan *pl, const char **what)
{
    char opts[3 * PATH_MAX + 64];
    uint32_t base = pl->uid_base;
    unsigned long long kib = (unsigned long long)(pl->disk_bytes / 1024);
    if (fresh_root(pl)) {
        /* Throwaway run: the root itself is the size-limited tmpfs, and
         * /dev a directory of it (one tmpfs less to make and tear down per
         * launch, ~0.03 ms), so it is not nodev. Safe: the only device
         * nodes on it are build_dev's; the sandbox cannot make one (mknod
         * of a device needs CAP_MKNOD in the host's user namespace) nor
         * move one in from another filesystem (EXDEV), and volumes are
         * mounts of their own, nodev. */
        snprintf(opts, sizeof(opts), "size=%lluk,mode=0755,uid=%u,gid=%u", kib, base, base);
        TRY("mount root tmpfs", mount("sbx-root", pl->stage, "tmpfs", MS_NOSUID, opts));
        return 0;
    }
    /* Overlay root: upper and work dirs live in the layer (a tmpfs, or an
     * on-disk directory the caller keeps across runs). */
    const char *layer = pl->layer_mnt;
    if (pl->layer_img_fd >= 0) {
        int r = sbx_layer_attach(pl->layer_img_fd, pl->layer_mnt);
        if (r < 0) {
            *what = "attach on-disk layer";
            return r;
        }
        close(pl->layer_img_fd);
    } else {
        snprintf(opts, sizeof(opts), "size=%lluk,mode=0755", kib);
        TRY("mount layer tmpfs", mount("sbx-layer", pl->layer_mnt, "tmpfs", MS_NOSUID | MS_NODEV, opts));
    }
    char upper[PATH_MAX], work[PATH_MAX];
    sbx_pathf(upper, sizeof(upper), "%s/upper", layer);
    sbx_pathf(work, sizeof(work), "%s/work", layer);
    TRY("mkdir layer upper", mkdir_owned(upper, 0755, base, base));
    if (mkdir(work, 0700) < 0 && errno != EEXIST)
        TRY("mkdir layer work", -1);
    const char *lower = pl->image_kind == SBX_IMAGE_DIR ? pl->image_dir : pl->empty_dir;
    if (sbx_pathf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work) < 0) {
        *what = "root overlay options";
        return -ENAMETOOLONG;
    }
    /* nodev: a directory image may ship device nodes (an image exported
     * from anywhere can hold "disk" b 8 0 with mode 0666), and the host's
     * devices would answer them. Only /dev, its own mount, has nodes. */
    TRY("mount root overlay", mount("sbx-root", pl->stage, "overlay", MS_NOSUID | MS_NODEV, opts));
    return 0;
}

/* The skeleton dirs, /dev and /proc of the new root. */
static int build_skeleton(const sbx_rootfs_plan *pl, bool fresh, const char **what)
{
    char p[PATH_MAX];
    uint32_t base = pl->uid_base;
    int r;
    const struct { const char *path; mode_t mode; uint32_t owner; } dirs[] = {
        {"tmp", 01777, 0}, {"home", 0755, 0}, {pl->user_home, 0755, SBX_USER_UID}, {"root", 0700, 0},
        {"run", 0755, 0}, {"var", 0755, 0}, {"var/tmp", 01777, 0}, {"mnt", 0755, 0},
    };
    /* A fresh tmpfs root has none of them: each is made directly owned by
     * root inside (fsuid), one syscall instead of lstat, mkdir, chown.
     * Safe: a non-zero fsuid only lowers privilege (the file capabilities
     * are dropped until fsuid 0 is set back, right after). */
    /* Relative to the root itself: the run dir's parents may be closed
     * to the unprivileged fsuid (a run dir under /root, say). */
    int stage_fd = -1;
    if (fresh) {
        TRY("open new root", stage_fd = open(pl->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        setfsgid(base);
        setfsuid(base);
    }
    for (size_t i = 0; i < SBX_ARRAY_LEN(dirs); i++) {
        struct stat st;
        sbx_pathf(p, sizeof(p), "%s/%s", pl->stage, dirs[i].path);
        if (fresh) {
            if (mkdirat(stage_fd, dirs[i].path, dirs[i].mode) < 0) {
                r = -errno;
                setfsuid(0);
                setfsgid(0);
                close(stage_fd);
                *what = "make skeleton dir";
                return r;
            }
            continue;
        }
        if (lstat(p, &st) == 0)
            continue; /* image or earlier layer has it: leave as is */
        TRY("make skeleton dir", mkdir_owned(p, dirs[i].mode, base + dirs[i].owner, base + dirs[i].owner));
    }
    if (fresh) {
        setfsuid(0);
        setfsgid(0);
        close(stage_fd);
        sbx_pathf(p, sizeof(p), "%s/%s", pl->stage, pl->user_home);
        TRY("own home dir", chown(p, base + SBX_USER_UID, base + SBX_USER_UID));
    }
    if ((r = build_dev(pl->stage, base, !fresh, what)) < 0)
        return r;
    return build_proc(pl->stage, what);
}

int sbx_rootfs_build_base(const sbx_rootfs_plan *pl, const char **what)
{
    if (!fresh_root(pl)) {
        *what = "build the base of a root that is not a fresh tmpfs";
        return -EINVAL;
    }
    /* Nothing we mount from here on may propagate back to the host. */
    TRY("make mounts private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    /* The engine makes the stage dir too, maybe not yet (first launch). */
    int r = sbx_mkdir_p(pl->stage, 0711);
    if (r < 0) {
        *what = "create the stage dir";
        return r;
    }
    if ((r = build_root(pl, what)) < 0)
        return r;
    return build_skeleton(pl, true, what);
}

int sbx_rootfs_build(const sbx_rootfs_plan *pl, bool base_built, const char **what)
{
    uint32_t base = pl->uid_base;
    int r;
    bool fresh = fresh_root(pl);
    if (fresh && !base_built && (r = sbx_rootfs_build_base(pl, what)) < 0)
        return r;
    if (!fresh) {
        /* Nothing we mount from here on may propagate back to the host. */
        TRY("make mounts private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
        if ((r = build_root(pl, what)) < 0)
            return r;
        /* A tmpfs root was mounted owned by root inside (uid=, gid=). */
        TRY("chown root", chown(pl->stage, base, base));
    }
    if (pl->image_kind == SBX_IMAGE_HOST && (r = build_host_image(pl, what)) < 0)
        return r;
    if (!fresh && (r = build_skeleton(pl, false, what)) < 0)
        return r;
    if (pl->gpu && (r = build_gpu(pl, what)) < 0)
        return r;

    if (pl->nvol) {
        int root_fd = open(pl->stage, O_PATH | O_DIRECTORY | O_CLOEXEC);
        TRY("open new root", root_fd);
        for (int i = 0; i < pl->nvol; i++) {
            int mp = open_mountpoint(root_fd, pl->vol[i].guest, pl->vol[i].is_dir, base + SBX_USER_UID,
                                     base + SBX_USER_UID);
            if (mp < 0) {
                *what = "volume mount point";
                r = -errno;
                close(root_fd);
                return r;
            }
            /* Read-only is a mount attribute applied to the whole tree,
             * not a flag the sandbox could remount away (it has no mount
             * syscalls and no privilege over this mount namespace). */
            uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (pl->vol[i].ro ? MOUNT_ATTR_RDONLY : 0);
            r = bind_tree(pl->vol[i].host, mp, NULL, attrs);
            int e = errno;
            close(mp);
            if (r < 0) {
                close(root_fd);
                *what = "bind volume";
                return -e;
            }
        }
        close(root_fd);
    }

    return 0;
}

int sbx_rootfs_enter(const sbx_rootfs_plan *pl, const char **what)
{
    /* Enter the new root; the old one is detached so no path leads back
     * (see sbx_rootfs_detach). */
    TRY("chdir new root", chdir(pl->stage));
    TRY("pivot_root", (int)syscall(SYS_pivot_root, ".", "."));
    return 0;
}

/* Detaching the old root costs an RCU grace period, time spent waiting
 * (~0.05-0.1 ms in a VM), not working. So a helper task does it while the
 * child goes on with the rest of its setup: it shares the child's memory
 * (CLONE_VM: nothing copied) and has a copy of its cwd, the new root, on
 * which pivot_root stacked the old root. Until it is done, only lookups
 * below / are safe, and those see the new root (a mount stacked on a
 * directory is crossed when entering it from its parent, never when
 * starting there); sbx_rootfs_finish waits for it before anything else.
 * Its exit status is 0 or the errno. */
static _Alignas(16) char detach_stack[8192];

static int detach_old_root(void *arg)
{
    (void)arg;
    long r = syscall(SYS_umount2, ".", MNT_DETACH);
    syscall(SYS_exit, r < 0 ? (errno & 0xff ? errno & 0xff : EIO) : 0);
    return 0;
}

pid_t sbx_rootfs_detach(void)
{
    /* Exit signal 0: only sbx_rootfs_finish reaps it (init's own reaper
     * never sees it). */
    pid_t pid = clone(detach_old_root, detach_stack + sizeof(detach_stack), CLONE_VM, NULL);
    if (pid < 0) /* cannot hand it over: do it here */
        return umount2(".", MNT_DETACH) < 0 ? -errno : 0;
    return pid;
}

int sbx_rootfs_finish(pid_t detacher, const char **what)
{
    int st = 0;
    if (detacher > 0)
        while (waitpid(detacher, &st, __WALL) < 0)
            if (errno != EINTR) {
                *what = "wait for the old root's detach";
                return -errno;
            }
    if (detacher < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        *what = "detach old root";
        return detacher < 0 ? detacher : WIFEXITED(st) ? -WEXITSTATUS(st) : -EIO;
    }
    TRY("chdir /", chdir("/"));
    return 0;
}
