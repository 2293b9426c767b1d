/* The configuration objects' insides, shared by config.c, vm.c and the machine
 * builder. Nothing here holds a resource: fds in an fd attachment stay the caller's,
 * and a pty or socket is made when a VM starts. */
#ifndef VMK_API_CONFIG_INTERNAL_H
#define VMK_API_CONFIG_INTERNAL_H

#include "vmkit.h"

#define VMK_MAX_SERIAL_PORTS    4
#define VMK_MAX_STORAGE_DEVICES 16
#define VMK_MAX_ENTROPY_DEVICES 1
#define VMK_MAX_CONSOLE_DEVICES 1
#define VMK_MAX_CONSOLE_PORTS   16  /* VIRTIO_CONSOLE_MAX_PORTS */
#define VMK_CONSOLE_NAME_MAX    255 /* bytes of a port name */
#define VMK_BLK_ID_MAX          20  /* virtio-blk GET_ID: bytes, no terminator on the wire */

struct vmk_boot_loader {
    char *kernel;
    char *initrd;
    char *cmdline;
};

enum serial_attachment_kind {
    SERIAL_ATTACHMENT_FILE,
    SERIAL_ATTACHMENT_FD,
    SERIAL_ATTACHMENT_PTY,    /* a pseudo-terminal vmkit created */
    SERIAL_ATTACHMENT_SOCKET, /* a unix stream socket vmkit listens on */
};

struct vmk_serial_attachment {
    enum serial_attachment_kind kind;
    char *path; /* file, socket */
    bool append;
    int read_fd; /* fd pair; -1 when absent */
    int write_fd;
};

enum storage_attachment_kind { STORAGE_ATTACHMENT_DISK_IMAGE };

struct vmk_storage_attachment {
    enum storage_attachment_kind kind;
    char *path;
    bool read_only;
    vmk_disk_caching_mode caching;
    vmk_disk_sync_mode sync;
};

enum storage_device_kind { STORAGE_DEVICE_VIRTIO_BLOCK };

struct vmk_storage_device {
    enum storage_device_kind kind;
    vmk_storage_attachment *att; /* never NULL */
    char *identifier;            /* NULL, or 1..VMK_BLK_ID_MAX printable ASCII bytes */
};

enum entropy_device_kind { ENTROPY_DEVICE_VIRTIO };

struct vmk_entropy_device {
    enum entropy_device_kind kind;
};

struct console_port {
    char *name; /* NULL: none */
    bool is_console;
    vmk_serial_attachment *att; /* never NULL */
};

struct vmk_console_device {
    struct console_port port[VMK_MAX_CONSOLE_PORTS];
    unsigned port_count;
};

struct vmk_config {
    unsigned cpu_count;
    uint64_t memory_size;
    vmk_boot_loader *boot_loader;
    vmk_serial_attachment *serial[VMK_MAX_SERIAL_PORTS];
    unsigned serial_count;
    vmk_storage_device *storage[VMK_MAX_STORAGE_DEVICES];
    unsigned storage_count;
    vmk_entropy_device *entropy[VMK_MAX_ENTROPY_DEVICES];
    unsigned entropy_count;
    vmk_console_device *console[VMK_MAX_CONSOLE_DEVICES];
    unsigned console_count;
};

/* Deep copy; NULL when out of memory. */
vmk_config *config_copy(const vmk_config *cfg);
vmk_serial_attachment *serial_attachment_copy(const vmk_serial_attachment *att);
vmk_storage_device *storage_device_copy(const vmk_storage_device *dev);

#endif
