/* A net_link over one descriptor that carries frames: a datagram socket (one frame per
 * datagram), a stream socket (frame_stream.h framing) or a tap (one frame per read and write,
 * after a vnet header). The openers (net_socket.c, net_tap.c) make the descriptor; this file
 * moves frames, with back-pressure both ways and nothing buffered beyond one frame each way.
 *
 * A peer that goes away (EOF, a refused or reset connection) takes the link down: the device
 * hears link_changed(false) and frames from the guest are dropped. A link that can reach its
 * peer again (a socket path) tries once a second and comes back up when it does. */
#ifndef VMK_ATTACH_NET_FD_LINK_H
#define VMK_ATTACH_NET_FD_LINK_H

#include "attach/net_link.h"

#include <stdbool.h>

enum net_framing {
    NET_FRAMING_DATAGRAM, /* one frame per read/write (a datagram socket, a tap) */
    NET_FRAMING_STREAM,   /* 4-byte big-endian length, then the frame */
};

struct net_fd_link_params {
    int fd; /* taken: closed by destroy (and on reconnect) */
    enum net_framing framing;
    bool vnet_hdr;     /* a tap with IFF_VNET_HDR and a 12-byte header */
    unsigned offloads; /* NET_OFFLOAD_* the descriptor takes (with vnet_hdr) */
    /* Applies the guest's offloads to fd (a tap's TUNSETOFFLOAD); may be NULL. */
    void (*set_offloads)(int fd, unsigned offloads);
    /* The largest frame, without vnet header (at most NET_FRAME_MAX); 0: NET_FRAME_MAX. */
    unsigned max_frame;
    /* Makes a new descriptor to the same peer after it went away (socket paths): the new fd,
     * or -errno. NULL: the link stays down. */
    int (*reconnect)(void *ctx);
    void (*reconnect_free)(void *ctx); /* frees ctx with the link; may be NULL */
    void *reconnect_ctx;
};

/* Takes p->fd and p->reconnect_ctx, also on failure (NULL: out of memory). */
struct net_link *net_fd_link_new(const struct net_fd_link_params *p);

#endif
