/* A virtio device as a function on the machine's PCI bus: the virtio-pci transport,
 * an MSI-X table in a BAR of its own (one vector for configuration changes, one per
 * queue), and KVM delivering the vectors through irqfds. */
#ifndef VMK_X86_MACHINE_VIRTIO_H
#define VMK_X86_MACHINE_VIRTIO_H

#include "machine/machine.h"
#include "virtio/virtio_device.h"

struct machine_virtio;

/* Puts dev on the bus; takes ownership of dev even on failure. class_code: the PCI
 * class (24 bits) the guest sees. */
vmk_result machine_virtio_add(struct kvm_machine *m, struct virtio_device *dev, uint32_t class_code,
                              struct machine_virtio **out, vmk_error **err);
/* Resets and destroys the device; call once no vCPU runs. NULL is a no-op. */
void machine_virtio_free(struct machine_virtio *mv);

#endif
