#include "virtio_test_driver.h"

#include <string.h>
#include <time.h>

#define TD_RING_BASE 0x10000ull
#define TD_DATA_BASE 0x200000ull

static void td_notify_queue(void *ctx, unsigned q)
{
    struct test_driver *t = ctx;
    pthread_mutex_lock(&t->lock);
    if (q < TD_MAX_QUEUES)
        t->notified[q]++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void td_notify_config(void *ctx)
{
    struct test_driver *t = ctx;
    pthread_mutex_lock(&t->lock);
    t->config_changes++;
    pthread_mutex_unlock(&t->lock);
}

static void td_needs_reset(void *ctx, const char *why)
{
    struct test_driver *t = ctx;
    pthread_mutex_lock(&t->lock);
    t->resets_asked++;
    t->reset_why = why;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void *td_ptr(struct test_driver *t, uint64_t gpa, uint64_t len)
{
    return gm_ptr(&t->gm, gpa, len);
}

static void put16(struct test_driver *t, uint64_t gpa, uint16_t v)
{
    __atomic_store_n((uint16_t *)td_ptr(t, gpa, 2), v, __ATOMIC_RELEASE);
}

static uint16_t get16(struct test_driver *t, uint64_t gpa)
{
    return __atomic_load_n((uint16_t *)td_ptr(t, gpa, 2), __ATOMIC_ACQUIRE);
}

static uint32_t get32(struct test_driver *t, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, td_ptr(t, gpa, 4), 4);
    return v;
}

int td_layout(struct test_driver *t, unsigned num_queues, uint16_t size)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    if (num_queues > TD_MAX_QUEUES || size > TD_MAX_QUEUE_SIZE ||
        guest_memory_init(&t->gm, TD_RAM_SIZE) < 0)
        return -1;
    t->next_data = TD_DATA_BASE;
    for (unsigned i = 0; i < num_queues; i++) {
        struct td_queue *q = &t->q[i];
        q->size = size;
        q->desc = TD_RING_BASE + 0x4000ull * i;
        q->avail = q->desc + 0x1000;
        q->used = q->desc + 0x2000;
    }
    return 0;
}

int td_init(struct test_driver *t, struct virtio_device *dev, uint64_t accept)
{
    return td_init_sized(t, dev, accept, TD_QUEUE_SIZE);
}

int td_init_sized(struct test_driver *t, struct virtio_device *dev, uint64_t accept, uint16_t size)
{
    if (td_layout(t, dev->num_queues, size) < 0)
        return -1;
    t->dev = dev;
    t->next_data = TD_DATA_BASE;
    dev->transport = (struct virtio_transport){ .notify_queue = td_notify_queue,
                                                .notify_config = td_notify_config,
                                                .needs_reset = td_needs_reset,
                                                .ctx = t };
    dev->driver_features = dev->device_features & accept;
    for (unsigned i = 0; i < dev->num_queues; i++) {
        struct td_queue *q = &t->q[i];
        q->size = size < dev->queue_max_size ? size : dev->queue_max_size;
        struct virtq *vq = &dev->queues[i];
        vq->gm = &t->gm;
        vq->size = q->size;
        vq->desc_addr = q->desc;
        vq->avail_addr = q->avail;
        vq->used_addr = q->used;
        vq->event_idx = virtio_has_feature(dev, VIRTIO_F_RING_EVENT_IDX);
        vq->indirect = virtio_has_feature(dev, VIRTIO_F_RING_INDIRECT_DESC);
        if (virtq_enable(vq) < 0)
            return -1;
    }
    return dev->ops->activate(dev);
}

void td_fini(struct test_driver *t)
{
    if (t->dev) {
        t->dev->ops->reset(t->dev);
        for (unsigned i = 0; i < t->dev->num_queues; i++)
            virtq_disable(&t->dev->queues[i]);
    }
    if (t->gm.base)
        guest_memory_destroy(&t->gm);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
}

uint64_t td_alloc(struct test_driver *t, uint32_t len)
{
    uint64_t gpa = t->next_data;
    t->next_data = (t->next_data + len + 15) & ~15ull;
    memset(td_ptr(t, gpa, len), 0, len);
    return gpa;
}

uint16_t td_add(struct test_driver *t, unsigned qi, const struct td_buf *bufs, unsigned n)
{
    struct td_queue *q = &t->q[qi];
    uint16_t head = q->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t d = (uint16_t)((head + i) % q->size);
        uint8_t *desc = td_ptr(t, q->desc + 16ull * d, 16);
        uint64_t addr = bufs[i].gpa;
        uint32_t len = bufs[i].len;
        uint16_t flags = (uint16_t)((bufs[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
                                    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        uint16_t next = (uint16_t)((d + 1) % q->size);
        memcpy(desc, &addr, 8);
        memcpy(desc + 8, &len, 4);
        memcpy(desc + 12, &flags, 2);
        memcpy(desc + 14, &next, 2);
    }
    q->next_desc = (uint16_t)((head + n) % q->size);
    put16(t, q->avail + 4 + 2ull * (q->avail_idx % q->size), head);
    q->avail_idx++;
    put16(t, q->avail + 2, q->avail_idx);
    return head;
}

void td_kick(struct test_driver *t, unsigned q)
{
    t->dev->ops->queue_notify(t->dev, q);
}

uint16_t td_used_idx(struct test_driver *t, unsigned qi)
{
    return get16(t, t->q[qi].used + 2);
}

void td_used_entry(struct test_driver *t, unsigned qi, uint16_t i, uint32_t *id, uint32_t *len)
{
    const struct td_queue *q = &t->q[qi];
    uint64_t elem = q->used + 4 + 8ull * (i % q->size);
    if (id)
        *id = get32(t, elem);
    if (len)
        *len = get32(t, elem + 4);
}

void td_set_avail_idx(struct test_driver *t, unsigned qi, uint16_t idx)
{
    put16(t, t->q[qi].avail + 2, idx);
}

bool td_used(struct test_driver *t, unsigned qi, uint32_t *id, uint32_t *len)
{
    struct td_queue *q = &t->q[qi];
    if (get16(t, q->used + 2) == q->used_seen)
        return false;
    uint64_t elem = q->used + 4 + 8ull * (q->used_seen % q->size);
    if (id)
        *id = get32(t, elem);
    if (len)
        *len = get32(t, elem + 4);
    q->used_seen++;
    return true;
}

static void sleep_1ms(void)
{
    nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
}

bool td_wait_used(struct test_driver *t, unsigned q, uint32_t *id, uint32_t *len, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited++) {
        if (td_used(t, q, id, len))
            return true;
        sleep_1ms();
    }
    return false;
}

bool td_wait_used_idx(struct test_driver *t, unsigned q, uint16_t count, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited++) {
        if (td_used_idx(t, q) == count)
            return true;
        sleep_1ms();
    }
    return false;
}

unsigned td_notified(struct test_driver *t, unsigned q)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = q < TD_MAX_QUEUES ? t->notified[q] : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

unsigned td_resets(struct test_driver *t, const char **why)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = t->resets_asked;
    if (why)
        *why = t->reset_why;
    pthread_mutex_unlock(&t->lock);
    return n;
}
