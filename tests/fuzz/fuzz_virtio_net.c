/* libFuzzer target for virtio-net: a hostile driver (virtio_driver.h) against a device made
 * fresh for each input, on a fake link the input also plays. header[0]: bit 0 the link has
 * vnet headers (offloads offered), bit 1 an MTU is offered. FZ_OP_DEVICE then reads a u8
 * action: 0 a frame from the link (u16 length, then that many bytes of input, repeated to
 * fill), 1 the link refuses the next sends (-EAGAIN) or takes them, 2 tx_ready, 3 link down or
 * up. Every frame the device sends is checked: at most NET_LINK_IOV_MAX pieces, at most
 * NET_FRAME_MAX bytes (plus the vnet header), every piece in guest RAM or the device's own
 * copy, the total equal to what the pieces hold. */
#include "virtio/net.h"
#include "virtio_driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fake_link {
    struct net_link link;
    struct net_link_peer peer;
    int send_result;
    unsigned sent;
};

struct net_state {
    struct fz_driver drv;
    struct fake_link fl;
    struct virtio_device *dev;
    uint8_t frame[NET_VNET_HDR_LEN + NET_FRAME_MAX + 64];
};

static struct net_state *state;

static int fl_send(struct net_link *l, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct fake_link *f = (struct fake_link *)l;
    FZ_CHECK(iovcnt >= 1 && iovcnt <= NET_LINK_IOV_MAX);
    FZ_CHECK(len <= NET_FRAME_MAX + (l->vnet_hdr ? NET_VNET_HDR_LEN : 0));
    size_t total = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
        /* A piece is guest RAM, or the device's own header or bounce copy (outside RAM). */
        if (fz_in_ram(&state->drv, iov[i].iov_base, 1))
            FZ_CHECK(fz_in_ram(&state->drv, iov[i].iov_base, iov[i].iov_len));
    }
    FZ_CHECK(total == len);
    if (f->send_result)
        return f->send_result;
    f->sent++;
    return 0;
}

static void fl_rx_ready(struct net_link *l)
{
    (void)l;
}

static const struct net_link_ops fake_ops = { .send = fl_send, .rx_ready = fl_rx_ready };

static void net_action(struct fz_driver *t, struct fz_in *in)
{
    struct net_state *s = t->ctx;
    struct net_link_peer *p = &s->fl.peer;
    pthread_mutex_lock(p->lock);
    switch (fz_u8(in) & 3) {
    case 0: {
        size_t len = fz_u16(in) % (sizeof(s->frame) + 1);
        size_t got = fz_bytes(in, s->frame, len < 64 ? len : 64);
        for (size_t i = got; i < len; i++)
            s->frame[i] = got ? s->frame[i % got] : (uint8_t)i;
        /* Two pieces, as a link with a header and a frame might hand them. */
        size_t cut = len / 3;
        struct iovec iov[2] = { { s->frame, cut }, { s->frame + cut, len - cut } };
        p->receive(p->ctx, iov, 2, len);
        break;
    }
    case 1: s->fl.send_result = fz_u8(in) & 1 ? -EAGAIN : 0; break;
    case 2: p->tx_ready(p->ctx); break;
    default: p->link_changed(p->ctx, fz_u8(in) & 1, "fuzz"); break;
    }
    pthread_mutex_unlock(p->lock);
}

static const struct fz_target_ops net_ops = { .settle = NULL, .action = net_action };

/* ---- seeds ---- */

static void seed_tx(struct fz_seed *s, uint16_t len, uint8_t ctl)
{
    uint8_t hdr[12] = { 0 };
    struct fz_seg segs[3] = {
        { .len = 12, .data = hdr, .data_len = 12 },
        { .len = 14,
          .data = "\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x08\x06",
          .data_len = 14 },
        { .len = len },
    };
    fz_seed_chain(s, VIRTIO_NET_TX, ctl, segs, 3);
}

static void seed_rx_buffers(struct fz_seed *s, unsigned n, uint16_t len)
{
    for (unsigned i = 0; i < n; i++) {
        struct fz_seg seg = { .writable = true, .len = len };
        fz_seed_chain(s, VIRTIO_NET_RX, 0, &seg, 1);
    }
    fz_seed_notify(s, VIRTIO_NET_RX);
}

static void seed_frame(struct fz_seed *s, uint16_t len)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, 0);
    fz_seed_u16(s, len);
    for (unsigned i = 0; i < 64; i++)
        fz_seed_u8(s, (uint8_t)(i < 6 ? 0xff : i));
}

static void seed_ctrl(struct fz_seed *s, const uint8_t *cmd, uint8_t len)
{
    struct fz_seg segs[2] = { { .len = len, .data = cmd, .data_len = len },
                              { .writable = true, .len = 1 } };
    fz_seed_chain(s, VIRTIO_NET_CTRL, FZ_CHAIN_KICK, segs, 2);
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s;
    for (unsigned v = 0; v < 4; v++) {
        char name[32];
        fz_seed_begin(&s, (uint8_t)v, FZ_H_BRING_UP | (v & 1 ? FZ_H_EVENT_IDX : FZ_H_INDIRECT), 0);
        seed_rx_buffers(&s, 4, v & 2 ? 1526 : 700);
        seed_tx(&s, 100, FZ_CHAIN_KICK);
        seed_tx(&s, 1500, FZ_CHAIN_INDIRECT | FZ_CHAIN_KICK);
        seed_frame(&s, 60);
        seed_frame(&s, 1514);
        seed_frame(&s, 3000);
        const uint8_t promisc_off[3] = { 0, 0, 0 };
        seed_ctrl(&s, promisc_off, 3);
        const uint8_t table[16] = { 1, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4, 5, 0, 0, 0, 0 };
        seed_ctrl(&s, table, 16);
        const uint8_t mac[8] = { 1, 1, 2, 9, 9, 9, 9, 9 };
        seed_ctrl(&s, mac, 8);
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 1);
        fz_seed_u8(&s, 1); /* the link refuses */
        seed_tx(&s, 200, FZ_CHAIN_KICK);
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 1);
        fz_seed_u8(&s, 0);
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 2); /* tx_ready */
        snprintf(name, sizeof(name), "traffic-%u", v);
        fz_seed_save(dir, name, &s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) {
        state = calloc(1, sizeof(*state));
        FZ_CHECK(state && fz_driver_init(&state->drv) == 0);
    }
    struct net_state *s = state;
    uint8_t sel = size ? data[0] : 0;
    memset(&s->fl, 0, sizeof(s->fl));
    s->fl.link.ops = &fake_ops;
    s->fl.link.vnet_hdr = sel & 1;
    s->fl.link.offloads = sel & 1 ? NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 : 0;
    struct virtio_net_params p = { .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 },
                                   .mtu = sel & 2 ? 9000 : 0,
                                   .offloads = true };
    s->dev = virtio_net_new(&s->fl.link, &p);
    FZ_CHECK(s->dev != NULL);
    s->fl.peer = virtio_net_peer(s->dev);
    fz_run(&s->drv, s->dev, &net_ops, s, data, size);
    s->dev->ops->destroy(s->dev);
    return 0;
}
