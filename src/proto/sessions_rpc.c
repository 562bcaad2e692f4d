/* JSON-RPC methods of the session layer (sbx extensions next to the
 * sandbox.* ones): session.execute_code, session.execute_command,
 * session.list, session.stop, session.volumes, session.stats,
 * session.cleanup_orphans. They only translate; src/server/sessions.c
 * does the work. */
#include "rpc.h"
#include "sessions.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static int sess_fail(sbx_rpc_err *e, const sbx_sess_err *se)
{
    int http = 500, code = 5002;
    switch (se->cls) {
    case SBX_SESS_INVALID: http = 400, code = 2001; break;
    case SBX_SESS_RESOURCE: http = 429, code = 5003; break;
    case SBX_SESS_NOTFOUND: http = 404, code = 4001; break;
    default: break;
    }
    sbx_rpc_fail(e, http, code, "%s", se->msg);
    snprintf(e->kind, sizeof(e->kind), "%s", sbx_sess_errcode(se->cls));
    return -1;
}

static int opt_string(const char *method, json_t *params, const char *key, const char **out, sbx_rpc_err *e)
{
    json_t *j = json_object_get(params, key);
    *out = NULL;
    if (!j || json_is_null(j))
        return 0;
    if (!json_is_string(j))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: %s must be a string", method, key);
    *out = json_string_value(j);
    return 0;
}

/* The fields both execute methods share. */
static int call_params(const char *method, json_t *params, sbx_sess_call *c, sbx_rpc_err *e)
{
    memset(c, 0, sizeof(*c));
    if (opt_string(method, params, "session_id", &c->session_id, e) < 0 ||
        opt_string(method, params, "template", &c->template, e) < 0 ||
        opt_string(method, params, "flavor", &c->flavor, e) < 0)
        return -1;
    json_t *t = json_object_get(params, "timeout");
    if (t && !json_is_null(t)) {
        if (!json_is_number(t) || json_number_value(t) < 0)
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for %s: timeout must be a positive number of seconds",
                                method);
        c->timeout = json_number_value(t); /* 0 means the default, as upstream */
    }
    return 0;
}

static int m_execute_code(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    sbx_sess_call c;
    if (call_params("session.execute_code", params, &c, e) < 0 ||
        opt_string("session.execute_code", params, "code", &c.code, e) < 0)
        return -1;
    if (!c.code)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for session.execute_code: missing field `code`");
    sbx_sess_err se;
    *result = sbx_sessions_execute_code(srv->sessions, &c, &se);
    return *result ? 0 : sess_fail(e, &se);
}

static int m_execute_command(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    sbx_sess_call c;
    if (call_params("session.execute_command", params, &c, e) < 0 ||
        opt_string("session.execute_command", params, "command", &c.command, e) < 0)
        return -1;
    if (!c.command || !*c.command)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for session.execute_command: missing field `command`");
    json_t *ja = json_object_get(params, "args");
    if (ja && !json_is_null(ja) && !json_is_array(ja))
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for session.execute_command: args must be an array of strings");
    size_t n = json_array_size(ja);
    char **args = calloc(n + 1, sizeof(char *));
    if (!args)
        return sbx_rpc_internal(e, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(ja, i);
        if (!json_is_string(a)) {
            free(args);
            return sbx_rpc_fail(e, 400, 2001, "Invalid params for session.execute_command: args[%zu] must be a string", i);
        }
        args[i] = (char *)json_string_value(a);
    }
    c.args = args;
    sbx_sess_err se;
    *result = sbx_sessions_execute_command(srv->sessions, &c, &se);
    free(args);
    return *result ? 0 : sess_fail(e, &se);
}

static int m_list(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *id;
    if (opt_string("session.list", params, "session_id", &id, e) < 0)
        return -1;
    *result = sbx_sessions_list(srv->sessions, id);
    return 0;
}

static int m_stop(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    const char *id;
    if (opt_string("session.stop", params, "session_id", &id, e) < 0)
        return -1;
    if (!id)
        return sbx_rpc_fail(e, 400, 2001, "Invalid params for session.stop: missing field `session_id`");
    *result = json_boolean(sbx_sessions_stop(srv->sessions, id));
    return 0;
}

static int m_volumes(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    *result = sbx_sessions_volumes(srv->sessions);
    return 0;
}

static int m_stats(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    *result = sbx_sessions_stats(srv->sessions);
    return 0;
}

static int m_orphans(sbx_server *srv, json_t *params, json_t **result, sbx_rpc_err *e)
{
    *result = json_integer(sbx_sessions_sweep_orphans(srv->sessions));
    return 0;
}

static const sbx_rpc_method methods[] = {
    {"session.execute_code", m_execute_code, false},
    {"session.execute_command", m_execute_command, false},
    {"session.list", m_list, false},
    {"session.stop", m_stop, false},
    {"session.volumes", m_volumes, false},
    {"session.stats", m_stats, false},
    {"session.cleanup_orphans", m_orphans, false},
};

const sbx_rpc_method *sbx_sessions_find(const char *name)
{
    for (size_t i = 0; i < SBX_ARRAY_LEN(methods); i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}
