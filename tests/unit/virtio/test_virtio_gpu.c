#include "virtio/gpu.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <linux/virtio_gpu.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define Q_CONTROL 0
#define Q_CURSOR  1
#define REQ_BYTES (300u << 10) /* room for an ATTACH_BACKING of VIRTIO_GPU_MAX_BACKING + 1 */
#define RESP_SIZE 2048u
#define OK        VIRTIO_GPU_RESP_OK_NODATA
#define FMT_BGRX  VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM
#define FMT_RGBA  VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM
#define FMT_XRGB  VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM
#define FMT_XBGR  VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM
#define PIX_BASE  0x800000ull /* guest pages the tests use as backing */

/* What the sink heard, in order. */
struct call {
    char kind; /* 'm'ode, 'f'lush, 'c'ursor */
    unsigned scanout;
    uint32_t a, b, c, d; /* mode: w, h; flush: x, y, w, h; cursor: x, y, visible */
};

struct fix {
    struct test_driver t;
    struct virtio_device *dev;
    uint64_t req, resp; /* guest buffers reused by each command */
    uint8_t out[RESP_SIZE];
    uint32_t written;
    struct call calls[64];
    unsigned ncalls;
    bool read_in_flush; /* the flush callback reads the scanout (no lock held) */
    int read_rc;
};

static void rec(struct fix *f, struct call c)
{
    if (f->ncalls < 64)
        f->calls[f->ncalls++] = c;
}

static void on_mode(void *ctx, unsigned s, uint32_t w, uint32_t h)
{
    rec(ctx, (struct call){ 'm', s, w, h, 0, 0 });
}

static void on_flush(void *ctx, unsigned s, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    struct fix *f = ctx;
    rec(f, (struct call){ 'f', s, x, y, w, h });
    if (f->read_in_flush) {
        static uint8_t buf[64 * 64 * 4];
        uint32_t rw, rh;
        f->read_rc = virtio_gpu_read_scanout(f->dev, s, buf, sizeof(buf), &rw, &rh);
    }
}

static void on_cursor(void *ctx, unsigned s, int32_t x, int32_t y, bool visible)
{
    rec(ctx, (struct call){ 'c', s, (uint32_t)x, (uint32_t)y, visible, 0 });
}

static struct virtio_gpu_params params(struct fix *f, unsigned scanouts)
{
    struct virtio_gpu_params p = { .num_scanouts = scanouts };
    for (unsigned s = 0; s < scanouts; s++) {
        p.width[s] = 640 + 100 * s;
        p.height[s] = 480 + 100 * s;
    }
    p.sink = (struct gpu_display_sink){ on_mode, on_flush, on_cursor, f };
    return p;
}

static struct fix *setup_with(unsigned scanouts, uint64_t budget, uint64_t accept)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct virtio_gpu_params p = params(f, scanouts);
    p.memory_budget = budget;
    vmk_error *err = NULL;
    f->dev = virtio_gpu_new(&p, &err);
    assert_non_null(f->dev);
    assert_null(err);
    assert_int_equal(td_init(&f->t, f->dev, accept), 0);
    f->req = td_alloc(&f->t, REQ_BYTES);
    f->resp = td_alloc(&f->t, RESP_SIZE);
    return f;
}

static struct fix *setup(unsigned scanouts)
{
    return setup_with(scanouts, 0, ~0ull);
}

static void teardown(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    free(f);
}

/* Sends a request with a response buffer of resp_len on the control queue; returns the
 * response type (0 when the device wrote less than a header). */
static uint32_t send(struct fix *f, const void *req, uint32_t len, uint32_t resp_len)
{
    memcpy(td_ptr(&f->t, f->req, len), req, len);
    memset(td_ptr(&f->t, f->resp, RESP_SIZE), 0xee, RESP_SIZE);
    struct td_buf b[2] = { { .gpa = f->req, .len = len },
                           { .gpa = f->resp, .len = resp_len, .writable = true } };
    uint16_t head = td_add(&f->t, Q_CONTROL, b, resp_len ? 2 : 1);
    f->dev->ops->queue_notify(f->dev, Q_CONTROL);
    uint32_t id, written;
    assert_true(td_used(&f->t, Q_CONTROL, &id, &written));
    assert_int_equal(id, head);
    assert_true(written <= resp_len);
    f->written = written;
    memset(f->out, 0, sizeof(f->out));
    memcpy(f->out, td_ptr(&f->t, f->resp, RESP_SIZE), written);
    if (written < sizeof(struct virtio_gpu_ctrl_hdr))
        return 0;
    const struct virtio_gpu_ctrl_hdr *h = (const void *)f->out;
    return le32toh(h->type);
}

static uint32_t ctrl(struct fix *f, const void *req, uint32_t len)
{
    return send(f, req, len, RESP_SIZE);
}

static struct virtio_gpu_ctrl_hdr hdr(uint32_t type)
{
    return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type) };
}

static struct virtio_gpu_rect rect(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    return (struct virtio_gpu_rect){ htole32(x), htole32(y), htole32(w), htole32(h) };
}

static uint32_t create(struct fix *f, uint32_t id, uint32_t fmt, uint32_t w, uint32_t h)
{
    struct virtio_gpu_resource_create_2d c = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
                                               .resource_id = htole32(id),
                                               .format = htole32(fmt),
                                               .width = htole32(w),
                                               .height = htole32(h) };
    return ctrl(f, &c, sizeof(c));
}

static uint32_t unref(struct fix *f, uint32_t id)
{
    struct virtio_gpu_resource_unref c = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF),
                                           .resource_id = htole32(id) };
    return ctrl(f, &c, sizeof(c));
}

/* ATTACH_BACKING claiming nr entries and carrying n of them. */
static uint32_t attach_n(struct fix *f, uint32_t id, uint32_t nr, const uint64_t *addr,
                         const uint32_t *len, unsigned n)
{
    static uint8_t buf[REQ_BYTES];
    struct virtio_gpu_resource_attach_backing c = { .hdr =
                                                        hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
                                                    .resource_id = htole32(id),
                                                    .nr_entries = htole32(nr) };
    memcpy(buf, &c, sizeof(c));
    for (unsigned i = 0; i < n; i++) {
        struct virtio_gpu_mem_entry e = { .addr = htole64(addr ? addr[i] : PIX_BASE),
                                          .length = htole32(len ? len[i] : 0) };
        memcpy(buf + sizeof(c) + i * sizeof(e), &e, sizeof(e));
    }
    return ctrl(f, buf, (uint32_t)(sizeof(c) + n * sizeof(struct virtio_gpu_mem_entry)));
}

static uint32_t attach(struct fix *f, uint32_t id, const uint64_t *addr, const uint32_t *len,
                       unsigned n)
{
    return attach_n(f, id, n, addr, len, n);
}

static uint32_t detach(struct fix *f, uint32_t id)
{
    struct virtio_gpu_resource_detach_backing c = { .hdr =
                                                        hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING),
                                                    .resource_id = htole32(id) };
    return ctrl(f, &c, sizeof(c));
}

static uint32_t transfer(struct fix *f, uint32_t id, struct virtio_gpu_rect r, uint64_t offset)
{
    struct virtio_gpu_transfer_to_host_2d c = { .hdr = hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D),
                                                .r = r,
                                                .offset = htole64(offset),
                                                .resource_id = htole32(id) };
    return ctrl(f, &c, sizeof(c));
}

static uint32_t set_scanout(struct fix *f, uint32_t s, uint32_t id, struct virtio_gpu_rect r)
{
    struct virtio_gpu_set_scanout c = { .hdr = hdr(VIRTIO_GPU_CMD_SET_SCANOUT),
                                        .r = r,
                                        .scanout_id = htole32(s),
                                        .resource_id = htole32(id) };
    return ctrl(f, &c, sizeof(c));
}

static uint32_t flush(struct fix *f, uint32_t id, struct virtio_gpu_rect r)
{
    struct virtio_gpu_resource_flush c = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
                                           .r = r,
                                           .resource_id = htole32(id) };
    return ctrl(f, &c, sizeof(c));
}

/* A cursor command of len bytes; the chain must come back with nothing written. */
static void cursor(struct fix *f, uint32_t type, uint32_t s, int32_t x, int32_t y, uint32_t id,
                   uint32_t len)
{
    struct virtio_gpu_update_cursor c = {
        .hdr = hdr(type),
        .pos = { .scanout_id = htole32(s), .x = htole32((uint32_t)x), .y = htole32((uint32_t)y) },
        .resource_id = htole32(id)
    };
    memcpy(td_ptr(&f->t, f->req, sizeof(c)), &c, sizeof(c));
    struct td_buf b = { .gpa = f->req, .len = len };
    uint16_t head = td_add(&f->t, Q_CURSOR, &b, 1);
    f->dev->ops->queue_notify(f->dev, Q_CURSOR);
    uint32_t id_used, written;
    assert_true(td_used(&f->t, Q_CURSOR, &id_used, &written));
    assert_int_equal(id_used, head);
    assert_int_equal(written, 0);
}

static uint32_t cfg32(struct fix *f, uint32_t offset)
{
    uint32_t v;
    f->dev->ops->config_read(f->dev, offset, &v, 4);
    return le32toh(v);
}

static void assert_call(const struct fix *f, unsigned i, char kind, unsigned s, uint32_t a,
                        uint32_t b, uint32_t c, uint32_t d)
{
    assert_true(i < f->ncalls);
    assert_int_equal(f->calls[i].kind, kind);
    assert_int_equal(f->calls[i].scanout, s);
    assert_int_equal(f->calls[i].a, a);
    assert_int_equal(f->calls[i].b, b);
    assert_int_equal(f->calls[i].c, c);
    assert_int_equal(f->calls[i].d, d);
}

/* A pixel's bytes in memory for format fmt. */
static void put_pixel(uint8_t *p, uint32_t fmt, uint8_t r, uint8_t g, uint8_t b)
{
    switch (fmt) {
    case FMT_BGRX: p[0] = b, p[1] = g, p[2] = r, p[3] = 0x77; break;
    case FMT_RGBA: p[0] = r, p[1] = g, p[2] = b, p[3] = 0x77; break;
    case FMT_XRGB: p[0] = 0x77, p[1] = r, p[2] = g, p[3] = b; break;
    default: /* FMT_XBGR */ p[0] = 0x77, p[1] = b, p[2] = g, p[3] = r; break;
    }
}

static void pattern(uint32_t x, uint32_t y, uint8_t rgb[3])
{
    rgb[0] = (uint8_t)(x * 7 + 1);
    rgb[1] = (uint8_t)(y * 13 + 2);
    rgb[2] = (uint8_t)(x ^ y);
}

/* Draws the pattern of a w x h image into guest RAM at PIX_BASE and splits it into
 * backing entries of odd sizes scattered in the guest's pages (reverse order, gaps). */
static unsigned draw_backing(struct fix *f, uint32_t fmt, uint32_t w, uint32_t h, uint64_t *addr,
                             uint32_t *len)
{
    static uint8_t img[64 * 64 * 4];
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w; x++) {
            uint8_t c[3];
            pattern(x, y, c);
            put_pixel(img + (y * w + x) * 4, fmt, c[0], c[1], c[2]);
        }
    }
    uint32_t total = w * h * 4, done = 0;
    unsigned n = 0;
    while (done < total) {
        uint32_t chunk = 1000 + 333 * n;
        if (chunk > total - done)
            chunk = total - done;
        addr[n] = PIX_BASE + 0x100000 - 0x2000ull * (n + 1) + 5;
        len[n] = chunk;
        memcpy(td_ptr(&f->t, addr[n], chunk), img + done, chunk);
        done += chunk;
        n++;
    }
    return n;
}

static void check_pattern(const uint8_t *buf, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h)
{
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w; x++) {
            uint8_t c[3];
            pattern(x0 + x, y0 + y, c);
            const uint8_t *p = buf + (y * w + x) * 4;
            assert_int_equal(p[0], c[0]);
            assert_int_equal(p[1], c[1]);
            assert_int_equal(p[2], c[2]);
            assert_int_equal(p[3], 255);
        }
    }
}

/* ---- tests ---- */

static void test_identity(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(f->dev->device_id, VIRTIO_ID_GPU);
    assert_int_equal(f->dev->num_queues, 2);
    assert_int_equal(f->dev->config_size, sizeof(struct virtio_gpu_config));
    uint64_t feats = f->dev->device_features;
    assert_true(feats & VIRTIO_BIT(VIRTIO_GPU_F_EDID));
    assert_false(feats &
                 (VIRTIO_BIT(VIRTIO_GPU_F_VIRGL) | VIRTIO_BIT(VIRTIO_GPU_F_RESOURCE_BLOB) |
                  VIRTIO_BIT(VIRTIO_GPU_F_CONTEXT_INIT) | VIRTIO_BIT(VIRTIO_GPU_F_RESOURCE_UUID)));
    assert_true(feats & VIRTIO_BIT(VIRTIO_F_VERSION_1));
    assert_int_equal(cfg32(f, 0), 0); /* events_read */
    assert_int_equal(cfg32(f, 4), 0); /* events_clear */
    assert_int_equal(cfg32(f, 8), 2); /* num_scanouts */
    assert_int_equal(cfg32(f, 12), 0);
    teardown(f);

    vmk_error *err = NULL;
    assert_null(virtio_gpu_new(NULL, &err));
    assert_non_null(err);
    vmk_error_free(err);
    struct virtio_gpu_params p = { .num_scanouts = 0 };
    err = NULL;
    assert_null(virtio_gpu_new(&p, &err));
    assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(err);
    p.num_scanouts = VIRTIO_GPU_MAX_SCANOUTS_ + 1;
    assert_null(virtio_gpu_new(&p, NULL));
    p.num_scanouts = 1;
    p.width[0] = VIRTIO_GPU_MAX_DIMENSION + 1;
    assert_null(virtio_gpu_new(&p, NULL));
    p.width[0] = 0; /* 0: a default size */
    struct virtio_device *d = virtio_gpu_new(&p, NULL);
    assert_non_null(d);
    d->ops->destroy(d);
}

static void test_display_info(void **state)
{
    struct fix *f = setup(2);
    struct virtio_gpu_ctrl_hdr h = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
    assert_int_equal(ctrl(f, &h, sizeof(h)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    assert_int_equal(f->written, sizeof(struct virtio_gpu_resp_display_info));
    const struct virtio_gpu_resp_display_info *info = (const void *)f->out;
    assert_int_equal(le32toh(info->pmodes[0].r.width), 640);
    assert_int_equal(le32toh(info->pmodes[0].r.height), 480);
    assert_int_equal(le32toh(info->pmodes[0].enabled), 1);
    assert_int_equal(le32toh(info->pmodes[1].r.width), 740);
    assert_int_equal(le32toh(info->pmodes[1].r.height), 580);
    assert_int_equal(le32toh(info->pmodes[1].enabled), 1);
    assert_int_equal(le32toh(info->pmodes[2].enabled), 0);
    assert_int_equal(le32toh(info->pmodes[2].r.width), 0);
    teardown(f);
}

static void test_reconfigure_event(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 1, 1920, 1080), 0);
    assert_int_equal(f->t.config_changes, 1);
    assert_int_equal(cfg32(f, 0), VIRTIO_GPU_EVENT_DISPLAY);
    struct virtio_gpu_ctrl_hdr h = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
    assert_int_equal(ctrl(f, &h, sizeof(h)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    const struct virtio_gpu_resp_display_info *info = (const void *)f->out;
    assert_int_equal(le32toh(info->pmodes[1].r.width), 1920);
    assert_int_equal(le32toh(info->pmodes[1].r.height), 1080);
    assert_int_equal(le32toh(info->pmodes[0].r.width), 640);

    /* events_clear is write-1-to-clear; events_read is not the driver's to write. */
    uint32_t v = htole32(0);
    f->dev->ops->config_write(f->dev, 4, &v, 4);
    assert_int_equal(cfg32(f, 0), VIRTIO_GPU_EVENT_DISPLAY);
    v = htole32(VIRTIO_GPU_EVENT_DISPLAY);
    f->dev->ops->config_write(f->dev, 0, &v, 4);
    assert_int_equal(cfg32(f, 0), VIRTIO_GPU_EVENT_DISPLAY);
    f->dev->ops->config_write(f->dev, 4, &v, 4);
    assert_int_equal(cfg32(f, 0), 0);
    assert_int_equal(cfg32(f, 4), 0);

    assert_int_equal(virtio_gpu_reconfigure(f->dev, 2, 800, 600), -EINVAL);
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 0, 0, 600), -EINVAL);
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 0, 800, VIRTIO_GPU_MAX_DIMENSION + 1), -EINVAL);
    assert_int_equal(f->t.config_changes, 1);
    teardown(f);
}

static void edid_mode(const uint8_t *e, uint32_t *w, uint32_t *h)
{
    const uint8_t *d = e + 54;
    assert_true(d[0] | d[1]); /* a detailed timing, not a display descriptor */
    *w = d[2] | (uint32_t)(d[4] >> 4) << 8;
    *h = d[5] | (uint32_t)(d[7] >> 4) << 8;
}

static void get_edid(struct fix *f, uint32_t s, uint32_t *w, uint32_t *h)
{
    struct virtio_gpu_cmd_get_edid c = { .hdr = hdr(VIRTIO_GPU_CMD_GET_EDID),
                                         .scanout = htole32(s) };
    assert_int_equal(ctrl(f, &c, sizeof(c)), VIRTIO_GPU_RESP_OK_EDID);
    assert_int_equal(f->written, sizeof(struct virtio_gpu_resp_edid));
    const struct virtio_gpu_resp_edid *r = (const void *)f->out;
    assert_int_equal(le32toh(r->size), 128);
    static const uint8_t magic[8] = { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0 };
    assert_memory_equal(r->edid, magic, 8);
    assert_int_equal(r->edid[18], 1);
    assert_int_equal(r->edid[19], 4);
    uint8_t sum = 0;
    for (unsigned i = 0; i < 128; i++)
        sum = (uint8_t)(sum + r->edid[i]);
    assert_int_equal(sum, 0);
    assert_true(r->edid[24] & 0x02); /* the first detailed timing is preferred */
    assert_int_equal(r->edid[126], 0);
    edid_mode(r->edid, w, h);
}

static void test_edid(void **state)
{
    struct fix *f = setup(2);
    uint32_t w, h;
    get_edid(f, 0, &w, &h);
    assert_int_equal(w, 640);
    assert_int_equal(h, 480);
    get_edid(f, 1, &w, &h);
    assert_int_equal(w, 740);
    assert_int_equal(h, 580);
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 0, 2560, 1440), 0);
    get_edid(f, 0, &w, &h);
    assert_int_equal(w, 2560);
    assert_int_equal(h, 1440);
    /* A detailed timing stops at 4095. */
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 0, 8192, 100), 0);
    get_edid(f, 0, &w, &h);
    assert_int_equal(w, 4095);
    assert_int_equal(h, 100);
    /* The largest size: its 60 Hz clock would pass 655.35 MHz, so the refresh drops. */
    assert_int_equal(
        virtio_gpu_reconfigure(f->dev, 0, VIRTIO_GPU_MAX_DIMENSION, VIRTIO_GPU_MAX_DIMENSION), 0);
    get_edid(f, 0, &w, &h);
    assert_int_equal(w, 4095);
    assert_int_equal(h, 4095);
    const uint8_t *dtd = ((const struct virtio_gpu_resp_edid *)f->out)->edid + 54;
    assert_int_equal(dtd[0] | dtd[1] << 8, 0xffff);

    struct virtio_gpu_cmd_get_edid c = { .hdr = hdr(VIRTIO_GPU_CMD_GET_EDID),
                                         .scanout = htole32(2) };
    assert_int_equal(ctrl(f, &c, sizeof(c)), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    assert_int_equal(f->written, sizeof(struct virtio_gpu_ctrl_hdr));
    teardown(f);

    /* Without the feature, no EDID. */
    f = setup_with(1, 0, ~VIRTIO_BIT(VIRTIO_GPU_F_EDID));
    c.scanout = 0;
    assert_int_equal(ctrl(f, &c, sizeof(c)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    teardown(f);
}

static void test_create_and_unref(void **state)
{
    struct fix *f = setup(1);
    static const uint32_t fmts[] = {
        VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
        VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM,
        VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM,
        VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM,
    };
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(create(f, 10 + i, fmts[i], 16, 16), OK);
    assert_int_equal(create(f, 10, FMT_BGRX, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(create(f, 0, FMT_BGRX, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(create(f, 1, 5, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create(f, 1, FMT_BGRX, 0, 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create(f, 1, FMT_BGRX, 16, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create(f, 1, FMT_BGRX, VIRTIO_GPU_MAX_DIMENSION + 1, 1),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create(f, 1, FMT_BGRX, 1, UINT32_MAX), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* 16384 x 16384 is 1 GiB: past the default budget. */
    assert_int_equal(create(f, 1, FMT_BGRX, 16384, 16384), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);

    assert_int_equal(unref(f, 10), OK);
    assert_int_equal(unref(f, 10), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(unref(f, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(create(f, 10, FMT_BGRX, 16, 16), OK); /* the id is free again */
    teardown(f);
}

static void test_budget(void **state)
{
    struct fix *f = setup_with(1, 1 << 20, ~0ull);
    assert_int_equal(create(f, 1, FMT_BGRX, 512, 256), OK); /* half */
    assert_int_equal(create(f, 2, FMT_BGRX, 512, 257), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(create(f, 2, FMT_BGRX, 512, 256), OK); /* all of it */
    assert_int_equal(create(f, 3, FMT_BGRX, 1, 1), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(unref(f, 1), OK);
    assert_int_equal(create(f, 3, FMT_BGRX, 512, 256), OK);
    /* A reset gives it all back. */
    f->dev->ops->reset(f->dev);
    td_fini(&f->t);
    assert_int_equal(td_init(&f->t, f->dev, ~0ull), 0);
    f->req = td_alloc(&f->t, REQ_BYTES);
    f->resp = td_alloc(&f->t, RESP_SIZE);
    assert_int_equal(create(f, 3, FMT_BGRX, 512, 512), OK);
    teardown(f);
}

static void test_too_many_resources(void **state)
{
    struct fix *f = setup(1);
    for (uint32_t i = 1; i <= VIRTIO_GPU_MAX_RESOURCES; i++)
        assert_int_equal(create(f, i, FMT_BGRX, 1, 1), OK);
    assert_int_equal(create(f, 5000, FMT_BGRX, 1, 1), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(unref(f, 77), OK);
    assert_int_equal(create(f, 5000, FMT_BGRX, 1, 1), OK);
    teardown(f);
}

static void test_attach_detach_backing(void **state)
{
    struct fix *f = setup(1);
    assert_int_equal(create(f, 1, FMT_BGRX, 16, 16), OK);
    uint64_t addr[2] = { PIX_BASE, PIX_BASE + 0x10000 };
    uint32_t len[2] = { 512, 512 };
    assert_int_equal(attach(f, 2, addr, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(attach(f, 1, addr, len, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* More entries than the limit, or than the request carries. */
    assert_int_equal(
        attach_n(f, 1, VIRTIO_GPU_MAX_BACKING + 1, NULL, NULL, VIRTIO_GPU_MAX_BACKING + 1),
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(attach_n(f, 1, UINT32_MAX, addr, len, 2),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(attach_n(f, 1, 3, addr, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Entries outside guest RAM, or running over its end. */
    uint64_t bad[2] = { PIX_BASE, TD_RAM_SIZE - 256 };
    assert_int_equal(attach(f, 1, bad, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    bad[1] = 1ull << 40;
    assert_int_equal(attach(f, 1, bad, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    bad[1] = UINT64_MAX - 100;
    assert_int_equal(attach(f, 1, bad, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The maximum is fine, once. */
    assert_int_equal(attach_n(f, 1, VIRTIO_GPU_MAX_BACKING, NULL, NULL, VIRTIO_GPU_MAX_BACKING),
                     OK);
    assert_int_equal(attach(f, 1, addr, len, 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(detach(f, 1), OK);
    assert_int_equal(detach(f, 1), VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(detach(f, 9), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(attach(f, 1, addr, len, 2), OK);
    teardown(f);
}

static void test_backing_entries_bounded(void **state)
{
    /* 1 MiB of budget: 256 + VIRTIO_GPU_MAX_BACKING entries in all. */
    struct fix *f = setup_with(1, 1 << 20, ~0ull);
    assert_int_equal(create(f, 1, FMT_BGRX, 1, 1), OK);
    assert_int_equal(create(f, 2, FMT_BGRX, 1, 1), OK);
    assert_int_equal(attach_n(f, 1, VIRTIO_GPU_MAX_BACKING, NULL, NULL, VIRTIO_GPU_MAX_BACKING),
                     OK);
    assert_int_equal(attach_n(f, 2, 257, NULL, NULL, 257), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(attach_n(f, 2, 256, NULL, NULL, 256), OK);
    assert_int_equal(unref(f, 1), OK);
    assert_int_equal(create(f, 1, FMT_BGRX, 1, 1), OK);
    assert_int_equal(attach_n(f, 1, 1000, NULL, NULL, 1000), OK);
    teardown(f);
}

/* Draws through scattered backing, TRANSFER and SET_SCANOUT, reads back as R, G, B, 255. */
static void check_format(uint32_t fmt)
{
    struct fix *f = setup(1);
    uint64_t addr[64];
    uint32_t len[64];
    unsigned n = draw_backing(f, fmt, 40, 30, addr, len);
    assert_true(n > 3);
    assert_int_equal(create(f, 1, fmt, 40, 30), OK);
    assert_int_equal(attach(f, 1, addr, len, n), OK);
    assert_int_equal(transfer(f, 1, rect(0, 0, 40, 30), 0), OK);
    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 40, 30)), OK);
    assert_call(f, 0, 'm', 0, 40, 30, 0, 0);
    static uint8_t buf[40 * 30 * 4];
    uint32_t w = 0, h = 0;
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, sizeof(buf), &w, &h), 0);
    assert_int_equal(w, 40);
    assert_int_equal(h, 30);
    check_pattern(buf, 0, 0, 40, 30);

    /* A scanout showing part of the resource. */
    assert_int_equal(set_scanout(f, 0, 1, rect(5, 7, 20, 10)), OK);
    assert_call(f, 1, 'm', 0, 20, 10, 0, 0);
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, sizeof(buf), &w, &h), 0);
    assert_int_equal(w, 20);
    assert_int_equal(h, 10);
    check_pattern(buf, 5, 7, 20, 10);
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, 20 * 10 * 4 - 1, &w, &h), -ENOSPC);
    assert_int_equal(w, 20);
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 1, buf, sizeof(buf), &w, &h), -EINVAL);
    teardown(f);
}

/* A host thread copies the scanout while the guest frees and recreates what it shows: the copy
 * happens without the device's lock, so the resource must outlive it (ASan would see a use
 * after free), and every copy is whole or refused. */
struct reader_arg {
    struct fix *f;
    volatile bool stop;
    unsigned copies;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    static uint8_t buf[64 * 48 * 4];
    while (!a->stop) {
        uint32_t w, h;
        int rc = virtio_gpu_read_scanout(a->f->dev, 0, buf, sizeof(buf), &w, &h);
        assert_true(rc == 0 || rc == -ENODATA);
        a->copies += rc == 0;
    }
    return NULL;
}

static void test_read_while_unref(void **state)
{
    (void)state;
    struct fix *f = setup(1);
    struct reader_arg a = { .f = f };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &a), 0);
    for (uint32_t i = 0; i < 300; i++) {
        uint32_t id = 1 + i % 2;
        assert_int_equal(create(f, id, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 48),
                         VIRTIO_GPU_RESP_OK_NODATA);
        assert_int_equal(set_scanout(f, 0, id, rect(0, 0, 64, 48)), VIRTIO_GPU_RESP_OK_NODATA);
        assert_int_equal(unref(f, id), VIRTIO_GPU_RESP_OK_NODATA);
    }
    a.stop = true;
    pthread_join(t, NULL);
    teardown(f);
}

static void test_read_scanout_bgrx(void **state)
{
    check_format(FMT_BGRX);
}

static void test_read_scanout_rgba(void **state)
{
    check_format(FMT_RGBA);
}

static void test_read_scanout_xrgb_xbgr(void **state)
{
    check_format(FMT_XRGB);
    check_format(FMT_XBGR);
}

static void test_partial_transfer(void **state)
{
    struct fix *f = setup(1);
    uint64_t addr[64];
    uint32_t len[64];
    unsigned n = draw_backing(f, FMT_BGRX, 40, 30, addr, len);
    assert_int_equal(create(f, 1, FMT_BGRX, 40, 30), OK);
    assert_int_equal(attach(f, 1, addr, len, n), OK);
    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 40, 30)), OK);
    /* Only a rectangle: offset is where its first pixel sits in the backing. */
    assert_int_equal(transfer(f, 1, rect(3, 4, 10, 5), (4 * 40 + 3) * 4), OK);
    static uint8_t buf[40 * 30 * 4];
    uint32_t w, h;
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, sizeof(buf), &w, &h), 0);
    for (uint32_t y = 0; y < 30; y++) {
        for (uint32_t x = 0; x < 40; x++) {
            const uint8_t *p = buf + (y * 40 + x) * 4;
            if (x >= 3 && x < 13 && y >= 4 && y < 9) {
                uint8_t c[3];
                pattern(x, y, c);
                assert_memory_equal(p, c, 3);
            } else {
                assert_int_equal(p[0] | p[1] | p[2], 0); /* still black */
            }
            assert_int_equal(p[3], 255);
        }
    }
    /* An empty rectangle copies nothing and is fine. */
    assert_int_equal(transfer(f, 1, rect(40, 30, 0, 0), 0), OK);
    teardown(f);
}

static void test_transfer_errors(void **state)
{
    struct fix *f = setup(1);
    assert_int_equal(create(f, 1, FMT_BGRX, 16, 16), OK);
    assert_int_equal(transfer(f, 1, rect(0, 0, 16, 16), 0), VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(transfer(f, 2, rect(0, 0, 16, 16), 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    uint64_t addr[2] = { PIX_BASE, PIX_BASE + 0x3000 };
    uint32_t len[2] = { 512, 512 }; /* 1 KiB: the whole image */
    assert_int_equal(attach(f, 1, addr, len, 2), OK);
    assert_int_equal(transfer(f, 1, rect(0, 0, 17, 16), 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(1, 0, 16, 1), 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(UINT32_MAX, 0, 2, 1), 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(0, UINT32_MAX - 1, 1, 3), 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The rectangle's rows must lie in the backing. */
    assert_int_equal(transfer(f, 1, rect(0, 0, 16, 16), 4), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(0, 0, 1, 1), 1024), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(0, 0, 1, 1), UINT64_MAX - 2),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer(f, 1, rect(0, 0, 1, 1), 1020), OK);
    assert_int_equal(transfer(f, 1, rect(0, 0, 16, 16), 0), OK);

    /* Backing checked at attach is checked again at transfer: RAM shrank under it. */
    uint64_t size = f->t.gm.regions[0].size;
    f->t.gm.regions[0].size = PIX_BASE + 0x1000;
    assert_int_equal(transfer(f, 1, rect(0, 0, 16, 16), 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    f->t.gm.regions[0].size = size;
    assert_int_equal(transfer(f, 1, rect(0, 0, 16, 16), 0), OK);

    /* A smaller backing serves the rows it holds. */
    assert_int_equal(create(f, 2, FMT_BGRX, 16, 16), OK);
    assert_int_equal(attach(f, 2, addr, len, 1), OK);
    assert_int_equal(transfer(f, 2, rect(0, 0, 16, 8), 0), OK);
    assert_int_equal(transfer(f, 2, rect(0, 8, 16, 1), 8 * 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    teardown(f);
}

static void test_set_scanout(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(create(f, 1, FMT_BGRX, 64, 48), OK);
    assert_int_equal(create(f, 2, FMT_BGRX, 64, 48), OK);
    assert_int_equal(set_scanout(f, 2, 1, rect(0, 0, 64, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    assert_int_equal(set_scanout(f, UINT32_MAX, 0, rect(0, 0, 0, 0)),
                     VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    assert_int_equal(set_scanout(f, 0, 3, rect(0, 0, 64, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 65, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout(f, 0, 1, rect(10, 0, 60, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout(f, 0, 1, rect(0xfffffff0u, 0, 0x20, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 0, 48)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(f->ncalls, 0);
    uint32_t w, h;
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, NULL, 0, &w, &h), -ENODATA);

    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 64, 48)), OK);
    assert_call(f, 0, 'm', 0, 64, 48, 0, 0);
    /* A page flip to a resource of the same size is no news. */
    assert_int_equal(set_scanout(f, 0, 2, rect(0, 0, 64, 48)), OK);
    assert_int_equal(f->ncalls, 1);
    assert_int_equal(set_scanout(f, 1, 2, rect(0, 0, 32, 16)), OK);
    assert_call(f, 1, 'm', 1, 32, 16, 0, 0);
    /* Resource 0 turns a scanout off. */
    assert_int_equal(set_scanout(f, 0, 0, rect(0, 0, 0, 0)), OK);
    assert_call(f, 2, 'm', 0, 0, 0, 0, 0);
    /* Dark now, it keeps the last picture it showed (64 x 48 of resource 2). */
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, NULL, 0, &w, &h), -ENOSPC);
    assert_int_equal(w, 64);
    assert_int_equal(h, 48);
    assert_int_equal(set_scanout(f, 0, 0, rect(0, 0, 0, 0)), OK);
    assert_int_equal(f->ncalls, 3);
    teardown(f);
}

static void test_flush(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(create(f, 1, FMT_BGRX, 64, 48), OK);
    assert_int_equal(create(f, 2, FMT_BGRX, 8, 8), OK);
    assert_int_equal(flush(f, 3, rect(0, 0, 1, 1)), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(flush(f, 1, rect(0, 0, 65, 1)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(flush(f, 1, rect(1, UINT32_MAX, 1, 2)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(flush(f, 1, rect(0, 0, 64, 48)), OK); /* shown nowhere */
    assert_int_equal(f->ncalls, 0);

    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 64, 48)), OK);
    assert_int_equal(set_scanout(f, 1, 1, rect(32, 16, 32, 32)), OK);
    f->ncalls = 0;
    assert_int_equal(flush(f, 1, rect(20, 10, 20, 20)), OK);
    assert_int_equal(f->ncalls, 2);
    assert_call(f, 0, 'f', 0, 20, 10, 20, 20);
    assert_call(f, 1, 'f', 1, 0, 0, 8, 14); /* clipped to scanout 1, in its pixels */
    /* Outside scanout 1's part: only scanout 0 hears. */
    assert_int_equal(flush(f, 1, rect(0, 0, 10, 10)), OK);
    assert_int_equal(f->ncalls, 3);
    assert_call(f, 2, 'f', 0, 0, 0, 10, 10);
    assert_int_equal(flush(f, 2, rect(0, 0, 8, 8)), OK);
    assert_int_equal(f->ncalls, 3);

    /* The sink is called without the device's lock: it may read the scanout. */
    f->read_in_flush = true;
    f->read_rc = 1;
    assert_int_equal(flush(f, 1, rect(0, 0, 1, 1)), OK);
    assert_int_equal(f->read_rc, 0);
    teardown(f);
}

static void test_unref_on_scanout(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(create(f, 1, FMT_BGRX, 64, 48), OK);
    uint64_t addr = PIX_BASE;
    uint32_t len = 64 * 48 * 4;
    assert_int_equal(attach(f, 1, &addr, &len, 1), OK);
    assert_int_equal(set_scanout(f, 0, 1, rect(0, 0, 64, 48)), OK);
    assert_int_equal(set_scanout(f, 1, 1, rect(0, 0, 16, 16)), OK);
    f->ncalls = 0;
    assert_int_equal(unref(f, 1), OK);
    assert_int_equal(f->ncalls, 2);
    assert_call(f, 0, 'm', 0, 0, 0, 0, 0);
    assert_call(f, 1, 'm', 1, 0, 0, 0, 0);
    /* The scanouts went dark but keep their last pictures; nothing reads the freed one. */
    static uint8_t buf[64 * 48 * 4];
    uint32_t w = 1, h = 1;
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, sizeof(buf), &w, &h), 0);
    assert_int_equal(w, 64);
    assert_int_equal(h, 48);
    assert_int_equal(buf[0], 0); /* black: nothing was transferred */
    assert_int_equal(buf[3], 255);
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 1, buf, sizeof(buf), &w, &h), 0);
    assert_int_equal(w, 16);
    assert_int_equal(flush(f, 1, rect(0, 0, 1, 1)), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(transfer(f, 1, rect(0, 0, 1, 1), 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    /* A new resource with the same id is not shown until SET_SCANOUT. */
    assert_int_equal(create(f, 1, FMT_BGRX, 8, 8), OK);
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 0, buf, sizeof(buf), &w, &h), 0);
    assert_int_equal(w, 64);
    teardown(f);
}

static void test_cursor(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(create(f, 9, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
    const uint32_t full = sizeof(struct virtio_gpu_update_cursor);
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 1, 100, 200, 9, full);
    assert_int_equal(f->ncalls, 1);
    assert_call(f, 0, 'c', 1, 100, 200, 1, 0);
    cursor(f, VIRTIO_GPU_CMD_MOVE_CURSOR, 1, -5, 7, 0, full); /* resource ignored in a move */
    assert_call(f, 1, 'c', 1, (uint32_t)-5, 7, 1, 0);
    cursor(f, VIRTIO_GPU_CMD_MOVE_CURSOR, 1, 1, 2, 0, 40); /* a move needs only the position */
    assert_call(f, 2, 'c', 1, 1, 2, 1, 0);
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 3, 4, 0, full); /* no image: hidden */
    assert_call(f, 3, 'c', 0, 3, 4, 0, 0);
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 3, 4, 1234, full); /* no such resource */
    assert_call(f, 4, 'c', 0, 3, 4, 0, 0);
    /* Bad scanouts, short requests and other commands: the chain comes back, no news. */
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 2, 0, 0, 9, full);
    cursor(f, VIRTIO_GPU_CMD_MOVE_CURSOR, UINT32_MAX, 0, 0, 9, full);
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 0, 0, 9, full - 1);
    cursor(f, VIRTIO_GPU_CMD_MOVE_CURSOR, 0, 0, 0, 9, 39);
    cursor(f, VIRTIO_GPU_CMD_GET_DISPLAY_INFO, 0, 0, 0, 9, full);
    assert_int_equal(f->ncalls, 5);
    /* The cursor's resource goes away: the next move shows none. */
    assert_int_equal(unref(f, 9), OK);
    cursor(f, VIRTIO_GPU_CMD_MOVE_CURSOR, 1, 8, 9, 0, full);
    assert_call(f, 5, 'c', 1, 8, 9, 0, 0);
    teardown(f);
}

static void test_fences(void **state)
{
    struct fix *f = setup(1);
    struct virtio_gpu_resource_create_2d c = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
                                               .resource_id = htole32(1),
                                               .format = htole32(FMT_BGRX),
                                               .width = htole32(4),
                                               .height = htole32(4) };
    c.hdr.flags = htole32(VIRTIO_GPU_FLAG_FENCE);
    c.hdr.fence_id = htole64(0x1122334455667788ull);
    c.hdr.ctx_id = htole32(42);
    assert_int_equal(ctrl(f, &c, sizeof(c)), OK);
    const struct virtio_gpu_ctrl_hdr *h = (const void *)f->out;
    assert_int_equal(le32toh(h->flags), VIRTIO_GPU_FLAG_FENCE);
    assert_int_equal(le64toh(h->fence_id), 0x1122334455667788ull);
    assert_int_equal(le32toh(h->ctx_id), 42);
    assert_int_equal(f->written, sizeof(*h));
    /* Errors carry the fence too. */
    c.hdr.fence_id = htole64(7);
    assert_int_equal(ctrl(f, &c, sizeof(c)), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(le32toh(h->flags), VIRTIO_GPU_FLAG_FENCE);
    assert_int_equal(le64toh(h->fence_id), 7);
    /* Without the flag: none. */
    c.hdr.flags = 0;
    c.resource_id = htole32(2);
    assert_int_equal(ctrl(f, &c, sizeof(c)), OK);
    assert_int_equal(h->flags, 0);
    assert_int_equal(h->fence_id, 0);
    assert_int_equal(h->ctx_id, 0);
    teardown(f);
}

static void test_malformed_requests(void **state)
{
    struct fix *f = setup(1);
    struct virtio_gpu_resource_create_2d c = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
                                               .resource_id = htole32(1),
                                               .format = htole32(FMT_BGRX),
                                               .width = htole32(4),
                                               .height = htole32(4) };
    /* Shorter than a header, or than the command. */
    assert_int_equal(ctrl(f, &c, 10), VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(f->written, sizeof(struct virtio_gpu_ctrl_hdr));
    assert_int_equal(ctrl(f, &c, sizeof(c) - 1), VIRTIO_GPU_RESP_ERR_UNSPEC);
    static const uint32_t cmds[] = { VIRTIO_GPU_CMD_RESOURCE_UNREF,
                                     VIRTIO_GPU_CMD_SET_SCANOUT,
                                     VIRTIO_GPU_CMD_RESOURCE_FLUSH,
                                     VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
                                     VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
                                     VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
                                     VIRTIO_GPU_CMD_GET_EDID };
    for (unsigned i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct virtio_gpu_ctrl_hdr h = hdr(cmds[i]);
        assert_int_equal(ctrl(f, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    }
    /* Unknown, 3D, blob, capset and cursor commands. */
    static const uint32_t unknown[] = { 0,
                                        0x0fff,
                                        VIRTIO_GPU_CMD_GET_CAPSET_INFO,
                                        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB,
                                        VIRTIO_GPU_CMD_CTX_CREATE,
                                        VIRTIO_GPU_CMD_SUBMIT_3D,
                                        VIRTIO_GPU_CMD_UPDATE_CURSOR,
                                        VIRTIO_GPU_RESP_OK_NODATA };
    for (unsigned i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        uint8_t req[64] = { 0 };
        struct virtio_gpu_ctrl_hdr h = hdr(unknown[i]);
        memcpy(req, &h, sizeof(h));
        assert_int_equal(ctrl(f, req, sizeof(req)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    }
    /* A response buffer too small gets what fits; none at all, nothing. */
    struct virtio_gpu_ctrl_hdr h = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
    assert_int_equal(send(f, &h, sizeof(h), 8), 0);
    assert_int_equal(f->written, 8);
    assert_int_equal(le32toh(*(const uint32_t *)f->out), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    assert_int_equal(send(f, &h, sizeof(h), 100), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    assert_int_equal(f->written, 100);
    assert_int_equal(send(f, &c, sizeof(c), 0), 0);
    assert_int_equal(f->written, 0);
    assert_int_equal(create(f, 1, FMT_BGRX, 4, 4), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_broken_ring(void **state)
{
    struct fix *f = setup(1);
    assert_int_equal(create(f, 1, FMT_BGRX, 4, 4), OK);
    /* The driver claims far more buffers than the ring holds. */
    td_set_avail_idx(&f->t, Q_CONTROL, (uint16_t)(td_used_idx(&f->t, Q_CONTROL) + 1000));
    f->dev->ops->queue_notify(f->dev, Q_CONTROL);
    const char *why = NULL;
    assert_int_equal(td_resets(&f->t, &why), 1);
    assert_non_null(why);
    /* Nothing more is served until a reset. */
    uint16_t used = td_used_idx(&f->t, Q_CONTROL);
    f->dev->ops->queue_notify(f->dev, Q_CURSOR);
    f->dev->ops->queue_notify(f->dev, Q_CONTROL);
    assert_int_equal(td_used_idx(&f->t, Q_CONTROL), used);
    teardown(f);
}

static void test_reset(void **state)
{
    struct fix *f = setup(2);
    assert_int_equal(create(f, 1, FMT_BGRX, 64, 48), OK);
    assert_int_equal(create(f, 2, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
    uint64_t addr = PIX_BASE;
    uint32_t len = 64 * 48 * 4;
    assert_int_equal(attach(f, 1, &addr, &len, 1), OK);
    assert_int_equal(set_scanout(f, 1, 1, rect(0, 0, 64, 48)), OK);
    cursor(f, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 1, 1, 2, sizeof(struct virtio_gpu_update_cursor));
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 0, 800, 600), 0);
    assert_int_equal(cfg32(f, 0), VIRTIO_GPU_EVENT_DISPLAY);
    f->ncalls = 0;
    f->dev->ops->reset(f->dev);
    assert_int_equal(cfg32(f, 0), 0);
    assert_int_equal(f->ncalls, 2); /* scanout 1 off, cursor 0 hidden */
    assert_call(f, 0, 'm', 1, 0, 0, 0, 0);
    assert_call(f, 1, 'c', 0, 0, 0, 0, 0);
    uint32_t w, h;
    assert_int_equal(virtio_gpu_read_scanout(f->dev, 1, NULL, 0, &w, &h), -ENOSPC);
    assert_int_equal(w, 64); /* the last picture outlives the reset */
    /* While reset, reconfiguring records the size without a config interrupt. */
    unsigned changes = f->t.config_changes;
    assert_int_equal(virtio_gpu_reconfigure(f->dev, 1, 1024, 768), 0);
    assert_int_equal(f->t.config_changes, changes);
    /* The next driver finds no resources and the host's sizes. */
    td_fini(&f->t);
    assert_int_equal(td_init(&f->t, f->dev, ~0ull), 0);
    f->req = td_alloc(&f->t, REQ_BYTES);
    f->resp = td_alloc(&f->t, RESP_SIZE);
    assert_int_equal(create(f, 1, FMT_BGRX, 4, 4), OK);
    assert_int_equal(unref(f, 2), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    struct virtio_gpu_ctrl_hdr hd = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
    assert_int_equal(ctrl(f, &hd, sizeof(hd)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    const struct virtio_gpu_resp_display_info *info = (const void *)f->out;
    assert_int_equal(le32toh(info->pmodes[0].r.width), 800);
    assert_int_equal(le32toh(info->pmodes[1].r.width), 1024);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_display_info),
        cmocka_unit_test(test_reconfigure_event),
        cmocka_unit_test(test_edid),
        cmocka_unit_test(test_create_and_unref),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_too_many_resources),
        cmocka_unit_test(test_attach_detach_backing),
        cmocka_unit_test(test_backing_entries_bounded),
        cmocka_unit_test(test_read_scanout_bgrx),
        cmocka_unit_test(test_read_while_unref),
        cmocka_unit_test(test_read_scanout_rgba),
        cmocka_unit_test(test_read_scanout_xrgb_xbgr),
        cmocka_unit_test(test_partial_transfer),
        cmocka_unit_test(test_transfer_errors),
        cmocka_unit_test(test_set_scanout),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_unref_on_scanout),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_fences),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_broken_ring),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
