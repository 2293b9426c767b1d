/* The device side of a virtio 1.2 split virtqueue (spec §2.7). The rings live in
 * guest RAM and a guest writes them while we read, so everything read from them is
 * untrusted: each chain walk is bounded, every index and guest range is checked, and
 * a driver that breaks the rules marks the queue broken (-EIO) instead of crashing or
 * hanging the host. One thread at a time uses a queue (the device's); the other side
 * of every access is the guest, which is why ring fields go through atomics. */
#ifndef VMK_VIRTIO_VIRTQUEUE_H
#define VMK_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/guest_memory.h"

#define VIRTQ_MAX_SIZE 1024 /* largest queue size a vmkit device offers */
#define VIRTQ_MAX_IOV  VIRTQ_MAX_SIZE

/* Ring layout constants (spec §2.7.5, §2.7.6, §2.7.8). */
#define VIRTQ_DESC_F_NEXT          1
#define VIRTQ_DESC_F_WRITE         2
#define VIRTQ_DESC_F_INDIRECT      4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1
#define VIRTQ_DESC_SIZE            16
#define VIRTQ_DESC_ALIGN           16
#define VIRTQ_AVAIL_ALIGN          2
#define VIRTQ_USED_ALIGN           4
/* Bytes of each ring for a queue of n entries; the trailing event field
 * (used_event / avail_event) is only there when event_idx is negotiated. */
#define VIRTQ_DESC_BYTES(n)        (VIRTQ_DESC_SIZE * (uint64_t)(n))
#define VIRTQ_AVAIL_BYTES(n, evt)  (4 + 2 * (uint64_t)(n) + ((evt) ? 2 : 0))
#define VIRTQ_USED_BYTES(n, evt)   (4 + 8 * (uint64_t)(n) + ((evt) ? 2 : 0))

/* Ring layouts (little-endian, in guest RAM), defined in virtqueue.c. */
struct virtq_desc;
struct virtq_avail_ring;
struct virtq_used_ring;

struct virtq {
    /* Set by the transport before virtq_enable; left alone while enabled. */
    const struct guest_memory *gm;             /* gm_ptr is the only way into guest RAM */
    uint16_t size;                             /* power of two, 1..VIRTQ_MAX_SIZE */
    uint64_t desc_addr, avail_addr, used_addr; /* guest physical */
    bool event_idx;                            /* VIRTIO_F_RING_EVENT_IDX negotiated */
    bool indirect;                             /* VIRTIO_F_RING_INDIRECT_DESC negotiated */

    /* Private to virtqueue.c. size and the feature flags are copied at enable, so a
     * transport that lets the guest rewrite them while enabled cannot make us step
     * outside the rings checked then. */
    uint16_t num;
    bool has_event_idx, has_indirect;
    bool enabled;
    bool broken;
    const char *broken_reason; /* static string naming the broken rule, or NULL */
    bool notify_enabled;       /* what virtq_set_notification last asked for */
    bool signalled_valid;      /* signalled_used means something */
    uint16_t last_avail_idx;   /* next avail ring entry to pop */
    uint16_t shadow_avail_idx; /* avail->idx as last read */
    uint16_t used_idx;         /* next used ring entry to fill (= used->idx) */
    uint16_t signalled_used;   /* used_idx at the last virtq_should_notify */
    uint32_t inflight;         /* popped, not yet pushed */
    uint32_t gen;              /* bumped by enable/disable: stale elements are dropped */
    /* Host pointers to the rings, checked once at enable (guest RAM does not move
     * while a queue is enabled). */
    const struct virtq_desc *desc;
    const struct virtq_avail_ring *avail;
    struct virtq_used_ring *used;
};

struct virtq_elem {
    uint16_t head;
    unsigned out_num, in_num;        /* device-readable iovecs first, then device-writable */
    struct iovec iov[VIRTQ_MAX_IOV]; /* point straight into guest RAM */
    uint64_t out_len, in_len;        /* byte totals */
    uint32_t gen;                    /* the queue's generation when popped */
};

/* Validates size (a power of two up to VIRTQ_MAX_SIZE), alignment (desc 16, avail 2,
 * used 4) and that each ring lies wholly in one region of guest RAM; resets the
 * indices and clears the broken state. -EINVAL with no state change otherwise. */
int virtq_enable(struct virtq *q) __attribute__((warn_unused_result));
/* Forgets the rings (device reset). Elements popped before are dropped by
 * virtq_push, even after a later virtq_enable. */
void virtq_disable(struct virtq *q);
/* Resumes a ring the driver has already used (vhost-user SET_VRING_BASE, restore):
 * the next entry to pop and to fill is idx. -EINVAL when the queue is not enabled or
 * has elements in flight. */
int virtq_set_base(struct virtq *q, uint16_t idx) __attribute__((warn_unused_result));
uint16_t virtq_get_base(const struct virtq *q); /* last_avail_idx */

/* 1: *e holds the next available chain; 0: none (or the queue is not enabled);
 * -EIO: the driver broke the ring or a chain — the queue is now broken (every later
 * call returns -EIO) and the transport must set DEVICE_NEEDS_RESET. Breaking covers
 * popping with `size` elements already in flight: a driver cannot have more chains
 * outstanding, so a device never holds more than `size` per queue. */
int virtq_pop(struct virtq *q, struct virtq_elem *e) __attribute__((warn_unused_result));
/* Would a pop find a chain now (true also when the ring broke: the pop reports it)? When none
 * is there it asks the driver for a kick at the next one, as an empty pop does: a device that
 * stops popping on false never misses a chain. */
bool virtq_has_avail(struct virtq *q);
/* Returns a chain with `written` bytes written into its in-iovecs. 0, also when the
 * element is stale (popped before a disable or reset: dropped); -EIO, and the queue
 * broken, when it is broken already, written > in_len or more elements are pushed
 * than were popped. */
int virtq_push(struct virtq *q, const struct virtq_elem *e, uint32_t written)
    __attribute__((warn_unused_result));
/* Gives back e, the element popped last and not pushed, as if never popped: the next
 * pop (or the base a vhost-user front end reads) finds it again. For a device that
 * holds a chain when it is stopped (rate-limited entropy). 0, or -EINVAL (and no
 * change) when e is not the last element popped or is stale. */
int virtq_unpop(struct virtq *q, const struct virtq_elem *e);
/* What a push needs of a popped element, for a device that holds several at once (a
 * received packet spread over merged buffers) and publishes them together. */
struct virtq_ref {
    uint16_t head;
    uint32_t gen;
    uint64_t in_len;
    uint32_t written; /* bytes the device wrote into the chain */
};

static inline struct virtq_ref virtq_elem_ref(const struct virtq_elem *e, uint32_t written)
{
    return (struct virtq_ref){
        .head = e->head, .gen = e->gen, .in_len = e->in_len, .written = written
    };
}

/* Pushes n elements in order and publishes them with one used-index store, so the driver
 * sees all or none. As virtq_push for each; n = 0 does nothing. */
int virtq_push_refs(struct virtq *q, const struct virtq_ref *refs, unsigned n)
    __attribute__((warn_unused_result));
/* Gives back the last n elements popped (refs in pop order), as virtq_unpop does one: all
 * of them, or (-EINVAL) none. */
int virtq_unpop_refs(struct virtq *q, const struct virtq_ref *refs, unsigned n);
/* After one or more pushes: must the device interrupt the driver? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with event_idx (vring_need_event, with
 * wrap-around). False on a broken or disabled queue. */
bool virtq_should_notify(struct virtq *q);
/* Device-side kick suppression: VIRTQ_USED_F_NO_NOTIFY, or avail_event =
 * last_avail_idx with event_idx. Enabling returns true if buffers arrived meanwhile
 * (pop again before sleeping), or if the driver broke the ring meanwhile (so the next
 * pop reports it); false on a queue already broken or disabled, and when disabling. */
bool virtq_set_notification(struct virtq *q, bool enable);
bool virtq_is_broken(const struct virtq *q);
/* Which rule the driver broke (a static string), or NULL. */
const char *virtq_broken_reason(const struct virtq *q);

/* Copy helpers over an element's iovecs, offset counted from the first byte of the
 * device-readable (read) or device-writable (write) part. Return the bytes copied,
 * fewer when the buffers end first. The guest may change its buffers meanwhile:
 * parse the copy, never the buffer twice. */
size_t virtq_elem_read(const struct virtq_elem *e, size_t offset, void *buf, size_t len);
size_t virtq_elem_write(const struct virtq_elem *e, size_t offset, const void *buf, size_t len);

#endif
