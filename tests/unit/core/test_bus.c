#include "core/bus.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

struct fake_dev {
    uint64_t last_offset;
    unsigned last_size;
    uint32_t written;
    unsigned reads, writes;
};

static void fake_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct fake_dev *d = dev;
    d->last_offset = offset;
    d->last_size = size;
    d->reads++;
    memset(data, 0xab, size);
}

static void fake_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct fake_dev *d = dev;
    d->last_offset = offset;
    d->last_size = size;
    d->writes++;
    d->written = 0;
    memcpy(&d->written, data, size > 4 ? 4 : size);
}

static const struct bus_device_ops fake_ops = { .read = fake_read, .write = fake_write };

static void test_dispatch_by_offset(void **state)
{
    struct bus bus;
    struct fake_dev a = { 0 }, b = { 0 };
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, 0x3f8, 8, &fake_ops, &a), 0);
    assert_int_equal(bus_add(&bus, 0x60, 1, &fake_ops, &b), 0);
    uint8_t v = 0x5a;
    assert_true(bus_write(&bus, 0x3fd, &v, 1));
    assert_int_equal(a.last_offset, 5);
    assert_int_equal(a.writes, 1);
    assert_int_equal(a.written, 0x5a);
    uint32_t r = 0;
    assert_true(bus_read(&bus, 0x60, &r, 1));
    assert_int_equal(b.reads, 1);
    assert_int_equal(r & 0xff, 0xab);
    bus_destroy(&bus);
}

static void test_unclaimed_reads_all_ones(void **state)
{
    struct bus bus;
    bus_init(&bus);
    uint32_t r = 0;
    assert_false(bus_read(&bus, 0x80, &r, 4));
    assert_int_equal(r, 0xffffffffu);
    uint8_t v = 1;
    assert_false(bus_write(&bus, 0x80, &v, 1));
    bus_destroy(&bus);
}

static void test_overlap_rejected(void **state)
{
    struct bus bus;
    struct fake_dev a = { 0 };
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, 0x100, 0x10, &fake_ops, &a), 0);
    assert_int_equal(bus_add(&bus, 0x10f, 1, &fake_ops, &a), -EEXIST);
    assert_int_equal(bus_add(&bus, 0xf8, 9, &fake_ops, &a), -EEXIST);
    assert_int_equal(bus_add(&bus, 0x0, 0x200, &fake_ops, &a), -EEXIST);
    assert_int_equal(bus_add(&bus, 0x110, 1, &fake_ops, &a), 0);
    assert_int_equal(bus_add(&bus, 0xff, 1, &fake_ops, &a), 0);
    assert_int_equal(bus_add(&bus, 0x200, 0, &fake_ops, &a), -EINVAL);
    assert_int_equal(bus_add(&bus, UINT64_MAX, 2, &fake_ops, &a), -EINVAL);
    bus_destroy(&bus);
}

static void test_straddling_access_unclaimed(void **state)
{
    struct bus bus;
    struct fake_dev a = { 0 };
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, 0x600, 4, &fake_ops, &a), 0);
    uint32_t r = 0;
    assert_false(bus_read(&bus, 0x602, &r, 4));
    assert_int_equal(a.reads, 0);
    assert_true(bus_read(&bus, 0x602, &r, 2));
    assert_int_equal(a.reads, 1);
    bus_destroy(&bus);
}

static void test_many_ranges_sorted(void **state)
{
    struct bus bus;
    struct fake_dev devs[40] = { 0 };
    bus_init(&bus);
    /* Added out of order, found in order. */
    for (unsigned i = 0; i < 40; i++) {
        unsigned k = (i * 17) % 40;
        assert_int_equal(bus_add(&bus, 0x1000 + k * 0x10, 0x10, &fake_ops, &devs[k]), 0);
    }
    for (unsigned k = 0; k < 40; k++) {
        uint8_t v = (uint8_t)k;
        assert_true(bus_write(&bus, 0x1000 + k * 0x10 + 3, &v, 1));
        assert_int_equal(devs[k].written, k);
        assert_int_equal(devs[k].last_offset, 3);
    }
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_by_offset),
        cmocka_unit_test(test_unclaimed_reads_all_ones),
        cmocka_unit_test(test_overlap_rejected),
        cmocka_unit_test(test_straddling_access_unclaimed),
        cmocka_unit_test(test_many_ranges_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
