/* envd's filesystem.Filesystem service (shared/protocols/e2b.md §3): Stat,
 * ListDir, MakeDir, Move, Remove, WatchDir.
 *
 * Paths are opened inside the sandbox as the acting user (sbx_sandbox_open
 * and friends), so permissions and symlinks resolve as the sandbox sees
 * them; the host then only reads what such an fd gives (fstat, readdir,
 * readlink of a single name, inotify on the open directory), never
 * following a path of the sandbox's by itself. */
#include "e2b_internal.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LIST_MAX_ENTRIES 100000
#define WATCH_MAX_DIRS 4096
#define KEEPALIVE_MAX_S 50

/* Go's os.FileMode.String(), which envd reports as "permissions". */
static void go_mode_string(mode_t m, char out[16])
{
    char *o = out;
    if (S_ISDIR(m))
        *o++ = 'd';
    if (S_ISLNK(m))
        *o++ = 'L';
    if (S_ISBLK(m) || S_ISCHR(m))
        *o++ = 'D';
    if (S_ISFIFO(m))
        *o++ = 'p';
    if (S_ISSOCK(m))
        *o++ = 'S';
    if (m & S_ISUID)
        *o++ = 'u';
    if (m & S_ISGID)
        *o++ = 'g';
    if (S_ISCHR(m))
        *o++ = 'c';
    if (m & S_ISVTX)
        *o++ = 't';
    if (o == out)
        *o++ = '-';
    static const char rwx[] = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        *o++ = (m & (1u << (8 - i))) ? rwx[i] : '-';
    *o = '\0';
}

static const char *file_type(mode_t m)
{
    return S_ISREG(m) ? "FILE_TYPE_FILE" : S_ISDIR(m) ? "FILE_TYPE_DIRECTORY" : "FILE_TYPE_UNSPECIFIED";
}

/* EntryInfo as envd builds it: for a symlink, type and mode are the
 * target's (unspecified when it does not resolve), the rest the link's. */
static json_t *entry_json(const sbx_sandbox *sbx, const char *path, const struct stat *st, const struct stat *target,
                          const char *link_target)
{
    char name[NAME_MAX + 2], perms[16], mtime[40], owner[16], group[16], size[24], p[PATH_MAX];
    const char *base = strrchr(path, '/');
    snprintf(name, sizeof(name), "%s", base && base[1] ? base + 1 : path);
    snprintf(p, sizeof(p), "%s", path);
    sbx_utf8_sanitize(name);
    sbx_utf8_sanitize(p);
    go_mode_string(st->st_mode, perms);
    sbx_rfc3339(mtime, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    e2b_id_name(sbx_sandbox_guest_id(sbx, st->st_uid), owner);
    e2b_id_name(sbx_sandbox_guest_id(sbx, st->st_gid), group);
    snprintf(size, sizeof(size), "%lld", (long long)st->st_size);
    const struct stat *t = S_ISLNK(st->st_mode) ? target : st;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "name", name, "type",
                          t ? file_type(t->st_mode) : "FILE_TYPE_UNSPECIFIED", "path", p, "size", size, "mode",
                          (json_int_t)(t ? t->st_mode & 0777 : 0), "permissions", perms, "owner", owner, "group", group,
                          "modifiedTime", mtime);
    if (o && link_target) {
        char lt[PATH_MAX];
        snprintf(lt, sizeof(lt), "%s", link_target);
        sbx_utf8_sanitize(lt);
        json_object_set_new(o, "symlinkTarget", json_string(lt));
    }
    return o;
}

/* The absolute, cleaned target of the symlink `name` in dirfd (or of the
 * O_PATH fd itself when name is ""), which sits at path. */
static int link_target(int dirfd, const char *name, const char *path, char *out, size_t len)
{
    char raw[PATH_MAX], dir[PATH_MAX];
    ssize_t n = readlinkat(dirfd, name, raw, sizeof(raw) - 1);
    if (n < 0)
        return -1;
    raw[n] = '\0';
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    return e2b_clean_path(raw, dir, out, len);
}

/* stat of what path leads to, resolved inside the sandbox as the user. */
static int target_stat(e2b_call *c, const char *path, struct stat *st)
{
    sbx_err err = {0};
    int fd = sbx_sandbox_open(c->live->sb, path, O_PATH, 0, c->user, 0, &err);
    if (fd < 0)
        return -1;
    int r = fstat(fd, st);
    close(fd);
    return r;
}

/* EntryInfo of path (already cleaned). */
static json_t *stat_path(e2b_call *c, const char *path, sbx_connect_err *e)
{
    sbx_err err = {0};
    int fd = sbx_sandbox_open(c->live->sb, path, O_PATH | O_NOFOLLOW, 0, c->user, 0, &err);
    if (fd < 0) {
        e2b_fs_error(e, &err);
        return NULL;
    }
    struct stat st, tst;
    char target[PATH_MAX];
    bool have_target = false, have_tst = false;
    if (fstat(fd, &st) < 0) {
        sbx_connect_fail(e, SBX_CONNECT_INTERNAL, "stat '%s': %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISLNK(st.st_mode)) {
        have_target = link_target(fd, "", path, target, sizeof(target)) == 0;
        have_tst = target_stat(c, path, &tst) == 0;
    }
    close(fd);
    json_t *j = entry_json(c->live->sb, path, &st, have_tst ? &tst : NULL, have_target ? target : NULL);
    if (!j)
        sbx_connect_fail(e, SBX_CONNECT_INTERNAL, "out of memory");
    return j;
}

static int clean(e2b_call *c, json_t *msg, const char *field, char *out, sbx_connect_err *e)
{
    json_t *v = json_object_get(msg, field);
    if (v && !json_is_string(v))
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "%s must be a string", field);
    const char *s = json_string_value(v);
    if (e2b_clean_path(s ? s : "", c->home, out, PATH_MAX) < 0)
        return sbx_connect_fail(e, SBX_CONNECT_INVALID_ARGUMENT, "%s is too long", field);
    return 0;
}

/* Reads the unary request; on failure the reply is set and -1 returned. */
static int read_unary(const sbx_http_req *req, json_t **msg, sbx_http_resp *resp)
{
    sbx_connect_err e = {0};
    int status;
    if (sbx_connect_read_request(req, false, msg, &e, &status) == 0)
        return 0;
    sbx_connect_reply_error(resp, &e);
    if (status)
        resp->status = status;
    return -1;
}

static void finish(sbx_http_resp *resp, json_t *reply, const sbx_connect_err *e)
{
    if (reply)
        sbx_connect_reply(resp, reply);
    else
        sbx_connect_reply_error(resp, e);
}

static void m_stat(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg, *reply = NULL, *entry;
    if (read_unary(req, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    char path[PATH_MAX];
    if (clean(c, msg, "path", path, &e) == 0 && (entry = stat_path(c, path, &e)))
        reply = json_pack("{s:o}", "entry", entry);
    json_decref(msg);
    finish(resp, reply, &e);
}

/* ---- ListDir ---------------------------------------------------------------- */

struct walk {
    e2b_call *c;
    json_t *entries;
    unsigned depth;
    sbx_connect_err *e;
};

/* Lists the directory open at fd (which it closes), found at path. */
static int walk_dir(struct walk *w, int fd, const char *path, unsigned level)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return sbx_connect_fail(w->e, SBX_CONNECT_INTERNAL, "error reading directory %s: %s", path, strerror(errno));
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (json_array_size(w->entries) >= LIST_MAX_ENTRIES) {
            rc = sbx_connect_fail(w->e, SBX_CONNECT_RESOURCE_EXHAUSTED, "more than %d entries: list with a smaller depth",
                                  LIST_MAX_ENTRIES);
            break;
        }
        char child[PATH_MAX];
        if (snprintf(child, sizeof(child), "%s%s%s", path, strcmp(path, "/") ? "/" : "", de->d_name) >=
            (int)sizeof(child))
            continue;
        struct stat st, tst;
        /* One name in the open directory, not followed: stays in the sandbox. */
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        char target[PATH_MAX];
        bool have_target = false, have_tst = false;
        if (S_ISLNK(st.st_mode)) {
            have_target = link_target(dirfd(d), de->d_name, child, target, sizeof(target)) == 0;
            have_tst = target_stat(w->c, child, &tst) == 0;
        }
        json_array_append_new(w->entries, entry_json(w->c->live->sb, child, &st, have_tst ? &tst : NULL,
                                                     have_target ? target : NULL));
        if (S_ISDIR(st.st_mode) && level < w->depth) {
            /* Deeper levels are opened as the user too; ones the user may
             * not read are listed but not entered. */
            sbx_err err = {0};
            int cfd = sbx_sandbox_open(w->c->live->sb, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, w->c->user, 0,
                                       &err);
            if (cfd >= 0)
                rc = walk_dir(w, cfd, child, level + 1);
        }
    }
    if (rc == 0 && errno)
        rc = sbx_connect_fail(w->e, SBX_CONNECT_INTERNAL, "error reading directory %s: %s", path, strerror(errno));
    closedir(d);
    return rc;
}

static void m_list_dir(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg, *reply = NULL;
    if (read_unary(req, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    char path[PATH_MAX];
    json_t *jd = json_object_get(msg, "depth");
    long long depth = json_is_integer(jd) ? json_integer_value(jd) : 1;
    if (depth <= 0)
        depth = 1; /* envd: 0 means the directory itself */
    if (clean(c, msg, "path", path, &e) == 0) {
        sbx_err err = {0};
        int fd = sbx_sandbox_open(c->live->sb, path, O_RDONLY | O_DIRECTORY, 0, c->user, 0, &err);
        if (fd < 0) {
            e2b_fs_error(&e, &err);
            if (err.sys_errno == ENOTDIR)
                sbx_connect_fail(&e, SBX_CONNECT_INVALID_ARGUMENT, "path is not a directory: %s", path);
        } else {
            struct walk w = {c, json_array(), depth > 1000 ? 1000 : (unsigned)depth, &e};
            if (walk_dir(&w, fd, path, 1) == 0)
                reply = json_pack("{s:o}", "entries", w.entries);
            else
                json_decref(w.entries);
        }
    }
    json_decref(msg);
    finish(resp, reply, &e);
}

/* ---- MakeDir, Move, Remove -------------------------------------------------- */

static void m_make_dir(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg, *reply = NULL, *entry;
    if (read_unary(req, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    char path[PATH_MAX];
    if (clean(c, msg, "path", path, &e) == 0) {
        struct stat st;
        sbx_err err = {0};
        if (target_stat(c, path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                sbx_connect_fail(&e, SBX_CONNECT_ALREADY_EXISTS, "directory already exists: %s", path);
            else
                sbx_connect_fail(&e, SBX_CONNECT_INVALID_ARGUMENT, "path already exists but it is not a directory: %s",
                                 path);
        } else if (sbx_sandbox_mkdir(c->live->sb, path, 0755, c->user, SBX_FS_MKDIRS, &err) < 0) {
            e2b_fs_error(&e, &err);
        } else if ((entry = stat_path(c, path, &e))) {
            reply = json_pack("{s:o}", "entry", entry);
        }
    }
    json_decref(msg);
    finish(resp, reply, &e);
}

static void m_move(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg, *reply = NULL, *entry;
    if (read_unary(req, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    char from[PATH_MAX], to[PATH_MAX];
    if (clean(c, msg, "source", from, &e) == 0 && clean(c, msg, "destination", to, &e) == 0) {
        sbx_err err = {0};
        if (sbx_sandbox_rename(c->live->sb, from, to, c->user, SBX_FS_MKDIRS, &err) < 0)
            e2b_fs_error(&e, &err);
        else if ((entry = stat_path(c, to, &e)))
            reply = json_pack("{s:o}", "entry", entry);
    }
    json_decref(msg);
    finish(resp, reply, &e);
}

static void m_remove(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg, *reply = NULL;
    if (read_unary(req, &msg, resp) < 0)
        return;
    sbx_connect_err e = {0};
    char path[PATH_MAX];
    if (clean(c, msg, "path", path, &e) == 0) {
        sbx_err err = {0};
        if (sbx_sandbox_remove(c->live->sb, path, c->user, &err) < 0)
            e2b_fs_error(&e, &err);
        else
            reply = json_object();
    }
    json_decref(msg);
    finish(resp, reply, &e);
}

/* ---- WatchDir ----------------------------------------------------------------
 * inotify on directories opened inside the sandbox as the user (the watch
 * is added through /proc/self/fd, so the host never resolves the path).
 * Event names are relative to the watched directory, as envd's. */

struct watch {
    e2b_sandbox *sb;   /* referenced; sb->streams counts this stream */
    int ifd;
    int nwd;
    struct { int wd; char *rel; } dirs[WATCH_MAX_DIRS];
    bool recursive;
    unsigned keepalive_s;
    uint64_t deadline_us;
    e2b_call call;     /* for adding subdirectories: user only (no live sandbox kept) */
    char root[PATH_MAX];
    char user[8];
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | \
                    IN_MOVE_SELF | IN_ONLYDIR)

/* Watches the directory open at fd (closed here) as rel ("" for the root). */
static int watch_add(struct watch *w, int fd, const char *rel)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int wd = w->nwd < WATCH_MAX_DIRS ? inotify_add_watch(w->ifd, proc, WATCH_MASK) : -1;
    int saved = errno;
    close(fd);
    if (wd < 0) {
        errno = w->nwd < WATCH_MAX_DIRS ? saved : ENOSPC;
        return -1;
    }
    for (int i = 0; i < w->nwd; i++)
        if (w->dirs[i].wd == wd)
            return 0; /* the same directory again */
    w->dirs[w->nwd].wd = wd;
    w->dirs[w->nwd].rel = strdup(rel);
    w->nwd++;
    return 0;
}

/* Adds the directories below the one open at fd, as the user (recursive). */
static void watch_tree(struct watch *w, sbx_sandbox *sbx, const char *path, const char *rel, int depth)
{
    sbx_err err = {0};
    int fd = sbx_sandbox_open(sbx, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, w->user, 0, &err);
    if (fd < 0)
        return;
    int lfd = dup(fd);
    if (watch_add(w, fd, rel) < 0 || lfd < 0 || depth > 32) {
        if (lfd >= 0)
            close(lfd);
        return;
    }
    DIR *d = fdopendir(lfd);
    if (!d) {
        close(lfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char child[PATH_MAX], crel[PATH_MAX];
        if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child) ||
            snprintf(crel, sizeof(crel), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= (int)sizeof(crel))
            continue;
        watch_tree(w, sbx, child, crel, depth + 1);
    }
    closedir(d);
}

static void watch_free(struct watch *w)
{
    for (int i = 0; i < w->nwd; i++)
        free(w->dirs[i].rel);
    if (w->ifd >= 0)
        close(w->ifd);
    pthread_mutex_lock(&w->sb->plock);
    w->sb->streams--;
    pthread_cond_broadcast(&w->sb->pcond);
    pthread_mutex_unlock(&w->sb->plock);
    e2b_sandbox_put(w->sb);
    free(w);
}

static int send_event(sbx_http_stream *hs, const char *name, const char *type)
{
    char n[PATH_MAX];
    snprintf(n, sizeof(n), "%s", name);
    sbx_utf8_sanitize(n);
    json_t *j = json_pack("{s:{s:s, s:s}}", "filesystem", "name", n, "type", type);
    int r = j ? sbx_connect_stream_send(hs, 0, j) : 0;
    json_decref(j);
    return r;
}

static void watch_stream(void *ud, sbx_http_stream *hs)
{
    struct watch *w = ud;
    json_t *start = json_pack("{s:{}}", "start");
    int r = sbx_connect_stream_send(hs, 0, start);
    json_decref(start);
    uint64_t ka = (uint64_t)w->keepalive_s * 1000000u, next_ka = mono_us() + ka;
    _Alignas(struct inotify_event) char buf[16384];
    sbx_connect_err e = {0};
    while (r == 0) {
        uint64_t now = mono_us();
        if (w->deadline_us && now >= w->deadline_us) {
            sbx_connect_fail(&e, SBX_CONNECT_DEADLINE_EXCEEDED, "the watch ran past its timeout (Connect-Timeout-Ms)");
            break;
        }
        if (now >= next_ka) {
            json_t *k = json_pack("{s:{}}", "keepalive");
            r = sbx_connect_stream_send(hs, 0, k);
            json_decref(k);
            next_ka = now + ka;
            continue;
        }
        uint64_t wake = w->deadline_us && w->deadline_us < next_ka ? w->deadline_us : next_ka;
        struct pollfd pf[2] = {{w->ifd, POLLIN, 0}, {w->sb->dead_fd, POLLIN, 0}};
        int pr = poll(pf, 2, (int)((wake - now) / 1000u) + 1);
        if (pr < 0 && errno != EINTR)
            break;
        if (pf[1].revents) {
            sbx_connect_fail(&e, SBX_CONNECT_UNAVAILABLE, "the sandbox was killed");
            break;
        }
        if (!(pf[0].revents & POLLIN))
            continue;
        ssize_t n = read(w->ifd, buf, sizeof(buf));
        bool root_gone = false;
        for (char *p = buf; n > 0 && p < buf + n && r == 0;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            const char *rel = NULL;
            for (int i = 0; i < w->nwd; i++)
                if (w->dirs[i].wd == ev->wd)
                    rel = w->dirs[i].rel;
            if (!rel)
                continue;
            if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) && !*rel) {
                root_gone = true;
                continue;
            }
            if (!ev->len)
                continue;
            char name[PATH_MAX];
            snprintf(name, sizeof(name), "%s%s%s", rel, *rel ? "/" : "", ev->name);
            /* fsnotify's mapping, which envd's event types follow. */
            const char *type = ev->mask & (IN_CREATE | IN_MOVED_TO) ? "EVENT_TYPE_CREATE"
                               : ev->mask & IN_MODIFY                 ? "EVENT_TYPE_WRITE"
                               : ev->mask & IN_DELETE                 ? "EVENT_TYPE_REMOVE"
                               : ev->mask & IN_MOVED_FROM             ? "EVENT_TYPE_RENAME"
                               : ev->mask & IN_ATTRIB                 ? "EVENT_TYPE_CHMOD"
                                                                      : NULL;
            if (!type)
                continue;
            r = send_event(hs, name, type);
            if (w->recursive && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && (ev->mask & IN_ISDIR)) {
                char full[PATH_MAX * 2];
                snprintf(full, sizeof(full), "%s/%s", w->root, name);
                e2b_sandbox *alive = e2b_sandbox_get(w->sb->id);
                sbx_live *l = alive ? sbx_server_acquire(w->call.srv, E2B_NS, w->sb->id) : NULL;
                if (l) {
                    watch_tree(w, l->sb, full, name, 1);
                    sbx_server_release(w->call.srv, l);
                }
                if (alive)
                    e2b_sandbox_put(alive);
            }
        }
        next_ka = mono_us() + ka;
        if (root_gone) {
            sbx_connect_fail(&e, SBX_CONNECT_NOT_FOUND, "the watched directory was removed");
            break;
        }
    }
    if (r == 0)
        sbx_connect_stream_end(hs, e.code ? &e : NULL);
    watch_free(w);
}

static void m_watch_dir(e2b_call *c, const sbx_http_req *req, sbx_http_resp *resp)
{
    json_t *msg;
    sbx_connect_err e = {0};
    int status;
    if (sbx_connect_read_request(req, true, &msg, &e, &status) < 0) {
        if (status) {
            sbx_connect_reply_error(resp, &e);
            resp->status = status;
        } else {
            sbx_connect_reply_stream_error(resp, &e);
        }
        return;
    }
    char path[PATH_MAX];
    struct watch *w = NULL;
    if (clean(c, msg, "path", path, &e) < 0)
        goto out;
    sbx_err err = {0};
    int fd = sbx_sandbox_open(c->live->sb, path, O_RDONLY | O_DIRECTORY, 0, c->user, 0, &err);
    if (fd < 0) {
        e2b_fs_error(&e, &err);
        if (err.sys_errno == ENOTDIR)
            sbx_connect_fail(&e, SBX_CONNECT_INVALID_ARGUMENT, "path %s is not a directory", path);
        goto out;
    }
    close(fd);
    w = calloc(1, sizeof(*w));
    if (!w) {
        sbx_connect_fail(&e, SBX_CONNECT_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    w->sb = e2b_sandbox_get(c->sb->id);
    w->recursive = json_is_true(json_object_get(msg, "recursive"));
    w->call = *c;
    w->call.live = NULL;
    snprintf(w->root, sizeof(w->root), "%s", path);
    snprintf(w->user, sizeof(w->user), "%s", c->user);
    uint64_t t = sbx_connect_timeout_ms(req);
    w->deadline_us = t ? mono_us() + t * 1000u : 0;
    const char *k = sbx_http_header(req, "Keepalive-Ping-Interval");
    long ka = k ? strtol(k, NULL, 10) : KEEPALIVE_MAX_S;
    w->keepalive_s = ka >= 1 && ka <= KEEPALIVE_MAX_S ? (unsigned)ka : KEEPALIVE_MAX_S;
    if (w->ifd < 0 || !w->sb) {
        sbx_connect_fail(&e, w->sb ? SBX_CONNECT_RESOURCE_EXHAUSTED : SBX_CONNECT_UNAVAILABLE, "cannot watch: %s",
                         w->sb ? strerror(errno) : "the sandbox is stopping");
        if (w->ifd >= 0)
            close(w->ifd);
        if (w->sb)
            e2b_sandbox_put(w->sb);
        free(w);
        w = NULL;
        goto out;
    }
    pthread_mutex_lock(&w->sb->plock);
    w->sb->streams++; /* a kill waits for this stream to let go of the sandbox's inodes */
    bool dying = __atomic_load_n(&w->sb->dead, __ATOMIC_RELAXED); /* a kill that already waited */
    pthread_mutex_unlock(&w->sb->plock);
    if (dying) {
        sbx_connect_fail(&e, SBX_CONNECT_UNAVAILABLE, "the sandbox is stopping");
        watch_free(w);
        w = NULL;
        goto out;
    }
    if (w->recursive) {
        watch_tree(w, c->live->sb, path, "", 0);
    } else {
        fd = sbx_sandbox_open(c->live->sb, path, O_RDONLY | O_DIRECTORY, 0, c->user, 0, &err);
        if (fd >= 0)
            watch_add(w, fd, "");
    }
    if (w->nwd == 0) {
        sbx_connect_fail(&e, SBX_CONNECT_INTERNAL, "cannot watch %s: %s", path, strerror(errno));
        watch_free(w);
        w = NULL;
    }
out:
    json_decref(msg);
    if (w)
        sbx_connect_reply_stream(resp, watch_stream, w);
    else
        sbx_connect_reply_stream_error(resp, &e);
}

bool e2b_fs_rpc(e2b_call *c, const char *method, const sbx_http_req *req, sbx_http_resp *resp)
{
    static const struct { const char *name; void (*fn)(e2b_call *, const sbx_http_req *, sbx_http_resp *); } m[] = {
        {"Stat", m_stat},       {"ListDir", m_list_dir}, {"MakeDir", m_make_dir},
        {"Move", m_move},       {"Remove", m_remove},    {"WatchDir", m_watch_dir},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strcmp(method, m[i].name) == 0) {
            m[i].fn(c, req, resp);
            return true;
        }
    if (strcmp(method, "CreateWatcher") == 0 || strcmp(method, "GetWatcherEvents") == 0 ||
        strcmp(method, "RemoveWatcher") == 0) {
        sbx_connect_err e;
        sbx_connect_fail(&e, SBX_CONNECT_UNIMPLEMENTED, "%s (polling watchers) is not supported: use WatchDir", method);
        sbx_connect_reply_error(resp, &e);
        return true;
    }
    return false;
}
