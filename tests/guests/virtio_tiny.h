/* A minimal virtio-pci driver for the tiny C guests (polling, no interrupts): finds a function
 * on PCI bus 0, moves its BAR 4 into the 32-bit window (vmkit's identity map covers the first
 * 4 GiB), negotiates VERSION_1 alone and sets up queues of QSIZE entries. */
#ifndef VMK_TESTS_GUESTS_VIRTIO_TINY_H
#define VMK_TESTS_GUESTS_VIRTIO_TINY_H

#include <stddef.h>
#include <stdint.h>

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void serial_puts(const char *s);
void serial_put_dec(uint64_t n);
void pm_delay(uint32_t ticks);
void power_off(void);

#define VIRTIO_VENDOR 0x1af4
#define QSIZE         8
#define DESC_F_NEXT   1
#define DESC_F_WRITE  2

#define MMIO8(a)  (*(volatile uint8_t *)(uintptr_t)(a))
#define MMIO16(a) (*(volatile uint16_t *)(uintptr_t)(a))
#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
struct avail {
    uint16_t flags, idx, ring[QSIZE], used_event;
};
struct used_elem {
    uint32_t id, len;
};
struct used {
    uint16_t flags, idx;
    struct used_elem ring[QSIZE];
    uint16_t avail_event;
};

struct queue {
    struct desc desc[QSIZE] __attribute__((aligned(16)));
    struct avail avail __attribute__((aligned(2)));
    struct used used __attribute__((aligned(4)));
    uint64_t notify; /* the doorbell's address */
    uint16_t index, last_used;
};

struct dev {
    uint64_t bar;
};

/* Says "<who>: <what>" on COM1 and powers off. */
void tiny_fail(const char *who, const char *what);
/* The function with device id: its BAR placed, memory decoding and bus mastering on; -1 when
 * there is none. */
int tiny_find(uint16_t id, struct dev *d);
/* The handshake, then queue index[i] set up as q[i] for each of the n, then DRIVER_OK. */
void tiny_setup(struct dev *d, const unsigned *index, struct queue **q, unsigned n);
/* Makes the chain at head available and rings the doorbell. */
void tiny_publish(struct queue *vq, uint16_t head);
/* Whether the device used another chain; if so its id and length, and it is consumed. */
int tiny_used(struct queue *vq, uint32_t *id, uint32_t *len);

#endif
