/* Graphics and input: the virtio-gpu device's configuration with its scanouts, the keyboard
 * and the screen-coordinate pointing device. Inert data; validation judges sizes and counts
 * (the counts per machine are validate.c's). */
#include "api/validate.h"

#include <stdlib.h>
#include <string.h>

/* ---- The graphics device ---- */

vmk_graphics_device *vmk_virtio_graphics_device_new(void)
{
    vmk_graphics_device *dev = calloc(1, sizeof(*dev));
    if (dev)
        dev->kind = GRAPHICS_DEVICE_VIRTIO;
    return dev;
}

void vmk_graphics_device_free(vmk_graphics_device *dev)
{
    if (!dev)
        return;
    free(dev->scanout);
    free(dev);
}

vmk_graphics_device *graphics_device_copy(const vmk_graphics_device *dev)
{
    vmk_graphics_device *c = vmk_virtio_graphics_device_new();
    if (!c)
        return NULL;
    c->kind = dev->kind;
    if (dev->scanout_count) {
        c->scanout = malloc(dev->scanout_count * sizeof(*c->scanout));
        if (!c->scanout) {
            vmk_graphics_device_free(c);
            return NULL;
        }
        memcpy(c->scanout, dev->scanout, dev->scanout_count * sizeof(*c->scanout));
        c->scanout_count = dev->scanout_count;
    }
    return c;
}

vmk_result vmk_virtio_graphics_device_add_scanout(vmk_graphics_device *dev, uint32_t width,
                                                  uint32_t height)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    struct gpu_scanout *s = realloc(dev->scanout, (dev->scanout_count + 1) * sizeof(*s));
    if (!s)
        return VMK_ERR_NO_MEMORY;
    s[dev->scanout_count++] = (struct gpu_scanout){ .width = width, .height = height };
    dev->scanout = s;
    return VMK_OK;
}

unsigned vmk_graphics_device_scanout_count(const vmk_graphics_device *dev)
{
    return dev ? dev->scanout_count : 0;
}

vmk_result vmk_graphics_device_get_scanout(const vmk_graphics_device *dev, unsigned index,
                                           uint32_t *width, uint32_t *height)
{
    if (!dev || index >= dev->scanout_count)
        return VMK_ERR_INVALID_ARGUMENT;
    if (width)
        *width = dev->scanout[index].width;
    if (height)
        *height = dev->scanout[index].height;
    return VMK_OK;
}

unsigned vmk_graphics_device_max_scanout_count(void)
{
    return VMK_GPU_MAX_SCANOUTS;
}

uint32_t vmk_graphics_device_max_scanout_dimension(void)
{
    return VMK_GPU_MAX_DIMENSION;
}

void graphics_device_validate(const vmk_graphics_device *dev, const char *what, struct problems *p)
{
    if (dev->scanout_count == 0)
        problem(p, "%s: no scanouts (vmk_virtio_graphics_device_add_scanout adds one)", what);
    else if (dev->scanout_count > VMK_GPU_MAX_SCANOUTS)
        problem(p, "%s: %u scanouts, at most %u allowed", what, dev->scanout_count,
                VMK_GPU_MAX_SCANOUTS);
    for (unsigned i = 0; i < dev->scanout_count; i++) {
        const struct gpu_scanout *s = &dev->scanout[i];
        if (s->width < 1 || s->width > VMK_GPU_MAX_DIMENSION || s->height < 1 ||
            s->height > VMK_GPU_MAX_DIMENSION)
            problem(p, "%s: scanout %u is %u x %u pixels; each side must be 1..%u", what, i + 1,
                    s->width, s->height, VMK_GPU_MAX_DIMENSION);
    }
}

/* ---- The keyboard ---- */

static vmk_keyboard *keyboard_new(vmk_keyboard_kind kind)
{
    vmk_keyboard *kbd = calloc(1, sizeof(*kbd));
    if (kbd)
        kbd->kind = kind;
    return kbd;
}

vmk_keyboard *vmk_virtio_keyboard_new(void)
{
    return keyboard_new(VMK_KEYBOARD_VIRTIO);
}

vmk_keyboard *vmk_usb_keyboard_new(void)
{
    return keyboard_new(VMK_KEYBOARD_USB);
}

vmk_keyboard_kind vmk_keyboard_get_kind(const vmk_keyboard *kbd)
{
    return kbd ? kbd->kind : VMK_KEYBOARD_VIRTIO;
}

void vmk_keyboard_free(vmk_keyboard *kbd)
{
    free(kbd);
}

vmk_keyboard *keyboard_copy(const vmk_keyboard *kbd)
{
    vmk_keyboard *c = vmk_virtio_keyboard_new();
    if (c)
        *c = *kbd;
    return c;
}

/* ---- The pointing device ---- */

vmk_pointing_device *vmk_virtio_screen_coordinate_pointing_device_new(void)
{
    vmk_pointing_device *dev = calloc(1, sizeof(*dev));
    if (dev)
        dev->kind = POINTING_DEVICE_VIRTIO_SCREEN_COORDINATE;
    return dev;
}

void vmk_pointing_device_free(vmk_pointing_device *dev)
{
    free(dev);
}

vmk_pointing_device *pointing_device_copy(const vmk_pointing_device *dev)
{
    vmk_pointing_device *c = vmk_virtio_screen_coordinate_pointing_device_new();
    if (c)
        *c = *dev;
    return c;
}
