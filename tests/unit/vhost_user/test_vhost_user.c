#include "vhost_user/protocol.h"
#include "vhost_user/server.h"

#include "fd_passing.h"

#include <endian.h>
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
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

/* The front end's guest: 1 MiB of memfd at guest-physical 0x100000, mapped here at
 * `ram` (which is also the "userspace address" the front end reports). */
#define RAM_GPA   0x100000ull
#define RAM_SIZE  (1u << 20)
#define QSIZE     16u
#define DESC_OFF  0x1000u
#define AVAIL_OFF 0x2000u
#define USED_OFF  0x3000u
#define QSTRIDE   0x4000u /* queue q's rings at q * QSTRIDE */
#define DATA_OFF  0x80000u
#define CFG_SIZE  8u

/* A fake device: two queues, 8 bytes of config; on a kick it answers each chain with
 * "vmkit" in its first writable buffer. */
struct fake_dev {
    struct virtio_device dev;
    unsigned activated, resets, notifies;
    bool take_q1;     /* take queue 1's kick fd (take_kick) */
    int taken_fd;     /* what take_kick last got for queue 1 */
    unsigned offered; /* take_kick calls with an fd */
    uint8_t config[CFG_SIZE];
    struct virtq_elem e;
};

static int fd_activate(struct virtio_device *d)
{
    ((struct fake_dev *)d)->activated++;
    return 0;
}

static void fd_queue_notify(struct virtio_device *d, unsigned q)
{
    struct fake_dev *f = (struct fake_dev *)d;
    f->notifies++;
    int rc;
    while ((rc = virtq_pop(&d->queues[q], &f->e)) == 1) {
        size_t n = virtq_elem_write(&f->e, 0, "vmkit", 5);
        virtio_device_complete(d, q, &f->e, (uint32_t)n);
    }
    if (rc < 0)
        virtio_device_queue_failed(d, q);
}

static bool fd_take_kick(struct virtio_device *d, unsigned q, int fd)
{
    struct fake_dev *f = (struct fake_dev *)d;
    f->offered += fd >= 0;
    if (q != 1 || !f->take_q1)
        return false;
    f->taken_fd = fd;
    return true;
}

static void fd_config_read(struct virtio_device *d, uint32_t off, void *data, uint32_t len)
{
    memcpy(data, ((struct fake_dev *)d)->config + off, len);
}

static void fd_config_write(struct virtio_device *d, uint32_t off, const void *data, uint32_t len)
{
    memcpy(((struct fake_dev *)d)->config + off, data, len);
}

static void fd_reset(struct virtio_device *d)
{
    ((struct fake_dev *)d)->resets++;
}

static void fd_destroy(struct virtio_device *d)
{
}

static const struct virtio_device_ops fake_ops = {
    .activate = fd_activate,
    .queue_notify = fd_queue_notify,
    .take_kick = fd_take_kick,
    .config_read = fd_config_read,
    .config_write = fd_config_write,
    .reset = fd_reset,
    .destroy = fd_destroy,
};

struct fix {
    char dir[32], path[64];
    struct event_loop *el;
    struct fake_dev fd;
    struct vhost_user_server *s;
    int sock; /* the front end's end */
    int memfd;
    uint8_t *ram; /* the front end's mapping of guest RAM */
    int kick[2], call[2];
    uint16_t avail_idx;
};

static void pump(struct fix *f)
{
    while (event_loop_run_once(f->el, 0) > 0)
        ;
}

static int connect_fe(struct fix *f)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    f->sock = fd;
    pump(f);
    assert_true(vhost_user_server_connected(f->s));
    return fd;
}

static void send_msg_flags(struct fix *f, uint32_t req, uint32_t flags, const void *payload,
                           uint32_t size, const int *fds, unsigned nfds)
{
    struct vhost_user_header h = { .request = req, .flags = flags, .size = size };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
    ssize_t n = send_with_fds(f->sock, iov, size ? 2 : 1, fds, nfds, MSG_NOSIGNAL);
    if (n < 0)
        print_error("sendmsg: %s\n", strerror(errno));
    assert_int_equal(n, (ssize_t)(sizeof(h) + size));
    pump(f);
}

static void send_msg(struct fix *f, uint32_t req, const void *payload, uint32_t size,
                     const int *fds, unsigned nfds)
{
    send_msg_flags(f, req, VHOST_USER_VERSION, payload, size, fds, nfds);
}

/* Reads a reply to req into buf (up to len bytes); returns its payload size. */
static uint32_t recv_reply(struct fix *f, uint32_t req, void *buf, uint32_t len)
{
    struct vhost_user_header h;
    assert_int_equal(recv(f->sock, &h, sizeof(h), MSG_WAITALL), (ssize_t)sizeof(h));
    assert_int_equal(h.request, req);
    assert_int_equal(h.flags, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
    assert_true(h.size <= len);
    if (h.size)
        assert_int_equal(recv(f->sock, buf, h.size, MSG_WAITALL), (ssize_t)h.size);
    return h.size;
}

static uint64_t get_u64(struct fix *f, uint32_t req)
{
    uint64_t v = 0;
    send_msg(f, req, NULL, 0, NULL, 0);
    assert_int_equal(recv_reply(f, req, &v, sizeof(v)), 8);
    return v;
}

/* The server closed our connection: EOF, and it takes a new one. */
static void assert_closed_then_reconnect(struct fix *f)
{
    char c;
    pump(f);
    assert_false(vhost_user_server_connected(f->s));
    /* EOF, or a reset when the server left bytes of ours unread. */
    ssize_t n = recv(f->sock, &c, 1, 0);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(f->sock);
    connect_fe(f);
    assert_true(get_u64(f, VHOST_USER_GET_FEATURES) & VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/vmk-vu-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
    assert_int_equal(event_loop_new(&f->el), 0);
    assert_int_equal(virtio_device_init(&f->fd.dev, &fake_ops, "fake", 1, 2, 64), 0);
    f->fd.dev.config_size = CFG_SIZE;
    memcpy(f->fd.config, "ABCDEFGH", CFG_SIZE);
    vmk_error *err = NULL;
    f->s = vhost_user_server_new(f->path, &f->fd.dev, f->el, &err);
    assert_null(err);
    assert_non_null(f->s);
    f->memfd = memfd_create("guest", MFD_CLOEXEC);
    assert_true(f->memfd >= 0);
    assert_int_equal(ftruncate(f->memfd, RAM_SIZE), 0);
    f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    assert_true(f->ram != MAP_FAILED);
    for (int q = 0; q < 2; q++) {
        f->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    connect_fe(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    close(f->sock);
    vhost_user_server_free(f->s);
    struct stat st;
    assert_int_not_equal(stat(f->path, &st), 0); /* the socket is unlinked */
    rmdir(f->dir);
    virtio_device_fini(&f->fd.dev);
    event_loop_free(f->el);
    munmap(f->ram, RAM_SIZE);
    close(f->memfd);
    for (int q = 0; q < 2; q++) {
        close(f->kick[q]);
        close(f->call[q]);
    }
    free(f);
    return 0;
}

static uint64_t uva(struct fix *f, uint64_t off)
{
    return (uint64_t)(uintptr_t)f->ram + off;
}

static void set_mem_table(struct fix *f)
{
    struct vhost_user_memory mem = { .nregions = 1 };
    mem.regions[0] = (struct vhost_user_region){ .guest_phys_addr = RAM_GPA,
                                                 .memory_size = RAM_SIZE,
                                                 .userspace_addr = uva(f, 0) };
    send_msg_flags(f, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY,
                   &mem, VHOST_USER_MEMORY_HDR_SIZE + sizeof(mem.regions[0]), &f->memfd, 1);
}

static void vring_state(struct fix *f, uint32_t req, uint32_t index, uint32_t num)
{
    struct vhost_user_vring_state st = { index, num };
    send_msg(f, req, &st, sizeof(st), NULL, 0);
}

/* GET_VRING_BASE: stops ring q; its reply, which must come whole. */
static struct vhost_user_vring_state stop_ring(struct fix *f, uint32_t q)
{
    vring_state(f, VHOST_USER_GET_VRING_BASE, q, 0);
    struct vhost_user_vring_state st;
    assert_int_equal(recv_reply(f, VHOST_USER_GET_VRING_BASE, &st, sizeof(st)), 8);
    return st;
}

static void vring_fd(struct fix *f, uint32_t req, uint64_t v, int fd)
{
    send_msg(f, req, &v, sizeof(v), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

/* A ring's size, addresses, base, call and kick: the ring has started. */
static void start_ring(struct fix *f, uint32_t q)
{
    vring_state(f, VHOST_USER_SET_VRING_NUM, q, QSIZE);
    struct vhost_user_vring_addr a = { .index = q,
                                       .desc = uva(f, q * QSTRIDE + DESC_OFF),
                                       .avail = uva(f, q * QSTRIDE + AVAIL_OFF),
                                       .used = uva(f, q * QSTRIDE + USED_OFF) };
    send_msg(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    vring_state(f, VHOST_USER_SET_VRING_BASE, q, 0);
    vring_fd(f, VHOST_USER_SET_VRING_CALL, q, f->call[q]);
    vring_fd(f, VHOST_USER_SET_VRING_KICK, q, f->kick[q]);
}

/* Negotiates and starts both rings (the QEMU order). */
static void start_device(struct fix *f)
{
    uint64_t feat = get_u64(f, VHOST_USER_GET_FEATURES);
    send_msg(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0);
    uint64_t pf = get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES);
    assert_true(pf & VIRTIO_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
    send_msg(f, VHOST_USER_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0);
    assert_int_equal(get_u64(f, VHOST_USER_GET_QUEUE_NUM), 2);
    send_msg(f, VHOST_USER_SET_FEATURES, &feat, 8, NULL, 0);
    set_mem_table(f);
    uint64_t ack = 1;
    assert_int_equal(recv_reply(f, VHOST_USER_SET_MEM_TABLE, &ack, 8), 8);
    assert_int_equal(ack, 0);
    start_ring(f, 0);
    start_ring(f, 1);
    /* Then every ring is enabled; the device starts once, when the last one is. */
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    assert_int_equal(f->fd.activated, 0);
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 1, 1);
    assert_true(vhost_user_server_connected(f->s));
    assert_int_equal(f->fd.activated, 1);
    assert_int_equal(f->fd.dev.driver_features, feat & ~VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
}

/* The driver: one writable 64-byte buffer on queue 0. */
static void add_buffer(struct fix *f)
{
    uint8_t *q = f->ram;
    uint16_t i = f->avail_idx % QSIZE;
    uint64_t d[2] = { RAM_GPA + DATA_OFF + i * 64ull, 64 | ((uint64_t)VIRTQ_DESC_F_WRITE << 32) };
    memcpy(q + DESC_OFF + i * 16, d, 16);
    memcpy(q + AVAIL_OFF + 4 + 2 * i, &i, 2);
    f->avail_idx++;
    __atomic_store_n((uint16_t *)(q + AVAIL_OFF + 2), f->avail_idx, __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fix *f)
{
    return __atomic_load_n((uint16_t *)(f->ram + USED_OFF + 2), __ATOMIC_ACQUIRE);
}

static void kick(struct fix *f, int q)
{
    uint64_t one = 1;
    assert_int_equal(write(f->kick[q], &one, 8), 8);
    pump(f);
}

static void test_happy_path(void **state)
{
    struct fix *f = *state;
    start_device(f);
    add_buffer(f);
    kick(f, 0);
    assert_true(f->fd.notifies >= 1);
    assert_int_equal(used_idx(f), 1);
    uint32_t len;
    memcpy(&len, f->ram + USED_OFF + 8, 4);
    assert_int_equal(len, 5);
    assert_memory_equal(f->ram + DATA_OFF, "vmkit", 5);
    uint64_t calls = 0;
    assert_int_equal(read(f->call[0], &calls, 8), 8);
    assert_true(calls >= 1);

    /* GET_VRING_BASE stops the ring and reports the next entry to pop. */
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 2);
    struct vhost_user_vring_state st = stop_ring(f, 0);
    assert_int_equal(st.index, 0);
    assert_int_equal(st.num, 2);
    assert_int_equal(f->fd.resets, 1);

    /* Stopped: a buffer waits until the ring restarts at base 2. */
    add_buffer(f);
    vring_state(f, VHOST_USER_SET_VRING_BASE, 0, 2);
    assert_int_equal(used_idx(f), 2);
    vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, f->kick[0]);
    assert_int_equal(f->fd.activated, 2);
    assert_int_equal(used_idx(f), 3);

    /* Config space, both ways. */
    struct vhost_user_config c = { .offset = 2, .size = 4 };
    send_msg(f, VHOST_USER_GET_CONFIG, &c, VHOST_USER_CONFIG_HDR_SIZE + 4, NULL, 0);
    struct vhost_user_config r;
    assert_int_equal(recv_reply(f, VHOST_USER_GET_CONFIG, &r, sizeof(r)),
                     VHOST_USER_CONFIG_HDR_SIZE + 4);
    assert_memory_equal(r.payload, "CDEF", 4);
    c = (struct vhost_user_config){ .offset = 0, .size = 2 };
    memcpy(c.payload, "xy", 2);
    send_msg(f, VHOST_USER_SET_CONFIG, &c, VHOST_USER_CONFIG_HDR_SIZE + 2, NULL, 0);
    assert_memory_equal(f->fd.config, "xyCDEFGH", 8);

    /* The front end goes away: the device is reset and the next one is served. */
    close(f->sock);
    pump(f);
    assert_false(vhost_user_server_connected(f->s));
    assert_int_equal(f->fd.resets, 2);
    connect_fe(f);
    f->avail_idx = 0;
    f->fd.activated = 0;
    memset(f->ram, 0, 0x10000);
    start_device(f);
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 1);
}

/* A device that serves a queue on its own thread takes that queue's kick fd: the server
 * leaves it unread, still serves the other queue's kicks, and takes it back when the ring
 * stops. */
static void test_device_takes_kick(void **state)
{
    struct fix *f = *state;
    f->fd.take_q1 = true;
    f->fd.taken_fd = -1;
    start_device(f);
    assert_int_equal(f->fd.offered, 2);
    assert_true(f->fd.taken_fd >= 0);
    unsigned notifies = f->fd.notifies;
    uint64_t one = 1, v = 0;
    assert_int_equal(write(f->kick[1], &one, 8), 8);
    pump(f);
    assert_int_equal(f->fd.notifies, notifies);
    assert_int_equal(read(f->fd.taken_fd, &v, 8), 8); /* the front end's eventfd, unread */
    assert_int_equal(v, 1);
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 1);

    stop_ring(f, 1);
    assert_int_equal(f->fd.taken_fd, -1);
}

/* Features, protocol features and the memory table; no ring yet. */
static void negotiate_and_map(struct fix *f)
{
    uint64_t feat = get_u64(f, VHOST_USER_GET_FEATURES);
    uint64_t pf = get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES);
    send_msg(f, VHOST_USER_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0);
    send_msg(f, VHOST_USER_SET_FEATURES, &feat, 8, NULL, 0);
    set_mem_table(f);
    uint64_t ack = 1;
    assert_int_equal(recv_reply(f, VHOST_USER_SET_MEM_TABLE, &ack, 8), 8);
}

/* A driver that uses fewer queues than offered (Linux: one per vCPU): the front end
 * starts only those (QEMU then enables every ring; other front ends leave the rest
 * alone); the device runs on the started ones. */
static void test_fewer_rings_than_offered(void **state)
{
    struct fix *f = *state;
    negotiate_and_map(f);
    start_ring(f, 0);
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    assert_int_equal(f->fd.activated, 1); /* ring 1 untouched: not waited for */
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 1, 1);
    assert_int_equal(f->fd.activated, 1); /* enabled but never started: unused */
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 1);

    /* A ring that starts late restarts the device with it; ring 0 keeps its place. */
    start_ring(f, 1);
    assert_int_equal(f->fd.resets, 1);
    assert_int_equal(f->fd.activated, 2);
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 2);
    assert_true(vhost_user_server_connected(f->s));
}

/* A ring the front end is still setting up is waited for: the device starts once, with
 * both rings, rather than restarting when the second one arrives. */
static void test_half_set_up_ring_waited_for(void **state)
{
    struct fix *f = *state;
    negotiate_and_map(f);
    start_ring(f, 0);
    vring_state(f, VHOST_USER_SET_VRING_NUM, 1, QSIZE);
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    assert_int_equal(f->fd.activated, 0);
    start_ring(f, 1);
    vring_state(f, VHOST_USER_SET_VRING_ENABLE, 1, 1);
    assert_int_equal(f->fd.activated, 1);
    assert_int_equal(f->fd.resets, 0);
    add_buffer(f);
    kick(f, 0);
    assert_int_equal(used_idx(f), 1);
}

static void test_bad_size(void **state)
{
    struct fix *f = *state;
    uint32_t v = 0;
    send_msg(f, VHOST_USER_SET_FEATURES, &v, 4, NULL, 0);
    assert_closed_then_reconnect(f);
    send_msg(f, VHOST_USER_GET_FEATURES, &v, 4, NULL, 0);
    assert_closed_then_reconnect(f);
    /* A size above the maximum is refused before it is read. */
    send_msg_flags(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    assert_closed_then_reconnect(f);
    struct vhost_user_header h = { VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 1u << 20 };
    assert_int_equal(send(f->sock, &h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
    assert_closed_then_reconnect(f);
}

static void test_bad_header(void **state)
{
    struct fix *f = *state;
    send_msg_flags(f, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0); /* version 2 */
    assert_closed_then_reconnect(f);
    send_msg_flags(f, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | 0x100, NULL, 0, NULL, 0);
    assert_closed_then_reconnect(f);
    send_msg(f, 99, NULL, 0, NULL, 0); /* unknown request */
    assert_closed_then_reconnect(f);
    send_msg(f, VHOST_USER_SET_LOG_BASE, NULL, 0, NULL, 0); /* not offered */
    assert_closed_then_reconnect(f);
    /* Features never offered. */
    uint64_t all = ~0ull;
    send_msg(f, VHOST_USER_SET_FEATURES, &all, 8, NULL, 0);
    assert_closed_then_reconnect(f);
    send_msg(f, VHOST_USER_SET_PROTOCOL_FEATURES, &all, 8, NULL, 0);
    assert_closed_then_reconnect(f);
}

static void test_too_many_regions(void **state)
{
    struct fix *f = *state;
    struct {
        uint32_t n, pad;
        struct vhost_user_region r[9];
    } mem = { .n = 9 };
    int fds[9];
    for (int i = 0; i < 9; i++) {
        mem.r[i] = (struct vhost_user_region){ .guest_phys_addr = RAM_GPA * (i + 1),
                                               .memory_size = 4096,
                                               .userspace_addr = 0x10000000ull * (i + 1) };
        fds[i] = f->memfd;
    }
    send_msg(f, VHOST_USER_SET_MEM_TABLE, &mem, sizeof(mem), fds, 9);
    assert_closed_then_reconnect(f);
    mem.n = 0;
    send_msg(f, VHOST_USER_SET_MEM_TABLE, &mem, 8, NULL, 0);
    assert_closed_then_reconnect(f);
}

static void test_wrong_fd_count(void **state)
{
    struct fix *f = *state;
    struct vhost_user_memory mem = { .nregions = 2 };
    mem.regions[0] = (struct vhost_user_region){ RAM_GPA, 4096, uva(f, 0), 0 };
    mem.regions[1] = (struct vhost_user_region){ RAM_GPA + 4096, 4096, uva(f, 4096), 4096 };
    send_msg(f, VHOST_USER_SET_MEM_TABLE, &mem, 8 + 2 * 32, &f->memfd, 1);
    assert_closed_then_reconnect(f);
    /* An fd promised by the flag but missing, and an fd where none belongs. */
    vring_fd(f, VHOST_USER_SET_VRING_CALL, 0, -1);
    assert_closed_then_reconnect(f);
    vring_fd(f, VHOST_USER_SET_VRING_CALL, VHOST_USER_VRING_NOFD, f->call[0]);
    assert_closed_then_reconnect(f);
    uint64_t feat = 0;
    send_msg(f, VHOST_USER_SET_FEATURES, &feat, 8, &f->call[0], 1);
    assert_closed_then_reconnect(f);
    /* A kick "eventfd" that is a pipe. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, p[0]);
    assert_closed_then_reconnect(f);
    close(p[0]);
    close(p[1]);
    /* A region larger than its file. */
    mem.nregions = 1;
    mem.regions[0].memory_size = 2 * RAM_SIZE;
    send_msg(f, VHOST_USER_SET_MEM_TABLE, &mem, 8 + 32, &f->memfd, 1);
    assert_closed_then_reconnect(f);
}

static void test_ring_index_out_of_range(void **state)
{
    struct fix *f = *state;
    vring_state(f, VHOST_USER_SET_VRING_NUM, 2, QSIZE);
    assert_closed_then_reconnect(f);
    vring_state(f, VHOST_USER_GET_VRING_BASE, 7, 0);
    assert_closed_then_reconnect(f);
    vring_fd(f, VHOST_USER_SET_VRING_CALL, 5, f->call[0]);
    assert_closed_then_reconnect(f);
    vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 3); /* not a power of two */
    assert_closed_then_reconnect(f);
    vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 128); /* above the maximum */
    assert_closed_then_reconnect(f);
}

static void test_untranslatable_address(void **state)
{
    struct fix *f = *state;
    set_mem_table(f); /* no reply: REPLY_ACK is not negotiated */
    assert_true(vhost_user_server_connected(f->s));
    struct vhost_user_vring_addr a = { .index = 0,
                                       .desc = uva(f, DESC_OFF),
                                       .avail = uva(f, RAM_SIZE), /* one past the end */
                                       .used = uva(f, USED_OFF) };
    send_msg(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    assert_closed_then_reconnect(f);
    /* Before any memory table, nothing translates. */
    a.avail = uva(f, AVAIL_OFF);
    send_msg(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    assert_closed_then_reconnect(f);
    /* A ring that starts inside RAM but runs off its end fails at start. */
    start_device(f);
    vring_state(f, VHOST_USER_GET_VRING_BASE, 1, 0);
    struct vhost_user_vring_state st;
    recv_reply(f, VHOST_USER_GET_VRING_BASE, &st, sizeof(st));
    a = (struct vhost_user_vring_addr){ .index = 1,
                                        .desc = uva(f, RAM_SIZE - 16),
                                        .avail = uva(f, AVAIL_OFF),
                                        .used = uva(f, USED_OFF) };
    send_msg(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    assert_true(vhost_user_server_connected(f->s));
    vring_fd(f, VHOST_USER_SET_VRING_KICK, 1, f->kick[1]);
    assert_closed_then_reconnect(f);
}

static void *stopper(void *arg)
{
    usleep(50 * 1000);
    vhost_user_server_stop(arg);
    return NULL;
}

static void test_stop_and_stale_socket(void **state)
{
    struct fix *f = *state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stopper, f->s), 0);
    assert_int_equal(vhost_user_server_run(f->s), 0);
    pthread_join(t, NULL);

    /* A second server on a live socket is refused; a path that is no socket too. */
    vmk_error *err = NULL;
    assert_null(vhost_user_server_new(f->path, &f->fd.dev, f->el, &err));
    assert_non_null(err);
    vmk_error_free(err);
    err = NULL;
    char file[160];
    snprintf(file, sizeof(file), "%s/file", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_null(vhost_user_server_new(file, &f->fd.dev, f->el, &err));
    assert_non_null(strstr(vmk_error_message(err), "not a socket"));
    vmk_error_free(err);
    unlink(file);
    err = NULL;
    assert_null(vhost_user_server_new("", &f->fd.dev, f->el, &err));
    vmk_error_free(err);
    /* The fixture's server still sets the transport back. */
    f->fd.dev.transport.ctx = f->s;
}

static void test_broken_ring_signals_err(void **state)
{
    struct fix *f = *state;
    int errfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(errfd >= 0);
    vring_fd(f, VHOST_USER_SET_VRING_ERR, 0, errfd);
    start_device(f);
    /* avail->idx a whole queue ahead: the device reports a broken ring. */
    __atomic_store_n((uint16_t *)(f->ram + AVAIL_OFF + 2), QSIZE + 3, __ATOMIC_RELEASE);
    kick(f, 0);
    uint64_t v = 0;
    assert_int_equal(read(errfd, &v, 8), 8);
    assert_true(v >= 1);
    assert_int_equal(used_idx(f), 0);
    /* Reported once: a device that reads its own kicks meets the broken ring at each one. */
    struct virtio_transport *t = &f->fd.dev.transport;
    t->needs_reset(t->ctx, "again");
    t->needs_reset(t->ctx, "and again");
    assert_int_equal(read(errfd, &v, 8), -1);
    assert_int_equal(errno, EAGAIN);
    /* The connection stays; stopping the ring resets the device. */
    assert_true(vhost_user_server_connected(f->s));
    stop_ring(f, 0);
    assert_int_equal(f->fd.resets, 1);
    close(errfd);
}

static uint32_t expected(uint32_t req)
{
    switch (req) {
    case 2:
    case 12:
    case 13:
    case 14:
    case 16: return 8;
    case 8:
    case 10:
    case 11:
    case 18: return 8;
    case 9: return sizeof(struct vhost_user_vring_addr);
    case 5: return 8 + 2 * sizeof(struct vhost_user_region);
    case 24:
    case 25: return VHOST_USER_CONFIG_HDR_SIZE + 4;
    default: return 0;
    }
}

/* Garbage from a front end: the server may close the connection, never crash. */
static void test_random_messages(void **state)
{
    struct fix *f = *state;
    uint8_t payload[320];
    unsigned reconnects = 0;
    srand(12345);
    for (int i = 0; i < 400; i++) {
        /* Mostly plausible shapes (a known request, its size, its fds), random contents. */
        static const uint32_t known[] = { 1,  2,  3,  4,  5,  8,  9,  10, 11, 12,
                                          13, 14, 15, 16, 17, 18, 24, 25, 34 };
        uint32_t req = known[rand() % (int)(sizeof(known) / sizeof(known[0]))];
        uint32_t size = rand() % 3 ? expected(req) : (uint32_t)(rand() % 320);
        for (size_t k = 0; k < sizeof(payload); k++)
            payload[k] = (uint8_t)(rand() % 4 ? rand() % 3 : rand());
        int fds[2] = { f->call[0], f->memfd };
        unsigned nfds = req >= 12 && req <= 14 ? 1 : req == 5 ? 2 : 0;
        if (req == 5 || req == 24 || req == 25)
            payload[0] = (uint8_t)(rand() % 3); /* region count / config offset */
        if (rand() % 8 == 0)
            nfds = (unsigned)(rand() % 3);
        if (req == 5 && nfds == 2) /* a mapping the server can take: the fixture's RAM */
            fds[0] = f->memfd;
        struct vhost_user_header h = { req, VHOST_USER_VERSION, size };
        struct iovec iov[2] = { { &h, sizeof(h) }, { payload, size } };
        ssize_t n = send_with_fds(f->sock, iov, 2, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
        pump(f);
        /* Drop replies; reconnect when the server hung up. */
        char sink[512];
        while (recv(f->sock, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        if (n < 0 || !vhost_user_server_connected(f->s)) {
            close(f->sock);
            connect_fe(f);
            reconnects++;
        }
    }
    /* Most garbage is refused, some is taken. */
    assert_true(reconnects > 100 && reconnects < 400);
    close(f->sock);
    connect_fe(f);
    assert_true(get_u64(f, VHOST_USER_GET_FEATURES) & VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_takes_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fewer_rings_than_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_set_up_ring_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_regions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_fd_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_index_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untranslatable_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_stale_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_ring_signals_err, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_messages, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
