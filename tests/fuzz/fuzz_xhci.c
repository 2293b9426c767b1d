/* libFuzzer target for the xHCI controller: a hostile driver's MMIO writes and guest memory
 * (TRBs, contexts, segment tables) from the input, a fake device behind a port whose answers
 * the input also picks. The controller is unthreaded: the input says when the worker's turn
 * (xhci_process) comes, so every run is deterministic. Guest RAM is small, so pointers the
 * input makes up often land in it, and often just past it.
 *
 * The input: a byte of device behaviour, then operations until it ends, each an opcode byte
 * and its operands (see the OP_ names). The controller starts set up as a driver leaves it
 * (DCBAA, command ring, one event ring segment, running), so short inputs reach the rings. */
#include "input.h"
#include "devices/usb/xhci.h"
#include "core/le_bytes.h"
#include "pci/msix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE 0x8000
#define DCBAA    0x0000
#define CMD_RING 0x1000
#define ERST     0x2000
#define EVT_RING 0x3000
#define EVT_TRBS 32
#define OP_BASE  XHCI_CAPLENGTH

enum {
    OP_MMIO32,   /* u16 offset, u32 value */
    OP_MMIO64,   /* u16 offset, u64 value */
    OP_READ,     /* u16 offset, u8 size */
    OP_MEM,      /* u16 address, u8 length, bytes */
    OP_TRB,      /* u16 address (16-aligned), 16 bytes */
    OP_PROCESS,  /* u8 turns */
    OP_ATTACH,   /* u8 speed */
    OP_DETACH,   /* u8 port */
    OP_WAKEUP,   /* u8 endpoint address */
    OP_DOORBELL, /* u8 slot, u8 target */
    OP_BEHAVE,   /* u8 device behaviour */
    OP_MSIX,     /* u8: enable MSI-X and unmask vector n */
    OP_COUNT
};

/* ---- the fake device ---- */

enum { B_OK, B_SHORT, B_NAK, B_STALL, B_ERROR };

struct fdev {
    struct usb_device usb;
    uint8_t behave;
    bool live;
    uint8_t sink;
};

static int answer(struct fdev *d)
{
    switch (d->behave % 5) {
    case B_NAK: return USB_RET_NAK;
    case B_STALL: return USB_RET_STALL;
    case B_ERROR: return USB_RET_ERROR;
    default: return 0;
    }
}

static int fd_control(void *ctx, const struct usb_setup *s, uint8_t *data)
{
    struct fdev *d = ctx;
    FZ_CHECK(s->request != USB_REQ_SET_ADDRESS || s->request_type != 0);
    int r = answer(d);
    if (r < 0)
        return r;
    /* Touch every byte the controller says it gave us. */
    for (unsigned i = 0; i < s->length; i++) {
        d->sink ^= data[i];
        data[i] = (uint8_t)(i * 7 + s->request);
    }
    return d->behave % 5 == B_SHORT ? s->length / 2 : s->length;
}

static int fd_transfer(void *ctx, const struct usb_packet *p)
{
    struct fdev *d = ctx;
    size_t sum = 0;
    for (unsigned i = 0; i < p->iovcnt; i++) {
        uint8_t *b = p->iov[i].iov_base;
        for (size_t k = 0; k < p->iov[i].iov_len; k++) {
            d->sink ^= b[k];
            if (p->ep & USB_DIR_IN)
                b[k] = (uint8_t)k;
        }
        sum += p->iov[i].iov_len;
    }
    FZ_CHECK(sum == p->len && p->len <= XHCI_TD_MAX_BYTES);
    int r = answer(d);
    if (r < 0)
        return r;
    return (int)(d->behave % 5 == B_SHORT ? p->len / 3 : p->len);
}

static void fd_reset(void *ctx)
{
    (void)ctx;
}

static void fd_destroy(void *ctx)
{
    struct fdev *d = ctx;
    d->live = false;
}

static const struct usb_device_ops fdev_ops = {
    .control = fd_control, .transfer = fd_transfer, .reset = fd_reset, .destroy = fd_destroy
};

/* ---- a fake KVM ---- */

static int fk_alloc(void *ctx, unsigned *gsi)
{
    unsigned *next = ctx;
    *gsi = (*next)++;
    return 0;
}

static void fk_free(void *ctx, unsigned gsi)
{
    (void)ctx;
    (void)gsi;
}

static int fk_route(void *ctx, unsigned gsi, uint64_t a, uint32_t d)
{
    (void)ctx;
    (void)gsi;
    (void)a;
    (void)d;
    return 0;
}

static int fk_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    (void)ctx;
    (void)fd;
    (void)gsi;
    (void)assign;
    return 0;
}

/* ---- the run ---- */

struct state {
    uint8_t *ram;
    struct guest_memory gm;
    unsigned next_gsi;
    struct irq_routing_ops ops;
    struct fdev devs[4];
};

static void mmio_write(struct xhci *x, uint64_t off, uint64_t v, unsigned size)
{
    uint8_t b[8];
    le_put64(b, 0, v);
    xhci_bar_ops.write(x, off % XHCI_BAR_SIZE, b, size);
}

static void preset(struct state *s, struct xhci *x)
{
    memset(s->ram, 0, RAM_SIZE);
    le_put64(s->ram, ERST, EVT_RING);
    le_put32(s->ram, ERST + 8, EVT_TRBS);
    mmio_write(x, OP_BASE + 0x38, XHCI_MAX_SLOTS, 4);
    mmio_write(x, OP_BASE + 0x30, DCBAA, 8);
    mmio_write(x, OP_BASE + 0x18, CMD_RING | 1, 8);
    mmio_write(x, XHCI_RTS_OFF + 0x28, 1, 4);
    mmio_write(x, XHCI_RTS_OFF + 0x30, ERST, 8);
    mmio_write(x, XHCI_RTS_OFF + 0x38, EVT_RING, 8);
    mmio_write(x, XHCI_RTS_OFF + 0x20, 2, 4);
    mmio_write(x, OP_BASE, 1 | 4, 4);
}

static void turns(struct xhci *x, unsigned n)
{
    for (unsigned i = 0; i < n && xhci_process(x); i++)
        ;
}

static void run(struct state *s, struct xhci *x, struct fz_in *in)
{
    uint8_t behave = fz_u8(in);
    for (unsigned i = 0; i < 4; i++)
        s->devs[i].behave = behave;
    while (in->n) {
        switch (fz_u8(in) % OP_COUNT) {
        case OP_MMIO32: {
            uint16_t off = fz_u16(in);
            mmio_write(x, off, fz_u32(in), 4);
            break;
        }
        case OP_MMIO64: {
            uint16_t off = fz_u16(in);
            mmio_write(x, off, fz_u64(in), 8);
            break;
        }
        case OP_READ: {
            uint16_t off = fz_u16(in);
            uint8_t b[8];
            unsigned sizes[] = { 1, 2, 4, 8 };
            xhci_bar_ops.read(x, off % XHCI_BAR_SIZE, b, sizes[fz_u8(in) & 3]);
            break;
        }
        case OP_MEM: {
            uint16_t at = fz_u16(in) % RAM_SIZE;
            size_t len = fz_u8(in);
            if (len > RAM_SIZE - at)
                len = RAM_SIZE - at;
            fz_bytes(in, s->ram + at, len);
            break;
        }
        case OP_TRB: {
            uint16_t at = (fz_u16(in) % RAM_SIZE) & ~0xf;
            fz_bytes(in, s->ram + at, 16);
            break;
        }
        case OP_PROCESS: turns(x, 1 + (fz_u8(in) & 7)); break;
        case OP_ATTACH: {
            uint8_t b = fz_u8(in);
            struct fdev *d = &s->devs[b & 3];
            if (d->live)
                break;
            d->usb = (struct usb_device){ .ops = &fdev_ops,
                                          .ctx = d,
                                          .speed = (enum usb_speed)(1 + ((b >> 2) & 3)) };
            if (xhci_attach(x, &d->usb, NULL) == 0)
                d->live = true;
            break;
        }
        case OP_DETACH: xhci_detach(x, 1 + fz_u8(in) % XHCI_PORTS); break;
        case OP_WAKEUP: {
            uint8_t b = fz_u8(in);
            struct fdev *d = &s->devs[b & 3];
            if (d->live)
                usb_device_wakeup(&d->usb, fz_u8(in));
            break;
        }
        case OP_DOORBELL: {
            uint8_t slot = fz_u8(in) % (XHCI_MAX_SLOTS + 1);
            mmio_write(x, XHCI_DB_OFF + 4u * slot, fz_u8(in), 4);
            break;
        }
        case OP_BEHAVE: {
            uint8_t b = fz_u8(in);
            s->devs[b & 3].behave = b >> 2;
            break;
        }
        case OP_MSIX: {
            uint8_t v = fz_u8(in) % XHCI_INTERRUPTERS;
            struct pci_device *p = xhci_pci_device(x);
            mmio_write(x, XHCI_MSIX_TABLE + 16u * v, 0xfee00000u, 4);
            mmio_write(x, XHCI_MSIX_TABLE + 16u * v + 12, 0, 4);
            pci_config_write(p, pci_config_read(p, PCI_CAPABILITY_LIST, 1) + 2, MSIX_CTRL_ENABLE,
                             2);
            break;
        }
        default: break;
        }
    }
    turns(x, 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Guest RAM lives as long as the process; the controller is made fresh for each input. */
    static struct state *s;
    if (!s) {
        s = calloc(1, sizeof(*s));
        FZ_CHECK(s != NULL);
        s->ram = calloc(1, RAM_SIZE);
        FZ_CHECK(s->ram != NULL);
        guest_memory_init_empty(&s->gm);
        FZ_CHECK(gm_add_region(&s->gm, 0, RAM_SIZE, s->ram) == 0);
        s->ops = (struct irq_routing_ops){ .gsi_alloc = fk_alloc,
                                           .gsi_free = fk_free,
                                           .msi_route = fk_route,
                                           .irqfd = fk_irqfd,
                                           .ctx = &s->next_gsi };
    }
    struct xhci *x;
    s->next_gsi = 24;
    FZ_CHECK(xhci_new_unthreaded(&s->gm, &s->ops, &x) == 0);
    memset(s->devs, 0, sizeof(s->devs));
    preset(s, x);
    struct fz_in in = { .p = data, .n = size };
    run(s, x, &in);
    xhci_free(x);
    for (unsigned i = 0; i < 4; i++)
        FZ_CHECK(!s->devs[i].live); /* xhci_free destroyed what was attached */
    return 0;
}

/* ---- seeds: a driver that brings a device up and moves data ---- */

static void s_mmio32(struct fz_seed *s, uint16_t off, uint32_t v)
{
    fz_seed_u8(s, OP_MMIO32);
    fz_seed_u16(s, off);
    fz_seed_u32(s, v);
}

static void s_trb(struct fz_seed *s, uint16_t at, uint64_t param, uint32_t status, uint32_t ctrl)
{
    fz_seed_u8(s, OP_TRB);
    fz_seed_u16(s, at);
    fz_seed_u64(s, param);
    fz_seed_u32(s, status);
    fz_seed_u32(s, ctrl | 1);
}

static void s_mem32(struct fz_seed *s, uint16_t at, uint32_t v)
{
    fz_seed_u8(s, OP_MEM);
    fz_seed_u16(s, at);
    fz_seed_u8(s, 4);
    fz_seed_u32(s, v);
}

static void s_process(struct fz_seed *s)
{
    fz_seed_u8(s, OP_PROCESS);
    fz_seed_u8(s, 7);
}

static void s_command(struct fz_seed *s, unsigned *n, uint64_t param, uint32_t ctrl)
{
    s_trb(s, (uint16_t)(CMD_RING + 16 * (*n)++), param, 0, ctrl);
    s_mmio32(s, XHCI_DB_OFF, 0);
    s_process(s);
}

/* Attach (speed), reset port 1 or 5, Enable Slot, Address Device, GET_DESCRIPTOR, then
 * Configure Endpoint for bulk IN/OUT and one TD each way. */
static void seed_bring_up(struct fz_seed *s, uint8_t behave, unsigned speed)
{
    unsigned n = 0, port = speed == USB_SPEED_SUPER ? XHCI_USB2_PORTS + 1 : 1;
    fz_seed_u8(s, behave);
    fz_seed_u8(s, OP_ATTACH);
    fz_seed_u8(s, (uint8_t)((speed - 1) << 2));
    s_process(s);
    s_mmio32(s, (uint16_t)(OP_BASE + 0x400 + 0x10 * (port - 1)), 1u << 9 | 1u << 4);
    s_process(s);
    s_command(s, &n, 0, 9u << 10);
    s_mem32(s, DCBAA + 8, 0x4000);
    /* Input context at 0x5000: add slot + EP0; EP0's ring at 0x6000. */
    s_mem32(s, 0x5004, 3);
    s_mem32(s, 0x5020, 1u << 27);
    s_mem32(s, 0x5024, port << 16);
    s_mem32(s, 0x5044, 64u << 16 | 4u << 3);
    s_mem32(s, 0x5048, 0x6001);
    s_command(s, &n, 0x5000, 11u << 10 | 1u << 24);
    s_trb(s, 0x6000, 0x0012000001000680ull, 8, 2u << 10 | 1u << 6 | 3u << 16 | 1u << 5);
    s_trb(s, 0x6010, 0x7000, 18, 3u << 10 | 1u << 16 | 1u << 2);
    s_trb(s, 0x6020, 0, 0, 4u << 10 | 1u << 5);
    s_mmio32(s, XHCI_DB_OFF + 4, 1);
    s_process(s);
    /* Configure Endpoint: DCI 3 (bulk IN, ring 0x6400), DCI 4 (bulk OUT, ring 0x6800). */
    s_mem32(s, 0x5004, 1u << 3 | 1u << 4 | 1);
    s_mem32(s, 0x5020, 4u << 27);
    s_mem32(s, 0x5084, 512u << 16 | 6u << 3);
    s_mem32(s, 0x5088, 0x6401);
    s_mem32(s, 0x50a4, 512u << 16 | 2u << 3);
    s_mem32(s, 0x50a8, 0x6801);
    s_command(s, &n, 0x5000, 12u << 10 | 1u << 24);
    s_trb(s, 0x6400, 0x7100, 100, 1u << 10 | 1u << 4 | 1u << 2);
    s_trb(s, 0x6410, 0x7200, 100, 1u << 10 | 1u << 5 | 1u << 2);
    s_mmio32(s, XHCI_DB_OFF + 4, 3);
    s_trb(s, 0x6800, 0x7300, 64, 1u << 10 | 1u << 4);
    s_trb(s, 0x6810, 0xabcd, 0, 7u << 10 | 1u << 5);
    s_mmio32(s, XHCI_DB_OFF + 4, 4);
    s_process(s);
    /* Recovery commands: Stop, Reset Endpoint, Set TR Dequeue, Evaluate, Reset Device. */
    s_command(s, &n, 0, 15u << 10 | 1u << 24 | 3u << 16);
    s_command(s, &n, 0, 14u << 10 | 1u << 24 | 3u << 16);
    s_command(s, &n, 0x6421, 16u << 10 | 1u << 24 | 3u << 16);
    s_command(s, &n, 0x5000, 13u << 10 | 1u << 24);
    s_command(s, &n, 0, 17u << 10 | 1u << 24);
    s_command(s, &n, 0, 10u << 10 | 1u << 24);
}

void fz_write_seeds(const char *dir)
{
    static const uint8_t behaviours[] = { B_OK, B_SHORT, B_NAK, B_STALL, B_ERROR };
    struct fz_seed s;
    for (unsigned b = 0; b < sizeof(behaviours); b++) {
        for (unsigned speed = USB_SPEED_FULL; speed <= USB_SPEED_SUPER; speed += 3) {
            char name[32];
            s.n = 0;
            seed_bring_up(&s, behaviours[b], speed);
            if (behaviours[b] == B_NAK) {
                fz_seed_u8(&s, OP_BEHAVE);
                fz_seed_u8(&s, 0);
                fz_seed_u8(&s, OP_WAKEUP);
                fz_seed_u8(&s, 0);
                fz_seed_u8(&s, 0x81);
                s_process(&s);
            }
            snprintf(name, sizeof(name), "bring-up-%u-%u", b, speed);
            fz_seed_save(dir, name, &s);
        }
    }
    /* Hot-plug and HCRST in the middle of things. */
    s.n = 0;
    seed_bring_up(&s, B_OK, USB_SPEED_HIGH);
    fz_seed_u8(&s, OP_DETACH);
    fz_seed_u8(&s, 0);
    fz_seed_u8(&s, OP_MSIX);
    fz_seed_u8(&s, 0);
    s_mmio32(&s, OP_BASE, 2);
    s_process(&s);
    fz_seed_save(dir, "detach-hcrst", &s);
}
