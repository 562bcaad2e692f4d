/* Framing for the control sockets between the host and a sandbox's init:
 * one SOCK_SEQPACKET message per request, file descriptors attached. */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sbx_msg_sendv(int fd, const struct iovec *iov, int niov, const int *fds, int nfds)
{
    size_t len = 0;
    for (int i = 0; i < niov; i++)
        len += iov[i].iov_len;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)niov};
    if (nfds > 8)
        return -EINVAL;
    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n >= 0)
            return (size_t)n == len ? 0 : -EMSGSIZE;
        if (errno != EINTR)
            return -errno;
    }
}

int sbx_msg_send(int fd, const void *msg, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    return sbx_msg_sendv(fd, &iov, 1, fds, nfds);
}

ssize_t sbx_msg_recvv(int fd, struct iovec *iov, int niov, int *fds, int *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    int want = nfds ? *nfds : 0;
    if (nfds)
        *nfds = 0;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < got; i++) {
            if (nfds && *nfds < want)
                fds[(*nfds)++] = in[i];
            else
                close(in[i]); /* more than asked for: never leak them */
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (int i = 0; nfds && i < *nfds; i++)
            close(fds[i]);
        if (nfds)
            *nfds = 0;
        return -EMSGSIZE;
    }
    return n;
}

ssize_t sbx_msg_recv(int fd, void *buf, size_t cap, int *fds, int *nfds)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    return sbx_msg_recvv(fd, &iov, 1, fds, nfds);
}
