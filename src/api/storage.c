/* Storage: disk image attachments and the virtio block device that carries one. */
#include "api/validate.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

vmk_storage_attachment *vmk_disk_image_attachment_new(const char *path, bool read_only)
{
    vmk_storage_attachment *att = calloc(1, sizeof(*att));
    if (!att)
        return NULL;
    if (config_set_string(&att->path, path) != VMK_OK) {
        free(att);
        return NULL;
    }
    att->kind = VMK_STORAGE_ATTACHMENT_DISK_IMAGE;
    att->read_only = read_only;
    att->caching = VMK_DISK_CACHING_AUTOMATIC;
    att->sync = VMK_DISK_SYNC_FULL;
    return att;
}

void vmk_storage_attachment_free(vmk_storage_attachment *att)
{
    if (!att)
        return;
    free(att->path);
    free(att);
}

vmk_result vmk_disk_image_attachment_set_caching_mode(vmk_storage_attachment *att,
                                                      vmk_disk_caching_mode mode)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    att->caching = mode;
    return VMK_OK;
}

vmk_result vmk_disk_image_attachment_set_synchronization_mode(vmk_storage_attachment *att,
                                                              vmk_disk_sync_mode mode)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    att->sync = mode;
    return VMK_OK;
}

vmk_storage_attachment_kind vmk_storage_attachment_get_kind(const vmk_storage_attachment *att)
{
    return att ? att->kind : VMK_STORAGE_ATTACHMENT_DISK_IMAGE;
}

const char *vmk_disk_image_attachment_get_path(const vmk_storage_attachment *att)
{
    return att ? att->path : NULL;
}

bool vmk_disk_image_attachment_is_read_only(const vmk_storage_attachment *att)
{
    return att ? att->read_only : false;
}

vmk_disk_caching_mode vmk_disk_image_attachment_get_caching_mode(const vmk_storage_attachment *att)
{
    return att ? att->caching : VMK_DISK_CACHING_AUTOMATIC;
}

vmk_disk_sync_mode
vmk_disk_image_attachment_get_synchronization_mode(const vmk_storage_attachment *att)
{
    return att ? att->sync : VMK_DISK_SYNC_FULL;
}

static vmk_storage_attachment *storage_attachment_copy(const vmk_storage_attachment *att)
{
    vmk_storage_attachment *c = vmk_disk_image_attachment_new(att->path, att->read_only);
    if (c) {
        c->kind = att->kind;
        c->caching = att->caching;
        c->sync = att->sync;
    }
    return c;
}

vmk_storage_device *vmk_virtio_block_device_new(vmk_storage_attachment *att)
{
    if (!att)
        return NULL;
    vmk_storage_device *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        vmk_storage_attachment_free(att);
        return NULL;
    }
    dev->kind = VMK_STORAGE_DEVICE_VIRTIO_BLOCK;
    dev->att = att;
    return dev;
}

vmk_storage_device *vmk_usb_mass_storage_device_new(vmk_storage_attachment *att)
{
    vmk_storage_device *dev = vmk_virtio_block_device_new(att);
    if (dev)
        dev->kind = VMK_STORAGE_DEVICE_USB_MASS_STORAGE;
    return dev;
}

unsigned vmk_config_max_usb_storage_device_count(void)
{
    return VMK_MAX_USB_STORAGE_DEVICES;
}

void vmk_storage_device_free(vmk_storage_device *dev)
{
    if (!dev)
        return;
    vmk_storage_attachment_free(dev->att);
    free(dev->identifier);
    free(dev);
}

vmk_storage_device_kind vmk_storage_device_get_kind(const vmk_storage_device *dev)
{
    return dev ? dev->kind : VMK_STORAGE_DEVICE_VIRTIO_BLOCK;
}

const vmk_storage_attachment *vmk_storage_device_get_attachment(const vmk_storage_device *dev)
{
    return dev ? dev->att : NULL;
}

vmk_result vmk_virtio_block_device_set_identifier(vmk_storage_device *dev, const char *id)
{
    if (!dev || dev->kind != VMK_STORAGE_DEVICE_VIRTIO_BLOCK)
        return VMK_ERR_INVALID_ARGUMENT;
    return config_set_string(&dev->identifier, id && *id ? id : NULL);
}

const char *vmk_virtio_block_device_get_identifier(const vmk_storage_device *dev)
{
    return dev ? dev->identifier : NULL;
}

size_t vmk_virtio_block_device_max_identifier_length(void)
{
    return VMK_BLK_ID_MAX;
}

vmk_result vmk_virtio_block_device_set_queue_count(vmk_storage_device *dev, unsigned n)
{
    if (!dev || dev->kind != VMK_STORAGE_DEVICE_VIRTIO_BLOCK)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->queues = n;
    return VMK_OK;
}

unsigned vmk_virtio_block_device_get_queue_count(const vmk_storage_device *dev)
{
    return dev ? dev->queues : 0;
}

unsigned vmk_virtio_block_device_max_queue_count(void)
{
    return VMK_BLK_MAX_QUEUES;
}

vmk_storage_device *storage_device_copy(const vmk_storage_device *dev)
{
    vmk_storage_attachment *att = storage_attachment_copy(dev->att);
    vmk_storage_device *c = vmk_virtio_block_device_new(att); /* owns att */
    if (!c)
        return NULL;
    c->kind = dev->kind;
    c->queues = dev->queues;
    if (config_set_string(&c->identifier, dev->identifier) != VMK_OK) {
        vmk_storage_device_free(c);
        return NULL;
    }
    return c;
}

bool storage_device_validate(const vmk_storage_device *dev, const char *what, struct problems *p,
                             struct disk_image_info *info)
{
    const vmk_storage_attachment *att = dev->att;
    if (dev->kind != VMK_STORAGE_DEVICE_VIRTIO_BLOCK &&
        dev->kind != VMK_STORAGE_DEVICE_USB_MASS_STORAGE)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
    if (dev->identifier) {
        size_t len = strlen(dev->identifier);
        if (len > VMK_BLK_ID_MAX)
            problem(p, "%s: identifier \"%.40s%s\" is %zu bytes, at most %u allowed", what,
                    dev->identifier, len > 40 ? "..." : "", len, VMK_BLK_ID_MAX);
        for (size_t i = 0; i < len && len <= VMK_BLK_ID_MAX; i++) {
            unsigned char c = (unsigned char)dev->identifier[i];
            if (c < 0x20 || c > 0x7e) {
                problem(p, "%s: identifier byte %zu (0x%02x) is not printable ASCII", what, i, c);
                break;
            }
        }
    }
    if (dev->queues > VMK_BLK_MAX_QUEUES)
        problem(p, "%s: %u queues, at most %u allowed", what, dev->queues, VMK_BLK_MAX_QUEUES);
    if (att->kind != VMK_STORAGE_ATTACHMENT_DISK_IMAGE) {
        problem(p, "%s: unknown attachment kind %d", what, (int)att->kind);
        return false;
    }
    if (att->caching != VMK_DISK_CACHING_AUTOMATIC && att->caching != VMK_DISK_CACHING_CACHED &&
        att->caching != VMK_DISK_CACHING_UNCACHED)
        problem(p, "%s: unknown caching mode %d", what, (int)att->caching);
    if (att->sync != VMK_DISK_SYNC_FULL && att->sync != VMK_DISK_SYNC_FSYNC &&
        att->sync != VMK_DISK_SYNC_NONE)
        problem(p, "%s: unknown synchronization mode %d", what, (int)att->sync);
    vmk_error *e = NULL;
    int fd;
    if (disk_image_probe(att->path, att->read_only, info, &fd, &e) != VMK_OK) {
        problem(p, "%s: %s", what, vmk_error_message(e));
        vmk_error_free(e);
        return false;
    }
    close(fd);
    return true;
}
