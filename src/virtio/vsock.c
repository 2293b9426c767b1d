#include "virtio/vsock.h"
#include "core/le_bytes.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define Q_RX    0
#define Q_TX    1
#define Q_EVENT 2

/* struct virtio_vsock_hdr (§5.10.6), little-endian, packed. */
#define H_SRC_CID   0
#define H_DST_CID   8
#define H_SRC_PORT  16
#define H_DST_PORT  20
#define H_LEN       24
#define H_TYPE      28
#define H_OP        30
#define H_FLAGS     32
#define H_BUF_ALLOC 36
#define H_FWD_CNT   40

#define TYPE_STREAM 1
enum op {
    OP_INVALID,
    OP_REQUEST,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST,
};
#define SHUTDOWN_RCV  1u /* the sender will receive no more */
#define SHUTDOWN_SEND 2u /* the sender will send no more */

#define MAX_PAYLOAD      (64u << 10) /* Linux's largest packet; longer ones are malformed */
#define ORPHAN_RSTS      64u         /* resets owed for packets of no connection */
#define FIRST_LOCAL_PORT (1u << 30)  /* host ports of host-initiated connections */

/* Control packets a connection owes the guest, sent as receive buffers allow. */
#define OWE_REQUEST  1u
#define OWE_RESPONSE 2u
#define OWE_CREDIT   4u
#define OWE_SHUTDOWN 8u
#define OWE_RST      16u

enum conn_state {
    C_CONNECTING, /* the host asked; REQUEST sent or owed, waiting for RESPONSE */
    C_OPEN,
    C_CLOSING, /* RST owed: freed once it is sent */
    C_GONE,    /* freed, but an event already fetched may still name it (see reap) */
};

struct conn {
    struct vsock *v;
    struct event_source src; /* the host socket */
    enum conn_state state;
    uint32_t guest_port, host_port;
    struct vsock_pending *pending; /* a host-initiated connection's, told how it ended */
    uint64_t deadline_ns;          /* C_CONNECTING: given up at this CLOCK_MONOTONIC time */
    unsigned owed;
    bool queued;   /* on the device's list of connections with something for the guest */
    bool readable; /* the host socket may have bytes: read it when credit and buffers allow */
    bool hup;      /* the host socket hung up: no longer watched (epoll would report it forever) */
    bool guest_shut_rcv, guest_shut_send, host_eof;
    uint32_t shutdown_flags; /* what OWE_SHUTDOWN says */
    /* guest -> host: what the guest sent and what reached the host socket, and in between a
     * ring of at most VIRTIO_VSOCK_BUF_ALLOC bytes (allocated while in use) */
    uint32_t rx_cnt, fwd_cnt, fwd_told;
    uint8_t *ring;
    uint32_t ring_head, ring_len;
    /* host -> guest: what we sent, and the guest's buffer as it last told us */
    uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    struct conn *next;      /* on the queued list */
    struct conn *gone_next; /* on the list of freed connections */
    bool gone_seen;         /* a reap has passed since it was freed */
};

struct orphan {
    uint32_t guest_port, host_port;
};

struct vsock {
    struct virtio_device dev; /* first: the transport sees only this */
    pthread_mutex_t lock;     /* everything below */
    struct virtio_vsock_params p;
    bool active;
    struct conn **conn; /* VIRTIO_VSOCK_MAX_CONNS slots */
    unsigned nconn;
    struct conn *queue_head, *queue_tail;
    struct orphan orphan[ORPHAN_RSTS];
    unsigned norphan;
    uint32_t next_local_port;
    struct virtio_vsock_stats stats;
    /* Freed connections wait here for two reaps (an eventfd on the loop) before their memory
     * goes: an epoll batch fetched before one was freed, on this thread or another, may
     * still hand its event to on_host_socket, which then finds it C_GONE. Each reap runs in
     * a later batch than the one before, and no batch after the freeing names it. */
    struct conn *gone;
    struct event_source reaper;
    /* Ticks while host-initiated connections wait for the guest, to give up on late ones. */
    struct event_source connect_timer;
    bool timer_armed;
    struct virtq_elem elem;
    struct iovec iov[VIRTQ_MAX_IOV];
};

static struct vsock *to_vsock(struct virtio_device *d)
{
    return (struct vsock *)d;
}

static void driver_broke(struct vsock *v, const char *why)
{
    v->active = false;
    if (v->dev.transport.needs_reset)
        v->dev.transport.needs_reset(v->dev.transport.ctx, why);
}

/* ---- connections ---- */

static struct conn *find_conn(struct vsock *v, uint32_t guest_port, uint32_t host_port)
{
    for (unsigned i = 0; i < v->nconn; i++)
        if (v->conn[i]->guest_port == guest_port && v->conn[i]->host_port == host_port)
            return v->conn[i];
    return NULL;
}

static uint32_t peer_credit(const struct conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool wants_read(const struct conn *c)
{
    return c->state == C_OPEN && !c->guest_shut_rcv && !c->host_eof;
}

/* Whether c has anything for the guest now. */
static bool has_work(const struct conn *c)
{
    return c->owed || (c->readable && wants_read(c) && peer_credit(c) > 0);
}

/* Watches the host socket for what the connection can use now. */
static void update_events(struct conn *c)
{
    if (c->src.fd < 0 || c->hup || c->state == C_CONNECTING)
        return;
    uint32_t ev = 0;
    if (wants_read(c) && !c->readable)
        ev |= EPOLLIN;
    if (c->ring_len)
        ev |= EPOLLOUT;
    event_loop_set_events(c->v->p.el, &c->src, ev);
}

static void enqueue(struct conn *c)
{
    struct vsock *v = c->v;
    if (c->queued)
        return;
    c->queued = true;
    c->next = NULL;
    if (v->queue_tail)
        v->queue_tail->next = c;
    else
        v->queue_head = c;
    v->queue_tail = c;
}

static void dequeue_head(struct vsock *v)
{
    struct conn *c = v->queue_head;
    v->queue_head = c->next;
    if (!v->queue_head)
        v->queue_tail = NULL;
    c->queued = false;
    c->next = NULL;
}

static void owe(struct conn *c, unsigned what)
{
    c->owed |= what;
    enqueue(c);
}

/* Closes c's host socket; a host-initiated connection still waiting hears no first. */
static void close_host(struct conn *c)
{
    struct vsock *v = c->v;
    if (c->src.fd < 0)
        return;
    if (!c->hup)
        event_loop_remove(v->p.el, &c->src);
    if (c->state == C_CONNECTING && c->pending)
        c->pending->done(c->pending, c->src.fd, c->host_port, false);
    close(c->src.fd);
    c->src.fd = -1;
}

/* Forgets c: its host socket closes; a host-initiated connection still waiting hears no. */
static void free_conn(struct vsock *v, struct conn *c)
{
    if (c->queued) {
        struct conn **pp = &v->queue_head, *prev = NULL;
        while (*pp != c) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = c->next;
        if (v->queue_tail == c)
            v->queue_tail = prev;
    }
    close_host(c);
    for (unsigned i = 0; i < v->nconn; i++)
        if (v->conn[i] == c) {
            v->conn[i] = v->conn[--v->nconn];
            break;
        }
    free(c->ring);
    c->ring = NULL;
    c->state = C_GONE;
    c->gone_seen = false;
    c->gone_next = v->gone;
    v->gone = c;
    uint64_t one = 1;
    (void)!write(v->reaper.fd, &one, sizeof(one));
}

/* Frees the connections a reap has already seen, and marks the others for the next. */
static void reap(struct vsock *v)
{
    struct conn **pp = &v->gone;
    while (*pp) {
        struct conn *c = *pp;
        if (c->gone_seen) {
            *pp = c->gone_next;
            free(c);
        } else {
            c->gone_seen = true;
            pp = &c->gone_next;
        }
    }
}

static void on_reaper(void *ctx, uint32_t events)
{
    struct vsock *v = ctx;
    uint64_t n;
    (void)!read(v->reaper.fd, &n, sizeof(n));
    pthread_mutex_lock(&v->lock);
    reap(v);
    if (v->gone) {
        uint64_t one = 1;
        (void)!write(v->reaper.fd, &one, sizeof(one)); /* again, in a later batch */
    }
    pthread_mutex_unlock(&v->lock);
}

/* Ends c with a reset to the guest (sent as buffers allow, then c is freed). */
static void reset_conn(struct conn *c)
{
    close_host(c);
    c->state = C_CLOSING;
    c->owed = OWE_RST;
    enqueue(c);
}

static void on_host_socket(void *ctx, uint32_t events);
static void on_connect_timer(void *ctx, uint32_t events);
static void rx_flush(struct vsock *v);

static struct conn *new_conn(struct vsock *v, int fd, uint32_t guest_port, uint32_t host_port,
                             enum conn_state state)
{
    if (v->nconn == VIRTIO_VSOCK_MAX_CONNS)
        return NULL;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(c);
        return NULL;
    }
    c->v = v;
    c->state = state;
    c->guest_port = guest_port;
    c->host_port = host_port;
    c->src = (struct event_source){ .fd = fd, .handler = on_host_socket, .ctx = c };
    /* Registered disarmed: update_events arms it once the connection is open. */
    c->src.events = EPOLLIN;
    if (event_loop_add(v->p.el, &c->src) < 0) {
        free(c);
        return NULL;
    }
    event_loop_set_events(v->p.el, &c->src, 0);
    v->conn[v->nconn++] = c;
    return c;
}

static void orphan_rst(struct vsock *v, uint32_t guest_port, uint32_t host_port)
{
    /* Beyond ORPHAN_RSTS pending the guest hears nothing: its own timeout ends it. */
    if (v->norphan < ORPHAN_RSTS)
        v->orphan[v->norphan++] = (struct orphan){ guest_port, host_port };
}

/* ---- guest -> host: the ring between a packet and the host socket ---- */

/* The iovecs of bytes [skip, skip + len) of the n in src, into out; returns how many. */
static unsigned slice(const struct iovec *src, unsigned n, size_t skip, size_t len,
                      struct iovec *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (skip >= src[i].iov_len) {
            skip -= src[i].iov_len;
            continue;
        }
        size_t take = src[i].iov_len - skip < len ? src[i].iov_len - skip : len;
        out[k++] = (struct iovec){ (uint8_t *)src[i].iov_base + skip, take };
        len -= take;
        skip = 0;
    }
    return k;
}

/* writev that neither blocks nor raises SIGPIPE when the host end is gone. */
static ssize_t send_iov(int fd, struct iovec *iov, unsigned n)
{
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
    ssize_t w;
    do
        w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w;
}

/* Writes what the ring holds to the host socket; true unless the socket failed. */
static bool drain_ring(struct conn *c)
{
    while (c->ring_len) {
        uint32_t at = c->ring_head, n = c->ring_len;
        struct iovec iov[2] = { { c->ring + at, 0 }, { c->ring, 0 } };
        uint32_t first = VIRTIO_VSOCK_BUF_ALLOC - at < n ? VIRTIO_VSOCK_BUF_ALLOC - at : n;
        iov[0].iov_len = first;
        iov[1].iov_len = n - first;
        ssize_t w = send_iov(c->src.fd, iov, iov[1].iov_len ? 2 : 1);
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0)
            return false;
        c->ring_head = (at + (uint32_t)w) % VIRTIO_VSOCK_BUF_ALLOC;
        c->ring_len -= (uint32_t)w;
        c->fwd_cnt += (uint32_t)w;
    }
    if (!c->ring_len) {
        free(c->ring);
        c->ring = NULL;
        c->ring_head = 0;
    }
    return true;
}

/* After bytes reached the host: tell the guest about the room once a quarter of the buffer
 * came free, and finish a shutdown the guest asked for. */
static void after_forward(struct conn *c)
{
    if (c->fwd_cnt - c->fwd_told >= VIRTIO_VSOCK_BUF_ALLOC / 4 && !c->guest_shut_send)
        owe(c, OWE_CREDIT);
    if (c->guest_shut_send && !c->ring_len) {
        shutdown(c->src.fd, SHUT_WR);
        if (c->guest_shut_rcv)
            reset_conn(c); /* both ways shut: the guest waits for our reset */
    }
}

/* The payload of an RW packet: straight to the host socket, the rest into the ring. */
static void guest_data(struct vsock *v, struct conn *c, uint32_t len)
{
    if (c->rx_cnt - c->fwd_cnt + (uint64_t)len > VIRTIO_VSOCK_BUF_ALLOC || c->guest_shut_send) {
        reset_conn(c); /* more than the credit we gave, or data after its own shutdown */
        return;
    }
    c->rx_cnt += len;
    size_t off = VIRTIO_VSOCK_HDR_LEN;
    if (!c->ring_len) {
        /* Nothing queued before it: try the socket first. */
        unsigned n = slice(v->elem.iov, v->elem.out_num, off, len, v->iov);
        ssize_t w = n ? send_iov(c->src.fd, v->iov, n) : 0;
        if (w < 0 && errno != EAGAIN) {
            reset_conn(c);
            return;
        }
        if (w > 0) {
            c->fwd_cnt += (uint32_t)w;
            off += (size_t)w;
            len -= (uint32_t)w;
        }
    }
    if (len) {
        if (!c->ring && !(c->ring = malloc(VIRTIO_VSOCK_BUF_ALLOC))) {
            reset_conn(c);
            return;
        }
        uint32_t tail = (c->ring_head + c->ring_len) % VIRTIO_VSOCK_BUF_ALLOC;
        uint32_t first = VIRTIO_VSOCK_BUF_ALLOC - tail < len ? VIRTIO_VSOCK_BUF_ALLOC - tail : len;
        virtq_elem_read(&v->elem, off, c->ring + tail, first);
        virtq_elem_read(&v->elem, off + first, c->ring, len - first);
        c->ring_len += len;
    }
    after_forward(c);
    update_events(c);
}

/* ---- packets from the guest (transmit queue) ---- */

static void guest_packet(struct vsock *v, const uint8_t *h)
{
    uint32_t len = le_get32(h, H_LEN), gport = le_get32(h, H_SRC_PORT),
             hport = le_get32(h, H_DST_PORT);
    uint16_t op = le_get16(h, H_OP);
    if (le_get64(h, H_SRC_CID) != v->p.guest_cid ||
        le_get64(h, H_DST_CID) != VIRTIO_VSOCK_HOST_CID || len > MAX_PAYLOAD ||
        len > v->elem.out_len - VIRTIO_VSOCK_HDR_LEN || (op != OP_RW && len != 0)) {
        v->stats.bad_packets++;
        return;
    }
    struct conn *c = find_conn(v, gport, hport);
    if (le_get16(h, H_TYPE) != TYPE_STREAM) {
        v->stats.bad_packets++;
        if (op != OP_RST)
            orphan_rst(v, gport, hport);
        return;
    }
    if (c && c->state == C_CLOSING)
        return; /* our reset is on its way */
    if (c) {
        c->peer_buf_alloc = le_get32(h, H_BUF_ALLOC);
        c->peer_fwd_cnt = le_get32(h, H_FWD_CNT);
    }
    switch (op) {
    case OP_REQUEST: {
        if (c) {
            reset_conn(c); /* a second request on a live connection */
            return;
        }
        int fd = v->p.host->connect ? v->p.host->connect(v->p.host_ctx, hport) : -ECONNREFUSED;
        struct conn *n = fd >= 0 ? new_conn(v, fd, gport, hport, C_OPEN) : NULL;
        if (!n) {
            if (fd >= 0)
                close(fd);
            orphan_rst(v, gport, hport);
            return;
        }
        n->peer_buf_alloc = le_get32(h, H_BUF_ALLOC);
        n->peer_fwd_cnt = le_get32(h, H_FWD_CNT);
        owe(n, OWE_RESPONSE);
        update_events(n);
        return;
    }
    case OP_RESPONSE:
        if (!c || c->state != C_CONNECTING) {
            if (c)
                reset_conn(c);
            else
                orphan_rst(v, gport, hport);
            return;
        }
        c->state = C_OPEN;
        if (c->pending)
            c->pending->done(c->pending, c->src.fd, c->host_port, true);
        update_events(c);
        return;
    case OP_RST:
        if (c)
            free_conn(v, c);
        return;
    default: break;
    }
    if (!c || c->state != C_OPEN) {
        if (c)
            reset_conn(c);
        else
            orphan_rst(v, gport, hport);
        return;
    }
    switch (op) {
    case OP_RW: guest_data(v, c, len); break;
    case OP_CREDIT_UPDATE: break; /* the credit came with the header */
    case OP_CREDIT_REQUEST: owe(c, OWE_CREDIT); break;
    case OP_SHUTDOWN: {
        uint32_t f = le_get32(h, H_FLAGS);
        c->guest_shut_rcv |= (f & SHUTDOWN_RCV) != 0;
        c->guest_shut_send |= (f & SHUTDOWN_SEND) != 0;
        if (c->guest_shut_rcv)
            c->readable = false;
        after_forward(c);
        break;
    }
    default: reset_conn(c); return;
    }
    /* Credit the header granted may let data wait no longer. */
    if (c->state == C_OPEN) {
        if (has_work(c))
            enqueue(c);
        update_events(c);
    }
}

static void tx_serve(struct vsock *v)
{
    struct virtq *q = &v->dev.queues[Q_TX];
    for (;;) {
        int rc = virtq_pop(q, &v->elem);
        if (rc < 0) {
            v->active = false;
            virtio_device_queue_failed(&v->dev, Q_TX);
            return;
        }
        if (rc == 0) {
            if (virtq_set_notification(q, true))
                continue;
            return;
        }
        /* §5.10.6.1: transmitted packets are device-readable. */
        if (v->elem.in_num > 0) {
            driver_broke(v, "virtio-vsock: transmit buffer has device-writable parts");
            return;
        }
        uint8_t h[VIRTIO_VSOCK_HDR_LEN];
        v->stats.tx_packets++;
        if (virtq_elem_read(&v->elem, 0, h, sizeof(h)) < sizeof(h))
            v->stats.bad_packets++;
        else
            guest_packet(v, h);
        virtio_device_complete(&v->dev, Q_TX, &v->elem, 0);
        if (virtq_is_broken(q)) {
            v->active = false;
            return;
        }
    }
}

/* ---- packets to the guest (receive queue) ---- */

static void put_header(struct vsock *v, uint8_t *h, uint32_t gport, uint32_t hport, uint16_t op,
                       uint32_t len, uint32_t flags, const struct conn *c)
{
    le_put64(h, H_SRC_CID, VIRTIO_VSOCK_HOST_CID);
    le_put64(h, H_DST_CID, v->p.guest_cid);
    le_put32(h, H_SRC_PORT, hport);
    le_put32(h, H_DST_PORT, gport);
    le_put32(h, H_LEN, len);
    le_put16(h, H_TYPE, TYPE_STREAM);
    le_put16(h, H_OP, op);
    le_put32(h, H_FLAGS, flags);
    le_put32(h, H_BUF_ALLOC, VIRTIO_VSOCK_BUF_ALLOC);
    le_put32(h, H_FWD_CNT, c ? c->fwd_cnt : 0);
}

/* Pops a receive buffer with room for a header: 1, 0 (none), -1 (the driver broke). */
static int rx_pop(struct vsock *v)
{
    struct virtq *q = &v->dev.queues[Q_RX];
    for (;;) {
        int rc = virtq_pop(q, &v->elem);
        if (rc < 0) {
            v->active = false;
            virtio_device_queue_failed(&v->dev, Q_RX);
            return -1;
        }
        if (rc == 0)
            return virtq_set_notification(q, true) ? rx_pop(v) : 0;
        if (v->elem.out_num > 0 || v->elem.in_len < VIRTIO_VSOCK_HDR_LEN) {
            driver_broke(v, v->elem.out_num > 0
                                ? "virtio-vsock: receive buffer has device-readable parts"
                                : "virtio-vsock: receive buffer shorter than a header");
            return -1;
        }
        return 1;
    }
}

static void rx_push(struct vsock *v, uint32_t written)
{
    v->stats.rx_packets++;
    virtio_device_complete(&v->dev, Q_RX, &v->elem, written);
    if (virtq_is_broken(&v->dev.queues[Q_RX]))
        v->active = false;
}

/* Sends c's next control packet into the popped buffer. */
static void send_control(struct vsock *v, struct conn *c)
{
    uint8_t h[VIRTIO_VSOCK_HDR_LEN];
    unsigned bit = c->owed & OWE_RST        ? OWE_RST
                   : c->owed & OWE_REQUEST  ? OWE_REQUEST
                   : c->owed & OWE_RESPONSE ? OWE_RESPONSE
                   : c->owed & OWE_SHUTDOWN ? OWE_SHUTDOWN
                                            : OWE_CREDIT;
    uint16_t op = bit == OWE_RST        ? OP_RST
                  : bit == OWE_REQUEST  ? OP_REQUEST
                  : bit == OWE_RESPONSE ? OP_RESPONSE
                  : bit == OWE_SHUTDOWN ? OP_SHUTDOWN
                                        : OP_CREDIT_UPDATE;
    c->owed &= ~bit;
    put_header(v, h, c->guest_port, c->host_port, op, 0,
               bit == OWE_SHUTDOWN ? c->shutdown_flags : 0, c);
    if (bit == OWE_RST)
        v->stats.resets_sent++;
    c->fwd_told = c->fwd_cnt;
    virtq_elem_write(&v->elem, 0, h, sizeof(h));
    rx_push(v, sizeof(h));
}

/* Reads c's host socket into the popped buffer as an RW packet; false when the buffer is
 * still unused (nothing to read now). */
static bool send_data(struct vsock *v, struct conn *c)
{
    uint32_t room = (uint32_t)(v->elem.in_len - VIRTIO_VSOCK_HDR_LEN);
    uint32_t credit = peer_credit(c);
    uint32_t want = room < credit ? room : credit;
    if (want > MAX_PAYLOAD)
        want = MAX_PAYLOAD;
    unsigned n =
        slice(v->elem.iov + v->elem.out_num, v->elem.in_num, VIRTIO_VSOCK_HDR_LEN, want, v->iov);
    ssize_t r;
    do
        r = n ? readv(c->src.fd, v->iov, (int)n) : -1;
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN) {
        c->readable = false;
        update_events(c);
        return false;
    }
    if (r < 0) {
        reset_conn(c);
        return false;
    }
    if (r == 0) {
        /* The host closed its side for writing: the guest gets no more. */
        c->host_eof = true;
        c->readable = false;
        c->shutdown_flags = SHUTDOWN_SEND;
        owe(c, OWE_SHUTDOWN);
        update_events(c);
        return false;
    }
    uint8_t h[VIRTIO_VSOCK_HDR_LEN];
    put_header(v, h, c->guest_port, c->host_port, OP_RW, (uint32_t)r, 0, c);
    c->tx_cnt += (uint32_t)r;
    c->fwd_told = c->fwd_cnt;
    virtq_elem_write(&v->elem, 0, h, sizeof(h));
    rx_push(v, VIRTIO_VSOCK_HDR_LEN + (uint32_t)r);
    return true;
}

/* Fills receive buffers with what is owed: resets of orphan packets, then each queued
 * connection in turn (a control packet, or one buffer of data) so that none starves the
 * others. */
static void rx_flush(struct vsock *v)
{
    bool have = false;
    while (v->active) {
        if (!v->norphan && !v->queue_head)
            break;
        if (!have) {
            int rc = rx_pop(v);
            if (rc <= 0)
                return;
            have = true;
        }
        if (v->norphan) {
            struct orphan o = v->orphan[--v->norphan];
            uint8_t h[VIRTIO_VSOCK_HDR_LEN];
            put_header(v, h, o.guest_port, o.host_port, OP_RST, 0, 0, NULL);
            v->stats.resets_sent++;
            virtq_elem_write(&v->elem, 0, h, sizeof(h));
            rx_push(v, sizeof(h));
            have = false;
            continue;
        }
        struct conn *c = v->queue_head;
        dequeue_head(v);
        if (c->owed) {
            send_control(v, c);
            have = false;
        } else if (has_work(c)) {
            have = !send_data(v, c);
        }
        if (c->state == C_CLOSING && !c->owed) {
            free_conn(v, c);
            continue;
        }
        if (has_work(c))
            enqueue(c);
    }
    if (have && v->active && virtq_unpop(&v->dev.queues[Q_RX], &v->elem) < 0)
        rx_push(v, 0); /* cannot happen: it was the last one popped */
}

static void on_host_socket(void *ctx, uint32_t events)
{
    struct conn *c = ctx;
    struct vsock *v = c->v;
    pthread_mutex_lock(&v->lock);
    if (c->state == C_GONE) {
        pthread_mutex_unlock(&v->lock);
        return;
    }
    if ((events & (EPOLLHUP | EPOLLERR)) && !c->hup) {
        /* Reported whatever we watch: stop watching; reads and writes tell the rest. */
        event_loop_remove(v->p.el, &c->src);
        c->hup = true;
    }
    if (c->state == C_CONNECTING) {
        if (c->hup)
            reset_conn(c); /* the host end left before the guest answered */
        goto out;
    }
    if (c->state != C_OPEN)
        goto out;
    if (c->ring_len && (events & EPOLLOUT || c->hup)) {
        if (!drain_ring(c)) {
            reset_conn(c);
            goto out;
        }
        after_forward(c);
        if (c->state != C_OPEN)
            goto out;
    }
    if (wants_read(c) && (events & EPOLLIN || c->hup)) {
        c->readable = true;
        enqueue(c);
    } else if (c->hup && !wants_read(c) && !c->ring_len) {
        reset_conn(c); /* gone both ways, and nothing left to read or write */
        goto out;
    }
    update_events(c);
out:
    rx_flush(v);
    pthread_mutex_unlock(&v->lock);
}

/* ---- the device ---- */

static int vsock_activate(struct virtio_device *d)
{
    struct vsock *v = to_vsock(d);
    pthread_mutex_lock(&v->lock);
    v->active = true;
    tx_serve(v);
    rx_flush(v);
    pthread_mutex_unlock(&v->lock);
    return 0;
}

static void vsock_queue_notify(struct virtio_device *d, unsigned q)
{
    struct vsock *v = to_vsock(d);
    pthread_mutex_lock(&v->lock);
    if (v->active && q == Q_TX)
        tx_serve(v);
    /* New receive buffers, or room made by packets we answered. */
    if (v->active && (q == Q_TX || q == Q_RX))
        rx_flush(v);
    pthread_mutex_unlock(&v->lock);
}

static void vsock_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct vsock *v = to_vsock(d);
    uint64_t cid = htole64(v->p.guest_cid);
    memcpy(data, (const uint8_t *)&cid + offset, len);
}

static void vsock_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                               uint32_t len)
{
    /* guest_cid is read-only. */
}

static void close_all(struct vsock *v)
{
    while (v->nconn)
        free_conn(v, v->conn[v->nconn - 1]);
    v->queue_head = v->queue_tail = NULL;
    v->norphan = 0;
}

static void vsock_reset(struct virtio_device *d)
{
    struct vsock *v = to_vsock(d);
    pthread_mutex_lock(&v->lock);
    v->active = false;
    close_all(v);
    pthread_mutex_unlock(&v->lock);
}

static void vsock_destroy(struct virtio_device *d)
{
    struct vsock *v = to_vsock(d);
    if (!v)
        return;
    close_all(v);
    /* No batch of the loop is under way now: everything freed can go. */
    reap(v);
    reap(v);
    event_loop_remove(v->p.el, &v->reaper);
    close(v->reaper.fd);
    event_loop_remove(v->p.el, &v->connect_timer);
    close(v->connect_timer.fd);
    free(v->conn);
    pthread_mutex_destroy(&v->lock);
    virtio_device_fini(d);
    free(v);
}

static const struct virtio_device_ops vsock_ops = {
    .activate = vsock_activate,
    .queue_notify = vsock_queue_notify,
    .config_read = vsock_config_read,
    .config_write = vsock_config_write,
    .reset = vsock_reset,
    .destroy = vsock_destroy,
};

struct virtio_device *virtio_vsock_new(const struct virtio_vsock_params *p)
{
    if (!p || !p->el || !p->host || p->guest_cid < 3 || p->guest_cid > UINT32_MAX - 1)
        return NULL;
    struct vsock *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->conn = calloc(VIRTIO_VSOCK_MAX_CONNS, sizeof(*v->conn));
    if (!v->conn || virtio_device_init(&v->dev, &vsock_ops, "virtio-vsock", VIRTIO_ID_VSOCK, 3,
                                       VIRTIO_VSOCK_QUEUE_SIZE) < 0) {
        free(v->conn);
        free(v);
        return NULL;
    }
    v->dev.config_size = 8;
    v->p = *p;
    v->next_local_port = FIRST_LOCAL_PORT;
    v->reaper = (struct event_source){ .fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                                       .handler = on_reaper,
                                       .ctx = v };
    v->connect_timer =
        (struct event_source){ .fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK),
                               .handler = on_connect_timer,
                               .ctx = v };
    if (v->reaper.fd < 0 || v->connect_timer.fd < 0 || event_loop_add(p->el, &v->reaper) < 0) {
        if (v->reaper.fd >= 0)
            close(v->reaper.fd);
        if (v->connect_timer.fd >= 0)
            close(v->connect_timer.fd);
        virtio_device_fini(&v->dev);
        free(v->conn);
        free(v);
        return NULL;
    }
    if (event_loop_add(p->el, &v->connect_timer) < 0) {
        event_loop_remove(p->el, &v->reaper);
        close(v->reaper.fd);
        close(v->connect_timer.fd);
        virtio_device_fini(&v->dev);
        free(v->conn);
        free(v);
        return NULL;
    }
    pthread_mutex_init(&v->lock, NULL);
    return &v->dev;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#define TICK_NS (250 * 1000000ULL)

static void set_timer(struct vsock *v, bool on)
{
    if (v->timer_armed == on)
        return;
    struct itimerspec its = { 0 };
    if (on)
        its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)TICK_NS;
    if (timerfd_settime(v->connect_timer.fd, 0, &its, NULL) == 0)
        v->timer_armed = on;
}

/* Gives up on host-initiated connections the guest left unanswered past their deadline. */
static void on_connect_timer(void *ctx, uint32_t events)
{
    struct vsock *v = ctx;
    uint64_t n;
    if (read(v->connect_timer.fd, &n, sizeof(n)) < 0)
        return;
    pthread_mutex_lock(&v->lock);
    uint64_t now = now_ns();
    bool waiting = false;
    for (unsigned i = 0; i < v->nconn; i++) {
        struct conn *c = v->conn[i];
        if (c->state != C_CONNECTING)
            continue;
        if (now >= c->deadline_ns)
            reset_conn(c); /* the host hears no; the guest forgets the request */
        else
            waiting = true;
    }
    if (!waiting)
        set_timer(v, false);
    rx_flush(v);
    pthread_mutex_unlock(&v->lock);
}

int virtio_vsock_connect_guest(struct virtio_device *d, int fd, uint32_t guest_port,
                               struct vsock_pending *p)
{
    struct vsock *v = to_vsock(d);
    pthread_mutex_lock(&v->lock);
    int rc = -ENOTCONN;
    struct conn *c = NULL;
    if (v->active) {
        uint32_t port = v->next_local_port;
        while (find_conn(v, guest_port, port))
            port = port == UINT32_MAX ? FIRST_LOCAL_PORT : port + 1;
        v->next_local_port = port == UINT32_MAX ? FIRST_LOCAL_PORT : port + 1;
        c = new_conn(v, fd, guest_port, port, C_CONNECTING);
        rc = c ? 0 : -EMFILE;
    }
    if (c) {
        c->pending = p;
        unsigned ms =
            v->p.connect_timeout_ms ? v->p.connect_timeout_ms : VIRTIO_VSOCK_CONNECT_TIMEOUT_MS;
        c->deadline_ns = now_ns() + (uint64_t)ms * 1000000ULL;
        set_timer(v, true);
        owe(c, OWE_REQUEST);
        rx_flush(v);
    }
    pthread_mutex_unlock(&v->lock);
    if (!c)
        close(fd);
    return rc;
}

void virtio_vsock_get_stats(struct virtio_device *d, struct virtio_vsock_stats *out)
{
    struct vsock *v = to_vsock(d);
    pthread_mutex_lock(&v->lock);
    *out = v->stats;
    out->connections = v->nconn;
    pthread_mutex_unlock(&v->lock);
}

static int connector_connect(void *ctx, int fd, uint32_t guest_port, struct vsock_pending *p)
{
    return virtio_vsock_connect_guest(ctx, fd, guest_port, p);
}

struct vsock_guest_connector virtio_vsock_connector(struct virtio_device *d)
{
    return (struct vsock_guest_connector){ .connect = connector_connect, .ctx = d };
}
