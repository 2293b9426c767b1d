#include "machine/virtio_pci_function.h"
#include "core/error.h"
#include "pci/msix.h"
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MSIX_BAR        1
#define MSIX_BAR_SIZE   0x1000
#define MSIX_PBA_OFFSET 0x800
#define MSIX_MAX        (MSIX_PBA_OFFSET / MSIX_ENTRY_SIZE)

/* Linux writes a queue's index to its notify address as 16 bits. */
#define NOTIFY_WRITE_LEN 2

/* A queue's doorbell: KVM turns the guest's write to the notify address into an
 * eventfd signal (no exit to user space), which the VM thread's loop picks up, or the
 * device's own thread when the device took it (take_kick). */
struct doorbell {
    struct virtio_pci_function *mv;
    unsigned queue;
    int fd;
    uint64_t addr; /* registered guest address, 0: none */
    struct event_source src;
    bool watched; /* src is on the loop */
    bool taken;   /* the device reads fd */
};

struct virtio_pci_function {
    struct virtio_pci vp;
    struct virtio_device *dev;
    struct msix *msix;
    bool transport_ready;
    struct pci_function_env env;
    struct doorbell *doorbells; /* one per queue */
};

static void signal_vector(void *ctx, uint16_t vector)
{
    struct virtio_pci_function *mv = ctx;
    msix_notify(mv->msix, vector);
}

static void msix_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct virtio_pci_function *mv = dev;
    if (!msix_bar_read(mv->msix, off, data, size))
        memset(data, 0xff, size);
}

static void msix_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct virtio_pci_function *mv = dev;
    msix_bar_write(mv->msix, off, data, size);
}

static const struct bus_device_ops msix_region_ops = { .read = msix_read, .write = msix_write };

static void doorbell_rang(void *ctx, uint32_t events)
{
    struct doorbell *db = ctx;
    uint64_t n;
    if (read(db->fd, &n, sizeof(n)) == sizeof(n))
        virtio_pci_notify(&db->mv->vp, db->queue);
}

/* Registers each doorbell at the notify area of the virtio BAR's current address; a
 * write to an address that is not registered still reaches the transport through an
 * MMIO exit, so a failed registration costs speed, not function. */
static void doorbells_place(struct virtio_pci_function *mv)
{
    const struct irq_routing_ops *ops = &mv->env.irq;
    uint64_t bar = pci_bar_address(&mv->vp.pci, VIRTIO_PCI_BAR);
    for (unsigned q = 0; q < mv->dev->num_queues; q++) {
        struct doorbell *db = &mv->doorbells[q];
        uint64_t addr =
            bar ? bar + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT : 0;
        if (db->fd < 0 || addr == db->addr)
            continue;
        if (db->addr)
            ops->ioeventfd(ops->ctx, db->addr, NOTIFY_WRITE_LEN, db->fd, false);
        db->addr = 0;
        if (addr && ops->ioeventfd(ops->ctx, addr, NOTIFY_WRITE_LEN, db->fd, true) == 0)
            db->addr = addr;
    }
}

/* The guest rewrote config space: follow the virtio BAR if it moved. */
static void config_written(void *ctx, unsigned offset, unsigned size)
{
    unsigned bar = PCI_BAR0 + 4 * VIRTIO_PCI_BAR;
    if (offset < bar + 8 && bar < offset + size)
        doorbells_place(ctx);
}

static int doorbells_create(struct virtio_pci_function *mv)
{
    unsigned n = mv->dev->num_queues;
    mv->doorbells = calloc(n, sizeof(*mv->doorbells));
    if (!mv->doorbells)
        return -ENOMEM;
    for (unsigned q = 0; q < n; q++)
        mv->doorbells[q].fd = -1;
    for (unsigned q = 0; q < n; q++) {
        struct doorbell *db = &mv->doorbells[q];
        db->mv = mv;
        db->queue = q;
        db->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (db->fd < 0)
            return -errno;
        db->src = (struct event_source){ .fd = db->fd, .handler = doorbell_rang, .ctx = db };
        const struct virtio_device_ops *ops = mv->dev->ops;
        if (ops->take_kick && ops->take_kick(mv->dev, q, db->fd)) {
            db->taken = true;
            continue;
        }
        int e = event_loop_add(mv->env.el, &db->src);
        if (e < 0) {
            close(db->fd);
            db->fd = -1;
            return e;
        }
        db->watched = true;
    }
    struct pci_config_hook hook = { .written = config_written, .ctx = mv };
    return pci_device_add_config_hook(&mv->vp.pci, &hook);
}

static void doorbells_destroy(struct virtio_pci_function *mv)
{
    if (!mv->doorbells)
        return;
    const struct irq_routing_ops *ops = &mv->env.irq;
    for (unsigned q = 0; q < mv->dev->num_queues; q++) {
        struct doorbell *db = &mv->doorbells[q];
        if (db->fd < 0)
            continue;
        if (db->addr)
            ops->ioeventfd(ops->ctx, db->addr, NOTIFY_WRITE_LEN, db->fd, false);
        if (db->watched)
            event_loop_remove(mv->env.el, &db->src);
        if (db->taken)
            (void)mv->dev->ops->take_kick(mv->dev, q, -1);
        close(db->fd);
    }
    free(mv->doorbells);
    mv->doorbells = NULL;
}

vmk_result virtio_pci_function_new(const struct pci_function_env *env, struct virtio_device *dev,
                                   uint32_t class_code, struct virtio_pci_function **out,
                                   vmk_error **err)
{
    *out = NULL;
    struct virtio_pci_function *mv = calloc(1, sizeof(*mv));
    if (!mv)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", dev->name);
    mv->dev = dev;
    mv->env = *env;
    unsigned vectors = dev->num_queues + 1;
    if (vectors > MSIX_MAX)
        vectors = MSIX_MAX; /* queues beyond share "no vector": the driver polls them */
    struct virtio_pci_interrupts irq = { .signal = signal_vector,
                                         .vectors = (uint16_t)vectors,
                                         .ctx = mv };
    int e = virtio_pci_init(&mv->vp, dev, env->gm, &irq, class_code);
    if (e < 0)
        goto fail;
    mv->transport_ready = true;
    if ((e = pci_device_add_bar(&mv->vp.pci, MSIX_BAR, PCI_BAR_MEM32, MSIX_BAR_SIZE, false,
                                &msix_region_ops, mv)) < 0 ||
        (e = msix_new(&mv->vp.pci, vectors, MSIX_BAR, 0, MSIX_PBA_OFFSET, &mv->env.irq,
                      &mv->msix)) < 0 ||
        (e = doorbells_create(mv)) < 0 || (e = pci_bus_add_device(env->bus, &mv->vp.pci)) < 0)
        goto fail;
    doorbells_place(mv); /* the bus assigned the BAR */
    *out = mv;
    return VMK_OK;
fail:;
    vmk_result r = vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_INTERNAL, -e,
                            "%s: cannot put it on the PCI bus: %s", dev->name, strerror(-e));
    virtio_pci_function_free(mv);
    return r;
}

void virtio_pci_function_free(struct virtio_pci_function *mv)
{
    if (!mv)
        return;
    doorbells_destroy(mv);
    if (mv->transport_ready)
        virtio_pci_fini(&mv->vp);
    msix_free(mv->msix);
    free(mv);
}
