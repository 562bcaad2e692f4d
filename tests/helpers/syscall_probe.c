/* Runs inside a sandbox: calls syscalls the filter must refuse and prints
 * "name errno-name" for each. Arguments are harmless even if a call were
 * allowed by mistake (bogus magic numbers, NULL buffers, bad fds). */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void probe(const char *name, long r)
{
    printf("%s %s\n", name, r == -1 ? (errno == EPERM ? "EPERM" : strerrorname_np(errno)) : "ALLOWED");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    probe("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0L, NULL));
    probe("umount2", syscall(SYS_umount2, "/proc", 2));
    probe("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    probe("unshare", syscall(SYS_unshare, CLONE_NEWNS));
    probe("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    probe("setns", syscall(SYS_setns, -1, 0));
    probe("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0L, NULL, NULL, 0L));
    probe("init_module", syscall(SYS_init_module, NULL, 0L, ""));
    probe("finit_module", syscall(SYS_finit_module, -1, "", 0));
    probe("delete_module", syscall(SYS_delete_module, "sbx_no_such_module", 0));
    probe("kexec_load", syscall(SYS_kexec_load, 0L, 0L, NULL, 0L));
    probe("bpf", syscall(SYS_bpf, -1, NULL, 0));
    probe("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    probe("keyctl", syscall(SYS_keyctl, -1, 0, 0, 0, 0));
    probe("add_key", syscall(SYS_add_key, "user", "sbx", NULL, 0, 0));
    probe("request_key", syscall(SYS_request_key, "user", "sbx", NULL, 0));
    probe("userfaultfd", syscall(SYS_userfaultfd, 0));
    probe("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
    probe("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    probe("swapon", syscall(SYS_swapon, "/nonexistent", 0));
    probe("chroot", syscall(SYS_chroot, "/nonexistent"));
    return 0;
}
