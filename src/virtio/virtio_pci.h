/* The virtio-pci transport, modern only (virtio 1.2, 4.1): a PCI function whose
 * vendor capabilities point into one memory BAR holding the common configuration,
 * the ISR byte, the device configuration and the queue notification area. It drives
 * a struct virtio_device through the status, feature and queue handshake, and turns
 * the device's notifications into MSI-X vectors through an injected callback, so it
 * knows neither KVM nor the device's kind. */
#ifndef VMK_VIRTIO_PCI_H
#define VMK_VIRTIO_PCI_H

#include "pci/pci.h"
#include "core/guest_memory.h"
#include "virtio/virtio_device.h"

#include <pthread.h>

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* + device id: modern devices */
#define VIRTIO_MSI_NO_VECTOR   0xffff
#define VIRTIO_PCI_BAR         4 /* 64-bit memory BAR with the four regions */
#define VIRTIO_PCI_BAR_SIZE    0x4000
#define VIRTIO_PCI_COMMON_OFF  0x0000
#define VIRTIO_PCI_ISR_OFF     0x1000
#define VIRTIO_PCI_DEVICE_OFF  0x2000
#define VIRTIO_PCI_NOTIFY_OFF  0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4 /* bytes between queues' notify addresses */

struct virtio_pci_interrupts {
    /* Raise MSI-X vector (never VIRTIO_MSI_NO_VECTOR); any thread. */
    void (*signal)(void *ctx, uint16_t vector);
    uint16_t vectors; /* how many the MSI-X capability has */
    void *ctx;
};

struct virtio_pci_queue_state {
    uint16_t size;
    uint16_t msix_vector;
    bool enabled;
    uint64_t desc, driver, device;
};

struct virtio_pci {
    struct pci_device pci; /* first: the bus sees this */
    struct virtio_device *dev;
    const struct guest_memory *gm;
    struct virtio_pci_interrupts irq;
    pthread_mutex_t lock; /* register state below; device callbacks never take it */
    uint32_t device_feature_select;
    uint32_t driver_feature_select;
    uint64_t driver_features; /* as the driver writes them, before FEATURES_OK */
    uint16_t config_msix_vector;
    uint8_t status;            /* atomic: the device may add NEEDS_RESET from any thread */
    uint8_t config_generation; /* atomic */
    uint16_t queue_select;
    uint8_t isr; /* atomic: bit 0 queue, bit 1 configuration */
    struct virtio_pci_queue_state *queues;
    unsigned pci_cfg_cap; /* config offset of the VIRTIO_PCI_CAP_PCI_CFG window */
};

/* Sets up the PCI function (ids, class, the capabilities and BAR VIRTIO_PCI_BAR) for
 * dev, and takes over dev->transport. The caller adds the MSI-X capability and puts
 * vp->pci on the bus. 0, -ENOMEM or -EINVAL. */
int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *dev, const struct guest_memory *gm,
                    const struct virtio_pci_interrupts *irq, uint32_t class_code)
    __attribute__((warn_unused_result));
/* Resets the device if the driver left it running; frees what init allocated. */
void virtio_pci_fini(struct virtio_pci *vp);
/* The guest wrote queue q's notify address (or its ioeventfd fired). */
void virtio_pci_notify(struct virtio_pci *vp, unsigned q);

/* The regions of the BAR, for direct tests; the BAR's ops dispatch to these. */
extern const struct bus_device_ops virtio_pci_bar_ops;

#endif
