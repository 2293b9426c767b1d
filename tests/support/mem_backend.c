/* A block back end in memory (see mem_backend.h). */
#include "mem_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_HELD (64u << 20)

static uint64_t iov_sum(const struct iovec *iov, int cnt)
{
    uint64_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

static bool range_ok(struct mem_backend *m, uint64_t off, uint64_t len)
{
    bool ok = len > 0 && off % BLOCK_SECTOR_SIZE == 0 && len % BLOCK_SECTOR_SIZE == 0 &&
              off <= m->be.size && len <= m->be.size - off;
    if (!ok)
        m->broken = true;
    return ok;
}

static int mem_rw(struct mem_backend *m, bool write, uint64_t off, const struct iovec *iov, int cnt)
{
    if (cnt < 1 || !range_ok(m, off, iov_sum(iov, cnt)))
        return -EINVAL;
    if (write && m->be.read_only) {
        m->broken = true;
        return -EROFS;
    }
    if (write ? m->fail_write : m->fail_read)
        return -EIO;
    if (!m->data)
        return -EIO;
    for (int i = 0; i < cnt; i++) {
        if (!iov[i].iov_len)
            continue;
        if (write)
            memcpy(m->data + off, iov[i].iov_base, iov[i].iov_len);
        else
            memcpy(iov[i].iov_base, m->data + off, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return 0;
}

static int mem_read(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    struct mem_backend *m = ctx;
    m->reads++;
    return mem_rw(m, false, off, iov, cnt);
}

static int mem_write(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    struct mem_backend *m = ctx;
    m->writes++;
    return mem_rw(m, true, off, iov, cnt);
}

static int mem_flush(void *ctx)
{
    struct mem_backend *m = ctx;
    m->flushes++;
    return m->fail_flush ? -EIO : 0;
}

int mem_backend_init(struct mem_backend *m, uint64_t size, uint32_t block_size, bool read_only)
{
    memset(m, 0, sizeof(*m));
    if (size <= MAX_HELD && !(m->data = calloc(1, size ? size : 1)))
        return -ENOMEM;
    m->be = (struct block_backend){
        .size = size,
        .block_size = block_size,
        .read_only = read_only,
        .read = mem_read,
        .write = mem_write,
        .flush = mem_flush,
        .ctx = m,
    };
    return 0;
}

void mem_backend_fini(struct mem_backend *m)
{
    free(m->data);
    m->data = NULL;
}
