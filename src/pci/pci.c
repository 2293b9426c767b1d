#include "pci/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CAP_START    0x40
#define CAP_LIMIT    0x100 /* capabilities live in the first 256 bytes */
#define BAR_IO       0x1u
#define BAR_MEM64    0x4u
#define BAR_PREFETCH 0x8u
#define MAX_MAPS     (PCI_MAX_SLOTS * PCI_BAR_COUNT)

/* One decoded BAR: where the guest put it and who answers. */
struct pci_map {
    uint64_t base, size;
    bool io;
    const struct pci_bar *bar;
};

struct pci_bus {
    pthread_rwlock_t lock;
    struct pci_windows win;
    struct pci_device bridge;
    struct pci_device *slots[PCI_MAX_SLOTS];
    uint64_t next_mmio32, next_mmio64, next_io; /* firmware-style bump allocators */
    struct pci_map maps[MAX_MAPS];
    unsigned map_count;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

void pci_device_init(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
    memset(d, 0, sizeof(*d));
    put16(d->config + PCI_VENDOR_ID, vendor);
    put16(d->config + PCI_DEVICE_ID, device);
    d->config[PCI_REVISION_ID] = revision;
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    d->config[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
    d->config[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
    put16(d->config + PCI_SUBSYSTEM_VENDOR, subsys_vendor);
    put16(d->config + PCI_SUBSYSTEM_ID, subsys_id);
    put16(d->wmask + PCI_COMMAND,
          PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_OFF);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff; /* scratch for the OS */
    d->cap_end = CAP_START;
}

int pci_device_add_bar(struct pci_device *d, unsigned index, enum pci_bar_type type, uint64_t size,
                       bool prefetchable, const struct bus_device_ops *ops, void *dev)
{
    if (!d || index >= PCI_BAR_COUNT || !is_pow2(size))
        return -EINVAL;
    unsigned slots = type == PCI_BAR_MEM64 ? 2 : 1;
    if (index + slots > PCI_BAR_COUNT)
        return -EINVAL;
    switch (type) {
    case PCI_BAR_IO:
        if (size < 4 || size > 0x10000 || prefetchable)
            return -EINVAL;
        break;
    case PCI_BAR_MEM32:
        if (size < 16 || size > 0x80000000ULL)
            return -EINVAL;
        break;
    case PCI_BAR_MEM64:
        if (size < 16 || size > PCI_BAR_MAX_SIZE64)
            return -EINVAL;
        break;
    default: return -EINVAL;
    }
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        const struct pci_bar *b = &d->bars[i];
        unsigned end = i + (b->type == PCI_BAR_MEM64 ? 2 : 1);
        if (b->type != PCI_BAR_NONE && index < end && i < index + slots)
            return -EEXIST;
    }
    d->bars[index] = (struct pci_bar){
        .type = type, .size = size, .prefetchable = prefetchable, .ops = ops, .dev = dev
    };
    uint8_t *reg = d->config + PCI_BAR0 + 4 * index;
    uint8_t *mask = d->wmask + PCI_BAR0 + 4 * index;
    if (type == PCI_BAR_IO) {
        put32(reg, BAR_IO);
        put32(mask, (uint32_t) ~(size - 1));
        return 0;
    }
    put32(reg, (type == PCI_BAR_MEM64 ? BAR_MEM64 : 0) | (prefetchable ? BAR_PREFETCH : 0));
    put32(mask, (uint32_t) ~(size - 1));
    if (type == PCI_BAR_MEM64)
        put32(mask + 4, (uint32_t)(~(size - 1) >> 32));
    return 0;
}

int pci_device_add_capability(struct pci_device *d, uint8_t id, const void *body, size_t len)
{
    if (!d || (len && !body))
        return -EINVAL;
    unsigned at = d->cap_end;
    if (len > CAP_LIMIT || at + 2 + len > CAP_LIMIT)
        return -ENOSPC;
    d->config[at] = id;
    d->config[at + 1] = 0;
    if (len)
        memcpy(d->config + at + 2, body, len);
    if (d->last_cap)
        d->config[d->last_cap + 1] = (uint8_t)at;
    else
        d->config[PCI_CAPABILITY_LIST] = (uint8_t)at;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->last_cap = (uint8_t)at;
    d->cap_end = (at + 2 + (unsigned)len + 3) & ~3u;
    return (int)at;
}

void pci_device_set_wmask(struct pci_device *d, unsigned offset, const void *mask, size_t len)
{
    if (!d || !mask || offset >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - offset)
        return;
    const uint8_t *m = mask;
    for (size_t i = 0; i < len; i++)
        d->wmask[offset + i] |= m[i];
}

void pci_device_set_interrupt_pin(struct pci_device *d, uint8_t pin)
{
    if (d && pin <= 4)
        d->config[PCI_INTERRUPT_PIN] = pin;
}

int pci_device_add_config_hook(struct pci_device *d, const struct pci_config_hook *hook)
{
    if (!d || !hook || (!hook->written && !hook->reading))
        return -EINVAL;
    if (d->hook_count == PCI_MAX_CONFIG_HOOKS)
        return -ENOSPC;
    d->hooks[d->hook_count++] = *hook;
    return 0;
}

uint64_t pci_bar_address(const struct pci_device *d, unsigned index)
{
    if (!d || index >= PCI_BAR_COUNT)
        return 0;
    const struct pci_bar *b = &d->bars[index];
    const uint8_t *reg = d->config + PCI_BAR0 + 4 * index;
    switch (b->type) {
    case PCI_BAR_IO: return get32(reg) & ~3u;
    case PCI_BAR_MEM32: return get32(reg) & ~0xfu;
    case PCI_BAR_MEM64: return (get32(reg) & ~0xfu) | (uint64_t)get32(reg + 4) << 32;
    default: return 0;
    }
}

/* ---- decoding ----------------------------------------------------------------------- */

static bool inside(uint64_t base, uint64_t size, uint64_t wbase, uint64_t wsize)
{
    return wsize && base >= wbase && base - wbase < wsize && size <= wsize - (base - wbase);
}

/* Rebuilds the table of decoded BARs after a command or BAR change (write lock held). A
 * BAR is decoded when its space is enabled and it lies wholly inside a window. */
static void rebuild_maps(struct pci_bus *b)
{
    const struct pci_windows *w = &b->win;
    b->map_count = 0;
    for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
        const struct pci_device *d = b->slots[s];
        if (!d)
            continue;
        uint16_t cmd = (uint16_t)(d->config[PCI_COMMAND] | d->config[PCI_COMMAND + 1] << 8);
        for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
            const struct pci_bar *bar = &d->bars[i];
            bool io = bar->type == PCI_BAR_IO;
            if (bar->type == PCI_BAR_NONE || !(cmd & (io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)))
                continue;
            uint64_t at = pci_bar_address(d, i);
            bool ok = io ? inside(at, bar->size, w->io_base, w->io_size)
                         : inside(at, bar->size, w->mmio32_base, w->mmio32_size) ||
                               inside(at, bar->size, w->mmio64_base, w->mmio64_size);
            if (ok && b->map_count < MAX_MAPS)
                b->maps[b->map_count++] =
                    (struct pci_map){ .base = at, .size = bar->size, .io = io, .bar = bar };
        }
    }
}

static const struct pci_map *find_map(const struct pci_bus *b, bool io, uint64_t addr,
                                      unsigned size)
{
    for (unsigned i = 0; i < b->map_count; i++) {
        const struct pci_map *m = &b->maps[i];
        if (m->io == io && addr >= m->base && addr - m->base < m->size)
            return size <= m->size - (addr - m->base) ? m : NULL;
    }
    return NULL;
}

static void window_read(struct pci_bus *b, bool io, uint64_t addr, void *data, unsigned size)
{
    pthread_rwlock_rdlock(&b->lock);
    const struct pci_map *m = find_map(b, io, addr, size);
    if (m && m->bar->ops && m->bar->ops->read)
        m->bar->ops->read(m->bar->dev, addr - m->base, data, size);
    else
        memset(data, 0xff, size);
    pthread_rwlock_unlock(&b->lock);
}

static void window_write(struct pci_bus *b, bool io, uint64_t addr, const void *data, unsigned size)
{
    pthread_rwlock_rdlock(&b->lock);
    const struct pci_map *m = find_map(b, io, addr, size);
    if (m && m->bar->ops && m->bar->ops->write)
        m->bar->ops->write(m->bar->dev, addr - m->base, data, size);
    pthread_rwlock_unlock(&b->lock);
}

static void mmio32_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_read(b, false, b->win.mmio32_base + off, data, size);
}

static void mmio32_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_write(b, false, b->win.mmio32_base + off, data, size);
}

static void mmio64_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_read(b, false, b->win.mmio64_base + off, data, size);
}

static void mmio64_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_write(b, false, b->win.mmio64_base + off, data, size);
}

static void io_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_read(b, true, b->win.io_base + off, data, size);
}

static void io_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct pci_bus *b = dev;
    window_write(b, true, b->win.io_base + off, data, size);
}

const struct bus_device_ops pci_mmio32_window_ops = { .read = mmio32_read, .write = mmio32_write };
const struct bus_device_ops pci_mmio64_window_ops = { .read = mmio64_read, .write = mmio64_write };
const struct bus_device_ops pci_io_window_ops = { .read = io_read, .write = io_write };

/* ---- config space ------------------------------------------------------------------- */

static bool cfg_range_ok(unsigned offset, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && offset < PCI_CONFIG_SIZE &&
           size <= PCI_CONFIG_SIZE - offset;
}

static uint32_t cfg_read_locked(struct pci_device *d, unsigned offset, unsigned size)
{
    if (!cfg_range_ok(offset, size))
        return 0xffffffffu;
    for (unsigned i = 0; i < d->hook_count; i++)
        if (d->hooks[i].reading)
            d->hooks[i].reading(d->hooks[i].ctx, offset, size);
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)d->config[offset + i] << (8 * i);
    return v;
}

static void cfg_write_locked(struct pci_device *d, unsigned offset, uint32_t value, unsigned size)
{
    if (!cfg_range_ok(offset, size))
        return;
    for (unsigned i = 0; i < size; i++) {
        uint8_t m = d->wmask[offset + i];
        uint8_t v = (uint8_t)(value >> (8 * i));
        d->config[offset + i] = (uint8_t)((d->config[offset + i] & ~m) | (v & m));
    }
    bool decode = offset < PCI_BAR0 + 4 * PCI_BAR_COUNT && offset + size > PCI_COMMAND;
    if (decode && d->bus)
        rebuild_maps(d->bus);
    for (unsigned i = 0; i < d->hook_count; i++)
        if (d->hooks[i].written)
            d->hooks[i].written(d->hooks[i].ctx, offset, size);
}

uint32_t pci_config_read(struct pci_device *d, unsigned offset, unsigned size)
{
    if (!d)
        return 0xffffffffu;
    struct pci_bus *b = d->bus;
    if (b)
        pthread_rwlock_wrlock(&b->lock);
    uint32_t v = cfg_read_locked(d, offset, size);
    if (b)
        pthread_rwlock_unlock(&b->lock);
    return v;
}

void pci_config_write(struct pci_device *d, unsigned offset, uint32_t value, unsigned size)
{
    if (!d)
        return;
    struct pci_bus *b = d->bus;
    if (b)
        pthread_rwlock_wrlock(&b->lock);
    cfg_write_locked(d, offset, value, size);
    if (b)
        pthread_rwlock_unlock(&b->lock);
}

static uint32_t load_le(const void *data, unsigned size)
{
    const uint8_t *p = data;
    uint32_t v = 0;
    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void store_le(void *data, uint32_t v, unsigned size)
{
    uint8_t *p = data;
    for (unsigned i = 0; i < size; i++)
        p[i] = i < 4 ? (uint8_t)(v >> (8 * i)) : 0xff;
}

/* The function at (bus 0) device/function; only function 0 of each slot exists. */
static struct pci_device *lookup(struct pci_bus *b, unsigned bus, unsigned dev, unsigned fn)
{
    if (bus != 0 || fn != 0 || dev >= PCI_MAX_SLOTS)
        return NULL;
    return b->slots[dev];
}

uint32_t pci_bus_config_read(struct pci_bus *b, unsigned bus, unsigned dev, unsigned fn,
                             unsigned reg, unsigned size)
{
    uint32_t v = 0xffffffffu;
    pthread_rwlock_wrlock(&b->lock);
    struct pci_device *d = lookup(b, bus, dev, fn);
    if (d)
        v = cfg_read_locked(d, reg, size);
    pthread_rwlock_unlock(&b->lock);
    return v;
}

void pci_bus_config_write(struct pci_bus *b, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                          uint32_t value, unsigned size)
{
    pthread_rwlock_wrlock(&b->lock);
    struct pci_device *d = lookup(b, bus, dev, fn);
    if (d)
        cfg_write_locked(d, reg, value, size);
    pthread_rwlock_unlock(&b->lock);
}

/* ECAM: offset = bus << 20 | device << 15 | function << 12 | register. 8-byte accesses
 * act as two dword accesses. */
static void ecam_access(struct pci_bus *b, uint64_t off, void *data, unsigned size, bool write)
{
    if (size == 8) {
        ecam_access(b, off, data, 4, write);
        ecam_access(b, off + 4, (uint8_t *)data + 4, 4, write);
        return;
    }
    unsigned bus = (unsigned)(off >> 20), dev = (off >> 15) & 0x1f, fn = (off >> 12) & 7;
    unsigned reg = off & 0xfff;
    if (write)
        pci_bus_config_write(b, bus, dev, fn, reg, load_le(data, size), size);
    else
        store_le(data, pci_bus_config_read(b, bus, dev, fn, reg, size), size);
}

static void ecam_read(void *dev, uint64_t off, void *data, unsigned size)
{
    ecam_access(dev, off, data, size, false);
}

static void ecam_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    ecam_access(dev, off, (void *)data, size, true);
}

const struct bus_device_ops pci_ecam_ops = { .read = ecam_read, .write = ecam_write };

/* ---- the bus ------------------------------------------------------------------------ */

static bool window_ok(uint64_t base, uint64_t size)
{
    return size == 0 || base + size > base;
}

struct pci_bus *pci_bus_new(const struct pci_windows *w)
{
    if (!w || !w->mmio32_size || !window_ok(w->mmio32_base, w->mmio32_size) ||
        !window_ok(w->mmio64_base, w->mmio64_size) ||
        (w->io_size && (uint64_t)w->io_base + w->io_size > 0x10000))
        return NULL;
    struct pci_bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (pthread_rwlock_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    b->win = *w;
    b->next_mmio32 = w->mmio32_base;
    b->next_mmio64 = w->mmio64_base;
    b->next_io = w->io_base;
    pci_device_init(&b->bridge, PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE,
                    PCI_CLASS_HOST_BRIDGE, 0, PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE);
    b->bridge.bus = b;
    b->slots[0] = &b->bridge;
    return b;
}

void pci_bus_free(struct pci_bus *b)
{
    if (!b)
        return;
    for (unsigned s = 1; s < PCI_MAX_SLOTS; s++)
        if (b->slots[s])
            b->slots[s]->bus = NULL;
    pthread_rwlock_destroy(&b->lock);
    free(b);
}

/* Bumps *next to the next naturally aligned block of size inside the window. */
static int alloc_from(uint64_t *next, uint64_t wbase, uint64_t wsize, uint64_t size, uint64_t *out)
{
    uint64_t at = (*next + size - 1) & ~(size - 1);
    if (at < *next || !inside(at, size, wbase, wsize))
        return -ENOSPC;
    *out = at;
    *next = at + size;
    return 0;
}

void pci_bus_set_host_bridge_id(struct pci_bus *b, uint16_t vendor, uint16_t device,
                                uint8_t revision)
{
    if (!b)
        return;
    put16(b->bridge.config + PCI_VENDOR_ID, vendor);
    put16(b->bridge.config + PCI_DEVICE_ID, device);
    b->bridge.config[PCI_REVISION_ID] = revision;
    put16(b->bridge.config + PCI_SUBSYSTEM_VENDOR, 0);
    put16(b->bridge.config + PCI_SUBSYSTEM_ID, 0);
}

struct pci_device *pci_bus_host_bridge(struct pci_bus *b)
{
    return b ? &b->bridge : NULL;
}

int pci_bus_add_device(struct pci_bus *b, struct pci_device *d)
{
    return pci_bus_add_device_at(b, d, 0);
}

int pci_bus_add_device_at(struct pci_bus *b, struct pci_device *d, unsigned want)
{
    if (!b || !d || d->bus || want >= PCI_MAX_SLOTS)
        return -EINVAL;
    unsigned slot = want;
    if (want == 0) {
        slot = 1;
        while (slot < PCI_MAX_SLOTS && b->slots[slot])
            slot++;
    } else if (b->slots[want]) {
        return -EEXIST;
    }
    if (slot == PCI_MAX_SLOTS)
        return -ENOSPC;

    /* Allocate on copies of the bump pointers: a device that does not fit takes nothing. */
    uint64_t n32 = b->next_mmio32, n64 = b->next_mmio64, nio = b->next_io;
    uint64_t addr[PCI_BAR_COUNT] = { 0 };
    const struct pci_windows *w = &b->win;
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        const struct pci_bar *bar = &d->bars[i];
        int r = 0;
        switch (bar->type) {
        case PCI_BAR_NONE: continue;
        case PCI_BAR_IO: r = alloc_from(&nio, w->io_base, w->io_size, bar->size, &addr[i]); break;
        case PCI_BAR_MEM32:
            r = alloc_from(&n32, w->mmio32_base, w->mmio32_size, bar->size, &addr[i]);
            break;
        case PCI_BAR_MEM64:
            if (w->mmio64_size)
                r = alloc_from(&n64, w->mmio64_base, w->mmio64_size, bar->size, &addr[i]);
            else
                r = alloc_from(&n32, w->mmio32_base, w->mmio32_size, bar->size, &addr[i]);
            break;
        }
        if (r < 0)
            return r;
    }

    pthread_rwlock_wrlock(&b->lock);
    b->next_mmio32 = n32;
    b->next_mmio64 = n64;
    b->next_io = nio;
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        uint8_t *reg = d->config + PCI_BAR0 + 4 * i;
        if (d->bars[i].type == PCI_BAR_NONE)
            continue;
        uint32_t flags = get32(reg) & (d->bars[i].type == PCI_BAR_IO ? 3u : 0xfu);
        put32(reg, (uint32_t)addr[i] | flags);
        if (d->bars[i].type == PCI_BAR_MEM64)
            put32(reg + 4, (uint32_t)(addr[i] >> 32));
    }
    /* What firmware writes for the OS: the GSI the _PRT gives this slot's pin. */
    uint8_t pin = d->config[PCI_INTERRUPT_PIN];
    if (pin)
        d->config[PCI_INTERRUPT_LINE] = (uint8_t)(w->intx_gsi + ((slot + pin - 1) & 3));
    d->bus = b;
    d->slot = slot;
    b->slots[slot] = d;
    rebuild_maps(b);
    pthread_rwlock_unlock(&b->lock);
    return (int)slot;
}

struct pci_device *pci_bus_device(struct pci_bus *b, unsigned slot)
{
    if (!b || slot >= PCI_MAX_SLOTS)
        return NULL;
    return b->slots[slot];
}

const struct pci_windows *pci_bus_windows(const struct pci_bus *b)
{
    return b ? &b->win : NULL;
}
