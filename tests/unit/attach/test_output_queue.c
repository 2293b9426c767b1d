/* The output queue between guest output and a host descriptor: writers never block, a full HOLD
 * queue refuses and says when there is room, a DROP queue drops, a reader that went away loses
 * what follows without keeping the loop busy, the caller's descriptor keeps its flags, and
 * what was queued is written at the end. */
#include "attach/output_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define CAP 4096

struct fix {
    struct event_loop *el;
    unsigned space_calls;
    int p[2]; /* a pipe: p[1] is given to the queue (as a copy), p[0] is the reader */
};

static void on_space(void *ctx)
{
    struct fix *f = ctx;
    f->space_calls++;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || event_loop_new(&f->el) < 0 || pipe2(f->p, O_CLOEXEC) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    if (f->p[0] >= 0)
        close(f->p[0]);
    if (f->p[1] >= 0)
        close(f->p[1]);
    event_loop_free(f->el);
    free(f);
    return 0;
}

static struct output_queue *new_queue(struct fix *f, enum output_policy policy, int fd)
{
    struct output_queue *q = output_queue_new(f->el, CAP, policy, on_space, f);
    assert_non_null(q);
    assert_int_equal(output_queue_attach(q, fcntl(fd, F_DUPFD_CLOEXEC, 3)), 0);
    return q;
}

static void run(struct fix *f, int rounds)
{
    for (int i = 0; i < rounds; i++)
        assert_true(event_loop_run_once(f->el, 10) >= 0);
}

static size_t read_all(int fd, uint8_t *buf, size_t max)
{
    size_t got = 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (got < max && poll(&p, 1, 0) > 0) {
        ssize_t n = read(fd, buf + got, max - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void pattern(uint8_t *buf, size_t len, size_t from)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((from + i) * 13 + (from + i) / 253);
}

/* A pipe nobody reads: the queue takes CAP bytes beyond what the pipe holds, then refuses;
 * nothing blocks. Once the reader reads, space() comes and everything arrives in order. */
static void test_hold_back_pressure(void **state)
{
    struct fix *f = *state;
    struct output_queue *q = new_queue(f, OUTPUT_HOLD, f->p[1]);
    /* The caller's descriptor keeps its flags: the queue writes another open of the pipe. */
    assert_int_equal(fcntl(f->p[1], F_GETFL) & O_NONBLOCK, 0);
    static uint8_t data[1 << 20];
    pattern(data, sizeof(data), 0);
    size_t offered = 0, taken_total = 0;
    int refusals = 0;
    while (refusals < 3 && offered < sizeof(data)) {
        size_t n = output_queue_write(q, data + taken_total, 1000);
        taken_total += n;
        offered += 1000;
        if (n < 1000)
            refusals++;
        run(f, 1);
    }
    assert_true(refusals == 3);
    assert_true(taken_total < sizeof(data));
    assert_int_equal(output_queue_pending(q), CAP);
    assert_int_equal(f->space_calls, 0);

    /* The reader catches up: space, and the bytes in order. */
    static uint8_t got[1 << 20];
    size_t read_total = 0;
    for (int i = 0; i < 1000 && read_total < taken_total; i++) {
        read_total += read_all(f->p[0], got + read_total, sizeof(got) - read_total);
        run(f, 1);
    }
    assert_int_equal(read_total, taken_total);
    assert_memory_equal(got, data, taken_total);
    assert_true(f->space_calls >= 1);
    assert_int_equal(output_queue_dropped(q), 0);
    output_queue_free(q);
}

/* A DROP queue (a pty, a socket) takes everything and drops what does not fit. */
static void test_drop_when_full(void **state)
{
    struct fix *f = *state;
    struct output_queue *q = new_queue(f, OUTPUT_DROP, f->p[1]);
    static uint8_t data[256 << 10];
    memset(data, 'd', sizeof(data));
    assert_int_equal(output_queue_write(q, data, sizeof(data)), sizeof(data));
    run(f, 3);
    assert_true(output_queue_dropped(q) > 0);
    assert_int_equal(f->space_calls, 0);
    output_queue_free(q);
}

/* The reader went away: bytes are taken and dropped, a refused writer is told to go on, and
 * the hang-up does not keep the loop busy. */
static void test_reader_gone(void **state)
{
    struct fix *f = *state;
    struct output_queue *q = new_queue(f, OUTPUT_HOLD, f->p[1]);
    static uint8_t data[256 << 10];
    memset(data, 'g', sizeof(data));
    while (output_queue_write(q, data, sizeof(data)) == sizeof(data))
        run(f, 1);
    close(f->p[0]);
    f->p[0] = -1;
    int dispatched = 0;
    for (int i = 0; i < 10; i++)
        dispatched += event_loop_run_once(f->el, 10);
    assert_true(dispatched <= 2);
    assert_int_equal(f->space_calls, 1);
    assert_int_equal(output_queue_write(q, data, 100), 100);
    assert_int_equal(output_queue_pending(q), 0);
    assert_true(output_queue_dropped(q) >= 100);
    output_queue_free(q);
}

/* A regular file: what was queued when the queue is freed is written (the last lines a guest
 * printed before it stopped). */
static void test_final_flush(void **state)
{
    struct fix *f = *state;
    char path[] = "/tmp/vmkit-test-outq-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct output_queue *q = new_queue(f, OUTPUT_HOLD, fd);
    close(fd);
    static uint8_t data[3000];
    pattern(data, sizeof(data), 7);
    assert_int_equal(output_queue_write(q, data, sizeof(data)), sizeof(data));
    output_queue_free(q); /* the loop never ran */
    uint8_t got[4000];
    fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, got, sizeof(got)), (ssize_t)sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    close(fd);
    unlink(path);
}

/* No descriptor: bytes are dropped, never refused. */
static void test_nowhere(void **state)
{
    struct fix *f = *state;
    struct output_queue *q = output_queue_new(f->el, CAP, OUTPUT_HOLD, on_space, f);
    assert_non_null(q);
    uint8_t b[8000] = { 0 };
    assert_int_equal(output_queue_write(q, b, sizeof(b)), sizeof(b));
    assert_int_equal(output_queue_pending(q), 0);
    assert_int_equal(output_queue_dropped(q), sizeof(b));
    output_queue_free(q);
    output_queue_free(NULL);
}

struct writer {
    struct output_queue *q;
    size_t taken;
};

static void *write_lots(void *arg)
{
    struct writer *w = arg;
    uint8_t b[512];
    memset(b, 'w', sizeof(b));
    for (int i = 0; i < 10000; i++)
        w->taken += output_queue_write(w->q, b, sizeof(b));
    return NULL;
}

/* Writers on other threads (vCPUs) never block, whatever the reader does. */
static void test_writers_never_block(void **state)
{
    struct fix *f = *state;
    struct output_queue *q = new_queue(f, OUTPUT_HOLD, f->p[1]);
    struct writer w = { .q = q };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_lots, &w), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(t, NULL, &deadline), 0);
    assert_true(w.taken <= CAP + (1 << 20)); /* the queue and a pipe's worth at most */
    output_queue_free(q);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hold_back_pressure), T(test_drop_when_full), T(test_reader_gone),
        T(test_final_flush),        T(test_nowhere),        T(test_writers_never_block),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
