/* xHCI host controller: registers, command ring, event rings, transfer rings, root ports.
 * Learnt from the xHCI 1.2 specification; section numbers below refer to it. */
#include "devices/usb/xhci.h"
#include "core/le_bytes.h"
#include "pci/msix.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- registers (5.3 - 5.6) ---- */

#define HCI_VERSION    0x0100
#define CAP_HCSPARAMS1 0x04
#define CAP_HCSPARAMS2 0x08
#define CAP_HCSPARAMS3 0x0c
#define CAP_HCCPARAMS1 0x10
#define CAP_DBOFF      0x14
#define CAP_RTSOFF     0x18
#define CAP_HCCPARAMS2 0x1c
#define ERST_MAX_LOG2  4 /* up to 16 event ring segments */
#define ERST_MAX       (1u << ERST_MAX_LOG2)

#define OP_USBCMD   0x00
#define OP_USBSTS   0x04
#define OP_PAGESIZE 0x08
#define OP_DNCTRL   0x14
#define OP_CRCR     0x18
#define OP_DCBAAP   0x30
#define OP_CONFIG   0x38

#define CMD_RS     (1u << 0)
#define CMD_HCRST  (1u << 1)
#define CMD_INTE   (1u << 2)
#define CMD_HSEE   (1u << 3)
#define CMD_EWE    (1u << 10)
#define CMD_EU3S   (1u << 11)
#define CMD_STORED (CMD_RS | CMD_INTE | CMD_HSEE | CMD_EWE | CMD_EU3S)

#define STS_HCH  (1u << 0)
#define STS_HSE  (1u << 2)
#define STS_EINT (1u << 3)
#define STS_PCD  (1u << 4)
#define STS_SRE  (1u << 10)
#define STS_CNR  (1u << 11)
#define STS_W1C  (STS_HSE | STS_EINT | STS_PCD | STS_SRE)

#define CRCR_RCS (1u << 0)
#define CRCR_CS  (1u << 1)
#define CRCR_CA  (1u << 2)
#define CRCR_CRR (1u << 3)

/* PORTSC (5.4.8) */
#define PORT_CCS       (1u << 0)
#define PORT_PED       (1u << 1)
#define PORT_PR        (1u << 4)
#define PORT_PLS_SHIFT 5
#define PORT_PLS_MASK  (0xfu << PORT_PLS_SHIFT)
#define PORT_PP        (1u << 9)
#define PORT_SPEED_SH  10
#define PORT_SPEED     (0xfu << PORT_SPEED_SH)
#define PORT_PIC       (3u << 14)
#define PORT_LWS       (1u << 16)
#define PORT_CSC       (1u << 17)
#define PORT_PEC       (1u << 18)
#define PORT_WRC       (1u << 19)
#define PORT_OCC       (1u << 20)
#define PORT_PRC       (1u << 21)
#define PORT_PLC       (1u << 22)
#define PORT_CEC       (1u << 23)
#define PORT_WCE       (1u << 25)
#define PORT_WDE       (1u << 26)
#define PORT_WOE       (1u << 27)
#define PORT_WPR       (1u << 31)
#define PORT_CHANGE    (PORT_CSC | PORT_PEC | PORT_WRC | PORT_OCC | PORT_PRC | PORT_PLC | PORT_CEC)
#define PORT_RW        (PORT_PIC | PORT_WCE | PORT_WDE | PORT_WOE)
#define PLS_U0         0
#define PLS_U3         3
#define PLS_DISABLED   4
#define PLS_RXDETECT   5
#define PLS_POLLING    7
#define PLS_RESUME     15

/* Runtime registers: an interrupter's set (5.5.2). */
#define RT_IR0     0x20
#define RT_IR_SIZE 0x20
#define IR_IMAN    0x00
#define IR_IMOD    0x04
#define IR_ERSTSZ  0x08
#define IR_ERSTBA  0x10
#define IR_ERDP    0x18
#define IMAN_IP    (1u << 0)
#define IMAN_IE    (1u << 1)
#define ERDP_EHB   (1u << 3)

/* ---- TRBs (6.4) ---- */

#define TRB_SIZE    16
#define TRB_C       (1u << 0)
#define TRB_TC      (1u << 1) /* Link TRB: toggle cycle */
#define TRB_ISP     (1u << 2)
#define TRB_CH      (1u << 4)
#define TRB_IOC     (1u << 5)
#define TRB_IDT     (1u << 6)
#define TRB_BEI     (1u << 9)
#define TRB_BSR     (1u << 9) /* Address Device: block SET_ADDRESS */
#define TRB_DC      (1u << 9) /* Configure Endpoint: deconfigure */
#define TRB_DIR_IN  (1u << 16)
#define TRB_TYPE(c) (((c) >> 10) & 0x3f)
#define TRB_LEN(s)  ((s)&0x1ffff)
#define TRB_INTR(s) ((s) >> 22)

enum {
    T_NORMAL = 1,
    T_SETUP = 2,
    T_DATA = 3,
    T_STATUS = 4,
    T_ISOCH = 5,
    T_LINK = 6,
    T_EVENT_DATA = 7,
    T_NOOP = 8,
    C_ENABLE_SLOT = 9,
    C_DISABLE_SLOT = 10,
    C_ADDRESS_DEVICE = 11,
    C_CONFIGURE_EP = 12,
    C_EVALUATE_CTX = 13,
    C_RESET_EP = 14,
    C_STOP_EP = 15,
    C_SET_TR_DEQ = 16,
    C_RESET_DEVICE = 17,
    C_NOOP = 23,
    E_TRANSFER = 32,
    E_COMMAND = 33,
    E_PORT = 34,
    E_HOST = 37,
};

/* Completion codes (6.4.5). */
enum {
    CC_SUCCESS = 1,
    CC_TRANSACTION = 4,
    CC_TRB_ERROR = 5,
    CC_STALL = 6,
    CC_NO_SLOTS = 9,
    CC_SLOT_NOT_ENABLED = 11,
    CC_SHORT_PACKET = 13,
    CC_PARAMETER = 17,
    CC_CONTEXT_STATE = 19,
    CC_EVENT_RING_FULL = 21,
    CC_CMD_RING_STOPPED = 24,
    CC_STOPPED = 26,
};

/* Contexts (6.2): 32 bytes each (HCCPARAMS1.CSZ = 0). */
#define CTX_SIZE     32
#define DEV_CTX_SIZE (32 * CTX_SIZE)
enum { SLOT_ENABLED = 0, SLOT_DEFAULT = 1, SLOT_ADDRESSED = 2, SLOT_CONFIGURED = 3 };
enum { EP_DISABLED = 0, EP_RUNNING = 1, EP_HALTED = 2, EP_STOPPED = 3, EP_ERROR = 4 };
#define EP_TYPE_CONTROL 4

/* Consecutive Link TRBs followed before a ring counts as a loop. */
#define MAX_LINKS        64
/* TDs one endpoint runs in a turn before the others get theirs. */
#define TDS_PER_TURN     32
/* Free event ring entries a command or TD needs before it starts (fewer: it waits). */
#define EVENT_RESERVE    4
#define CONTROL_MAX_DATA 65535 /* wLength */

struct trb {
    uint64_t param;
    uint32_t status, ctrl;
    uint64_t addr;  /* where it was read */
    uint8_t raw[8]; /* the parameter bytes, for Immediate Data */
};

struct td {
    unsigned n;
    uint64_t next_deq; /* the ring after the TD */
    bool next_dcs;
    struct trb trb[XHCI_TD_MAX_TRBS];
};

struct xhci_ep {
    uint8_t state;
    uint8_t type;
    bool dcs;
    bool kick; /* rung or woken: look at the ring */
    bool nak;  /* the TD at deq got NAK: wait for the device's wakeup */
    uint64_t deq;
    uint32_t budget;
};

struct xhci_slot {
    bool enabled;
    uint8_t state;
    uint8_t address;
    unsigned port;         /* 1-based root port, 0: none yet */
    uint64_t ctx;          /* output device context */
    struct xhci_ep ep[32]; /* by DCI; 0 unused */
};

struct xhci_port {
    struct xhci *x;
    unsigned index;
    bool usb3;
    struct usb_device *dev;
    uint32_t sc, pmsc, hlpmc;
    bool reset_pending, warm;
    bool psc_pending;
    uint32_t woken; /* DCIs the device woke since the worker last called it */
};

struct interrupter {
    uint32_t iman, imod, erstsz;
    uint64_t erstba, erdp;
    bool need_init, ready, full;
    bool pending; /* events the driver has not been interrupted for */
    unsigned nseg, seg, idx;
    bool pcs;
    uint64_t seg_base[ERST_MAX];
    uint32_t seg_size[ERST_MAX];
};

struct xhci {
    struct pci_device pci; /* first: xhci_pci_device */
    const struct guest_memory *gm;
    struct irq_routing_ops irq;
    struct msix *msix;
    pthread_mutex_t lock;
    pthread_cond_t work; /* the worker waits here */
    pthread_cond_t idle; /* a device call finished */
    pthread_t thread;
    bool threaded, stop;
    struct usb_device *calling; /* the device the worker is calling, lock dropped */

    uint32_t usbcmd, usbsts, dnctrl, config;
    uint64_t dcbaap;
    bool running, hcrst;
    /* command ring */
    uint64_t cmd_deq;
    bool cmd_ccs, crr, cmd_kick, cmd_stop;
    uint32_t cmd_budget;
    bool stalled; /* waiting for event ring space */

    struct interrupter intr[XHCI_INTERRUPTERS];
    struct xhci_slot slots[XHCI_MAX_SLOTS + 1];
    struct xhci_port ports[XHCI_PORTS];

    /* the worker's scratch */
    struct td td;
    struct iovec iov[XHCI_TD_MAX_TRBS];
    uint8_t ctl_buf[CONTROL_MAX_DATA + 1];
};

static void wake_worker(struct xhci *x)
{
    if (x->threaded)
        pthread_cond_signal(&x->work);
}

/* ---- guest memory ---- */

/* Reads a TRB the way a consumer must: the control dword (cycle bit) first, the rest after
 * it, so a TRB the driver is still writing is never taken with stale fields. */
static bool trb_read(struct xhci *x, uint64_t addr, struct trb *t)
{
    uint8_t *p = gm_ptr(x->gm, addr, TRB_SIZE);
    if (!p || (addr & 0xf))
        return false;
    uint32_t ctrl = __atomic_load_n((uint32_t *)(p + 12), __ATOMIC_ACQUIRE);
    t->ctrl = le32toh(ctrl);
    memcpy(t->raw, p, 8);
    t->param = le_get64(p, 0);
    t->status = le_get32(p, 8);
    t->addr = addr;
    return true;
}

static bool ctx_read(struct xhci *x, uint64_t addr, uint32_t dw[8])
{
    uint8_t b[CTX_SIZE];
    if (gm_read(x->gm, addr, b, sizeof(b)) < 0)
        return false;
    for (unsigned i = 0; i < 8; i++)
        dw[i] = le_get32(b, 4 * i);
    return true;
}

static void ctx_write(struct xhci *x, uint64_t addr, const uint32_t dw[8])
{
    uint8_t b[CTX_SIZE];
    for (unsigned i = 0; i < 8; i++)
        le_put32(b, 4 * i, dw[i]);
    /* The output context was checked at Address Device; guest RAM does not move, so this
     * fails only for a context the guest placed badly, which only the guest suffers from. */
    if (gm_write(x->gm, addr, b, sizeof(b)) < 0)
        return;
}

/* ---- event rings (4.9.4) ---- */

static void host_system_error(struct xhci *x)
{
    /* Nothing more can be reported through memory the controller cannot reach: halt, as a
     * PCI master abort would. */
    x->usbsts |= STS_HSE | STS_HCH;
    x->usbcmd &= ~CMD_RS;
    x->running = false;
    x->crr = false;
}

/* Reads the segment table on first use after ERSTBA/ERSTSZ were written (the driver writes
 * the two halves of ERSTBA one after the other). */
static bool ring_ready(struct xhci *x, struct interrupter *ir)
{
    if (!ir->need_init)
        return ir->ready;
    ir->need_init = false;
    ir->ready = false;
    unsigned n = ir->erstsz & 0xffff;
    if (n == 0)
        return false; /* no ring: events are dropped */
    if (n > ERST_MAX)
        n = ERST_MAX;
    for (unsigned i = 0; i < n; i++) {
        uint8_t e[16];
        uint64_t base;
        uint32_t size;
        if (gm_read(x->gm, ir->erstba + 16 * i, e, sizeof(e)) < 0)
            goto bad;
        base = le_get64(e, 0) & ~0x3full;
        size = le_get32(e, 8) & 0xffff;
        if (size == 0 || !gm_ptr(x->gm, base, (uint64_t)size * TRB_SIZE))
            goto bad;
        ir->seg_base[i] = base;
        ir->seg_size[i] = size;
    }
    ir->nseg = n;
    ir->seg = ir->idx = 0;
    ir->pcs = true;
    ir->full = false;
    ir->ready = true;
    return true;
bad:
    host_system_error(x);
    return false;
}

static uint64_t ring_addr(const struct interrupter *ir, unsigned seg, unsigned idx)
{
    return ir->seg_base[seg] + (uint64_t)idx * TRB_SIZE;
}

static void ring_next(const struct interrupter *ir, unsigned *seg, unsigned *idx, bool *pcs)
{
    if (++*idx < ir->seg_size[*seg])
        return;
    *idx = 0;
    if (++*seg == ir->nseg) {
        *seg = 0;
        *pcs = !*pcs;
    }
}

/* Free entries between the enqueue and the driver's dequeue pointer. */
static uint32_t event_room(struct xhci *x, unsigned i)
{
    struct interrupter *ir = &x->intr[i];
    if (!ring_ready(x, ir))
        return UINT32_MAX; /* nowhere to post: nothing to wait for */
    if (ir->full)
        return 0;
    uint32_t total = 0, enq = 0, deq = UINT32_MAX;
    uint64_t erdp = ir->erdp & ~0xfull;
    for (unsigned s = 0; s < ir->nseg; s++) {
        if (s == ir->seg)
            enq = total + ir->idx;
        if (erdp >= ir->seg_base[s] && erdp < ring_addr(ir, s, ir->seg_size[s]))
            deq = total + (uint32_t)((erdp - ir->seg_base[s]) / TRB_SIZE);
        total += ir->seg_size[s];
    }
    if (deq == UINT32_MAX)
        return total; /* a dequeue pointer outside the ring: the driver's problem */
    return (deq + total - enq - 1) % total;
}

static bool event_space(struct xhci *x, unsigned i)
{
    if (i >= XHCI_INTERRUPTERS)
        i = 0;
    struct interrupter *ir = &x->intr[i];
    uint32_t room = event_room(x, i);
    if (room == UINT32_MAX)
        return true;
    uint32_t total = 0;
    for (unsigned s = 0; s < ir->nseg; s++)
        total += ir->seg_size[s];
    uint32_t need = total > EVENT_RESERVE ? EVENT_RESERVE : total - 1;
    return room >= need;
}

static void event_write(struct xhci *x, struct interrupter *ir, uint64_t param, uint32_t status,
                        uint32_t ctrl)
{
    uint8_t *p = gm_ptr(x->gm, ring_addr(ir, ir->seg, ir->idx), TRB_SIZE);
    if (!p) {
        host_system_error(x);
        return;
    }
    le_put64(p, 0, param);
    le_put32(p, 8, status);
    ctrl = (ctrl & ~TRB_C) | (ir->pcs ? TRB_C : 0);
    /* The cycle bit hands the TRB to the driver: it goes last. */
    __atomic_store_n((uint32_t *)(p + 12), htole32(ctrl), __ATOMIC_RELEASE);
    ring_next(ir, &ir->seg, &ir->idx, &ir->pcs);
}

/* Posts an event on interrupter i. A halted controller posts nothing; a ring with one free
 * entry left gets an Event Ring Full error there and drops what follows until the driver
 * moves its dequeue pointer. */
static void event_post(struct xhci *x, unsigned i, uint64_t param, uint32_t status, uint32_t ctrl,
                       bool bei)
{
    if (i >= XHCI_INTERRUPTERS)
        i = 0;
    struct interrupter *ir = &x->intr[i];
    if (!x->running || !ring_ready(x, ir) || ir->full)
        return;
    unsigned seg = ir->seg, idx = ir->idx;
    bool pcs = ir->pcs;
    ring_next(ir, &seg, &idx, &pcs);
    if (ring_addr(ir, seg, idx) == (ir->erdp & ~0xfull)) {
        event_write(x, ir, 0, (uint32_t)CC_EVENT_RING_FULL << 24, E_HOST << 10);
        ir->full = true;
        ir->pending = true;
        return;
    }
    event_write(x, ir, param, status, ctrl);
    if (!bei)
        ir->pending = true;
}

static void command_done(struct xhci *x, uint64_t trb, unsigned cc, unsigned slot)
{
    event_post(x, 0, trb, (uint32_t)cc << 24, (uint32_t)slot << 24 | E_COMMAND << 10, false);
}

static void transfer_event(struct xhci *x, unsigned slot, unsigned dci, const struct trb *t,
                           unsigned cc, uint32_t len)
{
    event_post(x, TRB_INTR(t->status), t->addr, (uint32_t)cc << 24 | (len & 0xffffff),
               (uint32_t)slot << 24 | dci << 16 | E_TRANSFER << 10, t->ctrl & TRB_BEI);
}

static void event_data_event(struct xhci *x, unsigned slot, unsigned dci, const struct trb *t,
                             unsigned cc, uint32_t edtla)
{
    event_post(x, TRB_INTR(t->status), t->param, (uint32_t)cc << 24 | (edtla & 0xffffff),
               (uint32_t)slot << 24 | dci << 16 | E_TRANSFER << 10 | 1u << 2, t->ctrl & TRB_BEI);
}

/* Interrupts (4.17): IP and EINT rise for new events; MSI-X delivers when the driver enabled
 * it, IE and INTE are set and its handler is not busy (EHB). IP clears itself once the
 * message is sent, as the specification has it for MSI-X. Moderation (IMOD) is not
 * modelled: an interrupt goes at once. */
static void deliver_interrupts(struct xhci *x)
{
    for (unsigned i = 0; i < XHCI_INTERRUPTERS; i++) {
        struct interrupter *ir = &x->intr[i];
        if (!ir->pending || (ir->erdp & ERDP_EHB))
            continue;
        ir->pending = false;
        ir->iman |= IMAN_IP;
        x->usbsts |= STS_EINT;
        if ((ir->iman & IMAN_IE) && (x->usbcmd & CMD_INTE) && msix_enabled(x->msix)) {
            ir->erdp |= ERDP_EHB;
            ir->iman &= ~IMAN_IP;
            msix_notify(x->msix, i);
        }
    }
}

/* ---- ports (4.19) ---- */

static void port_change(struct xhci *x, struct xhci_port *p, uint32_t bits)
{
    if (bits & ~p->sc & PORT_CHANGE) {
        p->psc_pending = true;
        x->usbsts |= STS_PCD;
        wake_worker(x);
    }
    p->sc |= bits;
}

static void port_set_pls(struct xhci_port *p, unsigned pls)
{
    p->sc = (p->sc & ~PORT_PLS_MASK) | (uint32_t)pls << PORT_PLS_SHIFT;
}

static unsigned port_pls(const struct xhci_port *p)
{
    return (p->sc & PORT_PLS_MASK) >> PORT_PLS_SHIFT;
}

/* A device appears on a powered port: a USB 3 link trains by itself (enabled, U0); a USB 2
 * port waits, disabled, for the driver to reset it. */
static void port_connect(struct xhci *x, struct xhci_port *p)
{
    if (!p->dev || !(p->sc & PORT_PP))
        return;
    p->sc &= ~(PORT_SPEED | PORT_PED);
    p->sc |= PORT_CCS | (uint32_t)p->dev->speed << PORT_SPEED_SH;
    if (p->usb3) {
        p->sc |= PORT_PED;
        port_set_pls(p, PLS_U0);
    } else {
        port_set_pls(p, PLS_POLLING);
    }
    port_change(x, p, PORT_CSC);
}

static void port_disconnect(struct xhci *x, struct xhci_port *p)
{
    bool was = p->sc & PORT_CCS;
    p->sc &= ~(PORT_CCS | PORT_PED | PORT_PR | PORT_SPEED);
    port_set_pls(p, (p->sc & PORT_PP) ? PLS_RXDETECT : PLS_DISABLED);
    if (was)
        port_change(x, p, PORT_CSC);
}

static void portsc_write(struct xhci *x, struct xhci_port *p, uint32_t v)
{
    p->sc &= ~(v & PORT_CHANGE);
    p->sc = (p->sc & ~PORT_RW) | (v & PORT_RW);
    if (!(v & PORT_PP) && (p->sc & PORT_PP)) {
        port_disconnect(x, p);
        p->sc &= ~(PORT_PP | PORT_CHANGE);
        port_set_pls(p, PLS_DISABLED);
        p->reset_pending = false;
        return;
    }
    if ((v & PORT_PP) && !(p->sc & PORT_PP)) {
        p->sc |= PORT_PP;
        port_set_pls(p, PLS_RXDETECT);
        port_connect(x, p);
    }
    if (!(p->sc & PORT_PP))
        return;
    if (v & PORT_PED) { /* write 1 to disable */
        p->sc &= ~PORT_PED;
        port_set_pls(p, p->usb3 ? PLS_DISABLED : (p->sc & PORT_CCS) ? PLS_POLLING : PLS_RXDETECT);
    }
    if ((v & PORT_PR) || (p->usb3 && (v & PORT_WPR))) {
        if (!(p->sc & PORT_PR)) {
            /* The device is reset by the worker: its reset may wait on its back end. */
            p->sc = (p->sc | PORT_PR) & ~PORT_PED;
            p->reset_pending = true;
            p->warm = p->usb3 && (v & PORT_WPR);
            wake_worker(x);
        }
        return;
    }
    if ((v & PORT_LWS) && (p->sc & PORT_PED)) {
        unsigned want = (v & PORT_PLS_MASK) >> PORT_PLS_SHIFT, now = port_pls(p);
        if (want == PLS_U3 && now == PLS_U0) {
            port_set_pls(p, PLS_U3);
        } else if ((want == PLS_U0 || want == PLS_RESUME) && (now == PLS_U3 || now == PLS_RESUME)) {
            /* USB 2 resume is two writes (Resume, then U0 after 20 ms); USB 3 goes to U0 at
             * once and reports the link change. */
            if (p->usb3 || want == PLS_U0)
                port_set_pls(p, PLS_U0);
            else
                port_set_pls(p, PLS_RESUME);
            if (p->usb3)
                port_change(x, p, PORT_PLC);
        } else if (p->usb3 && (want == PLS_DISABLED || want == PLS_RXDETECT)) {
            port_set_pls(p, want);
            if (want == PLS_DISABLED)
                p->sc &= ~PORT_PED;
        }
    }
}

/* ---- device calls, with the lock dropped ---- */

static void call_begin(struct xhci *x, struct usb_device *dev)
{
    x->calling = dev;
    pthread_mutex_unlock(&x->lock);
}

static void call_end(struct xhci *x)
{
    pthread_mutex_lock(&x->lock);
    x->calling = NULL;
    pthread_cond_broadcast(&x->idle);
}

static void device_reset(struct xhci *x, struct usb_device *dev)
{
    if (!dev->ops->reset)
        return;
    call_begin(x, dev);
    dev->ops->reset(dev->ctx);
    call_end(x);
}

static void port_do_reset(struct xhci *x, struct xhci_port *p)
{
    p->reset_pending = false;
    if (p->dev && (p->sc & PORT_CCS))
        device_reset(x, p->dev);
    /* Power off or a detach meanwhile ended the reset. */
    if (!(p->sc & PORT_PR))
        return;
    p->sc &= ~PORT_PR;
    uint32_t bits = PORT_PRC | (p->warm ? PORT_WRC : 0);
    if (p->sc & PORT_CCS) {
        p->sc |= PORT_PED;
        port_set_pls(p, PLS_U0);
    }
    port_change(x, p, bits);
}

/* ---- slots and contexts ---- */

static void ep_ctx_sync(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    struct xhci_ep *ep = &s->ep[dci];
    uint32_t dw[8];
    uint64_t at = s->ctx + (uint64_t)dci * CTX_SIZE;
    if (!s->ctx || !ctx_read(x, at, dw))
        return;
    dw[0] = (dw[0] & ~7u) | ep->state;
    dw[2] = (uint32_t)(ep->deq & ~0xfull) | ep->dcs;
    dw[3] = (uint32_t)(ep->deq >> 32);
    ctx_write(x, at, dw);
}

static void slot_ctx_sync(struct xhci *x, struct xhci_slot *s)
{
    uint32_t dw[8];
    if (!s->ctx || !ctx_read(x, s->ctx, dw))
        return;
    unsigned last = 1;
    for (unsigned d = 2; d < 32; d++)
        if (s->ep[d].state != EP_DISABLED)
            last = d;
    dw[0] = (dw[0] & 0x07ffffffu) | (uint32_t)last << 27;
    dw[3] = (uint32_t)s->state << 27 | s->address;
    ctx_write(x, s->ctx, dw);
}

static void ep_disable(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    s->ep[dci] = (struct xhci_ep){ 0 };
    ep_ctx_sync(x, s, dci);
}

static void ep_halt(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    struct xhci_ep *ep = &s->ep[dci];
    ep->state = EP_HALTED;
    ep->kick = ep->nak = false;
    ep_ctx_sync(x, s, dci);
}

/* A command's slot id: TRB Error when no slot can have it, Slot Not Enabled when free. */
static unsigned slot_lookup(struct xhci *x, unsigned id, struct xhci_slot **out)
{
    unsigned max = x->config & 0xff;
    if (id == 0 || id > max || id > XHCI_MAX_SLOTS)
        return CC_TRB_ERROR;
    if (!x->slots[id].enabled)
        return CC_SLOT_NOT_ENABLED;
    *out = &x->slots[id];
    return CC_SUCCESS;
}

/* ---- commands (4.6) ---- */

static unsigned cmd_enable_slot(struct xhci *x, unsigned *slot)
{
    unsigned max = x->config & 0xff;
    for (unsigned i = 1; i <= max && i <= XHCI_MAX_SLOTS; i++) {
        if (!x->slots[i].enabled) {
            x->slots[i] = (struct xhci_slot){ .enabled = true, .state = SLOT_ENABLED };
            *slot = i;
            return CC_SUCCESS;
        }
    }
    *slot = 0;
    return CC_NO_SLOTS;
}

static unsigned cmd_disable_slot(struct xhci *x, unsigned id)
{
    struct xhci_slot *s;
    unsigned cc = slot_lookup(x, id, &s);
    if (cc != CC_SUCCESS)
        return cc;
    for (unsigned d = 1; d < 32; d++)
        s->ep[d] = (struct xhci_ep){ 0 };
    s->state = SLOT_ENABLED;
    s->address = 0;
    slot_ctx_sync(x, s);
    *s = (struct xhci_slot){ 0 };
    return CC_SUCCESS;
}

static void ep_load(struct xhci_ep *ep, const uint32_t dw[8])
{
    *ep = (struct xhci_ep){
        .state = EP_RUNNING,
        .type = (dw[1] >> 3) & 7,
        .deq = ((uint64_t)dw[3] << 32 | dw[2]) & ~0xfull,
        .dcs = dw[2] & 1,
    };
}

static unsigned cmd_address_device(struct xhci *x, unsigned id, uint64_t in, bool bsr)
{
    struct xhci_slot *s;
    unsigned cc = slot_lookup(x, id, &s);
    if (cc != CC_SUCCESS)
        return cc;
    if (bsr ? s->state != SLOT_ENABLED : s->state > SLOT_DEFAULT)
        return CC_CONTEXT_STATE;
    uint32_t icc[8], sc[8], ep0[8];
    in &= ~0xfull;
    if (!ctx_read(x, in, icc) || !ctx_read(x, in + CTX_SIZE, sc) ||
        !ctx_read(x, in + 2 * CTX_SIZE, ep0))
        return CC_TRB_ERROR;
    if ((icc[1] & 3) != 3 || ((ep0[1] >> 3) & 7) != EP_TYPE_CONTROL)
        return CC_PARAMETER;
    unsigned port = (sc[1] >> 16) & 0xff;
    if (port == 0 || port > XHCI_PORTS)
        return CC_PARAMETER;
    uint8_t e[8];
    uint64_t out = 0;
    if (gm_read(x->gm, x->dcbaap + 8ull * id, e, sizeof(e)) == 0)
        out = le_get64(e, 0) & ~0x3full;
    /* An entry of 0 is a slot the driver did not set up (0 also means "none" to ep_ctx_sync). */
    if (!out || !gm_ptr(x->gm, out, DEV_CTX_SIZE))
        return CC_PARAMETER;
    /* No hubs: a route string names a device nobody answers for; so does an empty port. */
    struct xhci_port *p = &x->ports[port - 1];
    if ((sc[0] & 0xfffff) || !p->dev || !(p->sc & PORT_PED))
        return CC_TRANSACTION;
    s->ctx = out;
    s->port = port;
    /* The controller addresses the device itself (SET_ADDRESS never reaches it): the slot
     * id is a unique address. */
    s->state = bsr ? SLOT_DEFAULT : SLOT_ADDRESSED;
    s->address = bsr ? 0 : (uint8_t)id;
    ep_load(&s->ep[1], ep0);
    ep0[0] = (ep0[0] & ~7u) | EP_RUNNING;
    uint8_t b[2 * CTX_SIZE];
    for (unsigned i = 0; i < 8; i++) {
        le_put32(b, 4 * i, sc[i]);
        le_put32(b, CTX_SIZE + 4 * i, ep0[i]);
    }
    if (gm_write(x->gm, out, b, sizeof(b)) < 0)
        return CC_PARAMETER; /* checked above: cannot happen */
    for (unsigned d = 2; d < 32; d++)
        s->ep[d] = (struct xhci_ep){ 0 };
    slot_ctx_sync(x, s);
    return CC_SUCCESS;
}

static unsigned cmd_configure_endpoint(struct xhci *x, unsigned id, uint64_t in, bool dc)
{
    struct xhci_slot *s;
    unsigned cc = slot_lookup(x, id, &s);
    if (cc != CC_SUCCESS)
        return cc;
    if (s->state != SLOT_ADDRESSED && s->state != SLOT_CONFIGURED)
        return CC_CONTEXT_STATE;
    if (dc) {
        for (unsigned d = 2; d < 32; d++)
            ep_disable(x, s, d);
        s->state = SLOT_ADDRESSED;
        slot_ctx_sync(x, s);
        return CC_SUCCESS;
    }
    uint32_t icc[8], ctx[32][8];
    in &= ~0xfull;
    if (!ctx_read(x, in, icc))
        return CC_TRB_ERROR;
    uint32_t drop = icc[0] & ~3u, add = icc[1] & ~3u;
    /* Check every added context before changing anything. */
    for (unsigned d = 2; d < 32; d++) {
        if (!(add & (1u << d)))
            continue;
        if (!ctx_read(x, in + (uint64_t)(d + 1) * CTX_SIZE, ctx[d]))
            return CC_TRB_ERROR;
        unsigned type = (ctx[d][1] >> 3) & 7;
        if (type == 0 || type == EP_TYPE_CONTROL)
            return CC_PARAMETER;
    }
    for (unsigned d = 2; d < 32; d++)
        if (drop & (1u << d))
            ep_disable(x, s, d);
    for (unsigned d = 2; d < 32; d++) {
        if (!(add & (1u << d)))
            continue;
        ep_load(&s->ep[d], ctx[d]);
        ctx[d][0] = (ctx[d][0] & ~7u) | EP_RUNNING;
        ctx_write(x, s->ctx + (uint64_t)d * CTX_SIZE, ctx[d]);
    }
    bool any = false;
    for (unsigned d = 2; d < 32; d++)
        any |= s->ep[d].state != EP_DISABLED;
    s->state = any ? SLOT_CONFIGURED : SLOT_ADDRESSED;
    slot_ctx_sync(x, s);
    return CC_SUCCESS;
}

static unsigned cmd_evaluate_context(struct xhci *x, unsigned id, uint64_t in)
{
    struct xhci_slot *s;
    unsigned cc = slot_lookup(x, id, &s);
    if (cc != CC_SUCCESS)
        return cc;
    if (s->state == SLOT_ENABLED)
        return CC_CONTEXT_STATE;
    uint32_t icc[8], ic[8], oc[8];
    in &= ~0xfull;
    if (!ctx_read(x, in, icc))
        return CC_TRB_ERROR;
    if (icc[1] & 1) { /* slot: max exit latency, interrupter target */
        if (!ctx_read(x, in + CTX_SIZE, ic))
            return CC_TRB_ERROR;
        if (ctx_read(x, s->ctx, oc)) {
            oc[1] = (oc[1] & ~0xffffu) | (ic[1] & 0xffff);
            oc[2] = (oc[2] & 0x003fffffu) | (ic[2] & ~0x003fffffu);
            ctx_write(x, s->ctx, oc);
        }
    }
    if (icc[1] & 2) { /* default control endpoint: max packet size */
        if (!ctx_read(x, in + 2 * CTX_SIZE, ic))
            return CC_TRB_ERROR;
        if (ctx_read(x, s->ctx + CTX_SIZE, oc)) {
            oc[1] = (oc[1] & 0xffffu) | (ic[1] & 0xffff0000u);
            ctx_write(x, s->ctx + CTX_SIZE, oc);
        }
    }
    return CC_SUCCESS;
}

/* The endpoint a command names (DCI in bits 20:16), which must be in one of `states` (a bit
 * per EP_ state) for the command to apply. */
static unsigned ep_lookup(struct xhci *x, const struct trb *t, unsigned states,
                          struct xhci_slot **s, unsigned *dci)
{
    unsigned cc = slot_lookup(x, t->ctrl >> 24, s);
    if (cc != CC_SUCCESS)
        return cc;
    *dci = (t->ctrl >> 16) & 0x1f;
    if (*dci == 0)
        return CC_TRB_ERROR;
    return (states >> (*s)->ep[*dci].state) & 1 ? CC_SUCCESS : CC_CONTEXT_STATE;
}

static unsigned cmd_reset_endpoint(struct xhci *x, const struct trb *t)
{
    struct xhci_slot *s;
    unsigned dci, cc = ep_lookup(x, t, 1u << EP_HALTED, &s, &dci);
    if (cc != CC_SUCCESS)
        return cc;
    struct xhci_ep *ep = &s->ep[dci];
    ep->state = EP_STOPPED;
    ep_ctx_sync(x, s, dci);
    return CC_SUCCESS;
}

static unsigned cmd_stop_endpoint(struct xhci *x, const struct trb *t)
{
    struct xhci_slot *s;
    unsigned dci, cc = ep_lookup(x, t, 1u << EP_RUNNING, &s, &dci);
    if (cc != CC_SUCCESS)
        return cc;
    struct xhci_ep *ep = &s->ep[dci];
    /* A TD waiting on a NAK was in progress: it stops where it is, nothing moved. */
    struct trb head;
    if (ep->nak && trb_read(x, ep->deq, &head))
        transfer_event(x, (unsigned)(s - x->slots), dci, &head, CC_STOPPED, TRB_LEN(head.status));
    ep->state = EP_STOPPED;
    ep->kick = ep->nak = false;
    ep_ctx_sync(x, s, dci);
    return CC_SUCCESS;
}

static unsigned cmd_set_tr_dequeue(struct xhci *x, const struct trb *t)
{
    struct xhci_slot *s;
    unsigned dci, cc = ep_lookup(x, t, (1u << EP_STOPPED) | (1u << EP_ERROR), &s, &dci);
    if (cc != CC_SUCCESS)
        return cc;
    struct xhci_ep *ep = &s->ep[dci];
    ep->deq = t->param & ~0xfull;
    ep->dcs = t->param & 1;
    ep->nak = false;
    ep_ctx_sync(x, s, dci);
    return CC_SUCCESS;
}

static unsigned cmd_reset_device(struct xhci *x, unsigned id)
{
    struct xhci_slot *s;
    unsigned cc = slot_lookup(x, id, &s);
    if (cc != CC_SUCCESS)
        return cc;
    if (s->state == SLOT_ENABLED)
        return CC_CONTEXT_STATE;
    for (unsigned d = 2; d < 32; d++)
        ep_disable(x, s, d);
    s->state = SLOT_DEFAULT;
    s->address = 0;
    slot_ctx_sync(x, s);
    return CC_SUCCESS;
}

static void run_command(struct xhci *x, const struct trb *t)
{
    unsigned id = t->ctrl >> 24, slot = id, cc;
    switch (TRB_TYPE(t->ctrl)) {
    case C_ENABLE_SLOT: cc = cmd_enable_slot(x, &slot); break;
    case C_DISABLE_SLOT: cc = cmd_disable_slot(x, id); break;
    case C_ADDRESS_DEVICE: cc = cmd_address_device(x, id, t->param, t->ctrl & TRB_BSR); break;
    case C_CONFIGURE_EP: cc = cmd_configure_endpoint(x, id, t->param, t->ctrl & TRB_DC); break;
    case C_EVALUATE_CTX: cc = cmd_evaluate_context(x, id, t->param); break;
    case C_RESET_EP: cc = cmd_reset_endpoint(x, t); break;
    case C_STOP_EP: cc = cmd_stop_endpoint(x, t); break;
    case C_SET_TR_DEQ: cc = cmd_set_tr_dequeue(x, t); break;
    case C_RESET_DEVICE: cc = cmd_reset_device(x, id); break;
    case C_NOOP:
        cc = CC_SUCCESS;
        slot = 0;
        break;
    default: cc = CC_TRB_ERROR; break;
    }
    command_done(x, t->addr, cc, slot > XHCI_MAX_SLOTS ? 0 : slot);
}

static void run_command_ring(struct xhci *x)
{
    unsigned links = 0;
    while (x->running && x->crr && x->cmd_kick) {
        if (x->cmd_budget == 0) {
            x->cmd_kick = false;
            break;
        }
        if (!event_space(x, 0)) {
            x->stalled = true;
            break;
        }
        x->cmd_budget--;
        struct trb t;
        if (!trb_read(x, x->cmd_deq, &t)) {
            /* The ring is not in RAM: say so and stop it. */
            struct trb bad = { .addr = x->cmd_deq };
            command_done(x, bad.addr, CC_TRB_ERROR, 0);
            x->crr = x->cmd_kick = false;
            break;
        }
        if ((t.ctrl & TRB_C) != (x->cmd_ccs ? TRB_C : 0)) {
            x->cmd_kick = false; /* caught up with the driver */
            break;
        }
        if (TRB_TYPE(t.ctrl) == T_LINK) {
            if (++links > MAX_LINKS) {
                command_done(x, t.addr, CC_TRB_ERROR, 0);
                x->crr = x->cmd_kick = false;
                break;
            }
            if (t.ctrl & TRB_TC)
                x->cmd_ccs = !x->cmd_ccs;
            x->cmd_deq = t.param & ~0xfull;
            continue;
        }
        links = 0;
        x->cmd_deq += TRB_SIZE;
        run_command(x, &t);
    }
}

/* ---- transfers (4.10, 4.11) ---- */

enum gather { TD_READY, TD_NONE, TD_BAD };

/* Collects the TD at the endpoint's dequeue pointer: through Link TRBs, up to the TRB
 * without Chain (for a control TD that starts with a Setup Stage: up to its Status Stage and
 * what chains to it). An incomplete TD is left for the next doorbell. */
static enum gather td_gather(struct xhci *x, struct xhci_ep *ep, bool control, struct td *td,
                             uint64_t *bad)
{
    uint64_t at = ep->deq;
    bool ccs = ep->dcs, setup = false, status = false;
    unsigned links = 0;
    td->n = 0;
    for (;;) {
        if (ep->budget == 0)
            return TD_NONE;
        ep->budget--;
        struct trb t;
        if (!trb_read(x, at, &t)) {
            *bad = at;
            return TD_BAD;
        }
        if ((t.ctrl & TRB_C) != (ccs ? TRB_C : 0))
            return TD_NONE;
        unsigned type = TRB_TYPE(t.ctrl);
        if (type == T_LINK) {
            if (++links > MAX_LINKS) {
                *bad = at;
                return TD_BAD;
            }
            if (t.ctrl & TRB_TC)
                ccs = !ccs;
            at = t.param & ~0xfull;
            if (td->n == 0) { /* nothing of a TD yet: the links are behind us */
                ep->deq = at;
                ep->dcs = ccs;
            }
            continue;
        }
        if (td->n == XHCI_TD_MAX_TRBS) {
            *bad = at;
            return TD_BAD;
        }
        if (td->n == 0)
            setup = control && type == T_SETUP;
        status |= type == T_STATUS;
        td->trb[td->n++] = t;
        at += TRB_SIZE;
        if (!(t.ctrl & TRB_CH) && (!setup || status)) {
            td->next_deq = at;
            td->next_dcs = ccs;
            return TD_READY;
        }
    }
}

/* Events for TRBs [first, end) of a TD whose buffers moved n bytes in order (4.10.1.1): IOC
 * gives Success; the TRB where the data ran short gives Short Packet with its residue if ISP
 * or IOC; after that only Event Data TRBs and the TD's last TRB (tail, if in range) report.
 * Returns whether the transfer was short. */
static bool td_events(struct xhci *x, unsigned slot, unsigned dci, const struct td *td,
                      unsigned first, unsigned end, size_t n, unsigned tail)
{
    bool short_seen = false;
    uint32_t edtla = 0;
    for (unsigned k = first; k < end; k++) {
        const struct trb *t = &td->trb[k];
        unsigned type = TRB_TYPE(t->ctrl);
        if (type == T_EVENT_DATA) {
            if (t->ctrl & TRB_IOC)
                event_data_event(x, slot, dci, t, short_seen ? CC_SHORT_PACKET : CC_SUCCESS, edtla);
            edtla = 0;
            continue;
        }
        uint32_t len = type == T_NORMAL || type == T_DATA ? TRB_LEN(t->status) : 0;
        if (short_seen) {
            if (k == tail && (t->ctrl & TRB_IOC))
                transfer_event(x, slot, dci, t, CC_SHORT_PACKET, len);
            continue;
        }
        uint32_t moved = n < len ? (uint32_t)n : len;
        n -= moved;
        edtla += moved;
        if (moved < len) {
            short_seen = true;
            if (t->ctrl & (TRB_ISP | TRB_IOC))
                transfer_event(x, slot, dci, t, CC_SHORT_PACKET, len - moved);
        } else if (t->ctrl & TRB_IOC) {
            transfer_event(x, slot, dci, t, CC_SUCCESS, 0);
        }
    }
    return short_seen;
}

/* A data TRB's buffer as a host pointer: Immediate Data lives in the TRB itself (OUT only,
 * at most 8 bytes). NULL with *len 0 is an empty buffer; NULL otherwise is a bad TRB. */
static void *trb_buffer(struct xhci *x, struct trb *t, bool in, uint32_t *len)
{
    *len = TRB_LEN(t->status);
    if (t->ctrl & TRB_IDT) {
        if (in || *len > 8)
            return NULL;
        return t->raw;
    }
    if (*len == 0)
        return NULL;
    return gm_ptr(x->gm, t->param, *len);
}

/* The device behind a slot, if its port still has it and is enabled. */
static struct usb_device *slot_device(struct xhci *x, const struct xhci_slot *s)
{
    if (s->port == 0 || s->port > XHCI_PORTS)
        return NULL;
    const struct xhci_port *p = &x->ports[s->port - 1];
    return (p->sc & PORT_PED) ? p->dev : NULL;
}

enum td_result { TD_DONE, TD_WAIT, TD_HALTED };

/* A device call answered NAK: wait for its wakeup, unless one came during the call. */
static enum td_result td_nak(struct xhci *x, struct xhci_slot *s, struct xhci_ep *ep, unsigned dci)
{
    struct xhci_port *p = &x->ports[s->port - 1];
    if (p->woken & (1u << dci))
        return TD_WAIT; /* kick stays set: retried next turn */
    ep->nak = true;
    ep->kick = false;
    return TD_WAIT;
}

static enum td_result td_fail(struct xhci *x, struct xhci_slot *s, unsigned dci,
                              const struct trb *t, unsigned cc)
{
    transfer_event(x, (unsigned)(s - x->slots), dci, t, cc, TRB_LEN(t->status));
    ep_halt(x, s, dci);
    return TD_HALTED;
}

static enum td_result run_normal_td(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    struct td *td = &x->td;
    unsigned slot = (unsigned)(s - x->slots), cnt = 0;
    bool in = dci & 1;
    size_t total = 0;
    for (unsigned k = 0; k < td->n; k++) {
        struct trb *t = &td->trb[k];
        unsigned type = TRB_TYPE(t->ctrl);
        if (type == T_EVENT_DATA || type == T_NOOP)
            continue;
        if (type != T_NORMAL) /* isochronous transfers are not supported */
            return td_fail(x, s, dci, t, CC_TRB_ERROR);
        uint32_t len;
        void *buf = trb_buffer(x, t, in, &len);
        if (!buf && len)
            return td_fail(x, s, dci, t, CC_TRB_ERROR);
        total += len;
        if (total > XHCI_TD_MAX_BYTES)
            return td_fail(x, s, dci, t, CC_TRB_ERROR);
        if (len)
            x->iov[cnt++] = (struct iovec){ .iov_base = buf, .iov_len = len };
    }
    struct usb_device *dev = slot_device(x, s);
    if (!dev)
        return td_fail(x, s, dci, &td->trb[0], CC_TRANSACTION);
    bool data = false;
    for (unsigned k = 0; k < td->n; k++)
        data |= TRB_TYPE(td->trb[k].ctrl) == T_NORMAL;
    int r = 0;
    if (data) { /* a TD of No-Op TRBs moves nothing and reaches no device */
        struct usb_packet pk = { .ep = (uint8_t)((dci / 2) | (in ? USB_DIR_IN : 0)),
                                 .iov = x->iov,
                                 .iovcnt = cnt,
                                 .len = total };
        x->ports[s->port - 1].woken &= ~(1u << dci);
        call_begin(x, dev);
        r = dev->ops->transfer(dev->ctx, &pk);
        call_end(x);
        if (x->ports[s->port - 1].dev != dev)
            r = USB_RET_ERROR; /* unplugged during the call */
    }
    if (r == USB_RET_NAK)
        return td_nak(x, s, &s->ep[dci], dci);
    if (r == USB_RET_STALL)
        return td_fail(x, s, dci, &td->trb[0], CC_STALL);
    if (r < 0)
        return td_fail(x, s, dci, &td->trb[0], CC_TRANSACTION);
    size_t n = (size_t)r < total ? (size_t)r : total;
    td_events(x, slot, dci, td, 0, td->n, n, td->n - 1);
    return TD_DONE;
}

static enum td_result run_control_td(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    struct td *td = &x->td;
    unsigned slot = (unsigned)(s - x->slots);
    const struct trb *setup_trb = &td->trb[0];
    if (TRB_TYPE(setup_trb->ctrl) != T_SETUP) {
        /* A No-Op TD on the default pipe is fine; anything else out of place is not. */
        for (unsigned k = 0; k < td->n; k++)
            if (TRB_TYPE(td->trb[k].ctrl) != T_NOOP && TRB_TYPE(td->trb[k].ctrl) != T_EVENT_DATA)
                return td_fail(x, s, dci, &td->trb[k], CC_TRB_ERROR);
        td_events(x, slot, dci, td, 0, td->n, 0, td->n - 1);
        return TD_DONE;
    }
    if (!(setup_trb->ctrl & TRB_IDT) || TRB_LEN(setup_trb->status) != 8)
        return td_fail(x, s, dci, setup_trb, CC_TRB_ERROR);
    const uint8_t *raw = setup_trb->raw;
    struct usb_setup setup = { .request_type = raw[0],
                               .request = raw[1],
                               .value = le_get16(raw, 2),
                               .index = le_get16(raw, 4),
                               .length = le_get16(raw, 6) };
    bool in = setup.request_type & USB_DIR_IN;
    unsigned status_at = 0, cnt = 0, data_at = 0;
    size_t total = 0;
    for (unsigned k = 1; k < td->n; k++) {
        struct trb *t = &td->trb[k];
        unsigned type = TRB_TYPE(t->ctrl);
        if (type == T_STATUS) {
            if (status_at)
                return td_fail(x, s, dci, t, CC_TRB_ERROR);
            status_at = k;
            continue;
        }
        if (type == T_EVENT_DATA)
            continue;
        bool first_data = type == T_DATA && !data_at && !status_at;
        if (status_at || (type != T_NORMAL && !first_data) || (type == T_NORMAL && !data_at))
            return td_fail(x, s, dci, t, CC_TRB_ERROR);
        if (first_data)
            data_at = k;
        uint32_t len;
        void *buf = trb_buffer(x, t, in, &len);
        if ((!buf && len) || total + len > CONTROL_MAX_DATA)
            return td_fail(x, s, dci, t, CC_TRB_ERROR);
        total += len;
        if (len)
            x->iov[cnt++] = (struct iovec){ .iov_base = buf, .iov_len = len };
    }
    if (!status_at)
        return td_fail(x, s, dci, &td->trb[td->n - 1], CC_TRB_ERROR);
    const struct trb *where = data_at ? &td->trb[data_at] : &td->trb[status_at];
    struct usb_device *dev = slot_device(x, s);
    if (!dev)
        return td_fail(x, s, dci, where, CC_TRANSACTION);
    int r;
    if (setup.request_type == 0 && setup.request == USB_REQ_SET_ADDRESS) {
        r = 0; /* the controller owns addressing (Address Device) */
    } else {
        /* The device sees wLength bytes in one buffer: gather OUT data, scatter IN data. */
        uint8_t *buf = x->ctl_buf;
        memset(buf, 0, setup.length);
        if (!in) {
            size_t off = 0;
            for (unsigned i = 0; i < cnt && off < setup.length; i++) {
                size_t k = x->iov[i].iov_len;
                if (k > setup.length - off)
                    k = setup.length - off;
                memcpy(buf + off, x->iov[i].iov_base, k);
                off += k;
            }
        }
        call_begin(x, dev);
        r = dev->ops->control(dev->ctx, &setup, buf);
        call_end(x);
        if (x->ports[s->port - 1].dev != dev)
            r = USB_RET_ERROR;
        if (r > setup.length)
            r = setup.length;
        if (in && r > 0) {
            size_t off = 0;
            for (unsigned i = 0; i < cnt && off < (size_t)r; i++) {
                size_t k = x->iov[i].iov_len;
                if (k > (size_t)r - off)
                    k = (size_t)r - off;
                memcpy(x->iov[i].iov_base, buf + off, k);
                off += k;
            }
        }
    }
    if (r == USB_RET_NAK)
        return td_nak(x, s, &s->ep[dci], dci);
    if (r == USB_RET_STALL)
        return td_fail(x, s, dci, where, CC_STALL);
    if (r < 0)
        return td_fail(x, s, dci, where, CC_TRANSACTION);
    size_t n = (size_t)r < total ? (size_t)r : total;
    if (setup_trb->ctrl & TRB_IOC)
        transfer_event(x, slot, dci, setup_trb, CC_SUCCESS, 0);
    td_events(x, slot, dci, td, 1, status_at, n, UINT32_MAX);
    /* The status stage runs after a short data stage too. */
    td_events(x, slot, dci, td, status_at, td->n, 0, UINT32_MAX);
    return TD_DONE;
}

static void run_endpoint(struct xhci *x, struct xhci_slot *s, unsigned dci)
{
    struct xhci_ep *ep = &s->ep[dci];
    if (ep->state == EP_STOPPED) { /* a doorbell restarts a stopped endpoint */
        ep->state = EP_RUNNING;
        ep_ctx_sync(x, s, dci);
    }
    if (ep->state != EP_RUNNING) {
        ep->kick = false;
        return;
    }
    for (unsigned n = 0; n < TDS_PER_TURN; n++) {
        if (!x->running || ep->state != EP_RUNNING || !ep->kick || x->hcrst)
            return;
        uint64_t bad = 0;
        uint32_t budget = ep->budget;
        enum gather g = td_gather(x, ep, dci == 1, &x->td, &bad);
        if (g == TD_NONE) {
            ep->kick = false;
            return;
        }
        if (g == TD_BAD) {
            struct trb t = { .addr = bad };
            td_fail(x, s, dci, &t, CC_TRB_ERROR);
            return;
        }
        if (!event_space(x, TRB_INTR(x->td.trb[0].status))) {
            ep->budget = budget; /* the TD runs again once the driver makes room */
            x->stalled = true;
            return;
        }
        enum td_result r = dci == 1 ? run_control_td(x, s, dci) : run_normal_td(x, s, dci);
        if (r != TD_DONE)
            return;
        ep->deq = x->td.next_deq;
        ep->dcs = x->td.next_dcs;
    }
}

/* ---- the worker ---- */

static void regs_reset(struct xhci *x)
{
    x->usbcmd = 0;
    x->usbsts = STS_HCH;
    x->dnctrl = x->config = 0;
    x->dcbaap = 0;
    x->running = false;
    x->cmd_deq = 0;
    x->cmd_ccs = x->crr = x->cmd_kick = x->cmd_stop = x->stalled = false;
    memset(x->intr, 0, sizeof(x->intr));
    memset(x->slots, 0, sizeof(x->slots));
    for (unsigned i = 0; i < XHCI_PORTS; i++) {
        struct xhci_port *p = &x->ports[i];
        /* Ports come up powered (PPC = 1, but not every driver powers them). */
        p->sc = PORT_PP;
        port_set_pls(p, PLS_RXDETECT);
        p->pmsc = p->hlpmc = 0;
        p->reset_pending = p->warm = p->psc_pending = false;
        p->woken = 0;
    }
}

static void do_hcrst(struct xhci *x)
{
    regs_reset(x);
    /* Devices stay plugged in: reset each as a port reset would, then show it connected. */
    for (unsigned i = 0; i < XHCI_PORTS; i++) {
        struct usb_device *dev = x->ports[i].dev;
        if (dev)
            device_reset(x, dev);
    }
    for (unsigned i = 0; i < XHCI_PORTS; i++)
        port_connect(x, &x->ports[i]);
    x->hcrst = false;
    x->usbsts &= ~STS_CNR;
    x->usbcmd &= ~CMD_HCRST;
}

static bool work_pending(const struct xhci *x)
{
    if (x->hcrst)
        return true;
    for (unsigned i = 0; i < XHCI_PORTS; i++)
        if (x->ports[i].reset_pending)
            return true;
    if (!x->running)
        return false;
    for (unsigned i = 0; i < XHCI_PORTS; i++)
        if (x->ports[i].psc_pending)
            return true;
    for (unsigned i = 0; i < XHCI_INTERRUPTERS; i++)
        if (x->intr[i].pending && !(x->intr[i].erdp & ERDP_EHB))
            return true;
    if (x->cmd_stop)
        return true;
    if (x->stalled)
        return false;
    if (x->crr && x->cmd_kick)
        return true;
    for (unsigned s = 1; s <= XHCI_MAX_SLOTS; s++) {
        if (!x->slots[s].enabled)
            continue;
        for (unsigned d = 1; d < 32; d++)
            if (x->slots[s].ep[d].kick)
                return true;
    }
    return false;
}

static void process_locked(struct xhci *x)
{
    if (x->hcrst) {
        do_hcrst(x);
        return;
    }
    for (unsigned i = 0; i < XHCI_PORTS; i++)
        if (x->ports[i].reset_pending)
            port_do_reset(x, &x->ports[i]);
    if (x->running) {
        for (unsigned i = 0; i < XHCI_PORTS; i++) {
            if (!x->ports[i].psc_pending)
                continue;
            x->ports[i].psc_pending = false;
            event_post(x, 0, (uint64_t)(i + 1) << 24, (uint32_t)CC_SUCCESS << 24, E_PORT << 10,
                       false);
        }
        if (x->cmd_stop) {
            /* Commands run whole, so a stop or an abort lands between two of them. */
            x->cmd_stop = false;
            if (x->crr) {
                x->crr = x->cmd_kick = false;
                command_done(x, x->cmd_deq, CC_CMD_RING_STOPPED, 0);
            }
        }
        if (!x->stalled) {
            run_command_ring(x);
            for (unsigned s = 1; s <= XHCI_MAX_SLOTS && !x->stalled; s++) {
                if (!x->slots[s].enabled)
                    continue;
                for (unsigned d = 1; d < 32 && !x->stalled; d++)
                    if (x->slots[s].ep[d].kick && x->slots[s].enabled)
                        run_endpoint(x, &x->slots[s], d);
            }
        }
    }
    deliver_interrupts(x);
}

bool xhci_process(struct xhci *x)
{
    pthread_mutex_lock(&x->lock);
    process_locked(x);
    bool more = work_pending(x);
    pthread_mutex_unlock(&x->lock);
    return more;
}

static void *worker_main(void *arg)
{
    struct xhci *x = arg;
    pthread_mutex_lock(&x->lock);
    while (!x->stop) {
        if (!work_pending(x))
            pthread_cond_wait(&x->work, &x->lock);
        else
            process_locked(x);
    }
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

/* ---- MMIO ---- */

static uint32_t cap_read(unsigned off)
{
    switch (off) {
    case 0: return XHCI_CAPLENGTH | (uint32_t)HCI_VERSION << 16;
    case CAP_HCSPARAMS1:
        return XHCI_MAX_SLOTS | (uint32_t)XHCI_INTERRUPTERS << 8 | (uint32_t)XHCI_PORTS << 24;
    case CAP_HCSPARAMS2: return (uint32_t)ERST_MAX_LOG2 << 4; /* IST 0, no scratchpads */
    case CAP_HCSPARAMS3: return 0;
    case CAP_HCCPARAMS1:
        /* AC64, PPC, NSS; 32-byte contexts, no streams; the extended capabilities. */
        return 1u | 1u << 3 | 1u << 7 | (uint32_t)(XHCI_XECP_OFF / 4) << 16;
    case CAP_DBOFF: return XHCI_DB_OFF;
    case CAP_RTSOFF: return XHCI_RTS_OFF;
    default: return 0;
    }
}

/* Supported Protocol capabilities (7.2): USB 2.0 on the first ports, USB 3.0 after. */
static uint32_t xecp_read(unsigned off)
{
    unsigned cap = off / 16, dw = (off % 16) / 4;
    bool usb3 = cap == 1;
    switch (dw) {
    case 0: return 2u | (usb3 ? 0 : 4u) << 8 | (uint32_t)(usb3 ? 3 : 2) << 24;
    case 1: return 0x20425355; /* "USB " */
    case 2: return usb3 ? (XHCI_USB2_PORTS + 1) | XHCI_USB3_PORTS << 8 : 1 | XHCI_USB2_PORTS << 8;
    default: return 0; /* protocol slot type 0 */
    }
}

static uint32_t op_read(struct xhci *x, unsigned off)
{
    switch (off) {
    case OP_USBCMD: return x->usbcmd;
    case OP_USBSTS: return x->usbsts;
    case OP_PAGESIZE: return 1; /* 4 KiB */
    case OP_DNCTRL: return x->dnctrl;
    case OP_CRCR: return x->crr ? CRCR_CRR : 0; /* the pointer reads as zero */
    case OP_DCBAAP: return (uint32_t)x->dcbaap;
    case OP_DCBAAP + 4: return (uint32_t)(x->dcbaap >> 32);
    case OP_CONFIG: return x->config;
    default: return 0;
    }
}

static uint32_t mfindex(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return (uint32_t)(ns / 125000) & 0x3fff; /* microframes */
}

static uint32_t rt_read(struct xhci *x, unsigned off)
{
    if (off < RT_IR0)
        return off == 0 ? mfindex() : 0;
    struct interrupter *ir = &x->intr[(off - RT_IR0) / RT_IR_SIZE];
    switch ((off - RT_IR0) % RT_IR_SIZE) {
    case IR_IMAN: return ir->iman;
    case IR_IMOD: return ir->imod;
    case IR_ERSTSZ: return ir->erstsz;
    case IR_ERSTBA: return (uint32_t)ir->erstba;
    case IR_ERSTBA + 4: return (uint32_t)(ir->erstba >> 32);
    case IR_ERDP: return (uint32_t)ir->erdp;
    case IR_ERDP + 4: return (uint32_t)(ir->erdp >> 32);
    default: return 0;
    }
}

static uint32_t reg_read(struct xhci *x, uint64_t off)
{
    if (off < XHCI_CAPLENGTH)
        return cap_read((unsigned)off);
    if (off >= XHCI_PORT_REGS && off < XHCI_PORT_REGS + 16 * XHCI_PORTS) {
        const struct xhci_port *p = &x->ports[(off - XHCI_PORT_REGS) / 16];
        switch ((off - XHCI_PORT_REGS) % 16) {
        case 0: return p->sc;
        case 4: return p->pmsc;
        case 12: return p->hlpmc;
        default: return 0;
        }
    }
    if (off < XHCI_PORT_REGS)
        return op_read(x, (unsigned)(off - XHCI_CAPLENGTH));
    if (off >= XHCI_XECP_OFF && off < XHCI_XECP_OFF + 32)
        return xecp_read((unsigned)(off - XHCI_XECP_OFF));
    if (off >= XHCI_RTS_OFF && off < XHCI_RTS_OFF + RT_IR0 + RT_IR_SIZE * XHCI_INTERRUPTERS)
        return rt_read(x, (unsigned)(off - XHCI_RTS_OFF));
    return 0;
}

static void usbcmd_write(struct xhci *x, uint32_t v)
{
    if (v & CMD_HCRST) {
        /* The worker resets everything (it may have to reset devices); CNR until done. */
        x->usbcmd = CMD_HCRST;
        x->usbsts |= STS_CNR | STS_HCH;
        x->running = false;
        x->hcrst = true;
        wake_worker(x);
        return;
    }
    uint32_t old = x->usbcmd;
    x->usbcmd = v & CMD_STORED;
    if ((v & CMD_RS) && !(old & CMD_RS) && !(x->usbsts & STS_HSE)) {
        x->running = true;
        x->usbsts &= ~STS_HCH;
        /* Changes seen while halted are reported now. */
        for (unsigned i = 0; i < XHCI_PORTS; i++)
            if (x->ports[i].sc & PORT_CHANGE)
                x->ports[i].psc_pending = true;
    } else if (!(v & CMD_RS) && (old & CMD_RS)) {
        x->running = false;
        x->crr = false;
        x->usbsts |= STS_HCH;
    }
    if ((v & CMD_INTE) && !(old & CMD_INTE))
        for (unsigned i = 0; i < XHCI_INTERRUPTERS; i++)
            x->intr[i].pending |= (x->intr[i].iman & IMAN_IP) != 0;
    wake_worker(x);
}

static void op_write(struct xhci *x, unsigned off, uint32_t v)
{
    switch (off) {
    case OP_USBCMD: usbcmd_write(x, v); break;
    case OP_USBSTS: x->usbsts &= ~(v & STS_W1C); break;
    case OP_DNCTRL: x->dnctrl = v & 0xffff; break;
    case OP_CRCR:
        if (x->crr) {
            if (v & (CRCR_CS | CRCR_CA)) {
                x->cmd_stop = true;
                wake_worker(x);
            }
        } else {
            x->cmd_deq = (x->cmd_deq & ~0xffffffffull) | (v & ~0x3fu);
            x->cmd_ccs = v & CRCR_RCS;
        }
        break;
    case OP_CRCR + 4:
        if (!x->crr)
            x->cmd_deq = (x->cmd_deq & 0xffffffffull) | (uint64_t)v << 32;
        break;
    case OP_DCBAAP: x->dcbaap = (x->dcbaap & ~0xffffffffull) | (v & ~0x3fu); break;
    case OP_DCBAAP + 4: x->dcbaap = (x->dcbaap & 0xffffffffull) | (uint64_t)v << 32; break;
    case OP_CONFIG: {
        unsigned max = v & 0xff;
        x->config = (v & 0x300) | (max > XHCI_MAX_SLOTS ? XHCI_MAX_SLOTS : max);
        break;
    }
    default: break;
    }
}

static void rt_write(struct xhci *x, unsigned off, uint32_t v)
{
    if (off < RT_IR0)
        return;
    unsigned i = (off - RT_IR0) / RT_IR_SIZE;
    struct interrupter *ir = &x->intr[i];
    switch ((off - RT_IR0) % RT_IR_SIZE) {
    case IR_IMAN: {
        bool was = ir->iman & IMAN_IE;
        ir->iman = (ir->iman & ~(v & IMAN_IP) & ~IMAN_IE) | (v & IMAN_IE);
        if (!was && (v & IMAN_IE) && (ir->iman & IMAN_IP)) {
            ir->pending = true;
            wake_worker(x);
        }
        break;
    }
    case IR_IMOD: ir->imod = v; break;
    case IR_ERSTSZ:
        ir->erstsz = v & 0xffff;
        ir->need_init = true;
        break;
    case IR_ERSTBA:
        ir->erstba = (ir->erstba & ~0xffffffffull) | (v & ~0x3fu);
        ir->need_init = true;
        break;
    case IR_ERSTBA + 4:
        ir->erstba = (ir->erstba & 0xffffffffull) | (uint64_t)v << 32;
        ir->need_init = true;
        break;
    case IR_ERDP:
    case IR_ERDP + 4: {
        bool hi = ((off - RT_IR0) % RT_IR_SIZE) == IR_ERDP + 4;
        uint64_t ehb = ir->erdp & ERDP_EHB, old = ir->erdp & ~0xfull;
        if (hi) {
            ir->erdp = (ir->erdp & 0xffffffffull) | (uint64_t)v << 32;
        } else {
            ir->erdp = (ir->erdp & ~0xffffffffull) | (v & ~0xfu);
            if (v & ERDP_EHB)
                ehb = 0; /* write 1 to clear */
        }
        ir->erdp = (ir->erdp & ~(uint64_t)ERDP_EHB) | ehb;
        /* The driver moved on: what it consumed is free again. */
        if ((ir->erdp & ~0xfull) != old)
            ir->full = false;
        /* Room again, or events the driver has not consumed yet while it was busy. */
        if (ir->ready && !ehb && (ir->erdp & ~0xfull) != ring_addr(ir, ir->seg, ir->idx))
            ir->pending = true;
        x->stalled = false;
        wake_worker(x);
        break;
    }
    default: break;
    }
}

static void doorbell_write(struct xhci *x, unsigned idx, uint32_t v)
{
    if (!x->running)
        return;
    if (idx == 0) {
        if ((v & 0xff) == 0) {
            x->crr = x->cmd_kick = true;
            x->cmd_budget = XHCI_RING_BUDGET;
            wake_worker(x);
        }
        return;
    }
    unsigned target = v & 0xff;
    if (idx > (x->config & 0xff) || target == 0 || target > 31 || !x->slots[idx].enabled)
        return;
    struct xhci_ep *ep = &x->slots[idx].ep[target];
    ep->kick = true;
    ep->nak = false; /* a doorbell retries a TD that got NAK */
    ep->budget = XHCI_RING_BUDGET;
    wake_worker(x);
}

static void reg_write(struct xhci *x, uint64_t off, uint32_t v)
{
    if (off < XHCI_CAPLENGTH)
        return;
    if (off >= XHCI_PORT_REGS && off < XHCI_PORT_REGS + 16 * XHCI_PORTS) {
        struct xhci_port *p = &x->ports[(off - XHCI_PORT_REGS) / 16];
        switch ((off - XHCI_PORT_REGS) % 16) {
        case 0: portsc_write(x, p, v); break;
        case 4: p->pmsc = v; break;
        case 12: p->hlpmc = v; break;
        default: break;
        }
        return;
    }
    if (off < XHCI_PORT_REGS) {
        op_write(x, (unsigned)(off - XHCI_CAPLENGTH), v);
        return;
    }
    if (off >= XHCI_RTS_OFF && off < XHCI_RTS_OFF + RT_IR0 + RT_IR_SIZE * XHCI_INTERRUPTERS) {
        rt_write(x, (unsigned)(off - XHCI_RTS_OFF), v);
        return;
    }
    if (off >= XHCI_DB_OFF && off < XHCI_DB_OFF + 4 * (XHCI_MAX_SLOTS + 1))
        doorbell_write(x, (unsigned)(off - XHCI_DB_OFF) / 4, v);
}

static void bar_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct xhci *x = dev;
    if (size == 0 || size > 8 || off >= XHCI_BAR_SIZE)
        return;
    if (msix_bar_read(x->msix, off, data, size))
        return;
    uint8_t b[12];
    uint64_t base = off & ~3ull;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < 3; i++)
        le_put32(b, 4 * i, reg_read(x, base + 4 * i));
    pthread_mutex_unlock(&x->lock);
    memcpy(data, b + (off & 3), size);
}

/* Registers are written as dwords or qwords (5.1); narrower writes are dropped. */
static void bar_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct xhci *x = dev;
    if (off >= XHCI_BAR_SIZE || msix_bar_write(x->msix, off, data, size))
        return;
    if ((size != 4 && size != 8) || (off & 3))
        return;
    uint8_t b[8];
    memcpy(b, data, size);
    pthread_mutex_lock(&x->lock);
    reg_write(x, off, le_get32(b, 0));
    if (size == 8)
        reg_write(x, off + 4, le_get32(b, 4));
    pthread_mutex_unlock(&x->lock);
}

const struct bus_device_ops xhci_bar_ops = { .read = bar_read, .write = bar_write };

/* MSI-X turned on (or unmasked) with an interrupt waiting: deliver it. */
static void config_written(void *ctx, unsigned offset, unsigned size)
{
    struct xhci *x = ctx;
    unsigned cap = msix_cap_offset(x->msix);
    if (offset + size <= cap + 2 || offset >= cap + 4)
        return;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < XHCI_INTERRUPTERS; i++)
        x->intr[i].pending |= (x->intr[i].iman & IMAN_IP) != 0;
    wake_worker(x);
    pthread_mutex_unlock(&x->lock);
}

/* ---- life cycle, hot-plug ---- */

static void port_wakeup(void *port, uint8_t epaddr)
{
    struct xhci_port *p = port;
    struct xhci *x = p->x;
    unsigned num = epaddr & 0x0f;
    unsigned dci = num ? num * 2 + ((epaddr & USB_DIR_IN) ? 1 : 0) : 1;
    pthread_mutex_lock(&x->lock);
    p->woken |= 1u << dci;
    for (unsigned s = 1; s <= XHCI_MAX_SLOTS; s++) {
        struct xhci_slot *sl = &x->slots[s];
        if (!sl->enabled || sl->port != p->index + 1 || !sl->ep[dci].nak)
            continue;
        sl->ep[dci].nak = false;
        sl->ep[dci].kick = true;
        sl->ep[dci].budget = XHCI_RING_BUDGET;
        wake_worker(x);
    }
    pthread_mutex_unlock(&x->lock);
}

static int create(const struct guest_memory *gm, const struct irq_routing_ops *irq, bool threaded,
                  struct xhci **out)
{
    *out = NULL;
    if (!gm || !irq)
        return -EINVAL;
    struct xhci *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->gm = gm;
    x->irq = *irq;
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->work, NULL);
    pthread_cond_init(&x->idle, NULL);
    pci_device_init(&x->pci, XHCI_PCI_VENDOR, XHCI_PCI_DEVICE, XHCI_PCI_CLASS, 1, XHCI_PCI_VENDOR,
                    XHCI_PCI_DEVICE);
    /* SBRN (USB 3.0) and FLADJ (default, writable) sit in config space (5.2.3, 5.2.4). */
    x->pci.config[0x60] = 0x30;
    x->pci.config[0x61] = 0x20;
    static const uint8_t fladj_mask = 0x3f;
    pci_device_set_wmask(&x->pci, 0x61, &fladj_mask, 1);
    struct pci_config_hook hook = { .written = config_written, .ctx = x };
    int e = pci_device_add_bar(&x->pci, XHCI_BAR, PCI_BAR_MEM64, XHCI_BAR_SIZE, false,
                               &xhci_bar_ops, x);
    if (e == 0)
        e = msix_new(&x->pci, XHCI_INTERRUPTERS, XHCI_BAR, XHCI_MSIX_TABLE, XHCI_MSIX_PBA, &x->irq,
                     &x->msix);
    if (e == 0)
        e = pci_device_add_config_hook(&x->pci, &hook);
    if (e < 0)
        goto fail;
    for (unsigned i = 0; i < XHCI_PORTS; i++) {
        x->ports[i].x = x;
        x->ports[i].index = i;
        x->ports[i].usb3 = i >= XHCI_USB2_PORTS;
    }
    regs_reset(x);
    if (threaded) {
        x->threaded = true;
        e = -pthread_create(&x->thread, NULL, worker_main, x);
        if (e < 0) {
            x->threaded = false;
            goto fail;
        }
    }
    *out = x;
    return 0;
fail:
    xhci_free(x);
    return e;
}

int xhci_new(const struct guest_memory *gm, const struct irq_routing_ops *irq, struct xhci **out)
{
    return create(gm, irq, true, out);
}

int xhci_new_unthreaded(const struct guest_memory *gm, const struct irq_routing_ops *irq,
                        struct xhci **out)
{
    return create(gm, irq, false, out);
}

void xhci_free(struct xhci *x)
{
    if (!x)
        return;
    if (x->threaded) {
        pthread_mutex_lock(&x->lock);
        x->stop = true;
        pthread_cond_signal(&x->work);
        pthread_mutex_unlock(&x->lock);
        pthread_join(x->thread, NULL);
    }
    for (unsigned i = 0; i < XHCI_PORTS; i++) {
        struct usb_device *dev = x->ports[i].dev;
        if (!dev)
            continue;
        dev->wakeup = NULL;
        dev->port = NULL;
        if (dev->ops->destroy)
            dev->ops->destroy(dev->ctx);
    }
    msix_free(x->msix);
    pthread_cond_destroy(&x->idle);
    pthread_cond_destroy(&x->work);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

struct pci_device *xhci_pci_device(struct xhci *x)
{
    return &x->pci;
}

int xhci_attach(struct xhci *x, struct usb_device *dev, unsigned *port_out)
{
    if (!dev || !dev->ops || !dev->ops->control || !dev->ops->transfer || dev->speed < 1 ||
        dev->speed > USB_SPEED_SUPER)
        return -EINVAL;
    bool usb3 = dev->speed == USB_SPEED_SUPER;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < XHCI_PORTS; i++) {
        struct xhci_port *p = &x->ports[i];
        if (p->usb3 != usb3 || p->dev)
            continue;
        p->dev = dev;
        p->woken = 0;
        dev->port = p;
        dev->wakeup = port_wakeup;
        port_connect(x, p);
        pthread_mutex_unlock(&x->lock);
        if (port_out)
            *port_out = i + 1;
        return 0;
    }
    pthread_mutex_unlock(&x->lock);
    return -EBUSY;
}

int xhci_detach(struct xhci *x, unsigned port)
{
    if (port == 0 || port > XHCI_PORTS)
        return -ENOENT;
    struct xhci_port *p = &x->ports[port - 1];
    pthread_mutex_lock(&x->lock);
    struct usb_device *dev = p->dev;
    if (!dev) {
        pthread_mutex_unlock(&x->lock);
        return -ENOENT;
    }
    p->dev = NULL;
    p->reset_pending = false;
    port_disconnect(x, p);
    /* TDs waiting on the device's NAK end now (USB Transaction Error) rather than never. */
    for (unsigned s = 1; s <= XHCI_MAX_SLOTS; s++) {
        struct xhci_slot *sl = &x->slots[s];
        if (!sl->enabled || sl->port != port)
            continue;
        for (unsigned d = 1; d < 32; d++) {
            if (sl->ep[d].nak) {
                sl->ep[d].nak = false;
                sl->ep[d].kick = true;
                sl->ep[d].budget = XHCI_RING_BUDGET;
            }
        }
    }
    wake_worker(x);
    while (x->calling == dev)
        pthread_cond_wait(&x->idle, &x->lock);
    dev->wakeup = NULL;
    dev->port = NULL;
    pthread_mutex_unlock(&x->lock);
    if (dev->ops->destroy)
        dev->ops->destroy(dev->ctx);
    return 0;
}
