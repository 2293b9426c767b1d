/* An x86-64 KVM machine built from a validated vmk_config: RAM, in-kernel
 * interrupt controllers and PIT, platform devices, ACPI tables, the loaded kernel
 * and one thread per vCPU. vm.c drives it; it reports back through machine_owner. */
#ifndef VMK_X86_KVM_MACHINE_H
#define VMK_X86_KVM_MACHINE_H

#include "api/config_internal.h"
#include "core/bus.h"
#include "core/event_loop.h"
#include "core/guest_memory.h"
#include "core/machine_events.h"
#include "arch/x86/cpuid.h"
#include "pci/msix.h"
#include "pci/pci.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <linux/kvm.h>

enum machine_end {
    MACHINE_END_POWER_OFF,
    MACHINE_END_RESET,
    MACHINE_END_DEBUG_EXIT,
    MACHINE_END_FAULT,
    MACHINE_END_ESCAPE, /* the user typed the console escape (Ctrl-A x) */
};

struct machine_owner {
    /* Called once, from a vCPU or the event-loop thread, when the machine ends by
     * itself. err (FAULT only) becomes the owner's. */
    void (*ended)(void *ctx, enum machine_end why, uint32_t code, vmk_error *err);
    void *ctx;
};

struct kvm_machine;

struct vcpu {
    struct kvm_machine *m;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
};

struct kvm_machine {
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    bool pvm_host;
    struct guest_memory gm;
    struct bus pio;
    struct bus mmio;
    struct machine_owner owner;
    struct event_loop *el;        /* the VM thread's loop: device fds are watched there */
    struct machine_events events; /* what devices call */
    atomic_bool ended;            /* the first terminal event wins */

    unsigned vcpu_count;
    struct vcpu *vcpus;
    int kick_signal;

    /* vCPU run control, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool quit;
    bool pause_requested;
    unsigned paused_count;
    unsigned exited_count;

    struct x86_cpuid cpuid;
    pthread_mutex_t irq_lock;
    uint32_t irq_sources[24]; /* per GSI: which sources assert it (lines can be shared) */
    struct platform_devices *dev;

    struct pci_bus *pci;               /* root bus 0: host bridge and devices */
    struct kvm_irq_routes *irq_routes; /* the GSI routing table (MSI routes) */
    struct kvm_irq_ops irq_ops;        /* MSI-X, irqfd and ioeventfd for PCI devices */
};

/* Builds everything but starts no vCPU. On failure nothing remains. */
vmk_result kvm_machine_create(const vmk_config *cfg, struct event_loop *el,
                              const struct machine_owner *owner, struct kvm_machine **out,
                              vmk_error **err);
vmk_result kvm_machine_start(struct kvm_machine *m, vmk_error **err);
/* Returns once every vCPU thread is outside KVM_RUN and waiting. */
void kvm_machine_pause(struct kvm_machine *m);
void kvm_machine_resume(struct kvm_machine *m);
void kvm_machine_press_power_button(struct kvm_machine *m);
/* Stops and joins the vCPUs, then frees everything. */
void kvm_machine_destroy(struct kvm_machine *m);
/* The pty a pty attachment got: serial port index (0 is COM1), or port index of the
 * console device when console. NULL when that port has no pty. Valid until destroy. */
const char *kvm_machine_pty_path(const struct kvm_machine *m, bool console, unsigned index);

/* Puts a PCI device (its BARs and capabilities declared; MSI-X set up with m->irq_ops)
 * on bus 0 and assigns its BARs. Machine build time only, before kvm_machine_start.
 * Returns the slot (1..31), -ENOSPC when the bus or a window is full, -EINVAL. The
 * device must outlive the machine's bus (free it after kvm_machine_destroy's vCPU
 * join, or own it from platform code). */
int machine_add_pci_device(struct kvm_machine *m, struct pci_device *d)
    __attribute__((warn_unused_result));

/* Internal to the machine: vcpu.c */
vmk_result vcpu_create(struct kvm_machine *m, unsigned index, struct vcpu *v, vmk_error **err);
vmk_result vcpu_set_boot_state(struct vcpu *v, uint64_t rip, uint64_t rsi, vmk_error **err);
void vcpu_destroy(struct vcpu *v);
void *vcpu_thread_main(void *arg);
void machine_end(struct kvm_machine *m, enum machine_end why, uint32_t code, vmk_error *err);
void machine_kick_all(struct kvm_machine *m);

#endif
