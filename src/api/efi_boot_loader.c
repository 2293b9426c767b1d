/* The EFI boot loader and its variable store (VZEFIBootLoader, VZEFIVariableStore), and their
 * validation. The firmware's flash is code (read-only) then variables (writable); Debian's OVMF
 * builds make the two fill a flash of a power of two (4 MiB: 3653632 + 540672 bytes), which is
 * how a store's expected size follows from the firmware's. */
#include "api/config_internal.h"
#include "api/validate.h"
#include "core/error.h"
#include "devices/legacy/cfi_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian's ovmf package (4 MiB builds first: what OVMF's own documentation recommends). */
static const char *const firmware_paths[] = { "/usr/share/OVMF/OVMF_CODE_4M.fd",
                                              "/usr/share/ovmf/OVMF_CODE_4M.fd" };
static const char *const template_paths[] = { "/usr/share/OVMF/OVMF_VARS_4M.fd",
                                              "/usr/share/ovmf/OVMF_VARS_4M.fd" };

#define STORE_MAX (64u << 20)

static const char *first_existing(const char *const *paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (access(paths[i], F_OK) == 0)
            return paths[i];
    return NULL;
}

const char *vmk_efi_default_firmware_path(void)
{
    return first_existing(firmware_paths, sizeof(firmware_paths) / sizeof(firmware_paths[0]));
}

const char *vmk_efi_default_variable_template_path(void)
{
    return first_existing(template_paths, sizeof(template_paths) / sizeof(template_paths[0]));
}

/* ---- the variable store ----------------------------------------------------------- */

static vmk_efi_variable_store *store_new(const char *path)
{
    vmk_efi_variable_store *s = calloc(1, sizeof(*s));
    if (s && config_set_string(&s->path, path) != VMK_OK) {
        free(s);
        s = NULL;
    }
    return s;
}

void vmk_efi_variable_store_free(vmk_efi_variable_store *store)
{
    if (!store)
        return;
    free(store->path);
    free(store);
}

const char *vmk_efi_variable_store_get_path(const vmk_efi_variable_store *store)
{
    return store ? store->path : NULL;
}

vmk_efi_variable_store *vmk_efi_variable_store_open(const char *path, vmk_error **err)
{
    if (!path || !*path) {
        vmk_fail_set(err, VMK_ERR_INVALID_ARGUMENT, 0, "EFI variable store: no path");
        return NULL;
    }
    if (access(path, F_OK) != 0) {
        vmk_fail_set(err, VMK_ERR_IO, errno,
                     "EFI variable store %s: %s (make one with "
                     "vmk_efi_variable_store_create, or --bootloader efi,...,create)",
                     path, strerror(errno));
        return NULL;
    }
    vmk_efi_variable_store *s = store_new(path);
    if (!s)
        vmk_fail_set(err, VMK_ERR_NO_MEMORY, 0, "EFI variable store %s: out of memory", path);
    return s;
}

/* Reads the whole of a small file. */
static uint8_t *read_small_file(const char *path, size_t max, size_t *len, int *error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t *buf = NULL;
    *error = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *error = errno;
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        *error = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
    } else if ((buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n <= 0) {
                *error = n < 0 ? errno : EIO;
                break;
            }
            got += (size_t)n;
        }
        *len = got;
    } else {
        *error = ENOMEM;
    }
    if (fd >= 0)
        close(fd);
    if (*error) {
        free(buf);
        return NULL;
    }
    return buf;
}

vmk_efi_variable_store *vmk_efi_variable_store_create(const char *path, bool allow_overwrite,
                                                      vmk_error **err)
{
    if (!path || !*path) {
        vmk_fail_set(err, VMK_ERR_INVALID_ARGUMENT, 0, "EFI variable store: no path");
        return NULL;
    }
    if (!allow_overwrite && access(path, F_OK) == 0) {
        vmk_fail_set(err, VMK_ERR_IO, EEXIST,
                     "EFI variable store %s: already exists (open it, or allow overwriting it)",
                     path);
        return NULL;
    }
    const char *tmpl = vmk_efi_default_variable_template_path();
    if (!tmpl) {
        vmk_fail_set(err, VMK_ERR_UNSUPPORTED, ENOENT,
                     "EFI variable store %s: no variable template (%s): install Debian's ovmf "
                     "package",
                     path, template_paths[0]);
        return NULL;
    }
    size_t len = 0;
    int e;
    uint8_t *data = read_small_file(tmpl, STORE_MAX, &len, &e);
    if (!data) {
        vmk_fail_set(err, VMK_ERR_IO, e, "EFI variable template %s: cannot read: %s", tmpl,
                     strerror(e));
        return NULL;
    }
    /* A temporary file beside path, synced, then renamed over it: a crash leaves the old
     * file or the whole new one. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dir_copy = strdup(path);
    int fd = -1;
    vmk_efi_variable_store *s = NULL;
    if (!tmp || !dir_copy) {
        vmk_fail_set(err, VMK_ERR_NO_MEMORY, 0, "EFI variable store %s: out of memory", path);
        goto out;
    }
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        vmk_fail_set(err, VMK_ERR_IO, errno, "EFI variable store %s: cannot create: %s", path,
                     strerror(errno));
        goto out;
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n <= 0) {
            vmk_fail_set(err, VMK_ERR_IO, n < 0 ? errno : EIO,
                         "EFI variable store %s: cannot write: %s", path,
                         strerror(n < 0 ? errno : EIO));
            goto fail_tmp;
        }
        done += (size_t)n;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0 || rename(tmp, path) != 0) {
        vmk_fail_set(err, VMK_ERR_IO, errno, "EFI variable store %s: cannot write: %s", path,
                     strerror(errno));
        goto fail_tmp;
    }
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself survives a crash */
        close(dfd);
    }
    s = store_new(path);
    if (!s)
        vmk_fail_set(err, VMK_ERR_NO_MEMORY, 0, "EFI variable store %s: out of memory", path);
    goto out;
fail_tmp:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dir_copy);
    free(data);
    return s;
}

/* ---- the boot loader ------------------------------------------------------------ */

vmk_boot_loader *vmk_efi_boot_loader_new(void)
{
    vmk_boot_loader *bl = calloc(1, sizeof(*bl));
    if (bl)
        bl->kind = VMK_BOOT_LOADER_EFI;
    return bl;
}

vmk_result vmk_efi_boot_loader_set_variable_store(vmk_boot_loader *bl,
                                                  vmk_efi_variable_store *store)
{
    if (!bl || bl->kind != VMK_BOOT_LOADER_EFI) {
        vmk_efi_variable_store_free(store);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    vmk_efi_variable_store_free(bl->store);
    bl->store = store;
    return VMK_OK;
}

const vmk_efi_variable_store *vmk_efi_boot_loader_get_variable_store(const vmk_boot_loader *bl)
{
    return bl && bl->kind == VMK_BOOT_LOADER_EFI ? bl->store : NULL;
}

vmk_result vmk_efi_boot_loader_set_firmware(vmk_boot_loader *bl, const char *path)
{
    if (!bl || bl->kind != VMK_BOOT_LOADER_EFI)
        return VMK_ERR_INVALID_ARGUMENT;
    return config_set_string(&bl->firmware, path);
}

const char *vmk_efi_boot_loader_get_firmware(const vmk_boot_loader *bl)
{
    if (!bl || bl->kind != VMK_BOOT_LOADER_EFI)
        return NULL;
    return bl->firmware ? bl->firmware : vmk_efi_default_firmware_path();
}

vmk_result efi_boot_loader_copy_into(const vmk_boot_loader *bl, vmk_boot_loader *c)
{
    if (config_set_string(&c->firmware, bl->firmware) != VMK_OK)
        return VMK_ERR_NO_MEMORY;
    if (bl->store && !(c->store = store_new(bl->store->path)))
        return VMK_ERR_NO_MEMORY;
    return VMK_OK;
}

/* ---- validation ----------------------------------------------------------------- */

static uint64_t flash_total(uint64_t code_size)
{
    uint64_t total = 1;
    while (total < code_size)
        total <<= 1;
    return total;
}

void efi_boot_loader_validate(const vmk_boot_loader *bl, struct problems *p)
{
    const char *fw = vmk_efi_boot_loader_get_firmware(bl);
    uint64_t code_size = 0;
    if (!fw) {
        problem(p,
                "EFI boot loader: no firmware (%s is missing): install Debian's ovmf package "
                "or set one with vmk_efi_boot_loader_set_firmware",
                firmware_paths[0]);
    } else {
        size_t len = 0;
        int e;
        uint8_t *data = read_small_file(fw, STORE_MAX, &len, &e);
        if (!data)
            problem(p, "EFI firmware %s: cannot read: %s", fw, strerror(e));
        else if (!cfi_flash_image_is_firmware_volume(data, len) || len % 4096)
            problem(p, "EFI firmware %s: not a firmware volume (no _FVH header)", fw);
        else
            code_size = len;
        free(data);
    }
    if (!bl->store) {
        problem(p, "EFI boot loader: no variable store (vmk_efi_boot_loader_set_variable_store)");
        return;
    }
    const char *path = bl->store->path;
    size_t len = 0;
    int e;
    uint8_t *data = read_small_file(path, STORE_MAX, &len, &e);
    if (!data) {
        problem(p, "EFI variable store %s: cannot read: %s", path, strerror(e));
        return;
    }
    if (access(path, W_OK) != 0)
        problem(p, "EFI variable store %s: not writable: %s", path, strerror(errno));
    else if (!cfi_flash_image_is_firmware_volume(data, len))
        problem(p, "EFI variable store %s: not a variable store (no firmware volume header)", path);
    else if (code_size && len != flash_total(code_size) - code_size)
        problem(p,
                "EFI variable store %s: %zu bytes, but firmware %s (%llu bytes) leaves %llu for "
                "its variables",
                path, len, fw, (unsigned long long)code_size,
                (unsigned long long)(flash_total(code_size) - code_size));
    free(data);
}
