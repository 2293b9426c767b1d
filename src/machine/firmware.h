/* What the EFI machine adds for its firmware (Debian's OVMF): the two CFI flash images ending
 * at 4 GiB (code read-only, variables writable and backed by the store file) and QEMU's fw_cfg
 * at 0x510 with the files OVMF reads (etc/e820, the CPU counts, the ACPI tables through
 * etc/table-loader, an empty bootorder).
 *
 * Flash mapping: each image is a KVM_MEM_READONLY memory slot over the flash's array while
 * the flash is in read-array mode (the CPU executes the code from it; reads cost no exit) and
 * MMIO to the CFI device always (writes to a read-only slot exit as MMIO). The flash's mode
 * listener removes the slot when the device leaves read-array mode (a command was written:
 * status and query reads must reach the device) and puts it back when the guest returns to
 * read array. Measured on a first boot of Debian's OVMF to its shell (nested tier): 252 round
 * trips out of read-array mode (504 slot changes), 33 059 MMIO exits in all, shell after 40.6 s;
 * with the store trapped as MMIO instead (no slot for it), 394 097 exits and 62.3 s: the
 * variable driver reads the store far more often than it writes it. */
#ifndef VMK_MACHINE_FIRMWARE_H
#define VMK_MACHINE_FIRMWARE_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/acpi.h"
#include "core/bus.h"
#include "core/guest_memory.h"
#include "kvm/vm.h"
#include "vmkit.h"

struct cfi_flash;
struct fw_cfg;

/* Memory slots of the two images: after those of guest RAM. */
#define FIRMWARE_SLOT_CODE GM_MAX_REGIONS
#define FIRMWARE_SLOT_VARS (GM_MAX_REGIONS + 1)

struct firmware_flash {
    struct cfi_flash *flash;
    struct kvm_vm *vm;
    unsigned slot;
    uint64_t gpa, map_len;
    bool mapped; /* changed only under the flash's lock (its listener) */
};

struct machine_firmware {
    struct fw_cfg *fw_cfg;
    struct firmware_flash code, vars;
};

struct machine_firmware_env {
    struct kvm_vm *vm;
    struct bus *pio, *mmio;
    const struct guest_memory *gm;
    unsigned cpu_count;
    const struct acpi_platform_info *acpi;
};

/* Opens bl's firmware and variable store, maps them and builds the fw_cfg. On failure,
 * machine_firmware_destroy what is left. */
vmk_result machine_firmware_create(struct machine_firmware *f,
                                   const struct machine_firmware_env *env,
                                   const vmk_boot_loader *bl, vmk_error **err)
    __attribute__((warn_unused_result));
/* Flushes the variable store and frees; after the vCPUs and the VM are gone. */
void machine_firmware_destroy(struct machine_firmware *f);

/* The fw_cfg items for a machine with RAM gm, cpu_count vCPUs and the ACPI tables acpi
 * describes: etc/e820, FW_CFG_NB_CPUS and FW_CFG_MAX_CPUS (16-bit), etc/table-loader,
 * etc/acpi/tables, etc/acpi/rsdp and an empty bootorder. Nothing about a network boot or S3
 * (no etc/system-states: OVMF then offers no S3). */
vmk_result machine_firmware_fill_fw_cfg(struct fw_cfg *fc, const struct guest_memory *gm,
                                        unsigned cpu_count, const struct acpi_platform_info *acpi,
                                        vmk_error **err) __attribute__((warn_unused_result));

#endif
