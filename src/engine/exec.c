/* Running a command in a live sandbox, host side: build the request, hand
 * the sandbox's init the stdio fds, then pump output, enforce the timeout
 * and collect the exit status.
 *
 * Each exec gets its own status channel (a socketpair whose other end goes
 * to init with the request), so concurrent execs in one sandbox never read
 * each other's replies.
 */
#include "internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_CAPTURE (1u << 20)
#define DRAIN_GRACE_USEC 100000 /* output still arriving after exit */

struct capture {
    int fd;
    char *buf;
    size_t len, cap;
    bool truncated;
};

static int build_env(char *const *xenv, const char *home, const char *user, char ***out, sbx_err *err)
{
    static const char *const keys[] = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG"};
    const char *vals[] = {SBX_DEFAULT_PATH, home, user, user,
                          "/bin/bash", "C.UTF-8"};
    size_t nx = 0;
    while (xenv && xenv[nx])
        nx++;
    char **env = calloc(SBX_ARRAY_LEN(keys) + nx + 1, sizeof(char *));
    if (!env)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < nx; i++) {
        const char *eq = strchr(xenv[i], '=');
        if (!eq || eq == xenv[i]) {
            free(env);
            return sbx_fail(err, SBX_E_INVALID, "env entry '%s' must be KEY=VALUE with a non-empty KEY", xenv[i]);
        }
    }
    for (size_t k = 0; k < SBX_ARRAY_LEN(keys); k++) {
        bool overridden = false;
        size_t kl = strlen(keys[k]);
        for (size_t i = 0; i < nx && !overridden; i++)
            overridden = strncmp(xenv[i], keys[k], kl) == 0 && xenv[i][kl] == '=';
        if (!overridden && asprintf(&env[n++], "%s=%s", keys[k], vals[k]) < 0) {
            env[--n] = NULL;
            goto oom;
        }
    }
    /* Later entries win over earlier ones with the same key. */
    for (size_t i = 0; i < nx; i++) {
        size_t kl = (size_t)(strchr(xenv[i], '=') - xenv[i]);
        bool later = false;
        for (size_t j = i + 1; j < nx && !later; j++)
            later = strncmp(xenv[j], xenv[i], kl + 1) == 0;
        if (!later && !(env[n++] = strdup(xenv[i])))
            goto oom;
    }
    *out = env;
    return 0;
oom:
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    free(env);
    return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
}

static void free_env(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

int sbx_parse_user(const sbx_sandbox *sb, const char *user, uint32_t *uid, uint32_t *gid, const char **home,
                   const char **name, sbx_err *err)
{
    /* uid 1000 answers to "user" and to the sandbox's own name for it. */
    if (!user || strcmp(user, "user") == 0 || strcmp(user, sb->user_name) == 0) {
        *uid = *gid = SBX_USER_UID;
        *home = sb->user_home;
        *name = sb->user_name;
        return 0;
    }
    if (strcmp(user, "root") == 0) {
        *uid = *gid = 0;
        *home = "/root";
        *name = "root";
        return 0;
    }
    uint64_t v;
    if (sbx_parse_u64(user, 0, 65535, &v) == 0) {
        *uid = *gid = (uint32_t)v;
        *home = "/";
        *name = user;
        return 0;
    }
    if (strcmp(sb->user_name, "user") != 0)
        return sbx_fail(err, SBX_E_INVALID, "user '%s' is invalid (allowed: %s, user, root, or a uid 0-65535)", user,
                        sb->user_name);
    return sbx_fail(err, SBX_E_INVALID, "user '%s' is invalid (allowed: user, root, or a uid 0-65535)", user);
}

/* Serialises the EXEC request: fixed part, then workdir, argv, env. */
static char *build_request(char *const *argv, uint64_t id, uint32_t uid, uint32_t gid, const char *workdir,
                           char **env, uint32_t flags, size_t *len, sbx_err *err)
{
    uint32_t argc = 0, envc = 0;
    size_t total = sizeof(struct sbx_msg_exec) + strlen(workdir) + 1;
    for (; argv[argc]; argc++)
        total += strlen(argv[argc]) + 1;
    for (; env[envc]; envc++)
        total += strlen(env[envc]) + 1;
    if (total > SBX_MAX_EXEC_MSG) {
        sbx_fail(err, SBX_E_INVALID, "command line and environment are too large (%zu bytes, at most %u)", total,
                 SBX_MAX_EXEC_MSG);
        return NULL;
    }
    char *buf = malloc(total);
    if (!buf) {
        sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        return NULL;
    }
    struct sbx_msg_exec *m = (struct sbx_msg_exec *)buf;
    *m = (struct sbx_msg_exec){{SBX_MSG_EXEC, (uint32_t)(total - sizeof(m->h))}, id, uid, gid, flags, argc, envc};
    char *p = buf + sizeof(*m);
    p = stpcpy(p, workdir) + 1;
    for (uint32_t i = 0; i < argc; i++)
        p = stpcpy(p, argv[i]) + 1;
    for (uint32_t i = 0; i < envc; i++)
        p = stpcpy(p, env[i]) + 1;
    *len = total;
    return buf;
}

/* Reads what is there; returns 0 on EOF (fd closed), 1 otherwise. */
static int pump(struct capture *c, int stream, const sbx_exec_spec *xs)
{
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 1 : 0;
    if (n == 0)
        return 0;
    if (xs->on_output)
        xs->on_output(xs->ud, stream, buf, (size_t)n);
    size_t room = c->cap - c->len, take = (size_t)n < room ? (size_t)n : room;
    if (take < (size_t)n)
        c->truncated = true;
    if (take) {
        memcpy(c->buf + c->len, buf, take);
        c->len += take;
    }
    return 1;
}

static void send_signal(sbx_sandbox *sb, uint64_t id, int sig)
{
    struct sbx_msg_signal m = {{SBX_MSG_SIGNAL, sizeof(m) - sizeof(m.h)}, id, sig};
    pthread_mutex_lock(&sb->send_lock);
    sbx_msg_send(sb->ctl_fd, &m, sizeof(m), NULL, 0);
    pthread_mutex_unlock(&sb->send_lock);
}

/* Signals a command's job through init; a SIGKILL also goes straight
 * from the host to the job's process group (`pid`: the command's pid in
 * the sandbox, 0 when unknown), because init shares the sandbox's cpu
 * quota with the job and a fork bomb starves it. */
static void signal_job(sbx_sandbox *sb, uint64_t id, pid_t pid, int sig)
{
    send_signal(sb, id, sig);
    if (sig == SIGKILL && pid > 1 && sb->has_cg)
        sbx_cg_kill_group(&sb->cg, pid);
}

static const char *stage_name(int stage)
{
    switch (stage) {
    case SBX_STAGE_WORKDIR: return "cannot enter workdir";
    case SBX_STAGE_USER: return "cannot switch user";
    case SBX_STAGE_FORK: return "cannot start process";
    default: return "cannot execute";
    }
}

/* What exec and spawn share: the command, the sandbox, the user, the
 * workdir and the environment, checked and resolved. */
struct cmd_setup {
    uint32_t uid, gid;
    const char *workdir;
    char **env;
};

static int setup_command(sbx_sandbox *sb, char *const *argv, const char *user, const char *workdir,
                         char *const *xenv, struct cmd_setup *cs, sbx_err *err)
{
    if (!argv || !argv[0] || !argv[0][0])
        return sbx_fail(err, SBX_E_INVALID, "no command given");
    if (sb->dead || sb->init_pid <= 0)
        return sbx_fail(err, SBX_E_INVALID, "sandbox %s is not running", sb->id);
    const char *home = NULL, *uname = NULL;
    if (sbx_parse_user(sb, user, &cs->uid, &cs->gid, &home, &uname, err) < 0)
        return -1;
    cs->workdir = workdir && *workdir ? workdir : home;
    if (cs->workdir[0] != '/')
        return sbx_fail(err, SBX_E_INVALID, "workdir '%s' must be an absolute path", cs->workdir);
    if (!sb->env)
        return build_env(xenv, home, uname, &cs->env, err);
    /* The sandbox's own defaults (GPU variables) go first: the caller's
     * entries come later and win. */
    size_t nd = 0, nx = 0;
    while (sb->env[nd])
        nd++;
    while (xenv && xenv[nx])
        nx++;
    char **merged = calloc(nd + nx + 1, sizeof(char *));
    if (!merged)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    memcpy(merged, sb->env, nd * sizeof(char *));
    if (nx)
        memcpy(merged + nd, xenv, nx * sizeof(char *));
    int r = build_env(merged, home, uname, &cs->env, err);
    free(merged);
    return r;
}

int sbx_sandbox_exec(sbx_sandbox *sb, const sbx_exec_spec *xs, sbx_exec_result *res, sbx_err *err)
{
    memset(res, 0, sizeof(*res));
    struct cmd_setup cs;
    if (setup_command(sb, xs->argv, xs->user, xs->workdir, xs->env, &cs, err) < 0)
        return -1;
    uint32_t uid = cs.uid, gid = cs.gid;
    const char *workdir = cs.workdir;
    char **env = cs.env;
    struct capture out = {.fd = -1}, errc = {.fd = -1};
    int chan[2] = {-1, -1}, fds[4], nfds = 0, rc = -1;
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    uint32_t flags = sb->one_shot ? SBX_EXEC_LAST | SBX_EXEC_QUIET : 0;
    size_t cap = xs->capture_max ? xs->capture_max : DEFAULT_CAPTURE;
    uint64_t id = __atomic_add_fetch(&sb->next_exec, 1, __ATOMIC_RELAXED);

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0) {
        sbx_fail_errno(err, errno, "socketpair");
        goto done;
    }
    fds[nfds++] = chan[1];
    if (xs->stdin_fd >= 0) {
        flags |= SBX_EXEC_STDIN;
        fds[nfds++] = xs->stdin_fd;
    }
    flags |= SBX_EXEC_STDOUT | SBX_EXEC_STDERR;
    if (xs->stdout_fd >= 0) {
        fds[nfds++] = xs->stdout_fd;
    } else {
        if (pipe2(po, O_CLOEXEC | O_NONBLOCK) < 0 || !(out.buf = malloc(cap + 1))) {
            sbx_fail_errno(err, errno ? errno : ENOMEM, "capture stdout");
            goto done;
        }
        /* Only our end is non-blocking; the command's end stays blocking. */
        fcntl(po[1], F_SETFL, 0);
        out.fd = po[0];
        po[0] = -1;
        out.cap = cap;
        fds[nfds++] = po[1];
    }
    if (xs->stderr_fd >= 0) {
        fds[nfds++] = xs->stderr_fd;
    } else {
        if (pipe2(pe, O_CLOEXEC | O_NONBLOCK) < 0 || !(errc.buf = malloc(cap + 1))) {
            sbx_fail_errno(err, errno ? errno : ENOMEM, "capture stderr");
            goto done;
        }
        fcntl(pe[1], F_SETFL, 0);
        errc.fd = pe[0];
        pe[0] = -1;
        errc.cap = cap;
        fds[nfds++] = pe[1];
    }

    size_t len;
    char *msg = build_request(xs->argv, id, uid, gid, workdir, env, flags, &len, err);
    if (!msg)
        goto done;
    uint64_t t0 = sbx_now_usec();
    pthread_mutex_lock(&sb->send_lock);
    int sr = sbx_msg_send(sb->ctl_fd, msg, len, fds, nfds);
    pthread_mutex_unlock(&sb->send_lock);
    free(msg);
    /* The command holds its ends now; ours must go or EOF never comes. */
    close(chan[1]);
    chan[1] = -1;
    if (po[1] >= 0)
        close(po[1]), po[1] = -1;
    if (pe[1] >= 0)
        close(pe[1]), pe[1] = -1;
    if (sr < 0) {
        if (sbx_setup_failed(sb, err) == 0)
            sbx_fail_errno(err, -sr, "sandbox %s: send exec request", sb->id);
        goto done;
    }
    /* While the command starts a core is idle here: fork the reaper now. */
    if (sb->reap_wanted)
        sbx_reaper_start(sb);

    uint64_t deadline = xs->timeout_ms ? t0 + xs->timeout_ms * 1000 : 0;
    uint64_t drain_until = 0, kill_sent = 0;
    bool started = false, exited = false;
    int status = 0;
    pid_t job = 0; /* the command's pid in the sandbox, once started */
    while (!exited || out.fd >= 0 || errc.fd >= 0) {
        uint64_t now = sbx_now_usec();
        if (exited && now >= drain_until)
            break;
        if (!exited && deadline && now >= deadline && !res->timed_out) {
            res->timed_out = true;
            if (xs->kill_on_timeout) {
                /* The whole sandbox goes, grandchildren included. */
                kill(sb->init_pid, SIGKILL);
                sb->dead = true;
            } else {
                signal_job(sb, id, job, SIGKILL);
            }
            kill_sent = now;
        }
        if (kill_sent && !exited && now - kill_sent > 5000000) {
            sbx_fail(err, SBX_E_SYSTEM, "sandbox %s: command did not die after SIGKILL", sb->id);
            goto done;
        }
        struct pollfd pf[4];
        int np = 0, ichan = -1, iout = -1, ierr = -1, isig = -1;
        if (!exited)
            pf[ichan = np++] = (struct pollfd){chan[0], POLLIN, 0};
        if (out.fd >= 0)
            pf[iout = np++] = (struct pollfd){out.fd, POLLIN, 0};
        if (errc.fd >= 0)
            pf[ierr = np++] = (struct pollfd){errc.fd, POLLIN, 0};
        if (xs->signal_fd >= 0 && !exited)
            pf[isig = np++] = (struct pollfd){xs->signal_fd, POLLIN, 0};
        int wait_ms = -1;
        uint64_t until = exited ? drain_until : (deadline && !res->timed_out ? deadline : 0);
        if (kill_sent && !exited)
            until = kill_sent + 5000001;
        if (until)
            wait_ms = until > now ? (int)((until - now + 999) / 1000) : 0;
        int pr = poll(pf, (nfds_t)np, wait_ms);
        if (pr < 0 && errno != EINTR) {
            sbx_fail_errno(err, errno, "poll");
            goto done;
        }
        if (pr <= 0)
            continue;
        if (iout >= 0 && pf[iout].revents && !pump(&out, SBX_STDOUT, xs))
            close(out.fd), out.fd = -1;
        if (ierr >= 0 && pf[ierr].revents && !pump(&errc, SBX_STDERR, xs))
            close(errc.fd), errc.fd = -1;
        if (isig >= 0 && pf[isig].revents) {
            int sig = 0;
            if (read(xs->signal_fd, &sig, sizeof(sig)) == (ssize_t)sizeof(sig) && sig > 0 && sig < 65)
                signal_job(sb, id, job, sig);
        }
        if (ichan >= 0 && pf[ichan].revents) {
            _Alignas(8) char buf[128];
            ssize_t n = sbx_msg_recv(chan[0], buf, sizeof(buf), NULL, NULL);
            const struct sbx_msg_hdr *h = (const void *)buf;
            if (n >= (ssize_t)sizeof(struct sbx_msg_started) && h->type == SBX_MSG_STARTED) {
                const struct sbx_msg_started *s = (const void *)buf;
                started = true;
                job = s->err ? 0 : s->pid;
                if (s->err) {
                    res->exec_errno = s->err;
                    res->exit_code = s->err == ENOENT ? 127 : 126;
                    if (s->stage == SBX_STAGE_EXEC && s->err == ENOENT && !strchr(xs->argv[0], '/'))
                        snprintf(res->exec_error, sizeof(res->exec_error), "'%s': command not found in PATH",
                                 xs->argv[0]);
                    else
                        snprintf(res->exec_error, sizeof(res->exec_error), "%s '%s': %s", stage_name(s->stage),
                                 s->stage == SBX_STAGE_WORKDIR ? workdir : xs->argv[0], strerror(s->err));
                    exited = true;
                    drain_until = sbx_now_usec() + DRAIN_GRACE_USEC;
                }
            } else if (n >= (ssize_t)sizeof(struct sbx_msg_exit) && h->type == SBX_MSG_EXIT) {
                const struct sbx_msg_exit *x = (const void *)buf;
                status = x->status;
                res->cpu_usec = x->cpu_usec;
                res->memory_peak = x->maxrss_kib * 1024;
                exited = true;
                drain_until = sbx_now_usec() + DRAIN_GRACE_USEC;
            } else if (n <= 0) {
                /* A one-shot sandbox whose setup failed after create. */
                if (!started && sbx_setup_failed(sb, err) < 0) {
                    sb->dead = true;
                    goto done;
                }
                /* init is gone: the sandbox was killed (timeout, OOM of
                 * init, destroy). The command died with it. */
                status = SIGKILL;
                exited = true;
                sb->dead = true;
                drain_until = sbx_now_usec() + DRAIN_GRACE_USEC;
            }
        }
    }
    if (!res->exec_errno) {
        if (WIFEXITED(status)) {
            res->exit_code = WEXITSTATUS(status);
        } else {
            res->signal = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
            res->exit_code = 128 + res->signal;
        }
    }
    res->wall_usec = sbx_now_usec() - t0;
    /* Only a SIGKILL can be the OOM killer's (137 when a shell relays
     * it); the counter is read then, not on every run (each read is
     * several cgroup file opens). */
    if (sb->has_cg && (res->signal == SIGKILL || res->exit_code == 128 + SIGKILL)) {
        sbx_stats st;
        if (sbx_sandbox_stats(sb, &st, NULL) == 0) {
            uint64_t seen = __atomic_exchange_n(&sb->oom_seen, st.oom_kills, __ATOMIC_RELAXED);
            res->oom_killed = st.oom_kills > seen;
        }
    }
    rc = 0;

done:
    free_env(env);
    if (out.fd >= 0)
        close(out.fd);
    if (errc.fd >= 0)
        close(errc.fd);
    for (int i = 0; i < 2; i++) {
        if (chan[i] >= 0)
            close(chan[i]);
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    if (rc == 0) {
        res->out = out.buf ? out.buf : strdup("");
        res->err = errc.buf ? errc.buf : strdup("");
        if (res->out)
            res->out[out.len] = '\0';
        if (res->err)
            res->err[errc.len] = '\0';
        res->out_len = out.len;
        res->err_len = errc.len;
        res->out_truncated = out.truncated;
        res->err_truncated = errc.truncated;
    } else {
        free(out.buf);
        free(errc.buf);
    }
    return rc;
}

void sbx_exec_result_free(sbx_exec_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

/* ---- long-running processes ---------------------------------------------- */

struct sbx_proc {
    sbx_sandbox *sb;
    uint64_t id;
    pid_t pid;
    int chan;  /* status channel: EXIT arrives here, EOF if the sandbox died */
    int fd[3]; /* host ends of stdio pipes, or -1 */
    bool exited;
    int status;
};

int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_spec *ss, sbx_proc **out, sbx_err *err)
{
    *out = NULL;
    if (ss->n_extra < 0 || ss->n_extra > SBX_SPAWN_MAX_EXTRA)
        return sbx_fail(err, SBX_E_INVALID, "%d extra fds given (at most %d)", ss->n_extra, SBX_SPAWN_MAX_EXTRA);
    struct cmd_setup cs;
    if (setup_command(sb, ss->argv, ss->user, ss->workdir, ss->env, &cs, err) < 0)
        return -1;
    uint32_t uid = cs.uid, gid = cs.gid;
    const char *workdir = cs.workdir;
    char **env = cs.env;

    sbx_proc *p = calloc(1, sizeof(*p));
    int chan[2] = {-1, -1}, theirs[3] = {-1, -1, -1}, fds[8], nfds = 0, rc = -1;
    char *msg = NULL;
    if (!p) {
        sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        goto done;
    }
    p->sb = sb;
    p->chan = p->fd[0] = p->fd[1] = p->fd[2] = -1;
    p->id = __atomic_add_fetch(&sb->next_exec, 1, __ATOMIC_RELAXED);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0) {
        sbx_fail_errno(err, errno, "socketpair");
        goto done;
    }
    fds[nfds++] = chan[1];
    const int given[3] = {ss->stdin_fd, ss->stdout_fd, ss->stderr_fd};
    for (int i = 0; i < 3; i++) {
        if (given[i] >= 0) {
            fds[nfds++] = given[i];
            continue;
        }
        int pp[2];
        if (pipe2(pp, O_CLOEXEC | O_NONBLOCK) < 0) {
            sbx_fail_errno(err, errno, "pipe");
            goto done;
        }
        /* The host end stays non-blocking; the process's end blocks. */
        int mine = i == 0 ? pp[1] : pp[0];
        theirs[i] = i == 0 ? pp[0] : pp[1];
        fcntl(theirs[i], F_SETFL, 0);
        p->fd[i] = mine;
        fds[nfds++] = theirs[i];
    }
    for (int i = 0; i < ss->n_extra; i++)
        fds[nfds++] = ss->extra_fds[i];
    uint32_t flags = SBX_EXEC_STDIN | SBX_EXEC_STDOUT | SBX_EXEC_STDERR |
                     ((uint32_t)ss->n_extra << SBX_EXEC_EXTRA_SHIFT);
    size_t len;
    msg = build_request(ss->argv, p->id, uid, gid, workdir, env, flags, &len, err);
    if (!msg)
        goto done;
    pthread_mutex_lock(&sb->send_lock);
    int sr = sbx_msg_send(sb->ctl_fd, msg, len, fds, nfds);
    pthread_mutex_unlock(&sb->send_lock);
    close(chan[1]);
    chan[1] = -1;
    if (sr < 0) {
        if (sbx_setup_failed(sb, err) == 0)
            sbx_fail_errno(err, -sr, "sandbox %s: send exec request", sb->id);
        goto done;
    }
    p->chan = chan[0];
    chan[0] = -1;

    /* Wait for init's STARTED: the pid, or why it could not start. */
    struct pollfd pf = {p->chan, POLLIN, 0};
    int pr;
    do
        pr = poll(&pf, 1, 30000);
    while (pr < 0 && errno == EINTR);
    _Alignas(8) char buf[128];
    ssize_t n = pr > 0 ? sbx_msg_recv(p->chan, buf, sizeof(buf), NULL, NULL) : -ETIMEDOUT;
    const struct sbx_msg_started *s = (const void *)buf;
    if (n < (ssize_t)sizeof(*s) || s->h.type != SBX_MSG_STARTED) {
        if (n != -ETIMEDOUT && n <= 0 && sbx_setup_failed(sb, err) < 0)
            goto done;
        sbx_fail(err, SBX_E_SYSTEM, "sandbox %s: no answer to the exec request (%s)", sb->id,
                 n == -ETIMEDOUT ? "timed out" : "sandbox gone");
        err->sys_errno = EIO;
        goto done;
    }
    if (s->err) {
        if (s->stage == SBX_STAGE_EXEC && s->err == ENOENT && !strchr(ss->argv[0], '/'))
            sbx_fail(err, SBX_E_NOTFOUND, "'%s': command not found in PATH", ss->argv[0]);
        else
            sbx_fail(err, s->err == ENOENT ? SBX_E_NOTFOUND : SBX_E_INVALID, "%s '%s': %s", stage_name(s->stage),
                     s->stage == SBX_STAGE_WORKDIR ? workdir : ss->argv[0], strerror(s->err));
        err->sys_errno = s->err;
        goto done;
    }
    p->pid = s->pid;
    *out = p;
    p = NULL;
    rc = 0;
done:
    free(msg);
    free_env(env);
    for (int i = 0; i < 3; i++)
        if (theirs[i] >= 0)
            close(theirs[i]);
    for (int i = 0; i < 2; i++)
        if (chan[i] >= 0)
            close(chan[i]);
    if (p) {
        if (p->chan >= 0)
            close(p->chan);
        for (int i = 0; i < 3; i++)
            if (p->fd[i] >= 0)
                close(p->fd[i]);
        free(p);
    }
    return rc;
}

pid_t sbx_proc_pid(const sbx_proc *p)
{
    return p->pid;
}

int sbx_proc_fd(const sbx_proc *p, int which)
{
    return which >= 0 && which < 3 ? p->fd[which] : -1;
}

void sbx_proc_close_fd(sbx_proc *p, int which)
{
    if (which >= 0 && which < 3 && p->fd[which] >= 0) {
        close(p->fd[which]);
        p->fd[which] = -1;
    }
}

int sbx_proc_status_fd(const sbx_proc *p)
{
    return p->chan;
}

int sbx_proc_signal(sbx_proc *p, int sig)
{
    if (p->exited || p->sb->dead)
        return -1;
    signal_job(p->sb, p->id, p->pid, sig);
    return 0;
}

int sbx_proc_wait(sbx_proc *p, int timeout_ms, int *status)
{
    if (!p->exited) {
        struct pollfd pf = {p->chan, POLLIN, 0};
        int pr;
        do
            pr = poll(&pf, 1, timeout_ms);
        while (pr < 0 && errno == EINTR);
        if (pr <= 0)
            return 0;
        _Alignas(8) char buf[128];
        ssize_t n = sbx_msg_recv(p->chan, buf, sizeof(buf), NULL, NULL);
        const struct sbx_msg_exit *x = (const void *)buf;
        if (n >= (ssize_t)sizeof(*x) && x->h.type == SBX_MSG_EXIT) {
            p->status = x->status;
        } else if (n == -EAGAIN) {
            return 0;
        } else {
            p->status = SIGKILL; /* init is gone, and the process with it */
            p->exited = true;
            if (status)
                *status = p->status;
            return -1;
        }
        p->exited = true;
    }
    if (status)
        *status = p->status;
    return 1;
}

void sbx_proc_free(sbx_proc *p)
{
    if (!p)
        return;
    if (!p->exited && !p->sb->dead)
        signal_job(p->sb, p->id, p->pid, SIGKILL);
    if (p->chan >= 0)
        close(p->chan);
    for (int i = 0; i < 3; i++)
        if (p->fd[i] >= 0)
            close(p->fd[i]);
    free(p);
}
