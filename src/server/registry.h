/* The server's registry: every sandbox it knows (namespace, name, config,
 * status, times), in SQLite in the state dir, so a restart loses nothing.
 * One connection, serialised by a mutex: calls are safe from any thread. */
#ifndef SBX_REGISTRY_H
#define SBX_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include "sbx/engine.h"

typedef struct sbx_reg sbx_reg;

typedef struct sbx_reg_row {
    char ns[64];
    char name[64];
    char *config;      /* JSON text of the stored config (malloc'd) */
    char status[16];   /* "running" | "stopped" */
    char origin[16];   /* "rpc" | "session" */
    int64_t created;   /* unix seconds */
    int64_t started;   /* unix seconds of the last start, 0 if never */
} sbx_reg_row;

int sbx_reg_open(const char *path, sbx_reg **out, sbx_err *err);
void sbx_reg_close(sbx_reg *reg);

/* Insert or replace config/origin of (ns, name); keeps `created` of an
 * existing row, sets it to now for a new one. status as given. */
int sbx_reg_put(sbx_reg *reg, const sbx_reg_row *row, sbx_err *err);
/* 0 found (row filled; free with sbx_reg_row_free), 1 not found, -1 error. */
int sbx_reg_get(sbx_reg *reg, const char *ns, const char *name, sbx_reg_row *row, sbx_err *err);
/* started: 0 leaves it unchanged. 0 ok, 1 not found, -1 error. */
int sbx_reg_set_status(sbx_reg *reg, const char *ns, const char *name, const char *status, int64_t started,
                       sbx_err *err);
/* 0 deleted, 1 not found, -1 error. */
int sbx_reg_delete(sbx_reg *reg, const char *ns, const char *name, sbx_err *err);
/* All rows, or those of one namespace (ns NULL or "*": all), ordered by
 * namespace then name. */
int sbx_reg_list(sbx_reg *reg, const char *ns, sbx_reg_row **rows, size_t *n, sbx_err *err);
/* 1 if any row has this namespace, 0 if none, -1 error. */
int sbx_reg_namespace_exists(sbx_reg *reg, const char *ns, sbx_err *err);
/* At server start: every row "running" becomes "stopped". */
int sbx_reg_mark_all_stopped(sbx_reg *reg, sbx_err *err);

void sbx_reg_row_free(sbx_reg_row *row);
void sbx_reg_rows_free(sbx_reg_row *rows, size_t n);

#endif
