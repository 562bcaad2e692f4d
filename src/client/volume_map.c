/* MSB_SHARED_VOLUME_PATH: the JSON array and the legacy comma form, with
 * the wrapper's checks in its order and its messages. */
#include "client_internal.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAR "MSB_SHARED_VOLUME_PATH"
#define EXAMPLE "Example: ['./data:/workspace', './shared:/sandbox/shared']"

void sbx_volume_mappings_free(sbx_volume_mapping *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].host);
        free(m[i].guest);
    }
    free(m);
}

int sbx_volume_mapping_parse(const char *entry, sbx_volume_mapping *out, sbx_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *colon = strchr(entry, ':');
    if (!colon)
        return sbx_fail(err, SBX_E_INVALID,
                        "Invalid volume mapping format: %s. Expected 'host_path:container_path'", entry);
    char *h = strndup(entry, (size_t)(colon - entry));
    char *host = h ? sbx_py_strip(h) : NULL, *guest = sbx_py_strip(colon + 1);
    free(h);
    if (!host || !guest) {
        free(host);
        free(guest);
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    }
    /* sbx rule: a trailing :ro / :rw is the mode, not part of the path. */
    size_t gl = strlen(guest);
    if (gl >= 3 && (strcmp(guest + gl - 3, ":ro") == 0 || strcmp(guest + gl - 3, ":rw") == 0)) {
        out->readonly = guest[gl - 1] == 'o';
        guest[gl - 3] = '\0';
        char *t = sbx_py_strip(guest);
        free(guest);
        guest = t;
    }
    if (!guest || !*host || !*guest) {
        free(host);
        free(guest);
        return sbx_fail(err, SBX_E_INVALID, "Invalid volume mapping format: %s. Both paths must be non-empty",
                        entry);
    }
    out->host = host;
    out->guest = guest;
    return 0;
}

static const char *py_type(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "dict";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "str";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "float";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    default: return "NoneType";
    }
}

static size_t count(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* The wrapper's hints after a JSON syntax error, keyed on what went wrong. */
static void json_hints(const char *v, const char *text, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
#define HINT(s) o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "\n%s", s)
    if (count(v, '"') == 0) {
        HINT("- Strings in JSON arrays must be quoted with double quotes");
        HINT("  Example: ['/path/to/host:/path/in/sandbox'] should be [\"/path/to/host:/path/in/sandbox\"]");
    }
    if (strstr(text, "']' expected") || strstr(text, "',' expected")) {
        HINT("- Check that the JSON array is properly closed with ']'");
        HINT("- Multiple items in JSON arrays must be separated by commas");
    }
    if (count(v, '"') % 2 != 0)
        HINT("- Check that all quotes are properly paired");
    if (o == 0) {
        HINT("- Ensure the value is valid JSON array format: [\"item1\", \"item2\"]");
        HINT("- Or use comma-separated format: item1,item2");
        HINT("- Or use single value format: item1");
    }
#undef HINT
}

/* Splits v into its entries: the strings of a JSON array, or the comma
 * separated parts. Returns a malloc'd array of malloc'd strings. */
static int split_entries(const char *v, char ***out, size_t *n, sbx_err *err)
{
    char repr[400];
    *out = NULL;
    *n = 0;
    if (v[0] == '[' || v[0] == '{') {
        sbx_py_repr(v, repr, sizeof(repr));
        if (v[0] == '{')
            return sbx_fail(err, SBX_E_INVALID,
                            VAR " must be an array of strings, not a JSON object. Got: %s\n" EXAMPLE, repr);
        if (v[strlen(v) - 1] != ']')
            return sbx_fail(err, SBX_E_INVALID,
                            VAR " appears to be JSON array but is malformed: missing closing bracket. Got: %s",
                            repr);
        if (count(v, '[') != count(v, ']'))
            return sbx_fail(err, SBX_E_INVALID, VAR " has mismatched brackets. Got: %s", repr);
        json_error_t je;
        json_t *j = json_loads(v, 0, &je);
        if (!j) {
            char hints[600];
            json_hints(v, je.text, hints, sizeof(hints));
            return sbx_fail(err, SBX_E_INVALID,
                            "Invalid JSON format in " VAR ": %s: line %d column %d (char %d)\nHelpful suggestions:%s",
                            je.text, je.line, je.column, je.position, hints);
        }
        if (!json_is_array(j)) {
            sbx_fail(err, SBX_E_INVALID, VAR " JSON must be an array of strings, got %s. " EXAMPLE, py_type(j));
            json_decref(j);
            return -1;
        }
        size_t len = json_array_size(j);
        for (size_t i = 0; i < len; i++) {
            json_t *it = json_array_get(j, i);
            if (!json_is_string(it)) {
                sbx_fail(err, SBX_E_INVALID,
                         VAR " item %zu must be a string, got %s. All volume mappings must be strings like "
                             "'host_path:sandbox_path'",
                         i, py_type(it));
                json_decref(j);
                return -1;
            }
        }
        char **e = calloc(len ? len : 1, sizeof(*e));
        for (size_t i = 0; e && i < len; i++) {
            e[i] = strdup(json_string_value(json_array_get(j, i)));
            if (!e[i]) {
                for (size_t k = 0; k < i; k++)
                    free(e[k]);
                free(e);
                e = NULL;
            }
        }
        json_decref(j);
        if (!e)
            return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        *out = e;
        *n = len;
        return 0;
    }
    size_t len = count(v, ',') + 1;
    char **e = calloc(len, sizeof(*e));
    if (!e)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    const char *p = v;
    for (size_t i = 0; i < len; i++) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        e[i] = strndup(p, l);
        if (!e[i]) {
            for (size_t k = 0; k < i; k++)
                free(e[k]);
            free(e);
            return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
        }
        p = c ? c + 1 : p + l;
    }
    *out = e;
    *n = len;
    return 0;
}

int sbx_volume_mappings_parse(const char *value, sbx_volume_mapping **out, size_t *n, sbx_err *err)
{
    *out = NULL;
    *n = 0;
    if (!value)
        return 0;
    char *v = sbx_py_strip(value);
    if (!v)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    char **entries = NULL;
    size_t ne = 0;
    int rc = *v ? split_entries(v, &entries, &ne, err) : 0;
    free(v);
    if (rc < 0)
        return -1;
    sbx_volume_mapping *m = calloc(ne ? ne : 1, sizeof(*m));
    size_t nm = 0;
    if (!m)
        rc = sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    /* Positions count skipped (empty) entries too, as the wrapper's do. */
    for (size_t i = 0; rc == 0 && i < ne; i++) {
        char *s = sbx_py_strip(entries[i]);
        if (!s) {
            rc = sbx_fail(err, SBX_E_SYSTEM, "out of memory");
            break;
        }
        if (*s) {
            sbx_err e = {0};
            if (sbx_volume_mapping_parse(s, &m[nm], &e) < 0)
                rc = sbx_fail(err, e.code,
                              "Invalid volume mapping at position %zu in " VAR ": %s\nGot: '%s'\n"
                              "Expected format: 'host_path:sandbox_path' (e.g., './data:/workspace')",
                              i, e.msg, s);
            else
                nm++;
        }
        free(s);
    }
    for (size_t i = 0; i < ne; i++)
        free(entries[i]);
    free(entries);
    if (rc < 0) {
        sbx_volume_mappings_free(m, nm);
        return -1;
    }
    *out = m;
    *n = nm;
    return 0;
}
