#include "virtio/fs.h"
#include "virtio_test_driver.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fd_count.h"

/* A back end that answers each request with the request's bytes reversed, and can hold
 * requests until `gate` of them are in progress at once (proof the workers run in parallel). */
struct fake_be {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    unsigned calls, resets, inside, most_inside, gate;
    size_t lie; /* nonzero: claim this reply length instead */
};

static size_t fake_handle(void *ctx, const struct iovec *in, unsigned in_n, const struct iovec *out,
                          unsigned out_n)
{
    struct fake_be *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->calls++;
    b->inside++;
    if (b->inside > b->most_inside)
        b->most_inside = b->inside;
    pthread_cond_broadcast(&b->cv);
    while (b->gate && b->inside < b->gate) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        if (pthread_cond_timedwait(&b->cv, &b->lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&b->lock);

    uint8_t req[256];
    size_t n = 0;
    for (unsigned i = 0; i < in_n && n < sizeof(req); i++) {
        size_t k = in[i].iov_len < sizeof(req) - n ? in[i].iov_len : sizeof(req) - n;
        memcpy(req + n, in[i].iov_base, k);
        n += k;
    }
    size_t w = 0;
    for (unsigned i = 0; i < out_n && w < n; i++)
        for (size_t j = 0; j < out[i].iov_len && w < n; j++, w++)
            ((uint8_t *)out[i].iov_base)[j] = req[n - 1 - w];

    pthread_mutex_lock(&b->lock);
    b->inside--;
    pthread_mutex_unlock(&b->lock);
    return b->lie ? b->lie : w;
}

static void fake_reset(void *ctx)
{
    struct fake_be *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->resets++;
    pthread_mutex_unlock(&b->lock);
}

struct fix {
    struct test_driver t;
    struct fake_be be;
    struct virtio_device *dev;
};

static struct fix *make(unsigned request_queues)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->be.lock, NULL);
    pthread_cond_init(&f->be.cv, NULL);
    struct virtio_fs_backend be = { .handle = fake_handle, .reset = fake_reset, .ctx = &f->be };
    f->dev = virtio_fs_new("myshare", request_queues, &be, NULL);
    assert_non_null(f->dev);
    return f;
}

static struct fix *setup_fs(unsigned request_queues)
{
    struct fix *f = make(request_queues);
    assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
    return f;
}

static void teardown_fs(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    pthread_cond_destroy(&f->be.cv);
    pthread_mutex_destroy(&f->be.lock);
    free(f);
}

/* A request of len bytes (0, 1, 2, ...) and a reply buffer of room bytes on queue q. */
static uint16_t request(struct fix *f, unsigned q, uint32_t len, uint32_t room, uint64_t *reply)
{
    struct td_buf b[2];
    unsigned n = 0;
    if (len) {
        uint64_t in = td_alloc(&f->t, len);
        uint8_t *p = td_ptr(&f->t, in, len);
        for (uint32_t i = 0; i < len; i++)
            p[i] = (uint8_t)i;
        b[n++] = (struct td_buf){ .gpa = in, .len = len };
    }
    if (room) {
        *reply = td_alloc(&f->t, room);
        b[n++] = (struct td_buf){ .gpa = *reply, .len = room, .writable = true };
    }
    return td_add(&f->t, q, b, n);
}

/* Sends one request as above, kicks queue q and waits: the length the device used it with. */
static uint32_t request_used_len(struct fix *f, unsigned q, uint32_t len, uint32_t room)
{
    uint64_t reply;
    request(f, q, len, room, &reply);
    td_kick(&f->t, q);
    uint32_t used = 99;
    assert_true(td_wait_used(&f->t, q, NULL, &used, 2000));
    return used;
}

static void test_config_has_tag_and_queue_count(void **state)
{
    struct fix *f = setup_fs(3);
    assert_int_equal(f->dev->device_id, VIRTIO_ID_FS);
    assert_int_equal(f->dev->num_queues, 4);
    assert_int_equal(f->dev->config_size, VIRTIO_FS_CFG_SIZE);
    uint8_t cfg[VIRTIO_FS_CFG_SIZE];
    f->dev->ops->config_read(f->dev, 0, cfg, sizeof(cfg));
    assert_memory_equal(cfg, "myshare\0\0", 9);
    assert_int_equal(cfg[35], 0);
    assert_int_equal(cfg[36] | cfg[37] << 8 | cfg[38] << 16 | cfg[39] << 24, 3);
    uint8_t junk[4] = { 1, 2, 3, 4 };
    f->dev->ops->config_write(f->dev, 36, junk, 4); /* read-only */
    f->dev->ops->config_read(f->dev, 36, cfg, 4);
    assert_int_equal(cfg[0], 3);
    teardown_fs(f);
}

static void test_bad_parameters(void **state)
{
    struct fake_be b = { 0 };
    struct virtio_fs_backend be = { .handle = fake_handle, .ctx = &b };
    vmk_error *err = NULL;
    assert_null(virtio_fs_new("", 1, &be, &err));
    assert_non_null(strstr(vmk_error_message(err), "tag"));
    vmk_error_free(err);
    err = NULL;
    assert_null(virtio_fs_new("123456789012345678901234567890123456", 1, &be, &err));
    vmk_error_free(err);
    assert_null(virtio_fs_new("t", 0, &be, NULL));
    assert_null(virtio_fs_new("t", VIRTIO_FS_MAX_REQ_QUEUES + 1, &be, NULL));
    assert_null(virtio_fs_new("t", 1, NULL, NULL));
    struct virtio_device *d = virtio_fs_new("12345678901234567890123456789012345", 1, &be, NULL);
    assert_non_null(d); /* 35 bytes: the most a NUL-terminated tag leaves */
    d->ops->destroy(d);
}

static void test_request_gets_reply_on_its_queue(void **state)
{
    struct fix *f = setup_fs(2);
    for (unsigned q = 1; q <= 2; q++) {
        uint64_t reply;
        uint16_t head = request(f, q, 40, 64, &reply);
        td_kick(&f->t, q);
        uint32_t id, len;
        assert_true(td_wait_used(&f->t, q, &id, &len, 2000));
        assert_int_equal(id, head);
        assert_int_equal(len, 40);
        uint8_t *p = td_ptr(&f->t, reply, 40);
        assert_int_equal(p[0], 39);
        assert_int_equal(p[39], 0);
        assert_true(td_notified(&f->t, q) >= 1);
    }
    teardown_fs(f);
}

/* FORGET on the high-priority queue has no reply buffer: used with 0 bytes. */
static void test_hiprio_request_without_reply(void **state)
{
    struct fix *f = setup_fs(1);
    assert_int_equal(request_used_len(f, 0, 48, 0), 0);
    assert_int_equal(f->be.calls, 1);
    teardown_fs(f);
}

static void test_requests_served_in_parallel(void **state)
{
    struct fix *f = setup_fs(1);
    f->be.gate = 3;
    uint64_t reply;
    for (int i = 0; i < 3; i++)
        request(f, 1, 8, 8, &reply);
    td_kick(&f->t, 1);
    assert_true(td_wait_used_idx(&f->t, 1, 3, 3000));
    assert_int_equal(f->be.most_inside, 3);
    teardown_fs(f);
}

static void poke(int fd)
{
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* Given the queues' kick fds (take_kick), the workers read them themselves: a chain is
 * served on a signal of its queue's eventfd alone, two queues signalled at once both are,
 * a new fd replaces the old one, and -1 gives it back (its kicks then go unread, and
 * queue_notify serves again). The device's copies are closed. */
static void test_kicks_read_by_workers(void **state)
{
    int fds = fd_count();
    struct fix *f = setup_fs(1);
    int k0 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), k1 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
        k1b = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(k0 >= 0 && k1 >= 0 && k1b >= 0);
    assert_false(f->dev->ops->take_kick(f->dev, 2, k1)); /* no such queue */
    assert_true(f->dev->ops->take_kick(f->dev, 0, k0));
    assert_true(f->dev->ops->take_kick(f->dev, 1, k1));
    uint64_t reply;
    request(f, 0, 48, 0, &reply);
    request(f, 1, 40, 64, &reply);
    poke(k0);
    poke(k1);
    assert_true(td_wait_used_idx(&f->t, 0, 1, 2000));
    assert_true(td_wait_used_idx(&f->t, 1, 1, 2000));

    assert_true(f->dev->ops->take_kick(f->dev, 1, k1b));
    close(k1);
    request(f, 1, 8, 8, &reply);
    poke(k1b);
    assert_true(td_wait_used_idx(&f->t, 1, 2, 2000));

    assert_false(f->dev->ops->take_kick(f->dev, 1, -1));
    usleep(50000); /* the worker polling the fd lets it go */
    request(f, 1, 8, 8, &reply);
    poke(k1b);
    usleep(100000);
    assert_int_equal(td_used_idx(&f->t, 1), 2);
    uint64_t v;
    assert_int_equal(read(k1b, &v, sizeof(v)), sizeof(v)); /* unread by the device */
    td_kick(&f->t, 1);
    assert_true(td_wait_used_idx(&f->t, 1, 3, 2000));

    teardown_fs(f); /* with queue 0's still taken */
    close(k0);
    close(k1b);
    assert_int_equal(fd_count(), fds);
}

/* Chains the driver made available before DRIVER_OK are served without a kick: here the
 * device is reset and made available a chain while stopped, then activated again. */
static void test_chains_before_activate_are_served(void **state)
{
    struct fix *f = setup_fs(1);
    f->dev->ops->reset(f->dev);
    uint64_t reply;
    request(f, 1, 4, 4, &reply);
    usleep(50000);
    assert_int_equal(td_used_idx(&f->t, 1), 0); /* stopped: nothing served */
    assert_int_equal(f->dev->ops->activate(f->dev), 0);
    assert_true(td_wait_used_idx(&f->t, 1, 1, 2000));
    teardown_fs(f);
}

static void test_reset_reaches_backend(void **state)
{
    struct fix *f = setup_fs(1);
    f->dev->ops->reset(f->dev);
    assert_int_equal(f->be.resets, 1);
    teardown_fs(f);
}

/* A back end claiming more than the chain holds must not make the device push it. */
static void test_backend_overclaim_is_not_pushed(void **state)
{
    struct fix *f = setup_fs(1);
    f->be.lie = 1000;
    assert_int_equal(request_used_len(f, 1, 8, 16), 0);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown_fs(f);
}

/* A broken ring asks for a reset, and the device keeps running. */
static void test_broken_ring_needs_reset(void **state)
{
    struct fix *f = setup_fs(1);
    td_set_avail_idx(&f->t, 1, 500); /* more chains than the queue holds */
    td_kick(&f->t, 1);
    for (int i = 0; i < 200 && td_resets(&f->t, NULL) == 0; i++)
        usleep(10000);
    assert_int_equal(td_resets(&f->t, NULL), 1);
    teardown_fs(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_has_tag_and_queue_count),
        cmocka_unit_test(test_bad_parameters),
        cmocka_unit_test(test_request_gets_reply_on_its_queue),
        cmocka_unit_test(test_hiprio_request_without_reply),
        cmocka_unit_test(test_requests_served_in_parallel),
        cmocka_unit_test(test_chains_before_activate_are_served),
        cmocka_unit_test(test_kicks_read_by_workers),
        cmocka_unit_test(test_reset_reaches_backend),
        cmocka_unit_test(test_backend_overclaim_is_not_pushed),
        cmocka_unit_test(test_broken_ring_needs_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
