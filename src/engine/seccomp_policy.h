/* seccomp_policy.h: the syscall policy of the sandbox filter, as plain data.
 *
 * tools/seccomp_gen.c compiles these tables with libseccomp at build time
 * into build/gen/seccomp_filter.inc (a BPF program); seccomp.c only loads
 * that. Nothing here needs libseccomp, so any file may include this header.
 *
 * Model: the default action is ALLOW, and the tables below list what is
 * refused. The sandbox is already confined by namespaces, cgroups and a
 * private root; the filter removes the kernel surface a sandboxed program
 * never needs and that is the usual way out of such a confinement (module
 * loading, mounts, new namespaces, keyrings, bpf, io_uring...).
 *
 * Names the native libseccomp does not know, or that do not exist on the
 * build architecture (vm86, pciconfig_* on x86_64), are skipped by the
 * generator with a note: the tables can list syscalls of every arch.
 *
 * Architectures: the filter is built for the native ABI only (x86_64).
 * A syscall made through another ABI (i386 via int 0x80, or x32 numbers with
 * bit 30 set) does not reach these rules: it kills the process (libseccomp's
 * bad-arch action, made KILL_PROCESS by the generator). A deny-list written
 * for one syscall table cannot be enforced on another, and sandboxed
 * programs are 64-bit.
 *
 * ptrace stays allowed: every sandbox runs in its own pid namespace, so it
 * can only trace its own processes (which it could already subvert), and
 * debuggers/strace inside a sandbox are legitimate. Yama and the usual
 * ptrace_may_access checks still apply. kcmp and process_madvise stay
 * allowed for the same reason (they act only on processes the caller may
 * ptrace).
 */
#ifndef SBX_SECCOMP_POLICY_H
#define SBX_SECCOMP_POLICY_H

#include <errno.h>
#include <stdint.h>

#ifdef SBX_SECCOMP_GEN
/* For tools/seccomp_gen.c only. The build puts src/engine on the -I path,
 * where the engine's seccomp.h shadows libseccomp's <seccomp.h>; an
 * #include_next from this file (found in src/engine) skips that directory
 * and reaches the system header. */
#include_next <seccomp.h>
#endif

/* Tables are static in a header: unused in some includers, which is fine. */
#define SBX_SC_TABLE static const __attribute__((unused))

/* Unconditional refusal: `name` fails with errno `err`, whatever its args. */
struct sbx_sc_deny {
    const char *name;
    int err;
};

/* Argument comparison, on the full 64-bit register value of argument `arg`
 * (0-based):
 *   SBX_SC_NE:        args[arg] != a
 *   SBX_SC_MASKED_EQ: (args[arg] & a) == b */
enum sbx_sc_op { SBX_SC_NE = 1, SBX_SC_MASKED_EQ = 2 };
struct sbx_sc_cmp {
    unsigned arg;
    enum sbx_sc_op op;
    uint64_t a, b;
};

/* Conditional refusal: `name` fails with `err` when ALL of its comparisons
 * hold. Several rules for one syscall are alternatives (any may refuse).
 * At most one comparison per argument in a rule (libseccomp's limit). */
#define SBX_SC_MAX_CMP 6
struct sbx_sc_cond {
    const char *name;
    int err;
    unsigned ncmp;
    struct sbx_sc_cmp cmp[SBX_SC_MAX_CMP];
};

/* Value allow-list: `name` fails with `err` unless args[arg] (all 64 bits)
 * is one of values[]. libseccomp cannot say "none of these" (it takes one
 * comparison per argument per rule), so the generator routes the syscall
 * to a short hand-assembled check appended to the program; see
 * tools/seccomp_gen.c. */
#define SBX_SC_MAX_VALUES 16
struct sbx_sc_only {
    const char *name;
    int err;
    unsigned arg;
    unsigned nvalues;
    uint64_t values[SBX_SC_MAX_VALUES];
};

/* ---- unconditional refusals ------------------------------------------- */

SBX_SC_TABLE struct sbx_sc_deny sbx_sc_deny_table[] = {
    /* Kernel modules: loading code into the kernel. */
    {"init_module", EPERM},
    {"finit_module", EPERM},
    {"delete_module", EPERM},
    {"create_module", EPERM},   /* pre-2.6 module API; ENOSYS today */
    {"get_kernel_syms", EPERM}, /* pre-2.6 module API */
    {"query_module", EPERM},    /* pre-2.6 module API */

    /* Replacing the running kernel. */
    {"kexec_load", EPERM},
    {"kexec_file_load", EPERM},
    {"reboot", EPERM},

    /* Large, frequently exploited kernel attack surface, not needed to run
     * programs: eBPF, perf counters, userfaultfd (race-widening primitive
     * of many exploits) and io_uring (bypasses per-syscall filtering, and
     * is disabled by Docker/ChromeOS/Android for its bug record). */
    {"bpf", EPERM},
    {"perf_event_open", EPERM},
    {"userfaultfd", EPERM},
    {"io_uring_setup", EPERM},
    {"io_uring_enter", EPERM},
    {"io_uring_register", EPERM},

    /* Kernel keyrings are not namespaced: a sandbox could read or plant
     * keys of the host user. */
    {"keyctl", EPERM},
    {"add_key", EPERM},
    {"request_key", EPERM},

    /* File handles bypass path-based confinement (the "shocker" escape:
     * open_by_handle_at can open any inode of a mounted filesystem). */
    {"open_by_handle_at", EPERM},
    {"name_to_handle_at", EPERM},

    /* The mount table is set up by sbx before exec; the sandbox must not
     * change it, nor its root. */
    {"mount", EPERM},
    {"umount2", EPERM},
    {"pivot_root", EPERM},
    {"chroot", EPERM},
    {"mount_setattr", EPERM},
    {"move_mount", EPERM},
    {"open_tree", EPERM},
    {"fsopen", EPERM},
    {"fsconfig", EPERM},
    {"fsmount", EPERM},
    {"fspick", EPERM},

    /* New namespaces (user namespaces above all) reopen much of the kernel
     * surface the sandbox removed; joining one would leave the sandbox.
     * clone() is filtered by flag in sbx_sc_cond_table. */
    {"unshare", EPERM},
    {"setns", EPERM},
    /* clone3 passes its flags in memory, which seccomp cannot read. ENOSYS
     * (not EPERM) makes glibc and others fall back to clone(), whose flags
     * the filter can check. */
    {"clone3", ENOSYS},

    /* Host-wide state: swap, process accounting, the system clock. */
    {"swapon", EPERM},
    {"swapoff", EPERM},
    {"acct", EPERM},
    {"settimeofday", EPERM},
    {"clock_settime", EPERM},
    {"clock_adjtime", EPERM}, /* also reads; refused like Docker does */
    {"adjtimex", EPERM},      /* also reads; refused like Docker does */

    /* Obsolete or host-only interfaces. */
    {"lookup_dcookie", EPERM}, /* oprofile; removed in Linux 6.8 */
    {"quotactl", EPERM},
    {"quotactl_fd", EPERM},
    {"nfsservctl", EPERM}, /* removed in Linux 3.1 */
    {"uselib", EPERM},     /* a.out loader */
    {"_sysctl", EPERM},    /* removed in Linux 5.5 */
    {"syslog", EPERM},     /* kernel log: leaks kernel addresses */
    {"vhangup", EPERM},    /* hangs up the terminal */

    /* Raw hardware access. */
    {"iopl", EPERM},
    {"ioperm", EPERM},
    {"vm86", EPERM},              /* i386 only */
    {"vm86old", EPERM},           /* i386 only */
    {"pciconfig_read", EPERM},    /* not on x86_64 */
    {"pciconfig_write", EPERM},   /* not on x86_64 */
    {"pciconfig_iobase", EPERM},  /* not on x86_64 */
};

/* ---- argument-conditional refusals ------------------------------------ */

/* Namespace flags of clone(): all in the low 32 bits, which is all the
 * kernel reads of clone's flags. CLONE_NEWTIME (0x80) is not listed: it
 * overlaps CSIGNAL, so clone() cannot request it (only clone3 and unshare
 * can, and both are refused). */
#define SBX_SC_CLONE_NEWNS 0x00020000ull
#define SBX_SC_CLONE_NEWCGROUP 0x02000000ull
#define SBX_SC_CLONE_NEWUTS 0x04000000ull
#define SBX_SC_CLONE_NEWIPC 0x08000000ull
#define SBX_SC_CLONE_NEWUSER 0x10000000ull
#define SBX_SC_CLONE_NEWPID 0x20000000ull
#define SBX_SC_CLONE_NEWNET 0x40000000ull

/* clone(flags, ...) refused when any namespace bit is set: one rule per
 * bit, (flags & bit) == bit. */
#define SBX_SC_CLONE_NS_RULE(bit) \
    {"clone", EPERM, 1, {{0, SBX_SC_MASKED_EQ, (bit), (bit)}}}

#define SBX_SC_AF_PACKET 17ull

SBX_SC_TABLE struct sbx_sc_cond sbx_sc_cond_table[] = {
    /* clone with any CLONE_NEW* flag: see unshare above. */
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWNS),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWCGROUP),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWUTS),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWIPC),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWUSER),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWPID),
    SBX_SC_CLONE_NS_RULE(SBX_SC_CLONE_NEWNET),

    /* Raw packet sockets: sniffing/spoofing on the sandbox's interfaces and
     * a long history of kernel bugs. The domain is an int: compare the low
     * 32 bits only, so high bits cannot smuggle AF_PACKET past the rule. */
    {"socket", EPERM, 1, {{0, SBX_SC_MASKED_EQ, 0xffffffffull, SBX_SC_AF_PACKET}}},
};

/* ---- value allow-lists ------------------------------------------------ */

/* personality(2) values allowed, as in Docker's default profile: PER_LINUX,
 * PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query only).
 * Anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, other execution
 * domains...) weakens the sandboxed program or reaches rarely used code. */
#define SBX_SC_PER_LINUX 0x0000ull
#define SBX_SC_PER_LINUX32 0x0008ull
#define SBX_SC_UNAME26 0x0020000ull
#define SBX_SC_PERSONALITY_QUERY 0xffffffffull

SBX_SC_TABLE struct sbx_sc_only sbx_sc_only_table[] = {
    /* A value with high garbage bits is refused (the kernel reads only 32
     * bits), never let through. */
    {"personality",
     EPERM,
     0,
     5,
     {SBX_SC_PER_LINUX, SBX_SC_PER_LINUX32, SBX_SC_UNAME26, SBX_SC_UNAME26 | SBX_SC_PER_LINUX32,
      SBX_SC_PERSONALITY_QUERY}},
};

#endif
