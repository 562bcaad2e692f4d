/* Unit tests for the seccomp filter (seccomp.c + seccomp_policy.h).
 *
 * Two layers:
 *  1. The built program is run by a small classic-BPF interpreter over
 *     synthetic seccomp_data: checks the decision for every syscall number,
 *     independently of what the kernel or our privileges would do.
 *  2. Forked children set no_new_privs, install the filter and make the
 *     real calls: refused ones must fail with EPERM (ENOSYS for clone3),
 *     ordinary ones must still work.
 *
 * The test runs as root. Every refused call is made with arguments that are
 * harmless even if the filter let it through (bogus flags, magic numbers,
 * NULL pointers, paths that do not exist, read-only modes), so a broken
 * filter fails the test and does nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "seccomp.h"
#include "seccomp_filter.inc" /* the same program, for the interpreter */
#include "t.h"

extern char **environ;

#define ALEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- classic BPF interpreter (the subset seccomp accepts) -------------- */

static int bpf_bad; /* set when the program does something invalid */

static uint32_t bpf_run(const struct sock_filter *prog, size_t n, const struct seccomp_data *d)
{
    uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {0};
    const unsigned char *data = (const unsigned char *)d;
    for (size_t pc = 0; pc < n; pc++) {
        const struct sock_filter *f = &prog[pc];
        uint32_t k = f->k, src = BPF_SRC(f->code) == BPF_X ? X : k;
        switch (BPF_CLASS(f->code)) {
        case BPF_LD:
            if (BPF_MODE(f->code) == BPF_ABS && BPF_SIZE(f->code) == BPF_W && k % 4 == 0 &&
                k + 4 <= sizeof *d)
                memcpy(&A, data + k, 4);
            else if (BPF_MODE(f->code) == BPF_IMM)
                A = k;
            else if (BPF_MODE(f->code) == BPF_MEM && k < BPF_MEMWORDS)
                A = M[k];
            else if (BPF_MODE(f->code) == BPF_LEN)
                A = sizeof *d;
            else
                goto bad;
            break;
        case BPF_LDX:
            if (BPF_MODE(f->code) == BPF_IMM)
                X = k;
            else if (BPF_MODE(f->code) == BPF_MEM && k < BPF_MEMWORDS)
                X = M[k];
            else if (BPF_MODE(f->code) == BPF_LEN)
                X = sizeof *d;
            else
                goto bad;
            break;
        case BPF_ST:
        case BPF_STX:
            if (k >= BPF_MEMWORDS)
                goto bad;
            M[k] = BPF_CLASS(f->code) == BPF_ST ? A : X;
            break;
        case BPF_ALU:
            switch (BPF_OP(f->code)) {
            case BPF_ADD: A += src; break;
            case BPF_SUB: A -= src; break;
            case BPF_MUL: A *= src; break;
            case BPF_DIV: if (!src) goto bad; A /= src; break;
            case BPF_MOD: if (!src) goto bad; A %= src; break;
            case BPF_OR: A |= src; break;
            case BPF_AND: A &= src; break;
            case BPF_XOR: A ^= src; break;
            case BPF_LSH: A = src < 32 ? A << src : 0; break;
            case BPF_RSH: A = src < 32 ? A >> src : 0; break;
            case BPF_NEG: A = -A; break;
            default: goto bad;
            }
            break;
        case BPF_JMP: {
            int cond;
            switch (BPF_OP(f->code)) {
            case BPF_JA: pc += k; continue;
            case BPF_JEQ: cond = A == src; break;
            case BPF_JGT: cond = A > src; break;
            case BPF_JGE: cond = A >= src; break;
            case BPF_JSET: cond = (A & src) != 0; break;
            default: goto bad;
            }
            pc += cond ? f->jt : f->jf;
            break;
        }
        case BPF_RET:
            return BPF_RVAL(f->code) == BPF_A ? A : k;
        case BPF_MISC:
            if (BPF_MISCOP(f->code) == BPF_TAX)
                X = A;
            else
                A = X;
            break;
        default:
            goto bad;
        }
    }
bad: /* fell off the end, or an invalid instruction */
    bpf_bad = 1;
    return 0xdeadbeef;
}

static uint32_t decide(uint32_t arch, uint32_t nr, const uint64_t args[6])
{
    struct seccomp_data d;
    memset(&d, 0, sizeof d);
    d.nr = (int)nr;
    d.arch = arch;
    d.instruction_pointer = 0x401000;
    if (args)
        memcpy(d.args, args, sizeof d.args);
    return bpf_run(sbx_seccomp_filter, ALEN(sbx_seccomp_filter), &d);
}

static uint32_t decide1(uint32_t nr, uint64_t a0)
{
    uint64_t args[6] = {a0, 0, 0, 0, 0, 0};
    return decide(AUDIT_ARCH_X86_64, nr, args);
}

#define RET_EPERM (SECCOMP_RET_ERRNO | EPERM)
#define RET_ENOSYS (SECCOMP_RET_ERRNO | ENOSYS)

/* ---- the refused syscalls, with harmless arguments ---------------------- */

struct probe {
    const char *name;
    long nr;
    long a[6];
    int want; /* errno the filter must give */
};

static struct timeval bad_tv = {.tv_sec = -1, .tv_usec = 9999999};    /* invalid: EINVAL */
static struct timespec bad_ts = {.tv_sec = -1, .tv_nsec = 2000000000}; /* invalid: EINVAL */
static struct timex read_tx;                                          /* modes 0: read only */

#define NOPATH "/nonexistent-sbx-seccomp-test/x"
#define P(name, ...) {#name, __NR_##name, {__VA_ARGS__}, EPERM}

static size_t get_probes(struct probe *out, size_t cap)
{
    const struct probe p[] = {
        P(init_module, 0, 0, 0),                      /* NULL image, len 0: ENOEXEC */
        P(finit_module, -1, 0, 0),                    /* bad fd */
        P(delete_module, (long)"sbx_no_such_module", O_NONBLOCK),
        P(create_module, 0, 0),                       /* ENOSYS in kernel */
        P(get_kernel_syms, 0),                        /* ENOSYS in kernel */
        P(query_module, 0, 0, 0, 0, 0),               /* ENOSYS in kernel */
        P(kexec_load, 0, 1000, 0, 0x0fff0800),        /* too many segments, bad flags/arch */
        P(kexec_file_load, -1, -1, 0, 0, 0x80000000), /* bad flags (never UNLOAD) */
        P(reboot, 0, 0, 0x12345678, 0),               /* bad magic: EINVAL */
        P(bpf, 0x7fff, 0, 0),                         /* bad command */
        P(perf_event_open, 0, 0, -1, -1, 0),          /* NULL attr */
        P(userfaultfd, 0x7fffffff),                   /* bad flags */
        P(io_uring_setup, 0, 0),                      /* 0 entries, NULL params */
        P(io_uring_enter, -1, 0, 0, 0, 0, 0),         /* bad fd */
        P(io_uring_register, -1, 0, 0, 0),            /* bad fd */
        P(keyctl, 0x7fff, 0, 0, 0, 0),                /* bad operation */
        P(add_key, 0, 0, 0, 0, 0),                    /* NULL type */
        P(request_key, 0, 0, 0, 0),                   /* NULL type */
        P(open_by_handle_at, -1, 0, 0),               /* bad fd, NULL handle */
        P(name_to_handle_at, -1, 0, 0, 0, 0x7fff0000), /* bad flags */
        P(mount, 0, 0, 0, 0, 0),                      /* NULL target */
        P(umount2, (long)NOPATH, 0x7fffffff),         /* bad flags */
        P(pivot_root, 0, 0),                          /* NULL paths */
        P(chroot, (long)NOPATH),                      /* no such dir (and child only) */
        P(mount_setattr, -1, 0, 0x7fffffff, 0, 0),    /* bad flags */
        P(move_mount, -1, 0, -1, 0, 0x7fffffff),      /* bad flags */
        P(open_tree, -1, 0, 0x7fffffff),              /* bad flags */
        P(fsopen, 0, 0x7fffffff),                     /* bad flags */
        P(fsconfig, -1, 0x7fff, 0, 0, 0),             /* bad fd/command */
        P(fsmount, -1, 0x7fffffff, 0),                /* bad flags */
        P(fspick, -1, 0, 0x7fffffff),                 /* bad flags */
        P(unshare, 0),                                /* refused even as a no-op */
        P(unshare, CLONE_NEWNS),                      /* (child only anyway) */
        P(unshare, CLONE_NEWUSER),
        P(setns, -1, 0),                              /* bad fd */
        {"clone3", __NR_clone3, {0, 0}, ENOSYS},      /* NULL args, size 0: EINVAL */
        P(swapon, 0, 0),                              /* NULL path */
        P(swapoff, 0),                                /* NULL path */
        P(acct, (long)NOPATH),                        /* no such file (never NULL: off) */
        P(settimeofday, (long)&bad_tv, 0),            /* invalid time */
        P(clock_settime, CLOCK_MONOTONIC, (long)&bad_ts), /* not settable, invalid */
        P(clock_adjtime, CLOCK_REALTIME, (long)&read_tx), /* modes 0: read */
        P(adjtimex, (long)&read_tx),                  /* modes 0: read */
        P(lookup_dcookie, 0, 0, 0),
        P(quotactl, 0x7fffffff, 0, 0, 0),             /* NULL device */
        P(quotactl_fd, -1, 0x7fffffff, 0, 0),         /* bad fd */
        P(nfsservctl, 0, 0, 0),                       /* ENOSYS in kernel */
        P(uselib, 0),                                 /* NULL path */
        P(_sysctl, 0),                                /* ENOSYS in kernel */
        P(syslog, 9999, 0, 0),                        /* bad action */
        P(vhangup),                                   /* child has no tty: setsid() */
        P(iopl, 4),                                   /* bad level */
        P(ioperm, 0x10000, 1, 0),                     /* out of range, turn_on 0 */
    };
    size_t n = ALEN(p) < cap ? ALEN(p) : cap;
    memcpy(out, p, n * sizeof *out);
    return n;
}

/* ---- running checks in a filtered child --------------------------------- */

enum {
    RC_PASS = 0,        /* a check function passed */
    RC_SUCCEEDED = 200, /* the probed syscall succeeded */
    RC_SETUP = 250,     /* could not set up (setsid, no_new_privs) */
    RC_INSTALL = 251,   /* sbx_seccomp_install failed */
    RC_SIGNAL = 1000,   /* + signal number: killed */
};

/* Forks; the child (own session, no core dumps, 20 s alarm) sets
 * no_new_privs and installs the filter when `filtered`, then exits with
 * fn(arg). Returns that exit code, or RC_SIGNAL + signal. */
static int in_child(int filtered, int (*fn)(const void *), const void *arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        alarm(20);
        if (setsid() < 0) /* no controlling tty: vhangup is harmless */
            _exit(RC_SETUP);
        if (filtered) {
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
                _exit(RC_SETUP);
            if (sbx_seccomp_install() != 0)
                _exit(RC_INSTALL);
        }
        _exit(fn(arg));
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (WIFSIGNALED(st))
        return RC_SIGNAL + WTERMSIG(st);
    return WEXITSTATUS(st);
}

static int errno_rc(long r)
{
    return r == -1 ? errno : RC_SUCCEEDED;
}

static int do_probe(const void *arg)
{
    const struct probe *p = arg;
    return errno_rc(syscall(p->nr, p->a[0], p->a[1], p->a[2], p->a[3], p->a[4], p->a[5]));
}

/* Raw clone(flags) with a NULL stack (fork semantics); the new process, if
 * the filter let it be, exits at once. */
static int do_clone(const void *arg)
{
    unsigned long flags = *(const unsigned long *)arg;
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0) {
        int st;
        waitpid((pid_t)r, &st, 0);
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? RC_SUCCEEDED : RC_SETUP;
    }
    return errno;
}

static int do_fork(const void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    if (pid < 0)
        return 1;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        return 2;
    return RC_PASS;
}

static void *thread_fn(void *arg)
{
    *(int *)arg = 42;
    return arg;
}

static int do_thread(const void *arg)
{
    (void)arg;
    int v = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, thread_fn, &v) != 0)
        return 1;
    void *ret = NULL;
    if (pthread_join(t, &ret) != 0 || ret != &v || v != 42)
        return 2;
    return RC_PASS;
}

static int do_spawn(const void *arg)
{
    const char *path = arg;
    char *const argv[] = {(char *)path, NULL};
    pid_t pid;
    if (posix_spawn(&pid, path, NULL, NULL, argv, environ) != 0)
        return 1;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 2;
    return RC_PASS;
}

/* Ordinary work: pid, /proc/self/status (Seccomp: 2), pipe, mmap, sockets. */
static int do_ordinary(const void *arg)
{
    pid_t want_pid = *(const pid_t *)arg; /* 0: not known */
    if (getpid() <= 0 || (want_pid && getpid() != want_pid))
        return 1;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 2;
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    if (!strstr(buf, "\nSeccomp:\t2\n"))
        return 3;
    if (!strstr(buf, "\nNoNewPrivs:\t1\n"))
        return 4;
    int pfd[2];
    if (pipe(pfd) != 0)
        return 5;
    char c = 0;
    if (write(pfd[1], "x", 1) != 1 || read(pfd[0], &c, 1) != 1 || c != 'x')
        return 6;
    close(pfd[0]);
    close(pfd[1]);
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 7;
    m[100] = 'y';
    if (m[100] != 'y' || munmap(m, 4096) != 0)
        return 8;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 9;
    close(s);
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 10;
    close(s);
    return RC_PASS;
}

/* Syscalls the policy keeps: must not fail with EPERM. */
static int do_kept(const void *arg)
{
    (void)arg;
    /* ptrace of a pid that does not exist: ESRCH, not EPERM. */
    if (syscall(SYS_ptrace, 2 /* PTRACE_PEEKDATA */, 0x3ffffffe, 0, 0) != -1 || errno != ESRCH)
        return 1;
    /* kcmp with a bad type: EINVAL (ENOSYS without CONFIG_KCMP). */
    pid_t me = getpid();
    if (syscall(SYS_kcmp, me, me, 99, 0, 0) != -1 || errno == EPERM)
        return 2;
    /* process_madvise on a bad pidfd: EBADF. */
    if (syscall(SYS_process_madvise, -1, 0, 0, 0, 0) != -1 || errno == EPERM)
        return 3;
    return RC_PASS;
}

/* personality(value): errno, or RC_SUCCEEDED (the old persona is restored). */
static int do_personality(const void *arg)
{
    unsigned long v = *(const unsigned long *)arg;
    long old = syscall(SYS_personality, 0xffffffffUL);
    if (old < 0)
        return RC_SETUP;
    long r = syscall(SYS_personality, v);
    if (r == -1)
        return errno;
    syscall(SYS_personality, (unsigned long)old);
    return RC_SUCCEEDED;
}

static int do_socket(const void *arg)
{
    long domain = *(const long *)arg;
    long r = syscall(SYS_socket, domain, (long)(SOCK_RAW | SOCK_CLOEXEC), 0L);
    if (r >= 0)
        close((int)r);
    return errno_rc(r);
}

static int do_x32_getpid(const void *arg)
{
    (void)arg;
    return errno_rc(syscall(__NR_getpid | 0x40000000 /* __X32_SYSCALL_BIT */));
}

/* getpid through the i386 ABI (int 0x80, i386 number 20). */
static int do_int80_getpid(const void *arg)
{
    (void)arg;
    long ret = 20;
    __asm__ volatile("int $0x80" : "+a"(ret) : : "r8", "r9", "r10", "r11", "memory");
    return ret == (long)getpid() ? RC_SUCCEEDED : RC_SETUP;
}

/* Without no_new_privs and without CAP_SYS_ADMIN, loading must fail. */
static int do_no_nnp(const void *arg)
{
    (void)arg;
    if (geteuid() == 0 && (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0))
        return RC_SETUP;
    int rc = sbx_seccomp_install();
    return rc == -EACCES ? RC_PASS : (rc == 0 ? RC_SUCCEEDED : -rc);
}

static int do_errno_kept(const void *arg)
{
    (void)arg;
    errno = 1234;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return RC_SETUP;
    errno = 1234;
    int rc = sbx_seccomp_install();
    if (rc != 0)
        return RC_INSTALL;
    return errno == 1234 ? RC_PASS : 1;
}

/* ---- tests --------------------------------------------------------------- */

static const char *rc_str(int rc, char *buf, size_t cap)
{
    if (rc >= RC_SIGNAL)
        snprintf(buf, cap, "killed by signal %d", rc - RC_SIGNAL);
    else if (rc == RC_SUCCEEDED)
        snprintf(buf, cap, "succeeded");
    else if (rc == RC_SETUP)
        snprintf(buf, cap, "setup failed");
    else if (rc == RC_INSTALL)
        snprintf(buf, cap, "install failed");
    else
        snprintf(buf, cap, "code %d (%s)", rc, strerror(rc));
    return buf;
}

static int is_special(uint32_t nr)
{
    return nr == __NR_clone || nr == __NR_personality || nr == __NR_socket;
}

static void test_program(const struct probe *probes, size_t np)
{
    T_OK(sbx_seccomp_filter_len() == ALEN(sbx_seccomp_filter),
         "filter_len() = %u matches the generated program", sbx_seccomp_filter_len());
    T_OK(sbx_seccomp_filter_len() > 0 && sbx_seccomp_filter_len() <= BPF_MAXINSNS,
         "filter length within 1..%d", BPF_MAXINSNS);

    /* Each refused syscall, whatever its arguments. */
    const uint64_t ones[6] = {~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull};
    int all = 1;
    for (size_t i = 0; i < np; i++) {
        uint64_t args[6];
        for (int k = 0; k < 6; k++)
            args[k] = (uint64_t)probes[i].a[k];
        uint32_t want = SECCOMP_RET_ERRNO | (uint32_t)probes[i].want;
        uint32_t got1 = decide(AUDIT_ARCH_X86_64, (uint32_t)probes[i].nr, args);
        uint32_t got2 = decide(AUDIT_ARCH_X86_64, (uint32_t)probes[i].nr, ones);
        uint32_t got3 = decide(AUDIT_ARCH_X86_64, (uint32_t)probes[i].nr, NULL);
        if (got1 != want || got2 != want || got3 != want) {
            all = 0;
            printf("#   program: %s -> %#x/%#x/%#x, want %#x\n", probes[i].name, got1, got2, got3, want);
        }
    }
    T_OK(all, "program refuses each of the %zu listed syscalls whatever the arguments", np);

    /* Everything else is allowed, with zero and all-ones arguments. */
    int others = 0;
    all = 1;
    for (uint32_t nr = 0; nr < 1024; nr++) {
        int listed = is_special(nr);
        for (size_t i = 0; i < np && !listed; i++)
            listed = (uint32_t)probes[i].nr == nr;
        if (listed)
            continue;
        others++;
        uint32_t a = decide(AUDIT_ARCH_X86_64, nr, NULL), b = decide(AUDIT_ARCH_X86_64, nr, ones);
        if (a != SECCOMP_RET_ALLOW || b != SECCOMP_RET_ALLOW) {
            all = 0;
            printf("#   program: syscall %u -> %#x/%#x, want ALLOW\n", nr, a, b);
        }
    }
    T_OK(all, "program allows the %d other syscall numbers below 1024", others);

    /* clone: refused with any namespace flag, allowed otherwise. */
    const uint64_t ns[] = {CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                           CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET};
    all = 1;
    for (size_t i = 0; i < ALEN(ns); i++) {
        all &= decide1(__NR_clone, ns[i] | SIGCHLD) == RET_EPERM;
        all &= decide1(__NR_clone, ns[i] | CLONE_VM | CLONE_FS | CLONE_FILES) == RET_EPERM;
        all &= decide1(__NR_clone, ns[i] | 0xffffffff00000000ull) == RET_EPERM;
    }
    T_OK(all, "program: clone with each CLONE_NEW* flag -> EPERM");
    const uint64_t thread_flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                                  CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |
                                  CLONE_CHILD_CLEARTID;
    T_OK(decide1(__NR_clone, SIGCHLD) == SECCOMP_RET_ALLOW &&
             decide1(__NR_clone, CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD) ==
                 SECCOMP_RET_ALLOW &&
             decide1(__NR_clone, thread_flags) == SECCOMP_RET_ALLOW &&
             decide1(__NR_clone, CLONE_VM | CLONE_VFORK | SIGCHLD) == SECCOMP_RET_ALLOW &&
             decide1(__NR_clone, 0xffffffff00000000ull | SIGCHLD) == SECCOMP_RET_ALLOW,
         "program: clone for fork, vfork and threads -> ALLOW");

    /* personality: Docker's allow-list, full 64-bit comparison. */
    const uint64_t per_ok[] = {0, 0x8, 0x20000, 0x20008, 0xffffffff};
    const uint64_t per_bad[] = {0x0040000 /* ADDR_NO_RANDOMIZE */, 0x0400000 /* READ_IMPLIES_EXEC */,
                                0x1, 0x10, 0x20009, 0x100000000ull, 0x100000008ull,
                                0xfffffffeull, 0xffffffffffffffffull, 0x8000000000000000ull};
    all = 1;
    for (size_t i = 0; i < ALEN(per_ok); i++)
        all &= decide1(__NR_personality, per_ok[i]) == SECCOMP_RET_ALLOW;
    T_OK(all, "program: personality 0, 8, 0x20000, 0x20008, 0xffffffff -> ALLOW");
    all = 1;
    for (size_t i = 0; i < ALEN(per_bad); i++)
        all &= decide1(__NR_personality, per_bad[i]) == RET_EPERM;
    T_OK(all, "program: other personality values (and high bits) -> EPERM");

    /* socket: AF_PACKET refused, compared on the low 32 bits. */
    T_OK(decide1(__NR_socket, AF_PACKET) == RET_EPERM &&
             decide1(__NR_socket, 0x100000000ull | AF_PACKET) == RET_EPERM,
         "program: socket(AF_PACKET) -> EPERM, also with high bits set");
    T_OK(decide1(__NR_socket, AF_INET) == SECCOMP_RET_ALLOW &&
             decide1(__NR_socket, AF_INET6) == SECCOMP_RET_ALLOW &&
             decide1(__NR_socket, AF_UNIX) == SECCOMP_RET_ALLOW &&
             decide1(__NR_socket, AF_NETLINK) == SECCOMP_RET_ALLOW,
         "program: socket(AF_INET/INET6/UNIX/NETLINK) -> ALLOW");

    /* Foreign ABIs: killed. */
    T_OK(decide(AUDIT_ARCH_X86_64, __NR_getpid | 0x40000000u, NULL) == SECCOMP_RET_KILL_PROCESS &&
             decide(AUDIT_ARCH_X86_64, __NR_mount | 0x40000000u, NULL) == SECCOMP_RET_KILL_PROCESS,
         "program: x32 syscall numbers -> KILL_PROCESS");
    T_OK(decide(AUDIT_ARCH_I386, 20, NULL) == SECCOMP_RET_KILL_PROCESS &&
             decide(AUDIT_ARCH_AARCH64, 172, NULL) == SECCOMP_RET_KILL_PROCESS,
         "program: i386 and other architectures -> KILL_PROCESS");

    T_OK(!bpf_bad, "program: every path ends in a valid return");
}

static void test_kernel(const struct probe *probes, size_t np)
{
    char b1[64];
    int rc;

    pid_t zero = 0;
    rc = in_child(1, do_ordinary, &zero);
    T_OK(rc == RC_PASS, "filtered: getpid, /proc/self/status (Seccomp: 2), pipe, mmap, sockets (%s)",
         rc_str(rc, b1, sizeof b1));
    rc = in_child(1, do_errno_kept, NULL);
    T_OK(rc == RC_PASS, "install returns 0 and leaves errno alone (%s)", rc_str(rc, b1, sizeof b1));
    rc = in_child(0, do_no_nnp, NULL);
    T_OK(rc == RC_PASS || rc == RC_SETUP, "install without no_new_privs or CAP_SYS_ADMIN -> -EACCES (%s)",
         rc == RC_SETUP ? "skipped: cannot drop to uid 65534" : rc_str(rc, b1, sizeof b1));

    /* Each refused syscall, for real. */
    for (size_t i = 0; i < np; i++) {
        rc = in_child(1, do_probe, &probes[i]);
        T_OK(rc == probes[i].want, "filtered: %s(%#lx, ...) -> %s (%s)", probes[i].name,
             (unsigned long)probes[i].a[0], strerror(probes[i].want), rc_str(rc, b1, sizeof b1));
    }

    /* clone: namespaces refused, plain process creation kept. */
    const struct {
        const char *name;
        unsigned long flag;
    } ns[] = {{"CLONE_NEWUSER", CLONE_NEWUSER}, {"CLONE_NEWNS", CLONE_NEWNS},
              {"CLONE_NEWPID", CLONE_NEWPID},   {"CLONE_NEWNET", CLONE_NEWNET},
              {"CLONE_NEWUTS", CLONE_NEWUTS},   {"CLONE_NEWIPC", CLONE_NEWIPC},
              {"CLONE_NEWCGROUP", CLONE_NEWCGROUP}};
    for (size_t i = 0; i < ALEN(ns); i++) {
        rc = in_child(1, do_clone, &ns[i].flag);
        T_OK(rc == EPERM, "filtered: clone(%s|SIGCHLD) -> EPERM (%s)", ns[i].name, rc_str(rc, b1, sizeof b1));
    }
    unsigned long both = CLONE_NEWUSER | CLONE_NEWNS;
    rc = in_child(1, do_clone, &both);
    T_OK(rc == EPERM, "filtered: clone(CLONE_NEWUSER|CLONE_NEWNS) -> EPERM (%s)", rc_str(rc, b1, sizeof b1));
    unsigned long plain = 0;
    rc = in_child(1, do_clone, &plain);
    T_OK(rc == RC_SUCCEEDED, "filtered: clone(SIGCHLD) still works (%s)", rc_str(rc, b1, sizeof b1));
    rc = in_child(1, do_fork, NULL);
    T_OK(rc == RC_PASS, "filtered: fork() still works (%s)", rc_str(rc, b1, sizeof b1));
    rc = in_child(1, do_thread, NULL);
    T_OK(rc == RC_PASS, "filtered: pthread_create works (clone3 ENOSYS -> clone) (%s)",
         rc_str(rc, b1, sizeof b1));
    const char *truebin = access("/bin/true", X_OK) == 0 ? "/bin/true" : "/usr/bin/true";
    rc = in_child(1, do_spawn, truebin);
    T_OK(rc == RC_PASS, "filtered: posix_spawn(%s) works (%s)", truebin, rc_str(rc, b1, sizeof b1));

    rc = in_child(1, do_kept, NULL);
    T_OK(rc == RC_PASS, "filtered: ptrace, kcmp, process_madvise are not refused (step %d)", rc);

    /* personality */
    const unsigned long per_ok[] = {0, 0x8, 0x20000, 0x20008, 0xffffffff};
    for (size_t i = 0; i < ALEN(per_ok); i++) {
        rc = in_child(1, do_personality, &per_ok[i]);
        T_OK(rc == RC_SUCCEEDED, "filtered: personality(%#lx) allowed (%s)", per_ok[i], rc_str(rc, b1, sizeof b1));
    }
    const unsigned long per_bad[] = {0x0040000, 0x0400000, 0x100000000ul};
    for (size_t i = 0; i < ALEN(per_bad); i++) {
        rc = in_child(1, do_personality, &per_bad[i]);
        T_OK(rc == EPERM, "filtered: personality(%#lx) -> EPERM (%s)", per_bad[i], rc_str(rc, b1, sizeof b1));
    }

    /* socket */
    const long packet = AF_PACKET, packet_hi = 0x100000000L | AF_PACKET;
    rc = in_child(1, do_socket, &packet);
    T_OK(rc == EPERM, "filtered: socket(AF_PACKET) -> EPERM (%s)", rc_str(rc, b1, sizeof b1));
    rc = in_child(1, do_socket, &packet_hi);
    T_OK(rc == EPERM, "filtered: socket(1<<32 | AF_PACKET) -> EPERM (%s)", rc_str(rc, b1, sizeof b1));

    /* Foreign ABIs */
    rc = in_child(1, do_x32_getpid, NULL);
    T_OK(rc == RC_SIGNAL + SIGSYS, "filtered: x32 getpid kills the process with SIGSYS (%s)",
         rc_str(rc, b1, sizeof b1));
    int base = in_child(0, do_int80_getpid, NULL);
    if (base == RC_SUCCEEDED) {
        rc = in_child(1, do_int80_getpid, NULL);
        T_OK(rc == RC_SIGNAL + SIGSYS, "filtered: i386 getpid (int 0x80) kills with SIGSYS (%s)",
             rc_str(rc, b1, sizeof b1));
    } else {
        T_OK(1, "filtered: i386 getpid (int 0x80) # SKIP no ia32 emulation (%s)", rc_str(base, b1, sizeof b1));
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct probe probes[80];
    size_t np = get_probes(probes, ALEN(probes));
    test_program(probes, np);
    test_kernel(probes, np);
    T_DONE();
}
