/* virtio-console (virtio 1.2, 5.3): named ports with the multiport control protocol,
 * one of which may be the guest's console (hvc0). A port's host side is a byte
 * stream given as callbacks, so the same serial attachments that feed a UART feed
 * a port (src/attach/serial_link.h). */
#ifndef VMK_VIRTIO_CONSOLE_H
#define VMK_VIRTIO_CONSOLE_H

#include "virtio/virtio_device.h"

#include <stddef.h>
#include <stdint.h>

#define VIRTIO_CONSOLE_MAX_PORTS 16

struct virtio_console_port_config {
    const char *name; /* shown in /sys/class/virtio-ports/vportNpM/name; NULL: none */
    bool is_console;  /* becomes hvc0; at most one port */
    /* Guest output; NULL discards. Returns how many bytes the host took; what it did not take
     * stays in the guest's transmit buffer (the chain is held) until
     * virtio_console_tx_space. Must not call back into the device. */
    size_t (*write)(void *ctx, const uint8_t *buf, size_t len);
    /* The guest can take input again after virtio_console_receive took less than it
     * was given. Called without the device lock; may be NULL. */
    void (*rx_space)(void *ctx);
    void *ctx;
};

/* NULL when out of memory or the ports are invalid (none, too many, two consoles). */
struct virtio_device *virtio_console_new(const struct virtio_console_port_config *ports,
                                         unsigned nports);
/* Host input for a port: returns the bytes the guest's receive buffers took. Input
 * waits (returns 0) until the guest has the port open. */
size_t virtio_console_receive(struct virtio_device *d, unsigned port, const uint8_t *buf,
                              size_t len);
/* The host can take the port's output again: the held transmit buffers go on. Call from the
 * thread that drives the transport (it completes chains). */
void virtio_console_tx_space(struct virtio_device *d, unsigned port);
/* Whether the guest has the port open (a console port counts as open once added). */
bool virtio_console_port_open(struct virtio_device *d, unsigned port);

#endif
