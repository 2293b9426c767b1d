/* The virtio socket device. */
#include "api/validate.h"

#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define SUN_PATH_MAX    sizeof(((struct sockaddr_un *)0)->sun_path)
/* "_4294967294", what Firecracker's convention appends to the path for a port. */
#define PORT_SUFFIX_MAX 11

vmk_socket_device *vmk_virtio_socket_device_new(void)
{
    vmk_socket_device *dev = calloc(1, sizeof(*dev));
    if (dev) {
        dev->kind = VMK_SOCKET_DEVICE_VIRTIO;
        dev->guest_cid = VMK_VSOCK_MIN_CID;
    }
    return dev;
}

void vmk_socket_device_free(vmk_socket_device *dev)
{
    if (!dev)
        return;
    for (unsigned i = 0; i < dev->port_count; i++)
        free(dev->port[i].path);
    free(dev->port);
    free(dev->uds_path);
    free(dev);
}

vmk_socket_device *socket_device_copy(const vmk_socket_device *dev)
{
    vmk_socket_device *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = dev->kind;
    c->guest_cid = dev->guest_cid;
    if (config_set_string(&c->uds_path, dev->uds_path) != VMK_OK)
        goto fail;
    for (unsigned i = 0; i < dev->port_count; i++)
        if (vmk_virtio_socket_device_add_port(c, dev->port[i].port, dev->port[i].path,
                                              dev->port[i].listen) != VMK_OK)
            goto fail;
    return c;
fail:
    vmk_socket_device_free(c);
    return NULL;
}

vmk_socket_device_kind vmk_socket_device_get_kind(const vmk_socket_device *dev)
{
    return dev ? dev->kind : VMK_SOCKET_DEVICE_VIRTIO;
}

vmk_result vmk_virtio_socket_device_set_guest_cid(vmk_socket_device *dev, uint32_t cid)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->guest_cid = cid;
    return VMK_OK;
}

uint32_t vmk_virtio_socket_device_get_guest_cid(const vmk_socket_device *dev)
{
    return dev ? dev->guest_cid : 0;
}

vmk_result vmk_virtio_socket_device_set_unix_socket_path(vmk_socket_device *dev, const char *path)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    return config_set_string(&dev->uds_path, path);
}

const char *vmk_virtio_socket_device_get_unix_socket_path(const vmk_socket_device *dev)
{
    return dev ? dev->uds_path : NULL;
}

vmk_result vmk_virtio_socket_device_add_port(vmk_socket_device *dev, uint32_t port,
                                             const char *path, bool listen)
{
    if (!dev || !path)
        return VMK_ERR_INVALID_ARGUMENT;
    struct socket_port *a = realloc(dev->port, (dev->port_count + 1) * sizeof(*a));
    if (!a)
        return VMK_ERR_NO_MEMORY;
    dev->port = a;
    char *copy = strdup(path);
    if (!copy)
        return VMK_ERR_NO_MEMORY;
    a[dev->port_count++] = (struct socket_port){ .port = port, .path = copy, .listen = listen };
    return VMK_OK;
}

unsigned vmk_virtio_socket_device_port_count(const vmk_socket_device *dev)
{
    return dev ? dev->port_count : 0;
}

vmk_result vmk_virtio_socket_device_get_port(const vmk_socket_device *dev, unsigned index,
                                             uint32_t *port, const char **path, bool *listen)
{
    if (!dev || index >= dev->port_count)
        return VMK_ERR_INVALID_ARGUMENT;
    if (port)
        *port = dev->port[index].port;
    if (path)
        *path = dev->port[index].path;
    if (listen)
        *listen = dev->port[index].listen;
    return VMK_OK;
}

void socket_device_validate(const vmk_socket_device *dev, const char *what, struct problems *p)
{
    if (dev->kind != VMK_SOCKET_DEVICE_VIRTIO)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
    if (dev->guest_cid < VMK_VSOCK_MIN_CID || dev->guest_cid > VMK_VSOCK_MAX_CID)
        problem(p,
                "%s: guest CID %u is out of range [%u, %u] (0-2 are the hypervisor's and the "
                "host's)",
                what, dev->guest_cid, VMK_VSOCK_MIN_CID, VMK_VSOCK_MAX_CID);
    if (dev->uds_path &&
        (!*dev->uds_path || strlen(dev->uds_path) + PORT_SUFFIX_MAX >= SUN_PATH_MAX))
        problem(p,
                "%s: unix socket path '%s' is empty or longer than %zu bytes (with a port's "
                "_N it must fit a socket address)",
                what, dev->uds_path, SUN_PATH_MAX - 1 - PORT_SUFFIX_MAX);
    for (unsigned i = 0; i < dev->port_count; i++) {
        const struct socket_port *a = &dev->port[i];
        if (a->port == 0 || a->port > VMK_VSOCK_MAX_PORT)
            problem(p, "%s: port %u is out of range [1, %u]", what, a->port, VMK_VSOCK_MAX_PORT);
        if (!*a->path || strlen(a->path) >= SUN_PATH_MAX)
            problem(p, "%s: port %u: socket path '%s' is empty or longer than %zu bytes", what,
                    a->port, a->path, SUN_PATH_MAX - 1);
        for (unsigned j = 0; j < i; j++) {
            const struct socket_port *b = &dev->port[j];
            if (a->listen == b->listen && a->port == b->port) {
                problem(p, "%s: port %u is mapped twice (%s)", what, a->port,
                        a->listen ? "listen" : "connect");
                break;
            }
            if (a->listen && b->listen && !strcmp(a->path, b->path)) {
                problem(p, "%s: port %u: socket path %s is already used by port %u", what, a->port,
                        a->path, b->port);
                break;
            }
        }
        if (a->listen && dev->uds_path && !strcmp(a->path, dev->uds_path))
            problem(p, "%s: port %u: socket path %s is already the device's unix socket path", what,
                    a->port, a->path);
    }
}
