/* The step backends by name, and what every backend shares (backend.h). */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int sbx_step_fail(int *fail, int cls, sbx_err *err, int code, const char *fmt, ...)
{
    char m[sizeof(err->msg)]; /* the arguments may point into err->msg */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    memcpy(err->msg, m, sizeof(m));
    err->code = code ? code : cls == SBX_STEP_INFRA ? SBX_E_SYSTEM : SBX_E_INVALID;
    err->sys_errno = 0;
    *fail = cls;
    return -1;
}

void sbx_step_exit_timeout(sbx_step_exit *ex)
{
    ex->timed_out = true;
    ex->signal = SIGKILL;
    ex->exit_code = 128 + SIGKILL;
}

/* ---- interrupts -------------------------------------------------------------- */

static const int int_sigs[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction int_old[3], int_old_fwd;
static bool int_installed;
static volatile sig_atomic_t int_count, int_first;
static volatile pid_t int_from;
static int int_pipe[2] = {-1, -1};
/* The third signal's words, ready before it comes (the handler only writes). */
static char int_left[600];
static volatile sig_atomic_t int_left_len;

static void say_raw(const char *s)
{
    ssize_t w = write(2, s, strlen(s));
    (void)w;
}

static const char *sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* Async-signal-safe only: counts, writes to the pipe and to stderr. */
static void on_interrupt(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    /* A debug-mode worker hears its launcher only (which forwards what it
     * gets), while the launcher lives: a terminal's ^C reaches both. */
    if (sig == SBX_STEP_FORWARD_SIGNAL) {
        sig = si ? si->si_value.sival_int : 0;
        if (sig != SIGINT && sig != SIGTERM && sig != SIGHUP) {
            errno = saved;
            return;
        }
    } else if (int_from && getppid() == int_from) {
        errno = saved;
        return;
    }
    if (!int_first)
        int_first = sig;
    int n = ++int_count;
    if (n == 1) {
        say_raw("\nsbx: ");
        say_raw(sig_name(sig));
        say_raw(": stopping the step and cleaning up (interrupt again to stop waiting for the cleanup)\n");
    } else if (n == 2) {
        say_raw("\nsbx: interrupted again: no longer waiting for the cleanup\n");
    } else {
        say_raw("\nsbx: interrupted a third time: exiting now");
        if (int_left_len > 0) {
            ssize_t w = write(2, int_left, (size_t)int_left_len);
            (void)w;
        }
        say_raw("\n");
        _exit(128 + int_first);
    }
    int k = SIGKILL;
    if (int_pipe[1] >= 0) {
        ssize_t w = write(int_pipe[1], &k, sizeof(k));
        (void)w;
    }
    errno = saved;
}

int sbx_step_interrupt_install(pid_t from_pid, sbx_err *err)
{
    int_from = from_pid;
    if (int_installed)
        return 0;
    int_count = int_first = 0; /* a new run starts uninterrupted */
    if (pipe2(int_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        int_pipe[0] = int_pipe[1] = -1;
        return sbx_fail_errno(err, errno, "cannot set up interrupt handling: pipe");
    }
    struct sigaction sa = {.sa_sigaction = on_interrupt, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(int_sigs) / sizeof(int_sigs[0]); i++)
        sigaddset(&sa.sa_mask, int_sigs[i]); /* one handler at a time: the count stays exact */
    sigaddset(&sa.sa_mask, SBX_STEP_FORWARD_SIGNAL);
    for (size_t i = 0; i < sizeof(int_sigs) / sizeof(int_sigs[0]); i++)
        sigaction(int_sigs[i], &sa, &int_old[i]);
    sigaction(SBX_STEP_FORWARD_SIGNAL, &sa, &int_old_fwd);
    int_installed = true;
    return 0;
}

void sbx_step_interrupt_restore(void)
{
    if (!int_installed)
        return;
    for (size_t i = 0; i < sizeof(int_sigs) / sizeof(int_sigs[0]); i++)
        sigaction(int_sigs[i], &int_old[i], NULL);
    /* Ignored, not the default (which ends the process): a launcher may
     * still forward one until the worker's code reaches it. */
    if (int_from)
        signal(SBX_STEP_FORWARD_SIGNAL, SIG_IGN);
    else
        sigaction(SBX_STEP_FORWARD_SIGNAL, &int_old_fwd, NULL);
    int_installed = false;
    int_from = 0;
    for (int i = 0; i < 2; i++) {
        if (int_pipe[i] >= 0)
            close(int_pipe[i]);
        int_pipe[i] = -1;
    }
}

void sbx_step_interrupt_note(const char *left)
{
    int_left_len = 0; /* the handler reads none while the text changes */
    if (!left || !*left)
        return;
    int n = snprintf(int_left, sizeof(int_left), "; %s", left);
    int_left_len = n < 0 ? 0 : n < (int)sizeof(int_left) ? n : (int)sizeof(int_left) - 1;
}

int sbx_step_interrupt_signal(void)
{
    return int_first;
}

int sbx_step_interrupt_count(void)
{
    return int_count;
}

bool sbx_step_stopping(bool must_finish)
{
    return int_count >= (must_finish ? 2 : 1);
}

int sbx_step_interrupt_fd(void)
{
    return int_pipe[0];
}

bool sbx_step_sleep_ms(unsigned ms)
{
    /* In slices: a signal with SA_RESTART does not end nanosleep early. */
    while (ms) {
        if (sbx_step_stopping(false))
            return false;
        unsigned s = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)s * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        ms -= s;
    }
    return !sbx_step_stopping(false);
}

const sbx_step_backend *sbx_step_backend_find(const char *name)
{
    static const sbx_step_backend *const all[] = {&sbx_step_backend_local, &sbx_step_backend_sbx,
                                                  &sbx_step_backend_e2b, &sbx_step_backend_daytona};
    for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}
