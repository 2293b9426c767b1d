/* A fake of KVM's interrupt routing (struct irq_routing_ops) for device tests: GSIs from 24,
 * MSI routes recorded, irqfds attached per GSI (a test reads the eventfd to see a vector
 * fire), with checks that a device routes before it attaches and detaches before it frees. */
#ifndef VMK_TESTS_FAKE_KVM_IRQ_H
#define VMK_TESTS_FAKE_KVM_IRQ_H

#include "core/irq.h"

#include <stdbool.h>
#include <stdint.h>

#define FAKE_GSIS 64

struct fake_kvm {
    unsigned max_gsis; /* how many gsi_alloc may hand out */
    unsigned allocated, freed;
    bool used[FAKE_GSIS];
    bool routed[FAKE_GSIS];
    uint64_t address[FAKE_GSIS];
    uint32_t data[FAKE_GSIS];
    unsigned route_calls;
    int fd_of[FAKE_GSIS]; /* attached irqfd, -1 none */
    unsigned irqfd_calls;
    bool fail_route, fail_irqfd;
};

/* Resets k and returns routing ops over it. */
struct irq_routing_ops fake_kvm_ops(struct fake_kvm *k);

#endif
