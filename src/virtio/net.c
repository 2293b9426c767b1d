#include "virtio/net.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* struct virtio_net_hdr_v1 (§5.1.6). */
#define HDR_F_NEEDS_CSUM  1
#define HDR_GSO_NONE      0
#define HDR_OFF_NUM_BUFS  10
#define CONFIG_SIZE       12 /* mac, status, max_virtqueue_pairs, mtu */
#define ETH_HLEN          14
#define MAC_TABLE_ENTRIES 64 /* per table; more turns that class of filter off */

/* Control queue (§5.1.6.5). */
#define CTRL_CLASS_RX      0
#define CTRL_RX_PROMISC    0
#define CTRL_RX_ALLMULTI   1
#define CTRL_CLASS_MAC     1
#define CTRL_MAC_TABLE_SET 0
#define CTRL_MAC_ADDR_SET  1
#define CTRL_OK            0
#define CTRL_ERR           1
#define CTRL_CMD_MAX       (8 + 2 * MAC_TABLE_ENTRIES * 6 + 2) /* the largest we parse */

struct mac_table {
    unsigned count;
    bool overflow; /* the driver gave more than we hold: accept the whole class */
    uint8_t mac[MAC_TABLE_ENTRIES][6];
};

struct virtio_net {
    struct virtio_device vdev; /* first: the transport sees only this */
    pthread_mutex_t lock;      /* everything below, and the link's state (net_link.h) */
    struct net_link *link;
    struct virtio_net_params params;
    uint8_t mac[6];
    uint16_t status;
    bool active;         /* between activate and reset */
    bool tx_held;        /* the link refused a frame: wait for tx_ready */
    bool rx_owed;        /* the link holds a frame we refused: tell it when buffers come */
    bool tx_kick_taken;  /* the link's thread reads the transmit queue's kicks */
    bool tx_defer;       /* between tx_kick and tx_kick_done: hold the transmit interrupt */
    bool tx_notify_owed; /* one was held */
    bool promisc, allmulti;
    uint32_t guest_ipv4; /* network order; 0 until the guest's frames show it */
    struct mac_table uni, multi;
    struct virtio_net_stats stats;
    struct virtq_elem elem, extra; /* scratch: a transmit or control chain; merged buffers */
    struct virtq_ref refs[VIRTIO_NET_QUEUE_SIZE];
    struct iovec iov[NET_LINK_IOV_MAX];
    uint8_t hdr[NET_VNET_HDR_LEN];
    uint8_t bounce[NET_VNET_HDR_LEN + NET_FRAME_MAX];
};

static struct virtio_net *to_net(struct virtio_device *d)
{
    return (struct virtio_net *)d;
}

static void notify(struct virtio_net *n, unsigned q)
{
    struct virtq *vq = &n->vdev.queues[q];
    if (virtq_should_notify(vq) && n->vdev.transport.notify_queue)
        n->vdev.transport.notify_queue(n->vdev.transport.ctx, q);
}

static void driver_broke(struct virtio_net *n, const char *why)
{
    n->active = false;
    if (n->vdev.transport.needs_reset)
        n->vdev.transport.needs_reset(n->vdev.transport.ctx, why);
}

/* ---- receive: link → guest ---- */

static bool mac_in(const struct mac_table *t, const uint8_t *mac)
{
    if (t->overflow)
        return true;
    for (unsigned i = 0; i < t->count; i++)
        if (!memcmp(t->mac[i], mac, 6))
            return true;
    return false;
}

/* CTRL_RX's filter on the destination address (§5.1.6.5.1): promiscuous takes everything,
 * broadcast always passes, multicast with allmulti or a table entry, unicast for our
 * address or a table entry. */
static bool rx_wanted(const struct virtio_net *n, const uint8_t *dst)
{
    static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    if (n->promisc || !memcmp(dst, bcast, 6))
        return true;
    if (dst[0] & 1)
        return n->allmulti || mac_in(&n->multi, dst);
    return !memcmp(dst, n->mac, 6) || mac_in(&n->uni, dst);
}

/* Copies len bytes from iov, starting at byte skip, into the device-writable part of e at
 * offset. Returns the bytes copied. */
static size_t copy_to_elem(const struct virtq_elem *e, size_t offset, const struct iovec *iov,
                           unsigned iovcnt, size_t skip, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < iovcnt && done < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t chunk = iov[i].iov_len - skip;
        if (chunk > len - done)
            chunk = len - done;
        size_t put =
            virtq_elem_write(e, offset + done, (const uint8_t *)iov[i].iov_base + skip, chunk);
        done += put;
        if (put < chunk)
            break;
        skip = 0;
    }
    return done;
}

static size_t copy_from_iov(void *dst, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < iovcnt && done < len; i++) {
        size_t chunk = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
        memcpy((uint8_t *)dst + done, iov[i].iov_base, chunk);
        done += chunk;
    }
    return done;
}

/* The header the guest gets: the link's (a tap's offload metadata) or none at all. */
static void rx_header(struct virtio_net *n, const struct iovec *iov, unsigned iovcnt,
                      uint8_t hdr[NET_VNET_HDR_LEN])
{
    memset(hdr, 0, NET_VNET_HDR_LEN);
    if (n->link->vnet_hdr)
        copy_from_iov(hdr, iov, iovcnt, HDR_OFF_NUM_BUFS);
    hdr[HDR_OFF_NUM_BUFS] = 1;
}

/* Pops one receive chain into e. 1, 0 (none), or -1 (the driver broke the queue). */
static int rx_pop(struct virtio_net *n, struct virtq_elem *e)
{
    struct virtq *q = &n->vdev.queues[VIRTIO_NET_RX];
    int r = virtq_pop(q, e);
    if (r < 0) {
        n->active = false;
        virtio_device_queue_failed(&n->vdev, VIRTIO_NET_RX);
        return -1;
    }
    if (r > 0 && e->out_num > 0) {
        /* §5.1.6.3.1: receive buffers are device-writable only. */
        driver_broke(n, "virtio-net: receive buffer has device-readable parts");
        return -1;
    }
    return r;
}

/* What became of a frame offered to the receive queue. */
enum rx_result { RX_DROPPED = -1, RX_HELD = 0, RX_DELIVERED = 1 };

/* One frame into one chain (no MRG_RXBUF): it must fit, header and all. */
static enum rx_result rx_single(struct virtio_net *n, const struct iovec *iov, unsigned iovcnt,
                                size_t skip, size_t frame_len)
{
    struct virtq *q = &n->vdev.queues[VIRTIO_NET_RX];
    int r = rx_pop(n, &n->elem);
    if (r <= 0)
        return r < 0 ? RX_DROPPED : RX_HELD;
    if (n->elem.in_len < NET_VNET_HDR_LEN + frame_len) {
        /* The driver's buffers are smaller than it promised (§5.1.6.3.1): drop the frame,
         * keep the buffer for the next one. */
        if (virtq_unpop(q, &n->elem) < 0)
            virtio_device_complete(&n->vdev, VIRTIO_NET_RX, &n->elem, 0);
        return RX_DROPPED;
    }
    virtq_elem_write(&n->elem, 0, n->hdr, NET_VNET_HDR_LEN);
    copy_to_elem(&n->elem, NET_VNET_HDR_LEN, iov, iovcnt, skip, frame_len);
    virtio_device_complete(&n->vdev, VIRTIO_NET_RX, &n->elem, NET_VNET_HDR_LEN + frame_len);
    return RX_DELIVERED;
}

/* One frame over as many chains as it needs (MRG_RXBUF), published together once the first
 * header says how many. */
static enum rx_result rx_merged(struct virtio_net *n, const struct iovec *iov, unsigned iovcnt,
                                size_t skip, size_t frame_len)
{
    struct virtq *q = &n->vdev.queues[VIRTIO_NET_RX];
    size_t total = NET_VNET_HDR_LEN + frame_len, done = 0;
    unsigned count = 0;
    while (done < total) {
        struct virtq_elem *e = count == 0 ? &n->elem : &n->extra;
        int r = count < q->size ? rx_pop(n, e) : 0;
        if (r < 0)
            return RX_DROPPED;
        if (r == 0) {
            if (virtq_unpop_refs(q, n->refs, count) < 0) {
                /* The ring changed under us (a driver whose buffers overlap its avail
                 * ring, so our writes moved it): return the buffers empty instead. */
                for (unsigned i = 0; i < count; i++)
                    n->refs[i].written = 0;
                if (virtq_push_refs(q, n->refs, count) < 0) {
                    n->active = false;
                    virtio_device_queue_failed(&n->vdev, VIRTIO_NET_RX);
                }
                notify(n, VIRTIO_NET_RX);
                return RX_DROPPED;
            }
            /* Hold it for the buffers the guest will add, unless the whole ring cannot
             * hold it: then it never will. */
            return count < q->size ? RX_HELD : RX_DROPPED;
        }
        if (e->in_len == 0) {
            driver_broke(n, "virtio-net: receive buffer with no writable bytes");
            return RX_DROPPED;
        }
        size_t put = 0;
        if (count == 0) {
            put = virtq_elem_write(e, 0, n->hdr, NET_VNET_HDR_LEN);
            if (put < NET_VNET_HDR_LEN) {
                driver_broke(n, "virtio-net: merged receive buffer shorter than the header");
                return RX_DROPPED;
            }
        }
        put += copy_to_elem(e, put, iov, iovcnt, skip + (done + put - NET_VNET_HDR_LEN),
                            total - done - put);
        n->refs[count++] = virtq_elem_ref(e, (uint32_t)put);
        done += put;
    }
    uint16_t bufs = htole16((uint16_t)count);
    virtq_elem_write(&n->elem, HDR_OFF_NUM_BUFS, &bufs, sizeof(bufs));
    if (virtq_push_refs(q, n->refs, count) < 0) {
        n->active = false;
        virtio_device_queue_failed(&n->vdev, VIRTIO_NET_RX);
        return RX_DROPPED;
    }
    notify(n, VIRTIO_NET_RX);
    return RX_DELIVERED;
}

static bool net_receive(void *ctx, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct virtio_net *n = ctx;
    size_t skip = n->link->vnet_hdr ? NET_VNET_HDR_LEN : 0;
    if (!n->active || len < skip + ETH_HLEN || len - skip > NET_FRAME_MAX) {
        n->stats.rx_dropped++;
        return true;
    }
    size_t frame_len = len - skip;
    uint8_t head[NET_VNET_HDR_LEN + 6] = { 0 };
    copy_from_iov(head, iov, iovcnt, skip + 6);
    if (!rx_wanted(n, head + skip)) {
        n->stats.rx_filtered++;
        return true;
    }
    rx_header(n, iov, iovcnt, n->hdr);
    enum rx_result r = virtio_has_feature(&n->vdev, VIRTIO_NET_F_MRG_RXBUF)
                           ? rx_merged(n, iov, iovcnt, skip, frame_len)
                           : rx_single(n, iov, iovcnt, skip, frame_len);
    if (r == RX_HELD) {
        n->rx_owed = true;
        return false;
    }
    if (r == RX_DROPPED) {
        n->stats.rx_dropped++;
    } else {
        n->stats.rx_frames++;
        n->stats.rx_bytes += frame_len;
    }
    return true;
}

/* ---- transmit: guest → link ---- */

/* Points n->iov at the frame in e: our copy of the header (for a link that wants it), then
 * the guest's buffers from byte NET_VNET_HDR_LEN, or one copy of them when scattered. */
static unsigned tx_iov(struct virtio_net *n, const struct virtq_elem *e, size_t frame_len)
{
    unsigned k = 0;
    if (n->link->vnet_hdr)
        n->iov[k++] = (struct iovec){ .iov_base = n->hdr, .iov_len = NET_VNET_HDR_LEN };
    size_t skip = NET_VNET_HDR_LEN;
    unsigned first = k;
    for (unsigned i = 0; i < e->out_num; i++) {
        size_t l = e->iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        if (k == NET_LINK_IOV_MAX) {
            /* Scattered wider than a link takes: one copy. */
            k = first;
            virtq_elem_read(e, NET_VNET_HDR_LEN, n->bounce, frame_len);
            n->iov[k++] = (struct iovec){ .iov_base = n->bounce, .iov_len = frame_len };
            return k;
        }
        n->iov[k++] =
            (struct iovec){ .iov_base = (uint8_t *)e->iov[i].iov_base + skip, .iov_len = l - skip };
        skip = 0;
    }
    return k;
}

/* Whether the header asks for what the driver did not negotiate (§5.1.6.2.1). */
static bool tx_header_ok(const struct virtio_net *n, const uint8_t *hdr)
{
    uint8_t flags = hdr[0], gso = hdr[1] & 0x7f;
    if ((flags & HDR_F_NEEDS_CSUM) && !virtio_has_feature(&n->vdev, VIRTIO_NET_F_CSUM))
        return false;
    if (gso == HDR_GSO_NONE)
        return true;
    return virtio_has_feature(&n->vdev, VIRTIO_NET_F_HOST_TSO4) ||
           virtio_has_feature(&n->vdev, VIRTIO_NET_F_HOST_TSO6);
}

/* The guest's IPv4 address, from its own frames: an ARP sender or an IPv4 source, from our
 * MAC, that is a host address (not 0.0.0.0, multicast or broadcast). Works on every
 * attachment, so the address is known without asking the DHCP server. */
static void snoop_ipv4(struct virtio_net *n, const struct virtq_elem *e)
{
    uint8_t f[ETH_HLEN + 28];
    size_t got = virtq_elem_read(e, NET_VNET_HDR_LEN, f, sizeof(f));
    /* Our MAC, where we own it; a vhost-user front end keeps the MAC (and the control queue)
     * to itself, and then the guest's frames are all that pass here. */
    bool own_mac = virtio_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_VQ);
    if (got < ETH_HLEN + 20 || (f[6] & 1) || (own_mac && memcmp(f + 6, n->mac, 6)))
        return;
    uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
    const uint8_t *ip = NULL;
    if (type == 0x0806 && got >= ETH_HLEN + 28 && f[ETH_HLEN + 4] == 6 && f[ETH_HLEN + 5] == 4)
        ip = f + ETH_HLEN + 14; /* ARP sender protocol address */
    else if (type == 0x0800 && (f[ETH_HLEN] >> 4) == 4)
        ip = f + ETH_HLEN + 12; /* IPv4 source */
    if (!ip || (ip[0] == 0) || ip[0] >= 224 || (ip[0] == 127))
        return;
    memcpy(&n->guest_ipv4, ip, 4);
}

static void tx_process(struct virtio_net *n)
{
    struct virtq *q = &n->vdev.queues[VIRTIO_NET_TX];
    bool pushed = false;
    while (n->active && !n->tx_held) {
        int r = virtq_pop(q, &n->elem);
        if (r < 0) {
            n->active = false;
            virtio_device_queue_failed(&n->vdev, VIRTIO_NET_TX);
            return;
        }
        if (r == 0)
            break;
        uint64_t len = n->elem.out_len;
        bool ok = len >= NET_VNET_HDR_LEN + ETH_HLEN && len - NET_VNET_HDR_LEN <= NET_FRAME_MAX;
        if (ok) {
            virtq_elem_read(&n->elem, 0, n->hdr, NET_VNET_HDR_LEN);
            n->hdr[HDR_OFF_NUM_BUFS] = n->hdr[HDR_OFF_NUM_BUFS + 1] = 0;
            ok = tx_header_ok(n, n->hdr);
        }
        if (ok) {
            size_t frame_len = len - NET_VNET_HDR_LEN;
            snoop_ipv4(n, &n->elem);
            unsigned k = tx_iov(n, &n->elem, frame_len);
            size_t wire = frame_len + (n->link->vnet_hdr ? NET_VNET_HDR_LEN : 0);
            int s = n->link->ops->send(n->link, n->iov, k, wire);
            /* -EAGAIN: keep the chain in the ring; the link says when it can take it. */
            if (s == -EAGAIN && virtq_unpop(q, &n->elem) == 0) {
                n->tx_held = true;
                break;
            }
            if (s == 0) {
                n->stats.tx_frames++;
                n->stats.tx_bytes += frame_len;
            } else {
                n->stats.tx_dropped++;
            }
        } else {
            n->stats.tx_dropped++;
        }
        if (virtq_push(q, &n->elem, 0) < 0) {
            n->active = false;
            virtio_device_queue_failed(&n->vdev, VIRTIO_NET_TX);
            return;
        }
        pushed = true;
    }
    if (pushed && n->tx_defer)
        n->tx_notify_owed = true;
    else if (pushed)
        notify(n, VIRTIO_NET_TX);
}

static void net_tx_ready(void *ctx)
{
    struct virtio_net *n = ctx;
    n->tx_held = false;
    tx_process(n);
}

static void net_tx_kick(void *ctx)
{
    struct virtio_net *n = ctx;
    n->tx_defer = true;
    tx_process(n);
}

static void net_tx_kick_done(void *ctx)
{
    struct virtio_net *n = ctx;
    n->tx_defer = false;
    if (n->tx_notify_owed && n->active)
        notify(n, VIRTIO_NET_TX);
    n->tx_notify_owed = false;
}

/* ---- control queue ---- */

/* A MAC table as CTRL_MAC_TABLE_SET sends it: le32 count, then count addresses. Returns the
 * bytes it took, or 0 when cmd is too short. */
static size_t parse_mac_table(struct mac_table *t, const uint8_t *cmd, size_t len)
{
    uint32_t count;
    if (len < 4)
        return 0;
    memcpy(&count, cmd, 4);
    count = le32toh(count);
    if (count > (len - 4) / 6)
        return 0;
    t->overflow = count > MAC_TABLE_ENTRIES;
    t->count = t->overflow ? 0 : count;
    memcpy(t->mac, cmd + 4, (size_t)t->count * 6);
    return 4 + (size_t)count * 6;
}

static uint8_t ctrl_command(struct virtio_net *n, const uint8_t *cmd, size_t len)
{
    if (len < 2)
        return CTRL_ERR;
    uint8_t cls = cmd[0], op = cmd[1];
    cmd += 2;
    len -= 2;
    if (cls == CTRL_CLASS_RX && virtio_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_RX)) {
        if (len < 1 || (op != CTRL_RX_PROMISC && op != CTRL_RX_ALLMULTI))
            return CTRL_ERR;
        if (op == CTRL_RX_PROMISC)
            n->promisc = cmd[0] != 0;
        else
            n->allmulti = cmd[0] != 0;
        return CTRL_OK;
    }
    if (cls == CTRL_CLASS_MAC && op == CTRL_MAC_ADDR_SET &&
        virtio_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_MAC_ADDR)) {
        if (len < 6)
            return CTRL_ERR;
        memcpy(n->mac, cmd, 6);
        return CTRL_OK;
    }
    if (cls == CTRL_CLASS_MAC && op == CTRL_MAC_TABLE_SET &&
        virtio_has_feature(&n->vdev, VIRTIO_NET_F_CTRL_RX)) {
        struct mac_table uni, multi;
        size_t a = parse_mac_table(&uni, cmd, len);
        size_t b = a ? parse_mac_table(&multi, cmd + a, len - a) : 0;
        if (!b)
            return CTRL_ERR;
        n->uni = uni;
        n->multi = multi;
        return CTRL_OK;
    }
    return CTRL_ERR;
}

static void ctrl_process(struct virtio_net *n)
{
    struct virtq *q = &n->vdev.queues[VIRTIO_NET_CTRL];
    uint8_t cmd[CTRL_CMD_MAX];
    bool pushed = false;
    while (n->active) {
        int r = virtq_pop(q, &n->elem);
        if (r < 0) {
            n->active = false;
            virtio_device_queue_failed(&n->vdev, VIRTIO_NET_CTRL);
            return;
        }
        if (r == 0)
            break;
        if (n->elem.in_len < 1) {
            /* §5.1.6.5: the ack is the device-writable byte; without one there is no
             * answer to give. */
            driver_broke(n, "virtio-net: control command without a writable ack byte");
            return;
        }
        /* A command longer than any we know is refused whole, never truncated. */
        uint8_t ack = CTRL_ERR;
        if (n->elem.out_len <= sizeof(cmd)) {
            size_t len = virtq_elem_read(&n->elem, 0, cmd, sizeof(cmd));
            ack = ctrl_command(n, cmd, len);
        }
        virtq_elem_write(&n->elem, 0, &ack, 1);
        if (virtq_push(q, &n->elem, 1) < 0) {
            n->active = false;
            virtio_device_queue_failed(&n->vdev, VIRTIO_NET_CTRL);
            return;
        }
        pushed = true;
    }
    if (pushed)
        notify(n, VIRTIO_NET_CTRL);
}

/* ---- the device's ops ---- */

static unsigned guest_offloads(const struct virtio_device *d)
{
    unsigned o = 0;
    if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_CSUM))
        o |= NET_OFFLOAD_CSUM;
    if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO4))
        o |= NET_OFFLOAD_TSO4;
    if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO6))
        o |= NET_OFFLOAD_TSO6;
    if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_ECN))
        o |= NET_OFFLOAD_ECN;
    return o;
}

static int net_activate(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    n->active = true;
    if (n->link->ops->set_offloads)
        n->link->ops->set_offloads(n->link, guest_offloads(d));
    if (n->rx_owed) {
        n->rx_owed = false;
        n->link->ops->rx_ready(n->link);
    }
    /* Kicks the link's thread read before now found the device inactive. */
    if (n->tx_kick_taken)
        tx_process(n);
    pthread_mutex_unlock(&n->lock);
    return 0;
}

static void net_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    if (q == VIRTIO_NET_RX && n->active && n->rx_owed) {
        n->rx_owed = false;
        n->link->ops->rx_ready(n->link);
    } else if (q == VIRTIO_NET_TX) {
        tx_process(n);
    } else if (q == VIRTIO_NET_CTRL) {
        ctrl_process(n);
    }
    pthread_mutex_unlock(&n->lock);
}

/* The transmit queue's kicks go to a link with a thread of its own (the NAT's), which
 * serves them there: a guest's frame then wakes that thread alone, not the event loop's
 * thread first to hand it over. */
static bool net_take_kick(struct virtio_device *d, unsigned q, int fd)
{
    struct virtio_net *n = to_net(d);
    if (q != VIRTIO_NET_TX || !n->link->ops->watch_kick)
        return false;
    pthread_mutex_lock(&n->lock);
    bool taken = n->link->ops->watch_kick(n->link, fd) == 0 && fd >= 0;
    n->tx_kick_taken = taken;
    pthread_mutex_unlock(&n->lock);
    return taken;
}

/* §5.1.3.1: features that depend on others the driver left out. */
static bool net_features_ok(struct virtio_device *d, uint64_t f)
{
    (void)d;
#define HAS(bit) ((f >> VIRTIO_NET_F_##bit) & 1)
    if ((HAS(GUEST_TSO4) || HAS(GUEST_TSO6) || HAS(GUEST_UFO)) && !HAS(GUEST_CSUM))
        return false;
    if (HAS(GUEST_ECN) && !HAS(GUEST_TSO4) && !HAS(GUEST_TSO6))
        return false;
    if ((HAS(HOST_TSO4) || HAS(HOST_TSO6) || HAS(HOST_UFO)) && !HAS(CSUM))
        return false;
    if (HAS(HOST_ECN) && !HAS(HOST_TSO4) && !HAS(HOST_TSO6))
        return false;
    if ((HAS(CTRL_RX) || HAS(CTRL_VLAN) || HAS(GUEST_ANNOUNCE) || HAS(MQ) || HAS(CTRL_MAC_ADDR)) &&
        !HAS(CTRL_VQ))
        return false;
#undef HAS
    return true;
}

static void net_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct virtio_net *n = to_net(d);
    uint8_t c[CONFIG_SIZE];
    pthread_mutex_lock(&n->lock);
    memcpy(c, n->mac, 6);
    uint16_t v = htole16(n->status);
    memcpy(c + 6, &v, 2);
    v = htole16(1); /* max_virtqueue_pairs */
    memcpy(c + 8, &v, 2);
    v = htole16(n->params.mtu);
    memcpy(c + 10, &v, 2);
    pthread_mutex_unlock(&n->lock);
    memcpy(data, c + offset, len);
}

static void net_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                             uint32_t len)
{
    /* Every field is read-only to a VERSION_1 driver (the MAC changes through CTRL_MAC_ADDR). */
    (void)d, (void)offset, (void)data, (void)len;
}

static void net_reset(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    n->active = false;
    n->tx_held = false;
    n->tx_notify_owed = false;
    /* Promiscuous until the driver says otherwise (CTRL_RX), as QEMU starts: a front end that
     * keeps the control queue to itself (vhost-user) never tells us its filters. */
    n->promisc = true;
    n->allmulti = false;
    memset(&n->uni, 0, sizeof(n->uni));
    memset(&n->multi, 0, sizeof(n->multi));
    memcpy(n->mac, n->params.mac, 6);
    n->guest_ipv4 = 0; /* a reset guest asks for a lease again */
    pthread_mutex_unlock(&n->lock);
}

static void net_destroy(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    virtio_device_fini(d);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

static const struct virtio_device_ops net_ops = {
    .activate = net_activate,
    .queue_notify = net_queue_notify,
    .take_kick = net_take_kick,
    .features_ok = net_features_ok,
    .config_read = net_config_read,
    .config_write = net_config_write,
    .reset = net_reset,
    .destroy = net_destroy,
};

static void net_link_changed(void *ctx, bool up, const char *why)
{
    struct virtio_net *n = ctx;
    (void)why;
    uint16_t status = up ? VIRTIO_NET_S_LINK_UP : 0;
    if (status == n->status)
        return;
    n->status = status;
    if (n->active && n->vdev.transport.notify_config)
        n->vdev.transport.notify_config(n->vdev.transport.ctx);
    if (n->params.link_changed)
        n->params.link_changed(n->params.link_changed_ctx, up, why);
}

struct virtio_device *virtio_net_new(struct net_link *link, const struct virtio_net_params *p)
{
    struct virtio_net *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    if (virtio_device_init(&n->vdev, &net_ops, "virtio-net", VIRTIO_ID_NET, 3,
                           VIRTIO_NET_QUEUE_SIZE) < 0) {
        free(n);
        return NULL;
    }
    pthread_mutex_init(&n->lock, NULL);
    n->link = link;
    n->params = *p;
    memcpy(n->mac, p->mac, 6);
    n->status = VIRTIO_NET_S_LINK_UP;
    n->promisc = true;
    n->vdev.config_size = CONFIG_SIZE;
    uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX) |
                 VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |
                 VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
                 VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) |
                 VIRTIO_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
    if (p->mtu)
        f |= VIRTIO_BIT(VIRTIO_NET_F_MTU);
    unsigned o = p->offloads && link->vnet_hdr ? link->offloads : 0;
    if (o & NET_OFFLOAD_CSUM) {
        f |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
        if (o & NET_OFFLOAD_TSO4)
            f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4);
        if (o & NET_OFFLOAD_TSO6)
            f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
        if ((o & NET_OFFLOAD_ECN) && (o & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)))
            f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN);
    }
    n->vdev.device_features = f;
    return &n->vdev;
}

pthread_mutex_t *virtio_net_lock(struct virtio_device *d)
{
    return &to_net(d)->lock;
}

struct net_link_peer virtio_net_peer(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    return (struct net_link_peer){ .receive = net_receive,
                                   .tx_ready = net_tx_ready,
                                   .tx_kick = net_tx_kick,
                                   .tx_kick_done = net_tx_kick_done,
                                   .link_changed = net_link_changed,
                                   .ctx = n,
                                   .lock = &n->lock };
}

void virtio_net_get_stats(struct virtio_device *d, struct virtio_net_stats *out)
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    *out = n->stats;
    pthread_mutex_unlock(&n->lock);
}

void virtio_net_get_mac(struct virtio_device *d, uint8_t mac[6])
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    memcpy(mac, n->mac, 6);
    pthread_mutex_unlock(&n->lock);
}

uint32_t virtio_net_guest_ipv4(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    pthread_mutex_lock(&n->lock);
    uint32_t a = n->guest_ipv4;
    pthread_mutex_unlock(&n->lock);
    return a;
}
