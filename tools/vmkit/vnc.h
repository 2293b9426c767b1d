/* The VNC view: display 0 of a VM served to VNC clients (and to web browsers through noVNC),
 * their keys and pointer passed back to the guest. The CLI's VZVirtualMachineView, built on
 * libvncserver and the public display and input calls of vmkit.h. */
#ifndef VMKIT_VNC_H
#define VMKIT_VNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

/* What the view needs of the machine. vnc_view_start gives a VM's (vmk_vm_* on display 0);
 * a test gives its own. All are called on the view's thread. */
struct vnc_backend {
    /* Copies the display as bytes R, G, B, 255 per pixel: 0 with *width and *height set;
     * -ENOSPC with them set when len is short of 4 * width * height; another -errno when there
     * is nothing to show. */
    int (*copy_image)(void *user, void *buf, size_t len, uint32_t *width, uint32_t *height);
    void (*key)(void *user, uint16_t code, bool pressed); /* a Linux evdev code */
    /* The pointer at pixel x, y with VMK_POINTER_BUTTON_* buttons down. */
    void (*pointer)(void *user, uint32_t x, uint32_t y, unsigned buttons);
    void (*scroll)(void *user, int32_t steps); /* > 0: up */
    /* A client asks for this size (NULL: clients cannot resize). */
    void (*resize)(void *user, uint32_t width, uint32_t height);
    void *user;
};

struct vnc_view;

/* Starts serving vm's display 0. address: as --vnc takes it (cli_parse_vnc_address: "" for
 * 127.0.0.1 and the first free port from 5900, "HOST:PORT", "unix:PATH"). password_file: its
 * first line is the password (VNC authentication reads at most 8 characters of it); NULL for
 * none. web: serve noVNC's pages too (Debian's novnc package, /usr/share/novnc) on an HTTP
 * port of their own; the VNC port takes WebSocket connections either way. Prints nothing:
 * returns NULL with one line in msg. Call it once the VM runs. */
struct vnc_view *vnc_view_start(vmk_vm *vm, const char *address, const char *password_file,
                                bool web, char *msg, size_t len);
/* The same over any backend (the tests'). */
struct vnc_view *vnc_view_start_backend(const struct vnc_backend *b, const char *address,
                                        const char *password_file, bool web, char *msg, size_t len);
/* Where clients connect: "127.0.0.1:5900", "[::1]:5900", "unix:/run/x.sock". */
const char *vnc_view_address(const struct vnc_view *v);
/* The TCP port (0 for a unix socket). */
unsigned vnc_view_port(const struct vnc_view *v);
/* The page a browser opens ("http://127.0.0.1:5800/vnc.html?host=...&port=..."), or NULL
 * without web or without noVNC's files. */
const char *vnc_view_web_url(const struct vnc_view *v);
/* Stops serving (closing every client) and frees v. A VM's view: call it once the VM has
 * stopped, before vmk_vm_free. NULL is fine. */
void vnc_view_stop(struct vnc_view *v);

/* What the backend's display did, from any thread (the VM's delegate calls them). */
void vnc_view_mode_changed(struct vnc_view *v, uint32_t width, uint32_t height);
void vnc_view_updated(struct vnc_view *v, uint32_t x, uint32_t y, uint32_t width, uint32_t height);

/* An RFB button mask (1 left, 2 middle, 4 right, 8 wheel up, 16 wheel down) as
 * VMK_POINTER_BUTTON_* bits. */
unsigned vnc_pointer_buttons(int mask);
/* Wheel steps between two masks: +1 when the wheel-up bit came on, -1 for wheel-down. */
int vnc_scroll_steps(int old_mask, int new_mask);

#endif
