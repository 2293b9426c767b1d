#include "devices/legacy/uart_16550.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Register offsets (DLAB selects DLL/DLM at 0 and 1). */
#define REG_RBR_THR 0
#define REG_IER     1
#define REG_IIR_FCR 2
#define REG_LCR     3
#define REG_MCR     4
#define REG_LSR     5
#define REG_MSR     6
#define REG_SCR     7
#define UART_REGS   8

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08
#define IER_MASK 0x0f /* bits 4-7 read 0: Linux tells 16550A from XScale/16750 by them */

#define IIR_NO_INT       0x01
#define IIR_MSI          0x00
#define IIR_THRI         0x02
#define IIR_RDI          0x04
#define IIR_RLSI         0x06
#define IIR_FIFO_ENABLED 0xc0

#define FCR_ENABLE_FIFO 0x01
#define FCR_CLEAR_RCVR  0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR     0x01
#define LSR_OE     0x02
#define LSR_ERRORS 0x1e /* OE, PE, FE, BI: the receiver line status interrupt */
#define LSR_THRE   0x20
#define LSR_TEMT   0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

struct uart_16550 {
    pthread_mutex_t lock;
    struct irq_line irq;
    struct serial_output out;
    void (*rx_space)(void *ctx);
    void *rx_ctx;

    uint8_t rx[UART_16550_RX_BUFFER];
    size_t rx_head; /* next byte the guest reads */
    size_t rx_count;
    bool rx_refused; /* uart_16550_receive turned bytes away: tell rx_space later */

    uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
    bool tx_held; /* the host did not take tx_byte yet: THR is busy */
    uint8_t tx_byte;
    uint8_t lsr_errors; /* sticky LSR error bits, cleared by reading LSR */
    uint8_t msr_delta;  /* MSR bits 0-3, cleared by reading MSR */
    uint8_t msr_lines;  /* MSR bits 4-7 as last seen, to compute deltas */
    bool thre_pending;
    bool irq_level;
};

/* The modem inputs: a terminal that is always there, or in loopback the MCR
 * outputs wired back (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD). */
static uint8_t modem_lines(const struct uart_16550 *u)
{
    if (!(u->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t v = 0;
    if (u->mcr & MCR_RTS)
        v |= MSR_CTS;
    if (u->mcr & MCR_DTR)
        v |= MSR_DSR;
    if (u->mcr & MCR_OUT1)
        v |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        v |= MSR_DCD;
    return v;
}

static void update_modem_lines(struct uart_16550 *u)
{
    uint8_t now = modem_lines(u), changed = now ^ u->msr_lines;
    if (changed & MSR_CTS)
        u->msr_delta |= MSR_DCTS;
    if (changed & MSR_DSR)
        u->msr_delta |= MSR_DDSR;
    if (changed & MSR_DCD)
        u->msr_delta |= MSR_DDCD;
    if ((changed & MSR_RI) && !(now & MSR_RI)) /* trailing edge only */
        u->msr_delta |= MSR_TERI;
    u->msr_lines = now;
}

/* The highest-priority enabled interrupt, as IIR bits 0-3. */
static uint8_t pending_interrupt(const struct uart_16550 *u)
{
    if ((u->ier & IER_RLSI) && (u->lsr_errors & LSR_ERRORS))
        return IIR_RLSI;
    if ((u->ier & IER_RDI) && u->rx_count > 0)
        return IIR_RDI;
    if ((u->ier & IER_THRI) && u->thre_pending)
        return IIR_THRI;
    if ((u->ier & IER_MSI) && (u->msr_delta & 0x0f))
        return IIR_MSI;
    return IIR_NO_INT;
}

/* PC boards wire the interrupt through an OUT2-enabled buffer. Only a change of
 * level reaches the line; irq_line_set only does an ioctl, so it is fine here. */
static void update_irq(struct uart_16550 *u)
{
    bool level = pending_interrupt(u) != IIR_NO_INT && (u->mcr & MCR_OUT2);
    if (level != u->irq_level) {
        u->irq_level = level;
        irq_line_set(&u->irq, level);
    }
}

static void rx_push(struct uart_16550 *u, uint8_t byte)
{
    u->rx[(u->rx_head + u->rx_count) % UART_16550_RX_BUFFER] = byte;
    u->rx_count++;
}

/* Returns true when the event loop should be told there is room again. Waiting
 * for half the buffer keeps a long paste from costing one wake-up per byte. */
static bool rx_room_regained(struct uart_16550 *u)
{
    if (u->rx_refused && u->rx_count <= UART_16550_RX_BUFFER / 2) {
        u->rx_refused = false;
        return true;
    }
    return false;
}

static uint8_t read_reg(struct uart_16550 *u, unsigned reg, bool *notify)
{
    uint8_t v = 0;
    switch (reg) {
    case REG_RBR_THR:
        if (u->lcr & LCR_DLAB)
            return u->dll;
        if (u->rx_count > 0) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % UART_16550_RX_BUFFER;
            u->rx_count--;
            *notify = rx_room_regained(u);
        }
        break;
    case REG_IER: return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
    case REG_IIR_FCR:
        v = pending_interrupt(u);
        if (v == IIR_THRI) /* reading IIR acknowledges THRE when it is the source */
            u->thre_pending = false;
        if (u->fcr & FCR_ENABLE_FIFO)
            v |= IIR_FIFO_ENABLED;
        break;
    case REG_LCR: return u->lcr;
    case REG_MCR: return u->mcr;
    case REG_LSR:
        /* Transmission is instant while the host takes bytes: THR and the shift register
         * are empty unless a byte waits for the host. */
        v = (u->tx_held ? 0 : LSR_THRE | LSR_TEMT) | u->lsr_errors | (u->rx_count > 0 ? LSR_DR : 0);
        u->lsr_errors = 0;
        break;
    case REG_MSR:
        v = u->msr_lines | u->msr_delta;
        u->msr_delta = 0;
        break;
    case REG_SCR: return u->scr;
    default: return 0xff;
    }
    update_irq(u);
    return v;
}

/* Hands the byte to the host; keeps it in THR (busy) when the host does not take it. */
static void transmit(struct uart_16550 *u, uint8_t byte)
{
    if (u->out.write && u->out.write(u->out.ctx, &byte, 1) == 0) {
        u->tx_held = true;
        u->tx_byte = byte;
        return;
    }
    /* The byte left at once: THR is empty again, which is a new THRE event. */
    u->thre_pending = true;
}

/* Writes one register; *notify: the receive side regained room (tell the host after unlock). */
static void write_reg(struct uart_16550 *u, unsigned reg, uint8_t v, bool *notify)
{
    switch (reg) {
    case REG_RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
            return;
        }
        if (u->mcr & MCR_LOOP) {
            if (u->rx_count < UART_16550_RX_BUFFER)
                rx_push(u, v);
            else
                u->lsr_errors |= LSR_OE;
            u->thre_pending = true;
        } else if (!u->tx_held) {
            transmit(u, v);
        }
        /* A write while THR is busy overwrites nothing we keep: the guest broke the
         * protocol (it did not wait for THRE), and the byte is lost, as on a real part. */
        break;
    case REG_IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
            return;
        }
        /* Enabling THRI while THR is empty raises THRE, as real parts do; Linux's
         * startup test relies on it. */
        if ((v & IER_THRI) && !(u->ier & IER_THRI) && !u->tx_held)
            u->thre_pending = true;
        u->ier = v & IER_MASK;
        break;
    case REG_IIR_FCR:
        /* Only enable and trigger level are kept: bit 5 (64-byte FIFO) must not show
         * in IIR, or Linux would take this for a 16750. */
        u->fcr = v & (FCR_ENABLE_FIFO | 0xc0);
        if (v & FCR_CLEAR_RCVR) {
            u->rx_head = 0;
            u->rx_count = 0;
            *notify = rx_room_regained(u);
        }
        break;
    case REG_LCR: u->lcr = v; return;
    case REG_MCR:
        u->mcr = v & MCR_MASK;
        update_modem_lines(u);
        break;
    case REG_SCR: u->scr = v; return;
    default: /* LSR and MSR are read-only; their writes are factory tests */ return;
    }
    update_irq(u);
}

static void uart_bus_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct uart_16550 *u = dev;
    uint8_t *out = data;
    bool notify = false;
    if (size == 0)
        return;
    memset(out, 0xff, size);
    if (offset >= UART_REGS)
        return;
    pthread_mutex_lock(&u->lock);
    out[0] = read_reg(u, (unsigned)offset, &notify);
    pthread_mutex_unlock(&u->lock);
    if (notify && u->rx_space)
        u->rx_space(u->rx_ctx);
}

static void uart_bus_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct uart_16550 *u = dev;
    bool notify = false;
    if (size == 0 || offset >= UART_REGS)
        return;
    pthread_mutex_lock(&u->lock);
    write_reg(u, (unsigned)offset, *(const uint8_t *)data, &notify);
    pthread_mutex_unlock(&u->lock);
    if (notify && u->rx_space)
        u->rx_space(u->rx_ctx);
}

const struct bus_device_ops uart_16550_bus_ops = {
    .read = uart_bus_read,
    .write = uart_bus_write,
};

size_t uart_16550_receive(struct uart_16550 *u, const uint8_t *buf, size_t len)
{
    if (!u || !buf || len == 0)
        return 0;
    pthread_mutex_lock(&u->lock);
    size_t room = UART_16550_RX_BUFFER - u->rx_count;
    size_t n = len;
    if (n > room) {
        n = room;
        u->rx_refused = true;
    }
    for (size_t i = 0; i < n; i++)
        rx_push(u, buf[i]);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return n;
}

void uart_16550_tx_space(struct uart_16550 *u)
{
    pthread_mutex_lock(&u->lock);
    if (u->tx_held) {
        u->tx_held = false;
        transmit(u, u->tx_byte);
        update_irq(u);
    }
    pthread_mutex_unlock(&u->lock);
}

struct uart_16550 *uart_16550_new(const struct irq_line *irq, const struct serial_output *out,
                                  void (*rx_space)(void *ctx), void *rx_ctx)
{
    struct uart_16550 *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    if (pthread_mutex_init(&u->lock, NULL) != 0) {
        free(u);
        return NULL;
    }
    if (irq)
        u->irq = *irq;
    if (out)
        u->out = *out;
    u->rx_space = rx_space;
    u->rx_ctx = rx_ctx;
    u->dll = 0x0c; /* 9600 baud, what firmware usually leaves behind */
    u->msr_lines = modem_lines(u);
    return u;
}

void uart_16550_free(struct uart_16550 *u)
{
    if (!u)
        return;
    pthread_mutex_destroy(&u->lock);
    free(u);
}
