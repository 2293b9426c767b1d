/* The ACPI tables as fw_cfg files and the "etc/table-loader" script, checked the way
 * firmware runs them: a small interpreter as strict as OVMF's AcpiPlatformDxe places
 * the files, patches the pointers and computes the checksums; the result must be byte
 * for byte what acpi_build_tables lays out at that address, and the tables firmware
 * would install (one per pointer target, XSDT aside) must be the machine's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_loader.h"
#include "arch/x86/layout.h"

static const struct acpi_pci_info pci = {
    .ecam_base = X86_PCI_ECAM_BASE,
    .mmio32_base = X86_PCI_MMIO32_BASE,
    .mmio32_size = X86_PCI_MMIO32_SIZE,
    .mmio64_base = 0x240000000ULL,
    .mmio64_size = X86_PCI_MMIO64_SIZE,
    .io_base = X86_PCI_IO_BASE,
    .io_size = X86_PCI_IO_SIZE,
};

static const struct acpi_platform_info platforms[] = {
    { .cpu_count = 1, .serial_count = 0, .pci = NULL },
    { .cpu_count = 2, .serial_count = 1, .pci = &pci },
    { .cpu_count = 64, .serial_count = 4, .pci = &pci },
    { .cpu_count = ACPI_MAX_CPUS, .serial_count = 4, .pci = NULL },
};
#define NPLATFORMS (sizeof(platforms) / sizeof(platforms[0]))

static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void wr(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* ---- the interpreter ---- */

struct blob {
    const char *name;
    uint8_t *data; /* a copy, patched in place */
    size_t len;
    uint64_t addr; /* where "firmware" put it */
    uint32_t align;
    uint8_t zone;
    bool allocated;
};

struct machine {
    struct blob files[2]; /* rsdp, tables */
    unsigned pointers, checksums;
    /* Each ADD_POINTER's target after patching, in script order (OVMF's second pass). */
    uint64_t targets[64];
    unsigned ntargets;
};

/* A name field: NUL-terminated inside its 56 bytes, NUL-padded after. */
static struct blob *named(struct machine *m, const uint8_t *field)
{
    size_t n = strnlen((const char *)field, ACPI_LOADER_NAME_LEN);
    assert_true(n > 0 && n < ACPI_LOADER_NAME_LEN);
    for (size_t i = n; i < ACPI_LOADER_NAME_LEN; i++)
        assert_int_equal(field[i], 0);
    for (unsigned i = 0; i < 2; i++)
        if (strcmp(m->files[i].name, (const char *)field) == 0)
            return &m->files[i];
    fail_msg("unknown file %s", (const char *)field);
    return NULL;
}

static void all_zero(const uint8_t *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        assert_int_equal(p[i], 0);
}

static void machine_init(struct machine *m, const struct acpi_loader_files *f, uint64_t rsdp_at,
                         uint64_t tables_at)
{
    memset(m, 0, sizeof(*m));
    m->files[0] =
        (struct blob){ .name = ACPI_LOADER_RSDP_FILE, .len = f->rsdp_len, .addr = rsdp_at };
    m->files[1] =
        (struct blob){ .name = ACPI_LOADER_TABLES_FILE, .len = f->tables_len, .addr = tables_at };
    m->files[0].data = malloc(f->rsdp_len);
    m->files[1].data = malloc(f->tables_len);
    assert_non_null(m->files[0].data);
    assert_non_null(m->files[1].data);
    memcpy(m->files[0].data, f->rsdp, f->rsdp_len);
    memcpy(m->files[1].data, f->tables, f->tables_len);
}

static void machine_free(struct machine *m)
{
    free(m->files[0].data);
    free(m->files[1].data);
}

/* Runs the script as firmware does, failing the test on anything a strict firmware
 * would refuse. */
static void run_script(struct machine *m, const uint8_t *script, size_t len)
{
    assert_int_equal(len % ACPI_LOADER_CMD_LEN, 0);
    assert_true(len > 0);
    for (size_t at = 0; at < len; at += ACPI_LOADER_CMD_LEN) {
        const uint8_t *c = script + at;
        struct blob *b = named(m, c + 4);
        switch (rd(c, 4)) {
        case ACPI_LOADER_ALLOCATE:
            assert_false(b->allocated);
            b->align = (uint32_t)rd(c + 60, 4);
            b->zone = c[64];
            assert_true(b->align && !(b->align & (b->align - 1)) && b->align <= 4096);
            assert_true(b->zone == ACPI_LOADER_ZONE_HIGH || b->zone == ACPI_LOADER_ZONE_FSEG);
            assert_int_equal(b->addr % b->align, 0);
            b->allocated = true;
            all_zero(c, 65, ACPI_LOADER_CMD_LEN);
            break;
        case ACPI_LOADER_ADD_POINTER: {
            struct blob *src = named(m, c + 60);
            uint32_t off = (uint32_t)rd(c + 116, 4);
            unsigned size = c[120];
            assert_true(b->allocated && src->allocated);
            assert_true(size == 1 || size == 2 || size == 4 || size == 8);
            assert_true(off <= b->len && size <= b->len - off);
            uint64_t v = rd(b->data + off, size);
            assert_true(v < src->len); /* an offset into the source file */
            v += src->addr;
            if (size < 8)
                assert_int_equal(v >> (8 * size), 0);
            wr(b->data + off, v, size);
            all_zero(c, 121, ACPI_LOADER_CMD_LEN);
            assert_true(m->ntargets < 64);
            m->targets[m->ntargets++] = v;
            m->pointers++;
            break;
        }
        case ACPI_LOADER_ADD_CHECKSUM: {
            uint32_t result = (uint32_t)rd(c + 60, 4), start = (uint32_t)rd(c + 64, 4),
                     length = (uint32_t)rd(c + 68, 4);
            assert_true(b->allocated);
            assert_true(start <= b->len && length <= b->len - start);
            assert_true(result >= start && result < start + length);
            /* Zero beforehand: firmware that sets and firmware that adds agree. */
            assert_int_equal(b->data[result], 0);
            b->data[result] = (uint8_t)(0x100 - sum8(b->data + start, length));
            all_zero(c, 72, ACPI_LOADER_CMD_LEN);
            m->checksums++;
            break;
        }
        default: fail_msg("unknown command %u", (unsigned)rd(c, 4));
        }
    }
}

/* Host pointer for a guest address inside one of the placed files, or NULL. */
static const uint8_t *at(const struct machine *m, uint64_t gpa, size_t len)
{
    for (unsigned i = 0; i < 2; i++) {
        const struct blob *b = &m->files[i];
        if (gpa >= b->addr && gpa - b->addr <= b->len && len <= b->len - (gpa - b->addr))
            return b->data + (gpa - b->addr);
    }
    return NULL;
}

static void build(const struct acpi_platform_info *p, struct acpi_loader_files *f)
{
    vmk_error *err = NULL;
    assert_int_equal(acpi_loader_build(p, f, &err), VMK_OK);
    assert_null(err);
}

/* ---- tests ---- */

static void test_script_shape(void **state)
{
    (void)state;
    for (size_t i = 0; i < NPLATFORMS; i++) {
        struct acpi_loader_files f;
        build(&platforms[i], &f);
        assert_int_equal(f.rsdp_len, 36);
        assert_memory_equal(f.rsdp, "RSD PTR ", 8);
        /* The RSDP's old place in the tables file is padding. */
        all_zero(f.tables, 0, 36);
        /* Both files are allocated before anything else: the tables anywhere below
         * 4 GiB, 64-byte aligned for the FACS; the RSDP in the F segment. */
        const uint8_t *c = f.script;
        assert_int_equal(rd(c, 4), ACPI_LOADER_ALLOCATE);
        assert_string_equal((const char *)c + 4, ACPI_LOADER_TABLES_FILE);
        assert_int_equal(rd(c + 60, 4), 64);
        assert_int_equal(c[64], ACPI_LOADER_ZONE_HIGH);
        c += ACPI_LOADER_CMD_LEN;
        assert_int_equal(rd(c, 4), ACPI_LOADER_ALLOCATE);
        assert_string_equal((const char *)c + 4, ACPI_LOADER_RSDP_FILE);
        assert_int_equal(rd(c + 60, 4), 16);
        assert_int_equal(c[64], ACPI_LOADER_ZONE_FSEG);

        struct machine m;
        machine_init(&m, &f, 0xf0000, 0x7ff00000);
        run_script(&m, f.script, f.script_len);
        /* RSDP -> XSDT, XSDT -> FADT, MADT (, MCFG), FADT -> FACS, DSDT, X_DSDT. */
        unsigned tables = platforms[i].pci ? 3 : 2;
        assert_int_equal(m.pointers, 1 + tables + 3);
        /* Two for the RSDP, one per table with a header. */
        assert_int_equal(m.checksums, 2 + 1 + tables + 1);
        assert_int_equal(f.script_len, ACPI_LOADER_CMD_LEN * (2 + m.pointers + m.checksums));
        machine_free(&m);
        acpi_loader_files_free(&f);
        all_zero((const uint8_t *)&f, 0, sizeof(f));
    }
    acpi_loader_files_free(NULL);
}

/* Relocated by the script to where acpi_build_tables would have put them, the files
 * are exactly its output. */
static void test_relocated_equals_direct_build(void **state)
{
    (void)state;
    static const uint64_t places[] = { 0x7ff00000, 0x100000, 0xbfe00040 };
    uint8_t *direct = malloc(X86_ACPI_MAX);
    assert_non_null(direct);
    for (size_t i = 0; i < NPLATFORMS; i++) {
        for (size_t k = 0; k < sizeof(places) / sizeof(places[0]); k++) {
            struct acpi_loader_files f;
            build(&platforms[i], &f);
            struct machine m;
            machine_init(&m, &f, 0xf5a10, places[k]);
            run_script(&m, f.script, f.script_len);

            size_t used = 0;
            vmk_error *err = NULL;
            assert_int_equal(
                acpi_build_tables(&platforms[i], direct, X86_ACPI_MAX, places[k], &used, &err),
                VMK_OK);
            assert_int_equal(used, f.tables_len);
            assert_memory_equal(m.files[0].data, direct, 36);
            assert_memory_equal(m.files[1].data + 36, direct + 36, used - 36);
            machine_free(&m);
            acpi_loader_files_free(&f);
        }
    }
    free(direct);
}

static bool seen_before(const uint64_t *v, unsigned n, uint64_t x)
{
    for (unsigned i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* What OVMF's second pass does: each distinct pointer target that holds a FACS, or a
 * table with a valid checksum other than the RSDT/XSDT, is installed. Then the guest's
 * view: RSDP -> XSDT -> tables, FADT -> FACS and DSDT, all checksums valid. */
static void test_tables_firmware_installs(void **state)
{
    (void)state;
    for (size_t i = 0; i < NPLATFORMS; i++) {
        struct acpi_loader_files f;
        build(&platforms[i], &f);
        struct machine m;
        const uint64_t rsdp_at = 0xe0010, tables_at = 0x3fe01000;
        machine_init(&m, &f, rsdp_at, tables_at);
        run_script(&m, f.script, f.script_len);

        char installed[8][5];
        unsigned ninstalled = 0;
        for (unsigned t = 0; t < m.ntargets; t++) {
            if (seen_before(m.targets, t, m.targets[t]))
                continue;
            const uint8_t *p = at(&m, m.targets[t], 36);
            assert_non_null(p);
            uint32_t len = (uint32_t)rd(p + 4, 4);
            assert_non_null(at(&m, m.targets[t], len));
            if (memcmp(p, "FACS", 4) != 0) {
                assert_int_equal(sum8(p, len), 0);
                if (memcmp(p, "XSDT", 4) == 0 || memcmp(p, "RSDT", 4) == 0)
                    continue;
            }
            assert_true(ninstalled < 8);
            memcpy(installed[ninstalled], p, 4);
            installed[ninstalled++][4] = '\0';
        }
        const char *want[] = { "FACP", "FACS", "DSDT", "APIC", "MCFG" };
        unsigned nwant = platforms[i].pci ? 5 : 4;
        assert_int_equal(ninstalled, nwant);
        for (unsigned w = 0; w < nwant; w++) {
            bool found = false;
            for (unsigned k = 0; k < ninstalled; k++)
                found |= strcmp(installed[k], want[w]) == 0;
            assert_true(found);
        }

        /* The guest's walk. */
        const uint8_t *rsdp = m.files[0].data;
        assert_int_equal(sum8(rsdp, 20), 0);
        assert_int_equal(sum8(rsdp, 36), 0);
        assert_int_equal(rd(rsdp + 16, 4), 0); /* XSDT only */
        const uint8_t *xsdt = at(&m, rd(rsdp + 24, 8), 36);
        assert_non_null(xsdt);
        assert_memory_equal(xsdt, "XSDT", 4);
        uint32_t xlen = (uint32_t)rd(xsdt + 4, 4);
        assert_int_equal(sum8(xsdt, xlen), 0);
        const uint8_t *fadt = NULL;
        for (uint32_t e = 36; e + 8 <= xlen; e += 8) {
            uint64_t gpa = rd(xsdt + e, 8);
            assert_true(gpa >= tables_at && gpa < tables_at + f.tables_len);
            const uint8_t *t = at(&m, gpa, 36);
            assert_non_null(t);
            assert_int_equal(sum8(t, rd(t + 4, 4)), 0);
            if (memcmp(t, "FACP", 4) == 0)
                fadt = t;
        }
        assert_non_null(fadt);
        const uint8_t *facs = at(&m, rd(fadt + 36, 4), 64);
        assert_non_null(facs);
        assert_memory_equal(facs, "FACS", 4);
        assert_int_equal((rd(fadt + 36, 4)) % 64, 0);
        assert_int_equal(rd(fadt + 132, 8), 0); /* only one of the two FACS fields */
        assert_int_equal(rd(fadt + 40, 4), rd(fadt + 140, 8));
        const uint8_t *dsdt = at(&m, rd(fadt + 140, 8), 36);
        assert_non_null(dsdt);
        assert_memory_equal(dsdt, "DSDT", 4);
        assert_int_equal(sum8(dsdt, rd(dsdt + 4, 4)), 0);
        machine_free(&m);
        acpi_loader_files_free(&f);
    }
}

static void test_errors(void **state)
{
    (void)state;
    vmk_error *err = NULL;
    assert_int_equal(acpi_loader_build(&platforms[0], NULL, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(err);
    vmk_error_free(err);
    err = NULL;

    struct acpi_loader_files f;
    memset(&f, 0xa5, sizeof(f));
    const struct acpi_platform_info none = { .cpu_count = 0 };
    assert_int_equal(acpi_loader_build(&none, &f, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vmk_error_message(err), "CPUs"));
    vmk_error_free(err);
    all_zero((const uint8_t *)&f, 0, sizeof(f));
    assert_int_equal(acpi_loader_build(NULL, &f, NULL), VMK_ERR_INVALID_ARGUMENT);
    all_zero((const uint8_t *)&f, 0, sizeof(f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_shape),
        cmocka_unit_test(test_relocated_equals_direct_build),
        cmocka_unit_test(test_tables_firmware_installs),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
