/* CFI parallel flash with the Intel/Sharp command set (CFI primary command set 0x0001), one
 * x8 chip per image, as OVMF drives its firmware flash: the code image read-only, the
 * variable store writable and backed by its file. Program and erase complete at once: the
 * status register reads ready (0x80) as soon as the command is written.
 *
 * Commands (written as bytes at any offset inside the flash):
 *   0xFF (or anything unknown) read array   0x70 read status   0x50 clear status
 *   0x90 read identifier                   0x98 CFI query
 *   0x10/0x40, then the data byte at its address: program one byte
 *   0x20, then 0xD0 at an address in the block: erase the block to 0xFF (anything but 0xD0
 *   sets the command-sequence error, status bits 0x30)
 * Not offered: write-to-buffer (0xE8; the query table says the part has no buffer), block
 * locking (0x60), suspend (0xB0): such bytes are unknown commands.
 *
 * Reads: in read-array mode the image; in status mode (also after a program or erase, and
 * between the two cycles of one) the status register; in identifier mode, relative to the
 * start of each block, 0x89 (Intel) at +0, device code 0x00 at +1 (no particular part: the
 * geometry is in the query table) and the block's lock status at +2 (1 for a read-only image);
 * in query mode the CFI table, also relative to each block. An access of 2, 4 or 8 bytes acts
 * as that many byte accesses at consecutive offsets, as the bus of a lone x8 part splits it:
 * a status read returns the status in every byte, a read-array read the image's bytes.
 * Offsets at or past cfi_flash_size read 0xFF and ignore writes, in every mode.
 *
 * Behaviour chosen for OVMF (edk2 OvmfPkg's QEMU flash driver), which probes for flash by
 * writing 0x50 then 0x70 and wants the status to read 0x00: clear status returns to read
 * array and clears every bit, ready included (the bit is set again by the next program or
 * erase; a fresh device reads 0x80). OVMF never polls the status: it writes 0x10 + data per
 * byte, then 0xFF, and erases with 0x20 + 0xD0 at the block's start.
 *
 * Programming ANDs the data into the byte, as on the real part (a program cannot set a bit;
 * only an erase can): edk2's variable and fault-tolerant-write drivers are built on that rule
 * and only ever clear bits of a byte they programmed before (a variable's State, say).
 *
 * A read-only flash refuses every program and erase: status 0x80 | 0x02 (block locked) | 0x10
 * (program) or 0x20 (erase); its contents never change and its file is opened O_RDONLY.
 *
 * Durability (the file is the truth): every program or erase changes the array and writes
 * the changed bytes to the file (pwrite) before the command returns; a failed write sets the
 * operation's error bit and leaves the array as it was. When the guest goes back to read
 * array (0xFF) after writes, and at cfi_flash_flush / cfi_flash_free, the file is made durable
 * (fdatasync). So after a `kill -9` of the process every completed program and erase is in the
 * file (the page cache has it); after a host crash or power loss, every one that was followed
 * by a read-array command. The file's size never changes, so a crash never leaves it torn in
 * length. Cost (measured on an ext4 virtual disk): pwrite ~1 us a byte, fdatasync ~0.15 ms;
 * one fdatasync per byte would cost ~0.6 s per 4 KiB of variables OVMF writes byte by byte,
 * one per read-array ~0.15 ms per variable update. The fdatasync runs on the writing vCPU
 * thread: firmware variable writes are rare enough for that.
 *
 * Mapping: OVMF wants the code image to end at 4 GiB and the variable store right below it
 * (its flash driver addresses both as one device from the store's base, 4 MiB below 4 GiB for
 * the 4M build). The machine registers cfi_flash_ops on the MMIO bus over each flash. KVM is
 * faster with the image mapped read-only (KVM_MEM_READONLY memslot over cfi_flash_array)
 * while the device is in read-array mode, every write still trapping as MMIO: the mode
 * listener says when the slot must go (the device left read-array mode, so reads must trap)
 * and when it may come back. Not wired yet.
 *
 * Thread safety: the bus ops and every function but cfi_flash_free may be called from any
 * thread; one mutex serialises them. */
#ifndef VMK_LEGACY_CFI_FLASH_H
#define VMK_LEGACY_CFI_FLASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "vmkit.h"

#define CFI_FLASH_MIN_BLOCK_SIZE  256u         /* the query table's unit for a block size */
#define CFI_FLASH_MAX_BLOCK_SIZE  (8u << 20)   /* the largest power of two the table can say */
#define CFI_FLASH_MAX_BLOCKS      65536u       /* the query table's block count field */
#define CFI_FLASH_MAX_SIZE        (256u << 20) /* held in memory; firmware flash is a few MiB */
#define CFI_FLASH_OVMF_BLOCK_SIZE 4096u        /* OVMF's PcdOvmfFirmwareBlockSize */

struct cfi_flash;

/* Opens the image at path: O_RDONLY with a shared lock when read_only, else O_RDWR with an
 * exclusive lock (open file description locks, as disk images take), and reads it whole.
 * block_size: the erase block, a power of two from CFI_FLASH_MIN_BLOCK_SIZE to
 * CFI_FLASH_MAX_BLOCK_SIZE (OVMF: CFI_FLASH_OVMF_BLOCK_SIZE). The file must be a regular file
 * whose size is a non-zero multiple of block_size, at most CFI_FLASH_MAX_BLOCKS blocks and
 * CFI_FLASH_MAX_SIZE bytes. VMK_ERR_IO (open, lock, read), VMK_ERR_INVALID_CONFIG (size, kind
 * of file, block size; the message names the file) or VMK_ERR_NO_MEMORY; *out is NULL then. */
vmk_result cfi_flash_open(const char *path, bool read_only, uint32_t block_size,
                          struct cfi_flash **out, vmk_error **err)
    __attribute__((warn_unused_result));
/* Flushes (as cfi_flash_flush, its result lost: call that first to learn it), closes the file
 * and frees. NULL is a no-op. No bus access may be in flight. */
void cfi_flash_free(struct cfi_flash *f);

uint64_t cfi_flash_size(const struct cfi_flash *f);
bool cfi_flash_read_only(const struct cfi_flash *f);

/* Makes every completed program and erase durable (fdatasync when any happened since the
 * last one). 0, or -errno of the first write or sync that failed since the open: sticky,
 * since a later success does not bring back what a failed sync dropped. */
int cfi_flash_flush(struct cfi_flash *f) __attribute__((warn_unused_result));

/* The image as the guest reads it in read-array mode: cfi_flash_size bytes, page-aligned,
 * followed by 0xFF up to the next page boundary (so a memslot may cover whole pages). It
 * changes only while the device is out of read-array mode, under the device's lock. */
const uint8_t *cfi_flash_array(const struct cfi_flash *f);
bool cfi_flash_in_read_array(struct cfi_flash *f);

/* fn(ctx, read_array) is called each time the device enters (true) or leaves (false) read-array
 * mode, from the thread whose write caused it, before that write returns and with the
 * device's lock held (so calls arrive in order): fn must not call into this device. A memslot
 * holder removes the slot on false and maps cfi_flash_array on true. NULL fn: none. */
void cfi_flash_set_mode_listener(struct cfi_flash *f, void (*fn)(void *ctx, bool read_array),
                                 void *ctx);

/* Register over [base, base + cfi_flash_size) with dev = the cfi_flash; offsets relative to
 * the flash's base. */
extern const struct bus_device_ops cfi_flash_ops;

/* Whether data holds an EFI firmware volume: a header with the "_FVH" signature (at +40), a
 * plausible header length, a zero 16-bit checksum over the header and a volume length that
 * fits, at offset 0 or at a later 4 KiB boundary (where flash images place them). For
 * configuration checks that a firmware image is one. */
bool cfi_flash_image_is_firmware_volume(const uint8_t *data, size_t len);

#endif
