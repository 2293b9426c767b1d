#include "arch/x86/acpi.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

#define PCI_PRT_SLOTS 31 /* slots 1..31; slot 0 is the host bridge */
#include "core/error.h"

/* Table layouts (ACPI 6.3). Multi-byte fields are little-endian; structs are built
 * on the stack and copied into the buffer, so the buffer needs no alignment. */

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "ACPI table header");

struct acpi_gas {
    uint8_t space_id;
    uint8_t bit_width;
    uint8_t bit_offset;
    uint8_t access_size;
    uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "Generic Address Structure");

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 part) */
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address;
    uint32_t length;
    uint64_t xsdt_address;
    uint8_t extended_checksum; /* over all 36 bytes */
    uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");

struct acpi_fadt {
    struct acpi_header header;
    uint32_t firmware_ctrl;
    uint32_t dsdt;
    uint8_t reserved0;
    uint8_t preferred_pm_profile;
    uint16_t sci_int;
    uint32_t smi_cmd;
    uint8_t acpi_enable;
    uint8_t acpi_disable;
    uint8_t s4bios_req;
    uint8_t pstate_cnt;
    uint32_t pm1a_evt_blk;
    uint32_t pm1b_evt_blk;
    uint32_t pm1a_cnt_blk;
    uint32_t pm1b_cnt_blk;
    uint32_t pm2_cnt_blk;
    uint32_t pm_tmr_blk;
    uint32_t gpe0_blk;
    uint32_t gpe1_blk;
    uint8_t pm1_evt_len;
    uint8_t pm1_cnt_len;
    uint8_t pm2_cnt_len;
    uint8_t pm_tmr_len;
    uint8_t gpe0_blk_len;
    uint8_t gpe1_blk_len;
    uint8_t gpe1_base;
    uint8_t cst_cnt;
    uint16_t p_lvl2_lat;
    uint16_t p_lvl3_lat;
    uint16_t flush_size;
    uint16_t flush_stride;
    uint8_t duty_offset;
    uint8_t duty_width;
    uint8_t day_alrm;
    uint8_t mon_alrm;
    uint8_t century;
    uint16_t iapc_boot_arch;
    uint8_t reserved1;
    uint32_t flags;
    struct acpi_gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl;
    uint64_t x_dsdt;
    struct acpi_gas x_pm1a_evt_blk;
    struct acpi_gas x_pm1b_evt_blk;
    struct acpi_gas x_pm1a_cnt_blk;
    struct acpi_gas x_pm1b_cnt_blk;
    struct acpi_gas x_pm2_cnt_blk;
    struct acpi_gas x_pm_tmr_blk;
    struct acpi_gas x_gpe0_blk;
    struct acpi_gas x_gpe1_blk;
    struct acpi_gas sleep_control_reg;
    struct acpi_gas sleep_status_reg;
    uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT (revision 6)");

struct acpi_facs {
    char signature[4];
    uint32_t length;
    uint32_t hardware_signature;
    uint32_t firmware_waking_vector;
    uint32_t global_lock;
    uint32_t flags;
    uint64_t x_firmware_waking_vector;
    uint8_t version;
    uint8_t reserved0[3];
    uint32_t ospm_flags;
    uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS");

struct acpi_madt {
    struct acpi_header header;
    uint32_t lapic_address;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT");

struct madt_lapic {
    uint8_t type;
    uint8_t length;
    uint8_t processor_uid;
    uint8_t apic_id;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT Processor Local APIC");

struct madt_ioapic {
    uint8_t type;
    uint8_t length;
    uint8_t id;
    uint8_t reserved;
    uint32_t address;
    uint32_t gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT I/O APIC");

struct madt_iso {
    uint8_t type;
    uint8_t length;
    uint8_t bus;
    uint8_t source;
    uint32_t gsi;
    uint16_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_iso) == 10, "MADT Interrupt Source Override");

struct madt_lapic_nmi {
    uint8_t type;
    uint8_t length;
    uint8_t processor_uid;
    uint16_t flags;
    uint8_t lint;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT Local APIC NMI");

struct acpi_mcfg_entry {
    uint64_t base;
    uint16_t segment;
    uint8_t start_bus;
    uint8_t end_bus;
    uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg_entry) == 16, "MCFG allocation entry");

#define ACPI_OEM_ID       "VMKIT "
#define ACPI_OEM_TABLE_ID "VMKITVM "
#define ACPI_CREATOR_ID   "VMKT"

#define GAS_SYSTEM_IO    1
#define GAS_ACCESS_BYTE  1
#define GAS_ACCESS_WORD  2
#define GAS_ACCESS_DWORD 3

#define FADT_WBINVD              (1u << 0)
#define FADT_PROC_C1             (1u << 2)
#define FADT_SLP_BUTTON          (1u << 5) /* set: there is NO fixed-feature sleep button */
#define FADT_TMR_VAL_EXT         (1u << 8)
#define FADT_RESET_REG_SUP       (1u << 10)
#define FADT_IAPC_LEGACY_DEVICES (1u << 0)
#define FADT_CENTURY_CMOS_INDEX  0x32

#define MADT_PCAT_COMPAT     (1u << 0)
#define MADT_TYPE_LAPIC      0
#define MADT_TYPE_IOAPIC     1
#define MADT_TYPE_ISO        2
#define MADT_TYPE_LAPIC_NMI  4
#define MADT_LAPIC_ENABLED   (1u << 0)
#define MADT_ISO_ACTIVE_HIGH 0x1
#define MADT_ISO_LEVEL       (0x3 << 2)
#define MADT_ALL_PROCESSORS  0xFF

#define XSDT_MAX_ENTRIES 3 /* FADT, MADT, MCFG */
#define MCFG_LEN         (sizeof(struct acpi_header) + 8 + sizeof(struct acpi_mcfg_entry))

/* COM3 and COM4 share the IRQs of COM1 and COM2, as on a PC. */
static const struct {
    uint16_t port;
    uint8_t irq;
} com_ports[ACPI_MAX_SERIAL_PORTS] = {
    { X86_COM1_PORT, X86_COM1_IRQ },
    { X86_COM2_PORT, X86_COM2_IRQ },
    { X86_COM3_PORT, X86_COM1_IRQ },
    { X86_COM4_PORT, X86_COM2_IRQ },
};

static void put_header(struct acpi_header *h, const char *sig, uint32_t length, uint8_t revision)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->signature, sig, 4);
    h->length = htole32(length);
    h->revision = revision;
    memcpy(h->oem_id, ACPI_OEM_ID, 6);
    memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
    h->oem_revision = htole32(1);
    memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
    h->creator_revision = htole32(VMK_VERSION_NUM);
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0x100 - sum);
}

/* Sets the header checksum of the table of length bytes at t. */
static void fix_checksum(uint8_t *t, size_t length)
{
    t[offsetof(struct acpi_header, checksum)] = 0;
    t[offsetof(struct acpi_header, checksum)] = checksum(t, length);
}

static struct acpi_gas io_gas(uint16_t port, unsigned bytes, uint8_t access_size)
{
    return (struct acpi_gas){
        .space_id = GAS_SYSTEM_IO,
        .bit_width = (uint8_t)(bytes * 8),
        .access_size = access_size,
        .address = htole64(port),
    };
}

static void dsdt_device(struct aml_buf *b, const char *name, const char *hid, unsigned uid,
                        uint16_t port, uint8_t port_len, uint8_t irq)
{
    struct aml_mark dev = aml_device_begin(b, name);
    aml_name(b, "_HID");
    aml_eisaid(b, hid);
    if (uid) {
        aml_name(b, "_UID");
        aml_integer(b, uid);
        struct aml_mark sta = aml_method_begin(b, "_STA", 0, false);
        aml_return_integer(b, 0x0F); /* present, enabled, shown, functioning */
        aml_end(b, sta);
    }
    aml_name(b, "_CRS");
    struct aml_mark crs = aml_resource_template_begin(b);
    aml_res_io(b, true, port, port, 1, port_len);
    aml_res_irq_noflags(b, irq);
    aml_end(b, crs);
    aml_end(b, dev);
}

/* Large resource descriptors (ACPI 6.3, 6.4.3) the AML builder has no helper for. */
#define RES_MEM32_FIXED    0x86
#define RES_DWORD_ADDRESS  0x87
#define RES_WORD_ADDRESS   0x88
#define RES_QWORD_ADDRESS  0x8A
#define RES_TYPE_MEMORY    0
#define RES_TYPE_IO        1
#define RES_TYPE_BUS       2
#define RES_PRODUCER_FIXED 0x0C /* producer, positive decode, min and max fixed */
#define RES_MEM_RW         0x01 /* memory: read-write, non-cacheable */
#define RES_IO_ENTIRE      0x03 /* I/O: ISA and non-ISA ranges */

static void le_bytes(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A Word/DWord/QWord address space descriptor (width 2, 4 or 8 bytes per field) for the
 * producer range [min, min + len). */
static void res_address(struct aml_buf *b, uint8_t type, uint8_t type_flags, unsigned width,
                        uint64_t min, uint64_t len)
{
    uint8_t d[3 + 3 + 5 * 8];
    size_t body = 3 + 5 * (size_t)width;
    d[0] = width == 2 ? RES_WORD_ADDRESS : width == 4 ? RES_DWORD_ADDRESS : RES_QWORD_ADDRESS;
    le_bytes(d + 1, body, 2);
    d[3] = type;
    d[4] = RES_PRODUCER_FIXED;
    d[5] = type_flags;
    uint8_t *f = d + 6;
    le_bytes(f, 0, width);                         /* granularity */
    le_bytes(f + width, min, width);               /* minimum */
    le_bytes(f + 2 * width, min + len - 1, width); /* maximum */
    le_bytes(f + 3 * width, 0, width);             /* translation offset */
    le_bytes(f + 4 * width, len, width);           /* length */
    aml_append(b, d, 3 + body);
}

static void res_mem32_fixed(struct aml_buf *b, uint32_t base, uint32_t len)
{
    uint8_t d[12] = { RES_MEM32_FIXED, 9, 0, RES_MEM_RW };
    le_bytes(d + 4, base, 4);
    le_bytes(d + 8, len, 4);
    aml_append(b, d, sizeof(d));
}

/* \_SB.PCI0: the host bridge of segment 0, bus 0, with the windows it forwards, and
 * \_SB.ECAM, a motherboard resource (PNP0C02) that reserves the ECAM window as Linux
 * requires before it trusts MCFG. */
static void dsdt_pci(struct aml_buf *b, const struct acpi_pci_info *pci)
{
    struct aml_mark dev = aml_device_begin(b, "PCI0");
    aml_name(b, "_HID");
    aml_eisaid(b, "PNP0A08");
    aml_name(b, "_CID");
    aml_eisaid(b, "PNP0A03");
    aml_name(b, "_SEG");
    aml_integer(b, 0);
    aml_name(b, "_BBN");
    aml_integer(b, 0);
    aml_name(b, "_UID");
    aml_integer(b, 0);
    aml_name(b, "_CRS");
    struct aml_mark crs = aml_resource_template_begin(b);
    res_address(b, RES_TYPE_BUS, 0, 2, 0, 1);
    aml_res_io(b, true, X86_PCI_CONFIG_PORT, X86_PCI_CONFIG_PORT, 1, X86_PCI_CONFIG_LEN);
    if (pci->io_size)
        res_address(b, RES_TYPE_IO, RES_IO_ENTIRE, 2, pci->io_base, pci->io_size);
    res_address(b, RES_TYPE_MEMORY, RES_MEM_RW, 4, pci->mmio32_base, pci->mmio32_size);
    if (pci->mmio64_size)
        res_address(b, RES_TYPE_MEMORY, RES_MEM_RW, 8, pci->mmio64_base, pci->mmio64_size);
    aml_end(b, crs);

    /* Legacy INTx for devices that fall back from MSI-X: the usual swizzle onto four
     * level-triggered, active-low I/O APIC inputs (GSI source 0: no link devices). */
    aml_name(b, "_PRT");
    struct aml_mark prt = aml_package_begin(b, (PCI_PRT_SLOTS)*4);
    for (unsigned slot = 1; slot <= PCI_PRT_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            struct aml_mark e = aml_package_begin(b, 4);
            aml_integer(b, (uint64_t)slot << 16 | 0xFFFF);
            aml_integer(b, pin);
            aml_integer(b, 0);
            aml_integer(b, X86_PCI_INTX_GSI + ((slot + pin) & 3));
            aml_end(b, e);
        }
    }
    aml_end(b, prt);
    aml_end(b, dev);

    dev = aml_device_begin(b, "ECAM");
    aml_name(b, "_HID");
    aml_eisaid(b, "PNP0C02");
    aml_name(b, "_UID");
    aml_integer(b, 1);
    aml_name(b, "_CRS");
    crs = aml_resource_template_begin(b);
    res_mem32_fixed(b, (uint32_t)pci->ecam_base, (uint32_t)X86_PCI_ECAM_SIZE);
    aml_end(b, crs);
    aml_end(b, dev);
}

/* The DSDT's AML body. The power button is the FADT fixed-feature one (PWRBTN_STS/EN
 * in PM1), so no PNP0C0C device is needed; the guest sees it through the SCI. */
static int build_dsdt_aml(const struct acpi_platform_info *p, struct aml_buf *b)
{
    /* \_S5: the SLP_TYP values OSPM writes to PM1a_CNT (and PM1b_CNT) to power off. */
    aml_name(b, "\\_S5");
    struct aml_mark s5 = aml_package_begin(b, 4);
    aml_integer(b, X86_S5_SLP_TYP);
    aml_integer(b, X86_S5_SLP_TYP);
    aml_integer(b, 0);
    aml_integer(b, 0);
    aml_end(b, s5);

    struct aml_mark sb = aml_scope_begin(b, "\\_SB");
    for (unsigned i = 0; i < p->serial_count; i++) {
        char name[5] = { 'C', 'O', 'M', (char)('1' + i), '\0' };
        dsdt_device(b, name, "PNP0501", i + 1, com_ports[i].port, 8, com_ports[i].irq);
    }
    dsdt_device(b, "RTC", "PNP0B00", 0, X86_RTC_PORT, 2, X86_RTC_IRQ);
    if (p->pci)
        dsdt_pci(b, p->pci);
    aml_end(b, sb);
    return aml_status(b);
}

/* Places a table of size bytes at the next guest address aligned to align. */
static bool place(uint64_t gpa, size_t *cur, size_t size, uint64_t align, size_t *off)
{
    uint64_t at = gpa + *cur;
    if (at < gpa || at > UINT64_MAX - (align - 1))
        return false;
    at = (at + align - 1) & ~(align - 1);
    if (at - gpa > SIZE_MAX - size)
        return false;
    *off = (size_t)(at - gpa);
    *cur = *off + size;
    return true;
}

struct layout {
    size_t rsdp, xsdt, fadt, facs, madt, dsdt, mcfg;
    size_t xsdt_entries, madt_len, dsdt_len, total;
};

static bool plan(uint64_t gpa, unsigned cpus, bool pci, size_t dsdt_aml, struct layout *l)
{
    size_t cur = 0;
    l->xsdt_entries = pci ? 3 : 2;
    l->madt_len = sizeof(struct acpi_madt) + cpus * sizeof(struct madt_lapic) +
                  sizeof(struct madt_ioapic) + sizeof(struct madt_iso) +
                  sizeof(struct madt_lapic_nmi);
    l->dsdt_len = sizeof(struct acpi_header) + dsdt_aml;
    if (l->dsdt_len > UINT32_MAX)
        return false;
    if (!place(gpa, &cur, sizeof(struct acpi_rsdp), 16, &l->rsdp) ||
        !place(gpa, &cur, sizeof(struct acpi_header) + l->xsdt_entries * 8, 8, &l->xsdt) ||
        !place(gpa, &cur, sizeof(struct acpi_fadt), 8, &l->fadt) ||
        !place(gpa, &cur, sizeof(struct acpi_facs), 64, &l->facs) ||
        !place(gpa, &cur, l->madt_len, 8, &l->madt) || !place(gpa, &cur, l->dsdt_len, 8, &l->dsdt))
        return false;
    l->mcfg = 0;
    if (pci && !place(gpa, &cur, MCFG_LEN, 8, &l->mcfg))
        return false;
    /* The whole area must be addressable: gpa + total may not wrap. */
    if (cur > UINT64_MAX - gpa)
        return false;
    l->total = cur;
    return true;
}

static void write_fadt(uint8_t *buf, const struct layout *l, uint64_t gpa)
{
    struct acpi_fadt f;
    memset(&f, 0, sizeof(f));
    put_header(&f.header, "FACP", sizeof(f), 6);
    f.minor_version = 3; /* ACPI 6.3 */

    /* At most one of FIRMWARE_CTRL and X_FIRMWARE_CTRL may be non-zero (ACPI 6.3,
     * 5.2.9; Linux warns otherwise): the 32-bit field while the FACS is below 4 GiB. */
    uint64_t facs = gpa + l->facs, dsdt = gpa + l->dsdt;
    if (facs <= UINT32_MAX)
        f.firmware_ctrl = htole32((uint32_t)facs);
    else
        f.x_firmware_ctrl = htole64(facs);
    /* DSDT and X_DSDT may both be set; OSPM prefers X_DSDT. */
    if (dsdt <= UINT32_MAX)
        f.dsdt = htole32((uint32_t)dsdt);
    f.x_dsdt = htole64(dsdt);

    f.sci_int = htole16(X86_SCI_IRQ);
    /* SMI_CMD 0: the machine is always in ACPI mode (PM1_CNT.SCI_EN reads 1). */
    f.smi_cmd = 0;
    f.pm1a_evt_blk = htole32(X86_PM1A_EVT_PORT);
    f.pm1a_cnt_blk = htole32(X86_PM1A_CNT_PORT);
    f.pm_tmr_blk = htole32(X86_PM_TMR_PORT);
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    f.x_pm1a_evt_blk = io_gas(X86_PM1A_EVT_PORT, 4, GAS_ACCESS_WORD);
    f.x_pm1a_cnt_blk = io_gas(X86_PM1A_CNT_PORT, 2, GAS_ACCESS_WORD);
    f.x_pm_tmr_blk = io_gas(X86_PM_TMR_PORT, 4, GAS_ACCESS_DWORD);
    /* C2/C3 latencies above 100 and 1000 us mean "not supported". */
    f.p_lvl2_lat = htole16(101);
    f.p_lvl3_lat = htole16(1001);
    f.century = FADT_CENTURY_CMOS_INDEX;
    /* No 8042 flag: the i8042 is there only for resets, and without it Linux skips
     * a keyboard probe that would wait out its timeouts on an IRQ 1 nobody raises. */
    f.iapc_boot_arch = htole16(FADT_IAPC_LEGACY_DEVICES);
    /* PWR_BUTTON stays clear: the power button is the fixed-feature one in PM1. */
    f.flags = htole32(FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_TMR_VAL_EXT |
                      FADT_RESET_REG_SUP);
    f.reset_reg = io_gas(X86_RESET_PORT, 1, GAS_ACCESS_BYTE);
    f.reset_value = X86_RESET_VALUE;

    memcpy(buf + l->fadt, &f, sizeof(f));
    fix_checksum(buf + l->fadt, sizeof(f));
}

static void write_madt(uint8_t *buf, const struct layout *l, unsigned cpus)
{
    struct acpi_madt m;
    put_header(&m.header, "APIC", (uint32_t)l->madt_len, 5);
    m.lapic_address = htole32((uint32_t)X86_LAPIC_ADDR);
    m.flags = htole32(MADT_PCAT_COMPAT);
    uint8_t *p = buf + l->madt;
    memcpy(p, &m, sizeof(m));
    p += sizeof(m);

    for (unsigned i = 0; i < cpus; i++) {
        struct madt_lapic e = {
            .type = MADT_TYPE_LAPIC,
            .length = sizeof(e),
            .processor_uid = (uint8_t)i,
            .apic_id = (uint8_t)i,
            .flags = htole32(MADT_LAPIC_ENABLED),
        };
        memcpy(p, &e, sizeof(e));
        p += sizeof(e);
    }
    struct madt_ioapic io = {
        .type = MADT_TYPE_IOAPIC,
        .length = sizeof(io),
        /* KVM's in-kernel I/O APIC resets its ID register to 0; the MADT agrees. */
        .id = 0,
        .address = htole32((uint32_t)X86_IOAPIC_ADDR),
        .gsi_base = 0,
    };
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    /* The SCI is level-triggered, active high on GSI 9. No override for IRQ 0:
     * KVM's in-kernel PIT raises GSI 0 (I/O APIC pin 0). */
    struct madt_iso iso = {
        .type = MADT_TYPE_ISO,
        .length = sizeof(iso),
        .bus = 0, /* ISA */
        .source = X86_SCI_IRQ,
        .gsi = htole32(X86_SCI_IRQ),
        .flags = htole16(MADT_ISO_ACTIVE_HIGH | MADT_ISO_LEVEL),
    };
    memcpy(p, &iso, sizeof(iso));
    p += sizeof(iso);
    struct madt_lapic_nmi nmi = {
        .type = MADT_TYPE_LAPIC_NMI,
        .length = sizeof(nmi),
        .processor_uid = MADT_ALL_PROCESSORS,
        .flags = 0, /* conforms to the bus */
        .lint = 1,
    };
    memcpy(p, &nmi, sizeof(nmi));

    fix_checksum(buf + l->madt, l->madt_len);
}

/* MCFG: one allocation, the ECAM of segment 0, buses 0..0. */
static void write_mcfg(uint8_t *buf, const struct layout *l, const struct acpi_pci_info *pci)
{
    struct acpi_header h;
    put_header(&h, "MCFG", (uint32_t)MCFG_LEN, 1);
    memcpy(buf + l->mcfg, &h, sizeof(h));
    /* 8 reserved bytes follow the header (already zero). */
    struct acpi_mcfg_entry e = {
        .base = htole64(pci->ecam_base), .segment = 0, .start_bus = 0, .end_bus = 0
    };
    memcpy(buf + l->mcfg + sizeof(h) + 8, &e, sizeof(e));
    fix_checksum(buf + l->mcfg, MCFG_LEN);
}

static bool pci_info_ok(const struct acpi_pci_info *pci)
{
    const uint64_t four_gib = 0x100000000ULL;
    if (pci->ecam_base % X86_PCI_ECAM_SIZE || pci->ecam_base > four_gib - X86_PCI_ECAM_SIZE)
        return false;
    if (!pci->mmio32_size || pci->mmio32_base >= four_gib ||
        pci->mmio32_size > four_gib - pci->mmio32_base)
        return false;
    if (pci->mmio64_size && pci->mmio64_base + pci->mmio64_size < pci->mmio64_base)
        return false;
    if (pci->io_size &&
        (pci->io_base < 0x1000 || pci->io_base > 0xFFFF || pci->io_size > 0x10000 - pci->io_base))
        return false;
    return true;
}

vmk_result acpi_build_tables(const struct acpi_platform_info *p, uint8_t *buf, size_t len,
                             uint64_t gpa, size_t *used, vmk_error **err)
{
    if (!p || !buf || !used)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "ACPI tables: NULL argument");
    if (p->cpu_count < 1 || p->cpu_count > ACPI_MAX_CPUS)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "ACPI tables: %u CPUs is outside 1..%u",
                        p->cpu_count, ACPI_MAX_CPUS);
    if (p->serial_count > ACPI_MAX_SERIAL_PORTS)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "ACPI tables: %u serial ports is more than %u", p->serial_count,
                        ACPI_MAX_SERIAL_PORTS);
    if (p->pci && !pci_info_ok(p->pci))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "ACPI tables: PCI windows are outside the limits the tables can express");
    if (gpa % 16)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "ACPI tables: RSDP address 0x%llx is not 16-byte aligned",
                        (unsigned long long)gpa);

    vmk_result r = VMK_OK;
    struct aml_buf aml;
    aml_init(&aml);
    int e = build_dsdt_aml(p, &aml);
    if (e == -ENOMEM) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "ACPI tables: out of memory building DSDT");
        goto out;
    }
    if (e < 0) {
        r = vmk_fail(err, VMK_ERR_INTERNAL, -e, "ACPI tables: DSDT AML is malformed");
        goto out;
    }

    struct layout l;
    if (!plan(gpa, p->cpu_count, p->pci != NULL, aml.len, &l)) {
        r = vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                     "ACPI tables: do not fit in the address space at 0x%llx",
                     (unsigned long long)gpa);
        goto out;
    }
    if (len < l.total) {
        r = vmk_fail(err, VMK_ERR_INTERNAL, 0,
                     "ACPI tables need %zu bytes, but only %zu were given", l.total, len);
        goto out;
    }
    memset(buf, 0, l.total);

    struct acpi_rsdp rsdp;
    memset(&rsdp, 0, sizeof(rsdp));
    memcpy(rsdp.signature, "RSD PTR ", 8);
    memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
    rsdp.revision = 2;
    rsdp.rsdt_address = 0; /* XSDT only */
    rsdp.length = htole32(sizeof(rsdp));
    rsdp.xsdt_address = htole64(gpa + l.xsdt);
    rsdp.checksum = checksum((const uint8_t *)&rsdp, 20);
    rsdp.extended_checksum = checksum((const uint8_t *)&rsdp, sizeof(rsdp));
    memcpy(buf + l.rsdp, &rsdp, sizeof(rsdp));

    struct acpi_header xsdt;
    size_t xsdt_len = sizeof(xsdt) + l.xsdt_entries * 8;
    put_header(&xsdt, "XSDT", (uint32_t)xsdt_len, 1);
    memcpy(buf + l.xsdt, &xsdt, sizeof(xsdt));
    const uint64_t entries[XSDT_MAX_ENTRIES] = { htole64(gpa + l.fadt), htole64(gpa + l.madt),
                                                 htole64(gpa + l.mcfg) };
    memcpy(buf + l.xsdt + sizeof(xsdt), entries, l.xsdt_entries * 8);
    fix_checksum(buf + l.xsdt, xsdt_len);
    if (p->pci)
        write_mcfg(buf, &l, p->pci);

    write_fadt(buf, &l, gpa);

    /* The FACS has no checksum; the firmware waking vector stays 0 (no S3/S4). */
    struct acpi_facs facs;
    memset(&facs, 0, sizeof(facs));
    memcpy(facs.signature, "FACS", 4);
    facs.length = htole32(sizeof(facs));
    facs.version = 2;
    memcpy(buf + l.facs, &facs, sizeof(facs));

    write_madt(buf, &l, p->cpu_count);

    struct acpi_header dsdt;
    put_header(&dsdt, "DSDT", (uint32_t)l.dsdt_len, 2); /* revision 2: 64-bit integers */
    memcpy(buf + l.dsdt, &dsdt, sizeof(dsdt));
    memcpy(buf + l.dsdt + sizeof(dsdt), aml.data, aml.len);
    fix_checksum(buf + l.dsdt, l.dsdt_len);

    *used = l.total;
out:
    aml_free(&aml);
    return r;
}
