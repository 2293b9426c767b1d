/* libFuzzer target for virtio-vsock: a hostile driver (virtio_driver.h) against a device made
 * fresh for each input, its host side a set of socketpairs the fuzzer plays the far end of.
 * FZ_OP_DEVICE: u8 what, u8 which peer, then: 0 a turn of the event loop; 1 bytes written
 * by the peer (u8 n); 2 the peer closes; 3 the peer shuts its writing side; 4 the peer reads
 * what is there; 5 the host connects to guest port u32. connect() is refused when input
 * byte header[0] bit 0 says so. */
#include "virtio/vsock.h"
#include "virtio_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PEERS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct vsock_state {
    struct event_loop *el;
    bool refuse;
    int peer[MAX_PEERS]; /* our ends, -1 when closed */
    unsigned npeer;
};

static int pair(struct vsock_state *s)
{
    int sv[2];
    if (s->npeer == MAX_PEERS || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    s->peer[s->npeer++] = sv[1];
    return sv[0];
}

static int host_connect(void *ctx, uint32_t port)
{
    struct vsock_state *s = ctx;
    int fd = s->refuse ? -1 : pair(s);
    return fd < 0 ? -111 : fd;
}

static void host_connected(struct vsock_pending *p, int fd, uint32_t host_port, bool ok)
{
    FZ_CHECK(fd >= 0);
}

static const struct vsock_host_ops host_ops = { .connect = host_connect };
static struct vsock_pending pending = { .done = host_connected };

static void vsock_action(struct fz_driver *t, struct fz_in *in)
{
    struct vsock_state *s = t->ctx;
    uint8_t what = fz_u8(in) % 6, which = fz_u8(in);
    int *p = s->npeer ? &s->peer[which % s->npeer] : NULL;
    uint8_t buf[256];
    switch (what) {
    case 0: FZ_CHECK(event_loop_run_once(s->el, 0) >= 0); break;
    case 1: {
        uint8_t n = fz_u8(in);
        fz_bytes(in, buf, n);
        if (p && *p >= 0)
            (void)!send(*p, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    }
    case 2:
        if (p && *p >= 0) {
            close(*p);
            *p = -1;
        }
        break;
    case 3:
        if (p && *p >= 0)
            shutdown(*p, SHUT_WR);
        break;
    case 4:
        if (p && *p >= 0)
            (void)!recv(*p, buf, sizeof(buf), MSG_DONTWAIT);
        break;
    default: {
        uint32_t port = fz_u32(in);
        int fd = pair(s);
        if (fd >= 0)
            (void)virtio_vsock_connect_guest(t->dev, fd, port, &pending);
        break;
    }
    }
}

static const struct fz_target_ops vsock_ops = {
    .settle = NULL,
    .action = vsock_action,
};

/* ---- seeds ---- */

static void seed_packet(struct fz_seed *s, unsigned q, uint16_t op, uint32_t gport, uint32_t hport,
                        const char *payload)
{
    uint8_t h[VIRTIO_VSOCK_HDR_LEN] = { 0 };
    uint32_t len = payload ? (uint32_t)strlen(payload) : 0;
    h[0] = 7;                  /* src_cid */
    h[8] = 2;                  /* dst_cid */
    memcpy(h + 16, &gport, 4); /* little-endian hosts only, as the fuzzers run */
    memcpy(h + 20, &hport, 4);
    memcpy(h + 24, &len, 4);
    h[28] = 1; /* stream */
    h[30] = (uint8_t)op;
    h[38] = 1; /* buf_alloc 64 KiB */
    struct fz_seg segs[2] = { { .len = sizeof(h), .data = h, .data_len = sizeof(h) },
                              { .len = (uint16_t)len, .data = payload, .data_len = (uint8_t)len } };
    fz_seed_chain(s, q, FZ_CHAIN_KICK, segs, len ? 2 : 1);
}

static void seed_rx(struct fz_seed *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct fz_seg segs[2] = { { .writable = true, .len = VIRTIO_VSOCK_HDR_LEN },
                                  { .writable = true, .len = 512 } };
        fz_seed_chain(s, 0, i + 1 == n ? FZ_CHAIN_KICK : 0, segs, 2);
    }
}

static void seed_device(struct fz_seed *s, uint8_t what, uint8_t which)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, what);
    fz_seed_u8(s, which);
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s;
    fz_seed_begin(&s, 0, FZ_H_BRING_UP | FZ_H_EVENT_IDX, 0);
    seed_rx(&s, 4);
    seed_packet(&s, 1, 1, 5000, 1234, NULL);    /* REQUEST */
    seed_packet(&s, 1, 5, 5000, 1234, "hello"); /* RW */
    seed_device(&s, 1, 0);
    fz_seed_u8(&s, 5);
    fz_seed_bytes(&s, "world", 5);
    seed_device(&s, 0, 0);
    seed_packet(&s, 1, 6, 5000, 1234, NULL); /* CREDIT_UPDATE */
    seed_device(&s, 3, 0);
    seed_device(&s, 0, 0);
    seed_packet(&s, 1, 4, 5000, 1234, NULL); /* SHUTDOWN (flags 0) */
    fz_seed_save(dir, "guest-connects", &s);

    fz_seed_begin(&s, 0, FZ_H_BRING_UP, 0);
    seed_rx(&s, 2);
    seed_device(&s, 5, 0);
    fz_seed_u32(&s, 22);
    seed_packet(&s, 1, 2, 22, 1u << 30, NULL); /* RESPONSE */
    seed_device(&s, 1, 0);
    fz_seed_u8(&s, 3);
    fz_seed_bytes(&s, "abc", 3);
    seed_device(&s, 0, 0);
    seed_device(&s, 2, 0);
    seed_device(&s, 0, 0);
    fz_seed_save(dir, "host-connects", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz_driver *drv;
    static struct vsock_state *s;
    if (!drv) {
        drv = calloc(1, sizeof(*drv));
        s = calloc(1, sizeof(*s));
        FZ_CHECK(drv && s && fz_driver_init(drv) == 0 && event_loop_new(&s->el) == 0);
    }
    s->refuse = size && (data[0] & 1);
    s->npeer = 0;
    struct virtio_vsock_params p = {
        .guest_cid = 7, .el = s->el, .host = &host_ops, .host_ctx = s
    };
    struct virtio_device *dev = virtio_vsock_new(&p);
    FZ_CHECK(dev != NULL);
    fz_run(drv, dev, &vsock_ops, s, data, size);
    dev->ops->destroy(dev);
    for (unsigned i = 0; i < s->npeer; i++)
        if (s->peer[i] >= 0)
            close(s->peer[i]);
    return 0;
}
