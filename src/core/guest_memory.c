#include "core/guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_memory_init(struct guest_memory *gm, uint64_t size)
{
    return guest_memory_init_split(gm, size, GM_LOW_RAM_LIMIT);
}

int guest_memory_init_split(struct guest_memory *gm, uint64_t size, uint64_t low_limit)
{
    guest_memory_init_empty(gm);
    if (size == 0 || (size & 0xfff) || low_limit == 0 || (low_limit & 0xfff) ||
        low_limit > GM_HIGH_RAM_BASE)
        return -EINVAL;
    int fd = memfd_create("vmkit-guest-ram", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* Guest RAM is large and mostly cold: keep it out of core dumps. */
    madvise(p, size, MADV_DONTDUMP);
    gm->memfd = fd;
    gm->base = p;
    gm->size = size;
    uint64_t low = size < low_limit ? size : low_limit;
    gm->regions[0] = (struct guest_region){ .gpa = 0, .size = low, .host = gm->base };
    gm->nregions = 1;
    if (size > low) {
        gm->regions[1] = (struct guest_region){ .gpa = GM_HIGH_RAM_BASE,
                                                .size = size - low,
                                                .host = gm->base + low };
        gm->nregions = 2;
    }
    return 0;
}

void guest_memory_init_empty(struct guest_memory *gm)
{
    memset(gm, 0, sizeof(*gm));
    gm->memfd = -1;
}

int gm_add_region(struct guest_memory *gm, uint64_t gpa, uint64_t size, void *host)
{
    if (size == 0 || gpa + size < gpa || !host)
        return -EINVAL;
    if (gm->nregions == GM_MAX_REGIONS)
        return -ENOSPC;
    for (unsigned i = 0; i < gm->nregions; i++) {
        const struct guest_region *r = &gm->regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size)
            return -EEXIST;
    }
    gm->regions[gm->nregions++] = (struct guest_region){ .gpa = gpa, .size = size, .host = host };
    return 0;
}

void guest_memory_destroy(struct guest_memory *gm)
{
    if (gm->base)
        munmap(gm->base, gm->size);
    if (gm->memfd >= 0)
        close(gm->memfd);
    guest_memory_init_empty(gm);
}

void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < gm->nregions; i++) {
        const struct guest_region *r = &gm->regions[i];
        if (gpa < r->gpa)
            continue;
        uint64_t off = gpa - r->gpa;
        /* Written so that no sum can overflow. */
        if (off >= r->size || len > r->size - off)
            continue;
        return r->host + off;
    }
    return NULL;
}

int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len)
{
    void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(p, src, len);
    return 0;
}

int gm_read(const struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len)
{
    const void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(dst, p, len);
    return 0;
}

int gm_discard(const struct guest_memory *gm, void *host, uint64_t len)
{
    uint8_t *p = host;
    if (len == 0 || ((uintptr_t)p | len) & 0xfff)
        return -EINVAL;
    bool inside = false;
    for (unsigned i = 0; i < gm->nregions && !inside; i++) {
        const struct guest_region *r = &gm->regions[i];
        inside = p >= r->host && (uint64_t)(p - r->host) < r->size &&
                 len <= r->size - (uint64_t)(p - r->host);
    }
    if (!inside)
        return -EINVAL;
    int rc;
    if (gm->memfd >= 0 && gm->base && p >= gm->base && (uint64_t)(p - gm->base) < gm->size)
        rc = fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(p - gm->base),
                       (off_t)len);
    else
        rc = madvise(p, len, MADV_REMOVE);
    return rc < 0 ? -errno : 0;
}

uint64_t gm_low_ram_end(const struct guest_memory *gm)
{
    return gm->nregions ? gm->regions[0].size : 0;
}
