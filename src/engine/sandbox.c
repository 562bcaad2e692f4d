/* Sandbox lifecycle: create (cgroups, namespaces, root, user mapping),
 * destroy (kill, reap, remove), stats.
 *
 * create() clones the sandbox's first process as pid 1 of a new pid
 * namespace; it makes its own mount, uts and ipc namespaces and, still
 * host root, builds the root filesystem, pivots into it and makes the
 * sandbox's user namespace (root inside mapped to an unprivileged host
 * uid range). Meanwhile the host makes the network namespace, the lock
 * and the cgroups and moves the child into them. The child then enters
 * the network and user namespaces (with a new cgroup namespace): from then
 * on it holds no privilege on the host, and it stays as the sandbox's
 * init (init.c).
 */
#include "internal.h"
#include "seccomp.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

struct child_args {
    sbx_rootfs_plan *plan; /* the child's own copy (a private mapping) */
    int ctl;              /* child's end of the control socket */
    bool split;           /* host and child on different CPUs (see the clone) */
    bool early;           /* cloned before the plan was made: it comes as PLAN */
    bool base;            /* early, and builds the root's base before that */
    cpu_set_t cpus;       /* the host's own mask, to go back to */
    cpu_set_t others;     /* it without the host's CPU */
};

static void __attribute__((noreturn)) child_error(int ctl, const char *what, int e)
{
    struct sbx_msg_error m = {{SBX_MSG_ERROR, sizeof(m) - sizeof(m.h)}, e, {0}};
    snprintf(m.text, sizeof(m.text), "%s", what);
    sbx_msg_send(ctl, &m, sizeof(m), NULL, 0);
    _exit(1);
}

/* Receives a message of type `want` carrying exactly `n` fds. */
static int recv_fds(int ctl, uint32_t want, int *fds, int n)
{
    _Alignas(8) char buf[sizeof(struct sbx_msg_hdr)];
    int nfd = n;
    ssize_t len = sbx_msg_recv(ctl, buf, sizeof(buf), fds, &nfd);
    if (len < (ssize_t)sizeof(buf) || nfd != n || ((struct sbx_msg_hdr *)buf)->type != want)
        return -1;
    return 0;
}

static int recv_fd(int ctl, uint32_t want, int *fd)
{
    return recv_fds(ctl, want, fd, 1);
}

/* An early child's plan (see spawn_child): into our copy of the plan's
 * mapping, which the host filled in its own after the clone, with the fds
 * it names. 0, or -1 (the host gave up on us, or a malformed message). */
static int recv_plan(int ctl, sbx_rootfs_plan *pl, bool *one_shot)
{
    struct sbx_msg_plan m;
    struct iovec iov[2] = {{&m, sizeof(m)}, {pl, sizeof(*pl)}};
    int fds[2], nfd = 2;
    ssize_t n = sbx_msg_recvv(ctl, iov, 2, fds, &nfd);
    const size_t head = offsetof(sbx_rootfs_plan, vol);
    bool ok = n >= (ssize_t)sizeof(m) && m.h.type == SBX_MSG_PLAN && (size_t)n - sizeof(m) == m.plan_len &&
              m.plan_len >= head && pl->nvol >= 0 && pl->nvol <= SBX_MAX_VOLUMES &&
              m.plan_len == head + (size_t)pl->nvol * sizeof(pl->vol[0]) &&
              nfd == !!(m.flags & SBX_PLAN_ETC_VIEW_FD) + !!(m.flags & SBX_PLAN_LAYER_IMG_FD);
    if (!ok) {
        for (int i = 0; i < nfd; i++)
            close(fds[i]);
        return -1;
    }
    int k = 0;
    pl->etc_view_fd = (m.flags & SBX_PLAN_ETC_VIEW_FD) ? fds[k++] : -1;
    pl->layer_img_fd = (m.flags & SBX_PLAN_LAYER_IMG_FD) ? fds[k++] : -1;
    pl->gpu = NULL; /* a GPU sandbox's child is never an early one */
    *one_shot = (m.flags & SBX_PLAN_ONE_SHOT) != 0;
    return 0;
}

static int recv_type(int fd, uint32_t want)
{
    _Alignas(8) char buf[sizeof(struct sbx_msg_error)];
    ssize_t n = sbx_msg_recv(fd, buf, sizeof(buf), NULL, NULL);
    if (n < (ssize_t)sizeof(struct sbx_msg_hdr))
        return -1;
    return ((struct sbx_msg_hdr *)buf)->type == want ? 0 : -1;
}

/* Overwrites this process's argv area (our copy of it: the host's is
 * untouched) so /proc/<pid>/cmdline shows only `title`. Best effort, no
 * allocation.
 *
 * The area is what the kernel shows: from arg_start to arg_end. exec lays
 * the argument strings out with the environment's right after them, so
 * arg_start is argv[0] and arg_end the first environment string, as long
 * as neither pointer was changed since; checked as far as that can be
 * (in order, within ARG_MAX, ending in a NUL). Otherwise they are read
 * from /proc/self/stat (fields 48 and 49), which takes ~15 us more of
 * every launch: the kernel formats all 52 fields. */
static void hide_cmdline(const char *title)
{
    char *start = program_invocation_name, *end = environ ? environ[0] : NULL;
    if (!start || !end || end <= start || end - start > 128 * 1024 || end[-1] != '\0') {
        char buf[1024];
        size_t len;
        if (sbx_read_file("/proc/self/stat", buf, sizeof(buf), &len) < 0)
            return;
        char *p = strrchr(buf, ')');
        unsigned long v[2] = {0, 0};
        for (int field = 2; p && field < 49; field++) {
            p = strchr(p + 1, ' ');
            if (p && field + 1 >= 48)
                v[field + 1 - 48] = strtoul(p + 1, NULL, 10);
        }
        start = (char *)v[0];
        end = (char *)v[1];
    }
    size_t tl = strlen(title);
    if (!start || end <= start + tl)
        return;
    memset(start, 0, (size_t)(end - start));
    memcpy(start, title, tl);
}

static int write_id_maps(pid_t pid, uint32_t base, uint32_t count)
{
    char path[64], map[64];
    snprintf(map, sizeof(map), "0 %u %u\n", base, count);
    static const char *const files[] = {"uid_map", "gid_map"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
        int r = sbx_write_str(path, map);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The sandbox's user namespace, made by the host while the child builds
 * its root (the host has time to spare there; the child's is the longer
 * path) and sent with the network namespace, so that the child drops
 * into it with a setns. A helper task is cloned into a new user namespace
 * only to create it and exits at once; its /proc files (a zombie's stay
 * until it is reaped) give the namespace and its map files. CLONE_VM:
 * nothing is copied; exit signal 0: reaped here only. The namespace is
 * owned by host root and its parent is the host's. Returns its fd or
 * -errno, with *what set. */
static int helper_exit(void *arg)
{
    (void)arg;
    syscall(SYS_exit, 0); /* the bare syscall: nothing of libc's exit path */
    return 0;
}

static int make_userns(uint32_t base, uint32_t count, const char **what)
{
    _Alignas(16) char stack[4096];
    pid_t pid = clone(helper_exit, stack + sizeof(stack), CLONE_NEWUSER | CLONE_VM, NULL);
    if (pid < 0) {
        *what = "create user namespace";
        return -errno;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
    int r = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        r = -errno;
    *what = "open user namespace";
    if (r == 0 && (r = write_id_maps(pid, base, count)) < 0) {
        *what = "write uid/gid map";
        close(fd);
    }
    /* Waiting lets it run here; its stack is this frame's. */
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {
    }
    return r < 0 ? r : fd;
}

/* Runs in the cloned child. Allocates nothing (see init.c). */
static void __attribute__((noreturn)) child_main(const struct child_args *a)
{
    int ctl = a->ctl, r;
    const char *what = "";

    /* Off the host's CPU, if the host has not moved us yet (see the
     * clone). The mask is put back only when the setup is done: unpinned,
     * the child woken by a host message while its CPU runs the old root's
     * detacher or an RCU kthread for a moment was put on the host's busy
     * CPU instead, and waited there ~0.05-0.08 ms (a quarter of launches)
     * with its own CPU idle. */
    bool moved = a->split && sched_setaffinity(0, sizeof(a->others), &a->others) == 0;
    /* The sandbox lives only as long as whoever created it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The mount, uts and ipc namespaces are made here rather than by the
     * clone: copying the host's mount table and setting up an ipc
     * namespace then cost this child, which has time to spare while the
     * host makes the network namespace and the cgroups, instead of the
     * host before it can start on those. Nothing has run in the old ones. */
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
        child_error(ctl, "unshare mount, uts and ipc namespaces", errno);
    /* Not dumpable: the sandbox's processes may not ptrace init or open
     * its /proc entries, which lead to the host's sbx binary. */
    prctl(PR_SET_DUMPABLE, 0);
    prctl(PR_SET_NAME, "sbx-init", 0, 0, 0);
    /* /proc/1/cmdline is readable inside: show a name, not the host's
     * command line (which names host paths). */
    hide_cmdline("sbx-init");
    umask(0);

    sbx_rootfs_plan *pl = a->plan;
    bool one_shot = false;
    /* Cloned before the engine opened: what of the root needs no plan is
     * built while the host makes the plan (the parts of it filled in
     * before the clone say what that is). */
    if (a->base && (r = sbx_rootfs_build_base(pl, &what)) < 0)
        child_error(ctl, what, -r);
    if (a->early && recv_plan(ctl, pl, &one_shot) < 0)
        _exit(1); /* the host failed before it was ready; it reaps us */
    if (sethostname(pl->hostname, strlen(pl->hostname)) < 0)
        child_error(ctl, "sethostname", errno);
    if ((r = sbx_rootfs_build(pl, a->base, &what)) < 0)
        child_error(ctl, what, -r);
    if ((r = sbx_rootfs_enter(pl, &what)) < 0)
        child_error(ctl, what, -r);
    pid_t detacher = sbx_rootfs_detach();
    bool gpu = pl->gpu != NULL;
    if (pl->gpu)
        munmap((void *)pl->gpu, sizeof(*pl->gpu));
    if (!one_shot)
        munmap((void *)pl, sizeof(*pl));

    /* The network and user namespaces the host made meanwhile (sent as
     * soon as they are made: lo is brought up here if it is not up, while
     * the host makes the cgroups). */
    int nsfds[2] = {-1, -1}, lock_fd = -1;
    if (recv_fds(ctl, SBX_MSG_NETNS, nsfds, 2) < 0)
        _exit(1);
    int netfd = nsfds[0], userfd = nsfds[1];
    if (setns(netfd, CLONE_NEWNET) < 0)
        child_error(ctl, "enter network namespace", errno);
    close(netfd);
    if ((r = sbx_net_lo_up()) < 0)
        child_error(ctl, "bring up lo", -r);
    /* Then the liveness lock: the host holds it and has made the cgroups
     * and moved us into them, so the cgroup namespace below is rooted at
     * them. */
    if (recv_fd(ctl, SBX_MSG_CGROUPS, &lock_fd) < 0)
        _exit(1);
    /* A GPU sandbox's devices cgroup is restricted by the host once the
     * root is built (binding the GPU nodes, mknod needed no rule). */
    struct sbx_msg_hdr h = {SBX_MSG_USERNS, 0};
    if (gpu && (sbx_msg_send(ctl, &h, sizeof(h), NULL, 0) < 0 || recv_type(ctl, SBX_MSG_MAPPED) < 0))
        _exit(1);

    /* Drop host root: into the sandbox's user namespace (root inside is
     * an unprivileged host uid), then a cgroup namespace owned by it. */
    if (setns(userfd, CLONE_NEWUSER) < 0)
        child_error(ctl, "enter user namespace", errno);
    close(userfd);
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_error(ctl, "unshare cgroup namespace", errno);
    if (sbx_become(0, 0) < 0)
        child_error(ctl, "become root in the user namespace", errno);
    /* Empty the bounding set once here: nothing exec'd in this sandbox can
     * ever gain a capability, even from a file capability. */
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
            break;
    /* The commands' seccomp filter, loaded once here (the kernel checks
     * and compiles it, ~0.05 ms) and inherited by every command and
     * helper this init forks, init included from now on: it needs none
     * of what the filter refuses. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_error(ctl, "set no_new_privs", errno);
    if ((r = sbx_seccomp_install()) < 0)
        child_error(ctl, "install seccomp filter", -r);
    /* The old root is gone before anything of the sandbox runs. */
    if ((r = sbx_rootfs_finish(detacher, &what)) < 0)
        child_error(ctl, what, -r);

    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0)
        child_error(ctl, "open /dev/null", errno);
    for (int i = 0; i < 3; i++)
        dup2(nul, i);
    /* Keep exactly: 0-2 (/dev/null), 3 (control), 4 (the liveness lock). */
    /* Via high numbers first: either fd may already sit on 3 or 4. */
    int hctl = fcntl(ctl, F_DUPFD_CLOEXEC, 64), hlock = fcntl(lock_fd, F_DUPFD_CLOEXEC, 64);
    if (hctl < 0 || hlock < 0 || dup3(hctl, 3, O_CLOEXEC) < 0 || dup3(hlock, 4, O_CLOEXEC) < 0)
        child_error(ctl, "arrange fds", errno);
    syscall(SYS_close_range, 5u, ~0u, 0u);
    if (moved) /* init's mask, which every command gets */
        sched_setaffinity(0, sizeof(a->cpus), &a->cpus);
    h.type = SBX_MSG_READY;
    if (sbx_msg_send(3, &h, sizeof(h), NULL, 0) < 0)
        _exit(1);
    sbx_init_main(3);
}

/* ---- init re-executed (sbx_engine_config.init_exe) ------------------------
 * The child carries its arguments across the exec in a memfd: a header, then
 * the plan and the GPU plan each at a page-aligned offset, mapped back in
 * the new image at their own addresses (child_main unmaps them). */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#define CHILD_BLOB_MAGIC 0x73627831u /* "sbx1" */
#define CHILD_BLOB_PAGE 4096
struct child_blob {
    uint32_t magic;
    uint32_t plan_size, gpu_size; /* the layout check: both binaries of one build */
    int32_t ctl;
    bool split, gpu;
    cpu_set_t cpus, others;
};
#define CHILD_PLAN_OFF ((sizeof(struct child_blob) + CHILD_BLOB_PAGE - 1) / CHILD_BLOB_PAGE * CHILD_BLOB_PAGE)
#define CHILD_GPU_OFF \
    (CHILD_PLAN_OFF + (sizeof(sbx_rootfs_plan) + CHILD_BLOB_PAGE - 1) / CHILD_BLOB_PAGE * CHILD_BLOB_PAGE)

static bool write_all_at(int fd, const void *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p = (const char *)p + w;
        n -= (size_t)w;
        off += w;
    }
    return true;
}

/* In the cloned child, before anything else: still host root in the host's
 * user namespace, so the new image's memory belongs to it and the
 * sandbox's root can never ptrace it or open its /proc files (as it could
 * an init exec'd inside the sandbox's user namespace). Allocates nothing. */
static void __attribute__((noreturn)) child_reexec(const struct child_args *a, int exe_fd, char *const *envp)
{
    int ctl = a->ctl;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int mfd = (int)syscall(SYS_memfd_create, "sbx-sandbox-plan", 1u /* MFD_CLOEXEC */);
    if (mfd < 0)
        child_error(ctl, "memfd for the sandbox init", errno);
    struct child_blob b = {CHILD_BLOB_MAGIC, sizeof(sbx_rootfs_plan), sizeof(sbx_gpu_plan), ctl, a->split,
                           a->plan->gpu != NULL, a->cpus, a->others};
    if (!write_all_at(mfd, &b, sizeof(b), 0) ||
        !write_all_at(mfd, a->plan, sizeof(*a->plan), (off_t)CHILD_PLAN_OFF) ||
        (a->plan->gpu && !write_all_at(mfd, a->plan->gpu, sizeof(*a->plan->gpu), (off_t)CHILD_GPU_OFF)))
        child_error(ctl, "write the plan for the sandbox init", errno ? errno : EIO);
    /* Nothing of the creator's crosses the exec but the control socket,
     * the plan, the layer image and the /etc view (its standard fds are
     * replaced later). */
    syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    fcntl(ctl, F_SETFD, 0);
    fcntl(mfd, F_SETFD, 0);
    if (a->plan->layer_img_fd >= 0)
        fcntl(a->plan->layer_img_fd, F_SETFD, 0);
    if (a->plan->etc_view_fd >= 0)
        fcntl(a->plan->etc_view_fd, F_SETFD, 0);
    char arg[16];
    snprintf(arg, sizeof(arg), "%d", mfd);
    char *argv[] = {(char *)"sbx-init", (char *)SBX_CHILD_EXEC_ARG, arg, NULL};
    syscall(SYS_execveat, exe_fd, "", argv, envp, AT_EMPTY_PATH);
    child_error(ctl, "exec the sandbox init binary", errno);
}

void sbx_sandbox_child_exec(int argc, char **argv)
{
    int mfd = argc == 3 ? atoi(argv[2]) : -1;
    struct child_blob b;
    if (mfd < 0 || pread(mfd, &b, sizeof(b), 0) != (ssize_t)sizeof(b) || b.magic != CHILD_BLOB_MAGIC) {
        fprintf(stderr, "sbx: %s is for the sandbox engine's own use\n", SBX_CHILD_EXEC_ARG);
        _exit(125); /* sbx's own error */
    }
    if (b.plan_size != sizeof(sbx_rootfs_plan) || b.gpu_size != sizeof(sbx_gpu_plan))
        child_error(b.ctl, "sandbox init binary is from another build than the server (reinstall both)", EINVAL);
    sbx_rootfs_plan *pl = mmap(NULL, sizeof(*pl), PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, (off_t)CHILD_PLAN_OFF);
    sbx_gpu_plan *gpu = NULL;
    if (pl != MAP_FAILED && b.gpu) {
        gpu = mmap(NULL, sizeof(*gpu), PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, (off_t)CHILD_GPU_OFF);
        if (gpu == MAP_FAILED)
            child_error(b.ctl, "map the GPU plan", errno);
    }
    if (pl == MAP_FAILED)
        child_error(b.ctl, "map the sandbox plan", errno);
    pl->gpu = gpu;
    close(mfd);
    fcntl(b.ctl, F_SETFD, FD_CLOEXEC);
    if (pl->layer_img_fd >= 0)
        fcntl(pl->layer_img_fd, F_SETFD, FD_CLOEXEC);
    if (pl->etc_view_fd >= 0)
        fcntl(pl->etc_view_fd, F_SETFD, FD_CLOEXEC);
    struct child_args ca = {pl, b.ctl, b.split, false, false, b.cpus, b.others};
    child_main(&ca);
}

bool sbx_valid_user_name(const char *s)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= SBX_USER_NAME_MAX && ((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_');
    for (size_t i = 1; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-';
    return ok && strcmp(s, "root") != 0;
}

/* The largest memory and disk size a spec may ask for: 16 TiB. */
#define MAX_MIB (1u << 24)

static int check_spec(const sbx_engine *eng, const sbx_spec *s, sbx_err *err)
{
    if (s->id && !sbx_valid_name(s->id))
        return sbx_fail(err, SBX_E_INVALID, "sandbox id '%s' is invalid (allowed: 1-63 of [A-Za-z0-9_.-], not starting with '.' or '-')", s->id);
    if (s->hostname) {
        size_t n = strlen(s->hostname);
        bool ok = n > 0 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (s->hostname[i] >= 'a' && s->hostname[i] <= 'z') || (s->hostname[i] >= 'A' && s->hostname[i] <= 'Z') ||
                 (s->hostname[i] >= '0' && s->hostname[i] <= '9') || s->hostname[i] == '-' || s->hostname[i] == '.';
        if (!ok)
            return sbx_fail(err, SBX_E_INVALID, "hostname '%s' is invalid (allowed: 1-64 of [A-Za-z0-9.-])", s->hostname);
    }
    if (!(s->cpus >= 0 && s->cpus <= 1024))
        return sbx_fail(err, SBX_E_INVALID, "cpu %g is out of range (allowed: 0.01 to 1024 cores, 0 = no limit)", s->cpus);
    if (s->cpus > 0 && s->cpus < 0.01)
        return sbx_fail(err, SBX_E_INVALID, "cpu %g is out of range (allowed: 0.01 to 1024 cores, 0 = no limit)", s->cpus);
    if (s->memory_mib && (s->memory_mib < 6 || s->memory_mib > MAX_MIB))
        return sbx_fail(err, SBX_E_INVALID, "memory %llu MiB is out of range (allowed: 6 to 16777216 MiB, 0 = no limit)",
                        (unsigned long long)s->memory_mib);
    if (s->pids > (1u << 22))
        return sbx_fail(err, SBX_E_INVALID, "pids %llu is out of range (allowed: 1 to 4194304, 0 = no limit)",
                        (unsigned long long)s->pids);
    if (s->disk_mib > MAX_MIB)
        return sbx_fail(err, SBX_E_INVALID, "disk %llu MiB is out of range (allowed: 1 to 16777216 MiB)",
                        (unsigned long long)s->disk_mib);
    if (s->user_name && !sbx_valid_user_name(s->user_name))
        return sbx_fail(err, SBX_E_INVALID,
                        "user name '%s' is invalid (allowed: [a-z_][a-z0-9_-]{0,31}, not 'root')", s->user_name);
    if (s->layer_dir && s->layer_dir[0] != '/')
        return sbx_fail(err, SBX_E_INVALID, "layer directory '%s' must be an absolute path", s->layer_dir);
    if (sbx_gpu_spec_check(s->gpu, err) < 0)
        return -1;
    /* A limit nobody enforces is worse than an error. */
    static const struct { int ctl; const char *what; } need[] = {
        {SBX_CG_MEMORY, "memory"}, {SBX_CG_CPU, "cpu"}, {SBX_CG_PIDS, "pids"}};
    bool asked[] = {s->memory_mib > 0, s->cpus > 0, s->pids > 0};
    for (size_t i = 0; i < SBX_ARRAY_LEN(need); i++)
        if (asked[i] && eng->cg.ver[need[i].ctl] == SBX_CG_NONE)
            return sbx_fail(err, SBX_E_LIMIT, "a %s limit was asked for, but this host has no %s cgroup controller available",
                            need[i].what, need[i].what);
    return 0;
}

/* A GPU sandbox's setup, decided before anything is made (gpu.h): the
 * GPUs reserved in sb->gpu, the plan for the child, the devices cgroup
 * rules applied once the root is built, the variables in sb->env. */
struct gpu_setup {
    sbx_gpu_plan *plan; /* its own mapping, dropped by the child like the rootfs plan */
    sbx_cg_dev_rule rules[SBX_GPU_MAX_RULES];
    int nrules;
};

static void gpu_setup_free(struct gpu_setup *gs)
{
    if (gs && gs->plan)
        munmap(gs->plan, sizeof(*gs->plan));
    free(gs);
}

/* Messages from discovery and planning name no spec: say which one. */
static int gpu_fail(sbx_err *err, const char *spec)
{
    if (!err)
        return -1;
    char msg[sizeof(err->msg)];
    snprintf(msg, sizeof(msg), "%s", err->msg);
    int e = err->sys_errno;
    sbx_fail(err, err->code, "gpu '%s': %s", spec, msg);
    err->sys_errno = e;
    return -1;
}

static int gpu_prepare(sbx_engine *eng, sbx_sandbox *sb, const char *spec, struct gpu_setup **out, sbx_err *err)
{
    sbx_gpu_request req;
    if (sbx_gpu_parse(spec, &req, err) < 0)
        return -1;
    if (eng->cg.ver[SBX_CG_DEVICES] == SBX_CG_NONE)
        return sbx_fail(err, SBX_E_LIMIT,
                        "gpu '%s': a GPU sandbox needs the devices cgroup (the v1 devices controller, or a cgroup2 "
                        "mount for a device program), and this host has neither", spec);
    struct gpu_setup *gs = calloc(1, sizeof(*gs));
    sbx_gpu_host *host = malloc(sizeof(*host));
    if (gs) {
        gs->plan = mmap(NULL, sizeof(*gs->plan), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (gs->plan == MAP_FAILED)
            gs->plan = NULL;
    }
    int r = -1;
    if (!gs || !gs->plan || !host)
        sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    else if (sbx_gpu_discover(eng->gpu_root, host, err) < 0)
        gpu_fail(err, spec);
    else if (sbx_gpu_reserve(eng->gpu_lock_dir, host, &req, sb->id, &sb->gpu, err) < 0)
        ; /* checks the request against the host; names the spec itself */
    else if (sbx_gpu_plan_make(eng->gpu_root, host, sb->gpu.index, sb->gpu.n, gs->plan, err) < 0)
        gpu_fail(err, spec);
    else if (sbx_rootfs_dev_rules(gs->rules, &gs->nrules, SBX_GPU_MAX_RULES) < 0 ||
             sbx_gpu_dev_rules(gs->plan, gs->rules, &gs->nrules, SBX_GPU_MAX_RULES) < 0)
        sbx_fail(err, SBX_E_LIMIT, "gpu '%s': too many device nodes", spec);
    else if (!(sb->env = calloc((size_t)gs->plan->nenv + 1, sizeof(char *))))
        sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    else
        r = 0;
    for (int i = 0; r == 0 && i < gs->plan->nenv; i++)
        if (!(sb->env[i] = strdup(gs->plan->env[i])))
            r = sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    free(host);
    if (r < 0) {
        gpu_setup_free(gs);
        return -1; /* the lease and env go with sb */
    }
    *out = gs;
    return 0;
}

static bool any_cgroup(const sbx_engine *eng)
{
    for (int c = 0; c < SBX_CG_NCTL; c++)
        if (eng->cg.ver[c] != SBX_CG_NONE)
            return true;
    return false;
}

/* Liveness lock: held by us and by the sandbox's init; a sweep after a
 * crash finds it free and removes what is left. */
static int take_lock(const sbx_engine *eng, sbx_sandbox *sb, sbx_err *err)
{
    if (sbx_pathf(sb->lock_path, sizeof(sb->lock_path), "%s/%s", eng->lock_dir, sb->id) < 0) {
        sb->lock_path[0] = '\0';
        return sbx_fail(err, SBX_E_INVALID, "lock path too long");
    }
    /* The lock file appears under its name already locked: made as an
     * unnamed O_TMPFILE, locked, then linked into place. A sweep never
     * sees it unlocked, and the link fails if the id is taken. */
    sb->lock_fd = open(eng->lock_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (sb->lock_fd < 0 || flock(sb->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        sb->lock_path[0] = '\0';
        return sbx_fail_errno(err, errno, "lock in %s", eng->lock_dir);
    }
    char fdpath[64];
    snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", sb->lock_fd);
    if (linkat(AT_FDCWD, fdpath, AT_FDCWD, sb->lock_path, AT_SYMLINK_FOLLOW) < 0) {
        int le = errno;
        if (le == EEXIST)
            sbx_fail(err, SBX_E_INVALID, "sandbox id '%s' is already in use", sb->id);
        else
            sbx_fail_errno(err, le, "lock %s", sb->lock_path);
        sb->lock_path[0] = '\0'; /* not ours: do not unlink */
        return -1;
    }
    return 0;
}

static int make_cgroups(const sbx_engine *eng, sbx_sandbox *sb, const sbx_spec *spec, bool gpu, sbx_err *err)
{
    if (!any_cgroup(eng))
        return 0;
    /* Each v1 hierarchy joined costs a cgroup migration; cpu ones are
     * only joined when they limit or account something asked for. */
    sbx_cg_limits lim = {spec->cpus, spec->memory_mib << 20, spec->pids, gpu, spec->cpus == 0 && !spec->track_cpu};
    if (sbx_cg_create(&eng->cg, eng->cg_name, sb->id, &lim, &sb->cg, err) < 0)
        return -1;
    sb->has_cg = true;
    return 0;
}

/* Makes the control socket and clones the child, as pid 1 of a new pid
 * namespace (its other namespaces it makes itself, see child_main):
 * building its root is the longest part of a launch, and the namespaces it
 * joins later, the lock and the cgroups are made meanwhile. It waits for
 * them (NETNS) before it drops host root or runs anything of the
 * sandbox's. Raw clone without CLONE_VM behaves like fork but takes
 * namespace flags, and runs no atfork handlers (see init.c).
 *
 * An early child is cloned before its plan is made, and waits for it
 * (PLAN): its start on the other CPU (waking an idle vCPU, ~0.05 ms
 * here) and its namespaces (~0.05 ms) then overlap our making of the
 * plan instead of following it. */
static int spawn(sbx_engine *eng, sbx_rootfs_plan *pl, bool early, bool base, pid_t *pid_out, int *ctl_out,
                 sbx_err *err)
{
    int socks[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, socks) < 0)
        return sbx_fail_errno(err, errno, "socketpair");
    /* Exec requests carry argv and env: let one be up to 1 MiB. */
    int big = (int)SBX_MAX_EXEC_MSG + 65536;
    setsockopt(socks[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    setsockopt(socks[1], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));

    /* Host and child each have ~0.5 ms of setup to do, in parallel on two
     * CPUs. Left alone, the scheduler starts the child on our CPU and may
     * let it preempt us, or leave it queued behind us, either way with the
     * other CPU idle. So the child goes to another CPU from the start: we
     * pin ourselves here (the child inherits the pin) and move it before
     * it runs, or it moves itself first thing if it ran before us. */
    struct child_args ca = {pl, socks[1], false, early, base, {{0}}, {{0}}};
    int here = sched_getcpu();
    if (here >= 0 && here < CPU_SETSIZE && sbx_pin_here(&ca.cpus)) {
        ca.others = ca.cpus;
        CPU_CLR(here, &ca.others);
        ca.split = true;
    }
    /* Born SCHED_BATCH (it inherits our policy for the clone), the child
     * does not preempt us at the clone, as a new task otherwise often
     * does: we move it while it is only queued, which needs no stopper
     * thread on our CPU (~35 us for both of us), and go on with our part
     * at once. It takes SCHED_OTHER back first thing. Only from
     * SCHED_OTHER: a creator run with another policy (chrt) keeps it, and
     * its sandboxes inherit it. (Raw syscalls: musl has no
     * sched_setscheduler.) */
    struct sched_param sp0 = {0};
    bool batch = ca.split && syscall(SYS_sched_getscheduler, 0) == SCHED_OTHER &&
                 syscall(SYS_sched_setscheduler, 0, SCHED_BATCH, &sp0) == 0;
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), 0UL, NULL, NULL, 0UL);
    if (pid == 0) {
        if (batch)
            syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp0);
        close(socks[0]);
        if (eng->init_exe_fd >= 0)
            child_reexec(&ca, eng->init_exe_fd, eng->init_env);
        child_main(&ca);
    }
    int clone_errno = errno;
    if (ca.split) {
        if (pid > 0)
            sched_setaffinity((pid_t)pid, sizeof(ca.others), &ca.others);
        /* Only now: our change of policy would let the child preempt us. */
        if (batch)
            syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp0);
        sbx_unpin(&ca.cpus);
    }
    close(socks[1]);
    if (pid < 0) {
        close(socks[0]);
        return sbx_fail_errno(err, clone_errno, "clone sandbox");
    }
    *pid_out = (pid_t)pid;
    *ctl_out = socks[0];
    return 0;
}

static int spawn_child(sbx_engine *eng, sbx_sandbox *sb, sbx_rootfs_plan *pl, bool early, sbx_err *err)
{
    return spawn(eng, pl, early, false, &sb->init_pid, &sb->ctl_fd, err);
}

/* A child cloned before the engine opened (sbx_engine_open_run), with
 * its plan mapping; create adopts it. */
struct prespawn {
    pid_t pid;
    int ctl;
    sbx_rootfs_plan *plan;
};

static void prespawn_drop(struct prespawn *pre)
{
    if (!pre)
        return;
    kill(pre->pid, SIGKILL);
    while (waitpid(pre->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    close(pre->ctl);
    munmap(pre->plan, sizeof(*pre->plan));
}

/* To an early child: the plan (up to its last volume) and its fds. */
static int send_plan(sbx_sandbox *sb, const sbx_rootfs_plan *pl, bool one_shot, sbx_err *err)
{
    size_t len = offsetof(sbx_rootfs_plan, vol) + (size_t)pl->nvol * sizeof(pl->vol[0]);
    struct sbx_msg_plan m = {{SBX_MSG_PLAN, (uint32_t)(sizeof(m) - sizeof(m.h) + len)},
                             one_shot ? SBX_PLAN_ONE_SHOT : 0u, (uint32_t)len};
    int fds[2], nfd = 0;
    if (pl->etc_view_fd >= 0) {
        m.flags |= SBX_PLAN_ETC_VIEW_FD;
        fds[nfd++] = pl->etc_view_fd;
    }
    if (pl->layer_img_fd >= 0) {
        m.flags |= SBX_PLAN_LAYER_IMG_FD;
        fds[nfd++] = pl->layer_img_fd;
    }
    struct iovec iov[2] = {{&m, sizeof(m)}, {(void *)pl, len}};
    int r = sbx_msg_sendv(sb->ctl_fd, iov, 2, fds, nfd);
    return r < 0 ? sbx_fail_errno(err, -r, "sandbox setup: send the plan") : 0;
}

/* The plan's fields that the engine and the spec alone decide: all a
 * child cloned before the engine opened needs for the root's base. */
static void plan_from_spec(sbx_rootfs_plan *pl, const sbx_engine *eng, const sbx_spec *spec)
{
    snprintf(pl->user_home, sizeof(pl->user_home), "home/%s", spec->user_name ? spec->user_name : "user");
    snprintf(pl->stage, sizeof(pl->stage), "%s", eng->stage_dir);
    snprintf(pl->layer_mnt, sizeof(pl->layer_mnt), "%s", eng->layer_dir);
    snprintf(pl->empty_dir, sizeof(pl->empty_dir), "%s", eng->empty_dir);
    pl->disk_bytes = (spec->disk_mib ? spec->disk_mib : SBX_DEFAULT_DISK_MIB) << 20;
    pl->uid_base = eng->uid_base;
    pl->uid_count = eng->uid_count;
    snprintf(pl->hostname, sizeof(pl->hostname), "%s", spec->hostname ? spec->hostname : "sbx");
}

/* A plan in its own private mapping (see create), its fds none yet;
 * NULL if out of memory. */
static sbx_rootfs_plan *plan_map(void)
{
    sbx_rootfs_plan *pl = mmap(NULL, sizeof(*pl), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pl == MAP_FAILED)
        return NULL;
    pl->layer_img_fd = pl->etc_view_fd = -1;
    return pl;
}

/* sbx_sandbox_create, adopting pre's child if not NULL (it owns pre's
 * child, plan and socket from here, on failure too). */
static int create(sbx_engine *eng, const sbx_spec *spec, struct prespawn *pre, sbx_sandbox **out, sbx_err *err)
{
    *out = NULL;
    if (check_spec(eng, spec, err) < 0) {
        prespawn_drop(pre);
        return -1;
    }
    sbx_sandbox *sb = calloc(1, sizeof(*sb));
    /* The plan gets its own mapping: the child drops its copy once the
     * root is built, so a live sandbox's init keeps none of it (a one-shot
     * sandbox's init, which ends with its command, does not bother). */
    sbx_rootfs_plan *pl = pre ? pre->plan : plan_map();
    if (!sb || !pl) {
        free(sb);
        if (pre)
            prespawn_drop(pre);
        else if (pl)
            munmap(pl, sizeof(*pl));
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    }
    sb->eng = eng;
    sb->uid_base = eng->uid_base;
    sb->uid_count = eng->uid_count;
    sb->ctl_fd = sb->lock_fd = sb->reaper_go = -1;
    sb->init_pid = -1;
    sb->netns = (sbx_netns){-1, -1, -1};
    snprintf(sb->user_name, sizeof(sb->user_name), "%s", spec->user_name ? spec->user_name : "user");
    snprintf(sb->user_home, sizeof(sb->user_home), "/home/%s", sb->user_name);
    pthread_mutex_init(&sb->send_lock, NULL);
    struct gpu_setup *gs = NULL;

    /* The child is cloned now, before its plan is made, unless the plan
     * must be whole at the clone: a GPU sandbox's names a second mapping,
     * and a server's init is exec'd with a copy of it. */
    bool early = pre || (eng->init_exe_fd < 0 && !(spec->gpu && *spec->gpu));
    if (pre) {
        sb->init_pid = pre->pid;
        sb->ctl_fd = pre->ctl;
    } else if (early && spawn_child(eng, sb, pl, true, err) < 0) {
        goto fail;
    }

    if (spec->id) {
        snprintf(sb->id, sizeof(sb->id), "%s", spec->id);
    } else {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            sbx_fail_errno(err, errno, "getrandom");
            goto fail;
        }
        snprintf(sb->id, sizeof(sb->id), "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    }

    /* The plan: everything the child needs, decided here. */
    if (sbx_image_resolve(eng, spec->image, &pl->image_kind, pl->image_dir, sizeof(pl->image_dir), err) < 0)
        goto fail;
    if (pl->image_kind == SBX_IMAGE_HOST) {
        int built = sbx_etc_mask_ensure(eng, sb->user_name, pl->etc_mask, sizeof(pl->etc_mask), err);
        if (built < 0)
            goto fail;
        /* Without the view (it could not be made), the child mounts its
         * own overlay of the mask. */
        int fd = sbx_etc_view_clone(eng, pl->etc_mask, built == 1);
        pl->etc_view_fd = fd >= 0 ? fd : -1;
    }
    if (sbx_rootfs_plan_volumes(pl, spec->volumes, spec->n_volumes, err) < 0)
        goto fail;
    plan_from_spec(pl, eng, spec);
    if (spec->layer_dir) {
        if (sbx_layer_prepare(spec->layer_dir, pl->disk_bytes, &pl->layer_img_fd, err) < 0)
            goto fail;
        snprintf(pl->layer_dir, sizeof(pl->layer_dir), "%s", spec->layer_dir);
    }

    /* Before the clone: the child's plan names the GPUs' files. */
    if (spec->gpu && *spec->gpu) {
        if (gpu_prepare(eng, sb, spec->gpu, &gs, err) < 0)
            goto fail;
        pl->gpu = gs->plan;
    }

    if (!early && spawn_child(eng, sb, pl, false, err) < 0)
        goto fail;
    if (early && send_plan(sb, pl, spec->one_shot, err) < 0)
        goto fail;

    /* While the child builds its root: its network namespace (sent at
     * once), the lock, the cgroups (lock first: the sweep relies on that order),
     * and its move into them (a v1 migration costs ~0.1 ms that need not
     * be on its path). */
    const char *what = "";
    int r = sbx_netns_get(eng, &sb->netns, &what), userfd = -1;
    if (r == 0 && (userfd = r = make_userns(sb->uid_base, sb->uid_count, &what)) >= 0)
        r = 0;
    if (r < 0) {
        sbx_fail_errno(err, -r, "sandbox setup: %s", what);
    } else {
        struct sbx_msg_hdr nm = {SBX_MSG_NETNS, 0};
        int fds[2] = {sb->netns.fd, userfd};
        sbx_msg_send(sb->ctl_fd, &nm, sizeof(nm), fds, 2); /* a failure shows below */
        close(userfd);
        r = take_lock(eng, sb, err);
    }
    if (r == 0)
        r = make_cgroups(eng, sb, spec, gs != NULL, err);
    if (r == 0 && sb->has_cg && (r = sbx_cg_join_pid(&sb->cg, sb->init_pid)) < 0)
        sbx_fail_errno(err, -r, "sandbox setup: join cgroups");
    if (r == 0) {
        struct sbx_msg_hdr cm = {SBX_MSG_CGROUPS, 0};
        sbx_msg_send(sb->ctl_fd, &cm, sizeof(cm), &sb->lock_fd, 1); /* a failure shows below */
    }
    if (r < 0)
        goto fail;

    /* A GPU sandbox's root is built when it says USERNS: its devices are
     * restricted to those in its /dev, then it goes on (MAPPED). Then
     * READY, or an ERROR. A one-shot sandbox is not waited for: its exec
     * request is on its way meanwhile, and a setup failure shows there. */
    bool gpu_pending = gs != NULL, want_ready = !spec->one_shot;
    while (gpu_pending || want_ready) {
        _Alignas(8) char buf[sizeof(struct sbx_msg_error)];
        ssize_t n = sbx_msg_recv(sb->ctl_fd, buf, sizeof(buf), NULL, NULL);
        const struct sbx_msg_hdr *h = (const void *)buf;
        if (n < (ssize_t)sizeof(*h)) {
            sbx_fail(err, SBX_E_SYSTEM, "sandbox setup: init exited unexpectedly");
            goto fail;
        }
        if (h->type == SBX_MSG_ERROR) {
            const struct sbx_msg_error *m = (const void *)buf;
            sbx_fail_errno(err, m->err, "sandbox setup: %.*s", (int)sizeof(m->text), m->text);
            goto fail;
        }
        if (h->type == SBX_MSG_READY) {
            want_ready = gpu_pending = false;
        } else if (h->type == SBX_MSG_USERNS && gs) {
            if (sbx_cg_restrict_devices(&sb->cg, gs->rules, gs->nrules, err) < 0)
                goto fail;
            struct sbx_msg_hdr m = {SBX_MSG_MAPPED, 0};
            if (sbx_msg_send(sb->ctl_fd, &m, sizeof(m), NULL, 0) < 0) {
                sbx_fail(err, SBX_E_SYSTEM, "sandbox setup: init exited unexpectedly");
                goto fail;
            }
            gpu_pending = false;
        }
    }
    sb->ready_pending = sb->one_shot = spec->one_shot;
    if (sb->has_cg)
        sbx_cg_close_fds(&sb->cg);
    if (pl->layer_img_fd >= 0)
        close(pl->layer_img_fd);
    if (pl->etc_view_fd >= 0)
        close(pl->etc_view_fd);
    munmap(pl, sizeof(*pl));
    sb->reap_wanted = spec->one_shot && !gs && !spec->layer_dir;
    gpu_setup_free(gs);
    *out = sb;
    return 0;

fail:
    if (pl && pl->layer_img_fd >= 0)
        close(pl->layer_img_fd);
    if (pl && pl->etc_view_fd >= 0)
        close(pl->etc_view_fd);
    if (pl)
        munmap(pl, sizeof(*pl));
    gpu_setup_free(gs);
    sbx_sandbox_destroy(sb);
    return -1;
}

int sbx_sandbox_create(sbx_engine *eng, const sbx_spec *spec, sbx_sandbox **out, sbx_err *err)
{
    return create(eng, spec, NULL, out, err);
}

int sbx_engine_open_run(const sbx_engine_config *cfg, const sbx_spec *spec, sbx_engine **eng_out,
                        sbx_sandbox **sb_out, sbx_err *err)
{
    static const sbx_engine_config none;
    if (!cfg)
        cfg = &none;
    *eng_out = NULL;
    *sb_out = NULL;
    sbx_engine *eng;
    if (sbx_engine_alloc(cfg, &eng, err) < 0)
        return -1;
    /* A throwaway root on the host image: its base needs only what the
     * configuration and the spec say (checked here as far as the base
     * uses it; create checks the whole spec and drops the child if it
     * must). Anything else is cloned by create, as usual. */
    struct prespawn pre = {-1, -1, NULL}, *pp = NULL;
    bool host_image = !spec->image || !*spec->image || strcmp(spec->image, "host") == 0;
    const char *user = spec->user_name ? spec->user_name : "user";
    if (eng->init_exe_fd < 0 && host_image && !spec->layer_dir && !(spec->gpu && *spec->gpu) &&
        sbx_valid_user_name(user) && spec->disk_mib <= MAX_MIB) {
        sbx_rootfs_plan *pl = plan_map();
        if (pl) {
            pl->image_kind = SBX_IMAGE_HOST;
            plan_from_spec(pl, eng, spec);
            sbx_err ignored = {0};
            if (spawn(eng, pl, true, true, &pre.pid, &pre.ctl, &ignored) == 0) {
                pre.plan = pl;
                pp = &pre;
            } else {
                munmap(pl, sizeof(*pl));
            }
        }
    }
    if (sbx_engine_start(eng, cfg, err) < 0) {
        prespawn_drop(pp);
        sbx_engine_close(eng);
        return -1;
    }
    if (create(eng, spec, pp, sb_out, err) < 0) {
        sbx_engine_close(eng);
        return -1;
    }
    *eng_out = eng;
    return 0;
}

int sbx_setup_failed(sbx_sandbox *sb, sbx_err *err)
{
    if (!sb->ready_pending)
        return 0;
    /* init is gone: whatever it said is queued already. */
    struct pollfd pf = {sb->ctl_fd, POLLIN, 0};
    while (poll(&pf, 1, 0) > 0) {
        _Alignas(8) char buf[sizeof(struct sbx_msg_error)];
        ssize_t n = sbx_msg_recv(sb->ctl_fd, buf, sizeof(buf), NULL, NULL);
        const struct sbx_msg_hdr *h = (const void *)buf;
        /* init died with our EXEC request unread: the kernel reports that
         * as ECONNRESET, once, before the messages it had sent. */
        if (n == -ECONNRESET)
            continue;
        if (n < (ssize_t)sizeof(*h))
            break;
        if (h->type == SBX_MSG_READY) {
            sb->ready_pending = false;
            return 0;
        }
        if (h->type == SBX_MSG_ERROR) {
            const struct sbx_msg_error *m = (const void *)buf;
            sbx_fail_errno(err, m->err, "sandbox setup: %.*s", (int)sizeof(m->text), m->text);
            return -1;
        }
    }
    sbx_fail(err, SBX_E_SYSTEM, "sandbox setup: init exited unexpectedly");
    return -1;
}

const char *sbx_sandbox_id(const sbx_sandbox *sb)
{
    return sb->id;
}

pid_t sbx_sandbox_pid(const sbx_sandbox *sb)
{
    return sb->init_pid;
}

/* Closes every fd but the `n` in keep (sorted ascending). */
static void close_all_but(const int *keep, int n)
{
    unsigned lo = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0u);
        lo = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0u);
}

/* The reaper of a one_shot sandbox (see engine.h): the creator's exit
 * does not wait for the teardown of the sandbox's mounts nor for the
 * removal of its cgroups (together ~0.3 ms here): the reaper holds the
 * mount namespace, so init's exit leaves that to it, and it removes the
 * rest once init is gone, holding the lock until then so that a sweep
 * never races it.
 *
 * It is cloned with CLONE_VM, so starting it copies no page tables and
 * costs the creator no copy-on-write faults afterwards (it starts while
 * the command does). It uses only its own mapping (this struct and its
 * stack), which the creator never touches again nor unmaps, and calls
 * nothing that allocates or locks; the errno it sets is the creator's
 * thread's, which nothing reads once destroy has returned. Under
 * AddressSanitizer (whose per-thread state it would share) it is a plain
 * fork. */
struct reaper {
    int go, pidfd, lock_fd, mntfd;
    bool has_cg;
    sbx_cgroup cg;
    char lock_path[SBX_SHORT_PATH_MAX];
    sbx_netns netns;
    int netns_pool;
    char netns_dir[SBX_SHORT_PATH_MAX];
};
#define REAPER_STACK (64 * 1024)

static int reaper_main(void *arg)
{
    struct reaper *rp = arg;
    /* Never in the way: it runs when the CPU is otherwise idle, so its
     * wake-up at destroy does not preempt the creator's exit. (The raw
     * syscall: musl does not implement sched_setscheduler.) */
    struct sched_param sp = {0};
    syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, &sp);
    /* Its own session: a Ctrl-C on the terminal is for the command. */
    setsid();
    int keep[6] = {rp->go, rp->pidfd, rp->lock_fd, rp->mntfd}, nkeep = 4;
    if (rp->netns.fd >= 0)
        keep[nkeep++] = rp->netns.fd;
    if (rp->netns.slot_fd >= 0)
        keep[nkeep++] = rp->netns.slot_fd;
    for (int i = 1; i < nkeep; i++)
        for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    /* Nothing of the creator's: a reader of its stdout must see EOF when
     * it exits, and init must see its control socket close. */
    close_all_but(keep, nkeep);
    char c;
    ssize_t n;
    do
        n = read(rp->go, &c, 1);
    while (n < 0 && errno == EINTR);
    /* EOF: the creator died without destroying it. PDEATHSIG has killed
     * init; the cgroups and lock are left for the next sweep, as after a
     * crash of a creator without a reaper. */
    if (n != 1)
        _exit(0);
    syscall(SYS_pidfd_send_signal, rp->pidfd, SIGKILL, NULL, 0u);
    struct pollfd pf = {rp->pidfd, POLLIN, 0};
    while (poll(&pf, 1, -1) < 0 && errno == EINTR) {
    }
    /* init has exited: the kernel killed the rest of its pid namespace
     * first, so the cgroups are empty and the network namespace holds
     * nothing of a process. The mount namespace outlived it only through
     * mntfd: its teardown (every mount of the root, an RCU grace period)
     * happens here, in this close, not in init's exit. It goes first: it
     * is mostly a wait for the grace period, during which this CPU is
     * free for the next launch as it starts (back to back, that follows
     * at once); the network namespace's check is ~0.07 ms of CPU that was
     * in its way there (-0.03 to -0.05 ms per launch). The namespace is
     * back in the pool long before the pool runs short. The lock goes
     * only with the cgroups. */
    close(rp->mntfd);
    sbx_netns_put(rp->netns_dir, rp->netns_pool, &rp->netns);
    if (!rp->has_cg || sbx_cg_destroy(&rp->cg, NULL) == 0)
        unlink(rp->lock_path);
    _exit(0);
}

void sbx_reaper_start(sbx_sandbox *sb)
{
    sb->reap_wanted = false; /* one try */
    if (sb->init_pid <= 0 || sb->lock_fd < 0 || !sb->lock_path[0])
        return;
    size_t size = sizeof(struct reaper) + REAPER_STACK;
    struct reaper *rp = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rp == MAP_FAILED)
        return;
    int sv[2] = {-1, -1};
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)sb->init_pid);
    rp->pidfd = (int)syscall(SYS_pidfd_open, sb->init_pid, 0u);
    rp->mntfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rp->pidfd < 0 || rp->mntfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        if (rp->pidfd >= 0)
            close(rp->pidfd);
        if (rp->mntfd >= 0)
            close(rp->mntfd);
        munmap(rp, size);
        return;
    }
    rp->go = sv[0];
    rp->lock_fd = sb->lock_fd;
    rp->has_cg = sb->has_cg;
    rp->cg = sb->cg;
    memcpy(rp->lock_path, sb->lock_path, sizeof(rp->lock_path));
    rp->netns = sb->netns;
    rp->netns_pool = sb->eng->netns_pool;
    memcpy(rp->netns_dir, sb->eng->netns_dir, sizeof(rp->netns_dir));
    /* On our CPU, not the command's (the reaper keeps the pin: it only
     * waits, then removes a few dirs). */
    cpu_set_t cpus;
    bool pinned = sbx_pin_here(&cpus);
#if defined(__SANITIZE_ADDRESS__)
    const int vm = 0;
#else
    const int vm = CLONE_VM;
#endif
    pid_t pid = clone(reaper_main, (char *)rp + size, vm | SIGCHLD, rp);
    if (pinned)
        sbx_unpin(&cpus);
    close(sv[0]);
    close(rp->pidfd);
    close(rp->mntfd);
    if (pid < 0) {
        close(sv[1]);
        munmap(rp, size);
        return;
    }
    sb->reaper_go = sv[1]; /* rp stays mapped: the reaper lives in it */
}

void sbx_sandbox_destroy(sbx_sandbox *sb)
{
    if (!sb)
        return;
    if (sb->reaper_go >= 0) {
        /* init is reaped here (left to the host's pid 1 it would stay a
         * zombie until that reaps, up to ~1 s on some hosts); its exit is
         * quick as the reaper holds its mount namespace, whose teardown is
         * most of the cost. The reaper removes the rest. */
        if (sb->init_pid > 0) {
            kill(sb->init_pid, SIGKILL);
            while (waitpid(sb->init_pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
        send(sb->reaper_go, "x", 1, MSG_NOSIGNAL);
        close(sb->reaper_go);
        /* Our copies: the reaper's keep the slot's lock and puts it back. */
        if (sb->netns.fd >= 0)
            close(sb->netns.fd);
        if (sb->netns.slot_fd >= 0)
            close(sb->netns.slot_fd);
        if (sb->ctl_fd >= 0)
            close(sb->ctl_fd);
        if (sb->lock_fd >= 0)
            close(sb->lock_fd); /* the reaper holds the lock until it is done */
        for (size_t i = 0; sb->env && sb->env[i]; i++)
            free(sb->env[i]);
        free(sb->env);
        pthread_mutex_destroy(&sb->send_lock);
        free(sb);
        return;
    }
    if (sb->init_pid > 0) {
        /* Killing a pid namespace's init kills every process in it; the
         * kernel reaps them all before init's own exit is reported. */
        kill(sb->init_pid, SIGKILL);
        while (waitpid(sb->init_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (sb->ctl_fd >= 0)
        close(sb->ctl_fd);
    /* With init reaped nothing of the sandbox is left in it. */
    sbx_netns_put(sb->eng->netns_dir, sb->eng->netns_pool, &sb->netns);
    if (sb->has_cg) {
        /* With init reaped the pid namespace is empty; a straggler (none
         * is expected) is killed before a second try. */
        sbx_err e;
        if (sbx_cg_destroy(&sb->cg, &e) < 0) {
            sbx_cg_kill_all(&sb->cg);
            sbx_cg_destroy(&sb->cg, &e);
        }
    }
    if (sb->lock_fd >= 0) {
        if (sb->lock_path[0])
            unlink(sb->lock_path);
        close(sb->lock_fd);
    }
    /* The GPUs are free once nothing of the sandbox runs. */
    sbx_gpu_release(&sb->gpu);
    for (size_t i = 0; sb->env && sb->env[i]; i++)
        free(sb->env[i]);
    free(sb->env);
    pthread_mutex_destroy(&sb->send_lock);
    free(sb);
}

int sbx_sandbox_stats(const sbx_sandbox *sb, sbx_stats *st, sbx_err *err)
{
    memset(st, 0, sizeof(*st));
    if (!sb->has_cg)
        return 0;
    sbx_cg_stats cs;
    if (sbx_cg_stats_read(&sb->cg, &cs) < 0)
        return sbx_fail(err, SBX_E_SYSTEM, "sandbox %s: cannot read cgroup stats", sb->id);
    st->cpu_usec = cs.cpu_usec;
    st->memory_bytes = cs.memory_bytes;
    st->memory_peak = cs.memory_peak;
    st->oom_kills = cs.oom_kills;
    st->pids = cs.pids;
    return 0;
}
