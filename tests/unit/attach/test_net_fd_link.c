#include "attach/net_fd_link.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* A device as the link sees it: records frames, refuses when told to. */
struct fake_peer {
    pthread_mutex_t lock;
    bool refuse;
    unsigned frames, tx_ready, ups, downs;
    uint8_t last[70000];
    size_t last_len;
};

static bool fp_receive(void *ctx, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct fake_peer *p = ctx;
    if (p->refuse)
        return false;
    size_t off = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        memcpy(p->last + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    assert_int_equal(off, len);
    p->last_len = len;
    p->frames++;
    return true;
}

static void fp_tx_ready(void *ctx)
{
    ((struct fake_peer *)ctx)->tx_ready++;
}

static void fp_changed(void *ctx, bool up, const char *why)
{
    struct fake_peer *p = ctx;
    (void)why;
    if (up)
        p->ups++;
    else
        p->downs++;
}

struct fix {
    struct event_loop *el;
    struct fake_peer peer;
    struct net_link *link;
    int other; /* the far end */
};

/* Runs the loop until cond or about a second passes. */
#define RUN_UNTIL(f, cond)                          \
    do {                                            \
        for (int i_ = 0; i_ < 100 && !(cond); i_++) \
            event_loop_run_once((f)->el, 10);       \
        assert_true(cond);                          \
    } while (0)

static int next_fd = -1; /* what the reconnect callback hands out */

static int reconnect(void *ctx)
{
    (void)ctx;
    int fd = next_fd;
    next_fd = -1;
    return fd >= 0 ? fd : -ECONNREFUSED;
}

static struct fix *make(int type, bool reconnects)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->peer.lock, NULL);
    assert_int_equal(event_loop_new(&f->el), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    f->other = sv[1];
    struct net_fd_link_params p = {
        .fd = sv[0],
        .framing = type == SOCK_STREAM ? NET_FRAMING_STREAM : NET_FRAMING_DATAGRAM,
        .max_frame = 9000,
        .reconnect = reconnects ? reconnect : NULL,
    };
    f->link = net_fd_link_new(&p);
    assert_non_null(f->link);
    struct net_link_peer peer = { .receive = fp_receive,
                                  .tx_ready = fp_tx_ready,
                                  .link_changed = fp_changed,
                                  .ctx = &f->peer,
                                  .lock = &f->peer.lock };
    assert_int_equal(f->link->ops->start(f->link, f->el, &peer), 0);
    return f;
}

static void destroy(struct fix *f)
{
    f->link->ops->stop(f->link);
    f->link->ops->destroy(f->link);
    if (f->other >= 0)
        close(f->other);
    event_loop_free(f->el);
    pthread_mutex_destroy(&f->peer.lock);
    free(f);
}

static int send_frame(struct fix *f, const void *b, size_t len)
{
    struct iovec iov = { (void *)b, len };
    pthread_mutex_lock(&f->peer.lock);
    int e = f->link->ops->send(f->link, &iov, 1, len);
    pthread_mutex_unlock(&f->peer.lock);
    return e;
}

static void rx_ready(struct fix *f)
{
    pthread_mutex_lock(&f->peer.lock);
    f->link->ops->rx_ready(f->link);
    pthread_mutex_unlock(&f->peer.lock);
}

static void test_datagram_both_ways(void **state)
{
    (void)state;
    struct fix *f = make(SOCK_DGRAM, false);
    uint8_t frame[1514];
    memset(frame, 0xab, sizeof(frame));
    assert_int_equal(write(f->other, frame, 1514), 1514);
    assert_int_equal(write(f->other, frame, 60), 60);
    RUN_UNTIL(f, f->peer.frames == 2);
    assert_int_equal(f->peer.last_len, 60);
    /* Longer than the link's frames: dropped, not truncated. */
    static uint8_t big[9001];
    assert_int_equal(write(f->other, big, sizeof(big)), (ssize_t)sizeof(big));
    assert_int_equal(write(f->other, frame, 100), 100);
    RUN_UNTIL(f, f->peer.frames == 3);
    assert_int_equal(f->peer.last_len, 100);
    assert_int_equal(f->link->dropped, 1);
    /* Guest → peer: one datagram per frame. */
    assert_int_equal(send_frame(f, frame, 1514), 0);
    uint8_t in[2000];
    assert_int_equal(read(f->other, in, sizeof(in)), 1514);
    destroy(f);
}

static void test_receive_back_pressure(void **state)
{
    (void)state;
    struct fix *f = make(SOCK_DGRAM, false);
    uint8_t frame[100] = { 1 };
    f->peer.refuse = true;
    for (int i = 0; i < 5; i++)
        assert_int_equal(write(f->other, frame, sizeof(frame)), (ssize_t)sizeof(frame));
    for (int i = 0; i < 20; i++)
        event_loop_run_once(f->el, 5);
    assert_int_equal(f->peer.frames, 0);
    /* Held, not dropped: the link stopped reading (the other 4 are still queued). */
    assert_int_equal(f->link->dropped, 0);
    f->peer.refuse = false;
    rx_ready(f);
    RUN_UNTIL(f, f->peer.frames == 5);
    assert_int_equal(f->link->dropped, 0);
    destroy(f);
}

static void test_send_back_pressure(void **state)
{
    (void)state;
    struct fix *f = make(SOCK_DGRAM, false);
    static uint8_t frame[8000];
    int e = 0;
    unsigned sent = 0;
    while ((e = send_frame(f, frame, sizeof(frame))) == 0)
        sent++;
    assert_int_equal(e, -EAGAIN);
    assert_true(sent > 0);
    assert_int_equal(send_frame(f, frame, sizeof(frame)), -EAGAIN);
    for (unsigned i = 0; i < sent; i++)
        assert_int_equal(read(f->other, frame, sizeof(frame)), (ssize_t)sizeof(frame));
    RUN_UNTIL(f, f->peer.tx_ready == 1);
    assert_int_equal(send_frame(f, frame, sizeof(frame)), 0);
    destroy(f);
}

static void put_len(uint8_t *b, uint32_t len)
{
    b[0] = (uint8_t)(len >> 24), b[1] = (uint8_t)(len >> 16), b[2] = (uint8_t)(len >> 8);
    b[3] = (uint8_t)len;
}

static void test_stream_frames(void **state)
{
    (void)state;
    struct fix *f = make(SOCK_STREAM, false);
    uint8_t wire[4 + 3000 + 4 + 60];
    put_len(wire, 3000);
    memset(wire + 4, 7, 3000);
    put_len(wire + 3004, 60);
    memset(wire + 3008, 9, 60);
    /* In pieces that cut the length and the frame. */
    assert_int_equal(write(f->other, wire, 2), 2);
    event_loop_run_once(f->el, 10);
    assert_int_equal(write(f->other, wire + 2, 1000), 1000);
    event_loop_run_once(f->el, 10);
    assert_int_equal(f->peer.frames, 0);
    assert_int_equal(write(f->other, wire + 1002, sizeof(wire) - 1002),
                     (ssize_t)(sizeof(wire) - 1002));
    RUN_UNTIL(f, f->peer.frames == 2);
    assert_int_equal(f->peer.last_len, 60);
    /* Guest → peer: length first. */
    uint8_t frame[100];
    memset(frame, 3, sizeof(frame));
    assert_int_equal(send_frame(f, frame, 100), 0);
    uint8_t in[200];
    assert_int_equal(read(f->other, in, sizeof(in)), 104);
    assert_memory_equal(in, "\0\0\0\x64", 4);
    /* A length above the limit: the stream cannot be trusted, the link goes down. */
    put_len(wire, 9001);
    assert_int_equal(write(f->other, wire, 4), 4);
    RUN_UNTIL(f, f->peer.downs == 1);
    /* Frames from the guest are dropped while down. */
    assert_int_equal(send_frame(f, frame, 100), 0);
    assert_true(f->link->dropped >= 1);
    destroy(f);
}

static void test_stream_peer_gone_and_back(void **state)
{
    (void)state;
    struct fix *f = make(SOCK_STREAM, true);
    close(f->other);
    f->other = -1;
    RUN_UNTIL(f, f->peer.downs == 1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    next_fd = sv[0];
    f->other = sv[1];
    /* The link retries once a second. */
    for (int i = 0; i < 300 && f->peer.ups == 0; i++)
        event_loop_run_once(f->el, 10);
    assert_int_equal(f->peer.ups, 1);
    uint8_t wire[4 + 60];
    put_len(wire, 60);
    memset(wire + 4, 1, 60);
    assert_int_equal(write(f->other, wire, sizeof(wire)), (ssize_t)sizeof(wire));
    RUN_UNTIL(f, f->peer.frames == 1);
    destroy(f);
}

static void test_datagram_peer_refuses(void **state)
{
    (void)state;
    /* A connected unix datagram socket whose peer closed: sends are refused, the link goes
     * down once, and the VM never hears an error. */
    struct fix *f = make(SOCK_DGRAM, false);
    close(f->other);
    f->other = -1;
    uint8_t frame[60] = { 0 };
    assert_int_equal(send_frame(f, frame, 60), 0);
    RUN_UNTIL(f, f->peer.downs == 1);
    assert_int_equal(send_frame(f, frame, 60), 0);
    assert_true(f->link->dropped >= 2);
    destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datagram_both_ways),
        cmocka_unit_test(test_receive_back_pressure),
        cmocka_unit_test(test_send_back_pressure),
        cmocka_unit_test(test_stream_frames),
        cmocka_unit_test(test_stream_peer_gone_and_back),
        cmocka_unit_test(test_datagram_peer_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
