#include "arch/x86/machine_virtio.h"
#include "arch/x86/msix.h"
#include "core/error.h"
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MSIX_BAR        1
#define MSIX_BAR_SIZE   0x1000
#define MSIX_PBA_OFFSET 0x800
#define MSIX_MAX        (MSIX_PBA_OFFSET / MSIX_ENTRY_SIZE)

struct machine_virtio {
    struct virtio_pci vp;
    struct virtio_device *dev;
    struct msix *msix;
    bool transport_ready;
};

static void signal_vector(void *ctx, uint16_t vector)
{
    struct machine_virtio *mv = ctx;
    msix_notify(mv->msix, vector);
}

static void msix_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct machine_virtio *mv = dev;
    if (!msix_bar_read(mv->msix, off, data, size))
        memset(data, 0xff, size);
}

static void msix_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct machine_virtio *mv = dev;
    msix_bar_write(mv->msix, off, data, size);
}

static const struct bus_device_ops msix_region_ops = { .read = msix_read, .write = msix_write };

vmk_result machine_virtio_add(struct kvm_machine *m, struct virtio_device *dev, uint32_t class_code,
                              struct machine_virtio **out, vmk_error **err)
{
    struct machine_virtio *mv = calloc(1, sizeof(*mv));
    if (!mv) {
        dev->ops->destroy(dev);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", dev->name);
    }
    mv->dev = dev;
    unsigned vectors = dev->num_queues + 1;
    if (vectors > MSIX_MAX)
        vectors = MSIX_MAX; /* queues beyond share "no vector": the driver polls them */
    struct virtio_pci_interrupts irq = { .signal = signal_vector,
                                         .vectors = (uint16_t)vectors,
                                         .ctx = mv };
    int e = virtio_pci_init(&mv->vp, dev, &m->gm, &irq, class_code);
    if (e < 0)
        goto fail;
    mv->transport_ready = true;
    if ((e = pci_device_add_bar(&mv->vp.pci, MSIX_BAR, PCI_BAR_MEM32, MSIX_BAR_SIZE, false,
                                &msix_region_ops, mv)) < 0 ||
        (e = msix_new(&mv->vp.pci, vectors, MSIX_BAR, 0, MSIX_PBA_OFFSET, &m->irq_ops, &mv->msix)) <
            0 ||
        (e = machine_add_pci_device(m, &mv->vp.pci)) < 0)
        goto fail;
    *out = mv;
    return VMK_OK;
fail:;
    vmk_result r = vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_INTERNAL, -e,
                            "%s: cannot put it on the PCI bus: %s", dev->name, strerror(-e));
    machine_virtio_free(mv);
    return r;
}

void machine_virtio_free(struct machine_virtio *mv)
{
    if (!mv)
        return;
    if (mv->transport_ready)
        virtio_pci_fini(&mv->vp);
    mv->dev->ops->destroy(mv->dev);
    msix_free(mv->msix);
    free(mv);
}
