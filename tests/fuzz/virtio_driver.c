/* The virtio fuzzers' driver and transport (see virtio_driver.h). Everything the input says
 * is done as a driver or a virtio-pci transport would do it, without judging it:
 * judging is the device's job. The harness only checks what must hold whatever the
 * driver does. */
#include "virtio_driver.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* ---- guest RAM, driver side ---- */

static uint8_t *ram_at(struct fz_driver *t, uint64_t gpa, uint64_t len)
{
    return gm_ptr(&t->gm, gpa, len);
}

static void ram_put16(struct fz_driver *t, uint64_t gpa, uint16_t v)
{
    uint8_t *p = ram_at(t, gpa, 2);
    v = htole16(v);
    if (p && ((uintptr_t)p & 1) == 0)
        __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
    else if (p)
        memcpy(p, &v, 2);
}

static void ram_put_desc(struct fz_driver *t, uint64_t gpa, uint64_t addr, uint32_t len,
                         uint16_t flags, uint16_t next)
{
    uint8_t *p = ram_at(t, gpa, VIRTQ_DESC_SIZE);
    if (!p)
        return;
    addr = htole64(addr);
    len = htole32(len);
    flags = htole16(flags);
    next = htole16(next);
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &flags, 2);
    memcpy(p + 14, &next, 2);
}

bool fz_in_ram(const struct fz_driver *t, const void *p, size_t len)
{
    const uint8_t *b = p;
    return b >= t->ram && len <= FZ_RAM_SIZE && (size_t)(b - t->ram) <= FZ_RAM_SIZE - len;
}

/* A fresh buffer from the data area, 16-byte aligned; wraps around when full. */
static uint64_t alloc_buf(struct fz_driver *t, uint32_t len)
{
    if (t->bump + (uint64_t)len > FZ_RAM_SIZE)
        t->bump = FZ_DATA_GPA;
    uint64_t gpa = t->bump;
    t->bump = (uint32_t)((t->bump + (uint64_t)len + 15) & ~15ull);
    if (t->bump >= FZ_RAM_SIZE)
        t->bump = FZ_DATA_GPA;
    return gpa;
}

/* ---- the transport, as virtio-pci behaves ---- */

static void tr_notify_queue(void *ctx, unsigned q)
{
    struct fz_driver *t = ctx;
    FZ_CHECK(q < t->dev->num_queues);
    __atomic_add_fetch(&t->queue_notifies, 1, __ATOMIC_ACQ_REL);
}

static void tr_notify_config(void *ctx)
{
}

static void tr_needs_reset(void *ctx, const char *why)
{
    struct fz_driver *t = ctx;
    /* These two are the device breaking the ring, not the driver (virtqueue.c). */
    if (why && (!strcmp(why, "device pushed more elements than it popped") ||
                !strcmp(why, "device claims more bytes written than the chain holds")))
        fz_fail(why, __FILE__, __LINE__);
    if (t->trace)
        fprintf(stderr, "  needs reset: %s\n", why ? why : "(no reason)");
    __atomic_fetch_or(&t->status, VIRTIO_STATUS_DEVICE_NEEDS_RESET, __ATOMIC_ACQ_REL);
    __atomic_add_fetch(&t->resets_asked, 1, __ATOMIC_ACQ_REL);
}

static void default_queue(struct fz_driver *t, unsigned i, uint16_t size)
{
    t->q[i] = (struct fz_queue){ .size = size,
                                 .desc = (uint64_t)FZ_SLOT_SIZE * i,
                                 .avail = (uint64_t)FZ_SLOT_SIZE * i + 0x100,
                                 .used = (uint64_t)FZ_SLOT_SIZE * i + 0x140 };
}

static void device_reset(struct fz_driver *t)
{
    struct virtio_device *d = t->dev;
    d->ops->reset(d);
    for (unsigned i = 0; i < d->num_queues; i++) {
        virtq_disable(&d->queues[i]);
        default_queue(t, i, FZ_DEFAULT_QSIZE);
    }
    t->driver_features = 0;
    d->driver_features = 0;
    STORE(t->status, 0);
    STORE(t->resets_asked, 0);
}

static void write_status(struct fz_driver *t, uint8_t value)
{
    struct virtio_device *d = t->dev;
    uint8_t old = LOAD(t->status);
    if (value == 0) {
        device_reset(t);
        return;
    }
    uint8_t next = value | (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if ((next & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        bool ok = !(t->driver_features & ~d->device_features) &&
                  (t->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1));
        if (ok)
            d->driver_features = t->driver_features;
        else
            next &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    }
    STORE(t->status, (uint8_t)(next | (LOAD(t->status) & VIRTIO_STATUS_DEVICE_NEEDS_RESET)));
    if ((next & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        if (!(next & VIRTIO_STATUS_FEATURES_OK) || d->ops->activate(d) < 0)
            tr_needs_reset(t, "device activation failed");
    }
}

/* Queue enable: the transport hands the driver's ring addresses to the virtqueue. */
static void enable_queue(struct fz_driver *t, unsigned i)
{
    struct virtio_device *d = t->dev;
    struct fz_queue *fq = &t->q[i];
    struct virtq *vq = &d->queues[i];
    if (fq->enabled)
        return;
    vq->gm = &t->gm;
    vq->size = fq->size;
    vq->desc_addr = fq->desc;
    vq->avail_addr = fq->avail;
    vq->used_addr = fq->used;
    vq->event_idx = virtio_has_feature(d, VIRTIO_F_RING_EVENT_IDX);
    vq->indirect = virtio_has_feature(d, VIRTIO_F_RING_INDIRECT_DESC);
    if (virtq_enable(vq) < 0) {
        tr_needs_reset(t, "virtqueue rings outside guest memory");
        return;
    }
    fq->enabled = true;
}

static bool size_ok(uint16_t size, uint16_t max)
{
    return size && size <= max && !(size & (size - 1));
}

void fz_check_queues(struct fz_driver *t)
{
    struct virtio_device *d = t->dev;
    bool asked = LOAD(t->resets_asked) > 0;
    for (unsigned i = 0; i < d->num_queues; i++) {
        const struct virtq *vq = &d->queues[i];
        if (!t->q[i].enabled)
            continue;
        /* A device returns every chain it took, or asks for a reset. inflight is the
         * queue's private count; the harness peeks, as nothing public tells it. */
        FZ_CHECK(vq->inflight == 0 || asked);
        FZ_CHECK(!virtq_is_broken(vq) || asked);
    }
}

void fz_stop_restart(struct fz_driver *t)
{
    struct virtio_device *d = t->dev;
    uint16_t base[FZ_MAX_QUEUES];
    d->ops->reset(d);
    fz_check_queues(t);
    for (unsigned i = 0; i < d->num_queues; i++) {
        if (!t->q[i].enabled)
            continue;
        base[i] = virtq_get_base(&d->queues[i]);
        virtq_disable(&d->queues[i]);
        FZ_CHECK(virtq_enable(&d->queues[i]) == 0);
        FZ_CHECK(virtq_set_base(&d->queues[i], base[i]) == 0);
    }
    if ((LOAD(t->status) & VIRTIO_STATUS_DRIVER_OK) && d->ops->activate(d) < 0)
        tr_needs_reset(t, "device activation failed");
}

static void notify(struct fz_driver *t, unsigned i)
{
    uint8_t st = LOAD(t->status);
    /* Kicks before DRIVER_OK, or after the device asked for a reset, are dropped. */
    if (!(st & VIRTIO_STATUS_DRIVER_OK) || (st & VIRTIO_STATUS_DEVICE_NEEDS_RESET) ||
        !t->q[i].enabled)
        return;
    t->dev->ops->queue_notify(t->dev, i);
    if (t->ops->settle)
        t->ops->settle(t);
    if (t->trace) {
        const uint8_t *u = ram_at(t, t->q[i].used, 4);
        uint16_t idx = u ? (uint16_t)(u[2] | u[3] << 8) : 0;
        const uint8_t *e = t->q[i].size
                               ? ram_at(t, t->q[i].used + 4 + 8ull * ((idx - 1u) % t->q[i].size), 8)
                               : NULL;
        fprintf(stderr, "  kick %u: used idx %u, last id %u len %u\n", i, idx,
                e ? (unsigned)(e[0] | e[1] << 8) : 0u, e ? (unsigned)(e[4] | e[5] << 8) : 0u);
    }
}

static void publish(struct fz_driver *t, unsigned i, uint16_t head)
{
    struct fz_queue *fq = &t->q[i];
    if (!fq->size)
        return;
    ram_put16(t, fq->avail + 4 + 2ull * (fq->avail_idx % fq->size), head);
    fq->avail_idx++;
    ram_put16(t, fq->avail + 2, fq->avail_idx);
}

/* ---- actions ---- */

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

static void op_chain(struct fz_driver *t, struct fz_in *in)
{
    unsigned i = fz_u8(in) % t->dev->num_queues;
    uint8_t ctl = fz_u8(in);
    unsigned n = FZ_CHAIN_NSEG(ctl);
    struct seg s[FZ_MAX_CHAIN_SEGS];
    for (unsigned k = 0; k < n; k++) {
        uint8_t f = fz_u8(in);
        s[k].len = fz_u16(in);
        s[k].writable = f & FZ_SEG_WRITABLE;
        s[k].gpa = (f & FZ_SEG_AT) ? fz_u16(in) : alloc_buf(t, s[k].len);
        if (!s[k].writable) {
            uint8_t want = fz_u8(in);
            uint8_t buf[255];
            size_t got = fz_bytes(in, buf, want);
            if (got > s[k].len)
                got = s[k].len;
            if (s[k].gpa < FZ_RAM_SIZE && got > FZ_RAM_SIZE - s[k].gpa)
                got = FZ_RAM_SIZE - s[k].gpa;
            if (s[k].gpa < FZ_RAM_SIZE)
                memcpy(t->ram + s[k].gpa, buf, got);
        }
    }
    struct fz_queue *fq = &t->q[i];
    if (!fq->size)
        return;
    uint16_t head = fq->next_desc;
    if (ctl & FZ_CHAIN_INDIRECT) {
        uint64_t table = alloc_buf(t, n * VIRTQ_DESC_SIZE);
        for (unsigned k = 0; k < n; k++)
            ram_put_desc(t, table + (uint64_t)k * VIRTQ_DESC_SIZE, s[k].gpa, s[k].len,
                         (uint16_t)((s[k].writable ? VIRTQ_DESC_F_WRITE : 0) |
                                    (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                         (uint16_t)(k + 1));
        ram_put_desc(t, fq->desc + (uint64_t)head * VIRTQ_DESC_SIZE, table, n * VIRTQ_DESC_SIZE,
                     VIRTQ_DESC_F_INDIRECT, 0);
        fq->next_desc = (uint16_t)((head + 1) % fq->size);
    } else {
        for (unsigned k = 0; k < n; k++) {
            uint16_t d = (uint16_t)((head + k) % fq->size);
            ram_put_desc(t, fq->desc + (uint64_t)d * VIRTQ_DESC_SIZE, s[k].gpa, s[k].len,
                         (uint16_t)((s[k].writable ? VIRTQ_DESC_F_WRITE : 0) |
                                    (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                         (uint16_t)((d + 1) % fq->size));
        }
        fq->next_desc = (uint16_t)((head + n) % fq->size);
    }
    if (!(ctl & FZ_CHAIN_UNPUBLISHED))
        publish(t, i, head);
    if (ctl & FZ_CHAIN_KICK)
        notify(t, i);
}

static void op_queue(struct fz_driver *t, struct fz_in *in)
{
    unsigned i = fz_u8(in) % t->dev->num_queues;
    uint16_t size = fz_u16(in);
    uint8_t mode = fz_u8(in);
    struct fz_queue *fq = &t->q[i];
    if (fq->enabled)
        return; /* virtio-pci ignores ring writes to an enabled queue */
    default_queue(t, i, size_ok(size, t->dev->queue_max_size) ? size : fq->size);
    if (mode & 1) {
        fq->desc = fz_u16(in);
        fq->avail = fz_u16(in);
        fq->used = fz_u16(in);
    }
    if (mode & 2)
        fq->desc += FZ_RAM_SIZE; /* outside RAM */
    enable_queue(t, i);
}

static void op_config(struct fz_driver *t, struct fz_in *in, bool write)
{
    struct virtio_device *d = t->dev;
    uint32_t off = fz_u8(in);
    uint32_t len = 1u << (fz_u8(in) & 3);
    uint8_t buf[8];
    memset(buf, write ? 0 : 0xa5, sizeof(buf));
    if (write)
        fz_bytes(in, buf, sizeof(buf));
    /* The transport checks the range (virtio_device.h). */
    if (d->config_size == 0)
        return;
    off %= d->config_size;
    if (off + len > d->config_size)
        return;
    if (write)
        d->ops->config_write(d, off, buf, len);
    else
        d->ops->config_read(d, off, buf, len);
}

static void act(struct fz_driver *t, struct fz_in *in)
{
    struct virtio_device *d = t->dev;
    uint8_t op = fz_u8(in) % FZ_OP_COUNT;
    if (t->trace)
        fprintf(stderr, "op %u\n", op);
    switch (op) {
    case FZ_OP_FEATURES: {
        uint8_t mode = fz_u8(in);
        uint64_t bits = fz_u64(in);
        t->driver_features =
            (mode & 1) ? (bits & d->device_features) | VIRTIO_BIT(VIRTIO_F_VERSION_1) : bits;
        break;
    }
    case FZ_OP_STATUS: write_status(t, fz_u8(in)); break;
    case FZ_OP_QUEUE: op_queue(t, in); break;
    case FZ_OP_QUEUE_BASE: {
        unsigned i = fz_u8(in) % d->num_queues;
        uint16_t base = fz_u16(in);
        if (t->q[i].enabled && !(LOAD(t->status) & VIRTIO_STATUS_DRIVER_OK) &&
            virtq_set_base(&d->queues[i], base) == 0)
            t->q[i].avail_idx = base;
        break;
    }
    case FZ_OP_MEM: {
        uint16_t gpa = fz_u16(in);
        uint8_t buf[255];
        size_t n = fz_bytes(in, buf, fz_u8(in));
        if (n > FZ_RAM_SIZE - gpa)
            n = FZ_RAM_SIZE - gpa;
        memcpy(t->ram + gpa, buf, n);
        break;
    }
    case FZ_OP_DESC: {
        struct fz_queue *fq = &t->q[fz_u8(in) % d->num_queues];
        uint16_t idx = fz_u16(in), addr = fz_u16(in);
        uint32_t len = fz_u32(in);
        uint16_t flags = fz_u16(in), next = fz_u16(in);
        if (fq->size)
            ram_put_desc(t, fq->desc + (uint64_t)(idx % fq->size) * VIRTQ_DESC_SIZE, addr, len,
                         flags, next);
        break;
    }
    case FZ_OP_AVAIL: {
        unsigned i = fz_u8(in) % d->num_queues;
        publish(t, i, fz_u16(in));
        break;
    }
    case FZ_OP_AVAIL_IDX: {
        struct fz_queue *fq = &t->q[fz_u8(in) % d->num_queues];
        fq->avail_idx = fz_u16(in);
        ram_put16(t, fq->avail + 2, fq->avail_idx);
        break;
    }
    case FZ_OP_RING_FLAGS: {
        struct fz_queue *fq = &t->q[fz_u8(in) % d->num_queues];
        uint16_t flags = fz_u16(in), used_event = fz_u16(in);
        ram_put16(t, fq->avail, flags);
        ram_put16(t, fq->avail + 4 + 2ull * fq->size, used_event);
        break;
    }
    case FZ_OP_CHAIN: op_chain(t, in); break;
    case FZ_OP_NOTIFY: notify(t, fz_u8(in) % d->num_queues); break;
    case FZ_OP_CFG_READ: op_config(t, in, false); break;
    case FZ_OP_CFG_WRITE: op_config(t, in, true); break;
    case FZ_OP_RESET: write_status(t, 0); break;
    case FZ_OP_DEVICE:
        if (t->ops->action)
            t->ops->action(t, in);
        break;
    }
}

/* The usual bring-up (3.1.1), so that most inputs spend their bytes on requests. */
static void bring_up(struct fz_driver *t, uint8_t flags, uint32_t mask)
{
    struct virtio_device *d = t->dev;
    uint64_t ring = VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC);
    uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | (mask & ~ring);
    if (flags & FZ_H_EVENT_IDX)
        f |= VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
    if (flags & FZ_H_INDIRECT)
        f |= VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC);
    t->driver_features = f & d->device_features;
    write_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    write_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    unsigned shift = (flags >> 4) & 7;
    uint16_t size = (uint16_t)(shift > 4 ? 1 : FZ_DEFAULT_QSIZE >> shift);
    if (size > d->queue_max_size)
        size = d->queue_max_size;
    for (unsigned i = 0; i < d->num_queues; i++) {
        default_queue(t, i, size);
        enable_queue(t, i);
    }
    write_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                        VIRTIO_STATUS_DRIVER_OK);
}

int fz_driver_init(struct fz_driver *t)
{
    memset(t, 0, sizeof(*t));
    t->ram = aligned_alloc(4096, FZ_RAM_SIZE);
    if (!t->ram)
        return -1;
    guest_memory_init_empty(&t->gm);
    const char *trace = getenv("VMKIT_FUZZ_TRACE");
    t->trace = trace && *trace;
    return gm_add_region(&t->gm, 0, FZ_RAM_SIZE, t->ram) == 0 ? 0 : -1;
}

void fz_run(struct fz_driver *t, struct virtio_device *dev, const struct fz_target_ops *ops,
            void *ctx, const uint8_t *data, size_t size)
{
    FZ_CHECK(dev->num_queues <= FZ_MAX_QUEUES);
    memset(t->ram, 0, FZ_RAM_SIZE);
    t->dev = dev;
    t->ops = ops;
    t->ctx = ctx;
    t->bump = FZ_DATA_GPA;
    dev->transport = (struct virtio_transport){ .notify_queue = tr_notify_queue,
                                                .notify_config = tr_notify_config,
                                                .needs_reset = tr_needs_reset,
                                                .ctx = t };
    for (unsigned i = 0; i < dev->num_queues; i++)
        default_queue(t, i, FZ_DEFAULT_QSIZE);
    t->status = 0;
    t->driver_features = 0;
    t->resets_asked = 0;
    t->queue_notifies = 0;

    struct fz_in in = { data, size };
    uint8_t hdr[FZ_HDR_LEN] = { 0 };
    fz_bytes(&in, hdr, sizeof(hdr));
    if (hdr[1] & FZ_H_BRING_UP)
        bring_up(t, hdr[1],
                 (uint32_t)hdr[2] | (uint32_t)hdr[3] << 8 | (uint32_t)hdr[4] << 16 |
                     (uint32_t)hdr[5] << 24);
    fz_check_queues(t);
    while (in.n > 0) {
        act(t, &in);
        fz_check_queues(t);
    }
    /* Leave the device as new for the next input. */
    device_reset(t);
}

/* ---- seeds ---- */

void fz_seed_begin(struct fz_seed *s, uint8_t variant, uint8_t flags, uint32_t device_features)
{
    s->n = 0;
    fz_seed_u8(s, variant);
    fz_seed_u8(s, flags);
    fz_seed_u32(s, device_features);
}

void fz_seed_chain(struct fz_seed *s, unsigned q, uint8_t ctl, const struct fz_seg *segs,
                   unsigned n)
{
    fz_seed_u8(s, FZ_OP_CHAIN);
    fz_seed_u8(s, (uint8_t)q);
    fz_seed_u8(s, (uint8_t)((ctl & ~15u) | ((n - 1) & 15u)));
    for (unsigned k = 0; k < n; k++) {
        fz_seed_u8(
            s, (uint8_t)((segs[k].writable ? FZ_SEG_WRITABLE : 0) | (segs[k].at ? FZ_SEG_AT : 0)));
        fz_seed_u16(s, segs[k].len);
        if (segs[k].at)
            fz_seed_u16(s, segs[k].gpa);
        if (!segs[k].writable) {
            fz_seed_u8(s, segs[k].data_len);
            fz_seed_bytes(s, segs[k].data, segs[k].data_len);
        }
    }
}

void fz_seed_notify(struct fz_seed *s, unsigned q)
{
    fz_seed_u8(s, FZ_OP_NOTIFY);
    fz_seed_u8(s, (uint8_t)q);
}
