/* virtio-gpu in 2D. Commands are served on the thread that kicks the queue, one chain at a
 * time under the device lock, and complete in order: a fenced command's fence is done when
 * its response is pushed. What the host side must hear is collected while the lock is held
 * and told after it is dropped, so a sink may call virtio_gpu_read_scanout from its
 * callbacks. */
#include "virtio/gpu.h"
#include "core/error.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_gpu.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define Q_CONTROL   0
#define Q_CURSOR    1
#define HDR_SIZE    sizeof(struct virtio_gpu_ctrl_hdr)
#define REQ_MAX     64u /* the longest fixed-size request we take (56 bytes) fits */
#define BPP         4u  /* every format we offer */
#define EDID_BYTES  128u
#define DEFAULT_W   1024u
#define DEFAULT_H   768u
#define ENTRY_BYTES sizeof(struct virtio_gpu_mem_entry)

/* One page of guest RAM per backing entry, across all resources, plus one full attach: a
 * driver that uses its pages whole needs fewer, and a hostile one cannot make the host keep
 * more than a few MiB of entries per 256 MiB of budget. */
#define ENTRY_GRANULE 4096u

struct rect {
    uint32_t x, y, w, h;
};

struct backing_entry {
    uint64_t gpa;
    uint64_t start; /* offset of its first byte in the resource's backing */
    uint32_t len;
};

struct resource {
    uint32_t id, format, w, h;
    uint8_t r, g, b; /* byte of each colour in a pixel */
    uint8_t *pixels; /* w * h * BPP, rows of w * BPP */
    struct backing_entry *backing;
    uint32_t nbacking;
    uint64_t backing_len;
    /* Host threads copying its pixels without the device's lock (virtio_gpu_read_scanout),
     * and whether the guest freed it meanwhile: the last of them frees it then. */
    unsigned readers;
    bool dead;
};

struct scanout {
    uint32_t pref_w, pref_h; /* what the host would like */
    struct resource *res;    /* what the guest shows, or NULL */
    struct rect r;           /* the part of res shown */
    uint32_t cursor_res;     /* the cursor image's resource, 0: none */
    int32_t cursor_x, cursor_y;
    /* What it showed when it went dark (R, G, B, 255), or NULL: guests turn their displays off
     * as they power off, and a screenshot taken then wants the last picture. */
    uint8_t *last;
    uint32_t last_w, last_h;
};

enum event_kind { EV_MODE, EV_FLUSH, EV_CURSOR };

struct event {
    enum event_kind kind;
    unsigned scanout;
    struct rect r;  /* EV_MODE: w, h; EV_FLUSH: the rectangle */
    int32_t cx, cy; /* EV_CURSOR */
    bool visible;   /* EV_CURSOR */
};

/* One command touches each scanout at most once; a reset, twice (image and cursor). */
#define MAX_EVENTS (2 * VIRTIO_GPU_MAX_SCANOUTS_)
struct events {
    struct event e[MAX_EVENTS];
    unsigned n;
};

struct gpu {
    struct virtio_device dev; /* first: the transport sees only this */
    pthread_mutex_t lock;     /* everything below and the queues */
    unsigned num_scanouts;
    struct gpu_display_sink sink;
    uint64_t budget, used;              /* host bytes of pixels */
    uint64_t entries_max, entries_used; /* backing entries held */
    bool active;
    uint32_t events_read;
    struct scanout scanout[VIRTIO_GPU_MAX_SCANOUTS_];
    struct resource *res[VIRTIO_GPU_MAX_RESOURCES];
    unsigned nres;
    struct virtq_elem elem;
    uint8_t resp[sizeof(struct virtio_gpu_resp_edid)];
};

static struct gpu *to_gpu(struct virtio_device *d)
{
    return (struct gpu *)d;
}

static void push_event(struct events *ev, struct event e)
{
    if (ev->n < MAX_EVENTS)
        ev->e[ev->n++] = e;
}

/* Without the lock: the sink may call back into the device. */
static void tell(const struct gpu *g, const struct events *ev)
{
    const struct gpu_display_sink *s = &g->sink;
    for (unsigned i = 0; i < ev->n; i++) {
        const struct event *e = &ev->e[i];
        if (e->kind == EV_MODE && s->mode_changed)
            s->mode_changed(s->ctx, e->scanout, e->r.w, e->r.h);
        else if (e->kind == EV_FLUSH && s->flushed)
            s->flushed(s->ctx, e->scanout, e->r.x, e->r.y, e->r.w, e->r.h);
        else if (e->kind == EV_CURSOR && s->cursor)
            s->cursor(s->ctx, e->scanout, e->cx, e->cy, e->visible);
    }
}

/* ---- resources ---- */

/* Where R, G and B sit in a pixel of each format (virtio names bytes in memory order). */
static bool format_bytes(uint32_t format, struct resource *r)
{
    static const struct {
        uint32_t format;
        uint8_t r, g, b;
    } formats[] = {
        { VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 2, 1, 0 },
        { VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 2, 1, 0 },
        { VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, 1, 2, 3 },
        { VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, 1, 2, 3 },
        { VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, 0, 1, 2 },
        { VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM, 3, 2, 1 },
        { VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, 3, 2, 1 },
        { VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, 0, 1, 2 },
    };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (formats[i].format == format) {
            r->r = formats[i].r;
            r->g = formats[i].g;
            r->b = formats[i].b;
            return true;
        }
    }
    return false;
}

static struct resource *find_res(const struct gpu *g, uint32_t id)
{
    if (id == 0)
        return NULL;
    for (unsigned i = 0; i < g->nres; i++)
        if (g->res[i]->id == id)
            return g->res[i];
    return NULL;
}

static void drop_backing(struct gpu *g, struct resource *r)
{
    g->entries_used -= r->nbacking;
    free(r->backing);
    r->backing = NULL;
    r->nbacking = 0;
    r->backing_len = 0;
}

/* Copies rect r of res into dst as R, G, B, 255 per pixel. */
static void to_rgba(const struct resource *res, struct rect r, uint8_t *dst)
{
    for (uint32_t y = 0; y < r.h; y++) {
        const uint8_t *src = res->pixels + ((uint64_t)(r.y + y) * res->w + r.x) * BPP;
        for (uint32_t x = 0; x < r.w; x++, src += BPP, dst += 4) {
            dst[0] = src[res->r];
            dst[1] = src[res->g];
            dst[2] = src[res->b];
            dst[3] = 255;
        }
    }
}

/* The scanout is about to go dark: keep what it shows (nothing kept when out of memory). */
static void keep_last(struct scanout *sc)
{
    if (!sc->res)
        return;
    uint8_t *p = realloc(sc->last, (size_t)sc->r.w * sc->r.h * 4);
    if (!p)
        return;
    to_rgba(sc->res, sc->r, p);
    sc->last = p;
    sc->last_w = sc->r.w;
    sc->last_h = sc->r.h;
}

/* Takes r off every scanout showing it (they go dark) and frees it. */
static void free_res(struct gpu *g, unsigned slot, struct events *ev)
{
    struct resource *r = g->res[slot];
    drop_backing(g, r);
    g->used -= (uint64_t)r->w * r->h * BPP;
    for (unsigned s = 0; s < g->num_scanouts; s++) {
        if (g->scanout[s].res != r)
            continue;
        keep_last(&g->scanout[s]);
        g->scanout[s].res = NULL;
        g->scanout[s].r = (struct rect){ 0 };
        if (ev)
            push_event(ev, (struct event){ .kind = EV_MODE, .scanout = s });
    }
    g->res[slot] = g->res[--g->nres];
    if (r->readers) {
        r->dead = true;
        return;
    }
    free(r->pixels);
    free(r);
}

static void free_all(struct gpu *g, struct events *ev)
{
    while (g->nres)
        free_res(g, g->nres - 1, ev);
}

/* x + w and y + h within w x h, without overflow. */
static bool rect_inside(const struct rect *r, uint32_t w, uint32_t h)
{
    return r->x <= w && r->w <= w - r->x && r->y <= h && r->h <= h - r->y;
}

static struct rect get_rect(const struct virtio_gpu_rect *wire)
{
    return (struct rect){ le32toh(wire->x), le32toh(wire->y), le32toh(wire->width),
                          le32toh(wire->height) };
}

/* Copies len bytes at offset off of r's backing into dst. Each entry was guest RAM at
 * attach time; it is checked again here, as the guest's memory map may have changed. */
static bool backing_read(const struct resource *r, const struct guest_memory *gm, uint64_t off,
                         uint8_t *dst, uint64_t len)
{
    /* The last entry that starts at or before off (starts never decrease). */
    uint32_t lo = 0, hi = r->nbacking;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->backing[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    for (uint32_t i = lo; len && i < r->nbacking; i++) {
        const struct backing_entry *e = &r->backing[i];
        if (off >= e->start + e->len)
            continue;
        uint64_t in = off - e->start;
        uint64_t n = e->len - in < len ? e->len - in : len;
        const uint8_t *src = gm_ptr(gm, e->gpa + in, n);
        if (!src)
            return false;
        memcpy(dst, src, n);
        dst += n;
        off += n;
        len -= n;
    }
    return len == 0;
}

/* ---- EDID ---- */

static void put_edid_timing(uint8_t *d, uint32_t w, uint32_t h)
{
    /* Reduced blanking (CVT-RB's horizontal numbers) at 60 Hz, or slower when the pixel
     * clock would pass the field's 655.35 MHz. Every porch and pulse fits its low bits, so
     * their high bits (bytes 4, 7 and 11) stay 0. */
    const uint32_t hfp = 48, hsync = 32, hblank = 160, vfp = 3, vsync = 6, vblank = 32;
    uint64_t clock = (uint64_t)(w + hblank) * (h + vblank) * 60 / 10000;
    if (clock > 0xffff)
        clock = 0xffff;
    if (clock == 0)
        clock = 1;
    uint32_t wmm = (uint32_t)(w * 254ull / 960), hmm = (uint32_t)(h * 254ull / 960); /* 96 dpi */
    d[0] = (uint8_t)clock;
    d[1] = (uint8_t)(clock >> 8);
    d[2] = (uint8_t)w;
    d[3] = (uint8_t)hblank;
    d[4] = (uint8_t)(((w >> 8) & 0xf) << 4);
    d[5] = (uint8_t)h;
    d[6] = (uint8_t)vblank;
    d[7] = (uint8_t)(((h >> 8) & 0xf) << 4);
    d[8] = (uint8_t)hfp;
    d[9] = (uint8_t)hsync;
    d[10] = (uint8_t)((vfp & 0xf) << 4 | (vsync & 0xf));
    d[12] = (uint8_t)wmm;
    d[13] = (uint8_t)hmm;
    d[14] = (uint8_t)((wmm >> 8) << 4 | (hmm >> 8));
    d[17] = 0x1a; /* digital separate sync, hsync +, vsync - */
}

/* An EDID 1.4 base block whose preferred (first detailed) timing is w x h. A detailed
 * timing holds at most 4095 x 4095: larger sizes are announced clamped there (GET_DISPLAY_INFO
 * still reports the whole size). */
static void build_edid(uint8_t *e, uint32_t w, uint32_t h)
{
    static const uint8_t header[8] = { 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00 };
    /* sRGB primaries and D65 white, x and y in 1/1024: red, green, blue, white. */
    static const uint16_t chroma[8] = { 655, 338, 307, 614, 154, 61, 320, 337 };
    memset(e, 0, EDID_BYTES);
    memcpy(e, header, sizeof(header));
    uint16_t maker = ('V' - '@') << 10 | ('M' - '@') << 5 | ('K' - '@');
    e[8] = (uint8_t)(maker >> 8);
    e[9] = (uint8_t)maker;
    e[10] = 0x01; /* product code */
    e[16] = 1;    /* week, year of manufacture */
    e[17] = 2024 - 1990;
    e[18] = 1; /* version 1.4 */
    e[19] = 4;
    e[20] = 0xa0; /* digital, 8 bits per colour */
    uint32_t dw = w > 4095 ? 4095 : w, dh = h > 4095 ? 4095 : h;
    uint32_t wcm = (dw * 254u / 960 + 5) / 10, hcm = (dh * 254u / 960 + 5) / 10;
    e[21] = (uint8_t)(wcm ? wcm : 1);
    e[22] = (uint8_t)(hcm ? hcm : 1);
    e[23] = 120;  /* gamma 2.2 */
    e[24] = 0x06; /* sRGB default colour space, preferred timing is native; RGB 4:4:4 */
    for (unsigned i = 0; i < 8; i++) {
        e[25 + i / 4] |= (uint8_t)((chroma[i] & 3) << (6 - 2 * (i % 4))); /* low bits */
        e[27 + i] = (uint8_t)(chroma[i] >> 2);
    }
    for (unsigned i = 38; i < 54; i++)
        e[i] = 0x01; /* no standard timings */
    put_edid_timing(e + 54, dw, dh);
    static const uint8_t name[18] = { 0,   0,    0,   0xfc, 0,   'v', 'm', 'k', 'i',
                                      't', '\n', ' ', ' ',  ' ', ' ', ' ', ' ', ' ' };
    memcpy(e + 72, name, sizeof(name));
    e[93] = 0x10; /* descriptors 3 and 4: dummies */
    e[111] = 0x10;
    uint8_t sum = 0;
    for (unsigned i = 0; i < EDID_BYTES - 1; i++)
        sum = (uint8_t)(sum + e[i]);
    e[EDID_BYTES - 1] = (uint8_t)(0x100 - sum);
}

/* ---- control commands ---- */

/* A request as read once from the chain; the guest may rewrite its buffer meanwhile. */
struct req {
    uint8_t b[REQ_MAX];
    size_t len;
};

/* The command's struct, when the request is long enough for it. */
static bool take(const struct req *q, void *c, size_t size)
{
    if (q->len < size)
        return false;
    memcpy(c, q->b, size);
    return true;
}

static uint32_t cmd_display_info(struct gpu *g, size_t *resp_len)
{
    struct virtio_gpu_resp_display_info info;
    memset(&info, 0, sizeof(info));
    for (unsigned s = 0; s < g->num_scanouts; s++) {
        info.pmodes[s].r.width = htole32(g->scanout[s].pref_w);
        info.pmodes[s].r.height = htole32(g->scanout[s].pref_h);
        info.pmodes[s].enabled = htole32(1);
    }
    memcpy(g->resp + HDR_SIZE, (const uint8_t *)&info + HDR_SIZE, sizeof(info) - HDR_SIZE);
    *resp_len = sizeof(info);
    return VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
}

static uint32_t cmd_get_edid(struct gpu *g, const struct req *q, size_t *resp_len)
{
    struct virtio_gpu_cmd_get_edid c;
    if (!virtio_has_feature(&g->dev, VIRTIO_GPU_F_EDID) || !take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    uint32_t s = le32toh(c.scanout);
    if (s >= g->num_scanouts)
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    struct virtio_gpu_resp_edid r;
    memset(&r, 0, sizeof(r));
    r.size = htole32(EDID_BYTES);
    build_edid(r.edid, g->scanout[s].pref_w, g->scanout[s].pref_h);
    memcpy(g->resp + HDR_SIZE, (const uint8_t *)&r + HDR_SIZE, sizeof(r) - HDR_SIZE);
    *resp_len = sizeof(r);
    return VIRTIO_GPU_RESP_OK_EDID;
}

static uint32_t cmd_create_2d(struct gpu *g, const struct req *q)
{
    struct virtio_gpu_resource_create_2d c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    uint32_t id = le32toh(c.resource_id), w = le32toh(c.width), h = le32toh(c.height);
    if (id == 0 || find_res(g, id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct resource tmp = { .id = id, .format = le32toh(c.format), .w = w, .h = h };
    if (!format_bytes(tmp.format, &tmp) || w == 0 || h == 0 || w > VIRTIO_GPU_MAX_DIMENSION ||
        h > VIRTIO_GPU_MAX_DIMENSION)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    uint64_t bytes = (uint64_t)w * h * BPP;
    if (g->nres >= VIRTIO_GPU_MAX_RESOURCES || bytes > g->budget - g->used)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    struct resource *r = malloc(sizeof(*r));
    if (!r)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    *r = tmp;
    r->pixels = calloc(1, bytes); /* black until the guest draws */
    if (!r->pixels) {
        free(r);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    g->used += bytes;
    g->res[g->nres++] = r;
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_unref(struct gpu *g, const struct req *q, struct events *ev)
{
    struct virtio_gpu_resource_unref c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    uint32_t id = le32toh(c.resource_id);
    for (unsigned i = 0; id && i < g->nres; i++) {
        if (g->res[i]->id == id) {
            free_res(g, i, ev);
            return VIRTIO_GPU_RESP_OK_NODATA;
        }
    }
    return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
}

static uint32_t cmd_attach_backing(struct gpu *g, const struct req *q)
{
    struct virtio_gpu_resource_attach_backing c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    struct resource *r = find_res(g, le32toh(c.resource_id));
    if (!r)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    uint32_t n = le32toh(c.nr_entries);
    if (r->backing || n == 0 || n > VIRTIO_GPU_MAX_BACKING ||
        g->elem.out_len < sizeof(c) + (uint64_t)n * ENTRY_BYTES)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    if (n > g->entries_max - g->entries_used)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    const struct guest_memory *gm = g->dev.queues[Q_CONTROL].gm;
    struct backing_entry *b = malloc(n * sizeof(*b));
    if (!b)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct virtio_gpu_mem_entry m;
        virtq_elem_read(&g->elem, sizeof(c) + (size_t)i * ENTRY_BYTES, &m, sizeof(m));
        b[i] = (struct backing_entry){ .gpa = le64toh(m.addr),
                                       .start = total,
                                       .len = le32toh(m.length) };
        if (!gm || !gm_ptr(gm, b[i].gpa, b[i].len)) {
            free(b);
            return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
        }
        total += b[i].len;
    }
    r->backing = b;
    r->nbacking = n;
    r->backing_len = total;
    g->entries_used += n;
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_detach_backing(struct gpu *g, const struct req *q)
{
    struct virtio_gpu_resource_detach_backing c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    struct resource *r = find_res(g, le32toh(c.resource_id));
    if (!r)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!r->backing)
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    drop_backing(g, r);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_set_scanout(struct gpu *g, const struct req *q, struct events *ev)
{
    struct virtio_gpu_set_scanout c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    uint32_t s = le32toh(c.scanout_id), id = le32toh(c.resource_id);
    if (s >= g->num_scanouts)
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    struct scanout *sc = &g->scanout[s];
    struct rect r = { 0 };
    struct resource *res = NULL;
    if (id) {
        res = find_res(g, id);
        if (!res)
            return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
        r = get_rect(&c.r);
        if (r.w == 0 || r.h == 0 || !rect_inside(&r, res->w, res->h))
            return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* Page flips show another resource of the same size: the host hears of sizes only. */
    bool was_on = sc->res != NULL;
    if (was_on != (res != NULL) || sc->r.w != r.w || sc->r.h != r.h)
        push_event(ev, (struct event){ .kind = EV_MODE, .scanout = s, .r = r });
    if (!res)
        keep_last(sc);
    sc->res = res;
    sc->r = r;
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_transfer(struct gpu *g, const struct req *q)
{
    struct virtio_gpu_transfer_to_host_2d c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    struct resource *res = find_res(g, le32toh(c.resource_id));
    if (!res)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct rect r = get_rect(&c.r);
    if (!rect_inside(&r, res->w, res->h))
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    if (!res->backing)
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    if (r.w == 0 || r.h == 0)
        return VIRTIO_GPU_RESP_OK_NODATA;
    /* The backing holds the image with the resource's stride; offset is where the
     * rectangle's first pixel sits in it. */
    uint64_t stride = (uint64_t)res->w * BPP, off = le64toh(c.offset);
    uint64_t row = (uint64_t)r.w * BPP, need = (uint64_t)(r.h - 1) * stride + row;
    if (off > res->backing_len || need > res->backing_len - off)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    const struct guest_memory *gm = g->dev.queues[Q_CONTROL].gm;
    uint8_t *dst = res->pixels + (uint64_t)r.y * stride + (uint64_t)r.x * BPP;
    bool ok;
    if (r.w == res->w) {
        ok = backing_read(res, gm, off, dst, need); /* whole rows: one run */
    } else {
        ok = true;
        for (uint32_t y = 0; ok && y < r.h; y++)
            ok = backing_read(res, gm, off + y * stride, dst + y * stride, row);
    }
    return ok ? VIRTIO_GPU_RESP_OK_NODATA : VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
}

static uint32_t cmd_flush(struct gpu *g, const struct req *q, struct events *ev)
{
    struct virtio_gpu_resource_flush c;
    if (!take(q, &c, sizeof(c)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    struct resource *res = find_res(g, le32toh(c.resource_id));
    if (!res)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct rect r = get_rect(&c.r);
    if (!rect_inside(&r, res->w, res->h))
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    for (unsigned s = 0; s < g->num_scanouts; s++) {
        const struct scanout *sc = &g->scanout[s];
        if (sc->res != res)
            continue;
        /* Both rectangles lie inside the resource: no sum below overflows. */
        uint32_t x0 = r.x > sc->r.x ? r.x : sc->r.x, y0 = r.y > sc->r.y ? r.y : sc->r.y;
        uint32_t x1 = r.x + r.w < sc->r.x + sc->r.w ? r.x + r.w : sc->r.x + sc->r.w;
        uint32_t y1 = r.y + r.h < sc->r.y + sc->r.h ? r.y + r.h : sc->r.y + sc->r.h;
        if (x0 >= x1 || y0 >= y1)
            continue;
        struct rect out = { x0 - sc->r.x, y0 - sc->r.y, x1 - x0, y1 - y0 };
        push_event(ev, (struct event){ .kind = EV_FLUSH, .scanout = s, .r = out });
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t run_command(struct gpu *g, uint32_t type, const struct req *q, struct events *ev,
                            size_t *resp_len)
{
    switch (type) {
    case VIRTIO_GPU_CMD_GET_DISPLAY_INFO: return cmd_display_info(g, resp_len);
    case VIRTIO_GPU_CMD_GET_EDID: return cmd_get_edid(g, q, resp_len);
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D: return cmd_create_2d(g, q);
    case VIRTIO_GPU_CMD_RESOURCE_UNREF: return cmd_unref(g, q, ev);
    case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING: return cmd_attach_backing(g, q);
    case VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING: return cmd_detach_backing(g, q);
    case VIRTIO_GPU_CMD_SET_SCANOUT: return cmd_set_scanout(g, q, ev);
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D: return cmd_transfer(g, q);
    case VIRTIO_GPU_CMD_RESOURCE_FLUSH: return cmd_flush(g, q, ev);
    default: /* 3D, blobs, capsets (none offered), cursor commands on this queue */
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
}

/* Runs the control request in g->elem; returns the bytes of response written. A request
 * too short for its header gets ERR_UNSPEC; a response buffer too short gets what fits. */
static uint32_t serve_control(struct gpu *g, struct events *ev)
{
    struct req q;
    memset(&q, 0, sizeof(q));
    q.len = virtq_elem_read(&g->elem, 0, q.b, sizeof(q.b));
    struct virtio_gpu_ctrl_hdr in, out;
    memset(&in, 0, sizeof(in));
    memset(&out, 0, sizeof(out));
    size_t resp_len = HDR_SIZE;
    uint32_t type = VIRTIO_GPU_RESP_ERR_UNSPEC;
    if (take(&q, &in, sizeof(in)))
        type = run_command(g, le32toh(in.type), &q, ev, &resp_len);
    if (type >= VIRTIO_GPU_RESP_ERR_UNSPEC)
        resp_len = HDR_SIZE;
    out.type = htole32(type);
    if (le32toh(in.flags) & VIRTIO_GPU_FLAG_FENCE) {
        out.flags = htole32(VIRTIO_GPU_FLAG_FENCE);
        out.fence_id = in.fence_id;
        out.ctx_id = in.ctx_id;
    }
    memcpy(g->resp, &out, sizeof(out));
    return (uint32_t)virtq_elem_write(&g->elem, 0, g->resp, resp_len);
}

/* Cursor commands carry no response (drivers give no device-writable buffer): the chain goes
 * back with nothing written. */
static void serve_cursor(struct gpu *g, struct events *ev)
{
    struct virtio_gpu_update_cursor c;
    memset(&c, 0, sizeof(c));
    size_t len = virtq_elem_read(&g->elem, 0, &c, sizeof(c));
    uint32_t type = le32toh(c.hdr.type), s = le32toh(c.pos.scanout_id);
    if (len < offsetof(struct virtio_gpu_update_cursor, resource_id) || s >= g->num_scanouts)
        return;
    struct scanout *sc = &g->scanout[s];
    if (type == VIRTIO_GPU_CMD_UPDATE_CURSOR && len == sizeof(c))
        sc->cursor_res = le32toh(c.resource_id);
    else if (type != VIRTIO_GPU_CMD_MOVE_CURSOR)
        return;
    sc->cursor_x = (int32_t)le32toh(c.pos.x);
    sc->cursor_y = (int32_t)le32toh(c.pos.y);
    push_event(ev, (struct event){ .kind = EV_CURSOR,
                                   .scanout = s,
                                   .cx = sc->cursor_x,
                                   .cy = sc->cursor_y,
                                   .visible = find_res(g, sc->cursor_res) != NULL });
}

/* One chain per turn of the lock, so the sink hears each command's news before the next. */
static void serve(struct gpu *g, unsigned qi)
{
    struct virtq *q = &g->dev.queues[qi];
    for (;;) {
        struct events ev = { .n = 0 };
        pthread_mutex_lock(&g->lock);
        if (!g->active) {
            pthread_mutex_unlock(&g->lock);
            return;
        }
        int rc = virtq_pop(q, &g->elem);
        if (rc <= 0) {
            bool again = false;
            if (rc < 0) {
                g->active = false;
                virtio_device_queue_failed(&g->dev, qi);
            } else {
                again = virtq_set_notification(q, true);
            }
            pthread_mutex_unlock(&g->lock);
            if (again)
                continue;
            return;
        }
        uint32_t written = 0;
        if (qi == Q_CONTROL)
            written = serve_control(g, &ev);
        else
            serve_cursor(g, &ev);
        virtio_device_complete(&g->dev, qi, &g->elem, written);
        if (virtq_is_broken(q))
            g->active = false;
        pthread_mutex_unlock(&g->lock);
        tell(g, &ev);
    }
}

/* ---- the device contract ---- */

static int gpu_activate(struct virtio_device *d)
{
    struct gpu *g = to_gpu(d);
    pthread_mutex_lock(&g->lock);
    g->active = true;
    pthread_mutex_unlock(&g->lock);
    for (unsigned q = 0; q < d->num_queues; q++)
        serve(g, q); /* buffers may be there already */
    return 0;
}

static void gpu_queue_notify(struct virtio_device *d, unsigned q)
{
    if (q < d->num_queues)
        serve(to_gpu(d), q);
}

static void config_bytes(struct gpu *g, struct virtio_gpu_config *c)
{
    memset(c, 0, sizeof(*c));
    c->events_read = htole32(g->events_read);
    c->num_scanouts = htole32(g->num_scanouts);
}

static void gpu_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct gpu *g = to_gpu(d);
    struct virtio_gpu_config c;
    pthread_mutex_lock(&g->lock);
    config_bytes(g, &c);
    pthread_mutex_unlock(&g->lock);
    memcpy(data, (const uint8_t *)&c + offset, len);
}

static void gpu_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                             uint32_t len)
{
    struct gpu *g = to_gpu(d);
    /* Only events_clear is the driver's to write: each bit set clears that event. */
    struct virtio_gpu_config c;
    memset(&c, 0, sizeof(c));
    const size_t at = offsetof(struct virtio_gpu_config, events_clear);
    for (uint32_t i = 0; i < len; i++)
        if (offset + i >= at && offset + i < at + 4)
            ((uint8_t *)&c)[offset + i] = ((const uint8_t *)data)[i];
    pthread_mutex_lock(&g->lock);
    g->events_read &= ~le32toh(c.events_clear);
    pthread_mutex_unlock(&g->lock);
}

static void gpu_reset(struct virtio_device *d)
{
    struct gpu *g = to_gpu(d);
    struct events ev = { .n = 0 };
    pthread_mutex_lock(&g->lock);
    g->active = false;
    free_all(g, &ev);
    for (unsigned s = 0; s < g->num_scanouts; s++) {
        struct scanout *sc = &g->scanout[s];
        if (sc->cursor_res)
            push_event(&ev, (struct event){ .kind = EV_CURSOR, .scanout = s });
        sc->cursor_res = 0;
        sc->cursor_x = sc->cursor_y = 0;
    }
    g->events_read = 0;
    pthread_mutex_unlock(&g->lock);
    tell(g, &ev);
}

static void gpu_destroy(struct virtio_device *d)
{
    struct gpu *g = to_gpu(d);
    if (!g)
        return;
    free_all(g, NULL);
    for (unsigned s = 0; s < g->num_scanouts; s++)
        free(g->scanout[s].last);
    pthread_mutex_destroy(&g->lock);
    virtio_device_fini(d);
    free(g);
}

static const struct virtio_device_ops gpu_ops = {
    .activate = gpu_activate,
    .queue_notify = gpu_queue_notify,
    .config_read = gpu_config_read,
    .config_write = gpu_config_write,
    .reset = gpu_reset,
    .destroy = gpu_destroy,
};

struct virtio_device *virtio_gpu_new(const struct virtio_gpu_params *p, vmk_error **err)
{
    if (!p) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-gpu: no parameters");
        return NULL;
    }
    if (p->num_scanouts < 1 || p->num_scanouts > VIRTIO_GPU_MAX_SCANOUTS_) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-gpu: %u scanouts, allowed 1..%u",
                 p->num_scanouts, VIRTIO_GPU_MAX_SCANOUTS_);
        return NULL;
    }
    for (unsigned s = 0; s < p->num_scanouts; s++) {
        if (p->width[s] > VIRTIO_GPU_MAX_DIMENSION || p->height[s] > VIRTIO_GPU_MAX_DIMENSION) {
            vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                     "virtio-gpu: scanout %u is %u x %u, at most %u x %u", s, p->width[s],
                     p->height[s], VIRTIO_GPU_MAX_DIMENSION, VIRTIO_GPU_MAX_DIMENSION);
            return NULL;
        }
    }
    struct gpu *g = calloc(1, sizeof(*g));
    if (!g) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-gpu: out of memory");
        return NULL;
    }
    if (virtio_device_init(&g->dev, &gpu_ops, "virtio-gpu", VIRTIO_ID_GPU, 2,
                           VIRTIO_GPU_QUEUE_SIZE) < 0) {
        free(g);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-gpu: out of memory");
        return NULL;
    }
    g->dev.device_features |= VIRTIO_BIT(VIRTIO_GPU_F_EDID);
    g->dev.config_size = sizeof(struct virtio_gpu_config);
    g->num_scanouts = p->num_scanouts;
    g->sink = p->sink;
    g->budget = p->memory_budget ? p->memory_budget : VIRTIO_GPU_DEFAULT_BUDGET;
    g->entries_max = g->budget / ENTRY_GRANULE + VIRTIO_GPU_MAX_BACKING;
    for (unsigned s = 0; s < p->num_scanouts; s++) {
        g->scanout[s].pref_w = p->width[s] ? p->width[s] : DEFAULT_W;
        g->scanout[s].pref_h = p->height[s] ? p->height[s] : DEFAULT_H;
    }
    pthread_mutex_init(&g->lock, NULL);
    return &g->dev;
}

int virtio_gpu_reconfigure(struct virtio_device *d, unsigned scanout, uint32_t w, uint32_t h)
{
    struct gpu *g = to_gpu(d);
    if (!g || scanout >= g->num_scanouts || w == 0 || h == 0 || w > VIRTIO_GPU_MAX_DIMENSION ||
        h > VIRTIO_GPU_MAX_DIMENSION)
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    g->scanout[scanout].pref_w = w;
    g->scanout[scanout].pref_h = h;
    g->events_read |= VIRTIO_GPU_EVENT_DISPLAY;
    bool tell_driver = g->active; /* a driver not yet running asks when it starts */
    pthread_mutex_unlock(&g->lock);
    if (tell_driver && d->transport.notify_config)
        d->transport.notify_config(d->transport.ctx);
    return 0;
}

int virtio_gpu_read_scanout(struct virtio_device *d, unsigned scanout, void *buf, size_t len,
                            uint32_t *w, uint32_t *h)
{
    struct gpu *g = to_gpu(d);
    if (!g || scanout >= g->num_scanouts)
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    const struct scanout *sc = &g->scanout[scanout];
    const struct resource *res = sc->res;
    uint32_t rw = res ? sc->r.w : sc->last ? sc->last_w : 0;
    uint32_t rh = res ? sc->r.h : sc->last ? sc->last_h : 0;
    if (w)
        *w = rw;
    if (h)
        *h = rh;
    int rc = 0;
    if (!res && !sc->last) {
        rc = -ENODATA;
    } else if (!buf || (uint64_t)rw * rh * 4 > len) {
        rc = -ENOSPC;
    } else if (res) {
        /* A whole frame takes a while to convert: the queues go on meanwhile (a frame the
         * guest transfers during the copy may show half old, half new, as on a real screen),
         * and the resource stays until the copy is done. */
        struct resource *held = g->scanout[scanout].res;
        struct rect r = sc->r;
        held->readers++;
        pthread_mutex_unlock(&g->lock);
        to_rgba(held, r, buf);
        pthread_mutex_lock(&g->lock);
        if (--held->readers == 0 && held->dead) {
            free(held->pixels);
            free(held);
        }
    } else {
        memcpy(buf, sc->last, (size_t)rw * rh * 4);
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}
