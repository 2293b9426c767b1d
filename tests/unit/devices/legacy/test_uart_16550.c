#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "devices/legacy/uart_16550.h"
#include "core/bus.h"
#include "event_recorder.h"

enum {
    RBR = 0,
    THR = 0,
    DLL = 0,
    IER = 1,
    DLM = 1,
    IIR = 2,
    FCR = 2,
    LCR = 3,
    MCR = 4,
    LSR = 5,
    MSR = 6,
    SCR = 7
};

/* The host side: takes bytes while it has room (room: how many more; a full host refuses). */
struct out_rec {
    uint8_t buf[256];
    size_t len;
    size_t room;
};

static size_t out_write(void *ctx, const uint8_t *buf, size_t len)
{
    struct out_rec *o = ctx;
    size_t n = 0;
    for (; n < len && o->len < sizeof(o->buf) && o->room; n++, o->room--)
        o->buf[o->len++] = buf[n];
    return n;
}

static void count_call(void *ctx)
{
    (*(unsigned *)ctx)++;
}

struct fixture {
    struct irq_record irq;
    struct out_rec out;
    unsigned rx_space_calls;
    struct irq_line line;
    struct serial_output so;
    struct uart_16550 *u;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->line = irq_recorder(&f->irq, 4);
    f->out.room = SIZE_MAX;
    f->so = (struct serial_output){ .write = out_write, .ctx = &f->out };
    f->u = uart_16550_new(&f->line, &f->so, count_call, &f->rx_space_calls);
    if (!f->u) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    uart_16550_free(f->u);
    free(f);
    return 0;
}

static uint8_t rd(struct uart_16550 *u, unsigned reg)
{
    uint8_t v = 0;
    uart_16550_bus_ops.read(u, reg, &v, 1);
    return v;
}

static void wr(struct uart_16550 *u, unsigned reg, uint8_t v)
{
    uart_16550_bus_ops.write(u, reg, &v, 1);
}

static void test_scratch_round_trip(void **state)
{
    struct fixture *f = *state;
    const uint8_t values[] = { 0x00, 0x5a, 0xa5, 0xff, 0x01 };
    for (size_t i = 0; i < sizeof(values); i++) {
        wr(f->u, SCR, values[i]);
        assert_int_equal(rd(f->u, SCR), values[i]);
    }
}

static void test_divisor_latch(void **state)
{
    struct fixture *f = *state;
    wr(f->u, IER, 0x05);
    wr(f->u, LCR, 0x83); /* DLAB + 8N1 */
    wr(f->u, DLL, 0x01);
    wr(f->u, DLM, 0x02);
    assert_int_equal(rd(f->u, DLL), 0x01);
    assert_int_equal(rd(f->u, DLM), 0x02);
    assert_int_equal(rd(f->u, LCR), 0x83);
    /* A DLL write is not a transmitted byte. */
    assert_int_equal(f->out.len, 0);
    wr(f->u, LCR, 0x03);
    assert_int_equal(rd(f->u, IER), 0x05); /* IER untouched by the DLM write */
    wr(f->u, LCR, 0x83);
    assert_int_equal(rd(f->u, DLL), 0x01);
    assert_int_equal(rd(f->u, DLM), 0x02);
}

static void test_thr_reaches_output(void **state)
{
    struct fixture *f = *state;
    const char *msg = "hello\n";
    for (const char *p = msg; *p; p++)
        wr(f->u, THR, (uint8_t)*p);
    assert_int_equal(f->out.len, strlen(msg));
    assert_memory_equal(f->out.buf, msg, strlen(msg));
    /* Transmission is instant: THRE and TEMT stay set. */
    assert_int_equal(rd(f->u, LSR) & 0x60, 0x60);
}

static void test_no_output_discards(void **state)
{
    struct serial_output none = { 0 };
    struct uart_16550 *u = uart_16550_new(NULL, &none, NULL, NULL);
    assert_non_null(u);
    wr(u, THR, 'x');
    wr(u, IER, 0x0f);
    wr(u, MCR, 0x08);
    assert_int_equal(uart_16550_receive(u, (const uint8_t *)"ab", 2), 2);
    assert_int_equal(rd(u, RBR), 'a');
    uart_16550_free(u);

    u = uart_16550_new(NULL, NULL, NULL, NULL);
    assert_non_null(u);
    wr(u, THR, 'x');
    assert_int_equal(uart_16550_receive(u, NULL, 5), 0);
    assert_int_equal(uart_16550_receive(u, (const uint8_t *)"", 0), 0);
    assert_int_equal(rd(u, LSR) & 0x01, 0);
    uart_16550_free(u);
    uart_16550_free(NULL);
}

static void test_receive_and_interrupt(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f->u, LSR) & 0x01, 0);
    assert_int_equal(rd(f->u, IIR), 0x01);

    wr(f->u, IER, 0x01);
    wr(f->u, MCR, 0x0b); /* DTR, RTS, OUT2 */
    assert_int_equal(f->irq.calls, 0);

    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"abc", 3), 3);
    assert_int_equal(rd(f->u, LSR) & 0x01, 0x01);
    assert_true(f->irq.level);
    assert_int_equal(f->irq.gsi, 4);
    assert_int_equal(f->irq.calls, 1);
    assert_int_equal(rd(f->u, IIR), 0x04);

    /* More data while the line is up: no second edge. */
    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"d", 1), 1);
    assert_int_equal(f->irq.calls, 1);

    assert_int_equal(rd(f->u, RBR), 'a');
    assert_int_equal(rd(f->u, RBR), 'b');
    assert_int_equal(rd(f->u, RBR), 'c');
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, RBR), 'd');
    assert_false(f->irq.level);
    assert_int_equal(f->irq.calls, 2);
    assert_int_equal(rd(f->u, LSR) & 0x01, 0);
    assert_int_equal(rd(f->u, IIR), 0x01);
    /* Reading an empty RBR is harmless. */
    rd(f->u, RBR);
    assert_int_equal(f->irq.calls, 2);
}

static void test_out2_gates_irq(void **state)
{
    struct fixture *f = *state;
    wr(f->u, IER, 0x01);
    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"z", 1), 1);
    /* Pending (IIR says so) but OUT2 is clear: the line stays low. */
    assert_int_equal(rd(f->u, IIR), 0x04);
    assert_false(f->irq.level);
    assert_int_equal(f->irq.calls, 0);
    wr(f->u, MCR, 0x08);
    assert_true(f->irq.level);
    wr(f->u, MCR, 0x00);
    assert_false(f->irq.level);
    assert_int_equal(f->irq.calls, 2);
    /* Receive interrupt disabled: nothing even with OUT2. */
    wr(f->u, IER, 0x00);
    wr(f->u, MCR, 0x08);
    assert_false(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x01);
}

static void test_thre_interrupt(void **state)
{
    struct fixture *f = *state;
    wr(f->u, MCR, 0x08);
    wr(f->u, IER, 0x02);
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x02);
    /* Reading IIR acknowledged it. */
    assert_false(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x01);

    /* Each THR write empties at once and raises THRE again. */
    wr(f->u, THR, 'q');
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x02);
    assert_int_equal(rd(f->u, IIR), 0x01);

    /* Linux's startup test: IER=THRI, read IIR, IER=0, IER=THRI: THRE again. */
    wr(f->u, IER, 0x00);
    wr(f->u, IER, 0x02);
    assert_int_equal(rd(f->u, IIR), 0x02);
    /* Re-writing IER with THRI already set does not re-raise it. */
    wr(f->u, IER, 0x02);
    assert_int_equal(rd(f->u, IIR), 0x01);

    /* Disabling THRI drops the line while THRE is pending. */
    wr(f->u, THR, 'r');
    assert_true(f->irq.level);
    wr(f->u, IER, 0x00);
    assert_false(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x01);
}

/* A host that takes no more keeps the byte in THR: LSR shows the transmitter busy, no THRE
 * interrupt, further writes are lost until the host has room; then the byte goes and THRE
 * (with its interrupt) comes back. */
static void test_transmit_back_pressure(void **state)
{
    struct fixture *f = *state;
    wr(f->u, MCR, 0x08);
    wr(f->u, IER, 0x02);
    assert_int_equal(rd(f->u, IIR), 0x02);
    f->out.room = 1;
    wr(f->u, THR, 'a');
    assert_int_equal(rd(f->u, IIR), 0x02);
    assert_int_equal(rd(f->u, LSR) & 0x60, 0x60); /* THRE and TEMT: 'a' went */
    wr(f->u, THR, 'b');                           /* the host is full: 'b' waits in THR */
    assert_int_equal(f->out.len, 1);
    assert_int_equal(rd(f->u, LSR) & 0x60, 0);
    assert_false(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x01);
    wr(f->u, THR, 'c'); /* a guest that did not wait: lost, as on a real part */
    wr(f->u, IER, 0x00);
    wr(f->u, IER, 0x02); /* no THRE to raise while THR is busy */
    assert_false(f->irq.level);
    uart_16550_tx_space(f->u); /* still full: nothing changes */
    assert_int_equal(rd(f->u, LSR) & 0x60, 0);
    f->out.room = SIZE_MAX;
    uart_16550_tx_space(f->u);
    assert_int_equal(f->out.len, 2);
    assert_memory_equal(f->out.buf, "ab", 2);
    assert_int_equal(rd(f->u, LSR) & 0x60, 0x60);
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x02);
    uart_16550_tx_space(f->u); /* nothing held: harmless */
    assert_int_equal(f->out.len, 2);
    wr(f->u, THR, 'd');
    assert_int_equal(f->out.len, 3);
}

static void test_iir_priorities(void **state)
{
    struct fixture *f = *state;
    uint8_t byte = 0;
    wr(f->u, MCR, 0x18); /* loopback + OUT2 */
    rd(f->u, MSR);       /* clear the deltas entering loopback made */
    /* Fill the receive buffer through loopback, then overrun it. */
    for (unsigned i = 0; i <= UART_16550_RX_BUFFER; i++)
        wr(f->u, THR, byte++);
    wr(f->u, MCR, 0x1a); /* RTS -> CTS delta */
    wr(f->u, IER, 0x0f);
    assert_int_equal(rd(f->u, IIR), 0x06); /* RLS (overrun) first */
    assert_int_equal(rd(f->u, LSR) & 0x03, 0x03);
    assert_int_equal(rd(f->u, LSR) & 0x02, 0); /* OE was cleared by the read */
    assert_int_equal(rd(f->u, IIR), 0x04);     /* then RDA */
    for (unsigned i = 0; i < UART_16550_RX_BUFFER; i++)
        assert_int_equal(rd(f->u, RBR), (uint8_t)i);
    assert_int_equal(rd(f->u, IIR), 0x02); /* then THRE, which the read clears */
    assert_int_equal(rd(f->u, IIR), 0x00); /* then modem status */
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, MSR) & 0x0f, 0x01); /* DCTS */
    assert_int_equal(rd(f->u, IIR), 0x01);
    assert_false(f->irq.level);
}

static void test_loopback(void **state)
{
    struct fixture *f = *state;
    /* Linux's probe: MCR = LOOP | OUT2 | RTS, expect DCD | CTS in MSR. */
    wr(f->u, MCR, 0x1a);
    assert_int_equal(rd(f->u, MSR) & 0xf0, 0x90);
    wr(f->u, MCR, 0x15); /* LOOP | OUT1 | DTR */
    assert_int_equal(rd(f->u, MSR) & 0xf0, 0x60);

    wr(f->u, THR, 'L');
    wr(f->u, THR, 'B');
    assert_int_equal(f->out.len, 0);
    assert_int_equal(rd(f->u, LSR) & 0x01, 0x01);
    assert_int_equal(rd(f->u, RBR), 'L');
    assert_int_equal(rd(f->u, RBR), 'B');
    assert_int_equal(rd(f->u, LSR) & 0x01, 0);

    /* Out of loopback: the terminal's lines again, and bytes leave. */
    wr(f->u, MCR, 0x0b);
    assert_int_equal(rd(f->u, MSR) & 0xf0, 0xb0);
    assert_int_equal(rd(f->u, MSR) & 0x0f, 0);
    assert_int_equal(rd(f->u, MCR), 0x0b);
    wr(f->u, THR, 'X');
    assert_int_equal(f->out.len, 1);
    assert_int_equal(f->out.buf[0], 'X');
}

static void test_msr_default_and_interrupt(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f->u, MSR), 0xb0);
    wr(f->u, IER, 0x08);
    wr(f->u, MCR, 0x08);
    assert_false(f->irq.level);
    wr(f->u, MCR, 0x1c); /* loopback: CTS, DSR drop, RI and DCD from OUT1/OUT2 */
    assert_true(f->irq.level);
    assert_int_equal(rd(f->u, IIR), 0x00);
    assert_int_equal(rd(f->u, MSR), 0xc0 | 0x01 | 0x02); /* RI|DCD, DCTS|DDSR */
    assert_false(f->irq.level);
    wr(f->u, MCR, 0x18); /* RI trailing edge */
    assert_int_equal(rd(f->u, MSR), 0x80 | 0x04);
    /* Writes to LSR and MSR are ignored. */
    wr(f->u, MSR, 0xff);
    wr(f->u, LSR, 0x00);
    assert_int_equal(rd(f->u, MSR), 0x80);
    assert_int_equal(rd(f->u, LSR), 0x60);
}

static void test_16550a_identification(void **state)
{
    struct fixture *f = *state;
    /* The existence test: IER keeps only its low four bits. */
    wr(f->u, IER, 0x00);
    assert_int_equal(rd(f->u, IER) & 0x0f, 0);
    wr(f->u, IER, 0x0f);
    assert_int_equal(rd(f->u, IER) & 0x0f, 0x0f);
    wr(f->u, IER, 0xff);
    assert_int_equal(rd(f->u, IER), 0x0f); /* no XScale UUE bit */
    wr(f->u, IER, 0x00);

    /* No FIFO: IIR top bits clear (an 8250 would stop here). */
    assert_int_equal(rd(f->u, IIR) & 0xc0, 0);
    /* autoconfig: LCR=0xBF, EFR(=FCR)=0, LCR=0, FCR=ENABLE_FIFO, IIR>>6 == 3 */
    wr(f->u, LCR, 0xbf);
    wr(f->u, FCR, 0x00);
    wr(f->u, LCR, 0x00);
    wr(f->u, FCR, 0x01);
    assert_int_equal(rd(f->u, IIR) >> 6, 3);
    assert_int_equal(rd(f->u, IIR), 0xc1);
    /* With DLAB set, offset 2 still reads IIR, never 0 (no EFR: not an ST16C650). */
    wr(f->u, LCR, 0x80);
    assert_int_not_equal(rd(f->u, IIR), 0);
    wr(f->u, LCR, 0xbf);
    assert_int_not_equal(rd(f->u, IIR), 0);
    /* Not a 16750: the 64-byte FIFO bit never shows in IIR. */
    wr(f->u, LCR, 0x00);
    wr(f->u, FCR, 0x21);
    assert_int_equal(rd(f->u, IIR) >> 5, 6);
    wr(f->u, LCR, 0x80);
    wr(f->u, FCR, 0x21);
    assert_int_equal(rd(f->u, IIR) >> 5, 6);
    wr(f->u, LCR, 0x00);
    /* FIFO disabled again. */
    wr(f->u, FCR, 0x00);
    assert_int_equal(rd(f->u, IIR), 0x01);
    /* LSR is never 0xff (Linux treats that as no UART). */
    assert_int_not_equal(rd(f->u, LSR), 0xff);
}

static void test_fcr_clears_receive(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"abc", 3), 3);
    wr(f->u, FCR, 0x07); /* enable, clear both FIFOs */
    assert_int_equal(rd(f->u, LSR) & 0x01, 0);
    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"d", 1), 1);
    assert_int_equal(rd(f->u, RBR), 'd');
}

static void test_receive_buffer_full(void **state)
{
    struct fixture *f = *state;
    enum { N = UART_16550_RX_BUFFER + 100 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)(i * 7);

    assert_int_equal(uart_16550_receive(f->u, buf, N), UART_16550_RX_BUFFER);
    assert_int_equal(uart_16550_receive(f->u, buf, 1), 0);
    assert_int_equal(f->rx_space_calls, 0);

    /* Read down to half: rx_space comes exactly once, at half. */
    size_t i = 0;
    for (; i < UART_16550_RX_BUFFER / 2 - 1; i++)
        assert_int_equal(rd(f->u, RBR), buf[i]);
    assert_int_equal(f->rx_space_calls, 0);
    assert_int_equal(rd(f->u, RBR), buf[i++]);
    assert_int_equal(f->rx_space_calls, 1);
    assert_int_equal(rd(f->u, RBR), buf[i++]);
    assert_int_equal(f->rx_space_calls, 1);

    /* The caller resumes with what it kept; order is preserved. */
    size_t rest = N - UART_16550_RX_BUFFER;
    assert_int_equal(uart_16550_receive(f->u, buf + UART_16550_RX_BUFFER, rest), rest);
    for (; i < N; i++)
        assert_int_equal(rd(f->u, RBR), buf[i]);
    assert_int_equal(rd(f->u, LSR) & 0x01, 0);
    assert_int_equal(f->rx_space_calls, 1);

    /* A guest that clears its FIFO also frees the space. */
    assert_int_equal(uart_16550_receive(f->u, buf, N), UART_16550_RX_BUFFER);
    wr(f->u, FCR, 0x03);
    assert_int_equal(f->rx_space_calls, 2);
    /* A refusal-free fill never calls rx_space. */
    assert_int_equal(uart_16550_receive(f->u, buf, 10), 10);
    for (unsigned k = 0; k < 10; k++)
        rd(f->u, RBR);
    assert_int_equal(f->rx_space_calls, 2);
    free(buf);
}

/* Every offset (also past the eight registers) and every size, in every mode. */
static void test_all_accesses(void **state)
{
    struct fixture *f = *state;
    const uint8_t modes[][2] = { { 0x00, 0x00 }, { 0x80, 0x00 }, { 0x03, 0x1f }, { 0xbf, 0x08 } };
    const unsigned sizes[] = { 1, 2, 4, 8 };
    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"0123456789", 10), 10);
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        wr(f->u, LCR, modes[m][0]);
        wr(f->u, MCR, modes[m][1]);
        for (unsigned off = 0; off < 12; off++) {
            for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                uint8_t data[8];
                memset(data, 0x11, sizeof(data));
                uart_16550_bus_ops.read(f->u, off, data, sizes[s]);
                for (unsigned b = 1; b < sizes[s]; b++)
                    assert_int_equal(data[b], 0xff);
                for (unsigned b = sizes[s]; b < sizeof(data); b++)
                    assert_int_equal(data[b], 0x11);
                if (off >= 8)
                    assert_int_equal(data[0], 0xff);
                const uint8_t junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
                if (off != LCR && off != MCR)
                    uart_16550_bus_ops.write(f->u, off, junk, sizes[s]);
            }
        }
    }
    /* A wide write acts on the low byte only. */
    wr(f->u, LCR, 0x03);
    const uint8_t wide[4] = { 0x42, 0x99, 0x99, 0x99 };
    uart_16550_bus_ops.write(f->u, SCR, wide, 4);
    assert_int_equal(rd(f->u, SCR), 0x42);
    uint8_t d4[4];
    uart_16550_bus_ops.read(f->u, SCR, d4, 4);
    assert_int_equal(d4[0], 0x42);
    assert_int_equal(d4[3], 0xff);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, X86_COM1_PORT, 8, &uart_16550_bus_ops, f->u), 0);

    uint8_t v = 0x3c;
    assert_true(bus_write(&bus, X86_COM1_PORT + SCR, &v, 1));
    v = 0;
    assert_true(bus_read(&bus, X86_COM1_PORT + SCR, &v, 1));
    assert_int_equal(v, 0x3c);

    v = 'k';
    assert_true(bus_write(&bus, X86_COM1_PORT + THR, &v, 1));
    assert_int_equal(f->out.len, 1);
    assert_int_equal(f->out.buf[0], 'k');

    assert_int_equal(uart_16550_receive(f->u, (const uint8_t *)"m", 1), 1);
    assert_true(bus_read(&bus, X86_COM1_PORT + LSR, &v, 1));
    assert_int_equal(v & 0x61, 0x61);
    assert_true(bus_read(&bus, X86_COM1_PORT + RBR, &v, 1));
    assert_int_equal(v, 'm');
    /* A port past the UART belongs to nobody. */
    assert_false(bus_read(&bus, X86_COM1_PORT + 8, &v, 1));
    bus_destroy(&bus);
}

/* The event loop feeding input while a vCPU drains it: nothing lost, nothing
 * reordered, and the refused/rx_space hand-off never loses a wake-up. */
struct stress {
    struct uart_16550 *u;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool space;
    size_t total;
    size_t mismatches;
};

static void stress_space(void *ctx)
{
    struct stress *s = ctx;
    pthread_mutex_lock(&s->lock);
    s->space = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *stress_producer(void *arg)
{
    struct stress *s = arg;
    uint8_t chunk[1000];
    size_t sent = 0;
    while (sent < s->total) {
        size_t n = s->total - sent < sizeof(chunk) ? s->total - sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (uint8_t)((sent + i) % 251);
        size_t off = 0;
        while (off < n) {
            pthread_mutex_lock(&s->lock);
            s->space = false;
            pthread_mutex_unlock(&s->lock);
            size_t got = uart_16550_receive(s->u, chunk + off, n - off);
            off += got;
            if (off < n) {
                pthread_mutex_lock(&s->lock);
                while (!s->space)
                    pthread_cond_wait(&s->cond, &s->lock);
                pthread_mutex_unlock(&s->lock);
            }
        }
        sent += n;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct stress s = { .total = 200000 };
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    s.u = uart_16550_new(NULL, NULL, stress_space, &s);
    assert_non_null(s.u);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stress_producer, &s), 0);
    size_t got = 0;
    while (got < s.total) {
        if (!(rd(s.u, LSR) & 0x01)) {
            sched_yield();
            continue;
        }
        if (rd(s.u, RBR) != (uint8_t)(got % 251))
            s.mismatches++;
        got++;
    }
    pthread_join(t, NULL);
    assert_int_equal(s.mismatches, 0);
    assert_int_equal(rd(s.u, LSR) & 0x01, 0);
    uart_16550_free(s.u);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scratch_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thr_reaches_output, setup, teardown),
        cmocka_unit_test(test_no_output_discards),
        cmocka_unit_test_setup_teardown(test_receive_and_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out2_gates_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transmit_back_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iir_priorities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msr_default_and_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_16550a_identification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcr_clears_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_buffer_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
