/* The rows of the device table (device_table.h): config object -> host side -> device. */
#include "machine/device_table.h"
#include "block/disk_image.h"
#include "core/error.h"
#include "machine/console_ports.h"
#include "virtio/blk.h"
#include "virtio/rng.h"

#include <errno.h>

static void destroy_device(struct device_instance *inst)
{
    if (inst->dev)
        inst->dev->ops->destroy(inst->dev);
    inst->dev = NULL;
}

/* ---- virtio-blk: a disk image per device, a queue per vCPU ---- */

#define BLK_AUTO_QUEUES_MAX 8 /* one per vCPU, up to this many, when the config says 0 */

static vmk_result blk_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    const vmk_storage_device *sd = vmk_config_get_storage_device(cfg, index);
    const vmk_storage_attachment *att = vmk_storage_device_get_attachment(sd);
    struct disk_image *img;
    vmk_result r = disk_image_open(
        vmk_disk_image_attachment_get_path(att), vmk_disk_image_attachment_is_read_only(att),
        vmk_disk_image_attachment_get_caching_mode(att),
        vmk_disk_image_attachment_get_synchronization_mode(att), &img, err);
    if (r != VMK_OK)
        return r;
    unsigned queues = vmk_virtio_block_device_get_queue_count(sd);
    if (queues == 0)
        queues = env->vcpu_count == 0                    ? 1
                 : env->vcpu_count < BLK_AUTO_QUEUES_MAX ? env->vcpu_count
                                                         : BLK_AUTO_QUEUES_MAX;
    struct virtio_device *dev = virtio_blk_new(
        disk_image_backend(img), vmk_virtio_block_device_get_identifier(sd), queues, err);
    if (!dev) {
        disk_image_close(img);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "storage device %u: out of memory",
                        index + 1);
    }
    out->dev = dev;
    out->host = img;
    return VMK_OK;
}

static void blk_close(struct device_instance *inst)
{
    destroy_device(inst); /* first: its workers use the image */
    disk_image_close(inst->host);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_block = {
    .name = "storage device",
    .pci_class = 0x018000, /* other mass storage, as virtio-blk reports it */
    .count = vmk_config_storage_device_count,
    .open = blk_open,
    .close = blk_close,
};

/* ---- virtio-rng: getrandom behind a token bucket whose timer runs on the loop ---- */

static vmk_result rng_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    const vmk_entropy_device *ed = vmk_config_get_entropy_device(cfg, index);
    out->dev =
        virtio_rng_new(env->el, vmk_virtio_entropy_device_get_rate(ed), VIRTIO_RNG_DEFAULT_BURST);
    if (!out->dev)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM,
                        "entropy device %u: out of memory or file descriptors", index + 1);
    return VMK_OK;
}

const struct device_kind device_kind_virtio_entropy = {
    .name = "entropy device",
    .pci_class = 0x00ff00, /* unclassified, as QEMU's virtio-rng-pci reports it */
    .count = vmk_config_entropy_device_count,
    .open = rng_open,
    .close = destroy_device,
};

/* ---- virtio-console: a serial link per port ---- */

static vmk_result console_open(const struct device_host_env *env, const vmk_config *cfg,
                               unsigned index, struct device_instance *out, vmk_error **err)
{
    struct console_ports *ports;
    vmk_result r = console_ports_open(vmk_config_get_console_device(cfg, index), env->el,
                                      env->escape, env->escape_ctx, &ports, &out->dev, err);
    if (r == VMK_OK)
        out->host = ports;
    return r;
}

static vmk_result console_connect(struct device_instance *inst, vmk_error **err)
{
    return console_ports_connect(inst->host, err);
}

static const char *console_pty_path(const struct device_instance *inst, unsigned port)
{
    return console_ports_pty_path(inst->host, port);
}

static void console_close(struct device_instance *inst)
{
    destroy_device(inst); /* first: its reset may still write to a port's link */
    console_ports_close(inst->host);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_console = {
    .name = "console device",
    .pci_class = 0x078000, /* other communication controller, as QEMU's virtio-serial-pci */
    .count = vmk_config_console_device_count,
    .open = console_open,
    .connect = console_connect,
    .pty_path = console_pty_path,
    .close = console_close,
};

const struct device_kind *const device_table[] = {
    &device_kind_virtio_block,
    &device_kind_virtio_entropy,
    &device_kind_virtio_console,
    NULL,
};
