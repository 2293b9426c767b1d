/* libFuzzer target for virtio-balloon: a hostile driver (virtio_driver.h) against a device
 * made fresh for each input. header[0] bit 0 offers deflate-on-oom, bit 1 free page
 * reporting (a third queue). FZ_OP_DEVICE is the host's side: u32 target pages (clamped by
 * the device), then the state read back. PFNs and reported ranges point anywhere in the
 * 64 KiB of guest RAM and far beyond it; the fuzzer's RAM is heap memory, so releases fail
 * and are counted (the unit tests cover released pages). */
#include "virtio/balloon.h"
#include "virtio_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void balloon_action(struct fz_driver *t, struct fz_in *in)
{
    virtio_balloon_set_target_pages(t->dev, fz_u32(in));
    FZ_CHECK(virtio_balloon_target_pages(t->dev) <= FZ_RAM_SIZE / 4096);
    (void)virtio_balloon_actual_pages(t->dev);
    struct virtio_balloon_stats st;
    virtio_balloon_get_stats(t->dev, &st);
}

static const struct fz_target_ops balloon_ops = {
    .settle = NULL,
    .action = balloon_action,
};

/* ---- seeds ---- */

static void seed_pfns(struct fz_seed *s, unsigned q, const uint32_t *pfns, uint8_t n)
{
    struct fz_seg seg = { .len = (uint16_t)(n * 4), .data = pfns, .data_len = (uint8_t)(n * 4) };
    fz_seed_chain(s, q, FZ_CHAIN_KICK, &seg, 1);
}

void fz_write_seeds(const char *dir)
{
    static const uint32_t pfns[] = { 8, 9, 10, 15, 16, 0xffffffff };
    struct fz_seed s;
    for (unsigned v = 0; v < 4; v++) {
        char name[32];
        fz_seed_begin(&s, (uint8_t)v, FZ_H_BRING_UP | FZ_H_INDIRECT | (v & 1 ? FZ_H_EVENT_IDX : 0),
                      0);
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u32(&s, 12);
        seed_pfns(&s, 0, pfns, 6);
        fz_seed_u8(&s, FZ_OP_CFG_WRITE);
        fz_seed_u8(&s, 4);
        fz_seed_u8(&s, 2);
        fz_seed_u64(&s, 6);
        seed_pfns(&s, 1, pfns, 3);
        if (v & 2) {
            struct fz_seg range = { .writable = true, .len = 4096, .at = true, .gpa = 0x8000 };
            fz_seed_chain(&s, 2, FZ_CHAIN_KICK, &range, 1);
        }
        fz_seed_u8(&s, FZ_OP_CFG_READ);
        fz_seed_u8(&s, 0);
        fz_seed_u8(&s, 2);
        snprintf(name, sizeof(name), "inflate-%u", v);
        fz_seed_save(dir, name, &s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: guest RAM lives as long as the process; the device is
     * made fresh for each input. */
    static struct fz_driver *drv;
    if (!drv) {
        drv = calloc(1, sizeof(*drv));
        FZ_CHECK(drv && fz_driver_init(drv) == 0);
        FZ_CHECK(!virtio_balloon_new(NULL));
    }
    uint8_t sel = size ? data[0] : 0;
    struct virtio_balloon_params p = { .memory_size = FZ_RAM_SIZE,
                                       .deflate_on_oom = sel & 1,
                                       .page_reporting = sel & 2 };
    struct virtio_device *dev = virtio_balloon_new(&p);
    FZ_CHECK(dev != NULL);
    fz_run(drv, dev, &balloon_ops, NULL, data, size);
    dev->ops->destroy(dev);
    return 0;
}
