/* vsock_echo: a tiny guest with its own virtio-vsock driver (CID 3; polling). It connects to
 * host port 1234 and sends "hello from the guest\n", accepts connections to its port 7 and
 * echoes every byte back, and refuses (RST) connections to any other port, saying on COM1
 * what happens. Freestanding C on the tiny-guest runtime (lib.S) and virtio_tiny.c. */
#include "virtio_tiny.h"

#define VIRTIO_VSOCK_ID 0x1053
#define GUEST_CID       3
#define HDR             44
#define PAYLOAD         256
#define ECHO_PORT       7
#define HELLO_PORT      1234
#define OUR_PORT        4000
#define MAX_CONNS       4

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE };

static struct queue rxq, txq;
static struct dev vsock;
static uint8_t rxbuf[QSIZE][HDR + PAYLOAD];
static uint8_t txbuf[QSIZE][HDR + PAYLOAD];
static unsigned tx_busy; /* a bit per transmit slot the device still holds */

struct conn {
    uint32_t host_port, rx_cnt;
    int open;
};
static struct conn echo[MAX_CONNS];

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One packet to the host: from our port to its port, with payload. */
static void send(uint32_t src_port, uint32_t dst_port, uint16_t op, const uint8_t *data,
                 uint32_t len, uint32_t fwd_cnt)
{
    uint32_t id;
    while (tiny_used(&txq, &id, 0))
        tx_busy &= ~(1u << (id % QSIZE));
    unsigned slot = 0;
    while (tx_busy & (1u << slot)) {
        slot = (slot + 1) % QSIZE;
        if (slot == 0) {
            while (!tiny_used(&txq, &id, 0))
                pm_delay(358);
            tx_busy &= ~(1u << (id % QSIZE));
        }
    }
    uint8_t *b = txbuf[slot];
    memset(b, 0, HDR);
    b[0] = GUEST_CID; /* src_cid, le64 */
    b[8] = 2;         /* dst_cid: the host */
    put32(b + 16, src_port);
    put32(b + 20, dst_port);
    put32(b + 24, len);
    b[28] = 1; /* stream */
    b[30] = (uint8_t)op;
    put32(b + 36, 65536); /* buf_alloc */
    put32(b + 40, fwd_cnt);
    memcpy(b + HDR, data, len);
    txq.desc[slot] = (struct desc){ .addr = (uintptr_t)b, .len = HDR + len };
    tx_busy |= 1u << slot;
    tiny_publish(&txq, (uint16_t)slot);
}

static void post_rx(unsigned i)
{
    rxq.desc[i] =
        (struct desc){ .addr = (uintptr_t)rxbuf[i], .len = HDR + PAYLOAD, .flags = DESC_F_WRITE };
    tiny_publish(&rxq, (uint16_t)i);
}

static struct conn *find_echo(uint32_t host_port)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (echo[i].open && echo[i].host_port == host_port)
            return &echo[i];
    return 0;
}

static void packet(const uint8_t *b)
{
    uint32_t src_port = get32(b + 16), dst_port = get32(b + 20), len = get32(b + 24);
    uint16_t op = b[30];
    if (len > PAYLOAD)
        len = PAYLOAD;
    if (dst_port == OUR_PORT && src_port == HELLO_PORT) {
        if (op == OP_RESPONSE) {
            static const char hello[] = "hello from the guest\n";
            serial_puts("vsock: connected to 1234\n");
            send(OUR_PORT, HELLO_PORT, OP_RW, (const uint8_t *)hello, sizeof(hello) - 1, 0);
        } else if (op == OP_RST) {
            serial_puts("vsock: 1234 refused\n");
        }
        return;
    }
    struct conn *c = find_echo(src_port);
    if (op == OP_REQUEST) {
        struct conn *free_slot = 0;
        for (int i = 0; i < MAX_CONNS && !free_slot; i++)
            if (!echo[i].open)
                free_slot = &echo[i];
        if (dst_port != ECHO_PORT || c || !free_slot) {
            serial_puts("vsock: refused a connection\n");
            send(dst_port, src_port, OP_RST, 0, 0, 0);
            return;
        }
        *free_slot = (struct conn){ .host_port = src_port, .open = 1 };
        send(ECHO_PORT, src_port, OP_RESPONSE, 0, 0, 0);
        serial_puts("vsock: accepted\n");
        return;
    }
    if (!c)
        return;
    if (op == OP_RW) {
        c->rx_cnt += len;
        send(ECHO_PORT, c->host_port, OP_RW, b + HDR, len, c->rx_cnt);
    } else if (op == OP_SHUTDOWN || op == OP_RST) {
        if (op == OP_SHUTDOWN)
            send(ECHO_PORT, c->host_port, OP_RST, 0, 0, c->rx_cnt);
        c->open = 0;
        serial_puts("vsock: closed\n");
    }
}

void guest_main(void);
void guest_main(void)
{
    if (tiny_find(VIRTIO_VSOCK_ID, &vsock) < 0)
        tiny_fail("vsock_echo", "no virtio-vsock function");
    static const unsigned index[] = { 0, 1 };
    struct queue *qs[] = { &rxq, &txq };
    tiny_setup(&vsock, index, qs, 2); /* rx, tx; the event queue stays off */
    for (unsigned i = 0; i < QSIZE; i++)
        post_rx(i);
    serial_puts("vsock_echo: ready\n");
    send(OUR_PORT, HELLO_PORT, OP_REQUEST, 0, 0, 0);
    for (;;) {
        uint32_t id, len;
        while (tiny_used(&rxq, &id, &len)) {
            if (len >= HDR)
                packet(rxbuf[id % QSIZE]);
            post_rx(id % QSIZE);
        }
        pm_delay(358); /* 0.1 ms */
    }
}
