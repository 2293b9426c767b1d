#include "virtio/virtio_device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int virtio_device_init(struct virtio_device *d, const struct virtio_device_ops *ops,
                       const char *name, uint16_t device_id, unsigned num_queues,
                       uint16_t queue_max_size)
{
    memset(d, 0, sizeof(*d));
    if (num_queues == 0 || queue_max_size == 0 || queue_max_size > VIRTQ_MAX_SIZE)
        return -EINVAL;
    d->queues = calloc(num_queues, sizeof(*d->queues));
    if (!d->queues)
        return -ENOMEM;
    d->ops = ops;
    d->name = name;
    d->device_id = device_id;
    d->num_queues = num_queues;
    d->queue_max_size = queue_max_size;
    d->device_features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) |
                         VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
    return 0;
}

void virtio_device_fini(struct virtio_device *d)
{
    free(d->queues);
    d->queues = NULL;
}

void virtio_device_queue_failed(struct virtio_device *d, unsigned q)
{
    const char *why = virtq_broken_reason(&d->queues[q]);
    if (d->transport.needs_reset)
        d->transport.needs_reset(d->transport.ctx, why ? why : "virtqueue error");
}

void virtio_device_complete(struct virtio_device *d, unsigned q, const struct virtq_elem *elem,
                            uint32_t written)
{
    struct virtq *vq = &d->queues[q];
    if (virtq_push(vq, elem, written) < 0) {
        virtio_device_queue_failed(d, q);
        return;
    }
    if (virtq_should_notify(vq) && d->transport.notify_queue)
        d->transport.notify_queue(d->transport.ctx, q);
}
