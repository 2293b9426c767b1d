/* virtio-vsock (virtio 1.2 §5.10): stream sockets between the guest (its CID) and the host
 * (CID 2). The device keeps the connections: the state machine (REQUEST, RESPONSE, RW,
 * SHUTDOWN, RST), the credit each side grants the other, and for each connection a host
 * stream socket (non-blocking, on the event loop) whose bytes it relays.
 *
 * Where host sockets come from is the host side's business (attach/vsock_host.h; vsock_unix.c
 * maps ports to unix sockets): the guest connecting to host port P asks its connect(); a host
 * program reaching the guest hands the device a socket through virtio_vsock_connector.
 *
 * Back-pressure both ways, never a buffer without bound: the guest may send at most the
 * credit the device grants (a connection's receive buffer, VIRTIO_VSOCK_BUF_ALLOC, drained
 * into its host socket as fast as that takes it); the device reads a host socket only while
 * the guest grants credit and has receive buffers. A driver that oversteps the credit gets
 * the connection reset; one that breaks the ring gets NEEDS_RESET. */
#ifndef VMK_VIRTIO_VSOCK_H
#define VMK_VIRTIO_VSOCK_H

#include "attach/vsock_host.h"
#include "core/event_loop.h"
#include "virtio/virtio_device.h"

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_ID_VSOCK         19
#define VIRTIO_VSOCK_QUEUE_SIZE 256
#define VIRTIO_VSOCK_HOST_CID   2
#define VIRTIO_VSOCK_BUF_ALLOC  (256u << 10) /* bytes a connection buffers for its host socket */
#define VIRTIO_VSOCK_MAX_CONNS  256u /* at once, a host fd each (a guest must not exhaust ours) */
#define VIRTIO_VSOCK_HDR_LEN    44

#define VIRTIO_VSOCK_CONNECT_TIMEOUT_MS 2000 /* a host-initiated connection's wait for the guest */

struct virtio_vsock_params {
    uint64_t guest_cid; /* 3 .. 2^32 - 2 */
    struct event_loop *el;
    const struct vsock_host_ops *host;
    void *host_ctx;
    /* How long a connection the host asked for waits for the guest's answer before it is
     * given up (refused, and the guest told with a reset); 0: the default above. */
    unsigned connect_timeout_ms;
};

struct virtio_vsock_stats {
    uint64_t tx_packets, rx_packets;
    uint64_t bad_packets; /* malformed, wrong CIDs or type: dropped (a reset answers) */
    uint64_t resets_sent;
    unsigned connections; /* open now */
};

/* NULL on bad parameters or when out of memory/fds. Free with d->ops->destroy(d), after the
 * transport is gone. */
struct virtio_device *virtio_vsock_new(const struct virtio_vsock_params *p);
/* The host side's way to the guest (vsock_host.h): connects fd to guest port. */
int virtio_vsock_connect_guest(struct virtio_device *d, int fd, uint32_t guest_port,
                               struct vsock_pending *p);
struct vsock_guest_connector virtio_vsock_connector(struct virtio_device *d);
void virtio_vsock_get_stats(struct virtio_device *d, struct virtio_vsock_stats *out);

#endif
