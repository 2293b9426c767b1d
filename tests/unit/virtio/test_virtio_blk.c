/* virtio-blk against the fake driver and transport of tests/support, over a disk
 * image in a temporary file. Each test checks what a driver sees (status byte, used
 * length) and what lands in the file. */
#include "block/disk_image.h"
#include "virtio/blk.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define IMG_SIZE   (4u << 20)
#define QSIZE      VIRTIO_BLK_QUEUE_SIZE
#define TIMEOUT_MS 5000

/* A backend wrapping the disk image: counts flushes, and can hold reads at a gate to
 * keep requests in flight. */
struct gate_backend {
    struct block_backend be;
    const struct block_backend *inner;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool gate_closed;
    unsigned waiting; /* reads held at the gate */
    unsigned flushes;
};

struct tdev {
    char dir[64];
    char img[128];
    struct test_driver td;
    struct disk_image *disk;
    struct gate_backend gb;
    struct virtio_device *d;
};

/* ---- gate backend ---- */

static int gb_read(void *ctx, uint64_t off, const struct iovec *iov, int n)
{
    struct gate_backend *g = ctx;
    pthread_mutex_lock(&g->lock);
    __atomic_add_fetch(&g->waiting, 1, __ATOMIC_SEQ_CST);
    while (g->gate_closed)
        pthread_cond_wait(&g->cv, &g->lock);
    __atomic_sub_fetch(&g->waiting, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&g->lock);
    return g->inner->read(g->inner->ctx, off, iov, n);
}

static int gb_write(void *ctx, uint64_t off, const struct iovec *iov, int n)
{
    struct gate_backend *g = ctx;
    return g->inner->write(g->inner->ctx, off, iov, n);
}

static int gb_flush(void *ctx)
{
    struct gate_backend *g = ctx;
    __atomic_add_fetch(&g->flushes, 1, __ATOMIC_SEQ_CST);
    return g->inner->flush(g->inner->ctx);
}

static int gb_discard(void *ctx, uint64_t off, uint64_t len)
{
    struct gate_backend *g = ctx;
    return g->inner->discard(g->inner->ctx, off, len);
}

static int gb_write_zeroes(void *ctx, uint64_t off, uint64_t len, bool unmap)
{
    struct gate_backend *g = ctx;
    return g->inner->write_zeroes(g->inner->ctx, off, len, unmap);
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)

static void set_gate(struct tdev *t, bool closed)
{
    pthread_mutex_lock(&t->gb.lock);
    t->gb.gate_closed = closed;
    pthread_cond_broadcast(&t->gb.cv);
    pthread_mutex_unlock(&t->gb.lock);
}

/* ---- the driver side ---- */

static void *gpa(struct tdev *t, uint64_t addr, uint64_t len)
{
    void *p = td_ptr(&t->td, addr, len);
    assert_non_null(p);
    return p;
}

static uint64_t alloc_buf(struct tdev *t, uint32_t len)
{
    assert_true(t->td.next_data + len <= TD_RAM_SIZE);
    return td_alloc(&t->td, len);
}

static unsigned resets(struct tdev *t)
{
    return td_resets(&t->td, NULL);
}

struct req {
    uint64_t hdr, data, status;
    uint16_t head;
};

static uint64_t write_hdr(struct tdev *t, uint32_t type, uint64_t sector)
{
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } h = { htole32(type), 0, htole64(sector) };
    uint64_t at = alloc_buf(t, sizeof(h));
    memcpy(gpa(t, at, sizeof(h)), &h, sizeof(h));
    return at;
}

/* header, optional data (len bytes, device-writable for IN and GET_ID), status. */
static struct req blk_req(struct tdev *t, unsigned q, uint32_t type, uint64_t sector, uint32_t len)
{
    struct req r = { 0 };
    r.hdr = write_hdr(t, type, sector);
    r.status = alloc_buf(t, 1);
    *(uint8_t *)gpa(t, r.status, 1) = 0xff;
    struct td_buf s[3];
    unsigned n = 0;
    s[n++] = (struct td_buf){ r.hdr, 16, false };
    if (len) {
        r.data = alloc_buf(t, len);
        s[n++] =
            (struct td_buf){ r.data, len, type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID };
    }
    s[n++] = (struct td_buf){ r.status, 1, true };
    r.head = td_add(&t->td, q, s, n);
    return r;
}

static uint8_t status_of(struct tdev *t, const struct req *r)
{
    return *(volatile uint8_t *)gpa(t, r->status, 1);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Waits until queue q has used `count` entries in all. */
static void wait_used(struct tdev *t, unsigned q, uint16_t count)
{
    if (!td_wait_used_idx(&t->td, q, count, TIMEOUT_MS))
        fail_msg("queue %u: %u used, expected %u", q, td_used_idx(&t->td, q), count);
}

/* Kicks, waits for one completion, returns its status; *len gets the used length. */
static uint8_t run1(struct tdev *t, unsigned q, const struct req *r, uint32_t *len)
{
    uint16_t before = td_used_idx(&t->td, q);
    td_kick(&t->td, q);
    wait_used(t, q, (uint16_t)(before + 1));
    uint32_t id;
    td_used_entry(&t->td, q, before, &id, len);
    assert_int_equal(id, r->head);
    return status_of(t, r);
}

/* ---- fixture ---- */

static void make_device(struct tdev *t, bool read_only, unsigned nq, vmk_disk_sync_mode sync)
{
    vmk_error *err = NULL;
    if (disk_image_open(t->img, read_only, VMK_DISK_CACHING_CACHED, sync, &t->disk, &err) != VMK_OK)
        fail_msg("%s", vmk_error_message(err));
    t->gb.inner = disk_image_backend(t->disk);
    t->gb.be = *t->gb.inner;
    t->gb.be.read = gb_read;
    t->gb.be.write = gb_write;
    t->gb.be.flush = gb_flush;
    t->gb.be.discard = gb_discard;
    t->gb.be.write_zeroes = gb_write_zeroes;
    t->gb.be.ctx = &t->gb;
    t->d = virtio_blk_new(&t->gb.be, "vmkit-disk-0", nq, &err);
    if (!t->d)
        fail_msg("%s", vmk_error_message(err));
    uint64_t accept =
        ~(VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC));
    assert_int_equal(td_init_sized(&t->td, t->d, accept, QSIZE), 0);
    assert_int_equal(t->td.q[nq - 1].size, QSIZE);
}

static int setup(void **state)
{
    struct tdev *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    strcpy(t->dir, "/var/tmp/vmkit-test-blk-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->img, sizeof(t->img), "%s/disk.img", t->dir);
    int fd = open(t->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, IMG_SIZE) != 0)
        return -1;
    close(fd);
    pthread_mutex_init(&t->gb.lock, NULL);
    pthread_cond_init(&t->gb.cv, NULL);
    *state = t;
    return 0;
}

/* td_fini resets the device, which waits for every request in flight, so no worker
 * touches guest RAM once it is freed. */
static int teardown(void **state)
{
    struct tdev *t = *state;
    set_gate(t, false);
    td_fini(&t->td);
    if (t->d)
        t->d->ops->destroy(t->d);
    disk_image_close(t->disk);
    unlink(t->img);
    rmdir(t->dir);
    pthread_mutex_destroy(&t->gb.lock);
    pthread_cond_destroy(&t->gb.cv);
    free(t);
    return 0;
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void file_fill(const char *path, uint8_t v)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(IMG_SIZE);
    memset(buf, v, IMG_SIZE);
    assert_int_equal(pwrite(fd, buf, IMG_SIZE, 0), (ssize_t)IMG_SIZE);
    assert_int_equal(fsync(fd), 0);
    free(buf);
    close(fd);
}

/* Extent-tree blocks count in st_blocks too: a split extent can cost the file a block
 * of metadata, so allocation checks allow this much slack. */
#define META_SLACK (64u << 10)

static uint64_t allocated(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 13 + seed * 101 + 1);
}

static uint32_t cfg32(struct tdev *t, uint32_t off)
{
    uint32_t v;
    t->d->ops->config_read(t->d, off, &v, 4);
    return le32toh(v);
}

/* ---- tests ---- */

static void test_features_and_config(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 3, VMK_DISK_SYNC_FULL);
    uint64_t f = t->d->device_features;
    assert_int_equal(t->d->device_id, VIRTIO_ID_BLOCK);
    assert_true(f & VIRTIO_BIT(VIRTIO_F_VERSION_1));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_MQ));
    assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
    assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE));
    assert_int_equal(t->d->num_queues, 3);
    assert_int_equal(t->d->config_size, VIRTIO_BLK_CFG_SIZE);

    uint64_t cap;
    t->d->ops->config_read(t->d, VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
    assert_int_equal(le64toh(cap), IMG_SIZE / 512);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_SEG_MAX), QSIZE - 2);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_BLK_SIZE), 512);
    uint16_t nq;
    t->d->ops->config_read(t->d, VIRTIO_BLK_CFG_NUM_QUEUES, &nq, 2);
    assert_int_equal(le16toh(nq), 3);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS), VIRTIO_BLK_MAX_DISCARD_SECTORS);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_MAX_DISCARD_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT), 8);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS),
                     VIRTIO_BLK_MAX_DISCARD_SECTORS);
    assert_int_equal(cfg32(t, VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
    uint8_t unmap;
    t->d->ops->config_read(t->d, VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP, &unmap, 1);
    assert_int_equal(unmap, 1);
    /* Writes to config space change nothing. */
    uint64_t junk = 0;
    t->d->ops->config_write(t->d, VIRTIO_BLK_CFG_CAPACITY, &junk, 8);
    t->d->ops->config_read(t->d, VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
    assert_int_equal(le64toh(cap), IMG_SIZE / 512);
}

static void test_constructor_rejects_bad_arguments(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    const unsigned bad_q[] = { 0, VIRTIO_BLK_MAX_QUEUES + 1 };
    for (unsigned i = 0; i < 2; i++) {
        vmk_error *err = NULL;
        assert_null(virtio_blk_new(&t->gb.be, NULL, bad_q[i], &err));
        assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(vmk_error_message(err), "queues"));
        vmk_error_free(err);
    }
    vmk_error *err = NULL;
    assert_null(virtio_blk_new(&t->gb.be, "123456789012345678901", 1, &err));
    assert_non_null(strstr(vmk_error_message(err), "identifier"));
    vmk_error_free(err);
    err = NULL;
    assert_null(virtio_blk_new(NULL, NULL, 1, &err));
    vmk_error_free(err);
    struct block_backend odd = t->gb.be;
    odd.size = 1000;
    err = NULL;
    assert_null(virtio_blk_new(&odd, NULL, 1, &err));
    vmk_error_free(err);
    /* 16 queues is the most, and works. */
    struct virtio_device *d = virtio_blk_new(&t->gb.be, NULL, VIRTIO_BLK_MAX_QUEUES, NULL);
    assert_non_null(d);
    d->ops->destroy(d);
}

static void test_write_read_round_trip(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    /* A write of 3 sectors split over 3 descriptors of 512, 1024 and 0 bytes. */
    uint64_t hdr = write_hdr(t, VIRTIO_BLK_T_OUT, 10);
    uint64_t d1 = alloc_buf(t, 512), d2 = alloc_buf(t, 1024), st = alloc_buf(t, 1);
    uint8_t data[1536];
    pattern(data, sizeof(data), 1);
    memcpy(gpa(t, d1, 512), data, 512);
    memcpy(gpa(t, d2, 1024), data + 512, 1024);
    struct td_buf s[] = { { hdr, 16, false },
                          { d1, 512, false },
                          { d2, 1024, false },
                          { d2, 0, false },
                          { st, 1, true } };
    struct req w = { .hdr = hdr, .status = st, .head = td_add(&t->td, 0, s, 5) };
    uint32_t len;
    assert_int_equal(run1(t, 0, &w, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 1);
    uint8_t file[1536];
    file_read(t->img, 10 * 512, file, sizeof(file));
    assert_memory_equal(file, data, sizeof(file));

    /* Read it back into one buffer, and into two uneven ones. */
    struct req r = blk_req(t, 0, VIRTIO_BLK_T_IN, 10, 1536);
    assert_int_equal(run1(t, 0, &r, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 1536 + 1);
    assert_memory_equal(gpa(t, r.data, 1536), data, 1536);

    hdr = write_hdr(t, VIRTIO_BLK_T_IN, 10);
    d1 = alloc_buf(t, 100);
    d2 = alloc_buf(t, 1436);
    st = alloc_buf(t, 1);
    struct td_buf s2[] = {
        { hdr, 16, false }, { d1, 100, true }, { d2, 1436, true }, { st, 1, true }
    };
    struct req r2 = { .hdr = hdr, .status = st, .head = td_add(&t->td, 0, s2, 4) };
    assert_int_equal(run1(t, 0, &r2, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 1537);
    assert_memory_equal(gpa(t, d1, 100), data, 100);
    assert_memory_equal(gpa(t, d2, 1436), data + 100, 1436);
    /* A header split over two descriptors is fine too. */
    hdr = write_hdr(t, VIRTIO_BLK_T_IN, 11);
    d1 = alloc_buf(t, 512);
    st = alloc_buf(t, 1);
    struct td_buf s3[] = {
        { hdr, 8, false }, { hdr + 8, 8, false }, { d1, 512, true }, { st, 1, true }
    };
    struct req r3 = { .hdr = hdr, .status = st, .head = td_add(&t->td, 0, s3, 4) };
    assert_int_equal(run1(t, 0, &r3, &len), VIRTIO_BLK_S_OK);
    assert_memory_equal(gpa(t, d1, 512), data + 512, 512);
    assert_int_equal(resets(t), 0);
    assert_true(td_notified(&t->td, 0) >= 4);
}

/* What the guest flushed is in the file, seen through a descriptor of our own after
 * the page cache dropped it. */
static void test_flushed_write_is_on_disk(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    struct req w = blk_req(t, 0, VIRTIO_BLK_T_OUT, 100, 4096);
    uint8_t data[4096];
    pattern(data, sizeof(data), 7);
    memcpy(gpa(t, w.data, 4096), data, 4096);
    assert_int_equal(run1(t, 0, &w, NULL), VIRTIO_BLK_S_OK);
    struct req fl = blk_req(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0);
    uint32_t len;
    assert_int_equal(run1(t, 0, &fl, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 1);
    assert_int_equal(LOAD(t->gb.flushes), 1);

    int fd = open(t->img, O_RDONLY);
    assert_true(fd >= 0);
    /* Clean pages can be dropped; these must be clean after the flush. */
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    uint8_t back[4096];
    assert_int_equal(pread(fd, back, sizeof(back), 100 * 512), (ssize_t)sizeof(back));
    close(fd);
    assert_memory_equal(back, data, sizeof(back));
}

static void test_get_id(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    struct req r = blk_req(t, 0, VIRTIO_BLK_T_GET_ID, 0, 20);
    memset(gpa(t, r.data, 20), 0xaa, 20);
    uint32_t len;
    assert_int_equal(run1(t, 0, &r, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 21);
    uint8_t want[20] = "vmkit-disk-0";
    assert_memory_equal(gpa(t, r.data, 20), want, 20);
    /* A shorter buffer gets what fits, and nothing past it. */
    struct req s = blk_req(t, 0, VIRTIO_BLK_T_GET_ID, 0, 5);
    memset(gpa(t, s.data, 5), 0xaa, 5);
    assert_int_equal(run1(t, 0, &s, &len), VIRTIO_BLK_S_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(gpa(t, s.data, 5), "vmkit", 5);
}

/* A DISCARD or WRITE_ZEROES request with n segments. */
static struct req seg_req(struct tdev *t, uint32_t type, const uint64_t *sector,
                          const uint32_t *num, const uint32_t *flags, unsigned n, uint32_t extra)
{
    struct req r = { 0 };
    r.hdr = write_hdr(t, type, 0);
    uint32_t bytes = 16 * n + extra;
    r.data = alloc_buf(t, bytes);
    for (unsigned i = 0; i < n; i++) {
        struct {
            uint64_t sector;
            uint32_t num, flags;
        } seg = { htole64(sector[i]), htole32(num[i]), htole32(flags[i]) };
        memcpy(gpa(t, r.data + sizeof(seg) * i, sizeof(seg)), &seg, sizeof(seg));
    }
    r.status = alloc_buf(t, 1);
    struct td_buf s[] = { { r.hdr, 16, false }, { r.data, bytes, false }, { r.status, 1, true } };
    r.head = td_add(&t->td, 0, s, 3);
    return r;
}

static uint8_t seg1(struct tdev *t, uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
    struct req r = seg_req(t, type, &sector, &num, &flags, 1, 0);
    return run1(t, 0, &r, NULL);
}

static void test_discard(void **state)
{
    struct tdev *t = *state;
    file_fill(t->img, 0x5a);
    uint64_t before = allocated(t->img);
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    /* Refused requests deallocate nothing. */
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, 0, 1024, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
                     VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, 0, 1024, 0x80), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, IMG_SIZE / 512 - 8, 16, 0), VIRTIO_BLK_S_IOERR);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, UINT64_MAX - 4, 16, 0), VIRTIO_BLK_S_IOERR);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0),
                     VIRTIO_BLK_S_IOERR);
    uint64_t sectors[VIRTIO_BLK_MAX_DISCARD_SEG + 1] = { 0 };
    uint32_t nums[VIRTIO_BLK_MAX_DISCARD_SEG + 1] = { 0 },
                                               flags[VIRTIO_BLK_MAX_DISCARD_SEG + 1] = { 0 };
    for (unsigned i = 0; i <= VIRTIO_BLK_MAX_DISCARD_SEG; i++) {
        sectors[i] = 8 * i;
        nums[i] = 8;
    }
    struct req many =
        seg_req(t, VIRTIO_BLK_T_DISCARD, sectors, nums, flags, VIRTIO_BLK_MAX_DISCARD_SEG + 1, 0);
    assert_int_equal(run1(t, 0, &many, NULL), VIRTIO_BLK_S_IOERR);
    struct req ragged = seg_req(t, VIRTIO_BLK_T_DISCARD, sectors, nums, flags, 1, 8);
    assert_int_equal(run1(t, 0, &ragged, NULL), VIRTIO_BLK_S_IOERR);
    /* One bad segment fails the request before any runs. */
    uint64_t s2[2] = { 0, IMG_SIZE / 512 };
    uint32_t n2[2] = { 1024, 8 }, f2[2] = { 0, 0 };
    struct req half = seg_req(t, VIRTIO_BLK_T_DISCARD, s2, n2, f2, 2, 0);
    assert_int_equal(run1(t, 0, &half, NULL), VIRTIO_BLK_S_IOERR);
    assert_int_equal(allocated(t->img), before);

    /* Two good segments: 512 KiB and 256 KiB. */
    uint64_t s3[2] = { 0, 2048 };
    uint32_t n3[2] = { 1024, 512 }, f3[2] = { 0, 0 };
    struct req ok = seg_req(t, VIRTIO_BLK_T_DISCARD, s3, n3, f3, 2, 0);
    assert_int_equal(run1(t, 0, &ok, NULL), VIRTIO_BLK_S_OK);
    assert_true(allocated(t->img) <= before - (768u << 10) + META_SLACK);
    struct stat st;
    assert_int_equal(stat(t->img, &st), 0);
    assert_int_equal(st.st_size, IMG_SIZE);
    assert_int_equal(resets(t), 0);
}

static void test_write_zeroes(void **state)
{
    struct tdev *t = *state;
    file_fill(t->img, 0x5a);
    uint64_t before = allocated(t->img);
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0x2), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_WRITE_ZEROES, IMG_SIZE / 512, 1, 0), VIRTIO_BLK_S_IOERR);
    uint8_t buf[8192];
    file_read(t->img, 0, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0x5a);

    assert_int_equal(seg1(t, VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0), VIRTIO_BLK_S_OK);
    assert_true(allocated(t->img) >= before); /* no unmap: still allocated */
    assert_int_equal(
        seg1(t, VIRTIO_BLK_T_WRITE_ZEROES, 1024, 1024, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
        VIRTIO_BLK_S_OK);
    assert_true(allocated(t->img) <= before - (512u << 10) + META_SLACK);
    file_read(t->img, 0, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], i >= 4096 && i < 8192 ? 0 : 0x5a);
    /* Read through the device too. */
    struct req r = blk_req(t, 0, VIRTIO_BLK_T_IN, 1024, 4096);
    assert_int_equal(run1(t, 0, &r, NULL), VIRTIO_BLK_S_OK);
    const uint8_t *g = gpa(t, r.data, 4096);
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(g[i], 0);
}

static void test_read_only(void **state)
{
    struct tdev *t = *state;
    file_fill(t->img, 0x33);
    make_device(t, true, 1, VMK_DISK_SYNC_FULL);
    uint64_t f = t->d->device_features;
    assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
    assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
    assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
    struct req w = blk_req(t, 0, VIRTIO_BLK_T_OUT, 0, 4096);
    memset(gpa(t, w.data, 4096), 0, 4096);
    uint32_t len;
    assert_int_equal(run1(t, 0, &w, &len), VIRTIO_BLK_S_IOERR);
    assert_int_equal(len, 1);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
    uint8_t buf[4096];
    file_read(t->img, 0, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0x33);
    struct req r = blk_req(t, 0, VIRTIO_BLK_T_IN, 0, 512);
    assert_int_equal(run1(t, 0, &r, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(((uint8_t *)gpa(t, r.data, 512))[511], 0x33);
    struct req fl = blk_req(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0);
    assert_int_equal(run1(t, 0, &fl, NULL), VIRTIO_BLK_S_OK);
}

static void test_out_of_range_and_overflow(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    const uint64_t cap = IMG_SIZE / 512;
    struct {
        uint32_t type;
        uint64_t sector;
        uint32_t len;
        uint8_t want;
    } cases[] = {
        { VIRTIO_BLK_T_IN, cap - 1, 512, VIRTIO_BLK_S_OK },     /* the last sector */
        { VIRTIO_BLK_T_IN, cap - 1, 1024, VIRTIO_BLK_S_IOERR }, /* one past the end */
        { VIRTIO_BLK_T_OUT, cap, 512, VIRTIO_BLK_S_IOERR },
        { VIRTIO_BLK_T_IN, cap + 1, 0, VIRTIO_BLK_S_IOERR },
        { VIRTIO_BLK_T_OUT, UINT64_MAX, 512, VIRTIO_BLK_S_IOERR },
        { VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, 512, VIRTIO_BLK_S_IOERR }, /* bytes wrap */
        { VIRTIO_BLK_T_OUT, (UINT64_MAX >> 9) - 1, 1024, VIRTIO_BLK_S_IOERR },
        { VIRTIO_BLK_T_IN, 0, 100, VIRTIO_BLK_S_IOERR }, /* not whole sectors */
        { VIRTIO_BLK_T_OUT, 0, 513, VIRTIO_BLK_S_IOERR },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct req r = blk_req(t, 0, cases[i].type, cases[i].sector, cases[i].len);
        if (cases[i].type == VIRTIO_BLK_T_OUT)
            memset(gpa(t, r.data, cases[i].len), 0x77, cases[i].len);
        uint32_t len;
        uint8_t st = run1(t, 0, &r, &len);
        if (st != cases[i].want)
            fail_msg("case %u: status %u, expected %u", i, st, cases[i].want);
        if (st != VIRTIO_BLK_S_OK)
            assert_int_equal(len, 1);
    }
    uint8_t buf[512];
    file_read(t->img, 0, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    struct stat st;
    assert_int_equal(stat(t->img, &st), 0);
    assert_int_equal(st.st_size, IMG_SIZE);
    assert_int_equal(resets(t), 0);
}

/* A chain the driver built wrong: DEVICE_NEEDS_RESET, the chain returned with
 * nothing written, the disk untouched. */
static void expect_malformed(struct tdev *t, const struct td_buf *s, unsigned n, const char *why)
{
    unsigned asked = resets(t);
    uint16_t before = td_used_idx(&t->td, 0);
    uint16_t head = td_add(&t->td, 0, s, n);
    td_kick(&t->td, 0);
    wait_used(t, 0, (uint16_t)(before + 1));
    uint32_t id, len;
    td_used_entry(&t->td, 0, before, &id, &len);
    assert_int_equal(id, head);
    assert_int_equal(len, 0);
    const char *got;
    assert_int_equal(td_resets(&t->td, &got), asked + 1);
    if (!strstr(got, why))
        fail_msg("reason '%s' lacks '%s'", got, why);
}

static void test_malformed_requests(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    uint64_t hdr = write_hdr(t, VIRTIO_BLK_T_OUT, 0);
    uint64_t data = alloc_buf(t, 512), st = alloc_buf(t, 1);
    memset(gpa(t, data, 512), 0x99, 512);
    *(uint8_t *)gpa(t, st, 1) = 0xee;
    /* Short header. */
    struct td_buf shorth[] = { { hdr, 8, false }, { st, 1, true } };
    expect_malformed(t, shorth, 2, "header");
    /* No status byte: nothing device-writable. */
    struct td_buf nostatus[] = { { hdr, 16, false }, { data, 512, false } };
    expect_malformed(t, nostatus, 2, "status");
    /* The status byte in a device-readable descriptor. */
    struct td_buf rostatus[] = { { hdr, 16, false }, { data, 512, false }, { st, 1, false } };
    expect_malformed(t, rostatus, 3, "status");
    /* A zero-length writable descriptor is no status byte either. */
    struct td_buf empty[] = { { hdr, 16, false }, { data, 512, false }, { st, 0, true } };
    expect_malformed(t, empty, 3, "status");
    /* The header in device-writable memory. */
    struct td_buf whdr[] = { { hdr, 16, true }, { st, 1, true } };
    expect_malformed(t, whdr, 2, "header");
    assert_int_equal(*(uint8_t *)gpa(t, st, 1), 0xee);
    uint8_t buf[512];
    file_read(t->img, 0, buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
}

static void test_unsupported_types(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    const uint32_t types[] = { 2, 3, 10, 14, 99, 0xffffffffu };
    for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct req r = blk_req(t, 0, types[i], 0, 512);
        uint32_t len;
        assert_int_equal(run1(t, 0, &r, &len), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(len, 1);
    }
    /* DISCARD the driver did not negotiate. */
    t->d->driver_features &= ~VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
    assert_int_equal(seg1(t, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(resets(t), 0);
}

/* A full queue's worth of writes at once, then reads of all of them. */
static void test_many_in_flight(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    enum { N = QSIZE / 3 }; /* three descriptors each */
    struct req w[N];
    for (unsigned i = 0; i < N; i++) {
        w[i] = blk_req(t, 0, VIRTIO_BLK_T_OUT, 8 * i, 4096);
        pattern(gpa(t, w[i].data, 4096), 4096, i);
    }
    td_kick(&t->td, 0);
    wait_used(t, 0, N);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(status_of(t, &w[i]), VIRTIO_BLK_S_OK);
    uint8_t want[4096], got[4096];
    for (unsigned i = 0; i < N; i++) {
        pattern(want, sizeof(want), i);
        file_read(t->img, 4096ull * i, got, sizeof(got));
        assert_memory_equal(got, want, sizeof(got));
    }
    struct req r[N];
    for (unsigned i = 0; i < N; i++)
        r[i] = blk_req(t, 0, VIRTIO_BLK_T_IN, 8 * i, 4096);
    td_kick(&t->td, 0);
    wait_used(t, 0, 2 * N);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(status_of(t, &r[i]), VIRTIO_BLK_S_OK);
        pattern(want, sizeof(want), i);
        assert_memory_equal(gpa(t, r[i].data, 4096), want, sizeof(want));
    }
}

/* Each queue completes its own requests. */
static void test_multiqueue(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 4, VMK_DISK_SYNC_FULL);
    struct req r[4][8];
    for (unsigned q = 0; q < 4; q++) {
        for (unsigned i = 0; i < 8; i++) {
            r[q][i] = blk_req(t, q, VIRTIO_BLK_T_OUT, 64 * q + 8 * i, 4096);
            memset(gpa(t, r[q][i].data, 4096), (int)(q * 8 + i), 4096);
        }
    }
    for (unsigned q = 0; q < 4; q++)
        td_kick(&t->td, q);
    for (unsigned q = 0; q < 4; q++) {
        wait_used(t, q, 8);
        for (unsigned i = 0; i < 8; i++)
            assert_int_equal(status_of(t, &r[q][i]), VIRTIO_BLK_S_OK);
    }
    for (unsigned q = 0; q < 4; q++) {
        for (unsigned i = 0; i < 8; i++) {
            uint8_t b;
            file_read(t->img, (64ull * q + 8 * i) * 512 + 4095, &b, 1);
            assert_int_equal(b, q * 8 + i);
        }
    }
    /* A kick for a queue that does not exist does nothing. */
    td_kick(&t->td, 4);
    td_kick(&t->td, 1000);
    assert_int_equal(resets(t), 0);
}

struct reset_arg {
    struct virtio_device *d;
    bool done;
};

static void *reset_thread(void *p)
{
    struct reset_arg *a = p;
    a->d->ops->reset(a->d);
    __atomic_store_n(&a->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

/* reset returns only once every request in flight was completed; afterwards the
 * device takes nothing from the rings until activated again. */
static void test_reset_waits_for_in_flight(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 2, VMK_DISK_SYNC_FULL);
    set_gate(t, true);
    enum { N = 12 };
    struct req r[N];
    for (unsigned i = 0; i < N; i++)
        r[i] = blk_req(t, 0, VIRTIO_BLK_T_IN, i, 512);
    td_kick(&t->td, 0);
    /* Wait until the workers hold reads at the gate. */
    for (unsigned ms = 0; __atomic_load_n(&t->gb.waiting, __ATOMIC_SEQ_CST) == 0; ms++) {
        assert_true(ms < TIMEOUT_MS);
        sleep_ms(1);
    }
    struct reset_arg a = { t->d, false };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reset_thread, &a), 0);
    sleep_ms(100);
    assert_false(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST));
    assert_true(td_used_idx(&t->td, 0) < N);
    set_gate(t, false);
    pthread_join(th, NULL);
    assert_true(a.done);
    /* Everything popped before the reset was completed before it returned. */
    assert_int_equal(td_used_idx(&t->td, 0), N);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(status_of(t, &r[i]), VIRTIO_BLK_S_OK);

    /* Reset: kicks are ignored. */
    struct req late = blk_req(t, 0, VIRTIO_BLK_T_IN, 0, 512);
    td_kick(&t->td, 0);
    sleep_ms(50);
    assert_int_equal(td_used_idx(&t->td, 0), N);
    assert_int_equal(status_of(t, &late), 0xff);
    assert_int_equal(resets(t), 0);
}

/* A ring the driver broke: the transport is told, nothing else happens. */
static void test_broken_ring_needs_reset(void **state)
{
    struct tdev *t = *state;
    make_device(t, false, 1, VMK_DISK_SYNC_FULL);
    struct td_buf s[] = { { TD_RAM_SIZE - 8, 16, false }, { alloc_buf(t, 1), 1, true } };
    td_add(&t->td, 0, s, 2);
    td_kick(&t->td, 0);
    const char *why;
    assert_int_equal(td_resets(&t->td, &why), 1);
    assert_non_null(why);
    assert_int_equal(td_used_idx(&t->td, 0), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_features_and_config),
        T(test_constructor_rejects_bad_arguments),
        T(test_write_read_round_trip),
        T(test_flushed_write_is_on_disk),
        T(test_get_id),
        T(test_discard),
        T(test_write_zeroes),
        T(test_read_only),
        T(test_out_of_range_and_overflow),
        T(test_malformed_requests),
        T(test_unsupported_types),
        T(test_many_in_flight),
        T(test_multiqueue),
        T(test_reset_waits_for_in_flight),
        T(test_broken_ring_needs_reset),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
