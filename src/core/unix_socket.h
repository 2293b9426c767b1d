/* A listening unix stream socket at a path that vmkit owns while it listens: a stale socket
 * file nobody listens on (left by a crash) is replaced; a live listener or another kind of
 * file there is someone else's and makes the call fail. Serial and console ports on a
 * socket, and the vhost-user server, listen this way. */
#ifndef VMK_CORE_UNIX_SOCKET_H
#define VMK_CORE_UNIX_SOCKET_H

#include "vmkit.h"

#include <sys/stat.h>

/* Binds and listens (backlog) at path; *fd is the socket, non-blocking and close-on-exec, and
 * *made the identity of the socket file, for unix_socket_remove. Errors name what ("console
 * port 1", "vhost-user") and the path; *fd is then -1. */
vmk_result unix_socket_listen(const char *path, int backlog, const char *what, int *fd,
                              struct stat *made, vmk_error **err)
    __attribute__((warn_unused_result));
/* Removes path if it is still the socket file made describes (someone may have put another
 * file there since). */
void unix_socket_remove(const char *path, const struct stat *made);

#endif
