/* A virtio device as a function on the machine's PCI bus: the virtio-pci transport, an
 * MSI-X table in a BAR of its own (one vector for configuration changes, one per queue),
 * KVM delivering the vectors through irqfds, and each queue's doorbell a KVM ioeventfd read
 * by the machine's event loop. */
#ifndef VMK_MACHINE_VIRTIO_PCI_FUNCTION_H
#define VMK_MACHINE_VIRTIO_PCI_FUNCTION_H

#include "core/event_loop.h"
#include "core/guest_memory.h"
#include "core/irq.h"
#include "pci/pci.h"
#include "virtio/virtio_device.h"
#include "vmkit.h"

/* What a function needs of the machine; everything outlives the function. */
struct pci_function_env {
    const struct guest_memory *gm;
    struct event_loop *el;      /* doorbells are read here */
    struct irq_routing_ops irq; /* MSI routes, irqfds, ioeventfds */
    struct pci_bus *bus;
};

struct virtio_pci_function;

/* Puts dev on the bus with class_code (24 bits) as its PCI class. dev stays the caller's (it
 * must outlive the function). */
vmk_result virtio_pci_function_new(const struct pci_function_env *env, struct virtio_device *dev,
                                   uint32_t class_code, struct virtio_pci_function **out,
                                   vmk_error **err) __attribute__((warn_unused_result));
/* Resets the device if the driver left it running and takes the function apart; call once no
 * vCPU runs and the bus is gone. NULL is a no-op. */
void virtio_pci_function_free(struct virtio_pci_function *f);

#endif
