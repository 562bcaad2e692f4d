/* sbx: entry point and subcommand dispatch. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SBX_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx <command> [options]\n"
               "\n"
               "commands:\n"
               "  run      run a command in a new sandbox (sbx run --help), or a step on a\n"
               "           backend with staging and a run record (sbx run --step --help)\n"
               "  runs     the step runs' records (sbx runs ls, sbx runs show ID)\n"
               "  exec     run a command in a sandbox a debug-mode step kept (sbx exec ID -- sh)\n"
               "  rm       remove a sandbox a debug-mode step kept\n"
               "  info     show what the engine detected on this host\n"
               "  prune    drop the idle network namespaces kept for reuse (sbx prune --help)\n"
               "  server   run the API server (sbx server --help)\n"
               "  config   check the MSB_* configuration (sbx config check)\n"
               "  mcp      serve MCP over stdio, tools run on a server (sbx mcp --help)\n"
               "  session  run code and commands in server sessions (sbx session --help)\n"
               "  version  print the version\n");
}

int cli_engine_config(sbx_engine_config *out, sbx_err *err)
{
    sbx_engine_config cfg = {
        .run_dir = getenv("SBX_RUN_DIR"),
        .image_dir = getenv("SBX_IMAGE_DIR"),
        .cgroup_name = getenv("SBX_CGROUP_NAME"),
        .gpu_root = getenv("SBX_GPU_ROOT"), /* tests: a fake driver tree */
    };
    const char *keep = getenv("SBX_CGROUP_KEEP_MOUNT");
    cfg.keep_cgroup_mount = keep && *keep && strcmp(keep, "0") != 0;
    const char *base = getenv("SBX_UID_BASE");
    if (base && *base) {
        char *end;
        unsigned long v = strtoul(base, &end, 10);
        if (*end || v == 0 || v > 0xFFFEFFFEul) {
            snprintf(err->msg, sizeof(err->msg), "SBX_UID_BASE '%s' is invalid (allowed: 1 to 4294901758)", base);
            err->code = SBX_E_INVALID;
            return -1;
        }
        cfg.uid_base = (uint32_t)v;
    }
    *out = cfg;
    return 0;
}

int cli_engine_open(sbx_engine **eng, sbx_err *err)
{
    sbx_engine_config cfg;
    *eng = NULL;
    if (cli_engine_config(&cfg, err) < 0)
        return -1;
    return sbx_engine_open(&cfg, eng, err);
}

/* The server lives in its own binary beside this one (it links libraries
 * that would slow every `sbx run` down); hand the command line over. */
static int exec_server(char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        fprintf(stderr, "sbx: cannot find my own binary: %s\n", strerror(errno));
        return SBX_EXIT_OWN_ERROR;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(path, sizeof(path), "%s/sbx-server", self);
    execv(path, argv);
    fprintf(stderr, "sbx: cannot run %s: %s\n", path, strerror(errno));
    return SBX_EXIT_OWN_ERROR;
}

int main(int argc, char **argv)
{
    /* A sandbox's first process, re-executed by a server's engine. */
    if (argc >= 2 && strcmp(argv[1], SBX_CHILD_EXEC_ARG) == 0)
        sbx_sandbox_child_exec(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return SBX_EXIT_OWN_ERROR;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        /* The step runner (backends, staging, records) lives in sbx-server;
         * plain engine runs stay here, on the fast path. */
        if (cli_step_wanted(argc - 1, argv + 1))
            return exec_server(argv);
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "runs") == 0 || strcmp(cmd, "exec") == 0 || strcmp(cmd, "rm") == 0)
        return exec_server(argv);
    if (strcmp(cmd, "server") == 0 || strcmp(cmd, "mcp") == 0 || strcmp(cmd, "config") == 0 ||
        strcmp(cmd, "session") == 0)
        return exec_server(argv);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sbx %s\n", SBX_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sbx: unknown command '%s'\n", cmd);
    usage(stderr);
    return SBX_EXIT_OWN_ERROR;
}
