#include "virtio/virtio_pci.h"
#include "core/le_bytes.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Vendor capability types (4.1.4). */
#define CAP_COMMON_CFG 1
#define CAP_NOTIFY_CFG 2
#define CAP_ISR_CFG    3
#define CAP_DEVICE_CFG 4
#define CAP_PCI_CFG    5

/* The PCI_CFG capability (4.1.4.9): cap.bar, cap.offset and cap.length select a BAR
 * access that a read or write of pci_cfg_data performs. Offsets from the capability. */
#define PCI_CFG_BAR    4
#define PCI_CFG_OFFSET 8
#define PCI_CFG_LENGTH 12
#define PCI_CFG_DATA   16
#define PCI_CFG_SIZE   20

/* Common configuration layout (4.1.4.3). */
#define COMMON_DFSELECT      0x00
#define COMMON_DF            0x04
#define COMMON_GFSELECT      0x08
#define COMMON_GF            0x0c
#define COMMON_MSIX          0x10
#define COMMON_NUMQ          0x12
#define COMMON_STATUS        0x14
#define COMMON_CFGGENERATION 0x15
#define COMMON_Q_SELECT      0x16
#define COMMON_Q_SIZE        0x18
#define COMMON_Q_MSIX        0x1a
#define COMMON_Q_ENABLE      0x1c
#define COMMON_Q_NOFF        0x1e
#define COMMON_Q_DESCLO      0x20
#define COMMON_Q_AVAILLO     0x28
#define COMMON_Q_USEDLO      0x30
#define COMMON_SIZE          0x3c

#define ISR_QUEUE  1
#define ISR_CONFIG 2

static uint8_t status_get(struct virtio_pci *vp)
{
    return __atomic_load_n(&vp->status, __ATOMIC_ACQUIRE);
}

static void signal_vector(struct virtio_pci *vp, uint16_t vector)
{
    if (vector != VIRTIO_MSI_NO_VECTOR && vp->irq.signal)
        vp->irq.signal(vp->irq.ctx, vector);
}

/* ---- what the device asks of us (any thread, never under vp->lock) ---- */

static void t_notify_queue(void *ctx, unsigned q)
{
    struct virtio_pci *vp = ctx;
    if (q >= vp->dev->num_queues)
        return;
    __atomic_fetch_or(&vp->isr, ISR_QUEUE, __ATOMIC_ACQ_REL);
    signal_vector(vp, __atomic_load_n(&vp->queues[q].msix_vector, __ATOMIC_ACQUIRE));
}

static void t_notify_config(void *ctx)
{
    struct virtio_pci *vp = ctx;
    __atomic_fetch_add(&vp->config_generation, 1, __ATOMIC_ACQ_REL);
    __atomic_fetch_or(&vp->isr, ISR_CONFIG, __ATOMIC_ACQ_REL);
    signal_vector(vp, __atomic_load_n(&vp->config_msix_vector, __ATOMIC_ACQUIRE));
}

static void t_needs_reset(void *ctx, const char *why)
{
    struct virtio_pci *vp = ctx;
    (void)why;
    uint8_t old =
        __atomic_fetch_or(&vp->status, VIRTIO_STATUS_DEVICE_NEEDS_RESET, __ATOMIC_ACQ_REL);
    /* Tell the driver once; it must reset the device to go on. */
    if (!(old & VIRTIO_STATUS_DEVICE_NEEDS_RESET) && (old & VIRTIO_STATUS_DRIVER_OK))
        t_notify_config(vp);
}

/* ---- register state, under vp->lock ---- */

static uint16_t valid_vector(const struct virtio_pci *vp, uint16_t v)
{
    /* A vector the capability lacks reads back as "none" (4.1.5.1.2). */
    return v < vp->irq.vectors ? v : VIRTIO_MSI_NO_VECTOR;
}

static void reset_registers(struct virtio_pci *vp)
{
    struct virtio_device *d = vp->dev;
    for (unsigned i = 0; i < d->num_queues; i++) {
        virtq_disable(&d->queues[i]);
        vp->queues[i] = (struct virtio_pci_queue_state){ .size = d->queue_max_size,
                                                         .msix_vector = VIRTIO_MSI_NO_VECTOR };
    }
    vp->device_feature_select = vp->driver_feature_select = 0;
    vp->driver_features = 0;
    d->driver_features = 0;
    vp->queue_select = 0;
    __atomic_store_n(&vp->config_msix_vector, VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELEASE);
    __atomic_store_n(&vp->isr, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&vp->status, 0, __ATOMIC_RELEASE);
}

static void enable_queue(struct virtio_pci *vp, unsigned q)
{
    struct virtio_device *d = vp->dev;
    struct virtio_pci_queue_state *s = &vp->queues[q];
    struct virtq *vq = &d->queues[q];
    if (s->enabled)
        return;
    vq->gm = vp->gm;
    vq->size = s->size;
    vq->desc_addr = s->desc;
    vq->avail_addr = s->driver;
    vq->used_addr = s->device;
    vq->event_idx = virtio_has_feature(d, VIRTIO_F_RING_EVENT_IDX);
    vq->indirect = virtio_has_feature(d, VIRTIO_F_RING_INDIRECT_DESC);
    if (virtq_enable(vq) < 0) {
        /* Rings outside guest RAM or misaligned: the driver is broken. */
        t_needs_reset(vp, "virtqueue rings outside guest memory");
        return;
    }
    s->enabled = true;
}

static void write_status(struct virtio_pci *vp, uint8_t value)
{
    struct virtio_device *d = vp->dev;
    uint8_t old = status_get(vp);
    if (value == 0) {
        d->ops->reset(d);
        reset_registers(vp);
        return;
    }
    /* A driver must not clear a status bit (2.1.2): taking DRIVER_OK or FEATURES_OK back
     * and setting it again would re-activate a running device. Only a reset undoes them. */
    const uint8_t progress = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                             VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
    if (old & ~value & progress) {
        t_needs_reset(vp, "the driver cleared a status bit");
        return;
    }
    uint8_t next = value | (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if ((next & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        bool ok = !(vp->driver_features & ~d->device_features) &&
                  (vp->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)) &&
                  (!d->ops->features_ok || d->ops->features_ok(d, vp->driver_features));
        if (ok)
            d->driver_features = vp->driver_features;
        else
            next &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* the driver reads it back */
    }
    __atomic_store_n(&vp->status, next, __ATOMIC_RELEASE);
    if ((next & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        if (!(next & VIRTIO_STATUS_FEATURES_OK) || d->ops->activate(d) < 0)
            t_needs_reset(vp, "device activation failed");
    }
}

static bool size_ok(uint16_t size, uint16_t max)
{
    return size && size <= max && !(size & (size - 1));
}

/* The common configuration as the guest sees it now. */
static void common_snapshot(struct virtio_pci *vp, uint8_t *c)
{
    struct virtio_device *d = vp->dev;
    memset(c, 0, COMMON_SIZE);
    uint32_t df = 0, gf = 0;
    if (vp->device_feature_select < 2)
        df = (uint32_t)(d->device_features >> (32 * vp->device_feature_select));
    if (vp->driver_feature_select < 2)
        gf = (uint32_t)(vp->driver_features >> (32 * vp->driver_feature_select));
    le_put32(c, COMMON_DFSELECT, vp->device_feature_select);
    le_put32(c, COMMON_DF, df);
    le_put32(c, COMMON_GFSELECT, vp->driver_feature_select);
    le_put32(c, COMMON_GF, gf);
    le_put16(c, COMMON_MSIX, vp->config_msix_vector);
    le_put16(c, COMMON_NUMQ, (uint16_t)d->num_queues);
    c[COMMON_STATUS] = status_get(vp);
    c[COMMON_CFGGENERATION] = __atomic_load_n(&vp->config_generation, __ATOMIC_ACQUIRE);
    le_put16(c, COMMON_Q_SELECT, vp->queue_select);
    if (vp->queue_select < d->num_queues) {
        const struct virtio_pci_queue_state *s = &vp->queues[vp->queue_select];
        le_put16(c, COMMON_Q_SIZE, s->size);
        le_put16(c, COMMON_Q_MSIX, s->msix_vector);
        le_put16(c, COMMON_Q_ENABLE, s->enabled);
        le_put16(c, COMMON_Q_NOFF, vp->queue_select);
        le_put64(c, COMMON_Q_DESCLO, s->desc);
        le_put64(c, COMMON_Q_AVAILLO, s->driver);
        le_put64(c, COMMON_Q_USEDLO, s->device);
    }
}

static bool touched(unsigned off, unsigned size, unsigned field, unsigned width)
{
    return off < field + width && field < off + size;
}

/* Applies a write of any width: every field the bytes touch takes its new value. */
static void common_write(struct virtio_pci *vp, unsigned off, const void *data, unsigned size)
{
    struct virtio_device *d = vp->dev;
    uint8_t c[COMMON_SIZE];
    common_snapshot(vp, c);
    memcpy(c + off, data, size);
    if (touched(off, size, COMMON_DFSELECT, 4))
        vp->device_feature_select = le_get32(c, COMMON_DFSELECT);
    if (touched(off, size, COMMON_GFSELECT, 4))
        vp->driver_feature_select = le_get32(c, COMMON_GFSELECT);
    if (touched(off, size, COMMON_GF, 4) && vp->driver_feature_select < 2 &&
        !(status_get(vp) & VIRTIO_STATUS_FEATURES_OK)) {
        unsigned shift = 32 * vp->driver_feature_select;
        vp->driver_features &= ~(0xffffffffULL << shift);
        vp->driver_features |= (uint64_t)le_get32(c, COMMON_GF) << shift;
    }
    if (touched(off, size, COMMON_MSIX, 2))
        __atomic_store_n(&vp->config_msix_vector, valid_vector(vp, le_get16(c, COMMON_MSIX)),
                         __ATOMIC_RELEASE);
    if (touched(off, size, COMMON_Q_SELECT, 2))
        vp->queue_select = le_get16(c, COMMON_Q_SELECT);
    if (vp->queue_select < d->num_queues) {
        struct virtio_pci_queue_state *s = &vp->queues[vp->queue_select];
        if (touched(off, size, COMMON_Q_MSIX, 2))
            __atomic_store_n(&s->msix_vector, valid_vector(vp, le_get16(c, COMMON_Q_MSIX)),
                             __ATOMIC_RELEASE);
        /* Ring layout is fixed once the queue is enabled. */
        if (!s->enabled) {
            if (touched(off, size, COMMON_Q_SIZE, 2) &&
                size_ok(le_get16(c, COMMON_Q_SIZE), d->queue_max_size))
                s->size = le_get16(c, COMMON_Q_SIZE);
            if (touched(off, size, COMMON_Q_DESCLO, 8))
                s->desc = le_get64(c, COMMON_Q_DESCLO);
            if (touched(off, size, COMMON_Q_AVAILLO, 8))
                s->driver = le_get64(c, COMMON_Q_AVAILLO);
            if (touched(off, size, COMMON_Q_USEDLO, 8))
                s->device = le_get64(c, COMMON_Q_USEDLO);
        }
        if (touched(off, size, COMMON_Q_ENABLE, 2) && le_get16(c, COMMON_Q_ENABLE) == 1)
            enable_queue(vp, vp->queue_select);
    }
    if (touched(off, size, COMMON_STATUS, 1))
        write_status(vp, c[COMMON_STATUS]);
}

/* ---- the BAR ---- */

static void bar_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *d = vp->dev;
    memset(data, 0, size);
    /* The common configuration starts the BAR (VIRTIO_PCI_COMMON_OFF is 0). */
    if (offset + size <= COMMON_SIZE) {
        uint8_t c[COMMON_SIZE];
        pthread_mutex_lock(&vp->lock);
        common_snapshot(vp, c);
        pthread_mutex_unlock(&vp->lock);
        memcpy(data, c + offset, size);
    } else if (offset == VIRTIO_PCI_ISR_OFF) {
        /* Reading the ISR clears it (4.1.4.5). */
        *(uint8_t *)data = __atomic_exchange_n(&vp->isr, 0, __ATOMIC_ACQ_REL);
    } else if (offset >= VIRTIO_PCI_DEVICE_OFF &&
               offset + size <= VIRTIO_PCI_DEVICE_OFF + (uint64_t)d->config_size) {
        d->ops->config_read(d, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFF), data, size);
    }
}

static void bar_write(void *opaque, uint64_t offset, const void *data, unsigned size)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *d = vp->dev;
    if (offset + size <= COMMON_SIZE) {
        pthread_mutex_lock(&vp->lock);
        common_write(vp, (unsigned)offset, data, size);
        pthread_mutex_unlock(&vp->lock);
    } else if (offset >= VIRTIO_PCI_DEVICE_OFF &&
               offset + size <= VIRTIO_PCI_DEVICE_OFF + (uint64_t)d->config_size) {
        d->ops->config_write(d, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFF), data, size);
    } else if (offset >= VIRTIO_PCI_NOTIFY_OFF &&
               offset < VIRTIO_PCI_NOTIFY_OFF + (uint64_t)d->num_queues * VIRTIO_PCI_NOTIFY_MULT) {
        virtio_pci_notify(vp, (unsigned)(offset - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);
    }
}

const struct bus_device_ops virtio_pci_bar_ops = { .read = bar_read, .write = bar_write };

void virtio_pci_notify(struct virtio_pci *vp, unsigned q)
{
    struct virtio_device *d = vp->dev;
    if (q >= d->num_queues)
        return;
    uint8_t st = status_get(vp);
    /* Kicks before DRIVER_OK, or after the device asked for a reset, are dropped. */
    if (!(st & VIRTIO_STATUS_DRIVER_OK) || (st & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
        return;
    if (__atomic_load_n(&vp->queues[q].enabled, __ATOMIC_ACQUIRE))
        d->ops->queue_notify(d, q);
}

/* ---- the PCI_CFG window: BAR access through config space ---- */

/* The access the capability's fields select, or false when the driver set them out of
 * the rules (4.1.4.9.1: length 1, 2 or 4, offset a multiple of it, our BAR): then the
 * access does nothing and pci_cfg_data keeps its value. */
static bool pci_cfg_access(const struct virtio_pci *vp, uint32_t *offset, unsigned *len)
{
    const uint8_t *cap = vp->pci.config + vp->pci_cfg_cap;
    uint32_t off = le_get32(cap, PCI_CFG_OFFSET);
    uint32_t n = le_get32(cap, PCI_CFG_LENGTH);
    if (cap[PCI_CFG_BAR] != VIRTIO_PCI_BAR || (n != 1 && n != 2 && n != 4) || off % n ||
        off >= VIRTIO_PCI_BAR_SIZE)
        return false;
    *offset = off;
    *len = n;
    return true;
}

/* A config access that touches pci_cfg_data performs the selected BAR access. */
static void pci_cfg_forward(struct virtio_pci *vp, unsigned offset, unsigned size, bool write)
{
    unsigned data = vp->pci_cfg_cap + PCI_CFG_DATA;
    uint32_t off;
    unsigned len;
    if (offset >= data + 4 || offset + size <= data || !pci_cfg_access(vp, &off, &len))
        return;
    if (write)
        bar_write(vp, off, vp->pci.config + data, len);
    else
        bar_read(vp, off, vp->pci.config + data, len);
}

static void pci_cfg_written(void *ctx, unsigned offset, unsigned size)
{
    pci_cfg_forward(ctx, offset, size, true);
}

static void pci_cfg_reading(void *ctx, unsigned offset, unsigned size)
{
    pci_cfg_forward(ctx, offset, size, false);
}

/* ---- setup ---- */

static int add_vendor_cap(struct virtio_pci *vp, uint8_t type, uint32_t offset, uint32_t length,
                          bool notify)
{
    /* After the id and next bytes: cap_len, cfg_type, bar, id, 2 padding, offset, length
     * [, notify_off_multiplier]. */
    uint8_t body[18] = { 0 };
    size_t len = notify ? 18 : 14;
    body[0] = (uint8_t)(len + 2);
    body[1] = type;
    body[2] = VIRTIO_PCI_BAR;
    uint32_t v = htole32(offset);
    memcpy(body + 6, &v, 4);
    v = htole32(length);
    memcpy(body + 10, &v, 4);
    if (notify) {
        v = htole32(VIRTIO_PCI_NOTIFY_MULT);
        memcpy(body + 14, &v, 4);
    }
    int r = pci_device_add_capability(&vp->pci, PCI_CAP_ID_VENDOR, body, len);
    return r < 0 ? r : 0;
}

/* Linux never uses it, but the spec requires it (4.1.4.9.1) and firmware drivers may. */
static int add_pci_cfg_cap(struct virtio_pci *vp)
{
    uint8_t body[PCI_CFG_SIZE - 2] = { PCI_CFG_SIZE, CAP_PCI_CFG };
    int cap = pci_device_add_capability(&vp->pci, PCI_CAP_ID_VENDOR, body, sizeof(body));
    if (cap < 0)
        return cap;
    vp->pci_cfg_cap = (unsigned)cap;
    /* bar, offset, length and pci_cfg_data are the driver's to write. */
    static const uint8_t ones[4] = { 0xff, 0xff, 0xff, 0xff };
    pci_device_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_BAR, ones, 1);
    pci_device_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_OFFSET, ones, 4);
    pci_device_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_LENGTH, ones, 4);
    pci_device_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_DATA, ones, 4);
    struct pci_config_hook hook = { .written = pci_cfg_written,
                                    .reading = pci_cfg_reading,
                                    .ctx = vp };
    return pci_device_add_config_hook(&vp->pci, &hook);
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *dev, const struct guest_memory *gm,
                    const struct virtio_pci_interrupts *irq, uint32_t class_code)
{
    memset(vp, 0, sizeof(*vp));
    if ((uint64_t)dev->num_queues * VIRTIO_PCI_NOTIFY_MULT >
            VIRTIO_PCI_BAR_SIZE - VIRTIO_PCI_NOTIFY_OFF ||
        dev->config_size > VIRTIO_PCI_NOTIFY_OFF - VIRTIO_PCI_DEVICE_OFF)
        return -EINVAL;
    vp->queues = calloc(dev->num_queues, sizeof(*vp->queues));
    if (!vp->queues)
        return -ENOMEM;
    vp->dev = dev;
    vp->gm = gm;
    if (irq)
        vp->irq = *irq;
    pthread_mutex_init(&vp->lock, NULL);
    reset_registers(vp);
    dev->transport = (struct virtio_transport){ .notify_queue = t_notify_queue,
                                                .notify_config = t_notify_config,
                                                .needs_reset = t_needs_reset,
                                                .ctx = vp };
    uint16_t pci_id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + dev->device_id);
    /* Revision 1 marks a modern-only device; the subsystem id repeats the device id. */
    pci_device_init(&vp->pci, VIRTIO_PCI_VENDOR, pci_id, class_code, 1, VIRTIO_PCI_VENDOR, pci_id);
    int r;
    if ((r = pci_device_add_bar(&vp->pci, VIRTIO_PCI_BAR, PCI_BAR_MEM64, VIRTIO_PCI_BAR_SIZE, false,
                                &virtio_pci_bar_ops, vp)) < 0 ||
        (r = add_vendor_cap(vp, CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, COMMON_SIZE, false)) < 0 ||
        (r = add_vendor_cap(vp, CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1, false)) < 0 ||
        (r = add_vendor_cap(vp, CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
                            dev->num_queues * VIRTIO_PCI_NOTIFY_MULT, true)) < 0 ||
        (dev->config_size && (r = add_vendor_cap(vp, CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF,
                                                 dev->config_size, false)) < 0) ||
        (r = add_pci_cfg_cap(vp)) < 0) {
        virtio_pci_fini(vp);
        return r;
    }
    return 0;
}

void virtio_pci_fini(struct virtio_pci *vp)
{
    if (!vp->queues)
        return;
    if (status_get(vp) & VIRTIO_STATUS_DRIVER_OK)
        vp->dev->ops->reset(vp->dev);
    for (unsigned i = 0; i < vp->dev->num_queues; i++)
        virtq_disable(&vp->dev->queues[i]);
    pthread_mutex_destroy(&vp->lock);
    free(vp->queues);
    vp->queues = NULL;
}
