/* A VM's displays and input at run time (vm_display.h) and the public calls on them. */
#include "api/vm_display.h"
#include "core/png.h"
#include "core/error.h"

#include <errno.h>
#include <linux/input-event-codes.h>
#include <stdlib.h>
#include <string.h>

static void on_mode(void *ctx, unsigned scanout, uint32_t w, uint32_t h)
{
    struct vm_displays *s = ctx;
    if (scanout >= s->count)
        return;
    pthread_mutex_lock(&s->lock);
    s->d[scanout].width = w;
    s->d[scanout].height = h;
    s->d[scanout].mode_pending = true;
    pthread_mutex_unlock(&s->lock);
    s->wake(s->wake_ctx);
}

static void on_flush(void *ctx, unsigned scanout, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    struct vm_displays *s = ctx;
    if (scanout >= s->count || w == 0 || h == 0)
        return;
    pthread_mutex_lock(&s->lock);
    struct display_state *d = &s->d[scanout];
    bool was = d->dirty;
    if (!was || x < d->x0)
        d->x0 = x;
    if (!was || y < d->y0)
        d->y0 = y;
    if (!was || x + w > d->x1)
        d->x1 = x + w;
    if (!was || y + h > d->y1)
        d->y1 = y + h;
    d->dirty = true;
    pthread_mutex_unlock(&s->lock);
    if (!was)
        s->wake(s->wake_ctx); /* already pending: the VM thread will see the union */
}

void vm_displays_init(struct vm_displays *s, unsigned count, void (*wake)(void *ctx),
                      void *wake_ctx)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->count = count < VIRTIO_GPU_MAX_SCANOUTS_ ? count : VIRTIO_GPU_MAX_SCANOUTS_;
    s->wake = wake;
    s->wake_ctx = wake_ctx;
    s->sink = (struct gpu_display_sink){ .mode_changed = on_mode, .flushed = on_flush, .ctx = s };
}

void vm_displays_fini(struct vm_displays *s)
{
    for (unsigned i = 0; i < s->count; i++)
        free(s->d[i].last);
    pthread_mutex_destroy(&s->lock);
}

void vm_displays_started(struct vm_displays *s)
{
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < s->count; i++) {
        free(s->d[i].last);
        s->d[i] = (struct display_state){ 0 };
    }
    s->buttons = 0;
    pthread_mutex_unlock(&s->lock);
}

void vm_displays_keep_last(struct vm_displays *s, struct device_instance *gd)
{
    for (unsigned i = 0; gd && i < s->count; i++) {
        uint32_t w = 0, h = 0;
        uint8_t *img = NULL;
        if (gd->kind->display_read(gd, i, NULL, 0, &w, &h) == -ENOSPC &&
            (img = malloc(4ull * w * h)) &&
            gd->kind->display_read(gd, i, img, 4ull * w * h, &w, &h) != 0) {
            free(img);
            img = NULL;
        }
        pthread_mutex_lock(&s->lock);
        free(s->d[i].last);
        s->d[i].last = img;
        s->d[i].last_w = w;
        s->d[i].last_h = h;
        pthread_mutex_unlock(&s->lock);
    }
}

void vm_displays_deliver(struct vm_displays *s, vmk_vm *vm)
{
    for (unsigned i = 0; i < s->count; i++) {
        pthread_mutex_lock(&s->lock);
        struct display_state d = s->d[i];
        s->d[i].mode_pending = s->d[i].dirty = false;
        vmk_display_delegate del = s->delegate;
        void *user = s->user;
        pthread_mutex_unlock(&s->lock);
        if (d.mode_pending && del.mode_changed)
            del.mode_changed(vm, i, d.width, d.height, user);
        if (d.dirty && del.updated)
            del.updated(vm, i, d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0, user);
    }
}

/* ---- the public calls ---- */

static vmk_result no_display(vmk_vm *vm, unsigned display, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    unsigned n = vmk_vm_display_count(vm);
    if (n == 0)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "display: the configuration has no graphics device");
    if (display >= n)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "display %u: the graphics device has %u scanout%s", display, n,
                        n == 1 ? "" : "s");
    return VMK_OK;
}

vmk_result vmk_vm_set_display_delegate(vmk_vm *vm, const vmk_display_delegate *d, void *user)
{
    if (!vm || (d && d->size < sizeof(size_t)))
        return VMK_ERR_INVALID_ARGUMENT;
    struct vm_displays *s = vm_displays_of(vm);
    vmk_display_delegate copy = { 0 };
    if (d)
        memcpy(&copy, d, d->size < sizeof(copy) ? d->size : sizeof(copy));
    pthread_mutex_lock(&s->lock);
    s->delegate = copy;
    s->user = user;
    pthread_mutex_unlock(&s->lock);
    return VMK_OK;
}

unsigned vmk_vm_display_count(const vmk_vm *vm)
{
    if (!vm)
        return 0;
    const vmk_config *cfg = vm_config_of(vm);
    return vmk_config_graphics_device_count(cfg)
               ? vmk_graphics_device_scanout_count(vmk_config_get_graphics_device(cfg, 0))
               : 0;
}

vmk_result vmk_vm_get_display_size(vmk_vm *vm, unsigned display, uint32_t *width, uint32_t *height,
                                   vmk_error **err)
{
    vmk_result r = no_display(vm, display, err);
    if (r != VMK_OK)
        return r;
    struct vm_displays *s = vm_displays_of(vm);
    pthread_mutex_lock(&s->lock);
    if (width)
        *width = s->d[display].width;
    if (height)
        *height = s->d[display].height;
    pthread_mutex_unlock(&s->lock);
    return VMK_OK;
}

struct size_arg {
    unsigned display;
    uint32_t w, h;
    void *buf;
    size_t len;
};

static int reconfigure(struct device_instance *inst, void *arg)
{
    struct size_arg *a = arg;
    return inst->kind->display_reconfigure(inst, a->display, a->w, a->h);
}

vmk_result vmk_vm_reconfigure_display(vmk_vm *vm, unsigned display, uint32_t width, uint32_t height,
                                      vmk_error **err)
{
    vmk_result r = no_display(vm, display, err);
    if (r != VMK_OK)
        return r;
    uint32_t max = vmk_graphics_device_max_scanout_dimension();
    if (width < 1 || height < 1 || width > max || height > max)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "display %u: %u x %u pixels; each side must be 1..%u", display, width,
                        height, max);
    struct size_arg a = { .display = display, .w = width, .h = height };
    int e = 0;
    r = vm_with_device(vm, &device_kind_virtio_graphics, 0, "reconfigure a display", reconfigure,
                       &a, &e, err);
    if (r == VMK_OK && e < 0)
        r = vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, -e, "display %u: %s", display, strerror(-e));
    return r;
}

static int read_image(struct device_instance *inst, void *arg)
{
    struct size_arg *a = arg;
    return inst->kind->display_read(inst, a->display, a->buf, a->len, &a->w, &a->h);
}

/* Copies display's image (running: from the device; else the image kept at the end): 0,
 * -ENODATA (nothing shown), -ENOSPC (buf too small; *w, *h say the size) or -errno. */
static int copy_image(vmk_vm *vm, unsigned display, void *buf, size_t len, uint32_t *w, uint32_t *h)
{
    struct size_arg a = { .display = display, .buf = buf, .len = buf ? len : 0 };
    int e = 0;
    if (vm_with_device(vm, &device_kind_virtio_graphics, 0, "read a display", read_image, &a, &e,
                       NULL) != VMK_OK) {
        struct vm_displays *s = vm_displays_of(vm);
        pthread_mutex_lock(&s->lock);
        struct display_state *d = &s->d[display];
        a.w = d->last_w;
        a.h = d->last_h;
        e = !d->last ? -ENODATA : !buf || len < 4ull * a.w * a.h ? -ENOSPC : 0;
        if (!e)
            memcpy(buf, d->last, 4ull * a.w * a.h);
        pthread_mutex_unlock(&s->lock);
    }
    *w = a.w;
    *h = a.h;
    return e;
}

static vmk_result image_error(unsigned display, int e, uint32_t w, uint32_t h, size_t len,
                              vmk_error **err)
{
    if (e == -ENODATA)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "display %u: the guest has shown nothing there yet", display);
    if (e == -ENOSPC)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, ENOSPC,
                        "display %u: %u x %u pixels need %llu bytes, the buffer has %zu", display,
                        w, h, 4ull * w * h, len);
    return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, -e, "display %u: %s", display, strerror(-e));
}

vmk_result vmk_vm_copy_display_image(vmk_vm *vm, unsigned display, void *buf, size_t len,
                                     uint32_t *width, uint32_t *height, vmk_error **err)
{
    vmk_result r = no_display(vm, display, err);
    if (r != VMK_OK)
        return r;
    uint32_t w, h;
    int e = copy_image(vm, display, buf, len, &w, &h);
    if (width)
        *width = w;
    if (height)
        *height = h;
    return e ? image_error(display, e, w, h, len, err) : VMK_OK;
}

vmk_result vmk_vm_screenshot(vmk_vm *vm, unsigned display, const char *path, vmk_error **err)
{
    vmk_result r = no_display(vm, display, err);
    if (r != VMK_OK)
        return r;
    if (!path || !*path)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "screenshot: path is NULL or empty");
    uint32_t w = 0, h = 0;
    uint8_t *img = NULL;
    int e;
    /* The size first; the guest may change mode in between: then ask again. */
    for (int tries = 0;
         (e = copy_image(vm, display, img, img ? 4ull * w * h : 0, &w, &h)) == -ENOSPC && tries < 3;
         tries++) {
        free(img);
        if (!(img = malloc(4ull * w * h)))
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "screenshot: out of memory");
    }
    if (e == 0) {
        e = png_write_rgba(path, img, w, h);
        r = e < 0 ? vmk_fail(err, VMK_ERR_IO, -e, "screenshot: cannot write %s: %s", path,
                             strerror(-e))
                  : VMK_OK;
    } else {
        r = image_error(display, e, w, h, 0, err);
    }
    free(img);
    return r;
}

struct input_arg {
    const struct virtio_input_event *ev;
    unsigned n;
};

static int send_input(struct device_instance *inst, void *arg)
{
    struct input_arg *a = arg;
    return inst->kind->input_send(inst, a->ev, a->n);
}

static vmk_result send(vmk_vm *vm, const struct device_kind *kind, const char *what,
                       const struct virtio_input_event *ev, unsigned n, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    if (kind->count(vm_config_of(vm)) == 0)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "input: the configuration has no %s", what);
    struct input_arg a = { ev, n };
    int e = 0;
    vmk_result r = vm_with_device(vm, kind, 0, "send input", send_input, &a, &e, err);
    if (r == VMK_OK && e < 0)
        r = vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, -e, "input: the %s takes no such event", what);
    return r;
}

vmk_result vmk_vm_send_key(vmk_vm *vm, uint16_t code, bool pressed, vmk_error **err)
{
    /* The first keyboard takes the keys, whatever its kind: the virtio row counts only the
     * virtio ones, so its index 0 is the first keyboard when that one is virtio. */
    if (vm &&
        vmk_keyboard_get_kind(vmk_config_get_keyboard(vm_config_of(vm), 0)) == VMK_KEYBOARD_USB)
        return vm_usb_send_key(vm, code, pressed, err);
    struct virtio_input_event ev = { EV_KEY, code, pressed ? 1 : 0 };
    return send(vm, &device_kind_virtio_keyboard, "keyboard", &ev, 1, err);
}

vmk_result vmk_vm_send_pointer(vmk_vm *vm, unsigned display, uint32_t x, uint32_t y,
                               unsigned buttons, vmk_error **err)
{
    vmk_result r = no_display(vm, display, err);
    if (r != VMK_OK)
        return r;
    struct vm_displays *s = vm_displays_of(vm);
    pthread_mutex_lock(&s->lock);
    uint32_t w = s->d[display].width, h = s->d[display].height;
    unsigned old = s->buttons;
    s->buttons = buttons;
    pthread_mutex_unlock(&s->lock);
    if (w == 0 || h == 0) { /* no mode yet: the scanout's configured size */
        vmk_graphics_device_get_scanout(vmk_config_get_graphics_device(vm_config_of(vm), 0),
                                        display, &w, &h);
    }
    /* Pixel centres onto 0..ABS_MAX: the last pixel reaches the edge. */
    uint64_t ax = w > 1 ? (uint64_t)(x < w ? x : w - 1) * VIRTIO_INPUT_ABS_MAX / (w - 1) : 0;
    uint64_t ay = h > 1 ? (uint64_t)(y < h ? y : h - 1) * VIRTIO_INPUT_ABS_MAX / (h - 1) : 0;
    struct virtio_input_event ev[5] = { { EV_ABS, ABS_X, (int32_t)ax },
                                        { EV_ABS, ABS_Y, (int32_t)ay } };
    unsigned n = 2;
    static const uint16_t codes[3] = { BTN_LEFT, BTN_RIGHT, BTN_MIDDLE };
    for (unsigned b = 0; b < 3; b++)
        if (((old ^ buttons) >> b) & 1)
            ev[n++] =
                (struct virtio_input_event){ EV_KEY, codes[b], (int32_t)((buttons >> b) & 1) };
    return send(vm, &device_kind_virtio_pointing, "pointing device", ev, n, err);
}

vmk_result vmk_vm_send_scroll(vmk_vm *vm, int32_t steps, vmk_error **err)
{
    struct virtio_input_event ev = { EV_REL, REL_WHEEL, steps };
    return send(vm, &device_kind_virtio_pointing, "pointing device", &ev, 1, err);
}
