/* The session layer (shared/protocols/sessions.md): sessions that own a
 * sandbox each, started lazily, reused by id, expired when idle, limited in
 * number and total memory with LRU eviction, plus the orphan sweep. It
 * runs inside the server and drives sandboxes through the same functions
 * as the microsandbox methods. Protocol glue: src/proto/sessions_rpc.c. */
#ifndef SBX_SESSIONS_H
#define SBX_SESSIONS_H

#include <jansson.h>
#include "sbx/client.h"

typedef struct sbx_server sbx_server;
typedef struct sbx_sessions sbx_sessions;

/* Error classes of the wrapper (error_code in replies). */
enum sbx_session_errclass {
    SBX_SESS_OK = 0,
    SBX_SESS_INVALID,          /* bad parameters (400) */
    SBX_SESS_CREATION,         /* SandboxCreationError */
    SBX_SESS_CODE,             /* CodeExecutionError */
    SBX_SESS_COMMAND,          /* CommandExecutionError */
    SBX_SESS_RESOURCE,         /* ResourceLimitError */
    SBX_SESS_NOTFOUND,         /* SessionNotFoundError */
};

typedef struct sbx_sess_err {
    int cls;        /* enum sbx_session_errclass */
    char msg[512];
} sbx_sess_err;

/* The error_code string of a class, e.g. "RESOURCE_LIMIT_ERROR". */
const char *sbx_sess_errcode(int cls);

/* Starts the layer with cfg (copied) and its cleanup thread. */
int sbx_sessions_open(sbx_server *srv, const sbx_client_config *cfg, sbx_sessions **out, sbx_err *err);
/* Stops the thread and every session's sandbox. */
void sbx_sessions_close(sbx_sessions *ss);

typedef struct sbx_sess_call {
    const char *session_id; /* NULL: a new session */
    const char *template;   /* "python" (default) | "node" | "nodejs" | "javascript" */
    const char *flavor;     /* NULL: the configured default */
    double timeout;         /* seconds; 0: MSB_EXECUTION_TIMEOUT */
    const char *code;       /* execute_code */
    const char *command;    /* execute_command: argv[0] ... */
    char *const *args;      /* ... and the rest (NULL-terminated), no shell */
} sbx_sess_call;

/* Results as in sessions.md §10; NULL with e set on failure. */
json_t *sbx_sessions_execute_code(sbx_sessions *ss, const sbx_sess_call *c, sbx_sess_err *e);
json_t *sbx_sessions_execute_command(sbx_sessions *ss, const sbx_sess_call *c, sbx_sess_err *e);
/* [SessionInfo...]; one id: that one or []. */
json_t *sbx_sessions_list(sbx_sessions *ss, const char *session_id);
/* true if it existed. */
bool sbx_sessions_stop(sbx_sessions *ss, const char *session_id);
json_t *sbx_sessions_volumes(sbx_sessions *ss);
json_t *sbx_sessions_stats(sbx_sessions *ss);
/* Runs the orphan sweep now; returns how many it stopped. */
int sbx_sessions_sweep_orphans(sbx_sessions *ss);
/* true when (ns, name) is a sandbox of a live session. */
bool sbx_sessions_owns(sbx_sessions *ss, const char *ns, const char *name);

#endif
