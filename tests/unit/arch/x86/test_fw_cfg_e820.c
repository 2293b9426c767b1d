/* "etc/e820" as firmware reads it: 20-byte little-endian entries, sorted, RAM then the
 * pages KVM reserves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/fw_cfg_e820.h"
#include "arch/x86/layout.h"
#include "core/guest_memory.h"

static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void check_entry(const uint8_t *e, uint64_t addr, uint64_t len, uint32_t type)
{
    assert_int_equal(rd(e, 8), addr);
    assert_int_equal(rd(e + 8, 8), len);
    assert_int_equal(rd(e + 16, 4), type);
}

static void test_map(void **state)
{
    (void)state;
    static uint8_t host[1]; /* never dereferenced: only the table is read */
    struct guest_memory gm;
    guest_memory_init_empty(&gm);
    /* Regions added high first: the map is still sorted. */
    assert_int_equal(gm_add_region(&gm, GM_HIGH_RAM_BASE, 0x80000000ULL, host), 0);
    assert_int_equal(gm_add_region(&gm, 0, GM_LOW_RAM_LIMIT, host), 0);

    uint8_t out[X86_FW_CFG_E820_MAX * X86_FW_CFG_E820_ENTRY];
    memset(out, 0xee, sizeof(out));
    size_t n = x86_fw_cfg_e820(&gm, out, sizeof(out));
    assert_int_equal(n, 3 * X86_FW_CFG_E820_ENTRY);
    check_entry(out, 0, GM_LOW_RAM_LIMIT, 1);
    check_entry(out + 20, GM_HIGH_RAM_BASE, 0x80000000ULL, 1);
    check_entry(out + 40, X86_KVM_IDENTITY_MAP_ADDR, 0x4000, 2);
    assert_int_equal(out[60], 0xee);

    /* Too small a buffer: nothing. */
    assert_int_equal(x86_fw_cfg_e820(&gm, out, n - 1), 0);
    assert_int_equal(x86_fw_cfg_e820(NULL, out, sizeof(out)), 0);

    /* One region of low RAM only. */
    guest_memory_init_empty(&gm);
    assert_int_equal(gm_add_region(&gm, 0, 0x10000000ULL, host), 0);
    assert_int_equal(x86_fw_cfg_e820(&gm, out, sizeof(out)), 2 * X86_FW_CFG_E820_ENTRY);
    check_entry(out, 0, 0x10000000ULL, 1);
    check_entry(out + 20, X86_KVM_IDENTITY_MAP_ADDR, 0x4000, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
