#include "pci/msix.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- MSI-X -------------------------------------------------------------------------- */

/* MSI messages go to the local APICs' window; anything else would be a write to RAM. */
#define MSI_ADDR_MASK 0xfff00000u
#define MSI_ADDR_BASE 0xfee00000u

struct msix_vector {
    uint32_t entry[4]; /* address low, address high, data, vector control */
    int fd;
    unsigned gsi;
    bool have_gsi;
    bool attached; /* irqfd assigned */
    bool routed;   /* the route holds address/data below */
    uint64_t route_address;
    uint32_t route_data;
};

struct msix {
    struct pci_device *d;
    struct irq_routing_ops ops;
    pthread_mutex_t lock;
    unsigned cap;
    unsigned count;
    uint32_t table_off, pba_off;
    struct msix_vector v[];
};

static uint16_t msg_control(const struct msix *x)
{
    return (uint16_t)(x->d->config[x->cap + 2] | x->d->config[x->cap + 3] << 8);
}

/* Brings vector i's routing and irqfd in line with the guest's view (lock held). A failed
 * KVM call leaves the vector undelivered; the guest sees a lost interrupt, the host
 * nothing worse. */
static void sync_vector(struct msix *x, unsigned i)
{
    struct msix_vector *v = &x->v[i];
    uint16_t ctrl = msg_control(x);
    uint64_t addr = v->entry[0] | (uint64_t)v->entry[1] << 32;
    bool deliver = (ctrl & MSIX_CTRL_ENABLE) && !(ctrl & MSIX_CTRL_FMASK) &&
                   !(v->entry[3] & MSIX_VEC_MASKED) && v->have_gsi &&
                   (addr & ~(uint64_t)~MSI_ADDR_MASK) == MSI_ADDR_BASE;
    if (!deliver) {
        if (v->attached && x->ops.irqfd(x->ops.ctx, v->fd, v->gsi, false) == 0)
            v->attached = false;
        return;
    }
    if (!v->routed || v->route_address != addr || v->route_data != v->entry[2]) {
        if (x->ops.msi_route(x->ops.ctx, v->gsi, addr, v->entry[2]) < 0)
            return;
        v->routed = true;
        v->route_address = addr;
        v->route_data = v->entry[2];
    }
    if (!v->attached && x->ops.irqfd(x->ops.ctx, v->fd, v->gsi, true) == 0)
        v->attached = true;
}

static void sync_all(struct msix *x)
{
    for (unsigned i = 0; i < x->count; i++)
        sync_vector(x, i);
}

static void config_written(void *ctx, unsigned offset, unsigned size)
{
    struct msix *x = ctx;
    if (offset + size <= x->cap + 2 || offset >= x->cap + 4)
        return;
    pthread_mutex_lock(&x->lock);
    sync_all(x);
    pthread_mutex_unlock(&x->lock);
}

static bool eventfd_ready(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Lock held. A vector with its irqfd attached never shows pending: KVM consumes it. */
static bool pending_locked(struct msix *x, unsigned i)
{
    return !x->v[i].attached && eventfd_ready(x->v[i].fd);
}

static uint32_t table_dword(struct msix *x, uint64_t off)
{
    return x->v[off / MSIX_ENTRY_SIZE].entry[(off % MSIX_ENTRY_SIZE) / 4];
}

static uint32_t pba_dword(struct msix *x, uint64_t off)
{
    uint32_t v = 0;
    for (unsigned bit = 0; bit < 32; bit++) {
        uint64_t vec = off * 8 + bit;
        if (vec < x->count && pending_locked(x, (unsigned)vec))
            v |= 1u << bit;
    }
    return v;
}

static uint64_t pba_size(const struct msix *x)
{
    return ((uint64_t)x->count + 63) / 64 * 8;
}

/* Reads of any size inside one qword of the table or PBA; the spec allows only dword
 * and aligned qword accesses, but reading more leniently costs nothing. */
bool msix_bar_read(struct msix *x, uint64_t off, void *data, unsigned size)
{
    uint64_t tsize = (uint64_t)x->count * MSIX_ENTRY_SIZE;
    bool in_table = off >= x->table_off && off - x->table_off < tsize;
    bool in_pba = off >= x->pba_off && off - x->pba_off < pba_size(x);
    if (!in_table && !in_pba)
        return false;
    uint64_t rel = off - (in_table ? x->table_off : x->pba_off);
    uint64_t limit = in_table ? tsize : pba_size(x);
    uint8_t *out = data;
    memset(out, 0xff, size);
    if (size > 8 || (rel & 7) + size > 8 || rel + size > limit)
        return true;
    pthread_mutex_lock(&x->lock);
    uint64_t q = rel & ~7ull;
    uint64_t val = in_table ? table_dword(x, q) | (uint64_t)table_dword(x, q + 4) << 32
                            : pba_dword(x, q) | (uint64_t)pba_dword(x, q + 4) << 32;
    pthread_mutex_unlock(&x->lock);
    for (unsigned i = 0; i < size; i++)
        out[i] = (uint8_t)(val >> (8 * ((rel & 7) + i)));
    return true;
}

static void write_table_dword(struct msix *x, uint64_t off, uint32_t val)
{
    unsigned i = (unsigned)(off / MSIX_ENTRY_SIZE), reg = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;
    if (reg == 3)
        val &= MSIX_VEC_MASKED; /* the other vector-control bits are reserved */
    x->v[i].entry[reg] = val;
    sync_vector(x, i);
}

/* Writes: dword or aligned qword to the table; the PBA is read-only. */
bool msix_bar_write(struct msix *x, uint64_t off, const void *data, unsigned size)
{
    uint64_t tsize = (uint64_t)x->count * MSIX_ENTRY_SIZE;
    bool in_table = off >= x->table_off && off - x->table_off < tsize;
    bool in_pba = off >= x->pba_off && off - x->pba_off < pba_size(x);
    if (!in_table)
        return in_pba;
    uint64_t rel = off - x->table_off;
    if (!((size == 4 && !(rel & 3)) || (size == 8 && !(rel & 7))))
        return true;
    const uint8_t *p = data;
    uint32_t lo =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    pthread_mutex_lock(&x->lock);
    write_table_dword(x, rel, lo);
    if (size == 8) {
        uint32_t hi =
            (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        write_table_dword(x, rel + 4, hi);
    }
    pthread_mutex_unlock(&x->lock);
    return true;
}

static void bar_read(void *dev, uint64_t off, void *data, unsigned size)
{
    if (!msix_bar_read(dev, off, data, size))
        memset(data, 0xff, size);
}

static void bar_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    (void)msix_bar_write(dev, off, data, size);
}

const struct bus_device_ops msix_bar_ops = { .read = bar_read, .write = bar_write };

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

void msix_free(struct msix *x)
{
    if (!x)
        return;
    for (unsigned i = 0; i < x->count; i++) {
        struct msix_vector *v = &x->v[i];
        if (v->attached)
            (void)x->ops.irqfd(x->ops.ctx, v->fd, v->gsi, false);
        if (v->have_gsi)
            x->ops.gsi_free(x->ops.ctx, v->gsi);
        if (v->fd >= 0)
            close(v->fd);
    }
    pthread_mutex_destroy(&x->lock);
    free(x);
}

int msix_new(struct pci_device *d, unsigned nvectors, unsigned bar, uint32_t table_offset,
             uint32_t pba_offset, const struct irq_routing_ops *ops, struct msix **out)
{
    if (!d || !ops || !out || !ops->gsi_alloc || !ops->gsi_free || !ops->msi_route || !ops->irqfd ||
        nvectors < 1 || nvectors > MSIX_MAX_VECTORS || bar >= PCI_BAR_COUNT || (table_offset & 7) ||
        (pba_offset & 7) || d->bus)
        return -EINVAL;
    const struct pci_bar *b = &d->bars[bar];
    if (b->type != PCI_BAR_MEM32 && b->type != PCI_BAR_MEM64)
        return -EINVAL;
    uint64_t tsize = (uint64_t)nvectors * MSIX_ENTRY_SIZE,
             psize = ((uint64_t)nvectors + 63) / 64 * 8;
    if (table_offset + tsize > b->size || pba_offset + psize > b->size ||
        ranges_overlap(table_offset, tsize, pba_offset, psize))
        return -EINVAL;

    struct msix *x = calloc(1, sizeof(*x) + nvectors * sizeof(x->v[0]));
    if (!x)
        return -ENOMEM;
    if (pthread_mutex_init(&x->lock, NULL) != 0) {
        free(x);
        return -ENOMEM;
    }
    x->d = d;
    x->ops = *ops;
    x->count = nvectors;
    x->table_off = table_offset;
    x->pba_off = pba_offset;
    for (unsigned i = 0; i < nvectors; i++) {
        x->v[i].fd = -1;
        x->v[i].entry[3] = MSIX_VEC_MASKED;
    }
    int r;
    for (unsigned i = 0; i < nvectors; i++) {
        x->v[i].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (x->v[i].fd < 0) {
            r = -errno;
            goto fail;
        }
        if ((r = ops->gsi_alloc(ops->ctx, &x->v[i].gsi)) < 0)
            goto fail;
        x->v[i].have_gsi = true;
    }

    uint8_t body[10];
    uint16_t ctrl = (uint16_t)(nvectors - 1);
    body[0] = (uint8_t)ctrl;
    body[1] = (uint8_t)(ctrl >> 8);
    uint32_t t = table_offset | bar, p = pba_offset | bar;
    for (unsigned i = 0; i < 4; i++) {
        body[2 + i] = (uint8_t)(t >> (8 * i));
        body[6 + i] = (uint8_t)(p >> (8 * i));
    }
    int cap = pci_device_add_capability(d, PCI_CAP_ID_MSIX, body, sizeof(body));
    if (cap < 0) {
        r = cap;
        goto fail;
    }
    x->cap = (unsigned)cap;
    struct pci_config_hook hook = { .written = config_written, .ctx = x };
    if ((r = pci_device_add_config_hook(d, &hook)) < 0)
        goto fail; /* the capability stays in d's config space; d is unusable anyway */
    const uint8_t wmask[2] = { 0x00, (uint8_t)((MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8) };
    pci_device_set_wmask(d, x->cap + 2, wmask, sizeof(wmask));
    *out = x;
    return 0;
fail:
    msix_free(x);
    return r;
}

unsigned msix_cap_offset(const struct msix *x)
{
    return x ? x->cap : 0;
}

bool msix_enabled(const struct msix *x)
{
    if (!x)
        return false;
    uint16_t c = msg_control(x);
    return (c & MSIX_CTRL_ENABLE) && !(c & MSIX_CTRL_FMASK);
}

int msix_vector_fd(const struct msix *x, unsigned vector)
{
    return x && vector < x->count ? x->v[vector].fd : -1;
}

int msix_notify(struct msix *x, unsigned vector)
{
    if (!x || vector >= x->count)
        return -EINVAL;
    uint64_t one = 1;
    if (write(x->v[vector].fd, &one, sizeof(one)) != sizeof(one))
        return errno == EAGAIN ? 0 : -errno; /* EAGAIN: the counter is full, still pending */
    return 0;
}

bool msix_pending(struct msix *x, unsigned vector)
{
    if (!x || vector >= x->count)
        return false;
    pthread_mutex_lock(&x->lock);
    bool p = pending_locked(x, vector);
    pthread_mutex_unlock(&x->lock);
    return p;
}
