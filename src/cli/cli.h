/* The sbx command line: one file per subcommand, all thin over libsbx. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include "sbx/engine.h"

/* Exit codes of sbx itself (docker's convention). */
#define SBX_EXIT_OWN_ERROR 125
#define SBX_EXIT_TIMEOUT 124

int cmd_run(int argc, char **argv);
/* Whether `sbx run` ARGS asks for the step runner (step_detect.c). */
int cli_step_wanted(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* The engine configuration from the SBX_* environment variables. */
int cli_engine_config(sbx_engine_config *cfg, sbx_err *err);
/* Opens the engine with that configuration. */
int cli_engine_open(sbx_engine **eng, sbx_err *err);
#endif
