#include "devices/legacy/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SELECT_WRITE_BIT 0x4000 /* the obsolete write-mode bit: it selects the same item */
#define DMA_DESC_LEN     16     /* be32 control, be32 length, be64 address */

struct item {
    uint16_t key;
    bool writable;
    uint32_t len;
    uint8_t *data;
    char name[FW_CFG_NAME_MAX]; /* "" for numeric items */
    fw_cfg_write_fn on_write;
    void *ctx;
};

struct fw_cfg {
    pthread_mutex_t lock;
    const struct guest_memory *gm; /* NULL: no DMA */
    struct item *items;
    unsigned count, cap;
    unsigned files;
    int cur;         /* index of the selected item, -1 when the key names none */
    uint32_t offset; /* into the selected item; never past its end */
    uint8_t dma_reg[8];
};

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static int find(const struct fw_cfg *fc, uint16_t key)
{
    for (unsigned i = 0; i < fc->count; i++)
        if (fc->items[i].key == key)
            return (int)i;
    return -1;
}

static struct item *selected(struct fw_cfg *fc)
{
    return fc->cur < 0 ? NULL : &fc->items[fc->cur];
}

static void select_key(struct fw_cfg *fc, uint16_t key)
{
    fc->cur = find(fc, key & (uint16_t)~SELECT_WRITE_BIT);
    fc->offset = 0;
}

/* Replaces the data of item key (adding the item when missing); takes ownership of
 * data, which is freed on failure. */
static int set_item(struct fw_cfg *fc, uint16_t key, uint8_t *data, uint32_t len)
{
    int i = find(fc, key);
    if (i < 0) {
        if (fc->count == fc->cap) {
            unsigned cap = fc->cap ? fc->cap * 2 : 16;
            struct item *n = realloc(fc->items, cap * sizeof(*n));
            if (!n) {
                free(data);
                return -ENOMEM;
            }
            fc->items = n;
            fc->cap = cap;
        }
        i = (int)fc->count++;
        memset(&fc->items[i], 0, sizeof(fc->items[i]));
        fc->items[i].key = key;
    }
    struct item *it = &fc->items[i];
    free(it->data);
    it->data = data;
    it->len = len;
    /* A selected item that shrank keeps the offset inside it. */
    if (fc->cur == i && fc->offset > len)
        fc->offset = len;
    return 0;
}

static int set_copy(struct fw_cfg *fc, uint16_t key, const void *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, data, len);
    return set_item(fc, key, copy, (uint32_t)len);
}

static int cmp_names(const void *a, const void *b)
{
    const struct item *x = *(const struct item *const *)a, *y = *(const struct item *const *)b;
    return strcmp(x->name, y->name);
}

/* The directory lists every file sorted by name, as firmware that bisects it expects. */
static int rebuild_dir(struct fw_cfg *fc)
{
    const struct item **sorted = malloc((fc->files ? fc->files : 1) * sizeof(*sorted));
    size_t len = 4 + (size_t)fc->files * FW_CFG_DIR_ENTRY;
    uint8_t *dir = calloc(1, len);
    if (!sorted || !dir) {
        free(sorted);
        free(dir);
        return -ENOMEM;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < fc->count; i++)
        if (fc->items[i].name[0])
            sorted[n++] = &fc->items[i];
    qsort(sorted, n, sizeof(*sorted), cmp_names);
    put_be32(dir, n);
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = dir + 4 + (size_t)i * FW_CFG_DIR_ENTRY;
        put_be32(e, sorted[i]->len);
        e[4] = (uint8_t)(sorted[i]->key >> 8);
        e[5] = (uint8_t)sorted[i]->key;
        memcpy(e + 8, sorted[i]->name, strlen(sorted[i]->name));
    }
    free(sorted);
    return set_item(fc, FW_CFG_FILE_DIR, dir, (uint32_t)len);
}

struct fw_cfg *fw_cfg_new(const struct guest_memory *gm)
{
    struct fw_cfg *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    if (pthread_mutex_init(&fc->lock, NULL) != 0) {
        free(fc);
        return NULL;
    }
    fc->gm = gm;
    fc->cur = -1;
    const uint8_t id[4] = { FW_CFG_ID_TRADITIONAL | (gm ? FW_CFG_ID_DMA : 0), 0, 0, 0 };
    if (set_copy(fc, FW_CFG_SIGNATURE, "QEMU", 4) < 0 || set_copy(fc, FW_CFG_ID, id, 4) < 0 ||
        rebuild_dir(fc) < 0) {
        fw_cfg_free(fc);
        return NULL;
    }
    return fc;
}

void fw_cfg_free(struct fw_cfg *fc)
{
    if (!fc)
        return;
    for (unsigned i = 0; i < fc->count; i++)
        free(fc->items[i].data);
    free(fc->items);
    pthread_mutex_destroy(&fc->lock);
    free(fc);
}

int fw_cfg_add_item(struct fw_cfg *fc, uint16_t key, const void *data, size_t len)
{
    uint16_t k = key & (uint16_t)~FW_CFG_ARCH_LOCAL;
    if (!fc || (len && !data) || len > UINT32_MAX || (key & SELECT_WRITE_BIT) ||
        key == FW_CFG_SIGNATURE || key == FW_CFG_ID || key == FW_CFG_FILE_DIR ||
        (!(key & FW_CFG_ARCH_LOCAL) && k >= FW_CFG_FILE_FIRST))
        return -EINVAL;
    pthread_mutex_lock(&fc->lock);
    int r = set_copy(fc, key, data, len);
    pthread_mutex_unlock(&fc->lock);
    return r;
}

static int add_file(struct fw_cfg *fc, const char *name, const void *data, size_t len,
                    bool writable, fw_cfg_write_fn on_write, void *ctx)
{
    if (!fc || !name || (len && !data) || len > UINT32_MAX)
        return -EINVAL;
    size_t nlen = strnlen(name, FW_CFG_NAME_MAX);
    if (nlen == 0 || nlen >= FW_CFG_NAME_MAX)
        return -EINVAL;
    pthread_mutex_lock(&fc->lock);
    int r = -ENOSPC;
    unsigned key = FW_CFG_FILE_FIRST + fc->files;
    if (key > FW_CFG_FILE_LAST)
        goto out;
    r = -EEXIST;
    for (unsigned i = 0; i < fc->count; i++)
        if (strcmp(fc->items[i].name, name) == 0)
            goto out;
    r = set_copy(fc, (uint16_t)key, data, len);
    if (r < 0)
        goto out;
    struct item *it = &fc->items[find(fc, (uint16_t)key)];
    memcpy(it->name, name, nlen + 1);
    it->writable = writable;
    it->on_write = on_write;
    it->ctx = ctx;
    fc->files++;
    r = rebuild_dir(fc);
    if (r < 0) {
        /* Take the file back out: the directory must list every file. */
        fc->files--;
        free(it->data);
        fc->count--;
        if (fc->cur == (int)fc->count)
            fc->cur = -1;
        goto out;
    }
    r = (int)key;
out:
    pthread_mutex_unlock(&fc->lock);
    return r;
}

int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, size_t len)
{
    return add_file(fc, name, data, len, false, NULL, NULL);
}

int fw_cfg_add_writable_file(struct fw_cfg *fc, const char *name, const void *data, size_t len,
                             fw_cfg_write_fn on_write, void *ctx)
{
    return add_file(fc, name, data, len, true, on_write, ctx);
}

/* ---- DMA ---- */

/* Whether [a, a + alen) and [b, b + blen) share a byte; neither range wraps. */
static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* The guest range a transfer touches, or NULL when it is not all RAM or covers the
 * descriptor (whose control word is written afterwards). */
static uint8_t *dma_buffer(const struct fw_cfg *fc, uint64_t desc, uint64_t addr, uint32_t len)
{
    uint8_t *p = gm_ptr(fc->gm, addr, len);
    if (!p || overlaps(addr, len, desc, DMA_DESC_LEN))
        return NULL;
    return p;
}

/* Reads past the item's end (or of no item) give zeroes, as QEMU does. */
static bool dma_read(struct fw_cfg *fc, uint64_t desc, uint64_t addr, uint32_t len)
{
    if (len == 0)
        return true;
    uint8_t *dst = dma_buffer(fc, desc, addr, len);
    if (!dst)
        return false;
    const struct item *it = selected(fc);
    uint32_t avail = it ? it->len - fc->offset : 0;
    uint32_t n = len < avail ? len : avail;
    if (n)
        memcpy(dst, it->data + fc->offset, n);
    memset(dst + n, 0, len - n);
    fc->offset += n;
    return true;
}

/* A write must stay inside a writable item: truncated writes are refused whole. */
static bool dma_write(struct fw_cfg *fc, uint64_t desc, uint64_t addr, uint32_t len)
{
    struct item *it = selected(fc);
    if (!it || !it->writable || len > it->len - fc->offset)
        return false;
    if (len == 0)
        return true;
    const uint8_t *src = dma_buffer(fc, desc, addr, len);
    if (!src)
        return false;
    memcpy(it->data + fc->offset, src, len);
    uint32_t at = fc->offset;
    fc->offset += len;
    if (it->on_write)
        it->on_write(it->ctx, it->data, at, len);
    return true;
}

static void dma_skip(struct fw_cfg *fc, uint32_t len)
{
    const struct item *it = selected(fc);
    uint32_t avail = it ? it->len - fc->offset : 0;
    fc->offset += len < avail ? len : avail;
}

/* Runs the descriptor at desc and writes its control word back: 0, or the error bit.
 * The copy is a memcpy bounded by the item, so it is done here, on the vCPU thread. */
static void dma_run(struct fw_cfg *fc, uint64_t desc)
{
    uint8_t d[DMA_DESC_LEN];
    uint32_t status = FW_CFG_DMA_ERROR;
    if (gm_read(fc->gm, desc, d, sizeof(d)) == 0) {
        uint32_t control = get_be32(d), len = get_be32(d + 4);
        uint64_t addr = get_be64(d + 8);
        bool ok = true;
        if (control & FW_CFG_DMA_SELECT)
            select_key(fc, (uint16_t)(control >> 16));
        if (control & FW_CFG_DMA_READ)
            ok = dma_read(fc, desc, addr, len);
        else if (control & FW_CFG_DMA_WRITE)
            ok = dma_write(fc, desc, addr, len);
        else if (control & FW_CFG_DMA_SKIP)
            dma_skip(fc, len);
        status = ok ? 0 : FW_CFG_DMA_ERROR;
    }
    uint8_t out[4];
    put_be32(out, status);
    /* A control word outside RAM cannot be told anything: the guest sees no completion. */
    if (gm_write(fc->gm, desc, out, sizeof(out)) < 0)
        return;
}

/* ---- ports ---- */

static void fw_cfg_io_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct fw_cfg *fc = dev;
    uint8_t *out = data;
    memset(out, 0xff, size);
    pthread_mutex_lock(&fc->lock);
    if (offset == FW_CFG_IO_DATA && size == 1) {
        const struct item *it = selected(fc);
        out[0] = 0;
        if (it && fc->offset < it->len)
            out[0] = it->data[fc->offset++];
    } else if (fc->gm) {
        /* The DMA register reads back as the signature, for detection. */
        for (unsigned i = 0; i < size; i++) {
            uint64_t o = offset + i;
            if (o >= FW_CFG_IO_DMA && o < FW_CFG_IO_DMA + 8)
                out[i] = (uint8_t)(FW_CFG_DMA_SIGNATURE >> (8 * (7 - (o - FW_CFG_IO_DMA))));
        }
    }
    pthread_mutex_unlock(&fc->lock);
}

static void fw_cfg_io_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct fw_cfg *fc = dev;
    const uint8_t *in = data;
    pthread_mutex_lock(&fc->lock);
    if (offset == FW_CFG_IO_SELECTOR && size == 2) {
        select_key(fc, (uint16_t)(in[0] | in[1] << 8));
    } else if (fc->gm && offset == FW_CFG_IO_DMA && size == 4) {
        memcpy(fc->dma_reg, in, 4); /* the high half; the low half starts the transfer */
    } else if (fc->gm && ((offset == FW_CFG_IO_DMA + 4 && size == 4) ||
                          (offset == FW_CFG_IO_DMA && size == 8))) {
        memcpy(fc->dma_reg + 8 - size, in, size);
        uint64_t desc = get_be64(fc->dma_reg);
        memset(fc->dma_reg, 0, sizeof(fc->dma_reg)); /* 0 again after each operation */
        dma_run(fc, desc);
    }
    /* Data port writes have been ignored since QEMU 2.4; writes go through DMA. */
    pthread_mutex_unlock(&fc->lock);
}

const struct bus_device_ops fw_cfg_io_ops = {
    .read = fw_cfg_io_read,
    .write = fw_cfg_io_write,
};
