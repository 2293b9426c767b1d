#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_1_ECX_HYPERVISOR        (1u << 31)
#define CPUID_1_EDX_HTT               (1u << 28)
#define CPUID_80000001_ECX_CMP_LEGACY (1u << 1)
#define CPUID_80000001_ECX_TOPOEXT    (1u << 22)

int x86_cpuid_init(struct x86_cpuid *c, int kvm_fd)
{
    c->table = NULL;
    for (unsigned n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + n * sizeof(t->entries[0]));
        if (!t)
            return -ENOMEM;
        t->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, t) == 0) {
            c->table = t;
            return 0;
        }
        int e = errno;
        free(t);
        if (e != E2BIG)
            return -e;
    }
    return -E2BIG;
}

void x86_cpuid_destroy(struct x86_cpuid *c)
{
    free(c->table);
    c->table = NULL;
}

unsigned x86_cpuid_phys_bits(const struct x86_cpuid *c)
{
    for (unsigned i = 0; c->table && i < c->table->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &c->table->entries[i];
        unsigned bits = e->eax & 0xff;
        if (e->function == 0x80000008 && bits)
            return bits;
    }
    return 36;
}

static unsigned bits_for(unsigned count)
{
    unsigned b = 0;
    while ((1u << b) < count)
        b++;
    return b;
}

static void patch_entry(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned n)
{
    unsigned core_bits = bits_for(n);
    switch (e->function) {
    case 1:
        e->ebx = (e->ebx & 0x0000ffffu) | (apic_id << 24) | ((n & 0xff) << 16);
        e->ecx |= CPUID_1_ECX_HYPERVISOR;
        if (n > 1)
            e->edx |= CPUID_1_EDX_HTT;
        else
            e->edx &= ~CPUID_1_EDX_HTT;
        break;
    case 4: {
        /* Deterministic cache parameters: n cores per package, one thread each;
         * the L3 (level 3) is shared by all, lower levels by one thread. */
        unsigned level = (e->eax >> 5) & 7;
        unsigned sharing = level >= 3 ? n : 1;
        e->eax = (e->eax & 0x3ff) | ((sharing - 1) << 14) | ((n - 1) << 26);
        break;
    }
    case 0xa:
        /* No virtual PMU: the guest must not program counters we do not save. */
        e->eax = e->ebx = e->ecx = e->edx = 0;
        break;
    case 0xb:
    case 0x1f:
        /* Extended topology: level 0 SMT (1 thread), level 1 core (n cores). */
        if (e->index == 0) {
            e->eax = 0;
            e->ebx = 1;
            e->ecx = (1u << 8) | 0;
        } else if (e->index == 1) {
            e->eax = core_bits;
            e->ebx = n;
            e->ecx = (2u << 8) | 1;
        } else {
            e->eax = e->ebx = 0;
            e->ecx = e->index;
        }
        e->edx = apic_id;
        break;
    case 0x80000001:
        /* Without TOPOEXT the guest takes the core count from 0x80000008. */
        e->ecx &= ~CPUID_80000001_ECX_TOPOEXT;
        if (n > 1)
            e->ecx |= CPUID_80000001_ECX_CMP_LEGACY;
        else
            e->ecx &= ~CPUID_80000001_ECX_CMP_LEGACY;
        break;
    case 0x80000008: e->ecx = (e->ecx & ~0xf0ffu) | (core_bits << 12) | ((n - 1) & 0xff); break;
    default: break;
    }
}

struct kvm_cpuid2 *x86_cpuid_for_vcpu(const struct x86_cpuid *c, unsigned apic_id,
                                      unsigned cpu_count)
{
    size_t size = sizeof(*c->table) + c->table->nent * sizeof(c->table->entries[0]);
    struct kvm_cpuid2 *t = malloc(size);
    if (!t)
        return NULL;
    memcpy(t, c->table, size);
    for (unsigned i = 0; i < t->nent; i++)
        patch_entry(&t->entries[i], apic_id, cpu_count);
    return t;
}
