/* virtio-fs. Workers pop chains themselves. A worker that takes a queue drains it: it pops and
 * serves chain after chain until a pop finds the ring empty (which asks the driver for a kick at
 * the next chain), without waking anyone or taking the device's lock in between. A kick wakes
 * a sleeping worker only when nobody drains that queue (whoever does sees the chain), and a
 * worker that pops a chain with another behind it wakes one sleeping worker (one wake-up in
 * flight at a time) to take the next while it waits on the host file system. So a busy queue
 * wakes nobody, and at queue depth 1 a driver that posts its next request before the worker
 * finished the last (the driver woken by the reply on the worker's CPU) wakes nobody either;
 * otherwise a request costs the kick (the loop's thread) and one worker. Wake-ups go to the
 * worker that slept last (its caches are warm), each worker on a condition variable of its
 * own, signalled after the lock is let go. A queue's ring is touched under that queue's lock
 * only; the driver is interrupted after that lock is let go.
 *
 * When the transport hands over the queues' kick fds (take_kick), an idle worker polls them
 * itself instead of sleeping on its condition variable, and serves the kick it reads: a
 * request then wakes one thread, not the transport's thread and then a worker. While that
 * worker serves, kicks on other queues wait in their eventfds for the next worker to go idle
 * (the queue it drains asks for none); a second queue kicked at once wakes a helper. */
#include "virtio/fs.h"
#include "core/error.h"
#include "core/le_bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FS_WORKERS 4u

struct fs_worker {
    struct virtio_fs *fs;
    pthread_t thread;
    pthread_cond_t cv;      /* signalled when woken is set */
    bool woken;             /* under the device's lock: taken off the idle stack */
    struct virtq_elem elem; /* one chain at a time, kept: a chain's iovecs are 16 KiB */
};

struct virtio_fs {
    struct virtio_device vdev;
    struct virtio_fs_backend be;
    uint8_t config[VIRTIO_FS_CFG_SIZE];
    pthread_mutex_t *qlock; /* one per queue: pop and push on that ring */
    atomic_bool active;     /* between activate and reset; written under lock */

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t idle_cv;
    atomic_uint kicked;      /* queues that may hold chains no worker will look at; a hint too */
    uint8_t *draining;       /* per queue: workers popping it, who will see any new chain */
    atomic_uint busy;        /* workers draining; read without the lock as a hint */
    atomic_uint waking;      /* woken, not yet running; read without the lock as a hint */
    atomic_uint nidle;       /* workers on the idle stack; the same */
    struct fs_worker **idle; /* sleeping workers, the last to sleep on top */
    int *kick_fd;            /* per queue: our dup of its kick fd (take_kick), or -1 */
    unsigned nkick;          /* of them >= 0 */
    bool polling;            /* a worker polls the kick fds, without the lock */
    struct pollfd *pfd;      /* the poller's: wake_fd, then the kick fds */
    unsigned *pfd_queue;     /* the queue of each pfd entry past the first */
    int *retired;            /* kick fds replaced while polled: the poller closes them */
    unsigned nretired;
    int wake_fd; /* eventfd: the poller looks again (new kick fds, quit) */
    bool quit;
    struct fs_worker *workers;
    unsigned nworkers;
};

static struct virtio_fs *to_fs(struct virtio_device *d)
{
    return (struct virtio_fs *)d;
}

/* Under the lock: takes the worker that slept last off the idle stack; signal it after
 * unlocking. NULL when none sleeps. */
static struct fs_worker *wake_one(struct virtio_fs *fs)
{
    unsigned n = atomic_load_explicit(&fs->nidle, memory_order_relaxed);
    if (n == 0 || fs->quit)
        return NULL;
    struct fs_worker *w = fs->idle[n - 1];
    atomic_store_explicit(&fs->nidle, n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fs->waking, 1, memory_order_relaxed);
    w->woken = true;
    return w;
}

/* Under the lock: marks q kicked, and takes a sleeping worker to signal unless those being
 * woken already are enough for the queues marked. */
static struct fs_worker *kick_locked(struct virtio_fs *fs, unsigned q)
{
    uint32_t kicked = atomic_fetch_or_explicit(&fs->kicked, 1u << q, memory_order_relaxed);
    kicked |= 1u << q;
    if ((unsigned)__builtin_popcount(kicked) <=
        atomic_load_explicit(&fs->waking, memory_order_relaxed))
        return NULL;
    return wake_one(fs);
}

static void signal_worker(struct fs_worker *w)
{
    if (w)
        pthread_cond_signal(&w->cv);
}

static void serve(struct virtio_fs *fs, unsigned q, struct virtq_elem *e)
{
    size_t n = fs->be.handle(fs->be.ctx, e->iov, e->out_num, e->iov + e->out_num, e->in_num);
    if (n > e->in_len)
        n = 0; /* a back end never writes more than out holds; never claim it did */
    struct virtq *vq = &fs->vdev.queues[q];
    pthread_mutex_lock(&fs->qlock[q]);
    int r = virtq_push(vq, e, (uint32_t)n);
    bool notify = r == 0 && virtq_should_notify(vq);
    pthread_mutex_unlock(&fs->qlock[q]);
    /* Interrupting the driver wakes it: not while others wait for the ring. */
    if (r < 0)
        virtio_device_queue_failed(&fs->vdev, q);
    else if (notify && fs->vdev.transport.notify_queue)
        fs->vdev.transport.notify_queue(fs->vdev.transport.ctx, q);
}

/* One chain from queue q into e: 1, 0 (none: kicks are asked for again) or -EIO (the queue
 * broke); *more: whether another waits behind it. While a worker drains a queue the driver
 * is asked not to kick (the worker pops again anyway): at queue depth 1 a driver that posts
 * its next request before the worker is done with the last one then wakes nobody. */
static int pop(struct virtio_fs *fs, unsigned q, struct virtq_elem *e, bool *more)
{
    struct virtq *vq = &fs->vdev.queues[q];
    pthread_mutex_lock(&fs->qlock[q]);
    (void)virtq_set_notification(vq, false);
    int r;
    while ((r = virtq_pop(vq, e)) == 0 && virtq_set_notification(vq, true))
        (void)virtq_set_notification(vq, false); /* a chain came as kicks were asked for */
    *more = r == 1 && virtq_has_avail(vq);
    pthread_mutex_unlock(&fs->qlock[q]);
    if (r < 0)
        virtio_device_queue_failed(&fs->vdev, q);
    return r;
}

/* Another chain waits behind the one this worker is about to serve: another worker takes it,
 * unless every worker drains already (a hint: at worst the chain waits for this one). The mark
 * is for a worker being woken or on its way to sleep, too. */
static void call_helper(struct virtio_fs *fs, unsigned q)
{
    if (atomic_load_explicit(&fs->busy, memory_order_relaxed) >= fs->nworkers)
        return;
    pthread_mutex_lock(&fs->lock);
    struct fs_worker *w = kick_locked(fs, q);
    pthread_mutex_unlock(&fs->lock);
    signal_worker(w);
}

/* Pops and serves queue q's chains until it is empty (or the device stops). Returns true when
 * it left q with chains in it, kicks still off: the caller marks q kicked. */
static bool drain(struct virtio_fs *fs, struct fs_worker *w, unsigned q)
{
    while (atomic_load_explicit(&fs->active, memory_order_acquire)) {
        bool more;
        if (pop(fs, q, &w->elem, &more) != 1)
            return false; /* empty: the pop armed the kick; broken: reported */
        if (more)
            call_helper(fs, q);
        serve(fs, q, &w->elem);
        /* Another queue was kicked and no worker sleeps to take it (FORGETs on hiprio while
         * requests keep coming): go there, and come back. */
        if ((atomic_load_explicit(&fs->kicked, memory_order_relaxed) & ~(1u << q)) &&
            atomic_load_explicit(&fs->nidle, memory_order_relaxed) == 0)
            return true;
    }
    return false;
}

/* Under the lock, which it lets go while it waits: polls the kick fds until one fires (or
 * they change), and marks the queues kicked. The caller serves one; a helper is woken for
 * each other queue kicked at once. */
static void poll_kicks(struct virtio_fs *fs)
{
    unsigned n = 0;
    fs->pfd[n++] = (struct pollfd){ .fd = fs->wake_fd, .events = POLLIN };
    for (unsigned q = 0; q < fs->vdev.num_queues; q++) {
        if (fs->kick_fd[q] < 0)
            continue;
        fs->pfd_queue[n] = q;
        fs->pfd[n++] = (struct pollfd){ .fd = fs->kick_fd[q], .events = POLLIN };
    }
    fs->polling = true; /* the arrays are this worker's until it clears it */
    pthread_mutex_unlock(&fs->lock);
    uint32_t mask = 0;
    if (poll(fs->pfd, n, -1) > 0) {
        for (unsigned i = 0; i < n; i++) {
            if (!(fs->pfd[i].revents & POLLIN))
                continue;
            eventfd_t v;
            (void)eventfd_read(fs->pfd[i].fd, &v); /* EAGAIN: another reader took it */
            if (i > 0)
                mask |= 1u << fs->pfd_queue[i];
        }
    }
    pthread_mutex_lock(&fs->lock);
    fs->polling = false;
    for (unsigned i = 0; i < fs->nretired; i++)
        close(fs->retired[i]);
    if (fs->nretired)
        pthread_cond_broadcast(&fs->idle_cv); /* a take_kick may wait for the room */
    fs->nretired = 0;
    if (!mask)
        return;
    uint32_t kicked = atomic_fetch_or_explicit(&fs->kicked, mask, memory_order_relaxed) | mask;
    /* This worker takes one queue; the rest get helpers. */
    if ((unsigned)__builtin_popcount(kicked) >
        1 + atomic_load_explicit(&fs->waking, memory_order_relaxed))
        signal_worker(wake_one(fs));
}

static bool worker_polls(const struct virtio_fs *fs)
{
    return fs->nkick && !fs->polling;
}

static void *worker_main(void *arg)
{
    struct fs_worker *w = arg;
    struct virtio_fs *fs = w->fs;
    pthread_mutex_lock(&fs->lock);
    for (;;) {
        if (fs->quit)
            break;
        uint32_t kicked = atomic_load_explicit(&fs->kicked, memory_order_relaxed);
        if (!atomic_load_explicit(&fs->active, memory_order_relaxed) || !kicked) {
            if (worker_polls(fs)) {
                poll_kicks(fs);
                continue;
            }
            unsigned n = atomic_load_explicit(&fs->nidle, memory_order_relaxed);
            fs->idle[n] = w;
            atomic_store_explicit(&fs->nidle, n + 1, memory_order_relaxed);
            w->woken = false;
            while (!w->woken && !fs->quit)
                pthread_cond_wait(&w->cv, &fs->lock);
            if (w->woken)
                atomic_fetch_sub_explicit(&fs->waking, 1, memory_order_relaxed);
            continue;
        }
        unsigned q = (unsigned)__builtin_ctz(kicked); /* hiprio first */
        /* A kick while we drain sets it again: we look again. */
        atomic_store_explicit(&fs->kicked, kicked & ~(1u << q), memory_order_relaxed);
        fs->draining[q]++;
        atomic_fetch_add_explicit(&fs->busy, 1, memory_order_relaxed);
        pthread_mutex_unlock(&fs->lock);

        bool left = drain(fs, w, q);

        pthread_mutex_lock(&fs->lock);
        if (left)
            atomic_fetch_or_explicit(&fs->kicked, 1u << q, memory_order_relaxed);
        fs->draining[q]--;
        if (atomic_fetch_sub_explicit(&fs->busy, 1, memory_order_relaxed) == 1)
            pthread_cond_broadcast(&fs->idle_cv);
    }
    pthread_mutex_unlock(&fs->lock);
    return NULL;
}

static int fs_activate(struct virtio_device *d)
{
    struct virtio_fs *fs = to_fs(d);
    pthread_mutex_lock(&fs->lock);
    atomic_store_explicit(&fs->active, true, memory_order_release);
    /* Chains made available before DRIVER_OK wait for no kick. */
    atomic_store_explicit(&fs->kicked, (uint32_t)((1ull << d->num_queues) - 1),
                          memory_order_relaxed);
    struct fs_worker *w = wake_one(fs);
    pthread_mutex_unlock(&fs->lock);
    signal_worker(w);
    return 0;
}

static void fs_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_fs *fs = to_fs(d);
    if (q >= d->num_queues)
        return;
    struct fs_worker *w = NULL;
    pthread_mutex_lock(&fs->lock);
    /* A worker draining q looks at the ring anyway. */
    if (!atomic_load_explicit(&fs->active, memory_order_relaxed) || fs->draining[q])
        atomic_fetch_or_explicit(&fs->kicked, 1u << q, memory_order_relaxed);
    else
        w = kick_locked(fs, q);
    pthread_mutex_unlock(&fs->lock);
    signal_worker(w);
}

/* Every queue's kicks are read by the workers that serve them (see the top of the file). */
static bool fs_take_kick(struct virtio_device *d, unsigned q, int fd)
{
    struct virtio_fs *fs = to_fs(d);
    if (q >= d->num_queues || fs->wake_fd < 0)
        return false;
    int mine = -1;
    if (fd >= 0 && (mine = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return false;
    struct fs_worker *w = NULL;
    pthread_mutex_lock(&fs->lock);
    int old = fs->kick_fd[q];
    fs->kick_fd[q] = mine;
    fs->nkick += (mine >= 0) - (old >= 0);
    if (old >= 0 && fs->polling) {
        /* A worker polls it: it closes it after, once it is back (room for one per queue). */
        while (fs->polling && fs->nretired == d->num_queues) {
            (void)eventfd_write(fs->wake_fd, 1);
            pthread_cond_wait(&fs->idle_cv, &fs->lock);
        }
        if (fs->polling)
            fs->retired[fs->nretired++] = old;
        else
            close(old);
    } else if (old >= 0) {
        close(old);
    }
    if (fs->polling)
        (void)eventfd_write(fs->wake_fd, 1);
    else if (fs->nkick)
        w = wake_one(fs); /* to poll them */
    pthread_mutex_unlock(&fs->lock);
    signal_worker(w);
    return mine >= 0;
}

static void fs_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    memcpy(data, to_fs(d)->config + offset, len);
}

static void fs_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                            uint32_t len)
{
    /* §5.11.4: the configuration is read-only. */
}

/* Stops the workers taking chains and waits for those in progress. */
static void quiesce(struct virtio_fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    atomic_store_explicit(&fs->active, false, memory_order_relaxed);
    atomic_store_explicit(&fs->kicked, 0, memory_order_relaxed);
    while (atomic_load_explicit(&fs->busy, memory_order_relaxed))
        pthread_cond_wait(&fs->idle_cv, &fs->lock);
    pthread_mutex_unlock(&fs->lock);
}

static void fs_reset(struct virtio_device *d)
{
    struct virtio_fs *fs = to_fs(d);
    quiesce(fs);
    if (fs->be.reset)
        fs->be.reset(fs->be.ctx);
}

static void free_fs(struct virtio_fs *fs, unsigned nlocks, unsigned ncvs)
{
    for (unsigned q = 0; q < nlocks; q++)
        pthread_mutex_destroy(&fs->qlock[q]);
    for (unsigned i = 0; i < ncvs; i++)
        pthread_cond_destroy(&fs->workers[i].cv);
    for (unsigned q = 0; fs->kick_fd && q < fs->vdev.num_queues; q++)
        if (fs->kick_fd[q] >= 0)
            close(fs->kick_fd[q]);
    if (fs->wake_fd >= 0)
        close(fs->wake_fd);
    free(fs->pfd);
    free(fs->pfd_queue);
    free(fs->kick_fd);
    free(fs->retired);
    free(fs->qlock);
    free(fs->workers);
    free(fs->draining);
    free(fs->idle);
    pthread_cond_destroy(&fs->idle_cv);
    pthread_mutex_destroy(&fs->lock);
    virtio_device_fini(&fs->vdev);
    free(fs);
}

static void stop_workers(struct virtio_fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    fs->quit = true;
    for (unsigned i = 0; i < fs->nworkers; i++)
        pthread_cond_signal(&fs->workers[i].cv);
    if (fs->polling)
        (void)eventfd_write(fs->wake_fd, 1);
    pthread_mutex_unlock(&fs->lock);
    for (unsigned i = 0; i < fs->nworkers; i++)
        pthread_join(fs->workers[i].thread, NULL);
}

static void fs_destroy(struct virtio_device *d)
{
    if (!d)
        return;
    struct virtio_fs *fs = to_fs(d);
    quiesce(fs);
    stop_workers(fs);
    free_fs(fs, d->num_queues, FS_WORKERS);
}

static const struct virtio_device_ops fs_ops = {
    .activate = fs_activate,
    .queue_notify = fs_queue_notify,
    .take_kick = fs_take_kick,
    .config_read = fs_config_read,
    .config_write = fs_config_write,
    .reset = fs_reset,
    .destroy = fs_destroy,
};

struct virtio_device *virtio_fs_new(const char *tag, unsigned request_queues,
                                    const struct virtio_fs_backend *backend, vmk_error **err)
{
    size_t taglen = tag ? strlen(tag) : 0;
    if (taglen == 0 || taglen >= VIRTIO_FS_TAG_BYTES) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-fs: a tag of %zu bytes, allowed 1..%u",
                 taglen, VIRTIO_FS_TAG_BYTES - 1);
        return NULL;
    }
    if (request_queues < 1 || request_queues > VIRTIO_FS_MAX_REQ_QUEUES) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-fs: %u request queues, allowed 1..%u",
                 request_queues, VIRTIO_FS_MAX_REQ_QUEUES);
        return NULL;
    }
    if (!backend || !backend->handle) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-fs: incomplete backend");
        return NULL;
    }
    struct virtio_fs *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-fs: out of memory");
        return NULL;
    }
    unsigned nq = 1 + request_queues;
    if (virtio_device_init(&fs->vdev, &fs_ops, "virtio-fs", VIRTIO_ID_FS, nq,
                           VIRTIO_FS_QUEUE_SIZE) != 0) {
        free(fs);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-fs: out of memory");
        return NULL;
    }
    pthread_mutex_init(&fs->lock, NULL);
    pthread_cond_init(&fs->idle_cv, NULL);
    atomic_init(&fs->active, false);
    atomic_init(&fs->waking, 0);
    atomic_init(&fs->nidle, 0);
    atomic_init(&fs->busy, 0);
    atomic_init(&fs->kicked, 0);
    fs->qlock = calloc(nq, sizeof(*fs->qlock));
    fs->draining = calloc(nq, sizeof(*fs->draining));
    fs->workers = calloc(FS_WORKERS, sizeof(*fs->workers));
    fs->idle = calloc(FS_WORKERS, sizeof(*fs->idle));
    fs->kick_fd = malloc(nq * sizeof(*fs->kick_fd));
    fs->retired = calloc(nq, sizeof(*fs->retired));
    fs->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fs->pfd = calloc(1 + nq, sizeof(*fs->pfd));
    fs->pfd_queue = calloc(1 + nq, sizeof(*fs->pfd_queue));
    for (unsigned q = 0; fs->kick_fd && q < fs->vdev.num_queues; q++)
        fs->kick_fd[q] = -1;
    if (!fs->qlock || !fs->draining || !fs->workers || !fs->idle || !fs->kick_fd || !fs->retired ||
        !fs->pfd || !fs->pfd_queue) {
        free_fs(fs, 0, 0);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-fs: out of memory");
        return NULL;
    }
    for (unsigned q = 0; q < nq; q++)
        pthread_mutex_init(&fs->qlock[q], NULL);
    for (unsigned i = 0; i < FS_WORKERS; i++)
        pthread_cond_init(&fs->workers[i].cv, NULL);
    fs->be = *backend;
    memcpy(fs->config, tag, taglen); /* NUL-padded: Linux takes the tag up to the first NUL */
    le_put32(fs->config, VIRTIO_FS_TAG_BYTES, request_queues);
    fs->vdev.config_size = VIRTIO_FS_CFG_SIZE;

    for (; fs->nworkers < FS_WORKERS; fs->nworkers++) {
        struct fs_worker *w = &fs->workers[fs->nworkers];
        w->fs = fs;
        int r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r != 0) {
            if (fs->nworkers)
                break; /* fewer workers still work */
            free_fs(fs, nq, FS_WORKERS);
            vmk_fail(err, VMK_ERR_INTERNAL, r, "virtio-fs: cannot start a worker: %s", strerror(r));
            return NULL;
        }
    }
    return &fs->vdev;
}
