/* A synthetic vhost-user front end (QEMU docs/interop/vhost-user.rst) for tests and
 * benchmarks: the driver side of any virtio device, with no guest. "Guest RAM" is one
 * memfd mapped here and handed to the back end with SET_MEM_TABLE; split virtqueues
 * (virtio 1.2, 2.7) live in it and are driven from this process: post descriptor
 * chains, kick, read used entries.
 *
 * Typical use:
 *     struct vuf_options o = vuf_default_options();
 *     o.device_features = ...;  o.num_queues = 2;
 *     struct vuf *f = vuf_open(path, &o, err, sizeof(err));      // the whole set-up
 *     vuf_get_config(f, 0, &cfg, sizeof(cfg));
 *     uint64_t gpa;  vuf_alloc(f, 4096, 16, &gpa);  void *p = vuf_ptr(f, gpa, 4096);
 *     int head = vuf_post(f, 0, segs, n);  vuf_kick(f, 0);
 *     vuf_wait_used(f, 0, &used, 1000);
 *     vuf_close(f);                                              // GET_VRING_BASE, close
 * or step by step (vuf_connect, vuf_negotiate, vuf_set_memory, vuf_queue_start) for
 * tests that want to stop between messages or send their own (vuf_request).
 *
 * Every request whose reply the protocol defines waits for that reply and checks its
 * request number, flags and size; with REPLY_ACK every other request asks for an ack
 * and checks it. Functions return 0 (or a count) on success and -errno on failure, with
 * the reason in vuf_error(f); nothing here exits or aborts. A reply that does not come
 * within the timeout is -ETIMEDOUT.
 *
 * Threads: one thread uses a struct vuf at a time (a benchmark or test loop); the back
 * end runs in another process. */
#ifndef VMK_TESTS_VHOST_USER_FRONTEND_H
#define VMK_TESTS_VHOST_USER_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VUF_MAX_QUEUES 64
#define VUF_MAX_SEGS   64 /* segments in one posted chain */

/* Virtio feature bits the front end itself handles. */
#define VUF_F_INDIRECT_DESC 28
#define VUF_F_EVENT_IDX     29
#define VUF_F_VERSION_1     32

struct vuf;

struct vuf_options {
    /* Device-specific feature bits (0..23 and any other the caller handles) to accept
     * when the back end offers them. VERSION_1 is always required. */
    uint64_t device_features;
    bool event_idx;             /* negotiate VIRTIO_F_RING_EVENT_IDX when offered */
    bool require_features;      /* fail when a device_features bit is not offered */
    uint64_t protocol_features; /* wanted beyond MQ, REPLY_ACK, CONFIG (taken when offered) */
    unsigned num_queues;        /* queues vuf_open sets up, 1..VUF_MAX_QUEUES */
    uint16_t queue_size;        /* entries per queue, a power of two up to 32768 */
    uint64_t mem_size;          /* bytes of guest RAM (rings and buffers) */
    uint64_t mem_base;          /* guest-physical address of its first byte (page aligned) */
    int timeout_ms;             /* how long a reply may take */
};

/* event_idx on, 1 queue of 128, 16 MiB of RAM at 1 GiB, 5 s timeout. */
struct vuf_options vuf_default_options(void);

/* Connects, negotiates, shares the RAM and starts queues 0 .. o->num_queues - 1: the
 * order QEMU uses. NULL with the reason in err on failure. A back end with more queues
 * may wait for the others to be enabled too (vuf_set_vring_enable). */
struct vuf *vuf_open(const char *socket_path, const struct vuf_options *o, char *err,
                     size_t errlen);

/* The same, step by step. vuf_connect only connects (no message sent). */
struct vuf *vuf_connect(const char *socket_path, const struct vuf_options *o, char *err,
                        size_t errlen);
/* GET_FEATURES, GET/SET_PROTOCOL_FEATURES (when offered), GET_QUEUE_NUM (with MQ),
 * SET_OWNER, SET_FEATURES. */
int vuf_negotiate(struct vuf *f);
/* Creates the memfd RAM (o->mem_size at o->mem_base) and sends SET_MEM_TABLE. */
int vuf_set_memory(struct vuf *f);
/* Lays out queue q's rings in guest RAM and sends SET_VRING_NUM, _BASE (0), _ADDR,
 * _CALL, _KICK and, with protocol features, SET_VRING_ENABLE 1. */
int vuf_queue_start(struct vuf *f, unsigned q);
/* SET_VRING_ENABLE for ring q (any ring the back end has, started or not): QEMU enables
 * every ring of the device, also those the driver leaves unused. */
int vuf_set_vring_enable(struct vuf *f, unsigned q, bool enable);
/* GET_VRING_BASE: stops queue q; *base (may be NULL) is where the back end would
 * resume. Fails (-EPROTO) when that is not the driver's avail index. */
int vuf_queue_stop(struct vuf *f, unsigned q, uint16_t *base);
/* Stops every started queue (errors ignored), closes the socket, unmaps the RAM,
 * frees f. NULL is fine. */
void vuf_close(struct vuf *f);

/* The last failure, in words ("" when none). */
const char *vuf_error(const struct vuf *f);

/* What was negotiated. */
uint64_t vuf_offered_features(const struct vuf *f);  /* GET_FEATURES' answer */
uint64_t vuf_features(const struct vuf *f);          /* sent with SET_FEATURES */
uint64_t vuf_protocol_features(const struct vuf *f); /* sent with SET_PROTOCOL_FEATURES */
unsigned vuf_queue_num(const struct vuf *f);         /* GET_QUEUE_NUM, or 0 without MQ */

/* GET_CONFIG / SET_CONFIG (needs the CONFIG protocol feature): bytes [offset,
 * offset + len) of the device configuration space, len at most 256. */
int vuf_get_config(struct vuf *f, uint32_t offset, void *buf, uint32_t len);
int vuf_set_config(struct vuf *f, uint32_t offset, const void *buf, uint32_t len);

/* Sends any request: payload of size bytes and up to 8 fds. When reply is non-NULL,
 * waits for the reply to this request and copies up to *reply_size (required then)
 * payload bytes, setting *reply_size to the size received. need_ack asks for a REPLY_ACK (only when
 * negotiated) and turns a non-zero ack into -EPROTO. For tests of the back end's
 * checks; the back end may drop the connection, which later calls report. */
int vuf_request(struct vuf *f, uint32_t request, const void *payload, uint32_t size, const int *fds,
                unsigned nfds, void *reply, uint32_t *reply_size, bool need_ack);

/* Guest RAM: a bump allocator over what the rings left. *gpa gets the guest-physical
 * address; the memory is zeroed. -ENOMEM when it does not fit. */
int vuf_alloc(struct vuf *f, uint64_t len, uint64_t align, uint64_t *gpa);
/* This process's pointer to [gpa, gpa + len), or NULL outside the RAM. */
void *vuf_ptr(struct vuf *f, uint64_t gpa, uint64_t len);

/* One segment of a chain: device-readable unless writable. */
struct vuf_seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

struct vuf_used {
    uint16_t id;  /* the head vuf_post returned */
    uint32_t len; /* bytes the device says it wrote */
};

/* Posts a chain of n segments on queue q and publishes it in the avail ring (no kick).
 * Returns the head (>= 0), -ENOSPC when the queue lacks n free descriptors, -EINVAL for
 * a bad queue or segment. Readable segments must come before writable ones. */
int vuf_post(struct vuf *f, unsigned q, const struct vuf_seg *segs, unsigned n);
/* Notifies the back end of what was posted since the last kick, unless it asked not
 * to be (EVENT_IDX avail_event or VIRTQ_USED_F_NO_NOTIFY). 1 kicked, 0 suppressed,
 * -errno. */
int vuf_kick(struct vuf *f, unsigned q);
/* The next used entry of queue q: 1 and *u filled, 0 when none yet, -EPROTO when the
 * back end used a head that was not in flight (the ring is then unusable). */
int vuf_poll_used(struct vuf *f, unsigned q, struct vuf_used *u);
/* Like vuf_poll_used, but sleeps on the call eventfd (re-arming EVENT_IDX's
 * used_event first) for up to timeout_ms (-1: forever). 0 on timeout. */
int vuf_wait_used(struct vuf *f, unsigned q, struct vuf_used *u, int timeout_ms);
/* Chains posted on q and not yet returned by poll/wait. */
unsigned vuf_inflight(const struct vuf *f, unsigned q);
/* Free descriptors of q. */
unsigned vuf_free_descs(const struct vuf *f, unsigned q);
/* Calls (call-eventfd signals) and kicks counted on q since it started; for
 * benchmarks that report notification rates. */
uint64_t vuf_calls(const struct vuf *f, unsigned q);
uint64_t vuf_kicks(const struct vuf *f, unsigned q);
/* The call and error eventfds of q (for a caller's own poll loop), -1 when absent. */
int vuf_call_fd(const struct vuf *f, unsigned q);
int vuf_err_fd(const struct vuf *f, unsigned q);

#endif
