/* vmkit's ACPI tables as QEMU hands them to firmware: three fw_cfg files, the RSDP, the
 * other tables, and "etc/table-loader", a script of 128-byte commands in QEMU's BIOS
 * linker/loader format. The firmware (OVMF's AcpiPlatformDxe, SeaBIOS) allocates each
 * file wherever it likes, patches every pointer between tables by adding the address it
 * chose, and recomputes the checksums, so the tables need no fixed address. */
#ifndef VMK_X86_ACPI_LOADER_H
#define VMK_X86_ACPI_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/acpi.h"
#include "vmkit.h"

#define ACPI_LOADER_RSDP_FILE   "etc/acpi/rsdp"
#define ACPI_LOADER_TABLES_FILE "etc/acpi/tables"
#define ACPI_LOADER_SCRIPT_FILE "etc/table-loader"

/* The command format (all integers little-endian; names NUL-padded to 56 bytes):
 *   u32 type at 0, then
 *   ALLOCATE:     file at 4, u32 align at 60 (a power of two), u8 zone at 64
 *   ADD_POINTER:  dest file at 4, src file at 60, u32 offset at 116, u8 size at 120:
 *                 the size-byte integer at offset in dest gets src's address added
 *   ADD_CHECKSUM: file at 4, u32 result offset at 60, u32 start at 64, u32 length at 68:
 *                 the byte at result offset becomes minus the sum of [start, start +
 *                 length); it is 0 beforehand, so "set" and "add" firmware agree
 * and zeroes up to byte 128. */
#define ACPI_LOADER_CMD_LEN      128
#define ACPI_LOADER_NAME_LEN     56
#define ACPI_LOADER_ALLOCATE     1
#define ACPI_LOADER_ADD_POINTER  2
#define ACPI_LOADER_ADD_CHECKSUM 3
#define ACPI_LOADER_ZONE_HIGH    1 /* anywhere in 32-bit memory */
#define ACPI_LOADER_ZONE_FSEG    2 /* the BIOS F segment (the RSDP, for legacy OSes) */

struct acpi_loader_files {
    uint8_t *rsdp, *tables, *script;
    size_t rsdp_len, tables_len, script_len;
};

/* Builds the tables acpi_build_tables describes for p and the script that relocates
 * them. The tables file keeps acpi_build_tables' layout at address 0 (its first bytes,
 * where the RSDP was, are zero padding), so the FACS stays 64-byte aligned; every
 * pointer in it is an offset into the file, every checksum byte 0 until the script
 * sets it. The tables ask to be placed below 4 GiB (the FADT has 32-bit pointers).
 * Errors as acpi_build_tables, VMK_ERR_NO_MEMORY; on failure *out is all NULL/0. */
vmk_result acpi_loader_build(const struct acpi_platform_info *p, struct acpi_loader_files *out,
                             vmk_error **err) __attribute__((warn_unused_result));
/* Frees the three buffers and zeroes *f; NULL is a no-op. */
void acpi_loader_files_free(struct acpi_loader_files *f);

#endif
