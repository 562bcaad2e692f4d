/* Network namespaces: a new one for each sandbox, or an idle one from a
 * small pool in <run_dir>/netns that an earlier sandbox left as it found it.
 *
 * Why a pool: making a network namespace costs ~0.3 ms here, and its
 * teardown ~0.4-0.6 ms of a kworker's CPU (cleanup_net and its RCU waits)
 * that lands on the next launch; together that is a third of a short
 * `sbx run`.
 *
 * Why reuse is safe: the namespace belongs to the host's user namespace,
 * so nothing in a sandbox has CAP_NET_ADMIN over it: its interfaces,
 * addresses, routes, rules and sysctls are out of reach. What a sandbox
 * can leave behind is sockets (open, TIME_WAIT, orphaned, in flight), IPv6
 * flow labels that linger, and the traces of traffic (the counters of lo
 * and of the protocol MIBs, TCP metrics, route exceptions). A namespace
 * goes back to the pool only once every process of its sandbox is gone
 * (init reaped: the kernel kills and reaps the rest of its pid namespace
 * first) and only if none of that is there: no socket of any kind, no
 * flow label, and every counter still zero. It is then what a new one
 * would be, but for its inode number. Anything else, and it is dropped.
 *
 * A slot k is two files: <k>, a bind mount of the namespace (as `ip netns
 * add` makes), and <k>.state, whose first byte says what <k> holds: 'F'
 * an idle, clean namespace; 'B' one claimed by a sandbox; else nothing.
 * Whoever holds the flock on <k>.state owns the slot. A 'B' found unlocked
 * was claimed by a process that died: its namespace is dropped when a
 * new one is put in its slot. `sbx prune` empties the pool. */
#include "internal.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif

/* Makes a new namespace and returns an fd to it; the calling thread stays
 * in its own. Done by the host itself, not a helper thread: a thread
 * would cost its creation and a wake-up on the other CPU (~50 us each in
 * a VM), and on two CPUs the child, this thread and a helper would
 * compete for them. 0 or -errno, with *what set. */
static int netns_make(int *out, const char **what)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), r = 0, fd = -1;
    if (self < 0) {
        *what = "open own network namespace";
        return -errno;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        *what = "create network namespace";
        r = -errno;
        close(self);
        return r;
    }
    /* The namespace belongs to the host's user namespace, so root inside
     * lacks CAP_NET_BIND_SERVICE in it; open low ports to every user
     * instead (there is nothing here but lo, which the child brings up).
     * /proc/sys/net is the calling thread's namespace. */
    sbx_write_str("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *what = "open network namespace";
        r = -errno;
    }
    /* Back to our own: staying in the sandbox's would put every socket
     * this thread makes later there. It cannot fail short of the kernel
     * running out of memory; carrying on in the wrong namespace is worse
     * than stopping. */
    if (setns(self, CLONE_NEWNET) < 0) {
        fprintf(stderr, "sbx: cannot return to the host's network namespace: %s\n", strerror(errno));
        abort();
    }
    close(self);
    *out = fd;
    return r;
}

static int state_of(int fd)
{
    char c;
    return pread(fd, &c, 1, 0) == 1 ? c : 0;
}

static void set_state(int fd, char c)
{
    if (c) {
        if (pwrite(fd, &c, 1, 0) == 1)
            return;
    }
    /* Nothing (or a failed write): the slot holds nothing usable. */
    if (ftruncate(fd, 0) < 0) {
        /* A regular file on the run dir's fs; left as it is, the state
         * still is not 'F' unless that write above succeeded. */
    }
}

int sbx_netns_get(const sbx_engine *eng, sbx_netns *ns, const char **what)
{
    ns->fd = ns->slot_fd = ns->slot = -1;
    int dir = eng->netns_pool > 0 ? open(eng->netns_dir, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    for (int k = 0; dir >= 0 && k < eng->netns_pool; k++) {
        char name[24];
        snprintf(name, sizeof(name), "%d.state", k);
        int sfd = openat(dir, name, O_RDWR | O_CLOEXEC);
        if (sfd < 0)
            continue;
        if (flock(sfd, LOCK_EX | LOCK_NB) < 0 || state_of(sfd) != 'F') {
            close(sfd);
            continue;
        }
        snprintf(name, sizeof(name), "%d", k);
        int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
        /* It must still be a network namespace (not the bare file left by
         * someone's umount). */
        if (fd < 0 || ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
            if (fd >= 0)
                close(fd);
            set_state(sfd, 0);
            close(sfd);
            continue;
        }
        set_state(sfd, 'B');
        ns->fd = fd;
        ns->slot_fd = sfd;
        ns->slot = k;
        close(dir);
        return 0;
    }
    if (dir >= 0)
        close(dir);
    return netns_make(&ns->fd, what);
}

/* ---- the cleanliness check --------------------------------------------
 * Each reads one file of /proc/thread-self/net (the calling thread is in
 * the namespace) into buf and says whether it shows nothing of a sandbox. */

static bool is_zero(const char *tok, size_t n)
{
    return n == 1 && tok[0] == '0';
}

/* Next whitespace-separated token of [*p, end); false at the end of line. */
static bool next_tok(const char **p, const char *end, const char **tok, size_t *n)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s >= end || *s == '\n') {
        *p = s;
        return false;
    }
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t' && *e != '\n')
        e++;
    *tok = s;
    *n = (size_t)(e - s);
    *p = e;
    return true;
}

static const char *next_line(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : end;
}

static bool tok_is(const char *tok, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(tok, s, n) == 0;
}

/* /proc/net/dev: every counter of every interface (only lo) is zero. */
static bool dev_quiet(const char *p, const char *end)
{
    p = next_line(next_line(p, end), end); /* two header lines */
    for (; p < end; p = next_line(p, end)) {
        const char *tok;
        size_t n;
        const char *q = p;
        if (!next_tok(&q, end, &tok, &n)) /* "lo:" */
            continue;
        while (next_tok(&q, end, &tok, &n))
            if (!is_zero(tok, n))
                return false;
    }
    return true;
}

/* snmp and netstat: pairs of lines "Proto: Name..." / "Proto: value...";
 * every value is zero but the few that are settings, not counters. */
static bool mib_quiet(const char *p, const char *end)
{
    static const char *const settings[] = {"Ip:Forwarding", "Ip:DefaultTTL", "Tcp:RtoAlgorithm",
                                           "Tcp:RtoMin",    "Tcp:RtoMax",    "Tcp:MaxConn"};
    while (p < end) {
        const char *names = p, *vals = next_line(p, end);
        if (vals >= end)
            return false; /* a header without its values: not the format we know */
        p = next_line(vals, end);
        const char *proto, *tok, *v;
        size_t plen, n, vn;
        const char *q = names, *w = vals;
        if (!next_tok(&q, end, &proto, &plen) || !next_tok(&w, end, &v, &vn) || vn != plen ||
            memcmp(proto, v, plen) != 0)
            return false;
        while (next_tok(&q, end, &tok, &n)) {
            if (!next_tok(&w, end, &v, &vn))
                return false;
            if (is_zero(v, vn))
                continue;
            char key[96];
            if (plen + n >= sizeof(key))
                return false;
            memcpy(key, proto, plen);
            memcpy(key + plen, tok, n);
            key[plen + n] = '\0';
            bool setting = false;
            for (size_t i = 0; i < SBX_ARRAY_LEN(settings); i++)
                setting |= strcmp(key, settings[i]) == 0;
            if (!setting)
                return false;
        }
    }
    return true;
}

/* snmp6: "Name value" lines, all zero. */
static bool snmp6_quiet(const char *p, const char *end)
{
    for (; p < end; p = next_line(p, end)) {
        const char *q = p, *tok, *v;
        size_t n, vn;
        if (!next_tok(&q, end, &tok, &n))
            continue;
        if (!next_tok(&q, end, &v, &vn) || !is_zero(v, vn))
            return false;
    }
    return true;
}

/* sockstat and sockstat6: "PROTO: name value ...". The namespace's own
 * counts (sockets of every family, in use, TIME_WAIT, fragments queued)
 * are zero; "alloc", "orphan" and "mem" are the whole host's. */
static bool socks_none(const char *p, const char *end)
{
    for (; p < end; p = next_line(p, end)) {
        const char *q = p, *name, *v;
        size_t n, vn;
        if (!next_tok(&q, end, &name, &n)) /* "TCP:" */
            continue;
        while (next_tok(&q, end, &name, &n) && next_tok(&q, end, &v, &vn)) {
            bool own = tok_is(name, n, "used") || tok_is(name, n, "inuse") || tok_is(name, n, "tw") ||
                       tok_is(name, n, "memory");
            if (own && !is_zero(v, vn))
                return false;
        }
    }
    return true;
}

/* ip6_flowlabel: the header only (a label outlives its socket by its linger). */
static bool no_flowlabels(const char *p, const char *end)
{
    return next_line(p, end) >= end;
}

/* A socket in the calling thread's network namespace, with lo's flags
 * read into *ifr; or -errno. */
static int lo_get(struct ifreq *ifr)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    memset(ifr, 0, sizeof(*ifr));
    strcpy(ifr->ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, ifr) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

int sbx_net_lo_up(void)
{
    struct ifreq ifr;
    int s = lo_get(&ifr), r = 0;
    if (s < 0)
        return s;
    /* A namespace from the pool has it up already. */
    if ((ifr.ifr_flags & (IFF_UP | IFF_RUNNING)) != (IFF_UP | IFF_RUNNING)) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            r = -errno;
    }
    close(s);
    return r;
}

static bool lo_up(void)
{
    struct ifreq ifr;
    int s = lo_get(&ifr);
    if (s < 0)
        return false;
    close(s);
    return ifr.ifr_flags & IFF_UP;
}

#define CHECK_BUF (64 * 1024)

static bool netns_clean_here(char *buf)
{
    static const struct {
        const char *file;
        bool (*quiet)(const char *, const char *);
        bool optional; /* absent without IPv6 */
    } checks[] = {
        {"sockstat", socks_none, false},   {"sockstat6", socks_none, true},    {"dev", dev_quiet, false},
        {"snmp", mib_quiet, false},        {"netstat", mib_quiet, false},      {"snmp6", snmp6_quiet, true},
        {"ip6_flowlabel", no_flowlabels, true},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(checks); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/thread-self/net/%s", checks[i].file);
        size_t len = 0;
        int r = sbx_read_file(path, buf, CHECK_BUF, &len);
        if (r == -ENOENT && checks[i].optional)
            continue;
        /* Unreadable, or too long to be a quiet one: not clean. */
        if (r < 0 || len >= CHECK_BUF - 1 || !checks[i].quiet(buf, buf + len))
            return false;
    }
    return lo_up(); /* after sockstat: its socket counts until closed */
}

/* Whether the namespace shows nothing a sandbox did (see the top). The
 * calling thread enters it to read its /proc/net and comes back. */
static bool netns_clean(int fd)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return false;
    /* Not on the stack: the reaper runs on a small one. */
    char *buf = mmap(NULL, CHECK_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool clean = false;
    if (buf != MAP_FAILED && setns(fd, CLONE_NEWNET) == 0) {
        clean = netns_clean_here(buf);
        if (setns(self, CLONE_NEWNET) < 0) {
            fprintf(stderr, "sbx: cannot return to the host's network namespace: %s\n", strerror(errno));
            abort();
        }
    }
    if (buf != MAP_FAILED)
        munmap(buf, CHECK_BUF);
    close(self);
    return clean;
}

/* Puts a new namespace (fd) into a free slot: one never used, or whose
 * namespace is stale. */
static void netns_adopt(const char *dir_path, int max, int fd)
{
    if (mkdir(dir_path, 0700) < 0 && errno != EEXIST)
        return;
    int dir = open(dir_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    for (int k = 0; k < max; k++) {
        char name[24], path[PATH_MAX], src[64];
        snprintf(name, sizeof(name), "%d.state", k);
        int sfd = openat(dir, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (sfd < 0)
            break;
        if (flock(sfd, LOCK_EX | LOCK_NB) < 0 || state_of(sfd) == 'F') {
            close(sfd);
            continue;
        }
        /* Ours, and holding nothing usable: drop what it held (a sandbox
         * whose creator died), then mount the new one over the file. */
        if (sbx_pathf(path, sizeof(path), "%s/%d", dir_path, k) < 0) {
            close(sfd);
            break;
        }
        set_state(sfd, 0);
        umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
        int f = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0400);
        if (f >= 0)
            close(f);
        snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
        if (f >= 0 && mount(src, path, NULL, MS_BIND, NULL) == 0)
            set_state(sfd, 'F');
        close(sfd);
        break;
    }
    close(dir);
}

void sbx_netns_put(const char *dir_path, int max, sbx_netns *ns)
{
    if (ns->fd < 0)
        return;
    bool clean = max > 0 && netns_clean(ns->fd);
    if (ns->slot_fd >= 0) {
        if (clean) {
            set_state(ns->slot_fd, 'F');
        } else {
            char path[PATH_MAX];
            set_state(ns->slot_fd, 0);
            if (sbx_pathf(path, sizeof(path), "%s/%d", dir_path, ns->slot) == 0)
                umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
        }
        close(ns->slot_fd);
    } else if (clean) {
        netns_adopt(dir_path, max, ns->fd);
    }
    close(ns->fd);
    ns->fd = ns->slot_fd = ns->slot = -1;
}

int sbx_netns_drain(const char *dir_path, int *busy)
{
    *busy = 0;
    DIR *d = opendir(dir_path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int dropped = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *dot = strrchr(e->d_name, '.');
        if (!dot || strcmp(dot, ".state") != 0)
            continue;
        int sfd = openat(dirfd(d), e->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (sfd < 0)
            continue;
        if (flock(sfd, LOCK_EX | LOCK_NB) < 0) {
            (*busy)++;
            close(sfd);
            continue;
        }
        char path[PATH_MAX];
        if (sbx_pathf(path, sizeof(path), "%s/%.*s", dir_path, (int)(dot - e->d_name), e->d_name) == 0) {
            if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
                dropped++;
            unlink(path);
        }
        /* Unlinked while locked: a claimer that opened it meanwhile finds
         * it empty. */
        set_state(sfd, 0);
        unlinkat(dirfd(d), e->d_name, 0);
        close(sfd);
    }
    closedir(d);
    if (*busy == 0)
        rmdir(dir_path);
    return dropped;
}
