/* The virtio console device and its named ports. */
#include "api/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vmk_console_device *vmk_virtio_console_device_new(void)
{
    vmk_console_device *dev = calloc(1, sizeof(*dev));
    if (dev)
        dev->kind = VMK_CONSOLE_DEVICE_VIRTIO;
    return dev;
}

void vmk_console_device_free(vmk_console_device *dev)
{
    if (!dev)
        return;
    for (unsigned i = 0; i < dev->port_count; i++) {
        free(dev->port[i].name);
        vmk_serial_attachment_free(dev->port[i].att);
    }
    free(dev->port);
    free(dev);
}

vmk_console_device_kind vmk_console_device_get_kind(const vmk_console_device *dev)
{
    return dev ? dev->kind : VMK_CONSOLE_DEVICE_VIRTIO;
}

vmk_result vmk_virtio_console_device_add_port(vmk_console_device *dev, const char *name,
                                              bool is_console, vmk_serial_attachment *att)
{
    if (!dev || !att) {
        vmk_serial_attachment_free(att);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    struct console_port port = { .is_console = is_console, .att = att };
    struct console_port *ports = realloc(dev->port, (dev->port_count + 1) * sizeof(*ports));
    if (!ports || config_set_string(&port.name, name) != VMK_OK) {
        if (ports)
            dev->port = ports;
        vmk_serial_attachment_free(att);
        return VMK_ERR_NO_MEMORY;
    }
    dev->port = ports;
    dev->port[dev->port_count++] = port;
    return VMK_OK;
}

unsigned vmk_virtio_console_device_port_count(const vmk_console_device *dev)
{
    return dev ? dev->port_count : 0;
}

static const struct console_port *port_at(const vmk_console_device *dev, unsigned i)
{
    return dev && i < dev->port_count ? &dev->port[i] : NULL;
}

const char *vmk_virtio_console_device_get_port_name(const vmk_console_device *dev, unsigned index)
{
    const struct console_port *p = port_at(dev, index);
    return p ? p->name : NULL;
}

bool vmk_virtio_console_device_port_is_console(const vmk_console_device *dev, unsigned index)
{
    const struct console_port *p = port_at(dev, index);
    return p && p->is_console;
}

const vmk_serial_attachment *
vmk_virtio_console_device_get_port_attachment(const vmk_console_device *dev, unsigned index)
{
    const struct console_port *p = port_at(dev, index);
    return p ? p->att : NULL;
}

unsigned vmk_virtio_console_device_max_port_count(void)
{
    return VMK_MAX_CONSOLE_PORTS;
}

size_t vmk_virtio_console_port_max_name_length(void)
{
    return VMK_CONSOLE_NAME_MAX;
}

vmk_console_device *console_device_copy(const vmk_console_device *dev)
{
    vmk_console_device *c = vmk_virtio_console_device_new();
    if (!c)
        return NULL;
    c->kind = dev->kind;
    for (unsigned i = 0; i < dev->port_count; i++) {
        const struct console_port *p = &dev->port[i];
        vmk_serial_attachment *att = serial_attachment_copy(p->att);
        /* add_port owns att, also when it fails. */
        if (!att || vmk_virtio_console_device_add_port(c, p->name, p->is_console, att) != VMK_OK) {
            vmk_console_device_free(c);
            return NULL;
        }
    }
    return c;
}

/* Port names reach the guest's sysfs (and udev's /dev/virtio-ports/NAME): printable ASCII,
 * bounded, one of each. */
static void validate_name(const vmk_console_device *dev, unsigned i, const char *what,
                          struct problems *p)
{
    const char *name = dev->port[i].name;
    if (!name)
        return;
    size_t len = strlen(name);
    if (len == 0) {
        problem(p, "%s: empty name (leave the name NULL for none)", what);
        return;
    }
    if (len > VMK_CONSOLE_NAME_MAX)
        problem(p, "%s: name \"%.40s...\" is %zu bytes, at most %u allowed", what, name, len,
                VMK_CONSOLE_NAME_MAX);
    for (size_t k = 0; k < len && len <= VMK_CONSOLE_NAME_MAX; k++) {
        unsigned char c = (unsigned char)name[k];
        if (c < 0x20 || c > 0x7e) {
            problem(p, "%s: name byte %zu (0x%02x) is not printable ASCII", what, k, c);
            break;
        }
    }
    for (unsigned j = 0; j < i; j++)
        if (dev->port[j].name && !strcmp(dev->port[j].name, name)) {
            problem(p, "%s: name \"%.40s\" is already used by console port %u", what, name, j + 1);
            break;
        }
}

void console_device_validate(const vmk_console_device *dev, const char *what, struct problems *p)
{
    if (dev->kind != VMK_CONSOLE_DEVICE_VIRTIO)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
    if (dev->port_count == 0)
        problem(p, "%s: no ports (add one with vmk_virtio_console_device_add_port)", what);
    if (dev->port_count > VMK_MAX_CONSOLE_PORTS)
        problem(p, "%s: %u ports, at most %u allowed", what, dev->port_count,
                VMK_MAX_CONSOLE_PORTS);
    unsigned first_console = 0;
    for (unsigned i = 0; i < dev->port_count; i++) {
        char port[32];
        snprintf(port, sizeof(port), "console port %u", i + 1);
        if (dev->port[i].is_console) {
            if (first_console)
                problem(p, "%s: only one port can be the console (console port %u is)", port,
                        first_console);
            else
                first_console = i + 1;
        }
        validate_name(dev, i, port, p);
        serial_attachment_validate(dev->port[i].att, port, p);
    }
}
