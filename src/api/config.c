/* Configuration objects: inert data plus vmk_config_validate, which reports every
 * problem it can find before anything is started. */
#include "api/config_internal.h"
#include "arch/x86/boot_linux.h"
#include "arch/x86/layout.h"
#include "core/error.h"
#include "core/guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MIN_CPUS       1u
#define MAX_CPUS       254u /* xAPIC ids 0..254; 255 is broadcast, and the IOAPIC takes one id */
#define MIN_MEMORY     (2ULL << 20)
#define MAX_MEMORY     (1ULL << 40)
#define MEMORY_ALIGN   (1ULL << 20)
#define DEFAULT_CPUS   1u
#define DEFAULT_MEMORY (512ULL << 20)

unsigned vmk_config_min_cpu_count(void)
{
    return MIN_CPUS;
}
unsigned vmk_config_max_cpu_count(void)
{
    return MAX_CPUS;
}
uint64_t vmk_config_min_memory_size(void)
{
    return MIN_MEMORY;
}
uint64_t vmk_config_max_memory_size(void)
{
    return MAX_MEMORY;
}

/* ---- boot loader ---- */

vmk_boot_loader *vmk_linux_boot_loader_new(const char *kernel_path)
{
    vmk_boot_loader *bl = calloc(1, sizeof(*bl));
    if (!bl)
        return NULL;
    if (kernel_path && !(bl->kernel = strdup(kernel_path))) {
        free(bl);
        return NULL;
    }
    return bl;
}

void vmk_boot_loader_free(vmk_boot_loader *bl)
{
    if (!bl)
        return;
    free(bl->kernel);
    free(bl->initrd);
    free(bl->cmdline);
    free(bl);
}

/* Replaces *slot with a copy of s (NULL clears it). */
static vmk_result set_string(char **slot, const char *s)
{
    char *copy = NULL;
    if (s && !(copy = strdup(s)))
        return VMK_ERR_NO_MEMORY;
    free(*slot);
    *slot = copy;
    return VMK_OK;
}

vmk_result vmk_linux_boot_loader_set_initrd(vmk_boot_loader *bl, const char *path)
{
    return bl ? set_string(&bl->initrd, path) : VMK_ERR_INVALID_ARGUMENT;
}

vmk_result vmk_linux_boot_loader_set_command_line(vmk_boot_loader *bl, const char *cmdline)
{
    return bl ? set_string(&bl->cmdline, cmdline) : VMK_ERR_INVALID_ARGUMENT;
}

const char *vmk_linux_boot_loader_get_kernel(const vmk_boot_loader *bl)
{
    return bl ? bl->kernel : NULL;
}

const char *vmk_linux_boot_loader_get_initrd(const vmk_boot_loader *bl)
{
    return bl ? bl->initrd : NULL;
}

const char *vmk_linux_boot_loader_get_command_line(const vmk_boot_loader *bl)
{
    return bl ? bl->cmdline : NULL;
}

static vmk_boot_loader *boot_loader_copy(const vmk_boot_loader *bl)
{
    vmk_boot_loader *c = vmk_linux_boot_loader_new(bl->kernel);
    if (!c || (bl->kernel && !c->kernel) || set_string(&c->initrd, bl->initrd) != VMK_OK ||
        set_string(&c->cmdline, bl->cmdline) != VMK_OK) {
        vmk_boot_loader_free(c);
        return NULL;
    }
    return c;
}

/* ---- serial attachments ---- */

static vmk_serial_attachment *serial_attachment_alloc(enum serial_attachment_kind kind)
{
    vmk_serial_attachment *att = calloc(1, sizeof(*att));
    if (!att)
        return NULL;
    att->kind = kind;
    att->read_fd = att->write_fd = -1;
    return att;
}

vmk_serial_attachment *vmk_file_serial_attachment_new(const char *path, bool append)
{
    vmk_serial_attachment *att = serial_attachment_alloc(SERIAL_ATTACHMENT_FILE);
    if (!att)
        return NULL;
    att->append = append;
    if (path && !(att->path = strdup(path))) {
        free(att);
        return NULL;
    }
    return att;
}

vmk_serial_attachment *vmk_fd_serial_attachment_new(int read_fd, int write_fd)
{
    vmk_serial_attachment *att = serial_attachment_alloc(SERIAL_ATTACHMENT_FD);
    if (!att)
        return NULL;
    att->read_fd = read_fd < 0 ? -1 : read_fd;
    att->write_fd = write_fd < 0 ? -1 : write_fd;
    return att;
}

vmk_serial_attachment *vmk_pty_serial_attachment_new(void)
{
    return serial_attachment_alloc(SERIAL_ATTACHMENT_PTY);
}

vmk_serial_attachment *vmk_socket_serial_attachment_new(const char *path)
{
    vmk_serial_attachment *att = serial_attachment_alloc(SERIAL_ATTACHMENT_SOCKET);
    if (!att)
        return NULL;
    if (path && !(att->path = strdup(path))) {
        free(att);
        return NULL;
    }
    return att;
}

void vmk_serial_attachment_free(vmk_serial_attachment *att)
{
    if (!att)
        return;
    free(att->path);
    free(att);
}

vmk_serial_attachment *serial_attachment_copy(const vmk_serial_attachment *att)
{
    vmk_serial_attachment *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c = *att;
    c->path = NULL;
    if (att->path && !(c->path = strdup(att->path))) {
        free(c);
        return NULL;
    }
    return c;
}

/* ---- storage ---- */

vmk_storage_attachment *vmk_disk_image_attachment_new(const char *path, bool read_only,
                                                      vmk_error **err)
{
    if (!path || !*path) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "disk image attachment: no path");
        return NULL;
    }
    vmk_storage_attachment *att = calloc(1, sizeof(*att));
    if (!att || !(att->path = strdup(path))) {
        free(att);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "disk image %s: out of memory", path);
        return NULL;
    }
    att->kind = STORAGE_ATTACHMENT_DISK_IMAGE;
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
    if (!att || (mode != VMK_DISK_CACHING_AUTOMATIC && mode != VMK_DISK_CACHING_CACHED &&
                 mode != VMK_DISK_CACHING_UNCACHED))
        return VMK_ERR_INVALID_ARGUMENT;
    att->caching = mode;
    return VMK_OK;
}

vmk_result vmk_disk_image_attachment_set_synchronization_mode(vmk_storage_attachment *att,
                                                              vmk_disk_sync_mode mode)
{
    if (!att ||
        (mode != VMK_DISK_SYNC_FULL && mode != VMK_DISK_SYNC_FSYNC && mode != VMK_DISK_SYNC_NONE))
        return VMK_ERR_INVALID_ARGUMENT;
    att->sync = mode;
    return VMK_OK;
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
    vmk_storage_attachment *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c = *att;
    if (!(c->path = strdup(att->path))) {
        free(c);
        return NULL;
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
    dev->kind = STORAGE_DEVICE_VIRTIO_BLOCK;
    dev->att = att;
    return dev;
}

void vmk_storage_device_free(vmk_storage_device *dev)
{
    if (!dev)
        return;
    vmk_storage_attachment_free(dev->att);
    free(dev->identifier);
    free(dev);
}

vmk_result vmk_virtio_block_device_set_identifier(vmk_storage_device *dev, const char *id,
                                                  vmk_error **err)
{
    if (!dev)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio block device is NULL");
    size_t len = id ? strlen(id) : 0;
    if (len > VMK_BLK_ID_MAX)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "virtio block device identifier \"%.40s%s\": %zu bytes, at most %u allowed",
                        id, len > 40 ? "..." : "", len, VMK_BLK_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c > 0x7e)
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                            "virtio block device identifier: byte %zu (0x%02x) is not printable "
                            "ASCII",
                            i, c);
    }
    return set_string(&dev->identifier, len ? id : NULL) == VMK_OK
               ? VMK_OK
               : vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio block device: out of memory");
}

const char *vmk_virtio_block_device_get_identifier(const vmk_storage_device *dev)
{
    return dev ? dev->identifier : NULL;
}

const vmk_storage_attachment *vmk_storage_device_get_attachment(const vmk_storage_device *dev)
{
    return dev ? dev->att : NULL;
}

vmk_storage_device *storage_device_copy(const vmk_storage_device *dev)
{
    vmk_storage_device *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = dev->kind;
    if (!(c->att = storage_attachment_copy(dev->att)) ||
        set_string(&c->identifier, dev->identifier) != VMK_OK) {
        vmk_storage_device_free(c);
        return NULL;
    }
    return c;
}

/* ---- entropy ---- */

vmk_entropy_device *vmk_virtio_entropy_device_new(void)
{
    vmk_entropy_device *dev = calloc(1, sizeof(*dev));
    if (dev)
        dev->kind = ENTROPY_DEVICE_VIRTIO;
    return dev;
}

void vmk_entropy_device_free(vmk_entropy_device *dev)
{
    free(dev);
}

static vmk_entropy_device *entropy_device_copy(const vmk_entropy_device *dev)
{
    vmk_entropy_device *c = malloc(sizeof(*c));
    if (c)
        *c = *dev;
    return c;
}

/* ---- console ---- */

vmk_console_device *vmk_virtio_console_device_new(void)
{
    return calloc(1, sizeof(vmk_console_device));
}

void vmk_console_device_free(vmk_console_device *dev)
{
    if (!dev)
        return;
    for (unsigned i = 0; i < dev->port_count; i++) {
        free(dev->port[i].name);
        vmk_serial_attachment_free(dev->port[i].att);
    }
    free(dev);
}

vmk_result vmk_virtio_console_device_add_port(vmk_console_device *dev, const char *name,
                                              bool is_console, vmk_serial_attachment *att)
{
    bool console_taken = false;
    for (unsigned i = 0; dev && i < dev->port_count; i++)
        console_taken |= dev->port[i].is_console;
    if (!dev || !att || dev->port_count == VMK_MAX_CONSOLE_PORTS || (is_console && console_taken)) {
        vmk_serial_attachment_free(att);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    char *copy = NULL;
    if (name && !(copy = strdup(name))) {
        vmk_serial_attachment_free(att);
        return VMK_ERR_NO_MEMORY;
    }
    dev->port[dev->port_count++] =
        (struct console_port){ .name = copy, .is_console = is_console, .att = att };
    return VMK_OK;
}

unsigned vmk_virtio_console_device_port_count(const vmk_console_device *dev)
{
    return dev ? dev->port_count : 0;
}

static vmk_console_device *console_device_copy(const vmk_console_device *dev)
{
    vmk_console_device *c = vmk_virtio_console_device_new();
    if (!c)
        return NULL;
    for (unsigned i = 0; i < dev->port_count; i++) {
        const struct console_port *p = &dev->port[i];
        vmk_serial_attachment *att = serial_attachment_copy(p->att);
        if (!att || vmk_virtio_console_device_add_port(c, p->name, p->is_console, att) != VMK_OK) {
            vmk_console_device_free(c);
            return NULL;
        }
    }
    return c;
}

/* ---- config ---- */

vmk_config *vmk_config_new(void)
{
    vmk_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    cfg->cpu_count = DEFAULT_CPUS;
    cfg->memory_size = DEFAULT_MEMORY;
    return cfg;
}

void vmk_config_free(vmk_config *cfg)
{
    if (!cfg)
        return;
    vmk_boot_loader_free(cfg->boot_loader);
    for (unsigned i = 0; i < cfg->serial_count; i++)
        vmk_serial_attachment_free(cfg->serial[i]);
    for (unsigned i = 0; i < cfg->storage_count; i++)
        vmk_storage_device_free(cfg->storage[i]);
    for (unsigned i = 0; i < cfg->entropy_count; i++)
        vmk_entropy_device_free(cfg->entropy[i]);
    for (unsigned i = 0; i < cfg->console_count; i++)
        vmk_console_device_free(cfg->console[i]);
    free(cfg);
}

vmk_config *config_copy(const vmk_config *cfg)
{
    vmk_config *c = vmk_config_new();
    if (!c)
        return NULL;
    c->cpu_count = cfg->cpu_count;
    c->memory_size = cfg->memory_size;
    if (cfg->boot_loader && !(c->boot_loader = boot_loader_copy(cfg->boot_loader)))
        goto fail;
    for (unsigned i = 0; i < cfg->serial_count; i++) {
        if (!(c->serial[i] = serial_attachment_copy(cfg->serial[i])))
            goto fail;
        c->serial_count++;
    }
    for (unsigned i = 0; i < cfg->storage_count; i++) {
        if (!(c->storage[i] = storage_device_copy(cfg->storage[i])))
            goto fail;
        c->storage_count++;
    }
    for (unsigned i = 0; i < cfg->entropy_count; i++) {
        if (!(c->entropy[i] = entropy_device_copy(cfg->entropy[i])))
            goto fail;
        c->entropy_count++;
    }
    for (unsigned i = 0; i < cfg->console_count; i++) {
        if (!(c->console[i] = console_device_copy(cfg->console[i])))
            goto fail;
        c->console_count++;
    }
    return c;
fail:
    vmk_config_free(c);
    return NULL;
}

vmk_result vmk_config_set_cpu_count(vmk_config *cfg, unsigned count)
{
    if (!cfg)
        return VMK_ERR_INVALID_ARGUMENT;
    cfg->cpu_count = count;
    return VMK_OK;
}

unsigned vmk_config_get_cpu_count(const vmk_config *cfg)
{
    return cfg ? cfg->cpu_count : 0;
}

vmk_result vmk_config_set_memory_size(vmk_config *cfg, uint64_t bytes)
{
    if (!cfg)
        return VMK_ERR_INVALID_ARGUMENT;
    cfg->memory_size = bytes;
    return VMK_OK;
}

uint64_t vmk_config_get_memory_size(const vmk_config *cfg)
{
    return cfg ? cfg->memory_size : 0;
}

vmk_result vmk_config_set_boot_loader(vmk_config *cfg, vmk_boot_loader *bl)
{
    if (!cfg) {
        vmk_boot_loader_free(bl);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    vmk_boot_loader_free(cfg->boot_loader);
    cfg->boot_loader = bl;
    return VMK_OK;
}

const vmk_boot_loader *vmk_config_get_boot_loader(const vmk_config *cfg)
{
    return cfg ? cfg->boot_loader : NULL;
}

vmk_result vmk_config_add_serial_port(vmk_config *cfg, vmk_serial_attachment *att)
{
    if (!cfg || !att || cfg->serial_count == VMK_MAX_SERIAL_PORTS) {
        vmk_serial_attachment_free(att);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    cfg->serial[cfg->serial_count++] = att;
    return VMK_OK;
}

unsigned vmk_config_serial_port_count(const vmk_config *cfg)
{
    return cfg ? cfg->serial_count : 0;
}

vmk_result vmk_config_add_storage_device(vmk_config *cfg, vmk_storage_device *dev)
{
    if (!cfg || !dev || cfg->storage_count == VMK_MAX_STORAGE_DEVICES) {
        vmk_storage_device_free(dev);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    cfg->storage[cfg->storage_count++] = dev;
    return VMK_OK;
}

unsigned vmk_config_storage_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->storage_count : 0;
}

vmk_result vmk_config_add_entropy_device(vmk_config *cfg, vmk_entropy_device *dev)
{
    if (!cfg || !dev || cfg->entropy_count == VMK_MAX_ENTROPY_DEVICES) {
        vmk_entropy_device_free(dev);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    cfg->entropy[cfg->entropy_count++] = dev;
    return VMK_OK;
}

unsigned vmk_config_entropy_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->entropy_count : 0;
}

vmk_result vmk_config_add_console_device(vmk_config *cfg, vmk_console_device *dev)
{
    if (!cfg || !dev || cfg->console_count == VMK_MAX_CONSOLE_DEVICES) {
        vmk_console_device_free(dev);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    cfg->console[cfg->console_count++] = dev;
    return VMK_OK;
}

unsigned vmk_config_console_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->console_count : 0;
}

/* ---- validation ---- */

/* Problems are collected one per line, so the caller sees all of them at once. */
struct problems {
    char *text;
    size_t len;
    unsigned count;
    bool oom;
};

static void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct problems *p, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    p->count++;
    if (n < 0) {
        p->oom = true;
        return;
    }
    char *t = realloc(p->text, p->len + (size_t)n + 2);
    if (!t) {
        p->oom = true;
        free(line);
        return;
    }
    if (p->len)
        t[p->len++] = '\n';
    memcpy(t + p->len, line, (size_t)n + 1);
    p->len += (size_t)n;
    p->text = t;
    free(line);
}

/* Folds a vmk_error from a helper into the problem list. */
static void problem_from(struct problems *p, vmk_error *e)
{
    if (e)
        problem(p, "%s", vmk_error_message(e));
    vmk_error_free(e);
}

/* A readable regular file: returns its size through *size, or reports why not. */
static bool check_input_file(struct problems *p, const char *what, const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        problem(p, "%s %s: cannot open: %s", what, path, strerror(errno));
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    if (!ok)
        problem(p, "%s %s: cannot stat: %s", what, path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) {
        problem(p, "%s %s: not a regular file", what, path);
        ok = false;
    } else if (size) {
        *size = (uint64_t)st.st_size;
    }
    close(fd);
    return ok;
}

static void validate_boot_loader(const vmk_config *cfg, struct problems *p)
{
    const vmk_boot_loader *bl = cfg->boot_loader;
    if (!bl) {
        problem(p, "no boot loader: set one with vmk_config_set_boot_loader");
        return;
    }
    if (!bl->kernel || !*bl->kernel) {
        problem(p, "boot loader: no kernel path");
        return;
    }
    struct linux_kernel_info info;
    bool kernel_ok = false;
    if (check_input_file(p, "kernel", bl->kernel, NULL)) {
        vmk_error *e = NULL;
        kernel_ok = linux_kernel_probe(bl->kernel, &info, &e) == VMK_OK;
        problem_from(p, e);
    }
    uint64_t initrd_size = 0;
    bool initrd_ok = bl->initrd && check_input_file(p, "initrd", bl->initrd, &initrd_size);
    if (bl->cmdline && strlen(bl->cmdline) >= X86_CMDLINE_MAX)
        problem(p, "command line: %zu bytes, at most %u allowed", strlen(bl->cmdline),
                (unsigned)X86_CMDLINE_MAX - 1);

    uint64_t mem = cfg->memory_size;
    if (kernel_ok && mem >= MIN_MEMORY && mem <= MAX_MEMORY) {
        uint64_t low_end = mem < GM_LOW_RAM_LIMIT ? mem : GM_LOW_RAM_LIMIT;
        uint64_t addr;
        if (info.load_end > low_end)
            problem(p, "kernel %s: needs memory up to %#llx, but the guest has %llu MiB",
                    bl->kernel, (unsigned long long)info.load_end, (unsigned long long)(mem >> 20));
        else if (initrd_ok && linux_initrd_place(&info, low_end, initrd_size, &addr) < 0)
            problem(p,
                    "initrd %s: %llu bytes do not fit in guest memory (%llu MiB) above the kernel",
                    bl->initrd, (unsigned long long)initrd_size, (unsigned long long)(mem >> 20));
    }
}

/* what: names the port in messages ("serial port 2", "console port 1"). */
static void validate_serial_attachment(struct problems *p, const char *what,
                                       const vmk_serial_attachment *att)
{
    struct stat st;
    switch (att->kind) {
    case SERIAL_ATTACHMENT_FILE:
        if (!att->path || !*att->path)
            problem(p, "%s: file attachment without a path", what);
        return;
    case SERIAL_ATTACHMENT_FD:
        if (att->read_fd >= 0 && fcntl(att->read_fd, F_GETFD) < 0)
            problem(p, "%s: read fd %d is not open", what, att->read_fd);
        if (att->write_fd >= 0 && fcntl(att->write_fd, F_GETFD) < 0)
            problem(p, "%s: write fd %d is not open", what, att->write_fd);
        return;
    case SERIAL_ATTACHMENT_PTY: return; /* made at start */
    case SERIAL_ATTACHMENT_SOCKET:
        if (!att->path || !*att->path)
            problem(p, "%s: socket attachment without a path", what);
        else if (strlen(att->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            problem(p, "%s: socket path %s is %zu bytes, at most %zu allowed", what, att->path,
                    strlen(att->path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        else if (lstat(att->path, &st) == 0 && !S_ISSOCK(st.st_mode))
            problem(p, "%s: socket path %s exists and is not a socket", what, att->path);
        return;
    }
}

/* The attachment behind the n-th port of the whole machine (serial ports first), with
 * its name for messages; NULL past the last. */
static const vmk_serial_attachment *nth_port(const vmk_config *cfg, unsigned n, char *what,
                                             size_t len)
{
    if (n < cfg->serial_count) {
        snprintf(what, len, "serial port %u", n + 1);
        return cfg->serial[n];
    }
    n -= cfg->serial_count;
    for (unsigned d = 0; d < cfg->console_count; d++) {
        if (n < cfg->console[d]->port_count) {
            snprintf(what, len, "console port %u", n + 1);
            return cfg->console[d]->port[n].att;
        }
        n -= cfg->console[d]->port_count;
    }
    return NULL;
}

/* Two ports cannot listen on one socket: the second would fail at start. */
static void validate_socket_paths(const vmk_config *cfg, struct problems *p)
{
    char what[32], other[32];
    const vmk_serial_attachment *a, *b;
    for (unsigned i = 0; (a = nth_port(cfg, i, what, sizeof(what))); i++) {
        if (a->kind != SERIAL_ATTACHMENT_SOCKET || !a->path || !*a->path)
            continue;
        for (unsigned j = 0; j < i && (b = nth_port(cfg, j, other, sizeof(other))); j++)
            if (b->kind == SERIAL_ATTACHMENT_SOCKET && b->path && !strcmp(a->path, b->path)) {
                problem(p, "%s: socket path %s is already used by %s", what, a->path, other);
                break;
            }
    }
}

static void validate_serial(const vmk_config *cfg, struct problems *p)
{
    char what[32];
    for (unsigned i = 0; i < cfg->serial_count; i++) {
        snprintf(what, sizeof(what), "serial port %u", i + 1);
        validate_serial_attachment(p, what, cfg->serial[i]);
    }
}

/* Port names reach the guest's sysfs: printable ASCII, as the driver shows them. */
static void validate_console(const vmk_config *cfg, struct problems *p)
{
    char what[32];
    for (unsigned d = 0; d < cfg->console_count; d++) {
        const vmk_console_device *dev = cfg->console[d];
        if (dev->port_count == 0)
            problem(p, "console device %u: no ports", d + 1);
        for (unsigned i = 0; i < dev->port_count; i++) {
            const struct console_port *port = &dev->port[i];
            snprintf(what, sizeof(what), "console port %u", i + 1);
            size_t len = port->name ? strlen(port->name) : 0;
            if (port->name && len == 0)
                problem(p, "%s: empty name (leave the name NULL for none)", what);
            else if (len > VMK_CONSOLE_NAME_MAX)
                problem(p, "%s: name \"%.40s...\" is %zu bytes, at most %u allowed", what,
                        port->name, len, VMK_CONSOLE_NAME_MAX);
            for (size_t k = 0; k < len && len <= VMK_CONSOLE_NAME_MAX; k++) {
                unsigned char c = (unsigned char)port->name[k];
                if (c < 0x20 || c > 0x7e) {
                    problem(p, "%s: name byte %zu (0x%02x) is not printable ASCII", what, k, c);
                    break;
                }
            }
            /* udev links /dev/virtio-ports/NAME: two ports of one name clash. */
            for (unsigned j = 0; len && j < i; j++)
                if (dev->port[j].name && !strcmp(dev->port[j].name, port->name)) {
                    problem(p, "%s: name \"%.40s\" is already used by console port %u", what,
                            port->name, j + 1);
                    break;
                }
            validate_serial_attachment(p, what, port->att);
        }
    }
}

/* One disk image: what the host side will need at start. Returns whether the file is
 * usable, and its identity through *st (for spotting one image attached twice). */
static bool check_disk_image(struct problems *p, unsigned n, const vmk_storage_attachment *att,
                             struct stat *st)
{
    const char *path = att->path;
    if (stat(path, st) != 0) {
        if (errno == ENOENT)
            problem(p, "storage device %u: disk image %s: does not exist", n, path);
        else
            problem(p, "storage device %u: disk image %s: cannot stat: %s", n, path,
                    strerror(errno));
        return false;
    }
    if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
        problem(p, "storage device %u: disk image %s: not a regular file or block device", n, path);
        return false;
    }
    int fd = open(path, (att->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int rfd = att->read_only ? -1 : open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            close(rfd);
            problem(p, "storage device %u: disk image %s: not writable (%s); attach it read-only",
                    n, path, strerror(e));
        } else {
            problem(p, "storage device %u: disk image %s: not readable: %s", n, path, strerror(e));
        }
        return false;
    }
    uint64_t size = (uint64_t)st->st_size;
    bool ok = true;
    if (S_ISBLK(st->st_mode) && ioctl(fd, BLKGETSIZE64, &size) != 0) {
        problem(p, "storage device %u: disk image %s: cannot read the block device's size: %s", n,
                path, strerror(errno));
        ok = false;
    } else if (size % 512) {
        problem(p, "storage device %u: disk image %s: size %llu bytes is not a multiple of 512", n,
                path, (unsigned long long)size);
        ok = false;
    }
    close(fd);
    return ok;
}

static void validate_storage(const vmk_config *cfg, struct problems *p)
{
    struct stat st[VMK_MAX_STORAGE_DEVICES];
    bool ok[VMK_MAX_STORAGE_DEVICES];
    for (unsigned i = 0; i < cfg->storage_count; i++) {
        const vmk_storage_device *dev = cfg->storage[i];
        ok[i] = check_disk_image(p, i + 1, dev->att, &st[i]);
        /* Two writers (or a writer and a reader) of one image corrupt what the guests see. */
        for (unsigned j = 0; ok[i] && j < i; j++) {
            bool same = S_ISBLK(st[i].st_mode)
                            ? S_ISBLK(st[j].st_mode) && st[j].st_rdev == st[i].st_rdev
                            : st[j].st_dev == st[i].st_dev && st[j].st_ino == st[i].st_ino;
            if (ok[j] && same && (!dev->att->read_only || !cfg->storage[j]->att->read_only))
                problem(p,
                        "storage device %u: disk image %s: already used by storage device %u, "
                        "and one of them is writable",
                        i + 1, dev->att->path, j + 1);
        }
    }
}

vmk_result vmk_config_validate(const vmk_config *cfg, vmk_error **err)
{
    if (!cfg)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "config is NULL");
    struct problems p = { 0 };
    if (cfg->cpu_count < MIN_CPUS || cfg->cpu_count > MAX_CPUS)
        problem(&p, "cpu count %u is out of range [%u, %u]", cfg->cpu_count, MIN_CPUS, MAX_CPUS);
    if (cfg->memory_size < MIN_MEMORY || cfg->memory_size > MAX_MEMORY)
        problem(&p, "memory size %llu MiB is out of range [%llu MiB, %llu MiB]",
                (unsigned long long)(cfg->memory_size >> 20),
                (unsigned long long)(MIN_MEMORY >> 20), (unsigned long long)(MAX_MEMORY >> 20));
    else if (cfg->memory_size % MEMORY_ALIGN)
        problem(&p, "memory size %llu bytes is not a multiple of 1 MiB",
                (unsigned long long)cfg->memory_size);
    validate_boot_loader(cfg, &p);
    validate_serial(cfg, &p);
    validate_console(cfg, &p);
    validate_socket_paths(cfg, &p);
    validate_storage(cfg, &p);

    vmk_result r = VMK_OK;
    if (p.count) {
        r = p.oom ? VMK_ERR_NO_MEMORY : VMK_ERR_INVALID_CONFIG;
        vmk_fail(err, r, 0, "%s", p.text ? p.text : "invalid configuration");
    }
    free(p.text);
    return r;
}
