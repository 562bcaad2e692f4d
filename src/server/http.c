#include "http.h"
#include "util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

struct sbx_http {
    struct MHD_Daemon *d;
    sbx_http_handler handler;
    void *ud;
    size_t max_body;
};

/* Per-request state while the body arrives. */
struct upload {
    char *buf;
    size_t len, cap;
    int too_big;
};

static enum MHD_Result queue(struct MHD_Connection *c, sbx_http_resp *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (void *)"", r->body ? MHD_RESPMEM_MUST_FREE
                                                                                          : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r->body);
        return MHD_NO;
    }
    if (r->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    /* CORS as upstream: any origin, the methods and headers clients use. */
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Accept, Content-Type");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)version;
    sbx_http *h = cls;
    struct upload *u = *con_cls;
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u)
            return MHD_NO;
        *con_cls = u;
        return MHD_YES;
    }
    if (*data_size) {
        if (!u->too_big) {
            if (u->len + *data_size > h->max_body) {
                u->too_big = 1; /* keep reading, answer 413 at the end */
            } else {
                if (u->len + *data_size + 1 > u->cap) {
                    size_t nc = u->cap ? u->cap : 4096;
                    while (nc < u->len + *data_size + 1)
                        nc *= 2;
                    char *nb = realloc(u->buf, nc);
                    if (!nb)
                        return MHD_NO;
                    u->buf = nb;
                    u->cap = nc;
                }
                memcpy(u->buf + u->len, data, *data_size);
                u->len += *data_size;
            }
        }
        *data_size = 0;
        return MHD_YES;
    }
    sbx_http_resp r = {0};
    if (u->too_big) {
        r.status = 413;
        r.content_type = "text/plain";
        r.body = strdup("request body too large\n");
        r.body_len = r.body ? strlen(r.body) : 0;
    } else {
        sbx_http_req req = {method, url, u->buf ? u->buf : "", u->len, c};
        if (u->buf)
            u->buf[u->len] = '\0';
        h->handler(h->ud, &req, &r);
    }
    return queue(c, &r);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct upload *u = *con_cls;
    if (u) {
        free(u->buf);
        free(u);
        *con_cls = NULL;
    }
}

int sbx_http_start(const char *host, uint16_t port, size_t max_body, sbx_http_handler handler, void *ud,
                   sbx_http **out, uint16_t *bound_port, sbx_err *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return sbx_fail(err, SBX_E_INVALID, "host '%s' is not an IPv4 address (e.g. 127.0.0.1, 0.0.0.0)", host);
    sbx_http *h = calloc(1, sizeof(*h));
    if (!h)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    h->handler = handler;
    h->ud = ud;
    h->max_body = max_body;
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, port,
                            NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)300, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot listen on %s:%u (in use, or not permitted)", host, port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = di ? di->port : port;
    *out = h;
    return 0;
}

void sbx_http_stop(sbx_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}

const char *sbx_http_header(const sbx_http_req *req, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)req->conn, MHD_HEADER_KIND, name);
}
