/* probe NAME [ARG...] [-- NAME [ARG...]]...: runs one escape attempt per
 * NAME, each in a child of its own (so a probe that succeeds changes
 * nothing for the next one), and prints "NAME RESULT": OK when the call
 * succeeded, else the errno name (EPERM, ENOSYS...). Used by
 * tests/security/ inside sandboxes, and on the host as the control that
 * shows a probe does reach the kernel when nothing confines it.
 *
 * Arguments are chosen so that a probe which succeeds outside changes
 * nothing that outlives the probe's own process (bogus paths, invalid
 * flags, a namespace joined by a process that exits at once). */
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#define NOWHERE "/sbx-probe-nonexistent"

static const char *name_of(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* The result line: r >= 0 is success. */
static int say(const char *probe, long r)
{
    printf("%s %s\n", probe, r >= 0 ? "OK" : name_of(errno));
    return r >= 0 ? 0 : 1;
}

static long need_arg(int argc, char **argv, int i)
{
    if (i >= argc) {
        fprintf(stderr, "probe %s: missing argument\n", argv[0]);
        exit(2);
    }
    return 0;
}

static long p_clone_newuser(void)
{
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0L, NULL, NULL, 0L);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long p_setns(void)
{
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long r = syscall(SYS_setns, fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static long p_perf(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.disabled = 1;
    /* This process, any cpu: allowed to root outside. */
    long fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0UL);
    if (fd >= 0)
        close((int)fd);
    return fd;
}

static long close_ok(long fd)
{
    if (fd >= 0)
        close((int)fd);
    return fd;
}

/* Writes data to path: the error says where it stopped (open or write). */
static int p_write(const char *probe, const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("%s open-%s\n", probe, name_of(errno));
        return 1;
    }
    ssize_t n = write(fd, data, strlen(data));
    int e = errno;
    close(fd);
    if (n < 0) {
        printf("%s write-%s\n", probe, name_of(e));
        return 1;
    }
    printf("%s OK\n", probe);
    return 0;
}

/* CVE-2019-5736: an O_PATH handle first (no write check), reopened for
 * writing through /proc/self/fd. */
static int p_reopen_write(const char *probe, const char *path)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        printf("%s open-%s\n", probe, name_of(errno));
        return 1;
    }
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    int w = open(p, O_WRONLY | O_CLOEXEC);
    int e = errno;
    close(fd);
    if (w < 0) {
        printf("%s reopen-%s\n", probe, name_of(e));
        return 1;
    }
    close(w); /* nothing is written: being able to open is the escape */
    printf("%s OK\n", probe);
    return 0;
}

static int p_connect(const char *probe, const char *ip, const char *port, int type)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "probe: bad address %s\n", ip);
        exit(2);
    }
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (s < 0)
        return say(probe, -1);
    long r;
    if (type == SOCK_STREAM) {
        r = connect(s, (struct sockaddr *)&sa, sizeof(sa));
    } else {
        /* A DNS query for "." NS: a server that gets it answers. */
        static const unsigned char q[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1};
        r = sendto(s, q, sizeof(q), 0, (struct sockaddr *)&sa, sizeof(sa));
        if (r >= 0) {
            /* Sent: did anything answer? (2 s, then ETIMEDOUT) */
            struct pollfd pf = {s, POLLIN, 0};
            int pr = poll(&pf, 1, 2000);
            char buf[512];
            if (pr == 0) {
                errno = ETIMEDOUT;
                r = -1;
            } else {
                r = recv(s, buf, sizeof(buf), 0);
            }
        }
    }
    int e = errno;
    close(s);
    errno = e;
    return say(probe, r);
}

/* Opens fds until the kernel refuses; prints how many and why it stopped.
 * With "hold", keeps them open until killed. */
static int p_fds(const char *probe, bool hold)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0)
            break;
        n++;
    }
    printf("%s %s %ld\n", probe, name_of(errno), n);
    while (hold)
        pause();
    return 0;
}

static int p_ids(const char *probe)
{
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    char line[256] = "";
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "CapEff:", 7) == 0)
            break;
    if (f)
        fclose(f);
    char *cap = line + 7;
    cap += strspn(cap, " \t");
    cap[strcspn(cap, "\n")] = '\0';
    printf("%s uid=%u euid=%u capeff=%s\n", probe, (unsigned)r, (unsigned)e, cap);
    return 0;
}

static int run(int argc, char **argv)
{
    const char *n = argv[0];
    if (!strcmp(n, "mount"))
        return say(n, syscall(SYS_mount, "none", NOWHERE, "tmpfs", 0L, NULL));
    if (!strcmp(n, "umount"))
        return say(n, syscall(SYS_umount2, NOWHERE, 0));
    if (!strcmp(n, "pivot_root"))
        return say(n, syscall(SYS_pivot_root, NOWHERE, NOWHERE));
    if (!strcmp(n, "chroot"))
        return say(n, syscall(SYS_chroot, NOWHERE));
    if (!strcmp(n, "unshare"))
        return say(n, syscall(SYS_unshare, CLONE_NEWNS));
    if (!strcmp(n, "unshare_user"))
        return say(n, syscall(SYS_unshare, CLONE_NEWUSER));
    if (!strcmp(n, "unshare_net"))
        return say(n, syscall(SYS_unshare, CLONE_NEWNET));
    if (!strcmp(n, "clone_newuser"))
        return say(n, p_clone_newuser());
    if (!strcmp(n, "setns"))
        return say(n, p_setns());
    if (!strcmp(n, "init_module"))
        return say(n, syscall(SYS_init_module, NULL, 0L, ""));
    if (!strcmp(n, "finit_module"))
        return say(n, syscall(SYS_finit_module, -1, "", 0));
    if (!strcmp(n, "delete_module"))
        return say(n, syscall(SYS_delete_module, "sbx_no_such_module", O_NONBLOCK));
    if (!strcmp(n, "kexec_load")) /* invalid flags: EINVAL once past the permission check */
        return say(n, syscall(SYS_kexec_load, 0L, 0L, NULL, 0xdead0000UL));
    if (!strcmp(n, "kexec_file_load"))
        return say(n, syscall(SYS_kexec_file_load, -1, -1, 0L, NULL, 0xdead0000UL));
    if (!strcmp(n, "bpf")) /* BPF_PROG_LOAD with no attributes */
        return say(n, syscall(SYS_bpf, 5, NULL, 0));
    if (!strcmp(n, "perf_event_open"))
        return say(n, p_perf());
    if (!strcmp(n, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring, no create */
        return say(n, syscall(SYS_keyctl, 0, -3, 0, 0, 0));
    if (!strcmp(n, "add_key")) /* keyring 0 does not exist */
        return say(n, syscall(SYS_add_key, "user", "sbx-probe", "x", 1, 0));
    if (!strcmp(n, "request_key"))
        return say(n, syscall(SYS_request_key, "user", "sbx-no-such-key", NULL, 0));
    if (!strcmp(n, "userfaultfd"))
        return say(n, close_ok(syscall(SYS_userfaultfd, O_CLOEXEC)));
    if (!strcmp(n, "io_uring_setup"))
        return say(n, syscall(SYS_io_uring_setup, 1, NULL));
    if (!strcmp(n, "open_by_handle_at"))
        return say(n, syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0));
    if (!strcmp(n, "packet_socket"))
        return say(n, close_ok(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)));
    if (!strcmp(n, "raw_socket"))
        return say(n, close_ok(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP)));
    if (!strcmp(n, "ptrace_attach")) {
        need_arg(argc, argv, 1);
        pid_t pid = atoi(argv[1]);
        long r = ptrace(PTRACE_SEIZE, pid, NULL, NULL);
        int e = errno;
        if (r == 0)
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        errno = e;
        return say(n, r);
    }
    if (!strcmp(n, "vm_read")) {
        /* The permission check comes first: outside, a bogus address
         * gives EFAULT; refused, EPERM (or ESRCH: not visible at all). */
        need_arg(argc, argv, 1);
        char buf[16];
        struct iovec l = {buf, sizeof(buf)}, r = {(void *)4096, sizeof(buf)};
        return say(n, syscall(SYS_process_vm_readv, atoi(argv[1]), &l, 1UL, &r, 1UL, 0UL));
    }
    if (!strcmp(n, "kill")) {
        need_arg(argc, argv, 2);
        return say(n, kill(atoi(argv[1]), atoi(argv[2])));
    }
    if (!strcmp(n, "mknod")) {
        need_arg(argc, argv, 1);
        long r = mknod(argv[1], S_IFCHR | 0600, makedev(1, 3));
        if (r == 0)
            unlink(argv[1]);
        return say(n, r);
    }
    if (!strcmp(n, "mknod_blk")) {
        need_arg(argc, argv, 1);
        long r = mknod(argv[1], S_IFBLK | 0600, makedev(7, 0));
        if (r == 0)
            unlink(argv[1]);
        return say(n, r);
    }
    if (!strcmp(n, "open_rw")) { /* a device or file opened for reading and writing */
        need_arg(argc, argv, 1);
        return say(n, close_ok(open(argv[1], O_RDWR | O_CLOEXEC)));
    }
    if (!strcmp(n, "write")) {
        need_arg(argc, argv, 2);
        return p_write(n, argv[1], argv[2]);
    }
    if (!strcmp(n, "reopen_write")) {
        need_arg(argc, argv, 1);
        return p_reopen_write(n, argv[1]);
    }
    if (!strcmp(n, "tcp")) {
        need_arg(argc, argv, 2);
        return p_connect(n, argv[1], argv[2], SOCK_STREAM);
    }
    if (!strcmp(n, "dns")) {
        need_arg(argc, argv, 1);
        return p_connect(n, argv[1], argc > 2 ? argv[2] : "53", SOCK_DGRAM);
    }
    if (!strcmp(n, "fds"))
        return p_fds(n, argc > 1 && !strcmp(argv[1], "hold"));
    if (!strcmp(n, "ids"))
        return p_ids(n);
    fprintf(stderr, "probe: unknown probe '%s'\n", n);
    return 2;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: probe NAME [ARG...] [-- NAME [ARG...]]...\n");
        return 2;
    }
    int worst = 0;
    for (int i = 1; i < argc;) {
        int j = i;
        while (j < argc && strcmp(argv[j], "--") != 0)
            j++;
        argv[j < argc ? j : argc] = NULL;
        pid_t pid = fork();
        if (pid == 0)
            _exit(run(j - i, argv + i));
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st)) {
            printf("%s CRASHED\n", argv[i]);
            worst = 3;
        } else if (WEXITSTATUS(st) == 2) {
            worst = 2;
        }
        i = j + 1;
    }
    return worst == 2 ? 2 : worst;
}
