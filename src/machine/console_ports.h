/* Joins a configured console device (vmk_console_device) to its host side: a serial
 * link per port (src/attach/serial_link.h) and the virtio-console device that carries
 * them: the console row of the device table, so a port behaves the same whatever transport
 * the device has (a virtio-pci function, or a vhost-user server). */
#ifndef VMK_MACHINE_CONSOLE_PORTS_H
#define VMK_MACHINE_CONSOLE_PORTS_H

#include "core/event_loop.h"
#include "virtio/virtio_device.h"
#include "vmkit.h"

struct console_ports;

/* Opens every port's attachment on el and creates the device (*dev, the caller's to
 * destroy, before console_ports_close). escape(escape_ctx) runs when the user types the
 * escape sequence on a terminal port. On failure nothing is left open. */
vmk_result console_ports_open(const vmk_console_device *cd, struct event_loop *el,
                              void (*escape)(void *ctx), void *escape_ctx,
                              struct console_ports **out, struct virtio_device **dev,
                              vmk_error **err);
/* Starts host input into the ports. Call once the device has its transport. */
vmk_result console_ports_connect(struct console_ports *cp, vmk_error **err);
/* Port i's pty path, or NULL when it has none (see serial_link_pty_path). */
const char *console_ports_pty_path(const struct console_ports *cp, unsigned i);
/* Closes the links. After the device is gone: its reset may still write to a port.
 * Event-loop thread only; NULL is fine. */
void console_ports_close(struct console_ports *cp);

#endif
