/* The virtio traditional memory balloon device. */
#include "api/validate.h"

#include <stdlib.h>

vmk_memory_balloon_device *vmk_virtio_traditional_memory_balloon_device_new(void)
{
    vmk_memory_balloon_device *dev = calloc(1, sizeof(*dev));
    if (dev)
        dev->kind = VMK_MEMORY_BALLOON_DEVICE_VIRTIO_TRADITIONAL;
    return dev;
}

void vmk_memory_balloon_device_free(vmk_memory_balloon_device *dev)
{
    free(dev);
}

vmk_memory_balloon_device *memory_balloon_device_copy(const vmk_memory_balloon_device *dev)
{
    vmk_memory_balloon_device *c = malloc(sizeof(*c));
    if (c)
        *c = *dev;
    return c;
}

vmk_memory_balloon_device_kind
vmk_memory_balloon_device_get_kind(const vmk_memory_balloon_device *dev)
{
    return dev ? dev->kind : VMK_MEMORY_BALLOON_DEVICE_VIRTIO_TRADITIONAL;
}

vmk_result
vmk_virtio_traditional_memory_balloon_device_set_deflate_on_oom(vmk_memory_balloon_device *dev,
                                                                bool enabled)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->deflate_on_oom = enabled;
    return VMK_OK;
}

bool vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(
    const vmk_memory_balloon_device *dev)
{
    return dev && dev->deflate_on_oom;
}

vmk_result
vmk_virtio_traditional_memory_balloon_device_set_free_page_reporting(vmk_memory_balloon_device *dev,
                                                                     bool enabled)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->free_page_reporting = enabled;
    return VMK_OK;
}

bool vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(
    const vmk_memory_balloon_device *dev)
{
    return dev && dev->free_page_reporting;
}

void memory_balloon_device_validate(const vmk_memory_balloon_device *dev, const char *what,
                                    struct problems *p)
{
    if (dev->kind != VMK_MEMORY_BALLOON_DEVICE_VIRTIO_TRADITIONAL)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
}
