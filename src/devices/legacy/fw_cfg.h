/* QEMU's firmware-configuration device (fw_cfg), as OVMF and Linux's qemu_fw_cfg driver
 * use it: a 16-bit selector picks an item, the data port reads it a byte at a time, and
 * the DMA interface copies it straight into guest RAM. Items are the signature "QEMU"
 * (key 0x0000), the feature bitmap (0x0001), the file directory (0x0019), numeric items
 * the machine sets (e.g. 0x0005 CPU count, 0x000f maximum CPUs, arch-specific keys from
 * 0x8000) and named files (keys from 0x0020). The device knows no architecture: the
 * machine places the port block (x86: 0x510). */
#ifndef VMK_LEGACY_FW_CFG_H
#define VMK_LEGACY_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/guest_memory.h"

#define FW_CFG_SIGNATURE  0x0000
#define FW_CFG_ID         0x0001
#define FW_CFG_NB_CPUS    0x0005
#define FW_CFG_MAX_CPUS   0x000f
#define FW_CFG_FILE_DIR   0x0019
#define FW_CFG_FILE_FIRST 0x0020
#define FW_CFG_FILE_LAST  0x3fff /* 0x4000 is the obsolete write-mode bit */
#define FW_CFG_ARCH_LOCAL 0x8000

#define FW_CFG_ID_TRADITIONAL 0x01
#define FW_CFG_ID_DMA         0x02

#define FW_CFG_DMA_ERROR  0x01
#define FW_CFG_DMA_READ   0x02
#define FW_CFG_DMA_SKIP   0x04
#define FW_CFG_DMA_SELECT 0x08 /* the key is in the control word's high 16 bits */
#define FW_CFG_DMA_WRITE  0x10

#define FW_CFG_DMA_SIGNATURE 0x51454d5520434647ULL /* "QEMU CFG", read back big-endian */
#define FW_CFG_NAME_MAX      56                    /* bytes of a directory name, with the NUL */
#define FW_CFG_DIR_ENTRY     64                    /* be32 size, be16 select, be16 0, name */

/* The port block, relative to its base: selector (16-bit write at +0), data (8-bit read
 * at +1), DMA address (64-bit big-endian at +4; writing its low half at +8, or all 8
 * bytes at +4, starts the transfer). */
#define FW_CFG_IO_SELECTOR 0
#define FW_CFG_IO_DATA     1
#define FW_CFG_IO_DMA      4
#define FW_CFG_IO_LEN      12

struct fw_cfg;

/* Called after a DMA write changed bytes [offset, offset + len) of a writable file, with
 * the device lock held: it may read data but must not call into the fw_cfg. */
typedef void (*fw_cfg_write_fn)(void *ctx, const uint8_t *data, uint32_t offset, uint32_t len);

/* gm: the guest RAM the DMA interface copies to and from (it must outlive the device),
 * or NULL for a device without DMA (the feature bit stays clear). NULL when out of
 * memory. */
struct fw_cfg *fw_cfg_new(const struct guest_memory *gm);
void fw_cfg_free(struct fw_cfg *fc);

/* Sets numeric item key (outside the file range, not the signature, id or directory;
 * bit 14 clear) to a copy of data; an item already there is replaced. 0, -EINVAL for a
 * reserved key or more than 4 GiB - 1 bytes, -ENOMEM. */
int fw_cfg_add_item(struct fw_cfg *fc, uint16_t key, const void *data, size_t len)
    __attribute__((warn_unused_result));

/* Adds a copy of data as a read-only file named name (1..55 bytes) and lists it in the
 * directory, which stays sorted by name. Keys are handed out from FW_CFG_FILE_FIRST in
 * the order files are added. Returns the key, -EEXIST when the name is taken, -EINVAL
 * for a bad name or more than 4 GiB - 1 bytes, -ENOSPC when no key is left, -ENOMEM. */
int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, size_t len)
    __attribute__((warn_unused_result));

/* The same for a file the guest may overwrite in place through DMA (never resize);
 * on_write (may be NULL) hears of each write. */
int fw_cfg_add_writable_file(struct fw_cfg *fc, const char *name, const void *data, size_t len,
                             fw_cfg_write_fn on_write, void *ctx)
    __attribute__((warn_unused_result));

/* Register at the port block's base with len FW_CFG_IO_LEN, dev = the fw_cfg. Safe
 * from several vCPU threads at once (the device locks itself). Accesses other than
 * those above are ignored, and read all ones. */
extern const struct bus_device_ops fw_cfg_io_ops;

#endif
