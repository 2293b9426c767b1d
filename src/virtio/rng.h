/* virtio-rng (virtio 1.2 §5.4): one request queue, no configuration space, no device
 * feature bits. Each request is a chain of device-writable buffers that the device fills
 * from getrandom(2), never blocking. A token bucket caps the bytes a guest can draw, so a
 * driver spinning on the queue cannot spin the host: when the bucket is empty, requests
 * stay in the ring and a timerfd on the transport's event loop retries later. */
#ifndef VMK_VIRTIO_RNG_H
#define VMK_VIRTIO_RNG_H

#include <stdint.h>

#include "core/event_loop.h"
#include "virtio/virtio_device.h"

#define VIRTIO_RNG_QUEUE_SIZE    256
#define VIRTIO_RNG_DEFAULT_RATE  (1u << 20) /* bytes per second, sustained */
#define VIRTIO_RNG_DEFAULT_BURST (64u << 10)
#define VIRTIO_RNG_MAX_RATE      (UINT64_C(1) << 32)

/* A new virtio-rng device. Its retry timer is registered on el, which must outlive the
 * device and be run by the thread that drives the transport (the device locks its queue,
 * so queue_notify may still come from another thread). bytes_per_sec and burst: 1 ..
 * VIRTIO_RNG_MAX_RATE each. NULL on bad arguments or when out of memory/fds. Free with
 * d->ops->destroy(d). */
struct virtio_device *virtio_rng_new(struct event_loop *el, uint64_t bytes_per_sec, uint64_t burst);

#endif
