#include "attach/net_fd_link.h"
#include "attach/frame_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define RX_BUDGET  64          /* frames per wakeup, so one busy link cannot starve the loop */
#define STAGE_SIZE (64u << 10) /* stream bytes read at once */
#define RETRY_SEC  1           /* between reconnection attempts */

struct fd_link {
    struct net_link link; /* first: the device sees only this */
    struct net_fd_link_params p;
    int fd;         /* -1 while down */
    bool is_socket; /* send with MSG_NOSIGNAL; a tap is written with writev */
    struct event_loop *el;
    struct net_link_peer peer;
    struct event_source io, wake, retry;
    bool started;
    bool up;
    const char *down_why; /* a send saw the peer go: the wake handler takes the link down */
    bool rx_held;         /* a frame waits for the device */
    bool tx_blocked;      /* send said -EAGAIN: call tx_ready once writable */
    size_t cap;           /* vnet header + max frame */
    uint8_t *rx_buf;      /* a datagram */
    size_t rx_len;
    struct frame_reader reader; /* stream framing */
    struct frame_writer writer;
    uint8_t *stage;
    size_t stage_len, stage_off;
};

static struct fd_link *to_fd(struct net_link *l)
{
    return (struct fd_link *)l;
}

static void update_events(struct fd_link *f)
{
    if (!f->started || f->fd < 0)
        return;
    uint32_t ev = 0;
    if (!f->rx_held)
        ev |= EPOLLIN;
    if (f->tx_blocked || frame_writer_pending(&f->writer))
        ev |= EPOLLOUT;
    event_loop_set_events(f->el, &f->io, ev);
}

static void wake(struct fd_link *f)
{
    uint64_t one = 1;
    if (f->wake.fd >= 0 && write(f->wake.fd, &one, sizeof(one)) < 0) {
        /* The counter is full: a wakeup is pending anyway. */
    }
}

static bool peer_gone(int e)
{
    return e == ECONNREFUSED || e == ECONNRESET || e == EPIPE || e == ENOTCONN;
}

static void arm_retry(struct fd_link *f, bool on)
{
    struct itimerspec t = { 0 };
    if (on)
        t.it_value.tv_sec = t.it_interval.tv_sec = RETRY_SEC;
    if (f->retry.fd >= 0)
        timerfd_settime(f->retry.fd, 0, &t, NULL);
}

/* The peer went away: the device hears it, frames from the guest are dropped until a
 * reconnection (lock held, event-loop thread). */
static void go_down(struct fd_link *f, const char *why)
{
    if (f->fd >= 0) {
        event_loop_remove(f->el, &f->io);
        close(f->fd);
        f->fd = -1;
    }
    bool was_up = f->up;
    f->up = false;
    f->rx_held = false;
    frame_reader_next(&f->reader);
    f->writer.off = f->writer.len = 0;
    f->stage_len = f->stage_off = 0;
    if (was_up && f->peer.link_changed)
        f->peer.link_changed(f->peer.ctx, false, why);
    if (f->tx_blocked) {
        f->tx_blocked = false; /* the device's held frame is dropped by the next send */
        f->peer.tx_ready(f->peer.ctx);
    }
    if (f->p.reconnect)
        arm_retry(f, true);
}

static int attach_fd(struct fd_link *f, int fd)
{
    struct stat st;
    f->fd = fd;
    f->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    f->io = (struct event_source){ .fd = fd, .handler = NULL, .ctx = f, .events = EPOLLIN };
    return 0;
}

static void io_ready(void *ctx, uint32_t events);

static int io_register(struct fd_link *f)
{
    f->io.handler = io_ready;
    f->io.events = EPOLLIN;
    return event_loop_add(f->el, &f->io);
}

/* Offers the held frame to the device. true: taken. */
static bool deliver_held(struct fd_link *f)
{
    struct iovec iov;
    if (f->p.framing == NET_FRAMING_DATAGRAM) {
        iov = (struct iovec){ .iov_base = f->rx_buf, .iov_len = f->rx_len };
    } else {
        uint32_t len;
        const uint8_t *fr = frame_reader_frame(&f->reader, &len);
        iov = (struct iovec){ .iov_base = (void *)fr, .iov_len = len };
    }
    if (!f->peer.receive(f->peer.ctx, &iov, 1, iov.iov_len))
        return false;
    f->rx_held = false;
    if (f->p.framing == NET_FRAMING_STREAM)
        frame_reader_next(&f->reader);
    return true;
}

/* Reads the next frame into the held slot. 1: one is held; 0: nothing to read now; -1: the
 * link went down. */
static int read_frame(struct fd_link *f)
{
    if (f->p.framing == NET_FRAMING_DATAGRAM) {
        for (;;) {
            ssize_t n = f->is_socket ? recv(f->fd, f->rx_buf, f->cap, MSG_DONTWAIT | MSG_TRUNC)
                                     : read(f->fd, f->rx_buf, f->cap);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 0;
                if (peer_gone(errno)) {
                    go_down(f, "the peer went away");
                    return -1;
                }
                f->link.dropped++;
                return 0;
            }
            if ((size_t)n > f->cap) {
                f->link.dropped++; /* truncated: longer than any frame we carry */
                continue;
            }
            if (n == 0)
                continue; /* an empty datagram */
            f->rx_len = (size_t)n;
            f->rx_held = true;
            return 1;
        }
    }
    for (;;) {
        if (f->stage_off == f->stage_len) {
            ssize_t n = recv(f->fd, f->stage, STAGE_SIZE, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return 0;
            if (n <= 0) {
                go_down(f, n == 0 ? "the peer closed the connection" : "the connection failed");
                return -1;
            }
            f->stage_off = 0;
            f->stage_len = (size_t)n;
        }
        long used =
            frame_reader_feed(&f->reader, f->stage + f->stage_off, f->stage_len - f->stage_off);
        if (used < 0) {
            go_down(f, "the peer sent a frame length above the limit");
            return -1;
        }
        f->stage_off += (size_t)used;
        uint32_t len;
        if (frame_reader_frame(&f->reader, &len)) {
            f->rx_held = true;
            return 1;
        }
    }
}

static void rx_pump(struct fd_link *f)
{
    unsigned budget = RX_BUDGET;
    while (f->fd >= 0) {
        if (!f->rx_held && read_frame(f) <= 0)
            break;
        if (!deliver_held(f))
            break; /* the device tells us through rx_ready */
        if (--budget == 0) {
            wake(f); /* more may wait in the stage: come back after the others had a turn */
            break;
        }
    }
}

static void io_ready(void *ctx, uint32_t events)
{
    struct fd_link *f = ctx;
    pthread_mutex_lock(f->peer.lock);
    if (f->fd >= 0 && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int e = frame_writer_flush(&f->writer, f->fd);
        if (e < 0 && e != -EAGAIN)
            go_down(f, "the connection failed");
        else if (e == 0 && f->tx_blocked) {
            f->tx_blocked = false;
            f->peer.tx_ready(f->peer.ctx);
        }
    }
    if (f->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        rx_pump(f);
    update_events(f);
    pthread_mutex_unlock(f->peer.lock);
}

/* Deferred work: a held frame after rx_ready, a peer a send saw go. */
static void wake_ready(void *ctx, uint32_t events)
{
    struct fd_link *f = ctx;
    (void)events;
    uint64_t n;
    if (read(f->wake.fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: another wakeup took it */
    }
    pthread_mutex_lock(f->peer.lock);
    if (f->down_why) {
        const char *why = f->down_why;
        f->down_why = NULL;
        go_down(f, why);
    }
    if (f->fd >= 0)
        rx_pump(f);
    update_events(f);
    pthread_mutex_unlock(f->peer.lock);
}

static void retry_ready(void *ctx, uint32_t events)
{
    struct fd_link *f = ctx;
    (void)events;
    uint64_t n;
    if (read(f->retry.fd, &n, sizeof(n)) < 0)
        return;
    pthread_mutex_lock(f->peer.lock);
    if (f->started && f->fd < 0 && f->p.reconnect) {
        int fd = f->p.reconnect(f->p.reconnect_ctx);
        if (fd >= 0) {
            attach_fd(f, fd);
            if (io_register(f) < 0) {
                close(fd);
                f->fd = -1;
            } else {
                arm_retry(f, false);
                f->up = true;
                if (f->peer.link_changed)
                    f->peer.link_changed(f->peer.ctx, true, NULL);
            }
        }
    }
    pthread_mutex_unlock(f->peer.lock);
}

static int fd_start(struct net_link *l, struct event_loop *el, const struct net_link_peer *peer)
{
    struct fd_link *f = to_fd(l);
    f->el = el;
    f->peer = *peer;
    int e;
    f->wake = (struct event_source){ .fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                                     .handler = wake_ready,
                                     .ctx = f };
    if (f->wake.fd < 0)
        return -errno;
    if ((e = event_loop_add(el, &f->wake)) < 0)
        goto fail_wake;
    if (f->p.reconnect) {
        f->retry = (struct event_source){ .fd = timerfd_create(CLOCK_MONOTONIC,
                                                               TFD_CLOEXEC | TFD_NONBLOCK),
                                          .handler = retry_ready,
                                          .ctx = f };
        if (f->retry.fd < 0) {
            e = -errno;
            goto fail_loop;
        }
        if ((e = event_loop_add(el, &f->retry)) < 0)
            goto fail_retry;
    }
    if (f->fd >= 0 && (e = io_register(f)) < 0)
        goto fail_retry_loop;
    pthread_mutex_lock(f->peer.lock);
    f->started = true;
    pthread_mutex_unlock(f->peer.lock);
    return 0;

fail_retry_loop:
    if (f->retry.fd >= 0)
        event_loop_remove(el, &f->retry);
fail_retry:
    if (f->retry.fd >= 0)
        close(f->retry.fd);
    f->retry.fd = -1;
fail_loop:
    event_loop_remove(el, &f->wake);
fail_wake:
    close(f->wake.fd);
    f->wake.fd = -1;
    return e;
}

static int fd_send(struct net_link *l, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct fd_link *f = to_fd(l);
    size_t hdr = f->link.vnet_hdr ? NET_VNET_HDR_LEN : 0;
    if (!f->started || f->fd < 0 || f->down_why || len > f->cap || len < hdr) {
        f->link.dropped++;
        return 0;
    }
    if (f->tx_blocked)
        return -EAGAIN;
    int e = 0;
    if (f->p.framing == NET_FRAMING_STREAM) {
        e = frame_writer_send(&f->writer, f->fd, iov, iovcnt, len);
    } else {
        ssize_t n;
        do {
            if (f->is_socket) {
                struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
                n = sendmsg(f->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
            } else {
                n = writev(f->fd, iov, (int)iovcnt);
            }
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            e = errno == EAGAIN || errno == ENOBUFS ? -EAGAIN : -errno;
    }
    if (e == -EAGAIN) {
        f->tx_blocked = true;
        update_events(f);
        return -EAGAIN;
    }
    if (e < 0) {
        f->link.dropped++;
        if (peer_gone(-e) || f->p.framing == NET_FRAMING_STREAM) {
            f->down_why = "the peer went away";
            wake(f);
        }
        return 0;
    }
    update_events(f); /* a stream's kept tail wants EPOLLOUT */
    return 0;
}

static void fd_rx_ready(struct net_link *l)
{
    struct fd_link *f = to_fd(l);
    if (f->rx_held)
        wake(f); /* the wake handler offers the held frame again */
    else
        update_events(f);
}

static void fd_set_offloads(struct net_link *l, unsigned offloads)
{
    struct fd_link *f = to_fd(l);
    if (f->p.set_offloads && f->fd >= 0)
        f->p.set_offloads(f->fd, offloads & f->link.offloads);
}

static void fd_stop(struct net_link *l)
{
    struct fd_link *f = to_fd(l);
    if (!f->el)
        return;
    pthread_mutex_lock(f->peer.lock);
    f->started = false;
    if (f->fd >= 0)
        event_loop_remove(f->el, &f->io);
    if (f->retry.fd >= 0) {
        event_loop_remove(f->el, &f->retry);
        close(f->retry.fd);
        f->retry.fd = -1;
    }
    if (f->wake.fd >= 0) {
        event_loop_remove(f->el, &f->wake);
        close(f->wake.fd);
        f->wake.fd = -1;
    }
    pthread_mutex_unlock(f->peer.lock);
    f->el = NULL;
}

static void fd_destroy(struct net_link *l)
{
    struct fd_link *f = to_fd(l);
    fd_stop(l);
    if (f->fd >= 0)
        close(f->fd);
    if (f->p.reconnect_free)
        f->p.reconnect_free(f->p.reconnect_ctx);
    frame_reader_fini(&f->reader);
    frame_writer_fini(&f->writer);
    free(f->rx_buf);
    free(f->stage);
    free(f);
}

static const struct net_link_ops fd_ops = {
    .start = fd_start,
    .send = fd_send,
    .rx_ready = fd_rx_ready,
    .set_offloads = fd_set_offloads,
    .stop = fd_stop,
    .destroy = fd_destroy,
};

struct net_link *net_fd_link_new(const struct net_fd_link_params *p)
{
    struct fd_link *f = calloc(1, sizeof(*f));
    if (!f) {
        close(p->fd);
        return NULL;
    }
    f->p = *p;
    f->link.ops = &fd_ops;
    f->link.vnet_hdr = p->vnet_hdr;
    f->link.offloads = p->vnet_hdr ? p->offloads : 0;
    unsigned max = p->max_frame && p->max_frame < NET_FRAME_MAX ? p->max_frame : NET_FRAME_MAX;
    f->cap = max + (p->vnet_hdr ? NET_VNET_HDR_LEN : 0);
    f->wake.fd = f->retry.fd = -1;
    f->up = true;
    attach_fd(f, p->fd);
    bool ok;
    if (p->framing == NET_FRAMING_STREAM)
        ok = frame_reader_init(&f->reader, (uint32_t)f->cap) == 0 &&
             frame_writer_init(&f->writer, (uint32_t)f->cap) == 0 &&
             (f->stage = malloc(STAGE_SIZE)) != NULL;
    else
        ok = (f->rx_buf = malloc(f->cap)) != NULL;
    if (!ok) {
        fd_destroy(&f->link);
        return NULL;
    }
    return &f->link;
}
