#include "vsock_test_guest.h"
#include "virtio/vsock.h"

#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include <cmocka.h>

#define Q_RX 0
#define Q_TX 1
#define HDR  VIRTIO_VSOCK_HDR_LEN

void vg_init(struct vsock_guest *g, struct test_driver *t)
{
    memset(g, 0, sizeof(*g));
    g->t = t;
}

void vg_put_hdr(uint8_t *b, const struct vg_hdr *h)
{
    uint64_t c;
    uint32_t w;
    uint16_t s;
    c = htole64(h->src_cid), memcpy(b, &c, 8);
    c = htole64(h->dst_cid), memcpy(b + 8, &c, 8);
    w = htole32(h->src_port), memcpy(b + 16, &w, 4);
    w = htole32(h->dst_port), memcpy(b + 20, &w, 4);
    w = htole32(h->len), memcpy(b + 24, &w, 4);
    s = htole16(h->type), memcpy(b + 28, &s, 2);
    s = htole16(h->op), memcpy(b + 30, &s, 2);
    w = htole32(h->flags), memcpy(b + 32, &w, 4);
    w = htole32(h->buf_alloc), memcpy(b + 36, &w, 4);
    w = htole32(h->fwd_cnt), memcpy(b + 40, &w, 4);
}

void vg_get_hdr(const uint8_t *b, struct vg_hdr *h)
{
    uint64_t c;
    uint32_t w;
    uint16_t s;
    memcpy(&c, b, 8), h->src_cid = le64toh(c);
    memcpy(&c, b + 8, 8), h->dst_cid = le64toh(c);
    memcpy(&w, b + 16, 4), h->src_port = le32toh(w);
    memcpy(&w, b + 20, 4), h->dst_port = le32toh(w);
    memcpy(&w, b + 24, 4), h->len = le32toh(w);
    memcpy(&s, b + 28, 2), h->type = le16toh(s);
    memcpy(&s, b + 30, 2), h->op = le16toh(s);
    memcpy(&w, b + 32, 4), h->flags = le32toh(w);
    memcpy(&w, b + 36, 4), h->buf_alloc = le32toh(w);
    memcpy(&w, b + 40, 4), h->fwd_cnt = le32toh(w);
}

void vg_send(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport, const void *data,
             uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    struct vg_hdr h = { .src_cid = VG_GUEST_CID,
                        .dst_cid = VIRTIO_VSOCK_HOST_CID,
                        .src_port = gport,
                        .dst_port = hport,
                        .len = len,
                        .type = 1,
                        .op = op,
                        .flags = flags,
                        .buf_alloc = buf_alloc,
                        .fwd_cnt = fwd_cnt };
    struct td_buf b[2] = { { .gpa = td_alloc(g->t, HDR), .len = HDR } };
    vg_put_hdr(td_ptr(g->t, b[0].gpa, HDR), &h);
    unsigned n = 1;
    if (len) {
        b[1] = (struct td_buf){ .gpa = td_alloc(g->t, len), .len = len };
        memcpy(td_ptr(g->t, b[1].gpa, len), data, len);
        n = 2;
    }
    td_add(g->t, Q_TX, b, n);
    g->t->dev->ops->queue_notify(g->t->dev, Q_TX);
}

void vg_op(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport)
{
    vg_send(g, op, gport, hport, NULL, 0, 0, 65536, 0);
}

void vg_add_rx(struct vsock_guest *g, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t a = td_alloc(g->t, HDR + 4096);
        struct td_buf b[2] = { { .gpa = a, .len = HDR, .writable = true },
                               { .gpa = a + HDR, .len = 4096, .writable = true } };
        g->rx_buf[g->rx_posted++ % VG_RX_BUFS] = a;
        td_add(g->t, Q_RX, b, 2);
    }
}

void vg_post_rx(struct vsock_guest *g, unsigned n)
{
    vg_add_rx(g, n);
    g->t->dev->ops->queue_notify(g->t->dev, Q_RX);
}

bool vg_recv(struct vsock_guest *g, struct vg_hdr *h, void *data, size_t cap)
{
    uint32_t id, len;
    if (!td_used(g->t, Q_RX, &id, &len))
        return false;
    uint64_t a = g->rx_buf[g->rx_next++ % VG_RX_BUFS];
    assert_true(len >= HDR);
    vg_get_hdr(td_ptr(g->t, a, HDR), h);
    assert_int_equal(len, HDR + h->len);
    assert_true(h->len <= cap);
    if (h->len)
        memcpy(data, td_ptr(g->t, a + HDR, h->len), h->len);
    return true;
}

void vg_expect(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport)
{
    struct vg_hdr h;
    uint8_t data[4096];
    assert_true(vg_recv(g, &h, data, sizeof(data)));
    assert_int_equal(h.op, op);
    assert_int_equal(h.src_cid, VIRTIO_VSOCK_HOST_CID);
    assert_int_equal(h.dst_cid, VG_GUEST_CID);
    assert_int_equal(h.src_port, hport);
    assert_int_equal(h.dst_port, gport);
    assert_int_equal(h.type, 1);
    assert_int_equal(h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
}
