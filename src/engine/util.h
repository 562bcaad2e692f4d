/* Small helpers shared by the engine: errors, files, strings. */
#ifndef SBX_UTIL_H
#define SBX_UTIL_H

#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sbx/engine.h"

#define SBX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Paths sbx composes itself (under the run dir; cgroup dirs and files)
 * are held in arrays of SBX_SHORT_PATH_MAX, not PATH_MAX: a struct with a
 * dozen PATH_MAX arrays spans a dozen pages, and the first touch of each
 * page costs a launch a page fault (~1 us in a VM). With PATH_MAX arrays
 * `sbx run` took ~60 more faults, ~0.07 ms. The bases they are made from
 * (run dir, image dir, cgroup fs, each cgroup mount point) are checked
 * against SBX_BASE_PATH_MAX, which leaves room for what sbx appends. */
#define SBX_BASE_PATH_MAX 256
#define SBX_SHORT_PATH_MAX 512

/* Fill err and return -1, so callers can write `return sbx_fail(...)`. */
int sbx_fail(sbx_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, with code SBX_E_SYSTEM and ": strerror(errno)" appended. */
int sbx_fail_errno(sbx_err *err, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Whole-file helpers; return 0 or -errno. write_file does not create. */
int sbx_write_file(const char *path, const char *data, size_t len);
int sbx_write_str(const char *path, const char *s);
int sbx_read_file(const char *path, char *buf, size_t cap, size_t *len);
/* Reads a file into a malloc'd NUL-terminated buffer; NULL on error (errno set). */
char *sbx_slurp(const char *path, size_t *len);
/* mkdir -p with mode; 0 or -errno. */
int sbx_mkdir_p(const char *path, unsigned mode);
/* snprintf that reports truncation: 0 ok, -ENAMETOOLONG on overflow. */
int sbx_pathf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t sbx_now_usec(void);
/* Strict unsigned decimal parse with range; 0 ok, -1 bad. */
int sbx_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* A timeout in seconds (a client's JSON number) as the engine's
 * timeout_ms, where 0 means none. Converting a double beyond uint64_t is
 * undefined behaviour, and deadlines are uint64_t microseconds that a
 * timeout of 1e16 s would wrap around to an arbitrary time: anything
 * from 100 years on is no timeout. A positive timeout is at least 1 ms,
 * not 0 (none). Not positive, or NaN: 0. */
static inline uint64_t sbx_timeout_ms(double seconds)
{
    if (!(seconds > 0) || seconds >= 100 * 365.25 * 86400)
        return 0;
    double ms = seconds * 1000;
    return ms < 1 ? 1 : (uint64_t)ms;
}
/* A name usable as a sandbox id: [A-Za-z0-9_.-]{1,63}, not starting with '.'. */
int sbx_valid_name(const char *s);
/* Pins the calling thread to the CPU it runs on, so that a task it clones
 * starts there: the scheduler may put a new task on an idle CPU, which in
 * a VM takes ~0.1 ms to wake, or let it preempt work on the other one.
 * saved gets the mask to put back with sbx_unpin. false: not pinned. */
bool sbx_pin_here(cpu_set_t *saved);
void sbx_unpin(const cpu_set_t *saved);

#endif
