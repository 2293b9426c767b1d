#include "machine/console_ports.h"
#include "attach/serial_link.h"
#include "core/error.h"
#include "virtio/console.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* A port's input sink: which device and port its link feeds. */
struct port_sink {
    struct virtio_device *dev;
    unsigned port;
};

struct console_ports {
    unsigned count;
    struct serial_link *link[VIRTIO_CONSOLE_MAX_PORTS];
    struct port_sink sink[VIRTIO_CONSOLE_MAX_PORTS];
};

static size_t port_receive(void *ctx, const uint8_t *buf, size_t len)
{
    struct port_sink *s = ctx;
    return virtio_console_receive(s->dev, s->port, buf, len);
}

static void port_tx_space(void *ctx)
{
    struct port_sink *s = ctx;
    virtio_console_tx_space(s->dev, s->port);
}

vmk_result console_ports_open(const vmk_console_device *cd, struct event_loop *el,
                              void (*escape)(void *ctx), void *escape_ctx,
                              struct console_ports **out, struct virtio_device **dev,
                              vmk_error **err)
{
    *out = NULL;
    *dev = NULL;
    struct console_ports *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "console device: out of memory");
    struct virtio_console_port_config ports[VIRTIO_CONSOLE_MAX_PORTS];
    unsigned n = vmk_virtio_console_device_port_count(cd);
    for (unsigned i = 0; i < n && i < VIRTIO_CONSOLE_MAX_PORTS; i++) {
        char what[32];
        snprintf(what, sizeof(what), "console port %u", i + 1);
        vmk_result r = serial_link_open(vmk_virtio_console_device_get_port_attachment(cd, i), what,
                                        el, escape, escape_ctx, &cp->link[i], err);
        if (r != VMK_OK) {
            console_ports_close(cp);
            return r;
        }
        cp->count = i + 1;
        ports[i] = (struct virtio_console_port_config){
            .name = vmk_virtio_console_device_get_port_name(cd, i),
            .is_console = vmk_virtio_console_device_port_is_console(cd, i),
            .write = serial_link_write,
            .rx_space = serial_link_rx_space,
            .ctx = cp->link[i]
        };
    }
    struct virtio_device *d = virtio_console_new(ports, cp->count);
    if (!d) {
        console_ports_close(cp);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "console device: out of memory");
    }
    for (unsigned i = 0; i < cp->count; i++)
        cp->sink[i] = (struct port_sink){ .dev = d, .port = i };
    *out = cp;
    *dev = d;
    return VMK_OK;
}

vmk_result console_ports_connect(struct console_ports *cp, vmk_error **err)
{
    for (unsigned i = 0; i < cp->count; i++) {
        struct serial_link_sink sink = { .receive = port_receive,
                                         .tx_space = port_tx_space,
                                         .ctx = &cp->sink[i] };
        vmk_result r = serial_link_connect(cp->link[i], &sink, err);
        if (r != VMK_OK)
            return r;
    }
    return VMK_OK;
}

const char *console_ports_pty_path(const struct console_ports *cp, unsigned i)
{
    return cp && i < cp->count ? serial_link_pty_path(cp->link[i]) : NULL;
}

void console_ports_close(struct console_ports *cp)
{
    if (!cp)
        return;
    for (unsigned i = 0; i < cp->count; i++)
        serial_link_close(cp->link[i]);
    free(cp);
}
