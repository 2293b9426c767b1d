/* A struct block_backend over a buffer in memory, for device tests: it counts calls, can
 * be told to fail, and records whether a device ever broke the back-end contract
 * (block/backend.h: sector-aligned ranges within the disk, nothing written when
 * read-only). */
#ifndef VMK_TESTS_MEM_BACKEND_H
#define VMK_TESTS_MEM_BACKEND_H

#include "block/backend.h"

#include <stdbool.h>
#include <stdint.h>

struct mem_backend {
    struct block_backend be;
    uint8_t *data; /* NULL for a disk too big to hold: every read and write then fails */
    unsigned reads, writes, flushes;
    bool fail_read, fail_write, fail_flush; /* -EIO from those calls */
    bool broken;                            /* a call broke the contract */
};

/* A zeroed disk of size bytes (data kept when size <= 64 MiB). Returns 0 or -ENOMEM. */
int mem_backend_init(struct mem_backend *m, uint64_t size, uint32_t block_size, bool read_only);
void mem_backend_fini(struct mem_backend *m);

#endif
