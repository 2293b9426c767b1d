#include "virtio/rng.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC     1000000000ULL
/* When the bucket runs dry, wait until this much can be served (or the whole burst, when
 * smaller): retrying for every byte would wake the host thousands of times a second. */
#define RETRY_CHUNK      4096u
/* How long to wait when the host's entropy pool is not ready (getrandom says EAGAIN). */
#define ENTROPY_RETRY_NS (10 * 1000 * 1000ULL)
/* Refill at most this much elapsed time at once (keeps the arithmetic in 64 bits). */
#define MAX_REFILL_NS    (10 * NSEC_PER_SEC)

struct virtio_rng {
    struct virtio_device dev; /* first: the transport sees only this */
    struct event_loop *el;
    struct event_source timer;
    pthread_mutex_t lock; /* the queue, the bucket and the pending element */
    bool active;          /* between activate and reset */
    bool failed;          /* the driver broke §5.4: serve nothing until reset */
    bool timer_armed;
    uint64_t rate, burst;
    uint64_t tokens;  /* bytes that may be served now (<= burst) */
    uint64_t frac;    /* leftover of the refill, in byte-nanoseconds */
    uint64_t last_ns; /* CLOCK_MONOTONIC of the last refill */
    bool have_elem;   /* elem is popped and not yet returned */
    struct virtq_elem elem;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void refill(struct virtio_rng *r)
{
    uint64_t now = now_ns();
    uint64_t dt = now - r->last_ns;
    r->last_ns = now;
    if (dt > MAX_REFILL_NS)
        dt = MAX_REFILL_NS;
    /* rate <= 2^32 and dt <= 10^10 < 2^34 would overflow: split whole seconds off. */
    uint64_t add = (dt / NSEC_PER_SEC) * r->rate;
    r->frac += (dt % NSEC_PER_SEC) * r->rate;
    add += r->frac / NSEC_PER_SEC;
    r->frac %= NSEC_PER_SEC;
    r->tokens = r->tokens + add > r->burst ? r->burst : r->tokens + add;
    if (r->tokens == r->burst)
        r->frac = 0;
}

static void arm_timer(struct virtio_rng *r, uint64_t ns)
{
    if (ns == 0)
        ns = 1;
    struct itimerspec its = { .it_value = { .tv_sec = (time_t)(ns / NSEC_PER_SEC),
                                            .tv_nsec = (long)(ns % NSEC_PER_SEC) } };
    if (timerfd_settime(r->timer.fd, 0, &its, NULL) == 0)
        r->timer_armed = true;
}

static void disarm_timer(struct virtio_rng *r)
{
    struct itimerspec its = { 0 };
    timerfd_settime(r->timer.fd, 0, &its, NULL);
    r->timer_armed = false;
}

/* Time until the bucket holds enough for a useful fill. */
static uint64_t wait_for_tokens_ns(const struct virtio_rng *r)
{
    uint64_t want = r->burst < RETRY_CHUNK ? r->burst : RETRY_CHUNK;
    if (r->tokens >= want)
        return 1;
    uint64_t missing = want - r->tokens;
    /* missing <= 4096 and frac < 1e9: no overflow. */
    uint64_t need = missing * NSEC_PER_SEC - r->frac;
    return (need + r->rate - 1) / r->rate;
}

/* Fills up to max bytes of e's device-writable buffers from getrandom without blocking;
 * returns the bytes written (fewer when the host's pool is not ready). */
static uint64_t fill_random(const struct virtq_elem *e, uint64_t max)
{
    uint64_t done = 0;
    for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < max; i++) {
        uint8_t *p = e->iov[i].iov_base;
        size_t len = e->iov[i].iov_len;
        size_t off = 0;
        while (off < len && done < max) {
            size_t want = len - off;
            if (want > max - done)
                want = (size_t)(max - done);
            ssize_t n = getrandom(p + off, want, GRND_NONBLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return done;
            off += (size_t)n;
            done += (uint64_t)n;
        }
    }
    return done;
}

/* Serves queue 0 until it is empty, the bucket is, or the driver broke a rule. */
static void serve_locked(struct virtio_rng *r)
{
    struct virtio_device *d = &r->dev;
    struct virtq *q = &d->queues[0];
    if (!r->active || r->failed)
        return;
    for (;;) {
        refill(r);
        if (r->tokens == 0) {
            arm_timer(r, wait_for_tokens_ns(r));
            return;
        }
        if (!r->have_elem) {
            int rc = virtq_pop(q, &r->elem);
            if (rc < 0) {
                virtio_device_queue_failed(d, 0);
                r->failed = true;
                return;
            }
            if (rc == 0) {
                /* Empty: ask for kicks, and pop again if buffers slipped in meanwhile. */
                if (virtq_set_notification(q, true))
                    continue;
                return;
            }
            r->have_elem = true;
            /* §5.4.6.1: the driver MUST NOT place driver-readable buffers into the
             * queue, and the device must place at least one byte: a chain with
             * readable buffers or no writable byte is a broken driver. */
            if (r->elem.out_num > 0 || r->elem.in_len == 0) {
                r->have_elem = false;
                r->failed = true;
                if (d->transport.needs_reset)
                    d->transport.needs_reset(d->transport.ctx,
                                             r->elem.out_num > 0
                                                 ? "virtio-rng: request has device-readable buffers"
                                                 : "virtio-rng: request has no writable bytes");
                return;
            }
        }
        uint64_t max = r->elem.in_len < r->tokens ? r->elem.in_len : r->tokens;
        uint64_t got = fill_random(&r->elem, max);
        if (got == 0) {
            /* Keep the request: it gets its bytes once the host's pool is ready. */
            arm_timer(r, ENTROPY_RETRY_NS);
            return;
        }
        r->tokens -= got;
        r->have_elem = false;
        virtio_device_complete(d, 0, &r->elem, (uint32_t)got);
        if (virtq_is_broken(q)) {
            r->failed = true;
            return;
        }
    }
}

static void on_timer(void *ctx, uint32_t events)
{
    struct virtio_rng *r = ctx;
    uint64_t expirations;
    if (read(r->timer.fd, &expirations, sizeof(expirations)) < 0 && errno == EAGAIN)
        return;
    pthread_mutex_lock(&r->lock);
    r->timer_armed = false;
    serve_locked(r);
    pthread_mutex_unlock(&r->lock);
}

static int rng_activate(struct virtio_device *d)
{
    struct virtio_rng *r = (struct virtio_rng *)d;
    pthread_mutex_lock(&r->lock);
    r->active = true;
    r->failed = false;
    serve_locked(r); /* buffers may be there already */
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void rng_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_rng *r = (struct virtio_rng *)d;
    if (q != 0)
        return;
    pthread_mutex_lock(&r->lock);
    if (!r->timer_armed) /* when armed, the timer serves: a kick cannot bypass the bucket */
        serve_locked(r);
    pthread_mutex_unlock(&r->lock);
}

static void rng_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    memset(data, 0, len); /* no configuration space */
}

static void rng_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                             uint32_t len)
{
}

static void rng_reset(struct virtio_device *d)
{
    struct virtio_rng *r = (struct virtio_rng *)d;
    pthread_mutex_lock(&r->lock);
    disarm_timer(r);
    r->active = false;
    r->failed = false;
    /* A chain held while the host's entropy pool was not ready goes back: a vhost-user
     * front end that stops and restarts the ring (a paused QEMU) resumes before it, so
     * the guest's request is served instead of lost. */
    if (r->have_elem && virtq_unpop(&d->queues[0], &r->elem) < 0) {
        /* Stale or not the last one: the driver's reset drops it anyway. */
    }
    r->have_elem = false;
    pthread_mutex_unlock(&r->lock);
}

static void rng_destroy(struct virtio_device *d)
{
    struct virtio_rng *r = (struct virtio_rng *)d;
    if (!r)
        return;
    event_loop_remove(r->el, &r->timer);
    close(r->timer.fd);
    pthread_mutex_destroy(&r->lock);
    virtio_device_fini(d);
    free(r);
}

static const struct virtio_device_ops rng_ops = {
    .activate = rng_activate,
    .queue_notify = rng_queue_notify,
    .config_read = rng_config_read,
    .config_write = rng_config_write,
    .reset = rng_reset,
    .destroy = rng_destroy,
};

struct virtio_device *virtio_rng_new(struct event_loop *el, uint64_t bytes_per_sec, uint64_t burst)
{
    if (!el || bytes_per_sec == 0 || bytes_per_sec > VIRTIO_RNG_MAX_RATE || burst == 0 ||
        burst > VIRTIO_RNG_MAX_RATE)
        return NULL;
    struct virtio_rng *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (virtio_device_init(&r->dev, &rng_ops, "virtio-rng", VIRTIO_ID_RNG, 1,
                           VIRTIO_RNG_QUEUE_SIZE) < 0)
        goto fail_free;
    r->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->timer.fd < 0)
        goto fail_fini;
    r->timer.handler = on_timer;
    r->timer.ctx = r;
    if (event_loop_add(el, &r->timer) < 0)
        goto fail_close;
    pthread_mutex_init(&r->lock, NULL);
    r->el = el;
    r->rate = bytes_per_sec;
    r->burst = burst;
    r->tokens = burst;
    r->last_ns = now_ns();
    return &r->dev;

fail_close:
    close(r->timer.fd);
fail_fini:
    virtio_device_fini(&r->dev);
fail_free:
    free(r);
    return NULL;
}
