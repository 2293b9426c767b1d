/* The host side of virtio-vsock on unix sockets, in the two conventions users bring:
 *
 *  - Firecracker's (a udsPath): a guest connecting to port P reaches the unix socket
 *    "<path>_P", where a host program listens; a host program connects to <path>, vmkit's
 *    listener, writes "CONNECT P\n" and, once the guest accepts, reads "OK <host port>\n"
 *    before the guest's bytes (or is closed when the guest refuses or does not answer within
 *    VIRTIO_VSOCK_CONNECT_TIMEOUT_MS).
 *  - vfkit's (a port mapped to a socket): connect mode, a guest connecting to the port
 *    reaches a program listening on the socket; listen mode, vmkit listens on the socket and
 *    each client reaches the guest's port.
 *
 * Its listeners run on the device's event loop and never block it: a client has
 * VSOCK_UNIX_LINE_TIMEOUT_MS to send its CONNECT line, at most VSOCK_UNIX_MAX_PENDING
 * clients wait at once, and a connect to a program's socket never waits (a full backlog
 * refuses the guest). */
#ifndef VMK_ATTACH_VSOCK_UNIX_H
#define VMK_ATTACH_VSOCK_UNIX_H

#include "attach/vsock_host.h"
#include "core/event_loop.h"
#include "vmkit.h"

#include <stdbool.h>
#include <stdint.h>

#define VSOCK_UNIX_MAX_PENDING     16
#define VSOCK_UNIX_LINE_MAX        32 /* "CONNECT 4294967295\n" and then some */
#define VSOCK_UNIX_LINE_TIMEOUT_MS 5000

struct vsock_unix_port {
    uint32_t port;
    const char *path;
    bool listen;
};

struct vsock_unix_params {
    /* Asked first when the guest connects to a host port: a stream socket, or -ENOENT to
     * let the mappings below decide. May be NULL. */
    int (*listener)(void *ctx, uint32_t port);
    void *listener_ctx;
    const char *uds_path; /* Firecracker's convention; NULL: none */
    const struct vsock_unix_port *ports;
    unsigned port_count;
};

struct vsock_unix;

/* Creates the listeners (uds_path, and each listen-mode port's socket): a path taken by a live
 * listener or another file is an error naming what and the path. */
vmk_result vsock_unix_open(const struct vsock_unix_params *p, const char *what,
                           struct vsock_unix **out, vmk_error **err);
/* The ops the device takes, with u as their context. */
const struct vsock_host_ops *vsock_unix_ops(void);
/* Accepts clients from now on, on el, and connects them through to the guest with guest (the
 * device made with vsock_unix_ops and u). 0 or -errno. */
int vsock_unix_start(struct vsock_unix *u, struct event_loop *el,
                     const struct vsock_guest_connector *guest);
/* Stops listening and removes the socket files it made. Before the device is destroyed. */
void vsock_unix_close(struct vsock_unix *u);

#endif
