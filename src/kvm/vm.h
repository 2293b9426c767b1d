/* A KVM virtual machine as the rest of vmkit sees it: /dev/kvm and the VM descriptor, guest
 * RAM as memory slots, and the wired interrupt lines (KVM_IRQ_LINE), which several sources
 * may share: a line is asserted while any of its sources asserts it (COM1 and COM3 share
 * IRQ 4 on a PC). What only x86 needs (the irqchip, the PIT) is arch/x86/kvm_setup.c's. */
#ifndef VMK_KVM_VM_H
#define VMK_KVM_VM_H

#include "core/irq.h"
#include "vmkit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_VM_IRQ_LINES 24 /* wired GSIs */

struct kvm_vm;

/* One source of a wired line: the line's level is the OR of its sources' bits. */
struct kvm_irq_source {
    struct kvm_vm *vm;
    uint32_t bit;
};

struct kvm_vm {
    int kvm_fd;
    int vm_fd;
    size_t run_size; /* of each vCPU's kvm_run mapping */
    pthread_mutex_t irq_lock;
    uint32_t irq_sources[KVM_VM_IRQ_LINES]; /* per GSI: which sources assert it */
};

/* Opens /dev/kvm, checks the API version and the capabilities every vmkit VM needs
 * (irqchip, user memory, immediate exit) and that vcpus are allowed, and creates the VM.
 * On failure nothing stays open (kvm_vm_close is still fine). */
vmk_result kvm_vm_open(struct kvm_vm *vm, unsigned vcpus, vmk_error **err)
    __attribute__((warn_unused_result));
/* Whether the host's KVM has capability cap. */
bool kvm_vm_has_cap(const struct kvm_vm *vm, int cap);
/* Maps [gpa, gpa + size) of the guest to host memory as memory slot slot. */
vmk_result kvm_vm_add_memory(struct kvm_vm *vm, unsigned slot, uint64_t gpa, uint64_t size,
                             void *host, vmk_error **err) __attribute__((warn_unused_result));
/* Sets memory slot slot: [gpa, gpa + size) of the guest to host memory, read-only when
 * read_only (KVM_MEM_READONLY: guest writes exit as MMIO; needs KVM_CAP_READONLY_MEM), or
 * deletes the slot when size is 0. */
vmk_result kvm_vm_set_memory(struct kvm_vm *vm, unsigned slot, uint64_t gpa, uint64_t size,
                             void *host, bool read_only, vmk_error **err)
    __attribute__((warn_unused_result));
/* A line on gsi (below KVM_VM_IRQ_LINES) driven by source bit (0..31), whose state src keeps
 * (it must outlive the line). */
struct irq_line kvm_vm_irq_line(struct kvm_vm *vm, struct kvm_irq_source *src, unsigned bit,
                                unsigned gsi);
void kvm_vm_close(struct kvm_vm *vm);

#endif
