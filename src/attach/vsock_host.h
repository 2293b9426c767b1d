/* The contract between virtio-vsock (virtio/vsock.c) and its host side (vsock_unix.c, or the
 * library's own listeners), as net_link.h is virtio-net's: where a guest's connection goes,
 * and how the host side starts one to the guest. */
#ifndef VMK_ATTACH_VSOCK_HOST_H
#define VMK_ATTACH_VSOCK_HOST_H

#include <stdbool.h>
#include <stdint.h>

/* The host side, called on the device's threads with its lock held: do not call back. */
struct vsock_host_ops {
    /* The guest connects to host port: a connected stream socket (the device makes it
     * non-blocking and closes it), or -errno (the guest's connect fails: RST). */
    int (*connect)(void *ctx, uint32_t port);
};

/* A connection the host asked for, told how it ended: the guest accepted it (ok, host_port is
 * the host's end) or refused or dropped it. Called once, on the device's threads with its lock
 * held (do not call back); the device relays bytes on fd only after this returns, so it may
 * write a greeting first. When !ok the device closes fd after this returns. */
struct vsock_pending {
    void (*done)(struct vsock_pending *p, int fd, uint32_t host_port, bool ok);
};

/* What the host side may ask of the device: connect fd (a connected stream socket, the
 * device's from now on, also on failure) to guest port; p (or NULL) hears how it ended. -errno
 * when it cannot even start (the device is not running, too many connections): then p is not
 * called. Any thread, holding no lock p's done takes. */
struct vsock_guest_connector {
    int (*connect)(void *ctx, int fd, uint32_t guest_port, struct vsock_pending *p);
    void *ctx;
};

#endif
