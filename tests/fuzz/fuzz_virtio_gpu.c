/* libFuzzer target for virtio-gpu: a hostile driver (virtio_driver.h) against a device made
 * fresh for each input. header[0] bits 0-1: 1 to 4 scanouts; bit 2: a budget of 16 KiB
 * instead of 1 MiB (small, so that no input spends its time filling huge images). Backing
 * entries point anywhere in the 64 KiB of guest RAM and beyond. FZ_OP_DEVICE is the host's
 * side: u8 what (0: reconfigure u8 scanout, u16 w, u16 h; 1: read a scanout u8, into a
 * buffer of u32 bytes). The sink checks what it hears: scanouts that exist, flushed
 * rectangles inside the mode it was last told, and read_scanout agrees with those modes (or,
 * while a scanout is dark, with the size it showed last). */
#include "virtio/gpu.h"
#include "virtio_driver.h"

#include <errno.h>
#include <linux/virtio_gpu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define READ_BUF (1u << 20)

struct sink_state {
    unsigned num_scanouts;
    uint32_t w[VIRTIO_GPU_MAX_SCANOUTS_], h[VIRTIO_GPU_MAX_SCANOUTS_];
    /* The size each showed when it last went dark: what it reads back while dark. */
    uint32_t last_w[VIRTIO_GPU_MAX_SCANOUTS_], last_h[VIRTIO_GPU_MAX_SCANOUTS_];
};

static void on_mode(void *ctx, unsigned s, uint32_t w, uint32_t h)
{
    struct sink_state *st = ctx;
    FZ_CHECK(s < st->num_scanouts);
    FZ_CHECK((w == 0) == (h == 0));
    FZ_CHECK(w <= VIRTIO_GPU_MAX_DIMENSION && h <= VIRTIO_GPU_MAX_DIMENSION);
    FZ_CHECK(w != st->w[s] || h != st->h[s]); /* news only */
    if (w == 0) {
        st->last_w[s] = st->w[s];
        st->last_h[s] = st->h[s];
    }
    st->w[s] = w;
    st->h[s] = h;
}

static void on_flush(void *ctx, unsigned s, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    struct sink_state *st = ctx;
    FZ_CHECK(s < st->num_scanouts);
    FZ_CHECK(w > 0 && h > 0);
    FZ_CHECK(x < st->w[s] && w <= st->w[s] - x);
    FZ_CHECK(y < st->h[s] && h <= st->h[s] - y);
}

static void on_cursor(void *ctx, unsigned s, int32_t x, int32_t y, bool visible)
{
    struct sink_state *st = ctx;
    FZ_CHECK(s < st->num_scanouts);
}

static void gpu_action(struct fz_driver *t, struct fz_in *in)
{
    static uint8_t *buf;
    struct sink_state *st = t->ctx;
    if (!buf) {
        buf = malloc(READ_BUF);
        FZ_CHECK(buf != NULL);
    }
    uint8_t what = fz_u8(in);
    unsigned s = fz_u8(in);
    if (what & 1) {
        size_t len = fz_u32(in) % (READ_BUF + 1);
        uint32_t w = 7, h = 7;
        int rc = virtio_gpu_read_scanout(t->dev, s, buf, len, &w, &h);
        if (s >= st->num_scanouts) {
            FZ_CHECK(rc == -EINVAL);
            return;
        }
        FZ_CHECK(rc == 0 || rc == -ENODATA || rc == -ENOSPC);
        uint32_t want_w = st->w[s] ? st->w[s] : st->last_w[s];
        uint32_t want_h = st->w[s] ? st->h[s] : st->last_h[s];
        FZ_CHECK(w == want_w && h == want_h);
        FZ_CHECK((rc == -ENODATA) == (w == 0));
        FZ_CHECK((rc == -ENOSPC) == (w && (uint64_t)w * h * 4 > len));
        for (uint64_t i = 0; rc == 0 && i < (uint64_t)w * h; i++)
            FZ_CHECK(buf[i * 4 + 3] == 255);
        return;
    }
    uint32_t w = fz_u16(in), h = fz_u16(in);
    int rc = virtio_gpu_reconfigure(t->dev, s, w, h);
    bool ok = s < st->num_scanouts && w && h && w <= VIRTIO_GPU_MAX_DIMENSION &&
              h <= VIRTIO_GPU_MAX_DIMENSION;
    FZ_CHECK(rc == (ok ? 0 : -EINVAL));
}

static const struct fz_target_ops gpu_ops = {
    .settle = NULL,
    .action = gpu_action,
};

/* ---- seeds ---- */

static struct virtio_gpu_ctrl_hdr hdr(uint32_t type, bool fence)
{
    return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type),
                                         .flags = fence ? htole32(VIRTIO_GPU_FLAG_FENCE) : 0,
                                         .fence_id = htole64(fence ? 99 : 0) };
}

static struct virtio_gpu_rect rect(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    return (struct virtio_gpu_rect){ htole32(x), htole32(y), htole32(w), htole32(h) };
}

static void seed_cmd(struct fz_seed *s, unsigned q, const void *req, size_t len, uint16_t resp)
{
    struct fz_seg segs[2] = {
        { .len = (uint16_t)len, .data = req, .data_len = (uint8_t)len },
        { .writable = true, .len = resp },
    };
    fz_seed_chain(s, q, FZ_CHAIN_KICK, segs, resp ? 2 : 1);
}

static void seed_device(struct fz_seed *s, uint8_t what, uint8_t scanout)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, what);
    fz_seed_u8(s, scanout);
    if (what & 1) {
        fz_seed_u32(s, 1u << 20);
    } else {
        fz_seed_u16(s, 800);
        fz_seed_u16(s, 600);
    }
}

/* The driver's usual start: display info, EDID, a 16 x 16 image drawn, shown and flushed,
 * a cursor, then the host reads the scanout and resizes it, and the image goes away. */
static void seed_session(struct fz_seed *s, uint32_t format, bool fence)
{
    const uint16_t resp = sizeof(struct virtio_gpu_resp_edid);
    struct virtio_gpu_ctrl_hdr info = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO, fence);
    seed_cmd(s, 0, &info, sizeof(info), resp);
    struct virtio_gpu_cmd_get_edid edid = { .hdr = hdr(VIRTIO_GPU_CMD_GET_EDID, fence) };
    seed_cmd(s, 0, &edid, sizeof(edid), resp);
    struct virtio_gpu_resource_create_2d create = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, fence),
        .resource_id = htole32(1),
        .format = htole32(format),
        .width = htole32(16),
        .height = htole32(16),
    };
    seed_cmd(s, 0, &create, sizeof(create), 24);
    struct {
        struct virtio_gpu_resource_attach_backing a;
        struct virtio_gpu_mem_entry e[2];
    } attach = {
        .a = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, fence),
               .resource_id = htole32(1),
               .nr_entries = htole32(2) },
        .e = { { .addr = htole64(0xa000), .length = htole32(600) },
               { .addr = htole64(0xc010), .length = htole32(424) } },
    };
    seed_cmd(s, 0, &attach, sizeof(attach), 24);
    struct virtio_gpu_transfer_to_host_2d xfer = {
        .hdr = hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, fence),
        .r = rect(0, 0, 16, 16),
        .resource_id = htole32(1),
    };
    seed_cmd(s, 0, &xfer, sizeof(xfer), 24);
    xfer.r = rect(2, 3, 5, 4);
    xfer.offset = htole64((3 * 16 + 2) * 4);
    seed_cmd(s, 0, &xfer, sizeof(xfer), 24);
    struct virtio_gpu_set_scanout set = { .hdr = hdr(VIRTIO_GPU_CMD_SET_SCANOUT, fence),
                                          .r = rect(0, 0, 16, 16),
                                          .resource_id = htole32(1) };
    seed_cmd(s, 0, &set, sizeof(set), 24);
    struct virtio_gpu_resource_flush flush = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH, fence),
                                               .r = rect(4, 4, 8, 8),
                                               .resource_id = htole32(1) };
    seed_cmd(s, 0, &flush, sizeof(flush), 24);
    struct virtio_gpu_update_cursor cur = { .hdr = hdr(VIRTIO_GPU_CMD_UPDATE_CURSOR, false),
                                            .pos = { .x = htole32(5), .y = htole32(6) },
                                            .resource_id = htole32(1) };
    seed_cmd(s, 1, &cur, sizeof(cur), 0);
    cur.hdr = hdr(VIRTIO_GPU_CMD_MOVE_CURSOR, false);
    seed_cmd(s, 1, &cur, sizeof(cur), 0);
    seed_device(s, 1, 0);
    seed_device(s, 0, 0);
    struct virtio_gpu_resource_detach_backing detach = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, fence), .resource_id = htole32(1)
    };
    seed_cmd(s, 0, &detach, sizeof(detach), 24);
    struct virtio_gpu_resource_unref unref = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, fence),
                                               .resource_id = htole32(1) };
    seed_cmd(s, 0, &unref, sizeof(unref), 24);
    seed_device(s, 1, 0);
}

void fz_write_seeds(const char *dir)
{
    static const uint32_t formats[] = { VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
                                        VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
                                        VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM,
                                        VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM };
    struct fz_seed s;
    for (unsigned v = 0; v < 4; v++) {
        char name[32];
        fz_seed_begin(&s, (uint8_t)v, FZ_H_BRING_UP | FZ_H_INDIRECT | (v & 1 ? FZ_H_EVENT_IDX : 0),
                      (uint32_t)VIRTIO_BIT(VIRTIO_GPU_F_EDID));
        seed_session(&s, formats[v], v & 2);
        snprintf(name, sizeof(name), "session-%u", v);
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
        FZ_CHECK(!virtio_gpu_new(NULL, NULL));
    }
    uint8_t sel = size ? data[0] : 0;
    struct sink_state st = { .num_scanouts = 1u + (sel & 3) };
    struct virtio_gpu_params p = {
        .num_scanouts = st.num_scanouts,
        .memory_budget = (sel & 4) ? 16u << 10 : 1u << 20,
        .sink = { on_mode, on_flush, on_cursor, &st },
    };
    for (unsigned i = 0; i < p.num_scanouts; i++) {
        p.width[i] = 640 + 64 * i;
        p.height[i] = 480;
    }
    struct virtio_device *dev = virtio_gpu_new(&p, NULL);
    FZ_CHECK(dev != NULL);
    fz_run(drv, dev, &gpu_ops, &st, data, size);
    /* fz_run ended with a reset: every scanout is dark. */
    for (unsigned i = 0; i < p.num_scanouts; i++)
        FZ_CHECK(st.w[i] == 0 && st.h[i] == 0);
    dev->ops->destroy(dev);
    return 0;
}
