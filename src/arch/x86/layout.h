/* Where things live in the guest-physical address space of an x86-64 vmkit
 * machine. One place, so the loader, ACPI and e820 agree. */
#ifndef VMK_X86_LAYOUT_H
#define VMK_X86_LAYOUT_H

#ifndef __ASSEMBLER__ /* the tiny test guests include this file too */
#include "core/guest_memory.h"

#include <stdint.h>
#endif

#define X86_GDT_ADDR         0x500ULL
#define X86_BOOT_PARAMS_ADDR 0x7000ULL
#define X86_PML4_ADDR        0x9000ULL
#define X86_PDPT_ADDR        0xA000ULL
#define X86_PD_ADDR          0xB000ULL /* four pages: identity map of the first 4 GiB */
#define X86_BOOT_STACK_TOP   0x8ff0ULL
#define X86_CMDLINE_ADDR     0x20000ULL
#define X86_CMDLINE_MAX      0x10000ULL /* bytes, including the NUL */
#define X86_EBDA_START       0x9fc00ULL /* conventional RAM ends here */
#define X86_ACPI_ADDR        0xe0000ULL /* RSDP first, then the tables; reserved to 1 MiB */
#define X86_ACPI_MAX         0x20000ULL
#define X86_HIGH_MEMORY      0x100000ULL /* 1 MiB */

/* The 32-bit hole above low RAM (GM_LOW_RAM_LIMIT): PCI memory BARs below 4 GiB, then
 * ECAM (config space as MMIO, 4 KiB per function; bus 0 only, so 1 MiB). 64-bit BARs go
 * to a window of X86_PCI_MMIO64_SIZE starting at the first 1 GiB boundary at or above
 * both 4 GiB and the end of RAM (x86_pci_mmio64_base computes it). */
#define X86_PCI_MMIO32_BASE  0xc0000000ULL
#define X86_PCI_MMIO32_SIZE  0x20000000ULL /* 512 MiB: 0xC0000000..0xDFFFFFFF */
#define X86_PCI_ECAM_BASE    0xe0000000ULL
#define X86_PCI_ECAM_SIZE    0x100000ULL /* bus 0: 32 devices x 8 functions x 4 KiB */
#define X86_PCI_MMIO64_ALIGN 0x40000000ULL
#define X86_PCI_MMIO64_SIZE  0x800000000ULL /* 32 GiB */
#define X86_PCI_IO_BASE      0x1000         /* I/O BAR window: 0x1000..0xFFFF */
#define X86_PCI_IO_SIZE      0xf000
#define X86_PCI_INTX_GSI     16 /* INTx pins A..D of the slots swizzle onto GSIs 16..19 */

#ifndef __ASSEMBLER__
/* The 64-bit window's base for a machine whose RAM ends at ram_end (exclusive). */
static inline uint64_t x86_pci_mmio64_base(uint64_t ram_end)
{
    uint64_t base = ram_end > GM_HIGH_RAM_BASE ? ram_end : GM_HIGH_RAM_BASE;
    return (base + X86_PCI_MMIO64_ALIGN - 1) & ~(X86_PCI_MMIO64_ALIGN - 1);
}
#endif

/* The EFI machine (boot loader EFI) has the layout Debian's OVMF assumes of a Q35 machine
 * (OvmfPkg PlatformInitLib): ECAM at PcdPciExpressBaseAddress (0xB0000000, 256 MiB: buses
 * 0..255, vmkit decodes bus 0), so low RAM ends there; OVMF's 32-bit PCI aperture from ECAM's
 * end to 0xFC000000; its I/O aperture 0x6000..0xFFFF (ports below stay the chipset's); its
 * 64-bit aperture above RAM (x86_efi_pci_mmio64_size). The firmware's flash ends at 4 GiB:
 * the variable store first, then the code (x86_flash_layout). */
#define X86_EFI_LOW_RAM_LIMIT   0xb0000000ULL
#define X86_EFI_ECAM_BASE       0xb0000000ULL
#define X86_EFI_PCI_MMIO32_BASE 0xc0000000ULL
#define X86_EFI_PCI_MMIO32_SIZE 0x3c000000ULL  /* to 0xFC000000 */
#define X86_EFI_PCI_MMIO64_SIZE 0x800000000ULL /* 32 GiB: OVMF's classic aperture */
#define X86_EFI_PCI_IO_BASE     0x6000
#define X86_EFI_PCI_IO_SIZE     0xa000
#define X86_FLASH_END           0x100000000ULL
#define X86_FLASH_MAX           0x1000000ULL /* 16 MiB: clear of the LAPIC, I/O APIC, KVM pages */

#ifndef __ASSEMBLER__
/* The start of the EFI machine's 64-bit window for RAM ending at ram_end: OVMF's "classic"
 * aperture, the end of RAM rounded up to 1 GiB, then to the aperture's own size (32 GiB). */
static inline uint64_t x86_efi_pci_mmio64_base(uint64_t ram_end)
{
    uint64_t base = ram_end > GM_HIGH_RAM_BASE ? ram_end : GM_HIGH_RAM_BASE;
    return (base + X86_EFI_PCI_MMIO64_SIZE - 1) & ~(X86_EFI_PCI_MMIO64_SIZE - 1);
}

/* Its size for a guest with phys_bits of physical address: OVMF (2022.11 on) moves its 64-bit
 * aperture to the top eighth of the address space when it trusts the CPU's address width
 * (its "dynamic" window, e.g. 896 GiB..1 TiB with 40 bits), else keeps the classic one. BARs
 * are decoded only inside the window, so it runs from the classic base to the end of the
 * address space and holds either; at least 32 GiB. */
static inline uint64_t x86_efi_pci_mmio64_size(uint64_t ram_end, unsigned phys_bits)
{
    uint64_t base = x86_efi_pci_mmio64_base(ram_end);
    uint64_t top = 1ULL << (phys_bits < 36 ? 36 : phys_bits > 52 ? 52 : phys_bits);
    return top > base + X86_EFI_PCI_MMIO64_SIZE ? top - base : X86_EFI_PCI_MMIO64_SIZE;
}

/* Where the firmware's two flash images go: together they end at 4 GiB, the variable store
 * below the code (OVMF addresses both from the store's base, PcdOvmfFdBaseAddress). 0, or -1
 * when they are empty, unaligned to 4 KiB or larger than X86_FLASH_MAX together. */
static inline int x86_flash_layout(uint64_t code_size, uint64_t vars_size, uint64_t *code_gpa,
                                   uint64_t *vars_gpa)
{
    if (!code_size || !vars_size || ((code_size | vars_size) & 0xfff) ||
        code_size > X86_FLASH_MAX || vars_size > X86_FLASH_MAX - code_size)
        return -1;
    *code_gpa = X86_FLASH_END - code_size;
    *vars_gpa = *code_gpa - vars_size;
    return 0;
}
#endif

#define X86_IOAPIC_ADDR           0xfec00000ULL
#define X86_LAPIC_ADDR            0xfee00000ULL
#define X86_KVM_IDENTITY_MAP_ADDR 0xfeffc000ULL /* one page, Intel only */
#define X86_KVM_TSS_ADDR          0xfeffd000ULL /* three pages, Intel only */

/* Legacy I/O ports and IRQs. */
#define X86_COM1_PORT       0x3f8
#define X86_COM2_PORT       0x2f8
#define X86_COM3_PORT       0x3e8
#define X86_COM4_PORT       0x2e8
#define X86_COM1_IRQ        4
#define X86_COM2_IRQ        3
#define X86_I8042_DATA_PORT 0x60
#define X86_I8042_CMD_PORT  0x64
#define X86_RTC_PORT        0x70
#define X86_RTC_IRQ         8
#define X86_PCI_CONFIG_PORT 0xcf8 /* CONFIG_ADDRESS (4 bytes), reset (0xCF9), CONFIG_DATA 0xCFC */
#define X86_PCI_CONFIG_LEN  8
#define X86_RESET_PORT      0xcf9
#define X86_DEBUG_EXIT_PORT 0x501
#define X86_FW_CFG_PORT     0x510 /* QEMU's fw_cfg: selector, data, DMA address (EFI only) */
#define X86_PM_BASE         0x600 /* PM1a event block (4), control (2, at +4), timer (4, at +8) */
#define X86_PM1A_EVT_PORT   (X86_PM_BASE + 0)
#define X86_PM1A_CNT_PORT   (X86_PM_BASE + 4)
#define X86_PM_TMR_PORT     (X86_PM_BASE + 8)
#define X86_PM_SIZE         12
#define X86_SCI_IRQ         9
#define X86_S5_SLP_TYP      5    /* the value \_S5 gives and PM1a_CNT.SLP_TYP must carry */
#define X86_RESET_VALUE     0x06 /* FADT RESET_VALUE written to X86_RESET_PORT */

#endif
