/* vCPU threads: KVM_RUN, exits to the buses, pause and quit. */
#include "kvm/vcpus.h"
#include "core/error.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

struct vcpu {
    struct kvm_vcpus *set;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
};

struct kvm_vcpus {
    struct kvm_vcpu_exits exits;
    size_t run_size;
    unsigned count;
    struct vcpu *vcpu;
    pthread_mutex_t lock; /* run control below */
    pthread_cond_t cond;
    bool quit;
    bool pause_requested;
    unsigned paused_count;
    unsigned exited_count;
};

int kvm_vcpus_kick_signal(void)
{
    return SIGRTMIN + 4;
}

static void kick_handler(int sig)
{
    (void)sig;
}

vmk_result kvm_vcpus_create(const struct kvm_vm *vm, unsigned count,
                            const struct kvm_vcpu_exits *exits, struct kvm_vcpus **out,
                            vmk_error **err)
{
    struct kvm_vcpus *v = calloc(1, sizeof(*v));
    if (!v || !(v->vcpu = calloc(count ? count : 1, sizeof(*v->vcpu)))) {
        free(v);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vCPUs: out of memory");
    }
    v->exits = *exits;
    v->run_size = vm->run_size;
    v->count = count;
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->cond, NULL);
    for (unsigned i = 0; i < count; i++)
        v->vcpu[i] = (struct vcpu){ .set = v, .index = i, .fd = -1 };
    /* The kick only has to interrupt KVM_RUN. Installed here, on the machine's thread, before
     * any vCPU can be kicked. */
    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(kvm_vcpus_kick_signal(), &sa, NULL);
    *out = NULL;
    for (unsigned i = 0; i < count; i++) {
        struct vcpu *c = &v->vcpu[i];
        vmk_result r = VMK_OK;
        c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
        if (c->fd < 0) {
            r = vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: KVM_CREATE_VCPU failed: %s", i,
                         strerror(errno));
        } else {
            c->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
            if (c->run == MAP_FAILED) {
                c->run = NULL;
                r = vmk_fail(err, VMK_ERR_KVM, errno, "vCPU %u: cannot map kvm_run: %s", i,
                             strerror(errno));
            }
        }
        if (r != VMK_OK) {
            kvm_vcpus_free(v);
            return r;
        }
    }
    *out = v;
    return VMK_OK;
}

int kvm_vcpus_fd(const struct kvm_vcpus *v, unsigned index)
{
    return index < v->count ? v->vcpu[index].fd : -1;
}

static uint64_t vcpu_rip(struct vcpu *c)
{
    struct kvm_regs regs;
    if (ioctl(c->fd, KVM_GET_REGS, &regs) < 0)
        return ~0ULL;
    return regs.rip;
}

/* hint: the failure is one the host is known for; name that limit. */
static void vcpu_fault(struct vcpu *c, bool hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void vcpu_fault(struct vcpu *c, bool hint, const char *fmt, ...)
{
    char cause[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    const struct kvm_vcpu_exits *x = &c->set->exits;
    vmk_error *err =
        vmk_error_new(VMK_ERR_GUEST_FAULT, 0, "vCPU %u: %s at guest RIP %#llx%s", c->index, cause,
                      (unsigned long long)vcpu_rip(c), hint && x->fault_hint ? x->fault_hint : "");
    x->stopped(x->ctx, KVM_VCPU_STOP_FAULT, err);
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
static bool handle_exit(struct vcpu *c)
{
    struct kvm_run *run = c->run;
    const struct kvm_vcpu_exits *x = &c->set->exits;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
            if (run->io.direction == KVM_EXIT_IO_OUT)
                bus_write(x->pio, run->io.port, data, run->io.size);
            else
                bus_read(x->pio, run->io.port, data, run->io.size);
        }
        return true;
    }
    case KVM_EXIT_MMIO:
        if (run->mmio.len > 8)
            return true;
        if (run->mmio.is_write)
            bus_write(x->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        else
            bus_read(x->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_HLT: return true;
    case KVM_EXIT_SHUTDOWN:
        /* On AMD, KVM resets the vCPU before reporting a shutdown: a RIP at the reset vector
         * then says nothing about where the guest failed. */
        if (vcpu_rip(c) == 0xfff0)
            vcpu_fault(c, false,
                       "triple fault (the guest's CPU shut down; KVM reset it, so the faulting "
                       "address is lost)");
        else
            vcpu_fault(c, false, "triple fault (the guest's CPU shut down)");
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        vcpu_fault(c, true, "%s (KVM suberror %u)", internal_error_name(run->internal.suberror),
                   run->internal.suberror);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        vcpu_fault(c, true, "KVM could not enter the guest (hardware reason %#llx)",
                   (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            x->stopped(x->ctx, KVM_VCPU_STOP_POWER_OFF, NULL);
            return false;
        case KVM_SYSTEM_EVENT_RESET: x->stopped(x->ctx, KVM_VCPU_STOP_RESET, NULL); return false;
        default:
            vcpu_fault(c, false, "guest crash reported by KVM (system event %u)",
                       run->system_event.type);
            return false;
        }
    default: vcpu_fault(c, true, "unexpected KVM exit reason %u", run->exit_reason); return false;
    }
}

/* Parks the thread while a pause is requested. Called with v->lock held. */
static void wait_while_paused(struct kvm_vcpus *v)
{
    if (!v->pause_requested || v->quit)
        return;
    v->paused_count++;
    pthread_cond_broadcast(&v->cond);
    while (v->pause_requested && !v->quit)
        pthread_cond_wait(&v->cond, &v->lock);
    v->paused_count--;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *c = arg;
    struct kvm_vcpus *v = c->set;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kvm_vcpus_kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    for (;;) {
        pthread_mutex_lock(&v->lock);
        wait_while_paused(v);
        bool quit = v->quit;
        pthread_mutex_unlock(&v->lock);
        if (quit)
            break;
        if (ioctl(c->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                __atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            vcpu_fault(c, true, "KVM_RUN failed: %s", strerror(errno));
            break;
        }
        if (!handle_exit(c))
            break;
    }
    pthread_mutex_lock(&v->lock);
    v->exited_count++;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

vmk_result kvm_vcpus_start(struct kvm_vcpus *v, vmk_error **err)
{
    for (unsigned i = 0; i < v->count; i++) {
        struct vcpu *c = &v->vcpu[i];
        int e = pthread_create(&c->thread, NULL, vcpu_thread, c);
        if (e)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, e, "vCPU %u: cannot start thread: %s", i,
                            strerror(e));
        c->thread_started = true;
    }
    return VMK_OK;
}

static void kick_all(struct kvm_vcpus *v)
{
    for (unsigned i = 0; i < v->count; i++) {
        struct vcpu *c = &v->vcpu[i];
        if (!c->run || !c->thread_started)
            continue;
        __atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        pthread_kill(c->thread, kvm_vcpus_kick_signal());
    }
}

static unsigned running_threads(const struct kvm_vcpus *v)
{
    unsigned n = 0;
    for (unsigned i = 0; i < v->count; i++)
        n += v->vcpu[i].thread_started;
    return n;
}

void kvm_vcpus_pause(struct kvm_vcpus *v)
{
    pthread_mutex_lock(&v->lock);
    v->pause_requested = true;
    pthread_mutex_unlock(&v->lock);
    kick_all(v);
    unsigned threads = running_threads(v);
    pthread_mutex_lock(&v->lock);
    while (v->paused_count + v->exited_count < threads)
        pthread_cond_wait(&v->cond, &v->lock);
    pthread_mutex_unlock(&v->lock);
}

void kvm_vcpus_resume(struct kvm_vcpus *v)
{
    pthread_mutex_lock(&v->lock);
    v->pause_requested = false;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

void kvm_vcpus_quit(struct kvm_vcpus *v)
{
    pthread_mutex_lock(&v->lock);
    v->quit = true;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    kick_all(v);
}

void kvm_vcpus_free(struct kvm_vcpus *v)
{
    if (!v)
        return;
    kvm_vcpus_quit(v);
    for (unsigned i = 0; i < v->count; i++)
        if (v->vcpu[i].thread_started)
            pthread_join(v->vcpu[i].thread, NULL);
    for (unsigned i = 0; i < v->count; i++) {
        struct vcpu *c = &v->vcpu[i];
        if (c->run)
            munmap(c->run, v->run_size);
        if (c->fd >= 0)
            close(c->fd);
    }
    pthread_mutex_destroy(&v->lock);
    pthread_cond_destroy(&v->cond);
    free(v->vcpu);
    free(v);
}
