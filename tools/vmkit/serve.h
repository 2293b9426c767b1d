/* vmkit serve-device. */
#ifndef VMKIT_SERVE_H
#define VMKIT_SERVE_H

#include "cli.h"

/* Serves the device req names on req->socket until SIGINT or SIGTERM; the exit status. */
int serve_device(const struct cli_request *req);

#endif
