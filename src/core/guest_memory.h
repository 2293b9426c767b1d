/* Guest RAM as device code sees it: a few regions of guest-physical address space,
 * each mapped in this process. vmkit's own RAM is one memfd presented as one or two
 * regions (below the 32-bit PCI hole, and from 4 GiB up); a vhost-user back end
 * builds the table from the front end's memory regions instead. Every access from
 * device or loader code goes through gm_ptr(), which checks the whole range. */
#ifndef VMK_CORE_GUEST_MEMORY_H
#define VMK_CORE_GUEST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/* RAM below this guest-physical address; the rest starts at 4 GiB. */
#define GM_LOW_RAM_LIMIT 0xC0000000ULL
#define GM_HIGH_RAM_BASE 0x100000000ULL
#define GM_MAX_REGIONS   8 /* vhost-user: the baseline region count */

struct guest_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct guest_memory {
    struct guest_region regions[GM_MAX_REGIONS];
    unsigned nregions;
    int memfd;     /* -1 when the regions are not ours */
    uint8_t *base; /* our whole mapping (regions[0].host == base), or NULL */
    uint64_t size; /* bytes of our mapping */
};

/* Adds a region; 0, -EEXIST when it overlaps one already there, -ENOSPC when the
 * table is full, -EINVAL for an empty or wrapping range. */
int gm_add_region(struct guest_memory *gm, uint64_t gpa, uint64_t size, void *host)
    __attribute__((warn_unused_result));
/* An empty table (no RAM of its own), to fill with gm_add_region. */
void guest_memory_init_empty(struct guest_memory *gm);

/* Creates RAM of size bytes (a multiple of 4 KiB). Returns 0 or -errno. */
int guest_memory_init(struct guest_memory *gm, uint64_t size) __attribute__((warn_unused_result));
/* The same with RAM below low_limit (page-aligned, at most 4 GiB) instead of GM_LOW_RAM_LIMIT:
 * a platform whose 32-bit hole starts lower (the EFI machine's, where OVMF wants ECAM).
 * -EINVAL for a bad size or limit. */
int guest_memory_init_split(struct guest_memory *gm, uint64_t size, uint64_t low_limit)
    __attribute__((warn_unused_result));
void guest_memory_destroy(struct guest_memory *gm);

/* Host pointer for [gpa, gpa + len) when the whole range is RAM inside one region,
 * else NULL. len 0 is allowed (a valid gpa is still required). */
void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len);
/* Copy in or out; 0 or -EFAULT. */
int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len)
    __attribute__((warn_unused_result));
int gm_read(const struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len)
    __attribute__((warn_unused_result));
/* Gives the host back the memory behind [host, host + len), a page-aligned range gm_ptr
 * returned: the guest reads zeroes there next. Our own RAM is a memfd, where only a hole
 * punched in the file frees anything (MADV_DONTNEED on a shared mapping keeps the pages);
 * a front end's shared regions get MADV_REMOVE, the same for shmem. 0, -EINVAL (unaligned,
 * or not guest RAM), or -errno. */
int gm_discard(const struct guest_memory *gm, void *host, uint64_t len)
    __attribute__((warn_unused_result));
/* End of the RAM region that starts at 0 (the "low" RAM). */
uint64_t gm_low_ram_end(const struct guest_memory *gm);

#endif
