/* A fake virtio driver and transport for device unit tests: guest RAM, rings laid
 * out as a driver would, buffers added and kicked, used entries read back, and a
 * record of what the device asked of its transport. */
#ifndef VMK_TESTS_VIRTIO_TEST_DRIVER_H
#define VMK_TESTS_VIRTIO_TEST_DRIVER_H

#include "core/guest_memory.h"
#include "virtio/virtio_device.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define TD_MAX_QUEUES     16
#define TD_QUEUE_SIZE     64
#define TD_MAX_QUEUE_SIZE 256 /* what a queue's slot of the ring area holds */
#define TD_RAM_SIZE       (16u << 20)

struct td_queue {
    uint64_t desc, avail, used;
    uint16_t size;
    uint16_t avail_idx; /* next avail ring slot the driver fills */
    uint16_t used_seen; /* used entries already read back */
    uint16_t next_desc; /* descriptors are handed out round-robin */
};

struct td_buf {
    uint64_t gpa;
    uint32_t len;
    bool writable; /* device-writable */
};

struct test_driver {
    struct guest_memory gm;
    struct virtio_device *dev;
    struct td_queue q[TD_MAX_QUEUES];
    uint64_t next_data; /* bump allocator for buffers */
    /* what the device asked of the transport, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned notified[TD_MAX_QUEUES];
    unsigned config_changes;
    unsigned resets_asked;
    const char *reset_why;
};

/* Lays out every queue of dev, enables them, accepts dev->device_features & accept,
 * and activates the device. Returns activate's result. */
int td_init(struct test_driver *t, struct virtio_device *dev, uint64_t accept);
/* td_init with queues of size entries (capped at the device's maximum), at most
 * TD_MAX_QUEUE_SIZE. */
int td_init_sized(struct test_driver *t, struct virtio_device *dev, uint64_t accept, uint16_t size);
/* Only the driver side: guest RAM and ring addresses for num_queues queues of size
 * entries, for tests that hand the rings to a transport themselves. 0 or -1. */
int td_layout(struct test_driver *t, unsigned num_queues, uint16_t size);
/* Resets the device (ops->reset), disables the queues, frees the RAM. */
void td_fini(struct test_driver *t);
/* Guest RAM for a buffer of len bytes (16-byte aligned, zeroed). */
uint64_t td_alloc(struct test_driver *t, uint32_t len);
void *td_ptr(struct test_driver *t, uint64_t gpa, uint64_t len);
/* Makes a chain of n buffers available on queue q; returns its head. */
uint16_t td_add(struct test_driver *t, unsigned q, const struct td_buf *bufs, unsigned n);
void td_kick(struct test_driver *t, unsigned q);
/* The next used entry of queue q, if the device pushed one. */
bool td_used(struct test_driver *t, unsigned q, uint32_t *id, uint32_t *len);
/* The device's used index of queue q, and used entry i (not consumed by td_used). */
uint16_t td_used_idx(struct test_driver *t, unsigned q);
void td_used_entry(struct test_driver *t, unsigned q, uint16_t i, uint32_t *id, uint32_t *len);
/* Writes queue q's avail index as a (possibly misbehaving) driver would. */
void td_set_avail_idx(struct test_driver *t, unsigned q, uint16_t idx);
/* Waits up to timeout_ms for a used entry (devices with worker threads). */
bool td_wait_used(struct test_driver *t, unsigned q, uint32_t *id, uint32_t *len, int timeout_ms);
/* Waits up to timeout_ms until queue q's used index is exactly count. */
bool td_wait_used_idx(struct test_driver *t, unsigned q, uint16_t count, int timeout_ms);
/* The transport records, read under the lock (devices with worker threads). */
unsigned td_notified(struct test_driver *t, unsigned q);
unsigned td_resets(struct test_driver *t, const char **why);

#endif
