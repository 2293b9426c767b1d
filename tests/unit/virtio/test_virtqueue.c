#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Guest-physical layout of the fake guest: rings, indirect tables, then one 4 KiB
 * buffer per descriptor index. */
#define RAM_SIZE  (8u << 20)
#define DESC_GPA  0x10000ull
#define AVAIL_GPA 0x20000ull
#define USED_GPA  0x30000ull
#define IND_GPA   0x40000ull
#define DATA_GPA  0x100000ull
#define BUF_SIZE  0x1000u

/* The driver side: a few lines of what Linux's virtio_ring does. */
struct drv {
    struct guest_memory gm;
    struct virtq q;
    struct virtq_elem e;
    uint16_t avail_idx; /* the driver's copy of avail->idx */
    uint16_t next_desc; /* descriptors are handed out in order, round the table */
};

static void *gpa(struct drv *d, uint64_t addr, uint64_t len)
{
    void *p = gm_ptr(&d->gm, addr, len);
    assert_non_null(p);
    return p;
}

static void put16(struct drv *d, uint64_t addr, uint16_t v)
{
    v = htole16(v);
    memcpy(gpa(d, addr, 2), &v, 2);
}

static void put32(struct drv *d, uint64_t addr, uint32_t v)
{
    v = htole32(v);
    memcpy(gpa(d, addr, 4), &v, 4);
}

static void put64(struct drv *d, uint64_t addr, uint64_t v)
{
    v = htole64(v);
    memcpy(gpa(d, addr, 8), &v, 8);
}

static uint16_t get16(struct drv *d, uint64_t addr)
{
    uint16_t v;
    memcpy(&v, gpa(d, addr, 2), 2);
    return le16toh(v);
}

static uint32_t get32(struct drv *d, uint64_t addr)
{
    uint32_t v;
    memcpy(&v, gpa(d, addr, 4), 4);
    return le32toh(v);
}

static uint64_t buf_gpa(unsigned i)
{
    return DATA_GPA + (uint64_t)i * BUF_SIZE;
}

static void write_desc(struct drv *d, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                       uint16_t flags, uint16_t next)
{
    uint64_t at = table + (uint64_t)i * VIRTQ_DESC_SIZE;
    put64(d, at, addr);
    put32(d, at + 8, len);
    put16(d, at + 12, flags);
    put16(d, at + 14, next);
}

static void set_desc(struct drv *d, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    write_desc(d, DESC_GPA, i, addr, len, flags, next);
}

static void set_avail_idx(struct drv *d, uint16_t idx)
{
    __atomic_store_n((uint16_t *)gpa(d, AVAIL_GPA + 2, 2), htole16(idx), __ATOMIC_RELEASE);
}

/* Ring entry first, then (release) the index that publishes it. */
static void publish(struct drv *d, uint16_t head)
{
    put16(d, AVAIL_GPA + 4 + 2 * (uint64_t)(d->avail_idx % d->q.size), head);
    d->avail_idx++;
    set_avail_idx(d, d->avail_idx);
}

/* nout device-readable then nin device-writable buffers of len bytes each, on
 * consecutive descriptors (buffer i for descriptor i); returns the head. */
static uint16_t add_chain(struct drv *d, unsigned nout, unsigned nin, uint32_t len)
{
    uint16_t n = d->q.size;
    uint16_t head = d->next_desc % n;
    unsigned total = nout + nin;
    for (unsigned k = 0; k < total; k++) {
        uint16_t i = (uint16_t)((head + k) % n);
        uint16_t flags =
            (k + 1 < total ? VIRTQ_DESC_F_NEXT : 0) | (k >= nout ? VIRTQ_DESC_F_WRITE : 0);
        set_desc(d, i, buf_gpa(i), len, flags, (uint16_t)((i + 1) % n));
    }
    d->next_desc = (uint16_t)((head + total) % n);
    publish(d, head);
    return head;
}

static uint16_t used_idx(struct drv *d)
{
    return get16(d, USED_GPA + 2);
}

static uint32_t used_id(struct drv *d, uint16_t i)
{
    return get32(d, USED_GPA + 4 + 8 * (uint64_t)(i % d->q.size));
}

static uint32_t used_len(struct drv *d, uint16_t i)
{
    return get32(d, USED_GPA + 8 + 8 * (uint64_t)(i % d->q.size));
}

static void set_used_event(struct drv *d, uint16_t v)
{
    put16(d, AVAIL_GPA + 4 + 2 * (uint64_t)d->q.size, v);
}

static uint16_t avail_event(struct drv *d)
{
    return get16(d, USED_GPA + 4 + 8 * (uint64_t)d->q.size);
}

/* Linux's virtqueue_kick_prepare: would the driver kick after moving avail idx from
 * old to new? */
static bool driver_would_kick(struct drv *d, uint16_t old, uint16_t new_idx)
{
    if (d->q.event_idx) {
        uint16_t ev = avail_event(d);
        return (uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old);
    }
    return !(get16(d, USED_GPA) & VIRTQ_USED_F_NO_NOTIFY);
}

/* A driver reset: fresh zeroed rings, new parameters, queue enabled again. */
static void reconfigure(struct drv *d, uint16_t size, bool event_idx, bool indirect)
{
    virtq_disable(&d->q);
    memset(gpa(d, DESC_GPA, DATA_GPA - DESC_GPA), 0, DATA_GPA - DESC_GPA);
    d->q.size = size;
    d->q.event_idx = event_idx;
    d->q.indirect = indirect;
    d->q.desc_addr = DESC_GPA;
    d->q.avail_addr = AVAIL_GPA;
    d->q.used_addr = USED_GPA;
    d->avail_idx = 0;
    d->next_desc = 0;
    assert_int_equal(virtq_enable(&d->q), 0);
}

static int setup(void **state)
{
    struct drv *d = calloc(1, sizeof(*d));
    if (!d || guest_memory_init(&d->gm, RAM_SIZE) != 0) {
        free(d);
        return -1;
    }
    d->q.gm = &d->gm;
    reconfigure(d, 16, false, false);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct drv *d = *state;
    guest_memory_destroy(&d->gm);
    free(d);
    return 0;
}

/* The queue is broken for good: pops fail even for a valid chain, nothing is
 * pushed, nothing notifies. */
static void assert_stays_broken(struct drv *d, const char *reason)
{
    uint16_t used_before = used_idx(d);
    assert_true(virtq_is_broken(&d->q));
    assert_non_null(virtq_broken_reason(&d->q));
    if (reason && !strstr(virtq_broken_reason(&d->q), reason))
        fail_msg("broken for \"%s\", expected \"%s\"", virtq_broken_reason(&d->q), reason);
    assert_int_equal(virtq_pop(&d->q, &d->e), -EIO);
    assert_int_equal(d->e.out_num + d->e.in_num, 0);
    d->next_desc = 0;
    add_chain(d, 1, 1, 64);
    assert_int_equal(virtq_pop(&d->q, &d->e), -EIO);
    assert_int_equal(virtq_pop(&d->q, &d->e), -EIO);
    assert_false(virtq_should_notify(&d->q));
    assert_false(virtq_set_notification(&d->q, true));
    assert_int_equal(used_idx(d), used_before);
}

static void expect_broken(struct drv *d, const char *reason)
{
    assert_int_equal(virtq_pop(&d->q, &d->e), -EIO);
    assert_stays_broken(d, reason);
}

/* --- the normal path ------------------------------------------------------------ */

static void test_simple_chain(void **state)
{
    struct drv *d = *state;
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    memcpy(gpa(d, buf_gpa(3), 5), "hello", 5);
    set_desc(d, 3, buf_gpa(3), 100, VIRTQ_DESC_F_NEXT, 7);
    set_desc(d, 7, buf_gpa(7), 200, VIRTQ_DESC_F_WRITE, 0);
    publish(d, 3);

    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.head, 3);
    assert_int_equal(d->e.out_num, 1);
    assert_int_equal(d->e.in_num, 1);
    assert_int_equal(d->e.out_len, 100);
    assert_int_equal(d->e.in_len, 200);
    assert_ptr_equal(d->e.iov[0].iov_base, gpa(d, buf_gpa(3), 100));
    assert_int_equal(d->e.iov[0].iov_len, 100);
    assert_ptr_equal(d->e.iov[1].iov_base, gpa(d, buf_gpa(7), 200));
    assert_int_equal(d->e.iov[1].iov_len, 200);

    char buf[8] = { 0 };
    assert_int_equal(virtq_elem_read(&d->e, 0, buf, 5), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(virtq_elem_write(&d->e, 10, "world", 5), 5);
    assert_memory_equal(gpa(d, buf_gpa(7) + 10, 5), "world", 5);

    assert_int_equal(virtq_push(&d->q, &d->e, 15), 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_int_equal(used_idx(d), 1);
    assert_int_equal(used_id(d, 0), 3);
    assert_int_equal(used_len(d, 0), 15);
    assert_false(virtq_is_broken(&d->q));
}

/* virtq_has_avail peeks without popping, and when it finds nothing asks the driver for a
 * kick at the next chain (as an empty pop does), so a device that stops on false hears of it. */
static void test_has_avail(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, true, false);
    assert_false(virtq_has_avail(&d->q));
    add_chain(d, 1, 1, 64);
    assert_true(virtq_has_avail(&d->q));
    assert_true(virtq_has_avail(&d->q)); /* a peek takes nothing */
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_false(virtq_has_avail(&d->q));
    assert_int_equal(avail_event(d), 1); /* armed at the next chain */
    uint16_t old = d->avail_idx;
    add_chain(d, 1, 1, 64);
    assert_true(driver_would_kick(d, old, d->avail_idx));
    assert_true(virtq_has_avail(&d->q));
    virtq_disable(&d->q);
    assert_false(virtq_has_avail(&d->q));
}

static void test_many_chains_in_order(void **state)
{
    struct drv *d = *state;
    uint16_t heads[8];
    uint16_t used = 0;
    /* 200 rounds of 8 chains of 2 descriptors: the 16-entry rings wrap 100 times. */
    for (unsigned round = 0; round < 200; round++) {
        for (unsigned k = 0; k < 8; k++)
            heads[k] = add_chain(d, 1, 1, 64 + k);
        for (unsigned k = 0; k < 8; k++) {
            assert_int_equal(virtq_pop(&d->q, &d->e), 1);
            assert_int_equal(d->e.head, heads[k]);
            assert_int_equal(d->e.out_len, 64 + k);
            assert_ptr_equal(d->e.iov[0].iov_base, gpa(d, buf_gpa(heads[k]), 1));
            assert_int_equal(virtq_push(&d->q, &d->e, k), 0);
            assert_int_equal(used_id(d, used), heads[k]);
            assert_int_equal(used_len(d, used), k);
            used++;
            assert_int_equal(used_idx(d), used);
        }
        assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    }
    assert_int_equal(virtq_get_base(&d->q), (uint16_t)1600);
}

static void test_index_wrap_from_base(void **state)
{
    struct drv *d = *state;
    /* A ring resumed just below 2^16 (as vhost-user's SET_VRING_BASE would). */
    d->avail_idx = 65530;
    set_avail_idx(d, 65530);
    put16(d, USED_GPA + 2, 65530);
    assert_int_equal(virtq_set_base(&d->q, 65530), 0);
    assert_int_equal(virtq_get_base(&d->q), 65530);
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);

    uint16_t heads[12];
    for (unsigned k = 0; k < 12; k++)
        heads[k] = add_chain(d, 1, 0, 8);
    assert_int_equal(get16(d, AVAIL_GPA + 2), 6);
    for (unsigned k = 0; k < 12; k++) {
        assert_int_equal(virtq_pop(&d->q, &d->e), 1);
        assert_int_equal(d->e.head, heads[k]);
        assert_int_equal(virtq_push(&d->q, &d->e, 0), 0);
        assert_int_equal(used_id(d, (uint16_t)(65530 + k)), heads[k]);
    }
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_int_equal(used_idx(d), 6);
    assert_int_equal(virtq_get_base(&d->q), 6);
    /* set_base refuses while elements are in flight, and on a disabled queue. */
    add_chain(d, 1, 0, 8);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_set_base(&d->q, 0), -EINVAL);
    virtq_disable(&d->q);
    assert_int_equal(virtq_set_base(&d->q, 0), -EINVAL);
}

static void test_index_wrap_natural(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 4, false, false);
    for (unsigned k = 0; k < 70000; k++) {
        uint16_t head = add_chain(d, 0, 1, 16);
        assert_int_equal(virtq_pop(&d->q, &d->e), 1);
        assert_int_equal(d->e.head, head);
        assert_int_equal(virtq_push(&d->q, &d->e, 16), 0);
    }
    assert_int_equal(used_idx(d), (uint16_t)70000);
    assert_int_equal(virtq_get_base(&d->q), (uint16_t)70000);
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
}

static void test_push_used_ring(void **state)
{
    struct drv *d = *state;
    struct virtq_elem *second = malloc(sizeof(*second));
    assert_non_null(second);
    uint16_t h1 = add_chain(d, 1, 2, 100);
    uint16_t h2 = add_chain(d, 0, 1, 50);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_pop(&d->q, second), 1);
    assert_int_equal(d->e.in_len, 200);
    /* Completion out of order is allowed: used entries follow push order. */
    assert_int_equal(virtq_push(&d->q, second, 50), 0);
    assert_int_equal(used_idx(d), 1);
    assert_int_equal(used_id(d, 0), h2);
    assert_int_equal(used_len(d, 0), 50);
    assert_int_equal(virtq_push(&d->q, &d->e, 200), 0);
    assert_int_equal(used_idx(d), 2);
    assert_int_equal(used_id(d, 1), h1);
    assert_int_equal(used_len(d, 1), 200);
    free(second);
}

static void test_zero_length_skipped(void **state)
{
    struct drv *d = *state;
    /* Zero-length descriptors make no iovec, and their address is never used. */
    set_desc(d, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, buf_gpa(1), 10, VIRTQ_DESC_F_NEXT, 2);
    set_desc(d, 2, RAM_SIZE, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
    set_desc(d, 3, buf_gpa(3), 20, VIRTQ_DESC_F_WRITE, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.out_num, 1);
    assert_int_equal(d->e.in_num, 1);
    assert_int_equal(d->e.out_len, 10);
    assert_int_equal(d->e.in_len, 20);
    assert_ptr_equal(d->e.iov[1].iov_base, gpa(d, buf_gpa(3), 20));
}

static void test_copy_helpers(void **state)
{
    struct drv *d = *state;
    /* Out: 3 + 4 bytes; in: 2 + 6 bytes. */
    set_desc(d, 0, buf_gpa(0), 3, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, buf_gpa(1), 4, VIRTQ_DESC_F_NEXT, 2);
    set_desc(d, 2, buf_gpa(2), 2, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
    set_desc(d, 3, buf_gpa(3), 6, VIRTQ_DESC_F_WRITE, 0);
    memcpy(gpa(d, buf_gpa(0), 3), "abc", 3);
    memcpy(gpa(d, buf_gpa(1), 4), "defg", 4);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);

    char buf[16] = { 0 };
    assert_int_equal(virtq_elem_read(&d->e, 0, buf, sizeof(buf)), 7);
    assert_memory_equal(buf, "abcdefg", 7);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(virtq_elem_read(&d->e, 2, buf, 3), 3);
    assert_memory_equal(buf, "cde", 3);
    assert_int_equal(virtq_elem_read(&d->e, 7, buf, 1), 0);
    assert_int_equal(virtq_elem_read(&d->e, SIZE_MAX, buf, 1), 0);

    assert_int_equal(virtq_elem_write(&d->e, 1, "12345678", 8), 7);
    static const uint8_t first_in[2] = { 0, '1' };
    assert_memory_equal(gpa(d, buf_gpa(2), 2), first_in, 2);
    assert_memory_equal(gpa(d, buf_gpa(3), 6), "234567", 6);
    assert_int_equal(virtq_elem_write(&d->e, 8, "x", 1), 0);
    /* Writes never touch the device-readable buffers. */
    assert_memory_equal(gpa(d, buf_gpa(1), 4), "defg", 4);
}

static void test_indirect_chain(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, false, true);
    /* Linux's layout: one descriptor pointing at a table of out then in buffers. */
    write_desc(d, IND_GPA, 0, buf_gpa(10), 16, VIRTQ_DESC_F_NEXT, 1);
    write_desc(d, IND_GPA, 1, buf_gpa(11), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    write_desc(d, IND_GPA, 2, buf_gpa(12), 1, VIRTQ_DESC_F_WRITE, 0);
    set_desc(d, 5, IND_GPA, 3 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 5);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.head, 5);
    assert_int_equal(d->e.out_num, 1);
    assert_int_equal(d->e.in_num, 2);
    assert_int_equal(d->e.out_len, 16);
    assert_int_equal(d->e.in_len, 513);
    assert_ptr_equal(d->e.iov[0].iov_base, gpa(d, buf_gpa(10), 16));
    assert_ptr_equal(d->e.iov[2].iov_base, gpa(d, buf_gpa(12), 1));
    assert_int_equal(virtq_push(&d->q, &d->e, 513), 0);
    assert_int_equal(used_id(d, 0), 5);

    /* Direct descriptors followed by one INDIRECT (spec 2.7.5.3.2), and a table at an
     * unaligned address (the spec asks no alignment). */
    uint64_t table = IND_GPA + 0x1003;
    write_desc(d, table, 0, buf_gpa(13), 7, VIRTQ_DESC_F_WRITE, 0);
    set_desc(d, 0, buf_gpa(0), 3, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, table, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.out_num, 1);
    assert_int_equal(d->e.in_num, 1);
    assert_int_equal(d->e.in_len, 7);
    assert_ptr_equal(d->e.iov[1].iov_base, gpa(d, buf_gpa(13), 7));
}

static void test_chain_of_queue_size(void **state)
{
    struct drv *d = *state;
    /* The longest chains allowed: size buffers, direct and through a table. */
    reconfigure(d, VIRTQ_MAX_SIZE, false, true);
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        set_desc(d, i, buf_gpa(i), 1, i + 1 < VIRTQ_MAX_SIZE ? VIRTQ_DESC_F_NEXT : 0,
                 (uint16_t)(i + 1));
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.out_num, VIRTQ_MAX_IOV);
    assert_int_equal(virtq_push(&d->q, &d->e, 0), 0);

    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        write_desc(d, IND_GPA, i, buf_gpa(i), 2, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                   (uint16_t)(i + 1));
    write_desc(d, IND_GPA, VIRTQ_MAX_SIZE - 1, buf_gpa(0), 2, VIRTQ_DESC_F_WRITE, 0);
    set_desc(d, 9, IND_GPA, VIRTQ_MAX_SIZE * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 9);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.in_num, VIRTQ_MAX_IOV);
    assert_int_equal(d->e.in_len, 2 * VIRTQ_MAX_SIZE);
}

/* --- hostile drivers -------------------------------------------------------------- */

static void test_loop(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT, 0);
    publish(d, 0);
    expect_broken(d, "loop");
}

static void test_self_loop_zero_length(void **state)
{
    struct drv *d = *state;
    /* Zero-length descriptors make no iovecs but still cost time-to-live. */
    set_desc(d, 4, 0, 0, VIRTQ_DESC_F_NEXT, 4);
    publish(d, 4);
    expect_broken(d, "loop");
}

static void test_next_out_of_range(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT, 16);
    publish(d, 0);
    expect_broken(d, "NEXT index");
}

static void test_next_out_of_range_in_table(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, false, true);
    /* Index 3 is inside the queue but outside the 2-entry table. */
    write_desc(d, IND_GPA, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT, 3);
    write_desc(d, IND_GPA, 1, buf_gpa(1), 8, 0, 0);
    set_desc(d, 0, IND_GPA, 2 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "NEXT index");
}

static void test_buffer_out_of_ram(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, RAM_SIZE - 10, 20, 0, 0);
    publish(d, 0);
    expect_broken(d, "guest RAM");
    reconfigure(d, 16, false, false);
    set_desc(d, 0, RAM_SIZE, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(d, 0);
    expect_broken(d, "guest RAM");
    /* The last byte of RAM is fine. */
    reconfigure(d, 16, false, false);
    set_desc(d, 0, RAM_SIZE - 1, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
}

static void test_buffer_wraps_address_space(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, UINT64_MAX - 10, 100, 0, 0);
    publish(d, 0);
    expect_broken(d, "guest RAM");
    reconfigure(d, 16, false, false);
    /* addr + len wraps round to 0x1000, which is RAM. */
    set_desc(d, 0, UINT64_MAX - 0xfff, 0x2000, 0, 0);
    publish(d, 0);
    expect_broken(d, "guest RAM");
}

static void test_buffer_spans_two_regions(void **state)
{
    struct drv *d = *state;
    /* Two regions adjacent in guest-physical space but apart in the host. */
    size_t half = 1u << 20;
    uint8_t *a = aligned_alloc(4096, half), *b = aligned_alloc(4096, half);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 0, half);
    memset(b, 0, half);
    guest_memory_destroy(&d->gm);
    guest_memory_init_empty(&d->gm);
    assert_int_equal(gm_add_region(&d->gm, 0, half, a), 0);
    assert_int_equal(gm_add_region(&d->gm, half, half, b), 0);
    reconfigure(d, 16, false, false);

    set_desc(d, 0, half + 0x100, 0x100, 0, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_ptr_equal(d->e.iov[0].iov_base, b + 0x100);
    assert_int_equal(virtq_push(&d->q, &d->e, 0), 0);

    set_desc(d, 1, half - 8, 16, 0, 0);
    publish(d, 1);
    expect_broken(d, "one guest RAM region");

    virtq_disable(&d->q);
    free(a);
    free(b);
    /* teardown destroys this table, which owns nothing. */
    guest_memory_init_empty(&d->gm);
}

static void test_indirect_not_negotiated(void **state)
{
    struct drv *d = *state;
    write_desc(d, IND_GPA, 0, buf_gpa(0), 8, 0, 0);
    set_desc(d, 0, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "not negotiated");
}

static void test_indirect_nested(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, false, true);
    write_desc(d, IND_GPA + 0x100, 0, buf_gpa(0), 8, 0, 0);
    write_desc(d, IND_GPA, 0, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT, 1);
    write_desc(d, IND_GPA, 1, IND_GPA + 0x100, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    set_desc(d, 0, IND_GPA, 2 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "inside an indirect table");
}

static void test_indirect_self_reference(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, false, true);
    /* A table whose only entry points at the table itself. */
    write_desc(d, IND_GPA, 0, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    set_desc(d, 0, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "inside an indirect table");
}

static void test_indirect_with_next(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, false, true);
    write_desc(d, IND_GPA, 0, buf_gpa(0), 8, 0, 0);
    set_desc(d, 0, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, buf_gpa(1), 8, 0, 0);
    publish(d, 0);
    expect_broken(d, "INDIRECT and NEXT");
}

static void test_indirect_bad_tables(void **state)
{
    struct drv *d = *state;
    static const struct {
        uint64_t addr;
        uint32_t len;
        const char *reason;
    } cases[] = {
        { IND_GPA, 0, "multiple of 16" },
        { IND_GPA, 24, "multiple of 16" },
        { IND_GPA, 8, "multiple of 16" },
        { RAM_SIZE - 16, 32, "not wholly inside guest RAM" },
        { RAM_SIZE, 16, "not wholly inside guest RAM" },
        { UINT64_MAX - 15, 32, "not wholly inside guest RAM" },
        { IND_GPA, 0xfffffff0u, "not wholly inside guest RAM" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        reconfigure(d, 16, false, true);
        write_desc(d, IND_GPA, 0, buf_gpa(0), 8, 0, 0);
        set_desc(d, 0, cases[i].addr, cases[i].len, VIRTQ_DESC_F_INDIRECT, 0);
        publish(d, 0);
        expect_broken(d, cases[i].reason);
    }
}

static void test_readable_after_writable(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    set_desc(d, 1, buf_gpa(1), 8, 0, 0);
    publish(d, 0);
    expect_broken(d, "readable descriptor after a device-writable");

    /* Also across the step into an indirect table, and for zero-length descriptors. */
    reconfigure(d, 16, false, true);
    write_desc(d, IND_GPA, 0, buf_gpa(0), 0, 0, 0);
    set_desc(d, 0, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    set_desc(d, 1, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "readable descriptor after a device-writable");
}

static void test_avail_idx_too_far_ahead(void **state)
{
    struct drv *d = *state;
    /* Exactly size ahead is a full ring: fine. */
    for (unsigned k = 0; k < 16; k++)
        add_chain(d, 1, 0, 8);
    for (unsigned k = 0; k < 16; k++) {
        assert_int_equal(virtq_pop(&d->q, &d->e), 1);
        assert_int_equal(virtq_push(&d->q, &d->e, 0), 0);
    }
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    /* size + 1 ahead cannot be. */
    set_avail_idx(d, 16 + 17);
    expect_broken(d, "avail idx");

    /* And the same idx moved backwards (as seen from the device: far ahead). */
    reconfigure(d, 16, false, false);
    set_avail_idx(d, 0xffff);
    expect_broken(d, "avail idx");
}

static void test_head_out_of_range(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, buf_gpa(0), 8, 0, 0);
    publish(d, 16);
    expect_broken(d, "head");
    reconfigure(d, 16, false, false);
    publish(d, 0xffff);
    expect_broken(d, "head");
}

static void test_chain_longer_than_size_via_indirect(void **state)
{
    struct drv *d = *state;
    /* A 17-entry table on a 16-entry ring is served: Linux sizes tables by seg_max,
     * which a vhost-user front end's smaller ring does not change. */
    reconfigure(d, 16, false, true);
    for (unsigned i = 0; i < 17; i++)
        write_desc(d, IND_GPA, i, buf_gpa(i), 8, i < 16 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    set_desc(d, 0, IND_GPA, 17 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.out_num, 17);

    /* Two direct descriptors plus a 15-entry table: 17 buffers, also served. */
    reconfigure(d, 16, false, true);
    for (unsigned i = 0; i < 15; i++)
        write_desc(d, IND_GPA, i, buf_gpa(i), 8, i < 14 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    set_desc(d, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT, 2);
    set_desc(d, 2, IND_GPA, 15 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.out_num, 17);

    /* A table of more than VIRTQ_MAX_IOV entries is refused outright. */
    reconfigure(d, 16, false, true);
    set_desc(d, 0, IND_GPA, (VIRTQ_MAX_IOV + 1) * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "more than VIRTQ_MAX_IOV entries");

    /* A loop inside a table. */
    reconfigure(d, 16, false, true);
    write_desc(d, IND_GPA, 0, buf_gpa(0), 8, VIRTQ_DESC_F_NEXT, 1);
    write_desc(d, IND_GPA, 1, buf_gpa(1), 8, VIRTQ_DESC_F_NEXT, 0);
    set_desc(d, 0, IND_GPA, 2 * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "loop");
}

static void test_too_many_in_flight(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 4, false, false);
    /* The driver re-offers head 0 while the device still holds it. */
    set_desc(d, 0, buf_gpa(0), 8, 0, 0);
    for (unsigned k = 0; k < 4; k++) {
        publish(d, 0);
        assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    }
    publish(d, 0);
    expect_broken(d, "in flight");
}

static void test_push_more_than_in_len(void **state)
{
    struct drv *d = *state;
    add_chain(d, 1, 2, 100);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_push(&d->q, &d->e, 201), -EIO);
    assert_int_equal(used_idx(d), 0);
    assert_stays_broken(d, "more bytes written");
    assert_int_equal(virtq_push(&d->q, &d->e, 0), -EIO);

    reconfigure(d, 16, false, false);
    add_chain(d, 1, 2, 100);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_push(&d->q, &d->e, 200), 0);
    /* The same element twice: more pushes than pops. */
    assert_int_equal(virtq_push(&d->q, &d->e, 0), -EIO);
    assert_int_equal(used_idx(d), 1);
    assert_stays_broken(d, "more elements than it popped");
}

static void test_stale_element_dropped(void **state)
{
    struct drv *d = *state;
    add_chain(d, 1, 1, 100);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    /* A reset overtakes the request: its completion must not land in the new ring. */
    reconfigure(d, 16, false, false);
    assert_int_equal(virtq_push(&d->q, &d->e, 10), 0);
    assert_int_equal(used_idx(d), 0);
    assert_false(virtq_is_broken(&d->q));
    virtq_disable(&d->q);
    assert_int_equal(virtq_push(&d->q, &d->e, 10), 0);
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_false(virtq_should_notify(&d->q));
    assert_false(virtq_set_notification(&d->q, true));
}

/* A device gives back the chain it popped last: the next pop and the base find it
 * again; anything else is refused and changes nothing. */
static void test_unpop(void **state)
{
    struct drv *d = *state;
    uint16_t first = add_chain(d, 1, 1, 100);
    uint16_t second = add_chain(d, 1, 1, 200);
    struct virtq_elem a, b;
    assert_int_equal(virtq_pop(&d->q, &a), 1);
    assert_int_equal(virtq_pop(&d->q, &b), 1);
    assert_int_equal(virtq_unpop(&d->q, &a), -EINVAL); /* not the last one */
    assert_int_equal(virtq_unpop(&d->q, &b), 0);
    assert_int_equal(virtq_get_base(&d->q), 1);
    assert_int_equal(virtq_unpop(&d->q, &b), -EINVAL); /* already given back */
    assert_int_equal(virtq_pop(&d->q, &b), 1);
    assert_int_equal(b.head, second);
    assert_int_equal(b.out_len, 200);
    assert_int_equal(virtq_push(&d->q, &b, 0), 0);
    assert_int_equal(virtq_push(&d->q, &a, 0), 0);
    assert_int_equal(used_id(d, 1), first);
    assert_false(virtq_is_broken(&d->q));
    /* A stale element (popped before a reset) is not the queue's to take back. */
    add_chain(d, 1, 1, 300);
    assert_int_equal(virtq_pop(&d->q, &a), 1);
    reconfigure(d, 16, false, false);
    assert_int_equal(virtq_unpop(&d->q, &a), -EINVAL);
    assert_int_equal(virtq_get_base(&d->q), 0);
}

static void test_size_rewritten_while_enabled(void **state)
{
    struct drv *d = *state;
    /* A transport that lets the guest rewrite the size must not widen the checked
     * rings: the queue keeps the size it was enabled with. */
    d->q.size = VIRTQ_MAX_SIZE;
    d->q.indirect = true;
    put16(d, AVAIL_GPA + 4, 20);
    set_avail_idx(d, 1);
    expect_broken(d, "head");
    d->q.size = 16;
    reconfigure(d, 16, false, false);
    d->q.indirect = true;
    write_desc(d, IND_GPA, 0, buf_gpa(0), 8, 0, 0);
    set_desc(d, 0, IND_GPA, VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    publish(d, 0);
    expect_broken(d, "not negotiated");
}

static void test_enable_checks(void **state)
{
    struct drv *d = *state;
    /* A working queue with one chain waiting; failed enables must leave it alone. */
    uint16_t head = add_chain(d, 1, 0, 8);
    struct virtq saved = d->q;
    static const struct {
        uint16_t size;
        uint64_t desc, avail, used;
        bool event_idx;
    } bad[] = {
        { 0, DESC_GPA, AVAIL_GPA, USED_GPA, false },
        { 3, DESC_GPA, AVAIL_GPA, USED_GPA, false },
        { 2048, DESC_GPA, AVAIL_GPA, USED_GPA, false },
        { 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA, false },
        { 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA, false },
        { 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2, false },
        { 16, RAM_SIZE - 16 * 15, AVAIL_GPA, USED_GPA, false },
        { 16, DESC_GPA, RAM_SIZE - 4 - 2 * 16 + 2, USED_GPA, false },
        { 16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 4 - 8 * 16 + 4, false },
        /* Fits without the event field, not with it. */
        { 16, DESC_GPA, RAM_SIZE - 4 - 2 * 16, USED_GPA, true },
        { 16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 4 - 8 * 16, true },
        { 16, UINT64_MAX & ~15ull, AVAIL_GPA, USED_GPA, false },
        { 16, DESC_GPA, AVAIL_GPA, UINT64_MAX & ~3ull, false },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d->q.size = bad[i].size;
        d->q.desc_addr = bad[i].desc;
        d->q.avail_addr = bad[i].avail;
        d->q.used_addr = bad[i].used;
        d->q.event_idx = bad[i].event_idx;
        if (virtq_enable(&d->q) != -EINVAL)
            fail_msg("bad ring %zu was accepted", i);
        /* Nothing private changed. */
        assert_int_equal(d->q.num, saved.num);
        assert_ptr_equal(d->q.desc, saved.desc);
        assert_int_equal(d->q.gen, saved.gen);
        assert_int_equal(d->q.last_avail_idx, saved.last_avail_idx);
    }
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.head, head);

    /* The boundary cases that do fit. */
    d->q.size = 16;
    d->q.desc_addr = RAM_SIZE - 16 * 16;
    d->q.avail_addr = RAM_SIZE - 0x1000 - 4 - 2 * 16;
    d->q.used_addr = RAM_SIZE - 0x2000 - 4 - 8 * 16;
    d->q.event_idx = false;
    assert_int_equal(virtq_enable(&d->q), 0);
    d->q.gm = NULL;
    assert_int_equal(virtq_enable(&d->q), -EINVAL);
    d->q.gm = &d->gm;
}

static void test_enable_resets_broken(void **state)
{
    struct drv *d = *state;
    publish(d, 99);
    expect_broken(d, "head");
    /* Enabling again, without a disable in between, starts afresh. */
    memset(gpa(d, AVAIL_GPA, 4 + 2 * 16), 0, 4 + 2 * 16);
    assert_int_equal(virtq_enable(&d->q), 0);
    assert_false(virtq_is_broken(&d->q));
    assert_null(virtq_broken_reason(&d->q));
    d->avail_idx = 0;
    d->next_desc = 0;
    uint16_t head = add_chain(d, 1, 0, 8);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(d->e.head, head);
}

static void test_enable_alignment_guest_and_host(void **state)
{
    struct drv *d = *state;
    /* An extra region whose guest-physical base is 2 mod 16 over a page-aligned host
     * buffer: there the guest alignment rule and the host one disagree, and the ring
     * must satisfy both (the spec's rule, and the atomics'). */
    const uint64_t g = 0x10000002;
    uint8_t *a = aligned_alloc(4096, 0x4000);
    assert_non_null(a);
    memset(a, 0, 0x4000);
    assert_int_equal(gm_add_region(&d->gm, g, 0x4000, a), 0);
    static const struct {
        uint64_t desc, used;
    } bad[] = {
        { 0x10001002, USED_GPA }, /* guest 2 mod 16, host aligned */
        { 0x10001010, USED_GPA }, /* guest aligned, host 14 mod 16 */
        { DESC_GPA, 0x10001002 }, /* guest 2 mod 4, host aligned */
        { DESC_GPA, 0x10001004 }, /* guest aligned, host 2 mod 4 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t odd = bad[i].desc == DESC_GPA ? bad[i].used : bad[i].desc;
        assert_ptr_equal(gm_ptr(&d->gm, odd, 1), a + (odd - g));
        d->q.desc_addr = bad[i].desc;
        d->q.used_addr = bad[i].used;
        if (virtq_enable(&d->q) != -EINVAL)
            fail_msg("misaligned ring %zu was accepted", i);
    }
    /* Aligned both ways inside the odd region: 0x10001012 is host a + 0x1010. */
    d->q.desc_addr = DESC_GPA;
    d->q.used_addr = USED_GPA;
    d->q.avail_addr = 0x10001012;
    assert_int_equal(virtq_enable(&d->q), 0);
    virtq_disable(&d->q);
    free(a);
}

/* --- notification suppression ---------------------------------------------------- */

static void push_one(struct drv *d)
{
    add_chain(d, 0, 1, 8);
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_push(&d->q, &d->e, 1), 0);
}

static void test_no_interrupt_flag(void **state)
{
    struct drv *d = *state;
    push_one(d);
    assert_true(virtq_should_notify(&d->q));
    put16(d, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
    push_one(d);
    assert_false(virtq_should_notify(&d->q));
    put16(d, AVAIL_GPA, 0);
    push_one(d);
    assert_true(virtq_should_notify(&d->q));
    /* used_event means nothing without event_idx. */
    set_used_event(d, 1000);
    push_one(d);
    assert_true(virtq_should_notify(&d->q));
}

static void test_event_idx_notify(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, true, false);
    /* The flag is ignored with event_idx; the first check always notifies. */
    put16(d, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
    set_used_event(d, 100);
    push_one(d); /* used idx 1 */
    assert_true(virtq_should_notify(&d->q));

    /* The driver wants an interrupt once entry 4 is used (used idx becomes 5). */
    set_used_event(d, 4);
    for (unsigned used = 2; used <= 6; used++) {
        push_one(d);
        assert_int_equal(virtq_should_notify(&d->q), used == 5);
    }
    /* used_event already behind: no interrupt. */
    set_used_event(d, 3);
    push_one(d); /* 7 */
    assert_false(virtq_should_notify(&d->q));
    /* Several pushes between checks: notify when used_event is within the batch. */
    set_used_event(d, 9);
    push_one(d); /* 8 */
    push_one(d); /* 9 */
    push_one(d); /* 10 */
    assert_true(virtq_should_notify(&d->q));
    /* No push since the last check: nothing to tell. */
    assert_false(virtq_should_notify(&d->q));
}

static void test_event_idx_notify_wrap(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, true, false);
    d->avail_idx = 65532;
    set_avail_idx(d, 65532);
    assert_int_equal(virtq_set_base(&d->q, 65532), 0);
    push_one(d); /* used idx 65533 */
    assert_true(virtq_should_notify(&d->q));
    /* used_event 1 lies in [65533, 3) across the wrap. */
    set_used_event(d, 1);
    push_one(d); /* 65534 */
    assert_false(virtq_should_notify(&d->q));
    push_one(d); /* 65535 */
    push_one(d); /* 0 */
    push_one(d); /* 1 */
    assert_false(virtq_should_notify(&d->q));
    push_one(d); /* 2 */
    assert_true(virtq_should_notify(&d->q));
    /* used_event 65535 is just behind 2: no interrupt. */
    set_used_event(d, 65535);
    push_one(d); /* 3 */
    assert_false(virtq_should_notify(&d->q));
}

static void test_event_idx_stale_signal(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 4, true, false);
    push_one(d);
    assert_true(virtq_should_notify(&d->q));
    /* 2^15 pushes without a check: the window is ambiguous, so notify regardless. */
    set_used_event(d, 0);
    for (unsigned k = 0; k < 32768; k++)
        push_one(d);
    assert_true(virtq_should_notify(&d->q));
}

static void test_set_notification_flags(void **state)
{
    struct drv *d = *state;
    assert_false(virtq_set_notification(&d->q, false));
    assert_int_equal(get16(d, USED_GPA), VIRTQ_USED_F_NO_NOTIFY);
    assert_false(driver_would_kick(d, 0, 1));
    /* A buffer arrives while suppressed: enabling reports it. */
    add_chain(d, 1, 0, 8);
    assert_true(virtq_set_notification(&d->q, true));
    assert_int_equal(get16(d, USED_GPA), 0);
    assert_true(driver_would_kick(d, 1, 2));
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_false(virtq_set_notification(&d->q, true));
    /* A ring broken meanwhile is reported as work, so the next pop says -EIO. */
    set_avail_idx(d, 100);
    assert_true(virtq_set_notification(&d->q, true));
    expect_broken(d, "avail idx");
}

static void test_set_notification_event_idx(void **state)
{
    struct drv *d = *state;
    reconfigure(d, 16, true, false);
    assert_false(virtq_set_notification(&d->q, false));
    /* Flags are not used with event_idx. */
    assert_int_equal(get16(d, USED_GPA), 0);
    for (unsigned k = 0; k < 3; k++)
        add_chain(d, 1, 0, 8);
    for (unsigned k = 0; k < 3; k++)
        assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    /* Suppressed: the device does not move avail_event while popping. */
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_int_equal(avail_event(d), 0);
    assert_false(driver_would_kick(d, 3, 4));
    assert_false(virtq_set_notification(&d->q, true));
    assert_int_equal(avail_event(d), 3);
    /* The driver adds buffer 3: it kicks, since avail_event is 3. */
    assert_true(driver_would_kick(d, 3, 4));
    add_chain(d, 1, 0, 8);
    assert_true(virtq_set_notification(&d->q, true));
    assert_int_equal(virtq_pop(&d->q, &d->e), 1);
    /* With notifications on, running the ring dry asks for the next buffer. */
    assert_int_equal(virtq_pop(&d->q, &d->e), 0);
    assert_int_equal(avail_event(d), 4);
    assert_true(driver_would_kick(d, 4, 5));
    assert_false(driver_would_kick(d, 5, 6));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_simple_chain),
        T(test_has_avail),
        T(test_many_chains_in_order),
        T(test_index_wrap_from_base),
        T(test_index_wrap_natural),
        T(test_push_used_ring),
        T(test_zero_length_skipped),
        T(test_copy_helpers),
        T(test_indirect_chain),
        T(test_chain_of_queue_size),
        T(test_loop),
        T(test_self_loop_zero_length),
        T(test_next_out_of_range),
        T(test_next_out_of_range_in_table),
        T(test_buffer_out_of_ram),
        T(test_buffer_wraps_address_space),
        T(test_buffer_spans_two_regions),
        T(test_indirect_not_negotiated),
        T(test_indirect_nested),
        T(test_indirect_self_reference),
        T(test_indirect_with_next),
        T(test_indirect_bad_tables),
        T(test_readable_after_writable),
        T(test_avail_idx_too_far_ahead),
        T(test_head_out_of_range),
        T(test_chain_longer_than_size_via_indirect),
        T(test_too_many_in_flight),
        T(test_push_more_than_in_len),
        T(test_stale_element_dropped),
        T(test_unpop),
        T(test_size_rewritten_while_enabled),
        T(test_enable_checks),
        T(test_enable_resets_broken),
        T(test_enable_alignment_guest_and_host),
        T(test_no_interrupt_flag),
        T(test_event_idx_notify),
        T(test_event_idx_notify_wrap),
        T(test_event_idx_stale_signal),
        T(test_set_notification_flags),
        T(test_set_notification_event_idx),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
