#include "virtio/balloon.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define PAGE       4096u
#define PAGES_BASE 0x800000ull /* guest pages the tests balloon: above the driver's buffers */
#define Q_INFLATE  0
#define Q_DEFLATE  1
#define Q_REPORT   2

struct fix {
    struct test_driver t;
    struct virtio_device *dev;
};

static struct fix *setup(bool oom, bool reporting, uint64_t accept)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct virtio_balloon_params p = { .memory_size = TD_RAM_SIZE,
                                       .deflate_on_oom = oom,
                                       .page_reporting = reporting };
    f->dev = virtio_balloon_new(&p);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, accept), 0);
    return f;
}

static void teardown(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    free(f);
}

static uint64_t all_features(void)
{
    return ~0ULL;
}

/* Whether the host has released ballooned page i: a hole in the guest's RAM file. */
static bool released(struct fix *f, unsigned i)
{
    off_t off = (off_t)(PAGES_BASE + (uint64_t)i * PAGE);
    return lseek(f->t.gm.memfd, off, SEEK_HOLE) == off;
}

static uint8_t *page(struct fix *f, unsigned i)
{
    uint8_t *p = td_ptr(&f->t, PAGES_BASE + (uint64_t)i * PAGE, PAGE);
    assert_non_null(p);
    return p;
}

/* A device-readable buffer of PFNs on queue q, kicked. */
static void send_pfns(struct fix *f, unsigned q, const uint32_t *pfns, unsigned n)
{
    uint64_t buf = td_alloc(&f->t, n * 4);
    uint32_t *le = td_ptr(&f->t, buf, n * 4);
    for (unsigned i = 0; i < n; i++)
        le[i] = htole32(pfns[i]);
    struct td_buf b = { .gpa = buf, .len = n * 4 };
    td_add(&f->t, q, &b, 1);
    f->dev->ops->queue_notify(f->dev, q);
}

static uint32_t read_config(struct fix *f, uint32_t offset)
{
    uint32_t v;
    f->dev->ops->config_read(f->dev, offset, &v, 4);
    return le32toh(v);
}

static void test_identity(void **state)
{
    struct virtio_balloon_params p = { .memory_size = 1 << 20 };
    struct virtio_device *d = virtio_balloon_new(&p);
    assert_non_null(d);
    assert_int_equal(d->device_id, VIRTIO_ID_BALLOON);
    assert_int_equal(d->num_queues, 2);
    assert_int_equal(d->config_size, 8);
    /* Nothing optional unless asked for; never statistics, hinting or poison. */
    assert_int_equal(d->device_features & 0xffffff, 0);
    d->ops->destroy(d);

    p.deflate_on_oom = p.page_reporting = true;
    d = virtio_balloon_new(&p);
    assert_non_null(d);
    assert_int_equal(d->num_queues, 3);
    assert_int_equal(d->device_features & 0xffffff,
                     VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
                         VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_REPORTING));
    d->ops->destroy(d);

    assert_null(virtio_balloon_new(NULL));
    p.memory_size = 0;
    assert_null(virtio_balloon_new(&p));
}

static void test_target_and_actual(void **state)
{
    struct fix *f = setup(false, false, all_features());
    assert_int_equal(read_config(f, 0), 0);
    virtio_balloon_set_target_pages(f->dev, 100);
    assert_int_equal(read_config(f, 0), 100);
    assert_int_equal(virtio_balloon_target_pages(f->dev), 100);
    assert_int_equal(f->t.config_changes, 1);
    /* The same target again is no change; a target past the RAM is all of it. */
    virtio_balloon_set_target_pages(f->dev, 100);
    assert_int_equal(f->t.config_changes, 1);
    virtio_balloon_set_target_pages(f->dev, UINT32_MAX);
    assert_int_equal(read_config(f, 0), TD_RAM_SIZE / PAGE);
    assert_int_equal(f->t.config_changes, 2);

    /* The driver writes actual; num_pages is not its to write. */
    uint32_t v = htole32(42);
    f->dev->ops->config_write(f->dev, 4, &v, 4);
    assert_int_equal(read_config(f, 4), 42);
    assert_int_equal(virtio_balloon_actual_pages(f->dev), 42);
    v = htole32(7);
    f->dev->ops->config_write(f->dev, 0, &v, 4);
    assert_int_equal(read_config(f, 0), TD_RAM_SIZE / PAGE);
    /* A byte at a time, as a driver may. */
    uint8_t b = 1;
    f->dev->ops->config_write(f->dev, 5, &b, 1);
    assert_int_equal(read_config(f, 4), 42 + 256);
    uint16_t half;
    f->dev->ops->config_read(f->dev, 4, &half, 2);
    assert_int_equal(le16toh(half), 42 + 256);

    /* A reset driver holds nothing; the target stays for the next one. */
    f->dev->ops->reset(f->dev);
    assert_int_equal(virtio_balloon_actual_pages(f->dev), 0);
    assert_int_equal(read_config(f, 0), TD_RAM_SIZE / PAGE);
    /* Not running: no configuration interrupt, the driver reads it when it starts. */
    virtio_balloon_set_target_pages(f->dev, 5);
    assert_int_equal(f->t.config_changes, 2);
    teardown(f);
}

static void test_inflate_releases_pages(void **state)
{
    struct fix *f = setup(false, false, all_features());
    for (unsigned i = 0; i < 64; i++)
        memset(page(f, i), 0xa5, PAGE);
    /* Pages 0..31 in order, then 40..47 backwards, then one alone. */
    uint32_t pfns[41];
    unsigned n = 0;
    for (unsigned i = 0; i < 32; i++)
        pfns[n++] = (uint32_t)(PAGES_BASE / PAGE) + i;
    for (unsigned i = 47; i >= 40; i--)
        pfns[n++] = (uint32_t)(PAGES_BASE / PAGE) + i;
    pfns[n++] = (uint32_t)(PAGES_BASE / PAGE) + 60;
    send_pfns(f, Q_INFLATE, pfns, n);

    uint32_t id, len;
    assert_true(td_used(&f->t, Q_INFLATE, &id, &len));
    assert_int_equal(len, 0);
    assert_true(f->t.notified[Q_INFLATE] >= 1);
    for (unsigned i = 0; i < 64; i++) {
        bool ballooned = i < 32 || (i >= 40 && i <= 47) || i == 60;
        /* The host got the memory back (checked before touching the page again). */
        assert_int_equal(released(f, i), ballooned);
        assert_int_equal(page(f, i)[0], ballooned ? 0 : 0xa5);
        assert_int_equal(page(f, i)[PAGE - 1], ballooned ? 0 : 0xa5);
    }
    struct virtio_balloon_stats st;
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.inflated_pages, 41);
    assert_int_equal(st.bad_pfns, 0);
    assert_int_equal(st.discard_errors, 0);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_deflate_leaves_pages(void **state)
{
    struct fix *f = setup(false, false, all_features());
    memset(page(f, 3), 0x5a, PAGE);
    uint32_t pfn = (uint32_t)(PAGES_BASE / PAGE) + 3;
    send_pfns(f, Q_DEFLATE, &pfn, 1);
    uint32_t id, len;
    assert_true(td_used(&f->t, Q_DEFLATE, &id, &len));
    assert_int_equal(len, 0);
    assert_int_equal(page(f, 3)[0], 0x5a);
    struct virtio_balloon_stats st;
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.deflated_pages, 1);
    assert_int_equal(st.inflated_pages, 0);
    teardown(f);
}

static void test_hostile_pfns(void **state)
{
    struct fix *f = setup(false, false, all_features());
    memset(page(f, 0), 0x11, PAGE);
    /* Past the RAM, the last page's neighbour, the highest PFN: ignored and counted; the
     * one good PFN among them still served. */
    uint32_t pfns[] = { TD_RAM_SIZE / PAGE, UINT32_MAX, (uint32_t)(PAGES_BASE / PAGE),
                        TD_RAM_SIZE / PAGE + 1 };
    send_pfns(f, Q_INFLATE, pfns, 4);
    uint32_t id, len;
    assert_true(td_used(&f->t, Q_INFLATE, &id, &len));
    assert_int_equal(page(f, 0)[0], 0);
    struct virtio_balloon_stats st;
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.bad_pfns, 3);
    assert_int_equal(st.inflated_pages, 1);

    /* A buffer longer than 4096 PFNs: the first 4096 served, the rest ignored. */
    unsigned n = 5000;
    uint32_t *many = calloc(n, sizeof(*many));
    assert_non_null(many);
    for (unsigned i = 0; i < n; i++)
        many[i] = (uint32_t)(PAGES_BASE / PAGE) + i % 64;
    send_pfns(f, Q_INFLATE, many, n);
    free(many);
    assert_true(td_used(&f->t, Q_INFLATE, &id, &len));
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.inflated_pages, 1 + 4096);
    assert_int_equal(st.bad_pfns, 3 + (5000 - 4096));

    /* A trailing partial PFN is no PFN. */
    uint64_t buf = td_alloc(&f->t, 6);
    struct td_buf b = { .gpa = buf, .len = 6 };
    uint32_t pfn = htole32((uint32_t)(PAGES_BASE / PAGE));
    memcpy(td_ptr(&f->t, buf, 4), &pfn, 4);
    td_add(&f->t, Q_INFLATE, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_INFLATE);
    assert_true(td_used(&f->t, Q_INFLATE, &id, &len));
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.inflated_pages, 1 + 4096 + 1);
    assert_int_equal(td_resets(&f->t, NULL), 0);

    /* A PFN array the device could write to breaks the driver's rules. */
    b = (struct td_buf){ .gpa = td_alloc(&f->t, 4), .len = 4, .writable = true };
    td_add(&f->t, Q_INFLATE, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_INFLATE);
    const char *why = NULL;
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(strstr(why, "PFN array"));
    /* Until the driver resets the device, nothing more is served. */
    send_pfns(f, Q_INFLATE, pfns, 1);
    assert_false(td_used(&f->t, Q_INFLATE, &id, &len));
    teardown(f);
}

static void test_free_page_reporting(void **state)
{
    struct fix *f = setup(true, true, all_features());
    for (unsigned i = 0; i < 21; i++)
        memset(page(f, i), 0x77, PAGE);
    /* Two reported ranges in one chain: 16 pages and 1 page. */
    struct td_buf b[2] = {
        { .gpa = PAGES_BASE, .len = 16 * PAGE, .writable = true },
        { .gpa = PAGES_BASE + 20 * PAGE, .len = PAGE, .writable = true },
    };
    td_add(&f->t, Q_REPORT, b, 2);
    f->dev->ops->queue_notify(f->dev, Q_REPORT);
    uint32_t id, len;
    assert_true(td_used(&f->t, Q_REPORT, &id, &len));
    assert_int_equal(len, 0);
    for (unsigned i = 0; i < 21; i++)
        assert_int_equal(released(f, i), i < 16 || i == 20);
    assert_int_equal(page(f, 0)[0], 0);
    assert_int_equal(page(f, 15)[PAGE - 1], 0);
    assert_int_equal(page(f, 20)[0], 0);
    struct virtio_balloon_stats st;
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.reported_bytes, 17 * PAGE);

    /* An unaligned range is refused by the host and counted, never half-released. */
    memset(page(f, 30), 0x77, 2 * PAGE);
    b[0] = (struct td_buf){ .gpa = PAGES_BASE + 30 * PAGE + 16, .len = PAGE, .writable = true };
    td_add(&f->t, Q_REPORT, b, 1);
    f->dev->ops->queue_notify(f->dev, Q_REPORT);
    assert_true(td_used(&f->t, Q_REPORT, &id, &len));
    assert_false(released(f, 30));
    assert_int_equal(page(f, 30)[0], 0x77);
    virtio_balloon_get_stats(f->dev, &st);
    assert_int_equal(st.discard_errors, 1);
    assert_int_equal(td_resets(&f->t, NULL), 0);

    /* A reported range must be device-writable. */
    b[0] = (struct td_buf){ .gpa = PAGES_BASE, .len = PAGE };
    td_add(&f->t, Q_REPORT, b, 1);
    f->dev->ops->queue_notify(f->dev, Q_REPORT);
    const char *why = NULL;
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(strstr(why, "reported range"));
    teardown(f);
}

static void test_reporting_queue_needs_feature(void **state)
{
    /* Offered but not accepted: the driver has two queues, and a third is nobody's. */
    struct fix *f = setup(false, true, ~VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_REPORTING));
    memset(page(f, 0), 0x33, PAGE);
    struct td_buf b = { .gpa = PAGES_BASE, .len = PAGE, .writable = true };
    td_add(&f->t, Q_REPORT, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_REPORT);
    uint32_t id, len;
    assert_false(td_used(&f->t, Q_REPORT, &id, &len));
    assert_int_equal(page(f, 0)[0], 0x33);
    /* Kicks of queues that do not exist are ignored. */
    f->dev->ops->queue_notify(f->dev, 3);
    f->dev->ops->queue_notify(f->dev, 1000);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_buffers_before_activation(void **state)
{
    /* A driver may fill the inflate queue before DRIVER_OK: served at activation. */
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct virtio_balloon_params p = { .memory_size = TD_RAM_SIZE };
    f->dev = virtio_balloon_new(&p);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, all_features()), 0);
    f->dev->ops->reset(f->dev);
    memset(page(f, 9), 0x44, PAGE);
    uint32_t pfn = (uint32_t)(PAGES_BASE / PAGE) + 9;
    send_pfns(f, Q_INFLATE, &pfn, 1); /* kicked while reset: nothing happens */
    assert_int_equal(page(f, 9)[0], 0x44);
    assert_int_equal(f->dev->ops->activate(f->dev), 0);
    uint32_t id, len;
    assert_true(td_used(&f->t, Q_INFLATE, &id, &len));
    assert_int_equal(page(f, 9)[0], 0);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_target_and_actual),
        cmocka_unit_test(test_inflate_releases_pages),
        cmocka_unit_test(test_deflate_leaves_pages),
        cmocka_unit_test(test_hostile_pfns),
        cmocka_unit_test(test_free_page_reporting),
        cmocka_unit_test(test_reporting_queue_needs_feature),
        cmocka_unit_test(test_buffers_before_activation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
