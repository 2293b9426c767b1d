/* The ACPI tables, read back the way a guest reads them: from the RSDP, through the
 * XSDT, by raw offsets from the ACPI 6.3 spec (not the builder's structs), and then
 * by ACPICA's own disassembler (iasl -d) when it is installed. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

static const unsigned cpu_counts[] = { 1, 2, 64 };

/* The machine's PCI layout, and one with no I/O and no 64-bit window. */
static const struct acpi_pci_info pci_full = {
    .ecam_base = X86_PCI_ECAM_BASE,
    .mmio32_base = X86_PCI_MMIO32_BASE,
    .mmio32_size = X86_PCI_MMIO32_SIZE,
    .mmio64_base = 0x240000000ULL,
    .mmio64_size = X86_PCI_MMIO64_SIZE,
    .io_base = X86_PCI_IO_BASE,
    .io_size = X86_PCI_IO_SIZE,
};
static const struct acpi_pci_info pci_lean = {
    .ecam_base = 0xb0000000ULL,
    .mmio32_base = 0x80000000ULL,
    .mmio32_size = 0x10000000ULL,
};
static const unsigned serial_counts[] = { 0, 1, 4 };

static const struct {
    uint16_t port;
    uint8_t irq;
} coms[4] = { { 0x3F8, 4 }, { 0x2F8, 3 }, { 0x3E8, 4 }, { 0x2E8, 3 } };

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static size_t count_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    size_t count = 0;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            count++;
    return count;
}

struct built {
    uint8_t *buf;
    size_t used;
    uint64_t gpa;
    struct acpi_platform_info info;
};

static void build_pci(struct built *t, unsigned cpus, unsigned serials, uint64_t gpa,
                      const struct acpi_pci_info *pci)
{
    memset(t, 0, sizeof(*t));
    t->info = (struct acpi_platform_info){ .cpu_count = cpus, .serial_count = serials, .pci = pci };
    t->gpa = gpa;
    t->buf = malloc(X86_ACPI_MAX);
    assert_non_null(t->buf);
    memset(t->buf, 0xAA, X86_ACPI_MAX);
    vmk_error *err = NULL;
    vmk_result r = acpi_build_tables(&t->info, t->buf, X86_ACPI_MAX, gpa, &t->used, &err);
    if (r != VMK_OK)
        fail_msg("acpi_build_tables(%u cpus, %u serial): %s", cpus, serials,
                 vmk_error_message(err));
    assert_null(err);
    assert_true(t->used > 36 && t->used <= X86_ACPI_MAX);
    /* Nothing past *used was touched. */
    for (size_t i = t->used; i < X86_ACPI_MAX; i++)
        assert_int_equal(t->buf[i], 0xAA);
}

static void build(struct built *t, unsigned cpus, unsigned serials, uint64_t gpa)
{
    build_pci(t, cpus, serials, gpa, NULL);
}

/* The table at guest address addr: inside the built area, 8-byte aligned, with the
 * given signature, a length that fits, our OEM ids and a checksum summing to 0. */
static const uint8_t *table_at(const struct built *t, uint64_t addr, const char *sig)
{
    assert_true(addr >= t->gpa);
    assert_true(addr - t->gpa + 36 <= t->used);
    assert_int_equal(addr % 8, 0);
    const uint8_t *p = t->buf + (addr - t->gpa);
    assert_memory_equal(p, sig, 4);
    uint32_t len = rd32(p + 4);
    assert_true(len >= 36);
    assert_true(addr - t->gpa + len <= t->used);
    assert_int_equal(sum8(p, len), 0);
    assert_memory_equal(p + 10, "VMKIT ", 6);
    assert_memory_equal(p + 16, "VMKITVM ", 8);
    assert_memory_equal(p + 28, "VMKT", 4);
    return p;
}

static const uint8_t *check_rsdp_xsdt(const struct built *t, const uint8_t **fadt,
                                      const uint8_t **madt)
{
    const uint8_t *r = t->buf;
    assert_int_equal(t->gpa % 16, 0);
    assert_memory_equal(r, "RSD PTR ", 8);
    assert_int_equal(sum8(r, 20), 0);
    assert_int_equal(sum8(r, 36), 0);
    assert_memory_equal(r + 9, "VMKIT ", 6);
    assert_int_equal(r[15], 2);         /* revision */
    assert_int_equal(rd32(r + 16), 0);  /* RsdtAddress: XSDT only */
    assert_int_equal(rd32(r + 20), 36); /* length */

    const uint8_t *x = table_at(t, rd64(r + 24), "XSDT");
    assert_int_equal(x[8], 1);
    uint32_t len = rd32(x + 4);
    assert_int_equal((len - 36) % 8, 0);
    assert_int_equal((len - 36) / 8, t->info.pci ? 3 : 2);
    *fadt = *madt = NULL;
    const uint8_t *mcfg = NULL;
    for (uint32_t off = 36; off < len; off += 8) {
        uint64_t addr = rd64(x + off);
        const uint8_t *e = t->buf + (addr - t->gpa);
        assert_true(addr >= t->gpa && addr - t->gpa + 4 <= t->used);
        if (memcmp(e, "FACP", 4) == 0) {
            assert_null(*fadt);
            *fadt = table_at(t, addr, "FACP");
        } else if (memcmp(e, "MCFG", 4) == 0) {
            assert_null(mcfg);
            assert_non_null(t->info.pci);
            mcfg = table_at(t, addr, "MCFG");
        } else {
            assert_null(*madt);
            *madt = table_at(t, addr, "APIC");
        }
    }
    assert_non_null(*fadt);
    assert_non_null(*madt);
    return x;
}

static void check_gas(const uint8_t *g, uint8_t space, uint8_t bits, uint64_t addr)
{
    assert_int_equal(g[0], space);
    assert_int_equal(g[1], bits);
    assert_int_equal(g[2], 0);
    assert_int_equal(rd64(g + 4), addr);
}

static const uint8_t *check_fadt(const struct built *t, const uint8_t *f)
{
    assert_int_equal(rd32(f + 4), 276);
    assert_int_equal(f[8], 6);
    assert_int_equal(rd16(f + 46), X86_SCI_IRQ);
    assert_int_equal(rd32(f + 48), 0); /* SMI_CMD: always in ACPI mode */
    assert_int_equal(rd32(f + 56), X86_PM1A_EVT_PORT);
    assert_int_equal(rd32(f + 60), 0);
    assert_int_equal(rd32(f + 64), X86_PM1A_CNT_PORT);
    assert_int_equal(rd32(f + 68), 0);
    assert_int_equal(rd32(f + 76), X86_PM_TMR_PORT);
    assert_int_equal(rd32(f + 80), 0);    /* no GPE0 block */
    assert_int_equal(f[88], 4);           /* PM1_EVT_LEN */
    assert_int_equal(f[89], 2);           /* PM1_CNT_LEN */
    assert_int_equal(f[91], 4);           /* PM_TMR_LEN */
    assert_int_equal(f[108], 0x32);       /* CENTURY */
    assert_int_equal(rd16(f + 109), 0x1); /* LEGACY_DEVICES, no 8042 (see acpi.c) */
    uint32_t flags = rd32(f + 112);
    assert_int_equal(flags, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 8) | (1u << 10));
    assert_int_equal(flags & (1u << 4), 0);  /* PWR_BUTTON clear: fixed-feature button */
    assert_int_equal(flags & (1u << 20), 0); /* not HW-reduced */
    check_gas(f + 116, 1, 8, X86_RESET_PORT);
    assert_int_equal(f[128], X86_RESET_VALUE);
    check_gas(f + 148, 1, 32, X86_PM1A_EVT_PORT);
    check_gas(f + 160, 0, 0, 0); /* PM1b */
    check_gas(f + 172, 1, 16, X86_PM1A_CNT_PORT);
    check_gas(f + 208, 1, 32, X86_PM_TMR_PORT);
    check_gas(f + 220, 0, 0, 0); /* GPE0 */

    uint64_t x_dsdt = rd64(f + 140);
    const uint8_t *d = table_at(t, x_dsdt, "DSDT");
    if (x_dsdt <= UINT32_MAX)
        assert_int_equal(rd32(f + 40), x_dsdt);
    else
        assert_int_equal(rd32(f + 40), 0);

    /* Exactly one of FIRMWARE_CTRL and X_FIRMWARE_CTRL is set (ACPI 5.2.9). */
    uint64_t facs = rd32(f + 36);
    if (facs == 0)
        facs = rd64(f + 132);
    else
        assert_int_equal(rd64(f + 132), 0);
    assert_true(facs >= t->gpa && facs - t->gpa + 64 <= t->used);
    assert_int_equal(facs % 64, 0);
    const uint8_t *fc = t->buf + (facs - t->gpa);
    assert_memory_equal(fc, "FACS", 4);
    assert_int_equal(rd32(fc + 4), 64);
    assert_int_equal(fc[32], 2);
    return d;
}

static void check_madt(const uint8_t *m, unsigned cpus)
{
    uint32_t len = rd32(m + 4);
    assert_int_equal(rd32(m + 36), X86_LAPIC_ADDR);
    assert_int_equal(rd32(m + 40) & 1, 1); /* PCAT_COMPAT */
    unsigned lapics = 0, ioapics = 0, sci_overrides = 0, nmis = 0;
    uint32_t off = 44;
    while (off < len) {
        assert_true(off + 2 <= len);
        const uint8_t *e = m + off;
        assert_true(e[1] >= 2 && off + e[1] <= len);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], 8);
            assert_int_equal(e[3], lapics); /* APIC ids 0..n-1 in order */
            assert_int_equal(rd32(e + 4) & 1, 1);
            lapics++;
            break;
        case 1:
            assert_int_equal(e[1], 12);
            assert_int_equal(e[2], 0);
            assert_int_equal(rd32(e + 4), X86_IOAPIC_ADDR);
            assert_int_equal(rd32(e + 8), 0);
            ioapics++;
            break;
        case 2:
            assert_int_equal(e[1], 10);
            assert_int_equal(e[2], 0);           /* ISA */
            assert_int_equal(e[3], X86_SCI_IRQ); /* no override for IRQ 0 */
            assert_int_equal(rd32(e + 4), X86_SCI_IRQ);
            assert_int_equal(rd16(e + 8), 0x0D); /* level, active high */
            sci_overrides++;
            break;
        case 4:
            assert_int_equal(e[1], 6);
            assert_int_equal(e[2], 0xFF);
            assert_int_equal(e[5], 1); /* LINT1 */
            nmis++;
            break;
        default: fail_msg("unexpected MADT entry type %u", e[0]);
        }
        off += e[1];
    }
    assert_int_equal(off, len);
    assert_int_equal(lapics, cpus);
    assert_int_equal(ioapics, 1);
    assert_int_equal(sci_overrides, 1);
    assert_int_equal(nmis, 1);
}

/* Decodes an AML integer (ZeroOp, OneOp, BytePrefix); returns its size. */
static size_t aml_small_int(const uint8_t *p, uint64_t *v)
{
    if (p[0] == 0x00 || p[0] == 0x01) {
        *v = p[0];
        return 1;
    }
    assert_int_equal(p[0], 0x0A);
    *v = p[1];
    return 2;
}

static void check_dsdt(const uint8_t *d, unsigned serials)
{
    uint32_t len = rd32(d + 4);
    assert_int_equal(d[8], 2); /* 64-bit integers */
    const uint8_t *aml = d + 36;
    size_t n = len - 36;

    /* Name(\_S5, Package(4) { SLP_TYP, SLP_TYP, 0, 0 }) */
    static const uint8_t s5[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12 };
    assert_int_equal(count_bytes(aml, n, s5, sizeof(s5)), 1);
    const uint8_t *p = memmem(aml, n, s5, sizeof(s5)) + sizeof(s5);
    p += 1; /* a one-byte PkgLength: the package is tiny */
    assert_int_equal(*p++, 4);
    uint64_t v[4];
    for (int i = 0; i < 4; i++)
        p += aml_small_int(p, &v[i]);
    assert_int_equal(v[0], X86_S5_SLP_TYP);
    assert_int_equal(v[1], X86_S5_SLP_TYP);
    assert_int_equal(v[2], 0);
    assert_int_equal(v[3], 0);

    static const uint8_t pnp0501[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };
    static const uint8_t pnp0b00[] = { 0x0C, 0x41, 0xD0, 0x0B, 0x00 };
    assert_int_equal(count_bytes(aml, n, pnp0501, sizeof(pnp0501)), serials);
    assert_int_equal(count_bytes(aml, n, pnp0b00, sizeof(pnp0b00)), 1);
    for (unsigned i = 0; i < 4; i++) {
        /* IO(Decode16, port, port, 1, 8) IRQNoFlags() {irq} */
        const uint8_t lo = (uint8_t)coms[i].port, hi = (uint8_t)(coms[i].port >> 8);
        const uint8_t crs[] = { 0x47, 0x01, lo,   hi,   lo,
                                hi,   0x01, 0x08, 0x22, (uint8_t)(1u << coms[i].irq),
                                0x00 };
        assert_int_equal(count_bytes(aml, n, crs, sizeof(crs)), i < serials);
        const char name[4] = { 'C', 'O', 'M', (char)('1' + i) };
        assert_int_equal(count_bytes(aml, n, name, 4), i < serials);
    }
    const uint8_t rtc[] = { 0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x22, 0x00, 0x01 };
    assert_int_equal(count_bytes(aml, n, rtc, sizeof(rtc)), 1);
}

/* MCFG (PCI Firmware spec 3.0, 4.1.2): header, 8 reserved bytes, one 16-byte entry. */
static const uint8_t *find_table(const struct built *t, const char *sig)
{
    const uint8_t *x = t->buf + (rd64(t->buf + 24) - t->gpa);
    for (uint32_t off = 36; off < rd32(x + 4); off += 8) {
        const uint8_t *e = t->buf + (rd64(x + off) - t->gpa);
        if (memcmp(e, sig, 4) == 0)
            return e;
    }
    return NULL;
}

static void check_mcfg(const struct built *t)
{
    const uint8_t *m = find_table(t, "MCFG");
    if (!t->info.pci) {
        assert_null(m);
        return;
    }
    assert_non_null(m);
    assert_int_equal(rd32(m + 4), 60);
    assert_int_equal(m[8], 1);
    assert_int_equal(rd64(m + 36), 0); /* reserved */
    assert_int_equal(rd64(m + 44), t->info.pci->ecam_base);
    assert_int_equal(rd16(m + 52), 0); /* segment */
    assert_int_equal(m[54], 0);        /* start bus */
    assert_int_equal(m[55], 0);        /* end bus */
    assert_int_equal(rd32(m + 56), 0);
}

/* \_SB.PCI0 and \_SB.ECAM, by their bytes: ids, the windows as address space
 * descriptors, the ECAM reservation and the _PRT. */
static void check_dsdt_pci(const uint8_t *d, const struct acpi_pci_info *pci)
{
    const uint8_t *aml = d + 36;
    size_t n = rd32(d + 4) - 36;
    static const uint8_t pnp0a08[] = { 0x0C, 0x41, 0xD0, 0x0A, 0x08 };
    static const uint8_t pnp0a03[] = { 0x0C, 0x41, 0xD0, 0x0A, 0x03 };
    static const uint8_t pnp0c02[] = { 0x0C, 0x41, 0xD0, 0x0C, 0x02 };
    size_t want = pci != NULL;
    assert_int_equal(count_bytes(aml, n, pnp0a08, sizeof(pnp0a08)), want);
    assert_int_equal(count_bytes(aml, n, pnp0a03, sizeof(pnp0a03)), want);
    assert_int_equal(count_bytes(aml, n, pnp0c02, sizeof(pnp0c02)), want);
    assert_int_equal(count_bytes(aml, n, "PCI0", 4), want);
    assert_int_equal(count_bytes(aml, n, "_PRT", 4), want);
    assert_int_equal(count_bytes(aml, n, "_SEG", 4), want);
    assert_int_equal(count_bytes(aml, n, "_BBN", 4), want);
    if (!pci)
        return;
    /* WordBusNumber: producer, fixed, 0..0, length 1. */
    static const uint8_t busnum[] = { 0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0,
                                      0,    0,    0,    0,    0,    0,    1, 0 };
    assert_int_equal(count_bytes(aml, n, busnum, sizeof(busnum)), 1);
    /* IO(Decode16, 0xCF8, 0xCF8, 1, 8): the config ports, consumed. */
    static const uint8_t cfgio[] = { 0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08 };
    assert_int_equal(count_bytes(aml, n, cfgio, sizeof(cfgio)), 1);
    /* DWordMemory for the 32-bit window. */
    uint8_t dw[26] = { 0x87, 0x17, 0x00, 0x00, 0x0C, 0x01 };
    uint32_t lo = (uint32_t)pci->mmio32_base,
             hi = (uint32_t)(pci->mmio32_base + pci->mmio32_size - 1);
    uint32_t len32 = (uint32_t)pci->mmio32_size;
    memcpy(dw + 10, &lo, 4);
    memcpy(dw + 14, &hi, 4);
    memcpy(dw + 22, &len32, 4);
    assert_int_equal(count_bytes(aml, n, dw, sizeof(dw)), 1);
    /* QWordMemory for the 64-bit window, WordIO for the I/O window, when present. */
    uint8_t qw[46] = { 0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01 };
    uint64_t qlo = pci->mmio64_base, qhi = pci->mmio64_base + pci->mmio64_size - 1;
    memcpy(qw + 14, &qlo, 8);
    memcpy(qw + 22, &qhi, 8);
    memcpy(qw + 38, &pci->mmio64_size, 8);
    static const uint8_t qw_tag[] = { 0x8A, 0x2B, 0x00 };
    assert_int_equal(count_bytes(aml, n, qw, sizeof(qw)), pci->mmio64_size != 0);
    assert_int_equal(count_bytes(aml, n, qw_tag, sizeof(qw_tag)), pci->mmio64_size != 0);
    uint8_t wio[16] = { 0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03 };
    uint16_t iolo = (uint16_t)pci->io_base, iohi = (uint16_t)(pci->io_base + pci->io_size - 1);
    uint16_t iolen = (uint16_t)pci->io_size;
    memcpy(wio + 8, &iolo, 2);
    memcpy(wio + 10, &iohi, 2);
    memcpy(wio + 14, &iolen, 2);
    assert_int_equal(count_bytes(aml, n, wio, sizeof(wio)), pci->io_size != 0);
    /* Memory32Fixed(ReadWrite, ECAM, 1 MiB). */
    uint8_t fixed[12] = { 0x86, 0x09, 0x00, 0x01 };
    uint32_t ecam = (uint32_t)pci->ecam_base, ecam_len = X86_PCI_ECAM_SIZE;
    memcpy(fixed + 4, &ecam, 4);
    memcpy(fixed + 8, &ecam_len, 4);
    assert_int_equal(count_bytes(aml, n, fixed, sizeof(fixed)), 1);
    /* _PRT: 124 entries, e.g. Package(4) { 0x0005FFFF, 2, 0, 16 + (5 + 2) % 4 }. */
    static const uint8_t prt_hdr[] = { '_', 'P', 'R', 'T', 0x12 };
    const uint8_t *p = memmem(aml, n, prt_hdr, sizeof(prt_hdr));
    assert_non_null(p);
    const uint8_t e5[] = {
        0x12, 0x0C, 0x04, 0x0C, 0xFF, 0xFF, 0x05, 0x00, 0x0A, 0x02, 0x00, 0x0A, X86_PCI_INTX_GSI + 3
    };
    assert_int_equal(count_bytes(aml, n, e5, sizeof(e5)), 1);
    const uint8_t e31[] = { 0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF,
                            0x1F, 0x00, 0x00, 0x00, 0x0A, X86_PCI_INTX_GSI + 3 };
    assert_int_equal(count_bytes(aml, n, e31, sizeof(e31)), 1);
}

static void check_all(const struct built *t)
{
    const uint8_t *fadt, *madt;
    check_rsdp_xsdt(t, &fadt, &madt);
    const uint8_t *dsdt = check_fadt(t, fadt);
    check_madt(madt, t->info.cpu_count);
    check_dsdt(dsdt, t->info.serial_count);
    check_dsdt_pci(dsdt, t->info.pci);
    check_mcfg(t);
}

static void test_tables_with_pci(void **state)
{
    const struct acpi_pci_info *const layouts[] = { &pci_full, &pci_lean };
    for (size_t i = 0; i < 2; i++) {
        for (size_t c = 0; c < sizeof(cpu_counts) / sizeof(cpu_counts[0]); c++) {
            struct built t;
            build_pci(&t, cpu_counts[c], 1, X86_ACPI_ADDR, layouts[i]);
            check_all(&t);
            free(t.buf);
        }
    }
    /* Above 4 GiB too, and the most CPUs still fit in the ACPI area. */
    struct built t;
    build_pci(&t, 2, 4, 0x100000010ULL, &pci_full);
    check_all(&t);
    free(t.buf);
    build_pci(&t, ACPI_MAX_CPUS, 4, X86_ACPI_ADDR, &pci_full);
    check_all(&t);
    free(t.buf);
}

static void test_tables_for_each_machine(void **state)
{
    for (size_t c = 0; c < sizeof(cpu_counts) / sizeof(cpu_counts[0]); c++) {
        for (size_t s = 0; s < sizeof(serial_counts) / sizeof(serial_counts[0]); s++) {
            struct built t;
            build(&t, cpu_counts[c], serial_counts[s], X86_ACPI_ADDR);
            check_all(&t);
            free(t.buf);
        }
    }
}

static void test_most_cpus(void **state)
{
    struct built t;
    build(&t, ACPI_MAX_CPUS, 4, X86_ACPI_ADDR);
    check_all(&t);
    free(t.buf);
}

static void test_other_addresses(void **state)
{
    /* 16-byte aligned only: the FACS must still land 64-byte aligned in guest space. */
    struct built t;
    build(&t, 2, 1, 0x10);
    check_all(&t);
    free(t.buf);
    build(&t, 2, 1, 0xe0030);
    check_all(&t);
    free(t.buf);

    /* Above 4 GiB the 32-bit pointers cannot be used: X_ fields only. */
    build(&t, 2, 1, 0x100000010ULL);
    check_all(&t);
    const uint8_t *fadt, *madt;
    check_rsdp_xsdt(&t, &fadt, &madt);
    assert_int_equal(rd32(fadt + 36), 0);
    assert_int_equal(rd32(fadt + 40), 0);
    assert_true(rd64(fadt + 132) > UINT32_MAX);
    free(t.buf);
}

static void test_deterministic(void **state)
{
    struct built a, b;
    build(&a, 2, 4, X86_ACPI_ADDR);
    build(&b, 2, 4, X86_ACPI_ADDR);
    assert_int_equal(a.used, b.used);
    assert_memory_equal(a.buf, b.buf, a.used);
    free(a.buf);
    free(b.buf);
}

static void test_buffer_too_small(void **state)
{
    struct built t;
    build(&t, 64, 4, X86_ACPI_ADDR);
    size_t need = t.used;
    free(t.buf);

    char want[64];
    snprintf(want, sizeof(want), "%zu", need);
    const size_t lens[] = { 0, 1, 20, 35, 36, 100, need / 2, need - 1 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        /* An exact-size heap block: ASan reports any write past it. */
        uint8_t *buf = malloc(lens[i] ? lens[i] : 1);
        assert_non_null(buf);
        memset(buf, 0x5A, lens[i] ? lens[i] : 1);
        size_t used = 12345;
        vmk_error *err = NULL;
        struct acpi_platform_info info = { .cpu_count = 64, .serial_count = 4 };
        vmk_result r = acpi_build_tables(&info, buf, lens[i], X86_ACPI_ADDR, &used, &err);
        assert_int_equal(r, VMK_ERR_INTERNAL);
        assert_non_null(err);
        assert_int_equal(vmk_error_code(err), VMK_ERR_INTERNAL);
        assert_non_null(strstr(vmk_error_message(err), want));
        assert_int_equal(used, 12345);
        for (size_t j = 0; j < (lens[i] ? lens[i] : 1); j++)
            assert_int_equal(buf[j], 0x5A);
        vmk_error_free(err);
        free(buf);
    }

    /* Exactly enough is enough. */
    uint8_t *buf = malloc(need);
    assert_non_null(buf);
    size_t used = 0;
    struct acpi_platform_info info = { .cpu_count = 64, .serial_count = 4 };
    assert_int_equal(acpi_build_tables(&info, buf, need, X86_ACPI_ADDR, &used, NULL), VMK_OK);
    assert_int_equal(used, need);
    free(buf);
}

static void expect_invalid(const struct acpi_platform_info *info, uint8_t *buf, size_t len,
                           uint64_t gpa, size_t *used)
{
    vmk_error *err = NULL;
    assert_int_equal(acpi_build_tables(info, buf, len, gpa, used, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(err);
    assert_true(strlen(vmk_error_message(err)) > 0);
    vmk_error_free(err);
    /* A NULL err is allowed too. */
    assert_int_equal(acpi_build_tables(info, buf, len, gpa, used, NULL), VMK_ERR_INVALID_ARGUMENT);
}

static void test_bad_arguments(void **state)
{
    uint8_t *buf = malloc(X86_ACPI_MAX);
    assert_non_null(buf);
    size_t used;
    struct acpi_platform_info ok = { .cpu_count = 1, .serial_count = 1 };
    expect_invalid(NULL, buf, X86_ACPI_MAX, X86_ACPI_ADDR, &used);
    expect_invalid(&ok, NULL, X86_ACPI_MAX, X86_ACPI_ADDR, &used);
    expect_invalid(&ok, buf, X86_ACPI_MAX, X86_ACPI_ADDR, NULL);
    expect_invalid(&ok, buf, X86_ACPI_MAX, X86_ACPI_ADDR + 8, &used);
    expect_invalid(&ok, buf, X86_ACPI_MAX, X86_ACPI_ADDR + 1, &used);
    expect_invalid(&ok, buf, X86_ACPI_MAX, UINT64_MAX - 15, &used); /* wraps */
    expect_invalid(&ok, buf, X86_ACPI_MAX, UINT64_MAX - 0x10F, &used);

    const struct acpi_platform_info bad[] = {
        { .cpu_count = 0, .serial_count = 0 },
        { .cpu_count = ACPI_MAX_CPUS + 1, .serial_count = 0 },
        { .cpu_count = 255, .serial_count = 0 },
        { .cpu_count = 100000, .serial_count = 0 },
        { .cpu_count = 1, .serial_count = 5 },
        { .cpu_count = 1, .serial_count = ~0u },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(&bad[i], buf, X86_ACPI_MAX, X86_ACPI_ADDR, &used);

    struct acpi_pci_info bad_pci[9];
    for (size_t i = 0; i < 9; i++)
        bad_pci[i] = pci_full;
    bad_pci[0].ecam_base = X86_PCI_ECAM_BASE + 0x1000; /* not 1 MiB aligned */
    bad_pci[1].ecam_base = 0x100000000ULL;             /* above 4 GiB */
    bad_pci[2].mmio32_size = 0;
    bad_pci[3].mmio32_base = 0x100000000ULL;
    bad_pci[4].mmio32_size = 0x40000001ULL;       /* crosses 4 GiB */
    bad_pci[5].mmio64_base = UINT64_MAX - 0x1000; /* wraps */
    bad_pci[6].io_base = 0x800;                   /* legacy ports */
    bad_pci[7].io_size = 0x10000;                 /* past 0xFFFF */
    bad_pci[8].io_base = 0x10000;
    for (size_t i = 0; i < 9; i++) {
        struct acpi_platform_info info = { .cpu_count = 1, .serial_count = 1, .pci = &bad_pci[i] };
        expect_invalid(&info, buf, X86_ACPI_MAX, X86_ACPI_ADDR, &used);
    }
    free(buf);
}

/* ---- iasl ----------------------------------------------------------------------- */

static char *find_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char *copy = strdup(path);
    assert_non_null(copy);
    char *found = NULL;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char *cand;
        assert_true(asprintf(&cand, "%s/%s", *dir ? dir : ".", prog) > 0);
        if (access(cand, X_OK) == 0)
            found = cand;
        else
            free(cand);
    }
    free(copy);
    return found;
}

/* Runs argv in dir with stdout and stderr to dir/log; returns the exit status. */
static int run_in(const char *dir, const char *log, char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(dir) < 0)
            _exit(126);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *read_file(const char *dir, const char *name, size_t *len)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("iasl did not write %s", path);
    free(path);
    char *data = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap * 2 + 4096 + 1;
            char *grown = realloc(data, cap);
            assert_non_null(grown);
            data = grown;
        }
        size_t got = fread(data + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static void remove_dir(const char *dir)
{
    static const char *const names[] = { "xsdt", "facp", "facs", "apic", "dsdt" };
    static const char *const exts[] = { ".dat", ".dsl", ".aml", ".log", ".relog" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (size_t j = 0; j < sizeof(exts) / sizeof(exts[0]); j++) {
            char *path;
            if (asprintf(&path, "%s/%s%s", dir, names[i], exts[j]) > 0) {
                unlink(path);
                free(path);
            }
        }
    }
    rmdir(dir);
}

/* iasl lines fields up in columns; one space per run makes needles readable. */
static void squeeze_spaces(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++)
        if (*r != ' ' || w == s || w[-1] != ' ')
            *w++ = *r;
    *w = '\0';
}

/* Fails on any line where iasl reports an error, a warning or a bad checksum (its
 * closing tally, "0 Errors, 0 Warnings", must show zeros). */
static void expect_clean(const char *what, const char *text)
{
    static const char *const bad[] = { "Error", "Warning", "Incorrect", "Invalid" };
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, n);
        assert_non_null(copy);
        bool tally = strstr(copy, " Errors, ") != NULL;
        if (tally && !strstr(copy, " 0 Errors, 0 Warnings"))
            fail_msg("iasl output for %s: %s\n%s", what, copy, text);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) && !tally; i++)
            if (strstr(copy, bad[i]))
                fail_msg("iasl output for %s: %s\n%s", what, copy, text);
        free(copy);
        line += n + (end != NULL);
    }
}

/* Disassembles one table, checks the listing for needles, recompiles the listing and
 * compares the result with the original, ignoring the fields iasl rewrites. */
static void iasl_round_trip(const char *iasl, const char *dir, const char *name,
                            const uint8_t *table, size_t len, const char *const *needles)
{
    char dat[16], dsl[16], aml[16], log[16], relog[16];
    snprintf(dat, sizeof(dat), "%s.dat", name);
    snprintf(dsl, sizeof(dsl), "%s.dsl", name);
    snprintf(aml, sizeof(aml), "%s.aml", name);
    snprintf(log, sizeof(log), "%s.log", name);
    snprintf(relog, sizeof(relog), "%s.relog", name);
    write_file(dir, dat, table, len);

    char *argv[] = { (char *)iasl, "-d", dat, NULL };
    int rc = run_in(dir, log, argv);
    char *out = read_file(dir, log, NULL);
    if (rc != 0)
        fail_msg("iasl -d %s exited with %d:\n%s", dat, rc, out);
    expect_clean(dat, out);
    free(out);

    char *listing = read_file(dir, dsl, NULL);
    expect_clean(dsl, listing);
    squeeze_spaces(listing);
    for (size_t i = 0; needles[i]; i++)
        if (!strstr(listing, needles[i]))
            fail_msg("%s lacks \"%s\":\n%s", dsl, needles[i], listing);
    free(listing);

    /* -oa: no optimisation, so the DSDT's AML comes back byte for byte. */
    char *argv2[] = { (char *)iasl, "-oa", dsl, NULL };
    rc = run_in(dir, relog, argv2);
    out = read_file(dir, relog, NULL);
    if (rc != 0)
        fail_msg("iasl %s exited with %d:\n%s", dsl, rc, out);
    expect_clean(dsl, out);
    free(out);
    size_t back_len;
    uint8_t *back = (uint8_t *)read_file(dir, aml, &back_len);
    assert_int_equal(back_len, len);
    if (len >= 36 && memcmp(name, "facs", 4) != 0) {
        /* iasl stamps its own compiler id and revision, hence a new checksum. */
        assert_memory_equal(back, table, 9);
        assert_memory_equal(back + 10, table + 10, 18);
        assert_memory_equal(back + 36, table + 36, len - 36);
    } else {
        assert_memory_equal(back, table, len);
    }
    free(back);
}

struct iasl_env {
    char *iasl; /* NULL when not installed */
    char dir[4096];
};

static int iasl_setup(void **state)
{
    struct iasl_env *env = calloc(1, sizeof(*env));
    if (!env)
        return -1;
    env->iasl = find_in_path("iasl");
    const char *tmp = getenv("TMPDIR");
    snprintf(env->dir, sizeof(env->dir), "%s/vmk-test-acpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(env->dir)) {
        free(env->iasl);
        free(env);
        return -1;
    }
    *state = env;
    return 0;
}

static int iasl_teardown(void **state)
{
    struct iasl_env *env = *state;
    remove_dir(env->dir);
    free(env->iasl);
    free(env);
    return 0;
}

static void iasl_check(const char *iasl, const char *dir, unsigned cpus, unsigned serials,
                       const struct acpi_pci_info *pci)
{
    struct built t;
    build_pci(&t, cpus, serials, X86_ACPI_ADDR, pci);
    const uint8_t *fadt, *madt;
    const uint8_t *xsdt = check_rsdp_xsdt(&t, &fadt, &madt);
    const uint8_t *dsdt = t.buf + (rd64(fadt + 140) - t.gpa);
    const uint8_t *facs = t.buf + (rd32(fadt + 36) - t.gpa);

    char cpu_line[64], ioapic_id[64];
    snprintf(ioapic_id, sizeof(ioapic_id), "I/O Apic ID : %02X", 0);
    snprintf(cpu_line, sizeof(cpu_line), "Local Apic ID : %02X", cpus - 1);
    char fadt_line[64], madt_line[64];
    snprintf(fadt_line, sizeof(fadt_line), "Table Address 0 : %016llX",
             (unsigned long long)(t.gpa + (uint64_t)(fadt - t.buf)));
    snprintf(madt_line, sizeof(madt_line), "Table Address 1 : %016llX",
             (unsigned long long)(t.gpa + (uint64_t)(madt - t.buf)));
    const char *const xsdt_needles[] = { "Signature : \"XSDT\"", fadt_line, madt_line, NULL };
    const char *const facp_needles[] = { "Revision : 06",
                                         "SCI Interrupt : 0009",
                                         "PM1A Event Block Address : 00000600",
                                         "PM1A Control Block Address : 00000604",
                                         "PM Timer Block Address : 00000608",
                                         "32-bit PM Timer (V1) : 1",
                                         "Control Method Power Button (V1) : 0",
                                         "Reset Register Supported (V2) : 1",
                                         "Address : 0000000000000CF9",
                                         "Value to cause reset : 06",
                                         "Hardware Reduced (V5) : 0",
                                         NULL };
    const char *const facs_needles[] = { "Signature : \"FACS\"", "Version : 02", NULL };
    const char *const apic_needles[] = { "Local Apic Address : FEE00000",
                                         cpu_line,
                                         ioapic_id,
                                         "Address : FEC00000",
                                         "[Local APIC NMI]",
                                         NULL };
    const char *const dsdt_needles[] = { "_S5_", "PNP0B00", serials ? "PNP0501" : "_SB", NULL };
    const char *const dsdt_pci_needles[] = { "_S5_",
                                             "PNP0B00",
                                             "Device (PCI0)",
                                             "Name (_HID, EisaId (\"PNP0A08\")",
                                             "Name (_CID, EisaId (\"PNP0A03\")",
                                             "WordBusNumber (ResourceProducer, MinFixed, MaxFixed,",
                                             "IO (Decode16,",
                                             "DWordMemory (ResourceProducer,",
                                             "Name (_PRT, Package (0x7C)",
                                             "0x001FFFFF,",
                                             "Device (ECAM)",
                                             "PNP0C02",
                                             "Memory32Fixed (ReadWrite,",
                                             NULL };
    char ecam_line[64];
    snprintf(ecam_line, sizeof(ecam_line), "Base Address : %016llX",
             pci ? (unsigned long long)pci->ecam_base : 0ULL);
    const char *const mcfg_needles[] = { "Signature : \"MCFG\"",        ecam_line,
                                         "Segment Group Number : 0000", "Start Bus Number : 00",
                                         "End Bus Number : 00",         NULL };

    iasl_round_trip(iasl, dir, "xsdt", xsdt, rd32(xsdt + 4), xsdt_needles);
    iasl_round_trip(iasl, dir, "facs", facs, 64, facs_needles);
    iasl_round_trip(iasl, dir, "dsdt", dsdt, rd32(dsdt + 4), pci ? dsdt_pci_needles : dsdt_needles);
    if (pci) {
        const uint8_t *mcfg = find_table(&t, "MCFG");
        iasl_round_trip(iasl, dir, "mcfg", mcfg, rd32(mcfg + 4), mcfg_needles);
    }
    iasl_round_trip(iasl, dir, "facp", fadt, rd32(fadt + 4), facp_needles);
    iasl_round_trip(iasl, dir, "apic", madt, rd32(madt + 4), apic_needles);

    free(t.buf);
}

static void test_iasl_accepts_tables(void **state)
{
    struct iasl_env *env = *state;
    if (!env->iasl) {
        print_message("# iasl not found in PATH (Debian package acpica-tools): skipping\n");
        skip();
    }
    iasl_check(env->iasl, env->dir, 1, 0, NULL);
    iasl_check(env->iasl, env->dir, 2, 1, NULL);
    iasl_check(env->iasl, env->dir, 64, 4, NULL);
    iasl_check(env->iasl, env->dir, 2, 1, &pci_full);
    iasl_check(env->iasl, env->dir, 1, 0, &pci_lean);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_for_each_machine),
        cmocka_unit_test(test_tables_with_pci),
        cmocka_unit_test(test_most_cpus),
        cmocka_unit_test(test_other_addresses),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test_setup_teardown(test_iasl_accepts_tables, iasl_setup, iasl_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
