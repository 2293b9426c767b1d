/* MSI-X for a pci_device: the capability, the vector table and the pending-bit array
 * (PBA) in a memory BAR, with each vector delivered by KVM itself: an unmasked vector
 * is an MSI route (KVM_SET_GSI_ROUTING) plus an irqfd, so a device thread raises it by
 * writing the vector's eventfd and no vCPU exits to user space. While a vector is
 * masked its irqfd is detached: writes accumulate in the eventfd, the PBA bit reads 1,
 * and KVM delivers the pending interrupt as soon as the irqfd is attached again on
 * unmask. The KVM calls sit behind struct irq_routing_ops (src/kvm/irq_routes.c) so
 * tests use a fake. */
#ifndef VMK_PCI_MSIX_H
#define VMK_PCI_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "pci/pci.h"
#include "core/bus.h"
#include "core/irq.h"

#define MSIX_MAX_VECTORS 2048 /* the table size field holds N - 1 in 11 bits */
#define MSIX_ENTRY_SIZE  16
#define MSIX_CTRL_ENABLE 0x8000 /* message control bits */
#define MSIX_CTRL_FMASK  0x4000
#define MSIX_VEC_MASKED  0x1 /* vector control bit */

struct msix;

/* Adds the MSI-X capability to d (before pci_bus_add_device) with nvectors (1..2048)
 * vectors, the table at table_offset and the PBA at pba_offset of memory BAR bar (both
 * 8-byte aligned, inside the BAR, not overlapping; the BAR must already be declared).
 * Every vector starts masked, with its own eventfd and GSI. Route the BAR's accesses
 * with msix_bar_ops (a BAR of its own) or msix_bar_read/write (a shared BAR). Returns
 * 0, -EINVAL, -ENOSPC (config space or GSIs exhausted), -ENOMEM or another -errno. */
int msix_new(struct pci_device *d, unsigned nvectors, unsigned bar, uint32_t table_offset,
             uint32_t pba_offset, const struct irq_routing_ops *ops, struct msix **out)
    __attribute__((warn_unused_result));
/* Detaches irqfds, frees the GSIs and closes the eventfds. NULL is a no-op. */
void msix_free(struct msix *x);

/* The config offset of the capability. */
unsigned msix_cap_offset(const struct msix *x);
/* Whether the guest enabled MSI-X (and did not mask the whole function). */
bool msix_enabled(const struct msix *x);
/* The eventfd a device thread writes (an 8-byte 1) to raise vector; -1 if out of range. */
int msix_vector_fd(const struct msix *x, unsigned vector);
/* Raises vector from any thread: 0, -EINVAL or -errno of the eventfd write. */
int msix_notify(struct msix *x, unsigned vector);
/* Whether vector is pending (masked and raised). */
bool msix_pending(struct msix *x, unsigned vector);

/* Accesses at offset off of the BAR: true when off lies in the table or PBA (handled),
 * false when it belongs to the rest of the BAR. */
bool msix_bar_read(struct msix *x, uint64_t off, void *data, unsigned size);
bool msix_bar_write(struct msix *x, uint64_t off, const void *data, unsigned size);
/* For a BAR holding only the table and PBA (dev = the msix). */
extern const struct bus_device_ops msix_bar_ops;

#endif
