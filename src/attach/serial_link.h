/* Joins a serial attachment (file, fd pair, terminal, pty, unix socket) to a UART or a
 * console port: guest output goes through a bounded queue (src/attach/output_queue.h) that the
 * VM's event loop writes out without blocking; host input is read on that loop and fed to the
 * device as fast as it accepts it. On a terminal given as an fd, input is raw and Ctrl-A x asks
 * the machine to stop (Ctrl-A Ctrl-A sends one Ctrl-A). A pty or a socket drops what its
 * reader does not take. A socket attachment listens at its path from open to close and serves
 * one client at a time. */
#ifndef VMK_ATTACH_SERIAL_LINK_H
#define VMK_ATTACH_SERIAL_LINK_H

#include "core/event_loop.h"
#include "vmkit.h"

#include <stddef.h>
#include <stdint.h>

struct serial_link;

struct serial_link_sink {
    /* Feeds guest-bound bytes; returns how many were taken. */
    size_t (*receive)(void *ctx, const uint8_t *buf, size_t len);
    /* Guest output serial_link_write refused may be offered again (event-loop thread). May be
     * NULL. */
    void (*tx_space)(void *ctx);
    void *ctx;
};

/* Opens the attachment's host side (a socket attachment's listening socket: an error
 * names the path when it is taken). what names the port in errors ("serial port 1",
 * "console port 2"). escape(escape_ctx) runs on the event loop when the user types the
 * escape sequence. */
vmk_result serial_link_open(const vmk_serial_attachment *att, const char *what,
                            struct event_loop *el, void (*escape)(void *ctx), void *escape_ctx,
                            struct serial_link **out, vmk_error **err);
/* Guest → host (any thread, never blocks): queues what the attachment's buffer takes and
 * returns how many bytes that was. A file or fd attachment refuses bytes while its buffer is
 * full (the device holds them until sink.tx_space); a pty or socket drops them; a reader that
 * went away, or no reader at all, takes (and drops) everything. */
size_t serial_link_write(void *link, const uint8_t *buf, size_t len);
/* The UART drained its buffer: resume input (any thread). */
void serial_link_rx_space(void *link);
/* Starts delivering input to sink. Call once the sink exists. */
vmk_result serial_link_connect(struct serial_link *l, const struct serial_link_sink *sink,
                               vmk_error **err);
/* A pty attachment's path ("/dev/pts/N"), made by serial_link_open; NULL for other
 * kinds. Valid until serial_link_close. */
const char *serial_link_pty_path(const struct serial_link *l);
/* Stops input, restores a terminal, closes what it opened (and removes a socket file
 * it made). Event-loop thread only. */
void serial_link_close(struct serial_link *l);

#endif
