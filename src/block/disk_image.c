/* Disk images: a raw file or block device behind struct block_backend. The guest's
 * iovecs go straight to preadv/pwritev; only O_DIRECT requests with unaligned buffers
 * are copied (through a bounded, aligned bounce buffer). */
#include "block/disk_image.h"
#include "core/file_lock.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOUNCE_CHUNK (1u << 20) /* largest copy buffer one request allocates */
#define ZERO_CHUNK   (64u << 10)

struct disk_image {
    struct block_backend be;
    int fd;        /* O_DIRECT when direct, else the only descriptor */
    int cached_fd; /* direct only: the same file through the page cache, for unaligned I/O */
    bool direct;
    bool is_blkdev;
    uint32_t align; /* O_DIRECT alignment of offsets, lengths and buffers */
    vmk_disk_sync_mode sync;
    char *path;
};

/* Moves *iov / *cnt past done bytes (a short transfer). */
static void iov_advance(struct iovec **iov, int *cnt, size_t done)
{
    while (*cnt > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
    if (*cnt > 0 && done) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Transfers every byte of iov at off, retrying short transfers and EINTR. */
static int rw_full(int fd, bool write, uint64_t off, const struct iovec *src, int cnt)
{
    if (cnt <= 0)
        return 0;
    if (cnt > IOV_MAX)
        return -EINVAL;
    struct iovec copy[IOV_MAX];
    memcpy(copy, src, sizeof(*src) * (size_t)cnt);
    struct iovec *iov = copy;
    while (cnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            cnt--;
            continue;
        }
        ssize_t n = write ? pwritev(fd, iov, cnt, (off_t)off) : preadv(fd, iov, cnt, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file shrank under us */
        off += (uint64_t)n;
        iov_advance(&iov, &cnt, (size_t)n);
    }
    return 0;
}

static bool iov_aligned(const struct iovec *iov, int cnt, uint32_t align)
{
    for (int i = 0; i < cnt; i++) {
        if ((uintptr_t)iov[i].iov_base % align || iov[i].iov_len % align)
            return false;
    }
    return true;
}

/* O_DIRECT with buffers it cannot take: through an aligned buffer, a chunk at a time. */
static int rw_bounce(struct disk_image *img, bool write, uint64_t off, const struct iovec *iov,
                     int cnt)
{
    size_t total = iov_total(iov, cnt);
    size_t cap = total < BOUNCE_CHUNK ? total : BOUNCE_CHUNK;
    void *buf = NULL;
    if (posix_memalign(&buf, img->align < 4096 ? 4096 : img->align, cap ? cap : 1) != 0)
        return -ENOMEM;
    int r = 0;
    size_t done = 0;
    int i = 0;
    size_t in_iov = 0; /* bytes of iov[i] already handled */
    while (done < total && r == 0) {
        size_t n = total - done < cap ? total - done : cap;
        struct iovec b = { .iov_base = buf, .iov_len = n };
        if (!write && (r = rw_full(img->fd, false, off + done, &b, 1)) < 0)
            break;
        /* Copy between the chunk and the guest's buffers. */
        for (size_t k = 0; k < n;) {
            size_t m = iov[i].iov_len - in_iov;
            if (m > n - k)
                m = n - k;
            uint8_t *g = (uint8_t *)iov[i].iov_base + in_iov;
            if (write)
                memcpy((uint8_t *)buf + k, g, m);
            else
                memcpy(g, (uint8_t *)buf + k, m);
            k += m;
            in_iov += m;
            if (in_iov == iov[i].iov_len) {
                i++;
                in_iov = 0;
            }
        }
        if (write)
            r = rw_full(img->fd, true, off + done, &b, 1);
        done += n;
    }
    free(buf);
    return r;
}

static int do_rw(struct disk_image *img, bool write, uint64_t off, const struct iovec *iov, int cnt)
{
    if (write && img->be.read_only)
        return -EROFS;
    if (!img->direct)
        return rw_full(img->fd, write, off, iov, cnt);
    size_t total = iov_total(iov, cnt);
    if (off % img->align || total % img->align)
        return rw_full(img->cached_fd, write, off, iov, cnt);
    if (!iov_aligned(iov, cnt, img->align))
        return rw_bounce(img, write, off, iov, cnt);
    return rw_full(img->fd, write, off, iov, cnt);
}

static int di_read(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    return do_rw(ctx, false, off, iov, cnt);
}

static int di_write(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    return do_rw(ctx, true, off, iov, cnt);
}

static int di_flush(void *ctx)
{
    struct disk_image *img = ctx;
    if (img->be.read_only)
        return 0;
    int r = 0;
    switch (img->sync) {
    case VMK_DISK_SYNC_FULL: r = fdatasync(img->fd); break;
    case VMK_DISK_SYNC_FSYNC: r = fsync(img->fd); break;
    case VMK_DISK_SYNC_NONE: break;
    }
    return r < 0 ? -errno : 0;
}

static int fallocate_retry(int fd, int mode, uint64_t off, uint64_t len)
{
    int r;
    do
        r = fallocate(fd, mode, (off_t)off, (off_t)len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

/* "Not supported here" in its various spellings. */
static bool unsupported(int r)
{
    return r == -EOPNOTSUPP || r == -ENOTTY || r == -EINVAL || r == -ENOSYS;
}

static int di_discard(void *ctx, uint64_t off, uint64_t len)
{
    struct disk_image *img = ctx;
    if (img->be.read_only)
        return -EROFS;
    int r;
    if (img->is_blkdev) {
        uint64_t range[2] = { off, len };
        r = ioctl(img->fd, BLKDISCARD, range) < 0 ? -errno : 0;
    } else {
        r = fallocate_retry(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    }
    /* Discard is a hint: a host that cannot deallocate has still done what was asked. */
    return unsupported(r) ? 0 : r;
}

static int write_zero_bytes(struct disk_image *img, uint64_t off, uint64_t len)
{
    size_t cap = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
    void *z = NULL;
    if (posix_memalign(&z, 4096, cap ? cap : 1) != 0)
        return -ENOMEM;
    memset(z, 0, cap ? cap : 1);
    int r = 0;
    while (len && r == 0) {
        size_t n = len < cap ? (size_t)len : cap;
        struct iovec v = { .iov_base = z, .iov_len = n };
        r = do_rw(img, true, off, &v, 1);
        off += n;
        len -= n;
    }
    free(z);
    return r;
}

static int di_write_zeroes(void *ctx, uint64_t off, uint64_t len, bool may_unmap)
{
    struct disk_image *img = ctx;
    if (img->be.read_only)
        return -EROFS;
    int r = -EOPNOTSUPP;
    if (may_unmap)
        r = fallocate_retry(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    if (r != 0 && unsupported(r))
        r = fallocate_retry(img->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
    if (r != 0 && unsupported(r) && img->is_blkdev) {
        uint64_t range[2] = { off, len };
        r = ioctl(img->fd, BLKZEROOUT, range) < 0 ? -errno : 0;
    }
    if (r != 0 && unsupported(r))
        r = write_zero_bytes(img, off, len);
    return r;
}

bool disk_image_same(const struct disk_image_info *a, const struct disk_image_info *b)
{
    if (a->is_blkdev || b->is_blkdev)
        return a->is_blkdev && b->is_blkdev && a->rdev == b->rdev;
    return a->dev == b->dev && a->ino == b->ino;
}

vmk_result disk_image_probe(const char *path, bool read_only, struct disk_image_info *info,
                            int *fd_out, vmk_error **err)
{
    *fd_out = -1;
    if (!path || !*path)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "disk image: no path");
    vmk_result r;
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int rfd = read_only || e == ENOENT ? -1 : open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            close(rfd);
            return vmk_fail(err, VMK_ERR_IO, e,
                            "disk image %s: not writable (%s); attach it read-only", path,
                            strerror(e));
        }
        if (e == ENOENT)
            return vmk_fail(err, VMK_ERR_IO, e, "disk image %s: does not exist", path);
        return vmk_fail(err, VMK_ERR_IO, e, "disk image %s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "disk image %s: cannot stat: %s", path,
                     strerror(errno));
        goto fail;
    }
    *info = (struct disk_image_info){
        .size = (uint64_t)st.st_size,
        .block_size = BLOCK_SECTOR_SIZE,
        .align = st.st_blksize >= 512 && st.st_blksize <= 4096 ? (uint32_t)st.st_blksize : 4096,
        .dev = st.st_dev,
        .ino = st.st_ino,
        .rdev = st.st_rdev,
    };
    if (S_ISBLK(st.st_mode)) {
        int lbs = 0;
        info->is_blkdev = true;
        if (ioctl(fd, BLKGETSIZE64, &info->size) != 0 || ioctl(fd, BLKSSZGET, &lbs) != 0) {
            r = vmk_fail(err, VMK_ERR_IO, errno, "disk image %s: cannot query the block device: %s",
                         path, strerror(errno));
            goto fail;
        }
        info->block_size = lbs == 4096 ? 4096 : BLOCK_SECTOR_SIZE;
        info->align = lbs >= 512 && lbs <= 4096 ? (uint32_t)lbs : 4096;
    } else if (!S_ISREG(st.st_mode)) {
        r = vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                     "disk image %s: not a regular file or block device", path);
        goto fail;
    }
    if (info->size % BLOCK_SECTOR_SIZE || info->size % info->block_size) {
        r = vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                     "disk image %s: size %llu bytes is not a multiple of %u", path,
                     (unsigned long long)info->size, info->block_size);
        goto fail;
    }
    *fd_out = fd;
    return VMK_OK;
fail:
    close(fd);
    return r;
}

vmk_result disk_image_open(const char *path, bool read_only, vmk_disk_caching_mode caching,
                           vmk_disk_sync_mode sync, struct disk_image **out, vmk_error **err)
{
    *out = NULL;
    struct disk_image_info info = { 0 };
    struct disk_image *img = calloc(1, sizeof(*img));
    if (!img || !(img->path = strdup(path ? path : ""))) {
        free(img);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "disk image %s: out of memory",
                        path ? path : "");
    }
    img->cached_fd = -1;
    img->sync = sync;
    vmk_result r = disk_image_probe(path, read_only, &info, &img->fd, err);
    if (r != VMK_OK)
        goto fail;
    if ((r = file_lock(img->fd, "disk image", path, read_only, "a VM or a vhost-user server",
                       err)) != VMK_OK)
        goto fail;
    img->is_blkdev = info.is_blkdev;
    img->align = info.align;
    if (caching == VMK_DISK_CACHING_UNCACHED) {
        /* The same open file, not the path: a new description of the inode we locked. The
         * cached descriptor stays for requests O_DIRECT refuses; a file system without
         * O_DIRECT (tmpfs) leaves the image cached. */
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", img->fd);
        int dfd = open(self, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_DIRECT);
        if (dfd >= 0) {
            img->cached_fd = img->fd;
            img->fd = dfd;
            img->direct = true;
        } else if (errno != EINVAL) {
            r = vmk_fail(err, VMK_ERR_IO, errno, "disk image %s: cannot open uncached: %s", path,
                         strerror(errno));
            goto fail;
        }
    }
    img->be = (struct block_backend){
        .size = info.size,
        .block_size = info.block_size,
        .read_only = read_only,
        .can_discard = !read_only,
        .can_write_zeroes = !read_only,
        .read = di_read,
        .write = di_write,
        .flush = di_flush,
        .discard = di_discard,
        .write_zeroes = di_write_zeroes,
        .ctx = img,
    };
    *out = img;
    return VMK_OK;
fail:
    disk_image_close(img);
    return r;
}

const struct block_backend *disk_image_backend(const struct disk_image *img)
{
    return &img->be;
}

bool disk_image_is_direct(const struct disk_image *img)
{
    return img->direct;
}

void disk_image_close(struct disk_image *img)
{
    if (!img)
        return;
    if (img->fd >= 0)
        close(img->fd);
    if (img->cached_fd >= 0)
        close(img->cached_fd);
    free(img->path);
    free(img);
}
