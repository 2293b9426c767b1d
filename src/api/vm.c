/* The VM object: a state machine driven by API calls and by the machine, run on
 * one library thread per VM. API calls post a command to that thread and wait for
 * its answer, so machine building, teardown and delegate callbacks are never
 * concurrent; vCPU threads report the guest's end through a one-slot mailbox. */
#include "api/config_internal.h"
#include "core/error.h"
#include "core/event_loop.h"
#include "api/vm_display.h"
#include "api/vm_sockets.h"
#include "machine/machine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum command_kind { CMD_START, CMD_PAUSE, CMD_RESUME, CMD_REQUEST_STOP, CMD_STOP, CMD_SHUTDOWN };

struct command {
    enum command_kind kind;
    vmk_result result;
    vmk_error *err;
    bool done;
    struct command *next;
};

struct vmk_vm {
    vmk_config *cfg;
    vmk_vm_delegate delegate;
    void *user;

    pthread_t thread;
    struct event_loop *el;
    int wake_fd;
    struct event_source wake_src;
    bool shutdown; /* VM thread only */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    vmk_vm_state state;
    bool busy; /* the VM thread is acting on a command or an end */
    struct command *queue_head;
    struct command *queue_tail;
    struct machine *machine;
    /* Copies of the machine's pty paths: serial ports, then console ports. */
    char *pty_path[VMK_MAX_SERIAL_PORTS + VMK_MAX_CONSOLE_PORTS];
    int debug_exit_code;
    vmk_stop_reason stop_reason; /* of the last run */
    vmk_error *error;            /* what the last run ended with, in ERROR */
    /* mailbox filled by the machine when the guest ends */
    bool end_pending;
    enum machine_end end_why;
    uint32_t end_code;
    vmk_error *end_err;
    /* Network attachments that lost or found their peer, set on the loop under a device's
     * lock (so without vm->lock) and reported to the delegate by the VM thread. */
    atomic_uint net_changed;     /* a bit per network device */
    atomic_uint net_connected;   /* the state each last reported */
    struct vm_sockets sockets;   /* the application's vsock listeners and connections */
    struct vm_displays displays; /* what the guest shows, for the display delegate */
};

const char *vmk_vm_state_string(vmk_vm_state state)
{
    switch (state) {
    case VMK_STATE_STOPPED: return "stopped";
    case VMK_STATE_STARTING: return "starting";
    case VMK_STATE_RUNNING: return "running";
    case VMK_STATE_PAUSING: return "pausing";
    case VMK_STATE_PAUSED: return "paused";
    case VMK_STATE_RESUMING: return "resuming";
    case VMK_STATE_STOPPING: return "stopping";
    case VMK_STATE_ERROR: return "error";
    case VMK_STATE_SAVING: return "saving";
    case VMK_STATE_RESTORING: return "restoring";
    }
    return "unknown";
}

static void wake(vmk_vm *vm);
static void wake_ctx(void *ctx)
{
    wake(ctx);
}

static void wake(vmk_vm *vm)
{
    uint64_t one = 1;
    if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
        /* eventfd writes fail only on counter overflow, and any value wakes the loop. */
    }
}

/* ---- VM thread ---- */

static void set_state(vmk_vm *vm, vmk_vm_state s)
{
    pthread_mutex_lock(&vm->lock);
    vm->state = s;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    if (vm->delegate.state_changed)
        vm->delegate.state_changed(vm, s, vm->user);
}

static void on_machine_end(void *ctx, enum machine_end why, uint32_t code, vmk_error *err)
{
    vmk_vm *vm = ctx;
    pthread_mutex_lock(&vm->lock);
    vm->end_pending = true;
    vm->end_why = why;
    vm->end_code = code;
    vm->end_err = err;
    pthread_mutex_unlock(&vm->lock);
    wake(vm);
}

/* machine_owner.socket_listener: the owner's ctx is the vm. */
static int vm_sockets_listener_of_vm(void *ctx, uint32_t port)
{
    vmk_vm *vm = ctx;
    return vm_sockets_listener(&vm->sockets, port);
}

static void on_attachment_changed(void *ctx, const struct device_kind *kind, unsigned index,
                                  bool connected, const char *why)
{
    vmk_vm *vm = ctx;
    (void)why;
    if (kind != &device_kind_virtio_network || index >= 32)
        return;
    if (connected)
        atomic_fetch_or(&vm->net_connected, 1u << index);
    else
        atomic_fetch_and(&vm->net_connected, ~(1u << index));
    atomic_fetch_or(&vm->net_changed, 1u << index);
    wake(vm);
}

/* Tells the delegate of each network attachment that changed (its state now: a quick
 * disconnect and reconnect may be reported as the reconnection alone). */
static void report_attachments(vmk_vm *vm)
{
    unsigned changed = atomic_exchange(&vm->net_changed, 0);
    unsigned connected = atomic_load(&vm->net_connected);
    for (unsigned i = 0; changed && i < 32; i++) {
        if (!(changed & (1u << i)))
            continue;
        if (vm->delegate.size >= offsetof(vmk_vm_delegate, network_attachment_changed) +
                                     sizeof(vm->delegate.network_attachment_changed) &&
            vm->delegate.network_attachment_changed)
            vm->delegate.network_attachment_changed(vm, i, (connected >> i) & 1, vm->user);
    }
}

static void destroy_machine(vmk_vm *vm)
{
    /* Detached under the lock first: callers on other threads (the guest's address, port
     * forwards) look the machine up under it and must never find one being freed. */
    pthread_mutex_lock(&vm->lock);
    struct machine *m = vm->machine;
    vm->machine = NULL;
    pthread_mutex_unlock(&vm->lock);
    if (m) /* what the guest showed last, for a screenshot once it is gone */
        vm_displays_keep_last(&vm->displays, machine_device(m, &device_kind_virtio_graphics, 0));
    machine_destroy(m); /* joins the vCPUs: no end can be reported after this */
    pthread_mutex_lock(&vm->lock);
    for (unsigned i = 0; i < sizeof(vm->pty_path) / sizeof(vm->pty_path[0]); i++) {
        free(vm->pty_path[i]);
        vm->pty_path[i] = NULL;
    }
    if (vm->end_pending) {
        vmk_error_free(vm->end_err);
        vm->end_err = NULL;
        vm->end_pending = false;
    }
    pthread_mutex_unlock(&vm->lock);
}

static vmk_result state_error(vmk_vm *vm, const char *op, vmk_error **err)
{
    return vmk_fail(err, VMK_ERR_INVALID_STATE, 0, "cannot %s: the VM is %s", op,
                    vmk_vm_state_string(vm->state));
}

static bool state_in(vmk_vm_state s, unsigned mask)
{
    return (mask >> s) & 1u;
}

#define S(x)             (1u << VMK_STATE_##x)
#define CAN_START        (S(STOPPED) | S(ERROR))
#define CAN_PAUSE        S(RUNNING)
#define CAN_RESUME       S(PAUSED)
#define CAN_REQUEST_STOP S(RUNNING)
#define CAN_STOP         (S(RUNNING) | S(PAUSED))

/* Kept here so that callers on any thread can read them without racing a stop. A path
 * that cannot be copied (out of memory) reads as none. */
static void copy_pty_paths(vmk_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    for (unsigned i = 0; i < VMK_MAX_SERIAL_PORTS + VMK_MAX_CONSOLE_PORTS; i++) {
        bool console = i >= VMK_MAX_SERIAL_PORTS;
        const char *p = console ? machine_device_pty_path(vm->machine, &device_kind_virtio_console,
                                                          0, i - VMK_MAX_SERIAL_PORTS)
                                : machine_serial_pty_path(vm->machine, i);
        vm->pty_path[i] = p ? strdup(p) : NULL;
    }
    pthread_mutex_unlock(&vm->lock);
}

static void set_stop_reason(vmk_vm *vm, vmk_stop_reason reason)
{
    pthread_mutex_lock(&vm->lock);
    vm->stop_reason = reason;
    pthread_mutex_unlock(&vm->lock);
}

static vmk_result do_start(vmk_vm *vm, vmk_error **err)
{
    if (!state_in(vm->state, CAN_START))
        return state_error(vm, "start", err);
    set_state(vm, VMK_STATE_STARTING);
    pthread_mutex_lock(&vm->lock);
    vm->debug_exit_code = -1;
    vm->stop_reason = VMK_STOP_REASON_NONE;
    vmk_error_free(vm->error);
    vm->error = NULL;
    pthread_mutex_unlock(&vm->lock);
    struct machine_owner owner = { .ended = on_machine_end,
                                   .attachment_changed = on_attachment_changed,
                                   .socket_listener = vm_sockets_listener_of_vm,
                                   .display_sink = &vm->displays.sink,
                                   .ctx = vm };
    vm_displays_started(&vm->displays);
    atomic_store(&vm->net_changed, 0);
    atomic_store(&vm->net_connected, ~0u);
    struct machine *m = NULL;
    vmk_result r = machine_create(vm->cfg, vm->el, &owner, &m, err);
    if (r == VMK_OK) {
        vm->machine = m;
        copy_pty_paths(vm);
        r = machine_start(m, err);
        if (r != VMK_OK)
            destroy_machine(vm);
    }
    set_state(vm, r == VMK_OK ? VMK_STATE_RUNNING : VMK_STATE_STOPPED);
    return r;
}

static vmk_result do_command(vmk_vm *vm, enum command_kind kind, vmk_error **err)
{
    switch (kind) {
    case CMD_START: return do_start(vm, err);
    case CMD_PAUSE:
        if (!state_in(vm->state, CAN_PAUSE))
            return state_error(vm, "pause", err);
        set_state(vm, VMK_STATE_PAUSING);
        machine_pause(vm->machine);
        set_state(vm, VMK_STATE_PAUSED);
        return VMK_OK;
    case CMD_RESUME:
        if (!state_in(vm->state, CAN_RESUME))
            return state_error(vm, "resume", err);
        set_state(vm, VMK_STATE_RESUMING);
        machine_resume(vm->machine);
        set_state(vm, VMK_STATE_RUNNING);
        return VMK_OK;
    case CMD_REQUEST_STOP:
        if (!state_in(vm->state, CAN_REQUEST_STOP))
            return state_error(vm, "request a stop", err);
        machine_press_power_button(vm->machine);
        return VMK_OK;
    case CMD_STOP:
        if (!state_in(vm->state, CAN_STOP))
            return state_error(vm, "stop", err);
        set_state(vm, VMK_STATE_STOPPING);
        destroy_machine(vm);
        set_stop_reason(vm, VMK_STOP_REASON_HOST_STOP);
        set_state(vm, VMK_STATE_STOPPED);
        return VMK_OK;
    case CMD_SHUTDOWN:
        if (vm->machine) {
            set_state(vm, VMK_STATE_STOPPING);
            destroy_machine(vm);
            set_stop_reason(vm, VMK_STOP_REASON_HOST_STOP);
            set_state(vm, VMK_STATE_STOPPED);
        }
        vm->shutdown = true;
        return VMK_OK;
    }
    return vmk_fail(err, VMK_ERR_INTERNAL, 0, "unknown command %d", (int)kind);
}

/* The guest (or the console escape) ended the machine. */
static void handle_end(vmk_vm *vm, enum machine_end why, uint32_t code, vmk_error *end_err)
{
    if (!vm->machine) {
        vmk_error_free(end_err);
        return;
    }
    /* The guest already stopped itself: no STOPPING, straight to the end state. */
    destroy_machine(vm);
    if (why == MACHINE_END_FAULT) {
        if (!end_err)
            end_err = vmk_error_new(VMK_ERR_INTERNAL, 0, "the machine failed (out of memory)");
        pthread_mutex_lock(&vm->lock);
        vm->stop_reason = VMK_STOP_REASON_ERROR;
        vm->error = end_err;
        pthread_mutex_unlock(&vm->lock);
        set_state(vm, VMK_STATE_ERROR);
        if (vm->delegate.did_stop_with_error)
            vm->delegate.did_stop_with_error(vm, end_err, vm->user);
        return;
    }
    static const vmk_stop_reason reasons[] = {
        [MACHINE_END_POWER_OFF] = VMK_STOP_REASON_GUEST_POWER_OFF,
        [MACHINE_END_RESET] = VMK_STOP_REASON_GUEST_RESET,
        [MACHINE_END_DEBUG_EXIT] = VMK_STOP_REASON_GUEST_DEBUG_EXIT,
        [MACHINE_END_ESCAPE] = VMK_STOP_REASON_CONSOLE_ESCAPE,
    };
    pthread_mutex_lock(&vm->lock);
    if (why == MACHINE_END_DEBUG_EXIT)
        vm->debug_exit_code = (int)(code & 0x7fffffff);
    vm->stop_reason = reasons[why];
    pthread_mutex_unlock(&vm->lock);
    vmk_error_free(end_err);
    set_state(vm, VMK_STATE_STOPPED);
    /* A console escape is the host stopping the VM, not the guest. */
    if (why != MACHINE_END_ESCAPE && vm->delegate.guest_did_stop)
        vm->delegate.guest_did_stop(vm, vm->user);
}

static void set_busy(vmk_vm *vm, bool busy)
{
    pthread_mutex_lock(&vm->lock);
    vm->busy = busy;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

static void process(vmk_vm *vm)
{
    for (;;) {
        pthread_mutex_lock(&vm->lock);
        struct command *c = vm->queue_head;
        bool end = vm->end_pending && !c;
        enum machine_end why = vm->end_why;
        uint32_t code = vm->end_code;
        vmk_error *end_err = vm->end_err;
        if (c) {
            vm->queue_head = c->next;
            if (!vm->queue_head)
                vm->queue_tail = NULL;
        } else if (end) {
            vm->end_pending = false;
            vm->end_err = NULL;
        }
        vm->busy = c || end;
        pthread_mutex_unlock(&vm->lock);
        if (!c && !end)
            return;
        if (end) {
            handle_end(vm, why, code, end_err);
            set_busy(vm, false);
            continue;
        }
        vmk_error *err = NULL;
        vmk_result r = do_command(vm, c->kind, &err);
        pthread_mutex_lock(&vm->lock);
        c->result = r;
        c->err = err;
        c->done = true;
        vm->busy = false;
        pthread_cond_broadcast(&vm->cond);
        pthread_mutex_unlock(&vm->lock);
        if (vm->shutdown)
            return;
    }
}

static void on_wake(void *ctx, uint32_t events)
{
    vmk_vm *vm = ctx;
    uint64_t v;
    if (read(vm->wake_fd, &v, sizeof(v)) < 0) {
        /* Nonblocking: EAGAIN means another wake already drained it. */
    }
}

static void *vm_thread_main(void *arg)
{
    vmk_vm *vm = arg;
    while (!vm->shutdown) {
        event_loop_run_once(vm->el, -1);
        report_attachments(vm);
        vm_sockets_deliver(&vm->sockets, vm);
        vm_displays_deliver(&vm->displays, vm);
        process(vm);
    }
    return NULL;
}

/* ---- API ---- */

static vmk_result submit(vmk_vm *vm, enum command_kind kind, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    if (pthread_equal(pthread_self(), vm->thread))
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "this call is not allowed from a delegate callback");
    /* On the stack: this call waits until the VM thread has answered and unlinked it. */
    struct command c = { .kind = kind };
    pthread_mutex_lock(&vm->lock);
    if (vm->queue_tail)
        vm->queue_tail->next = &c; // cppcheck-suppress autoVariables
    else
        vm->queue_head = &c; // cppcheck-suppress autoVariables
    vm->queue_tail = &c;     // cppcheck-suppress autoVariables
    pthread_mutex_unlock(&vm->lock);
    wake(vm);
    pthread_mutex_lock(&vm->lock);
    while (!c.done)
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
    if (c.err) {
        if (err && !*err)
            *err = c.err;
        else
            vmk_error_free(c.err);
    }
    return c.result;
}

vmk_vm *vmk_vm_new(const vmk_config *cfg, vmk_error **err)
{
    if (vmk_config_validate(cfg, err) != VMK_OK)
        return NULL;
    vmk_vm *vm = calloc(1, sizeof(*vm));
    if (!vm || !(vm->cfg = config_copy(cfg))) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vm: out of memory");
        goto fail;
    }
    vm->state = VMK_STATE_STOPPED;
    vm->debug_exit_code = -1;
    vm->wake_fd = -1;
    int e = event_loop_new(&vm->el);
    if (e < 0) {
        vmk_fail(err, VMK_ERR_IO, -e, "vm: cannot create event loop: %s", strerror(-e));
        goto fail;
    }
    vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->wake_fd < 0) {
        vmk_fail(err, VMK_ERR_IO, errno, "vm: eventfd: %s", strerror(errno));
        goto fail;
    }
    vm->wake_src = (struct event_source){ .fd = vm->wake_fd, .handler = on_wake, .ctx = vm };
    if ((e = event_loop_add(vm->el, &vm->wake_src)) < 0) {
        vmk_fail(err, VMK_ERR_IO, -e, "vm: epoll: %s", strerror(-e));
        goto fail;
    }
    pthread_mutex_init(&vm->lock, NULL);
    vm_sockets_init(&vm->sockets, wake_ctx, vm);
    vm_displays_init(&vm->displays, vmk_vm_display_count(vm), wake_ctx, vm);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* vmk_vm_wait's deadline */
    pthread_cond_init(&vm->cond, &ca);
    pthread_condattr_destroy(&ca);

    /* The VM thread and the vCPU threads it makes take no process signals: those
     * belong to the application. vCPUs unblock only their kick signal. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&vm->thread, NULL, vm_thread_main, vm);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        pthread_mutex_destroy(&vm->lock);
        pthread_cond_destroy(&vm->cond);
        vm_sockets_fini(&vm->sockets);
        vm_displays_fini(&vm->displays);
        vmk_fail(err, VMK_ERR_NO_MEMORY, e, "vm: cannot start thread: %s", strerror(e));
        goto fail;
    }
    return vm;
fail:
    if (vm) {
        if (vm->wake_fd >= 0)
            close(vm->wake_fd);
        event_loop_free(vm->el);
        vmk_config_free(vm->cfg);
        free(vm);
    }
    return NULL;
}

void vmk_vm_free(vmk_vm *vm)
{
    if (!vm)
        return;
    /* From a callback this would join the calling thread: refuse (documented). */
    if (pthread_equal(pthread_self(), vm->thread))
        return;
    submit(vm, CMD_SHUTDOWN, NULL);
    pthread_join(vm->thread, NULL);
    close(vm->wake_fd);
    event_loop_free(vm->el);
    vmk_error_free(vm->end_err);
    vmk_error_free(vm->error);
    vmk_config_free(vm->cfg);
    vm_sockets_fini(&vm->sockets);
    vm_displays_fini(&vm->displays);
    pthread_mutex_destroy(&vm->lock);
    pthread_cond_destroy(&vm->cond);
    free(vm);
}

/* The first version of vmk_vm_delegate ends after did_stop_with_error. */
#define DELEGATE_V1_SIZE (offsetof(vmk_vm_delegate, did_stop_with_error) + sizeof(void (*)(void)))

vmk_result vmk_vm_set_delegate(vmk_vm *vm, const vmk_vm_delegate *d, void *user)
{
    if (!vm || (d && d->size < DELEGATE_V1_SIZE))
        return VMK_ERR_INVALID_ARGUMENT;
    vmk_vm_delegate copy = { .size = sizeof(copy) };
    if (d)
        memcpy(&copy, d, d->size < sizeof(copy) ? d->size : sizeof(copy));
    copy.size = sizeof(copy);
    pthread_mutex_lock(&vm->lock);
    vm->delegate = copy;
    vm->user = user;
    pthread_mutex_unlock(&vm->lock);
    return VMK_OK;
}

vmk_vm_state vmk_vm_get_state(const vmk_vm *vm)
{
    if (!vm)
        return VMK_STATE_STOPPED;
    vmk_vm *m = (vmk_vm *)vm;
    pthread_mutex_lock(&m->lock);
    vmk_vm_state s = m->state;
    pthread_mutex_unlock(&m->lock);
    return s;
}

static bool can(const vmk_vm *vm, unsigned mask)
{
    return vm && state_in(vmk_vm_get_state(vm), mask);
}

bool vmk_vm_can_start(const vmk_vm *vm)
{
    return can(vm, CAN_START);
}
bool vmk_vm_can_pause(const vmk_vm *vm)
{
    return can(vm, CAN_PAUSE);
}
bool vmk_vm_can_resume(const vmk_vm *vm)
{
    return can(vm, CAN_RESUME);
}
bool vmk_vm_can_request_stop(const vmk_vm *vm)
{
    return can(vm, CAN_REQUEST_STOP);
}
bool vmk_vm_can_stop(const vmk_vm *vm)
{
    return can(vm, CAN_STOP);
}

vmk_result vmk_vm_start(vmk_vm *vm, vmk_error **err)
{
    return submit(vm, CMD_START, err);
}
vmk_result vmk_vm_pause(vmk_vm *vm, vmk_error **err)
{
    return submit(vm, CMD_PAUSE, err);
}
vmk_result vmk_vm_resume(vmk_vm *vm, vmk_error **err)
{
    return submit(vm, CMD_RESUME, err);
}
vmk_result vmk_vm_request_stop(vmk_vm *vm, vmk_error **err)
{
    return submit(vm, CMD_REQUEST_STOP, err);
}
vmk_result vmk_vm_stop(vmk_vm *vm, vmk_error **err)
{
    return submit(vm, CMD_STOP, err);
}

vmk_result vmk_vm_wait(vmk_vm *vm, int timeout_ms)
{
    if (!vm)
        return VMK_ERR_INVALID_ARGUMENT;
    /* The callbacks run on the VM thread: waiting there would wait for itself. */
    if (pthread_equal(pthread_self(), vm->thread))
        return VMK_ERR_INVALID_STATE;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    vmk_result r = VMK_OK;
    pthread_mutex_lock(&vm->lock);
    /* Settled means no end is still being handled, so callbacks have run. */
    while (!(state_in(vm->state, S(STOPPED) | S(ERROR)) && !vm->busy && !vm->end_pending)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&vm->cond, &vm->lock);
        } else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT) {
            r = VMK_ERR_TIMEOUT;
            break;
        }
    }
    if (r == VMK_OK && vm->state == VMK_STATE_ERROR)
        r = vm->error ? vmk_error_code(vm->error) : VMK_ERR_INTERNAL;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

vmk_stop_reason vmk_vm_get_stop_reason(const vmk_vm *vm)
{
    if (!vm)
        return VMK_STOP_REASON_NONE;
    vmk_vm *m = (vmk_vm *)vm;
    pthread_mutex_lock(&m->lock);
    vmk_stop_reason r = m->stop_reason;
    pthread_mutex_unlock(&m->lock);
    return r;
}

vmk_error *vmk_vm_copy_error(const vmk_vm *vm)
{
    if (!vm)
        return NULL;
    vmk_vm *m = (vmk_vm *)vm;
    pthread_mutex_lock(&m->lock);
    vmk_error *e = vmk_error_copy(m->error);
    pthread_mutex_unlock(&m->lock);
    return e;
}

const char *vmk_stop_reason_string(vmk_stop_reason reason)
{
    switch (reason) {
    case VMK_STOP_REASON_NONE: return "none";
    case VMK_STOP_REASON_GUEST_POWER_OFF: return "the guest powered off";
    case VMK_STOP_REASON_GUEST_RESET: return "the guest reset";
    case VMK_STOP_REASON_GUEST_DEBUG_EXIT: return "the guest wrote the debug-exit port";
    case VMK_STOP_REASON_HOST_STOP: return "stopped by the host";
    case VMK_STOP_REASON_CONSOLE_ESCAPE: return "stopped from the console (Ctrl-A x)";
    case VMK_STOP_REASON_ERROR: return "error";
    }
    return "unknown";
}

int vmk_vm_kick_signal(void)
{
    return machine_kick_signal();
}

int vmk_vm_get_debug_exit_code(const vmk_vm *vm)
{
    if (!vm)
        return -1;
    vmk_vm *m = (vmk_vm *)vm;
    pthread_mutex_lock(&m->lock);
    int code = m->debug_exit_code;
    pthread_mutex_unlock(&m->lock);
    return code;
}

static char *copy_pty_path(vmk_vm *vm, unsigned slot)
{
    if (!vm)
        return NULL;
    pthread_mutex_lock(&vm->lock);
    char *p = vm->pty_path[slot] ? strdup(vm->pty_path[slot]) : NULL;
    pthread_mutex_unlock(&vm->lock);
    return p;
}

char *vmk_vm_copy_network_device_ipv4_address(vmk_vm *vm, unsigned index)
{
    if (!vm)
        return NULL;
    pthread_mutex_lock(&vm->lock);
    uint32_t a = machine_device_guest_ipv4(vm->machine, &device_kind_virtio_network, index);
    pthread_mutex_unlock(&vm->lock);
    char buf[INET_ADDRSTRLEN];
    if (!a || !inet_ntop(AF_INET, &a, buf, sizeof(buf)))
        return NULL;
    return strdup(buf);
}

static vmk_result port_forward(vmk_vm *vm, unsigned index, bool add,
                               vmk_port_forward_protocol protocol, const char *host_address,
                               unsigned host_port, unsigned guest_port, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    if (protocol != VMK_PORT_FORWARD_TCP && protocol != VMK_PORT_FORWARD_UDP)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "network device %u: protocol %d",
                        index + 1, (int)protocol);
    if (host_port < 1 || host_port > 65535 || (add && (guest_port < 1 || guest_port > 65535)))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "network device %u: ports are 1..65535 (host %u, guest %u)", index + 1,
                        host_port, guest_port);
    pthread_mutex_lock(&vm->lock);
    vmk_result r;
    if (!vm->machine || !state_in(vm->state, S(RUNNING) | S(PAUSED)))
        r = vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                     "network device %u: port forwards change while the VM runs (it is %s)",
                     index + 1, vmk_vm_state_string(vm->state));
    else
        r = machine_device_port_forward(vm->machine, &device_kind_virtio_network, index, add,
                                        protocol == VMK_PORT_FORWARD_UDP, host_address, host_port,
                                        guest_port, err);
    pthread_mutex_unlock(&vm->lock);
    return r;
}

vmk_result vmk_vm_add_port_forward(vmk_vm *vm, unsigned index, vmk_port_forward_protocol protocol,
                                   const char *host_address, unsigned host_port,
                                   unsigned guest_port, vmk_error **err)
{
    return port_forward(vm, index, true, protocol, host_address, host_port, guest_port, err);
}

vmk_result vmk_vm_remove_port_forward(vmk_vm *vm, unsigned index,
                                      vmk_port_forward_protocol protocol, const char *host_address,
                                      unsigned host_port, vmk_error **err)
{
    return port_forward(vm, index, false, protocol, host_address, host_port, 0, err);
}

/* USB plugging runs under the VM's lock: the machine cannot go away meanwhile. */
static vmk_result usb_plug(vmk_vm *vm, const vmk_storage_device *dev, unsigned port,
                           unsigned *port_out, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "USB: no VM");
    pthread_mutex_lock(&vm->lock);
    vmk_result r;
    if (!vm->machine || !state_in(vm->state, S(RUNNING) | S(PAUSED)))
        r = vmk_fail(err, VMK_ERR_INVALID_STATE, 0, "USB: cannot plug a drive %s: the VM is %s",
                     dev ? "in" : "out", vmk_vm_state_string(vm->state));
    else if (dev)
        r = machine_usb_attach(vm->machine, dev, port_out, err);
    else
        r = machine_usb_detach(vm->machine, port, err);
    pthread_mutex_unlock(&vm->lock);
    return r;
}

vmk_result vmk_vm_usb_attach(vmk_vm *vm, const vmk_storage_device *dev, unsigned *port,
                             vmk_error **err)
{
    if (!dev)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "USB: no storage device to plug in");
    return usb_plug(vm, dev, 0, port, err);
}

vmk_result vmk_vm_usb_detach(vmk_vm *vm, unsigned port, vmk_error **err)
{
    return usb_plug(vm, NULL, port, NULL, err);
}

vmk_result vm_usb_send_key(vmk_vm *vm, uint16_t code, bool pressed, vmk_error **err)
{
    pthread_mutex_lock(&vm->lock);
    vmk_result r;
    if (!vm->machine || !state_in(vm->state, S(RUNNING) | S(PAUSED)))
        r = vmk_fail(err, VMK_ERR_INVALID_STATE, 0, "cannot send input: the VM is %s",
                     vmk_vm_state_string(vm->state));
    else
        r = machine_usb_send_key(vm->machine, code, pressed, err);
    pthread_mutex_unlock(&vm->lock);
    return r;
}

vmk_result vm_with_device(vmk_vm *vm, const struct device_kind *kind, unsigned index,
                          const char *op, int (*fn)(struct device_instance *inst, void *arg),
                          void *arg, int *ret, vmk_error **err)
{
    pthread_mutex_lock(&vm->lock);
    struct device_instance *inst = vm->machine && state_in(vm->state, S(RUNNING) | S(PAUSED))
                                       ? machine_device(vm->machine, kind, index)
                                       : NULL;
    if (inst)
        *ret = fn(inst, arg);
    vmk_vm_state state = vm->state;
    pthread_mutex_unlock(&vm->lock);
    if (!inst)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0, "cannot %s: the VM is %s", op,
                        vmk_vm_state_string(state));
    return VMK_OK;
}

struct vm_displays *vm_displays_of(vmk_vm *vm)
{
    return &vm->displays;
}

const vmk_config *vm_config_of(const vmk_vm *vm)
{
    return vm->cfg;
}

/* The machine's balloon while the VM runs or is paused, else NULL; under vm->lock. */
static struct device_instance *running_balloon(vmk_vm *vm)
{
    if (!vm->machine || !state_in(vm->state, S(RUNNING) | S(PAUSED)))
        return NULL;
    return machine_device(vm->machine, &device_kind_virtio_balloon, 0);
}

vmk_result vmk_vm_set_target_memory_size(vmk_vm *vm, uint64_t bytes, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    uint64_t size = vm->cfg->memory_size;
    if (bytes % VMK_MEMORY_ALIGN)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "memory balloon: target %llu bytes is not a whole number of MiB",
                        (unsigned long long)bytes);
    if (bytes < VMK_MIN_MEMORY || bytes > size)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "memory balloon: target %llu MiB is out of range [%llu MiB, %llu MiB] "
                        "(the machine's memory)",
                        (unsigned long long)(bytes >> 20),
                        (unsigned long long)(VMK_MIN_MEMORY >> 20),
                        (unsigned long long)(size >> 20));
    if (vmk_config_memory_balloon_device_count(vm->cfg) == 0)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "memory balloon: the configuration has no memory balloon device");
    pthread_mutex_lock(&vm->lock);
    struct device_instance *b = running_balloon(vm);
    if (b)
        b->kind->balloon_set_target(b, (uint32_t)((size - bytes) >> 12));
    vmk_vm_state state = vm->state;
    pthread_mutex_unlock(&vm->lock);
    if (!b)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "memory balloon: the target changes while the VM runs (it is %s)",
                        vmk_vm_state_string(state));
    return VMK_OK;
}

/* The balloon's target and actual size in pages; false when there is none running. */
static bool balloon_pages(vmk_vm *vm, uint32_t *target, uint32_t *actual)
{
    if (!vm)
        return false;
    pthread_mutex_lock(&vm->lock);
    struct device_instance *b = running_balloon(vm);
    if (b)
        b->kind->balloon_pages(b, target, actual);
    pthread_mutex_unlock(&vm->lock);
    return b != NULL;
}

uint64_t vmk_vm_get_target_memory_size(vmk_vm *vm)
{
    uint32_t target, actual;
    if (!balloon_pages(vm, &target, &actual))
        return 0;
    return vm->cfg->memory_size - ((uint64_t)target << 12);
}

uint64_t vmk_vm_get_balloon_memory_size(vmk_vm *vm)
{
    uint32_t target, actual;
    if (!balloon_pages(vm, &target, &actual))
        return 0;
    uint64_t bytes = (uint64_t)actual << 12;
    /* actual is the guest's word: never more than its RAM. */
    return bytes < vm->cfg->memory_size ? bytes : vm->cfg->memory_size;
}

vmk_result vmk_vm_connect_socket(vmk_vm *vm, uint32_t port, vmk_socket_connected done, void *user,
                                 vmk_error **err)
{
    if (!vm || !done)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s is NULL", vm ? "done" : "vm");
    if (port == 0 || port > VMK_VSOCK_MAX_PORT)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "socket device: port %u is out of range [1, %u]", port, VMK_VSOCK_MAX_PORT);
    if (vmk_config_socket_device_count(vm->cfg) == 0)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "socket device: the configuration has no socket device");
    struct vsock_pending *p = NULL;
    int fd = vm_sockets_connection(&vm->sockets, port, done, user, &p);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, -fd, "socket device: %s", strerror(-fd));
    pthread_mutex_lock(&vm->lock);
    int rc = -ENOTCONN;
    vmk_vm_state state = vm->state;
    struct device_instance *inst = vm->machine && state_in(state, S(RUNNING) | S(PAUSED))
                                       ? machine_device(vm->machine, &device_kind_virtio_socket, 0)
                                       : NULL;
    if (inst)
        rc = inst->kind->socket_connect(inst, fd, port, p); /* owns fd from here */
    else
        close(fd);
    pthread_mutex_unlock(&vm->lock);
    if (rc == 0)
        return VMK_OK;
    vm_sockets_abandon(p);
    if (!inst)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "socket device: connections are made while the VM runs (it is %s)",
                        vmk_vm_state_string(state));
    if (rc == -ENOTCONN)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "socket device: the guest's driver has not started it");
    return vmk_fail(err, VMK_ERR_IO, -rc, "socket device: port %u: %s", port, strerror(-rc));
}

vmk_result vmk_vm_set_socket_listener(vmk_vm *vm, uint32_t port, vmk_socket_accept accept,
                                      void *user, vmk_error **err)
{
    if (!vm)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vm is NULL");
    if (port == 0 || port > VMK_VSOCK_MAX_PORT)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "socket device: port %u is out of range [1, %u]", port, VMK_VSOCK_MAX_PORT);
    return vm_sockets_set_listener(&vm->sockets, port, accept, user, err);
}

char *vmk_vm_copy_serial_port_pty_path(vmk_vm *vm, unsigned index)
{
    return index < VMK_MAX_SERIAL_PORTS ? copy_pty_path(vm, index) : NULL;
}

char *vmk_vm_copy_console_port_pty_path(vmk_vm *vm, unsigned index)
{
    return index < VMK_MAX_CONSOLE_PORTS ? copy_pty_path(vm, VMK_MAX_SERIAL_PORTS + index) : NULL;
}
