/* registry: open/create, put/get/replace, status, list order and filter,
 * namespaces, delete, mark_all_stopped, persistence across reopen, a
 * process dying without closing (kill -9), four threads at once, input
 * limits, and (where a tmpfs can be mounted) a full disk. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"
#include "t.h"
#include "util.h"

static char dbpath[4096];

static sbx_reg_row mkrow(const char *ns, const char *name, const char *config, const char *status,
                         const char *origin)
{
    sbx_reg_row r;
    memset(&r, 0, sizeof(r));
    snprintf(r.ns, sizeof(r.ns), "%s", ns);
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.config = (char *)config;
    snprintf(r.status, sizeof(r.status), "%s", status);
    snprintf(r.origin, sizeof(r.origin), "%s", origin);
    return r;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* ---- crash consistency --------------------------------------------------- */

/* Child: open, put, die without closing. how 0: _exit(0); 1: SIGKILL. */
static int crash_child(const char *name, int how)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        sbx_err e = {0};
        sbx_reg *r = NULL;
        if (sbx_reg_open(dbpath, &r, &e) < 0)
            _exit(3);
        sbx_reg_row row = mkrow("crash", name, "{\"crash\":true}", "running", "rpc");
        if (sbx_reg_put(r, &row, &e) < 0)
            _exit(4);
        if (how == 1)
            kill(getpid(), SIGKILL);
        _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    if (how == 0)
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

/* ---- threads ------------------------------------------------------------- */

#define NTHREADS 4
#define PER_THREAD 50

struct targ {
    sbx_reg *reg;
    int id;
    int errors;
};

static void *worker(void *p)
{
    struct targ *a = p;
    char ns[32], name[32], cfg[64];
    snprintf(ns, sizeof(ns), "thr%d", a->id);
    for (int i = 0; i < PER_THREAD; i++) {
        sbx_err e = {0};
        snprintf(name, sizeof(name), "sb%03d", i);
        snprintf(cfg, sizeof(cfg), "{\"t\":%d,\"i\":%d}", a->id, i);
        sbx_reg_row row = mkrow(ns, name, cfg, "stopped", "rpc");
        if (sbx_reg_put(a->reg, &row, &e) < 0) {
            fprintf(stderr, "# put: %s\n", e.msg);
            a->errors++;
            continue;
        }
        sbx_reg_row got;
        if (sbx_reg_get(a->reg, ns, name, &got, &e) != 0 || strcmp(got.config, cfg) != 0) {
            fprintf(stderr, "# get: %s\n", e.msg);
            a->errors++;
        }
        sbx_reg_row_free(&got);
        if (sbx_reg_set_status(a->reg, ns, name, "running", 1000 + i, &e) != 0)
            a->errors++;
        sbx_reg_row *rows = NULL;
        size_t n = 0;
        if (sbx_reg_list(a->reg, i % 2 ? ns : NULL, &rows, &n, &e) < 0) {
            fprintf(stderr, "# list: %s\n", e.msg);
            a->errors++;
        } else if (i % 2 && n != (size_t)i + 1) {
            fprintf(stderr, "# list %s: %zu rows, want %d\n", ns, n, i + 1);
            a->errors++;
        }
        sbx_reg_rows_free(rows, n);
        if (sbx_reg_namespace_exists(a->reg, ns, &e) != 1)
            a->errors++;
    }
    return NULL;
}

/* ---- full disk ----------------------------------------------------------- */

/* In a child with its own mount namespace: a 256 KiB tmpfs, a registry on
 * it, puts until one fails. Exit 0: failed saying the disk is full; 1:
 * failed otherwise or never; 2: no tmpfs here (skip). */
static int full_disk_child(const char *dir)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
            _exit(2);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(2);
        char mnt[4200], path[4300];
        snprintf(mnt, sizeof(mnt), "%s/small", dir);
        if (mkdir(mnt, 0700) < 0 && errno != EEXIST)
            _exit(2);
        if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") < 0)
            _exit(2);
        snprintf(path, sizeof(path), "%s/reg.db", mnt);
        sbx_err e = {0};
        sbx_reg *r = NULL;
        if (sbx_reg_open(path, &r, &e) < 0) {
            fprintf(stderr, "# open on tmpfs: %s\n", e.msg);
            _exit(1);
        }
        static char big[16384];
        memset(big, 'x', sizeof(big) - 1);
        int code = 1;
        for (int i = 0; i < 1000; i++) {
            char name[32];
            snprintf(name, sizeof(name), "n%d", i);
            sbx_reg_row row = mkrow("full", name, big, "stopped", "rpc");
            if (sbx_reg_put(r, &row, &e) < 0) {
                fprintf(stderr, "# full disk after %d rows: %s\n", i, e.msg);
                code = strstr(e.msg, "disk is full") && e.code == SBX_E_SYSTEM ? 0 : 1;
                break;
            }
        }
        sbx_reg_close(r);
        umount2(mnt, MNT_DETACH);
        _exit(code);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int main(void)
{
    char dir[] = "/tmp/sbx-registry-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dbpath, sizeof(dbpath), "%s/state/sub/registry.db", dir);
    sbx_err e = {0};
    sbx_reg *reg = NULL;
    struct stat sb;

    /* open: parent dirs (0700) and the file are created */
    T_OK(sbx_reg_open(dbpath, &reg, &e) == 0, "open creates (%s)", e.msg);
    T_OK(stat(dbpath, &sb) == 0 && S_ISREG(sb.st_mode), "database file exists");
    T_OK((sb.st_mode & 0777) == 0600, "database file is 0600 (%o)", sb.st_mode & 0777);
    char parent[4200];
    snprintf(parent, sizeof(parent), "%s/state/sub", dir);
    T_OK(stat(parent, &sb) == 0 && (sb.st_mode & 0777) == 0700, "parent dir created 0700");

    /* put/get round trip */
    time_t t0 = time(NULL);
    sbx_reg_row row = mkrow("default", "web", "{\"image\":\"alpine\"}", "stopped", "rpc");
    T_OK(sbx_reg_put(reg, &row, &e) == 0, "put (%s)", e.msg);
    sbx_reg_row got;
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0, "get finds it");
    T_STREQ(got.ns, "default", "get: ns");
    T_STREQ(got.name, "web", "get: name");
    T_STREQ(got.config, "{\"image\":\"alpine\"}", "get: config");
    T_STREQ(got.status, "stopped", "get: status");
    T_STREQ(got.origin, "rpc", "get: origin");
    T_OK(got.created >= t0 && got.created <= time(NULL), "get: created is now (%lld)", (long long)got.created);
    T_OK(got.started == 0, "get: started 0");
    int64_t created = got.created;
    sbx_reg_row_free(&got);
    T_OK(got.config == NULL, "row_free clears config");

    /* put again: config/origin/status replaced, created kept */
    sleep(1);
    row = mkrow("default", "web", "{\"image\":\"debian\"}", "running", "session");
    T_OK(sbx_reg_put(reg, &row, &e) == 0, "put again");
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0, "get after replace");
    T_STREQ(got.config, "{\"image\":\"debian\"}", "replace: config");
    T_STREQ(got.origin, "session", "replace: origin");
    T_STREQ(got.status, "running", "replace: status");
    T_OK(got.created == created, "replace keeps created (%lld vs %lld)", (long long)got.created,
         (long long)created);
    sbx_reg_row_free(&got);

    /* missing */
    T_OK(sbx_reg_get(reg, "default", "nope", &got, &e) == 1, "get missing returns 1");
    T_OK(sbx_reg_get(reg, "other", "web", &got, &e) == 1, "get in other namespace returns 1");

    /* set_status / started */
    T_OK(sbx_reg_set_status(reg, "default", "web", "running", 12345, &e) == 0, "set_status with started");
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0 && got.started == 12345 &&
             strcmp(got.status, "running") == 0,
         "status running, started 12345");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_set_status(reg, "default", "web", "stopped", 0, &e) == 0, "set_status, started 0");
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0 && got.started == 12345 &&
             strcmp(got.status, "stopped") == 0,
         "status stopped, started unchanged");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_set_status(reg, "default", "nope", "stopped", 0, &e) == 1, "set_status missing returns 1");
    /* put does not touch started */
    row = mkrow("default", "web", "{\"image\":\"debian\"}", "stopped", "rpc");
    T_OK(sbx_reg_put(reg, &row, &e) == 0, "put over started row");
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0 && got.started == 12345, "put keeps started");
    sbx_reg_row_free(&got);

    /* list: all vs one namespace, ordered by ns then name */
    const char *adds[][2] = {{"zeta", "b"}, {"alpha", "z"}, {"zeta", "a"}, {"alpha", "a"}, {"default", "api"}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(adds); i++) {
        row = mkrow(adds[i][0], adds[i][1], "{}", i % 2 ? "running" : "stopped", "rpc");
        T_OK(sbx_reg_put(reg, &row, &e) == 0, "put %s/%s", adds[i][0], adds[i][1]);
    }
    sbx_reg_row *rows = NULL;
    size_t n = 0;
    T_OK(sbx_reg_list(reg, NULL, &rows, &n, &e) == 0 && n == 6, "list all: 6 rows (%zu)", n);
    const char *want[][2] = {{"alpha", "a"},  {"alpha", "z"}, {"default", "api"},
                             {"default", "web"}, {"zeta", "a"},  {"zeta", "b"}};
    int ordered = n == 6;
    for (size_t i = 0; ordered && i < n; i++)
        ordered = strcmp(rows[i].ns, want[i][0]) == 0 && strcmp(rows[i].name, want[i][1]) == 0;
    T_OK(ordered, "list all ordered by namespace, name");
    sbx_reg_rows_free(rows, n);
    T_OK(sbx_reg_list(reg, "*", &rows, &n, &e) == 0 && n == 6, "list \"*\" = all");
    sbx_reg_rows_free(rows, n);
    T_OK(sbx_reg_list(reg, "zeta", &rows, &n, &e) == 0 && n == 2, "list zeta: 2 rows");
    T_OK(n == 2 && strcmp(rows[0].name, "a") == 0 && strcmp(rows[1].name, "b") == 0 &&
             strcmp(rows[0].ns, "zeta") == 0,
         "list zeta ordered by name");
    sbx_reg_rows_free(rows, n);
    T_OK(sbx_reg_list(reg, "empty", &rows, &n, &e) == 0 && n == 0, "list unknown namespace: none");
    sbx_reg_rows_free(rows, n);

    /* namespace_exists */
    T_OK(sbx_reg_namespace_exists(reg, "alpha", &e) == 1, "namespace alpha exists");
    T_OK(sbx_reg_namespace_exists(reg, "beta", &e) == 0, "namespace beta does not");

    /* delete */
    T_OK(sbx_reg_delete(reg, "alpha", "z", &e) == 0, "delete returns 0");
    T_OK(sbx_reg_delete(reg, "alpha", "z", &e) == 1, "delete again returns 1");
    T_OK(sbx_reg_get(reg, "alpha", "z", &got, &e) == 1, "deleted row is gone");
    T_OK(sbx_reg_delete(reg, "alpha", "a", &e) == 0, "delete last of alpha");
    T_OK(sbx_reg_namespace_exists(reg, "alpha", &e) == 0, "namespace alpha gone with its rows");

    /* mark_all_stopped */
    T_OK(sbx_reg_set_status(reg, "default", "web", "running", 0, &e) == 0, "web running");
    T_OK(sbx_reg_mark_all_stopped(reg, &e) == 0, "mark_all_stopped");
    T_OK(sbx_reg_list(reg, NULL, &rows, &n, &e) == 0 && n == 4, "4 rows left");
    int all_stopped = 1;
    for (size_t i = 0; i < n; i++)
        all_stopped &= strcmp(rows[i].status, "stopped") == 0;
    T_OK(all_stopped, "every row stopped");
    sbx_reg_rows_free(rows, n);
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0 && got.started == 12345,
         "mark_all_stopped keeps started");
    sbx_reg_row_free(&got);

    /* limits */
    char long_id[80];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    T_OK(sbx_reg_get(reg, long_id, "x", &got, &e) == -1 && e.code == SBX_E_INVALID, "64-char ns rejected");
    T_OK(sbx_reg_delete(reg, "default", long_id, &e) == -1 && e.code == SBX_E_INVALID,
         "64-char name rejected");
    T_OK(sbx_reg_namespace_exists(reg, long_id, &e) == -1 && e.code == SBX_E_INVALID,
         "64-char ns rejected by namespace_exists");
    T_OK(sbx_reg_list(reg, long_id, &rows, &n, &e) == -1 && e.code == SBX_E_INVALID && rows == NULL,
         "64-char ns rejected by list");
    long_id[63] = '\0';
    row = mkrow(long_id, long_id, "{}", "stopped", "rpc");
    T_OK(sbx_reg_put(reg, &row, &e) == 0, "63-char ns and name accepted");
    T_OK(sbx_reg_get(reg, long_id, long_id, &got, &e) == 0 && strcmp(got.name, long_id) == 0,
         "63-char row round trip");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_delete(reg, long_id, long_id, &e) == 0, "delete 63-char row");
    row = mkrow("default", "x", NULL, "stopped", "rpc");
    T_OK(sbx_reg_put(reg, &row, &e) == -1 && e.code == SBX_E_INVALID, "put without config rejected");
    T_OK(sbx_reg_set_status(reg, "default", "web", "much-too-long-status", 0, &e) == -1 &&
             e.code == SBX_E_INVALID,
         "status too long rejected");
    /* SQL metacharacters are just data */
    row = mkrow("q'\"; DROP TABLE sandboxes; --", "n'1", "{\"s\":\"it's\"}", "stopped", "rpc");
    T_OK(sbx_reg_put(reg, &row, &e) == 0, "put with quotes");
    T_OK(sbx_reg_get(reg, row.ns, "n'1", &got, &e) == 0 && strcmp(got.config, "{\"s\":\"it's\"}") == 0,
         "quotes round trip");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_delete(reg, row.ns, "n'1", &e) == 0, "delete with quotes");

    /* close and reopen: data persists */
    sbx_reg_close(reg);
    reg = NULL;
    memset(&e, 0, sizeof(e));
    T_OK(sbx_reg_open(dbpath, &reg, &e) == 0, "reopen (%s)", e.msg);
    T_OK(sbx_reg_get(reg, "default", "web", &got, &e) == 0 && strcmp(got.config, "{\"image\":\"debian\"}") == 0 &&
             got.created == created && got.started == 12345,
         "row persists across reopen");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_list(reg, NULL, &rows, &n, &e) == 0 && n == 4, "4 rows after reopen");
    sbx_reg_rows_free(rows, n);
    sbx_reg_close(reg);
    reg = NULL;

    /* crash consistency: a process that dies without closing */
    T_OK(crash_child("exit", 0) == 0, "child put then _exit(0) without closing");
    char walpath[4200];
    snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
    T_OK(stat(walpath, &sb) == 0 && sb.st_size > 0, "commit left in the WAL (not checkpointed)");
    T_OK(crash_child("killed", 1) == 0, "child put then SIGKILL");
    memset(&e, 0, sizeof(e));
    T_OK(sbx_reg_open(dbpath, &reg, &e) == 0, "reopen after crashes (%s)", e.msg);
    T_OK(sbx_reg_get(reg, "crash", "exit", &got, &e) == 0 && strcmp(got.config, "{\"crash\":true}") == 0,
         "row from _exit child is there");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_get(reg, "crash", "killed", &got, &e) == 0 && strcmp(got.status, "running") == 0,
         "row from killed child is there");
    sbx_reg_row_free(&got);
    T_OK(sbx_reg_mark_all_stopped(reg, &e) == 0, "mark_all_stopped after restart");

    /* four threads at once */
    pthread_t th[NTHREADS];
    struct targ args[NTHREADS];
    int started_ok = 1;
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (struct targ){.reg = reg, .id = i, .errors = 0};
        if (pthread_create(&th[i], NULL, worker, &args[i]) != 0)
            started_ok = 0;
    }
    int errors = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        errors += args[i].errors;
    }
    T_OK(started_ok, "4 threads started");
    T_OK(errors == 0, "threads: no errors (%d)", errors);
    T_OK(sbx_reg_list(reg, NULL, &rows, &n, &e) == 0 && n == 6 + NTHREADS * PER_THREAD,
         "row count after threads: %zu", n);
    sbx_reg_rows_free(rows, n);
    T_OK(sbx_reg_list(reg, "thr2", &rows, &n, &e) == 0 && n == PER_THREAD && strcmp(rows[0].status, "running") == 0 &&
             rows[PER_THREAD - 1].started == 1000 + PER_THREAD - 1,
         "thread 2's rows complete");
    sbx_reg_rows_free(rows, n);
    sbx_reg_close(reg);
    reg = NULL;

    /* a newer schema is refused, not clobbered */
    {
        char vpath[4200];
        snprintf(vpath, sizeof(vpath), "%s/newer.db", dir);
        T_OK(sbx_reg_open(vpath, &reg, &e) == 0, "open second db");
        sbx_reg_close(reg);
        reg = NULL;
        /* bump user_version (offset 60, big-endian) by hand */
        int fd = open(vpath, O_RDWR);
        unsigned char v[4] = {0, 0, 0, 9};
        T_OK(fd >= 0 && pwrite(fd, v, 4, 60) == 4, "bump user_version to 9");
        if (fd >= 0)
            close(fd);
        T_OK(sbx_reg_open(vpath, &reg, &e) == -1 && strstr(e.msg, "newer") != NULL, "newer schema refused: %s",
             e.msg);
        T_OK(reg == NULL, "no handle on failure");
    }

    /* open failures */
    char fpath[4200];
    snprintf(fpath, sizeof(fpath), "%s/afile", dir);
    int fd = open(fpath, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
    snprintf(fpath, sizeof(fpath), "%s/afile/reg.db", dir);
    T_OK(sbx_reg_open(fpath, &reg, &e) == -1 && e.code == SBX_E_SYSTEM && reg == NULL,
         "open under a file fails: %s", e.msg);
    snprintf(fpath, sizeof(fpath), "%s/garbage.db", dir);
    fd = open(fpath, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0) {
        char junk[4096];
        memset(junk, 'j', sizeof(junk));
        if (write(fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk))
            perror("write");
        close(fd);
    }
    T_OK(sbx_reg_open(fpath, &reg, &e) == -1 && strstr(e.msg, "registry: ") == e.msg && reg == NULL,
         "open of a non-database fails: %s", e.msg);

    /* full disk */
    int fr = full_disk_child(dir);
    if (fr == 2)
        printf("ok - full disk # SKIP no tmpfs mount here\n");
    else
        T_OK(fr == 0, "full disk: error says the disk is full");

    T_OK(nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 && access(dir, F_OK) != 0, "temp dir removed");
    T_DONE();
}
