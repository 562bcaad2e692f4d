/* Images: resolving names to root trees, and the host image's /etc layer.
 *
 * The built-in image "host" shows the host's /usr, /bin, /lib* and /etc
 * read-only. /etc is an overlay of a small "mask" layer over the host's
 * /etc: the mask hides secrets (whiteouts over /etc/shadow and friends) and
 * supplies passwd/group with the sandbox users, so the host's files are
 * never copied or changed. The mask is rebuilt when the host's /etc moves.
 * There is one mask per name of the uid-1000 account ("user" by default).
 */
#include "internal.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int sbx_image_resolve(const sbx_engine *eng, const char *image, int *kind, char *dir, size_t dirlen,
                      sbx_err *err)
{
    struct stat st;
    if (!image || !*image || strcmp(image, "host") == 0) {
        *kind = SBX_IMAGE_HOST;
        dir[0] = '\0';
        return 0;
    }
    if (strchr(image, '/')) {
        if (image[0] != '/')
            return sbx_fail(err, SBX_E_INVALID, "image directory '%s' must be an absolute path", image);
        if (stat(image, &st) < 0 || !S_ISDIR(st.st_mode))
            return sbx_fail(err, SBX_E_NOTFOUND, "image directory '%s' does not exist", image);
        if (sbx_pathf(dir, dirlen, "%s", image) < 0)
            return sbx_fail(err, SBX_E_INVALID, "image path too long");
        *kind = SBX_IMAGE_DIR;
        return 0;
    }
    if (!sbx_valid_name(image))
        return sbx_fail(err, SBX_E_INVALID,
                        "image name '%s' is invalid (allowed: 'host', a name of [A-Za-z0-9_.-], or an absolute directory)",
                        image);
    if (sbx_pathf(dir, dirlen, "%s/%s", eng->image_dir, image) < 0)
        return sbx_fail(err, SBX_E_INVALID, "image path too long");
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return sbx_fail(err, SBX_E_NOTFOUND, "image '%s' not found (looked for %s; built-in: host)", image, dir);
    *kind = SBX_IMAGE_DIR;
    return 0;
}

/* Files under /etc that must not be visible in a sandbox. */
static const char *const etc_hidden[] = {
    "shadow", "shadow-", "gshadow", "gshadow-", "security/opasswd", "ssl/private", "sudoers", "sudoers.d",
    "krb5.keytab", "subuid-", "subgid-",
};

static int mask_stamp(char *buf, size_t len)
{
    /* The mask derives from these; any change in them rebuilds it. */
    static const char *const srcs[] = {"/etc", "/etc/passwd", "/etc/group", "/etc/ssh", "/etc/ssl"};
    size_t off = 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(srcs); i++) {
        struct stat st;
        long long s = 0, ns = 0, ino = 0;
        if (stat(srcs[i], &st) == 0) {
            s = (long long)st.st_mtim.tv_sec;
            ns = st.st_mtim.tv_nsec;
            ino = (long long)st.st_ino;
        }
        int n = snprintf(buf + off, len - off, "%s %lld.%09lld %lld\n", srcs[i], s, ns, ino);
        if (n < 0 || (size_t)n >= len - off)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Copies lines of a passwd/group file, dropping entries with id 1000 or
 * the name of the uid-1000 account, then appends that account's entry. */
static int write_ids_file(const char *src, const char *dst, const char *name, const char *own)
{
    size_t name_len = strlen(name);
    char *text = sbx_slurp(src, NULL);
    FILE *out = fopen(dst, "we");
    if (!out) {
        free(text);
        return -errno;
    }
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* name:x:ID:... */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        long id = c2 ? strtol(c2 + 1, NULL, 10) : -1;
        if (!c1 || ((size_t)(c1 - line) == name_len && strncmp(line, name, name_len) == 0) || id == SBX_USER_UID)
            continue;
        fprintf(out, "%s\n", line);
    }
    fputs(own, out);
    free(text);
    return fclose(out) == 0 ? 0 : -errno;
}

static int whiteout(const char *root, const char *rel)
{
    char path[PATH_MAX], dir[PATH_MAX];
    if (sbx_pathf(path, sizeof(path), "%s/%s", root, rel) < 0)
        return -ENAMETOOLONG;
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    int r = sbx_mkdir_p(dir, 0755);
    if (r < 0)
        return r;
    /* An overlayfs whiteout is a 0:0 character device. */
    if (mknod(path, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[PATH_MAX];
            if (sbx_pathf(sub, sizeof(sub), "%s/%s", path, e->d_name) < 0)
                continue;
            if (e->d_type == DT_DIR)
                rm_rf(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static int build_mask(const char *dir, const char *user)
{
    char p[PATH_MAX], entry[128];
    int r;
    if (mkdir(dir, 0755) < 0)
        return -errno;
    sbx_pathf(p, sizeof(p), "%s/passwd", dir);
    snprintf(entry, sizeof(entry), "%s:x:%d:%d:sandbox user:/home/%s:/bin/bash\n", user, SBX_USER_UID, SBX_USER_UID,
             user);
    if ((r = write_ids_file("/etc/passwd", p, user, entry)) < 0)
        return r;
    sbx_pathf(p, sizeof(p), "%s/group", dir);
    snprintf(entry, sizeof(entry), "%s:x:%d:\n", user, SBX_USER_UID);
    if ((r = write_ids_file("/etc/group", p, user, entry)) < 0)
        return r;
    static const struct { const char *name, *text; } files[] = {
        {"hostname", "sbx\n"},
        {"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
        {"resolv.conf", "# sbx: the sandbox has no network beyond loopback\n"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(files); i++) {
        sbx_pathf(p, sizeof(p), "%s/%s", dir, files[i].name);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        ssize_t n = write(fd, files[i].text, strlen(files[i].text));
        close(fd);
        if (n < 0)
            return -EIO;
    }
    for (size_t i = 0; i < SBX_ARRAY_LEN(etc_hidden); i++) {
        char host[PATH_MAX];
        struct stat st;
        sbx_pathf(host, sizeof(host), "/etc/%s", etc_hidden[i]);
        if (lstat(host, &st) == 0 && (r = whiteout(dir, etc_hidden[i])) < 0)
            return r;
    }
    /* SSH host private keys: every /etc/ssh/ssh_host_*_key. */
    DIR *d = opendir("/etc/ssh");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (strncmp(e->d_name, "ssh_host_", 9) == 0 && n > 4 && strcmp(e->d_name + n - 4, "_key") == 0) {
                char rel[300];
                snprintf(rel, sizeof(rel), "ssh/%s", e->d_name);
                if ((r = whiteout(dir, rel)) < 0) {
                    closedir(d);
                    return r;
                }
            }
        }
        closedir(d);
    }
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int sbx_etc_mask_ensure(const sbx_engine *eng, const char *user_name, char *mask, size_t masklen, sbx_err *err)
{
    char want[1024], have[1024] = "", stamp_path[PATH_MAX];
    /* One mask per name of the uid-1000 account; "user" keeps the plain
     * path. "u-" keeps other names clear of the ".stamp"/".new" siblings. */
    int n = strcmp(user_name, "user") == 0 ? snprintf(mask, masklen, "%s", eng->etc_mask)
                                           : snprintf(mask, masklen, "%s.u-%s", eng->etc_mask, user_name);
    if (n < 0 || (size_t)n >= masklen)
        return sbx_fail(err, SBX_E_INVALID, "etc mask path too long");
    if (mask_stamp(want, sizeof(want)) < 0)
        return sbx_fail(err, SBX_E_SYSTEM, "etc mask: stamp too long");
    sbx_pathf(stamp_path, sizeof(stamp_path), "%s.stamp", mask);
    if (sbx_read_file(stamp_path, have, sizeof(have), NULL) == 0 && strcmp(have, want) == 0)
        return 0;

    /* One builder at a time: launches that start together on a fresh run
     * dir all find no stamp, and two swaps would race (one rename failed
     * with ENOTEMPTY). The others wait here, then find the stamp current. */
    char lock_path[PATH_MAX];
    sbx_pathf(lock_path, sizeof(lock_path), "%s.lock", mask);
    int lk = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) < 0) {
        int e = errno;
        if (lk >= 0)
            close(lk);
        return sbx_fail_errno(err, e, "etc mask: lock %s", lock_path);
    }
    have[0] = '\0';
    if (sbx_read_file(stamp_path, have, sizeof(have), NULL) == 0 && strcmp(have, want) == 0) {
        close(lk); /* built by the launch we waited for */
        return 0;
    }
    int built = 0;

    /* Build aside, then swap in with one atomic exchange: sandboxes
     * starting meanwhile see the old or the new mask, never half of one
     * nor none. */
    char tmp[PATH_MAX];
    sbx_pathf(tmp, sizeof(tmp), "%s.new.%d", mask, (int)getpid());
    rm_rf(tmp);
    int r = build_mask(tmp, user_name);
    bool exchanged = false;
    if (r == 0 && !(exchanged = syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, mask, RENAME_EXCHANGE) == 0))
        r = errno == ENOENT && rename(tmp, mask) == 0 ? 0 : -errno; /* the first mask */
    /* The old mask (after an exchange) is retired, not removed: the /etc
     * of sandboxes started from it still reads it (see sbx_etc_masks_gc). */
    char retired[PATH_MAX];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!exchanged || sbx_pathf(retired, sizeof(retired), "%s.retired.%lld.%09ld", mask, (long long)now.tv_sec,
                                now.tv_nsec) < 0 || rename(tmp, retired) < 0)
        rm_rf(tmp);
    if (r < 0) {
        close(lk);
        return sbx_fail_errno(err, -r, "etc mask: build and swap in %s", mask);
    }
    built = 1;
    char stamp_tmp[PATH_MAX];
    sbx_pathf(stamp_tmp, sizeof(stamp_tmp), "%s.%d", stamp_path, (int)getpid());
    FILE *f = fopen(stamp_tmp, "we");
    if (f) {
        fputs(want, f);
        if (fclose(f) == 0)
            rename(stamp_tmp, stamp_path);
        else
            unlink(stamp_tmp);
    }
    sbx_etc_masks_gc(eng);
    close(lk);
    return built;
}

/* A mask that a rebuild replaced is kept as <mask>.retired.<time>: an
 * overlay reads its layers by name at each lookup, so the /etc of every
 * sandbox started from that mask still needs its files (removed, the
 * sandbox would see the host's passwd, hosts, resolv.conf and where its
 * secrets are). It goes once every live sandbox (a lock file in
 * <run>/sandboxes, made at its start) started over 2 s after the
 * retirement: a view is remade within a second of it. */
#define MASK_RETIRED_GRACE_S 2

void sbx_etc_masks_gc(const sbx_engine *eng)
{
    struct timespec oldest = {0, 0};
    bool live = false;
    DIR *d = opendir(eng->lock_dir);
    if (d) {
        struct dirent *e;
        struct stat st;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                (!live || st.st_mtim.tv_sec < oldest.tv_sec ||
                 (st.st_mtim.tv_sec == oldest.tv_sec && st.st_mtim.tv_nsec < oldest.tv_nsec))) {
                oldest = st.st_mtim;
                live = true;
            }
        closedir(d);
    }
    const char *name = base_name(eng->etc_mask);
    size_t nl = strlen(name);
    if (!(d = opendir(eng->run_dir)))
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *r = strstr(e->d_name, ".retired.");
        long long s;
        long ns;
        if (strncmp(e->d_name, name, nl) != 0 || !r || sscanf(r, ".retired.%lld.%ld", &s, &ns) != 2)
            continue;
        if (live && !(s + MASK_RETIRED_GRACE_S < (long long)oldest.tv_sec ||
                      (s + MASK_RETIRED_GRACE_S == (long long)oldest.tv_sec && ns < oldest.tv_nsec)))
            continue;
        char p[PATH_MAX];
        if (sbx_pathf(p, sizeof(p), "%s/%s", eng->run_dir, e->d_name) == 0)
            rm_rf(p);
    }
    closedir(d);
}

/* ---- the shared view: the mask's overlay, mounted once ----------------
 * Mounting the overlay of a mask over /etc in every sandbox cost ~0.07 ms
 * of a launch: the mount, its teardown, and lookups that start cold. So
 * each mask's overlay is mounted once, at <run>/etc-view/<mask>@<gen>,
 * with the symlink <run>/etc-view/<mask> naming the current one, and a
 * sandbox gets a new mount of it (open_tree: the same filesystem, its
 * own mount). Overlayfs keeps what it looked up and does not see the
 * host's later renames in /etc, so the view is remade with the mask and
 * once it is a second old: a sandbox sees the host's /etc as of at most a
 * second before its start (one with its own overlay saw it as of its
 * start, then through the same cache). A remade view replaces the old
 * one, which is unmounted; the sandboxes' mounts of it live on. '@' is in
 * no mask name (user names are [A-Za-z0-9_.-]). */
#define ETC_VIEW_MAX_AGE_NS 1000000000LL
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

/* Unmounts and removes the generations of `name` in dir but `keep`
 * (all of them for NULL); how many were mounted. */
static int view_drop_gens(const char *dir, const char *name, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t nl = name ? strlen(name) : 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *at = strchr(e->d_name, '@');
        if (!at || (name && ((size_t)(at - e->d_name) != nl || strncmp(e->d_name, name, nl) != 0)) ||
            (keep && strcmp(e->d_name, keep) == 0))
            continue;
        char p[PATH_MAX];
        if (sbx_pathf(p, sizeof(p), "%s/%s", dir, e->d_name) < 0)
            continue;
        if (umount2(p, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
            n++;
        rmdir(p);
    }
    closedir(d);
    return n;
}

/* Mounts a new view of mask as <dir>/<name>@<gen> and points <dir>/<name>
 * at it, then drops the others. Under the mask's lock. */
static int view_make(const char *dir, const char *name, const char *mask)
{
    char gen[PATH_MAX], tmp[PATH_MAX], link[PATH_MAX], opts[PATH_MAX + 32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (sbx_pathf(gen, sizeof(gen), "%s/%s@%d.%lld.%09ld", dir, name, (int)getpid(), (long long)now.tv_sec,
                  now.tv_nsec) < 0 ||
        sbx_pathf(tmp, sizeof(tmp), "%s/%s~%d", dir, name, (int)getpid()) < 0 ||
        sbx_pathf(link, sizeof(link), "%s/%s", dir, name) < 0 ||
        sbx_pathf(opts, sizeof(opts), "lowerdir=%s:/etc", mask) < 0)
        return -ENAMETOOLONG;
    if ((mkdir(dir, 0711) < 0 && errno != EEXIST) || mkdir(gen, 0755) < 0)
        return -errno;
    /* lowerdir order: leftmost is on top, so the mask hides host files. */
    if (mount("sbx-etc", gen, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) {
        int e = errno;
        rmdir(gen);
        return -e;
    }
    unlink(tmp);
    if (symlink(base_name(gen), tmp) < 0 || rename(tmp, link) < 0) {
        int e = errno;
        unlink(tmp);
        umount2(gen, MNT_DETACH | UMOUNT_NOFOLLOW);
        rmdir(gen);
        return -e;
    }
    view_drop_gens(dir, name, base_name(gen));
    return 0;
}

static bool view_fresh(const char *link)
{
    struct stat st;
    struct timespec now;
    if (lstat(link, &st) < 0 || !S_ISLNK(st.st_mode) || clock_gettime(CLOCK_REALTIME, &now) < 0)
        return false;
    long long age = (long long)(now.tv_sec - st.st_mtim.tv_sec) * 1000000000LL + (now.tv_nsec - st.st_mtim.tv_nsec);
    return age >= 0 && age < ETC_VIEW_MAX_AGE_NS;
}

int sbx_etc_view_clone(const sbx_engine *eng, const char *mask, bool remake)
{
    const char *name = base_name(mask);
    char link[PATH_MAX], lock_path[PATH_MAX];
    if (sbx_pathf(link, sizeof(link), "%s/%s", eng->etc_view_dir, name) < 0 ||
        sbx_pathf(lock_path, sizeof(lock_path), "%s.lock", mask) < 0)
        return -ENAMETOOLONG;
    if (remake || !view_fresh(link)) {
        /* One maker at a time (the mask's lock); those that waited find
         * it fresh. */
        int lk = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lk < 0 || flock(lk, LOCK_EX) < 0) {
            int e = errno;
            if (lk >= 0)
                close(lk);
            return -e;
        }
        int r = remake || !view_fresh(link) ? view_make(eng->etc_view_dir, name, mask) : 0;
        close(lk);
        if (r < 0)
            return r;
    }
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, link, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* A view being remade or dropped meanwhile leaves its bare directory:
     * take only the overlay. */
    struct statfs sf;
    struct mount_attr ma = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (fstatfs(fd, &sf) < 0 || sf.f_type != OVERLAYFS_SUPER_MAGIC ||
        syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &ma, sizeof(ma)) < 0) {
        close(fd);
        return -ESTALE;
    }
    return fd;
}

int sbx_etc_view_drop(const sbx_engine *eng)
{
    int n = view_drop_gens(eng->etc_view_dir, NULL, NULL);
    DIR *d = opendir(eng->etc_view_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(eng->etc_view_dir);
    return n;
}
