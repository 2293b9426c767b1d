/* libFuzzer target for virtio-rng: a hostile driver (virtio_driver.h) against a device
 * made fresh for each input. header[0] & 3 picks the token bucket: 0 unlimited (rate
 * and burst at the maximum), 1 one byte a second with a small burst (the bucket runs
 * dry and the retry timer is armed), 2 the fastest rate with a small burst (the timer
 * fires almost at once), 3 the default rate halved by bits 5-7 with a small burst
 * (bits 2-7 size every small burst). The fuzzer never sleeps: its
 * only wait is FZ_OP_DEVICE, one non-blocking turn of the event loop that runs the
 * device's timer. */
#include "virtio_driver.h"
#include "virtio/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rng_state {
    struct fz_driver drv;
    struct event_loop *el;
};

static void rng_action(struct fz_driver *t, struct fz_in *in)
{
    struct rng_state *s = t->ctx;
    (void)fz_u8(in);
    FZ_CHECK(event_loop_run_once(s->el, 0) >= 0);
}

static const struct fz_target_ops rng_ops = {
    .settle = NULL,
    .action = rng_action,
};

static struct virtio_device *make_device(struct rng_state *s, uint8_t sel)
{
    uint64_t small = 1 + (uint64_t)(sel >> 2) * 97; /* 1 .. 6112 bytes */
    switch (sel & 3) {
    case 0: return virtio_rng_new(s->el, VIRTIO_RNG_MAX_RATE, VIRTIO_RNG_MAX_RATE);
    case 1: return virtio_rng_new(s->el, 1, small);
    case 2: return virtio_rng_new(s->el, VIRTIO_RNG_MAX_RATE, small);
    default: return virtio_rng_new(s->el, VIRTIO_RNG_DEFAULT_RATE >> (sel >> 5), small);
    }
}

/* ---- seeds ---- */

static void seed_request(struct fz_seed *s, unsigned nbuf, uint16_t len, uint8_t ctl)
{
    struct fz_seg segs[FZ_MAX_CHAIN_SEGS];
    for (unsigned i = 0; i < nbuf; i++)
        segs[i] = (struct fz_seg){ .writable = true, .len = len };
    fz_seed_chain(s, 0, ctl, segs, nbuf);
}

void fz_write_seeds(const char *dir)
{
    static const uint8_t variants[] = { 0, 1 | 4 << 2, 2 | 40 << 2, 3 | 1 << 2 | 1 << 5 };
    struct fz_seed s;
    for (unsigned v = 0; v < sizeof(variants); v++) {
        char name[32];
        fz_seed_begin(&s, variants[v], FZ_H_BRING_UP | FZ_H_INDIRECT | (v & 1 ? FZ_H_EVENT_IDX : 0),
                      0);
        seed_request(&s, 1, 64, 0);
        seed_request(&s, 3, 700, FZ_CHAIN_INDIRECT);
        seed_request(&s, 2, 16, 0);
        fz_seed_notify(&s, 0);
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 0);
        seed_request(&s, 1, 4096, FZ_CHAIN_KICK);
        snprintf(name, sizeof(name), "requests-%u", v);
        fz_seed_save(dir, name, &s);
    }
    /* Buffers placed before DRIVER_OK: activation serves them. */
    fz_seed_begin(&s, 0, 0, 0);
    fz_seed_u8(&s, FZ_OP_FEATURES);
    fz_seed_u8(&s, 1);
    fz_seed_u64(&s, 0);
    fz_seed_u8(&s, FZ_OP_STATUS);
    fz_seed_u8(&s, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    fz_seed_u8(&s, FZ_OP_QUEUE);
    fz_seed_u8(&s, 0);
    fz_seed_u16(&s, 4);
    fz_seed_u8(&s, 0);
    seed_request(&s, 1, 32, 0);
    fz_seed_u8(&s, FZ_OP_STATUS);
    fz_seed_u8(&s, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                       VIRTIO_STATUS_DRIVER_OK);
    seed_request(&s, 1, 32, FZ_CHAIN_KICK);
    fz_seed_save(dir, "before-driver-ok", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: guest RAM and the event loop live as long as the
     * process; the device is made fresh for each input. */
    static struct rng_state *s;
    if (!s) {
        s = calloc(1, sizeof(*s));
        FZ_CHECK(s && fz_driver_init(&s->drv) == 0 && event_loop_new(&s->el) == 0);
        /* Out-of-range token buckets are refused. */
        FZ_CHECK(!virtio_rng_new(s->el, 0, 1) && !virtio_rng_new(s->el, 1, 0) &&
                 !virtio_rng_new(s->el, VIRTIO_RNG_MAX_RATE + 1, 1));
    }
    struct virtio_device *dev = make_device(s, size ? data[0] : 0);
    FZ_CHECK(dev != NULL);
    fz_run(&s->drv, dev, &rng_ops, s, data, size);
    dev->ops->destroy(dev);
    return 0;
}
