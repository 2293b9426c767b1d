/* The ACPI tables of vmkit's x86-64 machine: RSDP, XSDT, FADT, FACS, MADT, a DSDT
 * describing the legacy devices (COM ports, RTC), \_S5 for power-off and, with PCI, the
 * host bridge \_SB.PCI0 and an MCFG table for its ECAM. */
#ifndef VMK_X86_ACPI_H
#define VMK_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

/* Local APIC ids are 8 bits, 0xFF is the broadcast id, and the I/O APIC takes the
 * id after the last CPU. */
#define ACPI_MAX_CPUS         254
#define ACPI_MAX_SERIAL_PORTS 4

/* PCI segment 0, bus 0 only. */
struct acpi_pci_info {
    uint64_t ecam_base;                /* 1 MiB (bus 0), 1 MiB aligned, below 4 GiB */
    uint64_t mmio32_base, mmio32_size; /* below 4 GiB, not empty */
    uint64_t mmio64_base, mmio64_size; /* size 0: no 64-bit window */
    uint32_t io_base, io_size;         /* size 0: no I/O window; else inside 0x1000..0xFFFF */
};

struct acpi_platform_info {
    unsigned cpu_count;    /* local APIC ids 0..cpu_count-1, all enabled */
    unsigned serial_count; /* COM1..COMn (0..4) to describe in the DSDT */
    /* NULL: no PCI. Else an MCFG table, \_SB.PCI0 (PNP0A08) with its windows and a _PRT
     * sending INTx pin P of slot S (1..31) to GSI X86_PCI_INTX_GSI + (S + P) % 4, and
     * \_SB.ECAM (PNP0C02) reserving the ECAM window. */
    const struct acpi_pci_info *pci;
};

/* Lays out RSDP, XSDT, FADT, FACS, MADT, DSDT (and MCFG with PCI) in buf, which the
 * guest will see at guest physical address gpa (RSDP first, at gpa itself, 16-byte
 * aligned; tables after it, 8-byte aligned (FACS 64-byte aligned)). All checksums
 * correct. *used = bytes used. VMK_ERR_INVALID_ARGUMENT for NULL pointers, a cpu_count
 * outside 1..ACPI_MAX_CPUS, a serial_count above ACPI_MAX_SERIAL_PORTS, PCI windows
 * outside the limits above or a gpa that is not 16-byte aligned; VMK_ERR_NO_MEMORY;
 * VMK_ERR_INTERNAL when buf is too small (the message says how much is needed). On
 * failure nothing is written to buf. */
vmk_result acpi_build_tables(const struct acpi_platform_info *p, uint8_t *buf, size_t len,
                             uint64_t gpa, size_t *used, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
