#include "machine/firmware.h"

#include <errno.h>
#include <string.h>
#include <linux/kvm.h>

#include "arch/x86/acpi_loader.h"
#include "arch/x86/fw_cfg_e820.h"
#include "arch/x86/layout.h"
#include "core/error.h"
#include "devices/legacy/cfi_flash.h"
#include "devices/legacy/fw_cfg.h"

#define PAGE 4096ULL

/* The flash's mode listener (its lock held): a slot over the array in read-array mode, none
 * otherwise. */
static void flash_mode(void *ctx, bool read_array)
{
    struct firmware_flash *ff = ctx;
    if (read_array == ff->mapped)
        return;
    vmk_error *e = NULL;
    void *host = (void *)(uintptr_t)cfi_flash_array(ff->flash);
    vmk_result r = read_array
                       ? kvm_vm_set_memory(ff->vm, ff->slot, ff->gpa, ff->map_len, host, true, &e)
                       : kvm_vm_set_memory(ff->vm, ff->slot, ff->gpa, 0, NULL, false, &e);
    vmk_error_free(e);
    /* A change KVM refuses (out of memory) leaves the slot as it was: a slot that stays means
     * array reads where status was due (OVMF's probe then takes the flash for ROM), one that
     * stays away only costs exits. Either way nothing breaks on the host. */
    if (r == VMK_OK)
        ff->mapped = read_array;
}

static vmk_result open_flash(struct firmware_flash *ff, const struct machine_firmware_env *env,
                             const char *path, bool read_only, unsigned slot, vmk_error **err)
{
    vmk_result r = cfi_flash_open(path, read_only, CFI_FLASH_OVMF_BLOCK_SIZE, &ff->flash, err);
    if (r != VMK_OK)
        return r;
    ff->vm = env->vm;
    ff->slot = slot;
    ff->map_len = (cfi_flash_size(ff->flash) + PAGE - 1) & ~(PAGE - 1);
    return VMK_OK;
}

/* The slot first: the reset vector must be there before the vCPU runs. */
static vmk_result map_flash(struct firmware_flash *ff, struct bus *mmio, vmk_error **err)
{
    int e = bus_add(mmio, ff->gpa, cfi_flash_size(ff->flash), &cfi_flash_ops, ff->flash);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_INTERNAL, -e, "flash at %#llx: cannot register: %s",
                        (unsigned long long)ff->gpa, strerror(-e));
    vmk_result r = kvm_vm_set_memory(ff->vm, ff->slot, ff->gpa, ff->map_len,
                                     (void *)(uintptr_t)cfi_flash_array(ff->flash), true, err);
    if (r != VMK_OK)
        return r;
    ff->mapped = true;
    cfi_flash_set_mode_listener(ff->flash, flash_mode, ff);
    return VMK_OK;
}

static vmk_result fw_cfg_failed(vmk_error **err, const char *what, int e)
{
    return vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_INTERNAL, -e, "fw_cfg %s: %s",
                    what, strerror(-e));
}

vmk_result machine_firmware_fill_fw_cfg(struct fw_cfg *fc, const struct guest_memory *gm,
                                        unsigned cpu_count, const struct acpi_platform_info *acpi,
                                        vmk_error **err)
{
    uint8_t e820[X86_FW_CFG_E820_MAX * X86_FW_CFG_E820_ENTRY];
    size_t n = x86_fw_cfg_e820(gm, e820, sizeof(e820));
    if (!n)
        return vmk_fail(err, VMK_ERR_INTERNAL, 0, "fw_cfg etc/e820: no memory map");
    int e = fw_cfg_add_file(fc, X86_FW_CFG_E820_FILE, e820, n);
    if (e < 0)
        return fw_cfg_failed(err, X86_FW_CFG_E820_FILE, e);
    /* Both 16-bit little-endian, as QEMU gives them; no CPU hotplug, so both are the count. */
    const uint8_t cpus[2] = { (uint8_t)cpu_count, (uint8_t)(cpu_count >> 8) };
    if ((e = fw_cfg_add_item(fc, FW_CFG_NB_CPUS, cpus, sizeof(cpus))) < 0 ||
        (e = fw_cfg_add_item(fc, FW_CFG_MAX_CPUS, cpus, sizeof(cpus))) < 0)
        return fw_cfg_failed(err, "CPU count", e);
    /* An empty boot order: OVMF keeps the boot options it finds and its own order. */
    if ((e = fw_cfg_add_file(fc, "bootorder", NULL, 0)) < 0)
        return fw_cfg_failed(err, "bootorder", e);
    struct acpi_loader_files files;
    vmk_result r = acpi_loader_build(acpi, &files, err);
    if (r != VMK_OK)
        return r;
    if ((e = fw_cfg_add_file(fc, ACPI_LOADER_RSDP_FILE, files.rsdp, files.rsdp_len)) < 0 ||
        (e = fw_cfg_add_file(fc, ACPI_LOADER_TABLES_FILE, files.tables, files.tables_len)) < 0 ||
        (e = fw_cfg_add_file(fc, ACPI_LOADER_SCRIPT_FILE, files.script, files.script_len)) < 0)
        r = fw_cfg_failed(err, "ACPI tables", e);
    acpi_loader_files_free(&files);
    return r;
}

vmk_result machine_firmware_create(struct machine_firmware *f,
                                   const struct machine_firmware_env *env,
                                   const vmk_boot_loader *bl, vmk_error **err)
{
    memset(f, 0, sizeof(*f));
    /* The code runs from a read-only slot; without one it could not run at all. */
    if (!kvm_vm_has_cap(env->vm, KVM_CAP_READONLY_MEM))
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "EFI boot loader: this host's KVM lacks KVM_CAP_READONLY_MEM (read-only "
                        "memory for the firmware's flash)");
    const char *code = vmk_efi_boot_loader_get_firmware(bl);
    const vmk_efi_variable_store *store = vmk_efi_boot_loader_get_variable_store(bl);
    if (!code || !store)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "EFI boot loader: no firmware or no variable store");
    vmk_result r;
    if ((r = open_flash(&f->code, env, code, true, FIRMWARE_SLOT_CODE, err)) != VMK_OK ||
        (r = open_flash(&f->vars, env, vmk_efi_variable_store_get_path(store), false,
                        FIRMWARE_SLOT_VARS, err)) != VMK_OK)
        return r;
    if (x86_flash_layout(cfi_flash_size(f->code.flash), cfi_flash_size(f->vars.flash), &f->code.gpa,
                         &f->vars.gpa) < 0)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "EFI firmware %s and variable store: %llu + %llu bytes do not fit the "
                        "%llu MiB below 4 GiB that the flash may take",
                        code, (unsigned long long)cfi_flash_size(f->code.flash),
                        (unsigned long long)cfi_flash_size(f->vars.flash),
                        (unsigned long long)(X86_FLASH_MAX >> 20));
    if ((r = map_flash(&f->code, env->mmio, err)) != VMK_OK ||
        (r = map_flash(&f->vars, env->mmio, err)) != VMK_OK)
        return r;

    if (!(f->fw_cfg = fw_cfg_new(env->gm)))
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "fw_cfg: out of memory");
    if ((r = machine_firmware_fill_fw_cfg(f->fw_cfg, env->gm, env->cpu_count, env->acpi, err)) !=
        VMK_OK)
        return r;
    int e = bus_add(env->pio, X86_FW_CFG_PORT, FW_CFG_IO_LEN, &fw_cfg_io_ops, f->fw_cfg);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_INTERNAL, -e, "fw_cfg ports: cannot register: %s",
                        strerror(-e));
    return VMK_OK;
}

void machine_firmware_destroy(struct machine_firmware *f)
{
    if (!f)
        return;
    cfi_flash_free(f->vars.flash); /* flushes the store */
    cfi_flash_free(f->code.flash);
    fw_cfg_free(f->fw_cfg);
    memset(f, 0, sizeof(*f));
}
