#include "virtio_tiny.h"

#define BAR_WINDOW  0xd0000000u /* where a function's BAR 4 goes (64 KiB per slot) */
#define COMMON      0x0000      /* vmkit's virtio-pci BAR layout */
#define NOTIFY      0x3000
#define NOTIFY_MULT 4

#define STATUS_ACK         1
#define STATUS_DRIVER      2
#define STATUS_DRIVER_OK   4
#define STATUS_FEATURES_OK 8

/* The compiler may call these for copies and clears. */
void *memset(void *d, int c, size_t n)
{
    volatile uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
    volatile uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static uint32_t pci_read(unsigned slot, unsigned reg)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
    return inl(0xcfc);
}
static void pci_write(unsigned slot, unsigned reg, uint32_t v)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
    outl(0xcfc, v);
}

void tiny_fail(const char *who, const char *what)
{
    serial_puts(who);
    serial_puts(": ");
    serial_puts(what);
    serial_puts("\n");
    power_off();
}

int tiny_find(uint16_t id, struct dev *d)
{
    for (unsigned slot = 1; slot < 32; slot++) {
        uint32_t ids = pci_read(slot, 0);
        if ((ids & 0xffff) != VIRTIO_VENDOR || ids >> 16 != id)
            continue;
        d->bar = BAR_WINDOW + (uint64_t)slot * 0x10000;
        pci_write(slot, 0x20, (uint32_t)d->bar | (pci_read(slot, 0x20) & 0xf)); /* BAR 4 */
        pci_write(slot, 0x24, 0);                                               /* BAR 5 */
        pci_write(slot, 0x04, pci_read(slot, 0x04) | 0x6); /* memory + bus master */
        return 0;
    }
    return -1;
}

void tiny_setup(struct dev *d, const unsigned *index, struct queue **q, unsigned n)
{
    uint64_t c = d->bar + COMMON;
    MMIO8(c + 20) = 0;
    MMIO8(c + 20) = STATUS_ACK | STATUS_DRIVER;
    MMIO32(c + 8) = 0; /* driver features 0..31: none */
    MMIO32(c + 12) = 0;
    MMIO32(c + 8) = 1; /* 32..63: VERSION_1 */
    MMIO32(c + 12) = 1;
    MMIO8(c + 20) = STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK;
    if (!(MMIO8(c + 20) & STATUS_FEATURES_OK))
        tiny_fail("virtio", "features refused");
    for (unsigned i = 0; i < n; i++) {
        struct queue *vq = q[i];
        MMIO16(c + 22) = (uint16_t)index[i];
        if (MMIO16(c + 24) < QSIZE)
            tiny_fail("virtio", "queue too small");
        MMIO16(c + 24) = QSIZE;
        MMIO32(c + 32) = (uint32_t)(uintptr_t)vq->desc;
        MMIO32(c + 36) = 0;
        MMIO32(c + 40) = (uint32_t)(uintptr_t)&vq->avail;
        MMIO32(c + 44) = 0;
        MMIO32(c + 48) = (uint32_t)(uintptr_t)&vq->used;
        MMIO32(c + 52) = 0;
        vq->notify = d->bar + NOTIFY + (uint64_t)MMIO16(c + 30) * NOTIFY_MULT;
        vq->index = (uint16_t)index[i];
        MMIO16(c + 28) = 1;
    }
    MMIO8(c + 20) = STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
}

void tiny_publish(struct queue *vq, uint16_t head)
{
    vq->avail.ring[vq->avail.idx % QSIZE] = head;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    vq->avail.idx++;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    MMIO16(vq->notify) = vq->index;
}

int tiny_used(struct queue *vq, uint32_t *id, uint32_t *len)
{
    if (*(volatile uint16_t *)&vq->used.idx == vq->last_used)
        return 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    const struct used_elem *e = &vq->used.ring[vq->last_used % QSIZE];
    if (id)
        *id = e->id;
    if (len)
        *len = e->len;
    vq->last_used++;
    return 1;
}
