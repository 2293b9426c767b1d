/* The VNC view: display 0 of a VM served to VNC clients (and to web browsers through noVNC),
 * their keys and pointer passed back to the guest. The CLI's VZVirtualMachineView, built on
 * libvncserver and the public display and input calls of vmkit.h. */
#ifndef VMKIT_VNC_H
#define VMKIT_VNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "view.h"
#include "vmkit.h"

struct vnc_view;

/* Starts serving vm's display 0. address: as --vnc takes it (cli_parse_vnc_address: "" for
 * 127.0.0.1 and the first free port from 5900, "HOST:PORT", "unix:PATH"). password_file: its
 * first line is the password (VNC authentication reads at most 8 characters of it); NULL for
 * none. web: serve noVNC's pages too (Debian's novnc package, /usr/share/novnc) on an HTTP
 * port of their own; the VNC port takes WebSocket connections either way. Prints nothing:
 * returns NULL with one line in msg. The caller passes the VM's display changes on
 * (vnc_view_mode_changed / _updated from its display delegate). */
struct vnc_view *vnc_view_start(vmk_vm *vm, const char *address, const char *password_file,
                                bool web, char *msg, size_t len);
/* The same over any backend (the tests'). */
struct vnc_view *vnc_view_start_backend(const struct view_backend *b, const char *address,
                                        const char *password_file, bool web, char *msg, size_t len);
/* Where clients connect: "127.0.0.1:5900", "[::1]:5900", "unix:/run/x.sock". */
const char *vnc_view_address(const struct vnc_view *v);
/* The TCP port (0 for a unix socket). */
unsigned vnc_view_port(const struct vnc_view *v);
/* The page a browser opens ("http://127.0.0.1:5800/vnc.html?host=...&port=..."), or NULL
 * without web or without noVNC's files. */
const char *vnc_view_web_url(const struct vnc_view *v);
/* Stops serving (closing every client) and frees v. A VM's view: call it once the display
 * delegate is gone (or the VM has stopped), before vmk_vm_free. NULL is fine. */
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
