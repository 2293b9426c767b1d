/* The machine's USB: one xHCI controller on PCI (when the configuration has a USB device, or
 * asks for the controller so drives can be plugged in later), the configuration's USB
 * mass-storage devices and USB keyboards on its ports, and plugging drives in and out while the VM runs (the
 * framework's VZUSBController attach/detach). Each drive is its disk image (opened and locked
 * here, closed once the controller let go of the device) behind usb_storage.c. */
#ifndef VMK_MACHINE_USB_BUS_H
#define VMK_MACHINE_USB_BUS_H

#include "core/guest_memory.h"
#include "core/irq.h"
#include "pci/pci.h"
#include "vmkit.h"

struct usb_bus;

/* Whether cfg's machine has the controller. */
bool usb_bus_wanted(const vmk_config *cfg);
/* The controller on bus, with cfg's USB mass-storage devices plugged in, in order, then its
 * USB keyboards. */
vmk_result usb_bus_create(const struct guest_memory *gm, const struct irq_routing_ops *irq,
                          struct pci_bus *bus, const vmk_config *cfg, struct usb_bus **out,
                          vmk_error **err) __attribute__((warn_unused_result));
/* Unplugs everything and frees the controller: once no vCPU runs and the PCI bus has let go of
 * the function. NULL is a no-op. */
void usb_bus_free(struct usb_bus *u);

/* Plugs in a drive of dev's attachment (a USB mass-storage device, not the config's own
 * object: this opens its image); *port gets the 1-based port it is on, which names it for
 * usb_bus_detach. Any thread. */
vmk_result usb_bus_attach(struct usb_bus *u, const vmk_storage_device *dev, unsigned *port,
                          vmk_error **err) __attribute__((warn_unused_result));
/* Pulls the drive on port out and closes its image. Any thread. */
vmk_result usb_bus_detach(struct usb_bus *u, unsigned port, vmk_error **err)
    __attribute__((warn_unused_result));

/* A key (evdev code) to the USB keyboard that is the configuration's first keyboard;
 * VMK_ERR_UNSUPPORTED when that one is not a USB keyboard. Any thread. */
vmk_result usb_bus_send_key(struct usb_bus *u, uint16_t code, bool pressed, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
