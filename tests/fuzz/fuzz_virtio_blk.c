/* libFuzzer target for virtio-blk's request parsing: a hostile driver (virtio_driver.h)
 * against the device over 1 MiB disk images. header[0] picks the device: low 3 bits
 * (mod 5) the variant below; with bit 7 set, bits 3-6 make the backend fail reads,
 * writes, flushes, discards. The backend checks the contract the device promises it
 * (blk.h): sector-aligned ranges inside the disk, buffers inside guest RAM, nothing
 * written to a read-only disk, discard only when negotiated. Requests run on the
 * device's workers; after every kick the harness stops and restarts the device the
 * vhost-user way, whose reset waits for them, so each input replays the same. */
#include "block/disk_image.h"
#include "virtio_driver.h"
#include "virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DISK_SIZE (1u << 20)
#define NVARIANTS 5

#define FAIL_READ    1u
#define FAIL_WRITE   2u
#define FAIL_FLUSH   4u
#define FAIL_DISCARD 8u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct checked_backend {
    struct block_backend be;
    const struct block_backend *inner;
    const struct fz_driver *drv;
    struct virtio_device *dev;
    unsigned fail; /* FAIL_*, set per input */
};

struct blk_state {
    struct fz_driver drv;
    struct disk_image *rw, *ro, *direct;
    struct checked_backend cb[NVARIANTS];
    struct virtio_device *dev[NVARIANTS];
};

/* ---- the checking backend ---- */

static void check_range(const struct checked_backend *c, uint64_t off, uint64_t len)
{
    FZ_CHECK(off % VIRTIO_BLK_SECTOR_SIZE == 0 && len % VIRTIO_BLK_SECTOR_SIZE == 0);
    FZ_CHECK(len > 0 && off <= c->be.size && len <= c->be.size - off);
}

static void check_iov(const struct checked_backend *c, uint64_t off, const struct iovec *iov,
                      int cnt)
{
    FZ_CHECK(cnt >= 1 && cnt <= VIRTQ_MAX_IOV);
    uint64_t total = 0;
    for (int i = 0; i < cnt; i++) {
        FZ_CHECK(iov[i].iov_len > 0 && fz_in_ram(c->drv, iov[i].iov_base, iov[i].iov_len));
        total += iov[i].iov_len;
    }
    check_range(c, off, total);
}

static bool failing(const struct checked_backend *c, unsigned what)
{
    return __atomic_load_n(&c->fail, __ATOMIC_ACQUIRE) & what;
}

static int cb_read(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    struct checked_backend *c = ctx;
    check_iov(c, off, iov, cnt);
    return failing(c, FAIL_READ) ? -EIO : c->inner->read(c->inner->ctx, off, iov, cnt);
}

static int cb_write(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    struct checked_backend *c = ctx;
    FZ_CHECK(!c->be.read_only); /* 5.2.6.2: nothing is written to a read-only disk */
    check_iov(c, off, iov, cnt);
    return failing(c, FAIL_WRITE) ? -EIO : c->inner->write(c->inner->ctx, off, iov, cnt);
}

static int cb_flush(void *ctx)
{
    struct checked_backend *c = ctx;
    return failing(c, FAIL_FLUSH) ? -EIO : c->inner->flush(c->inner->ctx);
}

static int cb_discard(void *ctx, uint64_t off, uint64_t len)
{
    struct checked_backend *c = ctx;
    FZ_CHECK(c->be.can_discard && virtio_has_feature(c->dev, VIRTIO_BLK_F_DISCARD));
    FZ_CHECK(len <= (uint64_t)VIRTIO_BLK_MAX_DISCARD_SECTORS * VIRTIO_BLK_SECTOR_SIZE);
    check_range(c, off, len);
    return failing(c, FAIL_DISCARD) ? -EIO : c->inner->discard(c->inner->ctx, off, len);
}

static int cb_write_zeroes(void *ctx, uint64_t off, uint64_t len, bool may_unmap)
{
    struct checked_backend *c = ctx;
    FZ_CHECK(c->be.can_write_zeroes && virtio_has_feature(c->dev, VIRTIO_BLK_F_WRITE_ZEROES));
    FZ_CHECK(len <= (uint64_t)VIRTIO_BLK_MAX_DISCARD_SECTORS * VIRTIO_BLK_SECTOR_SIZE);
    check_range(c, off, len);
    return failing(c, FAIL_DISCARD) ? -EIO
                                    : c->inner->write_zeroes(c->inner->ctx, off, len, may_unmap);
}

/* ---- set-up, once per process ---- */

/* A 1 MiB image in dir, opened as asked, then unlinked: nothing outlives the process. */
static struct disk_image *open_one(const char *dir, bool read_only, vmk_disk_caching_mode caching,
                                   vmk_disk_sync_mode sync)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/vmkit-fuzz-blk-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    struct disk_image *img = NULL;
    vmk_error *err = NULL;
    if (ftruncate(fd, DISK_SIZE) == 0 &&
        disk_image_open(path, read_only, caching, sync, &img, &err) != VMK_OK)
        fprintf(stderr, "fuzz_virtio_blk: %s\n", vmk_error_message(err));
    vmk_error_free(err);
    close(fd);
    unlink(path);
    return img;
}

/* A writable image and, when asked, a read-only one (an image of its own: the writer holds
 * its image's lock alone). */
static struct disk_image *open_image(const char *dir, bool read_only_too, struct disk_image **ro,
                                     vmk_disk_caching_mode caching, vmk_disk_sync_mode sync)
{
    struct disk_image *img = open_one(dir, false, caching, sync);
    if (img && read_only_too && !(*ro = open_one(dir, true, caching, sync))) {
        disk_image_close(img);
        img = NULL;
    }
    return img;
}

static int add_variant(struct blk_state *s, unsigned v, const struct disk_image *img,
                       const char *id, unsigned queues, bool no_discard)
{
    struct checked_backend *c = &s->cb[v];
    c->inner = disk_image_backend(img);
    c->drv = &s->drv;
    c->be = *c->inner;
    c->be.read = cb_read;
    c->be.write = cb_write;
    c->be.flush = cb_flush;
    c->be.discard = cb_discard;
    c->be.write_zeroes = cb_write_zeroes;
    c->be.ctx = c;
    if (no_discard)
        c->be.can_discard = c->be.can_write_zeroes = false;
    vmk_error *err = NULL;
    s->dev[v] = c->dev = virtio_blk_new(&c->be, id, queues, &err);
    if (!s->dev[v]) {
        fprintf(stderr, "fuzz_virtio_blk: %s\n", vmk_error_message(err));
        vmk_error_free(err);
        return -1;
    }
    return 0;
}

static struct blk_state *setup(void)
{
    struct blk_state *s = calloc(1, sizeof(*s));
    if (!s || fz_driver_init(&s->drv) < 0)
        return NULL;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    /* The cached images in RAM (fast); the O_DIRECT one where O_DIRECT works. */
    const char *shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp;
    s->rw = open_image(shm, true, &s->ro, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    s->direct = open_image(tmp, false, NULL, VMK_DISK_CACHING_UNCACHED, VMK_DISK_SYNC_NONE);
    if (!s->rw || !s->ro || !s->direct)
        return NULL;
    if (add_variant(s, 0, s->rw, "vmkit-fuzz-disk", 1, false) < 0 ||
        add_variant(s, 1, s->rw, "01234567890123456789", 3, false) < 0 ||
        add_variant(s, 2, s->ro, NULL, 1, false) < 0 ||
        add_variant(s, 3, s->direct, "direct", 1, false) < 0 ||
        add_variant(s, 4, s->rw, "", 2, true) < 0)
        return NULL;
    return s;
}

/* ---- per input ---- */

static void blk_action(struct fz_driver *t, struct fz_in *in)
{
    struct checked_backend *c = t->ctx;
    uint8_t sub = fz_u8(in);
    if (sub & 1) {
        __atomic_store_n(&c->fail, sub >> 4, __ATOMIC_RELEASE);
        return;
    }
    /* What the configuration space promises, against what the device does. */
    uint8_t cfg[VIRTIO_BLK_CFG_SIZE];
    t->dev->ops->config_read(t->dev, 0, cfg, sizeof(cfg));
    uint64_t cap;
    memcpy(&cap, cfg + VIRTIO_BLK_CFG_CAPACITY, 8);
    FZ_CHECK(le64toh(cap) == c->be.size / VIRTIO_BLK_SECTOR_SIZE);
    uint16_t nq;
    memcpy(&nq, cfg + VIRTIO_BLK_CFG_NUM_QUEUES, 2);
    FZ_CHECK(le16toh(nq) == t->dev->num_queues);
}

static const struct fz_target_ops blk_ops = {
    .settle = fz_stop_restart,
    .action = blk_action,
};

/* ---- seeds: one valid request of each kind, and a few shapes ---- */

static void hdr(uint8_t out[16], uint32_t type, uint64_t sector)
{
    memset(out, 0, 16);
    type = htole32(type);
    sector = htole64(sector);
    memcpy(out, &type, 4);
    memcpy(out + 8, &sector, 8);
}

static void seg16(uint8_t out[16], uint64_t sector, uint32_t num, uint32_t flags)
{
    sector = htole64(sector);
    num = htole32(num);
    flags = htole32(flags);
    memcpy(out, &sector, 8);
    memcpy(out + 8, &num, 4);
    memcpy(out + 12, &flags, 4);
}

void fz_write_seeds(const char *dir)
{
    const uint8_t up = FZ_H_BRING_UP;
    const uint8_t up_all = FZ_H_BRING_UP | FZ_H_EVENT_IDX | FZ_H_INDIRECT;
    struct fz_seed s;
    uint8_t h[16], h2[16], seg[32], data[255];
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);

    /* IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES: header, data, status. */
    static const struct {
        const char *name;
        uint32_t type;
        uint16_t len;
        bool writable;
    } kinds[] = {
        { "in", VIRTIO_BLK_T_IN, 1024, true },     { "out", VIRTIO_BLK_T_OUT, 512, false },
        { "flush", VIRTIO_BLK_T_FLUSH, 0, false }, { "get_id", VIRTIO_BLK_T_GET_ID, 20, true },
        { "unknown", 0x7fffffffu, 0, false },
    };
    for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (unsigned v = 0; v < NVARIANTS; v++) {
            char name[64];
            fz_seed_begin(&s, (uint8_t)v, up, ~0u);
            hdr(h, kinds[k].type, 2);
            struct fz_seg segs[3] = { { .len = 16, .data = h, .data_len = 16 } };
            unsigned n = 1;
            if (kinds[k].len)
                segs[n++] = (struct fz_seg){ .writable = kinds[k].writable,
                                             .len = kinds[k].len,
                                             .data = data,
                                             .data_len = kinds[k].writable ? 0 : 255 };
            segs[n++] = (struct fz_seg){ .writable = true, .len = 1 };
            fz_seed_chain(&s, 0, 0, segs, n);
            fz_seed_notify(&s, 0);
            snprintf(name, sizeof(name), "%s-%u", kinds[k].name, v);
            fz_seed_save(dir, name, &s);
        }
    }

    /* DISCARD and WRITE_ZEROES with two segments each. */
    for (unsigned wz = 0; wz < 2; wz++) {
        fz_seed_begin(&s, 0, up, ~0u);
        hdr(h, wz ? VIRTIO_BLK_T_WRITE_ZEROES : VIRTIO_BLK_T_DISCARD, 0);
        seg16(seg, 8, 8, wz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0);
        seg16(seg + 16, 64, 16, 0);
        struct fz_seg segs[] = {
            { .len = 16, .data = h, .data_len = 16 },
            { .len = 32, .data = seg, .data_len = 32 },
            { .writable = true, .len = 1 },
        };
        fz_seed_chain(&s, 0, 0, segs, 3);
        fz_seed_notify(&s, 0);
        fz_seed_save(dir, wz ? "write_zeroes" : "discard", &s);
    }

    /* A read through an indirect table with the data split unevenly, the status byte
     * sharing the last writable buffer; then a write whose header spans two buffers. */
    fz_seed_begin(&s, 1, up_all, ~0u);
    hdr(h, VIRTIO_BLK_T_IN, 4);
    struct fz_seg rd[] = {
        { .len = 16, .data = h, .data_len = 16 },
        { .writable = true, .len = 100 },
        { .writable = true, .len = 412 },
        { .writable = true, .len = 513 },
    };
    fz_seed_chain(&s, 1, FZ_CHAIN_INDIRECT | FZ_CHAIN_KICK, rd, 4);
    hdr(h2, VIRTIO_BLK_T_OUT, 6);
    struct fz_seg wr[] = {
        { .len = 5, .data = h2, .data_len = 5 },
        { .len = 11, .data = h2 + 5, .data_len = 11 },
        { .len = 1024, .data = data, .data_len = 255 },
        { .writable = true, .len = 1 },
    };
    fz_seed_chain(&s, 2, FZ_CHAIN_KICK, wr, 4);
    fz_seed_save(dir, "shapes", &s);

    /* O_DIRECT: a page-aligned read and write (straight to the file), and an aligned
     * offset with buffers O_DIRECT cannot take (the bounce buffer). */
    fz_seed_begin(&s, 3, up, ~0u);
    hdr(h, VIRTIO_BLK_T_OUT, 8);
    struct fz_seg dw[] = {
        { .len = 16, .data = h, .data_len = 16 },
        { .len = 4096, .at = true, .gpa = 0xa000, .data = data, .data_len = 255 },
        { .writable = true, .len = 1 },
    };
    fz_seed_chain(&s, 0, FZ_CHAIN_KICK, dw, 3);
    hdr(h2, VIRTIO_BLK_T_IN, 8);
    struct fz_seg dr[] = {
        { .len = 16, .data = h2, .data_len = 16 },
        { .writable = true, .len = 4096, .at = true, .gpa = 0xc000 },
        { .writable = true, .len = 1 },
    };
    fz_seed_chain(&s, 0, FZ_CHAIN_KICK, dr, 3);
    struct fz_seg db[] = {
        { .len = 16, .data = h2, .data_len = 16 },
        { .writable = true, .len = 1000, .at = true, .gpa = 0xc001 },
        { .writable = true, .len = 3096, .at = true, .gpa = 0xd001 },
        { .writable = true, .len = 1 },
    };
    fz_seed_chain(&s, 0, FZ_CHAIN_KICK, db, 4);
    fz_seed_save(dir, "direct", &s);

    /* The long way: features, status steps, one queue set up by hand, config reads, a
     * request, a reset, and the same again. */
    fz_seed_begin(&s, 0, 0, 0);
    for (unsigned round = 0; round < 2; round++) {
        fz_seed_u8(&s, FZ_OP_FEATURES);
        fz_seed_u8(&s, 1);
        fz_seed_u64(&s, ~0ull);
        fz_seed_u8(&s, FZ_OP_STATUS);
        fz_seed_u8(&s, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        fz_seed_u8(&s, FZ_OP_STATUS);
        fz_seed_u8(&s,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
        fz_seed_u8(&s, FZ_OP_QUEUE);
        fz_seed_u8(&s, 0);
        fz_seed_u16(&s, 8);
        fz_seed_u8(&s, 1);
        fz_seed_u16(&s, 0x1000);
        fz_seed_u16(&s, 0x1100);
        fz_seed_u16(&s, 0x1200);
        fz_seed_u8(&s, FZ_OP_STATUS);
        fz_seed_u8(&s, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                           VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        for (unsigned off = 0; off < VIRTIO_BLK_CFG_SIZE; off += 4) {
            fz_seed_u8(&s, FZ_OP_CFG_READ);
            fz_seed_u8(&s, (uint8_t)off);
            fz_seed_u8(&s, 2);
        }
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 0);
        hdr(h, VIRTIO_BLK_T_GET_ID, 0);
        struct fz_seg gid[] = {
            { .len = 16, .data = h, .data_len = 16 },
            { .writable = true, .len = 64 },
        };
        fz_seed_chain(&s, 0, FZ_CHAIN_KICK, gid, 2);
        fz_seed_u8(&s, FZ_OP_RESET);
    }
    fz_seed_save(dir, "long-way", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: the disks and devices live as long as the process. */
    static struct blk_state *state;
    if (!state) {
        state = setup();
        FZ_CHECK(state != NULL);
    }
    uint8_t sel = size ? data[0] : 0;
    unsigned v = (sel & 7u) % NVARIANTS;
    struct checked_backend *c = &state->cb[v];
    __atomic_store_n(&c->fail, (sel & 0x80) ? (sel >> 3) & 15u : 0u, __ATOMIC_RELEASE);
    fz_run(&state->drv, state->dev[v], &blk_ops, c, data, size);
    return 0;
}
