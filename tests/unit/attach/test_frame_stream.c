#include "attach/frame_stream.h"

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

static size_t encode(uint8_t *out, const uint8_t *frame, uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, frame, len);
    return 4 + (size_t)len;
}

static void fill(uint8_t *b, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i * 31 + seed);
}

static void test_reader_byte_by_byte(void **state)
{
    (void)state;
    struct frame_reader r;
    assert_int_equal(frame_reader_init(&r, 2000), 0);
    uint8_t frame[1500], wire[2 * 1504];
    fill(frame, sizeof(frame), 1);
    size_t n = encode(wire, frame, 1500);
    n += encode(wire + n, frame, 60);
    size_t pos = 0;
    unsigned got = 0;
    uint32_t len;
    while (pos < n) {
        assert_null(frame_reader_frame(&r, &len));
        long used = frame_reader_feed(&r, wire + pos, 1);
        assert_int_equal(used, 1);
        pos++;
        const uint8_t *f = frame_reader_frame(&r, &len);
        if (f) {
            assert_int_equal(len, got == 0 ? 1500 : 60);
            assert_memory_equal(f, frame, len);
            frame_reader_next(&r);
            got++;
        }
    }
    assert_int_equal(got, 2);
    frame_reader_fini(&r);
}

static void test_reader_stops_after_each_frame(void **state)
{
    (void)state;
    struct frame_reader r;
    assert_int_equal(frame_reader_init(&r, 100), 0);
    uint8_t frame[100], wire[3 * 104];
    fill(frame, sizeof(frame), 2);
    size_t n = encode(wire, frame, 100);
    n += encode(wire + n, frame, 0); /* an empty frame is a frame */
    n += encode(wire + n, frame, 50);
    long used = frame_reader_feed(&r, wire, n);
    assert_int_equal(used, 104);
    uint32_t len;
    assert_non_null(frame_reader_frame(&r, &len));
    assert_int_equal(len, 100);
    frame_reader_next(&r);
    assert_int_equal(frame_reader_feed(&r, wire + 104, n - 104), 4);
    assert_non_null(frame_reader_frame(&r, &len));
    assert_int_equal(len, 0);
    frame_reader_next(&r);
    assert_int_equal(frame_reader_feed(&r, wire + 108, n - 108), 54);
    assert_non_null(frame_reader_frame(&r, &len));
    assert_int_equal(len, 50);
    assert_memory_equal(r.buf, frame, 50);
    frame_reader_fini(&r);
}

static void test_reader_refuses_oversize_length(void **state)
{
    (void)state;
    struct frame_reader r;
    assert_int_equal(frame_reader_init(&r, 100), 0);
    const uint8_t ok[4] = { 0, 0, 0, 100 }, big[4] = { 0, 0, 0, 101 };
    const uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(frame_reader_feed(&r, ok, 4), 4);
    frame_reader_next(&r);
    assert_int_equal(frame_reader_feed(&r, big, 4), -EMSGSIZE);
    frame_reader_next(&r);
    assert_int_equal(frame_reader_feed(&r, huge, 2), 2);
    assert_int_equal(frame_reader_feed(&r, huge + 2, 2), -EMSGSIZE);
    frame_reader_fini(&r);
}

/* The writer over a socket whose peer reads slowly: frames arrive whole and in order. */
static void test_writer_keeps_partial_writes(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct frame_writer w;
    struct frame_reader r;
    assert_int_equal(frame_writer_init(&w, 65550), 0);
    assert_int_equal(frame_reader_init(&r, 65550), 0);
    static uint8_t frame[65550], in[1 << 16];
    unsigned sent = 0, recvd = 0, refused = 0;
    const unsigned total = 40;
    while (recvd < total) {
        if (sent < total) {
            uint32_t len = 1000 + sent * 1601;
            fill(frame, len, sent);
            struct iovec iov[3] = { { frame, 10 },
                                    { frame + 10, 100 },
                                    { frame + 110, len - 110 } };
            int e = frame_writer_send(&w, sv[0], iov, 3, len);
            if (e == 0)
                sent++;
            else
                assert_int_equal(e, -EAGAIN), refused++;
        }
        ssize_t n = read(sv[1], in, 3000); /* slower than the writer */
        if (n <= 0)
            continue;
        long off = 0;
        while (off < n) {
            long used = frame_reader_feed(&r, in + off, (size_t)(n - off));
            assert_true(used >= 0);
            off += used;
            uint32_t len;
            const uint8_t *f = frame_reader_frame(&r, &len);
            if (f) {
                uint8_t want[65550];
                assert_int_equal(len, 1000 + recvd * 1601);
                fill(want, len, recvd);
                assert_memory_equal(f, want, len);
                frame_reader_next(&r);
                recvd++;
            }
        }
        if (sent == total)
            frame_writer_flush(&w, sv[0]);
    }
    assert_true(refused > 0); /* the test did exercise back-pressure */
    assert_false(frame_writer_pending(&w));
    /* Too long for the writer. */
    struct iovec one = { frame, 10 };
    assert_int_equal(frame_writer_send(&w, sv[0], &one, 1, 65551), -EMSGSIZE);
    close(sv[0]);
    assert_int_equal(frame_writer_send(&w, sv[1], &one, 1, 10), -EPIPE);
    frame_writer_fini(&w);
    frame_reader_fini(&r);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_byte_by_byte),
        cmocka_unit_test(test_reader_stops_after_each_frame),
        cmocka_unit_test(test_reader_refuses_oversize_length),
        cmocka_unit_test(test_writer_keeps_partial_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
