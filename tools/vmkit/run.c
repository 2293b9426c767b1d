/* vmkit run: build the machine, start it, wait for it to stop; SIGINT, SIGTERM and SIGHUP
 * press the power button, and the VM is stopped hard on a second signal or once the guest has
 * had --stop-timeout seconds to power off. --control-socket's commands act on the VM here. */
#include "run.h"
#include "control.h"
#include "report.h"
#ifdef VMKIT_HAVE_VNC
#include "vnc.h"
#endif
#ifdef VMKIT_HAVE_GUI
#include "gui.h"
#endif

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* The stop signals are blocked everywhere and read from a signalfd by one thread, so no
 * library call ever runs in a signal handler. */
struct signal_watch {
    vmk_vm *vm;
    unsigned stop_timeout; /* seconds */
    int sig_fd;
    int quit_fd; /* an eventfd: main tells the thread to end */
    pthread_mutex_t lock;
    int forced_by;     /* the signal whose hard stop ended the VM, or 0 */
    bool control_stop; /* stop on the control socket ended it */
};

static void stop_hard(struct signal_watch *w, int signo)
{
    vmk_error *err = NULL;
    pthread_mutex_lock(&w->lock);
    w->forced_by = signo;
    pthread_mutex_unlock(&w->lock);
    if (vmk_vm_stop(w->vm, &err) != VMK_OK && vmk_vm_can_stop(w->vm))
        say("cannot stop the VM: %s", vmk_error_message(err));
    vmk_error_free(err);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *signal_thread(void *arg)
{
    struct signal_watch *w = arg;
    int first = 0;        /* the signal that pressed the power button */
    int64_t deadline = 0; /* when the guest's time to power off runs out */
    for (;;) {
        struct pollfd fds[2] = { { .fd = w->sig_fd, .events = POLLIN },
                                 { .fd = w->quit_fd, .events = POLLIN } };
        int timeout = -1;
        if (first) {
            int64_t left = deadline - now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        int n = poll(fds, 2, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            say("cannot wait for signals: %s", strerror(errno));
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
        if (n == 0) {
            if (vmk_vm_can_stop(w->vm)) {
                say("the guest did not power off within %u s; stopping the VM", w->stop_timeout);
                stop_hard(w, first);
            }
            first = 0;
            continue;
        }
        struct signalfd_siginfo si;
        if (!(fds[0].revents & POLLIN) || read(w->sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        int signo = (int)si.ssi_signo;
        if (!first && w->stop_timeout > 0 && vmk_vm_can_request_stop(w->vm)) {
            say("%s: asking the guest to power off (%u s, or again to force)", signal_name(signo),
                w->stop_timeout);
            vmk_error *err = NULL;
            if (vmk_vm_request_stop(w->vm, &err) == VMK_OK) {
                first = signo;
                deadline = now_ms() + (int64_t)w->stop_timeout * 1000;
            } else {
                say("cannot press the power button (%s); stopping the VM", vmk_error_message(err));
                stop_hard(w, signo);
            }
            vmk_error_free(err);
        } else if (vmk_vm_can_stop(w->vm)) {
            say("%s: stopping the VM", signal_name(signo));
            stop_hard(w, signo);
        }
    }
}

/* ---- The control socket's commands (control.h), on its thread; user: the watch ---- */

/* 0, or -1 with err's message in msg. */
static int control_result(vmk_result r, vmk_error *err, char *msg, size_t len)
{
    if (r != VMK_OK)
        snprintf(msg, len, "%s", err ? vmk_error_message(err) : vmk_result_string(r));
    vmk_error_free(err);
    return r == VMK_OK ? 0 : -1;
}

static int control_usb_attach(void *user, const struct cli_disk *drive, unsigned *port, char *msg,
                              size_t len)
{
    struct signal_watch *w = user;
    vmk_error *err = NULL;
    /* The VM opens the image now and keeps its own copy of the device. */
    vmk_storage_device *dev = cli_storage_device_new(drive);
    vmk_result r = dev ? vmk_vm_usb_attach(w->vm, dev, port, &err) : VMK_ERR_NO_MEMORY;
    vmk_storage_device_free(dev);
    if (r == VMK_OK)
        say("control socket: USB drive %s on port %u", drive->path, *port);
    return control_result(r, err, msg, len);
}

static int control_usb_detach(void *user, unsigned port, char *msg, size_t len)
{
    struct signal_watch *w = user;
    vmk_error *err = NULL;
    vmk_result r = vmk_vm_usb_detach(w->vm, port, &err);
    if (r == VMK_OK)
        say("control socket: USB drive on port %u pulled out", port);
    return control_result(r, err, msg, len);
}

static int control_act(void *user, enum control_action action, char *msg, size_t len)
{
    struct signal_watch *w = user;
    vmk_error *err = NULL;
    vmk_result r = VMK_ERR_INVALID_ARGUMENT;
    switch (action) {
    case CONTROL_PAUSE: r = vmk_vm_pause(w->vm, &err); break;
    case CONTROL_RESUME: r = vmk_vm_resume(w->vm, &err); break;
    case CONTROL_POWER_BUTTON:
        say("control socket: asking the guest to power off");
        r = vmk_vm_request_stop(w->vm, &err);
        break;
    case CONTROL_STOP:
        say("control socket: stopping the VM");
        pthread_mutex_lock(&w->lock);
        w->control_stop = true;
        pthread_mutex_unlock(&w->lock);
        r = vmk_vm_stop(w->vm, &err);
        break;
    }
    return control_result(r, err, msg, len);
}

static const char *control_state(void *user)
{
    const struct signal_watch *w = user;
    return vmk_vm_state_string(vmk_vm_get_state(w->vm));
}

static const struct control_ops control_vm_ops = { .usb_attach = control_usb_attach,
                                                   .usb_detach = control_usb_detach,
                                                   .act = control_act,
                                                   .state = control_state };

/* Where each pty port is: the user opens these paths once the VM is up. */
static void say_pty_paths(const struct cli_request *req, vmk_vm *vm)
{
    char label[320];
    for (unsigned i = 0; i < vmk_config_max_serial_port_count(); i++) {
        char *path = vmk_vm_copy_serial_port_pty_path(vm, i);
        cli_port_label(req, false, i, label, sizeof(label));
        if (path)
            say("%s on %s", label, path);
        free(path);
    }
    for (unsigned i = 0; i < req->console_port_count; i++) {
        char *path = vmk_vm_copy_console_port_pty_path(vm, i);
        cli_port_label(req, true, i, label, sizeof(label));
        if (path)
            say("%s on %s", label, path);
        free(path);
    }
}

static void on_network_attachment_changed(vmk_vm *vm, unsigned index, bool connected, void *user)
{
    (void)vm, (void)user;
    say("virtio-net %u: %s", index + 1,
        connected ? "link up: its peer is back" : "link down: its peer went away");
}

/* Waits for the VM to stop, saying each network device's guest address once it is known. */
static vmk_result wait_saying_addresses(const struct cli_request *req, vmk_vm *vm)
{
    bool said[32] = { false };
    unsigned left = req->net_count < 32 ? req->net_count : 32;
    while (left > 0) {
        vmk_result r = vmk_vm_wait(vm, 250);
        if (r != VMK_ERR_TIMEOUT)
            return r;
        for (unsigned i = 0; i < req->net_count && i < 32; i++) {
            char *a = said[i] ? NULL : vmk_vm_copy_network_device_ipv4_address(vm, i);
            if (a) {
                say("virtio-net %u: guest %s", i + 1, a);
                said[i] = true;
                left--;
            }
            free(a);
        }
    }
    return vmk_vm_wait(vm, -1);
}

/* Why the VM could not start, with what to do about the host. */
static void say_start_error(const struct cli_request *req, const vmk_error *err)
{
    if (vmk_error_code(err) == VMK_ERR_UNSUPPORTED && vmk_host_probe() == VMK_HOST_PVM && !req->efi)
        say("%s; vmkit's source tree boots the default guest inside an emulated machine "
            "instead: ./setup.sh",
            vmk_error_message(err));
    else
        say_lines(vmk_error_message(err));
}

/* The exit status once the VM stopped (cli.h's table). control_stop: stop on the control
 * socket asked for it, which is no failure. */
static int exit_status(vmk_vm *vm, int forced_by, bool control_stop)
{
    vmk_error *err = vmk_vm_copy_error(vm);
    int status = CLI_EXIT_OK;
    switch (vmk_vm_get_stop_reason(vm)) {
    case VMK_STOP_REASON_ERROR:
        say_lines(err ? vmk_error_message(err) : "the VM stopped with an error");
        status = CLI_EXIT_ERROR;
        break;
    case VMK_STOP_REASON_GUEST_DEBUG_EXIT: status = vmk_vm_get_debug_exit_code(vm) & 0xff; break;
    case VMK_STOP_REASON_CONSOLE_ESCAPE: status = CLI_EXIT_ESCAPE; break;
    case VMK_STOP_REASON_HOST_STOP:
        status = control_stop && !forced_by ? CLI_EXIT_OK : CLI_EXIT_SIGNAL + forced_by;
        break;
    default: status = CLI_EXIT_OK; /* powered off or reset */
    }
    vmk_error_free(err);
    return status;
}

/* The views of display 0 (--vnc, --gui): one display delegate passes the guest's changes to
 * each. */
struct views {
    vmk_vm *vm;
#ifdef VMKIT_HAVE_VNC
    struct vnc_view *vnc;
#endif
#ifdef VMKIT_HAVE_GUI
    struct gui_view *gui;
    bool close_pressed; /* the window was closed once: the power button was pressed */
#endif
};

static void on_mode_changed(vmk_vm *vm, unsigned display, uint32_t w, uint32_t h, void *user)
{
    struct views *v = user;
    (void)vm, (void)v, (void)w, (void)h;
    if (display != 0)
        return;
#ifdef VMKIT_HAVE_VNC
    if (v->vnc)
        vnc_view_mode_changed(v->vnc, w, h);
#endif
#ifdef VMKIT_HAVE_GUI
    if (v->gui)
        gui_view_mode_changed(v->gui, w, h);
#endif
}

static void on_updated(vmk_vm *vm, unsigned display, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                       void *user)
{
    struct views *v = user;
    (void)vm, (void)v, (void)x, (void)y, (void)w, (void)h;
    if (display != 0)
        return;
#ifdef VMKIT_HAVE_VNC
    if (v->vnc)
        vnc_view_updated(v->vnc, x, y, w, h);
#endif
#ifdef VMKIT_HAVE_GUI
    if (v->gui)
        gui_view_updated(v->gui);
#endif
}

#ifdef VMKIT_HAVE_GUI
/* Closing the window presses the power button; closing it again stops the VM. */
static void on_window_closed(void *user)
{
    struct views *v = user;
    vmk_error *err = NULL;
    if (!v->close_pressed && vmk_vm_can_request_stop(v->vm) &&
        vmk_vm_request_stop(v->vm, &err) == VMK_OK) {
        say("window closed: asking the guest to power off (close it again to force)");
        v->close_pressed = true;
    } else if (vmk_vm_can_stop(v->vm)) {
        say("window closed: stopping the VM");
        vmk_vm_stop(v->vm, NULL);
    }
    vmk_error_free(err);
}
#endif

/* --vnc and --gui: start before the VM, so a taken port or a missing X display fails the run
 * before the guest boots, and the first mode the guest sets is seen. */
static bool start_views(const struct cli_request *req, vmk_vm *vm, struct views *v)
{
    char msg[1024];
    v->vm = vm;
#ifdef VMKIT_HAVE_VNC
    if (req->vnc) {
        v->vnc = vnc_view_start(vm, req->vnc, req->vnc_password_file, req->web, msg, sizeof(msg));
        if (!v->vnc) {
            say("%s", msg);
            return false;
        }
        say("VNC on %s", vnc_view_address(v->vnc));
        if (req->web && vnc_view_web_url(v->vnc))
            say("noVNC on %s", vnc_view_web_url(v->vnc));
        else if (req->web)
            say("--web: noVNC's pages are not installed (apt-get install novnc); a noVNC page "
                "served elsewhere can connect to ws://%s",
                vnc_view_address(v->vnc));
        if (!(req->keyboard_count + req->usb_keyboard_count) || !req->pointing_count)
            say("--vnc: without a keyboard (--device usb-keyboard or virtio-input,keyboard) "
                "and a pointing device (--device virtio-input,pointing) the view only shows");
    }
#endif
#ifdef VMKIT_HAVE_GUI
    if (req->gui) {
        struct view_backend b = view_vm_backend(vm);
        v->gui = gui_view_start(&b, "vmkit", on_window_closed, v, msg, sizeof(msg));
        if (!v->gui) {
            say("%s", msg);
            return false;
        }
    }
#endif
    (void)msg;
    if (req->vnc || req->gui) {
        vmk_display_delegate d = { .size = sizeof(d),
                                   .mode_changed = on_mode_changed,
                                   .updated = on_updated };
        vmk_vm_set_display_delegate(vm, &d, v);
    }
    return true;
}

/* Once the VM has stopped: no delegate call is under way or will come. */
static void stop_views(struct views *v)
{
    if (v->vm)
        vmk_vm_set_display_delegate(v->vm, NULL, NULL);
#ifdef VMKIT_HAVE_VNC
    vnc_view_stop(v->vnc);
#endif
#ifdef VMKIT_HAVE_GUI
    gui_view_stop(v->gui);
#endif
}

/* --screenshot-on-exit: the library keeps the last image once the guest has stopped. */
static void take_screenshot(const struct cli_request *req, vmk_vm *vm)
{
    vmk_error *err = NULL;
    if (req->screenshot_on_exit &&
        vmk_vm_screenshot(vm, 0, req->screenshot_on_exit, &err) != VMK_OK)
        say("--screenshot-on-exit: %s", vmk_error_message(err));
    vmk_error_free(err);
}

int run_vm(const struct cli_request *req, const char *exe_path)
{
    char msg[4096];
#ifndef VMKIT_HAVE_GUI
    if (req->gui) {
        say("--gui: this vmkit was built without SDL2 (apt-get install libsdl2-dev and "
            "rebuild); --vnc serves the display to any VNC viewer");
        return CLI_EXIT_ERROR;
    }
#endif
#ifndef VMKIT_HAVE_VNC
    if (req->vnc) {
        say("--vnc: this vmkit was built without libvncserver");
        return CLI_EXIT_ERROR;
    }
#endif
    vmk_config *cfg = NULL;
    int status = cli_build_config(req, exe_path, &cfg, msg, sizeof(msg));
    if (status) {
        fprintf(stderr, "%s\n", msg);
        return status;
    }
    /* Validation, once: missing or unreadable files are the user's to fix, said before
     * anything about KVM. */
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    if (!vm) {
        say_lines(err ? vmk_error_message(err) : "cannot create the VM: out of memory");
        vmk_error_free(err);
        return CLI_EXIT_ERROR;
    }
    struct signal_watch watch = { .vm = vm,
                                  .stop_timeout = req->stop_timeout,
                                  .sig_fd = -1,
                                  .quit_fd = -1,
                                  .lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t watcher;
    bool watching = false;
    struct views views = { 0 };
    struct control_server *control = NULL;
    status = CLI_EXIT_ERROR;
    if (vmk_host_probe() == VMK_HOST_NO_KVM) {
        say("/dev/kvm is missing or cannot be opened: vmkit needs KVM (load kvm_intel or "
            "kvm_amd, and check the permissions of /dev/kvm)");
        goto out;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    watch.sig_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
    watch.quit_fd = eventfd(0, EFD_CLOEXEC);
    if (watch.sig_fd < 0 || watch.quit_fd < 0) {
        say("cannot watch for signals: %s", strerror(errno));
        goto out;
    }
    vmk_vm_delegate delegate = { .size = sizeof(delegate),
                                 .network_attachment_changed = on_network_attachment_changed };
    vmk_vm_set_delegate(vm, &delegate, NULL);
    /* Before the guest boots, so that a path in use fails the run first. Commands that come
     * while the VM starts are answered by its state. */
    if (req->control_socket &&
        !(control = control_server_start(req->control_socket, &control_vm_ops, &watch, msg,
                                         sizeof(msg)))) {
        say("%s", msg);
        goto out;
    }
    if (!start_views(req, vm, &views))
        goto out;
    if (vmk_vm_start(vm, &err) != VMK_OK) {
        say_start_error(req, err);
        goto out;
    }
    say_pty_paths(req, vm);
    /* The guest's driver reads the target when it starts, or on the change this makes. */
    if (req->balloon_target_mib &&
        vmk_vm_set_target_memory_size(vm, req->balloon_target_mib << 20, &err) != VMK_OK) {
        say_lines(vmk_error_message(err));
        vmk_vm_stop(vm, NULL);
        goto out;
    }
    /* Started only now: a signal that came during start stays pending until here. */
    int e = pthread_create(&watcher, NULL, signal_thread, &watch);
    if (e)
        say("cannot watch for signals (%s); stop the guest from inside", strerror(e));
    watching = e == 0;

    vmk_result r = wait_saying_addresses(req, vm);
    if (r == VMK_ERR_TIMEOUT || r == VMK_ERR_INVALID_ARGUMENT) {
        say("waiting for the VM failed: %s", vmk_result_string(r));
        vmk_vm_stop(vm, NULL);
    }
    if (watching) {
        uint64_t one = 1;
        if (write(watch.quit_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            pthread_join(watcher, NULL);
        else
            pthread_detach(watcher); /* cannot happen with an eventfd; do not hang */
    }
    take_screenshot(req, vm);
    pthread_mutex_lock(&watch.lock);
    int forced_by = watch.forced_by;
    bool control_stop = watch.control_stop;
    pthread_mutex_unlock(&watch.lock);
    status = exit_status(vm, forced_by, control_stop);
out:
    control_server_stop(control); /* before the VM goes: its commands use it */
    stop_views(&views);           /* the VM has stopped: no display callback is under way */
    vmk_vm_free(vm);
    if (watch.sig_fd >= 0)
        close(watch.sig_fd);
    if (watch.quit_fd >= 0)
        close(watch.quit_fd);
    vmk_error_free(err);
    return status;
}
