/* Step backends: where a step's sandbox lives. One interface, four
 * implementations (backend_local.c: the engine in process; backend_sbx.c:
 * a remote sbx server's msb API; backend_e2b.c and backend_daytona.c: those
 * services' HTTP APIs on libcurl). The step runner (step.c) only talks to
 * this interface, so staging, exit codes, logs and run records are the
 * same on every backend.
 *
 * Failure classes decide retries: SBX_STEP_INFRA (create/reach failed, a
 * backend 5xx or connection error, the sandbox vanished) is retried on a
 * fresh sandbox; SBX_STEP_REFUSED (the backend cannot honour the spec, bad
 * credentials, bad input) is never retried. A step's own failure (exit
 * code, timeout, OOM) is not an error of the backend at all: it comes back
 * in sbx_step_exit. */
#ifndef SBX_STEP_BACKEND_H
#define SBX_STEP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include "sbx/engine.h"

enum sbx_step_fail {
    SBX_STEP_REFUSED = 1, /* not retried: the request itself is wrong */
    SBX_STEP_INFRA = 2,   /* retried on a fresh sandbox */
};

/* What a step's sandbox is created with (already validated by step.c). */
typedef struct sbx_step_resources {
    double cpu;           /* vCPUs; default 1 */
    uint64_t memory_mb;   /* default 1024 */
    bool cpu_set;         /* cpu was asked for (false: the step's default; e2b then */
    bool memory_set;      /* runs on its template's size); likewise memory */
    const char *gpu;      /* NULL: none; "all", a count or indices "0,2" */
    const char *image;    /* NULL: the backend's default image */
    char *const *env;     /* "K=V", NULL-terminated; for every command */
    uint64_t timeout_s;   /* the step's timeout (a backend may use it as the sandbox's lifetime) */
} sbx_step_resources;

/* One command's outcome, as the step sees it. */
typedef struct sbx_step_exit {
    int exit_code;        /* 0-255 when it exited */
    int signal;           /* terminating signal, 0 if it exited */
    bool timed_out;       /* the timeout stopped it */
    bool oom_killed;      /* the memory limit stopped it */
    uint64_t cpu_usec;    /* 0 when the backend cannot say */
    uint64_t memory_peak; /* bytes; 0 when the backend cannot say */
} sbx_step_exit;

/* Every function returning int: 0, or -1 with err filled and *fail set to
 * SBX_STEP_REFUSED or SBX_STEP_INFRA. */

/* Output as it arrives: stream 1 stdout, 2 stderr. */
typedef void (*sbx_step_output_fn)(void *ud, int stream, const char *data, size_t len);

typedef struct sbx_step_box sbx_step_box; /* one sandbox of a backend */

typedef struct sbx_step_backend {
    const char *name; /* "local", "sbx", "e2b", "daytona" */
    /* Refuses a spec this backend cannot honour, before anything is
     * created (-1, *fail = SBX_STEP_REFUSED, a message naming the field,
     * the value and what is allowed): e.g. a gpu on a backend without
     * GPUs, a fractional cpu where only whole ones exist. Also checks the
     * backend's configuration (URL and key variables). */
    int (*check)(const sbx_step_resources *res, int *fail, sbx_err *err);
    /* Creates and starts a sandbox. *fail says which class a failure is. */
    int (*create)(const sbx_step_resources *res, sbx_step_box **out, int *fail, sbx_err *err);
    /* The sandbox's id as the backend names it (for logs, records, debug). */
    const char *(*id)(const sbx_step_box *box);
    /* Writes a host file to an absolute guest path (parents created), as
     * the user commands run as; mode as given. */
    int (*upload)(sbx_step_box *box, const char *host_path, const char *guest_path, unsigned mode, int *fail,
                  sbx_err *err);
    /* Reads a guest file into a host file (created or truncated).
     * err->sys_errno ENOENT when the guest file does not exist. */
    int (*download)(sbx_step_box *box, const char *guest_path, const char *host_path, int *fail, sbx_err *err);
    /* Runs argv (no shell) in workdir (NULL: the user's home) with extra
     * env, streaming output to out; the command is stopped in the sandbox
     * after timeout_ms (0: none). 0 with *ex filled (whatever the command's
     * own status), or -1 when the backend failed to run it. */
    int (*exec)(sbx_step_box *box, char *const *argv, char *const *env, const char *workdir, uint64_t timeout_ms,
                sbx_step_output_fn out, void *ud, sbx_step_exit *ex, int *fail, sbx_err *err);
    /* Destroys the sandbox and frees box (also after failures). keep: leave
     * the sandbox running (debug mode) and only free box. */
    int (*destroy)(sbx_step_box *box, bool keep, sbx_err *err);
    /* How a user gets a shell in a kept sandbox, e.g. "sbx exec ID -- sh". */
    void (*shell_hint)(const sbx_step_box *box, char *buf, size_t len);
    /* Optional (NULL: not offered): a box for an existing sandbox, by the
     * id that id() gave, configured from the environment as for create.
     * `sbx exec ID` (exec) and `sbx rm ID` (destroy) use it on a sandbox a
     * debug-mode run kept. err->code SBX_E_NOTFOUND when there is no such
     * sandbox, if the backend can tell now. */
    int (*attach)(const char *id, sbx_step_box **out, int *fail, sbx_err *err);
} sbx_step_backend;

/* For backends: fills err (the message; code, or for 0 the class's usual
 * one: SBX_E_SYSTEM for infra, SBX_E_INVALID for a refusal), clears
 * err->sys_errno, sets *fail = cls and returns -1. */
int sbx_step_fail(int *fail, int cls, sbx_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define sbx_step_refuse(fail, err, ...) sbx_step_fail(fail, SBX_STEP_REFUSED, err, 0, __VA_ARGS__)
#define sbx_step_infra(fail, err, ...) sbx_step_fail(fail, SBX_STEP_INFRA, err, 0, __VA_ARGS__)
/* The step's timeout stopped the command: as the engine reports it. */
void sbx_step_exit_timeout(sbx_step_exit *ex);

extern const sbx_step_backend sbx_step_backend_local;
extern const sbx_step_backend sbx_step_backend_sbx;
extern const sbx_step_backend sbx_step_backend_e2b;
extern const sbx_step_backend sbx_step_backend_daytona;

/* ---- interrupts --------------------------------------------------------------
 * SIGINT, SIGTERM or SIGHUP to the launcher stop the step (runner.c).
 * The first one stops what is in flight: a backend's HTTP exchange
 * (remote_http.c), a local command (its process group gets SIGKILL
 * through sbx_step_interrupt_fd), a wait; the runner then removes the
 * sandbox. Creating and removing a sandbox run through it (must_finish):
 * a sandbox whose id we never learn cannot be removed. A second one stops
 * those too (the sandbox may be left, and the runner says so); a third
 * exits at once. */

/* How a debug-mode launcher forwards a signal to its worker (keeper.h):
 * this real-time signal with the signal's number in si_value. Real-time
 * signals queue; a forwarded SIGINT would merge with the terminal's own. */
#define SBX_STEP_FORWARD_SIGNAL (SIGRTMIN + 2)

/* Installs the handlers (and the pipe behind sbx_step_interrupt_fd).
 * from_pid: when not 0, SIGINT, SIGTERM and SIGHUP are ignored while
 * that process is this one's parent, and the same come forwarded from it
 * as SBX_STEP_FORWARD_SIGNAL (a debug-mode worker: a terminal's ^C
 * reaches it and its launcher, which forwards it too). Called again, it
 * only sets from_pid. */
int sbx_step_interrupt_install(pid_t from_pid, sbx_err *err);
/* Puts the previous handlers back and closes the pipe. */
void sbx_step_interrupt_restore(void);
/* Where a sandbox may be left if this process is forced out (third
 * signal): "" none. Copied for the handler's message. */
void sbx_step_interrupt_note(const char *left);
/* The first signal received, 0 none. */
int sbx_step_interrupt_signal(void);
/* How many were received. */
int sbx_step_interrupt_count(void);
/* Whether work should stop now: after one signal, or for work that must
 * finish (creating or removing a sandbox), after two. */
bool sbx_step_stopping(bool must_finish);
/* For a local command's signal_fd (sbx_exec_spec): reads SIGKILL once
 * per interrupt; -1 when no handlers are installed. */
int sbx_step_interrupt_fd(void);
/* Sleeps ms, less when interrupted: false then. */
bool sbx_step_sleep_ms(unsigned ms);

/* By name ("local", "sbx", "e2b", "daytona"), or NULL. */
const sbx_step_backend *sbx_step_backend_find(const char *name);

#endif
