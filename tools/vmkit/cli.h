/* The vmkit command line: parsing argv into a request (cli.c, with the device specs of
 * cli_device.c, which `run` and `serve-device` share), and turning a request into a vmk_config
 * (cli_config.c) through the public API only. Nothing here starts a VM, so all of it is
 * unit-tested (tests/unit/tools/test_cli.c); run.c and serve.c carry the requests out.
 *
 * Every error is one line, without a newline, starting with "vmkit: " and naming the option
 * and the value at fault.
 */
#ifndef VMKIT_CLI_H
#define VMKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

/* Exit statuses of the vmkit command: one table for run and serve-device (also in --help and
 * the README). A guest's debug-exit code (0..255) is run's status when the guest wrote one. */
#define CLI_EXIT_OK 0 /* the guest powered off or reset; serve-device: stopped by a signal */
#define CLI_EXIT_ERROR \
    1                     /* anything after parsing: an invalid config, a missing file, no KVM,
                           * a failed start, a VM that stopped with an error */
#define CLI_EXIT_USAGE  2 /* the command line itself: an unknown option or key, a bad value */
#define CLI_EXIT_ESCAPE 3 /* the user stopped it from the terminal with Ctrl-A x */
#define CLI_EXIT_SIGNAL \
    128 /* + N: signal N stopped the VM hard (a second signal, or the guest
                             * did not power off within --stop-timeout) */

#define CLI_DEFAULT_GUEST_CMDLINE "console=ttyS0 panic=-1"
#define CLI_DEFAULT_STOP_TIMEOUT  20u /* seconds a guest gets to power off after a signal */
#define CLI_MAX_STOP_TIMEOUT      86400u

enum cli_command {
    CLI_CMD_RUN,
    CLI_CMD_HELP,
    CLI_CMD_VERSION,
    CLI_CMD_SERVE_DEVICE, /* vmkit serve-device: one virtio device over vhost-user */
};

enum cli_serial_kind {
    CLI_SERIAL_STDIO,  /* guest input from fd 0, output to fd 1 */
    CLI_SERIAL_FILE,   /* output to path, no input */
    CLI_SERIAL_PTY,    /* a new pseudo-terminal, its path printed on stderr */
    CLI_SERIAL_SOCKET, /* a unix socket listening at path */
};

/* The host side of a serial port or a console port. */
struct cli_serial {
    enum cli_serial_kind kind;
    char *path; /* CLI_SERIAL_FILE and CLI_SERIAL_SOCKET only */
    bool append;
};

/* --device virtio-console (vfkit: virtio-serial): one port of the machine's console device. */
struct cli_console_port {
    enum cli_serial_kind kind;
    char *path;
    bool append;
    char *name;   /* NULL: none */
    bool console; /* the guest's hvc0 */
};

/* --device virtio-blk: a virtio block device on a disk image. */
struct cli_disk {
    char *path;
    bool read_only;
    vmk_disk_caching_mode caching;
    vmk_disk_sync_mode sync;
    char *id;        /* the serial the guest reads; NULL: none */
    unsigned queues; /* 0: the library's choice */
    bool usb;        /* --device usb-mass-storage: a USB drive, not virtio-blk */
};

/* --device virtio-net: the network attachment a device sits on. */
enum cli_net_kind {
    CLI_NET_NAT,        /* user-mode NAT (the default) */
    CLI_NET_FD,         /* fd=N: a connected datagram or stream socket */
    CLI_NET_UNIXGRAM,   /* a unix datagram socket path (vfkit unixSocketPath, type=unixgram) */
    CLI_NET_UNIXSTREAM, /* a unix stream socket path (type=unixstream) */
    CLI_NET_TAP,        /* tap=IFNAME */
};

/* hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT */
struct cli_forward {
    bool udp;
    char *host_address; /* NULL: the library's default (127.0.0.1) */
    unsigned host_port, guest_port;
};

struct cli_net {
    enum cli_net_kind kind;
    char *path;  /* the socket path or the tap's name */
    int fd;      /* CLI_NET_FD; and type=unixgram|unixstream,fd=N */
    int fd_type; /* 0, or the SOCK_DGRAM / SOCK_STREAM that type= asked of fd */
    bool have_mac;
    vmk_mac_address mac;
    unsigned mtu; /* 0: none offered */
    bool no_offloading;
    bool vfkit_magic;
    struct cli_forward *forward;
    unsigned forward_count;
};

/* --device virtio-vsock,port=N,socketURL=PATH[,listen|connect] (vfkit's port mapping). */
struct cli_vsock_port {
    uint32_t port;
    char *path;
    bool listen;
};

/* dir=NAME:PATH[:ro] of --device virtio-fs: one directory of a multiple directory share. */
struct cli_fs_dir {
    char *name;
    char *path;
    bool read_only;
};

/* --device virtio-fs (vfkit's keys) or --device rosetta: one directory sharing device. */
struct cli_fs {
    char *tag;              /* mountTag=, never NULL once parsed */
    bool translator;        /* rosetta: the qemu-user-static share (no directories) */
    bool ignore_if_missing; /* rosetta,ignoreIfMissing: no device when it is not installed */
    char *path;             /* sharedDir=: a single share; NULL with dir= or translator */
    bool read_only;         /* readonly: every directory of the device */
    struct cli_fs_dir *dir; /* dir=: a multiple share, in order */
    unsigned dir_count;
    vmk_file_system_cache_mode cache;
    vmk_file_system_ownership ownership;
    uint32_t uid, gid; /* the squash ids (uid=, gid=; default 0) */
    unsigned queues;   /* 0: the library's default */
};

/* --device virtio-gpu: one scanout (display) of the machine's graphics device. */
struct cli_scanout {
    uint32_t width, height; /* pixels, 1 .. vmk_graphics_device_max_scanout_dimension() */
};

#define CLI_DEFAULT_SCANOUT_WIDTH  1280u
#define CLI_DEFAULT_SCANOUT_HEIGHT 800u

/* --vnc's address, as cli_parse_vnc_address reads it. */
#define CLI_VNC_DEFAULT_HOST "127.0.0.1"
#define CLI_VNC_FIRST_PORT   5900u /* the default: the first free port from here up */

struct cli_vnc_address {
    bool unix_socket; /* unix:PATH: path; else host and port */
    bool first_free;  /* "" or auto: CLI_VNC_DEFAULT_HOST, the first free port from
                       * CLI_VNC_FIRST_PORT up (port holds CLI_VNC_FIRST_PORT) */
    char path[108];   /* a sun_path, NUL included */
    char host[256];   /* an IPv4 or IPv6 literal (no brackets) or a host name */
    unsigned port;    /* 0 .. 65535; 0: any free port */
};

/* serve-device --sandbox: how the fs server confines itself to the shared directory. */
enum cli_fs_sandbox {
    CLI_FS_SANDBOX_AUTO,      /* not given: serve.c's default (a namespace) */
    CLI_FS_SANDBOX_CHROOT,    /* a chroot into the directory alone (needs root) */
    CLI_FS_SANDBOX_NAMESPACE, /* a mount namespace (and a user one when not root), chroot */
    CLI_FS_SANDBOX_NONE,      /* nothing: a server bug is a host bug */
};

/* What the command line asked for: plain data, owned strings and arrays. */
struct cli_request {
    enum cli_command command;
    unsigned cpus;       /* the library's default unless --cpus */
    uint64_t memory_mib; /* likewise */
    char *kernel;        /* NULL: boot the default guest */
    char *initrd;        /* NULL: none (or the default guest's) */
    char *cmdline;       /* NULL: none (or the default guest's) */
    bool efi;            /* --bootloader efi: firmware boots, no kernel */
    char *efi_store;     /* its variable-store=PATH */
    bool efi_create;     /* make that store (,create), replacing one (,overwrite) */
    bool efi_overwrite;
    char *efi_firmware;        /* firmware=PATH, NULL: Debian's OVMF */
    unsigned stop_timeout;     /* seconds, --stop-timeout */
    struct cli_serial *serial; /* COM1.. in order; none: COM1 on stdio (run) */
    unsigned serial_count;
    struct cli_disk *disk; /* in the order given */
    unsigned disk_count;
    bool rng;                              /* --device virtio-rng: an entropy device */
    uint64_t rng_rate;                     /* bytes per second; 0: the library's default */
    struct cli_console_port *console_port; /* ports of the console device, in order */
    unsigned console_port_count;
    struct cli_net *net; /* network devices, in order */
    unsigned net_count;
    bool no_network; /* --device virtio-net,none: the default guest gets no NAT device */
    bool balloon;    /* --device virtio-balloon: a memory balloon */
    bool balloon_deflate_on_oom, balloon_free_page_reporting;
    uint64_t balloon_target_mib; /* memory the guest keeps once started; 0: all of it */
    bool vsock;                  /* --device virtio-vsock (repeated: one device) */
    uint32_t vsock_cid;          /* 0: the library's default */
    char *vsock_uds_path;        /* udsPath=: Firecracker's convention; NULL: none */
    struct cli_vsock_port *vsock_port;
    unsigned vsock_port_count;
    struct cli_fs *fs; /* directory sharing devices, in order (serve-device: one) */
    unsigned fs_count;
    enum cli_fs_sandbox fs_sandbox; /* serve-device --sandbox */
    char *socket;                   /* serve-device: the vhost-user socket to create */

    /* The display: --device virtio-gpu, virtio-input and the options that show it. */
    bool gpu;                        /* --device virtio-gpu: the graphics device */
    struct cli_scanout *gpu_scanout; /* its scanouts, in order (at least one) */
    unsigned gpu_scanout_count;
    unsigned keyboard_count;     /* --device virtio-input,keyboard (and what --gui adds) */
    unsigned usb_keyboard_count; /* --device usb-keyboard: before the virtio ones */
    unsigned pointing_count;     /* --device virtio-input,pointing (and what --gui adds) */
    bool gui;                    /* --gui: a window shows the display */
    char *vnc;                   /* --vnc: NULL none, "" the default ("auto"), else the address
                               * as given (cli_parse_vnc_address reads it) */
    char *vnc_password_file;     /* --vnc-password-file: a file that was there, not empty */
    bool web;                    /* --web: the VNC display in a browser too (needs --vnc) */
    char *screenshot_on_exit;    /* --screenshot-on-exit PATH */
    char *control_socket;        /* --control-socket PATH: control.h's commands (and an xHCI
                               * controller for usb-attach) */
};

/* Parses argv (argv[0] is the program name). Returns 0 with *req filled, or an exit status
 * (CLI_EXIT_USAGE; CLI_EXIT_ERROR when out of memory) with one line in err. Whatever it
 * returns, *req may (and should) be passed to cli_request_free. */
int cli_parse(int argc, char *const argv[], struct cli_request *req, char *err, size_t errlen);

/* Frees the strings and arrays of req and zeroes it. A zeroed request is fine. */
void cli_request_free(struct cli_request *req);

/* Finds the default guest (vmlinuz + initramfs.img): in $VMKIT_GUEST_DIR when that is set and
 * not empty (and nowhere else); otherwise in <exe dir>/../share/vmkit/guest (where `ninja
 * install` puts it), then in guest/out of the exe's directory or one of its 4 nearest
 * ancestors (the source tree, when run from the build tree). exe_path is the absolute path of
 * the running binary, or NULL. Returns 0 with malloc'ed paths, or an exit status with one line
 * in err. */
int cli_find_default_guest(const char *exe_path, char **kernel, char **initrd, char *err,
                           size_t errlen);

/* Builds the machine a run request describes (finding the default guest when req->kernel is
 * NULL; see cli_find_default_guest). Does not validate it: vmk_vm_new does. Returns 0 with
 * *cfg set, or an exit status with one line in err. */
int cli_build_config(const struct cli_request *req, const char *exe_path, vmk_config **cfg,
                     char *err, size_t errlen);
/* The configuration a serve-device request serves: its one device, nothing else. */
int cli_build_serve_config(const struct cli_request *req, vmk_config **cfg, char *err,
                           size_t errlen);
/* How messages name a port: "COM2", "console port 1 (NAME, hvc0)". console: index is a
 * console port's, else a serial port's. */
void cli_port_label(const struct cli_request *req, bool console, unsigned index, char *buf,
                    size_t len);

/* Reads --vnc's value: "" or "auto" (the default), unix:PATH (not empty, at most
 * vmk_socket_path_max_length() bytes) or HOST:PORT (HOST a name or an IPv4 literal, or an IPv6
 * literal in brackets; PORT 0 .. 65535). Returns 0 with *out filled, or CLI_EXIT_USAGE with
 * one line in err naming ctx. */
int cli_parse_vnc_address(const char *ctx, const char *text, struct cli_vnc_address *out, char *err,
                          size_t errlen);

/* The text of `vmkit --help`, ending in a newline. */
const char *cli_usage(void);

/* ---- Internal to the CLI's files ---- */

/* Fills err with "vmkit: " and the message; returns status. */
int cli_fail(int status, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define cli_usage_error(err, errlen, ...) cli_fail(CLI_EXIT_USAGE, err, errlen, __VA_ARGS__)

/* key=value options (ctx names the option): a key without a value, given once; a key with a
 * non-empty value, given once, taking *val into *slot (metavar for the message: PATH). */
int cli_take_flag(const char *ctx, const char *key, const char *val, bool *flag, char *err,
                  size_t errlen);
int cli_take_string(const char *ctx, const char *key, char **val, char **slot, const char *metavar,
                    char *err, size_t errlen);
#define cli_out_of_memory(err, errlen) cli_fail(CLI_EXIT_ERROR, err, errlen, "out of memory")

/* Whole numbers in [min, max]; unit (may be "") follows the value in messages. */
int cli_parse_number(const char *flag, const char *text, uint64_t min, uint64_t max,
                     const char *unit, uint64_t *out, char *err, size_t errlen);

/* A compound value, TYPE,key=value,key="a,b",flag, read one key at a time. */
struct kv_iter {
    const char *ctx;   /* names the option in messages: "--device serial" */
    const char *whole; /* the whole value, for messages */
    const char *p;
    bool done;
};
/* Next key[=value]: 0 with *key (NULL at the end) and *val (NULL for a bare key) malloc'ed, or
 * an exit status. */
int kv_next(struct kv_iter *it, char **key, char **val, char *err, size_t errlen);

/* The device spec after --device (run, serve-device): "serial,...", "virtio-blk,...",
 * "virtio-rng[,...]", "virtio-console,..." (or vfkit's "virtio-serial,..."), "virtio-net,...",
 * "virtio-balloon[,...]", "virtio-vsock,...", "virtio-fs,...", "rosetta,...",
 * "virtio-gpu[,...]" or "virtio-input,...". opt names the option in messages. Appends to
 * req. */
int cli_parse_device(struct cli_request *req, const char *opt, const char *spec, char *err,
                     size_t errlen);
/* The keys of --device usb-mass-storage (path=PATH[,readonly][,cache=..][,sync=..]) into *d,
 * as the control socket's usb-attach takes them; ctx names the command in messages. Returns 0
 * (free d->path), or an exit status with the --device parser's line in err. */
int cli_parse_usb_drive(const char *ctx, const char *keys, struct cli_disk *d, char *err,
                        size_t errlen);
/* A virtio-blk or USB storage device on d's disk image, as run configures it; NULL when out of
 * memory or refused. */
vmk_storage_device *cli_storage_device_new(const struct cli_disk *d);
/* Checks a virtio-fs tag as run and serve-device take it: the library's rules
 * (vmk_virtio_file_system_device_validate_tag), and no space or comma, which the guest's
 * vmkit.mount= list on the kernel command line cannot carry. ctx names the option. */
int cli_check_fs_tag(const char *ctx, const char *tag, char *err, size_t errlen);
/* never|auto|always (ctx names the option in messages). */
int cli_parse_fs_cache(const char *ctx, const char *val, vmk_file_system_cache_mode *mode,
                       char *err, size_t errlen);
/* serve-device's default tag (QEMU's vhost-user-fs-pci sets the guest's own). */
#define CLI_SERVE_FS_TAG "vmkit-fs"

/* The keys of one device type after its type word (serve-device's older options use these):
 * type is "virtio-blk", "virtio-rng", "virtio-console", "virtio-net", "virtio-vsock" or
 * "virtio-fs". */
int cli_parse_device_keys(struct cli_request *req, const char *type, const char *opt,
                          const char *keys, char *err, size_t errlen);
/* Whether a serial or console port already reads the terminal. */
bool cli_stdio_taken(const struct cli_request *req);

#endif
