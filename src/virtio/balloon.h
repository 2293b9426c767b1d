/* virtio-balloon, the traditional memory balloon (virtio 1.2 §5.5): the host sets a target
 * (num_pages, in 4 KiB pages the guest should hand back), the guest's driver gives pages to
 * the inflate queue and takes them back through the deflate queue, and says how many it
 * holds (actual). Pages given to the device, and free pages the guest reports
 * (VIRTIO_BALLOON_F_PAGE_REPORTING), are released to the host at once: guest RAM is a
 * shared mapping, so the device punches holes in it (gm_discard); the guest finds zeroes
 * there when it touches a page again.
 *
 * Queues: inflate (0), deflate (1), then the optional ones in the spec's order, numbered
 * only when their feature is negotiated, as Linux numbers them (it skips absent queues): the
 * reporting queue is index 2 while no statistics or hinting queue comes before it. */
#ifndef VMK_VIRTIO_BALLOON_H
#define VMK_VIRTIO_BALLOON_H

#include "virtio/virtio_device.h"

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_ID_BALLOON 5

/* Feature bits (§5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON    4
#define VIRTIO_BALLOON_F_PAGE_REPORTING 5

#define VIRTIO_BALLOON_PAGE_SHIFT  12 /* PFNs count 4 KiB pages whatever the guest's page size */
#define VIRTIO_BALLOON_QUEUE_SIZE  128
#define VIRTIO_BALLOON_CONFIG_SIZE 8 /* num_pages, actual: no hinting, no poison offered */

struct virtio_balloon_params {
    uint64_t memory_size; /* the guest's RAM in bytes: the largest target in pages */
    bool deflate_on_oom;  /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
    bool page_reporting;  /* offer VIRTIO_BALLOON_F_PAGE_REPORTING */
};

struct virtio_balloon_stats {
    uint64_t inflated_pages; /* PFNs taken from the inflate queue and released */
    uint64_t deflated_pages; /* PFNs the guest took back */
    uint64_t reported_bytes; /* free memory the guest reported, released */
    uint64_t bad_pfns;       /* PFNs outside guest RAM: ignored */
    uint64_t discard_errors; /* releases the host refused (counted, never fatal) */
};

/* A new balloon; NULL when out of memory or memory_size is 0. Free with d->ops->destroy(d). */
struct virtio_device *virtio_balloon_new(const struct virtio_balloon_params *p);
/* Sets the target: the guest should give back pages until it holds this many (clamped to
 * the guest's RAM), and is told through a configuration change. Any thread. */
void virtio_balloon_set_target_pages(struct virtio_device *d, uint32_t pages);
uint32_t virtio_balloon_target_pages(struct virtio_device *d);
/* The pages the guest says it holds in the balloon (the config's actual). Any thread. */
uint32_t virtio_balloon_actual_pages(struct virtio_device *d);
void virtio_balloon_get_stats(struct virtio_device *d, struct virtio_balloon_stats *out);

#endif
