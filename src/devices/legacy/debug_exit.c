#include "devices/legacy/debug_exit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Nothing here changes after debug_exit_new, so no lock is needed. */
struct debug_exit {
    struct machine_events ev;
};

static void debug_exit_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    memset(data, 0xff, size);
}

static void debug_exit_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    const struct debug_exit *d = dev;
    const uint8_t *in = data;
    uint32_t value = 0;
    if (size == 0 || !d->ev.debug_exit)
        return;
    for (unsigned i = 0; i < size && i < 4; i++)
        value |= (uint32_t)in[i] << (8 * i);
    d->ev.debug_exit(d->ev.ctx, value);
}

const struct bus_device_ops debug_exit_bus_ops = {
    .read = debug_exit_read,
    .write = debug_exit_write,
};

struct debug_exit *debug_exit_new(const struct machine_events *ev)
{
    struct debug_exit *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (ev)
        d->ev = *ev;
    return d;
}

void debug_exit_free(struct debug_exit *d)
{
    free(d);
}
