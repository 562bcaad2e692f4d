/* seccomp: loads the prebuilt filter (see seccomp.h and seccomp_policy.h).
 * No libseccomp here: the program was compiled at build time. */
#include "seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_filter.inc" /* build/gen: static const sbx_seccomp_filter[] */

#define SBX_SECCOMP_NINSN (sizeof(sbx_seccomp_filter) / sizeof(sbx_seccomp_filter[0]))
_Static_assert(SBX_SECCOMP_NINSN > 0 && SBX_SECCOMP_NINSN <= BPF_MAXINSNS,
               "seccomp filter length out of range");

int sbx_seccomp_install(void)
{
    /* The kernel copies the program and never writes it: the cast only
     * drops the const its API lacks. */
    struct sock_fprog prog = {
        .len = (unsigned short)SBX_SECCOMP_NINSN,
        .filter = (struct sock_filter *)sbx_seccomp_filter,
    };
    int saved = errno; /* async-signal-safe callers may care */
    int rc = 0;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        rc = -errno;
        /* seccomp(2) is Linux 3.17+; the prctl form is older. */
        if (rc == -ENOSYS)
            rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0 ? 0 : -errno;
    }
    errno = saved;
    return rc;
}

unsigned sbx_seccomp_filter_len(void)
{
    return (unsigned)SBX_SECCOMP_NINSN;
}
