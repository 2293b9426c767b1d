#include "arch/x86/kvm_setup.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC          0x10
#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1
#define MTRR_ENABLE             0x800
#define MTRR_TYPE_WRBACK        0x6

#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static vmk_result kvm_check(int r, vmk_error **err, const char *what)
{
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "%s failed: %s", what, strerror(errno));
    return VMK_OK;
}

vmk_result x86_kvm_vm_init(int kvm_fd, int vm_fd, vmk_error **err)
{
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
            return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "this host's KVM lacks %s", caps[i].name);
    vmk_result r;
    /* Intel needs these three pages for real-mode emulation; AMD ignores them. */
    if ((r = kvm_check(ioctl(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_KVM_TSS_ADDR), err,
                       "KVM_SET_TSS_ADDR")))
        return r;
    uint64_t identity = X86_KVM_IDENTITY_MAP_ADDR;
    if ((r = kvm_check(ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity), err,
                       "KVM_SET_IDENTITY_MAP_ADDR")))
        return r;
    if ((r = kvm_check(ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0), err, "KVM_CREATE_IRQCHIP")))
        return r;
    /* The kernel answers port 0x61 (the PIT channel 2 gate and output, as a PC's system
     * control port B): Linux gates channel 2 there to calibrate the TSC against the PIT.
     * QEMU creates its PIT the same way. */
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    return kvm_check(ioctl(vm_fd, KVM_CREATE_PIT2, &pit), err, "KVM_CREATE_PIT2");
}

static void irqchip_entry(struct kvm_irq_routing_entry *e, unsigned gsi, unsigned chip,
                          unsigned pin)
{
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = chip;
    e->u.irqchip.pin = pin;
}

void x86_irqchip_routes(struct kvm_irq_routing_entry *out)
{
    unsigned n = 0;
    for (unsigned gsi = 0; gsi < 24; gsi++) {
        irqchip_entry(&out[n++], gsi, KVM_IRQCHIP_IOAPIC, gsi);
        if (gsi < 16)
            irqchip_entry(&out[n++], gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                          gsi % 8);
    }
}

static const struct {
    uint32_t index;
    uint64_t value;
} boot_msrs[] = {
    { MSR_IA32_SYSENTER_CS, 0 },
    { MSR_IA32_SYSENTER_ESP, 0 },
    { MSR_IA32_SYSENTER_EIP, 0 },
    { MSR_STAR, 0 },
    { MSR_LSTAR, 0 },
    { MSR_CSTAR, 0 },
    { MSR_SYSCALL_MASK, 0 },
    { MSR_KERNEL_GS_BASE, 0 },
    { MSR_IA32_TSC, 0 },
    { MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
    { MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK },
};

/* Sets each MSR on its own: a host may lack one (MTRRs under some nested setups), and the
 * guest copes without it. */
static void set_boot_msrs(int fd)
{
    /* struct kvm_msrs ends in a flexible array: room for one entry after it. */
    union {
        struct kvm_msrs msrs;
        uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    } one;
    for (size_t i = 0; i < sizeof(boot_msrs) / sizeof(boot_msrs[0]); i++) {
        memset(&one, 0, sizeof(one));
        one.msrs.nmsrs = 1;
        one.msrs.entries[0] =
            (struct kvm_msr_entry){ .index = boot_msrs[i].index, .data = boot_msrs[i].value };
        ioctl(fd, KVM_SET_MSRS, &one);
    }
}

static void lapic_set_lvt(struct kvm_lapic_state *l, unsigned reg, uint32_t mode)
{
    uint32_t v;
    memcpy(&v, &l->regs[reg], 4);
    v = (v & ~0x700u) | (mode << 8);
    memcpy(&l->regs[reg], &v, 4);
}

vmk_result x86_kvm_vcpu_init(int fd, const struct x86_cpuid *cpuid, unsigned index, unsigned count,
                             bool power_on, vmk_error **err)
{
    struct kvm_cpuid2 *table = x86_cpuid_for_vcpu(cpuid, index, count);
    if (!table)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vCPU %u: out of memory", index);
    int r = ioctl(fd, KVM_SET_CPUID2, table);
    int e = errno;
    free(table);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, e, "vCPU %u: KVM_SET_CPUID2 failed: %s", index,
                        strerror(e));
    /* Firmware starts from the state KVM gives a CPU at power-on and sets MSRs and the LAPIC
     * itself. */
    if (power_on)
        return VMK_OK;
    set_boot_msrs(fd);

    /* Virtual-wire mode, as firmware leaves it: the PIC through LINT0, NMI on LINT1. */
    struct kvm_lapic_state lapic;
    if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_GET_LAPIC failed: %s", index,
                        strerror(errno));
    lapic_set_lvt(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
    lapic_set_lvt(&lapic, APIC_LVT1, APIC_MODE_NMI);
    if (ioctl(fd, KVM_SET_LAPIC, &lapic) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_SET_LAPIC failed: %s", index,
                        strerror(errno));
    return VMK_OK;
}

vmk_result x86_kvm_vcpu_boot(int fd, uint64_t rip, uint64_t rsi, vmk_error **err)
{
    struct kvm_sregs sregs;
    if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "boot vCPU: KVM_GET_SREGS failed: %s",
                        strerror(errno));
    x86_long_mode_sregs(&sregs);
    if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "boot vCPU: KVM_SET_SREGS failed: %s",
                        strerror(errno));
    struct kvm_regs regs = {
        .rip = rip,
        .rsi = rsi,
        .rsp = X86_BOOT_STACK_TOP,
        .rflags = 0x2, /* bit 1 is always set; interrupts off */
    };
    if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "boot vCPU: KVM_SET_REGS failed: %s",
                        strerror(errno));
    struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
    if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "boot vCPU: KVM_SET_FPU failed: %s",
                        strerror(errno));
    return VMK_OK;
}
