/* The PC's configuration mechanism #1: CONFIG_ADDRESS at 0xCF8 and CONFIG_DATA at 0xCFC,
 * decoded together with the chipset's reset control register at 0xCF9 (a byte between
 * them), as real chipsets do. */
#ifndef VMK_X86_PCI_CF8_H
#define VMK_X86_PCI_CF8_H

#include "core/bus.h"
#include "pci/pci.h"

#include <pthread.h>
#include <stdint.h>

struct x86_pci_cf8 {
    struct pci_bus *bus;
    pthread_mutex_t lock; /* the latch and the access it selects go together */
    uint32_t address;     /* the CONFIG_ADDRESS latch */
    const struct bus_device_ops *cf9_ops;
    void *cf9_dev;
};

/* cf9_ops (may be NULL: none) gets the 1-byte accesses to 0xCF9 with offset 0. */
void x86_pci_cf8_init(struct x86_pci_cf8 *p, struct pci_bus *bus,
                      const struct bus_device_ops *cf9_ops, void *cf9_dev);
void x86_pci_cf8_fini(struct x86_pci_cf8 *p);

/* Register on PIO X86_PCI_CONFIG_PORT, length X86_PCI_CONFIG_LEN, dev = the x86_pci_cf8:
 * 4-byte accesses at +0 are CONFIG_ADDRESS, 1-byte accesses at +1 the reset register,
 * +4..+7 CONFIG_DATA (any size that fits); everything else reads all ones and is dropped. */
extern const struct bus_device_ops x86_pci_cf8_ops;

#endif
