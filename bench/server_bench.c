/* Server round-trip benchmark: sandbox.start of a new sandbox to ready,
 * command.run of `true`, repl.run of `1+1` — each over HTTP with a
 * keep-alive libcurl client against a running `sbx server --dev`, and the
 * same work through the engine in this process, for comparison.
 * usage: server_bench URL N STATE_DIR   (prints a markdown table) */
#include "repl.h"
#include "sbx/engine.h"
#include "util.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char reply[1 << 16];
static size_t reply_len;

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)ud;
    size_t k = s * n, room = sizeof(reply) - 1 - reply_len;
    memcpy(reply + reply_len, p, k < room ? k : room);
    reply_len += k < room ? k : room;
    reply[reply_len] = '\0';
    return k;
}

static CURL *h;
static char rpc_url[512];

static double rpc(const char *body)
{
    reply_len = 0;
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    uint64_t t0 = sbx_now_usec();
    CURLcode r = curl_easy_perform(h);
    double ms = (double)(sbx_now_usec() - t0) / 1000.0;
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (r != CURLE_OK || code != 200 || strstr(reply, "\"error\"")) {
        fprintf(stderr, "bench: %s -> %ld %s\n", body, code, reply);
        exit(1);
    }
    return ms;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats(double *v, int n, double *p50, double *p99)
{
    qsort(v, (size_t)n, sizeof(double), cmp);
    *p50 = v[n / 2];
    *p99 = v[(int)((double)n * 0.99)];
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: server_bench URL N STATE_DIR\n");
        return 2;
    }
    int n = atoi(argv[2]);
    double *v = calloc((size_t)n, sizeof(double));
    double p50[6], p99[6];
    char body[512];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h = curl_easy_init();
    snprintf(rpc_url, sizeof(rpc_url), "%s/api/v1/rpc", argv[1]);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, rpc_url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);

    /* 1. sandbox.start of a new sandbox (each then stopped and deleted,
     * untimed, so no more than one is alive). */
    for (int i = 0; i < n + 5; i++) {
        snprintf(body, sizeof(body),
                 "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"id\":1,\"params\":{\"sandbox\":\"b%d\","
                 "\"config\":{\"image\":\"microsandbox/python\",\"memory\":512}}}", i);
        double ms = rpc(body);
        if (i >= 5)
            v[i - 5] = ms;
        snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.delete\",\"id\":1,\"params\":{\"sandbox\":\"b%d\"}}", i);
        rpc(body);
    }
    stats(v, n, &p50[0], &p99[0]);

    rpc("{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"id\":1,\"params\":{\"sandbox\":\"bench\","
        "\"config\":{\"image\":\"microsandbox/python\",\"memory\":512}}}");
    const char *cmd = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.command.run\",\"id\":1,\"params\":{\"sandbox\":\"bench\",\"command\":\"true\"}}";
    const char *repl = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.repl.run\",\"id\":1,\"params\":{\"sandbox\":\"bench\",\"language\":\"python\",\"code\":\"1+1\"}}";
    for (int i = 0; i < 20; i++)
        rpc(cmd), rpc(repl);
    for (int i = 0; i < n; i++)
        v[i] = rpc(cmd);
    stats(v, n, &p50[1], &p99[1]);
    for (int i = 0; i < n; i++)
        v[i] = rpc(repl);
    stats(v, n, &p50[2], &p99[2]);
    rpc("{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.delete\",\"id\":1,\"params\":{\"sandbox\":\"bench\"}}");

    /* 2. The same work in process, through the engine. */
    sbx_engine *eng;
    sbx_err err;
    if (sbx_engine_open(NULL, &eng, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    char layer[4096];
    for (int i = 0; i < n + 5; i++) {
        snprintf(layer, sizeof(layer), "%s/inproc/l%d", argv[3], i);
        sbx_spec spec = {.memory_mib = 512, .pids = 4096, .layer_dir = layer, .track_cpu = true};
        sbx_sandbox *sb;
        uint64_t t0 = sbx_now_usec();
        if (sbx_sandbox_create(eng, &spec, &sb, &err) < 0) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        if (i >= 5)
            v[i - 5] = (double)(sbx_now_usec() - t0) / 1000.0;
        sbx_sandbox_destroy(sb);
        char rm[4200];
        snprintf(rm, sizeof(rm), "rm -rf %s", layer);
        if (system(rm) != 0)
            return 1;
    }
    stats(v, n, &p50[3], &p99[3]);
    snprintf(layer, sizeof(layer), "%s/inproc/live", argv[3]);
    sbx_spec spec = {.memory_mib = 512, .pids = 4096, .layer_dir = layer, .track_cpu = true};
    sbx_sandbox *sb;
    if (sbx_sandbox_create(eng, &spec, &sb, &err) < 0)
        return 1;
    char *tv[] = {"true", NULL};
    sbx_exec_spec xs = {.argv = tv, .user = "root", .workdir = "/", .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
                        .signal_fd = -1, .capture_max = 1};
    sbx_repl *r;
    sbx_repl_opts ro = {.user = "root", .workdir = "/"};
    if (sbx_repl_open(sb, SBX_REPL_PYTHON, &ro, &r, &err) < 0)
        return 1;
    sbx_exec_result res;
    sbx_repl_result rr;
    for (int i = 0; i < n + 20; i++) {
        uint64_t t0 = sbx_now_usec();
        if (sbx_sandbox_exec(sb, &xs, &res, &err) < 0)
            return 1;
        if (i >= 20)
            v[i - 20] = (double)(sbx_now_usec() - t0) / 1000.0;
        sbx_exec_result_free(&res);
    }
    stats(v, n, &p50[4], &p99[4]);
    for (int i = 0; i < n + 20; i++) {
        uint64_t t0 = sbx_now_usec();
        if (sbx_repl_run(r, "1+1", SBX_REPL_ECHO, 0, NULL, NULL, &rr, &err) < 0)
            return 1;
        if (i >= 20)
            v[i - 20] = (double)(sbx_now_usec() - t0) / 1000.0;
        sbx_repl_result_free(&rr);
    }
    stats(v, n, &p50[5], &p99[5]);
    sbx_repl_close(r);
    sbx_sandbox_destroy(sb);
    sbx_engine_close(eng);

    static const char *const what[] = {"`sandbox.start` (new sandbox, to ready)", "`sandbox.command.run` `true`",
                                       "`sandbox.repl.run` `1+1` (python)"};
    static const double target[] = {10, 3, 2};
    printf("| call (%d calls each) | server p50 ms | server p99 ms | in-process engine p50 ms | in-process p99 ms | "
           "server / in-process (p50) | target p50 ms | p50 / target |\n", n);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++)
        printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.0f | %.2fx |\n", what[i], p50[i], p99[i], p50[i + 3],
               p99[i + 3], p50[i] / p50[i + 3], target[i], p50[i] / target[i]);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    free(v);
    return 0;
}
