/* virtio-blk. The kick thread pops chains and queues them; workers parse, run and
 * complete them. A queue's ring is touched under that queue's lock only, so pops
 * (kick thread) and pushes (workers) never race. Everything in a request comes from
 * the guest: the header and segments are copied once and checked before use. */
#include "virtio/blk.h"
#include "core/error.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLK_HDR_SIZE 16u /* struct virtio_blk_req's type, reserved, sector */
#define BLK_SEG_SIZE 16u /* struct virtio_blk_discard_write_zeroes */
#define MAX_WORKERS  4u
#define SECTOR_SHIFT 9
/* Finished requests kept for reuse: a request carries a whole virtq_elem (16 KiB), and
 * allocating one per request on one thread and freeing it on another was a third of the
 * back end's CPU at queue depth 32 (bench/vhost_user_blk.sh). */
#define MAX_SPARE    64u

struct blk_req {
    struct blk_req *next;
    unsigned q;
    struct virtq_elem elem;
};

struct virtio_blk {
    struct virtio_device vdev;
    const struct block_backend *be;
    uint64_t capacity; /* sectors */
    uint8_t id[VIRTIO_BLK_ID_BYTES];
    uint8_t config[VIRTIO_BLK_CFG_SIZE];
    pthread_mutex_t *qlock; /* one per queue: pop and push on that ring */
    bool active;            /* written under every qlock, read under one */

    pthread_mutex_t lock; /* the work list, inflight, quit */
    pthread_cond_t work_cv, idle_cv;
    /* Bounded without a check: virtq_pop refuses more than a queue's size in flight,
     * so at most num_queues * VIRTIO_BLK_QUEUE_SIZE requests wait here. */
    struct blk_req *head, *tail;
    unsigned inflight;     /* popped, not yet pushed */
    struct blk_req *spare; /* finished requests to reuse, nspare of them */
    unsigned nspare;
    bool quit;
    pthread_t workers[MAX_WORKERS];
    unsigned nworkers;
};

static struct virtio_blk *to_blk(struct virtio_device *d)
{
    return (struct virtio_blk *)d;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

/* Narrows iov[0..cnt) in place to the bytes [skip, skip + len); returns the count
 * and the first iovec through *first. */
static int iov_slice(struct iovec *iov, int cnt, size_t skip, size_t len, struct iovec **first)
{
    int i = 0;
    while (i < cnt && skip >= iov[i].iov_len) {
        skip -= iov[i].iov_len;
        i++;
    }
    *first = iov + i;
    if (i == cnt)
        return 0;
    iov[i].iov_base = (uint8_t *)iov[i].iov_base + skip;
    iov[i].iov_len -= skip;
    int n = 0;
    while (i + n < cnt && len) {
        if (iov[i + n].iov_len > len)
            iov[i + n].iov_len = len;
        len -= iov[i + n].iov_len;
        n++;
    }
    return n;
}

/* The status byte: the last byte of the device-writable part, or NULL. */
static uint8_t *status_byte(const struct virtq_elem *e)
{
    for (unsigned i = e->out_num + e->in_num; i > e->out_num; i--) {
        const struct iovec *v = &e->iov[i - 1];
        if (v->iov_len)
            return (uint8_t *)v->iov_base + v->iov_len - 1;
    }
    return NULL;
}

/* [sector, sector + bytes / 512) lies within the disk, without overflowing. */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
    uint64_t n = bytes >> SECTOR_SHIFT;
    return sector <= b->capacity && n <= b->capacity - sector;
}

static uint8_t do_rw(struct virtio_blk *b, struct virtq_elem *e, uint32_t type, uint64_t sector,
                     uint32_t *written)
{
    bool write = type == VIRTIO_BLK_T_OUT;
    uint64_t len = write ? e->out_len - BLK_HDR_SIZE : e->in_len - 1;
    if (len % VIRTIO_BLK_SECTOR_SIZE || len >= UINT32_MAX || !in_range(b, sector, len))
        return VIRTIO_BLK_S_IOERR;
    if (write && b->be->read_only)
        return VIRTIO_BLK_S_IOERR; /* 5.2.6.2: and nothing is written */
    if (len == 0)
        return VIRTIO_BLK_S_OK;
    struct iovec *data;
    int n = write ? iov_slice(e->iov, (int)e->out_num, BLK_HDR_SIZE, len, &data)
                  : iov_slice(e->iov + e->out_num, (int)e->in_num, 0, len, &data);
    uint64_t off = sector << SECTOR_SHIFT;
    int r = write ? b->be->write(b->be->ctx, off, data, n) : b->be->read(b->be->ctx, off, data, n);
    if (r < 0)
        return VIRTIO_BLK_S_IOERR;
    if (!write)
        *written += (uint32_t)len;
    return VIRTIO_BLK_S_OK;
}

/* DISCARD and WRITE_ZEROES: every segment is checked before any is run. */
static uint8_t do_segments(struct virtio_blk *b, const struct virtq_elem *e, uint32_t type)
{
    bool discard = type == VIRTIO_BLK_T_DISCARD;
    unsigned feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    if (!virtio_has_feature(&b->vdev, feature) ||
        !(discard ? b->be->can_discard : b->be->can_write_zeroes))
        return VIRTIO_BLK_S_UNSUPP;
    uint64_t bytes = e->out_len - BLK_HDR_SIZE;
    if (bytes == 0 || bytes % BLK_SEG_SIZE || bytes / BLK_SEG_SIZE > VIRTIO_BLK_MAX_DISCARD_SEG)
        return VIRTIO_BLK_S_IOERR;
    unsigned nseg = (unsigned)(bytes / BLK_SEG_SIZE);
    uint8_t raw[VIRTIO_BLK_MAX_DISCARD_SEG * BLK_SEG_SIZE];
    if (virtq_elem_read(e, BLK_HDR_SIZE, raw, bytes) != bytes)
        return VIRTIO_BLK_S_IOERR;
    uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    for (unsigned i = 0; i < nseg; i++) {
        uint64_t sector;
        uint32_t num, flags;
        memcpy(&sector, raw + i * BLK_SEG_SIZE, 8);
        memcpy(&num, raw + i * BLK_SEG_SIZE + 8, 4);
        memcpy(&flags, raw + i * BLK_SEG_SIZE + 12, 4);
        sector = le64toh(sector);
        num = le32toh(num);
        flags = le32toh(flags);
        /* 5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP. */
        if (flags & ~allowed)
            return VIRTIO_BLK_S_UNSUPP;
        if (num > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
            !in_range(b, sector, (uint64_t)num << SECTOR_SHIFT))
            return VIRTIO_BLK_S_IOERR;
    }
    for (unsigned i = 0; i < nseg; i++) {
        uint64_t sector;
        uint32_t num, flags;
        memcpy(&sector, raw + i * BLK_SEG_SIZE, 8);
        memcpy(&num, raw + i * BLK_SEG_SIZE + 8, 4);
        memcpy(&flags, raw + i * BLK_SEG_SIZE + 12, 4);
        uint64_t off = le64toh(sector) << SECTOR_SHIFT, len = (uint64_t)le32toh(num)
                                                              << SECTOR_SHIFT;
        if (len == 0)
            continue;
        int r = discard ? b->be->discard(b->be->ctx, off, len)
                        : b->be->write_zeroes(b->be->ctx, off, len,
                                              le32toh(flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        if (r < 0)
            return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

static void complete(struct virtio_blk *b, unsigned q, const struct virtq_elem *e, uint32_t written)
{
    pthread_mutex_lock(&b->qlock[q]);
    virtio_device_complete(&b->vdev, q, e, written);
    pthread_mutex_unlock(&b->qlock[q]);
}

static void process(struct virtio_blk *b, struct blk_req *req)
{
    struct virtq_elem *e = &req->elem;
    uint8_t *status = status_byte(e);
    uint8_t hdr[BLK_HDR_SIZE];
    const char *bad = NULL;
    if (!status)
        bad = "virtio-blk: request without a device-writable status byte";
    else if (virtq_elem_read(e, 0, hdr, sizeof(hdr)) != sizeof(hdr))
        bad = "virtio-blk: request header shorter than 16 bytes";
    if (bad) {
        /* The driver broke 5.2.6.1; give the chain back untouched and ask for a reset. */
        if (b->vdev.transport.needs_reset)
            b->vdev.transport.needs_reset(b->vdev.transport.ctx, bad);
        complete(b, req->q, e, 0);
        return;
    }
    uint32_t type;
    uint64_t sector;
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);
    type = le32toh(type);
    sector = le64toh(sector);

    uint32_t written = 1; /* the status byte */
    uint8_t st;
    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: st = do_rw(b, e, type, sector, &written); break;
    case VIRTIO_BLK_T_FLUSH:
        st = b->be->flush(b->be->ctx) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t room = e->in_len - 1;
        size_t n = room < VIRTIO_BLK_ID_BYTES ? (size_t)room : VIRTIO_BLK_ID_BYTES;
        written += (uint32_t)virtq_elem_write(e, 0, b->id, n);
        st = VIRTIO_BLK_S_OK;
        break;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: st = do_segments(b, e, type); break;
    default: st = VIRTIO_BLK_S_UNSUPP; break;
    }
    *status = st;
    complete(b, req->q, e, written);
}

static void keep_spare_locked(struct virtio_blk *b, struct blk_req *req)
{
    if (b->nspare < MAX_SPARE) {
        req->next = b->spare;
        b->spare = req;
        b->nspare++;
    } else {
        free(req);
    }
}

static void keep_spare(struct virtio_blk *b, struct blk_req *req)
{
    pthread_mutex_lock(&b->lock);
    keep_spare_locked(b, req);
    pthread_mutex_unlock(&b->lock);
}

static void *worker_main(void *arg)
{
    struct virtio_blk *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->head && !b->quit)
            pthread_cond_wait(&b->work_cv, &b->lock);
        struct blk_req *req = b->head;
        if (!req)
            break; /* quit, and nothing left */
        b->head = req->next;
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->lock);

        process(b, req);

        pthread_mutex_lock(&b->lock);
        keep_spare_locked(b, req);
        if (--b->inflight == 0)
            pthread_cond_broadcast(&b->idle_cv);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static int blk_activate(struct virtio_device *d)
{
    struct virtio_blk *b = to_blk(d);
    for (unsigned q = 0; q < d->num_queues; q++)
        pthread_mutex_lock(&b->qlock[q]);
    b->active = true;
    for (unsigned q = 0; q < d->num_queues; q++)
        pthread_mutex_unlock(&b->qlock[q]);
    return 0;
}

static struct blk_req *take_spare_locked(struct virtio_blk *b)
{
    struct blk_req *r = b->spare;
    if (r) {
        b->spare = r->next;
        b->nspare--;
    }
    return r;
}

/* Called with qlock[q] held, so a reset in progress cannot miss this request. Returns
 * a spare request for the next pop (NULL: none), taken under the same lock. */
static struct blk_req *submit(struct virtio_blk *b, struct blk_req *req)
{
    pthread_mutex_lock(&b->lock);
    b->inflight++;
    req->next = NULL;
    if (b->tail)
        b->tail->next = req;
    else
        b->head = req;
    b->tail = req;
    pthread_cond_signal(&b->work_cv);
    struct blk_req *spare = take_spare_locked(b);
    pthread_mutex_unlock(&b->lock);
    return spare;
}

static void blk_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_blk *b = to_blk(d);
    if (q >= d->num_queues)
        return;
    pthread_mutex_lock(&b->qlock[q]);
    pthread_mutex_lock(&b->lock);
    struct blk_req *req = take_spare_locked(b);
    pthread_mutex_unlock(&b->lock);
    while (b->active) {
        if (!req && !(req = malloc(sizeof(*req)))) {
            if (d->transport.needs_reset)
                d->transport.needs_reset(d->transport.ctx, "virtio-blk: out of memory");
            break;
        }
        int r = virtq_pop(&d->queues[q], &req->elem);
        if (r <= 0) {
            if (r < 0)
                virtio_device_queue_failed(d, q);
            break;
        }
        req->q = q;
        req = submit(b, req);
    }
    if (req)
        keep_spare(b, req);
    pthread_mutex_unlock(&b->qlock[q]);
}

static void blk_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    memcpy(data, to_blk(d)->config + offset, len);
}

static void blk_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                             uint32_t len)
{
    /* Nothing is writable: writeback is only writable with CONFIG_WCE, not offered. */
}

static void blk_reset(struct virtio_device *d)
{
    struct virtio_blk *b = to_blk(d);
    for (unsigned q = 0; q < d->num_queues; q++)
        pthread_mutex_lock(&b->qlock[q]);
    b->active = false;
    for (unsigned q = 0; q < d->num_queues; q++)
        pthread_mutex_unlock(&b->qlock[q]);
    pthread_mutex_lock(&b->lock);
    while (b->inflight)
        pthread_cond_wait(&b->idle_cv, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

static void free_blk(struct virtio_blk *b, unsigned nlocks)
{
    while (b->spare) {
        struct blk_req *r = b->spare;
        b->spare = r->next;
        free(r);
    }
    for (unsigned q = 0; q < nlocks; q++)
        pthread_mutex_destroy(&b->qlock[q]);
    free(b->qlock);
    pthread_cond_destroy(&b->work_cv);
    pthread_cond_destroy(&b->idle_cv);
    pthread_mutex_destroy(&b->lock);
    virtio_device_fini(&b->vdev);
    free(b);
}

static void blk_destroy(struct virtio_device *d)
{
    if (!d)
        return;
    struct virtio_blk *b = to_blk(d);
    blk_reset(d);
    pthread_mutex_lock(&b->lock);
    b->quit = true;
    pthread_cond_broadcast(&b->work_cv);
    pthread_mutex_unlock(&b->lock);
    for (unsigned i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i], NULL);
    free_blk(b, d->num_queues);
}

static const struct virtio_device_ops blk_ops = {
    .activate = blk_activate,
    .queue_notify = blk_queue_notify,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .reset = blk_reset,
    .destroy = blk_destroy,
};

static void build_config(struct virtio_blk *b)
{
    const struct block_backend *be = b->be;
    uint64_t cap = htole64(b->capacity);
    uint16_t nq = htole16((uint16_t)b->vdev.num_queues);
    uint32_t align = (be->block_size > 4096 ? be->block_size : 4096) >> SECTOR_SHIFT;
    memcpy(b->config + VIRTIO_BLK_CFG_CAPACITY, &cap, 8);
    put_le32(b->config + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_QUEUE_SIZE - 2);
    put_le32(b->config + VIRTIO_BLK_CFG_BLK_SIZE, be->block_size);
    memcpy(b->config + VIRTIO_BLK_CFG_NUM_QUEUES, &nq, 2);
    if (be->can_discard) {
        put_le32(b->config + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
        put_le32(b->config + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
        /* Host file systems deallocate whole 4 KiB blocks at best. */
        put_le32(b->config + VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT, align);
    }
    if (be->can_write_zeroes) {
        put_le32(b->config + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS,
                 VIRTIO_BLK_MAX_DISCARD_SECTORS);
        put_le32(b->config + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
        b->config[VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
    }
}

struct virtio_device *virtio_blk_new(const struct block_backend *backend, const char *id,
                                     unsigned num_queues, vmk_error **err)
{
    if (!backend || !backend->read || !backend->write || !backend->flush ||
        (backend->can_discard && !backend->discard) ||
        (backend->can_write_zeroes && !backend->write_zeroes)) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-blk: incomplete backend");
        return NULL;
    }
    if (backend->size % VIRTIO_BLK_SECTOR_SIZE ||
        (backend->block_size != 512 && backend->block_size != 4096)) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                 "virtio-blk: backend size %llu or block size %u is not usable",
                 (unsigned long long)backend->size, backend->block_size);
        return NULL;
    }
    if (num_queues < 1 || num_queues > VIRTIO_BLK_MAX_QUEUES) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-blk: %u queues, allowed 1..%u",
                 num_queues, VIRTIO_BLK_MAX_QUEUES);
        return NULL;
    }
    size_t idlen = id ? strlen(id) : 0;
    if (idlen > VIRTIO_BLK_ID_BYTES) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                 "virtio-blk: identifier of %zu bytes, at most %u", idlen, VIRTIO_BLK_ID_BYTES);
        return NULL;
    }
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (!b) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-blk: out of memory");
        return NULL;
    }
    if (virtio_device_init(&b->vdev, &blk_ops, "virtio-blk", VIRTIO_ID_BLOCK, num_queues,
                           VIRTIO_BLK_QUEUE_SIZE) != 0) {
        free(b);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-blk: out of memory");
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work_cv, NULL);
    pthread_cond_init(&b->idle_cv, NULL);
    b->qlock = calloc(num_queues, sizeof(*b->qlock));
    if (!b->qlock) {
        free_blk(b, 0);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-blk: out of memory");
        return NULL;
    }
    for (unsigned q = 0; q < num_queues; q++)
        pthread_mutex_init(&b->qlock[q], NULL);
    b->be = backend;
    b->capacity = backend->size >> SECTOR_SHIFT;
    if (idlen)
        memcpy(b->id, id, idlen);
    b->vdev.config_size = VIRTIO_BLK_CFG_SIZE;
    b->vdev.device_features |= VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
                               VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
                               VIRTIO_BIT(VIRTIO_BLK_F_MQ);
    if (backend->read_only)
        b->vdev.device_features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
    if (backend->can_discard)
        b->vdev.device_features |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
    if (backend->can_write_zeroes)
        b->vdev.device_features |= VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    build_config(b);

    unsigned want = num_queues + 1 < MAX_WORKERS ? num_queues + 1 : MAX_WORKERS;
    for (; b->nworkers < want; b->nworkers++) {
        int r = pthread_create(&b->workers[b->nworkers], NULL, worker_main, b);
        if (r != 0) {
            if (b->nworkers)
                break; /* fewer workers still work */
            free_blk(b, num_queues);
            vmk_fail(err, VMK_ERR_INTERNAL, r, "virtio-blk: cannot start a worker: %s",
                     strerror(r));
            return NULL;
        }
    }
    return &b->vdev;
}
