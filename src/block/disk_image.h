/* Raw disk images — a regular file or a block device — behind struct block_backend, with
 * preadv/pwritev straight between the file and guest RAM. One probe serves both
 * vmk_config_validate and the start, so the two never disagree on what a usable image is.
 * A start opens the file once, takes an advisory lock on it (shared for read-only,
 * exclusive for read-write, as QEMU does, so two VMMs never write one image), and for
 * UNCACHED reopens that same file with O_DIRECT through /proc/self/fd (never the path,
 * which may name another file by then). Requests O_DIRECT cannot take go through an
 * aligned bounce buffer (unaligned memory) or the cached descriptor (unaligned offsets). */
#ifndef VMK_BLOCK_DISK_IMAGE_H
#define VMK_BLOCK_DISK_IMAGE_H

#include "block/backend.h"
#include "vmkit.h"

#include <stdbool.h>
#include <sys/types.h>

/* What the probe found. */
struct disk_image_info {
    bool is_blkdev;
    uint64_t size;       /* bytes */
    uint32_t block_size; /* logical: 512 for a file, BLKSSZGET (512 or 4096) for a device */
    uint32_t align;      /* what O_DIRECT needs of offsets, lengths and buffers */
    dev_t dev;           /* identity: a file's (st_dev, st_ino), a device's st_rdev */
    ino_t ino;
    dev_t rdev;
};

/* Whether a and b are the same image (one file, or one block device). */
bool disk_image_same(const struct disk_image_info *a, const struct disk_image_info *b);

/* Opens path for reading (and writing unless read_only) and checks it: a regular file or a
 * block device whose size is a multiple of 512 and of its logical block size. On VMK_OK,
 * *fd is the open descriptor (O_CLOEXEC; the caller's to close) and *info is filled.
 * Failures: VMK_ERR_IO (cannot open; the message says "attach it read-only" when only
 * writing is refused), VMK_ERR_INVALID_CONFIG (no path, the kind of file, its size).
 * Messages start with "disk image PATH: ". */
vmk_result disk_image_probe(const char *path, bool read_only, struct disk_image_info *info, int *fd,
                            vmk_error **err) __attribute__((warn_unused_result));

struct disk_image;

/* Probes path, locks it and makes the backend. A lock held by another open of the image (in
 * this process or another) fails with VMK_ERR_IO naming the image and the lock. */
vmk_result disk_image_open(const char *path, bool read_only, vmk_disk_caching_mode caching,
                           vmk_disk_sync_mode sync, struct disk_image **out, vmk_error **err)
    __attribute__((warn_unused_result));
/* The backend to hand to a device; valid until disk_image_close. */
const struct block_backend *disk_image_backend(const struct disk_image *img);
/* Whether the image was opened with O_DIRECT (UNCACHED, when the file system allows). */
bool disk_image_is_direct(const struct disk_image *img);
/* Closes the image (and drops its lock); the device using its backend must be gone. NULL
 * does nothing. */
void disk_image_close(struct disk_image *img);

#endif
