/* virtio_io: a tiny guest with its own minimal virtio-pci drivers (polling, no interrupts).
 * It finds the virtio-blk and virtio-console functions on PCI bus 0, moves their BARs into the
 * 32-bit window (vmkit's identity map covers the first 4 GiB), and then, for ever: keeps every
 * transmit buffer of console port 0 queued with text (as much as the host takes), reads a
 * sector of the disk and says "blk N" on COM1 when it completes. When no console buffer came
 * back for HELD_ROUNDS disk reads in a row it says "console held" once: the host stopped
 * taking console output, and disk I/O goes on regardless. Freestanding C, built with the
 * tiny-guest runtime (lib.S) for COM1 and the PM timer. */
#include "virtio_tiny.h"

#define VIRTIO_BLK_ID     0x1042
#define VIRTIO_CONSOLE_ID 0x1043
#define TEXT_LEN          4096
#define HELD_ROUNDS       16
#define WAIT_MS           5000

static struct queue blk_q, con_q;
static struct dev blk, con;
static uint8_t text[QSIZE][TEXT_LEN];
static uint8_t sector[512];
static uint8_t status_byte;
static uint8_t hdr[16];

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
        tiny_publish(&con_q, i);
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
    tiny_publish(&blk_q, 0);
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
    if (tiny_find(VIRTIO_BLK_ID, &blk) < 0 || tiny_find(VIRTIO_CONSOLE_ID, &con) < 0)
        tiny_fail("virtio_io", "no virtio-blk or virtio-console function");
    static const unsigned blk_index[] = { 0 }, con_index[] = { 1 };
    struct queue *blk_qs[] = { &blk_q }, *con_qs[] = { &con_q };
    tiny_setup(&blk, blk_index, blk_qs, 1);
    /* port 0's transmit queue (no MULTIPORT: port 0 only) */
    tiny_setup(&con, con_index, con_qs, 1);
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
            tiny_fail("virtio_io", "a disk read did not complete");
        serial_puts("blk ");
        serial_put_dec(n);
        serial_puts("\n");
    }
}
