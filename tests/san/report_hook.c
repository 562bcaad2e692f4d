/* Linked into every binary of a SAN=1 build (Makefile): copies each
 * ASan, LSan or UBSan report to $SBX_SAN_LOG_DIR/<program>.<pid>, where
 * tests/run.sh looks for reports after the run. The report still goes to
 * stderr as well.
 *
 * Why not ASAN_OPTIONS=log_path: a sanitized process that cannot open its
 * log file dies ("ERROR: Can't open file"), and sandbox children run
 * sanitized code (init.c) inside the sandbox's root, where the log dir is
 * not; a warning there failed every command of a non-host image. And gcc
 * links UBSan as a separate libubsan.so that ignores log_path (its
 * __sanitizer_set_report_path binds to libasan's copy). Both runtimes pass
 * everything they print to the weak hook __sanitizer_on_print, which this
 * definition replaces; failing to write here costs nothing.
 *
 * Reports are fatal in these builds (-fno-sanitize-recover=all; LSan's is
 * the last thing a process prints), so everything from the first line
 * that opens one is that report. Warnings are not reports. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void __sanitizer_on_print(const char *str);

static bool opens_report(const char *s)
{
    return strstr(s, "ERROR: ") ||              /* ASan, LSan: "==pid==ERROR: AddressSanitizer: ..." */
           strstr(s, "runtime error:") ||       /* UBSan: "file:line:col: runtime error: ..." */
           strstr(s, "Sanitizer has encountered a fatal error"); /* LSan could not check */
}

void __sanitizer_on_print(const char *str)
{
    static bool in_report;
    if (!in_report && !opens_report(str))
        return;
    in_report = true;
    const char *dir = getenv("SBX_SAN_LOG_DIR");
    if (!dir || !*dir)
        return;
    /* Raw syscalls: the sanitizers intercept the libc calls, and this runs
     * inside their report. */
    char exe[256], path[4096];
    long n = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    const char *base = strrchr(exe, '/');
    snprintf(path, sizeof(path), "%s/%s.%ld", dir, base ? base + 1 : "unknown", (long)syscall(SYS_getpid));
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return; /* e.g. inside a sandbox's root: stderr still has it */
    syscall(SYS_write, fd, str, strlen(str));
    syscall(SYS_close, fd);
}
