/* The host side of a network device: where the guest's Ethernet frames go and where the
 * frames for the guest come from (NAT, a datagram or stream socket, a tap). A device gets a
 * net_link and never learns which kind it is.
 *
 * Locking: a link and its device share one mutex, the device's. The device calls the link's
 * ops with it held; the link takes it around its own event handlers and calls the peer's
 * callbacks with it held. A link never calls the peer from inside one of its ops, so
 * neither side re-enters the other. */
#ifndef VMK_ATTACH_NET_LINK_H
#define VMK_ATTACH_NET_LINK_H

#include "core/event_loop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The largest frame a link carries: a 64 KiB TSO segment with its Ethernet and VLAN
 * headers (virtio-net's limit, 65550 bytes), plus the vnet header where there is one. */
#define NET_FRAME_MAX    65550u
#define NET_VNET_HDR_LEN 12u /* struct virtio_net_hdr_v1 */
/* The most pieces a frame comes in to send: sendmsg takes at most IOV_MAX, and a frame in
 * hundreds of pieces is a driver playing games (the device copies those into one). */
#define NET_LINK_IOV_MAX 64

/* Offloads a link with vnet headers can take, as TUNSETOFFLOAD spells them. */
#define NET_OFFLOAD_CSUM 0x01u /* frames to the guest may carry partial checksums */
#define NET_OFFLOAD_TSO4 0x02u
#define NET_OFFLOAD_TSO6 0x04u
#define NET_OFFLOAD_ECN  0x08u

/* The device, as a link sees it. Every callback runs with *lock held. */
struct net_link_peer {
    /* A frame for the guest (with its vnet header first when the link has vnet_hdr). true:
     * taken (delivered, or dropped and counted); false: no receive buffers now, so the link
     * keeps the frame, stops reading and offers it again after ops->rx_ready. */
    bool (*receive)(void *ctx, const struct iovec *iov, unsigned iovcnt, size_t len);
    /* A link that refused a frame (send said -EAGAIN) can take frames again. */
    void (*tx_ready)(void *ctx);
    /* The guest kicked the transmit queue, read by a link that watches the kick fd on its
     * own thread (ops->watch_kick): the device sends what the guest queued. It may hold the
     * interrupt for the buffers it used until tx_kick_done, which the link calls once it
     * has handled those frames (then the guest's interrupt for them and for the frames the
     * link sent it in answer is often one). */
    void (*tx_kick)(void *ctx);
    void (*tx_kick_done)(void *ctx);
    /* The peer went away (up false) or came back: why is a static string, or NULL. */
    void (*link_changed)(void *ctx, bool up, const char *why);
    void *ctx;
    pthread_mutex_t *lock;
};

struct net_link;

struct net_link_ops {
    /* Starts reading on el and delivering to peer (copied). 0 or -errno. */
    int (*start)(struct net_link *l, struct event_loop *el, const struct net_link_peer *peer);
    /* A frame from the guest: len bytes in iovcnt <= NET_LINK_IOV_MAX pieces (vnet header
     * first when vnet_hdr). 0: taken
     * (sent, queued, or dropped and counted); -EAGAIN: not now, the device holds it until
     * peer->tx_ready. Lock held. */
    int (*send)(struct net_link *l, const struct iovec *iov, unsigned iovcnt, size_t len);
    /* The device has receive buffers again. Lock held. */
    void (*rx_ready)(struct net_link *l);
    /* The guest's offloads (NET_OFFLOAD_*), for a link with vnet headers. Lock held; may be
     * NULL. */
    void (*set_offloads)(struct net_link *l, unsigned offloads);
    /* For a link with a thread of its own: watch the transmit queue's kick eventfd there
     * (a dup of fd), and call peer->tx_kick when it fires, so that the guest's frames go
     * from its ring to the link without waking the event loop's thread; fd -1: stop
     * watching. 0, or -errno (the transport watches it). Lock held; may be NULL. */
    int (*watch_kick)(struct net_link *l, int fd);
    /* Stops reading: no callback runs once it returns. Lock not held (it may wait for a
     * handler that holds it). */
    void (*stop)(struct net_link *l);
    /* Frees the link (stopped first), closing what it opened. */
    void (*destroy)(struct net_link *l);
};

struct net_link {
    const struct net_link_ops *ops;
    bool vnet_hdr;     /* frames carry a 12-byte virtio_net_hdr_v1 both ways */
    unsigned offloads; /* NET_OFFLOAD_* the link can take (only with vnet_hdr) */
    /* Frames dropped on the host side (a socket error, a full queue, a peer gone). */
    uint64_t dropped;
};

#endif
