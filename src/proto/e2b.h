/* The E2B front door (shared/protocols/e2b.md): E2B's control plane
 * (/sandboxes, /v2/sandboxes) and envd (requests carrying E2b-Sandbox-Id)
 * on the server's one listener, translated to the server's sandboxes in
 * namespace "e2b". */
#ifndef SBX_E2B_H
#define SBX_E2B_H

#include <stdbool.h>
#include "server.h"

/* Called by sbx_server_open: removes E2B sandboxes left in the registry by
 * an earlier server (they do not survive it) and starts the reaper that
 * kills sandboxes at their timeout. One server per process. */
int sbx_e2b_init(sbx_server *srv, sbx_err *err);
/* Called by sbx_server_close before the listener stops: kills every E2B
 * sandbox (which ends their streams) and stops the reaper. Safe when
 * sbx_e2b_init did not run. */
void sbx_e2b_shutdown(sbx_server *srv);
/* Serves the request if it is E2B's (true), else leaves it (false). */
bool sbx_e2b_route(sbx_server *srv, const sbx_http_req *req, sbx_http_resp *resp);

#endif
