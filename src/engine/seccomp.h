/* seccomp: the syscall filter every sandboxed command runs under.
 *
 * The policy (which syscalls are refused, and how) lives in
 * seccomp_policy.h. At build time tools/seccomp_gen.c compiles it with
 * libseccomp into a BPF program (build/gen/seccomp_filter.inc), so loading
 * it at launch is one syscall instead of a compile per command.
 */
#ifndef SBX_SECCOMP_H
#define SBX_SECCOMP_H

/* Installs the filter on the calling thread. Requires no_new_privs (or
 * CAP_SYS_ADMIN). Async-signal-safe; returns 0 or -errno. */
int sbx_seccomp_install(void);
/* Number of BPF instructions in the built-in filter (for sbx info/tests). */
unsigned sbx_seccomp_filter_len(void);

#endif
