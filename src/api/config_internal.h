/* The configuration objects' insides, shared by the files of src/api. Nothing here holds a
 * resource: fds in an fd attachment stay the caller's, and a pty or socket is made when a
 * VM starts. Code outside src/api reads configurations through include/vmkit.h's getters. */
#ifndef VMK_API_CONFIG_INTERNAL_H
#define VMK_API_CONFIG_INTERNAL_H

#include "vmkit.h"

#include <stdbool.h>

/* The defaults and limits vmk_config_validate enforces (exported by the vmk_*_max_*
 * functions). */
#define VMK_DEFAULT_CPUS            1u
#define VMK_DEFAULT_MEMORY          (512ULL << 20)
#define VMK_MIN_CPUS                1u
#define VMK_MAX_CPUS                254u /* xAPIC ids 0..254: 255 is broadcast, the IOAPIC takes one */
#define VMK_MIN_MEMORY              (2ULL << 20)
#define VMK_MAX_MEMORY              (1ULL << 40)
#define VMK_MEMORY_ALIGN            (1ULL << 20)
#define VMK_MAX_SERIAL_PORTS        4 /* COM1..COM4 */
#define VMK_MAX_STORAGE_DEVICES     16
#define VMK_MAX_USB_STORAGE_DEVICES 4 /* the xHCI controller's USB 2 ports */
#define VMK_MAX_ENTROPY_DEVICES     1
#define VMK_MAX_CONSOLE_DEVICES     1
#define VMK_MAX_CONSOLE_PORTS       16  /* VIRTIO_CONSOLE_MAX_PORTS */
#define VMK_CONSOLE_NAME_MAX        255 /* bytes of a port name */
#define VMK_BLK_ID_MAX              20  /* virtio-blk GET_ID: bytes, no terminator on the wire */
#define VMK_BLK_MAX_QUEUES          16
#define VMK_RNG_DEFAULT_RATE        (1u << 20)
#define VMK_RNG_MAX_RATE            (UINT64_C(1) << 32)
#define VMK_MAX_NETWORK_DEVICES     8
#define VMK_MAX_BALLOON_DEVICES     1
#define VMK_MAX_SOCKET_DEVICES      1
#define VMK_VSOCK_MIN_CID           3u
#define VMK_VSOCK_MAX_CID           0xfffffffeu
#define VMK_VSOCK_MAX_PORT          0xfffffffeu /* 0xffffffff is VMADDR_PORT_ANY */
#define VMK_NET_MIN_MTU             68          /* the guest's MTU: IPv4's minimum */
#define VMK_NET_MAX_MTU             65535       /* virtio-net's mtu field is 16 bits */
#define VMK_NET_LINK_MIN_MTU        1500        /* a socket attachment's: Ethernet's */
#define VMK_NET_LINK_MAX_MTU        65535
#define VMK_NET_DEFAULT_HOST        "127.0.0.1" /* a port forward's host address */
#define VMK_IFNAME_MAX              15          /* IFNAMSIZ - 1 */
#define VMK_MAX_FS_DEVICES          8
#define VMK_FS_TAG_MAX              35  /* bytes: Linux's tag field is 36, read up to a NUL */
#define VMK_FS_NAME_MAX             255 /* bytes of a multiple share's directory name (NAME_MAX) */
#define VMK_FS_MAX_QUEUES           8   /* request queues, besides the high-priority one */
#define VMK_TRANSLATOR_DIR          "/usr/bin" /* where qemu-user-static puts qemu-*-static */
#define VMK_MAX_GPU_DEVICES         1
#define VMK_GPU_MAX_SCANOUTS        16     /* virtio-gpu's VIRTIO_GPU_MAX_SCANOUTS */
#define VMK_GPU_MAX_DIMENSION       16384u /* pixels a scanout's side may have */
#define VMK_MAX_KEYBOARDS           4
#define VMK_MAX_POINTERS            4 /* pointing devices */

struct vmk_boot_loader {
    vmk_boot_loader_kind kind;
    char *kernel; /* Linux */
    char *initrd;
    char *cmdline;
    char *firmware;                /* EFI: NULL for the default */
    vmk_efi_variable_store *store; /* EFI */
};

struct vmk_efi_variable_store {
    char *path;
};

struct vmk_serial_attachment {
    vmk_serial_attachment_kind kind;
    char *path; /* file, socket */
    bool append;
    int read_fd; /* fd pair; -1 when absent */
    int write_fd;
};

struct vmk_storage_attachment {
    vmk_storage_attachment_kind kind;
    char *path;
    bool read_only;
    vmk_disk_caching_mode caching;
    vmk_disk_sync_mode sync;
};

struct vmk_storage_device {
    vmk_storage_device_kind kind;
    vmk_storage_attachment *att; /* never NULL */
    char *identifier;            /* NULL: none */
    unsigned queues;             /* 0: automatic */
};

struct vmk_entropy_device {
    vmk_entropy_device_kind kind;
    uint64_t rate;
};

struct vmk_memory_balloon_device {
    vmk_memory_balloon_device_kind kind;
    bool deflate_on_oom;
    bool free_page_reporting;
};

struct socket_port {
    uint32_t port;
    char *path; /* never NULL */
    bool listen;
};

struct vmk_socket_device {
    vmk_socket_device_kind kind;
    uint32_t guest_cid;
    char *uds_path; /* NULL: none */
    struct socket_port *port;
    unsigned port_count;
};

struct vmk_shared_directory {
    char *path; /* NULL: none (a validation problem) */
    bool read_only;
};

struct share_entry {
    char *name;                /* NULL in a single share */
    vmk_shared_directory *dir; /* never NULL */
};

struct vmk_directory_share {
    vmk_directory_share_kind kind;
    struct share_entry *entry; /* single: one; multiple: any number; translator: none */
    unsigned entry_count;
};

struct vmk_directory_sharing_device {
    char *tag;                  /* NULL: none (a validation problem) */
    vmk_directory_share *share; /* NULL: none (a validation problem) */
    vmk_file_system_cache_mode cache;
    vmk_file_system_ownership ownership;
    uint32_t uid, gid; /* SQUASH: what the guest sees where it set no owner */
    unsigned request_queues;
};

struct console_port {
    char *name; /* NULL: none */
    bool is_console;
    vmk_serial_attachment *att; /* never NULL */
};

struct vmk_console_device {
    vmk_console_device_kind kind;
    struct console_port *port;
    unsigned port_count;
};

struct port_forward {
    vmk_port_forward_protocol protocol;
    char *host_address; /* never NULL */
    unsigned host_port;
    unsigned guest_port;
};

struct vmk_network_attachment {
    vmk_network_attachment_kind kind;
    char *path;         /* unix datagram, unix stream: the socket; tap: the interface name */
    int fd;             /* file handle; -1 for other kinds */
    unsigned mtu;       /* VMK_NET_LINK_MIN_MTU unless set */
    bool mtu_set;       /* set on a NAT or tap attachment: a problem */
    bool host_loopback; /* NAT */
    bool vfkit_magic;   /* unix datagram */
    struct port_forward *forward; /* NAT */
    unsigned forward_count;
};

struct vmk_network_device {
    vmk_network_device_kind kind;
    vmk_network_attachment *att; /* never NULL */
    vmk_mac_address mac;
    unsigned mtu; /* 0: none offered */
    bool offloading;
};

/* The kinds of the graphics and pointing objects: one each today, room for more (a trackpad)
 * without changing the objects' shape. Keyboards have a public kind. */
enum graphics_device_kind {
    GRAPHICS_DEVICE_VIRTIO = 0,
};

enum pointing_device_kind {
    POINTING_DEVICE_VIRTIO_SCREEN_COORDINATE = 0,
};

struct gpu_scanout {
    uint32_t width, height; /* pixels, as given: validation judges them */
};

struct vmk_graphics_device {
    enum graphics_device_kind kind;
    struct gpu_scanout *scanout; /* any number: validation judges the count */
    unsigned scanout_count;
};

struct vmk_keyboard {
    vmk_keyboard_kind kind;
};

struct vmk_pointing_device {
    enum pointing_device_kind kind;
};

/* A growable array of owned pointers: config objects store any number of devices and
 * vmk_config_validate judges the count. */
struct ptr_array {
    void **item;
    unsigned count;
};

struct vmk_config {
    unsigned cpu_count;
    uint64_t memory_size;
    bool usb_controller;
    vmk_boot_loader *boot_loader;
    struct ptr_array serial;   /* vmk_serial_attachment */
    struct ptr_array storage;  /* vmk_storage_device */
    struct ptr_array entropy;  /* vmk_entropy_device */
    struct ptr_array console;  /* vmk_console_device */
    struct ptr_array network;  /* vmk_network_device */
    struct ptr_array balloon;  /* vmk_memory_balloon_device */
    struct ptr_array vsock;    /* vmk_socket_device */
    struct ptr_array fs;       /* vmk_directory_sharing_device */
    struct ptr_array graphics; /* vmk_graphics_device */
    struct ptr_array keyboard; /* vmk_keyboard */
    struct ptr_array pointing; /* vmk_pointing_device */
};

/* Appends p; 0 or -ENOMEM (p stays the caller's then). */
int ptr_array_push(struct ptr_array *a, void *p);
/* Frees every item with free_item, then the array. */
void ptr_array_clear(struct ptr_array *a, void (*free_item)(void *));

/* Deep copies; NULL when out of memory. */
vmk_config *config_copy(const vmk_config *cfg);
vmk_boot_loader *boot_loader_copy(const vmk_boot_loader *bl);
/* The EFI boot loader's own fields into c (a new EFI boot loader). */
vmk_result efi_boot_loader_copy_into(const vmk_boot_loader *bl, vmk_boot_loader *c);
vmk_serial_attachment *serial_attachment_copy(const vmk_serial_attachment *att);
vmk_storage_device *storage_device_copy(const vmk_storage_device *dev);
vmk_entropy_device *entropy_device_copy(const vmk_entropy_device *dev);
vmk_console_device *console_device_copy(const vmk_console_device *dev);
vmk_network_device *network_device_copy(const vmk_network_device *dev);
vmk_memory_balloon_device *memory_balloon_device_copy(const vmk_memory_balloon_device *dev);
vmk_socket_device *socket_device_copy(const vmk_socket_device *dev);
vmk_directory_sharing_device *
directory_sharing_device_copy(const vmk_directory_sharing_device *dev);
vmk_graphics_device *graphics_device_copy(const vmk_graphics_device *dev);
vmk_keyboard *keyboard_copy(const vmk_keyboard *kbd);
vmk_pointing_device *pointing_device_copy(const vmk_pointing_device *dev);

struct problems;
/* A directory sharing device on its own: tag, share, paths, modes (directory_share.c). what:
 * "directory sharing device 2". Tags shared between devices are validate.c's. */
void directory_sharing_device_validate(const vmk_directory_sharing_device *dev, const char *what,
                                       struct problems *p);
/* A graphics device on its own: its scanouts, their count and sizes (graphics.c). what:
 * "graphics device 1". */
void graphics_device_validate(const vmk_graphics_device *dev, const char *what, struct problems *p);
/* Whether dir holds an executable regular file qemu-*-static (vmk_linux_translator_availability
 * asks VMK_TRANSLATOR_DIR; tests ask a directory of their own). */
bool linux_translator_installed_in(const char *dir);

/* Replaces *slot with a copy of s (NULL clears it): VMK_OK or VMK_ERR_NO_MEMORY. */
vmk_result config_set_string(char **slot, const char *s);

#endif
