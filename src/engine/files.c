/* File operations inside a live sandbox, host side. The work is done by a
 * helper that init forks with the requesting user's credentials (init.c),
 * so everything the sandbox would refuse, this refuses too; an open file
 * comes back as an fd over the status channel. */
#include "internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FSOP_TIMEOUT_MS 30000

static const char *op_name(uint32_t op)
{
    switch (op) {
    case SBX_FSOP_OPEN: return "open";
    case SBX_FSOP_MKDIR: return "mkdir";
    case SBX_FSOP_RENAME: return "rename";
    default: return "remove";
    }
}

/* A relative path is taken from the user's home. */
static int guest_path(const char *path, const char *home, char *out, size_t len, sbx_err *err)
{
    if (!path || !*path)
        return sbx_fail(err, SBX_E_INVALID, "empty path");
    int n = path[0] == '/' ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s/%s", home, path);
    if (n < 0 || (size_t)n >= len)
        return sbx_fail(err, SBX_E_INVALID, "path '%.64s...' is too long (at most %zu bytes)", path, len - 1);
    return 0;
}

static int fsop(sbx_sandbox *sb, uint32_t op, const char *a, const char *b, int oflags, unsigned mode,
                const char *user, unsigned fsflags, int *fd_out, sbx_err *err)
{
    if (sb->dead || sb->init_pid <= 0)
        return sbx_fail(err, SBX_E_INVALID, "sandbox %s is not running", sb->id);
    uint32_t uid, gid;
    const char *home, *uname;
    if (sbx_parse_user(sb, user, &uid, &gid, &home, &uname, err) < 0)
        return -1;
    char pa[PATH_MAX], pb[PATH_MAX];
    if (guest_path(a, home, pa, sizeof(pa), err) < 0 || (b && guest_path(b, home, pb, sizeof(pb), err) < 0))
        return -1;
    size_t la = strlen(pa) + 1, lb = b ? strlen(pb) + 1 : 0;
    size_t len = sizeof(struct sbx_msg_fsop) + la + lb;
    /* On the heap, not in thread-local storage: a TLS block this size
     * made every process of the static sbx map and fault in its own. */
    struct sbx_msg_fsop *req = malloc(len);
    if (!req)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    *req = (struct sbx_msg_fsop){{SBX_MSG_FSOP, (uint32_t)(len - sizeof(req->h))}, op, uid, gid, oflags, mode,
                                 fsflags, b ? 2u : 1u};
    memcpy((char *)(req + 1), pa, la);
    if (b)
        memcpy((char *)(req + 1) + la, pb, lb);

    int chan[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0) {
        free(req);
        return sbx_fail_errno(err, errno, "socketpair");
    }
    pthread_mutex_lock(&sb->send_lock);
    int sr = sbx_msg_send(sb->ctl_fd, req, len, &chan[1], 1);
    pthread_mutex_unlock(&sb->send_lock);
    free(req);
    close(chan[1]);
    if (sr < 0) {
        close(chan[0]);
        return sbx_fail_errno(err, -sr, "sandbox %s: send file request", sb->id);
    }
    struct pollfd pf = {chan[0], POLLIN, 0};
    int pr;
    do
        pr = poll(&pf, 1, FSOP_TIMEOUT_MS);
    while (pr < 0 && errno == EINTR);
    _Alignas(8) char buf[64];
    int fds[1], nfds = 1;
    ssize_t n = pr > 0 ? sbx_msg_recv(chan[0], buf, sizeof(buf), fds, &nfds) : -ETIMEDOUT;
    close(chan[0]);
    const struct sbx_msg_fsres *r = (const void *)buf;
    if (n < (ssize_t)sizeof(*r) || r->h.type != SBX_MSG_FSRES) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        sbx_fail(err, SBX_E_SYSTEM, "sandbox %s: no answer to %s '%s' (%s)", sb->id, op_name(op), pa,
                 n == -ETIMEDOUT ? "timed out" : "sandbox gone");
        err->sys_errno = EIO;
        return -1;
    }
    if (r->err) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        int e = r->err;
        const char *why = e == EINVAL && op == SBX_FSOP_OPEN ? "not a regular file or directory" : strerror(e);
        if (b)
            sbx_fail(err, e == ENOENT ? SBX_E_NOTFOUND : SBX_E_INVALID, "%s '%s' to '%s': %s", op_name(op), pa, pb, why);
        else
            sbx_fail(err, e == ENOENT ? SBX_E_NOTFOUND : SBX_E_INVALID, "%s '%s': %s", op_name(op), pa, why);
        err->sys_errno = e;
        return -1;
    }
    if (fd_out) {
        if (nfds != 1)
            return sbx_fail(err, SBX_E_SYSTEM, "sandbox %s: open '%s' returned no file", sb->id, pa);
        *fd_out = fds[0];
    } else {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    }
    return 0;
}

int sbx_sandbox_open(sbx_sandbox *sb, const char *path, int flags, unsigned mode, const char *user, unsigned fsflags,
                     sbx_err *err)
{
    int fd = -1;
    if (fsop(sb, SBX_FSOP_OPEN, path, NULL, flags, mode, user, fsflags, &fd, err) < 0)
        return -1;
    return fd;
}

int sbx_sandbox_mkdir(sbx_sandbox *sb, const char *path, unsigned mode, const char *user, unsigned fsflags,
                      sbx_err *err)
{
    return fsop(sb, SBX_FSOP_MKDIR, path, NULL, 0, mode, user, fsflags, NULL, err);
}

int sbx_sandbox_rename(sbx_sandbox *sb, const char *from, const char *to, const char *user, unsigned fsflags,
                       sbx_err *err)
{
    return fsop(sb, SBX_FSOP_RENAME, from, to, 0, 0, user, fsflags, NULL, err);
}

int sbx_sandbox_remove(sbx_sandbox *sb, const char *path, const char *user, sbx_err *err)
{
    return fsop(sb, SBX_FSOP_REMOVE, path, NULL, 0, 0, user, 0, NULL, err);
}

uint32_t sbx_sandbox_guest_id(const sbx_sandbox *sb, uint32_t host_id)
{
    if (host_id >= sb->uid_base && host_id - sb->uid_base < sb->uid_count)
        return host_id - sb->uid_base;
    return 65534;
}
