#include "attach/serial_link.h"
#include "attach/output_queue.h"
#include "core/error.h"
#include "core/unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define ESCAPE_CHAR    0x01 /* Ctrl-A */
#define PENDING_MAX    4096
#define SOCKET_BACKLOG 4 /* clients waiting while one is connected */

struct serial_link {
    struct event_loop *el;
    vmk_serial_attachment_kind kind;
    int in_fd; /* ours (dup, opened or accepted), -1 if none */
    /* Guest output: a bounded queue with the output descriptor (a socket's follows its
     * clients), drained by the event loop. */
    struct output_queue *out;
    bool is_tty;
    struct termios saved_tio;
    bool escape_pending;
    bool in_pollable; /* false for regular files and the like: read them when the UART has room */
    void (*escape)(void *ctx);
    void *escape_ctx;
    struct serial_link_sink sink;
    struct event_source in_src;
    int wake_fd; /* eventfd: the UART has room again */
    struct event_source wake_src;
    uint8_t pending[PENDING_MAX]; /* read but not yet taken by the UART */
    size_t pending_len;
    /* pty */
    char *pty_path;
    int pty_slave;     /* ours, so the master sees no hang-up while no user has it */
    bool pty_reopened; /* since the last byte read: a second hang-up ends input */
    /* socket */
    struct event_source listen_src; /* fd -1 until bound */
    bool listen_watched;
    char *sock_path;
    struct stat sock_st; /* the socket file we made: unlinked on close only if still it */
};

/* Guest output on a pty or socket must never wait for a slow or absent reader: dropped
 * when the queue is full. Elsewhere the device holds it. */
static enum output_policy output_policy(vmk_serial_attachment_kind kind)
{
    return kind == VMK_SERIAL_ATTACHMENT_PTY || kind == VMK_SERIAL_ATTACHMENT_SOCKET ? OUTPUT_DROP
                                                                                     : OUTPUT_HOLD;
}

size_t serial_link_write(void *link, const uint8_t *buf, size_t len)
{
    struct serial_link *l = link;
    return output_queue_write(l->out, buf, len);
}

/* The queue has room again after a refusal: the device may transmit what it held. */
static void on_output_space(void *ctx)
{
    struct serial_link *l = ctx;
    if (l->sink.tx_space)
        l->sink.tx_space(l->sink.ctx);
}

void serial_link_rx_space(void *link)
{
    struct serial_link *l = link;
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* The counter cannot overflow in practice; a failed wake only delays input. */
    }
}

/* Hands pending bytes to the UART; disarms input while it is full. */
static void flush_pending(struct serial_link *l)
{
    if (l->pending_len) {
        size_t n = l->sink.receive(l->sink.ctx, l->pending, l->pending_len);
        memmove(l->pending, l->pending + n, l->pending_len - n);
        l->pending_len -= n;
    }
    if (l->in_fd >= 0 && l->in_pollable)
        event_loop_arm(l->el, &l->in_src, l->pending_len == 0);
}

/* Removes the escape sequence from buf in place; returns the new length. */
static size_t filter_escape(struct serial_link *l, uint8_t *buf, size_t len, bool *quit)
{
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (l->escape_pending) {
            l->escape_pending = false;
            if (c == 'x' || c == 'X') {
                *quit = true;
                return out;
            }
            if (c != ESCAPE_CHAR)
                buf[out++] = ESCAPE_CHAR;
            buf[out++] = c;
        } else if (c == ESCAPE_CHAR) {
            l->escape_pending = true;
        } else {
            buf[out++] = c;
        }
    }
    return out;
}

static void stop_input(struct serial_link *l)
{
    if (l->in_pollable)
        event_loop_remove(l->el, &l->in_src);
    l->in_pollable = false;
}

/* The client hung up: forget it and wait for the next one. */
static void drop_client(struct serial_link *l)
{
    stop_input(l);
    output_queue_detach(l->out); /* what was queued for this client goes too */
    close(l->in_fd);
    l->in_fd = -1;
    if (l->listen_watched)
        event_loop_arm(l->el, &l->listen_src, true);
}

static void on_input(void *ctx, uint32_t events);

/* Every slave fd was closed (a user's session hung the pty up, taking ours along):
 * open one again so the master stops reporting EIO. Returns whether input goes on. */
static bool pty_reopen_slave(struct serial_link *l)
{
    if (l->pty_reopened || !l->pty_path)
        return false;
    if (l->pty_slave >= 0)
        close(l->pty_slave);
    l->pty_slave = open(l->pty_path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    l->pty_reopened = true;
    if (l->pty_slave < 0)
        return false;
    /* A hang-up seen while the UART was full stopped the watch: take it up again. */
    if (!l->in_pollable) {
        l->in_src = (struct event_source){ .fd = l->in_fd, .handler = on_input, .ctx = l };
        l->in_pollable = event_loop_add(l->el, &l->in_src) == 0;
        if (l->in_pollable)
            event_loop_arm(l->el, &l->in_src, l->pending_len == 0);
    }
    return l->in_pollable;
}

static void read_input(struct serial_link *l)
{
    if (l->pending_len == PENDING_MAX)
        return;
    ssize_t n = read(l->in_fd, l->pending + l->pending_len, PENDING_MAX - l->pending_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n < 0 && errno == EIO && l->kind == VMK_SERIAL_ATTACHMENT_PTY && pty_reopen_slave(l))
        return;
    if (n <= 0) {
        if (l->kind == VMK_SERIAL_ATTACHMENT_SOCKET) {
            drop_client(l);
            return;
        }
        /* End of input: stop watching; the guest keeps running. */
        stop_input(l);
        close(l->in_fd);
        l->in_fd = -1;
        return;
    }
    l->pty_reopened = false;
    size_t len = (size_t)n;
    if (l->is_tty) {
        bool quit = false;
        len = filter_escape(l, l->pending + l->pending_len, len, &quit);
        if (quit) {
            l->escape(l->escape_ctx);
            event_loop_arm(l->el, &l->in_src, false);
            return;
        }
    }
    l->pending_len += len;
    flush_pending(l);
    /* A file never signals readiness: keep going while the UART takes everything. */
    if (!l->in_pollable && l->pending_len == 0)
        serial_link_rx_space(l);
}

static void on_input(void *ctx, uint32_t events)
{
    struct serial_link *l = ctx;
    if ((events & (EPOLLHUP | EPOLLERR)) && !l->in_src.armed) {
        /* A hang-up fires even while input waits for the UART: stop watching (it would
         * fire on and on) and read what is left as the UART drains, as for a file. */
        stop_input(l);
        return;
    }
    read_input(l);
}

static void on_wake(void *ctx, uint32_t events)
{
    struct serial_link *l = ctx;
    uint64_t v;
    if (read(l->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    flush_pending(l);
    if (!l->in_pollable && l->in_fd >= 0 && l->pending_len == 0)
        read_input(l);
}

static void on_accept(void *ctx, uint32_t events)
{
    struct serial_link *l = ctx;
    if (l->in_fd >= 0) {
        /* One client at a time: the next waits in the backlog. */
        event_loop_arm(l->el, &l->listen_src, false);
        return;
    }
    int fd = accept4(l->listen_src.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    l->in_src = (struct event_source){ .fd = fd, .handler = on_input, .ctx = l };
    if (event_loop_add(l->el, &l->in_src) < 0) {
        close(fd);
        return;
    }
    l->in_fd = fd;
    l->in_pollable = true;
    int out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (out < 0 || output_queue_attach(l->out, out) < 0) {
        if (out >= 0)
            close(out);
        drop_client(l);
        return;
    }
    event_loop_arm(l->el, &l->listen_src, false);
    /* Bytes the last client sent that the UART has not taken yet go first. */
    if (l->pending_len)
        event_loop_arm(l->el, &l->in_src, false);
}

/* Gives fd (ours) to the output queue. */
static vmk_result attach_output(struct serial_link *l, int fd, const char *what, vmk_error **err)
{
    int e = output_queue_attach(l->out, fd);
    if (e < 0) {
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, -e, "%s: cannot watch the output: %s", what, strerror(-e));
    }
    return VMK_OK;
}

static vmk_result open_file(struct serial_link *l, const vmk_serial_attachment *att,
                            const char *what, vmk_error **err)
{
    const char *path = vmk_serial_attachment_get_path(att);
    bool append = vmk_serial_attachment_is_append(att);
    /* Non-blocking: a FIFO nobody reads fails here (ENXIO) instead of hanging the start. */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | (append ? O_APPEND : O_TRUNC),
                  0644);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot open %s: %s", what, path,
                        strerror(errno));
    return attach_output(l, fd, what, err);
}

static vmk_result open_fds(struct serial_link *l, const vmk_serial_attachment *att,
                           const char *what, vmk_error **err)
{
    int read_fd = vmk_serial_attachment_get_read_fd(att);
    int write_fd = vmk_serial_attachment_get_write_fd(att);
    if (write_fd >= 0) {
        int fd = fcntl(write_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
            return vmk_fail(err, VMK_ERR_IO, errno, "%s: write fd %d: %s", what, write_fd,
                            strerror(errno));
        vmk_result r = attach_output(l, fd, what, err);
        if (r != VMK_OK)
            return r;
    }
    if (read_fd < 0)
        return VMK_OK;
    if ((l->in_fd = fcntl(read_fd, F_DUPFD_CLOEXEC, 3)) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: read fd %d: %s", what, read_fd,
                        strerror(errno));
    if (isatty(l->in_fd) && tcgetattr(l->in_fd, &l->saved_tio) == 0) {
        struct termios raw = l->saved_tio;
        cfmakeraw(&raw);
        /* Keep output processing: the guest's line endings stay readable on the host. */
        raw.c_oflag |= OPOST;
        if (tcsetattr(l->in_fd, TCSANOW, &raw) == 0)
            l->is_tty = true;
    }
    return VMK_OK;
}

/* A new pseudo-terminal: the link reads and writes the master, and holds one slave fd
 * so that the master does not report a hang-up (EIO, EPOLLHUP) while no user has the
 * path open. */
static vmk_result open_pty(struct serial_link *l, const char *what, vmk_error **err)
{
    char name[64];
    struct termios tio;
    int e;
    l->in_fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (l->in_fd < 0 || grantpt(l->in_fd) < 0 || unlockpt(l->in_fd) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot create a pty: %s", what,
                        strerror(errno));
    /* Non-blocking (above), and DROP: a full pty, nobody reading, drops guest output. */
    int out = fcntl(l->in_fd, F_DUPFD_CLOEXEC, 3);
    if (out < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot dup the pty: %s", what,
                        strerror(errno));
    vmk_result r = attach_output(l, out, what, err);
    if (r != VMK_OK)
        return r;
    if ((e = ptsname_r(l->in_fd, name, sizeof(name))) != 0)
        return vmk_fail(err, VMK_ERR_IO, e, "%s: cannot name the pty: %s", what, strerror(e));
    l->pty_slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (l->pty_slave < 0 || tcgetattr(l->pty_slave, &tio) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot open %s: %s", what, name,
                        strerror(errno));
    /* Raw: the guest's bytes reach the user unchanged, and nothing echoes back to it. */
    cfmakeraw(&tio);
    if (tcsetattr(l->pty_slave, TCSANOW, &tio) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot set up %s: %s", what, name,
                        strerror(errno));
    if (!(l->pty_path = strdup(name)))
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    return VMK_OK;
}

const char *serial_link_pty_path(const struct serial_link *l)
{
    return l ? l->pty_path : NULL;
}

static vmk_result open_socket(struct serial_link *l, const vmk_serial_attachment *att,
                              const char *what, vmk_error **err)
{
    const char *path = vmk_serial_attachment_get_path(att);
    l->listen_src = (struct event_source){ .handler = on_accept, .ctx = l };
    vmk_result r =
        unix_socket_listen(path, SOCKET_BACKLOG, what, &l->listen_src.fd, &l->sock_st, err);
    if (r != VMK_OK)
        return r;
    if (!(l->sock_path = strdup(path))) {
        unix_socket_remove(path, &l->sock_st);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    }
    return VMK_OK;
}

vmk_result serial_link_open(const vmk_serial_attachment *att, const char *what,
                            struct event_loop *el, void (*escape)(void *ctx), void *escape_ctx,
                            struct serial_link **out, vmk_error **err)
{
    struct serial_link *l = calloc(1, sizeof(*l));
    if (!l)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    l->el = el;
    l->kind = vmk_serial_attachment_get_kind(att);
    l->in_fd = l->pty_slave = l->listen_src.fd = -1;
    l->escape = escape;
    l->escape_ctx = escape_ctx;
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->out = output_queue_new(el, vmk_serial_attachment_buffer_size(), output_policy(l->kind),
                              on_output_space, l);
    vmk_result r;
    if (l->wake_fd < 0 || !l->out) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "%s: eventfd: %s", what, strerror(errno));
        goto fail;
    }
    switch (l->kind) {
    case VMK_SERIAL_ATTACHMENT_FILE: r = open_file(l, att, what, err); break;
    case VMK_SERIAL_ATTACHMENT_FD: r = open_fds(l, att, what, err); break;
    case VMK_SERIAL_ATTACHMENT_PTY: r = open_pty(l, what, err); break;
    case VMK_SERIAL_ATTACHMENT_SOCKET: r = open_socket(l, att, what, err); break;
    default: r = vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: unknown attachment kind", what);
    }
    if (r != VMK_OK)
        goto fail;
    *out = l;
    return VMK_OK;
fail:
    serial_link_close(l);
    return r;
}

vmk_result serial_link_connect(struct serial_link *l, const struct serial_link_sink *sink,
                               vmk_error **err)
{
    l->sink = *sink;
    l->wake_src = (struct event_source){ .fd = l->wake_fd, .handler = on_wake, .ctx = l };
    int r = event_loop_add(l->el, &l->wake_src);
    if (r == 0 && l->listen_src.fd >= 0) {
        r = event_loop_add(l->el, &l->listen_src);
        l->listen_watched = r == 0;
    } else if (r == 0 && l->in_fd >= 0) {
        l->in_src = (struct event_source){ .fd = l->in_fd, .handler = on_input, .ctx = l };
        r = event_loop_add(l->el, &l->in_src);
        l->in_pollable = r == 0;
        if (r == -EPERM) {
            /* epoll refuses regular files: read them as the UART drains instead. */
            r = 0;
            serial_link_rx_space(l);
        }
    }
    if (r < 0)
        return vmk_fail(err, VMK_ERR_IO, -r, "serial input: cannot watch fd: %s", strerror(-r));
    return VMK_OK;
}

void serial_link_close(struct serial_link *l)
{
    if (!l)
        return;
    if (l->wake_src.handler)
        event_loop_remove(l->el, &l->wake_src);
    if (l->kind == VMK_SERIAL_ATTACHMENT_SOCKET && l->in_fd >= 0) {
        drop_client(l);
    } else if (l->in_fd >= 0) {
        stop_input(l);
        if (l->is_tty)
            tcsetattr(l->in_fd, TCSANOW, &l->saved_tio);
        close(l->in_fd);
    }
    output_queue_free(l->out); /* writes what the reader takes now, then closes */
    if (l->listen_watched)
        event_loop_remove(l->el, &l->listen_src);
    if (l->listen_src.fd >= 0)
        close(l->listen_src.fd);
    unix_socket_remove(l->sock_path, &l->sock_st);
    if (l->pty_slave >= 0)
        close(l->pty_slave);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    free(l->pty_path);
    free(l->sock_path);
    free(l);
}
