/* Linux boot loader for x86-64: loads a bzImage (64-bit entry of boot protocol 2.12+) or an
 * ELF64 vmlinux, an initrd and a command line into guest RAM, and writes the zero page
 * (struct boot_params) the kernel reads. Page tables and the GDT are built elsewhere. */
#ifndef VMK_X86_BOOT_LINUX_H
#define VMK_X86_BOOT_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_memory.h"
#include "vmkit.h"

enum linux_kernel_format { LINUX_KERNEL_BZIMAGE = 1, LINUX_KERNEL_ELF64 = 2 };

struct linux_kernel_info {
    enum linux_kernel_format format;
    uint16_t protocol_version; /* bzImage: setup header version, e.g. 0x020f; ELF: 0 */
    uint64_t load_addr;        /* where the protected-mode kernel / lowest PT_LOAD goes */
    uint64_t load_end;         /* first byte above the kernel's footprint: load_addr +
                                  max(init_size, file part) for bzImage, max p_paddr + p_memsz
                                  for ELF */
    uint64_t initrd_addr_max;  /* highest address an initrd byte may occupy (ELF: 0x7fffffff,
                                  what every x86-64 bzImage declares) */
    uint64_t entry;            /* 64-bit entry point (guest physical) */
};

/* Identifies and checks a kernel image held in memory (no guest memory needed). On failure
 * returns VMK_ERR_BAD_IMAGE with a message that starts with `what` (e.g. "kernel /x/y", NULL
 * means "kernel") and says what was found. */
vmk_result linux_kernel_parse(const uint8_t *img, size_t len, const char *what,
                              struct linux_kernel_info *info, vmk_error **err)
    __attribute__((warn_unused_result));

/* Same, for a file path. Open and read errors are VMK_ERR_IO and name the path and the
 * errno text ("kernel /x/y: cannot open: No such file or directory"). */
vmk_result linux_kernel_probe(const char *path, struct linux_kernel_info *info, vmk_error **err)
    __attribute__((warn_unused_result));

/* Where an initrd of `size` bytes goes: page-aligned, as high as possible, at or above
 * info->load_end, entirely below min(info->initrd_addr_max + 1, low_ram_end).
 * Returns 0, -ENOSPC when it cannot fit, -EINVAL when size is 0. */
int linux_initrd_place(const struct linux_kernel_info *info, uint64_t low_ram_end, uint64_t size,
                       uint64_t *addr) __attribute__((warn_unused_result));

/* The e820 map for this guest RAM: [0, X86_EBDA_START) RAM, [X86_EBDA_START, 0xA0000)
 * reserved, [X86_ACPI_ADDR, X86_HIGH_MEMORY) reserved, [X86_HIGH_MEMORY, low RAM end) RAM,
 * and the region from 4 GiB RAM when present. Writes at most max entries, returns how many. */
#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2
struct e820_entry_out {
    uint64_t addr, size;
    uint32_t type;
};
unsigned x86_e820_build(const struct guest_memory *gm, struct e820_entry_out *out, unsigned max);

struct linux_boot_request {
    const char *kernel_path;
    const char *initrd_path; /* may be NULL */
    const char *cmdline;     /* may be NULL = empty */
    uint64_t rsdp_addr;      /* ACPI RSDP guest address, 0 if none */
};

struct linux_boot_entry {
    uint64_t rip;
    uint64_t rsi; /* boot_params address */
};

/* Loads kernel (bzImage or ELF64), initrd and command line into guest memory, writes the
 * zero page at X86_BOOT_PARAMS_ADDR and returns the 64-bit entry state. The initrd is read
 * straight into guest RAM. Errors: VMK_ERR_IO (file), VMK_ERR_BAD_IMAGE (format, or it does
 * not fit this guest), VMK_ERR_INVALID_ARGUMENT (command line too long, NULL arguments),
 * VMK_ERR_NO_MEMORY. */
vmk_result linux_boot_load(const struct guest_memory *gm, const struct linux_boot_request *req,
                           struct linux_boot_entry *out, vmk_error **err)
    __attribute__((warn_unused_result));

/* Same with images already in memory (initrd may be NULL with initrd_len 0). */
vmk_result linux_boot_load_buffers(const struct guest_memory *gm, const uint8_t *kernel,
                                   size_t kernel_len, const char *what, const uint8_t *initrd,
                                   size_t initrd_len, const char *cmdline, uint64_t rsdp_addr,
                                   struct linux_boot_entry *out, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
