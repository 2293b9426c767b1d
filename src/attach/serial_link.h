/* Joins a serial attachment (file, fd pair, terminal) to a UART: guest output is
 * written to the attachment; host input is read on the VM's event loop and fed to
 * the UART as fast as it accepts it. On a terminal, input is raw and Ctrl-A x asks
 * the machine to stop (Ctrl-A Ctrl-A sends one Ctrl-A). */
#ifndef VMK_ATTACH_SERIAL_LINK_H
#define VMK_ATTACH_SERIAL_LINK_H

#include "api/config_internal.h"
#include "core/event_loop.h"

#include <stddef.h>
#include <stdint.h>

struct serial_link;

struct serial_link_sink {
    /* Feeds guest-bound bytes; returns how many were taken. */
    size_t (*receive)(void *ctx, const uint8_t *buf, size_t len);
    void *ctx;
};

/* Opens the attachment's host side. escape(escape_ctx) runs on the event loop when
 * the user types the escape sequence. */
vmk_result serial_link_open(const vmk_serial_attachment *att, unsigned port, struct event_loop *el,
                            void (*escape)(void *ctx), void *escape_ctx, struct serial_link **out,
                            vmk_error **err);
/* Guest → host: the UART's output callback (any thread). */
void serial_link_write(void *link, const uint8_t *buf, size_t len);
/* The UART drained its buffer: resume input (any thread). */
void serial_link_rx_space(void *link);
/* Starts delivering input to sink. Call once the sink exists. */
vmk_result serial_link_connect(struct serial_link *l, const struct serial_link_sink *sink,
                               vmk_error **err);
/* Stops input, restores a terminal, closes what it opened. Event-loop thread only. */
void serial_link_close(struct serial_link *l);

#endif
