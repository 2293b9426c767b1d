/* virtio-net (virtio 1.2 §5.1): one receive and one transmit queue and a control queue. The
 * device moves Ethernet frames between the guest's rings and a net_link (src/attach/net_link.h)
 * it knows nothing else about. It offers MAC, STATUS (link up and down follow the link),
 * MRG_RXBUF, CTRL_VQ with CTRL_RX (promiscuous until the driver sets its filters) and
 * CTRL_MAC_ADDR, MTU when one is set, and checksum and
 * TSO offloads only when the link carries vnet headers and takes them (a tap): a link that
 * parses frames (NAT) must never see a partial checksum.
 *
 * Everything the guest controls is bounded: a transmit chain is parsed from a copy of its
 * header, a malformed or oversize frame is dropped and counted (never a reset, never a
 * crash), a receive frame that finds no buffers stays with the link, which stops reading
 * until the guest adds some (back-pressure, no host-side queue). */
#ifndef VMK_VIRTIO_NET_H
#define VMK_VIRTIO_NET_H

#include "attach/net_link.h"
#include "virtio/virtio_device.h"

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_MTU_MIN    68
#define VIRTIO_NET_MTU_MAX    65535

/* Feature bits (§5.1.3). */
#define VIRTIO_NET_F_CSUM           0
#define VIRTIO_NET_F_GUEST_CSUM     1
#define VIRTIO_NET_F_MTU            3
#define VIRTIO_NET_F_MAC            5
#define VIRTIO_NET_F_GUEST_TSO4     7
#define VIRTIO_NET_F_GUEST_TSO6     8
#define VIRTIO_NET_F_GUEST_ECN      9
#define VIRTIO_NET_F_GUEST_UFO      10
#define VIRTIO_NET_F_HOST_TSO4      11
#define VIRTIO_NET_F_HOST_TSO6      12
#define VIRTIO_NET_F_HOST_ECN       13
#define VIRTIO_NET_F_HOST_UFO       14
#define VIRTIO_NET_F_MRG_RXBUF      15
#define VIRTIO_NET_F_STATUS         16
#define VIRTIO_NET_F_CTRL_VQ        17
#define VIRTIO_NET_F_CTRL_RX        18
#define VIRTIO_NET_F_CTRL_VLAN      19
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ             22
#define VIRTIO_NET_F_CTRL_MAC_ADDR  23

#define VIRTIO_NET_S_LINK_UP 1

/* Queue numbers. */
#define VIRTIO_NET_RX   0
#define VIRTIO_NET_TX   1
#define VIRTIO_NET_CTRL 2

struct virtio_net_params {
    uint8_t mac[6];
    uint16_t mtu;  /* offered with VIRTIO_NET_F_MTU; 0: not offered */
    bool offloads; /* offer the link's offloads (it has vnet headers); false: none */
    /* Told after the link went down or came back (the device's lock held: defer anything
     * that may call back into the device). May be NULL. */
    void (*link_changed)(void *ctx, bool up, const char *why);
    void *link_changed_ctx;
};

/* What the device counted since it was made. */
struct virtio_net_stats {
    uint64_t tx_frames, tx_bytes, tx_dropped; /* guest → link */
    uint64_t rx_frames, rx_bytes, rx_dropped; /* link → guest */
    uint64_t rx_filtered;                     /* not for this MAC (CTRL_RX) */
};

/* A new device on link (which stays the caller's: stop it before destroying the device,
 * destroy it after). NULL when out of memory. Free with d->ops->destroy(d). The lock the
 * link must share is virtio_net_lock(d). */
struct virtio_device *virtio_net_new(struct net_link *link, const struct virtio_net_params *p);
/* The lock the device and its link share (net_link.h). */
pthread_mutex_t *virtio_net_lock(struct virtio_device *d);
/* The callbacks the link calls (for ops->start). */
struct net_link_peer virtio_net_peer(struct virtio_device *d);
void virtio_net_get_stats(struct virtio_device *d, struct virtio_net_stats *out);
/* The guest's IPv4 address in network order, as its own frames show it (ARP or IPv4 from its
 * MAC), or 0 until one did. */
uint32_t virtio_net_guest_ipv4(struct virtio_device *d);
/* The MAC the guest uses now (CTRL_MAC_ADDR may have changed it). */
void virtio_net_get_mac(struct virtio_device *d, uint8_t mac[6]);

#endif
