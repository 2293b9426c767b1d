#include "virtio/vsock.h"
#include "virtio_test_driver.h"
#include "vsock_test_guest.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define GUEST_CID VG_GUEST_CID
#define Q_RX      0
#define Q_TX      1
#define HDR       VIRTIO_VSOCK_HDR_LEN

struct fix {
    struct test_driver t;
    struct vsock_guest g;
    struct event_loop *el;
    struct virtio_device *dev;
    int refuse;       /* connect() fails with -refuse when set */
    bool tiny_sndbuf; /* the device's end of the socketpair takes little */
    bool drop_peer;   /* close our end at once (for counting connections) */
    int peers[4];     /* our ends of the first connections, in order */
    unsigned npeers;
    uint32_t asked_port; /* the last port connect() was asked for */
    int peer;            /* our end of the last connection */
    unsigned connected_ok, connected_no;
    uint32_t connected_port;
    struct vsock_pending pending; /* host-initiated connections' */
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
    if (f->drop_peer) {
        close(sv[1]);
    } else {
        f->peer = sv[1];
        if (f->npeers < 4)
            f->peers[f->npeers++] = sv[1];
    }
    return sv[0];
}

static void host_connected(struct vsock_pending *p, int fd, uint32_t host_port, bool ok)
{
    struct fix *f = (struct fix *)((char *)p - offsetof(struct fix, pending));
    if (ok) {
        f->connected_ok++;
        f->connected_port = host_port;
        assert_int_equal(send(fd, "OK\n", 3, MSG_NOSIGNAL), 3); /* before any relayed byte */
    } else {
        f->connected_no++;
    }
}

static const struct vsock_host_ops host_ops = { .connect = host_connect };

static struct fix *setup_with_timeout(unsigned connect_timeout_ms)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->peer = -1;
    f->pending.done = host_connected;
    assert_int_equal(event_loop_new(&f->el), 0);
    struct virtio_vsock_params p = { .guest_cid = GUEST_CID,
                                     .el = f->el,
                                     .host = &host_ops,
                                     .host_ctx = f,
                                     .connect_timeout_ms = connect_timeout_ms };
    f->dev = virtio_vsock_new(&p);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, ~0ULL), 0);
    vg_init(&f->g, &f->t);
    return f;
}

static struct fix *setup(void)
{
    return setup_with_timeout(0);
}

static void teardown(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    event_loop_free(f->el);
    if (f->peer >= 0)
        close(f->peer);
    for (unsigned i = 0; i < f->npeers; i++)
        if (f->peers[i] >= 0 && f->peers[i] != f->peer)
            close(f->peers[i]);
    free(f);
}

static void run_loop(struct fix *f)
{
    for (int i = 0; i < 8; i++)
        if (event_loop_run_once(f->el, 0) <= 0)
            break;
}

/* The guest connects to host port 1234 from its port 5000. */
static struct fix *connected_fix(void)
{
    struct fix *f = setup();
    vg_post_rx(&f->g, 16);
    vg_op(&f->g, VG_REQUEST, 5000, 1234);
    assert_int_equal(f->asked_port, 1234);
    vg_expect(&f->g, VG_RESPONSE, 5000, 1234);
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
    vg_send(&f->g, VG_RW, 5000, 1234, "hello", 5, 0, 65536, 0);
    char buf[64];
    assert_int_equal(recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT), 5);
    assert_memory_equal(buf, "hello", 5);
    /* Host -> guest, within the 65536 bytes of credit the guest gave. */
    assert_int_equal(send(f->peer, "world!", 6, 0), 6);
    run_loop(f);
    struct vg_hdr h;
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RW);
    assert_int_equal(h.len, 6);
    assert_memory_equal(buf, "world!", 6);
    assert_int_equal(h.fwd_cnt, 5); /* what reached the host, told back */
    /* The host closes its side for writing: the guest hears SHUTDOWN(SEND). */
    shutdown(f->peer, SHUT_WR);
    run_loop(f);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_SHUTDOWN);
    assert_int_equal(h.flags, 2);
    /* The guest closes: SHUTDOWN both ways; the device answers RST and closes the host end. */
    vg_send(&f->g, VG_SHUTDOWN, 5000, 1234, NULL, 0, 3, 65536, 6);
    vg_expect(&f->g, VG_RST, 5000, 1234);
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
    vg_post_rx(&f->g, 8);
    f->refuse = ECONNREFUSED;
    vg_op(&f->g, VG_REQUEST, 5000, 99);
    assert_int_equal(f->asked_port, 99);
    vg_expect(&f->g, VG_RST, 5000, 99);
    /* Data, a response or a credit update for no connection: reset. */
    vg_send(&f->g, VG_RW, 5001, 100, "x", 1, 0, 65536, 0);
    vg_expect(&f->g, VG_RST, 5001, 100);
    vg_op(&f->g, VG_RESPONSE, 5002, 101);
    vg_expect(&f->g, VG_RST, 5002, 101);
    /* A reset for no connection is not answered. */
    vg_op(&f->g, VG_RST, 5003, 102);
    struct vg_hdr h;
    uint8_t buf[16];
    assert_false(vg_recv(&f->g, &h, buf, sizeof(buf)));
    teardown(f);
}

static void test_hostile_packets(void **state)
{
    struct fix *f = connected_fix();
    struct virtio_vsock_stats st;
    /* The wrong source CID, a payload on a control packet, a length past the buffer: dropped
     * and counted, the connection untouched. */
    struct vg_hdr h = { .src_cid = GUEST_CID + 1,
                        .dst_cid = 2,
                        .src_port = 5000,
                        .dst_port = 1234,
                        .type = 1,
                        .op = VG_RW };
    struct td_buf b = { .gpa = td_alloc(&f->t, HDR), .len = HDR };
    vg_put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    vg_send(&f->g, VG_CREDIT_UPDATE, 5000, 1234, "zz", 2, 0, 65536, 0);
    h = (struct vg_hdr){ .src_cid = GUEST_CID,
                         .dst_cid = 2,
                         .src_port = 5000,
                         .dst_port = 1234,
                         .type = 1,
                         .op = VG_RW,
                         .len = 1000 };
    b = (struct td_buf){ .gpa = td_alloc(&f->t, HDR + 10), .len = HDR + 10 };
    vg_put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
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
    b = (struct td_buf){ .gpa = td_alloc(&f->t, 16), .len = 16, .writable = true };
    td_add(&f->t, Q_RX, &b, 1);
    f->refuse = ECONNREFUSED;
    vg_op(&f->g, VG_REQUEST, 1, 2); /* owes a reset: the device looks at the buffer */
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(strstr(why, "shorter than a header"));
    teardown(f);
}

static void test_seqpacket_refused(void **state)
{
    struct fix *f = setup();
    vg_post_rx(&f->g, 4);
    struct vg_hdr h = { .src_cid = GUEST_CID,
                        .dst_cid = 2,
                        .src_port = 5000,
                        .dst_port = 1234,
                        .type = 2,
                        .op = VG_REQUEST,
                        .buf_alloc = 4096 };
    struct td_buf b = { .gpa = td_alloc(&f->t, HDR), .len = HDR };
    vg_put_hdr(td_ptr(&f->t, b.gpa, HDR), &h);
    td_add(&f->t, Q_TX, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_TX);
    vg_expect(&f->g, VG_RST, 5000, 1234);
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
        vg_send(&f->g, VG_RW, 5000, 1234, chunk, sizeof(chunk), 0, 65536, 0);
        sent += sizeof(chunk);
    }
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 1);
    struct vg_hdr h;
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
    while (vg_recv(&f->g, &h, buf, sizeof(buf)))
        if (h.op == VG_CREDIT_UPDATE && h.fwd_cnt > told)
            told = h.fwd_cnt;
    assert_true(told >= sent - VIRTIO_VSOCK_BUF_ALLOC / 4);
    /* A credit request is answered at once, with all of it. */
    vg_op(&f->g, VG_CREDIT_REQUEST, 5000, 1234);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, sent);
    teardown(f);

    /* A guest that sends past the credit has its connection reset: the host end takes
     * next to nothing and reads nothing, so the device holds what the guest sent. */
    f = setup();
    vg_post_rx(&f->g, 16);
    f->tiny_sndbuf = true;
    vg_op(&f->g, VG_REQUEST, 5000, 1234);
    vg_expect(&f->g, VG_RESPONSE, 5000, 1234);
    unsigned chunks = 0;
    bool reset = false;
    while (!reset && chunks < 12) {
        vg_send(&f->g, VG_RW, 5000, 1234, chunk, sizeof(chunk), 0, 65536, 0);
        chunks++;
        while (vg_recv(&f->g, &h, buf, sizeof(buf)))
            reset |= h.op == VG_RST;
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
    vg_post_rx(&f->g, 16);
    /* The guest grants 10 bytes. */
    vg_send(&f->g, VG_REQUEST, 5000, 1234, NULL, 0, 0, 10, 0);
    vg_expect(&f->g, VG_RESPONSE, 5000, 1234);
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(send(f->peer, big, sizeof(big), 0), 100);
    run_loop(f);
    struct vg_hdr h;
    char buf[4096];
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RW);
    assert_int_equal(h.len, 10);
    assert_false(vg_recv(&f->g, &h, buf, sizeof(buf)));
    run_loop(f); /* no busy loop, no more data while the credit is spent */
    assert_false(vg_recv(&f->g, &h, buf, sizeof(buf)));
    /* The guest read them: 10 more. */
    vg_send(&f->g, VG_CREDIT_UPDATE, 5000, 1234, NULL, 0, 0, 10, 10);
    run_loop(f);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RW);
    assert_int_equal(h.len, 10);
    /* Out of receive buffers: the data waits for them. */
    vg_send(&f->g, VG_CREDIT_UPDATE, 5000, 1234, NULL, 0, 0, 1000, 20);
    unsigned got = 20;
    while (got < 100) {
        run_loop(f);
        if (!vg_recv(&f->g, &h, buf, sizeof(buf))) {
            vg_post_rx(&f->g, 1);
            continue;
        }
        assert_int_equal(h.op, VG_RW);
        got += h.len;
    }
    assert_int_equal(got, 100);
    teardown(f);
}

static void test_host_connects(void **state)
{
    struct fix *f = setup();
    vg_post_rx(&f->g, 8);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 22, &f->pending), 0);
    struct vg_hdr h;
    char buf[64];
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_REQUEST);
    assert_int_equal(h.dst_port, 22);
    uint32_t hport = h.src_port;
    assert_true(hport >= 1u << 30);
    /* Nothing is relayed before the guest answers. */
    assert_int_equal(send(sv[1], "early", 5, 0), 5);
    run_loop(f);
    assert_false(vg_recv(&f->g, &h, buf, sizeof(buf)));
    vg_send(&f->g, VG_RESPONSE, 22, hport, NULL, 0, 0, 65536, 0);
    assert_int_equal(f->connected_ok, 1);
    assert_int_equal(f->connected_port, hport);
    /* The host side's greeting comes first, then what the guest sends. */
    vg_send(&f->g, VG_RW, 22, hport, "ssh", 3, 0, 65536, 0);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 6);
    assert_memory_equal(buf, "OK\nssh", 6);
    run_loop(f);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RW);
    assert_memory_equal(buf, "early", 5);
    close(sv[1]);

    /* The guest refuses the next one. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 23, &f->pending), 0);
    while (vg_recv(&f->g, &h, buf, sizeof(buf)) && h.op != VG_REQUEST)
        ;
    assert_int_equal(h.op, VG_REQUEST);
    vg_op(&f->g, VG_RST, 23, h.src_port);
    assert_int_equal(f->connected_no, 1);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0); /* closed */
    close(sv[1]);

    /* A device not running takes none, and closes the socket it was given. */
    f->dev->ops->reset(f->dev);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 24, &f->pending), -ENOTCONN);
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
    struct vg_hdr h;
    char buf[64];
    /* Its end of the stream, then the reset once the guest hears there is nobody. */
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_SHUTDOWN);
    vg_send(&f->g, VG_RW, 5000, 1234, "late", 4, 0, 65536, 0);
    bool reset = false;
    run_loop(f);
    while (vg_recv(&f->g, &h, buf, sizeof(buf)))
        reset |= h.op == VG_RST;
    assert_true(reset);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 0);
    teardown(f);
}

static void test_connection_cap(void **state)
{
    /* A guest cannot make the device hold more host sockets than VIRTIO_VSOCK_MAX_CONNS. */
    struct fix *f = setup();
    f->drop_peer = true;
    for (uint32_t i = 0; i <= VIRTIO_VSOCK_MAX_CONNS; i++)
        vg_op(&f->g, VG_REQUEST, 10000 + i, 1234);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, VIRTIO_VSOCK_MAX_CONNS);
    /* The one too many is reset once there is a buffer for it. */
    vg_post_rx(&f->g, 1);
    struct vg_hdr h;
    char buf[16];
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RST);
    assert_int_equal(h.dst_port, 10000 + VIRTIO_VSOCK_MAX_CONNS);
    teardown(f);
}

static void test_freed_within_a_batch(void **state)
{
    /* One epoll batch holds events for connections A and then B; A's turn serves the
     * receive queue, where B's host end fails and B's reset goes out, freeing B: B's event,
     * still to come in that batch, must find it gone (ASan). */
    struct fix *f = setup();
    vg_post_rx(&f->g, 2);
    vg_op(&f->g, VG_REQUEST, 5000, 1234); /* A */
    vg_op(&f->g, VG_REQUEST, 5001, 1234); /* B */
    assert_int_equal(f->npeers, 2);
    int pa = f->peers[0], pb = f->peers[1];
    /* B has a byte for the guest, which has no receive buffer left: B waits, queued. */
    assert_int_equal(send(pb, "b", 1, 0), 1);
    run_loop(f);
    /* The guest sends B bytes its host end never reads, and that end closes: B's next read
     * fails (ECONNRESET). A gets a byte first, so A's event comes before B's. */
    vg_send(&f->g, VG_RW, 5001, 1234, "unread", 6, 0, 65536, 0);
    assert_int_equal(send(pa, "a", 1, 0), 1);
    close(pb);
    f->peers[1] = -1;
    if (f->peer == pb)
        f->peer = -1;
    /* Receive buffers the device will find when it next looks, without a kick. */
    vg_add_rx(&f->g, 8);
    assert_int_equal(event_loop_run_once(f->el, 100), 2);
    run_loop(f);
    struct vg_hdr h;
    char buf[64];
    bool b_reset = false;
    while (vg_recv(&f->g, &h, buf, sizeof(buf)))
        b_reset |= h.op == VG_RST && h.dst_port == 5001;
    assert_true(b_reset);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 1);
    teardown(f);
}

static void test_unanswered_connect_times_out(void **state)
{
    /* A guest that never answers a host's connection: given up after the timeout, the host
     * hears no and the guest a reset; one the guest answers in time is not touched. */
    struct fix *f = setup_with_timeout(300);
    vg_post_rx(&f->g, 8);
    int sv[2], sw[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sw), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sv[0], 22, &f->pending), 0);
    assert_int_equal(virtio_vsock_connect_guest(f->dev, sw[0], 23, &f->pending), 0);
    struct vg_hdr h;
    char buf[16];
    uint32_t port23 = 0;
    while (vg_recv(&f->g, &h, buf, sizeof(buf)))
        if (h.op == VG_REQUEST && h.dst_port == 23)
            port23 = h.src_port;
    vg_send(&f->g, VG_RESPONSE, 23, port23, NULL, 0, 0, 65536, 0);
    assert_int_equal(f->connected_ok, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100 && f->connected_no == 0; i++)
        event_loop_run_once(f->el, 50);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(f->connected_no, 1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 200 && ms < 2000);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0); /* closed */
    bool reset = false;
    while (vg_recv(&f->g, &h, buf, sizeof(buf)))
        reset |= h.op == VG_RST && h.dst_port == 22;
    assert_true(reset);
    struct virtio_vsock_stats st;
    virtio_vsock_get_stats(f->dev, &st);
    assert_int_equal(st.connections, 1); /* port 23's, open */
    close(sv[1]);
    close(sw[1]);
    teardown(f);
}

struct loop_thread {
    struct event_loop *el;
    atomic_bool stop;
};

static void *run_loop_thread(void *arg)
{
    struct loop_thread *lt = arg;
    while (!atomic_load(&lt->stop))
        event_loop_run_once(lt->el, 1);
    return NULL;
}

static void test_resets_race_host_events(void **state)
{
    /* The guest resets connections (its kicks: here the main thread, in a machine a vCPU's)
     * while the loop thread handles their host ends hanging up: an event fetched for a
     * connection that is freed meanwhile must find it gone, never freed memory (ASan). */
    struct fix *f = setup();
    f->drop_peer = true;
    vg_post_rx(&f->g, 60);
    struct loop_thread lt = { .el = f->el };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_loop_thread, &lt), 0);
    for (uint32_t i = 0; i < 400; i++) {
        vg_op(&f->g, VG_REQUEST, 20000 + i, 1234);
        vg_op(&f->g, VG_RST, 20000 + i, 1234);
    }
    atomic_store(&lt.stop, true);
    pthread_join(th, NULL);
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
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_resets_race_host_events),
        cmocka_unit_test(test_freed_within_a_batch),
        cmocka_unit_test(test_unanswered_connect_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
