#include "virtio/balloon.h"

#include <endian.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_SIZE           (1u << VIRTIO_BALLOON_PAGE_SHIFT)
/* PFNs read from one inflate or deflate buffer at most: Linux sends 256 at a time; a driver
 * that sends a huge buffer gets the first ones served and the rest ignored (and counted),
 * so one kick cannot keep the thread that serves it busy for long. */
#define MAX_PFNS_PER_BUFFER 4096u
#define PFN_CHUNK           256u

enum queue_role { Q_INFLATE, Q_DEFLATE, Q_REPORTING, Q_NONE };

struct virtio_balloon {
    struct virtio_device dev; /* first: the transport sees only this */
    pthread_mutex_t lock;     /* everything below and the queues */
    uint32_t max_pages;       /* the guest's RAM in pages */
    uint32_t target;          /* num_pages */
    uint32_t actual;          /* as the driver last wrote it */
    bool active;              /* between activate and reset */
    struct virtio_balloon_stats stats;
    struct virtq_elem elem;
};

static struct virtio_balloon *to_balloon(struct virtio_device *d)
{
    return (struct virtio_balloon *)d;
}

/* Queues after the first two exist only when their feature is negotiated, numbered in the
 * spec's order (statistics, free page hinting, reporting) without gaps, as drivers number
 * them. */
static enum queue_role role_of(const struct virtio_balloon *b, unsigned q)
{
    if (q == 0)
        return Q_INFLATE;
    if (q == 1)
        return Q_DEFLATE;
    unsigned next = 2;
    if (virtio_has_feature(&b->dev, VIRTIO_BALLOON_F_STATS_VQ))
        next++;
    if (virtio_has_feature(&b->dev, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
        next++;
    if (virtio_has_feature(&b->dev, VIRTIO_BALLOON_F_PAGE_REPORTING) && q == next)
        return Q_REPORTING;
    return Q_NONE;
}

static void driver_broke(struct virtio_balloon *b, const char *why)
{
    b->active = false;
    if (b->dev.transport.needs_reset)
        b->dev.transport.needs_reset(b->dev.transport.ctx, why);
}

/* A run of guest pages contiguous both in guest-physical and host addresses, released in
 * one call. */
struct run {
    uint64_t gpa;
    uint8_t *host;
    uint64_t len;
};

static void run_flush(struct virtio_balloon *b, const struct guest_memory *gm, struct run *r)
{
    if (r->len && gm_discard(gm, r->host, r->len) < 0)
        b->stats.discard_errors++;
    r->len = 0;
}

/* Releases (inflate) or only counts (deflate: the page faults back in as zeroes when the
 * guest touches it) the PFNs of one buffer. */
static void serve_pfns(struct virtio_balloon *b, const struct virtq *q, bool inflate)
{
    const struct virtq_elem *e = &b->elem;
    uint64_t n = e->out_len / sizeof(uint32_t);
    if (n > MAX_PFNS_PER_BUFFER) {
        b->stats.bad_pfns += n - MAX_PFNS_PER_BUFFER;
        n = MAX_PFNS_PER_BUFFER;
    }
    struct run run = { 0 };
    uint32_t pfn[PFN_CHUNK];
    for (uint64_t done = 0; done < n;) {
        unsigned k = n - done < PFN_CHUNK ? (unsigned)(n - done) : PFN_CHUNK;
        /* A copy: the guest may rewrite the buffer while we read it. */
        virtq_elem_read(e, done * sizeof(uint32_t), pfn, k * sizeof(uint32_t));
        for (unsigned i = 0; i < k; i++) {
            uint64_t gpa = (uint64_t)le32toh(pfn[i]) << VIRTIO_BALLOON_PAGE_SHIFT;
            uint8_t *host = gm_ptr(q->gm, gpa, PAGE_SIZE);
            if (!host) {
                b->stats.bad_pfns++;
                continue;
            }
            if (!inflate) {
                b->stats.deflated_pages++;
                continue;
            }
            b->stats.inflated_pages++;
            if (run.len && gpa == run.gpa + run.len && host == run.host + run.len) {
                run.len += PAGE_SIZE;
                continue;
            }
            run_flush(b, q->gm, &run);
            run = (struct run){ .gpa = gpa, .host = host, .len = PAGE_SIZE };
        }
        done += k;
    }
    run_flush(b, q->gm, &run);
}

/* Free page reporting: each device-writable buffer is a range of free guest memory. */
static void serve_report(struct virtio_balloon *b, const struct virtq *q)
{
    const struct virtq_elem *e = &b->elem;
    for (unsigned i = e->out_num; i < e->out_num + e->in_num; i++) {
        if (gm_discard(q->gm, e->iov[i].iov_base, e->iov[i].iov_len) < 0) {
            b->stats.discard_errors++;
            continue;
        }
        b->stats.reported_bytes += e->iov[i].iov_len;
    }
}

static void serve_locked(struct virtio_balloon *b, unsigned qi)
{
    enum queue_role role = role_of(b, qi);
    if (!b->active || role == Q_NONE)
        return;
    struct virtq *q = &b->dev.queues[qi];
    for (;;) {
        int rc = virtq_pop(q, &b->elem);
        if (rc < 0) {
            b->active = false;
            virtio_device_queue_failed(&b->dev, qi);
            return;
        }
        if (rc == 0) {
            if (virtq_set_notification(q, true))
                continue;
            return;
        }
        if (role == Q_REPORTING) {
            /* §5.5.6.5: reported ranges are device-writable buffers. */
            if (b->elem.out_num > 0) {
                driver_broke(b, "virtio-balloon: reported range is device-readable");
                return;
            }
            serve_report(b, q);
        } else {
            /* §5.5.6: PFN arrays are device-readable. */
            if (b->elem.in_num > 0) {
                driver_broke(b, "virtio-balloon: PFN array has device-writable buffers");
                return;
            }
            serve_pfns(b, q, role == Q_INFLATE);
        }
        virtio_device_complete(&b->dev, qi, &b->elem, 0);
        if (virtq_is_broken(q)) {
            b->active = false;
            return;
        }
    }
}

static int balloon_activate(struct virtio_device *d)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    b->active = true;
    for (unsigned q = 0; q < d->num_queues; q++)
        serve_locked(b, q); /* buffers may be there already */
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static void balloon_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_balloon *b = to_balloon(d);
    if (q >= d->num_queues)
        return;
    pthread_mutex_lock(&b->lock);
    serve_locked(b, q);
    pthread_mutex_unlock(&b->lock);
}

static void balloon_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    uint32_t cfg[2] = { htole32(b->target), htole32(b->actual) };
    pthread_mutex_unlock(&b->lock);
    memcpy(data, (const uint8_t *)cfg + offset, len);
}

static void balloon_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                                 uint32_t len)
{
    struct virtio_balloon *b = to_balloon(d);
    /* Only actual (bytes 4..7) is the driver's to write; num_pages is the device's. */
    pthread_mutex_lock(&b->lock);
    uint32_t cfg[2] = { htole32(b->target), htole32(b->actual) };
    for (uint32_t i = 0; i < len; i++)
        if (offset + i >= 4)
            ((uint8_t *)cfg)[offset + i] = ((const uint8_t *)data)[i];
    b->actual = le32toh(cfg[1]);
    pthread_mutex_unlock(&b->lock);
}

static void balloon_reset(struct virtio_device *d)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    b->active = false;
    b->actual = 0; /* a reset driver holds no pages; the target stays */
    pthread_mutex_unlock(&b->lock);
}

static void balloon_destroy(struct virtio_device *d)
{
    struct virtio_balloon *b = to_balloon(d);
    if (!b)
        return;
    pthread_mutex_destroy(&b->lock);
    virtio_device_fini(d);
    free(b);
}

static const struct virtio_device_ops balloon_ops = {
    .activate = balloon_activate,
    .queue_notify = balloon_queue_notify,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .reset = balloon_reset,
    .destroy = balloon_destroy,
};

struct virtio_device *virtio_balloon_new(const struct virtio_balloon_params *p)
{
    if (!p || p->memory_size < PAGE_SIZE)
        return NULL;
    struct virtio_balloon *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    unsigned queues = p->page_reporting ? 3 : 2;
    if (virtio_device_init(&b->dev, &balloon_ops, "virtio-balloon", VIRTIO_ID_BALLOON, queues,
                           VIRTIO_BALLOON_QUEUE_SIZE) < 0) {
        free(b);
        return NULL;
    }
    if (p->deflate_on_oom)
        b->dev.device_features |= VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    if (p->page_reporting)
        b->dev.device_features |= VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_REPORTING);
    b->dev.config_size = VIRTIO_BALLOON_CONFIG_SIZE;
    uint64_t pages = p->memory_size >> VIRTIO_BALLOON_PAGE_SHIFT;
    b->max_pages = pages > UINT32_MAX ? UINT32_MAX : (uint32_t)pages;
    pthread_mutex_init(&b->lock, NULL);
    return &b->dev;
}

void virtio_balloon_set_target_pages(struct virtio_device *d, uint32_t pages)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    if (pages > b->max_pages)
        pages = b->max_pages;
    bool tell = b->active && pages != b->target;
    b->target = pages;
    pthread_mutex_unlock(&b->lock);
    /* A driver not yet running reads num_pages when it starts. */
    if (tell && d->transport.notify_config)
        d->transport.notify_config(d->transport.ctx);
}

uint32_t virtio_balloon_target_pages(struct virtio_device *d)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    uint32_t t = b->target;
    pthread_mutex_unlock(&b->lock);
    return t;
}

uint32_t virtio_balloon_actual_pages(struct virtio_device *d)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    uint32_t a = b->actual;
    pthread_mutex_unlock(&b->lock);
    return a;
}

void virtio_balloon_get_stats(struct virtio_device *d, struct virtio_balloon_stats *out)
{
    struct virtio_balloon *b = to_balloon(d);
    pthread_mutex_lock(&b->lock);
    *out = b->stats;
    pthread_mutex_unlock(&b->lock);
}
