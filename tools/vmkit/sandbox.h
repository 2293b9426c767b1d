/* serve-device's sandbox for a file-system server: the guest drives the server, so a bug there
 * must not reach the rest of the host. Two steps: sandbox_prepare before any thread exists (new
 * namespaces need a single-threaded process), sandbox_enter once the server holds every fd it
 * needs (the share's root, /proc/self/fd, the vhost-user socket): chroot into the share, no new
 * privileges, and a seccomp allow-list on every thread. */
#ifndef VMKIT_CLI_SANDBOX_H
#define VMKIT_CLI_SANDBOX_H

#include "cli.h"

#include <stddef.h>

/* 0, or -1 with msg saying why. */
int sandbox_prepare(enum cli_fs_sandbox mode, char *msg, size_t len);
int sandbox_enter(enum cli_fs_sandbox mode, const char *dir, char *msg, size_t len);

#endif
