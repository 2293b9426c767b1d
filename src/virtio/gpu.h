/* virtio-gpu in 2D (virtio 1.2 §5.7, <linux/virtio_gpu.h>): enough for Linux's virtio_gpu
 * driver to run its framebuffer console and a desktop with no VGA device. The guest creates
 * resources (2D images in host memory, never bigger than the device's memory budget),
 * attaches guest pages to them as backing, copies dirty rectangles from the backing into the
 * resource (TRANSFER_TO_HOST_2D), shows a resource on a scanout (SET_SCANOUT) and says which
 * part changed (RESOURCE_FLUSH). The host side — a view, a screenshot — reads a scanout's
 * image and hears about modes and flushes through struct gpu_display_sink.
 *
 * Everything the guest sends is checked: resource ids, sizes and formats, every rectangle
 * against its resource, every backing entry against guest RAM; a bad command gets its error
 * response (VIRTIO_GPU_RESP_ERR_*), never a crash. Queues: control (0), cursor (1). */
#ifndef VMK_VIRTIO_GPU_H
#define VMK_VIRTIO_GPU_H

#include "virtio/virtio_device.h"
#include "vmkit.h"

#include <stddef.h>
#include <stdint.h>

#define VIRTIO_ID_GPU             16
#define VIRTIO_GPU_QUEUE_SIZE     256
#define VIRTIO_GPU_MAX_SCANOUTS_  16u            /* the spec's VIRTIO_GPU_MAX_SCANOUTS */
#define VIRTIO_GPU_MAX_DIMENSION  16384u         /* a scanout's or a resource's width or height */
#define VIRTIO_GPU_MAX_RESOURCES  1024u          /* resources alive at once */
#define VIRTIO_GPU_DEFAULT_BUDGET (256ull << 20) /* host bytes all resources may hold */
#define VIRTIO_GPU_MAX_BACKING    16384u         /* entries in one ATTACH_BACKING */

/* What the host side hears; called from the device's thread (the one that serves the
 * queues, or resets the device: then every scanout goes dark and the cursor hides), never
 * with a lock the sink may take. Any member may be NULL. */
struct gpu_display_sink {
    /* The guest showed a resource of w x h on scanout (0 x 0: it turned the scanout off, or
     * freed what it showed). Only when the size changes: a page flip between resources of one
     * size is no news. */
    void (*mode_changed)(void *ctx, unsigned scanout, uint32_t w, uint32_t h);
    /* The guest says x, y, w, h of scanout changed (RESOURCE_FLUSH), in scanout pixels. */
    void (*flushed)(void *ctx, unsigned scanout, uint32_t x, uint32_t y, uint32_t w, uint32_t h);
    /* The cursor moved or changed: its image is the resource's (64 x 64 B8G8R8A8) or none. */
    void (*cursor)(void *ctx, unsigned scanout, int32_t x, int32_t y, bool visible);
    void *ctx;
};

struct virtio_gpu_params {
    unsigned num_scanouts;                    /* 1 .. VIRTIO_GPU_MAX_SCANOUTS_ */
    uint32_t width[VIRTIO_GPU_MAX_SCANOUTS_]; /* each scanout's preferred size (0: 1024 x 768) */
    uint32_t height[VIRTIO_GPU_MAX_SCANOUTS_];
    uint64_t memory_budget; /* 0: VIRTIO_GPU_DEFAULT_BUDGET */
    struct gpu_display_sink sink;
};

/* NULL and *err on bad parameters or when out of memory. Free with d->ops->destroy(d),
 * after the transport is gone. */
struct virtio_device *virtio_gpu_new(const struct virtio_gpu_params *p, vmk_error **err);

/* The host would like scanout to be w x h (a view was resized): the device reports it in
 * GET_DISPLAY_INFO and EDID and raises a display event (a config interrupt). The guest may
 * ignore it. Any thread. -EINVAL for an unknown scanout or a size out of range (1..16384). The
 * EDID's detailed timing holds at most 4095 x 4095: larger sizes are announced clamped there. */
int virtio_gpu_reconfigure(struct virtio_device *d, unsigned scanout, uint32_t w, uint32_t h);

/* Copies what scanout shows into buf as bytes R, G, B, 255 per pixel, row after row (stride
 * 4 * w), whatever the resource's format; *w, *h get its size. When the guest has turned the
 * scanout off (or reset the device: a guest powering off does both), what it showed last.
 * Any thread. -ENODATA when the guest never showed anything there (*w, *h get 0), -ENOSPC (and
 * the size) when buf is smaller than 4 * w * h, -EINVAL for an unknown scanout. */
int virtio_gpu_read_scanout(struct virtio_device *d, unsigned scanout, void *buf, size_t len,
                            uint32_t *w, uint32_t *h);

#endif
