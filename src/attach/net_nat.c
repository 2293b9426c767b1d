#include "attach/net_nat.h"
#include "core/error.h"

#include <libslirp.h>

#define SLIRP_SONAME "libslirp.so.0"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* libslirp, loaded the first time a NAT is made: a VM without one (and the vmkit command for
 * it) neither maps libslirp nor glib, which it pulls in (about 1.4 MiB of RSS and the
 * dynamic linking of both at every start). The prototypes come from libslirp.h. */
static struct {
    __typeof__(slirp_new) *new;
    __typeof__(slirp_cleanup) *cleanup;
    __typeof__(slirp_input) *input;
    __typeof__(slirp_pollfds_fill) *pollfds_fill;
    __typeof__(slirp_pollfds_poll) *pollfds_poll;
    __typeof__(slirp_handle_timer) *handle_timer;
    __typeof__(slirp_add_hostfwd) *add_hostfwd;
    __typeof__(slirp_remove_hostfwd) *remove_hostfwd;
    __typeof__(slirp_add_hostxfwd) *add_hostxfwd;
    __typeof__(slirp_remove_hostxfwd) *remove_hostxfwd;
    __typeof__(slirp_version_string) *version_string;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256]; /* why it could not be loaded; "" once loaded */

static void load_lib(void)
{
    void *h = dlopen(SLIRP_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(lib_error, sizeof(lib_error), "%s", dlerror());
        return;
    }
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        { "slirp_new", (void **)&lib.new },
        { "slirp_cleanup", (void **)&lib.cleanup },
        { "slirp_input", (void **)&lib.input },
        { "slirp_pollfds_fill", (void **)&lib.pollfds_fill },
        { "slirp_pollfds_poll", (void **)&lib.pollfds_poll },
        { "slirp_handle_timer", (void **)&lib.handle_timer },
        { "slirp_add_hostfwd", (void **)&lib.add_hostfwd },
        { "slirp_remove_hostfwd", (void **)&lib.remove_hostfwd },
        { "slirp_add_hostxfwd", (void **)&lib.add_hostxfwd },
        { "slirp_remove_hostxfwd", (void **)&lib.remove_hostxfwd },
        { "slirp_version_string", (void **)&lib.version_string },
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(lib_error, sizeof(lib_error), "%s has no %s", SLIRP_SONAME, syms[i].name);
            dlclose(h);
            return;
        }
    }
    /* Loaded for good: the handle stays open as long as the process. */
}

#define RING_FRAMES   256   /* frames queued each way */
#define RX_BUDGET     64    /* frames to the guest per event-loop wakeup, so others get a turn */
#define POLL_FDS      16    /* first size of the poll array; grows with the sockets */
#define SLIRP_MTU_MAX 65521 /* libslirp's IF_MTU_MAX: slirp_new refuses more */

/* Frames crossing between two threads: one producer, one consumer. head and count are under
 * nat->qlock; a slot counted in stays put until the consumer moves head past it, so the
 * consumer reads (and hands on) a frame without the lock. */
struct frame_ring {
    uint8_t *slots; /* RING_FRAMES slots of NET_FRAME_MAX bytes, allocated once */
    uint32_t len[RING_FRAMES];
    unsigned head, count;
};

struct nat_timer {
    SlirpTimerId id;
    void *cb_opaque;
    int64_t expire_ms; /* -1: not armed */
    struct nat_timer *next;
};

/* A forward to add or remove, run on the NAT thread while the caller waits. */
struct nat_cmd {
    bool add;
    const struct net_nat_forward *f;
    vmk_error **err;
    vmk_result result;
    bool done;
};

struct net_nat {
    struct net_link link; /* first: the device sees only this */
    char *what;
    Slirp *slirp; /* NAT thread only while it runs; the caller's before and after */
    struct nat_timer *timers;
    struct pollfd *pfd; /* pfd[0]: wake_fd; pfd[1]: kick_fd, if any; then what slirp watches */
    unsigned npfd, pfd_cap, pfd_slirp;
    int wake_fd; /* eventfd: frames for slirp, a command, quit, a new kick_fd */

    /* The NAT thread's life and the forward commands. */
    pthread_mutex_t cmd_lock;
    pthread_cond_t cmd_cond;
    pthread_t thread;
    bool running; /* the thread exists (until joined) */
    bool quit;
    struct nat_cmd *cmd;

    /* Both rings' indices and the flags between threads. */
    pthread_mutex_t qlock;
    struct frame_ring to_slirp, to_guest;
    bool tx_owed; /* send said -EAGAIN: tell the peer once to_slirp has room */
    /* The guest's transmit kicks (watch_kick), read by the NAT thread: ours (a dup), the one
     * the thread polls this round, and one retired while it did, for the thread to close. */
    int kick_fd, kick_polled, kick_old;
    bool tx_signal; /* it has: the event-loop handler calls tx_ready */
    /* Frames for the guest dropped on a full ring, for the handler to add to link.dropped
     * (written only with the peer's lock held, so that the device reads it safely). */
    uint64_t guest_dropped;

    /* Event-loop side, under peer.lock. */
    struct event_loop *el;
    struct net_link_peer peer;
    struct event_source guest_src; /* eventfd: frames for the guest, room for the guest's */
    bool started;
    bool rx_held; /* the peer refused a frame: wait for rx_ready */
};

static struct net_nat *to_nat(struct net_link *l)
{
    return (struct net_nat *)l;
}

/* eventfds: a failed signal means the counter is full, so a wakeup is pending anyway; a
 * failed drain, that another wakeup took it. */
static void signal_fd(int fd)
{
    (void)eventfd_write(fd, 1);
}

static void drain_fd(int fd)
{
    eventfd_t v;
    (void)eventfd_read(fd, &v);
}

static uint8_t *slot(const struct frame_ring *r, unsigned i)
{
    return r->slots + (size_t)i * NET_FRAME_MAX;
}

/* The oldest frame, or NULL (qlock held). */
static uint8_t *ring_peek(const struct frame_ring *r, uint32_t *len)
{
    if (!r->count)
        return NULL;
    *len = r->len[r->head];
    return slot(r, r->head);
}

static void ring_pop(struct frame_ring *r)
{
    r->head = (r->head + 1) % RING_FRAMES;
    r->count--;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The NAT this thread runs, on a NAT thread (NULL elsewhere). */
static __thread struct net_nat *nat_self;

/* ---- slirp's callbacks (NAT thread, or the caller's before the thread starts) ---- */

/* On the NAT thread: the frame straight into the guest's buffers, under the peer's lock as
 * the event-loop side delivers, when no queued frame waits before it. This saves a copy and
 * the hand-off to the event loop (an eventfd write and a wakeup of its thread per batch),
 * which cost more host CPU than the NAT itself. A frame the device cannot take now waits in
 * the ring for rx_ready like any other. Whether it was taken (delivered or dropped). */
static bool deliver_direct(struct net_nat *n, const void *buf, size_t len)
{
    bool taken = false;
    pthread_mutex_lock(n->peer.lock);
    pthread_mutex_lock(&n->qlock);
    bool empty = n->to_guest.count == 0;
    pthread_mutex_unlock(&n->qlock);
    if (n->started && !n->rx_held && empty) {
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        taken = n->peer.receive(n->peer.ctx, &iov, 1, len);
        n->rx_held = !taken;
    }
    pthread_mutex_unlock(n->peer.lock);
    return taken;
}

/* A frame for the guest: delivered, queued, or dropped when the guest is that far behind. */
static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    struct net_nat *n = opaque;
    if (nat_self == n && len <= NET_FRAME_MAX && deliver_direct(n, buf, len))
        return (ssize_t)len;
    struct frame_ring *r = &n->to_guest;
    bool wake = false;
    pthread_mutex_lock(&n->qlock);
    if (len > NET_FRAME_MAX || r->count == RING_FRAMES) {
        wake = n->guest_dropped++ == 0;
    } else {
        unsigned i = (r->head + r->count) % RING_FRAMES;
        memcpy(slot(r, i), buf, len);
        r->len[i] = (uint32_t)len;
        /* The handler empties the ring or waits for rx_ready: only an empty ring needs it. */
        wake = r->count++ == 0;
    }
    pthread_mutex_unlock(&n->qlock);
    if (wake)
        signal_fd(n->guest_src.fd);
    return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
    (void)msg, (void)opaque; /* a guest's malformed packets are its own business */
}

static int64_t cb_clock_get_ns(void *opaque)
{
    (void)opaque;
    return now_ns();
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    struct net_nat *n = opaque;
    struct nat_timer *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    *t = (struct nat_timer){ .id = id, .cb_opaque = cb_opaque, .expire_ms = -1, .next = n->timers };
    n->timers = t;
    return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct net_nat *n = opaque;
    for (struct nat_timer **p = &n->timers; *p; p = &(*p)->next) {
        if (*p == timer) {
            *p = (*p)->next;
            free(timer);
            return;
        }
    }
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    if (timer)
        ((struct nat_timer *)timer)->expire_ms = expire_ms;
}

static void cb_no_fd(int fd, void *opaque)
{
    (void)fd, (void)opaque; /* slirp_pollfds_fill names the descriptors each round */
}

/* slirp's poll set changed. The NAT thread fills it afresh before it sleeps again, so only
 * another thread has to wake it (its own writes were a third of those to its eventfd). */
static void cb_notify(void *opaque)
{
    struct net_nat *n = opaque;
    if (nat_self != n)
        signal_fd(n->wake_fd);
}

static const SlirpCb nat_callbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_no_fd,
    .unregister_poll_fd = cb_no_fd,
    .notify = cb_notify,
    .timer_new_opaque = cb_timer_new_opaque,
};

static int cb_add_poll(int fd, int events, void *opaque)
{
    struct net_nat *n = opaque;
    if (n->npfd == n->pfd_cap) {
        struct pollfd *p = realloc(n->pfd, 2 * n->pfd_cap * sizeof(*p));
        if (!p)
            return -1; /* not watched this round; slirp tries again on the next */
        n->pfd = p;
        n->pfd_cap *= 2;
    }
    short ev = 0;
    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    n->pfd[n->npfd] = (struct pollfd){ .fd = fd, .events = ev };
    return (int)n->npfd++;
}

static int cb_get_revents(int idx, void *opaque)
{
    struct net_nat *n = opaque;
    if (idx < (int)n->pfd_slirp || (unsigned)idx >= n->npfd)
        return 0;
    short re = n->pfd[idx].revents;
    int r = 0;
    if (re & POLLIN)
        r |= SLIRP_POLL_IN;
    if (re & POLLOUT)
        r |= SLIRP_POLL_OUT;
    if (re & POLLPRI)
        r |= SLIRP_POLL_PRI;
    if (re & (POLLERR | POLLNVAL))
        r |= SLIRP_POLL_ERR;
    if (re & POLLHUP)
        r |= SLIRP_POLL_HUP;
    return r;
}

/* ---- forwards ---- */

struct host_addr {
    bool v6;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    char name[96]; /* "127.0.0.1:8080", "[::1]:8080", "udp ..." */
};

/* The host address of f (and, to add it, its guest port) checked. */
static vmk_result parse_forward(const struct net_nat *n, const struct net_nat_forward *f, bool add,
                                struct host_addr *a, vmk_error **err)
{
    if (!f)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: no forward given", n->what);
    size_t len = strnlen(f->host_address, sizeof(f->host_address));
    if (len == sizeof(f->host_address))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: forward host address too long",
                        n->what);
    *a = (struct host_addr){ .in.sin_family = AF_INET, .in6.sin6_family = AF_INET6 };
    if (inet_pton(AF_INET, f->host_address, &a->in.sin_addr) == 1) {
        a->in.sin_port = htons((uint16_t)f->host_port);
    } else if (inet_pton(AF_INET6, f->host_address, &a->in6.sin6_addr) == 1) {
        a->v6 = true;
        a->in6.sin6_port = htons((uint16_t)f->host_port);
    } else {
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "%s: forward from '%s': not an IPv4 or IPv6 address", n->what,
                        f->host_address);
    }
    snprintf(a->name, sizeof(a->name), "%s%s%s%s:%u", f->udp ? "udp " : "", a->v6 ? "[" : "",
             f->host_address, a->v6 ? "]" : "", f->host_port);
    if (f->host_port < 1 || f->host_port > 65535 ||
        (add && (f->guest_port < 1 || f->guest_port > 65535)))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "%s: forward from %s to guest port %u: ports are 1 to 65535", n->what,
                        a->name, f->guest_port);
    return VMK_OK;
}

/* Adds or removes one forward (whichever thread owns slirp now). */
static vmk_result apply_forward(struct net_nat *n, bool add, const struct net_nat_forward *f,
                                vmk_error **err)
{
    struct host_addr a;
    vmk_result r = parse_forward(n, f, add, &a, err);
    if (r != VMK_OK)
        return r;
    int flags = SLIRP_HOSTFWD_V6ONLY | (f->udp ? SLIRP_HOSTFWD_UDP : 0);
    int rc;
    if (!add) {
        if (a.v6)
            rc = lib.remove_hostxfwd(n->slirp, (struct sockaddr *)&a.in6, sizeof(a.in6), flags);
        else
            rc = lib.remove_hostfwd(n->slirp, f->udp, a.in.sin_addr, (int)f->host_port);
        if (rc < 0)
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: no forward from %s", n->what,
                            a.name);
        return VMK_OK;
    }
    struct in_addr guest = { .s_addr = htonl(0x0a00020f) }; /* 10.0.2.15 */
    /* IPv6 "any": the guest's IPv6 address, which slirp fills in per connection from its NDP
     * table (the first address the guest used); a connection before that is closed. */
    struct sockaddr_in6 guest6 = { .sin6_family = AF_INET6,
                                   .sin6_port = htons((uint16_t)f->guest_port) };
    errno = 0;
    if (a.v6)
        rc = lib.add_hostxfwd(n->slirp, (struct sockaddr *)&a.in6, sizeof(a.in6),
                              (struct sockaddr *)&guest6, sizeof(guest6), flags);
    else
        rc = lib.add_hostfwd(n->slirp, f->udp, a.in.sin_addr, (int)f->host_port, guest,
                             (int)f->guest_port);
    if (rc < 0) {
        /* slirp says -1 only; its socket(), bind() or listen() left the reason in errno. */
        int e = errno ? errno : EIO;
        return vmk_fail(err, VMK_ERR_IO, e, "%s: %s: %s", n->what, a.name, strerror(e));
    }
    return VMK_OK;
}

/* Runs a command on the NAT thread when it runs, else here; waits for it either way. */
static vmk_result forward_command(struct net_link *l, bool add, const struct net_nat_forward *f,
                                  vmk_error **err)
{
    if (!l)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "NAT: no link given");
    struct net_nat *n = to_nat(l);
    struct nat_cmd c = { .add = add, .f = f, .err = err };
    pthread_mutex_lock(&n->cmd_lock);
    while (!c.done) {
        if (!n->running) {
            /* No thread: slirp is ours while cmd_lock keeps start and stop out. */
            c.result = apply_forward(n, add, f, err);
            c.done = true;
        } else if (!n->cmd && !n->quit) {
            n->cmd = &c;
            signal_fd(n->wake_fd);
        } else {
            /* Ours or another caller's is in flight, or the thread is on its way out. */
            pthread_cond_wait(&n->cmd_cond, &n->cmd_lock);
        }
    }
    if (n->cmd == &c)
        n->cmd = NULL;
    pthread_cond_broadcast(&n->cmd_cond);
    pthread_mutex_unlock(&n->cmd_lock);
    return c.result;
}

vmk_result net_nat_add_forward(struct net_link *l, const struct net_nat_forward *f, vmk_error **err)
{
    return forward_command(l, true, f, err);
}

vmk_result net_nat_remove_forward(struct net_link *l, const struct net_nat_forward *f,
                                  vmk_error **err)
{
    return forward_command(l, false, f, err);
}

/* ---- the NAT thread ---- */

/* Feeds queued guest frames to slirp, up to a ring's worth (so that the sockets get their
 * turn too). Returns how many. */
static unsigned feed_slirp(struct net_nat *n)
{
    struct frame_ring *r = &n->to_slirp;
    unsigned fed = 0;
    while (fed < RING_FRAMES) {
        uint32_t len;
        pthread_mutex_lock(&n->qlock);
        uint8_t *f = ring_peek(r, &len);
        pthread_mutex_unlock(&n->qlock);
        if (!f)
            break;
        /* Without the lock: slirp answers some frames at once (send_packet takes it). */
        lib.input(n->slirp, f, (int)len);
        fed++;
        pthread_mutex_lock(&n->qlock);
        ring_pop(r);
        bool owed = n->tx_owed;
        if (owed) {
            n->tx_owed = false;
            n->tx_signal = true;
        }
        pthread_mutex_unlock(&n->qlock);
        if (owed)
            signal_fd(n->guest_src.fd);
    }
    return fed;
}

/* Fires due timers; returns the milliseconds to the next one (-1: none). */
static int64_t run_timers(struct net_nat *n)
{
    for (;;) {
        int64_t now = now_ns() / 1000000, next = -1;
        struct nat_timer *due = NULL;
        for (struct nat_timer *t = n->timers; t && !due; t = t->next) {
            if (t->expire_ms < 0)
                continue;
            if (t->expire_ms <= now)
                due = t;
            else if (next < 0 || t->expire_ms - now < next)
                next = t->expire_ms - now;
        }
        if (!due)
            return next;
        /* The handler may re-arm or free it: scan again after each one. */
        due->expire_ms = -1;
        lib.handle_timer(n->slirp, due->id, due->cb_opaque);
    }
}

/* Runs the command waiting for this thread, if any. Returns whether to quit. */
static bool take_command(struct net_nat *n)
{
    pthread_mutex_lock(&n->cmd_lock);
    struct nat_cmd *c = n->cmd;
    if (c && !c->done) {
        c->result = apply_forward(n, c->add, c->f, c->err);
        c->done = true;
        pthread_cond_broadcast(&n->cmd_cond);
    }
    bool quit = n->quit;
    pthread_mutex_unlock(&n->cmd_lock);
    return quit;
}

/* The kick fd to poll this round (-1: none); closes the one retired since the last. */
static int poll_kick(struct net_nat *n)
{
    pthread_mutex_lock(&n->qlock);
    if (n->kick_old >= 0)
        close(n->kick_old);
    n->kick_old = -1;
    n->kick_polled = n->kick_fd;
    pthread_mutex_unlock(&n->qlock);
    return n->kick_polled;
}

/* The guest kicked its transmit queue: the device hands us its frames, here, under its lock
 * (they queue in to_slirp without a wake-up), and slirp takes them once the lock is let go;
 * then the device interrupts the guest for the buffers, after what slirp sent back in
 * answer (one interrupt for both, often). */
static void take_kick(struct net_nat *n, int fd)
{
    drain_fd(fd);
    pthread_mutex_lock(n->peer.lock);
    bool started = n->started && n->peer.tx_kick;
    if (started)
        n->peer.tx_kick(n->peer.ctx);
    pthread_mutex_unlock(n->peer.lock);
    if (!started)
        return;
    feed_slirp(n);
    pthread_mutex_lock(n->peer.lock);
    if (n->peer.tx_kick_done)
        n->peer.tx_kick_done(n->peer.ctx);
    pthread_mutex_unlock(n->peer.lock);
}

static void *nat_thread(void *arg)
{
    struct net_nat *n = arg;
    nat_self = n;
    while (!take_command(n)) {
        /* After guest frames, a round without sleeping: slirp sends what waited for the
         * guest's MAC (an ARP reply just fed) only at the end of slirp_pollfds_poll, and
         * drops it a second after it asked. */
        bool fed = feed_slirp(n) > 0;
        int64_t timer = run_timers(n);
        uint32_t slirp_ms = UINT32_MAX;
        n->pfd[0] = (struct pollfd){ .fd = n->wake_fd, .events = POLLIN };
        n->npfd = 1;
        int kick = poll_kick(n);
        if (kick >= 0)
            n->pfd[n->npfd++] = (struct pollfd){ .fd = kick, .events = POLLIN };
        n->pfd_slirp = n->npfd;
        lib.pollfds_fill(n->slirp, &slirp_ms, cb_add_poll, n);
        int timeout = slirp_ms == UINT32_MAX ? -1
                      : slirp_ms > INT32_MAX ? INT32_MAX
                                             : (int)slirp_ms;
        if (timer >= 0 && (timeout < 0 || timer < timeout))
            timeout = (int)timer;
        if (fed)
            timeout = 0;
        int r = poll(n->pfd, n->npfd, timeout);
        if (r > 0 && (n->pfd[0].revents & POLLIN))
            drain_fd(n->wake_fd);
        lib.pollfds_poll(n->slirp, r < 0, cb_get_revents, n);
        if (r > 0 && kick >= 0 && (n->pfd[1].revents & POLLIN))
            take_kick(n, kick); /* its frames reach slirp at the top of the loop */
    }
    pthread_mutex_lock(&n->qlock);
    n->kick_polled = -1;
    if (n->kick_old >= 0)
        close(n->kick_old);
    n->kick_old = -1;
    pthread_mutex_unlock(&n->qlock);
    return NULL;
}

/* ---- the event-loop side ---- */

/* Hands queued frames to the peer until it refuses (peer lock held). */
static void deliver(struct net_nat *n)
{
    struct frame_ring *r = &n->to_guest;
    for (unsigned budget = RX_BUDGET; !n->rx_held;) {
        uint32_t len;
        pthread_mutex_lock(&n->qlock);
        uint8_t *f = ring_peek(r, &len);
        pthread_mutex_unlock(&n->qlock);
        if (!f)
            return;
        struct iovec iov = { .iov_base = f, .iov_len = len };
        if (!n->peer.receive(n->peer.ctx, &iov, 1, len)) {
            n->rx_held = true; /* the frame stays first; rx_ready resumes */
            return;
        }
        pthread_mutex_lock(&n->qlock);
        ring_pop(r);
        pthread_mutex_unlock(&n->qlock);
        if (--budget == 0) {
            signal_fd(n->guest_src.fd); /* the rest after the loop's other sources */
            return;
        }
    }
}

static void guest_event(void *ctx, uint32_t events)
{
    struct net_nat *n = ctx;
    (void)events;
    drain_fd(n->guest_src.fd); /* before looking at the ring: a later frame signals anew */
    pthread_mutex_lock(n->peer.lock);
    pthread_mutex_lock(&n->qlock);
    n->link.dropped += n->guest_dropped;
    n->guest_dropped = 0;
    bool tx = n->tx_signal;
    n->tx_signal = false;
    pthread_mutex_unlock(&n->qlock);
    if (n->started) {
        if (tx && n->peer.tx_ready)
            n->peer.tx_ready(n->peer.ctx);
        deliver(n);
    }
    pthread_mutex_unlock(n->peer.lock);
}

/* ---- net_link ops ---- */

static int nat_start(struct net_link *l, struct event_loop *el, const struct net_link_peer *peer)
{
    struct net_nat *n = to_nat(l);
    if (n->el)
        return -EBUSY;
    n->peer = *peer;
    n->guest_src.handler = guest_event;
    n->guest_src.ctx = n;
    pthread_mutex_lock(n->peer.lock);
    n->started = true;
    n->rx_held = false;
    pthread_mutex_lock(&n->qlock);
    n->tx_owed = n->tx_signal = false;
    pthread_mutex_unlock(&n->qlock);
    pthread_mutex_unlock(n->peer.lock);
    int e = event_loop_add(el, &n->guest_src);
    if (e < 0) {
        pthread_mutex_lock(n->peer.lock);
        n->started = false;
        pthread_mutex_unlock(n->peer.lock);
        return e;
    }
    n->el = el;
    signal_fd(n->guest_src.fd); /* frames an earlier run left queued */

    /* The thread takes no process signals: they are the application's. Blocked, the SIGPIPE
     * of libslirp's send() to a host socket that was reset (it passes no MSG_NOSIGNAL) stays
     * pending on this thread instead of ending the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_mutex_lock(&n->cmd_lock);
    n->quit = false;
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&n->thread, NULL, nat_thread, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    n->running = e == 0;
    pthread_mutex_unlock(&n->cmd_lock);
    if (e) {
        pthread_mutex_lock(n->peer.lock);
        n->started = false;
        event_loop_remove(el, &n->guest_src);
        pthread_mutex_unlock(n->peer.lock);
        n->el = NULL;
        return -e;
    }
    return 0;
}

static int nat_send(struct net_link *l, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct net_nat *n = to_nat(l);
    struct frame_ring *r = &n->to_slirp;
    if (!n->started || len > NET_FRAME_MAX) {
        n->link.dropped++;
        return 0;
    }
    pthread_mutex_lock(&n->qlock);
    if (r->count == RING_FRAMES) {
        n->tx_owed = true;
        pthread_mutex_unlock(&n->qlock);
        return -EAGAIN;
    }
    unsigned i = (r->head + r->count) % RING_FRAMES;
    uint8_t *dst = slot(r, i);
    size_t done = 0;
    for (unsigned k = 0; k < iovcnt && done < len; k++) {
        size_t chunk = iov[k].iov_len < len - done ? iov[k].iov_len : len - done;
        memcpy(dst + done, iov[k].iov_base, chunk);
        done += chunk;
    }
    r->len[i] = (uint32_t)done;
    /* The NAT thread empties the ring before it sleeps; from a kick it read, it is awake. */
    bool wake = r->count++ == 0 && nat_self != n;
    pthread_mutex_unlock(&n->qlock);
    if (wake)
        signal_fd(n->wake_fd);
    return 0;
}

static int nat_watch_kick(struct net_link *l, int fd)
{
    struct net_nat *n = to_nat(l);
    int mine = -1;
    if (fd >= 0 && (mine = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return -errno;
    pthread_mutex_lock(&n->qlock);
    int old = n->kick_fd;
    n->kick_fd = mine;
    /* The one the thread polls now it closes itself, on its next round. */
    if (old >= 0 && old == n->kick_polled) {
        if (n->kick_old >= 0)
            close(n->kick_old);
        n->kick_old = old;
    } else if (old >= 0) {
        close(old);
    }
    pthread_mutex_unlock(&n->qlock);
    signal_fd(n->wake_fd);
    return 0;
}

static void nat_rx_ready(struct net_link *l)
{
    struct net_nat *n = to_nat(l);
    /* Lock held: the loop handler offers the held frame again. */
    if (n->rx_held) {
        n->rx_held = false;
        signal_fd(n->guest_src.fd);
    }
}

static void nat_stop(struct net_link *l)
{
    struct net_nat *n = to_nat(l);
    pthread_mutex_lock(&n->cmd_lock);
    bool running = n->running;
    n->quit = true;
    pthread_mutex_unlock(&n->cmd_lock);
    if (running) {
        signal_fd(n->wake_fd);
        pthread_join(n->thread, NULL);
        pthread_mutex_lock(&n->cmd_lock);
        n->running = false;
        pthread_cond_broadcast(&n->cmd_cond); /* a waiting command runs on its caller's thread */
        pthread_mutex_unlock(&n->cmd_lock);
    }
    if (n->el) {
        pthread_mutex_lock(n->peer.lock); /* waits for a handler in progress */
        n->started = false;
        event_loop_remove(n->el, &n->guest_src);
        pthread_mutex_unlock(n->peer.lock);
        n->el = NULL;
    }
}

static void nat_destroy(struct net_link *l)
{
    struct net_nat *n = to_nat(l);
    nat_stop(l);
    if (n->slirp)
        lib.cleanup(n->slirp); /* frees its timers through cb_timer_free */
    n->link.dropped += n->guest_dropped;
    while (n->timers)
        cb_timer_free(n->timers, n);
    if (n->wake_fd >= 0)
        close(n->wake_fd);
    if (n->kick_fd >= 0)
        close(n->kick_fd);
    if (n->guest_src.fd >= 0)
        close(n->guest_src.fd);
    pthread_cond_destroy(&n->cmd_cond);
    pthread_mutex_destroy(&n->cmd_lock);
    pthread_mutex_destroy(&n->qlock);
    free(n->to_slirp.slots);
    free(n->to_guest.slots);
    free(n->pfd);
    free(n->what);
    free(n);
}

static const struct net_link_ops nat_ops = {
    .start = nat_start,
    .send = nat_send,
    .rx_ready = nat_rx_ready,
    .watch_kick = nat_watch_kick,
    .stop = nat_stop,
    .destroy = nat_destroy,
};

static struct in_addr ip4(uint32_t host_order)
{
    return (struct in_addr){ .s_addr = htonl(host_order) };
}

/* fec0::<last> */
static struct in6_addr site_local(uint8_t last)
{
    struct in6_addr a = { 0 };
    a.s6_addr[0] = 0xfe;
    a.s6_addr[1] = 0xc0;
    a.s6_addr[15] = last;
    return a;
}

vmk_result net_nat_new(const struct net_nat_params *p, const char *what, struct net_link **out,
                       vmk_error **err)
{
    if (!p || !what || !out || (p->forward_count && !p->forwards))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "NAT: missing parameters");
    pthread_once(&lib_once, load_lib);
    if (lib_error[0])
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "%s: the NAT needs libslirp (Debian: apt-get install libslirp0): %s", what,
                        lib_error);
    struct net_nat *n = calloc(1, sizeof(*n));
    if (!n)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    n->link.ops = &nat_ops;
    n->wake_fd = n->guest_src.fd = -1;
    n->kick_fd = n->kick_polled = n->kick_old = -1;
    pthread_mutex_init(&n->cmd_lock, NULL);
    pthread_cond_init(&n->cmd_cond, NULL);
    pthread_mutex_init(&n->qlock, NULL);
    vmk_result r;
    /* Slots are NET_FRAME_MAX apart, but a page is touched only when a frame reaches it. */
    n->what = strdup(what);
    n->to_slirp.slots = malloc((size_t)RING_FRAMES * NET_FRAME_MAX);
    n->to_guest.slots = malloc((size_t)RING_FRAMES * NET_FRAME_MAX);
    n->pfd = calloc(POLL_FDS, sizeof(*n->pfd));
    n->pfd_cap = POLL_FDS;
    if (!n->what || !n->to_slirp.slots || !n->to_guest.slots || !n->pfd) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
        goto fail;
    }
    n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->guest_src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->wake_fd < 0 || n->guest_src.fd < 0) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "%s: eventfd: %s", what, strerror(errno));
        goto fail;
    }

    size_t mtu = p->mtu > SLIRP_MTU_MAX ? SLIRP_MTU_MAX : p->mtu; /* 0: libslirp's 1500 */
    SlirpConfig cfg = {
        .version = 4,
        .in_enabled = true,
        .vnetwork = ip4(0x0a000200),    /* 10.0.2.0 */
        .vnetmask = ip4(0xffffff00),    /* /24 */
        .vhost = ip4(0x0a000202),       /* 10.0.2.2 */
        .vdhcp_start = ip4(0x0a00020f), /* 10.0.2.15 */
        .vnameserver = ip4(0x0a000203), /* 10.0.2.3 */
        .in6_enabled = true,
        .vprefix_addr6 = site_local(0),
        .vprefix_len = 64,
        .vhost6 = site_local(2),
        .vnameserver6 = site_local(3),
        /* No hostname or domain: the guest keeps its own. */
        .disable_host_loopback = !p->host_loopback,
        .if_mtu = mtu,
        .if_mru = mtu,
    };
    n->slirp = lib.new(&cfg, &nat_callbacks, n);
    if (!n->slirp) {
        r = vmk_fail(err, VMK_ERR_INTERNAL, 0, "%s: cannot create the NAT (libslirp %s)", what,
                     lib.version_string());
        goto fail;
    }
    for (unsigned i = 0; i < p->forward_count; i++) {
        r = apply_forward(n, true, &p->forwards[i], err);
        if (r != VMK_OK)
            goto fail;
    }
    *out = &n->link;
    return VMK_OK;

fail:
    nat_destroy(&n->link);
    return r;
}
