#include "virtio/vsock.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define GUEST_CID 7
#define Q_RX      0
#define Q_TX      1
#define HDR       VIRTIO_VSOCK_HDR_LEN

enum {
    OP_REQUEST = 1,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST
};

struct hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

/* The test is the host side: connect() hands the device one end of a socketpair and keeps
 * the other. */
struct fix {
    struct test_driver t;
    struct event_loop *el;
    struct virtio_device *dev;
    int refuse;          /* connect() fails with -refuse when set */
    bool tiny_sndbuf;    /* the device's end of the socketpair takes little */
    uint32_t asked_port; /* the last port connect() was asked for */
    int peer;            /* our end of the last connection */
    unsigned connected_ok, connected_no;
    uint32_t connected_port;
};

static int host_connect(void *ctx, uint32_t port)
{
    struct fix *f = ctx;
    f->asked_port = port;
    if (f->refuse)
        return -f->refuse;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (f->tiny_sndbuf) {
        int small = 1;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    f->peer = sv[1];
    return sv[0];
}

static void host_connected(void *ctx, int fd, uint32_t host_port, bool ok)
{
    struct fix *f = ctx;
    if (ok) {
        f->connected_ok++;
        f->connected_port = host_port;
        assert_int_equal(send(fd, "OK\n", 3, MSG_NOSIGNAL), 3); /* before any relayed byte */
    } else {
        f->connected_no++;
    }
}

static const struct vsock_host_ops host_ops = { .connect = host_connect,
                                                .connected = host_connected };

static struct fix *setup(void)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->peer = -1;
    assert_int_equal(event_loop_new(&f->el), 0);
    struct virtio_vsock_params p = {
        .guest_cid = GUEST_CID, .el = f->el, .host = &host_ops, .host_ctx = f
    };
    f->dev = virtio_vsock_new(&p);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, ~0ULL), 0);
    return f;
}

static void teardown(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    event_loop_free(f->el);
    if (f->peer >= 0)
        close(f->peer);
    free(f);
}

static void put_hdr(uint8_t *b, const struct hdr *h)
{
    uint64_t c;
    uint32_t w;
    uint16_t s;
    c = htole64(h->src_cid), memcpy(b, &c, 8);
    c = htole64(h->dst_cid), memcpy(b + 8, &c, 8);
    w = htole32(h->src_port), memcpy(b + 16, &w, 4);
    w = htole32(h->dst_port), memcpy(b + 20, &w, 4);
    w = htole32(h->len), memcpy(b + 24, &w, 4);
    s = htole16(h->type), memcpy(b + 28, &s, 2);
    s = htole16(h->op), memcpy(b + 30, &s, 2);
    w = htole32(h->flags), memcpy(b + 32, &w, 4);
    w = htole32(h->buf_alloc), memcpy(b + 36, &w, 4);
    w = htole32(h->fwd_cnt), memcpy(b + 40, &w, 4);
}

static void get_hdr(const uint8_t *b, struct hdr *h)
{
    uint64_t c;
    uint32_t w;
    uint16_t s;
    memcpy(&c, b, 8), h->src_cid = le64toh(c);
    memcpy(&c, b + 8, 8), h->dst_cid = le64toh(c);
    memcpy(&w, b + 16, 4), h->src_port = le32toh(w);
    memcpy(&w, b + 20, 4), h->dst_port = le32toh(w);
    memcpy(&w, b + 24, 4), h->len = le32toh(w);
    memcpy(&s, b + 28, 2), h->type = le16toh(s);
    memcpy(&s, b + 30, 2), h->op = le16toh(s);
    memcpy(&w, b + 32, 4), h->flags = le32toh(w);
    memcpy(&w, b + 36, 4), h->buf_alloc = le32toh(w);
    memcpy(&w, b + 40, 4), h->fwd_cnt = le32toh(w);
}

/* A packet from the guest, as Linux lays it out: header, then payload, in two buffers. */
static void guest_send(struct fix *f, uint16_t op, uint32_t gport, uint32_t hport, const void *data,
                       uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    struct hdr h = { .src_cid = GUEST_CID,
                     .dst_cid = VIRTIO_VSOCK_HOST_CID,
                     .src_port = gport,
                     .dst_port = hport,
                     .len = len,
                     .type = 1,
                     .op = op,
                     .flags = flags,
                     .buf_alloc = buf_alloc,
                     .fwd_cnt = fwd_cnt };
    struct td_buf b[2] = { { .gpa = td_alloc(&f->t, HDR), .len = HDR } };
    put_hdr(td_ptr(&f->t, b[0].gpa, HDR), &h);
    unsigned n = 1;
    if (len) {
        b[1] = (struct td_buf){ .gpa = td_alloc(&f->t, len), .len = len };
        memcpy(td_ptr(&f->t, b[1].gpa, len), data, len);
        n = 2;
    }
    td_add(&f->t, Q_TX, b, n);
    f->dev->ops->queue_notify(f->dev, Q_TX);
}

static void guest_op(struct fix *f, uint16_t op, uint32_t gport, uint32_t hport)
{
    guest_send(f, op, gport, hport, NULL, 0, 0, 65536, 0);
}

/* Receive buffers: n chains of a header buffer and a 4 KiB buffer, as Linux posts them. */
static uint64_t rx_bufs[64];
static unsigned rx_next, rx_posted;
static void post_rx(struct fix *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t a = td_alloc(&f->t, HDR + 4096);
        struct td_buf b[2] = { { .gpa = a, .len = HDR, .writable = true },
                               { .gpa = a + HDR, .len = 4096, .writable = true } };
        rx_bufs[rx_posted++ % 64] = a;
        td_add(&f->t, Q_RX, b, 2);
    }
    f->dev->ops->queue_notify(f->dev, Q_RX);
}

/* The next packet the device put in a receive buffer, and its payload. */
static bool guest_recv(struct fix *f, struct hdr *h, void *data, size_t cap)
{
    uint32_t id, len;
    if (!td_used(&f->t, Q_RX, &id, &len))
        return false;
    uint64_t a = rx_bufs[rx_next++ % 64];
    assert_true(len >= HDR);
    get_hdr(td_ptr(&f->t, a, HDR), h);
    assert_int_equal(len, HDR + h->len);
    assert_true(h->len <= cap);
    if (h->len)
        memcpy(data, td_ptr(&f->t, a + HDR, h->len), h->len);
    return true;
}

static void expect_packet(struct fix *f, uint16_t op, uint32_t gport, uint32_t hport)
{
    struct hdr h;
    uint8_t data[4096];
    assert_true(guest_recv(f, &h, data, sizeof(data)));
    assert_int_equal(h.op, op);
    assert_int_equal(h.src_cid, VIRTIO_VSOCK_HOST_CID);
    assert_int_equal(h.dst_cid, GUEST_CID);
    assert_int_equal(h.src_port, hport);
    assert_int_equal(h.dst_port, gport);
    assert_int_equal(h.type, 1);
    assert_int_equal(h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
}

static void run_loop(struct fix *f)
{
    for (int i = 0; i < 8; i++)
        if (event_loop_run_once(f->el, 0) <= 0)
            break;
}

static void start_rx(void)
{
    rx_next = rx_posted = 0;
}

/* The guest connects to host port 1234 from its port 5000. */
static struct fix *connected_fix(void)
{
    struct fix *f = setup();
    start_rx();
    post_rx(f, 16);
    guest_op(f, OP_REQUEST, 5000, 1234);
    assert_int_equal(f->asked_port, 1234);
    expect_packet(f, OP_RESPONSE, 5000, 1234);
    return f;
}

static void test_identity(void **state)
{
    struct fix *f = setup();
    assert_int_equal(f->dev->device_id, VIRTIO_ID_VSOCK);
    assert_int_equal(f->dev->num_queues, 3);
    assert_int_equal(f->dev->config_size, 8);
    assert_int_equal(f->dev->device_features & 0xffffff, 0); /* stream only, implied */
    uint64_t cid;
    f->dev->ops->config_read(f->dev, 0, &cid, 8);
    assert_int_equal(le64toh(cid), GUEST_CID);
    uint32_t lo;
    f->dev->ops->config_read(f->dev, 4, &lo, 4);
    assert_int_equal(lo, 0);
    teardown(f);

    struct event_loop *el;
    assert_int_equal(event_loop_new(&el), 0);
    struct virtio_vsock_params p = { .guest_cid = 2, .el = el, .host = &host_ops };
    assert_null(virtio_vsock_new(&p));
    p.guest_cid = UINT32_MAX;
    assert_null(virtio_vsock_new(&p));
    p.guest_cid = 3;
    p.host = NULL;
    assert_null(virtio_vsock_new(&p));
    event_loop_free(el);
}

static void test_guest_to_host_stream(void **state)
{
    struct fix *f = connected_fix();
    /* Guest -> host. */
    guest_send(f, OP_RW, 5000, 1234, "hello", 5, 0, 65536, 0);
    char buf[64];
    assert_int_equal(recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT), 5);
    assert_memory_equal(buf, "hello", 5);
    /* Host -> guest, within the 65536 bytes of credit the guest gave. */
    assert_int_equal(send(f->peer, "world!", 6, 0), 6);
    run_loop(f);
    struct hdr h;
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_RW);
    assert_int_equal(h.len, 6);
    assert_memory_equal(buf, "world!", 6);
    assert_int_equal(h.fwd_cnt, 5); /* what reached the host, told back */
    /* The host closes its side for writing: the guest hears SHUTDOWN(SEND). */
    shutdown(f->peer, SHUT_WR);
    run_loop(f);
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_SHUTDOWN);
    assert_int_equal(h.flags, 2);
    /* The guest closes: SHUTDOWN both ways; the device answers RST and closes the host end. */
    guest_send(f, OP_SHUTDOWN, 5000, 1234, NULL, 0, 3, 65536, 6);
    expect_packet(f, OP_RST, 5000, 1234);
    assert_int_equal(recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT), 0);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.bad_packets, 0);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_refused_and_unknown(void **state)
{
    struct fix *f = setup();
    start_rx();
    post_rx(f, 8);
    f->refuse = ECONNREFUSED;
    guest_op(f, OP_REQUEST, 5000, 99);
    assert_int_equal(f->asked_port, 99);
    expect_packet(f, OP_RST, 5000, 99);
    /* Data, a response or a credit update for no connection: reset. */
    guest_send(f, OP_RW, 5001, 100, "x", 1, 0, 65536, 0);
    expect_packet(f, OP_RST, 5001, 100);
    guest_op(f, OP_RESPONSE, 5002, 101);
    expect_packet(f, OP_RST, 5002, 101);
    /* A reset for no connection is not answered. */
    guest_op(f, OP_RST, 5003, 102);
    struct hdr h;
    uint8_t buf[16];
    assert_false(guest_recv(f, &h, buf, sizeof(buf)));
    teardown(f);
}

static void test_hostile_packets(void **state)
{
    struct fix *f = connected_fix();
    struct virtio_vsock_stats st;
    /* The wrong source CID, a payload on a control packet, a length past the buffer: dropped
     * and counted, the connection untouched. */
    struct hdr h = { .src_cid = GUEST_CID + 1,
                     .dst_cid = 2,
                     .src_port = 5000,
                     .dst_port = 1234,
                     .type = 1,
                     .op = OP_RW };
    struct td_buf b = { .gpa = td_alloc(&f->t, HDR), .len = HDR };
    put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    guest_send(f, OP_CREDIT_UPDATE, 5000, 1234, "zz", 2, 0, 65536, 0);
    h = (struct hdr){ .src_cid = GUEST_CID,
                      .dst_cid = 2,
                      .src_port = 5000,
                      .dst_port = 1234,
                      .type = 1,
                      .op = OP_RW,
                      .len = 1000 };
    b = (struct td_buf){ .gpa = td_alloc(&f->t, HDR + 10), .len = HDR + 10 };
    put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    /* A header cut short. */
    b = (struct td_buf){ .gpa = td_alloc(&f->t, 20), .len = 20 };
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.bad_packets, 4);
    assert_int_equal(st.connections, 1);
    teardown(f);

    /* Broken rings: a transmit buffer the device could write, a receive buffer with no room
     * for a header. */
    f = setup();
    b = (struct td_buf){ .gpa = td_alloc(&f->t, HDR), .len = HDR, .writable = true };
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    const char *why = NULL;
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(strstr(why, "transmit buffer"));
    teardown(f);
    f = setup();
    start_rx();
    b = (struct td_buf){ .gpa = td_alloc(&f->t, 16), .len = 16, .writable = true };
    td_add(&f->t, Q_RX, &b, 1);
    f->refuse = ECONNREFUSED;
    guest_op(f, OP_REQUEST, 1, 2); /* owes a reset: the device looks at the buffer */
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(strstr(why, "shorter than a header"));
    teardown(f);
}

static void test_seqpacket_refused(void **state)
{
    struct fix *f = setup();
    start_rx();
    post_rx(f, 4);
    struct hdr h = { .src_cid = GUEST_CID,
                     .dst_cid = 2,
                     .src_port = 5000,
                     .dst_port = 1234,
                     .type = 2,
                     .op = OP_REQUEST,
                     .buf_alloc = 4096 };
    struct td_buf b = { .gpa = td_alloc(&f->t, HDR), .len = HDR };
    put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    expect_packet(f, OP_RST, 5000, 1234);
    assert_int_equal(f->asked_port, 0); /* the host was never asked */
    teardown(f);
}

static void test_credit_guest_to_host(void **state)
{
    struct fix *f = connected_fix();
    /* The host reads nothing: the device holds up to its buffer, VIRTIO_VSOCK_BUF_ALLOC. */
    static uint8_t chunk[32768];
    memset(chunk, 0x5c, sizeof(chunk));
    unsigned sent = 0;
    while (sent < VIRTIO_VSOCK_BUF_ALLOC) {
        guest_send(f, OP_RW, 5000, 1234, chunk, sizeof(chunk), 0, 65536, 0);
        sent += sizeof(chunk);
    }
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 1);
    struct hdr h;
    uint8_t buf[4096];
    /* The host drains it all: the bytes come in order, and the guest hears of the room. */
    size_t got = 0;
    for (int spins = 0; spins < 1000 && got < sent; spins++) {
        ssize_t r = recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                assert_int_equal(buf[i], 0x5c);
            got += (size_t)r;
        }
        run_loop(f);
    }
    assert_int_equal(got, sent);
    /* Updates went out as room came free (one per quarter of the buffer at least). */
    uint32_t told = 0;
    while (guest_recv(f, &h, buf, sizeof(buf)))
        if (h.op == OP_CREDIT_UPDATE && h.fwd_cnt > told)
            told = h.fwd_cnt;
    assert_true(told >= sent - VIRTIO_VSOCK_BUF_ALLOC / 4);
    /* A credit request is answered at once, with all of it. */
    guest_op(f, OP_CREDIT_REQUEST, 5000, 1234);
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, sent);
    teardown(f);

    /* A guest that sends past the credit has its connection reset: the host end takes
     * next to nothing and reads nothing, so the device holds what the guest sent. */
    f = setup();
    start_rx();
    post_rx(f, 16);
    f->tiny_sndbuf = true;
    guest_op(f, OP_REQUEST, 5000, 1234);
    expect_packet(f, OP_RESPONSE, 5000, 1234);
    unsigned chunks = 0;
    bool reset = false;
    while (!reset && chunks < 12) {
        guest_send(f, OP_RW, 5000, 1234, chunk, sizeof(chunk), 0, 65536, 0);
        chunks++;
        while (guest_recv(f, &h, buf, sizeof(buf)))
            reset |= h.op == OP_RST;
    }
    assert_true(reset);
    /* Not before the guest sent more than the buffer (8 chunks), and within 64 KiB of it. */
    assert_true(chunks > VIRTIO_VSOCK_BUF_ALLOC / sizeof(chunk));
    assert_true(chunks <= VIRTIO_VSOCK_BUF_ALLOC / sizeof(chunk) + 2);
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 0);
    teardown(f);
}

static void test_credit_host_to_guest(void **state)
{
    struct fix *f = setup();
    start_rx();
    post_rx(f, 16);
    /* The guest grants 10 bytes. */
    guest_send(f, OP_REQUEST, 5000, 1234, NULL, 0, 0, 10, 0);
    expect_packet(f, OP_RESPONSE, 5000, 1234);
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(send(f->peer, big, sizeof(big), 0), 100);
    run_loop(f);
    struct hdr h;
    char buf[4096];
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_RW);
    assert_int_equal(h.len, 10);
    assert_false(guest_recv(f, &h, buf, sizeof(buf)));
    run_loop(f); /* no busy loop, no more data while the credit is spent */
    assert_false(guest_recv(f, &h, buf, sizeof(buf)));
    /* The guest read them: 10 more. */
    guest_send(f, OP_CREDIT_UPDATE, 5000, 1234, NULL, 0, 0, 10, 10);
    run_loop(f);
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_RW);
    assert_int_equal(h.len, 10);
    /* Out of receive buffers: the data waits for them. */
    guest_send(f, OP_CREDIT_UPDATE, 5000, 1234, NULL, 0, 0, 1000, 20);
    unsigned got = 20;
    while (got < 100) {
        run_loop(f);
        if (!guest_recv(f, &h, buf, sizeof(buf))) {
            post_rx(f, 1);
            continue;
        }
        assert_int_equal(h.op, OP_RW);
        got += h.len;
    }
    assert_int_equal(got, 100);
    teardown(f);
}

static void test_host_connects(void **state)
{
    struct fix *f = setup();
    start_rx();
    post_rx(f, 8);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 22), 0);
    struct hdr h;
    char buf[64];
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_REQUEST);
    assert_int_equal(h.dst_port, 22);
    uint32_t hport = h.src_port;
    assert_true(hport >= 1u << 30);
    /* Nothing is relayed before the guest answers. */
    assert_int_equal(send(sv[1], "early", 5, 0), 5);
    run_loop(f);
    assert_false(guest_recv(f, &h, buf, sizeof(buf)));
    guest_send(f, OP_RESPONSE, 22, hport, NULL, 0, 0, 65536, 0);
    assert_int_equal(f->connected_ok, 1);
    assert_int_equal(f->connected_port, hport);
    /* The host side's greeting comes first, then what the guest sends. */
    guest_send(f, OP_RW, 22, hport, "ssh", 3, 0, 65536, 0);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 6);
    assert_memory_equal(buf, "OK\nssh", 6);
    run_loop(f);
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_RW);
    assert_memory_equal(buf, "early", 5);
    close(sv[1]);

    /* The guest refuses the next one. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 23), 0);
    while (guest_recv(f, &h, buf, sizeof(buf)) && h.op != OP_REQUEST)
        ;
    assert_int_equal(h.op, OP_REQUEST);
    guest_op(f, OP_RST, 23, h.src_port);
    assert_int_equal(f->connected_no, 1);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0); /* closed */
    close(sv[1]);

    /* A device not running takes none, and closes the socket it was given. */
    f->dev->ops->reset(f->dev);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 24), -ENOTCONN);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0);
    close(sv[1]);
    teardown(f);
}

static void test_host_end_goes_away(void **state)
{
    struct fix *f = connected_fix();
    close(f->peer);
    f->peer = -1;
    run_loop(f);
    struct hdr h;
    char buf[64];
    /* Its end of the stream, then the reset once the guest hears there is nobody. */
    assert_true(guest_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, OP_SHUTDOWN);
    guest_send(f, OP_RW, 5000, 1234, "late", 4, 0, 65536, 0);
    bool reset = false;
    run_loop(f);
    while (guest_recv(f, &h, buf, sizeof(buf)))
        reset |= h.op == OP_RST;
    assert_true(reset);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 0);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_guest_to_host_stream),
        cmocka_unit_test(test_refused_and_unknown),
        cmocka_unit_test(test_hostile_packets),
        cmocka_unit_test(test_seqpacket_refused),
        cmocka_unit_test(test_credit_guest_to_host),
        cmocka_unit_test(test_credit_host_to_guest),
        cmocka_unit_test(test_host_connects),
        cmocka_unit_test(test_host_end_goes_away),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
