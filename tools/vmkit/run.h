/* vmkit run. */
#ifndef VMKIT_RUN_H
#define VMKIT_RUN_H

#include "cli.h"

/* Builds the machine req describes, runs it until it stops and returns the exit status (the
 * table in cli.h). exe_path: this binary's absolute path, for finding the default guest. */
int run_vm(const struct cli_request *req, const char *exe_path);

#endif
