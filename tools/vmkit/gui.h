/* The window view (--gui): display 0 in an SDL2 window that scales it to fit, the host's
 * keyboard and mouse passed to the guest, and a window the user resizes asking the guest for
 * that size (VZVirtualMachineView's automaticallyReconfiguresDisplay). Clicking into the
 * window grabs the keyboard (so Alt-Tab and friends reach the guest); Ctrl+Alt+G lets it go.
 * Built on view.h's backend and the public API, like the VNC view. */
#ifndef VMKIT_GUI_H
#define VMKIT_GUI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "view.h"

struct gui_view;

/* Opens the window titled title on the view's own thread. closed(user) runs on that thread
 * each time the user closes the window (the window stays until gui_view_stop; the caller asks
 * the guest to power off). Prints nothing: returns NULL with one line in msg (no display to
 * open a window on, say). */
struct gui_view *gui_view_start(const struct view_backend *b, const char *title,
                                void (*closed)(void *user), void *user, char *msg, size_t len);
/* Closes the window and frees g: call it once the display delegate is gone. NULL is fine. */
void gui_view_stop(struct gui_view *g);

/* What the backend's display did, from any thread (the VM's delegate calls them). */
void gui_view_mode_changed(struct gui_view *g, uint32_t width, uint32_t height);
void gui_view_updated(struct gui_view *g);

/* Where pixel x, y of a window of win_w x win_h falls on a display of w x h drawn scaled to
 * fit with its aspect kept (bars around it): false when it falls on a bar, else *dx, *dy. */
bool gui_window_to_display(uint32_t x, uint32_t y, uint32_t win_w, uint32_t win_h, uint32_t w,
                           uint32_t h, uint32_t *dx, uint32_t *dy);

#endif
