#include "arch/x86/pci_cf8.h"

#include <string.h>

#define CFG_ADDR_EN   0x80000000u
#define CFG_ADDR_MASK 0x80fffffcu /* enable, bus, device, function, register */

void x86_pci_cf8_init(struct x86_pci_cf8 *p, struct pci_bus *bus,
                      const struct bus_device_ops *cf9_ops, void *cf9_dev)
{
    *p = (struct x86_pci_cf8){ .bus = bus, .cf9_ops = cf9_ops, .cf9_dev = cf9_dev };
    pthread_mutex_init(&p->lock, NULL);
}

void x86_pci_cf8_fini(struct x86_pci_cf8 *p)
{
    pthread_mutex_destroy(&p->lock);
}

static uint32_t load_le(const void *data, unsigned size)
{
    const uint8_t *b = data;
    uint32_t v = 0;
    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

static void store_le(void *data, uint32_t v, unsigned size)
{
    uint8_t *p = data;
    for (unsigned i = 0; i < size; i++)
        p[i] = i < 4 ? (uint8_t)(v >> (8 * i)) : 0xff;
}

/* CONFIG_DATA at +4..+7 with the latch enabled: the register the latch selects. */
static bool data_access(const struct x86_pci_cf8 *p, uint64_t off, unsigned size)
{
    return off >= 4 && size <= 4 && off + size <= 8 && (p->address & CFG_ADDR_EN);
}

static void cf8_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct x86_pci_cf8 *p = dev;
    if (off == 1 && size == 1) {
        if (p->cf9_ops && p->cf9_ops->read)
            p->cf9_ops->read(p->cf9_dev, 0, data, 1);
        else
            memset(data, 0xff, size);
        return;
    }
    uint32_t v = 0xffffffffu;
    pthread_mutex_lock(&p->lock);
    uint32_t a = p->address;
    if (off == 0 && size == 4)
        v = a;
    else if (data_access(p, off, size))
        v = pci_bus_config_read(p->bus, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7,
                                (a & 0xfc) + (unsigned)(off - 4), size);
    pthread_mutex_unlock(&p->lock);
    store_le(data, v, size);
}

static void cf8_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct x86_pci_cf8 *p = dev;
    if (off == 1 && size == 1) {
        if (p->cf9_ops && p->cf9_ops->write)
            p->cf9_ops->write(p->cf9_dev, 0, data, 1);
        return;
    }
    uint32_t v = load_le(data, size);
    pthread_mutex_lock(&p->lock);
    uint32_t a = p->address;
    if (off == 0 && size == 4)
        p->address = v & CFG_ADDR_MASK;
    else if (data_access(p, off, size))
        pci_bus_config_write(p->bus, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7,
                             (a & 0xfc) + (unsigned)(off - 4), v, size);
    pthread_mutex_unlock(&p->lock);
}

const struct bus_device_ops x86_pci_cf8_ops = { .read = cf8_read, .write = cf8_write };
