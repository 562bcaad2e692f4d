/* The sandbox's pid 1.
 *
 * After setup, the sandbox's first process stays as its init: it reaps
 * orphans and starts commands on request from the host ("exec"), so a
 * command in a live sandbox costs one fork, not a new sandbox. When it
 * dies the kernel kills everything else in the pid namespace.
 *
 * It may have been cloned from a multi-threaded host process, so it never
 * allocates and never calls fork() (whose atfork handlers could wait on a
 * lock another thread held at clone time): children come from raw clone.
 */
#include "internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#define MAX_KIDS 1024

static struct kid {
    pid_t pid;
    int chan;
    uint64_t id;
    bool last; /* SBX_EXEC_LAST: init exits after reporting it */
} kids[MAX_KIDS];
static int nkids;

static _Alignas(8) char req[SBX_MAX_EXEC_MSG + 4096];

int sbx_become(uint32_t uid, uint32_t gid)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, gid, gid, gid) < 0 ||
        syscall(SYS_setresuid, uid, uid, uid) < 0)
        return -1;
    return 0;
}

static pid_t raw_fork(void)
{
    return (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL);
}

static void reap(void);

/* The exec child shares init's memory until it execs (CLONE_VM, see
 * handle_exec): a failure is left here for init, which sleeps meanwhile. */
static volatile struct exec_fail {
    int32_t stage, err;
} exec_failed;

/* Its own stack: the child must not touch init's frames. Only one child
 * uses it at a time (init sleeps until the child has exec'd or exited). */
static _Alignas(16) char exec_stack[256 * 1024];

static void __attribute__((noreturn)) child_fail(int stage, int e)
{
    exec_failed.stage = stage;
    exec_failed.err = e;
    _exit(e == ENOENT ? 127 : 126);
}

static const char *env_get(char *const *env, uint32_t n, const char *key)
{
    size_t k = strlen(key);
    for (uint32_t i = 0; i < n; i++)
        if (strncmp(env[i], key, k) == 0 && env[i][k] == '=')
            return env[i] + k + 1;
    return NULL;
}

/* execvpe with the command's own PATH (glibc's would use ours). */
static int exec_path(const char *file, char *const *argv, char *const *env, uint32_t envc)
{
    if (strchr(file, '/')) {
        execve(file, argv, env);
        return -errno;
    }
    const char *path = env_get(env, envc, "PATH");
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int result = -ENOENT;
    char buf[PATH_MAX];
    for (const char *p = path;; p++) {
        const char *e = strchrnul(p, ':');
        size_t dl = (size_t)(e - p);
        if (dl + strlen(file) + 2 < sizeof(buf)) {
            if (dl)
                memcpy(buf, p, dl);
            else
                buf[dl++] = '.';
            buf[dl] = '/';
            strcpy(buf + dl + 1, file);
            execve(buf, argv, env);
            if (errno == EACCES)
                result = -EACCES;
            else if (errno != ENOENT && errno != ENOTDIR)
                return -errno;
        }
        if (!*e)
            break;
        p = e;
    }
    return result;
}

static int mkdir_p_as_user(char *path)
{
    for (char *s = path + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    return mkdir(path, 0755);
}

/* In the exec child: become the requested user with no privilege left,
 * then exec. Every step that fails is reported through exec_failed. It
 * runs on init's memory (CLONE_VM), so it touches only its own stack,
 * exec_failed, and per-task kernel state (fds, creds, seccomp, signal
 * dispositions: none of those are shared without CLONE_FILES,
 * CLONE_SIGHAND, CLONE_THREAD). */
static void __attribute__((noreturn))
exec_child(const struct sbx_msg_exec *m, char *workdir, char **argv, char **env, const int *stdio,
           const int *extra, int nextra)
{
    /* Every disposition is the default already (see sbx_init_main); the
     * mask is init's. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid(); /* own process group: signals and timeouts hit the whole job */
    umask(022);

    /* Every fd to hand over is first moved above the targets (0..2+nextra)
     * so placing one can never overwrite another still to be placed. */
    int top = 3 + nextra, src[3 + SBX_SPAWN_MAX_EXTRA];
    for (int i = 0; i < 3 + nextra; i++) {
        int fd = i < 3 ? stdio[i] : extra[i - 3];
        if (fd < 0 && i < 3)
            fd = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (fd < 0 || (src[i] = fcntl(fd, F_DUPFD_CLOEXEC, top)) < 0)
            child_fail(SBX_STAGE_FORK, errno);
    }
    for (int i = 0; i < 3 + nextra; i++)
        if (dup2(src[i], i) < 0) /* dup2 clears close-on-exec on the target */
            child_fail(SBX_STAGE_FORK, errno);
    /* Nothing of init's (control socket, lock) may reach the command. */
    syscall(SYS_close_range, (unsigned)top, ~0u, 0u);

    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    if (sbx_become(m->uid, m->gid) < 0)
        child_fail(SBX_STAGE_USER, errno);
    /* Root inside keeps uid 0 but no capability at all: empty every set
     * (the bounding set was emptied by init already). */
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        child_fail(SBX_STAGE_USER, errno);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

    if (chdir(workdir) < 0) {
        mkdir_p_as_user(workdir);
        if (chdir(workdir) < 0)
            child_fail(SBX_STAGE_WORKDIR, errno);
    }
    /* no_new_privs and the seccomp filter are init's, inherited (see
     * child_main in sandbox.c). */
    int r = exec_path(argv[0], argv, env, m->envc);
    child_fail(SBX_STAGE_EXEC, -r);
}

struct exec_args {
    const struct sbx_msg_exec *m;
    char *workdir, **argv, **env;
    const int *stdio, *extra;
    int nextra;
    bool pinned;
};

/* init's own CPU mask, which every command gets (see handle_exec). */
static cpu_set_t init_cpus;
static int init_cpus_ok = -1;

static int exec_child_start(void *arg)
{
    const struct exec_args *a = arg;
#if defined(__SANITIZE_ADDRESS__)
    /* ASan warns, once per process, at the first noreturn call made off
     * the stack it knows (this one is exec_stack, unpoisoned before each
     * use, so the warning is moot): have it now, while fd 2 is init's
     * /dev/null, not a command's stderr. */
    __asan_handle_no_return();
#endif
    if (a->pinned)
        sched_setaffinity(0, sizeof(init_cpus), &init_cpus);
    exec_child(a->m, a->workdir, a->argv, a->env, a->stdio, a->extra, a->nextra);
}

static void send_started(int chan, pid_t pid, int err, int stage)
{
    struct sbx_msg_started s = {{SBX_MSG_STARTED, sizeof(s) - sizeof(s.h)}, pid, err, stage};
    sbx_msg_send(chan, &s, sizeof(s), NULL, 0);
}

/* Splits the string area of an EXEC request in place into pointer arrays
 * kept on this (init's) stack frame. */
static void handle_exec(size_t len, int *fds, int nfds)
{
    const struct sbx_msg_exec *m = (const struct sbx_msg_exec *)req;
    int chan = nfds > 0 ? fds[0] : -1;
    int stdio[3] = {-1, -1, -1}, extra[SBX_SPAWN_MAX_EXTRA];
    int k = 1, nextra = 0;
    if (m->flags & SBX_EXEC_STDIN)
        stdio[0] = k < nfds ? fds[k++] : -1;
    if (m->flags & SBX_EXEC_STDOUT)
        stdio[1] = k < nfds ? fds[k++] : -1;
    if (m->flags & SBX_EXEC_STDERR)
        stdio[2] = k < nfds ? fds[k++] : -1;
    int want_extra = (int)((m->flags >> SBX_EXEC_EXTRA_SHIFT) & SBX_EXEC_EXTRA_MASK);
    while (nextra < want_extra && nextra < SBX_SPAWN_MAX_EXTRA && k < nfds)
        extra[nextra++] = fds[k++];

    static char *argv[65536], *env[65536];
    int err = 0;
    char *p = req + sizeof(*m), *end = req + len;
    char *workdir = p;
    if (chan < 0 || len < sizeof(*m) || m->argc == 0 || m->argc >= 65536 || m->envc >= 65536 || end[-1] != '\0')
        err = EINVAL;
    for (uint32_t i = 0; !err && i <= m->argc + m->envc; i++) {
        char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z) {
            err = EINVAL;
            break;
        }
        if (i > 0 && i <= m->argc)
            argv[i - 1] = p;
        else if (i > m->argc)
            env[i - 1 - m->argc] = p;
        p = z + 1;
    }
    if (!err && nkids >= MAX_KIDS)
        err = EAGAIN;
    if (!err && nextra != want_extra)
        err = EINVAL;
    if (err) {
        if (chan >= 0)
            send_started(chan, 0, err, SBX_STAGE_FORK);
        goto out;
    }
    argv[m->argc] = NULL;
    env[m->envc] = NULL;

    /* CLONE_VM|CLONE_VFORK: no copy of init's page tables and no
     * copy-on-write faults before the exec, and init sleeps until the
     * child has exec'd (or failed and exited), so the outcome is known
     * when clone returns. */
    struct exec_args xa = {m, workdir, argv, env, stdio, extra, nextra, false};
    /* The child runs while init sleeps, so on this CPU it starts at once;
     * placed on another, idle one (where fork balancing puts it), it
     * waits for that CPU to wake up (~50-250 us in a VM). So init pins
     * itself here for the clone (the child inherits the pin) and both
     * take init's own mask back: the command runs wherever init may. */
    if (init_cpus_ok < 0)
        init_cpus_ok = sched_getaffinity(0, sizeof(init_cpus), &init_cpus) == 0;
    int cpu = init_cpus_ok ? sched_getcpu() : -1;
    if (cpu >= 0 && cpu < CPU_SETSIZE) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        xa.pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    exec_failed.stage = exec_failed.err = 0;
#if defined(__SANITIZE_ADDRESS__)
    /* The last child never returned from its frames (it exec'd): their
     * redzones are still marked in the shadow of this reused stack. */
    __asan_unpoison_memory_region(exec_stack, sizeof(exec_stack));
#endif
    pid_t pid = clone(exec_child_start, exec_stack + sizeof(exec_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &xa);
    /* A job killed at its timeout (a fork bomb, say) gives its pids back
     * only as its thousands of processes exit and we reap them (they are
     * ours now), so the next command would meet a full pids cgroup for a
     * moment. Reap and retry for up to a second before reporting EAGAIN;
     * a sandbox that really is full still gets its EAGAIN. */
    for (int i = 0; pid < 0 && errno == EAGAIN && i < 200; i++) {
        reap();
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pid = clone(exec_child_start, exec_stack + sizeof(exec_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &xa);
    }
    /* A LAST command is init's only one: its pin no longer matters. */
    if (xa.pinned && !(m->flags & SBX_EXEC_LAST))
        sched_setaffinity(0, sizeof(init_cpus), &init_cpus);
    if (pid < 0) {
        send_started(chan, 0, errno, SBX_STAGE_FORK);
        goto out;
    }
    if (exec_failed.err) {
        send_started(chan, 0, exec_failed.err, exec_failed.stage); /* the child exited; reaped below */
        goto out;
    }
    if (!(m->flags & SBX_EXEC_QUIET))
        send_started(chan, pid, 0, SBX_STAGE_NONE);
    kids[nkids++] = (struct kid){pid, chan, m->exec_id, (m->flags & SBX_EXEC_LAST) != 0};
    chan = -1; /* kept for the EXIT message */
out:
    for (int i = 0; i < 3; i++)
        if (stdio[i] >= 0)
            close(stdio[i]);
    for (int i = 0; i < nextra; i++)
        close(extra[i]);
    if (chan >= 0)
        close(chan);
}

static void handle_signal(size_t len)
{
    const struct sbx_msg_signal *m = (const struct sbx_msg_signal *)req;
    if (len < sizeof(*m))
        return;
    for (int i = 0; i < nkids; i++)
        if (kids[i].id == m->exec_id) {
            kill(-kids[i].pid, m->sig);
            kill(kids[i].pid, m->sig);
        }
}

static void reap(void)
{
    int status;
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
        for (int i = 0; i < nkids; i++) {
            if (kids[i].pid != pid)
                continue;
            struct sbx_msg_exit x = {{SBX_MSG_EXIT, sizeof(x) - sizeof(x.h)}, status, 0, 0};
            x.cpu_usec = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                         (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
            x.maxrss_kib = (uint64_t)ru.ru_maxrss;
            sbx_msg_send(kids[i].chan, &x, sizeof(x), NULL, 0);
            /* The sandbox ends with its one command: the kernel kills the
             * rest of the pid namespace as init exits. */
            if (kids[i].last)
                _exit(0);
            close(kids[i].chan);
            kids[i] = kids[--nkids];
            break;
        }
    }
}

/* ---- file operations on the host's behalf --------------------------------
 * Done by a short-lived child with the requesting user's credentials, so
 * the sandbox's own path resolution and permissions apply and init never
 * blocks on the file system. A uid other than 0 has no capability at all
 * (setresuid from 0 clears them); uid 0 keeps those of the sandbox's user
 * namespace, which reach nothing outside it. Nothing here allocates (see
 * the top of this file). */

/* mkdir -p of path's parents (and of path itself when whole). */
static int mkdirs(char *path, bool whole, unsigned mode)
{
    for (char *s = path + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        int r = mkdir(path, 0755);
        int e = errno;
        *s = '/';
        if (r < 0 && e != EEXIST)
            return -e;
    }
    if (whole && mkdir(path, mode) < 0)
        return -errno;
    return 0;
}

/* Depth-first removal with one small buffer per level, no allocation. */
static int rm_tree(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    if (depth > 128)
        return -ELOOP;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    for (int pass = 0; pass < 2 && r == 0; pass++) {
        _Alignas(8) char buf[2048];
        long n;
        lseek(fd, 0, SEEK_SET);
        while (r == 0 && (n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
            for (long off = 0; off < n && r == 0;) {
                struct dirent64_raw {
                    uint64_t ino;
                    int64_t off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *d = (void *)(buf + off);
                off += d->reclen;
                if (strcmp(d->name, ".") && strcmp(d->name, ".."))
                    r = rm_tree(fd, d->name, depth + 1);
            }
        }
        if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) == 0)
            break;
        if (r == 0 && errno != ENOTEMPTY)
            r = -errno;
    }
    close(fd);
    return r;
}

static int fsop_run(const struct sbx_msg_fsop *m, char *p1, char *p2, int *fd_out)
{
    umask(0); /* modes are the caller's, exactly */
    switch (m->op) {
    case SBX_FSOP_OPEN: {
        int fl = m->oflags;
        if ((fl & O_CREAT) && (m->fsflags & SBX_FS_MKDIRS)) {
            int r = mkdirs(p1, false, 0);
            if (r < 0)
                return r;
        }
        /* O_NONBLOCK: a FIFO must not hang the open (nor, later, the host). */
        int fd = open(p1, fl | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, m->mode);
        if (fd < 0)
            return -errno;
        if (!(fl & O_PATH)) {
            struct stat st;
            if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
                close(fd);
                return -EINVAL;
            }
            fcntl(fd, F_SETFL, fl & (O_APPEND | O_DIRECT | O_NOATIME)); /* clears O_NONBLOCK */
        }
        *fd_out = fd;
        return 0;
    }
    case SBX_FSOP_MKDIR: {
        int r = (m->fsflags & SBX_FS_MKDIRS) ? mkdirs(p1, true, m->mode) : (mkdir(p1, m->mode) < 0 ? -errno : 0);
        if (r == -EEXIST && (m->fsflags & SBX_FS_EXIST_OK)) {
            struct stat st;
            if (stat(p1, &st) == 0 && S_ISDIR(st.st_mode))
                r = 0;
        }
        return r;
    }
    case SBX_FSOP_RENAME:
        if (m->fsflags & SBX_FS_MKDIRS) {
            int r = mkdirs(p2, false, 0);
            if (r < 0)
                return r;
        }
        return rename(p1, p2) < 0 ? -errno : 0;
    case SBX_FSOP_REMOVE: {
        if (strcmp(p1, "/") == 0)
            return -EBUSY;
        return rm_tree(AT_FDCWD, p1, 0);
    }
    }
    return -EINVAL;
}

static void handle_fsop(size_t len, int *fds, int nfds)
{
    const struct sbx_msg_fsop *m = (const struct sbx_msg_fsop *)req;
    int chan = nfds > 0 ? fds[0] : -1;
    for (int i = 1; i < nfds; i++)
        close(fds[i]);
    if (chan < 0)
        return;
    char *p1 = req + sizeof(*m), *end = req + len, *p2 = NULL;
    int err = 0;
    if (len <= sizeof(*m) || end[-1] != '\0' || m->npaths < 1 || m->npaths > 2)
        err = EINVAL;
    else if (m->npaths == 2) {
        p2 = p1 + strlen(p1) + 1;
        if (p2 >= end)
            err = EINVAL;
    }
    pid_t pid = err ? 0 : raw_fork();
    if (pid == 0 && !err) {
        struct sbx_msg_fsres res = {{SBX_MSG_FSRES, sizeof(res) - sizeof(res.h)}, 0};
        int fd = -1;
        if (sbx_become(m->uid, m->gid) < 0)
            res.err = errno;
        else
            res.err = -fsop_run(m, p1, p2, &fd);
        sbx_msg_send(chan, &res, sizeof(res), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
        _exit(0);
    }
    if (pid < 0 || err) {
        struct sbx_msg_fsres res = {{SBX_MSG_FSRES, sizeof(res) - sizeof(res.h)}, err ? err : errno};
        sbx_msg_send(chan, &res, sizeof(res), NULL, 0);
    }
    close(chan); /* the helper child holds its own copy */
}

void sbx_init_main(int ctl)
{
    /* Default dispositions, once for every command to come: ignored
     * signals survive exec, and whatever launched sbx (a shell's
     * background job ignores SIGINT) must not decide what a command
     * ignores; handlers copied from the host have no business here.
     * init itself stays safe: a pid namespace's init never gets a signal
     * it has no handler for, but SIGKILL from an ancestor. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        _exit(1);
    for (;;) {
        struct pollfd pf[2] = {{ctl, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0) {
            }
            reap();
        }
        if (pf[0].revents) {
            int fds[8], nfds = 8;
            ssize_t n = sbx_msg_recv(ctl, req, sizeof(req), fds, &nfds);
            if (n == 0 || (n < 0 && n != -EMSGSIZE && n != -EAGAIN))
                _exit(0); /* host is gone: so is the sandbox */
            if (n < (ssize_t)sizeof(struct sbx_msg_hdr)) {
                for (int i = 0; i < nfds; i++)
                    close(fds[i]);
                continue;
            }
            const struct sbx_msg_hdr *h = (const struct sbx_msg_hdr *)req;
            if (h->type == SBX_MSG_EXEC)
                handle_exec((size_t)n, fds, nfds);
            else if (h->type == SBX_MSG_FSOP)
                handle_fsop((size_t)n, fds, nfds);
            else {
                for (int i = 0; i < nfds; i++)
                    close(fds[i]);
                if (h->type == SBX_MSG_SIGNAL)
                    handle_signal((size_t)n);
            }
        }
    }
}
