#include "core/guest_memory.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

static void test_small_is_one_region(void **state)
{
    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 64 << 20), 0);
    assert_int_equal(gm.nregions, 1);
    assert_int_equal(gm_low_ram_end(&gm), 64 << 20);
    assert_non_null(gm_ptr(&gm, 0, 64 << 20));
    assert_null(gm_ptr(&gm, 0, (64 << 20) + 1));
    assert_null(gm_ptr(&gm, 64 << 20, 1));
    assert_non_null(gm_ptr(&gm, (64 << 20) - 1, 1));
    guest_memory_destroy(&gm);
}

/* Another platform's hole: the EFI machine's RAM below 0xB0000000. */
static void test_split_at_chosen_limit(void **state)
{
    struct guest_memory gm;
    uint64_t low = 0xb0000000ULL, size = 3ULL << 30;
    assert_int_equal(guest_memory_init_split(&gm, size, low), 0);
    assert_int_equal(gm.nregions, 2);
    assert_int_equal(gm_low_ram_end(&gm), low);
    assert_int_equal(gm.regions[1].gpa, GM_HIGH_RAM_BASE);
    assert_int_equal(gm.regions[1].size, size - low);
    assert_null(gm_ptr(&gm, low, 1));
    guest_memory_destroy(&gm);
    assert_int_equal(guest_memory_init_split(&gm, 1 << 20, low), 0);
    assert_int_equal(gm.nregions, 1);
    guest_memory_destroy(&gm);
    assert_int_equal(guest_memory_init_split(&gm, 1 << 20, 0), -EINVAL);
    assert_int_equal(guest_memory_init_split(&gm, 1 << 20, low + 1), -EINVAL);
    assert_int_equal(guest_memory_init_split(&gm, 1 << 20, GM_HIGH_RAM_BASE + 4096), -EINVAL);
}

static void test_large_splits_around_hole(void **state)
{
    struct guest_memory gm;
    uint64_t size = 5ULL << 30;
    assert_int_equal(guest_memory_init(&gm, size), 0);
    assert_int_equal(gm.nregions, 2);
    assert_int_equal(gm_low_ram_end(&gm), GM_LOW_RAM_LIMIT);
    assert_int_equal(gm.regions[1].gpa, GM_HIGH_RAM_BASE);
    assert_int_equal(gm.regions[1].size, size - GM_LOW_RAM_LIMIT);
    /* The hole is not RAM, and a range may not run from low RAM into it. */
    assert_null(gm_ptr(&gm, GM_LOW_RAM_LIMIT, 1));
    assert_null(gm_ptr(&gm, GM_LOW_RAM_LIMIT - 8, 16));
    assert_null(gm_ptr(&gm, 0xfee00000, 4));
    uint8_t *hi = gm_ptr(&gm, GM_HIGH_RAM_BASE, 4096);
    assert_non_null(hi);
    hi[0] = 0x42;
    /* Both regions share one memfd mapping: the high region follows the low one. */
    assert_int_equal(gm.base[GM_LOW_RAM_LIMIT], 0x42);
    assert_null(gm_ptr(&gm, GM_HIGH_RAM_BASE + gm.regions[1].size, 1));
    guest_memory_destroy(&gm);
}

static void test_overflowing_ranges(void **state)
{
    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 16 << 20), 0);
    assert_null(gm_ptr(&gm, UINT64_MAX, 2));
    assert_null(gm_ptr(&gm, 4096, UINT64_MAX));
    assert_null(gm_ptr(&gm, 4096, UINT64_MAX - 4095));
    uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_int_equal(gm_write(&gm, (16 << 20) - 4, buf, 8), -EFAULT);
    assert_int_equal(gm_write(&gm, 0x1000, buf, 8), 0);
    uint8_t out[8];
    assert_int_equal(gm_read(&gm, 0x1000, out, 8), 0);
    assert_memory_equal(buf, out, 8);
    assert_int_equal(gm_read(&gm, UINT64_MAX - 2, out, 8), -EFAULT);
    guest_memory_destroy(&gm);
}

static void test_bad_sizes(void **state)
{
    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 0), -EINVAL);
    assert_int_equal(guest_memory_init(&gm, 4097), -EINVAL);
    /* destroy after a failed init is harmless */
    guest_memory_destroy(&gm);
}

static void test_region_table(void **state)
{
    static uint8_t a[8192], b[4096];
    struct guest_memory gm;
    guest_memory_init_empty(&gm);
    assert_null(gm_ptr(&gm, 0, 1));
    assert_int_equal(gm_add_region(&gm, 0x10000, sizeof(a), a), 0);
    assert_int_equal(gm_add_region(&gm, 0x40000, sizeof(b), b), 0);
    assert_int_equal(gm_add_region(&gm, 0x11000, 0x2000, b), -EEXIST);
    assert_int_equal(gm_add_region(&gm, 0xf000, 0x1001, b), -EEXIST);
    assert_int_equal(gm_add_region(&gm, 0x50000, 0, b), -EINVAL);
    assert_int_equal(gm_add_region(&gm, UINT64_MAX - 10, 100, b), -EINVAL);
    assert_ptr_equal(gm_ptr(&gm, 0x10010, 16), a + 0x10);
    assert_ptr_equal(gm_ptr(&gm, 0x40000, sizeof(b)), b);
    /* A range spanning two regions is refused even if both ends are RAM. */
    assert_null(gm_ptr(&gm, 0x11ff0, 0x40000 - 0x11ff0 + 16));
    for (uint64_t i = 2; i < GM_MAX_REGIONS; i++)
        assert_int_equal(gm_add_region(&gm, 0x100000 * i, 4096, b), 0);
    assert_int_equal(gm_add_region(&gm, 0x10000000, 4096, b), -ENOSPC);
    /* Nothing of ours to unmap or close. */
    guest_memory_destroy(&gm);
}

/* Whether the 4 KiB page at off of fd is a hole (its memory released). */
static bool hole(int fd, off_t off)
{
    return lseek(fd, off, SEEK_HOLE) == off;
}

static void test_discard_own_ram(void **state)
{
    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 1 << 20), 0);
    uint8_t *p = gm_ptr(&gm, 0x10000, 0x3000);
    assert_non_null(p);
    memset(p, 0xee, 0x3000);
    assert_int_equal(gm_discard(&gm, p + 0x1000, 0x1000), 0);
    assert_false(hole(gm.memfd, 0x10000));
    assert_true(hole(gm.memfd, 0x11000));
    assert_false(hole(gm.memfd, 0x12000));
    assert_int_equal(p[0x1000], 0);
    assert_int_equal(p[0x0fff], 0xee);
    assert_int_equal(p[0x2000], 0xee);
    /* Unaligned, empty, or not guest RAM: refused, nothing released. */
    assert_int_equal(gm_discard(&gm, p + 1, 0x1000), -EINVAL);
    assert_int_equal(gm_discard(&gm, p, 0x800), -EINVAL);
    assert_int_equal(gm_discard(&gm, p, 0), -EINVAL);
    assert_int_equal(gm_discard(&gm, gm.base + (1 << 20), 0x1000), -EINVAL);
    assert_int_equal(gm_discard(&gm, gm.base + (1 << 20) - 0x1000, 0x2000), -EINVAL);
    static uint8_t other[0x2000] __attribute__((aligned(4096)));
    assert_int_equal(gm_discard(&gm, other, 0x1000), -EINVAL);
    assert_int_equal(p[0], 0xee);
    guest_memory_destroy(&gm);
}

static void test_discard_front_end_region(void **state)
{
    /* A vhost-user front end's RAM: a shared mapping of its memfd, released with
     * MADV_REMOVE, which punches the same hole. */
    int fd = memfd_create("front-end-ram", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 0x4000), 0);
    uint8_t *host = mmap(NULL, 0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(host != MAP_FAILED);
    memset(host, 0x12, 0x4000);
    struct guest_memory gm;
    guest_memory_init_empty(&gm);
    assert_int_equal(gm_add_region(&gm, 0x100000, 0x4000, host), 0);
    assert_int_equal(gm_discard(&gm, gm_ptr(&gm, 0x102000, 0x2000), 0x2000), 0);
    assert_false(hole(fd, 0x1000));
    assert_true(hole(fd, 0x2000));
    assert_true(hole(fd, 0x3000));
    assert_int_equal(host[0x2000], 0);
    assert_int_equal(host[0x1fff], 0x12);
    guest_memory_destroy(&gm);
    munmap(host, 0x4000);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_is_one_region),
        cmocka_unit_test(test_large_splits_around_hole),
        cmocka_unit_test(test_split_at_chosen_limit),
        cmocka_unit_test(test_overflowing_ranges),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_region_table),
        cmocka_unit_test(test_discard_own_ram),
        cmocka_unit_test(test_discard_front_end_region),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
