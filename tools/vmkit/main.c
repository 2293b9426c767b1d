/* vmkit: parse the command line (cli.c), then run the VM until it stops, or serve one
 * device over vhost-user (serve-device). */
#include "cli.h"

/* serve-device uses the library's internal device and vhost-user code directly: they
 * are not (yet) part of the public API. */
#include "machine/console_ports.h"
#include "block/disk_image.h"
#include "core/event_loop.h"
#include "vhost_user/server.h"
#include "virtio/blk.h"
#include "virtio/rng.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define PVM_WARNING                                                                    \
    "warning: /dev/kvm is kvm_pvm (no hardware virtualization): guest kernel code is " \
    "emulated and slow, and FPU state cannot be saved, so a stock Linux kernel fails here"

/* One line on stderr. The library may have the terminal in raw mode (no newline
 * translation), so end with \r\n when stderr is a terminal. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmkit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(isatty(STDERR_FILENO) ? "\r\n" : "\n", stderr);
    va_end(ap);
    fflush(stderr);
}

/* Prints each line of a (possibly multi-line) library message. */
static void say_lines(const char *msg)
{
    while (msg && *msg) {
        size_t len = strcspn(msg, "\n");
        if (len > 0)
            say("%.*s", (int)len, msg);
        msg += len;
        if (*msg == '\n')
            msg++;
    }
}

/* The error the delegate saw; the callback runs on the library's thread. */
struct outcome {
    pthread_mutex_t lock;
    char *error_message;
};

static void on_error(vmk_vm *vm, const vmk_error *err, void *user)
{
    struct outcome *o = user;
    /* err lives only during the call: keep a copy of its message. */
    char *msg = strdup(vmk_error_message(err));
    pthread_mutex_lock(&o->lock);
    if (!o->error_message)
        o->error_message = msg;
    else
        free(msg);
    pthread_mutex_unlock(&o->lock);
}

/* The signals that stop the VM: blocked everywhere, read from a signalfd by one
 * thread, so no library call ever runs in a signal handler. */
struct signal_watch {
    vmk_vm *vm;
    int sig_fd;
    int quit_fd;   /* an eventfd: main tells the thread to end */
    int forced_by; /* the signal that forced a hard stop, or 0 */
    pthread_mutex_t lock;
};

static void stop_hard(struct signal_watch *w, int signo)
{
    vmk_error *err = NULL;
    if (vmk_vm_stop(w->vm, &err) != VMK_OK && vmk_vm_can_stop(w->vm))
        say("cannot stop the VM: %s", vmk_error_message(err));
    vmk_error_free(err);
    pthread_mutex_lock(&w->lock);
    w->forced_by = signo;
    pthread_mutex_unlock(&w->lock);
}

static const char *signal_name(int signo)
{
    switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
    }
}

static void *signal_thread(void *arg)
{
    struct signal_watch *w = arg;
    unsigned seen = 0;
    for (;;) {
        struct pollfd fds[2] = { { .fd = w->sig_fd, .events = POLLIN },
                                 { .fd = w->quit_fd, .events = POLLIN } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            say("cannot wait for signals: %s", strerror(errno));
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
        if (!(fds[0].revents & POLLIN))
            continue;
        struct signalfd_siginfo si;
        if (read(w->sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        int signo = (int)si.ssi_signo;
        if (++seen == 1) {
            if (!vmk_vm_can_request_stop(w->vm))
                continue; /* already on its way down */
            say("%s: asking the guest to power off (again to force)", signal_name(signo));
            vmk_error *err = NULL;
            if (vmk_vm_request_stop(w->vm, &err) != VMK_OK) {
                say("cannot press the power button (%s); stopping the VM", vmk_error_message(err));
                stop_hard(w, signo);
            }
            vmk_error_free(err);
        } else {
            if (!vmk_vm_can_stop(w->vm))
                continue;
            say("%s: stopping the VM", signal_name(signo));
            stop_hard(w, signo);
        }
    }
}

static int print_version(void)
{
    printf("vmkit %s\n", vmk_version_string());
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
}

/* Runs cfg until the VM stops; returns the exit status. stop_signals are blocked. */
/* Where each pty port is: the user opens these paths once the VM is up. */
static void say_pty_paths(const struct cli_request *req, vmk_vm *vm)
{
    char label[320];
    for (unsigned console = 0; console < 2; console++)
        for (unsigned i = 0; i < (console ? CLI_MAX_VPORTS : CLI_MAX_SERIAL); i++) {
            char *path = console ? vmk_vm_copy_console_port_pty_path(vm, i)
                                 : vmk_vm_copy_serial_port_pty_path(vm, i);
            if (path) {
                cli_port_label(req, console, i, label, sizeof(label));
                say("%s on %s", label, path);
            }
            free(path);
        }
}

static int run_vm(const struct cli_request *req, const vmk_config *cfg,
                  const sigset_t *stop_signals)
{
    struct outcome outcome = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct signal_watch watch = { .sig_fd = -1, .quit_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t watcher;
    bool watching = false;
    int status = CLI_EXIT_RUNTIME;
    vmk_error *err = NULL;

    vmk_vm *vm = vmk_vm_new(cfg, &err);
    if (!vm) {
        say_lines(err ? vmk_error_message(err) : "cannot create the VM: out of memory");
        status = vmk_error_code(err) == VMK_ERR_INVALID_CONFIG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        goto out;
    }
    const vmk_vm_delegate delegate = {
        .did_stop_with_error = on_error,
    };
    vmk_vm_set_delegate(vm, &delegate, &outcome);

    watch.vm = vm;
    watch.sig_fd = signalfd(-1, stop_signals, SFD_CLOEXEC);
    watch.quit_fd = eventfd(0, EFD_CLOEXEC);
    if (watch.sig_fd < 0 || watch.quit_fd < 0) {
        say("cannot watch for signals: %s", strerror(errno));
        goto out;
    }

    if (vmk_vm_start(vm, &err) != VMK_OK) {
        say_lines(vmk_error_message(err));
        goto out;
    }
    say_pty_paths(req, vm);
    /* Started only now: a signal that came during start stays pending until here. */
    int e = pthread_create(&watcher, NULL, signal_thread, &watch);
    if (e)
        say("cannot watch for signals (%s); stop the guest from inside", strerror(e));
    else
        watching = true;

    vmk_result r = vmk_vm_wait(vm, -1);
    if (r != VMK_OK) {
        say("waiting for the VM failed: %s", vmk_result_string(r));
        goto out;
    }
    if (watching) {
        uint64_t one = 1;
        if (write(watch.quit_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            pthread_join(watcher, NULL);
        else
            pthread_detach(watcher); /* cannot happen with an eventfd; do not hang */
        watching = false;
    }

    if (vmk_vm_get_state(vm) == VMK_STATE_ERROR) {
        /* vmk_vm_wait returns once did_stop_with_error has run. */
        pthread_mutex_lock(&outcome.lock);
        say_lines(outcome.error_message ? outcome.error_message : "the VM stopped with an error");
        pthread_mutex_unlock(&outcome.lock);
        status = CLI_EXIT_RUNTIME;
        goto out;
    }
    int code = vmk_vm_get_debug_exit_code(vm);
    pthread_mutex_lock(&watch.lock);
    int forced_by = watch.forced_by;
    pthread_mutex_unlock(&watch.lock);
    if (code >= 0)
        status = code & 0xff;
    else if (forced_by)
        status = 128 + forced_by;
    else
        status = CLI_EXIT_OK; /* powered off, reset, or Ctrl-A x */

out:
    if (watching) {
        /* Only reached when vmk_vm_wait failed: stop the VM, then the watcher. */
        uint64_t one = 1;
        vmk_vm_stop(vm, NULL);
        if (write(watch.quit_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            pthread_join(watcher, NULL);
        else
            pthread_detach(watcher);
    }
    vmk_vm_free(vm);
    if (watch.sig_fd >= 0)
        close(watch.sig_fd);
    if (watch.quit_fd >= 0)
        close(watch.quit_fd);
    vmk_error_free(err);
    free(outcome.error_message);
    return status;
}

/* ---- serve-device ------------------------------------------------------------- */

struct serve_signals {
    struct event_source src;
    struct vhost_user_server *server;
};

static void on_stop_signal(void *ctx, uint32_t events)
{
    struct serve_signals *sig = ctx;
    struct signalfd_siginfo si;
    if (read(sig->src.fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    say("%s: stopping", signal_name((int)si.ssi_signo));
    vhost_user_server_stop(sig->server);
}

static void log_server(void *ctx, const char *msg)
{
    say("%s", msg);
}

/* Ctrl-A x on a console port's terminal. */
static void on_escape(void *ctx)
{
    struct serve_signals *sig = ctx;
    say("Ctrl-A x: stopping");
    vhost_user_server_stop(sig->server);
}

/* Serves the device req names on req->socket until SIGINT or SIGTERM. */
static int serve_device(const struct cli_request *req)
{
    int status = CLI_EXIT_RUNTIME;
    struct event_loop *el = NULL;
    struct virtio_device *dev = NULL;
    struct disk_image *img = NULL;
    vmk_console_device *console = NULL;
    struct console_ports *ports = NULL;
    struct vhost_user_server *server = NULL;
    struct serve_signals sig = { .src = { .fd = -1 } };
    vmk_error *err = NULL;
    bool watching = false;

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    int e = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    if (e) {
        say("cannot block signals: %s", strerror(e));
        return CLI_EXIT_RUNTIME;
    }
    /* A front end that vanishes must not kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    e = event_loop_new(&el);
    if (e < 0) {
        say("cannot create an event loop: %s", strerror(-e));
        goto out;
    }
    const struct cli_disk *disk = &req->serve_disk;
    switch (req->serve_type) {
    case CLI_SERVE_RNG: dev = virtio_rng_new(el, req->rate, VIRTIO_RNG_DEFAULT_BURST); break;
    case CLI_SERVE_BLK:
        if (disk_image_open(disk->path, disk->read_only, disk->caching, disk->sync, &img, &err) !=
            VMK_OK) {
            say_lines(err ? vmk_error_message(err) : "cannot open the disk image");
            goto out;
        }
        dev = virtio_blk_new(disk_image_backend(img), disk->id, req->queues, &err);
        if (!dev) {
            say_lines(err ? vmk_error_message(err) : "cannot create the device");
            goto out;
        }
        break;
    case CLI_SERVE_CONSOLE: {
        char msg[512];
        if (cli_build_console_device(req, &console, msg, sizeof(msg))) {
            say("%s", msg);
            goto out;
        }
        if (console_ports_open(console, el, on_escape, &sig, &ports, &dev, &err) != VMK_OK) {
            say_lines(err ? vmk_error_message(err) : "cannot open the console ports");
            goto out;
        }
        break;
    }
    }
    if (!dev) {
        say("cannot create the device: out of memory or file descriptors");
        goto out;
    }
    server = vhost_user_server_new(req->socket, dev, el, &err);
    if (!server) {
        say_lines(err ? vmk_error_message(err) : "cannot create the vhost-user server");
        goto out;
    }
    vhost_user_server_set_log(server, log_server, NULL);
    sig.server = server;
    sig.src.fd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
    sig.src.handler = on_stop_signal;
    sig.src.ctx = &sig;
    if (sig.src.fd < 0 || event_loop_add(el, &sig.src) < 0) {
        say("cannot watch for signals: %s", strerror(errno));
        goto out;
    }
    watching = true;
    if (ports && console_ports_connect(ports, &err) != VMK_OK) {
        say_lines(vmk_error_message(err));
        goto out;
    }
    if (req->serve_type == CLI_SERVE_BLK)
        say("serving %s on %s (vhost-user): %s%s, %u queue%s", dev->name, req->socket, disk->path,
            disk->read_only ? " (read-only)" : "", req->queues, req->queues == 1 ? "" : "s");
    else
        say("serving %s on %s (vhost-user)", dev->name, req->socket);
    for (unsigned i = 0; ports && i < req->vport_count; i++) {
        const char *path = console_ports_pty_path(ports, i);
        char label[320];
        cli_port_label(req, true, i, label, sizeof(label));
        if (path)
            say("%s on %s", label, path);
    }
    e = vhost_user_server_run(server);
    if (e < 0) {
        say("the event loop failed: %s", strerror(-e));
        goto out;
    }
    status = CLI_EXIT_OK;

out:
    if (watching)
        event_loop_remove(el, &sig.src);
    if (sig.src.fd >= 0)
        close(sig.src.fd);
    vhost_user_server_free(server); /* resets the device, removes the socket */
    if (dev)
        dev->ops->destroy(dev);
    disk_image_close(img);      /* after the device: its workers use the image */
    console_ports_close(ports); /* and its reset may write to a port */
    vmk_console_device_free(console);
    event_loop_free(el);
    vmk_error_free(err);
    return status;
}

int main(int argc, char **argv)
{
    char err[4096];
    struct cli_request req;
    vmk_config *cfg = NULL;
    vmk_error *verr = NULL;

    int status = cli_parse(argc, argv, &req, err, sizeof(err));
    if (status) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    if (req.command == CLI_CMD_HELP) {
        fputs(cli_usage(), stdout);
        status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
        goto out;
    }
    if (req.command == CLI_CMD_VERSION) {
        status = print_version();
        goto out;
    }
    if (req.command == CLI_CMD_SERVE_DEVICE) {
        status = serve_device(&req);
        goto out;
    }

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    status = cli_build_config(&req, n > 0 ? exe : NULL, &cfg, err, sizeof(err));
    if (status) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    /* Missing or unreadable files are the user's to fix: report them before KVM's state. */
    if (vmk_config_validate(cfg, &verr) != VMK_OK) {
        say_lines(verr ? vmk_error_message(verr) : "the configuration is not valid");
        status = CLI_EXIT_USAGE;
        goto out;
    }

    switch (vmk_host_probe()) {
    case VMK_HOST_NO_KVM:
        say("/dev/kvm is missing or cannot be opened: vmkit needs KVM (load kvm_intel or "
            "kvm_amd, and check the permissions of /dev/kvm)");
        status = CLI_EXIT_RUNTIME;
        goto out;
    case VMK_HOST_PVM: say(PVM_WARNING); break;
    case VMK_HOST_HARDWARE_KVM: break;
    }

    /* Block the stop signals before the library makes threads: they inherit the mask,
     * so these signals reach only our signalfd. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    int e = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    if (e) {
        say("cannot block signals: %s", strerror(e));
        status = CLI_EXIT_RUNTIME;
        goto out;
    }
    status = run_vm(&req, cfg, &stop_signals);

out:
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);
    return status;
}
