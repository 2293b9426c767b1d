/* The CPUID table each vCPU gets: what KVM supports, with the topology of this
 * machine and the hypervisor bit, so guests see N single-thread cores in one
 * package and find the KVM paravirtual leaves (kvm-clock). */
#ifndef VMK_X86_CPUID_H
#define VMK_X86_CPUID_H

#include <linux/kvm.h>

struct x86_cpuid {
    struct kvm_cpuid2 *table; /* KVM_GET_SUPPORTED_CPUID, unmodified */
};

/* Asks KVM what it supports. 0 or -errno. */
int x86_cpuid_init(struct x86_cpuid *c, int kvm_fd) __attribute__((warn_unused_result));
void x86_cpuid_destroy(struct x86_cpuid *c);
/* The guest-physical address width KVM reports (CPUID 0x80000008 EAX[7:0]); 36 when the leaf
 * is missing, as on CPUs without it. */
unsigned x86_cpuid_phys_bits(const struct x86_cpuid *c);
/* A copy patched for vCPU apic_id of cpu_count (free() it); NULL when out of memory. */
struct kvm_cpuid2 *x86_cpuid_for_vcpu(const struct x86_cpuid *c, unsigned apic_id,
                                      unsigned cpu_count);

#endif
