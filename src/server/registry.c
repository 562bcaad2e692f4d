/* The registry on SQLite: one connection, statements prepared once, every
 * call serialised by a mutex (SQLite's own FULLMUTEX serialises single API
 * calls; ours makes a whole operation atomic, sqlite3_changes() and
 * sqlite3_errmsg() included). */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define REG_SCHEMA_VERSION 1
#define REG_ID_MAX 63   /* ns, name: fit in char[64] */
#define REG_TAG_MAX 15  /* status, origin: fit in char[16] */

enum {
    ST_PUT,
    ST_GET,
    ST_SET_STATUS,
    ST_DELETE,
    ST_LIST_ALL,
    ST_LIST_NS,
    ST_NS_EXISTS,
    ST_MARK_STOPPED,
    ST_COUNT_
};

static const char *const reg_sql[ST_COUNT_] = {
    [ST_PUT] = "INSERT INTO sandboxes(ns, name, config, status, origin, created, started)"
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
               " ON CONFLICT(ns, name) DO UPDATE SET config = excluded.config,"
               " origin = excluded.origin, status = excluded.status",
    [ST_GET] = "SELECT ns, name, config, status, origin, created, started FROM sandboxes"
               " WHERE ns = ?1 AND name = ?2",
    [ST_SET_STATUS] = "UPDATE sandboxes SET status = ?3,"
                      " started = CASE WHEN ?4 != 0 THEN ?4 ELSE started END"
                      " WHERE ns = ?1 AND name = ?2",
    [ST_DELETE] = "DELETE FROM sandboxes WHERE ns = ?1 AND name = ?2",
    [ST_LIST_ALL] = "SELECT ns, name, config, status, origin, created, started FROM sandboxes"
                    " ORDER BY ns, name",
    [ST_LIST_NS] = "SELECT ns, name, config, status, origin, created, started FROM sandboxes"
                   " WHERE ns = ?1 ORDER BY ns, name",
    [ST_NS_EXISTS] = "SELECT 1 FROM sandboxes WHERE ns = ?1 LIMIT 1",
    [ST_MARK_STOPPED] = "UPDATE sandboxes SET status = 'stopped' WHERE status = 'running'",
};

struct sbx_reg {
    sqlite3 *db;
    pthread_mutex_t mu;
    sqlite3_stmt *st[ST_COUNT_];
};

/* Fills err from the connection's last error (or rc when there is no
 * connection). A full disk says so in words: the operator has to act. */
static int reg_fail(sbx_err *err, sqlite3 *db, int rc, const char *what)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = db ? sqlite3_system_errno(db) : 0;
    int full = (rc & 0xff) == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT;
    if (full)
        sbx_fail(err, SBX_E_SYSTEM, "registry: %s: disk is full (%s)", what, msg);
    else
        sbx_fail(err, SBX_E_SYSTEM, "registry: %s: %s", what, msg);
    if (err)
        err->sys_errno = full && !sys ? ENOSPC : sys;
    return -1;
}

static int check_id(const char *s, const char *what, sbx_err *err)
{
    if (!s)
        return sbx_fail(err, SBX_E_INVALID, "registry: %s missing", what);
    if (strnlen(s, REG_ID_MAX + 1) > REG_ID_MAX)
        return sbx_fail(err, SBX_E_INVALID, "registry: %s longer than %d characters", what, REG_ID_MAX);
    return 0;
}

static int check_tag(const char *s, const char *what, sbx_err *err)
{
    if (!s || !*s)
        return sbx_fail(err, SBX_E_INVALID, "registry: %s missing", what);
    if (strnlen(s, REG_TAG_MAX + 1) > REG_TAG_MAX)
        return sbx_fail(err, SBX_E_INVALID, "registry: %s longer than %d characters", what, REG_TAG_MAX);
    return 0;
}

/* Runs SQL with no bound parameters and no rows wanted (pragmas, DDL). */
static int exec_sql(sqlite3 *db, const char *sql, const char *what, sbx_err *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return reg_fail(err, db, rc, what);
    return 0;
}

/* A one-value pragma query (journal_mode, user_version). */
static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t cap, const char *what, sbx_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return reg_fail(err, db, rc, what);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        reg_fail(err, db, rc, what);
        sqlite3_finalize(st);
        return -1;
    }
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(buf, cap, "%s", t ? (const char *)t : "");
    sqlite3_finalize(st);
    return 0;
}

static int migrate(sqlite3 *db, sbx_err *err)
{
    char v[32];
    if (pragma_text(db, "PRAGMA user_version", v, sizeof(v), "read schema version", err) < 0)
        return -1;
    long ver = strtol(v, NULL, 10);
    if (ver == REG_SCHEMA_VERSION)
        return 0;
    if (ver > REG_SCHEMA_VERSION)
        return sbx_fail(err, SBX_E_SYSTEM,
                        "registry: schema version %ld is newer than this server supports (%d)", ver,
                        REG_SCHEMA_VERSION);
    /* IMMEDIATE: a second process opening the same file waits instead of
     * racing us through the same migration. */
    if (exec_sql(db, "BEGIN IMMEDIATE", "begin migration", err) < 0)
        return -1;
    if (pragma_text(db, "PRAGMA user_version", v, sizeof(v), "read schema version", err) < 0)
        goto rollback;
    ver = strtol(v, NULL, 10);
    if (ver < 1) {
        if (exec_sql(db,
                     "CREATE TABLE IF NOT EXISTS sandboxes ("
                     " ns TEXT NOT NULL,"
                     " name TEXT NOT NULL,"
                     " config TEXT NOT NULL,"
                     " status TEXT NOT NULL,"
                     " origin TEXT NOT NULL,"
                     " created INTEGER NOT NULL,"
                     " started INTEGER NOT NULL DEFAULT 0,"
                     " PRIMARY KEY(ns, name));"
                     "PRAGMA user_version = 1;",
                     "create schema", err) < 0)
            goto rollback;
    }
    /* Later versions: if (ver < 2) { ALTER ...; PRAGMA user_version = 2; } */
    if (exec_sql(db, "COMMIT", "commit migration", err) < 0)
        goto rollback;
    return 0;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static void reg_free(sbx_reg *reg)
{
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(reg->st[i]);
    /* close_v2: never leaves the handle open because of a stray statement. */
    sqlite3_close_v2(reg->db);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

int sbx_reg_open(const char *path, sbx_reg **out, sbx_err *err)
{
    *out = NULL;
    if (!path || !*path)
        return sbx_fail(err, SBX_E_INVALID, "registry: no database path");

    /* Parent dir, private. */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        size_t n = (size_t)(slash - path);
        char *dir = malloc(n + 1);
        if (!dir)
            return sbx_fail_errno(err, ENOMEM, "registry: open %s", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
        int r = sbx_mkdir_p(dir, 0700);
        if (r < 0) {
            sbx_fail_errno(err, -r, "registry: create directory %s", dir);
            free(dir);
            return -1;
        }
        free(dir);
    }
    /* Create the file ourselves so it is 0600 (SQLite would use 0644 less
     * umask); the -wal and -shm files SQLite makes copy its mode. An empty
     * file is a valid empty database. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        return sbx_fail_errno(err, errno, "registry: create %s", path);

    sbx_reg *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return sbx_fail_errno(err, ENOMEM, "registry: open %s", path);
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return sbx_fail(err, SBX_E_SYSTEM, "registry: mutex init failed");
    }
    int rc = sqlite3_open_v2(path, &reg->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        char what[64 + 4096];
        snprintf(what, sizeof(what), "open %s", path);
        reg_fail(err, reg->db, rc, what);
        reg_free(reg);
        return -1;
    }
    sqlite3_extended_result_codes(reg->db, 1);
    sqlite3_busy_timeout(reg->db, 5000);

    /* WAL with synchronous=NORMAL: a commit is in the WAL file (in the OS
     * page cache) before the call returns, so it survives the server process
     * dying at any point, kill -9 included, which is the failure we must
     * survive. What NORMAL gives up is only the last commits on a power cut
     * or kernel crash (never corruption), for not fsyncing every commit. */
    char mode[32];
    if (pragma_text(reg->db, "PRAGMA journal_mode=WAL", mode, sizeof(mode), "set journal mode", err) < 0)
        goto fail;
    const char *sync = strcmp(mode, "wal") == 0 ? "PRAGMA synchronous=NORMAL"
                                                /* no WAL here (odd fs): rollback journal needs FULL */
                                                : "PRAGMA synchronous=FULL";
    if (exec_sql(reg->db, sync, "set synchronous", err) < 0 ||
        exec_sql(reg->db, "PRAGMA foreign_keys=ON", "enable foreign keys", err) < 0)
        goto fail;
    if (migrate(reg->db, err) < 0)
        goto fail;
    for (int i = 0; i < ST_COUNT_; i++) {
        rc = sqlite3_prepare_v3(reg->db, reg_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &reg->st[i], NULL);
        if (rc != SQLITE_OK) {
            reg_fail(err, reg->db, rc, "prepare statement");
            goto fail;
        }
    }
    *out = reg;
    return 0;
fail:
    reg_free(reg);
    return -1;
}

void sbx_reg_close(sbx_reg *reg)
{
    if (reg)
        reg_free(reg);
}

/* The statement ready for new bindings. Caller holds the mutex. */
static sqlite3_stmt *stmt(sbx_reg *reg, int which)
{
    sqlite3_stmt *st = reg->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Done with it: no locks held, no pointers into the caller's memory kept. */
static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Binds ?1 = ns, ?2 = name. */
static int bind_key(sbx_reg *reg, sqlite3_stmt *st, const char *ns, const char *name, sbx_err *err)
{
    int rc = sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && name)
        rc = sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return reg_fail(err, reg->db, rc, "bind");
    return 0;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* Fills row from the current result row (ns, name, config, status, origin,
 * created, started). -1 only when out of memory. */
static int row_from(sqlite3_stmt *st, sbx_reg_row *row, sbx_err *err)
{
    memset(row, 0, sizeof(*row));
    copy_text(row->ns, sizeof(row->ns), st, 0);
    copy_text(row->name, sizeof(row->name), st, 1);
    const unsigned char *cfg = sqlite3_column_text(st, 2);
    row->config = strdup(cfg ? (const char *)cfg : "");
    if (!row->config)
        return sbx_fail_errno(err, ENOMEM, "registry: read row");
    copy_text(row->status, sizeof(row->status), st, 3);
    copy_text(row->origin, sizeof(row->origin), st, 4);
    row->created = sqlite3_column_int64(st, 5);
    row->started = sqlite3_column_int64(st, 6);
    return 0;
}

int sbx_reg_put(sbx_reg *reg, const sbx_reg_row *row, sbx_err *err)
{
    if (check_id(row->ns, "namespace", err) < 0 || check_id(row->name, "name", err) < 0 ||
        check_tag(row->status, "status", err) < 0 || check_tag(row->origin, "origin", err) < 0)
        return -1;
    if (!row->config)
        return sbx_fail(err, SBX_E_INVALID, "registry: config missing");
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sqlite3_stmt *st = stmt(reg, ST_PUT);
    if (bind_key(reg, st, row->ns, row->name, err) < 0)
        goto out;
    int rc = sqlite3_bind_text(st, 3, row->config, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 4, row->status, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 5, row->origin, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 6, (int64_t)time(NULL));
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 7, row->started);
    if (rc != SQLITE_OK) {
        reg_fail(err, reg->db, rc, "bind");
        goto out;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        reg_fail(err, reg->db, rc, "put");
        goto out;
    }
    ret = 0;
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

int sbx_reg_get(sbx_reg *reg, const char *ns, const char *name, sbx_reg_row *row, sbx_err *err)
{
    memset(row, 0, sizeof(*row));
    if (check_id(ns, "namespace", err) < 0 || check_id(name, "name", err) < 0)
        return -1;
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sqlite3_stmt *st = stmt(reg, ST_GET);
    if (bind_key(reg, st, ns, name, err) < 0)
        goto out;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ret = row_from(st, row, err);
    else if (rc == SQLITE_DONE)
        ret = 1;
    else
        reg_fail(err, reg->db, rc, "get");
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

/* Runs a statement that changes one keyed row: 0 changed, 1 no such row,
 * -1 error. */
static int step_changed(sbx_reg *reg, sqlite3_stmt *st, const char *what, sbx_err *err)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return reg_fail(err, reg->db, rc, what);
    return sqlite3_changes(reg->db) > 0 ? 0 : 1;
}

int sbx_reg_set_status(sbx_reg *reg, const char *ns, const char *name, const char *status, int64_t started,
                       sbx_err *err)
{
    if (check_id(ns, "namespace", err) < 0 || check_id(name, "name", err) < 0 ||
        check_tag(status, "status", err) < 0)
        return -1;
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sqlite3_stmt *st = stmt(reg, ST_SET_STATUS);
    if (bind_key(reg, st, ns, name, err) < 0)
        goto out;
    int rc = sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, started);
    if (rc != SQLITE_OK) {
        reg_fail(err, reg->db, rc, "bind");
        goto out;
    }
    ret = step_changed(reg, st, "set status", err);
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

int sbx_reg_delete(sbx_reg *reg, const char *ns, const char *name, sbx_err *err)
{
    if (check_id(ns, "namespace", err) < 0 || check_id(name, "name", err) < 0)
        return -1;
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sqlite3_stmt *st = stmt(reg, ST_DELETE);
    if (bind_key(reg, st, ns, name, err) < 0)
        goto out;
    ret = step_changed(reg, st, "delete", err);
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

int sbx_reg_list(sbx_reg *reg, const char *ns, sbx_reg_row **rows, size_t *n, sbx_err *err)
{
    *rows = NULL;
    *n = 0;
    int all = !ns || strcmp(ns, "*") == 0;
    if (!all && check_id(ns, "namespace", err) < 0)
        return -1;
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sbx_reg_row *v = NULL;
    size_t len = 0, cap = 0;
    sqlite3_stmt *st = stmt(reg, all ? ST_LIST_ALL : ST_LIST_NS);
    if (!all && bind_key(reg, st, ns, NULL, err) < 0)
        goto out;
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            reg_fail(err, reg->db, rc, "list");
            goto out;
        }
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            sbx_reg_row *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                sbx_fail_errno(err, ENOMEM, "registry: list");
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        if (row_from(st, &v[len], err) < 0)
            goto out;
        len++;
    }
    *rows = v;
    *n = len;
    v = NULL;
    len = 0;
    ret = 0;
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    sbx_reg_rows_free(v, len);
    return ret;
}

int sbx_reg_namespace_exists(sbx_reg *reg, const char *ns, sbx_err *err)
{
    if (check_id(ns, "namespace", err) < 0)
        return -1;
    pthread_mutex_lock(&reg->mu);
    int ret = -1;
    sqlite3_stmt *st = stmt(reg, ST_NS_EXISTS);
    if (bind_key(reg, st, ns, NULL, err) < 0)
        goto out;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ret = 1;
    else if (rc == SQLITE_DONE)
        ret = 0;
    else
        reg_fail(err, reg->db, rc, "namespace lookup");
out:
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

int sbx_reg_mark_all_stopped(sbx_reg *reg, sbx_err *err)
{
    pthread_mutex_lock(&reg->mu);
    int ret = 0;
    sqlite3_stmt *st = stmt(reg, ST_MARK_STOPPED);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        ret = reg_fail(err, reg->db, rc, "mark all stopped");
    finish(st);
    pthread_mutex_unlock(&reg->mu);
    return ret;
}

void sbx_reg_row_free(sbx_reg_row *row)
{
    if (!row)
        return;
    free(row->config);
    row->config = NULL;
}

void sbx_reg_rows_free(sbx_reg_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].config);
    free(rows);
}
