/* vmkit serve-device: one virtio device over vhost-user, through the library's public server
 * object, so the device is validated and built exactly as `vmkit run` builds it. */
#include "serve.h"
#include "report.h"
#include "sandbox.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static vmk_vhost_user_server *volatile serving; /* the signal handler's server */

static void on_stop_signal(int signo)
{
    (void)signo;
    if (serving)
        vmk_vhost_user_server_stop(serving); /* async-signal-safe */
}

static void log_line(const char *msg, void *user)
{
    say("%s", msg);
}

static const char *device_name(const struct cli_request *req)
{
    return req->disk_count  ? "virtio-blk"
           : req->rng       ? "virtio-rng"
           : req->net_count ? "virtio-net"
           : req->vsock     ? "virtio-vsock"
           : req->fs_count  ? "virtio-fs"
                            : "virtio-console";
}

/* Where a file-system server is chrooted: its directory (the first of several; a translator
 * share's interpreters' directory). It reaches its files through fds opened before. */
static const char *sandbox_dir(const struct cli_fs *fs)
{
    if (fs->path)
        return fs->path;
    if (fs->dir_count)
        return fs->dir[0].path;
    return "/usr/bin";
}

static int serve_one(const struct cli_request *req)
{
    char msg[512];
    vmk_config *cfg = NULL;
    int status = cli_build_serve_config(req, &cfg, msg, sizeof(msg));
    if (status) {
        say("%s", msg + strlen("vmkit: "));
        return status;
    }
    /* A front end that vanishes must not kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    vmk_error *err = NULL;
    vmk_vhost_user_server *s = vmk_vhost_user_server_new(req->socket, cfg, &err);
    vmk_config_free(cfg);
    if (!s) {
        say_lines(err ? vmk_error_message(err) : "cannot create the vhost-user server");
        vmk_error_free(err);
        return CLI_EXIT_ERROR;
    }
    vmk_vhost_user_server_set_log(s, log_line, NULL);
    if (req->fs_count &&
        sandbox_enter(req->fs_sandbox, sandbox_dir(&req->fs[0]), msg, sizeof(msg)) < 0) {
        say("%s", msg);
        vmk_vhost_user_server_free(s);
        return CLI_EXIT_ERROR;
    }
    serving = s;
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (req->disk_count) {
        const struct cli_disk *d = &req->disk[0];
        unsigned q = d->queues ? d->queues : 1;
        say("serving virtio-blk on %s (vhost-user): %s%s, %u queue%s", req->socket, d->path,
            d->read_only ? " (read-only)" : "", q, q == 1 ? "" : "s");
    } else {
        say("serving %s on %s (vhost-user)", device_name(req), req->socket);
    }
    for (unsigned i = 0; i < req->console_port_count; i++) {
        char *path = vmk_vhost_user_server_copy_console_port_pty_path(s, i);
        char label[320];
        cli_port_label(req, true, i, label, sizeof(label));
        if (path)
            say("%s on %s", label, path);
        free(path);
    }
    status = CLI_EXIT_OK;
    if (vmk_vhost_user_server_run(s, &err) != VMK_OK) {
        say_lines(vmk_error_message(err));
        status = CLI_EXIT_ERROR;
    } else if (vmk_vhost_user_server_get_stop_reason(s) == VMK_STOP_REASON_CONSOLE_ESCAPE) {
        say("Ctrl-A x: stopping");
        status = CLI_EXIT_ESCAPE;
    } else {
        say("stopping");
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    serving = NULL;
    vmk_vhost_user_server_free(s); /* resets the device, removes the socket */
    vmk_error_free(err);
    return status;
}

static volatile pid_t supervised; /* the server a file-system supervisor waits for */

static void forward_stop_signal(int signo)
{
    if (supervised > 0)
        kill(supervised, signo); /* async-signal-safe */
}

/* A file-system server runs in a child that sandboxes itself; this process stays outside,
 * forwards SIGINT and SIGTERM, and removes the socket the sandboxed child no longer can. */
static int supervise_fs(const struct cli_request *req)
{
    char msg[512];
    if (req->fs_sandbox == CLI_FS_SANDBOX_NONE)
        say("warning: --sandbox none: a bug in the file-system server is a bug in the host");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        say("cannot fork the file-system server: %s", strerror(errno));
        return CLI_EXIT_ERROR;
    }
    if (pid == 0) {
        int status = sandbox_prepare(req->fs_sandbox, msg, sizeof(msg)) < 0 ? CLI_EXIT_ERROR : 0;
        if (status)
            say("%s", msg);
        else
            status = serve_one(req);
        fflush(stdout);
        _exit(status);
    }
    supervised = pid;
    struct sigaction sa = { .sa_handler = forward_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    supervised = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    struct stat st;
    if (lstat(req->socket, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(req->socket);
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    say("the file-system server died of signal %d", WTERMSIG(ws));
    return CLI_EXIT_ERROR;
}

int serve_device(const struct cli_request *req)
{
    return req->fs_count ? supervise_fs(req) : serve_one(req);
}
