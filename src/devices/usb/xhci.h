/* An xHCI 1.0 USB host controller as a PCI function (class 0x0C0330): one 64-bit memory BAR
 * holding the capability, operational, port, runtime (XHCI_INTERRUPTERS interrupters) and
 * doorbell registers and the MSI-X table and PBA. Ports 1..XHCI_USB2_PORTS speak USB 2.0
 * (low, full, high speed), the next XHCI_USB3_PORTS USB 3.0 (super speed); the Supported
 * Protocol capabilities say so. No INTx: OVMF polls the event ring, Linux uses MSI-X.
 *
 * The PCI id is Red Hat's for QEMU's generic xHCI (1b36:000d): vmkit holds no vendor id,
 * Linux's xhci-pci and OVMF's XhciDxe bind by class, and that id carries no quirk in Linux.
 *
 * Threads: the MMIO handlers (vCPU threads) only record what the guest wrote; a worker thread
 * of the controller runs the command ring, the transfer rings, port resets and HCRST, calls
 * the devices (a call may block on a disk), posts events and raises MSI-X vectors. The
 * worker never holds the controller's lock across a device call. xhci_attach and xhci_detach
 * may be called from any thread but the worker (never from inside a device callback). */
#ifndef VMK_USB_XHCI_H
#define VMK_USB_XHCI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/guest_memory.h"
#include "core/irq.h"
#include "devices/usb/usb_device.h"
#include "pci/pci.h"

#define XHCI_PCI_VENDOR   0x1b36
#define XHCI_PCI_DEVICE   0x000d
#define XHCI_PCI_CLASS    0x0c0330
#define XHCI_USB2_PORTS   4
#define XHCI_USB3_PORTS   4
#define XHCI_PORTS        (XHCI_USB2_PORTS + XHCI_USB3_PORTS)
#define XHCI_MAX_SLOTS    32
#define XHCI_INTERRUPTERS 4
#define XHCI_BAR          0 /* 64-bit: indices 0 and 1 */
#define XHCI_BAR_SIZE     0x4000
/* Register blocks inside the BAR. */
#define XHCI_CAPLENGTH    0x40 /* operational registers follow the capability registers */
#define XHCI_PORT_REGS    (XHCI_CAPLENGTH + 0x400)
#define XHCI_XECP_OFF     0x800
#define XHCI_RTS_OFF      0x1000
#define XHCI_DB_OFF       0x2000
#define XHCI_MSIX_TABLE   0x3000
#define XHCI_MSIX_PBA     0x3800
/* What one Transfer Descriptor may hold: more TRBs, or more bytes, and the TD completes with
 * a TRB Error (no splitting: Linux's largest mass-storage TDs, 1 MiB in pages, need about
 * 512 TRBs; OVMF's are one TRB per 64 KiB). */
#define XHCI_TD_MAX_TRBS  1024
#define XHCI_TD_MAX_BYTES (16u << 20)
/* TRBs (Link TRBs included) one doorbell lets the controller walk on one ring before it waits
 * for the next doorbell: a ring whose TRBs a driver keeps valid forever cannot keep the worker
 * busy forever. */
#define XHCI_RING_BUDGET  4096

struct xhci;

/* A controller with its worker thread running. irq: how MSI-X vectors reach the guest
 * (copied). Returns 0, -ENOMEM or another -errno (MSI-X, the thread). */
int xhci_new(const struct guest_memory *gm, const struct irq_routing_ops *irq, struct xhci **out)
    __attribute__((warn_unused_result));
/* The same without a thread: whoever owns the controller calls xhci_process (tests, the
 * fuzzer), so every step happens in a known order on the caller's thread. */
int xhci_new_unthreaded(const struct guest_memory *gm, const struct irq_routing_ops *irq,
                        struct xhci **out) __attribute__((warn_unused_result));
/* Stops the worker and destroys the attached devices. NULL is a no-op. */
void xhci_free(struct xhci *x);

/* The PCI function, to hand to pci_bus_add_device (the caller owns the bus; the function
 * lives as long as x). */
struct pci_device *xhci_pci_device(struct xhci *x);
/* The BAR's register handlers (dev = the xhci); pci_device_add_bar already uses them. */
extern const struct bus_device_ops xhci_bar_ops;

/* Puts dev on the first free port of its speed's protocol (USB 3.0 for super speed, else
 * USB 2.0); *port_out (may be NULL) gets the port number, 1-based as the guest sees it. The
 * controller owns dev from then on (its destroy runs at detach or xhci_free). The guest sees
 * a connect status change. 0, -EINVAL (no ops, unknown speed) or -EBUSY (no free port; dev
 * stays the caller's). */
int xhci_attach(struct xhci *x, struct usb_device *dev, unsigned *port_out)
    __attribute__((warn_unused_result));
/* Unplugs the device on port (1-based): the guest sees a connect status change, a call the
 * worker is making into the device finishes first, then the device is destroyed. 0, or
 * -ENOENT (no device there). */
int xhci_detach(struct xhci *x, unsigned port);

/* One turn of the worker: a pending HCRST, port resets, port status change events, the
 * command ring, the transfer rings that were rung or woken (each within its budget), then
 * interrupts. Returns whether more work is already pending (call again). Only for a
 * controller made with xhci_new_unthreaded. */
bool xhci_process(struct xhci *x);

#endif
