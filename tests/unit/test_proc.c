/* Long-running processes (sbx_sandbox_spawn) and file operations as a
 * sandbox user (sbx_sandbox_open & co.): pipes, extra fds, signals, exit
 * status, permissions and confinement of paths. Needs root (skips
 * otherwise). */
#include "t.h"
#include "sbx/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads from a non-blocking fd until `want` bytes or EOF or 5 s. */
static size_t read_some(int fd, char *buf, size_t cap, size_t want)
{
    size_t got = 0;
    while (got < want && got < cap - 1) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 5000) <= 0)
            break;
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

static int sh(sbx_sandbox *sb, const char *user, const char *cmd, char *out, size_t cap)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    sbx_exec_spec xs = {.argv = argv, .user = user, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
                        .signal_fd = -1, .timeout_ms = 10000};
    sbx_exec_result r;
    sbx_err e;
    if (sbx_sandbox_exec(sb, &xs, &r, &e) < 0)
        return -1;
    if (out)
        snprintf(out, cap, "%s", r.out);
    int code = r.exit_code;
    sbx_exec_result_free(&r);
    return code;
}

static void spawn_tests(sbx_sandbox *sb)
{
    sbx_err e;
    sbx_proc *p = NULL;
    char buf[256];

    char *cat[] = {"cat", NULL};
    sbx_spawn_spec ss = {.argv = cat, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    T_OK(sbx_sandbox_spawn(sb, &ss, &p, &e) == 0 && sbx_proc_pid(p) > 1, "spawn cat with stdio pipes");
    if (p) {
        T_OK(write(sbx_proc_fd(p, 0), "hello\n", 6) == 6, "write to its stdin");
        T_STREQ((read_some(sbx_proc_fd(p, 1), buf, sizeof(buf), 6), buf), "hello\n", "read it back from stdout");
        int st = -1;
        T_OK(sbx_proc_wait(p, 0, &st) == 0, "still running while stdin is open");
        sbx_proc_close_fd(p, 0);
        T_OK(sbx_proc_wait(p, 5000, &st) == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "EOF on stdin: exits 0");
        sbx_proc_free(p);
    }

    /* An extra fd becomes fd 3 inside. */
    int pp[2];
    T_OK(pipe2(pp, O_CLOEXEC) == 0, "pipe for fd 3");
    char *w3[] = {"sh", "-c", "echo via3 >&3; echo out; echo err >&2; exit 7", NULL};
    sbx_spawn_spec s3 = {.argv = w3, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .extra_fds = &pp[1],
                         .n_extra = 1};
    p = NULL;
    T_OK(sbx_sandbox_spawn(sb, &s3, &p, &e) == 0, "spawn with an extra fd");
    close(pp[1]);
    if (p) {
        T_STREQ((read_some(pp[0], buf, sizeof(buf), 5), buf), "via3\n", "extra fd is fd 3 in the process");
        T_STREQ((read_some(sbx_proc_fd(p, 1), buf, sizeof(buf), 4), buf), "out\n", "stdout separate");
        T_STREQ((read_some(sbx_proc_fd(p, 2), buf, sizeof(buf), 4), buf), "err\n", "stderr separate");
        int st = -1;
        T_OK(sbx_proc_wait(p, 5000, &st) == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 7, "exit status 7 reported");
        sbx_proc_free(p);
    }
    close(pp[0]);

    char *nope[] = {"no-such-command-xyz", NULL};
    sbx_spawn_spec sn = {.argv = nope, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    p = NULL;
    T_OK(sbx_sandbox_spawn(sb, &sn, &p, &e) < 0 && e.sys_errno == ENOENT && strstr(e.msg, "not found") && !p,
         "a missing command fails to spawn with ENOENT (%s)", e.msg);

    char *slp[] = {"sleep", "100", NULL};
    sbx_spawn_spec sl = {.argv = slp, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    T_OK(sbx_sandbox_spawn(sb, &sl, &p, &e) == 0, "spawn sleep");
    if (p) {
        struct pollfd pf = {sbx_proc_status_fd(p), POLLIN, 0};
        T_OK(poll(&pf, 1, 100) == 0, "status fd quiet while it runs");
        T_OK(sbx_proc_signal(p, SIGTERM) == 0, "signal its group");
        int st = -1;
        T_OK(sbx_proc_wait(p, 5000, &st) == 1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "killed by SIGTERM");
        sbx_proc_free(p);
    }

    /* Freeing a running process kills it (and its group). */
    char *bg[] = {"sh", "-c", "sleep 100 & echo $!; wait", NULL};
    sbx_spawn_spec sb2 = {.argv = bg, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    p = NULL;
    T_OK(sbx_sandbox_spawn(sb, &sb2, &p, &e) == 0, "spawn a shell with a background child");
    if (p) {
        read_some(sbx_proc_fd(p, 1), buf, sizeof(buf), 2);
        int child = atoi(buf);
        sbx_proc_free(p);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "for i in $(seq 100); do [ -e /proc/%d ] || exit 0; sleep 0.02; done; exit 1",
                 child);
        T_OK(child > 1 && sh(sb, NULL, cmd, NULL, 0) == 0, "sbx_proc_free killed the process group (pid %d)", child);
    }
}

static void file_tests(sbx_sandbox *sb)
{
    sbx_err e;
    char buf[256];
    struct stat st;

    int fd = sbx_sandbox_open(sb, "/home/user/deep/er/a.txt", O_WRONLY | O_CREAT | O_TRUNC, 0640, NULL,
                              SBX_FS_MKDIRS, &e);
    T_OK(fd >= 0, "open for writing with missing parents (%s)", fd < 0 ? e.msg : "");
    if (fd >= 0) {
        T_OK(write(fd, "data\n", 5) == 5, "write through the returned fd");
        T_OK(fstat(fd, &st) == 0 && sbx_sandbox_guest_id(sb, st.st_uid) == 1000 &&
                 sbx_sandbox_guest_id(sb, st.st_gid) == 1000 && (st.st_mode & 07777) == 0640,
             "file is owned by user (1000) with the mode asked for");
        close(fd);
    }
    T_OK(sh(sb, NULL, "cat /home/user/deep/er/a.txt; stat -c %U:%a /home/user/deep", buf, sizeof(buf)) == 0 &&
             strcmp(buf, "data\nuser:755\n") == 0,
         "the sandbox sees the file and the made parents (%s)", buf);

    fd = sbx_sandbox_open(sb, "deep/er/a.txt", O_RDONLY, 0, NULL, 0, &e);
    T_OK(fd >= 0 && read(fd, buf, sizeof(buf)) == 5, "relative path is taken from home");
    if (fd >= 0)
        close(fd);

    fd = sbx_sandbox_open(sb, "/home/user/missing", O_RDONLY, 0, NULL, 0, &e);
    T_OK(fd < 0 && e.sys_errno == ENOENT && e.code == SBX_E_NOTFOUND, "missing file: ENOENT (%s)", e.msg);

    fd = sbx_sandbox_open(sb, "/etc/passwd", O_WRONLY, 0, NULL, 0, &e);
    T_OK(fd < 0 && (e.sys_errno == EACCES || e.sys_errno == EROFS), "user cannot write /etc/passwd (%s)", e.msg);
    fd = sbx_sandbox_open(sb, "/root/r.txt", O_WRONLY | O_CREAT, 0600, NULL, 0, &e);
    T_OK(fd < 0 && e.sys_errno == EACCES, "user cannot create in /root (%s)", e.msg);
    fd = sbx_sandbox_open(sb, "/root/r.txt", O_WRONLY | O_CREAT, 0600, "root", 0, &e);
    T_OK(fd >= 0, "root can (%s)", fd < 0 ? e.msg : "");
    if (fd >= 0) {
        T_OK(fstat(fd, &st) == 0 && sbx_sandbox_guest_id(sb, st.st_uid) == 0, "owned by root inside");
        close(fd);
    }

    /* Confinement: a host file is unreachable through "..", absolute
     * symlinks and /proc. */
    char host_file[] = "/tmp/sbx-proc-secret-XXXXXX";
    int hf = mkstemp(host_file);
    T_OK(hf >= 0, "host secret file made");
    if (hf >= 0)
        close(hf);
    char cmd[256], path[256];
    snprintf(cmd, sizeof(cmd), "ln -sf %s /home/user/esc", host_file);
    T_OK(sh(sb, NULL, cmd, NULL, 0) == 0, "sandbox makes a symlink to the host path");
    fd = sbx_sandbox_open(sb, "/home/user/esc", O_RDONLY, 0, NULL, 0, &e);
    T_OK(fd < 0 && e.sys_errno == ENOENT, "the symlink resolves inside the sandbox, not on the host");
    snprintf(path, sizeof(path), "/../../../..%s", host_file);
    fd = sbx_sandbox_open(sb, path, O_RDONLY, 0, NULL, 0, &e);
    T_OK(fd < 0 && e.sys_errno == ENOENT, "'..' cannot climb out of the sandbox");
    snprintf(path, sizeof(path), "/proc/1/root%s", host_file);
    fd = sbx_sandbox_open(sb, path, O_RDONLY, 0, "root", 0, &e);
    T_OK(fd < 0, "/proc/1/root leads back into the sandbox");
    unlink(host_file);

    /* A FIFO must not stall the host. */
    T_OK(sh(sb, NULL, "mkfifo /home/user/fifo", NULL, 0) == 0, "sandbox makes a FIFO");
    fd = sbx_sandbox_open(sb, "/home/user/fifo", O_RDONLY, 0, NULL, 0, &e);
    T_OK(fd < 0 && e.sys_errno == EINVAL && strstr(e.msg, "not a regular file"), "a FIFO is refused (%s)", e.msg);
    fd = sbx_sandbox_open(sb, "/home/user/fifo", O_PATH, 0, NULL, 0, &e);
    T_OK(fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode), "O_PATH may name it (for stat)");
    if (fd >= 0)
        close(fd);

    T_OK(sbx_sandbox_mkdir(sb, "/home/user/m/n/o", 0750, NULL, SBX_FS_MKDIRS, &e) == 0, "mkdir -p");
    T_OK(sbx_sandbox_mkdir(sb, "/home/user/m/n/o", 0750, NULL, 0, &e) < 0 && e.sys_errno == EEXIST,
         "mkdir of an existing dir: EEXIST");
    T_OK(sbx_sandbox_mkdir(sb, "/home/user/m/n/o", 0750, NULL, SBX_FS_EXIST_OK, &e) == 0, "... unless EXIST_OK");
    T_OK(sbx_sandbox_mkdir(sb, "/home/user/deep/er/a.txt", 0750, NULL, SBX_FS_EXIST_OK, &e) < 0 &&
             e.sys_errno == EEXIST,
         "EXIST_OK does not cover an existing file");
    T_OK(sh(sb, NULL, "stat -c %a /home/user/m/n/o", buf, sizeof(buf)) == 0 && strcmp(buf, "750\n") == 0,
         "mode of the made directory is exact (%s)", buf);

    T_OK(sbx_sandbox_rename(sb, "/home/user/deep/er/a.txt", "/home/user/moved/b.txt", NULL, SBX_FS_MKDIRS, &e) == 0,
         "rename into a new directory (%s)", e.msg);
    T_OK(sh(sb, NULL, "cat /home/user/moved/b.txt && ! test -e /home/user/deep/er/a.txt", buf, sizeof(buf)) == 0,
         "renamed");

    T_OK(sh(sb, NULL, "mkdir -p /home/user/tree/a/b/c && touch /home/user/tree/a/f /home/user/tree/a/b/c/g && "
                      "for i in $(seq 300); do touch /home/user/tree/x$i; done && ln -s / /home/user/tree/root",
            NULL, 0) == 0,
         "a tree to remove (with a symlink to /)");
    T_OK(sbx_sandbox_remove(sb, "/home/user/tree", NULL, &e) == 0, "recursive remove (%s)", e.msg);
    T_OK(sh(sb, NULL, "! test -e /home/user/tree && test -e /etc/passwd", NULL, 0) == 0,
         "tree gone, the symlink's target untouched");
    T_OK(sbx_sandbox_remove(sb, "/etc/hostname", NULL, &e) < 0, "user cannot remove /etc/hostname (%s)", e.msg);
    T_OK(sbx_sandbox_remove(sb, "/", "root", &e) < 0 && e.sys_errno == EBUSY, "removing / is refused");
}

int main(void)
{
    if (geteuid() != 0) {
        printf("ok - proc tests skipped: need root\n");
        return 0;
    }
    sbx_engine *eng;
    sbx_err e;
    T_OK(sbx_engine_open(NULL, &eng, &e) == 0, "engine opens");
    sbx_spec spec = {.memory_mib = 256, .pids = 128};
    sbx_sandbox *sb = NULL;
    T_OK(sbx_sandbox_create(eng, &spec, &sb, &e) == 0, "sandbox created (%s)", sb ? "" : e.msg);
    if (!sb)
        T_DONE();
    spawn_tests(sb);
    file_tests(sb);
    sbx_sandbox_destroy(sb);
    sbx_engine_close(eng);
    T_DONE();
}
