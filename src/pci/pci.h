/* A PCI root bus 0: a host bridge at 00:00.0 and up to 31 device slots (one function each),
 * config space through ECAM (and through whatever port mechanism the platform adds with
 * pci_bus_config_read/write: arch/x86/pci_cf8.c), and BAR decoding inside the bridge's
 * windows.
 *
 * The bus registers each window once on the machine's MMIO (or PIO) bus and decodes BARs
 * inside it itself, under its own lock: so a BAR the guest moves needs no change to the
 * lock-free machine buses. A BAR the guest programs outside the windows is not decoded
 * (as behind a real host bridge). Locking: config accesses take the bus lock for writing,
 * BAR accesses for reading; a BAR handler runs with the read lock held and must not
 * access config space. */
#ifndef VMK_PCI_PCI_H
#define VMK_PCI_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"

#define PCI_CONFIG_SIZE    4096 /* PCIe extended config space */
#define PCI_BAR_COUNT      6
#define PCI_MAX_SLOTS      32           /* slot 0 is the host bridge */
#define PCI_BAR_MAX_SIZE64 (1ULL << 34) /* 16 GiB: the largest 64-bit BAR we place */

/* vmkit holds no PCI-SIG vendor id. The host bridge uses Red Hat's id for a generic
 * ECAM host bridge (QEMU's "gpex", 1b36:0008): no guest driver binds to it and Linux has
 * no quirk for it, which is what a generic bridge needs; one place to change it. */
#define PCI_HOST_BRIDGE_VENDOR 0x1b36
#define PCI_HOST_BRIDGE_DEVICE 0x0008
#define PCI_CLASS_HOST_BRIDGE  0x060000

/* Standard config-space offsets and bits. */
#define PCI_VENDOR_ID        0x00
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04
#define PCI_STATUS           0x06
#define PCI_REVISION_ID      0x08
#define PCI_CLASS_PROG       0x09
#define PCI_HEADER_TYPE      0x0e
#define PCI_BAR0             0x10
#define PCI_SUBSYSTEM_VENDOR 0x2c
#define PCI_SUBSYSTEM_ID     0x2e
#define PCI_CAPABILITY_LIST  0x34
#define PCI_INTERRUPT_LINE   0x3c
#define PCI_INTERRUPT_PIN    0x3d
#define PCI_COMMAND_IO       0x0001
#define PCI_COMMAND_MEMORY   0x0002
#define PCI_COMMAND_MASTER   0x0004
#define PCI_COMMAND_INTX_OFF 0x0400
#define PCI_STATUS_CAP_LIST  0x0010
#define PCI_CAP_ID_MSIX      0x11
#define PCI_CAP_ID_VENDOR    0x09

enum pci_bar_type {
    PCI_BAR_NONE = 0,
    PCI_BAR_IO,    /* 32-bit I/O space */
    PCI_BAR_MEM32, /* 32-bit memory, allocated below 4 GiB */
    PCI_BAR_MEM64, /* 64-bit memory (takes two BAR slots), allocated above RAM */
};

struct pci_bar {
    enum pci_bar_type type;
    uint64_t size; /* a power of two; 0 when unused */
    bool prefetchable;
    const struct bus_device_ops *ops; /* offsets relative to the BAR's start */
    void *dev;
};

struct pci_bus;

/* written runs after the guest wrote config space [offset, offset + size), reading
 * before the guest reads it (so the hook can refresh d->config), both with the bus lock
 * held: use d->config directly, never pci_config_read/write. Either may be NULL. */
struct pci_config_hook {
    void (*written)(void *ctx, unsigned offset, unsigned size);
    void (*reading)(void *ctx, unsigned offset, unsigned size);
    void *ctx;
};
#define PCI_MAX_CONFIG_HOOKS 4

/* A function on bus 0. Embed it in a device; fill it with pci_device_init and the
 * calls below before pci_bus_add_device, and leave the fields alone afterwards. */
struct pci_device {
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE]; /* 1 bits: the guest may change them */
    struct pci_bar bars[PCI_BAR_COUNT];
    struct pci_config_hook hooks[PCI_MAX_CONFIG_HOOKS];
    unsigned hook_count;
    unsigned cap_end; /* the next free byte for a capability */
    uint8_t last_cap; /* offset of the last capability in the list, 0: none */
    struct pci_bus *bus;
    unsigned slot;
};

/* A type-0 header: ids, class (24 bits: class, subclass, prog-if), revision, subsystem
 * ids; command writable for I/O, memory, bus master and INTx disable. */
void pci_device_init(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declares BAR index (a MEM64 BAR also takes index + 1). size: a power of two, at least
 * 16 (memory) or 4 (I/O), at most 2 GiB (MEM32, I/O: 64 KiB) or half the 64-bit window.
 * ops may be NULL (reads all ones). Returns 0, -EINVAL or -EEXIST (index taken). */
int pci_device_add_bar(struct pci_device *d, unsigned index, enum pci_bar_type type, uint64_t size,
                       bool prefetchable, const struct bus_device_ops *ops, void *dev)
    __attribute__((warn_unused_result));
/* Appends a capability: id, next pointer, then len bytes of body, all inside the first
 * 256 bytes (from 0x40). Returns its config offset (4-byte aligned), -ENOSPC, -EINVAL. */
int pci_device_add_capability(struct pci_device *d, uint8_t id, const void *body, size_t len)
    __attribute__((warn_unused_result));
/* Makes bits of config space guest-writable (mask ORed into the write mask). */
void pci_device_set_wmask(struct pci_device *d, unsigned offset, const void *mask, size_t len);
/* Interrupt pin 1..4 (INTA..INTD) or 0: none. */
void pci_device_set_interrupt_pin(struct pci_device *d, uint8_t pin);
/* 0, -EINVAL (no callback), or -ENOSPC when PCI_MAX_CONFIG_HOOKS hooks are set. */
int pci_device_add_config_hook(struct pci_device *d, const struct pci_config_hook *hook)
    __attribute__((warn_unused_result));

/* Config-space access as the guest does it (offsets past 4 KiB or crossing the end read
 * all ones / are ignored). size is 1, 2 or 4. Takes the bus lock when on a bus. */
uint32_t pci_config_read(struct pci_device *d, unsigned offset, unsigned size);
void pci_config_write(struct pci_device *d, unsigned offset, uint32_t value, unsigned size);
/* The address the guest (or the allocator) gave BAR index (0 when unused). */
uint64_t pci_bar_address(const struct pci_device *d, unsigned index);

/* Where the platform puts the bus's resources. */
struct pci_windows {
    uint64_t mmio32_base, mmio32_size;
    uint64_t mmio64_base, mmio64_size; /* size 0: no 64-bit window */
    uint32_t io_base, io_size;         /* size 0: no I/O window */
    uint8_t intx_gsi; /* INTx pin P of slot S goes to GSI intx_gsi + (S + P - 1) % 4 */
};

/* A bus with the host bridge at slot 0. NULL when out of memory or a window is not
 * naturally usable (empty window, wrapping). */
struct pci_bus *pci_bus_new(const struct pci_windows *w);
/* Frees the bus, not the devices on it. NULL is a no-op. */
void pci_bus_free(struct pci_bus *b);
/* Puts d in the first free slot and assigns its BARs from the windows, as firmware does
 * (addresses programmed, decoding left off for the guest to enable). Returns the slot
 * (1..31), -ENOSPC (no slot, or a window is full), -EINVAL. Machine build time only. */
int pci_bus_add_device(struct pci_bus *b, struct pci_device *d) __attribute__((warn_unused_result));
/* The same in slot (1..31; 0: the first free one, as pci_bus_add_device): -EEXIST when the
 * slot is taken. Platforms whose firmware expects a function at a fixed place (Q35's LPC
 * bridge at 00:1f.0) put it there before the other devices. */
int pci_bus_add_device_at(struct pci_bus *b, struct pci_device *d, unsigned slot)
    __attribute__((warn_unused_result));
/* Gives the host bridge another identity (vendor, device, revision; no subsystem), for a
 * platform whose firmware only runs on a chipset it knows. Build time only. */
void pci_bus_set_host_bridge_id(struct pci_bus *b, uint16_t vendor, uint16_t device,
                                uint8_t revision);
/* The host bridge at 00:00.0, for a platform to add chipset registers to (wmask, hooks) at
 * build time. */
struct pci_device *pci_bus_host_bridge(struct pci_bus *b);
/* The device in slot (NULL: none). */
struct pci_device *pci_bus_device(struct pci_bus *b, unsigned slot);
const struct pci_windows *pci_bus_windows(const struct pci_bus *b);
/* Config space of bus/dev/fn at reg, as a port mechanism reaches it (all ones, or nothing
 * written, where no function is). size 1, 2 or 4. */
uint32_t pci_bus_config_read(struct pci_bus *b, unsigned bus, unsigned dev, unsigned fn,
                             unsigned reg, unsigned size);
void pci_bus_config_write(struct pci_bus *b, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                          uint32_t value, unsigned size);

/* Register, with dev = the pci_bus:
 *   pci_ecam_ops on MMIO at the ECAM base, 1 MiB (bus 0);
 *   pci_mmio32_window_ops / pci_mmio64_window_ops on MMIO at the windows' bases and
 *     pci_io_window_ops on PIO at the I/O window, each with the window's size. */
extern const struct bus_device_ops pci_ecam_ops;
extern const struct bus_device_ops pci_mmio32_window_ops;
extern const struct bus_device_ops pci_mmio64_window_ops;
extern const struct bus_device_ops pci_io_window_ops;

#endif
