#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus)
{
    memset(bus, 0, sizeof(*bus));
}

void bus_destroy(struct bus *bus)
{
    free(bus->ranges);
    memset(bus, 0, sizeof(*bus));
}

int bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct bus_device_ops *ops,
            void *dev)
{
    if (len == 0 || base + len < base || !ops)
        return -EINVAL;
    unsigned pos = 0;
    while (pos < bus->count && bus->ranges[pos].base < base)
        pos++;
    if (pos > 0) {
        const struct bus_range *prev = &bus->ranges[pos - 1];
        if (prev->base + prev->len > base)
            return -EEXIST;
    }
    if (pos < bus->count && base + len > bus->ranges[pos].base)
        return -EEXIST;
    if (bus->count == bus->cap) {
        unsigned cap = bus->cap ? bus->cap * 2 : 8;
        struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        bus->ranges = r;
        bus->cap = cap;
    }
    memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->count - pos) * sizeof(*bus->ranges));
    bus->ranges[pos] = (struct bus_range){ .base = base, .len = len, .ops = ops, .dev = dev };
    bus->count++;
    return 0;
}

static const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, unsigned size)
{
    unsigned lo = 0, hi = bus->count;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];
        if (addr < r->base)
            hi = mid;
        else if (addr - r->base >= r->len)
            lo = mid + 1;
        else
            /* An access straddling the end of a range belongs to nobody. */
            return (addr - r->base + size <= r->len) ? r : NULL;
    }
    return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned size)
{
    const struct bus_range *r = bus_find(bus, addr, size);
    if (!r || !r->ops->read) {
        memset(data, 0xff, size);
        return r != NULL;
    }
    r->ops->read(r->dev, addr - r->base, data, size);
    return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned size)
{
    const struct bus_range *r = bus_find(bus, addr, size);
    if (!r)
        return false;
    if (r->ops->write)
        r->ops->write(r->dev, addr - r->base, data, size);
    return true;
}
