/* The EFI machine's firmware pieces that need no KVM: where the flash images go, and the
 * fw_cfg items OVMF reads, read back through the ports as firmware reads them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "devices/legacy/fw_cfg.h"
#include "machine/firmware.h"

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

/* Debian's OVMF, 4M build. */
#define OVMF_CODE 3653632ULL
#define OVMF_VARS 540672ULL

static void flash_layout_of_ovmf(void **state)
{
    (void)state;
    uint64_t code, vars;
    assert_int_equal(x86_flash_layout(OVMF_CODE, OVMF_VARS, &code, &vars), 0);
    assert_int_equal(code, 0xffc84000ULL);
    assert_int_equal(vars, 0xffc00000ULL); /* OVMF's PcdOvmfFdBaseAddress: 4 MiB below 4 GiB */
    assert_int_equal(code + OVMF_CODE, X86_FLASH_END);
    assert_int_equal(vars + OVMF_VARS, code);
}

static void flash_layout_refuses(void **state)
{
    (void)state;
    uint64_t code = 1, vars = 1;
    assert_int_equal(x86_flash_layout(0, OVMF_VARS, &code, &vars), -1);
    assert_int_equal(x86_flash_layout(OVMF_CODE, 0, &code, &vars), -1);
    assert_int_equal(x86_flash_layout(OVMF_CODE + 1, OVMF_VARS, &code, &vars), -1);
    assert_int_equal(x86_flash_layout(X86_FLASH_MAX, 4096, &code, &vars), -1);
    assert_int_equal(x86_flash_layout(UINT64_MAX & ~0xfffULL, 4096, &code, &vars), -1);
    assert_int_equal(x86_flash_layout(X86_FLASH_MAX - 4096, 4096, &code, &vars), 0);
    assert_int_equal(vars, X86_FLASH_END - X86_FLASH_MAX);
}

/* The 64-bit window OVMF computes: RAM's end rounded up to 1 GiB, then to 32 GiB. */
static void mmio64_window(void **state)
{
    (void)state;
    assert_int_equal(x86_efi_pci_mmio64_base(512 * MIB), 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_base(4 * GIB + GIB), 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_base(32 * GIB), 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_base(32 * GIB + 1), 64 * GIB);
    /* Up to the end of the address space, so that OVMF's dynamic window (the top eighth:
     * 896 GiB..1 TiB with 40 bits) is inside; at least the classic 32 GiB. */
    assert_int_equal(x86_efi_pci_mmio64_size(512 * MIB, 40), 1024 * GIB - 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_size(512 * MIB, 36), 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_size(512 * MIB, 0), 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_size(512 * MIB, 64), (1ULL << 52) - 32 * GIB);
    assert_int_equal(x86_efi_pci_mmio64_size(40 * GIB, 39), 512 * GIB - 64 * GIB);
}

struct fixture {
    struct guest_memory gm;
    struct fw_cfg *fc;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    /* 3 GiB, split at the EFI machine's hole: 2.75 GiB low, 256 MiB from 4 GiB. */
    if (!f || guest_memory_init_split(&f->gm, 3 * GIB, X86_EFI_LOW_RAM_LIMIT) != 0 ||
        !(f->fc = fw_cfg_new(&f->gm)))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fw_cfg_free(f->fc);
    guest_memory_destroy(&f->gm);
    free(f);
    return 0;
}

static void select_key(struct fixture *f, uint16_t key)
{
    uint8_t k[2] = { (uint8_t)key, (uint8_t)(key >> 8) };
    fw_cfg_io_ops.write(f->fc, FW_CFG_IO_SELECTOR, k, 2);
}

static void read_data(struct fixture *f, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fw_cfg_io_ops.read(f->fc, FW_CFG_IO_DATA, &out[i], 1);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The directory entry for name: its size and key; false when it is not listed. */
static bool find_file(struct fixture *f, const char *name, uint32_t *size, uint16_t *key)
{
    uint8_t count[4];
    select_key(f, FW_CFG_FILE_DIR);
    read_data(f, count, 4);
    for (uint32_t i = 0; i < be32(count); i++) {
        uint8_t e[FW_CFG_DIR_ENTRY];
        read_data(f, e, sizeof(e));
        if (strcmp((const char *)e + 8, name) == 0) {
            *size = be32(e);
            *key = (uint16_t)(e[4] << 8 | e[5]);
            return true;
        }
    }
    return false;
}

static struct acpi_pci_info efi_pci = {
    .ecam_base = X86_EFI_ECAM_BASE,
    .mmio32_base = X86_EFI_PCI_MMIO32_BASE,
    .mmio32_size = X86_EFI_PCI_MMIO32_SIZE,
    .mmio64_base = 32 * GIB,
    .mmio64_size = X86_EFI_PCI_MMIO64_SIZE,
    .io_base = X86_EFI_PCI_IO_BASE,
    .io_size = X86_EFI_PCI_IO_SIZE,
};

static void fw_cfg_items(void **state)
{
    struct fixture *f = *state;
    struct acpi_platform_info acpi = { .cpu_count = 3, .serial_count = 1, .pci = &efi_pci };
    assert_int_equal(machine_firmware_fill_fw_cfg(f->fc, &f->gm, 3, &acpi, NULL), VMK_OK);

    uint8_t sig[4], cpus[2];
    select_key(f, FW_CFG_SIGNATURE);
    read_data(f, sig, 4);
    assert_memory_equal(sig, "QEMU", 4);
    select_key(f, FW_CFG_NB_CPUS);
    read_data(f, cpus, 2);
    assert_int_equal(le(cpus, 2), 3);
    select_key(f, FW_CFG_MAX_CPUS);
    read_data(f, cpus, 2);
    assert_int_equal(le(cpus, 2), 3);

    /* etc/e820: RAM exactly as the slots have it, then KVM's reserved pages. */
    uint32_t size;
    uint16_t key;
    assert_true(find_file(f, "etc/e820", &size, &key));
    assert_int_equal(size, 3 * 20);
    uint8_t map[3 * 20];
    select_key(f, key);
    read_data(f, map, sizeof(map));
    assert_int_equal(le(map, 8), 0);
    assert_int_equal(le(map + 8, 8), X86_EFI_LOW_RAM_LIMIT);
    assert_int_equal(le(map + 16, 4), 1);
    assert_int_equal(le(map + 20, 8), 4 * GIB);
    assert_int_equal(le(map + 28, 8), 3 * GIB - X86_EFI_LOW_RAM_LIMIT);
    assert_int_equal(le(map + 36, 4), 1);
    assert_int_equal(le(map + 56, 4), 2);

    /* The ACPI tables come only through the table loader; the boot order is empty. */
    assert_true(find_file(f, "etc/table-loader", &size, &key));
    assert_int_equal(size % 128, 0);
    assert_true(size > 0);
    assert_true(find_file(f, "etc/acpi/rsdp", &size, &key));
    assert_int_equal(size, 36);
    uint8_t rsdp[8];
    select_key(f, key);
    read_data(f, rsdp, 8);
    assert_memory_equal(rsdp, "RSD PTR ", 8);
    assert_true(find_file(f, "etc/acpi/tables", &size, &key));
    assert_true(size > 0);
    assert_true(find_file(f, "bootorder", &size, &key));
    assert_int_equal(size, 0);
    /* Nothing that offers S3 or a network boot. */
    assert_false(find_file(f, "etc/system-states", &size, &key));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flash_layout_of_ovmf),
        cmocka_unit_test(flash_layout_refuses),
        cmocka_unit_test(mmio64_window),
        cmocka_unit_test_setup_teardown(fw_cfg_items, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
