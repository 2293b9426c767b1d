#include "attach/serial_link.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#define ESCAPE_CHAR 0x01 /* Ctrl-A */
#define PENDING_MAX 4096

struct serial_link {
    struct event_loop *el;
    int in_fd;  /* ours (dup or opened), -1 if none */
    int out_fd; /* ours, -1 if none */
    bool out_broken;
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
};

void serial_link_write(void *link, const uint8_t *buf, size_t len)
{
    struct serial_link *l = link;
    while (len && l->out_fd >= 0 && !l->out_broken) {
        ssize_t n = write(l->out_fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* A reader that went away loses the console, not the VM. */
            l->out_broken = true;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
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

static void read_input(struct serial_link *l)
{
    ssize_t n = read(l->in_fd, l->pending + l->pending_len, PENDING_MAX - l->pending_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* End of input: stop watching; the guest keeps running. */
        if (l->in_pollable)
            event_loop_remove(l->el, &l->in_src);
        close(l->in_fd);
        l->in_fd = -1;
        return;
    }
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
    read_input(ctx);
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

static vmk_result open_file(struct serial_link *l, const vmk_serial_attachment *att, unsigned port,
                            vmk_error **err)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (att->append ? O_APPEND : O_TRUNC);
    l->out_fd = open(att->path, flags, 0644);
    if (l->out_fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "serial port %u: cannot open %s: %s", port,
                        att->path, strerror(errno));
    return VMK_OK;
}

static vmk_result open_fds(struct serial_link *l, const vmk_serial_attachment *att, unsigned port,
                           vmk_error **err)
{
    if (att->write_fd >= 0 && (l->out_fd = fcntl(att->write_fd, F_DUPFD_CLOEXEC, 3)) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "serial port %u: write fd %d: %s", port,
                        att->write_fd, strerror(errno));
    if (att->read_fd < 0)
        return VMK_OK;
    if ((l->in_fd = fcntl(att->read_fd, F_DUPFD_CLOEXEC, 3)) < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "serial port %u: read fd %d: %s", port,
                        att->read_fd, strerror(errno));
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

vmk_result serial_link_open(const vmk_serial_attachment *att, unsigned port, struct event_loop *el,
                            void (*escape)(void *ctx), void *escape_ctx, struct serial_link **out,
                            vmk_error **err)
{
    struct serial_link *l = calloc(1, sizeof(*l));
    if (!l)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "serial port %u: out of memory", port);
    l->el = el;
    l->in_fd = l->out_fd = -1;
    l->escape = escape;
    l->escape_ctx = escape_ctx;
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vmk_result r;
    if (l->wake_fd < 0) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "serial port %u: eventfd: %s", port, strerror(errno));
        goto fail;
    }
    r = att->kind == SERIAL_ATTACHMENT_FILE ? open_file(l, att, port, err)
                                            : open_fds(l, att, port, err);
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
    if (r == 0 && l->in_fd >= 0) {
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
    if (l->in_fd >= 0) {
        if (l->in_pollable)
            event_loop_remove(l->el, &l->in_src);
        if (l->is_tty)
            tcsetattr(l->in_fd, TCSANOW, &l->saved_tio);
        close(l->in_fd);
    }
    if (l->out_fd >= 0)
        close(l->out_fd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    free(l);
}
