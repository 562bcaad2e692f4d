/* The keeper of debug-mode local sandboxes, and its client (keeper.h).
 *
 * Wire (SOCK_SEQPACKET, one message each):
 *   client -> keeper  'X' user\0 workdir\0 arg0\0 arg1\0 ...  + fds 0, 1, 2
 *                     'S'                                       stop
 *   client -> keeper  int32 signal numbers while the command runs
 *   keeper -> client  'R' int32 status | 'E' message */
#include "keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "spec.h"
#include "util.h"

#define MAX_KEPT 8
#define REQ_MAX 65536

/* ---- paths ----------------------------------------------------------------- */

static int sock_dir(char *buf, size_t cap)
{
    const char *run = getenv("SBX_RUN_DIR");
    return sbx_pathf(buf, cap, "%s/step-keep", run && *run ? run : "/run/sbx");
}

static int sock_addr(const char *id, struct sockaddr_un *a, sbx_err *err)
{
    char dir[PATH_MAX];
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    if (!sbx_valid_name(id))
        return sbx_fail(err, SBX_E_INVALID, "'%.80s' is not a sandbox id (allowed: A-Z a-z 0-9 _ . -)", id);
    if (sock_dir(dir, sizeof(dir)) < 0 || sbx_pathf(a->sun_path, sizeof(a->sun_path), "%s/%s.sock", dir, id) < 0)
        return sbx_fail(err, SBX_E_INVALID, "the keeper socket path for %s is too long (SBX_RUN_DIR)", id);
    return 0;
}

/* ---- launcher split -------------------------------------------------------- */

static int report_fd = -1;
static pid_t worker_pid;

static void forward(int sig)
{
    if (worker_pid <= 0)
        return;
    if (sig == SIGQUIT) {
        kill(worker_pid, sig);
        return;
    }
    /* Queued, so it does not merge with the same signal from a terminal
     * (backend.h); errno is the interrupted code's. */
    int saved = errno;
    union sigval v = {.sival_int = sig};
    sigqueue(worker_pid, SBX_STEP_FORWARD_SIGNAL, v);
    errno = saved;
}

int sbx_step_keeper_split(sbx_err *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return sbx_fail_errno(err, errno, "pipe");
    fflush(stdout);
    fflush(stderr);
    /* Held until the launcher forwards them: one that came in between
     * would reach neither the launcher's forwarding nor the worker. */
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < SBX_ARRAY_LEN(sigs); i++)
        sigaddset(&block, sigs[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(p[0]);
        close(p[1]);
        return sbx_fail_errno(err, e, "fork");
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(p[0]);
        report_fd = p[1];
        return 0;
    }
    /* The launcher: what it is asked to stop, the worker is. */
    close(p[1]);
    worker_pid = pid;
    struct sigaction sa = {.sa_handler = forward};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < SBX_ARRAY_LEN(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    int32_t code;
    ssize_t n;
    do
        n = read(p[0], &code, sizeof(code));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(code))
        _exit(code & 0xff);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st))
        _exit(WEXITSTATUS(st));
    fprintf(stderr, "sbx: the step runner died (signal %d)\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    _exit(125);
}

/* ---- what is kept ---------------------------------------------------------- */

typedef struct kept {
    sbx_engine *eng;
    sbx_sandbox *sb;
    char **env;
    int listen_fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool gone;
} kept;

static kept kept_boxes[MAX_KEPT];
static size_t n_kept;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static int active; /* commands running, under lock */

void sbx_step_keeper_add(sbx_engine *eng, sbx_sandbox *sb, char *const *env)
{
    if (n_kept == MAX_KEPT) { /* never happens: one step keeps one sandbox */
        sbx_sandbox_destroy(sb);
        sbx_engine_close(eng);
        return;
    }
    size_t n = 0;
    while (env && env[n])
        n++;
    char **copy = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; copy && i < n; i++)
        copy[i] = strdup(env[i]);
    kept_boxes[n_kept++] = (kept){.eng = eng, .sb = sb, .env = copy, .listen_fd = -1};
}

bool sbx_step_keeper_holding(void)
{
    return n_kept > 0;
}

void sbx_step_keeper_release(int code)
{
    if (report_fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    if (n_kept) {
        /* Off the terminal and the caller's pipes before the launcher
         * exits, so nothing waits on this process. */
        setsid();
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
            close(nul);
        }
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
    }
    int32_t c = code;
    ssize_t n = write(report_fd, &c, sizeof(c));
    (void)n;
    close(report_fd);
    report_fd = -1;
}

/* ---- serving ---------------------------------------------------------------- */

static int send_reply(int fd, char kind, const void *data, size_t len)
{
    char buf[600];
    if (len > sizeof(buf) - 1)
        len = sizeof(buf) - 1;
    buf[0] = kind;
    memcpy(buf + 1, data, len);
    return send(fd, buf, len + 1, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void send_error(int fd, const char *msg)
{
    send_reply(fd, 'E', msg, strlen(msg));
}

/* Signal numbers from the client go to a pipe the engine watches; the
 * client going away kills the command, as a hung-up terminal would. */
struct relay {
    int conn, pipe_w;
};

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    for (;;) {
        int32_t sig;
        ssize_t n = recv(r->conn, &sig, sizeof(sig), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int k = SIGKILL;
            ssize_t w = write(r->pipe_w, &k, sizeof(k));
            (void)w;
            return NULL;
        }
        if (n == (ssize_t)sizeof(sig) && sig > 0 && sig < 65) {
            int s = sig;
            ssize_t w = write(r->pipe_w, &s, sizeof(s));
            (void)w;
        }
    }
}

struct conn_job {
    kept *k;
    int conn;
};

static void run_command(kept *k, int conn, char *req, size_t len, int *fds)
{
    /* user\0 workdir\0 argv... */
    char *argv[256];
    size_t argc = 0;
    char *fields[2];
    size_t off = 1; /* req[len] is a NUL: every field below ends */
    for (int i = 0; i < 2; i++) {
        if (off >= len) {
            send_error(conn, "malformed request");
            return;
        }
        fields[i] = req + off;
        off += strlen(req + off) + 1;
    }
    while (off < len && argc < SBX_ARRAY_LEN(argv) - 1) {
        argv[argc++] = req + off;
        off += strlen(req + off) + 1;
    }
    argv[argc] = NULL;
    if (argc == 0 || !argv[0][0]) {
        send_error(conn, "no command given");
        return;
    }
    int sigp[2];
    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) < 0) {
        send_error(conn, strerror(errno));
        return;
    }
    struct relay r = {conn, sigp[1]};
    pthread_t t;
    bool relaying = pthread_create(&t, NULL, relay_main, &r) == 0;
    sbx_exec_spec xs = {
        .argv = argv,
        .env = k->env,
        .workdir = fields[1][0] ? fields[1] : SBX_STEP_GUEST_CODE,
        .user = fields[0][0] ? fields[0] : NULL,
        .stdin_fd = fds[0],
        .stdout_fd = fds[1],
        .stderr_fd = fds[2],
        .signal_fd = relaying ? sigp[0] : -1,
    };
    sbx_exec_result res;
    sbx_err e = {0};
    if (sbx_sandbox_exec(k->sb, &xs, &res, &e) < 0) {
        send_error(conn, e.msg);
    } else {
        if (res.exec_errno)
            dprintf(fds[2], "sbx: %s\n", res.exec_error);
        int32_t status = res.signal ? 128 + res.signal : res.exit_code;
        send_reply(conn, 'R', &status, sizeof(status));
        sbx_exec_result_free(&res);
    }
    if (relaying) {
        shutdown(conn, SHUT_RDWR); /* ends the relay's recv */
        pthread_join(t, NULL);
    }
    close(sigp[0]);
    close(sigp[1]);
}

static void remove_kept(kept *k)
{
    /* Kill first so commands in flight return, wait for them, then free. */
    pthread_mutex_lock(&lock);
    if (!k->gone)
        kill(sbx_sandbox_pid(k->sb), SIGKILL);
    while (active > 0)
        pthread_cond_wait(&idle_cond, &lock);
    if (!k->gone) {
        k->gone = true;
        unlink(k->path);
        close(k->listen_fd);
        sbx_sandbox_destroy(k->sb);
        sbx_engine_close(k->eng);
    }
    pthread_mutex_unlock(&lock);
}

static void *conn_main(void *arg)
{
    struct conn_job *j = arg;
    char *req = malloc(REQ_MAX + 1);
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    struct iovec iov = {.iov_base = req, .iov_len = REQ_MAX};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 3)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    ssize_t n = req ? recvmsg(j->conn, &mh, MSG_CMSG_CLOEXEC) : -1;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < got; i++) {
            if (nfds < 3)
                fds[nfds++] = in[i];
            else
                close(in[i]);
        }
    }
    if (n > 0 && req[0] == 'S') {
        int32_t zero = 0;
        pthread_mutex_lock(&lock);
        active--; /* this connection is no command */
        pthread_cond_broadcast(&idle_cond);
        pthread_mutex_unlock(&lock);
        remove_kept(j->k);
        send_reply(j->conn, 'R', &zero, sizeof(zero));
        close(j->conn);
        free(req);
        free(j);
        return NULL;
    }
    if (n > 0 && req[0] == 'X' && nfds == 3 && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        req[n] = '\0';
        run_command(j->k, j->conn, req, (size_t)n, fds);
    } else if (n >= 0) {
        send_error(j->conn, "malformed request");
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    close(j->conn);
    free(req);
    pthread_mutex_lock(&lock);
    active--;
    pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&lock);
    free(j);
    return NULL;
}

static int listen_on(kept *k, sbx_err *err)
{
    struct sockaddr_un a;
    char dir[PATH_MAX];
    if (sock_addr(sbx_sandbox_id(k->sb), &a, err) < 0 || sock_dir(dir, sizeof(dir)) < 0)
        return -1;
    int e = sbx_mkdir_p(dir, 0700);
    if (e < 0)
        return sbx_fail_errno(err, -e, "cannot create %s", dir);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sbx_fail_errno(err, errno, "socket");
    unlink(a.sun_path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(a.sun_path, 0600) < 0 || listen(fd, 16) < 0) {
        int e2 = errno;
        close(fd);
        return sbx_fail_errno(err, e2, "cannot listen on %s", a.sun_path);
    }
    k->listen_fd = fd;
    snprintf(k->path, sizeof(k->path), "%s", a.sun_path);
    return 0;
}

void sbx_step_keeper_serve(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < n_kept; i++) {
        sbx_err e = {0};
        if (listen_on(&kept_boxes[i], &e) < 0) {
            kept_boxes[i].listen_fd = -1;
            remove_kept(&kept_boxes[i]);
        }
    }
    time_t end = time(NULL) + SBX_STEP_KEEP_MAX_S;
    for (;;) {
        struct pollfd pf[MAX_KEPT];
        size_t idx[MAX_KEPT], np = 0;
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < n_kept; i++)
            if (!kept_boxes[i].gone) {
                pf[np] = (struct pollfd){kept_boxes[i].listen_fd, POLLIN, 0};
                idx[np++] = i;
            }
        pthread_mutex_unlock(&lock);
        time_t now = time(NULL);
        if (np == 0 || now >= end)
            break;
        /* Wake now and then: a stop served by a thread changes the set. */
        int wait_ms = (int)((end - now) * 1000 < 1000 ? (end - now) * 1000 : 1000);
        if (poll(pf, (nfds_t)np, wait_ms) <= 0)
            continue;
        for (size_t i = 0; i < np; i++) {
            if (!pf[i].revents)
                continue;
            int c = accept4(pf[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0)
                continue;
            struct conn_job *j = malloc(sizeof(*j));
            pthread_t t;
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            pthread_mutex_lock(&lock);
            active++;
            pthread_mutex_unlock(&lock);
            if (j)
                *j = (struct conn_job){&kept_boxes[idx[i]], c};
            if (!j || pthread_create(&t, &at, conn_main, j) != 0) {
                free(j);
                close(c);
                pthread_mutex_lock(&lock);
                active--;
                pthread_cond_broadcast(&idle_cond);
                pthread_mutex_unlock(&lock);
            }
            pthread_attr_destroy(&at);
        }
    }
    for (size_t i = 0; i < n_kept; i++)
        remove_kept(&kept_boxes[i]);
    _exit(0);
}

/* ---- client ------------------------------------------------------------------ */

static int client_fd = -1;

static void to_keeper(int sig)
{
    int32_t s = sig;
    if (client_fd >= 0)
        send(client_fd, &s, sizeof(s), MSG_NOSIGNAL);
}

/* 0 connected, 1 no keeper for id, -1 error. */
static int connect_keeper(const char *id, int *fd, sbx_err *err)
{
    struct sockaddr_un a;
    if (sock_addr(id, &a, err) < 0)
        return -1;
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return sbx_fail_errno(err, errno, "socket");
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(s);
        if (e == ENOENT || e == ECONNREFUSED) {
            if (e == ECONNREFUSED)
                unlink(a.sun_path); /* its keeper died */
            return 1;
        }
        return sbx_fail_errno(err, e, "cannot reach the keeper of %s", id);
    }
    *fd = s;
    return 0;
}

static int read_reply(int fd, int *status, sbx_err *err)
{
    char buf[600];
    ssize_t n;
    do
        n = recv(fd, buf, sizeof(buf) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 5 && buf[0] == 'R') {
        int32_t st;
        memcpy(&st, buf + 1, sizeof(st));
        *status = st;
        return 0;
    }
    if (n >= 1 && buf[0] == 'E') {
        buf[n] = '\0';
        return sbx_fail(err, SBX_E_INVALID, "%s", buf + 1);
    }
    return sbx_fail(err, SBX_E_SYSTEM, "the keeper went away without an answer");
}

int sbx_step_keeper_exec(const char *id, char *const *argv, const char *user, const char *workdir, int *status,
                         sbx_err *err)
{
    size_t len = 1;
    const char *parts[2] = {user ? user : "", workdir ? workdir : ""};
    for (int i = 0; i < 2; i++)
        len += strlen(parts[i]) + 1;
    size_t argc = 0;
    for (size_t i = 0; argv[i]; i++, argc++)
        len += strlen(argv[i]) + 1;
    if (argc > 255)
        return sbx_fail(err, SBX_E_INVALID, "too many arguments (%zu; at most 255)", argc);
    if (len > REQ_MAX)
        return sbx_fail(err, SBX_E_INVALID, "the command line is too long (at most %d bytes)", REQ_MAX);
    int fd, rc = connect_keeper(id, &fd, err);
    if (rc != 0)
        return rc;
    char *req = malloc(len), *p = req;
    if (!req) {
        close(fd);
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    }
    *p++ = 'X';
    for (int i = 0; i < 2; i++)
        p = stpcpy(p, parts[i]) + 1;
    for (size_t i = 0; argv[i]; i++)
        p = stpcpy(p, argv[i]) + 1;
    int fds[3] = {0, 1, 2};
    struct iovec iov = {.iov_base = req, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    free(req);
    if (n < 0) {
        int e = errno;
        close(fd);
        return sbx_fail_errno(err, e, "cannot send the command to the keeper of %s", id);
    }
    client_fd = fd;
    struct sigaction sa = {.sa_handler = to_keeper}, old[4];
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < SBX_ARRAY_LEN(sigs); i++)
        sigaction(sigs[i], &sa, &old[i]);
    rc = read_reply(fd, status, err);
    for (size_t i = 0; i < SBX_ARRAY_LEN(sigs); i++)
        sigaction(sigs[i], &old[i], NULL);
    client_fd = -1;
    close(fd);
    return rc;
}

int sbx_step_keeper_remove(const char *id, sbx_err *err)
{
    int fd, rc = connect_keeper(id, &fd, err);
    if (rc != 0)
        return rc;
    int status = 0;
    if (send(fd, "S", 1, MSG_NOSIGNAL) < 0) {
        int e = errno;
        close(fd);
        return sbx_fail_errno(err, e, "cannot reach the keeper of %s", id);
    }
    rc = read_reply(fd, &status, err);
    close(fd);
    return rc;
}
