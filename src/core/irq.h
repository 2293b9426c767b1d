/* Interrupts as devices see them. An irq_line only says "asserted" or "not"; who delivers it
 * (KVM_IRQ_LINE, a test recorder) is hidden behind the callback. irq_routing_ops is what
 * message-signalled interrupts and doorbells need from the hypervisor: KVM's GSI routes,
 * irqfds and ioeventfds in a machine (src/kvm/irq_routes.c), a fake in tests. */
#ifndef VMK_CORE_IRQ_H
#define VMK_CORE_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct irq_line {
    void (*set_level)(void *ctx, unsigned gsi, bool level);
    void *ctx;
    unsigned gsi;
};

static inline void irq_line_set(const struct irq_line *line, bool level)
{
    if (line && line->set_level)
        line->set_level(line->ctx, line->gsi, level);
}

struct irq_routing_ops {
    /* Reserves a GSI for an MSI route (never one of the platform's wired lines). 0 or -errno. */
    int (*gsi_alloc)(void *ctx, unsigned *gsi);
    void (*gsi_free)(void *ctx, unsigned gsi);
    /* Routes gsi to the MSI message (address, data) and commits the table. 0 or -errno. */
    int (*msi_route)(void *ctx, unsigned gsi, uint64_t address, uint32_t data);
    /* Attach (assign) or detach eventfd fd to gsi: a write to fd raises it. 0 or -errno. */
    int (*irqfd)(void *ctx, int fd, unsigned gsi, bool assign);
    /* A guest write to MMIO [addr, addr + len) signals eventfd fd instead of exiting; no
     * datamatch; len 0 matches any write length. 0 or -errno. */
    int (*ioeventfd)(void *ctx, uint64_t addr, unsigned len, int fd, bool assign);
    void *ctx;
};

#endif
