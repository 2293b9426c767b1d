/* The Linux boot loader object, and its validation against the machine it boots; what every
 * boot loader shares (kind, free, copy). The EFI boot loader is efi_boot_loader.c's. */
#include "api/validate.h"
#include "arch/x86/boot_linux.h"
#include "arch/x86/layout.h"
#include "core/guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

vmk_boot_loader *vmk_linux_boot_loader_new(const char *kernel_path)
{
    vmk_boot_loader *bl = calloc(1, sizeof(*bl));
    if (!bl)
        return NULL;
    if (config_set_string(&bl->kernel, kernel_path) != VMK_OK) {
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
    free(bl->firmware);
    vmk_efi_variable_store_free(bl->store);
    free(bl);
}

vmk_boot_loader_kind vmk_boot_loader_get_kind(const vmk_boot_loader *bl)
{
    return bl ? bl->kind : VMK_BOOT_LOADER_LINUX;
}

vmk_result vmk_linux_boot_loader_set_initrd(vmk_boot_loader *bl, const char *path)
{
    return bl && bl->kind == VMK_BOOT_LOADER_LINUX ? config_set_string(&bl->initrd, path)
                                                   : VMK_ERR_INVALID_ARGUMENT;
}

vmk_result vmk_linux_boot_loader_set_command_line(vmk_boot_loader *bl, const char *cmdline)
{
    return bl && bl->kind == VMK_BOOT_LOADER_LINUX ? config_set_string(&bl->cmdline, cmdline)
                                                   : VMK_ERR_INVALID_ARGUMENT;
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

size_t vmk_linux_boot_loader_max_command_line_length(void)
{
    return X86_CMDLINE_MAX - 1;
}

vmk_boot_loader *boot_loader_copy(const vmk_boot_loader *bl)
{
    if (bl->kind == VMK_BOOT_LOADER_EFI) {
        vmk_boot_loader *c = vmk_efi_boot_loader_new();
        if (c && efi_boot_loader_copy_into(bl, c) != VMK_OK) {
            vmk_boot_loader_free(c);
            c = NULL;
        }
        return c;
    }
    vmk_boot_loader *c = vmk_linux_boot_loader_new(bl->kernel);
    if (!c || config_set_string(&c->initrd, bl->initrd) != VMK_OK ||
        config_set_string(&c->cmdline, bl->cmdline) != VMK_OK) {
        vmk_boot_loader_free(c);
        return NULL;
    }
    return c;
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

void boot_loader_validate(const vmk_config *cfg, struct problems *p)
{
    const vmk_boot_loader *bl = cfg->boot_loader;
    if (!bl) {
        problem(p, "no boot loader: set one with vmk_config_set_boot_loader");
        return;
    }
    if (bl->kind == VMK_BOOT_LOADER_EFI) {
        efi_boot_loader_validate(bl, p);
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
    bool initrd_ok = false;
    if (bl->initrd && !*bl->initrd)
        problem(p, "boot loader: empty initrd path (NULL for none)");
    else if (bl->initrd)
        initrd_ok = check_input_file(p, "initrd", bl->initrd, &initrd_size);
    if (bl->cmdline && strlen(bl->cmdline) >= X86_CMDLINE_MAX)
        problem(p, "command line: %zu bytes, at most %u allowed", strlen(bl->cmdline),
                (unsigned)X86_CMDLINE_MAX - 1);

    uint64_t mem = cfg->memory_size;
    if (kernel_ok && mem >= VMK_MIN_MEMORY && mem <= VMK_MAX_MEMORY) {
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
