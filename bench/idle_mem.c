/* Engine-level numbers: the latency of a command in a pre-created (live)
 * sandbox, and idle memory per live sandbox: creates N sandboxes (each an
 * init waiting for commands), then reports the host's memory growth per
 * sandbox (kernel objects included) and the PSS of each sandbox's init. */
#include "sbx/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of `argv` run in one live sandbox, in ms. */
static double exec_median(sbx_sandbox *sb, char **argv, int runs)
{
    double *t = calloc((size_t)runs, sizeof(double));
    sbx_err err;
    for (int i = 0; i < runs; i++) {
        sbx_exec_spec xs = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .signal_fd = -1};
        sbx_exec_result r;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (sbx_sandbox_exec(sb, &xs, &r, &err) < 0) {
            fprintf(stderr, "exec: %s\n", err.msg);
            exit(1);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        sbx_exec_result_free(&r);
        t[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    }
    qsort(t, (size_t)runs, sizeof(double), cmp_double);
    double m = t[runs / 2];
    free(t);
    return m;
}

static long meminfo_kib(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

/* Free memory once it holds still: the kernel frees earlier sandboxes'
 * namespaces in the background (a network namespace's cleanup is deferred),
 * which would otherwise land inside the measured window. MemFree, not
 * MemAvailable: the latter's estimate of reclaimable caches moves on its own. */
static long settled_free_kib(void)
{
    long a = meminfo_kib("MemFree"), b = a;
    for (int i = 0; i < 50; i++) {
        usleep(200000);
        b = meminfo_kib("MemFree");
        if (labs(b - a) < 256)
            break;
        a = b;
    }
    return b;
}

static long pss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "Pss:", 4) == 0)
            v = atol(line + 4);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 50;
    sbx_engine *eng;
    sbx_err err;
    if (sbx_engine_open(NULL, &eng, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    sbx_sandbox *live;
    sbx_spec ls = {.memory_mib = 256, .pids = 64};
    if (sbx_sandbox_create(eng, &ls, &live, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *tru[] = {"/bin/true", NULL}, *py[] = {"/usr/bin/python3", "-c", "pass", NULL};
    printf("exec_true_ms %.3f\n", exec_median(live, tru, 300));
    printf("exec_python_ms %.3f\n", exec_median(live, py, 60));
    sbx_sandbox_destroy(live);

    /* Free memory also moves on its own in a VM (the host's reclaim of
     * cold pages, page reporting): the median of a few rounds. */
    enum { ROUNDS = 5 };
    double per[ROUNDS], pss_avg = 0;
    sbx_sandbox **sbs = calloc((size_t)n, sizeof(*sbs));
    for (int round = 0; round < ROUNDS; round++) {
        sync();
        long before = settled_free_kib();
        for (int i = 0; i < n; i++) {
            sbx_spec spec = {.memory_mib = 256, .pids = 64};
            if (sbx_sandbox_create(eng, &spec, &sbs[i], &err) < 0) {
                fprintf(stderr, "sandbox %d: %s\n", i, err.msg);
                n = i;
                break;
            }
        }
        long after = settled_free_kib();
        long pss = 0;
        for (int i = 0; i < n; i++)
            pss += pss_kib(sbx_sandbox_pid(sbs[i]));
        per[round] = n ? (double)(before - after) / n : 0;
        pss_avg = n ? (double)pss / n : 0;
        for (int i = 0; i < n; i++)
            sbx_sandbox_destroy(sbs[i]);
    }
    for (int i = 1; i < ROUNDS; i++)
        for (int j = i; j > 0 && per[j] < per[j - 1]; j--) {
            double t = per[j];
            per[j] = per[j - 1];
            per[j - 1] = t;
        }
    printf("sandboxes %d\nhost_kib_per_sandbox %.1f\ninit_pss_kib %.1f\n", n, per[ROUNDS / 2], pss_avg);
    free(sbs);
    sbx_engine_close(eng);
    return 0;
}
