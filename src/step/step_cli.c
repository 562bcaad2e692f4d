/* `sbx run` as the step runner, `sbx runs`, `sbx exec`, `sbx rm`
 * (step_cli.h). */
#include "step_cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "keeper.h"
#include "records.h"
#include "runner.h"
#include "settings.h"
#include "spec.h"
#include "util.h"

#define EXIT_USAGE SBX_STEP_EXIT_ERROR

static const char run_help[] =
    "usage: sbx run [step options] [--] CMD [ARG...]\n"
    "       sbx run -f STEP.json [step options] [-- CMD [ARG...]]\n"
    "\n"
    "Runs a step: creates a sandbox on a backend, stages the code directory (as a\n"
    "code package), the uploads and the generated script, runs CMD in the code\n"
    "directory with its output streamed here (each line prefixed), collects the\n"
    "outputs into the artifacts directory and removes the sandbox. Every run\n"
    "writes a record (sbx runs ls). Infrastructure failures are retried on a\n"
    "fresh sandbox (METAFLOW_SANDBOX_MAX_INFRA_RETRIES, default 1); the step's own\n"
    "failures never are.\n"
    "\n"
    "Exit status: CMD's; 124 timeout, 137 OOM kill, 125 an error of sbx or of the\n"
    "infrastructure (after the retries).\n"
    "\n"
    "step options (a step file has the same fields; options given here win):\n"
    "  --backend NAME      local (default: the engine here), sbx (MSB_SERVER_URL),\n"
    "                      e2b, daytona; default METAFLOW_SANDBOX_BACKEND\n"
    "  -f, --file FILE     a JSON step file (docs/api.md, examples/pipeline)\n"
    "  --cpu N             vCPUs (default 1)\n"
    "  --memory MB         memory limit (default 1024)\n"
    "  --gpu SPEC          GPUs: all, a count, or indices 0,2 (default none)\n"
    "  --image NAME        image (default: the backend's)\n"
    "  --timeout S         the step's timeout in seconds (default 600)\n"
    "  -e, --env K=V       an environment variable (repeatable)\n"
    "  --upload SRC[:DST]  stage a host file (into the code directory, or to DST)\n"
    "  --output PATH       collect this file after the step (repeatable)\n"
    "  --artifacts DIR     where outputs land (default ./artifacts)\n"
    "  --code-dir DIR      the directory packaged as code (default: the current\n"
    "                      one, or the step file's)\n"
    "  --no-code           stage no code package\n"
    "  --ignore PATTERN    leave matching files out of the code package (repeatable)\n"
    "  --environment FILE  a conda environment file in the code directory: stages\n"
    "                      micromamba (METAFLOW_SANDBOX_STAGE_MICROMAMBA)\n"
    "  --name NAME         the step's name (output prefix, records)\n"
    "  --prefix TEXT       output line prefix (default \"[NAME] \"; '' for none)\n"
    "  -q, --quiet         no summary line when the step succeeds\n"
    "\n"
    "Plain `sbx run` without any of --backend, -f, --upload, --output, --artifacts,\n"
    "--name, --code-dir, --no-code, --environment, --ignore, --prefix, --step\n"
    "and without METAFLOW_SANDBOX_BACKEND, METAFLOW_SANDBOX_UPLOADS or\n"
    "METAFLOW_SANDBOX_DEBUG set is the engine's fast path (sbx run --help).\n";

static int usage_error(const char *cmd, const char *msg, const char *arg)
{
    fprintf(stderr, "sbx %s: %s%s\n(see sbx %s --help)\n", cmd, msg, arg ? arg : "", cmd);
    return EXIT_USAGE;
}

static int fail_msg(const char *cmd, const sbx_err *e)
{
    fprintf(stderr, "sbx %s: %s\n", cmd, e->msg);
    return EXIT_USAGE;
}

/* ---- sbx run ------------------------------------------------------------------ */

/* A relative path that cannot be made absolute: the current directory is
 * gone (or out of memory). */
static int cwd_failed(const char *what, sbx_err *err)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return sbx_fail_errno(err, errno, "%s: cannot resolve against the current directory (give an absolute path)",
                              what);
    return sbx_fail(err, SBX_E_SYSTEM, "%s: out of memory", what);
}

enum {
    O_BACKEND = 256, O_CPU, O_MEMORY, O_GPU, O_IMAGE, O_TIMEOUT, O_UPLOAD, O_OUTPUT, O_ARTIFACTS, O_CODE_DIR,
    O_NO_CODE, O_IGNORE, O_ENVIRONMENT, O_NAME, O_PREFIX, O_STEP, O_ENGINE_ONLY,
};

static const struct option run_opts[] = {
    {"backend", required_argument, 0, O_BACKEND},   {"file", required_argument, 0, 'f'},
    {"cpu", required_argument, 0, O_CPU},           {"memory", required_argument, 0, O_MEMORY},
    {"gpu", required_argument, 0, O_GPU},           {"image", required_argument, 0, O_IMAGE},
    {"timeout", required_argument, 0, O_TIMEOUT},   {"env", required_argument, 0, 'e'},
    {"upload", required_argument, 0, O_UPLOAD},     {"output", required_argument, 0, O_OUTPUT},
    {"artifacts", required_argument, 0, O_ARTIFACTS}, {"code-dir", required_argument, 0, O_CODE_DIR},
    {"no-code", no_argument, 0, O_NO_CODE},         {"ignore", required_argument, 0, O_IGNORE},
    {"environment", required_argument, 0, O_ENVIRONMENT}, {"name", required_argument, 0, O_NAME},
    {"prefix", required_argument, 0, O_PREFIX},     {"quiet", no_argument, 0, 'q'},
    {"step", no_argument, 0, O_STEP},               {"help", no_argument, 0, 'h'},
    /* the engine's own: a step has no use for them (see below) */
    {"pids", required_argument, 0, O_ENGINE_ONLY},  {"disk", required_argument, 0, O_ENGINE_ONLY},
    {"volume", required_argument, 0, 'v'},          {"workdir", required_argument, 0, 'w'},
    {"user", required_argument, 0, 'u'},            {"hostname", required_argument, 0, O_ENGINE_ONLY},
    {"network", required_argument, 0, O_ENGINE_ONLY}, {0, 0, 0, 0},
};
static const char run_short[] = "+f:e:qhv:w:u:";

static int run_main(int argc, char **argv)
{
    sbx_step_spec spec = {0};
    sbx_step_settings set;
    sbx_err err = {0};
    sbx_step_run_opts ro = {0};
    int c, rc = EXIT_USAGE;

    /* First the step file, so that the flags, wherever they stand, win. */
    opterr = 0;
    optind = 1;
    const char *file = NULL;
    while ((c = getopt_long(argc, argv, run_short, run_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(run_help, stdout);
            return 0;
        }
        if (c == 'f')
            file = optarg;
        if (c == '?' || c == ':') {
            /* optopt names a known option that lacks its value (a long
             * one's val is >= 256); 0 or another letter: unknown. */
            if (optopt >= 256 || (optopt > 0 && strchr("fevwu", optopt)))
                return usage_error("run", "option needs a value: ", argv[optind - 1]);
            return usage_error("run", "unknown option ", argv[optind - 1]);
        }
    }
    if (sbx_step_settings_load(&set, &err) < 0)
        return fail_msg("run", &err);
    if (file && sbx_step_spec_load(file, &spec, &err) < 0)
        goto bad;

    optind = 1;
    while ((c = getopt_long(argc, argv, run_short, run_opts, NULL)) != -1) {
        int r = 0;
        switch (c) {
        case 'f': break;
        case O_BACKEND: r = sbx_step_spec_set_str(&spec.backend, optarg, &err); break;
        case O_CPU: r = sbx_step_parse_cpu("--cpu", optarg, &spec.cpu, &err); break;
        case O_MEMORY: r = sbx_step_parse_memory("--memory", optarg, &spec.memory_mb, &err); break;
        case O_GPU: r = sbx_step_spec_set_str(&spec.gpu, *optarg && strcmp(optarg, "none") ? optarg : NULL, &err); break;
        case O_IMAGE: r = sbx_step_spec_set_str(&spec.image, optarg, &err); break;
        case O_TIMEOUT: r = sbx_step_parse_timeout("--timeout", optarg, &spec.timeout_s, &err); break;
        case 'e': r = sbx_step_spec_add_env(&spec, optarg, &err); break;
        case O_UPLOAD: {
            /* SRC[:DST]; the source is a host path from the current directory */
            char *copy = strdup(optarg), *colon = copy ? strchr(copy, ':') : NULL;
            if (colon)
                *colon = '\0';
            char *abs = copy ? sbx_step_abs_path(NULL, copy) : NULL;
            r = abs ? sbx_step_spec_add_upload(&spec, abs, colon ? colon + 1 : NULL, &err)
                    : sbx_fail(&err, SBX_E_SYSTEM, "out of memory");
            free(abs);
            free(copy);
            break;
        }
        case O_OUTPUT: r = sbx_step_spec_add_output(&spec, optarg, &err); break;
        case O_ARTIFACTS: {
            char *abs = sbx_step_abs_path(NULL, optarg);
            if (!abs) {
                r = cwd_failed("--artifacts", &err);
                break;
            }
            free(spec.artifacts_dir);
            spec.artifacts_dir = abs;
            break;
        }
        case O_CODE_DIR: {
            char *abs = sbx_step_abs_path(NULL, optarg);
            if (!abs) {
                r = cwd_failed("--code-dir", &err);
                break;
            }
            free(spec.code_dir);
            spec.code_dir = abs;
            spec.code_dir_set = true;
            break;
        }
        case O_NO_CODE:
            free(spec.code_dir);
            spec.code_dir = NULL;
            spec.code_dir_set = true;
            break;
        case O_IGNORE: {
            char **nv = realloc(spec.ignore, (spec.n_ignore + 2) * sizeof(char *));
            if (nv)
                spec.ignore = nv;
            if (!nv || !(nv[spec.n_ignore] = strdup(optarg))) {
                r = sbx_fail(&err, SBX_E_SYSTEM, "out of memory");
                break;
            }
            nv[++spec.n_ignore] = NULL;
            break;
        }
        case O_ENVIRONMENT:
            r = sbx_step_check_guest_path("--environment", optarg, &err) < 0
                    ? -1
                    : sbx_step_spec_set_str(&spec.environment, optarg, &err);
            break;
        case O_NAME:
            r = sbx_step_check_name("--name", optarg, &err) < 0 ? -1 : sbx_step_spec_set_str(&spec.name, optarg, &err);
            break;
        case O_PREFIX: ro.prefix = optarg; break;
        case 'q': ro.quiet = true; break;
        case O_STEP: break;
        case 'v':
            r = sbx_fail(&err, SBX_E_INVALID,
                         "--volume is not a step option: a step's files are staged, not mounted (use --upload, or "
                         "the code directory)");
            break;
        case 'w':
            r = sbx_fail(&err, SBX_E_INVALID,
                         "--workdir is not a step option: a step runs in its code directory (" SBX_STEP_GUEST_CODE ")");
            break;
        case 'u':
            r = sbx_fail(&err, SBX_E_INVALID, "--user is not a step option: a step runs as the backend's user");
            break;
        case O_ENGINE_ONLY:
            r = sbx_fail(&err, SBX_E_INVALID,
                         "%s is an engine option of plain `sbx run`, not a step option (step options: sbx run --step "
                         "--help)",
                         argv[optind - 1]);
            break;
        }
        if (r < 0)
            goto bad;
    }
    if (optind < argc && sbx_step_spec_set_command(&spec, argv + optind, (size_t)(argc - optind), &err) < 0)
        goto bad;
    if (!spec.code_dir_set && !(spec.code_dir = sbx_step_abs_path(NULL, "."))) {
        cwd_failed("the code directory (the current one)", &err);
        goto bad;
    }
    spec.code_dir_set = true;
    /* A backend that comes from the variable is named with it. */
    if (!spec.backend && !sbx_step_backend_find(set.backend)) {
        sbx_fail(&err, SBX_E_INVALID, "METAFLOW_SANDBOX_BACKEND '%.40s' is not a backend (allowed: local, sbx, e2b, daytona)",
                 set.backend);
        goto bad;
    }
    if (set.uploads_json &&
        sbx_step_spec_add_uploads_json(&spec, set.uploads_json, "METAFLOW_SANDBOX_UPLOADS", NULL, &err) < 0)
        goto bad;
    if (sbx_step_spec_finish(&spec, set.backend, &err) < 0)
        goto bad;
    rc = sbx_step_run(&spec, &set, &ro);
    sbx_step_spec_free(&spec);
    sbx_step_settings_free(&set);
    return rc;
bad:
    rc = fail_msg("run", &err);
    sbx_step_spec_free(&spec);
    sbx_step_settings_free(&set);
    return rc;
}

/* ---- sbx runs ---------------------------------------------------------------- */

static const char runs_help[] = "usage: sbx runs ls [--json]\n"
                                "       sbx runs show ID\n"
                                "\n"
                                "The step runs' records in $SBX_RUNS_DIR (default ~/.sbx/runs), newest first.\n"
                                "A run whose launcher is gone without finishing it reads as lost.\n";

static const char *str_or(json_t *o, const char *k, const char *def)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : def;
}

static int runs_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(runs_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    sbx_step_records st;
    sbx_err err = {0};
    if (sbx_step_records_open(&st, &err) < 0)
        return fail_msg("runs", &err);
    if (strcmp(argv[1], "ls") == 0) {
        bool json = argc == 3 && strcmp(argv[2], "--json") == 0;
        if (argc > 3 || (argc == 3 && !json))
            return usage_error("runs", "unknown argument ", argv[2]);
        json_t *all = sbx_step_record_list(&st, &err);
        if (!all)
            return fail_msg("runs", &err);
        if (json) {
            char *t = json_dumps(all, JSON_INDENT(2));
            puts(t ? t : "[]");
            free(t);
        } else {
            printf("%-23s %-16s %-8s %-11s %-5s %-8s %s\n", "ID", "NAME", "BACKEND", "STATUS", "EXIT", "ATTEMPTS",
                   "CREATED");
            size_t i;
            json_t *r;
            json_array_foreach(all, i, r) {
                json_t *ex = json_object_get(r, "exit_code");
                char exs[16] = "-";
                if (json_is_integer(ex))
                    snprintf(exs, sizeof(exs), "%lld", (long long)json_integer_value(ex));
                printf("%-23s %-16s %-8s %-11s %-5s %-8zu %s\n", str_or(r, "id", "?"), str_or(r, "name", "?"),
                       str_or(r, "backend", "?"), str_or(r, "status", "?"), exs,
                       json_array_size(json_object_get(r, "attempts")), str_or(r, "created_at", "?"));
            }
        }
        json_decref(all);
        return 0;
    }
    if (strcmp(argv[1], "show") == 0) {
        if (argc != 3)
            return usage_error("runs", "show takes one run id", NULL);
        json_t *r = sbx_step_record_read(&st, argv[2], &err);
        if (!r)
            return fail_msg("runs", &err);
        char *t = json_dumps(r, JSON_INDENT(2));
        puts(t ? t : "{}");
        free(t);
        json_decref(r);
        return 0;
    }
    return usage_error("runs", "unknown subcommand ", argv[1]);
}

/* ---- sbx exec / sbx rm ------------------------------------------------------- */

static const char exec_help[] =
    "usage: sbx exec ID [-u USER] [-w DIR] -- CMD [ARG...]\n"
    "       sbx rm ID\n"
    "\n"
    "A sandbox kept by a step in debug mode (METAFLOW_SANDBOX_DEBUG): `exec` runs\n"
    "CMD in it, `rm` removes it. On the local backend this terminal's stdin,\n"
    "stdout and stderr are the command's, so `sbx exec ID -- sh` is a shell; on\n"
    "a remote backend (found from the run's record, configured by the same\n"
    "variables as the run; sbx without a record) commands get no stdin.\n"
    "  -u USER   user, root or a uid (local; default: the step's user)\n"
    "  -w DIR    working directory (default: the step's code directory)\n";

/* The backend of the run that kept sandbox id (newest first), or whose
 * attempt ran in it (a lost run's sandbox may remain); sbx when no record
 * names it, the server at MSB_SERVER_URL being the only place left to
 * look. */
static const sbx_step_backend *kept_backend(const char *id)
{
    sbx_step_records st;
    sbx_err e = {0};
    const char *name = "sbx";
    json_t *all = sbx_step_records_open(&st, &e) == 0 ? sbx_step_record_list(&st, &e) : NULL;
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r) {
        const char *sb = json_string_value(json_object_get(json_object_get(r, "debug"), "sandbox"));
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(r, "attempts"), k, a) {
            const char *asb = json_string_value(json_object_get(a, "sandbox"));
            if (!(sb && strcmp(sb, id) == 0) && asb && strcmp(asb, id) == 0)
                sb = asb;
        }
        if (sb && strcmp(sb, id) == 0) {
            const char *b = json_string_value(json_object_get(r, "backend"));
            name = b ? b : name;
            break;
        }
    }
    const sbx_step_backend *be = sbx_step_backend_find(name);
    json_decref(all);
    return be;
}

static int attach(const char *cmd, const char *id, const sbx_step_backend **be, sbx_step_box **box)
{
    int fail = 0;
    sbx_err e = {0};
    *be = kept_backend(id);
    if (!*be || !(*be)->attach) {
        fprintf(stderr, "sbx %s: no local keeper holds %s, and its backend %s cannot be reached again from sbx "
                        "(use the way the run printed)\n",
                cmd, id, *be ? (*be)->name : "?");
        return -1;
    }
    if ((*be)->attach(id, box, &fail, &e) < 0) {
        fprintf(stderr, "sbx %s: %s\n", cmd, e.msg);
        return -1;
    }
    return 0;
}

static void to_stdio(void *ud, int which, const char *data, size_t len)
{
    (void)ud;
    fwrite(data, 1, len, which == 2 ? stderr : stdout);
    fflush(which == 2 ? stderr : stdout);
}

static int exec_main(int argc, char **argv)
{
    const char *user = NULL, *workdir = NULL;
    int c;
    opterr = 0;
    optind = 1;
    static const struct option o[] = {{"user", required_argument, 0, 'u'},
                                      {"workdir", required_argument, 0, 'w'},
                                      {"help", no_argument, 0, 'h'},
                                      {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "+u:w:h", o, NULL)) != -1) {
        switch (c) {
        case 'u': user = optarg; break;
        case 'w': workdir = optarg; break;
        case 'h': fputs(exec_help, stdout); return 0;
        default: return usage_error("exec", "unknown option or missing value: ", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("exec", "no sandbox id given", NULL);
    const char *id = argv[optind++];
    if (optind < argc && strcmp(argv[optind], "--") == 0)
        optind++;
    if (optind >= argc)
        return usage_error("exec", "no command given (sbx exec ID -- CMD [ARG...])", NULL);
    sbx_err err = {0};
    int status = 0;
    int rc = sbx_step_keeper_exec(id, argv + optind, user, workdir, &status, &err);
    if (rc < 0)
        return fail_msg("exec", &err);
    if (rc == 0)
        return status;
    if (user)
        return usage_error("exec", "-u is for sandboxes the local backend kept; no local keeper holds ", id);
    const sbx_step_backend *be;
    sbx_step_box *box;
    if (attach("exec", id, &be, &box) < 0)
        return EXIT_USAGE;
    sbx_step_exit ex;
    int fail = 0;
    rc = be->exec(box, argv + optind, NULL, workdir ? workdir : SBX_STEP_GUEST_CODE, 0, to_stdio, NULL, &ex, &fail,
                  &err);
    sbx_err de = {0};
    be->destroy(box, true, &de); /* frees the handle; the sandbox stays */
    if (rc < 0) {
        fprintf(stderr, "sbx exec: %s (no local keeper holds %s; asked backend %s)\n", err.msg, id, be->name);
        return EXIT_USAGE;
    }
    return ex.timed_out ? SBX_STEP_EXIT_TIMEOUT : ex.exit_code;
}

static int rm_main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(exec_help, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage_error("rm", "give one sandbox id", NULL);
    sbx_err err = {0};
    int rc = sbx_step_keeper_remove(argv[1], &err);
    if (rc < 0)
        return fail_msg("rm", &err);
    if (rc == 0)
        return 0;
    const sbx_step_backend *be;
    sbx_step_box *box;
    if (attach("rm", argv[1], &be, &box) < 0)
        return EXIT_USAGE;
    if (be->destroy(box, false, &err) < 0) {
        if (err.code == SBX_E_NOTFOUND) {
            fprintf(stderr, "sbx rm: no kept sandbox %s (no local keeper holds it, and backend %s has none)\n",
                    argv[1], be->name);
            return 1;
        }
        return fail_msg("rm", &err);
    }
    return 0;
}

int sbx_step_cli_main(int argc, char **argv)
{
    if (strcmp(argv[0], "run") == 0)
        return run_main(argc, argv);
    if (strcmp(argv[0], "runs") == 0)
        return runs_main(argc, argv);
    if (strcmp(argv[0], "exec") == 0)
        return exec_main(argc, argv);
    if (strcmp(argv[0], "rm") == 0)
        return rm_main(argc, argv);
    fprintf(stderr, "sbx: unknown command '%s'\n", argv[0]);
    return EXIT_USAGE;
}
