/* `sbx config check`: the wrapper guide's validation script, run on the
 * configuration exactly as `sbx server start` loads it. */
#include "sbx/client.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: sbx config check\n"
    "\n"
    "Loads the MSB_* configuration the way `sbx server start` does (the\n"
    "environment, then ./.env for what the environment does not set) and\n"
    "prints what it finds: ✓ loaded, ⚠ warnings, ✗ errors, then a summary.\n"
    "Exit status: 0 when the configuration is usable, 1 on an error.\n";

int sbx_config_check_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 125 : 0;
    }
    if (strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "sbx config: unknown command '%s'\n%s", argv[1], usage_text);
        return 125;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        fprintf(stderr, "sbx config check: unexpected argument '%s'\n%s", argv[i], usage_text);
        return 125;
    }

    sbx_client_config cfg;
    sbx_err err = {0};
    if (sbx_client_config_from_env(&cfg, &err) < 0 || sbx_client_config_validate(&cfg, &err) < 0) {
        printf("✗ Configuration error: %s\n", err.msg);
        sbx_client_config_free(&cfg);
        return 1;
    }
    printf("✓ Configuration loaded successfully\n");
    /* The script's checks, kept even where loading already refuses the
     * value (URL scheme, ranges): they say what the script says. */
    if (strncmp(cfg.server_url, "http://", 7) != 0 && strncmp(cfg.server_url, "https://", 8) != 0)
        printf("⚠ Server URL should start with http:// or https://\n");
    if (cfg.session_timeout < 60)
        printf("⚠ Session timeout is very short (< 1 minute)\n");
    if (cfg.default_execution_timeout > cfg.session_timeout)
        printf("⚠ Execution timeout is longer than session timeout\n");
    if (cfg.max_concurrent_sessions > 100)
        printf("⚠ Very high max sessions (> 100)\n");
    int errors = 0;
    for (size_t i = 0; i < cfg.n_shared_volume_mappings; i++) {
        const sbx_volume_mapping *m = &cfg.shared_volume_mappings[i];
        struct stat st;
        if (!m->host || !*m->host || !m->guest || !*m->guest) {
            printf("✗ Invalid volume mapping format: %s:%s\n", m->host ? m->host : "", m->guest ? m->guest : "");
            errors++;
        } else if (stat(m->host, &st) < 0) {
            printf("⚠ Host path does not exist: %s\n", m->host);
        }
    }
    printf("\nConfiguration summary:\n");
    printf("  Server URL: %s\n", cfg.server_url);
    printf("  Max sessions: %d\n", cfg.max_concurrent_sessions);
    printf("  Session timeout: %ds\n", cfg.session_timeout);
    printf("  Default flavor: %s\n", sbx_flavor_name(cfg.default_flavor));
    printf("  Volume mappings: %zu\n", cfg.n_shared_volume_mappings);
    sbx_client_config_free(&cfg);
    return errors ? 1 : 0;
}
