/* Port I/O and MMIO dispatch: a sorted table of address ranges, each owned by a
 * device. Registration happens while the machine is built; afterwards the table is
 * read-only, so vCPU threads look it up without a lock. Devices that keep state
 * touched from several threads lock it themselves. */
#ifndef VMK_CORE_BUS_H
#define VMK_CORE_BUS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct bus_device_ops {
    /* offset is relative to the registered base; size is 1, 2, 4 or 8. A read
     * must fill all size bytes of data (little-endian). */
    void (*read)(void *dev, uint64_t offset, void *data, unsigned size);
    void (*write)(void *dev, uint64_t offset, const void *data, unsigned size);
};

struct bus_range {
    uint64_t base;
    uint64_t len;
    const struct bus_device_ops *ops;
    void *dev;
};

struct bus {
    struct bus_range *ranges;
    unsigned count;
    unsigned cap;
};

/* For a device that is one byte-wide register: a read of any width yields all ones
 * but for the byte at offset 0. Returns where that byte goes, or NULL when the access
 * does not cover it (nothing more to do). */
static inline uint8_t *bus_byte_register_read(uint64_t offset, void *data, unsigned size)
{
    if (size == 0)
        return NULL;
    memset(data, 0xff, size);
    return offset == 0 ? data : NULL;
}

void bus_init(struct bus *bus);
void bus_destroy(struct bus *bus);
/* Returns 0, -EEXIST when the range overlaps one already registered, -EINVAL for
 * an empty or wrapping range, -ENOMEM. */
int bus_add(struct bus *bus, uint64_t base, uint64_t len, const struct bus_device_ops *ops,
            void *dev) __attribute__((warn_unused_result));
/* Returns false when no device claims the access; a read then yields all ones. */
bool bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned size);
bool bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned size);

#endif
