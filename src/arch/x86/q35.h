/* What of Intel's Q35 chipset vmkit's EFI machine shows, so that Debian's OVMF runs on it:
 * OVMF only runs on a host bridge it knows (OvmfPkg PlatformInitLib: i440FX 8086:1237 or
 * Q35's MCH 8086:29C0) and programs the chipset's registers for it. Q35 is the smaller honest
 * fit for vmkit's PC: its ACPI PM block is where ICH9's PMBASE puts it (0x600, what OVMF
 * writes), its power-off value matches, and its PCIe ECAM is what vmkit's bus already
 * decodes. (i440FX would move the PM block to 0xB000, inside vmkit's PCI I/O window, and add
 * a PIIX4 function with its own registers.)
 *
 * Shown: the MCH identity on 00:00.0 with PCIEXBAR (0x60, 64-bit), whose enable bit and base
 * decide whether the ECAM window answers; the ICH9 LPC bridge at 00:1f.0 (8086:2918) with
 * PMBASE (0x40), ACPI_CNTL (0x44), the PIRQ routing bytes (0x60-0x63, 0x68-0x6B) and RCBA
 * (0xF0), which hold what firmware writes. The ACPI PM block answers only while ACPI_CNTL
 * enables it and PMBASE names X86_PM_BASE; ECAM only while PCIEXBAR is enabled at
 * X86_EFI_ECAM_BASE, 256 MiB, the values OVMF writes: vmkit's buses are fixed when the machine
 * is built, so other values switch the decode off instead of moving it. PIRQ routing and RCBA
 * decode nothing (interrupts go the way vmkit's ACPI tables say; RCBA's MMIO reads all ones). */
#ifndef VMK_X86_Q35_H
#define VMK_X86_Q35_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/bus.h"
#include "pci/pci.h"

#define Q35_MCH_VENDOR    0x8086
#define Q35_MCH_DEVICE    0x29c0
#define Q35_LPC_DEVICE    0x2918
#define Q35_LPC_SLOT      0x1f
#define Q35_PCIEXBAR      0x60
#define Q35_LPC_PMBASE    0x40
#define Q35_LPC_ACPI_CNTL 0x44
#define Q35_LPC_RCBA      0xf0
#define Q35_ACPI_EN       0x80

struct x86_q35 {
    struct pci_bus *bus;
    struct pci_device lpc;
    /* What the decode gates read without the bus lock; the config hooks write them. */
    atomic_bool ecam_on;
    atomic_bool pm_on;
    const struct bus_device_ops *pm_ops;
    void *pm_dev;
};

/* Gives bus the MCH identity and PCIEXBAR and puts the LPC bridge at 00:1f.0 (so call it
 * before other devices are added). pm_ops/pm_dev: the ACPI PM block the gate forwards to.
 * 0 or -errno (the slot is taken). q must stay where it is while the bus lives. */
int x86_q35_init(struct x86_q35 *q, struct pci_bus *bus, const struct bus_device_ops *pm_ops,
                 void *pm_dev) __attribute__((warn_unused_result));

/* Register with dev = the x86_q35:
 *   x86_q35_ecam_ops on MMIO at X86_EFI_ECAM_BASE, 1 MiB (bus 0; the rest of the 256 MiB
 *     reads all ones, as no bus is there);
 *   x86_q35_pm_ops on PIO at X86_PM_BASE, X86_PM_SIZE. */
extern const struct bus_device_ops x86_q35_ecam_ops;
extern const struct bus_device_ops x86_q35_pm_ops;

#endif
