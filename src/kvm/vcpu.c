/* vCPUs: creation, boot state, and the thread that runs KVM_RUN and dispatches
 * exits to the buses. A vCPU is stopped with immediate_exit plus a signal aimed at
 * its own thread, never with process-wide state. */
#include "machine/machine.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Sets each MSR on its own: a host may lack one (MTRRs under some nested setups),
 * and the guest copes without it. */
static void set_boot_msrs(int fd)
{
    for (size_t i = 0; i < sizeof(boot_msrs) / sizeof(boot_msrs[0]); i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } one = { .hdr.nmsrs = 1, .e.index = boot_msrs[i].index, .e.data = boot_msrs[i].value };
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

vmk_result vcpu_create(struct kvm_machine *m, unsigned index, struct vcpu *v, vmk_error **err)
{
    memset(v, 0, sizeof(*v));
    v->m = m;
    v->index = index;
    v->fd = ioctl(m->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (v->fd < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_CREATE_VCPU failed: %s", index,
                        strerror(errno));
    v->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: cannot map kvm_run: %s", index,
                        strerror(errno));
    }
    struct kvm_cpuid2 *cpuid = x86_cpuid_for_vcpu(&m->cpuid, index, m->vcpu_count);
    if (!cpuid)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vCPU %u: out of memory", index);
    int r = ioctl(v->fd, KVM_SET_CPUID2, cpuid);
    int e = errno;
    free(cpuid);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, e, "vCPU %u: KVM_SET_CPUID2 failed: %s", index,
                        strerror(e));
    set_boot_msrs(v->fd);

    /* Virtual-wire mode, as firmware leaves it: the PIC through LINT0, NMI on LINT1. */
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_GET_LAPIC failed: %s", index,
                        strerror(errno));
    lapic_set_lvt(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
    lapic_set_lvt(&lapic, APIC_LVT1, APIC_MODE_NMI);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_SET_LAPIC failed: %s", index,
                        strerror(errno));
    return VMK_OK;
}

vmk_result vcpu_set_boot_state(struct vcpu *v, uint64_t rip, uint64_t rsi, vmk_error **err)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_GET_SREGS failed: %s", v->index,
                        strerror(errno));
    x86_long_mode_sregs(&sregs);
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_SET_SREGS failed: %s", v->index,
                        strerror(errno));
    struct kvm_regs regs = {
        .rip = rip,
        .rsi = rsi,
        .rsp = X86_BOOT_STACK_TOP,
        .rflags = 0x2, /* bit 1 is always set; interrupts off */
    };
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_SET_REGS failed: %s", v->index,
                        strerror(errno));
    struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_SET_FPU failed: %s", v->index,
                        strerror(errno));
    return VMK_OK;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, v->m->run_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

static uint64_t vcpu_rip(struct vcpu *v)
{
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
        return ~0ULL;
    return regs.rip;
}

static const char pvm_hint[] =
    "; this host's /dev/kvm is kvm_pvm, which emulates guest kernel code and cannot run "
    "some instructions (FPU save/restore, cmpxchg16b, real mode): use a host with hardware "
    "virtualization";

/* hint: the failure is one kvm_pvm is known for, so name that limit on such a host. */
static void vcpu_fault(struct vcpu *v, bool hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void vcpu_fault(struct vcpu *v, bool hint, const char *fmt, ...)
{
    char cause[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    vmk_error *err =
        vmk_error_new(VMK_ERR_GUEST_FAULT, 0, "vCPU %u: %s at guest RIP %#llx%s", v->index, cause,
                      (unsigned long long)vcpu_rip(v), hint && v->m->pvm_host ? pvm_hint : "");
    machine_end(v->m, MACHINE_END_FAULT, 0, err);
}

static const char *internal_error_name(uint32_t sub)
{
    switch (sub) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return "emulation failure: KVM could not emulate the instruction";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return "internal error: exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV: return "internal error: event delivery failed";
    default: return "internal error";
    }
}

/* Returns false when this vCPU must stop running. */
static bool vcpu_handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct kvm_machine *m = v->m;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
            if (run->io.direction == KVM_EXIT_IO_OUT)
                bus_write(&m->pio, run->io.port, data, run->io.size);
            else
                bus_read(&m->pio, run->io.port, data, run->io.size);
        }
        return true;
    }
    case KVM_EXIT_MMIO:
        if (run->mmio.len > 8)
            return true;
        if (run->mmio.is_write)
            bus_write(&m->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        else
            bus_read(&m->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_HLT: return true;
    case KVM_EXIT_SHUTDOWN:
        /* On AMD, KVM resets the vCPU before reporting a shutdown: a RIP at the reset
         * vector then says nothing about where the guest failed. */
        if (vcpu_rip(v) == 0xfff0)
            vcpu_fault(v, false,
                       "triple fault (the guest's CPU shut down; KVM reset it, so "
                       "the faulting address is lost)");
        else
            vcpu_fault(v, false, "triple fault (the guest's CPU shut down)");
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        vcpu_fault(v, true, "%s (KVM suberror %u)", internal_error_name(run->internal.suberror),
                   run->internal.suberror);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        vcpu_fault(v, true, "KVM could not enter the guest (hardware reason %#llx)",
                   (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            machine_end(m, MACHINE_END_POWER_OFF, 0, NULL);
            return false;
        case KVM_SYSTEM_EVENT_RESET: machine_end(m, MACHINE_END_RESET, 0, NULL); return false;
        default:
            vcpu_fault(v, false, "guest crash reported by KVM (system event %u)",
                       run->system_event.type);
            return false;
        }
    default: vcpu_fault(v, true, "unexpected KVM exit reason %u", run->exit_reason); return false;
    }
}

/* Parks the thread while a pause is requested. Called with m->lock held. */
static void vcpu_wait_while_paused(struct kvm_machine *m)
{
    if (!m->pause_requested || m->quit)
        return;
    m->paused_count++;
    pthread_cond_broadcast(&m->cond);
    while (m->pause_requested && !m->quit)
        pthread_cond_wait(&m->cond, &m->lock);
    m->paused_count--;
}

void *vcpu_thread_main(void *arg)
{
    struct vcpu *v = arg;
    struct kvm_machine *m = v->m;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, m->kick_signal);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    sigemptyset(&set);
    /* A closed console pipe must fail the write, not kill the process. */
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    for (;;) {
        pthread_mutex_lock(&m->lock);
        vcpu_wait_while_paused(m);
        bool quit = m->quit;
        pthread_mutex_unlock(&m->lock);
        if (quit)
            break;
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            vcpu_fault(v, true, "KVM_RUN failed: %s", strerror(errno));
            break;
        }
        if (!vcpu_handle_exit(v))
            break;
    }
    pthread_mutex_lock(&m->lock);
    m->exited_count++;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void machine_kick_all(struct kvm_machine *m)
{
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        struct vcpu *v = &m->vcpus[i];
        if (!v->run || !v->thread_started)
            continue;
        __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        pthread_kill(v->thread, m->kick_signal);
    }
}
