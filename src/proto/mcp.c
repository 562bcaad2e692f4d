/* MCP server core (shared/protocols/microsandbox.md §7): initialize,
 * ping, tools/list, tools/call, prompts/list, prompts/get. No I/O here:
 * the transport hands over parsed messages and performs tool methods. */
#include "mcp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- tools ---------------------------------------------------------------
 * One row per tool. `schema` is the inputSchema as JSON text; arguments
 * are checked against it (types, required) before `method` runs with the
 * arguments as its params, unchanged, so extra fields (e.g. `timeout`)
 * pass through. `namespace` is listed but never required: sbx defaults it
 * to "default". A failure reads "Error: <error_prefix>: <detail>". */
typedef struct mcp_tool {
    const char *name;
    const char *method;
    const char *error_prefix;
    const char *description;
    const char *schema;
} mcp_tool;

#define NS_PROP "\"namespace\":{\"type\":\"string\",\"description\":\"Namespace of the sandbox (default: default)\"}"

static const mcp_tool tools[] = {
    {"sandbox_start", "sandbox.start", "Sandbox start failed",
     "Start a sandbox (an isolated environment for running code) with the given configuration; starting a "
     "running sandbox changes nothing. Stop it with sandbox_stop when done: it keeps its resources until then. "
     "Images: 'microsandbox/python' for Python, 'microsandbox/node' for Node.js.",
     "{\"type\":\"object\",\"properties\":{"
     "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox to start\"}," NS_PROP ","
     "\"config\":{\"type\":\"object\",\"description\":\"Sandbox configuration\",\"properties\":{"
     "\"image\":{\"type\":\"string\",\"description\":\"Image: microsandbox/python or microsandbox/node\","
     "\"enum\":[\"microsandbox/python\",\"microsandbox/node\"]},"
     "\"memory\":{\"type\":\"integer\",\"description\":\"Memory limit in MiB\"},"
     "\"cpus\":{\"type\":\"integer\",\"description\":\"Number of CPUs\"},"
     "\"volumes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"Volume mounts, host:guest\"},"
     "\"ports\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"Port mappings, host:guest\"},"
     "\"envs\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"Environment variables, KEY=VALUE\"}"
     "}}},\"required\":[\"sandbox\"]}"},
    {"sandbox_stop", "sandbox.stop", "Sandbox stop failed",
     "Stop a running sandbox and free its resources; its files are kept for a later sandbox_start. Always stop "
     "a sandbox you started once you are finished with it.",
     "{\"type\":\"object\",\"properties\":{"
     "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox to stop\"}," NS_PROP
     "},\"required\":[\"sandbox\"]}"},
    {"sandbox_run_code", "sandbox.repl.run", "Internal error",
     "Run code in a started sandbox's persistent interpreter (state survives between calls). The sandbox must "
     "have been started with sandbox_start. The call waits until the code finishes or times out.",
     "{\"type\":\"object\",\"properties\":{"
     "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox (already started)\"}," NS_PROP ","
     "\"code\":{\"type\":\"string\",\"description\":\"Code to run\"},"
     "\"language\":{\"type\":\"string\",\"description\":\"Language: python or node (also nodejs, javascript)\"}"
     "},\"required\":[\"sandbox\",\"code\",\"language\"]}"},
    {"sandbox_run_command", "sandbox.command.run", "Internal error",
     "Run a command (no shell: the program and its arguments) in a started sandbox. The sandbox must have been "
     "started with sandbox_start. The call waits until the command exits or times out.",
     "{\"type\":\"object\",\"properties\":{"
     "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox (already started)\"}," NS_PROP ","
     "\"command\":{\"type\":\"string\",\"description\":\"Program to run\"},"
     "\"args\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"Its arguments\"}"
     "},\"required\":[\"sandbox\",\"command\"]}"},
    {"sandbox_get_metrics", "sandbox.metrics.get", "Get metrics failed",
     "Status and resource use (CPU %, memory MiB, disk bytes) of configured sandboxes, running or stopped.",
     "{\"type\":\"object\",\"properties\":{"
     "\"sandbox\":{\"type\":\"string\",\"description\":\"Only this sandbox (default: all)\"},"
     "\"namespace\":{\"type\":\"string\",\"description\":\"Namespace to query, '*' for all (default: default)\"}"
     "}}"},
    /* Session tools (issue 5: execute_code, execute_command, get_sessions,
     * stop_session, get_volume_mappings) join here once their methods exist. */
};

static const mcp_tool *find_tool(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(tools); i++)
        if (strcmp(tools[i].name, name) == 0)
            return &tools[i];
    return NULL;
}

/* ---- prompts --------------------------------------------------------- */

typedef struct mcp_prompt {
    const char *name, *description, *lang, *image, *default_name, *purpose;
} mcp_prompt;

static const mcp_prompt prompts[] = {
    {"create_python_sandbox", "Create a Python development sandbox", "Python", "microsandbox/python", "python-sandbox",
     "a Python development environment ready for code execution"},
    {"create_node_sandbox", "Create a Node.js development sandbox", "Node.js", "microsandbox/node", "node-sandbox",
     "a Node.js development environment ready for JavaScript execution"},
};

/* ---- replies ------------------------------------------------------------ */

json_t *sbx_mcp_error(json_t *id, int code, const char *msg)
{
    return json_pack("{s:s, s:{s:i, s:s}, s:O}", "jsonrpc", "2.0", "error", "code", code, "message", msg, "id",
                     id ? id : json_null());
}

static json_t *ok(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result ? result : json_null(), "id", id);
}

/* Failures of the MCP layer itself: -32603 "MCP method error: ...". */
static json_t *method_error(json_t *id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *method_error(json_t *id, const char *fmt, ...)
{
    char detail[1024], msg[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "MCP method error: %s", detail);
    return sbx_mcp_error(id, -32603, msg);
}

static json_t *text_result(const char *text, int is_error)
{
    json_t *r = json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", text);
    if (is_error)
        json_object_set_new(r, "isError", json_true());
    return r;
}

static json_t *tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *tool_error(const char *fmt, ...)
{
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return text_result(msg, 1);
}

/* ---- argument checking against a tool's schema --------------------------- */

static int type_ok(json_t *v, const char *type)
{
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    return 1;
}

/* Checks v against schema (type, properties, required, items); `enum` is
 * advice to clients, not enforced: the methods accept other images. A null
 * optional field counts as absent, as the methods treat it. 0, or -1 with
 * the detail in msg. */
static int check_value(json_t *v, json_t *schema, const char *path, char *msg, size_t len)
{
    const char *type = json_string_value(json_object_get(schema, "type"));
    json_t *items = json_object_get(schema, "items");
    if (type && !type_ok(v, type)) {
        const char *it = json_string_value(json_object_get(items, "type"));
        snprintf(msg, len, "%s must be %s %s%s%s%s", *path ? path : "arguments", strchr("aeiou", type[0]) ? "an" : "a",
                 type, it ? " of " : "", it ? it : "", it ? "s" : "");
        return -1;
    }
    char sub[256];
    if (json_is_array(v) && items) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            if (check_value(e, items, sub, msg, len) < 0)
                return -1;
        }
    }
    if (!json_is_object(v))
        return 0;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(schema, "required"), i, r) {
        json_t *f = json_object_get(v, json_string_value(r));
        if (!f || json_is_null(f)) {
            snprintf(msg, len, "missing field `%s%s%s`", path, *path ? "." : "", json_string_value(r));
            return -1;
        }
    }
    const char *key;
    json_t *ps;
    json_object_foreach(json_object_get(schema, "properties"), key, ps) {
        json_t *f = json_object_get(v, key);
        if (!f || json_is_null(f))
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", key);
        if (check_value(f, ps, sub, msg, len) < 0)
            return -1;
    }
    return 0;
}

/* ---- methods -------------------------------------------------------------- */

static const char *const versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};

const char *sbx_mcp_negotiate(json_t *init_params)
{
    const char *want = json_string_value(json_object_get(init_params, "protocolVersion"));
    for (size_t i = 0; want && i < ARRAY_LEN(versions); i++)
        if (strcmp(want, versions[i]) == 0)
            return versions[i];
    return "2024-11-05"; /* the contract's revision; clients that asked for another may disconnect */
}

static json_t *m_initialize(json_t *params)
{
    return json_pack("{s:s, s:{s:{s:b}, s:{s:b}}, s:{s:s, s:s}}", "protocolVersion", sbx_mcp_negotiate(params),
                     "capabilities", "tools", "listChanged", 0, "prompts", "listChanged", 0, "serverInfo", "name",
                     "microsandbox-server", "version", SBX_MCP_SERVER_VERSION);
}

static json_t *m_tools_list(void)
{
    json_t *list = json_array();
    for (size_t i = 0; i < ARRAY_LEN(tools); i++) {
        json_error_t jerr;
        json_t *schema = json_loads(tools[i].schema, 0, &jerr);
        if (!schema) { /* a typo in the table: say which row, do not die */
            fprintf(stderr, "mcp: schema of tool %s is not JSON: %s\n", tools[i].name, jerr.text);
            schema = json_pack("{s:s}", "type", "object");
        }
        json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "name", tools[i].name, "description",
                                              tools[i].description, "inputSchema", schema));
    }
    return json_pack("{s:o}", "tools", list);
}

static json_t *m_tools_call(const sbx_mcp_ctx *ctx, json_t *id, json_t *params)
{
    if (!json_is_object(params))
        return method_error(id, "Validation error: Request parameters must be an object");
    const char *name = json_string_value(json_object_get(params, "name"));
    if (!name)
        return method_error(id, "Validation error: Missing required 'name' parameter");
    json_t *args = json_object_get(params, "arguments");
    if (!args)
        return method_error(id, "Validation error: Missing required 'arguments' parameter");
    const mcp_tool *t = find_tool(name);
    if (!t)
        return method_error(id, "Resource not found: Tool '%s' not found", name);

    char msg[1024];
    json_t *schema = json_loads(t->schema, 0, NULL);
    int bad = !json_is_object(args) ? (snprintf(msg, sizeof(msg), "arguments must be an object"), -1)
                                    : check_value(args, schema, "", msg, sizeof(msg));
    json_decref(schema);
    if (bad < 0)
        return ok(id, tool_error("Error: Invalid parameters: %s", msg));

    /* `stream` asks the RPC layer for an NDJSON reply; a tool result is
     * one piece, so it never goes through. */
    json_t *fwd = json_copy(args);
    json_object_del(fwd, "stream");
    json_t *result = NULL;
    msg[0] = '\0';
    int rc = ctx->call(ctx->ud, t->method, fwd, &result, msg, sizeof(msg));
    json_decref(fwd);
    if (rc < 0) {
        json_decref(result);
        return ok(id, tool_error("Error: %s: %s", t->error_prefix, msg[0] ? msg : "unknown error"));
    }
    /* Pretty-printed JSON of the result; a string result stays quoted. */
    char *text = json_dumps(result ? result : json_null(), JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
    json_decref(result);
    json_t *r = text ? text_result(text, 0) : tool_error("Error: %s: cannot encode the result", t->error_prefix);
    free(text);
    return ok(id, r);
}

static json_t *m_prompts_list(void)
{
    json_t *list = json_array();
    for (size_t i = 0; i < ARRAY_LEN(prompts); i++)
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}]}", "name", prompts[i].name,
                            "description", prompts[i].description, "arguments", "name", "sandbox_name",
                            "description", "Name for the new sandbox", "required", 1, "name", "namespace",
                            "description", "Namespace for the sandbox", "required", 1));
    return json_pack("{s:o}", "prompts", list);
}

static json_t *m_prompts_get(json_t *id, json_t *params)
{
    if (!json_is_object(params))
        return method_error(id, "Validation error: Request parameters must be an object");
    const char *name = json_string_value(json_object_get(params, "name"));
    if (!name)
        return method_error(id, "Validation error: Missing required 'name' parameter");
    const mcp_prompt *p = NULL;
    for (size_t i = 0; i < ARRAY_LEN(prompts); i++)
        if (strcmp(prompts[i].name, name) == 0)
            p = &prompts[i];
    if (!p)
        return method_error(id, "Resource not found: Prompt '%s' not found", name);
    json_t *args = json_object_get(params, "arguments");
    const char *sb = json_string_value(json_object_get(args, "sandbox_name"));
    const char *ns = json_string_value(json_object_get(args, "namespace"));
    char *text = NULL;
    if (asprintf(&text,
                 "Create a %s sandbox named '%s' in namespace '%s' using the sandbox_start tool with the following "
                 "configuration:\n\n- Image: %s\n- Memory: 512 MiB\n- CPUs: 1\n- Working directory: /workspace\n\n"
                 "This will set up %s.",
                 p->lang, sb ? sb : p->default_name, ns ? ns : "default", p->image, p->purpose) < 0)
        return method_error(id, "Internal server error: out of memory");
    json_t *r = json_pack("{s:s, s:[{s:s, s:{s:s, s:s}}]}", "description", p->description, "messages", "role", "user",
                          "content", "type", "text", "text", text);
    free(text);
    return ok(id, r);
}

/* ---- dispatch ------------------------------------------------------------- */

json_t *sbx_mcp_dispatch(const sbx_mcp_ctx *ctx, json_t *msg)
{
    if (!json_is_object(msg))
        return sbx_mcp_error(NULL, -32600, "Invalid Request: a message must be a JSON object");
    json_t *id = json_object_get(msg, "id");
    json_t *jm = json_object_get(msg, "method");
    const char *jv = json_string_value(json_object_get(msg, "jsonrpc"));
    if (!jv || strcmp(jv, "2.0") != 0)
        return sbx_mcp_error(id, -32600, "Invalid or missing jsonrpc version field");
    if (!jm) {
        /* A response to a server request: sbx sends none, nothing to do. */
        if (!id || json_object_get(msg, "result") || json_object_get(msg, "error"))
            return NULL;
        return sbx_mcp_error(id, -32600, "Invalid Request: missing field `method`");
    }
    if (!json_is_string(jm))
        return sbx_mcp_error(id, -32600, "Invalid Request: `method` must be a string");
    const char *method = json_string_value(jm);
    /* notifications/initialized and friends never get a reply (upstream
     * answers notifications/initialized with nothing even when it carries
     * an id); other notifications are accepted and ignored. */
    if (strncmp(method, "notifications/", 14) == 0 || !id)
        return NULL;
    json_t *params = json_object_get(msg, "params");
    if (strcmp(method, "initialize") == 0)
        return ok(id, m_initialize(params));
    if (strcmp(method, "ping") == 0)
        return ok(id, json_object());
    if (strcmp(method, "tools/list") == 0)
        return ok(id, m_tools_list());
    if (strcmp(method, "tools/call") == 0)
        return m_tools_call(ctx, id, params);
    if (strcmp(method, "prompts/list") == 0)
        return ok(id, m_prompts_list());
    if (strcmp(method, "prompts/get") == 0)
        return m_prompts_get(id, params);
    return method_error(id, "Resource not found: MCP method '%s' not found", method);
}

/* JSON-RPC batches came with revision 2025-03-26 and went with 2025-06-18;
 * an unknown revision is treated as an older one (HTTP clients that send
 * no MCP-Protocol-Version are taken to speak 2025-03-26). */
static int batch_allowed(const char *version)
{
    return !version || strcmp(version, "2025-06-18") < 0;
}

json_t *sbx_mcp_handle(const sbx_mcp_ctx *ctx, json_t *body)
{
    if (!json_is_array(body))
        return sbx_mcp_dispatch(ctx, body);
    if (!batch_allowed(ctx->protocol_version)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Invalid Request: JSON-RPC batches are not part of protocol revision %s",
                 ctx->protocol_version);
        return sbx_mcp_error(NULL, -32600, msg);
    }
    if (json_array_size(body) == 0)
        return sbx_mcp_error(NULL, -32600, "Invalid Request: empty batch");
    json_t *replies = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(body, i, m) {
        json_t *r = sbx_mcp_dispatch(ctx, m);
        if (r)
            json_array_append_new(replies, r);
    }
    if (json_array_size(replies) == 0) {
        json_decref(replies);
        return NULL;
    }
    return replies;
}

static int is_initialize(json_t *m)
{
    const char *method = json_string_value(json_object_get(m, "method"));
    return method && strcmp(method, "initialize") == 0 && json_object_get(m, "id");
}

int sbx_mcp_has_initialize(json_t *body)
{
    if (!json_is_array(body))
        return is_initialize(body);
    size_t i;
    json_t *m;
    json_array_foreach(body, i, m) {
        if (is_initialize(m))
            return 1;
    }
    return 0;
}
