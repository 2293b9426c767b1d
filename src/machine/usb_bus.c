/* The machine's USB (usb_bus.h): the xHCI controller and the drives and keyboards on its
 * ports. */
#include "machine/usb_bus.h"
#include "machine/device_table.h"
#include "block/disk_image.h"
#include "core/error.h"
#include "devices/usb/usb_keyboard.h"
#include "devices/usb/usb_storage.h"
#include "devices/usb/xhci.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct usb_bus {
    struct xhci *xhci;
    /* Per port (1-based, [0] unused): the image behind the drive there. The lock keeps two
     * callers from plugging into, or pulling from, one port at once. */
    pthread_mutex_t lock;
    struct disk_image *image[XHCI_PORTS + 1];
    unsigned next_serial; /* drives get serials 000000000001, 000000000002, ... */
    /* The configuration's first keyboard when it is a USB one: where keys go (the
     * controller owns it; it stays plugged in until usb_bus_free). */
    struct usb_device *keyboard;
};

bool usb_bus_wanted(const vmk_config *cfg)
{
    return vmk_config_get_usb_controller(cfg) ||
           device_storage_count(cfg, VMK_STORAGE_DEVICE_USB_MASS_STORAGE) > 0 ||
           device_keyboard_count(cfg, VMK_KEYBOARD_USB) > 0;
}

/* The configuration's USB keyboards, after its drives (their ports stay as they were). */
static vmk_result attach_keyboards(struct usb_bus *u, const vmk_config *cfg, vmk_error **err)
{
    for (unsigned i = 0; i < vmk_config_keyboard_count(cfg); i++) {
        if (vmk_keyboard_get_kind(vmk_config_get_keyboard(cfg, i)) != VMK_KEYBOARD_USB)
            continue;
        struct usb_device *kbd = usb_keyboard_new();
        if (!kbd)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "keyboard %u: out of memory", i + 1);
        int e = xhci_attach(u->xhci, kbd, NULL);
        if (e) {
            kbd->ops->destroy(kbd->ctx);
            return vmk_fail(err, e == -EBUSY ? VMK_ERR_INVALID_CONFIG : VMK_ERR_INTERNAL, -e,
                            "keyboard %u: %s", i + 1,
                            e == -EBUSY ? "every USB 2 port is taken" : "cannot plug it in");
        }
        if (i == 0)
            u->keyboard = kbd;
    }
    return VMK_OK;
}

vmk_result usb_bus_send_key(struct usb_bus *u, uint16_t code, bool pressed, vmk_error **err)
{
    if (!u->keyboard)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "input: the first keyboard is no USB one");
    (void)usb_keyboard_key(u->keyboard, code, pressed); /* a key it lacks is no error */
    return VMK_OK;
}

vmk_result usb_bus_attach(struct usb_bus *u, const vmk_storage_device *dev, unsigned *port,
                          vmk_error **err)
{
    const vmk_storage_attachment *att = vmk_storage_device_get_attachment(dev);
    if (!dev || vmk_storage_device_get_kind(dev) != VMK_STORAGE_DEVICE_USB_MASS_STORAGE || !att)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "USB: only a USB mass-storage device can be plugged in");
    struct disk_image *img;
    vmk_result r = device_open_disk_image(att, &img, err);
    if (r != VMK_OK)
        return r;
    pthread_mutex_lock(&u->lock);
    char serial[16];
    snprintf(serial, sizeof(serial), "%012X", ++u->next_serial);
    struct usb_device *usb = NULL;
    r = usb_storage_new(disk_image_backend(img), serial, &usb, err);
    unsigned p = 0;
    if (r == VMK_OK) {
        int e = xhci_attach(u->xhci, usb, &p);
        if (e == 0) {
            u->image[p] = img;
            img = NULL;
        } else {
            usb->ops->destroy(usb->ctx);
            r = vmk_fail(err, e == -EBUSY ? VMK_ERR_INVALID_STATE : VMK_ERR_INTERNAL, -e,
                         e == -EBUSY ? "USB: disk image %s: every USB 2 port is taken (%u)"
                                     : "USB: disk image %s: cannot plug it in",
                         vmk_disk_image_attachment_get_path(att), XHCI_USB2_PORTS);
        }
    }
    pthread_mutex_unlock(&u->lock);
    if (img)
        disk_image_close(img);
    if (r == VMK_OK && port)
        *port = p;
    return r;
}

vmk_result usb_bus_detach(struct usb_bus *u, unsigned port, vmk_error **err)
{
    pthread_mutex_lock(&u->lock);
    struct disk_image *img = port >= 1 && port <= XHCI_PORTS ? u->image[port] : NULL;
    /* The controller finishes a call into the drive, then destroys it; only then does the
     * image go. */
    if (img && xhci_detach(u->xhci, port) == 0)
        u->image[port] = NULL;
    else
        img = NULL;
    pthread_mutex_unlock(&u->lock);
    if (!img)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "USB: no drive on port %u", port);
    disk_image_close(img);
    return VMK_OK;
}

vmk_result usb_bus_create(const struct guest_memory *gm, const struct irq_routing_ops *irq,
                          struct pci_bus *bus, const vmk_config *cfg, struct usb_bus **out,
                          vmk_error **err)
{
    *out = NULL;
    struct usb_bus *u = calloc(1, sizeof(*u));
    if (!u)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "USB: out of memory");
    pthread_mutex_init(&u->lock, NULL);
    int e = xhci_new(gm, irq, &u->xhci);
    if (e) {
        usb_bus_free(u);
        return vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_INTERNAL, -e,
                        "USB: cannot make the xHCI controller: %s", strerror(-e));
    }
    /* The drives first: until the function is on the bus, a failure frees it all. */
    for (unsigned i = 0; i < vmk_config_storage_device_count(cfg); i++) {
        const vmk_storage_device *dev = vmk_config_get_storage_device(cfg, i);
        if (vmk_storage_device_get_kind(dev) != VMK_STORAGE_DEVICE_USB_MASS_STORAGE)
            continue;
        vmk_error *e2 = NULL;
        vmk_result r = usb_bus_attach(u, dev, NULL, &e2);
        if (r != VMK_OK) {
            vmk_fail_set(err, r, vmk_error_errno(e2), "storage device %u: %s", i + 1,
                         vmk_error_message(e2));
            vmk_error_free(e2);
            usb_bus_free(u);
            return r;
        }
    }
    vmk_result r = attach_keyboards(u, cfg, err);
    if (r != VMK_OK) {
        usb_bus_free(u);
        return r;
    }
    int slot = pci_bus_add_device(bus, xhci_pci_device(u->xhci));
    if (slot < 0) {
        usb_bus_free(u);
        return vmk_fail(err, slot == -ENOSPC ? VMK_ERR_INVALID_CONFIG : VMK_ERR_INTERNAL, -slot,
                        "USB: cannot put the xHCI controller on the PCI bus: %s",
                        slot == -ENOSPC ? "every slot is taken" : strerror(-slot));
    }
    *out = u;
    return VMK_OK;
}

void usb_bus_free(struct usb_bus *u)
{
    if (!u)
        return;
    xhci_free(u->xhci); /* stops its worker and destroys every drive */
    for (unsigned p = 1; p <= XHCI_PORTS; p++)
        disk_image_close(u->image[p]);
    pthread_mutex_destroy(&u->lock);
    free(u);
}
