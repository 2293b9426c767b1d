/* The guest's side of virtio-vsock for tests on the fake driver (virtio_test_driver.h):
 * packets sent and read back as Linux's driver lays them out (a header buffer, then a
 * payload buffer; receive chains of a header and 4 KiB). */
#ifndef VMK_TESTS_VSOCK_TEST_GUEST_H
#define VMK_TESTS_VSOCK_TEST_GUEST_H

#include "virtio_test_driver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_GUEST_CID 7
#define VG_RX_BUFS   64

enum vg_op {
    VG_REQUEST = 1,
    VG_RESPONSE,
    VG_RST,
    VG_SHUTDOWN,
    VG_RW,
    VG_CREDIT_UPDATE,
    VG_CREDIT_REQUEST,
};

struct vg_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

struct vsock_guest {
    struct test_driver *t;
    uint64_t rx_buf[VG_RX_BUFS]; /* posted receive buffers, in order */
    unsigned rx_next, rx_posted;
};

void vg_init(struct vsock_guest *g, struct test_driver *t);
void vg_put_hdr(uint8_t *b, const struct vg_hdr *h);
void vg_get_hdr(const uint8_t *b, struct vg_hdr *h);
/* A packet from the guest (type stream, from VG_GUEST_CID to the host), kicked. */
void vg_send(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport, const void *data,
             uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt);
/* A control packet granting 64 KiB. */
void vg_op(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport);
/* n receive buffers, not kicked: the device finds them when it next looks. */
void vg_add_rx(struct vsock_guest *g, unsigned n);
/* n receive buffers, kicked. */
void vg_post_rx(struct vsock_guest *g, unsigned n);
/* The next packet the device put in a receive buffer, its payload copied to data (at most
 * cap bytes, checked). */
bool vg_recv(struct vsock_guest *g, struct vg_hdr *h, void *data, size_t cap);
/* The next packet is op between gport and hport, from the host to the guest, with the
 * device's buffer size. */
void vg_expect(struct vsock_guest *g, uint16_t op, uint32_t gport, uint32_t hport);

#endif
