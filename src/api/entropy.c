/* The virtio entropy device. */
#include "api/validate.h"

#include <stdlib.h>

vmk_entropy_device *vmk_virtio_entropy_device_new(void)
{
    vmk_entropy_device *dev = calloc(1, sizeof(*dev));
    if (dev) {
        dev->kind = VMK_ENTROPY_DEVICE_VIRTIO;
        dev->rate = VMK_RNG_DEFAULT_RATE;
    }
    return dev;
}

void vmk_entropy_device_free(vmk_entropy_device *dev)
{
    free(dev);
}

vmk_entropy_device *entropy_device_copy(const vmk_entropy_device *dev)
{
    vmk_entropy_device *c = malloc(sizeof(*c));
    if (c)
        *c = *dev;
    return c;
}

vmk_entropy_device_kind vmk_entropy_device_get_kind(const vmk_entropy_device *dev)
{
    return dev ? dev->kind : VMK_ENTROPY_DEVICE_VIRTIO;
}

vmk_result vmk_virtio_entropy_device_set_rate(vmk_entropy_device *dev, uint64_t bytes_per_second)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->rate = bytes_per_second;
    return VMK_OK;
}

uint64_t vmk_virtio_entropy_device_get_rate(const vmk_entropy_device *dev)
{
    return dev ? dev->rate : 0;
}

uint64_t vmk_virtio_entropy_device_max_rate(void)
{
    return VMK_RNG_MAX_RATE;
}

void entropy_device_validate(const vmk_entropy_device *dev, const char *what, struct problems *p)
{
    if (dev->kind != VMK_ENTROPY_DEVICE_VIRTIO)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
    if (dev->rate < 1 || dev->rate > VMK_RNG_MAX_RATE)
        problem(p, "%s: rate %llu bytes/s is out of range [1, %llu]", what,
                (unsigned long long)dev->rate, (unsigned long long)VMK_RNG_MAX_RATE);
}
