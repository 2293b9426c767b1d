/* vmk_config_validate: every problem a configuration has, found before anything starts.
 * Each object family judges its own objects (boot_loader.c, serial_attachment.c, storage.c,
 * entropy.c, console.c, network.c, which also compares network devices, as they share host
 * ports and MAC addresses, directory_share.c, graphics.c); this file adds the machine's
 * numbers, the counts, and what spans several objects. */
#include "api/validate.h"
#include "core/error.h"
#include "machine/device_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The attachment behind the n-th port of the whole machine (serial ports first), with its
 * name for messages; NULL past the last. */
static const vmk_serial_attachment *nth_port(const vmk_config *cfg, unsigned n, char *what,
                                             size_t len)
{
    if (n < cfg->serial.count) {
        snprintf(what, len, "serial port %u", n + 1);
        return cfg->serial.item[n];
    }
    n -= cfg->serial.count;
    for (unsigned d = 0; d < cfg->console.count; d++) {
        const vmk_console_device *dev = cfg->console.item[d];
        if (n < dev->port_count) {
            snprintf(what, len, "console port %u", n + 1);
            return dev->port[n].att;
        }
        n -= dev->port_count;
    }
    return NULL;
}

/* Two ports cannot listen on one socket: the second would fail at start. */
static void validate_socket_paths(const vmk_config *cfg, struct problems *p)
{
    char what[32], other[32];
    const vmk_serial_attachment *a, *b;
    for (unsigned i = 0; (a = nth_port(cfg, i, what, sizeof(what))); i++) {
        if (a->kind != VMK_SERIAL_ATTACHMENT_SOCKET || !a->path || !*a->path)
            continue;
        for (unsigned j = 0; j < i && (b = nth_port(cfg, j, other, sizeof(other))); j++)
            if (b->kind == VMK_SERIAL_ATTACHMENT_SOCKET && b->path && !strcmp(a->path, b->path)) {
                problem(p, "%s: socket path %s is already used by %s", what, a->path, other);
                break;
            }
    }
}

static void validate_count(struct problems *p, const char *what, unsigned count, unsigned max)
{
    if (count > max)
        problem(p, "%u %ss, at most %u allowed", count, what, max);
}

/* Every storage device, and no image twice where one of the two writes it (the guests
 * would corrupt what the other sees). */
static void validate_storage(const vmk_config *cfg, struct problems *p)
{
    unsigned n = cfg->storage.count;
    struct disk_image_info *info = calloc(n ? n : 1, sizeof(*info));
    bool *ok = calloc(n ? n : 1, sizeof(*ok));
    if (!info || !ok) {
        problem(p, "storage devices: out of memory");
        free(info);
        free(ok);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof(what), "storage device %u", i + 1);
        const vmk_storage_device *dev = cfg->storage.item[i];
        ok[i] = storage_device_validate(dev, what, p, &info[i]);
        for (unsigned j = 0; ok[i] && j < i; j++) {
            const vmk_storage_device *other = cfg->storage.item[j];
            if (ok[j] && disk_image_same(&info[i], &info[j]) &&
                (!dev->att->read_only || !other->att->read_only)) {
                problem(p,
                        "%s: disk image %s: already used by storage device %u, and one of them "
                        "is writable",
                        what, dev->att->path, j + 1);
                break;
            }
        }
    }
    free(info);
    free(ok);
}

/* Every directory sharing device, and no tag twice: the guest mounts by tag. */
static void validate_directory_sharing(const vmk_config *cfg, struct problems *p)
{
    char what[40];
    for (unsigned i = 0; i < cfg->fs.count; i++) {
        const vmk_directory_sharing_device *dev = cfg->fs.item[i];
        snprintf(what, sizeof(what), "directory sharing device %u", i + 1);
        directory_sharing_device_validate(dev, what, p);
        for (unsigned j = 0; dev->tag && j < i; j++) {
            const vmk_directory_sharing_device *other = cfg->fs.item[j];
            if (other->tag && !strcmp(dev->tag, other->tag)) {
                problem(p, "%s: tag \"%s\" is used by directory sharing device %u", what, dev->tag,
                        j + 1);
                break;
            }
        }
    }
}

void config_validate_devices(const vmk_config *cfg, struct problems *p)
{
    char what[40];
    validate_count(p, "serial port", cfg->serial.count, VMK_MAX_SERIAL_PORTS);
    validate_count(p, "storage device", cfg->storage.count, VMK_MAX_STORAGE_DEVICES);
    validate_count(p, "USB mass-storage device",
                   device_storage_count(cfg, VMK_STORAGE_DEVICE_USB_MASS_STORAGE),
                   VMK_MAX_USB_STORAGE_DEVICES);
    validate_count(p, "entropy device", cfg->entropy.count, VMK_MAX_ENTROPY_DEVICES);
    validate_count(p, "console device", cfg->console.count, VMK_MAX_CONSOLE_DEVICES);
    validate_count(p, "network device", cfg->network.count, VMK_MAX_NETWORK_DEVICES);
    validate_count(p, "memory balloon device", cfg->balloon.count, VMK_MAX_BALLOON_DEVICES);
    validate_count(p, "socket device", cfg->vsock.count, VMK_MAX_SOCKET_DEVICES);
    validate_count(p, "directory sharing device", cfg->fs.count, VMK_MAX_FS_DEVICES);
    validate_count(p, "graphics device", cfg->graphics.count, VMK_MAX_GPU_DEVICES);
    validate_count(p, "keyboard", cfg->keyboard.count, VMK_MAX_KEYBOARDS);
    /* Drives and keyboards share the controller's USB 2 ports. */
    unsigned usb_drives = device_storage_count(cfg, VMK_STORAGE_DEVICE_USB_MASS_STORAGE),
             usb_keyboards = device_keyboard_count(cfg, VMK_KEYBOARD_USB);
    if (usb_keyboards && usb_drives + usb_keyboards > VMK_MAX_USB_STORAGE_DEVICES)
        problem(p,
                "%u USB devices (%u drives, %u keyboards), at most %u allowed: they share the "
                "xHCI controller's USB 2 ports",
                usb_drives + usb_keyboards, usb_drives, usb_keyboards, VMK_MAX_USB_STORAGE_DEVICES);
    validate_count(p, "pointing device", cfg->pointing.count, VMK_MAX_POINTERS);
    for (unsigned i = 0; i < cfg->serial.count; i++) {
        snprintf(what, sizeof(what), "serial port %u", i + 1);
        serial_attachment_validate(cfg->serial.item[i], what, p);
    }
    validate_storage(cfg, p);
    for (unsigned i = 0; i < cfg->entropy.count; i++) {
        snprintf(what, sizeof(what), "entropy device %u", i + 1);
        entropy_device_validate(cfg->entropy.item[i], what, p);
    }
    for (unsigned i = 0; i < cfg->console.count; i++) {
        snprintf(what, sizeof(what), "console device %u", i + 1);
        console_device_validate(cfg->console.item[i], what, p);
    }
    for (unsigned i = 0; i < cfg->network.count; i++)
        network_device_validate(cfg, i, p);
    for (unsigned i = 0; i < cfg->balloon.count; i++) {
        snprintf(what, sizeof(what), "memory balloon device %u", i + 1);
        memory_balloon_device_validate(cfg->balloon.item[i], what, p);
    }
    for (unsigned i = 0; i < cfg->vsock.count; i++) {
        snprintf(what, sizeof(what), "socket device %u", i + 1);
        socket_device_validate(cfg->vsock.item[i], what, p);
    }
    validate_directory_sharing(cfg, p);
    for (unsigned i = 0; i < cfg->graphics.count; i++) {
        snprintf(what, sizeof(what), "graphics device %u", i + 1);
        graphics_device_validate(cfg->graphics.item[i], what, p);
    }
    validate_socket_paths(cfg, p);
}

vmk_result vmk_config_validate(const vmk_config *cfg, vmk_error **err)
{
    if (!cfg)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "config is NULL");
    struct problems p = { 0 };
    if (cfg->cpu_count < VMK_MIN_CPUS || cfg->cpu_count > VMK_MAX_CPUS)
        problem(&p, "cpu count %u is out of range [%u, %u]", cfg->cpu_count, VMK_MIN_CPUS,
                VMK_MAX_CPUS);
    if (cfg->memory_size < VMK_MIN_MEMORY || cfg->memory_size > VMK_MAX_MEMORY)
        problem(&p, "memory size %llu MiB is out of range [%llu MiB, %llu MiB]",
                (unsigned long long)(cfg->memory_size >> 20),
                (unsigned long long)(VMK_MIN_MEMORY >> 20),
                (unsigned long long)(VMK_MAX_MEMORY >> 20));
    else if (cfg->memory_size % VMK_MEMORY_ALIGN)
        problem(&p, "memory size %llu bytes is not a multiple of 1 MiB",
                (unsigned long long)cfg->memory_size);
    boot_loader_validate(cfg, &p);
    config_validate_devices(cfg, &p);
    return problems_finish(&p, err);
}
