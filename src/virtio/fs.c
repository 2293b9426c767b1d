/* virtio-fs. Workers pop chains themselves: a kick only marks its queue and wakes one; a
 * worker that pops a chain with another behind it marks the queue again before serving it, so
 * the next chain goes to another worker while this one waits on the host file system. A queue's ring is touched under
 * that queue's lock only. */
#include "virtio/fs.h"
#include "core/error.h"
#include "core/le_bytes.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FS_WORKERS 4u

struct fs_worker {
    struct virtio_fs *fs;
    pthread_t thread;
    struct virtq_elem elem; /* one chain at a time, kept: a chain's iovecs are 16 KiB */
};

struct virtio_fs {
    struct virtio_device vdev;
    struct virtio_fs_backend be;
    uint8_t config[VIRTIO_FS_CFG_SIZE];
    pthread_mutex_t *qlock; /* one per queue: pop and push on that ring */

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t work_cv, idle_cv;
    bool active;     /* between activate and reset */
    uint32_t kicked; /* queues that may hold chains no worker has popped */
    unsigned busy;   /* workers popping or serving */
    bool quit;
    struct fs_worker *workers;
    unsigned nworkers;
};

static struct virtio_fs *to_fs(struct virtio_device *d)
{
    return (struct virtio_fs *)d;
}

static void serve(struct virtio_fs *fs, unsigned q, struct virtq_elem *e)
{
    size_t n = fs->be.handle(fs->be.ctx, e->iov, e->out_num, e->iov + e->out_num, e->in_num);
    if (n > e->in_len)
        n = 0; /* a back end never writes more than out holds; never claim it did */
    pthread_mutex_lock(&fs->qlock[q]);
    virtio_device_complete(&fs->vdev, q, e, (uint32_t)n);
    pthread_mutex_unlock(&fs->qlock[q]);
}

/* One chain from queue q into e: 1, 0 (none) or -EIO (the queue broke); *more: whether
 * another waits behind it. */
static int pop(struct virtio_fs *fs, unsigned q, struct virtq_elem *e, bool *more)
{
    pthread_mutex_lock(&fs->qlock[q]);
    int r = virtq_pop(&fs->vdev.queues[q], e);
    *more = r == 1 && virtq_has_avail(&fs->vdev.queues[q]);
    pthread_mutex_unlock(&fs->qlock[q]);
    if (r < 0)
        virtio_device_queue_failed(&fs->vdev, q);
    return r;
}

static void *worker_main(void *arg)
{
    struct fs_worker *w = arg;
    struct virtio_fs *fs = w->fs;
    pthread_mutex_lock(&fs->lock);
    for (;;) {
        while (!(fs->active && fs->kicked) && !fs->quit)
            pthread_cond_wait(&fs->work_cv, &fs->lock);
        if (fs->quit)
            break;
        unsigned q = (unsigned)__builtin_ctz(fs->kicked);
        fs->kicked &= ~(1u << q); /* a kick during the pop sets it again */
        fs->busy++;
        pthread_mutex_unlock(&fs->lock);

        bool more;
        int r = pop(fs, q, &w->elem, &more);
        if (more) {
            /* Another chain waits: another worker takes it while this one serves. At queue
             * depth 1 nobody is woken for nothing. */
            pthread_mutex_lock(&fs->lock);
            fs->kicked |= 1u << q;
            pthread_cond_signal(&fs->work_cv);
            pthread_mutex_unlock(&fs->lock);
        }
        if (r == 1)
            serve(fs, q, &w->elem);

        pthread_mutex_lock(&fs->lock);
        if (--fs->busy == 0)
            pthread_cond_broadcast(&fs->idle_cv);
    }
    pthread_mutex_unlock(&fs->lock);
    return NULL;
}

static int fs_activate(struct virtio_device *d)
{
    struct virtio_fs *fs = to_fs(d);
    pthread_mutex_lock(&fs->lock);
    fs->active = true;
    /* Chains made available before DRIVER_OK wait for no kick. */
    fs->kicked = (uint32_t)((1ull << d->num_queues) - 1);
    pthread_cond_broadcast(&fs->work_cv);
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

static void fs_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_fs *fs = to_fs(d);
    if (q >= d->num_queues)
        return;
    pthread_mutex_lock(&fs->lock);
    fs->kicked |= 1u << q;
    pthread_cond_signal(&fs->work_cv);
    pthread_mutex_unlock(&fs->lock);
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
    fs->active = false;
    fs->kicked = 0;
    while (fs->busy)
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

static void free_fs(struct virtio_fs *fs, unsigned nlocks)
{
    for (unsigned q = 0; q < nlocks; q++)
        pthread_mutex_destroy(&fs->qlock[q]);
    free(fs->qlock);
    free(fs->workers);
    pthread_cond_destroy(&fs->work_cv);
    pthread_cond_destroy(&fs->idle_cv);
    pthread_mutex_destroy(&fs->lock);
    virtio_device_fini(&fs->vdev);
    free(fs);
}

static void stop_workers(struct virtio_fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    fs->quit = true;
    pthread_cond_broadcast(&fs->work_cv);
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
    free_fs(fs, d->num_queues);
}

static const struct virtio_device_ops fs_ops = {
    .activate = fs_activate,
    .queue_notify = fs_queue_notify,
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
    pthread_cond_init(&fs->work_cv, NULL);
    pthread_cond_init(&fs->idle_cv, NULL);
    fs->qlock = calloc(nq, sizeof(*fs->qlock));
    fs->workers = calloc(FS_WORKERS, sizeof(*fs->workers));
    if (!fs->qlock || !fs->workers) {
        free_fs(fs, 0);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-fs: out of memory");
        return NULL;
    }
    for (unsigned q = 0; q < nq; q++)
        pthread_mutex_init(&fs->qlock[q], NULL);
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
            free_fs(fs, nq);
            vmk_fail(err, VMK_ERR_INTERNAL, r, "virtio-fs: cannot start a worker: %s", strerror(r));
            return NULL;
        }
    }
    return &fs->vdev;
}
