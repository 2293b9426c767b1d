/* What a view of a VM's screen (the VNC server, the window) needs of the machine: its image,
 * and somewhere to send keys, pointer and resize requests. view_vm_backend gives a VM's
 * display 0 through the public API; tests give their own. Shared so both views are written
 * against the same small seam. */
#ifndef VMKIT_VIEW_H
#define VMKIT_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

struct view_backend {
    /* Copies the display as bytes R, G, B, 255 per pixel: 0 with *width and *height set;
     * -ENOSPC with them set when len is short of 4 * width * height; another -errno when there
     * is nothing to show. */
    int (*copy_image)(void *user, void *buf, size_t len, uint32_t *width, uint32_t *height);
    void (*key)(void *user, uint16_t code, bool pressed); /* a Linux evdev code */
    /* The pointer at pixel x, y with VMK_POINTER_BUTTON_* buttons down. */
    void (*pointer)(void *user, uint32_t x, uint32_t y, unsigned buttons);
    void (*scroll)(void *user, int32_t steps); /* > 0: up */
    /* The view asks for this size (NULL: the view cannot resize the guest). */
    void (*resize)(void *user, uint32_t width, uint32_t height);
    void *user;
};

/* vm's display 0 and its input devices. */
struct view_backend view_vm_backend(vmk_vm *vm);

/* A view's one-line message into msg (len bytes). */
void view_msg(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
