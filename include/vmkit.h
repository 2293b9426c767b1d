/* vmkit — create and run virtual machines on Linux/KVM.
 *
 * This header is the whole public contract of libvmkit: what is not here is private.
 * Types are opaque; every `_new` has a `_free`, and `_free(NULL)` does nothing. Setters
 * copy the strings they are given. An object handed to a container (a boot loader to a
 * config, an attachment to a device, a device to a config) belongs to the container from
 * then on, whether or not the call succeeds.
 *
 * Errors — one policy for the whole header:
 *  - Every call that can fail returns a vmk_result; VMK_OK is 0 and codes never move.
 *  - Building a configuration never fails because of a value. Constructors, setters and
 *    add functions store what they are given and fail only for a NULL object
 *    (VMK_ERR_INVALID_ARGUMENT) or when out of memory (VMK_ERR_NO_MEMORY; a constructor
 *    then returns NULL). vmk_config_validate judges every value and reports every problem
 *    at once, each line naming its object ("storage device 2: disk image /x: ..."). This is
 *    the framework's rule: setters store, validation judges.
 *  - Calls that act (validate, start, pause, resume, stop, serve) also take `vmk_error
 *    **err` as their last argument: pass NULL, or the address of a NULL pointer that then
 *    receives a vmk_error (a code, the errno of a failed system call, a message) for the
 *    caller to vmk_error_free.
 *
 * Thread safety: configuration objects may be used from any thread, but never the same
 * object from two threads at once. A vmk_vm may be driven from any thread; its calls are
 * serialised internally. Delegate callbacks run on a thread the library owns (the VM's
 * event-loop thread); from a callback, only vmk_vm_get_state(), vmk_vm_can_*(),
 * vmk_vm_get_stop_reason() and vmk_vm_copy_error() may be called on that VM (the other
 * vmk_vm calls fail with VMK_ERR_INVALID_STATE there).
 *
 * Signals: while a VM runs, the library sends the real-time signal vmk_vm_kick_signal()
 * (SIGRTMIN + 4) to its own vCPU threads to take them out of the guest, and installs a
 * handler for it (one that does nothing) the first time a VM starts. Leave that signal to
 * the library. Its threads block every other signal, so process signals reach the
 * application's threads only.
 */
#ifndef VMKIT_H
#define VMKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VMK_BUILDING_LIBRARY)
#define VMK_API __attribute__((visibility("default")))
#else
#define VMK_API
#endif

#define VMK_VERSION_MAJOR  0
#define VMK_VERSION_MINOR  2
#define VMK_VERSION_PATCH  0
#define VMK_VERSION_STRING "0.2.0"
/* MAJOR * 1000000 + MINOR * 1000 + PATCH */
#define VMK_VERSION_NUM    2000

/* The library's version at run time (compare with VMK_VERSION_NUM, the header's). */
VMK_API int vmk_version_number(void);
VMK_API const char *vmk_version_string(void);

/* ---- Results and errors ---------------------------------------------------- */

/* Codes never move: a retired code keeps its slot. */
typedef enum {
    VMK_OK = 0,
    VMK_ERR_INVALID_ARGUMENT = 1, /* a NULL object or an argument out of its type's range */
    VMK_ERR_NO_MEMORY = 2,
    VMK_ERR_INVALID_CONFIG = 3, /* vmk_config_validate found problems */
    VMK_ERR_IO = 4,             /* a file could not be opened, read, written or locked */
    VMK_ERR_BAD_IMAGE = 5,      /* a kernel or initrd is not in a format we load */
    VMK_ERR_INVALID_STATE = 6,  /* the operation is not allowed in the VM's state (or thread) */
    VMK_ERR_KVM = 7,            /* a KVM ioctl failed */
    VMK_ERR_UNSUPPORTED = 8,    /* the host lacks something the config needs */
    VMK_ERR_GUEST_FAULT = 9,    /* the guest triple-faulted or KVM could not run it */
    VMK_ERR_TIMEOUT = 10,
    VMK_ERR_INTERNAL = 11,
} vmk_result;

typedef struct vmk_error vmk_error;

VMK_API vmk_result vmk_error_code(const vmk_error *err);
/* The errno of the failed system call, or 0 when none failed. */
VMK_API int vmk_error_errno(const vmk_error *err);
/* The message: names the object and the cause; validation gives one line per problem.
 * Never NULL for a non-NULL error. */
VMK_API const char *vmk_error_message(const vmk_error *err);
VMK_API void vmk_error_free(vmk_error *err);
VMK_API const char *vmk_result_string(vmk_result r);

/* ---- Boot loader ----------------------------------------------------------- */

typedef struct vmk_boot_loader vmk_boot_loader;

/* A Linux kernel: a bzImage (64-bit boot protocol) or an uncompressed ELF64 vmlinux
 * entered in 64-bit mode. vmk_config_validate checks the path and the image. NULL only
 * when out of memory. */
VMK_API vmk_boot_loader *vmk_linux_boot_loader_new(const char *kernel_path);
VMK_API void vmk_boot_loader_free(vmk_boot_loader *bl);
/* NULL clears. */
VMK_API vmk_result vmk_linux_boot_loader_set_initrd(vmk_boot_loader *bl, const char *path);
VMK_API vmk_result vmk_linux_boot_loader_set_command_line(vmk_boot_loader *bl, const char *cmdline);
VMK_API const char *vmk_linux_boot_loader_get_kernel(const vmk_boot_loader *bl);
VMK_API const char *vmk_linux_boot_loader_get_initrd(const vmk_boot_loader *bl);
VMK_API const char *vmk_linux_boot_loader_get_command_line(const vmk_boot_loader *bl);
/* The longest command line, in bytes (without the terminating NUL). */
VMK_API size_t vmk_linux_boot_loader_max_command_line_length(void);

typedef enum {
    VMK_BOOT_LOADER_LINUX = 0,
    VMK_BOOT_LOADER_EFI = 1,
} vmk_boot_loader_kind;
VMK_API vmk_boot_loader_kind vmk_boot_loader_get_kind(const vmk_boot_loader *bl);

/* An EFI variable store (VZEFIVariableStore): the file that keeps the firmware's non-volatile
 * variables (boot entries, Secure Boot keys) between boots, as the writable half of the
 * firmware's flash. _create makes a new one at path from the default firmware's template
 * (Debian's OVMF_VARS_4M.fd, package `ovmf`): written to a temporary file, synced and renamed
 * into place, so path is whole or absent; an existing path is an error unless allow_overwrite.
 * _open takes an existing one (validation checks it). NULL and *err on failure. */
typedef struct vmk_efi_variable_store vmk_efi_variable_store;
VMK_API vmk_efi_variable_store *
vmk_efi_variable_store_create(const char *path, bool allow_overwrite, vmk_error **err);
VMK_API vmk_efi_variable_store *vmk_efi_variable_store_open(const char *path, vmk_error **err);
VMK_API void vmk_efi_variable_store_free(vmk_efi_variable_store *store);
VMK_API const char *vmk_efi_variable_store_get_path(const vmk_efi_variable_store *store);
/* Where Debian's OVMF keeps its code and variable template, found at the usual paths; NULL
 * when the `ovmf` package is not installed. */
VMK_API const char *vmk_efi_default_firmware_path(void);
VMK_API const char *vmk_efi_default_variable_template_path(void);

/* The EFI boot loader (VZEFIBootLoader): the firmware (default: vmk_efi_default_firmware_path)
 * boots what its variables or removable media name. It needs a variable store. Validation:
 * the firmware must be a readable firmware volume; the store must exist, be readable and
 * writable, be a firmware volume, and be the size the firmware's flash leaves for it (code and
 * variables fill a flash of a power-of-two size: 540672 bytes next to OVMF_CODE_4M.fd). NULL
 * only when out of memory. */
VMK_API vmk_boot_loader *vmk_efi_boot_loader_new(void);
/* Takes ownership of store (NULL clears). */
VMK_API vmk_result vmk_efi_boot_loader_set_variable_store(vmk_boot_loader *bl,
                                                          vmk_efi_variable_store *store);
VMK_API const vmk_efi_variable_store *
vmk_efi_boot_loader_get_variable_store(const vmk_boot_loader *bl);
/* NULL: the default firmware. */
VMK_API vmk_result vmk_efi_boot_loader_set_firmware(vmk_boot_loader *bl, const char *path);
/* The firmware path set, or the default one; NULL when neither exists. */
VMK_API const char *vmk_efi_boot_loader_get_firmware(const vmk_boot_loader *bl);

/* ---- Serial attachments: the host side of a serial or console port ---------- */

typedef struct vmk_serial_attachment vmk_serial_attachment;

typedef enum {
    VMK_SERIAL_ATTACHMENT_FILE = 0,   /* output to a file */
    VMK_SERIAL_ATTACHMENT_FD = 1,     /* an fd pair (a terminal, pipes) */
    VMK_SERIAL_ATTACHMENT_PTY = 2,    /* a new pseudo-terminal */
    VMK_SERIAL_ATTACHMENT_SOCKET = 3, /* a unix socket vmkit listens on */
} vmk_serial_attachment_kind;

/* Guest output goes to a file, opened at each start (created if missing; truncated unless
 * append). Guest input: none. */
VMK_API vmk_serial_attachment *vmk_file_serial_attachment_new(const char *path, bool append);
/* Guest input is read from read_fd, output written to write_fd. Either may be -1. The
 * descriptors stay the caller's and must stay open until the VM is freed: each start
 * duplicates them, each stop closes the duplicates. If read_fd is a terminal, it is put in
 * raw mode while the VM runs and Ctrl-A x stops the VM (Ctrl-A Ctrl-A sends one Ctrl-A).
 * Output never blocks the guest's CPUs or the library's thread: it goes through a buffer
 * (vmk_serial_attachment_buffer_size() bytes) written as write_fd takes it; while the buffer
 * is full the guest sees a busy port (the UART's transmitter stays full, console buffers
 * are held), and a reader that went away (EPIPE) loses what follows. */
VMK_API vmk_serial_attachment *vmk_fd_serial_attachment_new(int read_fd, int write_fd);
/* A pseudo-terminal that each start of a VM creates; vmk_vm_copy_serial_port_pty_path (or
 * _console_port_) tells its path ("/dev/pts/N") while the VM runs. Users open that path
 * (screen /dev/pts/N, cat, ...), one after another; the line is raw (bytes pass unchanged,
 * no echo). Guest output nobody reads is dropped once the buffer is full: it never stalls
 * the guest. When the VM stops, the pty goes, and with it what its reader had not read yet
 * (the kernel discards it on hang-up). */
VMK_API vmk_serial_attachment *vmk_pty_serial_attachment_new(void);
/* A unix stream socket that each start creates at path and listens on (a stale socket file
 * nobody listens on is replaced; a live listener or another kind of file there makes the
 * start fail). One client at a time is connected: its bytes are the guest's input, and
 * guest output goes to it, dropped while no client is connected or the client does not
 * read. When it hangs up, the next client is accepted. Each stop removes the socket file.
 * vmk_config_validate checks path (not empty, at most vmk_socket_path_max_length() bytes). */
VMK_API vmk_serial_attachment *vmk_socket_serial_attachment_new(const char *path);
VMK_API void vmk_serial_attachment_free(vmk_serial_attachment *att);
VMK_API vmk_serial_attachment_kind vmk_serial_attachment_get_kind(const vmk_serial_attachment *att);
/* The file's or the socket's path; NULL for other kinds. */
VMK_API const char *vmk_serial_attachment_get_path(const vmk_serial_attachment *att);
/* A file attachment's append flag; false for other kinds. */
VMK_API bool vmk_serial_attachment_is_append(const vmk_serial_attachment *att);
/* An fd attachment's descriptors; -1 for other kinds (and for an absent side). */
VMK_API int vmk_serial_attachment_get_read_fd(const vmk_serial_attachment *att);
VMK_API int vmk_serial_attachment_get_write_fd(const vmk_serial_attachment *att);
/* Bytes of guest output a port holds for a slow reader. */
VMK_API size_t vmk_serial_attachment_buffer_size(void);
/* The longest unix socket path, in bytes (sun_path less its NUL). */
VMK_API size_t vmk_socket_path_max_length(void);

/* ---- Storage ---------------------------------------------------------------- */

typedef struct vmk_storage_attachment vmk_storage_attachment;
typedef struct vmk_storage_device vmk_storage_device;

typedef enum {
    VMK_STORAGE_ATTACHMENT_DISK_IMAGE = 0, /* a raw image file or block device */
} vmk_storage_attachment_kind;

typedef enum {
    VMK_STORAGE_DEVICE_VIRTIO_BLOCK = 0,     /* virtio-blk */
    VMK_STORAGE_DEVICE_USB_MASS_STORAGE = 1, /* a USB drive on the machine's xHCI controller */
} vmk_storage_device_kind;

/* How the host caches a disk image's data. */
typedef enum {
    VMK_DISK_CACHING_AUTOMATIC = 0, /* the library chooses (today: cached) */
    VMK_DISK_CACHING_CACHED = 1,    /* through the host page cache */
    VMK_DISK_CACHING_UNCACHED = 2,  /* O_DIRECT: bypasses the host page cache */
} vmk_disk_caching_mode;

/* What a guest's flush does on the host. */
typedef enum {
    VMK_DISK_SYNC_FULL = 0,  /* fdatasync: the data and what is needed to find it (default) */
    VMK_DISK_SYNC_FSYNC = 1, /* fsync: the data and all of the file's metadata */
    VMK_DISK_SYNC_NONE = 2,  /* nothing: fast, but a host crash may lose flushed writes */
} vmk_disk_sync_mode;

/* A raw disk image: a regular file or a block device, used as it is (512-byte sectors, no
 * format). vmk_config_validate checks that the path names a regular file or block device
 * that can be opened for reading (and writing unless read_only) and whose size is a
 * multiple of 512. Each start opens it once and takes an advisory lock on it (shared when
 * read-only, exclusive otherwise: a second VM or vhost-user server on the same image fails
 * to start, naming the image and the lock). */
VMK_API vmk_storage_attachment *vmk_disk_image_attachment_new(const char *path, bool read_only);
VMK_API void vmk_storage_attachment_free(vmk_storage_attachment *att);
VMK_API vmk_result vmk_disk_image_attachment_set_caching_mode(vmk_storage_attachment *att,
                                                              vmk_disk_caching_mode mode);
VMK_API vmk_result vmk_disk_image_attachment_set_synchronization_mode(vmk_storage_attachment *att,
                                                                      vmk_disk_sync_mode mode);
VMK_API vmk_storage_attachment_kind
vmk_storage_attachment_get_kind(const vmk_storage_attachment *att);
VMK_API const char *vmk_disk_image_attachment_get_path(const vmk_storage_attachment *att);
VMK_API bool vmk_disk_image_attachment_is_read_only(const vmk_storage_attachment *att);
VMK_API vmk_disk_caching_mode
vmk_disk_image_attachment_get_caching_mode(const vmk_storage_attachment *att);
VMK_API vmk_disk_sync_mode
vmk_disk_image_attachment_get_synchronization_mode(const vmk_storage_attachment *att);

/* A virtio block device (virtio 1.2, 5.2) backed by att. Takes ownership of att, also when
 * it fails (NULL: att is NULL, or out of memory). */
VMK_API vmk_storage_device *vmk_virtio_block_device_new(vmk_storage_attachment *att);
/* A USB mass-storage device (VZUSBMassStorageDeviceConfiguration: bulk-only transport, SCSI
 * block commands) backed by att, on the xHCI controller the machine then has: what firmware
 * boots an installer ISO from, and what Linux's usb-storage shows as /dev/sdX. A read-only
 * attachment refuses writes with the SCSI write-protect sense. Added with
 * vmk_config_add_storage_device like any storage device (at most
 * vmk_config_max_usb_storage_device_count() of them). Takes ownership of att, also when it
 * fails. */
VMK_API vmk_storage_device *vmk_usb_mass_storage_device_new(vmk_storage_attachment *att);
VMK_API unsigned vmk_config_max_usb_storage_device_count(void);
VMK_API void vmk_storage_device_free(vmk_storage_device *dev);
VMK_API vmk_storage_device_kind vmk_storage_device_get_kind(const vmk_storage_device *dev);
VMK_API const vmk_storage_attachment *
vmk_storage_device_get_attachment(const vmk_storage_device *dev);
/* The serial the guest reads (VIRTIO_BLK_T_GET_ID; Linux shows it as
 * /dev/disk/by-id/virtio-<id>): printable ASCII, at most
 * vmk_virtio_block_device_max_identifier_length() bytes. NULL or "" clears it. */
VMK_API vmk_result vmk_virtio_block_device_set_identifier(vmk_storage_device *dev, const char *id);
VMK_API const char *vmk_virtio_block_device_get_identifier(const vmk_storage_device *dev);
VMK_API size_t vmk_virtio_block_device_max_identifier_length(void);
/* Request queues the device offers: 0 (the default) means one per vCPU, at most 8 (one for
 * a vhost-user server); else 1 .. vmk_virtio_block_device_max_queue_count(). */
VMK_API vmk_result vmk_virtio_block_device_set_queue_count(vmk_storage_device *dev, unsigned n);
VMK_API unsigned vmk_virtio_block_device_get_queue_count(const vmk_storage_device *dev);
VMK_API unsigned vmk_virtio_block_device_max_queue_count(void);

/* ---- Entropy ---------------------------------------------------------------- */

typedef struct vmk_entropy_device vmk_entropy_device;

typedef enum {
    VMK_ENTROPY_DEVICE_VIRTIO = 0,
} vmk_entropy_device_kind;

/* A virtio entropy device (virtio 1.2, 5.4): the guest's /dev/hwrng, fed from the host's
 * getrandom(2), at most 1 MiB/s unless set otherwise (bursts of up to 64 KiB). NULL when
 * out of memory. */
VMK_API vmk_entropy_device *vmk_virtio_entropy_device_new(void);
VMK_API void vmk_entropy_device_free(vmk_entropy_device *dev);
VMK_API vmk_entropy_device_kind vmk_entropy_device_get_kind(const vmk_entropy_device *dev);
/* Bytes per second a guest may draw: 1 .. vmk_virtio_entropy_device_max_rate(). */
VMK_API vmk_result vmk_virtio_entropy_device_set_rate(vmk_entropy_device *dev,
                                                      uint64_t bytes_per_second);
VMK_API uint64_t vmk_virtio_entropy_device_get_rate(const vmk_entropy_device *dev);
VMK_API uint64_t vmk_virtio_entropy_device_max_rate(void);

/* ---- Memory balloon --------------------------------------------------------- */

typedef struct vmk_memory_balloon_device vmk_memory_balloon_device;

typedef enum {
    VMK_MEMORY_BALLOON_DEVICE_VIRTIO_TRADITIONAL = 0,
} vmk_memory_balloon_device_kind;

/* A virtio traditional memory balloon (virtio 1.2, 5.5): the guest gives memory back to the
 * host when vmk_vm_set_target_memory_size asks it to. Pages it gives, and free pages it
 * reports, are released on the host at once. NULL when out of memory. */
VMK_API vmk_memory_balloon_device *vmk_virtio_traditional_memory_balloon_device_new(void);
VMK_API void vmk_memory_balloon_device_free(vmk_memory_balloon_device *dev);
VMK_API vmk_memory_balloon_device_kind
vmk_memory_balloon_device_get_kind(const vmk_memory_balloon_device *dev);
/* The guest may take pages back from the balloon when it runs out of memory
 * (VIRTIO_BALLOON_F_DEFLATE_ON_OOM); off by default. */
VMK_API vmk_result vmk_virtio_traditional_memory_balloon_device_set_deflate_on_oom(
    vmk_memory_balloon_device *dev, bool enabled);
VMK_API bool vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(
    const vmk_memory_balloon_device *dev);
/* The guest reports free memory, which the host releases (VIRTIO_BALLOON_F_PAGE_REPORTING);
 * off by default. */
VMK_API vmk_result vmk_virtio_traditional_memory_balloon_device_set_free_page_reporting(
    vmk_memory_balloon_device *dev, bool enabled);
VMK_API bool vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(
    const vmk_memory_balloon_device *dev);

/* ---- Sockets ---------------------------------------------------------------- */

typedef struct vmk_socket_device vmk_socket_device;

typedef enum {
    VMK_SOCKET_DEVICE_VIRTIO = 0,
} vmk_socket_device_kind;

/* A virtio socket device (virtio 1.2, 5.10): stream sockets (AF_VSOCK in a Linux guest)
 * between the guest, CID 3 unless set, and the host, CID 2, whose host ends are unix sockets:
 * Firecracker's convention (vmk_virtio_socket_device_set_unix_socket_path) and vfkit's port
 * mappings (vmk_virtio_socket_device_add_port), together if need be. NULL when out of
 * memory. */
VMK_API vmk_socket_device *vmk_virtio_socket_device_new(void);
VMK_API void vmk_socket_device_free(vmk_socket_device *dev);
VMK_API vmk_socket_device_kind vmk_socket_device_get_kind(const vmk_socket_device *dev);
/* The guest's context id: 3 .. 0xfffffffe. */
VMK_API vmk_result vmk_virtio_socket_device_set_guest_cid(vmk_socket_device *dev, uint32_t cid);
VMK_API uint32_t vmk_virtio_socket_device_get_guest_cid(const vmk_socket_device *dev);
/* Firecracker's convention: a guest connecting to host port P reaches the unix socket
 * "<path>_P" (a program listens there); vmkit listens at path, where a program connects,
 * writes "CONNECT <guest port>\n" and reads "OK <host port>\n" before the guest's bytes.
 * NULL: none (the default). */
VMK_API vmk_result vmk_virtio_socket_device_set_unix_socket_path(vmk_socket_device *dev,
                                                                 const char *path);
VMK_API const char *vmk_virtio_socket_device_get_unix_socket_path(const vmk_socket_device *dev);
/* vfkit's port mapping. listen false: a guest connecting to host port `port` reaches the
 * program listening at path. listen true: vmkit listens at path and each client reaches the
 * guest's port `port`. Ports are 1 .. 0xfffffffe, each at most once per direction. */
VMK_API vmk_result vmk_virtio_socket_device_add_port(vmk_socket_device *dev, uint32_t port,
                                                     const char *path, bool listen);
VMK_API unsigned vmk_virtio_socket_device_port_count(const vmk_socket_device *dev);
VMK_API vmk_result vmk_virtio_socket_device_get_port(const vmk_socket_device *dev, unsigned index,
                                                     uint32_t *port, const char **path,
                                                     bool *listen);

/* ---- Directory sharing ---------------------------------------------------------- */

/* A host directory the guest sees. read_only refuses every change from the guest (writes,
 * creations, removals, attribute changes). vmk_config_validate checks that path names a
 * directory. NULL only when out of memory. */
typedef struct vmk_shared_directory vmk_shared_directory;
VMK_API vmk_shared_directory *vmk_shared_directory_new(const char *path, bool read_only);
VMK_API void vmk_shared_directory_free(vmk_shared_directory *dir);
VMK_API const char *vmk_shared_directory_get_path(const vmk_shared_directory *dir);
VMK_API bool vmk_shared_directory_is_read_only(const vmk_shared_directory *dir);

/* What a directory sharing device exports: the framework's VZDirectoryShare. */
typedef struct vmk_directory_share vmk_directory_share;

typedef enum {
    VMK_DIRECTORY_SHARE_SINGLE = 0,           /* one directory is the mount */
    VMK_DIRECTORY_SHARE_MULTIPLE = 1,         /* named directories are its subdirectories */
    VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR = 2, /* the Rosetta analog: qemu-user-static */
} vmk_directory_share_kind;

/* The directory is the root of the guest's mount. Takes ownership of dir, also when it fails
 * (NULL: dir is NULL, or out of memory). */
VMK_API vmk_directory_share *vmk_single_directory_share_new(vmk_shared_directory *dir);
/* An empty share; each directory added is a subdirectory of the mount, by its name (as
 * VZMultipleDirectoryShare). vmk_config_validate wants at least one. */
VMK_API vmk_directory_share *vmk_multiple_directory_share_new(void);
/* Adds dir under name: not empty, no '/', not "." or "..", at most 255 bytes, unique in the
 * share. Takes ownership of dir, also when it fails: VMK_ERR_INVALID_ARGUMENT (a NULL or
 * non-multiple share, a NULL dir, a bad or taken name, *err naming it) or VMK_ERR_NO_MEMORY.
 * Unlike most setters it judges the name at once: a share never holds a bad one. */
VMK_API vmk_result vmk_multiple_directory_share_add_directory(vmk_directory_share *share,
                                                              const char *name,
                                                              vmk_shared_directory *dir,
                                                              vmk_error **err);
VMK_API vmk_directory_share_kind vmk_directory_share_get_kind(const vmk_directory_share *share);
/* 1 for a single share, the directories added for a multiple one, 0 for a translator. */
VMK_API unsigned vmk_directory_share_directory_count(const vmk_directory_share *share);
/* Directory index of the share and, when name is not NULL, its name (NULL for a single
 * share). NULL past the end; both stay the share's. */
VMK_API const vmk_shared_directory *
vmk_directory_share_get_directory(const vmk_directory_share *share, unsigned index,
                                  const char **name);
VMK_API void vmk_directory_share_free(vmk_directory_share *share);

typedef enum {
    VMK_TRANSLATOR_NOT_INSTALLED = 0,
    VMK_TRANSLATOR_INSTALLED = 1,
} vmk_translator_availability;

/* Whether Debian's qemu-user-static interpreters are on this host: any executable regular
 * file /usr/bin/qemu-*-static (qemu-aarch64-static, ...). Reads /usr/bin only. */
VMK_API vmk_translator_availability vmk_linux_translator_availability(void);
/* The Rosetta analog: a share of the host's qemu-user-static interpreters, which a guest
 * registers with binfmt_misc to run other architectures' Linux binaries. NULL with *err set
 * when they are not installed (VMK_ERR_UNSUPPORTED, naming the package) or out of memory.
 * vmk_config_validate checks again, for a config built elsewhere. */
VMK_API vmk_directory_share *vmk_linux_translator_directory_share_new(vmk_error **err);

typedef struct vmk_directory_sharing_device vmk_directory_sharing_device;

/* How long the guest may cache names, attributes and data (virtiofsd's --cache). */
typedef enum {
    VMK_FILE_SYSTEM_CACHE_AUTO = 0,   /* for a while; revalidated when the host file changes */
    VMK_FILE_SYSTEM_CACHE_NEVER = 1,  /* not at all: every access asks the host */
    VMK_FILE_SYSTEM_CACHE_ALWAYS = 2, /* indefinitely: only the guest changes the files */
} vmk_file_system_cache_mode;

/* Whose files are whose between host and guest. */
typedef enum {
    VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY = 0, /* the same uids and gids on both sides */
    VMK_FILE_SYSTEM_OWNERSHIP_SQUASH = 1,   /* see vmk_virtio_file_system_device_set_ownership */
} vmk_file_system_ownership;

/* The tag a guest agent mounts by itself, without being told (VZ's automount tag). */
#define VMK_VIRTIO_FS_AUTOMOUNT_TAG "vmkit-automount"

/* A virtio file system device (virtio 1.2, 5.11; virtiofs in Linux: mount -t virtiofs TAG
 * DIR), with no share until one is set, the AUTO cache, IDENTITY ownership and one request
 * queue. The tag is checked by vmk_config_validate (see ..._validate_tag), and must be
 * unique in a machine. NULL only when out of memory. */
VMK_API vmk_directory_sharing_device *vmk_virtio_file_system_device_new(const char *tag);
VMK_API void vmk_directory_sharing_device_free(vmk_directory_sharing_device *dev);
VMK_API const char *vmk_virtio_file_system_device_get_tag(const vmk_directory_sharing_device *dev);
/* Checks a tag as vmk_config_validate does: not empty, fewer than 36 bytes (the size of the
 * device's tag field in Linux), printable ASCII. VMK_ERR_INVALID_ARGUMENT with *err naming
 * the problem. */
VMK_API vmk_result vmk_virtio_file_system_device_validate_tag(const char *tag, vmk_error **err);
/* Takes ownership of share (also when it fails) and frees the one set before; NULL clears
 * (a device without a share is a validation problem). */
VMK_API vmk_result vmk_virtio_file_system_device_set_share(vmk_directory_sharing_device *dev,
                                                           vmk_directory_share *share);
VMK_API const vmk_directory_share *
vmk_virtio_file_system_device_get_share(const vmk_directory_sharing_device *dev);
VMK_API vmk_result vmk_virtio_file_system_device_set_cache_mode(vmk_directory_sharing_device *dev,
                                                                vmk_file_system_cache_mode mode);
VMK_API vmk_file_system_cache_mode
vmk_virtio_file_system_device_get_cache_mode(const vmk_directory_sharing_device *dev);
/* SQUASH: on the host the files all belong to vmkit's own user (a guest's chown is not
 * passed on); the guest sees the owner it set, or uid and gid where it set none. uid and gid
 * (default 0) mean nothing with IDENTITY but are kept. */
VMK_API vmk_result vmk_virtio_file_system_device_set_ownership(vmk_directory_sharing_device *dev,
                                                               vmk_file_system_ownership mode,
                                                               uint32_t uid, uint32_t gid);
/* uid and gid may be NULL. */
VMK_API vmk_file_system_ownership vmk_virtio_file_system_device_get_ownership(
    const vmk_directory_sharing_device *dev, uint32_t *uid, uint32_t *gid);
/* Request queues besides the high-priority queue: 1 (the default) .. 8. */
VMK_API vmk_result vmk_virtio_file_system_device_set_request_queue_count(
    vmk_directory_sharing_device *dev, unsigned count);
VMK_API unsigned
vmk_virtio_file_system_device_get_request_queue_count(const vmk_directory_sharing_device *dev);

/* ---- Console ---------------------------------------------------------------- */

typedef struct vmk_console_device vmk_console_device;

typedef enum {
    VMK_CONSOLE_DEVICE_VIRTIO = 0,
} vmk_console_device_kind;

/* A virtio console device (virtio 1.2, 5.3) with named ports, as Apple's
 * VZVirtioConsoleDeviceConfiguration: the guest sees each port as /dev/vportNpM (its name in
 * /sys/class/virtio-ports/vportNpM/name), the console port as hvc0. It needs at least one
 * port, at most vmk_virtio_console_device_max_port_count(), at most one of them the
 * console. NULL when out of memory. */
VMK_API vmk_console_device *vmk_virtio_console_device_new(void);
VMK_API void vmk_console_device_free(vmk_console_device *dev);
VMK_API vmk_console_device_kind vmk_console_device_get_kind(const vmk_console_device *dev);
/* Appends a port whose host side is att, as for a serial port. name may be NULL (no name):
 * printable ASCII, at most vmk_virtio_console_port_max_name_length() bytes, unique in the
 * device. Takes ownership of att, also when it fails (VMK_ERR_INVALID_ARGUMENT: dev or att
 * NULL; VMK_ERR_NO_MEMORY). */
VMK_API vmk_result vmk_virtio_console_device_add_port(vmk_console_device *dev, const char *name,
                                                      bool is_console, vmk_serial_attachment *att);
VMK_API unsigned vmk_virtio_console_device_port_count(const vmk_console_device *dev);
/* Port index's name (NULL: none), console flag and attachment; NULL/false past the end. */
VMK_API const char *vmk_virtio_console_device_get_port_name(const vmk_console_device *dev,
                                                            unsigned index);
VMK_API bool vmk_virtio_console_device_port_is_console(const vmk_console_device *dev,
                                                       unsigned index);
VMK_API const vmk_serial_attachment *
vmk_virtio_console_device_get_port_attachment(const vmk_console_device *dev, unsigned index);
VMK_API unsigned vmk_virtio_console_device_max_port_count(void);
VMK_API size_t vmk_virtio_console_port_max_name_length(void);

/* ---- Network ---------------------------------------------------------------- */

/* A MAC address value. */
typedef struct {
    uint8_t octets[6];
} vmk_mac_address;

#define VMK_MAC_ADDRESS_STRING_SIZE 18 /* "xx:xx:xx:xx:xx:xx" and its NUL */

/* A random, locally administered, unicast address (getrandom), as
 * VZMACAddress.randomLocallyAdministered. */
VMK_API vmk_mac_address vmk_mac_address_random(void);
/* Parses "xx:xx:xx:xx:xx:xx" (hex digits in either case, exactly 17 characters).
 * VMK_ERR_INVALID_ARGUMENT (out untouched) otherwise, or when text/out is NULL. */
VMK_API vmk_result vmk_mac_address_parse(const char *text, vmk_mac_address *out);
/* Lower case, into out (VMK_MAC_ADDRESS_STRING_SIZE bytes). */
VMK_API void vmk_mac_address_format(const vmk_mac_address *mac, char *out);
/* Bit 0 of octet 0; broadcast included. */
VMK_API bool vmk_mac_address_is_multicast(const vmk_mac_address *mac);
/* Bit 1 of octet 0. */
VMK_API bool vmk_mac_address_is_locally_administered(const vmk_mac_address *mac);

/* The host side of a network device. */
typedef struct vmk_network_attachment vmk_network_attachment;

typedef enum {
    VMK_NETWORK_ATTACHMENT_NAT = 0,           /* user-mode NAT (libslirp) */
    VMK_NETWORK_ATTACHMENT_FILE_HANDLE = 1,   /* a connected socket the caller gives */
    VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM = 2, /* a unix datagram socket path (vfkit/gvproxy) */
    VMK_NETWORK_ATTACHMENT_UNIX_STREAM = 3,   /* a unix stream socket path (passt, QEMU) */
    VMK_NETWORK_ATTACHMENT_TAP = 4,           /* an existing tap interface */
} vmk_network_attachment_kind;

typedef enum {
    VMK_PORT_FORWARD_TCP = 0,
    VMK_PORT_FORWARD_UDP = 1,
} vmk_port_forward_protocol;

/* User-mode NAT: the guest reaches the host's networks through the library, as through a
 * router (gateway 10.0.2.2); nothing reaches the guest but the port forwards. NULL when out
 * of memory. */
VMK_API vmk_network_attachment *vmk_nat_network_attachment_new(void);
/* Forwards host_address:host_port on the host to guest_port in the guest. host_address NULL
 * or "" means 127.0.0.1; an IPv4 or IPv6 literal otherwise. vmk_config_validate checks the
 * ports (1 .. 65535), the address, that no (protocol, host address, host port) is forwarded
 * twice, in one NAT attachment or across several, and that att is a NAT attachment (as for
 * host loopback). */
VMK_API vmk_result vmk_nat_network_attachment_add_port_forward(vmk_network_attachment *att,
                                                               vmk_port_forward_protocol protocol,
                                                               const char *host_address,
                                                               unsigned host_port,
                                                               unsigned guest_port);
/* 0 for other kinds. */
VMK_API unsigned vmk_nat_network_attachment_port_forward_count(const vmk_network_attachment *att);
/* Any out pointer may be NULL; host_address stays the attachment's ("127.0.0.1" when it was
 * given as NULL/""). VMK_ERR_INVALID_ARGUMENT past the end or for another kind. */
VMK_API vmk_result vmk_nat_network_attachment_get_port_forward(
    const vmk_network_attachment *att, unsigned index, vmk_port_forward_protocol *protocol,
    const char **host_address, unsigned *host_port, unsigned *guest_port);
/* Whether the gateway address 10.0.2.2 reaches the host's loopback (default true). */
VMK_API vmk_result vmk_nat_network_attachment_set_host_loopback(vmk_network_attachment *att,
                                                                bool allowed);
/* false for other kinds. */
VMK_API bool vmk_nat_network_attachment_get_host_loopback(const vmk_network_attachment *att);
/* A connected socket: SOCK_DGRAM (one Ethernet frame per datagram, as
 * VZFileHandleNetworkDeviceAttachment) or SOCK_STREAM (each frame after its 4-byte big-endian
 * length, as passt and QEMU's -netdev stream). The descriptor stays the caller's and must stay
 * open until the VM is freed; each start duplicates it. vmk_config_validate checks that fd is
 * a connected datagram or stream socket. */
VMK_API vmk_network_attachment *vmk_file_handle_network_attachment_new(int fd);
/* A unix datagram socket at path that a peer (gvproxy, vfkit-style) has bound: each start
 * binds a socket of its own beside it and connects. vmk_config_validate checks path (not
 * empty, at most vmk_socket_path_max_length() bytes); whether a peer is there, each start. */
VMK_API vmk_network_attachment *vmk_unix_datagram_network_attachment_new(const char *path);
/* Send the 4-byte "VFKT" datagram first, as vfkit does for gvproxy (default false). Only for
 * unix datagram attachments (validate judges). */
VMK_API vmk_result vmk_unix_datagram_network_attachment_set_vfkit_magic(vmk_network_attachment *att,
                                                                        bool on);
/* false for other kinds. */
VMK_API bool
vmk_unix_datagram_network_attachment_get_vfkit_magic(const vmk_network_attachment *att);
/* A unix stream socket at path a peer listens on (passt --socket, QEMU -netdev
 * stream,server=on). Path checked as for a unix datagram attachment. */
VMK_API vmk_network_attachment *vmk_unix_stream_network_attachment_new(const char *path);
/* An existing tap interface by name (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), the Linux stand-in
 * for VZ's bridged attachment. vmk_config_validate checks the name (1 .. 15 bytes, no '/',
 * ':' or whitespace, not "." or ".."); whether the interface exists, each start. */
VMK_API vmk_network_attachment *vmk_tap_network_attachment_new(const char *ifname);
VMK_API void vmk_network_attachment_free(vmk_network_attachment *att);
VMK_API vmk_network_attachment_kind
vmk_network_attachment_get_kind(const vmk_network_attachment *att);
/* The socket path or the tap's name; NULL for other kinds. */
VMK_API const char *vmk_network_attachment_get_path(const vmk_network_attachment *att);
/* The file handle's descriptor; -1 for other kinds. */
VMK_API int vmk_network_attachment_get_fd(const vmk_network_attachment *att);
/* The largest frame payload a socket attachment (file handle, unix datagram, unix stream)
 * carries, as VZ's maximumTransmissionUnit: 1500 (default) .. 65535. Setting it on another
 * kind is a validation problem. */
VMK_API vmk_result vmk_network_attachment_set_mtu(vmk_network_attachment *att, unsigned mtu);
VMK_API unsigned vmk_network_attachment_get_mtu(const vmk_network_attachment *att);

typedef struct vmk_network_device vmk_network_device;

typedef enum {
    VMK_NETWORK_DEVICE_VIRTIO = 0,
} vmk_network_device_kind;

/* A virtio network device (virtio 1.2, 5.1) on att, with a random locally administered MAC
 * address. Takes ownership of att, also when it fails (NULL: att is NULL, or out of memory). */
VMK_API vmk_network_device *vmk_virtio_network_device_new(vmk_network_attachment *att);
VMK_API void vmk_network_device_free(vmk_network_device *dev);
VMK_API vmk_network_device_kind vmk_network_device_get_kind(const vmk_network_device *dev);
VMK_API const vmk_network_attachment *
vmk_network_device_get_attachment(const vmk_network_device *dev);
/* vmk_config_validate refuses an all-zero or multicast (broadcast included) address, and one
 * address on two devices. VMK_ERR_INVALID_ARGUMENT also when mac is NULL. */
VMK_API vmk_result vmk_virtio_network_device_set_mac_address(vmk_network_device *dev,
                                                             const vmk_mac_address *mac);
/* All zeros for a NULL dev. */
VMK_API vmk_mac_address vmk_virtio_network_device_get_mac_address(const vmk_network_device *dev);
/* The MTU offered to the guest (VIRTIO_NET_F_MTU): 0 (default: none offered, the guest uses
 * 1500) or vmk_virtio_network_device_min_mtu() (68) .. vmk_virtio_network_device_max_mtu()
 * (65535). */
VMK_API vmk_result vmk_virtio_network_device_set_mtu(vmk_network_device *dev, unsigned mtu);
VMK_API unsigned vmk_virtio_network_device_get_mtu(const vmk_network_device *dev);
VMK_API unsigned vmk_virtio_network_device_min_mtu(void);
VMK_API unsigned vmk_virtio_network_device_max_mtu(void);
/* Checksum and segmentation offloads, offered only where the attachment can take them (a
 * tap); default true. */
VMK_API vmk_result vmk_virtio_network_device_set_offloading(vmk_network_device *dev, bool on);
VMK_API bool vmk_virtio_network_device_get_offloading(const vmk_network_device *dev);

/* ---- Graphics and input ----------------------------------------------------- */

typedef struct vmk_graphics_device vmk_graphics_device;

/* A virtio GPU device (virtio 1.2, 5.7) in 2D, as VZVirtioGraphicsDeviceConfiguration: the
 * guest's DRM device (Linux's virtio_gpu driver, with its framebuffer console) showing 1 ..
 * vmk_graphics_device_max_scanout_count() scanouts (displays), none until one is added. A
 * machine has at most vmk_config_max_graphics_device_count(). NULL when out of memory. */
VMK_API vmk_graphics_device *vmk_virtio_graphics_device_new(void);
VMK_API void vmk_graphics_device_free(vmk_graphics_device *dev);
/* Appends a scanout whose preferred mode is width x height pixels, as
 * VZVirtioGraphicsScanoutConfiguration: each side 1 .. vmk_graphics_device_max_scanout_dimension()
 * (vmk_config_validate judges; this stores). VMK_ERR_INVALID_ARGUMENT only for a NULL dev. */
VMK_API vmk_result vmk_virtio_graphics_device_add_scanout(vmk_graphics_device *dev, uint32_t width,
                                                          uint32_t height);
VMK_API unsigned vmk_graphics_device_scanout_count(const vmk_graphics_device *dev);
/* Scanout index's size; width and height may be NULL. VMK_ERR_INVALID_ARGUMENT past the end. */
VMK_API vmk_result vmk_graphics_device_get_scanout(const vmk_graphics_device *dev, unsigned index,
                                                   uint32_t *width, uint32_t *height);
VMK_API unsigned vmk_graphics_device_max_scanout_count(void);     /* 16 */
VMK_API uint32_t vmk_graphics_device_max_scanout_dimension(void); /* 16384 pixels */

typedef struct vmk_keyboard vmk_keyboard;

typedef enum {
    VMK_KEYBOARD_VIRTIO = 0, /* virtio-input */
    VMK_KEYBOARD_USB = 1,    /* a USB HID keyboard on the machine's xHCI controller */
} vmk_keyboard_kind;

/* A keyboard, the part of VZUSBKeyboardConfiguration a Linux guest needs: a virtio input
 * device (virtio 1.2, 5.8) that the guest sees as a keyboard (evdev, the console). NULL when
 * out of memory. */
VMK_API vmk_keyboard *vmk_virtio_keyboard_new(void);
/* A USB keyboard (VZUSBKeyboardConfiguration): a HID boot keyboard on the xHCI controller the
 * machine then has, so that firmware (OVMF's setup, GRUB) can be typed into as well as Linux
 * (usbhid). It takes one of the controller's USB 2 ports, which it shares with the USB drives
 * (vmk_config_max_usb_storage_device_count() of them in all). NULL when out of memory. */
VMK_API vmk_keyboard *vmk_usb_keyboard_new(void);
VMK_API vmk_keyboard_kind vmk_keyboard_get_kind(const vmk_keyboard *kbd);
VMK_API void vmk_keyboard_free(vmk_keyboard *kbd);

typedef struct vmk_pointing_device vmk_pointing_device;

/* A pointing device in screen coordinates, the part of
 * VZUSBScreenCoordinatePointingDeviceConfiguration a Linux guest needs: a virtio input tablet
 * whose absolute X and Y, 0 .. 32767 each, span the display, with 3 buttons (left, right,
 * middle) and a wheel. NULL when out of memory. */
VMK_API vmk_pointing_device *vmk_virtio_screen_coordinate_pointing_device_new(void);
VMK_API void vmk_pointing_device_free(vmk_pointing_device *dev);

/* ---- Configuration --------------------------------------------------------- */

typedef struct vmk_config vmk_config;

/* A machine with 1 vCPU, 512 MiB of memory, no boot loader and no devices. Without a
 * serial port or a console port the guest's console output goes nowhere. */
VMK_API vmk_config *vmk_config_new(void);
VMK_API void vmk_config_free(vmk_config *cfg);

/* What vmk_config_validate accepts. */
VMK_API unsigned vmk_config_min_cpu_count(void);
VMK_API unsigned vmk_config_max_cpu_count(void);
VMK_API uint64_t vmk_config_min_memory_size(void); /* bytes; sizes are whole MiB */
VMK_API uint64_t vmk_config_max_memory_size(void);
VMK_API unsigned vmk_config_max_serial_port_count(void);
VMK_API unsigned vmk_config_max_storage_device_count(void);
VMK_API unsigned vmk_config_max_entropy_device_count(void);
VMK_API unsigned vmk_config_max_console_device_count(void);
VMK_API unsigned vmk_config_max_network_device_count(void);
VMK_API unsigned vmk_config_max_memory_balloon_device_count(void);
VMK_API unsigned vmk_config_max_socket_device_count(void);
VMK_API unsigned vmk_config_max_directory_sharing_device_count(void);
VMK_API unsigned vmk_config_max_graphics_device_count(void); /* 1 */
VMK_API unsigned vmk_config_max_keyboard_count(void);        /* 4 */
VMK_API unsigned vmk_config_max_pointing_device_count(void); /* 4 */

VMK_API vmk_result vmk_config_set_cpu_count(vmk_config *cfg, unsigned count);
VMK_API unsigned vmk_config_get_cpu_count(const vmk_config *cfg);
VMK_API vmk_result vmk_config_set_memory_size(vmk_config *cfg, uint64_t bytes);
VMK_API uint64_t vmk_config_get_memory_size(const vmk_config *cfg);
/* Takes ownership of bl (and frees a boot loader set before). */
VMK_API vmk_result vmk_config_set_boot_loader(vmk_config *cfg, vmk_boot_loader *bl);
VMK_API const vmk_boot_loader *vmk_config_get_boot_loader(const vmk_config *cfg);
/* Serial ports are COM1, COM2, ... in the order added. Takes ownership. */
VMK_API vmk_result vmk_config_add_serial_port(vmk_config *cfg, vmk_serial_attachment *att);
VMK_API unsigned vmk_config_serial_port_count(const vmk_config *cfg);
VMK_API const vmk_serial_attachment *vmk_config_get_serial_port(const vmk_config *cfg,
                                                                unsigned index);
/* An xHCI USB controller (VZXHCIControllerConfiguration) even with no USB device configured,
 * so drives can be plugged in while the VM runs (vmk_vm_usb_attach). A configuration with a
 * USB mass-storage device has the controller either way. Off by default. */
VMK_API vmk_result vmk_config_set_usb_controller(vmk_config *cfg, bool enabled);
VMK_API bool vmk_config_get_usb_controller(const vmk_config *cfg);
/* Storage devices appear in the order added. Takes ownership. */
VMK_API vmk_result vmk_config_add_storage_device(vmk_config *cfg, vmk_storage_device *dev);
VMK_API unsigned vmk_config_storage_device_count(const vmk_config *cfg);
VMK_API const vmk_storage_device *vmk_config_get_storage_device(const vmk_config *cfg,
                                                                unsigned index);
/* Takes ownership. */
VMK_API vmk_result vmk_config_add_entropy_device(vmk_config *cfg, vmk_entropy_device *dev);
VMK_API unsigned vmk_config_entropy_device_count(const vmk_config *cfg);
VMK_API const vmk_entropy_device *vmk_config_get_entropy_device(const vmk_config *cfg,
                                                                unsigned index);
/* Takes ownership. */
VMK_API vmk_result vmk_config_add_console_device(vmk_config *cfg, vmk_console_device *dev);
VMK_API unsigned vmk_config_console_device_count(const vmk_config *cfg);
VMK_API const vmk_console_device *vmk_config_get_console_device(const vmk_config *cfg,
                                                                unsigned index);
/* Network devices appear in the order added. Takes ownership. */
VMK_API vmk_result vmk_config_add_network_device(vmk_config *cfg, vmk_network_device *dev);
VMK_API unsigned vmk_config_network_device_count(const vmk_config *cfg);
VMK_API const vmk_network_device *vmk_config_get_network_device(const vmk_config *cfg,
                                                                unsigned index);
/* Takes ownership. */
VMK_API vmk_result vmk_config_add_memory_balloon_device(vmk_config *cfg,
                                                        vmk_memory_balloon_device *dev);
VMK_API unsigned vmk_config_memory_balloon_device_count(const vmk_config *cfg);
VMK_API const vmk_memory_balloon_device *vmk_config_get_memory_balloon_device(const vmk_config *cfg,
                                                                              unsigned index);
/* Takes ownership. */
VMK_API vmk_result vmk_config_add_socket_device(vmk_config *cfg, vmk_socket_device *dev);
VMK_API unsigned vmk_config_socket_device_count(const vmk_config *cfg);
VMK_API const vmk_socket_device *vmk_config_get_socket_device(const vmk_config *cfg,
                                                              unsigned index);
/* Directory sharing devices appear in the order added. Takes ownership. */
VMK_API vmk_result vmk_config_add_directory_sharing_device(vmk_config *cfg,
                                                           vmk_directory_sharing_device *dev);
VMK_API unsigned vmk_config_directory_sharing_device_count(const vmk_config *cfg);
VMK_API const vmk_directory_sharing_device *
vmk_config_get_directory_sharing_device(const vmk_config *cfg, unsigned index);
/* Takes ownership. */
VMK_API vmk_result vmk_config_add_graphics_device(vmk_config *cfg, vmk_graphics_device *dev);
VMK_API unsigned vmk_config_graphics_device_count(const vmk_config *cfg);
VMK_API const vmk_graphics_device *vmk_config_get_graphics_device(const vmk_config *cfg,
                                                                  unsigned index);
/* Keyboards and pointing devices appear in the order added. Takes ownership. */
VMK_API vmk_result vmk_config_add_keyboard(vmk_config *cfg, vmk_keyboard *kbd);
VMK_API unsigned vmk_config_keyboard_count(const vmk_config *cfg);
VMK_API const vmk_keyboard *vmk_config_get_keyboard(const vmk_config *cfg, unsigned index);
VMK_API vmk_result vmk_config_add_pointing_device(vmk_config *cfg, vmk_pointing_device *dev);
VMK_API unsigned vmk_config_pointing_device_count(const vmk_config *cfg);
/* The getters return NULL past the end; the objects stay the config's. */

/* Checks everything that can be checked before start. On failure (VMK_ERR_INVALID_CONFIG)
 * *err holds every problem found, one per line. */
VMK_API vmk_result vmk_config_validate(const vmk_config *cfg, vmk_error **err);

/* ---- Virtual machine ------------------------------------------------------- */

typedef struct vmk_vm vmk_vm;

typedef enum {
    VMK_STATE_STOPPED = 0,
    VMK_STATE_STARTING = 1,
    VMK_STATE_RUNNING = 2,
    VMK_STATE_PAUSING = 3,
    VMK_STATE_PAUSED = 4,
    VMK_STATE_RESUMING = 5,
    VMK_STATE_STOPPING = 6,
    VMK_STATE_ERROR = 7,
    VMK_STATE_SAVING = 8,
    VMK_STATE_RESTORING = 9,
} vmk_vm_state;

VMK_API const char *vmk_vm_state_string(vmk_vm_state state);

/* Why the last run of a VM ended. */
typedef enum {
    VMK_STOP_REASON_NONE = 0,             /* it has not run, or runs now */
    VMK_STOP_REASON_GUEST_POWER_OFF = 1,  /* ACPI S5 (or a KVM shutdown event) */
    VMK_STOP_REASON_GUEST_RESET = 2,      /* 0xCF9, the i8042, the ACPI reset register */
    VMK_STOP_REASON_GUEST_DEBUG_EXIT = 3, /* the debug-exit port: vmk_vm_get_debug_exit_code */
    VMK_STOP_REASON_HOST_STOP = 4,        /* vmk_vm_stop (or vmk_vm_free) */
    VMK_STOP_REASON_CONSOLE_ESCAPE = 5,   /* the user typed Ctrl-A x on a terminal port */
    VMK_STOP_REASON_ERROR = 6,            /* the VM is in ERROR: vmk_vm_copy_error */
} vmk_stop_reason;

VMK_API const char *vmk_stop_reason_string(vmk_stop_reason reason);

/* Callbacks, all optional (NULL). Set size to sizeof(vmk_vm_delegate): callbacks added to
 * this struct in later versions go at its end, and the library reads only size bytes. */
typedef struct {
    size_t size;
    void (*state_changed)(vmk_vm *vm, vmk_vm_state state, void *user);
    /* The guest powered off, reset, or wrote the debug-exit port; the VM is STOPPED (with
     * no STOPPING before it). Not called when the host stopped the VM. */
    void (*guest_did_stop)(vmk_vm *vm, void *user);
    /* The VM is in ERROR; err is valid only during the call (vmk_vm_copy_error keeps it). */
    void (*did_stop_with_error)(vmk_vm *vm, const vmk_error *err, void *user);
    /* Network device index's attachment lost its peer (connected false: the guest sees its
     * link go down, the VM keeps running) or reached it again (a socket path is retried once
     * a second). A stream peer's going shows at once; a datagram peer's when the guest next
     * sends to it. Added in 0.3. */
    void (*network_attachment_changed)(vmk_vm *vm, unsigned index, bool connected, void *user);
} vmk_vm_delegate;

/* Validates and deep-copies cfg: the caller may change or free it afterwards. */
VMK_API vmk_vm *vmk_vm_new(const vmk_config *cfg, vmk_error **err);
/* Stops the VM if it runs (delivering the STOPPING and STOPPED callbacks during the call, so
 * the delegate's data must live until it returns), then frees it. Called from a delegate
 * callback it does nothing: that would join the calling thread. */
VMK_API void vmk_vm_free(vmk_vm *vm);
/* Copies the delegate (d NULL: none). VMK_ERR_INVALID_ARGUMENT when vm is NULL or d->size is
 * smaller than the first version of the struct. A delegate larger than this library knows
 * is taken; the callbacks it does not know are never called. */
VMK_API vmk_result vmk_vm_set_delegate(vmk_vm *vm, const vmk_vm_delegate *d, void *user);
VMK_API vmk_vm_state vmk_vm_get_state(const vmk_vm *vm);

VMK_API bool vmk_vm_can_start(const vmk_vm *vm);
VMK_API bool vmk_vm_can_pause(const vmk_vm *vm);
VMK_API bool vmk_vm_can_resume(const vmk_vm *vm);
VMK_API bool vmk_vm_can_request_stop(const vmk_vm *vm);
VMK_API bool vmk_vm_can_stop(const vmk_vm *vm);

/* Builds the machine and starts its vCPUs; returns once RUNNING, or fails and leaves the VM
 * STOPPED (nothing half-built remains). Allowed from STOPPED and ERROR: a VM can be started
 * again after it stopped. VMK_ERR_UNSUPPORTED on a kvm_pvm host (vmk_host_probe) for a
 * bzImage: such a host cannot run a Linux kernel. */
VMK_API vmk_result vmk_vm_start(vmk_vm *vm, vmk_error **err);
/* Returns once every vCPU has left guest mode and the VM is PAUSED. */
VMK_API vmk_result vmk_vm_pause(vmk_vm *vm, vmk_error **err);
VMK_API vmk_result vmk_vm_resume(vmk_vm *vm, vmk_error **err);
/* Presses the ACPI power button; the guest decides what to do. */
VMK_API vmk_result vmk_vm_request_stop(vmk_vm *vm, vmk_error **err);
/* Hard stop: the vCPUs are halted and the machine torn down; ends STOPPED. */
VMK_API vmk_result vmk_vm_stop(vmk_vm *vm, vmk_error **err);
/* Waits until the VM is STOPPED or ERROR and every callback for getting there has returned
 * (timeout_ms < 0: forever). Returns VMK_OK once STOPPED; once in ERROR, the code of the
 * error it ended with (vmk_vm_copy_error gives the message); VMK_ERR_TIMEOUT;
 * VMK_ERR_INVALID_STATE when called from a delegate callback (it would wait for itself);
 * VMK_ERR_INVALID_ARGUMENT for a NULL vm. */
VMK_API vmk_result vmk_vm_wait(vmk_vm *vm, int timeout_ms);
/* Why the last run ended (VMK_STOP_REASON_NONE while it runs, or before the first start). */
VMK_API vmk_stop_reason vmk_vm_get_stop_reason(const vmk_vm *vm);
/* A copy of the error the last run ended with (for the caller to vmk_error_free), or NULL
 * when it did not end in ERROR. */
VMK_API vmk_error *vmk_vm_copy_error(const vmk_vm *vm);

/* The value the guest wrote to the debug-exit port (0x501) during the last run, masked to
 * 31 bits, or -1 if it did not. A write there ends the run like a power-off (STOPPED,
 * guest_did_stop), as QEMU's isa-debug-exit does. */
VMK_API int vmk_vm_get_debug_exit_code(const vmk_vm *vm);
/* The path ("/dev/pts/N") of the pseudo-terminal that a pty attachment got when the VM
 * started: serial port index (0 is COM1), or port index of the console device. A copy for
 * the caller to free(); NULL when that port is not a pty, or the VM is stopped. Each start
 * makes new ptys. */
VMK_API char *vmk_vm_copy_serial_port_pty_path(vmk_vm *vm, unsigned index);
VMK_API char *vmk_vm_copy_console_port_pty_path(vmk_vm *vm, unsigned index);
/* The IPv4 address ("10.0.2.15") network device index's guest uses, as its own frames show it
 * (ARP and IPv4 from its MAC address: it works for every attachment), for the caller to
 * free(); NULL until the guest has one, or when the VM is stopped. */
VMK_API char *vmk_vm_copy_network_device_ipv4_address(vmk_vm *vm, unsigned index);
/* USB while the VM runs or is paused (the framework's VZUSBController attach / detach): plugs a
 * drive made from dev (a USB mass-storage device; the object stays the caller's, its image is
 * opened and locked now) into the xHCI controller: the guest sees it arrive. *port (may be
 * NULL) gets the port it is on, which names it for vmk_vm_usb_detach. VMK_ERR_INVALID_STATE
 * when the VM is not running, has no USB controller (vmk_config_set_usb_controller) or every
 * USB 2 port is taken; VMK_ERR_IO when the image cannot be opened or is locked by another
 * user. Pulling a drive out that the guest has mounted loses what it had not written back, as
 * on real hardware. Drives plugged in so are gone once the VM stops. */
VMK_API vmk_result vmk_vm_usb_attach(vmk_vm *vm, const vmk_storage_device *dev, unsigned *port,
                                     vmk_error **err);
VMK_API vmk_result vmk_vm_usb_detach(vmk_vm *vm, unsigned port, vmk_error **err);
/* Adds a port forward to network device index's NAT attachment while the VM runs or is paused,
 * as vmk_nat_network_attachment_add_port_forward does in a config (host_address NULL or "":
 * 127.0.0.1). The host port is bound at once: VMK_ERR_IO when it is taken, naming it;
 * VMK_ERR_UNSUPPORTED for an attachment that is not NAT; VMK_ERR_INVALID_STATE when the VM is
 * not running. A forward added so lasts until the VM stops (the next start has the config's). */
VMK_API vmk_result vmk_vm_add_port_forward(vmk_vm *vm, unsigned index,
                                           vmk_port_forward_protocol protocol,
                                           const char *host_address, unsigned host_port,
                                           unsigned guest_port, vmk_error **err);
/* Removes a forward (the config's or one added at run time), named by protocol, host address
 * and port: VMK_ERR_INVALID_ARGUMENT when there is none. */
VMK_API vmk_result vmk_vm_remove_port_forward(vmk_vm *vm, unsigned index,
                                              vmk_port_forward_protocol protocol,
                                              const char *host_address, unsigned host_port,
                                              vmk_error **err);
/* Asks the guest, through the machine's memory balloon, to give memory back until it keeps
 * bytes (a whole number of MiB, from vmk_config_min_memory_size() up to the configured memory
 * size, which takes everything back). It works while the VM runs or is paused; the guest's
 * driver gets there in its own time (vmk_vm_get_balloon_memory_size says how far it is).
 * The target lasts until the VM stops. VMK_ERR_UNSUPPORTED without a balloon,
 * VMK_ERR_INVALID_ARGUMENT for a size out of range, VMK_ERR_INVALID_STATE when not running. */
VMK_API vmk_result vmk_vm_set_target_memory_size(vmk_vm *vm, uint64_t bytes, vmk_error **err);
/* The target last set (the configured memory size until one is), or 0 without a balloon or
 * a running VM. */
VMK_API uint64_t vmk_vm_get_target_memory_size(vmk_vm *vm);
/* Bytes the guest has given back so far (what its driver says the balloon holds), 0 without
 * a balloon or a running VM. */
VMK_API uint64_t vmk_vm_get_balloon_memory_size(vmk_vm *vm);
/* A connection between the application and the guest over the machine's socket device: fd is
 * a connected stream socket, the application's to use and close. Called on the VM's thread,
 * as the delegate's callbacks are. */
typedef void (*vmk_socket_accept)(vmk_vm *vm, uint32_t port, int fd, void *user);
/* How vmk_vm_connect_socket ended: VMK_OK with fd, or VMK_ERR_IO (fd -1) when the guest
 * refused, reset, did not answer within 2 s, or the VM stopped first. */
typedef void (*vmk_socket_connected)(vmk_vm *vm, uint32_t port, int fd, vmk_result result,
                                     void *user);
/* Connects to the guest's port (1 .. 0xfffffffe) over the socket device; done is called once,
 * later. VMK_ERR_INVALID_STATE when the VM is not running or its guest has no driver for the
 * device yet, VMK_ERR_UNSUPPORTED without a socket device. */
VMK_API vmk_result vmk_vm_connect_socket(vmk_vm *vm, uint32_t port, vmk_socket_connected done,
                                         void *user, vmk_error **err);
/* Guest connections to host port `port` go to accept (NULL: removes the listener) before the
 * socket device's configured sockets are asked. Listeners may be set at any time and stay
 * until removed, across starts. */
VMK_API vmk_result vmk_vm_set_socket_listener(vmk_vm *vm, uint32_t port, vmk_socket_accept accept,
                                              void *user, vmk_error **err);
/* The signal the library sends its vCPU threads (see the top of this header). */
VMK_API int vmk_vm_kick_signal(void);

/* The guest's screens and input at run time: display N is scanout N of the graphics device
 * (VZGraphicsDisplay), keyboard and pointer events go to the first keyboard and pointing
 * device. Calls fail with VMK_ERR_INVALID_STATE unless the VM runs or is paused (reading a
 * display's image also works once stopped: the last image the guest showed), and with
 * VMK_ERR_UNSUPPORTED when the configuration has no such device. Safe from any thread. */
typedef struct {
    size_t size; /* sizeof(vmk_display_delegate): members added later are read only if there */
    /* The guest shows width x height on display (0 x 0: it turned the display off). */
    void (*mode_changed)(vmk_vm *vm, unsigned display, uint32_t width, uint32_t height, void *user);
    /* The guest changed the rectangle x, y, width, height of display. Calls coalesce: one
     * may stand for several changes. */
    void (*updated)(vmk_vm *vm, unsigned display, uint32_t x, uint32_t y, uint32_t width,
                    uint32_t height, void *user);
} vmk_display_delegate;
/* Copies the delegate (d NULL: none); its callbacks run on the VM's thread. */
VMK_API vmk_result vmk_vm_set_display_delegate(vmk_vm *vm, const vmk_display_delegate *d,
                                               void *user);
/* Displays the configuration has (its graphics device's scanouts), 0 without one. */
VMK_API unsigned vmk_vm_display_count(const vmk_vm *vm);
/* What display shows: width x height, 0 x 0 before the guest set a mode. */
VMK_API vmk_result vmk_vm_get_display_size(vmk_vm *vm, unsigned display, uint32_t *width,
                                           uint32_t *height, vmk_error **err);
/* Asks the guest to show width x height (1..16384) on display, as a view that resized
 * would (VZVirtualMachineView's automaticallyReconfiguresDisplay): its driver hears a display
 * event and may follow. Not following is no error. */
VMK_API vmk_result vmk_vm_reconfigure_display(vmk_vm *vm, unsigned display, uint32_t width,
                                              uint32_t height, vmk_error **err);
/* Copies display's image into buf as bytes R, G, B, 255 per pixel, row after row; *width and
 * *height get its size. VMK_ERR_INVALID_ARGUMENT (and the size) when len is less than
 * 4 * width * height; VMK_ERR_INVALID_STATE when the guest showed nothing there yet. */
VMK_API vmk_result vmk_vm_copy_display_image(vmk_vm *vm, unsigned display, void *buf, size_t len,
                                             uint32_t *width, uint32_t *height, vmk_error **err);
/* Writes display's image to path as a PNG file (whole or not at all). */
VMK_API vmk_result vmk_vm_screenshot(vmk_vm *vm, unsigned display, const char *path,
                                     vmk_error **err);
/* A key pressed or released, by its Linux evdev code (<linux/input-event-codes.h>: KEY_A is
 * 30, KEY_ENTER 28, ...), to the first keyboard whatever its kind. A USB keyboard ignores a
 * key its boot report has no usage for (media keys, F13 and up). */
VMK_API vmk_result vmk_vm_send_key(vmk_vm *vm, uint16_t code, bool pressed, vmk_error **err);
/* The pointer at pixel x, y of display (scaled onto the pointing device's 0..32767, clamped
 * to the display), with these buttons down (VMK_POINTER_BUTTON_*). */
#define VMK_POINTER_BUTTON_LEFT   1u
#define VMK_POINTER_BUTTON_RIGHT  2u
#define VMK_POINTER_BUTTON_MIDDLE 4u
VMK_API vmk_result vmk_vm_send_pointer(vmk_vm *vm, unsigned display, uint32_t x, uint32_t y,
                                       unsigned buttons, vmk_error **err);
/* Wheel steps: positive scrolls up (away from the user), negative down. */
VMK_API vmk_result vmk_vm_send_scroll(vmk_vm *vm, int32_t steps, vmk_error **err);

/* ---- vhost-user server ---------------------------------------------------------- */

/* One of vmkit's virtio devices served to another VMM (QEMU's vhost-user-blk-pci,
 * vhost-user-rng-pci, ...) over a unix socket, as the vhost-user protocol (QEMU's
 * docs/interop/vhost-user.rst) describes: the same device code and host side as in a vmkit
 * VM, with the front end's guest memory. It serves one front end at a time and, when that
 * one goes away (or breaks the protocol), resets the device and waits for the next. */
typedef struct vmk_vhost_user_server vmk_vhost_user_server;

/* Messages for people (a front end connected, went away, broke a rule). */
typedef void (*vmk_log_callback)(const char *message, void *user);

/* A server for the one device cfg holds: a storage, network, entropy or console device (a console
 * device with all its ports). cfg's CPUs, memory and boot loader play no part; a serial port
 * is refused. Validates the device exactly as vmk_config_validate does, opens its host side
 * (the disk image and its lock, the console ports' files, ptys and sockets), creates the
 * socket at socket_path (a stale socket file is replaced) and listens. A storage device's
 * automatic queue count is 1 here. NULL with *err set on failure (VMK_ERR_INVALID_CONFIG
 * names every problem of the device). */
VMK_API vmk_vhost_user_server *vmk_vhost_user_server_new(const char *socket_path,
                                                         const vmk_config *cfg, vmk_error **err);
/* Serves until vmk_vhost_user_server_stop, or until the user types Ctrl-A x on a console port
 * on a terminal; then VMK_OK (vmk_vhost_user_server_get_stop_reason says which). Runs the
 * server on the calling thread: the log callback is called from it. */
VMK_API vmk_result vmk_vhost_user_server_run(vmk_vhost_user_server *s, vmk_error **err);
/* Makes vmk_vhost_user_server_run return soon. Safe from any thread and from a signal
 * handler. */
VMK_API void vmk_vhost_user_server_stop(vmk_vhost_user_server *s);
/* VMK_STOP_REASON_HOST_STOP (vmk_vhost_user_server_stop), VMK_STOP_REASON_CONSOLE_ESCAPE
 * (Ctrl-A x), or VMK_STOP_REASON_NONE before a stop. */
VMK_API vmk_stop_reason vmk_vhost_user_server_get_stop_reason(const vmk_vhost_user_server *s);
/* log may be NULL (silent, the default). */
VMK_API vmk_result vmk_vhost_user_server_set_log(vmk_vhost_user_server *s, vmk_log_callback log,
                                                 void *user);
/* A console port's pty path (as vmk_vm_copy_console_port_pty_path), for free(); NULL when that
 * port is not a pty. */
VMK_API char *vmk_vhost_user_server_copy_console_port_pty_path(vmk_vhost_user_server *s,
                                                               unsigned index);
/* Drops the front end (resetting the device), closes the device's host side and removes the
 * socket. NULL does nothing. */
VMK_API void vmk_vhost_user_server_free(vmk_vhost_user_server *s);

/* ---- Host --------------------------------------------------------------------- */

typedef enum {
    VMK_HOST_NO_KVM = 0,       /* /dev/kvm is missing or cannot be opened */
    VMK_HOST_HARDWARE_KVM = 1, /* Intel VMX or AMD SVM */
    VMK_HOST_PVM = 2,          /* kvm_pvm: kernel-mode guest code is emulated */
} vmk_host_kind;

/* What kind of KVM this host offers; reads /dev/kvm, /sys and /proc only. */
VMK_API vmk_host_kind vmk_host_probe(void);

#ifdef __cplusplus
}
#endif
#endif
