/* What an x86 VM needs from KVM beyond the generic VM and vCPUs (src/kvm): the in-kernel
 * PIC, I/O APIC and PIT with their default GSI routes, and each vCPU's CPUID, MSRs, local
 * APIC and the registers of the 64-bit boot entry. */
#ifndef VMK_X86_KVM_SETUP_H
#define VMK_X86_KVM_SETUP_H

#include "arch/x86/cpuid.h"
#include "vmkit.h"

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#define X86_IRQCHIP_ROUTES 40 /* GSIs 0-15 to the I/O APIC and a PIC, 16-23 to the I/O APIC */
#define X86_FIRST_MSI_GSI  24 /* MSI routes take the GSIs above the I/O APIC's pins */

/* The VM's platform: checks the x86 capabilities vmkit needs (PIT2, extended CPUID), places
 * the pages Intel's real-mode emulation needs, creates the irqchip and the PIT. */
vmk_result x86_kvm_vm_init(int kvm_fd, int vm_fd, vmk_error **err)
    __attribute__((warn_unused_result));
/* The routes KVM_CREATE_IRQCHIP installs, which every KVM_SET_GSI_ROUTING must repeat;
 * out holds X86_IRQCHIP_ROUTES entries. */
void x86_irqchip_routes(struct kvm_irq_routing_entry *out);
/* vCPU index (APIC id) of count: CPUID with the machine's topology, MSRs as firmware leaves
 * them, the LAPIC in virtual-wire mode. power_on: CPUID only, the rest as KVM resets it (the
 * boot CPU at the reset vector in real mode, the others waiting for INIT/SIPI), for firmware. */
vmk_result x86_kvm_vcpu_init(int vcpu_fd, const struct x86_cpuid *cpuid, unsigned index,
                             unsigned count, bool power_on, vmk_error **err)
    __attribute__((warn_unused_result));
/* The boot CPU's state for the 64-bit boot protocol: long mode, rip, rsi (the zero page). */
vmk_result x86_kvm_vcpu_boot(int vcpu_fd, uint64_t rip, uint64_t rsi, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
