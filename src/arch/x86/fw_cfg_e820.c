#include "arch/x86/fw_cfg_e820.h"

#include <string.h>

#include "arch/x86/layout.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define KVM_PAGES_END 0xff000000ULL /* the identity map page, then three TSS pages */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_entry(uint8_t *e, uint64_t addr, uint64_t len, uint32_t type)
{
    put_le(e, addr, 8);
    put_le(e + 8, len, 8);
    put_le(e + 16, type, 4);
}

size_t x86_fw_cfg_e820(const struct guest_memory *gm, uint8_t *out, size_t cap)
{
    if (!gm || !out || gm->nregions > GM_MAX_REGIONS)
        return 0;
    size_t need = ((size_t)gm->nregions + 1) * X86_FW_CFG_E820_ENTRY;
    if (cap < need)
        return 0;
    /* Regions may be in any order in the table; firmware expects a sorted map. */
    struct guest_region r[GM_MAX_REGIONS];
    unsigned count = gm->nregions;
    memcpy(r, gm->regions, count * sizeof(r[0]));
    for (unsigned i = 1; i < count; i++)
        for (unsigned k = i; k > 0 && r[k].gpa < r[k - 1].gpa; k--) {
            struct guest_region t = r[k];
            r[k] = r[k - 1];
            r[k - 1] = t;
        }
    size_t n = 0;
    for (unsigned i = 0; i < count; i++, n += X86_FW_CFG_E820_ENTRY)
        put_entry(out + n, r[i].gpa, r[i].size, E820_RAM);
    put_entry(out + n, X86_KVM_IDENTITY_MAP_ADDR, KVM_PAGES_END - X86_KVM_IDENTITY_MAP_ADDR,
              E820_RESERVED);
    return n + X86_FW_CFG_E820_ENTRY;
}
