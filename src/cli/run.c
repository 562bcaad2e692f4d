/* sbx run: one command in a fresh sandbox, which is destroyed after it. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MEMORY_MIB 1024
#define DEFAULT_PIDS 1024
#define MAX_ENV 4096

static const char run_help[] =
    "usage: sbx run [options] [--] CMD [ARG...]\n"
    "\n"
    "Runs CMD in a new sandbox and removes the sandbox afterwards. CMD's exit\n"
    "code is passed through; 124 means the timeout killed it, 137 that the\n"
    "memory limit did (or SIGKILL), 125 an error of sbx itself, 126/127 that\n"
    "CMD could not be run / was not found.\n"
    "\n"
    "options:\n"
    "  --cpu N              cpu limit in cores, fractions allowed (CFS quota); default: none\n"
    "  --memory MiB         memory limit, hard, no swap; default: 1024 (0 = none)\n"
    "  --pids N             process limit; default: 1024 (0 = none)\n"
    "  --disk MiB           size of the writable layer; default: 1024\n"
    "  --timeout S          wall-clock limit in seconds (fractions allowed); kills the\n"
    "                       whole sandbox, detached processes too; default: none\n"
    "  --image NAME|DIR     root filesystem: 'host' (default: the host's /usr, /etc...\n"
    "                       read-only), an image name under $SBX_IMAGE_DIR, or a directory\n"
    "  -e, --env K=V        set an environment variable (repeatable)\n"
    "  -v, --volume HOST:GUEST[:ro]\n"
    "                       bind a host path into the sandbox (repeatable)\n"
    "  -w, --workdir DIR    working directory inside (created if missing); default: home\n"
    "  -u, --user NAME      'user' (uid 1000, default), 'root', or a uid\n"
    "      --hostname NAME  hostname inside; default: sbx\n"
    "      --gpu SPEC       NVIDIA GPUs: 'all' (shared with other --gpu all sandboxes), a\n"
    "                       count such as 1, or host indices such as 0,2 or device=1 (held\n"
    "                       exclusively while the sandbox runs); default: no GPU at all.\n"
    "                       Inside, CUDA numbers the granted GPUs from 0 (docs/gpu.md)\n"
    "      --network MODE   'none' (default: only loopback, nothing leaves the sandbox)\n"
    "  -h, --help           this text\n"
    "\n"
    "environment: SBX_RUN_DIR (/run/sbx), SBX_IMAGE_DIR (/var/lib/sbx/images),\n"
    "SBX_CGROUP_NAME (sbx), SBX_UID_BASE (1000000000: host uid of root inside)\n"
    "\n"
    "A step (backends, staging, outputs, retries, run records) is run when a step\n"
    "option is given: see sbx run --step --help.\n";

static int sig_pipe[2] = {-1, -1};

static void forward_signal(int sig)
{
    int saved = errno;
    ssize_t n = write(sig_pipe[1], &sig, sizeof(sig));
    (void)n;
    errno = saved;
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sbx run: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see sbx run --help)\n");
    return SBX_EXIT_OWN_ERROR;
}

static int parse_mib(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return bad("%s '%s' is not a whole number of MiB", flag, v);
    *out = x;
    return 0;
}

int cmd_run(int argc, char **argv)
{
    enum { O_CPU = 256, O_MEMORY, O_PIDS, O_DISK, O_TIMEOUT, O_IMAGE, O_NETWORK, O_HOSTNAME, O_GPU };
    static const struct option opts[] = {
        {"cpu", required_argument, 0, O_CPU},         {"memory", required_argument, 0, O_MEMORY},
        {"pids", required_argument, 0, O_PIDS},       {"disk", required_argument, 0, O_DISK},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"image", required_argument, 0, O_IMAGE},
        {"env", required_argument, 0, 'e'},           {"volume", required_argument, 0, 'v'},
        {"workdir", required_argument, 0, 'w'},       {"user", required_argument, 0, 'u'},
        {"network", required_argument, 0, O_NETWORK}, {"hostname", required_argument, 0, O_HOSTNAME},
        {"gpu", required_argument, 0, O_GPU},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0},
    };
    sbx_spec spec = {.memory_mib = DEFAULT_MEMORY_MIB, .pids = DEFAULT_PIDS};
    static sbx_volume vols[64];
    static char *envs[MAX_ENV + 1];
    size_t nvol = 0, nenv = 0;
    double timeout_s = 0;
    const char *workdir = NULL, *user = NULL;
    int rc;

    opterr = 0;
    optind = 1;
    int c;
    /* '+': stop at the first non-option, which starts the command. */
    while ((c = getopt_long(argc, argv, "+e:v:w:u:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case O_CPU:
            errno = 0;
            spec.cpus = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(spec.cpus) || spec.cpus < 0)
                return bad("--cpu '%s' is not a number of cores (e.g. 0.5, 2)%s", optarg, "");
            break;
        case O_MEMORY:
            if ((rc = parse_mib("--memory", optarg, &spec.memory_mib)))
                return rc;
            break;
        case O_PIDS:
            if ((rc = parse_mib("--pids", optarg, &spec.pids)))
                return bad("--pids '%s' is not a whole number%s", optarg, "");
            break;
        case O_DISK:
            if ((rc = parse_mib("--disk", optarg, &spec.disk_mib)))
                return rc;
            if (spec.disk_mib == 0)
                return bad("--disk '%s' must be at least 1 MiB%s", optarg, "");
            break;
        case O_TIMEOUT:
            errno = 0;
            timeout_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(timeout_s) || timeout_s < 0 || timeout_s > 31536000)
                return bad("--timeout '%s' is not a number of seconds (0 to 31536000)%s", optarg, "");
            break;
        case O_IMAGE:
            spec.image = optarg;
            break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return bad("--env '%s' must be KEY=VALUE%s", optarg, "");
            if (nenv >= MAX_ENV)
                return bad("too many --env (at most %s)%s", "4096", "");
            envs[nenv++] = optarg;
            break;
        case 'v': {
            if (nvol >= 64)
                return bad("too many --volume (at most %s)%s", "64", "");
            sbx_err e = {0};
            if (sbx_volume_parse(optarg, &vols[nvol], &e) < 0)
                return bad("%s%s", e.msg, "");
            nvol++;
            break;
        }
        case 'w':
            workdir = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case O_NETWORK:
            if (strcmp(optarg, "none") != 0)
                return bad("--network '%s' is not supported (allowed: none)%s", optarg, "");
            break;
        case O_GPU: {
            sbx_err e = {0};
            if (sbx_gpu_spec_check(optarg, &e) < 0 || !*optarg)
                return bad("--%s%s", e.msg[0] ? e.msg : "gpu '' is empty (leave --gpu out for no GPU)", "");
            spec.gpu = optarg;
            break;
        }
        case O_HOSTNAME:
            spec.hostname = optarg;
            break;
        case 'h':
            fputs(run_help, stdout);
            return 0;
        default:
            if (optopt >= 256 || optopt == 0)
                return bad("unknown option '%s'%s", argv[optind - 1], "");
            if (strchr("evwu", optopt))
                return bad("option '-%c' needs a value%s", (char[]){(char)optopt, 0}, "");
            return bad("unknown option '-%s'%s", (char[]){(char)optopt, 0}, "");
        }
    }
    if (optind >= argc)
        return bad("no command given%s%s", "", "");
    spec.volumes = vols;
    spec.n_volumes = nvol;
    /* One command, then the sandbox goes: no wait for init's ready report
     * (the exec request is queued meanwhile), and the kernel's teardown
     * finishes after our exit status is known (see engine.h). */
    spec.one_shot = true;

    sbx_engine *eng = NULL;
    sbx_sandbox *sb = NULL;
    sbx_err err = {0};
    sbx_engine_config cfg;
    if (cli_engine_config(&cfg, &err) < 0 || sbx_engine_open_run(&cfg, &spec, &eng, &sb, &err) < 0) {
        fprintf(stderr, "sbx: %s\n", err.msg);
        sbx_engine_close(eng);
        return SBX_EXIT_OWN_ERROR;
    }

    /* Signals to sbx go to the command's process group inside. */
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
        struct sigaction sa = {.sa_handler = forward_signal};
        sigemptyset(&sa.sa_mask);
        int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            sigaction(sigs[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);

    envs[nenv] = NULL;
    sbx_exec_spec xs = {
        .argv = argv + optind,
        .env = envs,
        .workdir = workdir,
        .user = user,
        .stdin_fd = 0,
        .stdout_fd = 1,
        .stderr_fd = 2,
        .timeout_ms = (uint64_t)llround(timeout_s * 1000),
        .kill_on_timeout = true,
        .signal_fd = sig_pipe[0],
    };
    sbx_exec_result res;
    bool have_res = sbx_sandbox_exec(sb, &xs, &res, &err) == 0;
    if (!have_res) {
        fprintf(stderr, "sbx: %s\n", err.msg);
        rc = SBX_EXIT_OWN_ERROR;
    } else if (res.timed_out) {
        fprintf(stderr, "sbx: timed out after %gs: the sandbox and everything in it was killed\n", timeout_s);
        rc = SBX_EXIT_TIMEOUT;
    } else if (res.oom_killed && res.signal == SIGKILL) {
        fprintf(stderr, "sbx: killed by the kernel's OOM killer: the memory limit (%llu MiB) was reached\n",
                (unsigned long long)spec.memory_mib);
        rc = 137;
    } else if (res.exec_errno) {
        fprintf(stderr, "sbx: %s\n", res.exec_error);
        rc = res.exit_code;
    } else {
        rc = res.exit_code;
    }
    if (have_res) /* a command's own exit 125 has a result too */
        sbx_exec_result_free(&res);
    sbx_sandbox_destroy(sb);
    sbx_engine_close(eng);
    return rc;
}
