/* A virtio device as its transports see it. The same device code runs behind vmkit's
 * own virtio-pci transport and behind a vhost-user back-end socket: a device never
 * learns which. Shape (after TinyEMU): a struct embedded at the start of the
 * device's own struct, one ops table, queues the transport sets up and the device
 * only pops from and pushes to.
 *
 * Threads: the transport calls ops from its own thread (the VM's event loop, or the
 * vhost-user server's); queue_notify may come from a kick thread, and a device that
 * took a queue's kick fd (take_kick) serves that queue from its own thread. A device that
 * blocks (disk I/O) hands work to its own worker and completes from there with
 * virtio_device_complete(), which is safe from any thread as long as one queue is
 * pushed by one thread at a time. */
#ifndef VMK_VIRTIO_DEVICE_H
#define VMK_VIRTIO_DEVICE_H

#include "virtio/virtqueue.h"

#include <stdbool.h>
#include <stdint.h>

/* Feature bits (virtio 1.2, 6 "Reserved Feature Bits"). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_F_ACCESS_PLATFORM    33

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Device ids (5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

#define VIRTIO_BIT(b) (1ULL << (b))

struct virtio_device;

/* What a device may ask of its transport; callable from any thread. */
struct virtio_transport {
    /* Used buffers were pushed on queue q and virtq_should_notify said yes:
     * interrupt the driver (MSI-X vector, or the vhost-user call eventfd). */
    void (*notify_queue)(void *ctx, unsigned q);
    /* The device's configuration space changed. */
    void (*notify_config)(void *ctx);
    /* The driver broke the rules (a broken queue, a malformed request the spec says
     * the device must refuse): set DEVICE_NEEDS_RESET and tell the driver. why is a
     * static string for logs. */
    void (*needs_reset)(void *ctx, const char *why);
    void *ctx;
};

struct virtio_device_ops {
    /* DRIVER_OK: d->driver_features is final and every queue the driver enabled is
     * enabled (virtq_enable done). Start serving. 0, or -errno (the transport then
     * sets DEVICE_NEEDS_RESET). */
    int (*activate)(struct virtio_device *d);
    /* FEATURES_OK: may the driver run with these features (a subset of what the device
     * offered)? false when they break a dependency the device's section states; the
     * transport then leaves FEATURES_OK clear. NULL: any subset is fine. */
    bool (*features_ok)(struct virtio_device *d, uint64_t features);
    /* The driver made buffers available on queue q. */
    void (*queue_notify)(struct virtio_device *d, unsigned q);
    /* Optional. The transport offers queue q's kick eventfd (fd >= 0) before it watches it,
     * and takes it back (fd -1) before it closes or replaces it. true: the device reads
     * queue q's kicks itself, on a thread of its own that serves the queue anyway, which
     * saves a wake-up of the transport's thread per kick; it keeps a dup of fd, and serves
     * a kick only while active. The transport then leaves fd alone until the take-back.
     * false, or no op: the transport watches fd and calls queue_notify. */
    bool (*take_kick)(struct virtio_device *d, unsigned q, int fd);
    /* Device configuration space; the transport has checked offset + len against
     * config_size. */
    void (*config_read)(struct virtio_device *d, uint32_t offset, void *data, uint32_t len);
    void (*config_write)(struct virtio_device *d, uint32_t offset, const void *data, uint32_t len);
    /* The driver reset the device: when this returns, nothing touches guest memory
     * any more and the device is as new (the transport then disables the queues). */
    void (*reset)(struct virtio_device *d);
    /* Frees the device (after reset). */
    void (*destroy)(struct virtio_device *d);
};

struct virtio_device {
    const struct virtio_device_ops *ops;
    const char *name;         /* "virtio-blk", for messages */
    uint16_t device_id;       /* VIRTIO_ID_* */
    uint64_t device_features; /* offered: device bits, ring bits it handles, VERSION_1 */
    uint64_t driver_features; /* accepted: set by the transport at FEATURES_OK */
    uint32_t config_size;
    unsigned num_queues;
    uint16_t queue_max_size; /* <= VIRTQ_MAX_SIZE */
    struct virtq *queues;    /* num_queues of them, owned by the device */
    struct virtio_transport transport;
};

/* Allocates the queues; 0 or -ENOMEM. */
int virtio_device_init(struct virtio_device *d, const struct virtio_device_ops *ops,
                       const char *name, uint16_t device_id, unsigned num_queues,
                       uint16_t queue_max_size) __attribute__((warn_unused_result));
void virtio_device_fini(struct virtio_device *d);

static inline bool virtio_has_feature(const struct virtio_device *d, unsigned bit)
{
    return (d->driver_features >> bit) & 1;
}

/* Pushes elem on queue q with `written` bytes and interrupts the driver if the
 * queue asks for it. A broken queue is reported through needs_reset. */
void virtio_device_complete(struct virtio_device *d, unsigned q, const struct virtq_elem *elem,
                            uint32_t written);
/* A queue error from virtq_pop/virtq_push: tells the transport, with the rule. */
void virtio_device_queue_failed(struct virtio_device *d, unsigned q);

#endif
