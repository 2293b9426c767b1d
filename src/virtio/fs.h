/* virtio-fs (virtio 1.2 §5.11): FUSE requests carried on virtqueues. Queue 0 is the
 * high-priority queue (FORGET, interrupts), queues 1..N the request queues. The device only
 * moves requests: a host side behind struct virtio_fs_backend (attach/fuse_server.c) reads each
 * request from the guest's buffers and writes the reply into them, on the device's workers, so
 * neither a kick thread nor the VM's loop ever waits on the host file system. */
#ifndef VMK_VIRTIO_FS_H
#define VMK_VIRTIO_FS_H

#include "virtio/virtio_device.h"
#include "vmkit.h"

#include <stddef.h>
#include <sys/uio.h>

#define VIRTIO_ID_FS             26
#define VIRTIO_FS_TAG_BYTES      36 /* the config's tag field; Linux wants a NUL within it */
#define VIRTIO_FS_MAX_REQ_QUEUES 8u
#define VIRTIO_FS_QUEUE_SIZE     1024
#define VIRTIO_FS_CFG_SIZE       40 /* tag[36], le32 num_request_queues */

struct virtio_fs_backend {
    /* Serves one request (in: device-readable buffers) and writes its reply into out;
     * returns the reply's length, 0 for none. Called from several workers at once. */
    size_t (*handle)(void *ctx, const struct iovec *in, unsigned in_n, const struct iovec *out,
                     unsigned out_n);
    /* The driver reset the device: forget the session (no request is in progress). */
    void (*reset)(void *ctx);
    void *ctx;
};

/* tag: 1..35 bytes. NULL and *err on bad parameters or when out of memory or threads. Free
 * with d->ops->destroy(d), after the transport is gone. */
struct virtio_device *virtio_fs_new(const char *tag, unsigned request_queues,
                                    const struct virtio_fs_backend *backend, vmk_error **err);

#endif
