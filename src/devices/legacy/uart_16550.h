/* A 16550A UART as the PC's COM ports have it: eight byte-wide registers on the
 * bus, one interrupt line gated by MCR.OUT2, transmit that completes at once while the
 * host takes bytes (and a transmitter that stays busy, THRE clear, while it does not), and
 * a large receive buffer so pasted text is not lost. Called from vCPU threads and
 * from the event-loop thread (uart_16550_receive, uart_16550_tx_space); it locks its own
 * state. */
#ifndef VMK_LEGACY_UART_16550_H
#define VMK_LEGACY_UART_16550_H

#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"

/* Bytes the receive side holds before uart_16550_receive refuses more. */
#define UART_16550_RX_BUFFER 4096

/* The attachment side, guest -> host. Called with the UART lock held: it must not block,
 * nor call back into the UART. Returns how many bytes it took; a byte it did not take stays
 * in the transmit holding register until uart_16550_tx_space. */
struct serial_output {
    size_t (*write)(void *ctx, const uint8_t *buf, size_t len);
    void *ctx;
};

struct uart_16550;

/* irq: the COM line (copied; NULL: no interrupt). out: where transmitted bytes go
 * (copied; NULL or write == NULL: discard). rx_space: called without the UART lock
 * held once the guest has read the receive buffer down to half after
 * uart_16550_receive refused bytes, so the event loop can resume reading input;
 * may be NULL. Returns NULL when out of memory. */
struct uart_16550 *uart_16550_new(const struct irq_line *irq, const struct serial_output *out,
                                  void (*rx_space)(void *ctx), void *rx_ctx);
void uart_16550_free(struct uart_16550 *u);

/* Register with len 8, dev = the uart. An access wider than a byte acts on the
 * register at its offset with the low byte; a read fills the other bytes with 0xff. */
extern const struct bus_device_ops uart_16550_bus_ops;

/* From the host: bytes typed by the user. Returns how many were accepted (at most
 * UART_16550_RX_BUFFER wait at once); the caller keeps the rest and waits for
 * rx_space. Raises the receive interrupt if enabled. */
size_t uart_16550_receive(struct uart_16550 *u, const uint8_t *buf, size_t len);

/* The host can take output again: the byte held in the transmit holding register goes, THRE
 * rises and, if enabled, the transmit interrupt with it. Any thread. */
void uart_16550_tx_space(struct uart_16550 *u);

#endif
