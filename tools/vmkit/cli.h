/* The vmkit command line: parsing argv into a request, and turning a request into a
 * vmk_config through the public API only. Nothing here starts a VM, so all of it is
 * unit-tested (tests/unit/test_cli.c); tools/vmkit/main.c runs the result.
 *
 * Every error is one line, without a newline, starting with "vmkit: " and naming the
 * option and the value at fault.
 */
#ifndef VMKIT_CLI_H
#define VMKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmkit.h"

/* Exit statuses of the vmkit command (a guest's debug-exit code aside). */
#define CLI_EXIT_OK      0
#define CLI_EXIT_RUNTIME 1
#define CLI_EXIT_USAGE   2

#define CLI_MAX_SERIAL            4
#define CLI_MAX_DISKS             16 /* the library's limit on storage devices */
#define CLI_MAX_VPORTS            16 /* the library's limit on console ports */
#define CLI_DEFAULT_CPUS          1u
#define CLI_DEFAULT_MEMORY_MIB    512u
#define CLI_DEFAULT_GUEST_CMDLINE "console=ttyS0 panic=-1"
/* serve-device --type rng: bytes per second (the device's limit is 2^32). */
#define CLI_DEFAULT_RNG_RATE      (UINT64_C(1) << 20)
#define CLI_MAX_RNG_RATE          (UINT64_C(1) << 32)
/* serve-device --type blk --queues: the device's request queues (its limit is 16). */
#define CLI_DEFAULT_BLK_QUEUES    1u
#define CLI_MAX_BLK_QUEUES        16u
#define CLI_MAX_DISK_ID           20u /* bytes of a disk's serial (virtio-blk GET_ID) */

enum cli_command {
    CLI_CMD_RUN,
    CLI_CMD_HELP,
    CLI_CMD_VERSION,
    CLI_CMD_SERVE_DEVICE, /* vmkit serve-device: one virtio device over vhost-user */
};

enum cli_serve_type {
    CLI_SERVE_RNG,
    CLI_SERVE_BLK,
    CLI_SERVE_CONSOLE,
};

enum cli_serial_kind {
    CLI_SERIAL_STDIO,  /* guest input from fd 0, output to fd 1 */
    CLI_SERIAL_FILE,   /* output to path, no input */
    CLI_SERIAL_PTY,    /* a new pseudo-terminal, its path printed on stderr */
    CLI_SERIAL_SOCKET, /* a unix socket listening at path */
};

struct cli_serial {
    enum cli_serial_kind kind;
    char *path; /* CLI_SERIAL_FILE and CLI_SERIAL_SOCKET only */
    bool append;
};

/* --device virtio-blk: a virtio block device on a disk image. */
/* --device virtio-serial: one port of the (single) virtio console device. */
struct cli_vport {
    enum cli_serial_kind kind;
    char *path; /* CLI_SERIAL_FILE and CLI_SERIAL_SOCKET only */
    bool append;
    char *name;   /* NULL: none */
    bool console; /* the guest's hvc0 */
};

struct cli_disk {
    char *path;
    bool read_only;
    vmk_disk_caching_mode caching;
    vmk_disk_sync_mode sync;
    char *id; /* the serial the guest reads; NULL: none */
};

/* What the command line asked for: plain data, owned strings. */
struct cli_request {
    enum cli_command command;
    unsigned cpus;
    uint64_t memory_mib;
    char *kernel;  /* NULL: boot the default guest */
    char *initrd;  /* NULL: none (or the default guest's) */
    char *cmdline; /* NULL: none (or the default guest's) */
    unsigned serial_count;
    struct cli_serial serial[CLI_MAX_SERIAL]; /* COM1.. in order; none: COM1 on stdio */
    unsigned disk_count;
    struct cli_disk disk[CLI_MAX_DISKS]; /* in the order given */
    bool rng;                            /* --device virtio-rng: an entropy device */
    unsigned vport_count;
    /* console ports in order (run: --device virtio-serial, none: no device; serve-device:
     * --port) */
    struct cli_vport vport[CLI_MAX_VPORTS];
    /* serve-device only. */
    enum cli_serve_type serve_type;
    char *socket;               /* the vhost-user socket to create */
    uint64_t rate;              /* rng: bytes per second */
    struct cli_disk serve_disk; /* blk: --disk (path NULL for other types) */
    unsigned queues;            /* blk: request queues offered */
};

/* Parses argv (argv[0] is the program name). Returns 0 with *req filled, or an exit
 * status (CLI_EXIT_USAGE; CLI_EXIT_RUNTIME when out of memory) with one line in err.
 * Whatever it returns, *req may (and should) be passed to cli_request_free. */
int cli_parse(int argc, char *const argv[], struct cli_request *req, char *err, size_t errlen);

/* Frees the strings of req and zeroes it. A zeroed request is fine. */
void cli_request_free(struct cli_request *req);

/* Finds the default guest (vmlinuz + initramfs.img): in $VMKIT_GUEST_DIR when that is
 * set and not empty (and nowhere else); otherwise in <exe dir>/../share/vmkit/guest,
 * then in guest/out of the exe's directory or one of its 4 nearest ancestors (the
 * source tree, when run from the build tree). exe_path is the absolute path of the
 * running binary, or NULL. Returns 0 with malloc'ed paths, or an exit status with
 * one line in err. */
int cli_find_default_guest(const char *exe_path, char **kernel, char **initrd, char *err,
                           size_t errlen);

/* Builds the machine req describes (finding the default guest when req->kernel is
 * NULL; see cli_find_default_guest). Does not validate it: vmk_config_validate does.
 * Returns 0 with *cfg set, or an exit status with one line in err. */
int cli_build_config(const struct cli_request *req, const char *exe_path, vmk_config **cfg,
                     char *err, size_t errlen);
/* The console device of req's ports (--device virtio-serial, or serve-device's --port).
 * 0 with *dev set, or an exit status with one line in err. */
int cli_build_console_device(const struct cli_request *req, vmk_console_device **dev, char *err,
                             size_t errlen);
/* How messages name a port: "COM2", "virtio-serial port 1 (NAME, hvc0)". console: index
 * is a console port's, else a serial port's. */
void cli_port_label(const struct cli_request *req, bool console, unsigned index, char *buf,
                    size_t len);

/* The text of `vmkit --help`, ending in a newline. */
const char *cli_usage(void);

#endif
