#include "virtio/net.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HDR 12

/* A link that records what the device sends and lets the test play the host side. */
struct fake_link {
    struct net_link link;
    struct net_link_peer peer;
    int send_result; /* what send returns */
    unsigned sent;
    uint8_t last[NET_VNET_HDR_LEN + NET_FRAME_MAX];
    size_t last_len;
    unsigned last_iovcnt;
    unsigned rx_ready_calls;
    unsigned offloads_set;
    int watch_result; /* what watch_kick returns */
    int watched;      /* the fd watch_kick last got */
};

static int fl_send(struct net_link *l, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct fake_link *f = (struct fake_link *)l;
    if (f->send_result)
        return f->send_result;
    size_t off = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        memcpy(f->last + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    assert_int_equal(off, len);
    f->last_len = len;
    f->last_iovcnt = iovcnt;
    f->sent++;
    return 0;
}

static void fl_rx_ready(struct net_link *l)
{
    ((struct fake_link *)l)->rx_ready_calls++;
}

static void fl_set_offloads(struct net_link *l, unsigned o)
{
    ((struct fake_link *)l)->offloads_set = o;
}

static const struct net_link_ops fake_ops = {
    .send = fl_send,
    .rx_ready = fl_rx_ready,
    .set_offloads = fl_set_offloads,
};

static int fl_watch_kick(struct net_link *l, int fd)
{
    struct fake_link *f = (struct fake_link *)l;
    if (f->watch_result == 0)
        f->watched = fd;
    return f->watch_result;
}

/* A link with a thread of its own, which can read the transmit kicks. */
static const struct net_link_ops threaded_ops = {
    .send = fl_send,
    .rx_ready = fl_rx_ready,
    .set_offloads = fl_set_offloads,
    .watch_kick = fl_watch_kick,
};

struct fix {
    struct test_driver t;
    struct fake_link fl;
    struct virtio_device *dev;
};

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static struct fix *make(bool vnet_hdr, uint16_t mtu, uint64_t accept)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fl.link.ops = &fake_ops;
    f->fl.link.vnet_hdr = vnet_hdr;
    f->fl.link.offloads = vnet_hdr ? NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 : 0;
    struct virtio_net_params p = { .mtu = mtu, .offloads = true };
    memcpy(p.mac, MAC, 6);
    f->dev = virtio_net_new(&f->fl.link, &p);
    assert_non_null(f->dev);
    f->fl.peer = virtio_net_peer(f->dev);
    assert_int_equal(td_init_sized(&f->t, f->dev, accept, 128), 0);
    return f;
}

static void destroy(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    free(f);
}

static const uint64_t BASE = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |
                             VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) |
                             VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX) |
                             VIRTIO_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
#define MRG VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)

/* A frame to our MAC: dst, src, ethertype, then a counting pattern. */
static void make_frame(uint8_t *b, size_t len, const uint8_t *dst)
{
    static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 1 };
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i * 7 + 3);
    memcpy(b, dst ? dst : MAC, 6);
    memcpy(b + 6, src, 6);
    b[12] = 0x08;
    b[13] = 0x00;
}

/* The host side delivers a frame, as a link does: with the lock held. */
static bool deliver(struct fix *f, const void *frame, size_t len)
{
    struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
    pthread_mutex_lock(f->fl.peer.lock);
    bool taken = f->fl.peer.receive(f->fl.peer.ctx, &iov, 1, len);
    pthread_mutex_unlock(f->fl.peer.lock);
    return taken;
}

static void add_rx(struct fix *f, uint32_t len, uint64_t *gpa)
{
    *gpa = td_alloc(&f->t, len);
    struct td_buf b = { .gpa = *gpa, .len = len, .writable = true };
    td_add(&f->t, VIRTIO_NET_RX, &b, 1);
}

static struct virtio_net_stats stats(struct fix *f)
{
    struct virtio_net_stats s;
    virtio_net_get_stats(f->dev, &s);
    return s;
}

static void test_features(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    uint64_t df = f->dev->device_features;
    assert_true(df & MRG);
    assert_false(df & VIRTIO_BIT(VIRTIO_NET_F_MTU));
    assert_false(df & VIRTIO_BIT(VIRTIO_NET_F_CSUM)); /* a link without vnet headers */
    assert_false(df & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
    destroy(f);

    f = make(true, 9000, BASE);
    df = f->dev->device_features;
    assert_true(df & VIRTIO_BIT(VIRTIO_NET_F_MTU));
    assert_true(df & VIRTIO_BIT(VIRTIO_NET_F_CSUM));
    assert_true(df & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6));
    assert_true(df & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4));
    const struct virtio_device_ops *ops = f->dev->ops;
    assert_true(ops->features_ok(f->dev, BASE | MRG));
    assert_false(ops->features_ok(f->dev, BASE | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)));
    assert_true(ops->features_ok(f->dev, BASE | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
                                             VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)));
    assert_false(ops->features_ok(f->dev, BASE | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6)));
    assert_false(ops->features_ok(f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                                              VIRTIO_BIT(VIRTIO_NET_F_CTRL_RX)));
    assert_false(ops->features_ok(f->dev, BASE | VIRTIO_BIT(VIRTIO_NET_F_CSUM) |
                                              VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN)));
    /* The guest's receive offloads reach the link at activation. */
    destroy(f);
    f = make(true, 0,
             BASE | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
    assert_int_equal(f->fl.offloads_set, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4);
    destroy(f);
}

static void test_config(void **state)
{
    (void)state;
    struct fix *f = make(false, 1400, BASE);
    uint8_t c[12];
    f->dev->ops->config_read(f->dev, 0, c, 12);
    assert_memory_equal(c, MAC, 6);
    assert_int_equal(c[6] | c[7] << 8, VIRTIO_NET_S_LINK_UP);
    assert_int_equal(c[8] | c[9] << 8, 1);
    assert_int_equal(c[10] | c[11] << 8, 1400);
    /* Writes change nothing. */
    uint8_t z[6] = { 0 };
    f->dev->ops->config_write(f->dev, 0, z, 6);
    f->dev->ops->config_read(f->dev, 0, c, 6);
    assert_memory_equal(c, MAC, 6);
    /* Link down: status follows and the driver is told. */
    pthread_mutex_lock(f->fl.peer.lock);
    f->fl.peer.link_changed(f->fl.peer.ctx, false, "peer gone");
    pthread_mutex_unlock(f->fl.peer.lock);
    f->dev->ops->config_read(f->dev, 6, c, 2);
    assert_int_equal(c[0] | c[1] << 8, 0);
    assert_int_equal(f->t.config_changes, 1);
    destroy(f);
}

/* A transmit chain: the header (flags, gso) split at split, then the frame in pieces of
 * piece bytes. */
static uint16_t add_tx(struct fix *f, const uint8_t *hdr, const uint8_t *frame, size_t len,
                       unsigned split, size_t piece)
{
    struct td_buf b[128];
    unsigned n = 0;
    uint8_t all[HDR + 70000];
    memcpy(all, hdr, HDR);
    memcpy(all + HDR, frame, len);
    size_t total = HDR + len, off = 0;
    while (off < total) {
        size_t l = n == 0 && split ? split : piece;
        if (l > total - off)
            l = total - off;
        assert_true(n < 128);
        b[n].gpa = td_alloc(&f->t, (uint32_t)l);
        memcpy(td_ptr(&f->t, b[n].gpa, l), all + off, l);
        b[n].len = (uint32_t)l;
        b[n].writable = false;
        off += l;
        n++;
    }
    return td_add(&f->t, VIRTIO_NET_TX, b, n);
}

static void test_tx_layouts(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE | MRG);
    uint8_t frame[3000], hdr[HDR] = { 0 };
    make_frame(frame, sizeof(frame), NULL);
    /* Header and frame in one buffer; the header split 5 + 7; 66 pieces (sent as one copy). */
    const unsigned splits[] = { 0, 5, 1 };
    const size_t pieces[] = { HDR + 3000, 1000, 47 };
    for (unsigned i = 0; i < 3; i++) {
        add_tx(f, hdr, frame, sizeof(frame), splits[i], pieces[i]);
        td_kick(&f->t, VIRTIO_NET_TX);
        uint32_t id, len;
        assert_true(td_used(&f->t, VIRTIO_NET_TX, &id, &len));
        assert_int_equal(len, 0);
        assert_int_equal(f->fl.sent, i + 1);
        assert_int_equal(f->fl.last_len, sizeof(frame));
        assert_memory_equal(f->fl.last, frame, sizeof(frame));
    }
    /* 76 pieces: one copy too. */
    add_tx(f, hdr, frame, sizeof(frame), 0, 40);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(f->fl.sent, 4);
    assert_int_equal(f->fl.last_iovcnt, 1);
    assert_memory_equal(f->fl.last, frame, sizeof(frame));
    struct virtio_net_stats s = stats(f);
    assert_int_equal(s.tx_frames, 4);
    assert_int_equal(s.tx_bytes, 4 * sizeof(frame));
    destroy(f);
}

/* The transmit queue's kick fd goes to a link that can watch it (and only that queue's);
 * its thread's tx_kick then sends what the driver queued; -1 takes it back. */
static void test_tx_kick_to_link(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE | MRG);
    assert_false(f->dev->ops->take_kick(f->dev, VIRTIO_NET_TX, 7)); /* the link has no thread */
    f->fl.link.ops = &threaded_ops;
    f->fl.watched = -1;
    assert_false(f->dev->ops->take_kick(f->dev, VIRTIO_NET_RX, 7));
    assert_false(f->dev->ops->take_kick(f->dev, VIRTIO_NET_CTRL, 7));
    assert_int_equal(f->fl.watched, -1);
    assert_true(f->dev->ops->take_kick(f->dev, VIRTIO_NET_TX, 7));
    assert_int_equal(f->fl.watched, 7);

    uint8_t frame[200], hdr[HDR] = { 0 };
    make_frame(frame, sizeof(frame), NULL);
    add_tx(f, hdr, frame, sizeof(frame), 0, HDR + sizeof(frame));
    assert_int_equal(f->fl.sent, 0);
    unsigned irqs = td_notified(&f->t, VIRTIO_NET_TX);
    pthread_mutex_lock(f->fl.peer.lock);
    f->fl.peer.tx_kick(f->fl.peer.ctx);
    pthread_mutex_unlock(f->fl.peer.lock);
    assert_int_equal(f->fl.sent, 1);
    assert_memory_equal(f->fl.last, frame, sizeof(frame));
    uint32_t id, len;
    assert_true(td_used(&f->t, VIRTIO_NET_TX, &id, &len));
    /* The interrupt for the used buffer waits for tx_kick_done. */
    assert_int_equal(td_notified(&f->t, VIRTIO_NET_TX), irqs);
    pthread_mutex_lock(f->fl.peer.lock);
    f->fl.peer.tx_kick_done(f->fl.peer.ctx);
    pthread_mutex_unlock(f->fl.peer.lock);
    assert_int_equal(td_notified(&f->t, VIRTIO_NET_TX), irqs + 1);
    pthread_mutex_lock(f->fl.peer.lock);
    f->fl.peer.tx_kick(f->fl.peer.ctx); /* nothing queued: nothing owed */
    f->fl.peer.tx_kick_done(f->fl.peer.ctx);
    pthread_mutex_unlock(f->fl.peer.lock);
    assert_int_equal(td_notified(&f->t, VIRTIO_NET_TX), irqs + 1);

    assert_false(f->dev->ops->take_kick(f->dev, VIRTIO_NET_TX, -1));
    assert_int_equal(f->fl.watched, -1);
    f->fl.watch_result = -EMFILE; /* no dup left: the transport keeps watching */
    assert_false(f->dev->ops->take_kick(f->dev, VIRTIO_NET_TX, 7));
    destroy(f);
}

static void test_tx_vnet_header_passed(void **state)
{
    (void)state;
    struct fix *f = make(true, 0, BASE | VIRTIO_BIT(VIRTIO_NET_F_CSUM));
    uint8_t frame[100], hdr[HDR] = { 1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0x77, 0x77 };
    make_frame(frame, sizeof(frame), NULL);
    add_tx(f, hdr, frame, sizeof(frame), 3, 50);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(f->fl.sent, 1);
    assert_int_equal(f->fl.last_len, HDR + sizeof(frame));
    /* num_buffers is not the link's business: zeroed. */
    uint8_t want[HDR] = { 1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0 };
    assert_memory_equal(f->fl.last, want, HDR);
    assert_memory_equal(f->fl.last + HDR, frame, sizeof(frame));
    destroy(f);
}

static void test_tx_bad_frames_dropped(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    uint8_t frame[NET_FRAME_MAX + 1], hdr[HDR] = { 0 };
    make_frame(frame, sizeof(frame), NULL);
    add_tx(f, hdr, frame, 10, 0, 100);                    /* shorter than an Ethernet header */
    add_tx(f, hdr, frame, NET_FRAME_MAX + 1, 0, 1 << 12); /* one byte too long */
    hdr[0] = 1;                                           /* NEEDS_CSUM, not negotiated */
    add_tx(f, hdr, frame, 100, 0, 200);
    hdr[0] = 0;
    hdr[1] = 1; /* GSO TCPv4, not negotiated */
    add_tx(f, hdr, frame, 100, 0, 200);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_TX), 4);
    assert_int_equal(f->fl.sent, 0);
    struct virtio_net_stats s = stats(f);
    assert_int_equal(s.tx_dropped, 4);
    assert_int_equal(f->t.resets_asked, 0);
    /* A chain with writable parts only has no frame: dropped too. */
    uint64_t g;
    (void)g;
    struct td_buf b = { .gpa = td_alloc(&f->t, 64), .len = 64, .writable = true };
    td_add(&f->t, VIRTIO_NET_TX, &b, 1);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(stats(f).tx_dropped, 5);
    /* The largest frame goes. */
    hdr[1] = 0;
    add_tx(f, hdr, frame, NET_FRAME_MAX, 0, 1 << 12);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(f->fl.sent, 1);
    assert_int_equal(f->fl.last_len, NET_FRAME_MAX);
    destroy(f);
}

static void test_tx_back_pressure(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    uint8_t frame[60], hdr[HDR] = { 0 };
    make_frame(frame, sizeof(frame), NULL);
    f->fl.send_result = -EAGAIN;
    add_tx(f, hdr, frame, sizeof(frame), 0, 100);
    add_tx(f, hdr, frame, sizeof(frame), 0, 100);
    td_kick(&f->t, VIRTIO_NET_TX);
    td_kick(&f->t, VIRTIO_NET_TX); /* a kick while held does not spin or drop */
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_TX), 0);
    f->fl.send_result = 0;
    pthread_mutex_lock(f->fl.peer.lock);
    f->fl.peer.tx_ready(f->fl.peer.ctx);
    pthread_mutex_unlock(f->fl.peer.lock);
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_TX), 2);
    assert_int_equal(f->fl.sent, 2);
    assert_int_equal(stats(f).tx_dropped, 0);
    destroy(f);
}

static void check_rx(struct fix *f, uint64_t gpa, const uint8_t *frame, size_t len, uint16_t bufs)
{
    uint8_t *p = td_ptr(&f->t, gpa, HDR + len);
    uint8_t want[HDR] = { 0 };
    want[10] = (uint8_t)bufs;
    assert_memory_equal(p, want, HDR);
    assert_memory_equal(p + HDR, frame, len);
}

static void test_rx_single(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    uint8_t frame[1514];
    make_frame(frame, sizeof(frame), NULL);
    /* No buffers: the link keeps the frame and hears when buffers come. */
    assert_false(deliver(f, frame, sizeof(frame)));
    uint64_t small, big;
    add_rx(f, 100, &small);
    td_kick(&f->t, VIRTIO_NET_RX);
    assert_int_equal(f->fl.rx_ready_calls, 1);
    /* Too small for the frame: dropped, the buffer kept for the next frame. */
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(stats(f).rx_dropped, 1);
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 0);
    assert_true(deliver(f, frame, 60));
    check_rx(f, small, frame, 60, 1);
    add_rx(f, 2048, &big);
    assert_true(deliver(f, frame, sizeof(frame)));
    uint32_t id, len;
    assert_true(td_used(&f->t, VIRTIO_NET_RX, &id, &len));
    assert_int_equal(len, HDR + 60);
    assert_true(td_used(&f->t, VIRTIO_NET_RX, &id, &len));
    assert_int_equal(len, HDR + sizeof(frame));
    check_rx(f, big, frame, sizeof(frame), 1);
    assert_int_equal(stats(f).rx_frames, 2);
    destroy(f);
}

static void test_rx_merged(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE | MRG);
    static uint8_t frame[65000];
    make_frame(frame, sizeof(frame), NULL);
    uint64_t g[50];
    for (unsigned i = 0; i < 3; i++)
        add_rx(f, 1536, &g[i]);
    /* 5000 bytes need 4 buffers of 1536: none is used until all are there. */
    assert_false(deliver(f, frame, 5000));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 0);
    add_rx(f, 1536, &g[3]);
    td_kick(&f->t, VIRTIO_NET_RX);
    assert_int_equal(f->fl.rx_ready_calls, 1);
    assert_true(deliver(f, frame, 5000));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 4);
    uint8_t got[5000 + HDR];
    size_t off = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t id, len;
        assert_true(td_used(&f->t, VIRTIO_NET_RX, &id, &len));
        assert_int_equal(len, i < 3 ? 1536 : 5000 + HDR - 3 * 1536);
        memcpy(got + off, td_ptr(&f->t, g[i], len), len);
        off += len;
    }
    assert_int_equal(got[10], 4); /* num_buffers */
    assert_int_equal(got[11], 0);
    assert_memory_equal(got + HDR, frame, 5000);
    /* A frame the whole ring cannot hold is dropped, not held forever. */
    for (unsigned i = 0; i < 128; i++)
        add_rx(f, 64, &g[0]);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(stats(f).rx_dropped, 1);
    assert_true(deliver(f, frame, 100)); /* and the buffers are still there */
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 4 + 2);
    destroy(f);
}

/* Sends a control command and returns the ack the device wrote. */
static uint8_t ctrl(struct fix *f, const void *cmd, size_t len)
{
    struct td_buf b[2];
    b[0].gpa = td_alloc(&f->t, (uint32_t)len);
    memcpy(td_ptr(&f->t, b[0].gpa, len), cmd, len);
    b[0].len = (uint32_t)len;
    b[0].writable = false;
    b[1].gpa = td_alloc(&f->t, 1);
    *(uint8_t *)td_ptr(&f->t, b[1].gpa, 1) = 0xaa;
    b[1].len = 1;
    b[1].writable = true;
    td_add(&f->t, VIRTIO_NET_CTRL, b, 2);
    td_kick(&f->t, VIRTIO_NET_CTRL);
    uint32_t id, l;
    assert_true(td_used(&f->t, VIRTIO_NET_CTRL, &id, &l));
    assert_int_equal(l, 1);
    return *(uint8_t *)td_ptr(&f->t, b[1].gpa, 1);
}

static void test_rx_filter_and_control(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE | MRG);
    uint64_t g;
    for (unsigned i = 0; i < 20; i++)
        add_rx(f, 2048, &g);
    uint8_t frame[100];
    const uint8_t other[6] = { 0x02, 9, 9, 9, 9, 9 }, mcast[6] = { 0x01, 0, 0x5e, 0, 0, 1 };
    const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    /* Promiscuous until the driver sets its filters. */
    make_frame(frame, sizeof(frame), other);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 1);
    const uint8_t promisc_off[3] = { 0, 0, 0 };
    assert_int_equal(ctrl(f, promisc_off, 3), 0);
    make_frame(frame, sizeof(frame), other);
    assert_true(deliver(f, frame, sizeof(frame)));
    make_frame(frame, sizeof(frame), mcast);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(stats(f).rx_filtered, 2);
    make_frame(frame, sizeof(frame), bcast);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 2);

    const uint8_t allmulti[3] = { 0, 1, 1 };
    assert_int_equal(ctrl(f, allmulti, 3), 0);
    make_frame(frame, sizeof(frame), mcast);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 3);

    /* A unicast table with `other` in it. */
    uint8_t tbl[2 + 4 + 6 + 4] = { 1, 0, 1, 0, 0, 0 };
    memcpy(tbl + 6, other, 6);
    assert_int_equal(ctrl(f, tbl, sizeof(tbl)), 0);
    make_frame(frame, sizeof(frame), other);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 4);
    /* A table whose count runs past the command is refused whole. */
    tbl[2] = 9;
    assert_int_equal(ctrl(f, tbl, sizeof(tbl)), 1);

    /* A new address: config space shows it and frames to it pass. */
    uint8_t set[8] = { 1, 1, 0x02, 1, 2, 3, 4, 5 };
    assert_int_equal(ctrl(f, set, sizeof(set)), 0);
    uint8_t c[6];
    f->dev->ops->config_read(f->dev, 0, c, 6);
    assert_memory_equal(c, set + 2, 6);
    make_frame(frame, sizeof(frame), set + 2);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 5);

    /* Promiscuous takes everything; unknown commands and short ones get ERR. */
    const uint8_t promisc[3] = { 0, 0, 1 }, unknown[3] = { 9, 0, 1 }, shortcmd[1] = { 0 };
    assert_int_equal(ctrl(f, promisc, 3), 0);
    make_frame(frame, sizeof(frame), (const uint8_t[6]){ 0x02, 7, 7, 7, 7, 7 });
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(td_used_idx(&f->t, VIRTIO_NET_RX), 6);
    assert_int_equal(ctrl(f, unknown, 3), 1);
    assert_int_equal(ctrl(f, shortcmd, 1), 1);
    static uint8_t huge[4096];
    assert_int_equal(ctrl(f, huge, sizeof(huge)), 1);
    assert_int_equal(f->t.resets_asked, 0);
    destroy(f);
}

static void test_hostile_driver(void **state)
{
    (void)state;
    /* A control command with no room for the ack. */
    struct fix *f = make(false, 0, BASE);
    struct td_buf b = { .gpa = td_alloc(&f->t, 3), .len = 3, .writable = false };
    td_add(&f->t, VIRTIO_NET_CTRL, &b, 1);
    td_kick(&f->t, VIRTIO_NET_CTRL);
    assert_int_equal(f->t.resets_asked, 1);
    destroy(f);
    /* A receive buffer the device may only read. */
    f = make(false, 0, BASE | MRG);
    b = (struct td_buf){ .gpa = td_alloc(&f->t, 2048), .len = 2048, .writable = false };
    td_add(&f->t, VIRTIO_NET_RX, &b, 1);
    uint8_t frame[60];
    make_frame(frame, sizeof(frame), NULL);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(f->t.resets_asked, 1);
    /* Broken until reset: frames are dropped, not delivered. */
    assert_true(deliver(f, frame, sizeof(frame)));
    destroy(f);
    /* A frame from the link shorter than an Ethernet header. */
    f = make(false, 0, BASE);
    assert_true(deliver(f, frame, 5));
    assert_int_equal(stats(f).rx_dropped, 1);
    destroy(f);
}

static void test_reset_forgets_filters(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    const uint8_t promisc[3] = { 0, 0, 1 };
    uint8_t set[8] = { 1, 1, 0x02, 1, 2, 3, 4, 5 };
    assert_int_equal(ctrl(f, promisc, 3), 0);
    assert_int_equal(ctrl(f, set, 8), 0);
    f->dev->ops->reset(f->dev);
    uint8_t c[6];
    f->dev->ops->config_read(f->dev, 0, c, 6);
    assert_memory_equal(c, MAC, 6);
    /* After reset nothing is delivered until the driver activates again. */
    uint8_t frame[60];
    make_frame(frame, sizeof(frame), NULL);
    assert_true(deliver(f, frame, sizeof(frame)));
    assert_int_equal(stats(f).rx_dropped, 1);
    destroy(f);
}

static void test_guest_ipv4_snooped(void **state)
{
    (void)state;
    struct fix *f = make(false, 0, BASE);
    uint8_t hdr[HDR] = { 0 }, frame[60];
    assert_int_equal(virtio_net_guest_ipv4(f->dev), 0);
    /* A DHCP discover comes from 0.0.0.0: nothing learnt. */
    make_frame(frame, sizeof(frame), (const uint8_t[6]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff });
    memcpy(frame + 6, MAC, 6);
    frame[14] = 0x45;
    memset(frame + 26, 0, 4);
    add_tx(f, hdr, frame, sizeof(frame), 0, 100);
    td_kick(&f->t, VIRTIO_NET_TX);
    assert_int_equal(virtio_net_guest_ipv4(f->dev), 0);
    /* An ARP from the guest's MAC tells its address. */
    frame[12] = 0x08, frame[13] = 0x06;
    const uint8_t arp[14] = { 0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
    memcpy(frame + 14, arp, sizeof(arp));
    const uint8_t ip[4] = { 10, 0, 2, 15 };
    memcpy(frame + 28, ip, 4);
    add_tx(f, hdr, frame, sizeof(frame), 0, 100);
    td_kick(&f->t, VIRTIO_NET_TX);
    uint32_t a = virtio_net_guest_ipv4(f->dev);
    assert_memory_equal(&a, ip, 4);
    /* A frame from another MAC (a bridge in the guest) does not move it. */
    frame[11] ^= 1;
    frame[31] = 99;
    add_tx(f, hdr, frame, sizeof(frame), 0, 100);
    td_kick(&f->t, VIRTIO_NET_TX);
    a = virtio_net_guest_ipv4(f->dev);
    assert_memory_equal(&a, ip, 4);
    f->dev->ops->reset(f->dev);
    assert_int_equal(virtio_net_guest_ipv4(f->dev), 0);
    destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_tx_layouts),
        cmocka_unit_test(test_tx_kick_to_link),
        cmocka_unit_test(test_tx_vnet_header_passed),
        cmocka_unit_test(test_tx_bad_frames_dropped),
        cmocka_unit_test(test_tx_back_pressure),
        cmocka_unit_test(test_rx_single),
        cmocka_unit_test(test_rx_merged),
        cmocka_unit_test(test_rx_filter_and_control),
        cmocka_unit_test(test_hostile_driver),
        cmocka_unit_test(test_reset_forgets_filters),
        cmocka_unit_test(test_guest_ipv4_snooped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
