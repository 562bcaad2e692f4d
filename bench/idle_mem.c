/* Idle memory per live sandbox: creates N sandboxes with the engine (each
 * an init waiting for commands), then reports the host's memory growth per
 * sandbox (kernel objects included) and the PSS of each sandbox's init. */
#include "sbx/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    sbx_sandbox **sbs = calloc((size_t)n, sizeof(*sbs));
    sync();
    sleep(1);
    long before = meminfo_kib("MemAvailable");
    for (int i = 0; i < n; i++) {
        sbx_spec spec = {.memory_mib = 256, .pids = 64};
        if (sbx_sandbox_create(eng, &spec, &sbs[i], &err) < 0) {
            fprintf(stderr, "sandbox %d: %s\n", i, err.msg);
            n = i;
            break;
        }
    }
    sleep(1);
    long after = meminfo_kib("MemAvailable");
    long pss = 0;
    for (int i = 0; i < n; i++)
        pss += pss_kib(sbx_sandbox_pid(sbs[i]));
    printf("sandboxes %d\nhost_kib_per_sandbox %.1f\ninit_pss_kib %.1f\n", n, (double)(before - after) / n,
           (double)pss / n);
    for (int i = 0; i < n; i++)
        sbx_sandbox_destroy(sbs[i]);
    free(sbs);
    sbx_engine_close(eng);
    return 0;
}
