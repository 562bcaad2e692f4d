/* sbx prune: drop what sbx keeps between runs (idle network namespaces,
 * the shared /etc views). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_prune(int argc, char **argv)
{
    if (argc > 1) {
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "%susage: sbx prune\n"
                "\n"
                "Drops the idle network namespaces that sandboxes leave in the run dir\n"
                "($SBX_RUN_DIR/netns, default /run/sbx/netns) for the next ones to reuse,\n"
                "the shared read-only views of /etc ($SBX_RUN_DIR/etc-view) that\n"
                "sandboxes mount, and the /etc masks that changes of the host's /etc\n"
                "replaced, once no live sandbox reads them. Namespaces of live sandboxes\n"
                "stay; live sandboxes keep their /etc. The next sandboxes make new ones.\n",
                help ? "" : "sbx prune: takes no arguments\n");
        return help ? 0 : SBX_EXIT_OWN_ERROR;
    }
    sbx_engine *eng;
    sbx_err err = {0};
    if (cli_engine_open(&eng, &err) < 0) {
        fprintf(stderr, "sbx: %s\n", err.msg);
        return SBX_EXIT_OWN_ERROR;
    }
    int busy = 0, views = 0, n = sbx_engine_prune(eng, &busy, &views, &err);
    sbx_engine_close(eng);
    if (n < 0) {
        fprintf(stderr, "sbx prune: %s\n", err.msg);
        return SBX_EXIT_OWN_ERROR;
    }
    printf("dropped %d idle network namespace%s", n, n == 1 ? "" : "s");
    if (busy)
        printf(" (%d in use by live sandboxes kept)", busy);
    if (views)
        printf(", %d /etc view%s", views, views == 1 ? "" : "s");
    printf("\n");
    return 0;
}
