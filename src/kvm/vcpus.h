/* A VM's vCPUs: one thread each looping on KVM_RUN and sending port I/O and MMIO exits to
 * the machine's buses. A vCPU is taken out of the guest with immediate_exit plus a signal
 * aimed at its own thread (kvm_vcpus_kick_signal()), never with process-wide state. Pause
 * parks every thread outside KVM_RUN; quit makes them leave for good. How each vCPU's
 * registers start is the architecture's (arch/x86/kvm_setup.c). */
#ifndef VMK_KVM_VCPUS_H
#define VMK_KVM_VCPUS_H

#include "core/bus.h"
#include "kvm/vm.h"
#include "vmkit.h"

enum kvm_vcpu_stop {
    KVM_VCPU_STOP_POWER_OFF, /* KVM's shutdown system event */
    KVM_VCPU_STOP_RESET,     /* KVM's reset system event */
    KVM_VCPU_STOP_FAULT,     /* a triple fault, an emulation failure, a failed KVM_RUN */
};

struct kvm_vcpu_exits {
    const struct bus *pio;
    const struct bus *mmio;
    /* A vCPU stopped for good (from its thread; the machine then quits the others). err
     * (FAULT only) becomes the callee's. */
    void (*stopped)(void *ctx, enum kvm_vcpu_stop why, vmk_error *err);
    /* Appended to the message of faults the host is known to cause (kvm_pvm's limits); may
     * be NULL. */
    const char *fault_hint;
    void *ctx;
};

struct kvm_vcpus;

/* Creates count vCPUs (ids 0..count-1) with their kvm_run mappings; no thread runs yet. */
vmk_result kvm_vcpus_create(const struct kvm_vm *vm, unsigned count,
                            const struct kvm_vcpu_exits *exits, struct kvm_vcpus **out,
                            vmk_error **err) __attribute__((warn_unused_result));
/* vCPU index's descriptor, for the architecture's set-up. */
int kvm_vcpus_fd(const struct kvm_vcpus *v, unsigned index);
/* Starts one thread per vCPU. */
vmk_result kvm_vcpus_start(struct kvm_vcpus *v, vmk_error **err)
    __attribute__((warn_unused_result));
/* Returns once every vCPU thread is outside KVM_RUN and waiting. */
void kvm_vcpus_pause(struct kvm_vcpus *v);
void kvm_vcpus_resume(struct kvm_vcpus *v);
/* Any thread: every vCPU leaves the guest and its loop, for good. Returns at once. */
void kvm_vcpus_quit(struct kvm_vcpus *v);
/* Quits, joins the threads and closes the vCPUs. NULL is a no-op. */
void kvm_vcpus_free(struct kvm_vcpus *v);
/* The signal that interrupts KVM_RUN (SIGRTMIN + 4); its handler does nothing. */
int kvm_vcpus_kick_signal(void);

#endif
