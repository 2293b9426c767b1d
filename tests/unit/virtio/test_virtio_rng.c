#include "virtio/rng.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* The fake driver (tests/support) plus the event loop the device's timer runs on. */
struct fix {
    struct test_driver t;
    struct event_loop *el;
    struct virtio_device *dev;
    uint64_t bufs[8]; /* the last chain's buffers */
};

static void *gpa(struct fix *f, uint64_t addr, uint64_t len)
{
    void *p = td_ptr(&f->t, addr, len);
    assert_non_null(p);
    return p;
}

/* nout readable then nin writable buffers of len bytes; publishes the chain. */
static uint16_t add_chain(struct fix *f, unsigned nout, unsigned nin, uint32_t len)
{
    struct td_buf b[8];
    unsigned total = nout + nin;
    assert_true(total <= 8);
    for (unsigned k = 0; k < total; k++) {
        f->bufs[k] = td_alloc(&f->t, len ? len : 1);
        b[k] = (struct td_buf){ .gpa = f->bufs[k], .len = len, .writable = k >= nout };
    }
    return td_add(&f->t, 0, b, total);
}

static uint16_t used_idx(struct fix *f)
{
    return td_used_idx(&f->t, 0);
}

static uint32_t used_len(struct fix *f, uint16_t i)
{
    uint32_t len;
    td_used_entry(&f->t, 0, i, NULL, &len);
    return len;
}

static uint32_t used_id(struct fix *f, uint16_t i)
{
    uint32_t id;
    td_used_entry(&f->t, 0, i, &id, NULL);
    return id;
}

static unsigned notified(struct fix *f)
{
    return f->t.notified[0];
}

static struct fix *setup_dev(uint64_t rate, uint64_t burst)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(event_loop_new(&f->el), 0);
    f->dev = virtio_rng_new(f->el, rate, burst);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
    return f;
}

static void teardown_dev(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    event_loop_free(f->el);
    free(f);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_identity(void **state)
{
    struct event_loop *el;
    assert_int_equal(event_loop_new(&el), 0);
    struct virtio_device *d = virtio_rng_new(el, VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    assert_non_null(d);
    assert_int_equal(d->device_id, VIRTIO_ID_RNG);
    assert_int_equal(d->num_queues, 1);
    assert_int_equal(d->config_size, 0);
    /* No device-specific feature bits: only ring/transport bits (>= 28). */
    assert_int_equal(d->device_features & ((1ULL << 24) - 1), 0);
    assert_true(d->device_features & VIRTIO_BIT(VIRTIO_F_VERSION_1));
    d->ops->destroy(d);
    event_loop_free(el);
}

static void test_bad_arguments(void **state)
{
    struct event_loop *el;
    assert_int_equal(event_loop_new(&el), 0);
    assert_null(virtio_rng_new(NULL, 1000, 1000));
    assert_null(virtio_rng_new(el, 0, 1000));
    assert_null(virtio_rng_new(el, 1000, 0));
    assert_null(virtio_rng_new(el, VIRTIO_RNG_MAX_RATE + 1, 1000));
    assert_null(virtio_rng_new(el, 1000, VIRTIO_RNG_MAX_RATE + 1));
    event_loop_free(el);
}

static void test_fills_writable_chain(void **state)
{
    struct fix *f = setup_dev(VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    uint16_t head = add_chain(f, 0, 2, 256);
    uint64_t first = f->bufs[0], second = f->bufs[1];
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 1);
    assert_int_equal(used_id(f, 0), head);
    assert_int_equal(used_len(f, 0), 512);
    assert_true(notified(f) >= 1);
    assert_false(all_zero(gpa(f, first, 256), 256));
    assert_false(all_zero(gpa(f, second, 256), 256));

    /* A second request gets different bytes. */
    add_chain(f, 0, 1, 256);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 2);
    assert_int_equal(used_len(f, 1), 256);
    assert_memory_not_equal(gpa(f, first, 256), gpa(f, f->bufs[0], 256), 256);
    assert_int_equal(f->t.resets_asked, 0);
    teardown_dev(f);
}

static void test_readable_buffer_needs_reset(void **state)
{
    struct fix *f = setup_dev(VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    add_chain(f, 1, 1, 64);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(f->t.resets_asked, 1);
    assert_non_null(strstr(f->t.reset_why, "readable"));
    assert_int_equal(used_idx(f), 0);
    /* Until reset, nothing more is served. */
    add_chain(f, 0, 1, 64);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 0);
    teardown_dev(f);
}

static void test_zero_length_needs_reset(void **state)
{
    struct fix *f = setup_dev(VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    add_chain(f, 0, 1, 0);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(f->t.resets_asked, 1);
    assert_int_equal(used_idx(f), 0);
    teardown_dev(f);
}

static void test_broken_ring_needs_reset(void **state)
{
    struct fix *f = setup_dev(VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    /* avail->idx more than a queue ahead of the device: the ring is broken. */
    td_set_avail_idx(&f->t, 0, (uint16_t)(f->t.q[0].size + 5));
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(f->t.resets_asked, 1);
    assert_int_equal(used_idx(f), 0);
    teardown_dev(f);
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_rate_limit(void **state)
{
    /* 2000 B/s, 100 B burst: the first request drains the bucket. */
    struct fix *f = setup_dev(2000, 100);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    add_chain(f, 0, 1, 4096);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 1);
    assert_int_equal(used_len(f, 0), 100);

    /* The next one waits in the ring; kicks do not bypass the bucket. */
    add_chain(f, 0, 1, 4096);
    f->dev->ops->queue_notify(f->dev, 0);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 1);

    /* The timer on the event loop serves it once the bucket refilled (~50 ms). */
    while (used_idx(f) < 2 && elapsed(&t0) < 3.0)
        assert_true(event_loop_run_once(f->el, 500) >= 0);
    assert_int_equal(used_idx(f), 2);
    assert_true(used_len(f, 1) >= 1 && used_len(f, 1) <= 100);
    assert_true(elapsed(&t0) >= 0.03);

    /* Sustained: 1000 bytes take about half a second at 2000 B/s. */
    uint64_t total = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint16_t seen = used_idx(f);
    while (total < 1000 && elapsed(&t0) < 5.0) {
        if (used_idx(f) == seen && f->t.q[0].avail_idx == seen) {
            add_chain(f, 0, 1, 4096);
            f->dev->ops->queue_notify(f->dev, 0);
        }
        while (seen < used_idx(f))
            total += used_len(f, seen++);
        if (total < 1000)
            assert_true(event_loop_run_once(f->el, 200) >= 0);
    }
    assert_true(total >= 1000);
    assert_true(elapsed(&t0) >= 0.35);
    assert_int_equal(f->t.resets_asked, 0);
    teardown_dev(f);
}

static void test_reset_stops_serving(void **state)
{
    struct fix *f = setup_dev(VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
    f->dev->ops->reset(f->dev);
    add_chain(f, 0, 1, 64);
    f->dev->ops->queue_notify(f->dev, 0);
    assert_int_equal(used_idx(f), 0);
    /* Activated again, it serves what is waiting. */
    assert_int_equal(f->dev->ops->activate(f->dev), 0);
    assert_int_equal(used_idx(f), 1);
    uint8_t cfg[4] = { 1, 2, 3, 4 };
    f->dev->ops->config_read(f->dev, 0, cfg, sizeof(cfg));
    assert_true(all_zero(cfg, sizeof(cfg)));
    teardown_dev(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_fills_writable_chain),
        cmocka_unit_test(test_readable_buffer_needs_reset),
        cmocka_unit_test(test_zero_length_needs_reset),
        cmocka_unit_test(test_broken_ring_needs_reset),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_reset_stops_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
