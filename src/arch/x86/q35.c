#include "arch/x86/q35.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"

#define PCIEXBAR_EN       0x1u
#define PCIEXBAR_LEN_MASK 0x6u /* 0: 256 MiB, 1: 128 MiB, 2: 64 MiB */
#define PCIEXBAR_ADDR_MAX (1ULL << 36)
#define PMBASE_RTE        0x1u    /* reads 1: the base is an I/O address */
#define PMBASE_MASK       0xff80u /* 128 bytes of ports */
#define ACPI_CNTL_MASK    0x87u   /* ACPI_EN, SCI_IRQ_SEL */
#define RCBA_MASK         0xffffc001u
#define PIRQ_DISABLED     0x80 /* IRQEN# set: what the routing bytes reset to */
#define CLASS_ISA_BRIDGE  0x060100
#define LPC_REVISION      2

static const uint8_t pirq_regs[] = { 0x60, 0x61, 0x62, 0x63, 0x68, 0x69, 0x6a, 0x6b };

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool touches(unsigned offset, unsigned size, unsigned reg, unsigned len)
{
    return offset < reg + len && reg < offset + size;
}

/* Runs under the bus lock after a config write to the host bridge. */
static void mch_written(void *ctx, unsigned offset, unsigned size)
{
    struct x86_q35 *q = ctx;
    if (!touches(offset, size, Q35_PCIEXBAR, 8))
        return;
    const uint8_t *cfg = pci_bus_host_bridge(q->bus)->config;
    uint64_t bar = (uint64_t)get32(cfg + Q35_PCIEXBAR + 4) << 32 | get32(cfg + Q35_PCIEXBAR);
    uint64_t len = 0x10000000ULL >> ((bar & PCIEXBAR_LEN_MASK) >> 1);
    uint64_t base = bar & ~(len - 1) & (PCIEXBAR_ADDR_MAX - 1);
    atomic_store(&q->ecam_on, (bar & PCIEXBAR_EN) && base == X86_EFI_ECAM_BASE);
}

static void lpc_written(void *ctx, unsigned offset, unsigned size)
{
    struct x86_q35 *q = ctx;
    if (!touches(offset, size, Q35_LPC_PMBASE, 4) && !touches(offset, size, Q35_LPC_ACPI_CNTL, 1))
        return;
    uint32_t base = get32(q->lpc.config + Q35_LPC_PMBASE) & PMBASE_MASK;
    bool en = q->lpc.config[Q35_LPC_ACPI_CNTL] & Q35_ACPI_EN;
    atomic_store(&q->pm_on, en && base == X86_PM_BASE);
}

int x86_q35_init(struct x86_q35 *q, struct pci_bus *bus, const struct bus_device_ops *pm_ops,
                 void *pm_dev)
{
    memset(q, 0, sizeof(*q));
    q->bus = bus;
    q->pm_ops = pm_ops;
    q->pm_dev = pm_dev;
    atomic_init(&q->ecam_on, false);
    atomic_init(&q->pm_on, false);

    pci_bus_set_host_bridge_id(bus, Q35_MCH_VENDOR, Q35_MCH_DEVICE, 0);
    struct pci_device *mch = pci_bus_host_bridge(bus);
    uint8_t mask[8];
    put32(mask, 0xfc000000u | PCIEXBAR_LEN_MASK | PCIEXBAR_EN);
    put32(mask + 4, (uint32_t)((PCIEXBAR_ADDR_MAX - 1) >> 32));
    pci_device_set_wmask(mch, Q35_PCIEXBAR, mask, sizeof(mask));
    struct pci_config_hook mh = { .written = mch_written, .ctx = q };
    int r = pci_device_add_config_hook(mch, &mh);
    if (r < 0)
        return r;

    pci_device_init(&q->lpc, Q35_MCH_VENDOR, Q35_LPC_DEVICE, CLASS_ISA_BRIDGE, LPC_REVISION, 0, 0);
    put32(q->lpc.config + Q35_LPC_PMBASE, PMBASE_RTE);
    put32(mask, PMBASE_MASK);
    pci_device_set_wmask(&q->lpc, Q35_LPC_PMBASE, mask, 4);
    mask[0] = ACPI_CNTL_MASK;
    pci_device_set_wmask(&q->lpc, Q35_LPC_ACPI_CNTL, mask, 1);
    put32(mask, RCBA_MASK);
    pci_device_set_wmask(&q->lpc, Q35_LPC_RCBA, mask, 4);
    mask[0] = 0xff;
    for (size_t i = 0; i < sizeof(pirq_regs); i++) {
        q->lpc.config[pirq_regs[i]] = PIRQ_DISABLED;
        pci_device_set_wmask(&q->lpc, pirq_regs[i], mask, 1);
    }
    struct pci_config_hook lh = { .written = lpc_written, .ctx = q };
    if ((r = pci_device_add_config_hook(&q->lpc, &lh)) < 0)
        return r;
    r = pci_bus_add_device_at(bus, &q->lpc, Q35_LPC_SLOT);
    return r < 0 ? r : 0;
}

static void ecam_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct x86_q35 *q = dev;
    if (atomic_load(&q->ecam_on))
        pci_ecam_ops.read(q->bus, off, data, size);
    else
        memset(data, 0xff, size);
}

static void ecam_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct x86_q35 *q = dev;
    if (atomic_load(&q->ecam_on))
        pci_ecam_ops.write(q->bus, off, data, size);
}

static void pm_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct x86_q35 *q = dev;
    if (atomic_load(&q->pm_on))
        q->pm_ops->read(q->pm_dev, off, data, size);
    else
        memset(data, 0xff, size);
}

static void pm_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct x86_q35 *q = dev;
    if (atomic_load(&q->pm_on))
        q->pm_ops->write(q->pm_dev, off, data, size);
}

const struct bus_device_ops x86_q35_ecam_ops = { .read = ecam_read, .write = ecam_write };
const struct bus_device_ops x86_q35_pm_ops = { .read = pm_read, .write = pm_write };
