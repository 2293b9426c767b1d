/* The memory map firmware reads from fw_cfg as "etc/e820" (OVMF sizes RAM from it):
 * packed 20-byte entries {le64 address, le64 length, le32 type}. Unlike the Linux boot
 * map, low RAM is one entry from 0: the firmware places its own legacy holes. */
#ifndef VMK_X86_FW_CFG_E820_H
#define VMK_X86_FW_CFG_E820_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_memory.h"

#define X86_FW_CFG_E820_FILE  "etc/e820"
#define X86_FW_CFG_E820_ENTRY 20
#define X86_FW_CFG_E820_MAX   (GM_MAX_REGIONS + 1)

/* Writes the map for gm into out: one RAM entry (type 1) per region in address order,
 * then a reserved one (type 2) for the pages KVM keeps below 4 GiB (identity map and
 * TSS), as QEMU does. Returns the bytes written, or 0 when cap is short of (regions
 * + 1) entries (X86_FW_CFG_E820_MAX entries always do). */
size_t x86_fw_cfg_e820(const struct guest_memory *gm, uint8_t *out, size_t cap);

#endif
