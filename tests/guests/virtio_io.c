/* virtio_io: a tiny guest with its own minimal virtio-pci drivers (polling, no interrupts).
 * It finds the virtio-blk and virtio-console functions on PCI bus 0, moves their BARs into the
 * 32-bit window (vmkit's identity map covers the first 4 GiB), and then, for ever: keeps every
 * transmit buffer of console port 0 queued with text (as much as the host takes), reads a
 * sector of the disk and says "blk N" on COM1 when it completes. When no console buffer came
 * back for HELD_ROUNDS disk reads in a row it says "console held" once: the host stopped
 * taking console output, and disk I/O goes on regardless. Freestanding C, built with the
 * tiny-guest runtime (lib.S) for COM1 and the PM timer. */
#include <stddef.h>
#include <stdint.h>

void serial_puts(const char *s);
void serial_put_dec(uint64_t n);
void pm_delay(uint32_t ticks);
void power_off(void);

#define VIRTIO_VENDOR     0x1af4
#define VIRTIO_BLK_ID     0x1042
#define VIRTIO_CONSOLE_ID 0x1043
#define BAR_WINDOW        0xd0000000u /* where this guest puts BAR 4 (64 KiB per slot) */
#define COMMON            0x0000      /* vmkit's virtio-pci BAR layout */
#define NOTIFY            0x3000
#define NOTIFY_MULT       4
#define QSIZE             8
#define TEXT_LEN          4096
#define HELD_ROUNDS       16
#define WAIT_MS           5000

#define STATUS_ACK         1
#define STATUS_DRIVER      2
#define STATUS_DRIVER_OK   4
#define STATUS_FEATURES_OK 8

#define DESC_F_NEXT  1
#define DESC_F_WRITE 2

/* The compiler may call these for copies and clears. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
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

static struct queue blk_q, con_q;
static struct dev blk, con;
static uint8_t text[QSIZE][TEXT_LEN];
static uint8_t sector[512];
static uint8_t status_byte;
static uint8_t hdr[16];

static void fail(const char *what)
{
    serial_puts("virtio_io: ");
    serial_puts(what);
    serial_puts("\n");
    power_off();
}

/* Finds the function with device id, places its BAR 4 and enables memory decoding. */
static int find(uint16_t id, struct dev *d)
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

/* The virtio 1.x handshake with VERSION_1 alone, then queue q set up. */
static void setup(struct dev *d, unsigned q, struct queue *vq)
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
        fail("features refused");
    MMIO16(c + 22) = (uint16_t)q;
    if (MMIO16(c + 24) < QSIZE)
        fail("queue too small");
    MMIO16(c + 24) = QSIZE;
    MMIO32(c + 32) = (uint32_t)(uintptr_t)vq->desc;
    MMIO32(c + 36) = 0;
    MMIO32(c + 40) = (uint32_t)(uintptr_t)&vq->avail;
    MMIO32(c + 44) = 0;
    MMIO32(c + 48) = (uint32_t)(uintptr_t)&vq->used;
    MMIO32(c + 52) = 0;
    vq->notify = d->bar + NOTIFY + (uint64_t)MMIO16(c + 30) * NOTIFY_MULT;
    vq->index = (uint16_t)q;
    MMIO16(c + 28) = 1;
    MMIO8(c + 20) = STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
}

static void publish(struct queue *vq, uint16_t head)
{
    vq->avail.ring[vq->avail.idx % QSIZE] = head;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    vq->avail.idx++;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    MMIO16(vq->notify) = vq->index;
}

/* Console transmit buffers in flight (a bit each): the host keeps them while it is full. */
static unsigned con_busy;

static void console_fill(void)
{
    while (con_q.last_used != *(volatile uint16_t *)&con_q.used.idx) {
        uint32_t id = con_q.used.ring[con_q.last_used % QSIZE].id;
        con_busy &= ~(1u << (id % QSIZE));
        con_q.last_used++;
    }
    for (uint16_t i = 0; i < QSIZE; i++) {
        if (con_busy & (1u << i))
            continue;
        con_q.desc[i] = (struct desc){ .addr = (uintptr_t)text[i], .len = TEXT_LEN };
        con_busy |= 1u << i;
        publish(&con_q, i);
    }
}

/* Reads a sector; 0 once it completed with status OK. */
static int blk_read(uint64_t lba)
{
    hdr[0] = 0; /* VIRTIO_BLK_T_IN */
    for (int i = 0; i < 8; i++)
        hdr[8 + i] = (uint8_t)(lba >> (8 * i));
    status_byte = 0xff;
    blk_q.desc[0] =
        (struct desc){ .addr = (uintptr_t)hdr, .len = 16, .flags = DESC_F_NEXT, .next = 1 };
    blk_q.desc[1] = (struct desc){
        .addr = (uintptr_t)sector, .len = 512, .flags = DESC_F_NEXT | DESC_F_WRITE, .next = 2
    };
    blk_q.desc[2] =
        (struct desc){ .addr = (uintptr_t)&status_byte, .len = 1, .flags = DESC_F_WRITE };
    publish(&blk_q, 0);
    for (int ms = 0; ms < WAIT_MS; ms++) {
        if (*(volatile uint16_t *)&blk_q.used.idx != blk_q.last_used) {
            blk_q.last_used++;
            return *(volatile uint8_t *)&status_byte == 0 ? 0 : -1;
        }
        pm_delay(3580); /* 1 ms */
    }
    return -1;
}

void guest_main(void);
void guest_main(void)
{
    for (unsigned i = 0; i < QSIZE; i++)
        for (unsigned k = 0; k < TEXT_LEN; k++)
            text[i][k] = k % 64 == 63 ? '\n' : (uint8_t)('a' + (i + k) % 26);
    if (find(VIRTIO_BLK_ID, &blk) < 0 || find(VIRTIO_CONSOLE_ID, &con) < 0)
        fail("no virtio-blk or virtio-console function");
    setup(&blk, 0, &blk_q);
    setup(&con, 1, &con_q); /* port 0's transmit queue (no MULTIPORT: port 0 only) */
    serial_puts("virtio_io: ready\n");
    unsigned rounds_without_return = 0, said_held = 0;
    for (uint64_t n = 1;; n++) {
        uint16_t before = con_q.last_used;
        console_fill();
        rounds_without_return = con_q.last_used == before ? rounds_without_return + 1 : 0;
        if (!said_held && rounds_without_return == HELD_ROUNDS) {
            serial_puts("console held\n");
            said_held = 1;
        }
        if (blk_read(n % 8) < 0)
            fail("a disk read did not complete");
        serial_puts("blk ");
        serial_put_dec(n);
        serial_puts("\n");
    }
}
