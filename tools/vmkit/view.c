/* A VM as a view's backend (view.h): display 0, through the public API only. */
#include "view.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static int vm_copy_image(void *user, void *buf, size_t len, uint32_t *width, uint32_t *height)
{
    vmk_result r = vmk_vm_copy_display_image(user, 0, buf, len, width, height, NULL);
    return r == VMK_OK ? 0 : r == VMK_ERR_INVALID_ARGUMENT ? -ENOSPC : -EAGAIN;
}

static void vm_key(void *user, uint16_t code, bool pressed)
{
    vmk_vm_send_key(user, code, pressed, NULL);
}

static void vm_pointer(void *user, uint32_t x, uint32_t y, unsigned buttons)
{
    vmk_vm_send_pointer(user, 0, x, y, buttons, NULL);
}

static void vm_scroll(void *user, int32_t steps)
{
    vmk_vm_send_scroll(user, steps, NULL);
}

static void vm_resize(void *user, uint32_t width, uint32_t height)
{
    vmk_vm_reconfigure_display(user, 0, width, height, NULL);
}

struct view_backend view_vm_backend(vmk_vm *vm)
{
    return (struct view_backend){ .copy_image = vm_copy_image,
                                  .key = vm_key,
                                  .pointer = vm_pointer,
                                  .scroll = vm_scroll,
                                  .resize = vm_resize,
                                  .user = vm };
}

void view_msg(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

/* Under LeakSanitizer (sanitizer builds only read these): what the views' libraries keep is
 * theirs. libvncserver 0.9.14 does not release the client iterator it takes for a successful
 * SetDesktopSize (24 bytes a request) nor a WebSocket client's context (noVNC); SDL and the X
 * and D-Bus libraries under it keep allocations until exit. Saying so would add lines to
 * vmkit's one-line errors. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:rfbGetClientIterator\nleak:webSocketsCheck\nleak:libSDL2\nleak:libdbus-1\n"
           "leak:libX11\nleak:libxcb\n";
}

const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}
