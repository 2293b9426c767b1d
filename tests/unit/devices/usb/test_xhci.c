/* The xHCI controller driven through its BAR as Linux's xhci_hcd and OVMF's XhciDxe drive
 * it: a fake driver with a DCBAA, a command ring, an event ring and transfer rings in guest
 * RAM, and a fake USB device (descriptors, a loopback bulk pair) behind a port. The
 * controller runs unthreaded (xhci_process) but for the tests of its worker thread. */
#include "devices/usb/xhci.h"
#include "devices/usb/usb_keyboard.h"
#include "fake_kvm_irq.h"
#include "core/le_bytes.h"
#include "pci/msix.h"

#include <errno.h>
#include <linux/input-event-codes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define RAM_BASE 0x10000000ull
#define RAM_SIZE (4u << 20)

/* Where the fake driver keeps things. */
#define DCBAA    (RAM_BASE + 0x0000)
#define CMD_RING (RAM_BASE + 0x1000)
#define ERST     (RAM_BASE + 0x2000)
#define EVT_RING (RAM_BASE + 0x3000)
#define IN_CTX   (RAM_BASE + 0x5000)
#define OUT_CTX  (RAM_BASE + 0x6000)
#define EP_RINGS (RAM_BASE + 0x10000) /* DCI d's ring at + d * 0x1000 */
#define BUF      (RAM_BASE + 0x100000)
#define BIG_RING (RAM_BASE + 0x200000)
#define OUTSIDE  0x7000000000ull

#define RING_TRBS 64
#define EVT_TRBS  64

#define OP        0x40
#define USBCMD    (OP + 0x00)
#define USBSTS    (OP + 0x04)
#define CRCR      (OP + 0x18)
#define DCBAAP    (OP + 0x30)
#define CONFIG    (OP + 0x38)
#define PORTSC(p) (OP + 0x400 + 0x10 * ((p)-1))
#define IR(i)     (XHCI_RTS_OFF + 0x20 + 0x20 * (i))
#define DB(i)     (XHCI_DB_OFF + 4 * (i))

/* TRB fields */
#define C       1u
#define TC      (1u << 1)
#define ISP     (1u << 2)
#define CH      (1u << 4)
#define IOC     (1u << 5)
#define IDT     (1u << 6)
#define DIR_IN  (1u << 16)
#define TYPE(t) ((uint32_t)(t) << 10)
#define SLOT(s) ((uint32_t)(s) << 24)
#define EPID(e) ((uint32_t)(e) << 16)

enum {
    NORMAL = 1,
    SETUP = 2,
    DATA = 3,
    STATUS = 4,
    LINK = 6,
    EVENT_DATA = 7,
    TR_NOOP = 8,
    ENABLE_SLOT = 9,
    DISABLE_SLOT = 10,
    ADDRESS_DEVICE = 11,
    CONFIGURE_EP = 12,
    EVALUATE_CTX = 13,
    RESET_EP = 14,
    STOP_EP = 15,
    SET_TR_DEQ = 16,
    RESET_DEVICE = 17,
    NOOP_CMD = 23,
    EV_TRANSFER = 32,
    EV_COMMAND = 33,
    EV_PORT = 34,
    EV_HOST = 37,
};
enum {
    CC_SUCCESS = 1,
    CC_TRANSACTION = 4,
    CC_TRB_ERROR = 5,
    CC_STALL = 6,
    CC_NO_SLOTS = 9,
    CC_SLOT_NOT_ENABLED = 11,
    CC_SHORT = 13,
    CC_PARAMETER = 17,
    CC_CONTEXT_STATE = 19,
    CC_RING_FULL = 21,
    CC_STOPPED = 26,
};

/* ---- a fake KVM (tests/support/fake_kvm_irq.c): MSI-X vectors become eventfds ---- */

/* ---- a fake device: descriptors and a loopback bulk pair (IN 0x81, OUT 0x02) ---- */

static const uint8_t device_desc[18] = { 18,   1,    0x00, 0x02, 0, 0, 0, 64, 0x34,
                                         0x12, 0x78, 0x56, 0,    1, 1, 2, 3,  1 };

struct fake_dev {
    struct usb_device usb;
    uint8_t out[8192];
    size_t out_len;
    uint8_t in[8192];
    size_t in_len;
    bool stall, nak_empty;
    int slow_ms;
    unsigned resets, controls, transfers;
    bool saw_set_address, destroyed;
    volatile int in_call, call_done;
};

static int fd_control(void *ctx, const struct usb_setup *s, uint8_t *data)
{
    struct fake_dev *d = ctx;
    d->controls++;
    if (s->request == USB_REQ_SET_ADDRESS)
        d->saw_set_address = true;
    if (s->request_type == USB_DIR_IN && s->request == USB_REQ_GET_DESCRIPTOR &&
        (s->value >> 8) == USB_DT_DEVICE) {
        size_t n = s->length < sizeof(device_desc) ? s->length : sizeof(device_desc);
        memcpy(data, device_desc, n);
        return (int)n;
    }
    if (s->request_type == 0 && s->request == USB_REQ_SET_CONFIG)
        return 0;
    if (s->request_type == 0x40 && s->request == 0x42) { /* vendor OUT: store */
        memcpy(d->out, data, s->length);
        d->out_len = s->length;
        return s->length;
    }
    return USB_RET_STALL;
}

static int fd_transfer(void *ctx, const struct usb_packet *p)
{
    struct fake_dev *d = ctx;
    d->transfers++;
    if (d->slow_ms) {
        __atomic_store_n(&d->in_call, 1, __ATOMIC_SEQ_CST);
        usleep((useconds_t)d->slow_ms * 1000);
        __atomic_store_n(&d->call_done, 1, __ATOMIC_SEQ_CST);
    }
    if (d->stall)
        return USB_RET_STALL;
    size_t moved = 0;
    if (p->ep == 0x02) {
        for (unsigned i = 0; i < p->iovcnt; i++) {
            size_t n = p->iov[i].iov_len;
            if (d->out_len + n > sizeof(d->out))
                return USB_RET_ERROR;
            memcpy(d->out + d->out_len, p->iov[i].iov_base, n);
            d->out_len += n;
            moved += n;
        }
        return (int)moved;
    }
    if (p->ep == 0x81) {
        if (d->in_len == 0 && d->nak_empty)
            return USB_RET_NAK;
        for (unsigned i = 0; i < p->iovcnt && moved < d->in_len; i++) {
            size_t n = p->iov[i].iov_len;
            if (n > d->in_len - moved)
                n = d->in_len - moved;
            memcpy(p->iov[i].iov_base, d->in + moved, n);
            moved += n;
        }
        memmove(d->in, d->in + moved, d->in_len - moved);
        d->in_len -= moved;
        return (int)moved;
    }
    return USB_RET_STALL;
}

static void fd_reset(void *ctx)
{
    struct fake_dev *d = ctx;
    d->resets++;
}

static void fd_destroy(void *ctx)
{
    struct fake_dev *d = ctx;
    d->destroyed = true;
}

static const struct usb_device_ops fake_ops = {
    .control = fd_control, .transfer = fd_transfer, .reset = fd_reset, .destroy = fd_destroy
};

/* ---- the fake driver ---- */

struct ring {
    uint64_t base;
    unsigned size, enq;
    bool pcs;
};

struct fx {
    struct guest_memory gm;
    uint8_t *ram;
    struct fake_kvm k;
    struct irq_routing_ops ops;
    struct xhci *x;
    struct fake_dev dev, dev3;
    struct usb_device *attach; /* what attach_and_reset plugs in; NULL: dev */
    struct ring cmd, ep[32];
    uint64_t evt_base;
    unsigned evt_size, evt_idx;
    bool evt_ccs;
    unsigned port, slot;
};

struct ev {
    uint64_t param;
    unsigned code, len, type, slot, ep;
    bool ed;
};

static uint8_t *G(struct fx *f, uint64_t gpa)
{
    return f->ram + (gpa - RAM_BASE);
}

static uint32_t rd(struct fx *f, uint64_t off)
{
    uint8_t b[4];
    xhci_bar_ops.read(f->x, off, b, 4);
    return le_get32(b, 0);
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    le_put32(b, 0, v);
    xhci_bar_ops.write(f->x, off, b, 4);
}

static void wr64(struct fx *f, uint64_t off, uint64_t v)
{
    wr(f, off, (uint32_t)v);
    wr(f, off + 4, (uint32_t)(v >> 32));
}

static void process(struct fx *f)
{
    for (int i = 0; i < 1000 && xhci_process(f->x); i++)
        ;
}

static void put_trb(struct fx *f, uint64_t at, uint64_t param, uint32_t status, uint32_t ctrl)
{
    uint8_t *p = G(f, at);
    le_put64(p, 0, param);
    le_put32(p, 8, status);
    le_put32(p, 12, ctrl);
}

static void ring_init(struct fx *f, struct ring *r, uint64_t base, unsigned size)
{
    memset(G(f, base), 0, size * 16);
    *r = (struct ring){ .base = base, .size = size, .enq = 0, .pcs = true };
}

/* Queues a TRB (the cycle bit is the ring's); wraps through a Link TRB in the last slot. */
static uint64_t ring_push(struct fx *f, struct ring *r, uint64_t param, uint32_t status,
                          uint32_t ctrl)
{
    uint64_t at = r->base + 16ull * r->enq;
    put_trb(f, at, param, status, (ctrl & ~C) | (r->pcs ? C : 0));
    if (++r->enq == r->size - 1) {
        put_trb(f, r->base + 16ull * r->enq, r->base, 0, TYPE(LINK) | TC | (r->pcs ? C : 0));
        r->enq = 0;
        r->pcs = !r->pcs;
    }
    return at;
}

static bool next_event(struct fx *f, struct ev *e)
{
    uint8_t *p = G(f, f->evt_base + 16ull * f->evt_idx);
    uint32_t ctrl = le_get32(p, 12);
    if ((ctrl & 1) != (f->evt_ccs ? 1u : 0u))
        return false;
    uint32_t status = le_get32(p, 8);
    *e = (struct ev){ .param = le_get64(p, 0),
                      .code = status >> 24,
                      .len = status & 0xffffff,
                      .type = (ctrl >> 10) & 0x3f,
                      .slot = ctrl >> 24,
                      .ep = (ctrl >> 16) & 0x1f,
                      .ed = ctrl & 4 };
    if (++f->evt_idx == f->evt_size) {
        f->evt_idx = 0;
        f->evt_ccs = !f->evt_ccs;
    }
    wr64(f, IR(0) + 0x18, (f->evt_base + 16ull * f->evt_idx) | 8);
    return true;
}

static struct ev expect_event(struct fx *f, unsigned type)
{
    struct ev e;
    assert_true(next_event(f, &e));
    assert_int_equal(e.type, type);
    return e;
}

static void expect_no_event(struct fx *f)
{
    struct ev e;
    assert_false(next_event(f, &e));
}

/* Runs one command and returns its completion (which must point at it). */
static struct ev command(struct fx *f, uint64_t param, uint32_t status, uint32_t ctrl)
{
    uint64_t at = ring_push(f, &f->cmd, param, status, ctrl);
    wr(f, DB(0), 0);
    process(f);
    struct ev e = expect_event(f, EV_COMMAND);
    assert_int_equal(e.param, at);
    return e;
}

static void event_ring_setup(struct fx *f, uint64_t base, unsigned size)
{
    memset(G(f, base), 0, size * 16);
    le_put64(G(f, ERST), 0, base);
    le_put32(G(f, ERST), 8, size);
    f->evt_base = base;
    f->evt_size = size;
    f->evt_idx = 0;
    f->evt_ccs = true;
    wr(f, IR(0) + 0x08, 1);
    wr64(f, IR(0) + 0x10, ERST);
    wr64(f, IR(0) + 0x18, base);
}

/* What both drivers do before setting R/S. */
static void bring_up(struct fx *f)
{
    wr(f, CONFIG, XHCI_MAX_SLOTS);
    wr64(f, DCBAAP, DCBAA);
    ring_init(f, &f->cmd, CMD_RING, RING_TRBS);
    wr64(f, CRCR, CMD_RING | 1);
    event_ring_setup(f, EVT_RING, EVT_TRBS);
    wr(f, IR(0), 2); /* IE */
    wr(f, USBCMD, 1 | 4);
    process(f);
    assert_int_equal(rd(f, USBSTS) & 1, 0);
}

static void fake_dev_init(struct fake_dev *d, enum usb_speed speed)
{
    memset(d, 0, sizeof(*d));
    d->usb = (struct usb_device){ .ops = &fake_ops, .ctx = d, .speed = speed, .name = "fake" };
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->ram = aligned_alloc(4096, RAM_SIZE);
    if (!f->ram)
        return -1;
    memset(f->ram, 0, RAM_SIZE);
    guest_memory_init_empty(&f->gm);
    if (gm_add_region(&f->gm, RAM_BASE, RAM_SIZE, f->ram) < 0)
        return -1;
    f->ops = fake_kvm_ops(&f->k);
    if (xhci_new_unthreaded(&f->gm, &f->ops, &f->x) < 0)
        return -1;
    fake_dev_init(&f->dev, USB_SPEED_HIGH);
    fake_dev_init(&f->dev3, USB_SPEED_SUPER);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    xhci_free(f->x);
    free(f->ram);
    free(f);
    return 0;
}

static void clear_port_changes(struct fx *f, unsigned port)
{
    uint32_t sc = rd(f, PORTSC(port));
    wr(f, PORTSC(port), (sc & (1u << 9)) | (sc & 0x00fe0000u));
}

/* Attach the high-speed fake, reset its port, take the events. */
static void attach_and_reset(struct fx *f)
{
    assert_int_equal(xhci_attach(f->x, f->attach ? f->attach : &f->dev.usb, &f->port), 0);
    process(f);
    assert_int_equal(expect_event(f, EV_PORT).param >> 24, f->port);
    clear_port_changes(f, f->port);
    wr(f, PORTSC(f->port), (1u << 9) | (1u << 4));
    process(f);
    assert_int_equal(expect_event(f, EV_PORT).param >> 24, f->port);
    clear_port_changes(f, f->port);
}

static void input_ctx_clear(struct fx *f)
{
    memset(G(f, IN_CTX), 0, 33 * 32);
}

static uint8_t *in_ctx(struct fx *f, unsigned idx) /* 0: control, 1: slot, 1 + dci: endpoint */
{
    return G(f, IN_CTX + 32ull * idx);
}

static uint8_t *out_ctx(struct fx *f, unsigned dci) /* 0: slot */
{
    return G(f, OUT_CTX + 32ull * dci);
}

static struct ev address_device(struct fx *f, unsigned slot, unsigned port, bool bsr)
{
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 3); /* add slot + EP0 */
    le_put32(in_ctx(f, 1), 0, 1u << 27 | 3u << 20);
    le_put32(in_ctx(f, 1), 4, port << 16);
    ring_init(f, &f->ep[1], EP_RINGS + 0x1000, RING_TRBS);
    le_put32(in_ctx(f, 2), 4, 64u << 16 | 4u << 3 | 3u << 1);
    le_put64(in_ctx(f, 2), 8, f->ep[1].base | 1);
    return command(f, IN_CTX, 0, TYPE(ADDRESS_DEVICE) | SLOT(slot) | (bsr ? 1u << 9 : 0));
}

/* Enable Slot + Address Device for the fake on its port. */
static void addressed(struct fx *f)
{
    attach_and_reset(f);
    struct ev e = command(f, 0, 0, TYPE(ENABLE_SLOT));
    assert_int_equal(e.code, CC_SUCCESS);
    f->slot = e.slot;
    le_put64(G(f, DCBAA), 8 * f->slot, OUT_CTX);
    assert_int_equal(address_device(f, f->slot, f->port, false).code, CC_SUCCESS);
}

/* Bulk IN (EP1, DCI 3) and bulk OUT (EP2, DCI 4). */
static void configured(struct fx *f)
{
    addressed(f);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u | 1u << 3 | 1u << 4);
    le_put32(in_ctx(f, 1), 0, 4u << 27 | 3u << 20);
    ring_init(f, &f->ep[3], EP_RINGS + 3 * 0x1000, RING_TRBS);
    ring_init(f, &f->ep[4], EP_RINGS + 4 * 0x1000, RING_TRBS);
    le_put32(in_ctx(f, 1 + 3), 4, 512u << 16 | 6u << 3 | 3u << 1);
    le_put64(in_ctx(f, 1 + 3), 8, f->ep[3].base | 1);
    le_put32(in_ctx(f, 1 + 4), 4, 512u << 16 | 2u << 3 | 3u << 1);
    le_put64(in_ctx(f, 1 + 4), 8, f->ep[4].base | 1);
    struct ev e = command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot));
    assert_int_equal(e.code, CC_SUCCESS);
}

static unsigned ep_state(struct fx *f, unsigned dci)
{
    return le_get32(out_ctx(f, dci), 0) & 7;
}

static void ring_doorbell(struct fx *f, unsigned dci)
{
    wr(f, DB(f->slot), dci);
    process(f);
}

/* ---- capability registers, reset, run ---- */

static void test_capabilities(void **state)
{
    struct fx *f = *state;
    struct pci_device *p = xhci_pci_device(f->x);
    assert_int_equal(pci_config_read(p, PCI_VENDOR_ID, 2), 0x1b36);
    assert_int_equal(pci_config_read(p, PCI_DEVICE_ID, 2), 0x000d);
    assert_int_equal(pci_config_read(p, PCI_CLASS_PROG, 1), 0x30);
    assert_int_equal(pci_config_read(p, 0x0a, 2), 0x0c03);
    assert_int_equal(pci_config_read(p, 0x60, 1), 0x30);
    uint32_t cap0 = rd(f, 0);
    assert_int_equal(cap0 & 0xff, XHCI_CAPLENGTH);
    assert_int_equal(cap0 >> 16, 0x0100);
    uint8_t b1;
    xhci_bar_ops.read(f->x, 0, &b1, 1); /* OVMF reads CAPLENGTH as a byte */
    assert_int_equal(b1, XHCI_CAPLENGTH);
    uint32_t hcs1 = rd(f, 4);
    assert_int_equal(hcs1 & 0xff, XHCI_MAX_SLOTS);
    assert_int_equal((hcs1 >> 8) & 0x7ff, XHCI_INTERRUPTERS);
    assert_int_equal(hcs1 >> 24, XHCI_PORTS);
    assert_int_equal(rd(f, 8) & 0xf8000000u, 0); /* no scratchpads */
    uint32_t hcc1 = rd(f, 0x10);
    assert_true(hcc1 & 1);  /* 64-bit */
    assert_false(hcc1 & 4); /* 32-byte contexts */
    assert_int_equal(rd(f, 0x14), XHCI_DB_OFF);
    assert_int_equal(rd(f, 0x18), XHCI_RTS_OFF);
    assert_int_equal(rd(f, OP + 0x08), 1); /* 4 KiB pages */
    assert_true(rd(f, USBSTS) & 1);        /* halted */
    /* The extended capabilities: USB 2.0 ports 1-4, USB 3.0 ports 5-8. */
    uint64_t off = (uint64_t)(hcc1 >> 16) * 4;
    unsigned seen = 0;
    for (int guard = 0; off && guard < 8; guard++) {
        uint32_t dw0 = rd(f, off);
        if ((dw0 & 0xff) == 2) {
            assert_int_equal(rd(f, off + 4), 0x20425355);
            uint32_t dw2 = rd(f, off + 8);
            if ((dw0 >> 24) == 2) {
                assert_int_equal(dw2 & 0xffff, 1 | XHCI_USB2_PORTS << 8);
                seen |= 1;
            } else {
                assert_int_equal(dw0 >> 24, 3);
                assert_int_equal(dw2 & 0xffff, (XHCI_USB2_PORTS + 1) | XHCI_USB3_PORTS << 8);
                seen |= 2;
            }
        }
        off = ((dw0 >> 8) & 0xff) ? off + 4 * ((dw0 >> 8) & 0xff) : 0;
    }
    assert_int_equal(seen, 3);
    for (unsigned port = 1; port <= XHCI_PORTS; port++)
        assert_int_equal(rd(f, PORTSC(port)), (1u << 9) | (5u << 5)); /* powered, RxDetect */
}

/* On a bus: the 64-bit BAR lands in the 64-bit window and decodes there. */
static void test_on_pci_bus(void **state)
{
    struct fx *f = *state;
    struct pci_windows w = { .mmio32_base = 0xc0000000ull,
                             .mmio32_size = 0x10000000ull,
                             .mmio64_base = 0x800000000ull,
                             .mmio64_size = 0x100000000ull };
    struct pci_bus *b = pci_bus_new(&w);
    assert_non_null(b);
    struct pci_device *p = xhci_pci_device(f->x);
    assert_true(pci_bus_add_device(b, p) > 0);
    uint64_t bar = pci_bar_address(p, XHCI_BAR);
    assert_true(bar >= w.mmio64_base && bar < w.mmio64_base + w.mmio64_size);
    assert_int_equal(bar % XHCI_BAR_SIZE, 0);
    pci_config_write(p, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    uint8_t v[4];
    pci_mmio64_window_ops.read(b, bar - w.mmio64_base, v, 4);
    assert_int_equal(le_get32(v, 0), XHCI_CAPLENGTH | 0x0100u << 16);
    pci_bus_free(b);
}

static void test_hcrst(void **state)
{
    struct fx *f = *state;
    assert_int_equal(xhci_attach(f->x, f->attach ? f->attach : &f->dev.usb, &f->port), 0);
    bring_up(f);
    wr(f, USBCMD, 0);
    assert_true(rd(f, USBSTS) & 1);
    wr(f, USBCMD, 2);
    assert_true(rd(f, USBCMD) & 2);          /* in progress */
    assert_true(rd(f, USBSTS) & (1u << 11)); /* CNR */
    process(f);
    assert_int_equal(rd(f, USBCMD), 0);
    assert_int_equal(rd(f, USBSTS), 1 | 1u << 4); /* halted; the reconnect is a port change */
    assert_int_equal(rd(f, DCBAAP), 0);
    assert_int_equal(rd(f, CONFIG), 0);
    assert_int_equal(rd(f, IR(0) + 0x08), 0);
    assert_int_equal(f->dev.resets, 1);
    /* The device is still there, connected again. */
    uint32_t sc = rd(f, PORTSC(f->port));
    assert_true(sc & 1);
    assert_true(sc & (1u << 17));
    assert_false(f->dev.destroyed);
}

static void test_run_reports_connect(void **state)
{
    struct fx *f = *state;
    assert_int_equal(xhci_attach(f->x, f->attach ? f->attach : &f->dev.usb, &f->port), 0);
    assert_int_equal(f->port, 1);
    process(f);
    bring_up(f);
    struct ev e = expect_event(f, EV_PORT);
    assert_int_equal(e.param >> 24, 1);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_true(rd(f, USBSTS) & (1u << 4)); /* PCD */
    wr(f, USBSTS, 1u << 4);
    assert_false(rd(f, USBSTS) & (1u << 4));
    uint32_t sc = rd(f, PORTSC(1));
    assert_true(sc & 1);
    assert_false(sc & 2); /* USB 2: disabled until reset */
    assert_int_equal((sc >> 10) & 0xf, USB_SPEED_HIGH);
    assert_true(sc & (1u << 17));
    expect_no_event(f);
}

static void test_port_reset(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    attach_and_reset(f);
    uint32_t sc = rd(f, PORTSC(f->port));
    assert_true(sc & 2);                  /* enabled */
    assert_false(sc & (1u << 4));         /* reset done */
    assert_int_equal((sc >> 5) & 0xf, 0); /* U0 */
    assert_int_equal((sc >> 10) & 0xf, USB_SPEED_HIGH);
    assert_int_equal(f->dev.resets, 1);
    assert_int_equal(sc & 0x00fe0000u, 0); /* changes cleared (W1C) */
    /* A USB 3 device: enabled at connect; a warm reset reports WRC and PRC. */
    unsigned p3;
    assert_int_equal(xhci_attach(f->x, &f->dev3.usb, &p3), 0);
    assert_int_equal(p3, XHCI_USB2_PORTS + 1);
    process(f);
    assert_int_equal(expect_event(f, EV_PORT).param >> 24, p3);
    sc = rd(f, PORTSC(p3));
    assert_true((sc & 3) == 3);
    assert_int_equal((sc >> 10) & 0xf, USB_SPEED_SUPER);
    clear_port_changes(f, p3);
    wr(f, PORTSC(p3), (1u << 9) | (1u << 31));
    process(f);
    expect_event(f, EV_PORT);
    sc = rd(f, PORTSC(p3));
    assert_true(sc & (1u << 19));
    assert_true(sc & (1u << 21));
    assert_true(sc & 2);
    assert_int_equal(f->dev3.resets, 1);
    /* Power off and on: disconnected, then connected again. */
    clear_port_changes(f, p3);
    wr(f, PORTSC(p3), 0);
    assert_int_equal(rd(f, PORTSC(p3)) & ((1u << 9) | 1), 0);
    wr(f, PORTSC(p3), 1u << 9);
    process(f);
    expect_event(f, EV_PORT);
    assert_true(rd(f, PORTSC(p3)) & 1);
    /* Suspend and resume the link. */
    wr(f, PORTSC(p3), (1u << 9) | (1u << 16) | (3u << 5));
    assert_int_equal((rd(f, PORTSC(p3)) >> 5) & 0xf, 3);
}

/* ---- slots, control transfers ---- */

static void test_enable_and_address(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    addressed(f);
    assert_int_equal(f->slot, 1);
    uint32_t dw3 = le_get32(out_ctx(f, 0), 12);
    assert_int_equal(dw3 >> 27, 2);      /* Addressed */
    assert_int_equal(dw3 & 0xff, 1);     /* its address */
    assert_int_equal(ep_state(f, 1), 1); /* EP0 running */
    assert_false(f->dev.saw_set_address);
    assert_int_equal(f->dev.controls, 0);
    /* Again with BSR from Addressed: a context state error; a fresh slot with BSR: Default. */
    assert_int_equal(address_device(f, f->slot, f->port, true).code, CC_CONTEXT_STATE);
    struct ev e = command(f, 0, 0, TYPE(ENABLE_SLOT));
    assert_int_equal(e.slot, 2);
    le_put64(G(f, DCBAA), 16, OUT_CTX + 0x1000);
    assert_int_equal(address_device(f, 2, f->port, true).code, CC_SUCCESS);
    assert_int_equal(le_get32(G(f, OUT_CTX + 0x1000), 12) >> 27, 1);
    /* Evaluate Context changes EP0's max packet size; Reset Device goes back to Default. */
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 2);
    le_put32(in_ctx(f, 2), 4, 9u << 16 | 4u << 3);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(EVALUATE_CTX) | SLOT(1)).code, CC_SUCCESS);
    assert_int_equal(le_get32(out_ctx(f, 1), 4) >> 16, 9);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_DEVICE) | SLOT(1)).code, CC_SUCCESS);
    assert_int_equal(le_get32(out_ctx(f, 0), 12) >> 27, 1);
    assert_int_equal(command(f, 0, 0, TYPE(DISABLE_SLOT) | SLOT(2)).code, CC_SUCCESS);
    assert_int_equal(command(f, 0, 0, TYPE(DISABLE_SLOT) | SLOT(2)).code, CC_SLOT_NOT_ENABLED);
    assert_int_equal(command(f, 0, 0, TYPE(NOOP_CMD)).code, CC_SUCCESS);
}

static void queue_get_descriptor(struct fx *f, uint16_t len, uint64_t buf, uint32_t setup_flags)
{
    uint64_t setup = 0x80 | 6u << 8 | (uint64_t)0x0100 << 16 | (uint64_t)len << 48;
    ring_push(f, &f->ep[1], setup, 8, TYPE(SETUP) | IDT | 3u << 16 | setup_flags);
    ring_push(f, &f->ep[1], buf, len, TYPE(DATA) | DIR_IN | ISP);
    ring_push(f, &f->ep[1], 0, 0, TYPE(STATUS) | IOC);
}

static void test_get_descriptor(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    addressed(f);
    queue_get_descriptor(f, 18, BUF, 0);
    ring_doorbell(f, 1);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_int_equal(e.slot, f->slot);
    assert_int_equal(e.ep, 1);
    expect_no_event(f);
    assert_memory_equal(G(f, BUF), device_desc, 18);
    /* Asking for 64: Short Packet on the data stage (residue 46), then the status stage;
     * Setup with IOC reports too (OVMF waits for it). */
    memset(G(f, BUF), 0, 64);
    queue_get_descriptor(f, 64, BUF, IOC);
    ring_doorbell(f, 1);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS); /* setup */
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SHORT);
    assert_int_equal(e.len, 46);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_memory_equal(G(f, BUF), device_desc, 18);
    /* Control OUT with Immediate Data. */
    uint64_t setup = 0x40 | 0x42u << 8 | (uint64_t)4 << 48;
    ring_push(f, &f->ep[1], setup, 8, TYPE(SETUP) | IDT | 2u << 16);
    ring_push(f, &f->ep[1], 0x04030201, 4, TYPE(DATA) | IDT);
    ring_push(f, &f->ep[1], 0, 0, TYPE(STATUS) | DIR_IN | IOC);
    ring_doorbell(f, 1);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
    assert_int_equal(f->dev.out_len, 4);
    assert_int_equal(f->dev.out[3], 4);
    assert_false(f->dev.saw_set_address);
}

/* ---- bulk ---- */

static void test_configure_endpoints(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    assert_int_equal(le_get32(out_ctx(f, 0), 12) >> 27, 3); /* Configured */
    assert_int_equal(le_get32(out_ctx(f, 0), 0) >> 27, 4);  /* context entries */
    assert_int_equal(ep_state(f, 3), 1);
    assert_int_equal(ep_state(f, 4), 1);
    /* Drop the OUT endpoint; deconfigure. */
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 0, 1u << 4);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot)).code, CC_SUCCESS);
    assert_int_equal(ep_state(f, 4), 0);
    assert_int_equal(ep_state(f, 3), 1);
    assert_int_equal(command(f, 0, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot) | 1u << 9).code,
                     CC_SUCCESS);
    assert_int_equal(ep_state(f, 3), 0);
    assert_int_equal(le_get32(out_ctx(f, 0), 12) >> 27, 2);
    /* An endpoint context of type 0 is a parameter error and changes nothing. */
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u << 3);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot)).code, CC_PARAMETER);
}

static void test_bulk_out_chained(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    for (unsigned i = 0; i < 300; i++)
        G(f, BUF)[i] = (uint8_t)i;
    ring_push(f, &f->ep[4], BUF, 100, TYPE(NORMAL) | CH);
    ring_push(f, &f->ep[4], BUF + 100, 150, TYPE(NORMAL) | CH);
    uint64_t last = ring_push(f, &f->ep[4], BUF + 250, 50, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 4);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_int_equal(e.param, last);
    assert_int_equal(e.len, 0);
    assert_int_equal(e.ep, 4);
    expect_no_event(f);
    assert_int_equal(f->dev.transfers, 1); /* one TD, one call */
    assert_int_equal(f->dev.out_len, 300);
    assert_memory_equal(f->dev.out, G(f, BUF), 300);
    /* IOC on each TRB gives an event per TRB, in order. */
    ring_push(f, &f->ep[4], BUF, 10, TYPE(NORMAL) | CH | IOC);
    ring_push(f, &f->ep[4], BUF, 10, TYPE(NORMAL) | CH | IOC);
    ring_push(f, &f->ep[4], BUF, 10, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
    expect_no_event(f);
    /* Event Data reports the TD's length with its own parameter. */
    ring_push(f, &f->ep[4], BUF, 33, TYPE(NORMAL) | CH);
    ring_push(f, &f->ep[4], 0xabcdef, 0, TYPE(EVENT_DATA) | IOC);
    ring_doorbell(f, 4);
    e = expect_event(f, EV_TRANSFER);
    assert_true(e.ed);
    assert_int_equal(e.param, 0xabcdef);
    assert_int_equal(e.len, 33);
}

static void test_bulk_in_short(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    memcpy(f->dev.in, "hello, xhci", 11);
    f->dev.in_len = 11;
    uint64_t first = ring_push(f, &f->ep[3], BUF, 512, TYPE(NORMAL) | CH | ISP);
    uint64_t last = ring_push(f, &f->ep[3], BUF + 512, 512, TYPE(NORMAL) | ISP | IOC);
    ring_doorbell(f, 3);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SHORT);
    assert_int_equal(e.param, first);
    assert_int_equal(e.len, 512 - 11);
    /* The TD's last TRB reports too (spec-compliant hosts; OVMF waits for it). */
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SHORT);
    assert_int_equal(e.param, last);
    assert_int_equal(e.len, 512);
    expect_no_event(f);
    assert_memory_equal(G(f, BUF), "hello, xhci", 11);
    /* The next TD starts after the short one. */
    memcpy(f->dev.in, "abcd", 4);
    f->dev.in_len = 4;
    ring_push(f, &f->ep[3], BUF, 4, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_memory_equal(G(f, BUF), "abcd", 4);
}

static void test_stall_and_recovery(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    f->dev.stall = true;
    uint64_t td = ring_push(f, &f->ep[3], BUF, 64, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_STALL);
    assert_int_equal(e.param, td);
    assert_int_equal(ep_state(f, 3), 2); /* Halted */
    /* A halted endpoint does nothing on a doorbell. */
    unsigned calls = f->dev.transfers;
    ring_doorbell(f, 3);
    expect_no_event(f);
    assert_int_equal(f->dev.transfers, calls);
    /* Set TR Dequeue is refused while halted; Reset Endpoint, then it is taken. */
    assert_int_equal(command(f, td + 16 + 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(3)).code,
                     CC_CONTEXT_STATE);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(3)).code, CC_SUCCESS);
    assert_int_equal(ep_state(f, 3), 3); /* Stopped */
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(3)).code,
                     CC_CONTEXT_STATE);
    assert_int_equal(command(f, (td + 16) | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(3)).code,
                     CC_SUCCESS);
    assert_int_equal(le_get64(out_ctx(f, 3), 8), (td + 16) | 1);
    f->dev.stall = false;
    memcpy(f->dev.in, "ok", 2);
    f->dev.in_len = 2;
    ring_push(f, &f->ep[3], BUF, 2, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
    assert_int_equal(ep_state(f, 3), 1);
    /* EP0 stalls an unknown request, and recovers the same way. */
    uint64_t setup = 0x80 | 0x77u << 8 | (uint64_t)8 << 48;
    uint64_t s0 = ring_push(f, &f->ep[1], setup, 8, TYPE(SETUP) | IDT | 3u << 16);
    ring_push(f, &f->ep[1], BUF, 8, TYPE(DATA) | DIR_IN);
    ring_push(f, &f->ep[1], 0, 0, TYPE(STATUS) | IOC);
    ring_doorbell(f, 1);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_STALL);
    assert_int_equal(ep_state(f, 1), 2);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(1)).code, CC_SUCCESS);
    assert_int_equal(command(f, (s0 + 48) | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(1)).code,
                     CC_SUCCESS);
    queue_get_descriptor(f, 18, BUF, 0);
    ring_doorbell(f, 1);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
}

static void test_nak_then_wakeup(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    f->dev.nak_empty = true;
    ring_push(f, &f->ep[3], BUF, 64, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    expect_no_event(f);
    unsigned calls = f->dev.transfers;
    process(f);
    assert_int_equal(f->dev.transfers, calls); /* no busy retrying */
    memcpy(f->dev.in, "late", 4);
    f->dev.in_len = 4;
    usb_device_wakeup(&f->dev.usb, 0x81);
    process(f);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SHORT);
    assert_int_equal(e.len, 60);
    assert_memory_equal(G(f, BUF), "late", 4);
    /* Stop Endpoint while a TD waits on NAK: a Stopped event, then the completion. */
    uint64_t td = ring_push(f, &f->ep[3], BUF, 64, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    expect_no_event(f);
    uint64_t at = ring_push(f, &f->cmd, 0, 0, TYPE(STOP_EP) | SLOT(f->slot) | EPID(3));
    wr(f, DB(0), 0);
    process(f);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_STOPPED);
    assert_int_equal(e.param, td);
    e = expect_event(f, EV_COMMAND);
    assert_int_equal(e.param, at);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_int_equal(ep_state(f, 3), 3);
    assert_int_equal(le_get64(out_ctx(f, 3), 8) & ~0xfull, td);
    assert_int_equal(command(f, 0, 0, TYPE(STOP_EP) | SLOT(f->slot) | EPID(3)).code,
                     CC_CONTEXT_STATE);
}

/* The USB keyboard behind the controller, as usbhid drives it: SET_CONFIGURATION on the
 * default pipe, an interrupt IN endpoint (type 7) with a TD waiting on NAK until a key, whose
 * wakeup makes the controller retry it and complete it with the 8-byte report. */
static void test_keyboard_interrupt_in(void **state)
{
    struct fx *f = *state;
    struct usb_device *kbd = usb_keyboard_new();
    assert_non_null(kbd);
    f->attach = kbd;
    bring_up(f);
    addressed(f);
    ring_push(f, &f->ep[1], 9u << 8 | 1u << 16, 8, TYPE(SETUP) | IDT);
    ring_push(f, &f->ep[1], 0, 0, TYPE(STATUS) | DIR_IN | IOC);
    ring_doorbell(f, 1);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u | 1u << 3);
    le_put32(in_ctx(f, 1), 0, 3u << 27 | 1u << 20); /* full speed */
    ring_init(f, &f->ep[3], EP_RINGS + 3 * 0x1000, RING_TRBS);
    le_put32(in_ctx(f, 1 + 3), 0, 6u << 16); /* Interval: 2^6 x 125 us, bInterval 10 ms */
    le_put32(in_ctx(f, 1 + 3), 4, 8u << 16 | 7u << 3 | 3u << 1);
    le_put64(in_ctx(f, 1 + 3), 8, f->ep[3].base | 1);
    le_put32(in_ctx(f, 1 + 3), 16, 8);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot)).code, CC_SUCCESS);
    memset(G(f, BUF), 0xee, 8);
    ring_push(f, &f->ep[3], BUF, 8, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    expect_no_event(f);
    process(f);
    expect_no_event(f);
    assert_true(usb_keyboard_key(kbd, KEY_LEFTSHIFT, true));
    process(f);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_SUCCESS);
    assert_int_equal(e.len, 0);
    assert_memory_equal(G(f, BUF), ((uint8_t[8]){ 0x02, 0, 0, 0, 0, 0, 0, 0 }), 8);
    /* The next TD waits for the next key, which queued while nobody polled. */
    assert_true(usb_keyboard_key(kbd, KEY_G, true));
    ring_push(f, &f->ep[3], BUF, 8, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_SUCCESS);
    assert_memory_equal(G(f, BUF), ((uint8_t[8]){ 0x02, 0, 0x0a, 0, 0, 0, 0, 0 }), 8);
    assert_int_equal(ep_state(f, 3), 1);
}

static void test_detach_during_operation(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    f->dev.nak_empty = true;
    uint64_t td = ring_push(f, &f->ep[3], BUF, 64, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 3);
    expect_no_event(f);
    assert_int_equal(xhci_detach(f->x, f->port), 0);
    assert_true(f->dev.destroyed);
    assert_int_equal(xhci_detach(f->x, f->port), -ENOENT);
    process(f);
    /* The port reports the disconnect; the waiting TD ends in a transaction error. */
    struct ev a = expect_event(f, EV_PORT), b = expect_event(f, EV_TRANSFER);
    assert_int_equal(a.param >> 24, f->port);
    assert_int_equal(b.code, CC_TRANSACTION);
    assert_int_equal(b.param, td);
    uint32_t sc = rd(f, PORTSC(f->port));
    assert_false(sc & 3);
    assert_true(sc & (1u << 17));
    /* The controller carries on: the slot goes, a new device comes on the same port. */
    assert_int_equal(command(f, 0, 0, TYPE(DISABLE_SLOT) | SLOT(f->slot)).code, CC_SUCCESS);
    fake_dev_init(&f->dev, USB_SPEED_FULL);
    clear_port_changes(f, f->port);
    unsigned port;
    assert_int_equal(xhci_attach(f->x, &f->dev.usb, &port), 0);
    assert_int_equal(port, f->port);
    process(f);
    expect_event(f, EV_PORT);
    assert_int_equal((rd(f, PORTSC(port)) >> 10) & 0xf, USB_SPEED_FULL);
}

/* ---- hostile drivers ---- */

static void test_bad_slot_ids(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    attach_and_reset(f);
    assert_int_equal(address_device(f, 0, f->port, false).code, CC_TRB_ERROR);
    assert_int_equal(address_device(f, 200, f->port, false).code, CC_TRB_ERROR);
    assert_int_equal(address_device(f, 3, f->port, false).code, CC_SLOT_NOT_ENABLED);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(0) | EPID(1)).code, CC_TRB_ERROR);
    assert_int_equal(command(f, 0, 0, TYPE(STOP_EP) | SLOT(255) | EPID(1)).code, CC_TRB_ERROR);
    assert_int_equal(command(f, 0, 0, TYPE(DISABLE_SLOT) | SLOT(33)).code, CC_TRB_ERROR);
    assert_int_equal(command(f, 0, 0, TYPE(NORMAL)).code, CC_TRB_ERROR); /* not a command */
    /* No Slots Available once MaxSlotsEn are taken. */
    wr(f, USBCMD, 0);
    wr(f, CONFIG, 2);
    wr(f, USBCMD, 1);
    process(f);
    assert_int_equal(command(f, 0, 0, TYPE(ENABLE_SLOT)).code, CC_SUCCESS);
    assert_int_equal(command(f, 0, 0, TYPE(ENABLE_SLOT)).code, CC_SUCCESS);
    struct ev e = command(f, 0, 0, TYPE(ENABLE_SLOT));
    assert_int_equal(e.code, CC_NO_SLOTS);
    assert_int_equal(e.slot, 0);
    /* Addressing a port without a device, or with a route string (no hubs here). */
    le_put64(G(f, DCBAA), 8, OUT_CTX);
    assert_int_equal(address_device(f, 1, 7, false).code, CC_TRANSACTION);
    assert_int_equal(address_device(f, 1, 9, false).code, CC_PARAMETER);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 3);
    le_put32(in_ctx(f, 1), 0, 1u << 27 | 0x1);
    le_put32(in_ctx(f, 1), 4, f->port << 16);
    le_put32(in_ctx(f, 2), 4, 64u << 16 | 4u << 3);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(ADDRESS_DEVICE) | SLOT(1)).code, CC_TRANSACTION);
    /* Configure Endpoint before Address Device: context state error. */
    assert_int_equal(command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(1)).code, CC_CONTEXT_STATE);
}

static void test_bad_pointers(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    attach_and_reset(f);
    unsigned slot = command(f, 0, 0, TYPE(ENABLE_SLOT)).slot;
    /* DCBAA entry outside RAM, DCBAAP outside RAM, input context outside RAM. */
    le_put64(G(f, DCBAA), 8 * slot, OUTSIDE);
    assert_int_equal(address_device(f, slot, f->port, false).code, CC_PARAMETER);
    le_put64(G(f, DCBAA), 8 * slot, RAM_BASE + RAM_SIZE - 64); /* context runs off the end */
    assert_int_equal(address_device(f, slot, f->port, false).code, CC_PARAMETER);
    wr64(f, DCBAAP, OUTSIDE);
    assert_int_equal(address_device(f, slot, f->port, false).code, CC_PARAMETER);
    wr64(f, DCBAAP, DCBAA);
    assert_int_equal(command(f, OUTSIDE, 0, TYPE(ADDRESS_DEVICE) | SLOT(slot)).code, CC_TRB_ERROR);
    /* Now properly addressed and configured, with one ring outside RAM and one buffer. */
    le_put64(G(f, DCBAA), 8 * slot, OUT_CTX);
    f->slot = slot;
    assert_int_equal(address_device(f, slot, f->port, false).code, CC_SUCCESS);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u | 1u << 3 | 1u << 4);
    ring_init(f, &f->ep[4], EP_RINGS + 4 * 0x1000, RING_TRBS);
    le_put32(in_ctx(f, 1 + 3), 4, 512u << 16 | 6u << 3);
    le_put64(in_ctx(f, 1 + 3), 8, OUTSIDE | 1);
    le_put32(in_ctx(f, 1 + 4), 4, 512u << 16 | 2u << 3);
    le_put64(in_ctx(f, 1 + 4), 8, f->ep[4].base | 1);
    assert_int_equal(command(f, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(slot)).code, CC_SUCCESS);
    ring_doorbell(f, 3);
    struct ev e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_TRB_ERROR);
    assert_int_equal(e.param, OUTSIDE);
    assert_int_equal(ep_state(f, 3), 2);
    uint64_t td = ring_push(f, &f->ep[4], OUTSIDE, 512, TYPE(NORMAL) | IOC);
    ring_doorbell(f, 4);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_TRB_ERROR);
    assert_int_equal(e.param, td);
    assert_int_equal(ep_state(f, 4), 2);
    assert_int_equal(f->dev.transfers, 0);
    /* A command ring outside RAM: stop the ring (Command Ring Stopped), point it away. */
    wr(f, CRCR, 2);
    process(f);
    e = expect_event(f, EV_COMMAND);
    assert_int_equal(e.code, 24);
    assert_int_equal(e.param, CMD_RING + 16ull * f->cmd.enq);
    assert_false(rd(f, CRCR) & 8);
    wr64(f, CRCR, OUTSIDE | 1);
    wr(f, DB(0), 0);
    process(f);
    e = expect_event(f, EV_COMMAND);
    assert_int_equal(e.code, CC_TRB_ERROR);
    assert_int_equal(e.param, OUTSIDE);
    assert_false(rd(f, CRCR) & 8);
    /* A new ring works. */
    ring_init(f, &f->cmd, CMD_RING, RING_TRBS);
    wr64(f, CRCR, CMD_RING | 1);
    assert_int_equal(command(f, 0, 0, TYPE(NOOP_CMD)).code, CC_SUCCESS);
    /* An event ring segment table outside RAM: Host System Error, halted, nothing written. */
    le_put64(G(f, ERST), 0, OUTSIDE);
    wr64(f, IR(0) + 0x10, ERST);
    ring_push(f, &f->cmd, 0, 0, TYPE(NOOP_CMD));
    wr(f, DB(0), 0);
    process(f);
    assert_true(rd(f, USBSTS) & (1u << 2));
    assert_true(rd(f, USBSTS) & 1);
    expect_no_event(f);
}

static void test_cycle_bits(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    /* A TRB whose cycle bit is not the ring's is not the driver's yet. */
    uint64_t at = CMD_RING + 16ull * f->cmd.enq;
    put_trb(f, at, 0, 0, TYPE(NOOP_CMD) | (f->cmd.pcs ? 0 : C));
    wr(f, DB(0), 0);
    process(f);
    expect_no_event(f);
    put_trb(f, at, 0, 0, TYPE(NOOP_CMD) | (f->cmd.pcs ? C : 0));
    f->cmd.enq++;
    wr(f, DB(0), 0);
    process(f);
    assert_int_equal(expect_event(f, EV_COMMAND).param, at);
    /* Around the ring several times: Link TRBs with toggle cycle, cycle state follows. */
    for (unsigned i = 0; i < 3 * RING_TRBS; i++)
        assert_int_equal(command(f, 0, 0, TYPE(NOOP_CMD)).code, CC_SUCCESS);
    /* A Link TRB without toggle to a stale region: the controller waits there. */
    expect_no_event(f);
}

static void test_link_loops(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    /* Two Link TRBs pointing at each other, cycle bits always valid: reported, bounded. */
    uint64_t a = RAM_BASE + 0x9000, b = RAM_BASE + 0x9100;
    put_trb(f, a, b, 0, TYPE(LINK) | C);
    put_trb(f, b, a, 0, TYPE(LINK) | C);
    uint64_t at = ring_push(f, &f->cmd, a, 0, TYPE(LINK));
    (void)at;
    wr(f, DB(0), 0);
    process(f);
    struct ev e = expect_event(f, EV_COMMAND);
    assert_int_equal(e.code, CC_TRB_ERROR);
    assert_false(rd(f, CRCR) & 8);
    expect_no_event(f);
    /* The same on a transfer ring: a TRB Error, the endpoint halted. */
    ring_init(f, &f->cmd, CMD_RING, RING_TRBS);
    wr64(f, CRCR, CMD_RING | 1);
    configured(f);
    ring_push(f, &f->ep[4], a, 0, TYPE(LINK));
    ring_doorbell(f, 4);
    e = expect_event(f, EV_TRANSFER);
    assert_int_equal(e.code, CC_TRB_ERROR);
    assert_int_equal(ep_state(f, 4), 2);
    /* A ring that is one Link TRB to itself, toggling: the cycle flips, the walk ends. */
    put_trb(f, a, a, 0, TYPE(LINK) | TC | C);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(4)).code, CC_SUCCESS);
    assert_int_equal(command(f, a | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(4)).code,
                     CC_SUCCESS);
    ring_doorbell(f, 4);
    expect_no_event(f);
    assert_int_equal(ep_state(f, 4), 1);
}

static void test_oversize(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    configured(f);
    /* More bytes than a TD may hold (each TRB 128 KiB - 1 over one buffer). */
    struct ring big;
    ring_init(f, &big, BIG_RING, 1024);
    for (unsigned i = 0; i < 140; i++)
        ring_push(f, &big, BUF, 0x1ffff, TYPE(NORMAL) | (i < 139 ? CH : IOC));
    assert_int_equal(command(f, 0, 0, TYPE(STOP_EP) | SLOT(f->slot) | EPID(4)).code, CC_SUCCESS);
    assert_int_equal(command(f, BIG_RING | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(4)).code,
                     CC_SUCCESS);
    ring_doorbell(f, 4);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_TRB_ERROR);
    assert_int_equal(f->dev.transfers, 0);
    /* More TRBs than a TD may hold. */
    struct ring huge;
    ring_init(f, &huge, BIG_RING, XHCI_TD_MAX_TRBS + 8);
    for (unsigned i = 0; i < XHCI_TD_MAX_TRBS + 4; i++)
        ring_push(f, &huge, BUF, 1, TYPE(NORMAL) | CH);
    ring_push(f, &huge, BUF, 1, TYPE(NORMAL) | IOC);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(4)).code, CC_SUCCESS);
    assert_int_equal(command(f, BIG_RING | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(4)).code,
                     CC_SUCCESS);
    ring_doorbell(f, 4);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_TRB_ERROR);
    assert_int_equal(f->dev.transfers, 0);
    /* A control data stage longer than wLength can be. */
    ring_push(f, &f->ep[1], 0x80 | 6u << 8 | (uint64_t)0x0100 << 16 | (uint64_t)0xffff << 48, 8,
              TYPE(SETUP) | IDT | 3u << 16);
    ring_push(f, &f->ep[1], BUF, 0x1ffff, TYPE(DATA) | DIR_IN);
    ring_push(f, &f->ep[1], 0, 0, TYPE(STATUS) | IOC);
    ring_doorbell(f, 1);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_TRB_ERROR);
    /* Immediate data longer than 8 bytes, or on an IN transfer. */
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(1)).code, CC_SUCCESS);
    assert_int_equal(command(f, 0, 0, TYPE(RESET_EP) | SLOT(f->slot) | EPID(4)).code, CC_SUCCESS);
    ring_init(f, &f->ep[4], EP_RINGS + 4 * 0x1000, RING_TRBS);
    assert_int_equal(
        command(f, f->ep[4].base | 1, 0, TYPE(SET_TR_DEQ) | SLOT(f->slot) | EPID(4)).code,
        CC_SUCCESS);
    ring_push(f, &f->ep[4], 0x1122334455667788ull, 9, TYPE(NORMAL) | IDT | IOC);
    ring_doorbell(f, 4);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_TRB_ERROR);
    ring_push(f, &f->ep[3], 0, 4, TYPE(NORMAL) | IDT | IOC);
    ring_doorbell(f, 3);
    assert_int_equal(expect_event(f, EV_TRANSFER).code, CC_TRB_ERROR);
}

static void test_event_ring_full(void **state)
{
    struct fx *f = *state;
    bring_up(f);
    event_ring_setup(f, EVT_RING, 16);
    /* 30 commands, nobody consuming events: the controller stops before it would
     * overwrite, and finishes once the driver catches up. */
    uint64_t first = 0;
    for (unsigned i = 0; i < 30; i++) {
        uint64_t at = ring_push(f, &f->cmd, 0, 0, TYPE(NOOP_CMD));
        if (i == 0)
            first = at;
    }
    wr(f, DB(0), 0);
    process(f);
    unsigned posted = 0;
    for (unsigned i = 0; i < 16; i++)
        posted += (le_get32(G(f, EVT_RING + 16 * i), 12) & 1) == 1;
    assert_true(posted < 16);
    assert_true(posted > 8);
    unsigned seen = 0;
    struct ev e;
    while (seen < 40) {
        if (!next_event(f, &e)) {
            process(f);
            if (!next_event(f, &e))
                break;
        }
        assert_int_equal(e.type, EV_COMMAND);
        assert_int_equal(e.param, first + 16ull * seen);
        seen++;
    }
    assert_int_equal(seen, 30);
    /* Port events do not wait: the last free entry gets Event Ring Full, then nothing. */
    assert_int_equal(xhci_attach(f->x, f->attach ? f->attach : &f->dev.usb, &f->port), 0);
    for (unsigned i = 0; i < 20; i++) {
        wr(f, PORTSC(f->port), 0);
        wr(f, PORTSC(f->port), 1u << 9);
        process(f);
        clear_port_changes(f, f->port);
    }
    unsigned ports = 0, full = 0;
    while (next_event(f, &e)) {
        ports += e.type == EV_PORT;
        if (e.type == EV_HOST) {
            assert_int_equal(e.code, CC_RING_FULL);
            full++;
        }
    }
    /* 15 entries of events and the Event Ring Full error in the 16th: 4 events lost. */
    assert_int_equal(full, 1);
    assert_int_equal(ports, 15);
    /* Consumed: events flow again. */
    wr(f, PORTSC(f->port), 0);
    wr(f, PORTSC(f->port), 1u << 9);
    process(f);
    expect_event(f, EV_PORT);
}

/* ---- interrupts ---- */

static uint64_t vector_count(struct fx *f, unsigned gsi)
{
    uint64_t n = 0;
    int fd = f->k.fd_of[gsi];
    if (fd >= 0 && read(fd, &n, sizeof(n)) != sizeof(n))
        n = 0;
    return n;
}

static void test_msix_interrupts(void **state)
{
    struct fx *f = *state;
    struct pci_device *p = xhci_pci_device(f->x);
    unsigned cap = pci_config_read(p, PCI_CAPABILITY_LIST, 1);
    assert_int_equal(pci_config_read(p, cap, 1), PCI_CAP_ID_MSIX);
    uint8_t b[4];
    le_put32(b, 0, 0xfee00000u);
    xhci_bar_ops.write(f->x, XHCI_MSIX_TABLE, b, 4);
    le_put32(b, 0, 0x41);
    xhci_bar_ops.write(f->x, XHCI_MSIX_TABLE + 8, b, 4);
    le_put32(b, 0, 0);
    xhci_bar_ops.write(f->x, XHCI_MSIX_TABLE + 12, b, 4);
    pci_config_write(p, cap + 2, MSIX_CTRL_ENABLE, 2);
    pci_config_write(p, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    unsigned gsi = 24; /* vector 0's */
    assert_true(f->k.fd_of[gsi] >= 0);
    bring_up(f);
    assert_int_equal(vector_count(f, gsi), 0);
    uint64_t at = ring_push(f, &f->cmd, 0, 0, TYPE(NOOP_CMD));
    wr(f, DB(0), 0);
    process(f);
    assert_int_equal(vector_count(f, gsi), 1);
    assert_true(rd(f, USBSTS) & (1u << 3)); /* EINT */
    assert_false(rd(f, IR(0)) & 1);         /* IP cleared by the MSI-X message */
    assert_true(rd(f, IR(0) + 0x18) & 8);   /* EHB: the handler is busy */
    /* Busy: another event does not interrupt until the driver writes ERDP. */
    ring_push(f, &f->cmd, 0, 0, TYPE(NOOP_CMD));
    wr(f, DB(0), 0);
    process(f);
    assert_int_equal(vector_count(f, gsi), 0);
    struct ev e;
    assert_true(next_event(f, &e));
    assert_int_equal(e.param, at);
    process(f); /* one event left behind the ERDP write: interrupt again */
    assert_int_equal(vector_count(f, gsi), 1);
    expect_event(f, EV_COMMAND);
    process(f);
    assert_int_equal(vector_count(f, gsi), 0);
    /* IE off: IP set, no message. */
    wr(f, IR(0), 0);
    ring_push(f, &f->cmd, 0, 0, TYPE(NOOP_CMD));
    wr(f, DB(0), 0);
    process(f);
    assert_int_equal(vector_count(f, gsi), 0);
    assert_true(rd(f, IR(0)) & 1);
    wr(f, IR(0), 3); /* clear IP, enable */
    assert_false(rd(f, IR(0)) & 1);
}

/* ---- the worker thread ---- */

static bool wait_event(struct fx *f, struct ev *e)
{
    for (int i = 0; i < 2000; i++) {
        if (next_event(f, e))
            return true;
        usleep(1000);
    }
    return false;
}

struct detacher {
    struct fx *f;
    int rc;
};

static void test_threaded(void **state)
{
    struct fx *f = *state;
    xhci_free(f->x);
    assert_int_equal(xhci_new(&f->gm, &f->ops, &f->x), 0);
    wr(f, CONFIG, XHCI_MAX_SLOTS);
    wr64(f, DCBAAP, DCBAA);
    ring_init(f, &f->cmd, CMD_RING, RING_TRBS);
    wr64(f, CRCR, CMD_RING | 1);
    event_ring_setup(f, EVT_RING, EVT_TRBS);
    wr(f, USBCMD, 1);
    assert_int_equal(xhci_attach(f->x, f->attach ? f->attach : &f->dev.usb, &f->port), 0);
    struct ev e;
    assert_true(wait_event(f, &e));
    assert_int_equal(e.type, EV_PORT);
    clear_port_changes(f, f->port);
    wr(f, PORTSC(f->port), (1u << 9) | (1u << 4));
    assert_true(wait_event(f, &e));
    assert_int_equal(e.type, EV_PORT);
    assert_true(rd(f, PORTSC(f->port)) & 2);
    ring_push(f, &f->cmd, 0, 0, TYPE(ENABLE_SLOT));
    wr(f, DB(0), 0);
    assert_true(wait_event(f, &e));
    assert_int_equal(e.code, CC_SUCCESS);
    f->slot = e.slot;
    le_put64(G(f, DCBAA), 8 * f->slot, OUT_CTX);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u | 1u << 4);
    ring_init(f, &f->ep[1], EP_RINGS + 0x1000, RING_TRBS);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 3);
    le_put32(in_ctx(f, 1), 4, f->port << 16);
    le_put32(in_ctx(f, 2), 4, 64u << 16 | 4u << 3);
    le_put64(in_ctx(f, 2), 8, f->ep[1].base | 1);
    ring_push(f, &f->cmd, IN_CTX, 0, TYPE(ADDRESS_DEVICE) | SLOT(f->slot));
    wr(f, DB(0), 0);
    assert_true(wait_event(f, &e));
    assert_int_equal(e.code, CC_SUCCESS);
    input_ctx_clear(f);
    le_put32(in_ctx(f, 0), 4, 1u << 4);
    ring_init(f, &f->ep[4], EP_RINGS + 4 * 0x1000, RING_TRBS);
    le_put32(in_ctx(f, 1 + 4), 4, 512u << 16 | 2u << 3);
    le_put64(in_ctx(f, 1 + 4), 8, f->ep[4].base | 1);
    ring_push(f, &f->cmd, IN_CTX, 0, TYPE(CONFIGURE_EP) | SLOT(f->slot));
    wr(f, DB(0), 0);
    assert_true(wait_event(f, &e));
    assert_int_equal(e.code, CC_SUCCESS);
    /* A slow device call: detach waits for it to finish, then destroys the device. */
    f->dev.slow_ms = 100;
    ring_push(f, &f->ep[4], BUF, 16, TYPE(NORMAL) | IOC);
    wr(f, DB(f->slot), 4);
    for (int i = 0; i < 2000 && !__atomic_load_n(&f->dev.in_call, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    assert_true(__atomic_load_n(&f->dev.in_call, __ATOMIC_SEQ_CST));
    assert_int_equal(xhci_detach(f->x, f->port), 0);
    assert_true(__atomic_load_n(&f->dev.call_done, __ATOMIC_SEQ_CST));
    assert_true(f->dev.destroyed);
    /* The call's result is void: the device went away; the port says so. */
    unsigned got = 0;
    while (got < 2 && wait_event(f, &e)) {
        if (e.type == EV_TRANSFER)
            assert_int_equal(e.code, CC_TRANSACTION);
        got++;
    }
    assert_int_equal(got, 2);
    assert_false(rd(f, PORTSC(f->port)) & 1);
    /* HCRST through the worker. */
    wr(f, USBCMD, 0);
    wr(f, USBCMD, 2);
    for (int i = 0; i < 2000 && (rd(f, USBSTS) & (1u << 11)); i++)
        usleep(1000);
    assert_int_equal(rd(f, USBCMD), 0);
    assert_false(rd(f, USBSTS) & (1u << 11));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_pci_bus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hcrst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_reports_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_and_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configure_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_out_chained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_in_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_and_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nak_then_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_interrupt_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_during_operation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_slot_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pointers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cycle_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_loops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_ring_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix_interrupts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
