/* The ACPI tables of vmkit's x86-64 machine: RSDP, XSDT, FADT, FACS, MADT and a
 * DSDT describing the legacy devices (COM ports, RTC) and \_S5 for power-off. */
#ifndef VMK_X86_ACPI_H
#define VMK_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

/* Local APIC ids are 8 bits, 0xFF is the broadcast id, and the I/O APIC takes the
 * id after the last CPU. */
#define ACPI_MAX_CPUS         254
#define ACPI_MAX_SERIAL_PORTS 4

struct acpi_platform_info {
    unsigned cpu_count;    /* local APIC ids 0..cpu_count-1, all enabled */
    unsigned serial_count; /* COM1..COMn (0..4) to describe in the DSDT */
};

/* Lays out RSDP, XSDT, FADT, FACS, MADT and DSDT in buf, which the guest will see at
 * guest physical address gpa (RSDP first, at gpa itself, 16-byte aligned; tables after
 * it, 8-byte aligned (FACS 64-byte aligned)). All checksums correct. *used = bytes
 * used. VMK_ERR_INVALID_ARGUMENT for NULL pointers, a cpu_count outside
 * 1..ACPI_MAX_CPUS, a serial_count above ACPI_MAX_SERIAL_PORTS or a gpa that is not
 * 16-byte aligned; VMK_ERR_NO_MEMORY; VMK_ERR_INTERNAL when buf is too small (the
 * message says how much is needed). On failure nothing is written to buf. */
vmk_result acpi_build_tables(const struct acpi_platform_info *p, uint8_t *buf, size_t len,
                             uint64_t gpa, size_t *used, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
