/* Step specs and settings (src/step/spec.c, settings.c, package.c's
 * ignore rules): step files field by field, every refusal's message,
 * METAFLOW_SANDBOX_UPLOADS, defaults, secret masking, the
 * METAFLOW_SANDBOX_* variables. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/step/package.h"
#include "../../src/step/settings.h"
#include "../../src/step/spec.h"
#include "t.h"

static char dir[PATH_MAX];

static int parse(const char *text, sbx_step_spec *s, sbx_err *e)
{
    memset(s, 0, sizeof(*s));
    memset(e, 0, sizeof(*e));
    return sbx_step_spec_parse(text, strlen(text), "t.json", dir, s, e);
}

/* The file is refused and the message holds want. */
static void refused(const char *text, const char *want, const char *what)
{
    sbx_step_spec s;
    sbx_err e;
    int rc = parse(text, &s, &e);
    T_OK(rc < 0 && strstr(e.msg, want) && strstr(e.msg, "step file t.json"), "%s", what);
    if (!(rc < 0 && strstr(e.msg, want)))
        printf("#   got rc=%d \"%s\", want \"%s\"\n", rc, e.msg, want);
    sbx_step_spec_free(&s);
}

static void test_full_file(void)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"name\": \"train\", \"backend\": \"sbx\", \"cpu\": 2, \"memory\": \"512\", \"gpu\": 1,"
             " \"image\": \"microsandbox/python\", \"timeout\": 30, \"env\": {\"A\": \"x\", \"N\": 3, \"F\": 1.5, \"B\": true},"
             " \"uploads\": [\"data.csv\", {\"src\": \"/abs/c.json\", \"dst\": \"conf/c.json\"}],"
             " \"outputs\": [\"model.bin\", \"/tmp/log.txt\"], \"command\": [\"python3\", \"train.py\"],"
             " \"code_dir\": \"src\", \"ignore\": [\"*.log\"], \"environment\": \"env.yml\", \"artifacts\": \"out\"}");
    sbx_step_spec s;
    sbx_err e;
    char want[PATH_MAX + 32];
    T_OK(parse(text, &s, &e) == 0, "a full step file parses (%s)", e.msg);
    T_STREQ(s.name, "train", "name");
    T_STREQ(s.backend, "sbx", "backend");
    T_OK(s.cpu == 2 && s.memory_mb == 512 && s.timeout_s == 30, "cpu, memory (a numeric string too), timeout");
    T_STREQ(s.gpu, "1", "a gpu count becomes its text");
    T_STREQ(s.image, "microsandbox/python", "image");
    T_OK(s.n_env == 4, "four env entries");
    T_STREQ(s.env[0], "A=x", "env string value");
    T_STREQ(s.env[1], "N=3", "env integer value");
    T_STREQ(s.env[2], "F=1.5", "env real value");
    T_STREQ(s.env[3], "B=true", "env boolean value");
    snprintf(want, sizeof(want), "%s/data.csv", dir);
    T_OK(s.n_uploads == 2, "two uploads");
    T_STREQ(s.uploads[0].src, want, "a relative upload is the file's directory's");
    T_STREQ(s.uploads[0].dst, "data.csv", "... and lands under its base name");
    T_STREQ(s.uploads[1].src, "/abs/c.json", "an object upload's src");
    T_STREQ(s.uploads[1].dst, "conf/c.json", "... and dst");
    T_OK(s.n_outputs == 2, "two outputs");
    T_OK(s.n_command == 2 && s.command[2] == NULL, "the command is a NULL-terminated argv");
    snprintf(want, sizeof(want), "%s/src", dir);
    T_STREQ(s.code_dir, want, "code_dir from the file's directory");
    T_OK(s.n_ignore == 1, "ignore list");
    T_STREQ(s.environment, "env.yml", "environment");
    snprintf(want, sizeof(want), "%s/out", dir);
    T_STREQ(s.artifacts_dir, want, "artifacts from the file's directory");
    sbx_step_spec_free(&s);
}

static void test_defaults(void)
{
    sbx_step_spec s;
    sbx_err e;
    T_OK(parse("{\"command\": \"echo hi | tr a-z A-Z\"}", &s, &e) == 0, "a minimal file parses");
    T_OK(s.n_command == 3 && !strcmp(s.command[0], "sh") && !strcmp(s.command[1], "-c") &&
             !strcmp(s.command[2], "echo hi | tr a-z A-Z"),
         "a string command runs under sh -c");
    T_STREQ(s.code_dir, dir, "the code dir defaults to the file's directory");
    T_OK(sbx_step_spec_finish(&s, "local", &e) == 0, "finish fills the defaults (%s)", e.msg);
    T_OK(s.cpu == 1 && s.memory_mb == 1024 && s.timeout_s == 600, "defaults: 1 cpu, 1024 MB, 600 s");
    T_STREQ(s.backend, "local", "the default backend comes from the settings");
    T_STREQ(s.name, "sh", "the name defaults to the command's");
    T_OK(s.gpu == NULL && s.image == NULL, "no gpu, the backend's image");
    sbx_step_spec_free(&s);

    T_OK(parse("{\"command\": [\"/usr/bin/python3.11\", \"x.py\"], \"code_dir\": null, \"gpu\": 0}", &s, &e) == 0,
         "code_dir null and gpu 0 parse");
    T_OK(s.code_dir == NULL && s.code_dir_set, "code_dir null: no code package");
    T_OK(s.gpu == NULL, "gpu 0: none");
    T_OK(sbx_step_spec_finish(&s, "sbx", &e) == 0, "finish");
    T_STREQ(s.name, "python3.11", "a path's base name names the step");
    sbx_step_spec_free(&s);
}

static void test_refusals(void)
{
    refused("[1, 2]", "must hold a JSON object", "a list is no step file");
    refused("{\"command\": [\"a\"],}", "is not JSON", "malformed JSON is refused with its position");
    refused("{\"name\": \"x\"}", "has no \"command\"", "a file without a command is refused");
    refused("{\"command\": []}", "empty list", "an empty command list is refused");
    refused("{\"command\": [\"a\", 1]}", "field 'command'[1] must be a string", "a non-string argument is refused");
    refused("{\"command\": [\"a\"], \"memroy\": 5}",
            "unknown field 'memroy' (allowed: name, backend, cpu, memory, gpu, image, timeout, env, uploads, outputs, "
            "command, code_dir, ignore, environment, artifacts)",
            "an unknown field is refused, naming the allowed ones");
    refused("{\"command\": [\"a\"], \"cpu\": 0}", "cpu '0' is not a number of vCPUs", "cpu 0 is refused");
    refused("{\"command\": [\"a\"], \"cpu\": \"fast\"}", "more than 0, at most 1024", "a cpu word is refused");
    refused("{\"command\": [\"a\"], \"memory\": 5}", "memory '5' is not a whole number of MB (6 to 16777216)",
            "memory below 6 MB is refused");
    refused("{\"command\": [\"a\"], \"memory\": 1.5}", "is not a whole number of MB", "fractional memory is refused");
    refused("{\"command\": [\"a\"], \"timeout\": 0}", "timeout '0' is not a whole number of seconds (1 to 31536000)",
            "timeout 0 is refused");
    refused("{\"command\": [\"a\"], \"timeout\": [1]}", "field 'timeout' must be a number", "a list timeout is refused");
    refused("{\"command\": [\"a\"], \"env\": [\"A=1\"]}", "field 'env' must be an object", "env as a list is refused");
    refused("{\"command\": [\"a\"], \"env\": {\"A\": {}}}", "env 'A' must be a string, number or boolean",
            "an object env value is refused");
    refused("{\"command\": [\"a\"], \"env\": {\"\": \"x\"}}", "env name '' is invalid", "an empty env name is refused");
    refused("{\"command\": [\"a\"], \"env\": {\"A=B\": \"x\"}}", "without '='", "an env name with '=' is refused");
    refused("{\"command\": [\"a\"], \"uploads\": [3]}", "uploads[0] must be a file path or an object",
            "a number upload is refused");
    refused("{\"command\": [\"a\"], \"uploads\": [{\"dst\": \"x\"}]}", "uploads[0] has no \"src\"",
            "an upload without src is refused");
    refused("{\"command\": [\"a\"], \"uploads\": [{\"src\": \"a\", \"mode\": 1}]}",
            "uploads[0]: unknown field 'mode' (allowed: src, dst)", "an unknown upload field is refused");
    refused("{\"command\": [\"a\"], \"uploads\": [{\"src\": \"a\", \"dst\": \"../x\"}]}", "has a '..' component",
            "an upload escaping with .. is refused");
    refused("{\"command\": [\"a\"], \"outputs\": [\"a/../../etc/passwd\"]}", "has a '..' component",
            "an output with .. is refused");
    refused("{\"command\": [\"a\"], \"outputs\": [\"\"]}", "output is empty", "an empty output is refused");
    refused("{\"command\": [\"a\"], \"name\": \"has space\"}", "is not a step name", "a bad name is refused");
    refused("{\"command\": [\"a\"], \"gpu\": [0]}", "field 'gpu' must be null, a number of GPUs, or a string",
            "a list gpu is refused");
}

static void test_finish_checks(void)
{
    sbx_step_spec s;
    sbx_err e;
    T_OK(parse("{\"command\": [\"a\"], \"uploads\": [\"no-such-upload.csv\"]}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "no-such-upload.csv") &&
             strstr(e.msg, "No such file"),
         "a missing upload fails finish, naming the file (%s)", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"uploads\": [\".\"]}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "not a regular file"),
         "a directory upload is refused (%s)", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"code_dir\": \"nowhere\"}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "code directory") && strstr(e.msg, "nowhere"),
         "a missing code directory is refused (%s)", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"code_dir\": null, \"environment\": \"e.yml\"}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "has none"),
         "an environment without a code package is refused (%s)", e.msg);
    sbx_step_spec_free(&s);
    memset(&s, 0, sizeof(s));
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "no command given"), "no command: refused");
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"outputs\": [\"/a/out.txt\", \"/b/out.txt\"]}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "outputs /a/out.txt and /b/out.txt would both") &&
             strstr(e.msg, "/out.txt"),
         "two absolute outputs with one base name are refused (%s)", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"outputs\": [\"sub/out.txt\", \"/tmp/out.txt\"]}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) == 0, "... not outputs that land apart (sub/out.txt, out.txt): %s", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"outputs\": [\"out.txt\", \"./out.txt\", \"/x/y.txt\", \"/x/y.txt\"]}", &s, &e) ==
             0,
         "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) == 0, "... nor one output declared twice: %s", e.msg);
    sbx_step_spec_free(&s);
    T_OK(parse("{\"command\": [\"a\"], \"outputs\": [\"out.txt\", \"/tmp/out.txt\"]}", &s, &e) == 0, "parse");
    T_OK(sbx_step_spec_finish(&s, "local", &e) < 0 && strstr(e.msg, "would both"),
         "a relative and an absolute output on one artifact are refused (%s)", e.msg);
    sbx_step_spec_free(&s);
}

static void test_uploads_json(void)
{
    sbx_step_spec s = {0};
    sbx_err e = {0};
    T_OK(sbx_step_spec_add_uploads_json(&s, "[\"a.csv\", {\"src\": \"/x/b\", \"dst\": \"/opt/b\"}]",
                                        "METAFLOW_SANDBOX_UPLOADS", "/base", &e) == 0,
         "METAFLOW_SANDBOX_UPLOADS: a list of paths and objects");
    T_OK(s.n_uploads == 2 && !strcmp(s.uploads[0].src, "/base/a.csv") && !strcmp(s.uploads[0].dst, "a.csv") &&
             !strcmp(s.uploads[1].dst, "/opt/b"),
         "... resolved and placed");
    T_OK(sbx_step_spec_add_uploads_json(&s, "a.csv", "METAFLOW_SANDBOX_UPLOADS", "/base", &e) < 0 &&
             strstr(e.msg, "METAFLOW_SANDBOX_UPLOADS is not a JSON list of files"),
         "a bare path is refused, naming the variable (%s)", e.msg);
    T_OK(sbx_step_spec_add_uploads_json(&s, "{\"a\": 1}", "METAFLOW_SANDBOX_UPLOADS", "/base", &e) < 0,
         "an object is refused");
    T_OK(sbx_step_spec_add_uploads_json(&s, "[\"dir/\"]", "METAFLOW_SANDBOX_UPLOADS", "/base", &e) < 0 &&
             strstr(e.msg, "names a directory"),
         "a path ending in / is refused (%s)", e.msg);
    sbx_step_spec_free(&s);
}

static void test_masking(void)
{
    T_OK(sbx_step_secret_name("AWS_SECRET_ACCESS_KEY", 21) && sbx_step_secret_name("api_token", 9) &&
             sbx_step_secret_name("DB_PASSWORD", 11) && sbx_step_secret_name("E2B_API_KEY", 11),
         "secret-looking names are secret (any case)");
    T_OK(!sbx_step_secret_name("PATH", 4) && !sbx_step_secret_name("MODE", 4), "others are not");
    sbx_step_spec s = {0};
    sbx_err e = {0};
    sbx_step_spec_add_env(&s, "API_TOKEN=abc123", &e);
    sbx_step_spec_add_env(&s, "MODE=fast", &e);
    json_t *j = sbx_step_spec_to_json(&s, true), *env = json_object_get(j, "env");
    T_STREQ(json_string_value(json_object_get(env, "API_TOKEN")), "****", "a secret's value is masked");
    T_STREQ(json_string_value(json_object_get(env, "MODE")), "fast", "others are kept");
    json_decref(j);
    j = sbx_step_spec_to_json(&s, false);
    T_STREQ(json_string_value(json_object_get(json_object_get(j, "env"), "API_TOKEN")), "abc123", "unmasked on request");
    json_decref(j);
    T_OK(sbx_step_spec_add_env(&s, "=x", &e) < 0 && strstr(e.msg, "KEY=VALUE"), "a bad env entry is refused");
    sbx_step_spec_free(&s);
}

static void test_output_names(void)
{
    T_STREQ(sbx_step_output_local_name("out/model.bin"), "out/model.bin", "a relative output keeps its path");
    T_STREQ(sbx_step_output_local_name("./x.txt"), "x.txt", "./ is dropped");
    T_STREQ(sbx_step_output_local_name("/tmp/log.txt"), "log.txt", "an absolute output lands under its base name");
}

static void test_ignore(void)
{
    char *pats[] = {".git", "*.pyc", "build/", "/top.txt", "docs/*.md"};
    size_t n = 5;
    T_OK(sbx_step_package_ignored(".git", true, pats, n), "a name pattern matches a directory");
    T_OK(sbx_step_package_ignored("a/b/x.pyc", false, pats, n), "a name glob matches at any depth");
    T_OK(sbx_step_package_ignored("build", true, pats, n) && !sbx_step_package_ignored("build", false, pats, n),
         "a trailing / matches directories only");
    T_OK(sbx_step_package_ignored("top.txt", false, pats, n) && !sbx_step_package_ignored("a/top.txt", false, pats, n),
         "a leading / anchors at the top");
    T_OK(sbx_step_package_ignored("docs/a.md", false, pats, n) && !sbx_step_package_ignored("x/docs/a.md", false, pats, n),
         "a pattern with / matches the path from the top");
    T_OK(!sbx_step_package_ignored("main.py", false, pats, n), "other files are kept");
}

static void clear_env(void)
{
    static const char *const vars[] = {"METAFLOW_SANDBOX_BACKEND", "METAFLOW_SANDBOX_MAX_INFRA_RETRIES",
                                       "METAFLOW_SANDBOX_DEBUG", "METAFLOW_SANDBOX_STAGE_MICROMAMBA",
                                       "METAFLOW_SANDBOX_AUTO_DOWNLOAD_MICROMAMBA", "METAFLOW_SANDBOX_MICROMAMBA_PATH",
                                       "METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR", "METAFLOW_SANDBOX_TARGET_PLATFORM",
                                       "METAFLOW_SANDBOX_UPLOADS", "METAFLOW_SANDBOX_R2_WORKER_COUNT",
                                       "METAFLOW_SANDBOX_FORWARD_AWS_SESSION_TOKEN"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static void test_settings(void)
{
    sbx_step_settings s;
    sbx_err e = {0};
    clear_env();
    setenv("HOME", "/home/tester", 1);
    T_OK(sbx_step_settings_load(&s, &e) == 0, "no METAFLOW_SANDBOX_* set: defaults");
    T_STREQ(s.backend, "local", "the default backend is local (the document's daytona assumes a cloud)");
    T_OK(s.max_infra_retries == 1 && !s.debug && s.stage_micromamba && s.auto_download && s.r2_worker_count == 8 &&
             s.forward_session_token == -1 && !s.uploads_json,
         "retries 1, debug off, micromamba staged and downloaded, R2 workers 8");
    T_STREQ(s.micromamba_cache, "/home/tester/.cache/metaflow-sandbox/micromamba", "the document's cache dir");
    T_STREQ(s.platform, sbx_step_host_platform(), "the platform is the host's");
    sbx_step_settings_free(&s);

    setenv("METAFLOW_SANDBOX_BACKEND", "sbx", 1);
    setenv("METAFLOW_SANDBOX_MAX_INFRA_RETRIES", "3", 1);
    setenv("METAFLOW_SANDBOX_DEBUG", "true", 1);
    setenv("METAFLOW_SANDBOX_STAGE_MICROMAMBA", "0", 1);
    setenv("METAFLOW_SANDBOX_TARGET_PLATFORM", "linux-aarch64", 1);
    setenv("METAFLOW_SANDBOX_UPLOADS", "[\"a\"]", 1);
    T_OK(sbx_step_settings_load(&s, &e) == 0, "set values load (%s)", e.msg);
    T_OK(!strcmp(s.backend, "sbx") && s.max_infra_retries == 3 && s.debug && !s.stage_micromamba &&
             !strcmp(s.platform, "linux-aarch64") && s.uploads_json && !strcmp(s.uploads_json, "[\"a\"]"),
         "... with their meanings");
    T_STREQ(s.debug_dir, "/tmp/metaflow-sandbox-debug", "DEBUG=true dumps to /tmp/metaflow-sandbox-debug");
    sbx_step_settings_free(&s);

    setenv("METAFLOW_SANDBOX_DEBUG", "/var/tmp/dbg", 1);
    T_OK(sbx_step_settings_load(&s, &e) == 0 && s.debug && !strcmp(s.debug_dir, "/var/tmp/dbg"),
         "DEBUG=<path>: on, dumping there");
    sbx_step_settings_free(&s);
    setenv("METAFLOW_SANDBOX_DEBUG", "FALSE", 1);
    T_OK(sbx_step_settings_load(&s, &e) == 0 && !s.debug, "DEBUG=FALSE: off");
    sbx_step_settings_free(&s);

    struct {
        const char *var, *val, *want;
    } bad[] = {
        {"METAFLOW_SANDBOX_MAX_INFRA_RETRIES", "11", "METAFLOW_SANDBOX_MAX_INFRA_RETRIES '11' is not a whole number from 0 to 10"},
        {"METAFLOW_SANDBOX_MAX_INFRA_RETRIES", "-1", "from 0 to 10"},
        {"METAFLOW_SANDBOX_STAGE_MICROMAMBA", "maybe", "METAFLOW_SANDBOX_STAGE_MICROMAMBA 'maybe' is not a boolean (allowed: 1, true"},
        {"METAFLOW_SANDBOX_TARGET_PLATFORM", "osx-64", "allowed: linux-64, linux-aarch64"},
        {"METAFLOW_SANDBOX_R2_WORKER_COUNT", "0", "METAFLOW_SANDBOX_R2_WORKER_COUNT '0'"},
        {"METAFLOW_SANDBOX_FORWARD_AWS_SESSION_TOKEN", "2", "is not a boolean"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clear_env();
        setenv(bad[i].var, bad[i].val, 1);
        int rc = sbx_step_settings_load(&s, &e);
        T_OK(rc < 0 && strstr(e.msg, bad[i].want), "%s=%s is refused: %s", bad[i].var, bad[i].val, e.msg);
        sbx_step_settings_free(&s);
    }
    clear_env();
    T_OK(sbx_step_parse_bool("On") == 1 && sbx_step_parse_bool("no") == 0 && sbx_step_parse_bool("2") == -1,
         "booleans: 1/true/yes/on, 0/false/no/off, any case");
    T_STREQ(sbx_step_platform_of_machine("x86_64"), "linux-64", "x86_64 is linux-64");
    T_STREQ(sbx_step_platform_of_machine("aarch64"), "linux-aarch64", "aarch64 is linux-aarch64");
    T_OK(sbx_step_platform_of_machine("riscv64") == NULL, "others have no name");
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sbx-step-spec.%d", (int)getpid());
    mkdir(dir, 0755);
    if (chdir(dir) < 0)
        return 1;
    test_full_file();
    test_defaults();
    test_refusals();
    test_finish_checks();
    test_uploads_json();
    test_masking();
    test_output_names();
    test_ignore();
    test_settings();
    if (chdir("/") == 0)
        rmdir(dir);
    T_DONE();
}
