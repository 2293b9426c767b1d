/* The driver and transport side shared by the virtio device fuzzers. A fuzz input is
 * a hostile driver: a short header (which device variant, which features, whether to
 * bring the device up the usual way), then actions read one after another from the
 * input — status writes, queue set-up, raw writes to guest RAM and descriptors,
 * chains built from segments, kicks, configuration accesses, device-specific steps.
 * The transport part behaves as virtio-pci does (feature check at FEATURES_OK,
 * activate at DRIVER_OK, kicks dropped after NEEDS_RESET), so the device sees only
 * what a real transport would hand it. */
#ifndef VMK_TESTS_FUZZ_VIRTIO_DRIVER_H
#define VMK_TESTS_FUZZ_VIRTIO_DRIVER_H

#include "core/guest_memory.h"
#include "input.h"
#include "virtio/virtio_device.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Guest RAM: one 64 KiB region at 0. Rings of queue q sit in slot q below FZ_DATA_GPA
 * (desc, then avail at +0x100, used at +0x140: room for 16 entries); buffers the chain
 * builder allocates come from above it. */
#define FZ_RAM_SIZE       0x10000u
#define FZ_SLOT_SIZE      0x200u
#define FZ_DATA_GPA       0x8000u
#define FZ_MAX_QUEUES     (FZ_DATA_GPA / FZ_SLOT_SIZE)
#define FZ_DEFAULT_QSIZE  16u
#define FZ_HDR_LEN        6
#define FZ_MAX_CHAIN_SEGS 16

/* header[1] */
#define FZ_H_BRING_UP  0x01 /* features, FEATURES_OK, every queue, DRIVER_OK */
#define FZ_H_EVENT_IDX 0x02 /* accept VIRTIO_F_RING_EVENT_IDX */
#define FZ_H_INDIRECT  0x04 /* accept VIRTIO_F_RING_INDIRECT_DESC */
/* bits 4-6: default queue size 16 >> n (n > 4: 1) */

/* Actions: the opcode byte modulo FZ_OP_COUNT. */
enum fz_op {
    FZ_OP_FEATURES,   /* u8 mode, u64 bits (mode & 1: & device features | VERSION_1) */
    FZ_OP_STATUS,     /* u8 value, as written to device_status (0 resets) */
    FZ_OP_QUEUE,      /* u8 q, u16 size, u8 mode (& 1: u16 desc, avail, used follow) */
    FZ_OP_QUEUE_BASE, /* u8 q, u16 base: vhost-user SET_VRING_BASE before DRIVER_OK */
    FZ_OP_MEM,        /* u16 gpa, u8 n, n bytes */
    FZ_OP_DESC,       /* u8 q, u16 index, u16 addr, u32 len, u16 flags, u16 next */
    FZ_OP_AVAIL,      /* u8 q, u16 head: publish one entry */
    FZ_OP_AVAIL_IDX,  /* u8 q, u16 idx: write avail->idx as is */
    FZ_OP_RING_FLAGS, /* u8 q, u16 avail flags, u16 used_event */
    FZ_OP_CHAIN,      /* u8 q, u8 ctl, segments (see fz_seed_chain) */
    FZ_OP_NOTIFY,     /* u8 q */
    FZ_OP_CFG_READ,   /* u8 offset, u8 size code */
    FZ_OP_CFG_WRITE,  /* u8 offset, u8 size code, 8 bytes */
    FZ_OP_RESET,      /* device_status = 0 */
    FZ_OP_DEVICE,     /* device-specific, arguments read by the target */
    FZ_OP_COUNT
};

/* FZ_OP_CHAIN ctl */
#define FZ_CHAIN_NSEG(ctl)   (((ctl)&15u) + 1) /* segments that follow */
#define FZ_CHAIN_INDIRECT    0x10              /* through an indirect table */
#define FZ_CHAIN_UNPUBLISHED 0x20              /* write descriptors only */
#define FZ_CHAIN_KICK        0x40              /* notify the queue afterwards */
/* segment flags */
#define FZ_SEG_WRITABLE      0x01
#define FZ_SEG_AT            0x02 /* u16 gpa follows instead of a fresh buffer */

struct fz_queue {
    uint16_t size;
    uint64_t desc, avail, used;
    bool enabled;
    uint16_t avail_idx; /* the driver's next avail index */
    uint16_t next_desc; /* where the chain builder writes next */
};

struct fz_driver;

struct fz_target_ops {
    /* After a kick reached the device: wait until it is done with everything it took
     * (devices that hand work to threads). NULL when queue_notify finishes inline. */
    void (*settle)(struct fz_driver *t);
    /* FZ_OP_DEVICE: reads its own arguments from in. */
    void (*action)(struct fz_driver *t, struct fz_in *in);
};

struct fz_driver {
    struct virtio_device *dev;
    const struct fz_target_ops *ops;
    void *ctx; /* the target's */
    struct guest_memory gm;
    uint8_t *ram;
    uint8_t status;           /* device_status as the transport keeps it */
    uint64_t driver_features; /* what the driver wrote */
    struct fz_queue q[FZ_MAX_QUEUES];
    uint32_t bump;           /* next buffer, in [FZ_DATA_GPA, FZ_RAM_SIZE) */
    unsigned resets_asked;   /* needs_reset calls (any thread) */
    unsigned queue_notifies; /* notify_queue calls (any thread) */
    bool trace;              /* $VMKIT_FUZZ_TRACE: say what happens, on stderr */
};

/* Once per process: guest RAM. 0 or -1. */
int fz_driver_init(struct fz_driver *t);
/* Runs one input against dev (fresh or reset): zeroed RAM, the header, every action,
 * then a device reset. Traps on a broken invariant. */
void fz_run(struct fz_driver *t, struct virtio_device *dev, const struct fz_target_ops *ops,
            void *ctx, const uint8_t *data, size_t size);
/* Whether gpa..gpa+len lies in guest RAM, and the host pointer range p..p+len does. */
bool fz_in_ram(const struct fz_driver *t, const void *p, size_t len);
/* The transport-side invariants: no queue holds an element unless it is broken, and
 * a broken queue was reported through needs_reset. */
void fz_check_queues(struct fz_driver *t);
/* vhost-user's stop and restart (GET_VRING_BASE, then SET_VRING_BASE and start): the
 * device reset waits for its work; the queues resume where they were. */
void fz_stop_restart(struct fz_driver *t);

/* Seeds in the driver grammar (input.h has the byte writers). */
struct fz_seg {
    bool writable;
    uint16_t len;
    bool at; /* at gpa instead of a fresh buffer */
    uint16_t gpa;
    const void *data; /* readable segments: the first data_len bytes */
    uint8_t data_len;
};

void fz_seed_begin(struct fz_seed *s, uint8_t variant, uint8_t flags, uint32_t device_features);
/* FZ_OP_CHAIN. */
void fz_seed_chain(struct fz_seed *s, unsigned q, uint8_t ctl, const struct fz_seg *segs,
                   unsigned n);
void fz_seed_notify(struct fz_seed *s, unsigned q);
#endif
