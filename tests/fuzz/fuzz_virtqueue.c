/* libFuzzer target for the virtqueue: the input is a hostile driver. Its first
 * HDR_LEN bytes pick the queue (size, features, start index, notification and push
 * behaviour); the rest is guest RAM from the descriptor table on, so the fuzzer writes
 * descriptors, the avail ring, indirect tables and buffers as raw bytes. The device
 * side pops until 0 or -EIO and pushes every chain back; any broken invariant traps. */
#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Two regions adjacent in guest-physical space, apart in the host: a buffer may not
 * span them. The rings start at RING_GPA, packed as a legacy driver would lay them. */
#define A_GPA    0x1000ull
#define A_SIZE   0x4000u
#define B_GPA    (A_GPA + A_SIZE)
#define B_SIZE   0x1000u
#define RING_GPA A_GPA
#define HDR_LEN  16
#define CTL_LEN  (HDR_LEN - 4)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)           \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

struct harness {
    struct guest_memory gm;
    uint8_t *a, *b;
    struct virtq q;
    struct virtq_elem e;
    uint8_t scratch[4096];
};

static bool inside(const uint8_t *p, size_t len, const uint8_t *base, size_t size)
{
    return p >= base && len <= size && (size_t)(p - base) <= size - len;
}

static void check_elem(struct harness *h)
{
    const struct virtq_elem *e = &h->e;
    CHECK(e->head < h->q.size);
    CHECK(e->out_num <= VIRTQ_MAX_IOV && e->in_num <= VIRTQ_MAX_IOV - e->out_num);
    /* Each buffer costs one unit of time-to-live, so no chain has more than size. */
    CHECK(e->out_num + e->in_num <= h->q.size);
    uint64_t out = 0, in = 0;
    for (unsigned i = 0; i < e->out_num + e->in_num; i++) {
        const uint8_t *p = e->iov[i].iov_base;
        size_t len = e->iov[i].iov_len;
        CHECK(len > 0 && len <= UINT32_MAX);
        CHECK(inside(p, len, h->a, A_SIZE) || inside(p, len, h->b, B_SIZE));
        if (i < e->out_num)
            out += len;
        else
            in += len;
    }
    CHECK(out == e->out_len && in == e->in_len);
    /* Read every device-readable byte through the copy helper. */
    uint64_t got = 0;
    for (;;) {
        size_t n = virtq_elem_read(e, (size_t)got, h->scratch, sizeof(h->scratch));
        if (n == 0)
            break;
        got += n;
        CHECK(got <= e->out_len);
    }
    CHECK(got == e->out_len);
}

static void check_broken(struct harness *h)
{
    CHECK(virtq_is_broken(&h->q));
    CHECK(virtq_broken_reason(&h->q) != NULL);
    CHECK(virtq_pop(&h->q, &h->e) == -EIO);
    CHECK(h->e.out_num == 0 && h->e.in_num == 0);
    CHECK(virtq_push(&h->q, &h->e, 0) == -EIO);
    CHECK(!virtq_should_notify(&h->q));
    CHECK(!virtq_set_notification(&h->q, true));
}

static uint16_t used_idx(const struct harness *h)
{
    uint16_t v;
    memcpy(&v, h->a + (h->q.used_addr - A_GPA) + 2, 2);
    return le16toh(v);
}

static void used_elem(const struct harness *h, uint16_t idx, uint32_t *id, uint32_t *len)
{
    const uint8_t *p = h->a + (h->q.used_addr - A_GPA) + 4 + 8 * (size_t)(idx & (h->q.size - 1));
    memcpy(id, p, 4);
    memcpy(len, p + 4, 4);
    *id = le32toh(*id);
    *len = le32toh(*len);
}

static void run(struct harness *h, const uint8_t *hdr, uint16_t base)
{
    const uint8_t *ctl = hdr + 4;
    uint32_t raw_written;
    memcpy(&raw_written, hdr + 4, 4);
    bool device_writes = hdr[0] & 0x40;
    uint16_t n = h->q.size;
    unsigned pops = 0;

    /* Bounded: a correct queue ends far sooner (at most size pops while the avail
     * ring stays as the input left it). */
    for (unsigned it = 0; it < 4u * n + 8; it++) {
        uint8_t c = ctl[it % CTL_LEN];
        bool pending_known = false, pending = false;
        if (c & 1) {
            pending = virtq_set_notification(&h->q, c & 2);
            if (!(c & 2))
                CHECK(!pending);
            pending_known = (c & 2) && !device_writes;
        }
        int r = virtq_pop(&h->q, &h->e);
        CHECK(r == 1 || r == 0 || r == -EIO);
        if (pending_known)
            CHECK(pending ? r != 0 : r != 1);
        if (r < 0) {
            check_broken(h);
            return;
        }
        if (r == 0) {
            CHECK(!virtq_is_broken(&h->q));
            return;
        }
        pops++;
        if (!device_writes)
            CHECK(pops <= n);
        check_elem(h);

        uint64_t written;
        switch ((c >> 5) & 3) {
        case 0: written = 0; break;
        case 1: written = h->e.in_len; break;
        case 2: written = h->e.in_len + 1; break;
        default: written = raw_written; break;
        }
        if (written > UINT32_MAX)
            written = UINT32_MAX;
        if (device_writes) {
            uint64_t left = written < h->e.in_len ? written : h->e.in_len, off = 0;
            memset(h->scratch, c, sizeof(h->scratch));
            while (left > 0) {
                size_t chunk = left < sizeof(h->scratch) ? (size_t)left : sizeof(h->scratch);
                CHECK(virtq_elem_write(&h->e, (size_t)off, h->scratch, chunk) == chunk);
                off += chunk;
                left -= chunk;
            }
            CHECK(virtq_elem_write(&h->e, (size_t)off, h->scratch, 1) == (off < h->e.in_len));
        }
        uint16_t before = (uint16_t)(base + pops - 1);
        r = virtq_push(&h->q, &h->e, (uint32_t)written);
        if (written > h->e.in_len) {
            CHECK(r == -EIO);
            check_broken(h);
            return;
        }
        CHECK(r == 0);
        CHECK(used_idx(h) == (uint16_t)(before + 1));
        uint32_t id, len;
        used_elem(h, before, &id, &len);
        CHECK(id == h->e.head && len == written);
        if (c & 4)
            (void)virtq_should_notify(&h->q);
    }
    /* Only a device writing into the rings through its buffers gets this far. */
    CHECK(device_writes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR_LEN)
        return 0;
    const uint8_t *hdr = data;
    data += HDR_LEN;
    size -= HDR_LEN;

    struct harness *h = calloc(1, sizeof(*h));
    CHECK(h);
    h->a = aligned_alloc(4096, A_SIZE);
    h->b = aligned_alloc(4096, B_SIZE);
    CHECK(h->a && h->b);
    size_t na = size < A_SIZE ? size : A_SIZE;
    memset(h->a, 0, A_SIZE);
    memset(h->b, 0, B_SIZE);
    memcpy(h->a, data, na);
    size_t nb = size - na < B_SIZE ? size - na : B_SIZE;
    memcpy(h->b, data + na, nb);
    guest_memory_init_empty(&h->gm);
    CHECK(gm_add_region(&h->gm, A_GPA, A_SIZE, h->a) == 0);
    CHECK(gm_add_region(&h->gm, B_GPA, B_SIZE, h->b) == 0);

    /* hdr[0]: bit 0 event_idx, bit 1 indirect, bits 2-4 log2(size) (1..128), bit 6
     * the device writes its in-buffers, bit 7 misplace the rings by hdr[3]. */
    struct virtq *q = &h->q;
    q->gm = &h->gm;
    q->size = (uint16_t)(1u << ((hdr[0] >> 2) & 7));
    q->event_idx = hdr[0] & 1;
    q->indirect = hdr[0] & 2;
    q->desc_addr = RING_GPA;
    q->avail_addr = q->desc_addr + VIRTQ_DESC_BYTES(q->size);
    q->used_addr = (q->avail_addr + VIRTQ_AVAIL_BYTES(q->size, true) + 3) & ~3ull;
    bool misplaced = false;
    if (hdr[0] & 0x80) {
        q->desc_addr += hdr[3] & 15;
        q->used_addr += (hdr[3] >> 4) & 3;
        misplaced = (hdr[3] & 0x3f) != 0;
    }
    int r = virtq_enable(q);
    CHECK(r == (misplaced ? -EINVAL : 0));
    if (r == 0) {
        uint16_t base = (uint16_t)(hdr[1] | hdr[2] << 8);
        CHECK(virtq_set_base(q, base) == 0);
        CHECK(virtq_get_base(q) == base);
        run(h, hdr, base);
        /* A reset drops whatever was in flight; the queue comes back clean. */
        virtq_disable(q);
        CHECK(virtq_pop(q, &h->e) == 0);
        CHECK(virtq_enable(q) == 0 && !virtq_is_broken(q));
    }
    free(h->a);
    free(h->b);
    free(h);
    return 0;
}
