/* The device table: one row per kind of device a configuration can hold, saying how many the
 * configuration has, how one is built from its config object (opening its host side: a disk
 * image, console ports), and which PCI class the guest sees. The machine builder walks it to
 * put every device on the PCI bus; the vhost-user server object uses the same rows to serve
 * one device, so a device is built the same way whatever its transport.
 *
 * Adding a virtio device: its file in src/virtio/, its host side in src/attach/ or
 * src/block/, its config object in src/api/ (with its validation), and one row here. */
#ifndef VMK_MACHINE_DEVICE_TABLE_H
#define VMK_MACHINE_DEVICE_TABLE_H

#include "attach/vsock_host.h"
#include "core/event_loop.h"
#include "virtio/gpu.h"
#include "virtio/input.h"
#include "virtio/virtio_device.h"
#include "vmkit.h"

#include <stdint.h>

struct device_kind;

/* What a row may use to open a device's host side. */
struct device_host_env {
    struct event_loop *el; /* the loop host I/O and device timers run on */
    unsigned vcpu_count;   /* the machine's; 0 when no machine (a vhost-user server) */
    /* The user typed the console escape (Ctrl-A x) on a terminal port. */
    void (*escape)(void *ctx);
    void *escape_ctx;
    /* A device's host side lost its peer (connected false) or reached it again; why is a
     * static string or NULL. Called on the loop with the device's lock held: record, do not
     * call back. May be NULL. */
    void (*attachment_changed)(void *ctx, const struct device_kind *kind, unsigned index,
                               bool connected, const char *why);
    void *attachment_ctx;
    /* The guest connects to host port over a socket device: a stream socket of the owner's
     * own listener for port (it keeps the other end), or -ENOENT when it has none and the
     * device's configured sockets decide. Called on the loop with the device's lock held. May
     * be NULL. */
    int (*socket_listener)(void *ctx, uint32_t port);
    void *socket_listener_ctx;
    /* Who hears a graphics device's modes and flushes (a VM's displays). May be NULL. */
    const struct gpu_display_sink *display_sink;
};

/* One device built from its config object. */
struct device_instance {
    const struct device_kind *kind;
    unsigned index;            /* among the configuration's devices of this kind */
    struct virtio_device *dev; /* its transport is the caller's to provide */
    void *host;                /* the row's host side (a disk image, console ports) */
};

struct device_kind {
    const char *name;   /* "storage device": messages call the second one "storage device 2" */
    uint32_t pci_class; /* class, subclass, prog-if */
    /* Why a vhost-user server cannot serve this kind (no front end exists for it), or NULL. */
    const char *not_served;
    unsigned (*count)(const vmk_config *cfg);
    /* Opens the host side of cfg's index-th device of this kind and makes the device. On
     * failure nothing stays open. */
    vmk_result (*open)(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                       struct device_instance *out, vmk_error **err);
    /* Once the device has its transport: host input may flow (NULL: nothing to do). */
    vmk_result (*connect)(struct device_instance *inst, vmk_error **err);
    /* The guest's IPv4 address (network order) as the device saw it, 0 while unknown (NULL:
     * the kind has none). */
    uint32_t (*guest_ipv4)(const struct device_instance *inst);
    /* Adds or removes a host port forward at run time (NULL: the kind has none). */
    vmk_result (*port_forward)(struct device_instance *inst, bool add, bool udp,
                               const char *host_address, unsigned host_port, unsigned guest_port,
                               vmk_error **err);
    /* A memory balloon's pages (4 KiB) the guest should give back, set and read, and the pages
     * it says it gave (NULL: the kind is no balloon). Any thread. */
    void (*balloon_set_target)(struct device_instance *inst, uint32_t pages);
    void (*balloon_pages)(struct device_instance *inst, uint32_t *target, uint32_t *actual);
    /* A socket device: connects fd (a stream socket, the device's from now on) to the guest's
     * port; p hears how it ended. -errno when it cannot start (NULL: the kind is none). */
    int (*socket_connect)(struct device_instance *inst, int fd, uint32_t port,
                          struct vsock_pending *p);
    /* A graphics device: asks the guest to show w x h on scanout, and copies what it shows (as
     * virtio_gpu_reconfigure and virtio_gpu_read_scanout; NULL: the kind is none). Any thread. */
    int (*display_reconfigure)(struct device_instance *inst, unsigned scanout, uint32_t w,
                               uint32_t h);
    int (*display_read)(struct device_instance *inst, unsigned scanout, void *buf, size_t len,
                        uint32_t *w, uint32_t *h);
    /* An input device: n events and a SYN_REPORT (as virtio_input_send; NULL: the kind is
     * none). Any thread. */
    int (*input_send)(struct device_instance *inst, const struct virtio_input_event *ev,
                      unsigned n);
    /* The pty a port got, or NULL (NULL: the kind has no ports). */
    const char *(*pty_path)(const struct device_instance *inst, unsigned port);
    /* Destroys the device (its transport is gone), then closes the host side. */
    void (*close)(struct device_instance *inst);
};

extern const struct device_kind device_kind_virtio_block;
extern const struct device_kind device_kind_virtio_entropy;
extern const struct device_kind device_kind_virtio_console;
extern const struct device_kind device_kind_virtio_network;
extern const struct device_kind device_kind_virtio_balloon;
extern const struct device_kind device_kind_virtio_socket;
extern const struct device_kind device_kind_virtio_file_system;
extern const struct device_kind device_kind_virtio_graphics;
extern const struct device_kind device_kind_virtio_keyboard;
extern const struct device_kind device_kind_virtio_pointing;

/* How many of cfg's storage devices are of kind (virtio-blk functions, USB drives). */
unsigned device_storage_count(const vmk_config *cfg, vmk_storage_device_kind kind);

/* How many of cfg's keyboards are of kind (virtio-input functions, USB keyboards). */
unsigned device_keyboard_count(const vmk_config *cfg, vmk_keyboard_kind kind);

/* disk_image_open with what a storage attachment of the config says (path, read-only, caching,
 * synchronization): for virtio-blk's row and the USB drives (usb_bus.c). */
struct disk_image;
vmk_result device_open_disk_image(const vmk_storage_attachment *att, struct disk_image **out,
                                  vmk_error **err) __attribute__((warn_unused_result));

/* Every row, in the order the machine puts devices on the bus; NULL-terminated. */
extern const struct device_kind *const device_table[];

#endif
