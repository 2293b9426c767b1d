#include "attach/vsock_unix.h"
#include "core/error.h"
#include "core/unix_socket.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* A listening socket: the Firecracker one (port 0 here: the client names it) or a
 * listen-mode port's. */
struct listener {
    struct vsock_unix *u;
    struct event_source src;
    char *path;
    struct stat made;
    uint32_t port; /* guest port; unused for the Firecracker listener */
    bool firecracker;
};

/* A client of the Firecracker listener that has not finished its CONNECT line. */
struct pending {
    struct vsock_unix *u;
    struct event_source src;
    struct event_source timer;
    bool used;
};

struct vsock_unix {
    int (*app_listener)(void *ctx, uint32_t port); /* the library's own listeners */
    void *app_ctx;
    char *uds_path;
    struct vsock_unix_port *ports; /* connect-mode and listen-mode, paths owned */
    unsigned port_count;
    struct listener *listener;
    unsigned listener_count;
    struct pending pending[VSOCK_UNIX_MAX_PENDING];
    struct event_loop *el;
    struct vsock_guest_connector guest;
};

/* ---- the guest's connections ---- */

static int connect_path(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* A unix stream connect completes at once or fails (EAGAIN: the backlog is full). */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int host_connect(void *ctx, uint32_t port)
{
    struct vsock_unix *u = ctx;
    if (u->app_listener) {
        int fd = u->app_listener(u->app_ctx, port);
        if (fd != -ENOENT)
            return fd;
    }
    for (unsigned i = 0; i < u->port_count; i++)
        if (u->ports[i].port == port && !u->ports[i].listen)
            return connect_path(u->ports[i].path);
    if (!u->uds_path)
        return -ECONNREFUSED;
    char path[SUN_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s_%" PRIu32, u->uds_path, port);
    return connect_path(path);
}

/* A client of the Firecracker listener hears "OK <host port>" once the guest accepts. */
static void greet(struct vsock_pending *p, int fd, uint32_t host_port, bool ok)
{
    if (!ok)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "OK %" PRIu32 "\n", host_port);
    /* A fresh socket's buffer holds a dozen bytes; a client already gone gets nothing. */
    (void)!send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static const struct vsock_host_ops ops = { .connect = host_connect };
static struct vsock_pending greeting = { .done = greet };

const struct vsock_host_ops *vsock_unix_ops(void)
{
    return &ops;
}

/* ---- the host's connections ---- */

static void drop_pending(struct pending *p, bool close_fd)
{
    event_loop_remove(p->u->el, &p->src);
    event_loop_remove(p->u->el, &p->timer);
    close(p->timer.fd);
    if (close_fd)
        close(p->src.fd);
    p->used = false;
}

/* "CONNECT <port>\n", the port in decimal: 0 and beyond 32 bits are refused. */
static bool parse_connect(const char *line, uint32_t *port)
{
    if (strncmp(line, "CONNECT ", 8) != 0)
        return false;
    const char *p = line + 8;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return false;
    }
    if (*p != '\n' || v == 0)
        return false;
    *port = (uint32_t)v;
    return true;
}

static void on_pending(void *ctx, uint32_t events)
{
    struct pending *p = ctx;
    if (!p->used)
        return; /* dropped earlier in this epoll batch */
    char line[VSOCK_UNIX_LINE_MAX + 1];
    /* Peek, so that nothing after the line (the client's first bytes for the guest) is
     * taken from the stream. */
    ssize_t n = recv(p->src.fd, line, VSOCK_UNIX_LINE_MAX, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop_pending(p, true);
        return;
    }
    char *nl = memchr(line, '\n', (size_t)n);
    if (!nl) {
        if (n == VSOCK_UNIX_LINE_MAX || (events & (EPOLLHUP | EPOLLERR)))
            drop_pending(p, true); /* no line that long, or none will come */
        return;
    }
    size_t len = (size_t)(nl - line) + 1;
    line[len] = 0;
    uint32_t port;
    if (recv(p->src.fd, line, len, MSG_DONTWAIT) != (ssize_t)len || !parse_connect(line, &port)) {
        drop_pending(p, true);
        return;
    }
    struct vsock_unix *u = p->u;
    int fd = p->src.fd;
    drop_pending(p, false);
    /* The device owns fd from here; a refusal closes it. */
    u->guest.connect(u->guest.ctx, fd, port, &greeting);
}

static void on_pending_timeout(void *ctx, uint32_t events)
{
    struct pending *p = ctx;
    uint64_t n;
    /* An event of a slot dropped and taken again in the same epoll batch finds the new
     * client's timer not yet expired. */
    if (p->used && read(p->timer.fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
        drop_pending(p, true);
}

static void on_accept(void *ctx, uint32_t events)
{
    struct listener *l = ctx;
    struct vsock_unix *u = l->u;
    int fd = accept4(l->src.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (!l->firecracker) {
        u->guest.connect(u->guest.ctx, fd, l->port, NULL);
        return;
    }
    struct pending *p = NULL;
    for (unsigned i = 0; i < VSOCK_UNIX_MAX_PENDING && !p; i++)
        if (!u->pending[i].used)
            p = &u->pending[i];
    int tfd = p ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC) : -1;
    struct itimerspec its = { .it_value = { .tv_sec = VSOCK_UNIX_LINE_TIMEOUT_MS / 1000,
                                            .tv_nsec =
                                                (VSOCK_UNIX_LINE_TIMEOUT_MS % 1000) * 1000000L } };
    if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0) {
        if (tfd >= 0)
            close(tfd);
        close(fd); /* too many clients still to say where they go */
        return;
    }
    *p = (struct pending){ .u = u, .used = true };
    p->src = (struct event_source){ .fd = fd, .handler = on_pending, .ctx = p };
    p->timer = (struct event_source){ .fd = tfd, .handler = on_pending_timeout, .ctx = p };
    if (event_loop_add(u->el, &p->src) < 0) {
        close(tfd);
        close(fd);
        p->used = false;
        return;
    }
    if (event_loop_add(u->el, &p->timer) < 0) {
        event_loop_remove(u->el, &p->src);
        close(tfd);
        close(fd);
        p->used = false;
    }
}

/* ---- life ---- */

static vmk_result add_listener(struct vsock_unix *u, const char *path, uint32_t port,
                               bool firecracker, const char *what, vmk_error **err)
{
    struct listener *l = &u->listener[u->listener_count];
    *l = (struct listener){ .u = u, .port = port, .firecracker = firecracker };
    l->path = strdup(path);
    if (!l->path)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    int fd;
    vmk_result r = unix_socket_listen(path, 16, what, &fd, &l->made, err);
    if (r != VMK_OK) {
        free(l->path);
        return r;
    }
    l->src = (struct event_source){ .fd = fd, .handler = on_accept, .ctx = l };
    u->listener_count++;
    return VMK_OK;
}

vmk_result vsock_unix_open(const struct vsock_unix_params *p, const char *what,
                           struct vsock_unix **out, vmk_error **err)
{
    *out = NULL;
    struct vsock_unix *u = calloc(1, sizeof(*u));
    if (!u)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    u->app_listener = p->listener;
    u->app_ctx = p->listener_ctx;
    u->ports = calloc(p->port_count ? p->port_count : 1, sizeof(*u->ports));
    u->listener = calloc(p->port_count + 1, sizeof(*u->listener));
    vmk_result r = VMK_OK;
    if (!u->ports || !u->listener || (p->uds_path && !(u->uds_path = strdup(p->uds_path))))
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    for (unsigned i = 0; r == VMK_OK && i < p->port_count; i++) {
        u->ports[i] = p->ports[i];
        u->ports[i].path = strdup(p->ports[i].path);
        if (!u->ports[i].path)
            r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
        u->port_count = i + 1;
    }
    if (r == VMK_OK && u->uds_path)
        r = add_listener(u, u->uds_path, 0, true, what, err);
    for (unsigned i = 0; r == VMK_OK && i < u->port_count; i++)
        if (u->ports[i].listen)
            r = add_listener(u, u->ports[i].path, u->ports[i].port, false, what, err);
    if (r != VMK_OK) {
        vsock_unix_close(u);
        return r;
    }
    *out = u;
    return VMK_OK;
}

int vsock_unix_start(struct vsock_unix *u, struct event_loop *el,
                     const struct vsock_guest_connector *guest)
{
    u->el = el;
    u->guest = *guest;
    for (unsigned i = 0; i < u->listener_count; i++) {
        int rc = event_loop_add(el, &u->listener[i].src);
        if (rc < 0) {
            while (i--)
                event_loop_remove(el, &u->listener[i].src);
            u->el = NULL;
            return rc;
        }
    }
    return 0;
}

void vsock_unix_close(struct vsock_unix *u)
{
    if (!u)
        return;
    for (unsigned i = 0; i < VSOCK_UNIX_MAX_PENDING; i++)
        if (u->pending[i].used)
            drop_pending(&u->pending[i], true);
    for (unsigned i = 0; i < u->listener_count; i++) {
        struct listener *l = &u->listener[i];
        if (u->el)
            event_loop_remove(u->el, &l->src);
        close(l->src.fd);
        unix_socket_remove(l->path, &l->made);
        free(l->path);
    }
    for (unsigned i = 0; i < u->port_count; i++)
        free((char *)u->ports[i].path);
    free(u->ports);
    free(u->listener);
    free(u->uds_path);
    free(u);
}
