/* A VM's GSI routing table, which owns every route: the platform's wired lines (given by
 * the machine: on x86 the I/O APIC and PIC entries KVM installs with its irqchip) and one MSI
 * route per GSI handed out, committed whole with KVM_SET_GSI_ROUTING, which replaces the
 * table each time. Its struct irq_routing_ops also carries KVM_IRQFD and KVM_IOEVENTFD. */
#ifndef VMK_KVM_IRQ_ROUTES_H
#define VMK_KVM_IRQ_ROUTES_H

#include "core/irq.h"

#include <linux/kvm.h>

#define KVM_IRQ_ROUTES_MAX_MSI 1000

struct kvm_irq_routes;

/* vm_fd: a VM with an in-kernel irqchip. base: the nbase wired routes to keep in every
 * commit (copied). MSI routes get GSIs from first_msi_gsi up. ioctl_fn: NULL for ioctl(2);
 * tests pass their own. 0, -ENOMEM or -EINVAL (nbase too large). */
int kvm_irq_routes_new(int vm_fd, const struct kvm_irq_routing_entry *base, unsigned nbase,
                       unsigned first_msi_gsi,
                       int (*ioctl_fn)(int fd, unsigned long req, void *arg),
                       struct kvm_irq_routes **out) __attribute__((warn_unused_result));
void kvm_irq_routes_free(struct kvm_irq_routes *r);
/* The ops backed by r (ctx = r). Safe from any thread. */
struct irq_routing_ops kvm_irq_routes_ops(struct kvm_irq_routes *r);

#endif
