/* sbx server core: state dir, engine, registry, key, the live sandbox
 * table, and the HTTP routes. Wire protocols (src/proto/) plug in through
 * the JSON-RPC dispatcher (rpc.h) and call the sandbox operations below. */
#ifndef SBX_SERVER_H
#define SBX_SERVER_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "auth.h"
#include "http.h"
#include "registry.h"
#include "repl.h"
#include "sbx/client.h"
#include "sbx/engine.h"

typedef struct sbx_server_config {
    const char *host;      /* default 127.0.0.1 */
    uint16_t port;         /* default 5555; 0: any free port */
    bool dev;              /* no auth */
    const char *state_dir; /* default ~/.sbx */
    sbx_client_config msb; /* MSB_* settings (sessions): loaded and checked by main.c */
    bool no_engine;        /* fuzzing (tests/fuzz): serve without the engine; every sandbox start fails */
} sbx_server_config;

/* What a sandbox is started with (from sandbox.start's config). */
typedef struct sbx_sandbox_conf {
    char image[256];
    uint64_t memory_mib;
    double cpus;
    size_t n_volumes;
    char **volumes; /* "host:guest[:ro]" */
    size_t n_envs;
    char **envs;    /* "K=V" */
    char workdir[PATH_MAX];
    char user_name[33]; /* name of the uid-1000 account (sbx_spec.user_name); "": "user" */
    uint64_t disk_mib;  /* writable layer size, fixed when the layer is first made; 0: default */
    char gpu[64];       /* sbx_spec.gpu as `sbx run --gpu` takes it; "": no GPU */
    bool ephemeral;     /* writable layer on tmpfs (disk_mib its size): nothing is kept once the
                           sandbox stops, and no ext4 image is made or torn down (E2B) */
} sbx_sandbox_conf;

/* State a protocol module keeps per live sandbox (its processes, its
 * REPLs...), freed when the sandbox stops, before it is destroyed. */
typedef struct sbx_live_ext {
    char key[32];
    void *data;
    void (*free_fn)(void *data);
    struct sbx_live_ext *next;
} sbx_live_ext;

/* A running sandbox. Protocol code holds a reference while using it. */
typedef struct sbx_live {
    char ns[64], name[64];
    sbx_sandbox *sb;
    sbx_sandbox_conf conf;
    int refs;
    bool stopping;
    uint64_t cpu_mark_usec, wall_mark_usec; /* for cpu % between metrics calls */
    /* One persistent interpreter per language (repl.h), each used by one
     * call at a time. */
    pthread_mutex_t repl_lock[3];
    sbx_repl *repl[3];
    pthread_mutex_t ext_lock;
    sbx_live_ext *ext;
    struct sbx_live *next;
} sbx_live;

/* Runs code in the sandbox's persistent interpreter for lang (started on
 * first use, as root in the sandbox's workdir with its envs), one call at a
 * time per interpreter. *fresh: the interpreter was started by this call.
 * 0, or -1 with err when it cannot start or be reached. */
int sbx_server_repl_run(sbx_live *l, int lang, const char *code, int mode, uint64_t timeout_ms,
                        void (*cb)(void *ud, int stream, const char *data, size_t len), void *ud,
                        sbx_repl_result *res, bool *fresh, sbx_err *err);
/* The same with per-run options (repl.h: timeout, env, cancel fds). */
int sbx_server_repl_exec(sbx_live *l, int lang, const char *code, int mode, const sbx_repl_run_opts *o,
                         void (*cb)(void *ud, int stream, const char *data, size_t len), void *ud,
                         sbx_repl_result *res, bool *fresh, sbx_err *err);

/* Per-sandbox module state: get returns NULL when unset; set replaces
 * (freeing the old) and returns 0, or -1 when out of memory. */
void *sbx_live_ext_get(sbx_live *l, const char *key);
int sbx_live_ext_set(sbx_live *l, const char *key, void *data, void (*free_fn)(void *data));

typedef struct sbx_server {
    sbx_server_config cfg;
    char host[64];
    char state_dir[PATH_MAX];
    char key[SBX_AUTH_KEY_LEN + 1];
    bool have_key;
    sbx_engine *eng;
    sbx_reg *reg;
    sbx_http *http;
    uint16_t port;

    pthread_mutex_t lock; /* live list, refs */
    pthread_cond_t cond;  /* refs dropped */
    sbx_live *live;
    pthread_mutex_t start_lock; /* one start/stop at a time per server */

    /* Sandboxes die with the thread that made them (PDEATHSIG), so they
     * are all made by this one long-lived thread. */
    pthread_t spawner;
    pthread_mutex_t spawn_lock;
    pthread_cond_t spawn_cond;
    struct spawn_job *jobs;
    bool spawner_quit;

    struct sbx_sessions *sessions; /* the session layer (sessions.h) */

    /* Background work, off the request path, under lock: the teardown
     * thread ends deleted sandboxes' teardowns; the pool thread (lowest
     * priority) keeps the layer image pool <state>/layers/.pool filled
     * with a few images of each size sbx_server_pool_size asked for. */
    pthread_t teardown_thread, pool_thread;
    pthread_cond_t teardown_cond, pool_cond;
    bool bg_running, bg_quit;
    struct teardown *teardowns; /* queued or running; a start of the same (ns, name) waits */
    uint64_t pool_mib[4];
    size_t n_pool_mib;
    bool pool_dirty, pool_failed;
    unsigned teardown_delay_ms; /* SBX_TEARDOWN_DELAY_MS, for tests: a teardown that is seen pending */
    char pool_dir[PATH_MAX], trash_dir[PATH_MAX];
} sbx_server;

int sbx_server_open(const sbx_server_config *cfg, sbx_server **out, sbx_err *err);
int sbx_server_listen(sbx_server *srv, sbx_err *err);
/* Stops listening, stops every sandbox, flushes and frees. */
void sbx_server_close(sbx_server *srv);

/* Live sandbox of (ns, name) with a reference taken, or NULL. */
sbx_live *sbx_server_acquire(sbx_server *srv, const char *ns, const char *name);
void sbx_server_release(sbx_server *srv, sbx_live *l);
/* Starts (ns, name) with conf unless it is running already (then 1). */
int sbx_server_start_sandbox(sbx_server *srv, const char *ns, const char *name, const sbx_sandbox_conf *conf,
                             sbx_err *err);
/* Stops it if running (waiting for calls in flight to end): 1 if it was. */
int sbx_server_stop_sandbox(sbx_server *srv, const char *ns, const char *name);
/* Deletes (ns, name)'s sandbox and layer for good: at once it leaves the
 * live table, its processes are killed and its layer dir is moved to the
 * trash (a later start of that name gets a fresh one); the wait for calls
 * in flight, the unmount and the removal finish on the background thread,
 * and sbx_server_close waits for them. The caller removes the registry
 * row. 1 if it was running. */
int sbx_server_delete_sandbox(sbx_server *srv, const char *ns, const char *name);
/* Keep a few ready layer images of disk_mib (a front door's default size)
 * for first starts (sbx_layer_pool_claim). */
void sbx_server_pool_size(sbx_server *srv, uint64_t disk_mib);
/* Directory of a sandbox's persistent layer. */
int sbx_server_layer_dir(const sbx_server *srv, const char *ns, const char *name, char *buf, size_t len);

void sbx_conf_free(sbx_sandbox_conf *c);
int sbx_conf_copy(sbx_sandbox_conf *dst, const sbx_sandbox_conf *src);

#endif
