/* The block back-end interface: what a storage device (virtio-blk today; NVMe, USB mass
 * storage later) sees of its disk, whatever holds it — a raw image (disk_image.c), a test's
 * memory buffer, later qcow2 or a network disk. */
#ifndef VMK_BLOCK_BACKEND_H
#define VMK_BLOCK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SECTOR_SIZE 512u

/* Every call may come from any worker thread at once, so an implementation keeps no
 * per-call state in ctx without a lock. Offsets and lengths are in bytes, multiples of
 * BLOCK_SECTOR_SIZE, within size (the device checks). Each call returns 0 when all of it was
 * done, or -errno. */
struct block_backend {
    uint64_t size;       /* bytes, a multiple of BLOCK_SECTOR_SIZE */
    uint32_t block_size; /* logical block size the guest should use: 512 or 4096 */
    bool read_only;
    bool can_discard;
    bool can_write_zeroes;
    int (*read)(void *ctx, uint64_t offset, const struct iovec *iov, int iovcnt);
    int (*write)(void *ctx, uint64_t offset, const struct iovec *iov, int iovcnt);
    int (*flush)(void *ctx);
    /* May deallocate; reading the range afterwards may return old data or zeroes. */
    int (*discard)(void *ctx, uint64_t offset, uint64_t len);
    /* Afterwards the range reads as zeroes; may_unmap allows deallocating it. */
    int (*write_zeroes)(void *ctx, uint64_t offset, uint64_t len, bool may_unmap);
    void *ctx;
};

#endif
