#include "arch/x86/boot_linux.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "core/error.h"

/* The zero page is built field by field in host memory and copied out whole; the host is
 * x86-64, so its byte order is the one the guest reads. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "boot_params is little-endian");

/* Linux boot protocol (Documentation/arch/x86/boot.rst), setup header at 0x1f1 of both the
 * bzImage file and struct boot_params. */
struct setup_header {
    uint8_t setup_sects;
    uint16_t root_flags;
    uint32_t syssize;
    uint16_t ram_size;
    uint16_t vid_mode;
    uint16_t root_dev;
    uint16_t boot_flag;
    uint16_t jump;
    uint32_t header;
    uint16_t version;
    uint32_t realmode_swtch;
    uint16_t start_sys_seg;
    uint16_t kernel_version;
    uint8_t type_of_loader;
    uint8_t loadflags;
    uint16_t setup_move_size;
    uint32_t code32_start;
    uint32_t ramdisk_image;
    uint32_t ramdisk_size;
    uint32_t bootsect_kludge;
    uint16_t heap_end_ptr;
    uint8_t ext_loader_ver;
    uint8_t ext_loader_type;
    uint32_t cmd_line_ptr;
    uint32_t initrd_addr_max;
    uint32_t kernel_alignment;
    uint8_t relocatable_kernel;
    uint8_t min_alignment;
    uint16_t xloadflags;
    uint32_t cmdline_size;
    uint32_t hardware_subarch;
    uint64_t hardware_subarch_data;
    uint32_t payload_offset;
    uint32_t payload_length;
    uint64_t setup_data;
    uint64_t pref_address;
    uint32_t init_size;
    uint32_t handover_offset;
    uint32_t kernel_info_offset;
} __attribute__((packed));

struct boot_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

#define BP_E820_MAX 128

struct boot_params {
    uint8_t screen_info[0x40];
    uint8_t apm_bios_info[0x14];
    uint8_t pad1[4];
    uint64_t tboot_addr;
    uint8_t ist_info[0x10];
    uint64_t acpi_rsdp_addr;
    uint8_t pad2[8];
    uint8_t hd0_info[0x10];
    uint8_t hd1_info[0x10];
    uint8_t sys_desc_table[0x10];
    uint8_t olpc_ofw_header[0x10];
    uint32_t ext_ramdisk_image;
    uint32_t ext_ramdisk_size;
    uint32_t ext_cmd_line_ptr;
    uint8_t pad3[0x1e8 - 0xcc]; /* cc_blob_address, edid_info, efi_info, alt_mem_k, scratch */
    uint8_t e820_entries;
    uint8_t eddbuf_entries;
    uint8_t edd_mbr_sig_buf_entries;
    uint8_t kbd_status;
    uint8_t secure_boot;
    uint8_t pad4[2];
    uint8_t sentinel; /* must stay 0, or the kernel wipes fields it thinks a loader forgot */
    uint8_t pad5;
    struct setup_header hdr;
    uint8_t pad6[0x2d0 - 0x26c]; /* room for longer headers, then edd_mbr_sig_buffer */
    struct boot_e820_entry e820_table[BP_E820_MAX];
    uint8_t pad7[0x1000 - 0xcd0]; /* eddbuf and padding */
} __attribute__((packed));

#define HDR_OFF(f) (0x1f1 + offsetof(struct setup_header, f))
_Static_assert(HDR_OFF(setup_sects) == 0x1f1, "setup_sects");
_Static_assert(HDR_OFF(syssize) == 0x1f4, "syssize");
_Static_assert(HDR_OFF(boot_flag) == 0x1fe, "boot_flag");
_Static_assert(HDR_OFF(jump) == 0x200, "jump");
_Static_assert(HDR_OFF(header) == 0x202, "header");
_Static_assert(HDR_OFF(version) == 0x206, "version");
_Static_assert(HDR_OFF(type_of_loader) == 0x210, "type_of_loader");
_Static_assert(HDR_OFF(loadflags) == 0x211, "loadflags");
_Static_assert(HDR_OFF(code32_start) == 0x214, "code32_start");
_Static_assert(HDR_OFF(ramdisk_image) == 0x218, "ramdisk_image");
_Static_assert(HDR_OFF(ramdisk_size) == 0x21c, "ramdisk_size");
_Static_assert(HDR_OFF(heap_end_ptr) == 0x224, "heap_end_ptr");
_Static_assert(HDR_OFF(cmd_line_ptr) == 0x228, "cmd_line_ptr");
_Static_assert(HDR_OFF(initrd_addr_max) == 0x22c, "initrd_addr_max");
_Static_assert(HDR_OFF(kernel_alignment) == 0x230, "kernel_alignment");
_Static_assert(HDR_OFF(relocatable_kernel) == 0x234, "relocatable_kernel");
_Static_assert(HDR_OFF(xloadflags) == 0x236, "xloadflags");
_Static_assert(HDR_OFF(cmdline_size) == 0x238, "cmdline_size");
_Static_assert(HDR_OFF(setup_data) == 0x250, "setup_data");
_Static_assert(HDR_OFF(pref_address) == 0x258, "pref_address");
_Static_assert(HDR_OFF(init_size) == 0x260, "init_size");
_Static_assert(HDR_OFF(kernel_info_offset) == 0x268, "kernel_info_offset");
_Static_assert(0x1f1 + sizeof(struct setup_header) == 0x26c, "setup_header size");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_size) == 0x0c4, "ext_ramdisk_size");
_Static_assert(offsetof(struct boot_params, ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(sizeof(struct boot_params) == 0x1000, "boot_params is one page");

#define BOOT_FLAG_MAGIC        0xAA55
#define HDRS_MAGIC             0x53726448 /* "HdrS" */
#define SETUP_HDR_START        0x1f1
#define SETUP_JUMP_LEN_OFF     0x201 /* header ends at 0x202 + this byte */
#define SETUP_HDR_MIN_END      0x268 /* 2.12 carries everything through handover_offset */
#define SETUP_HDR_MAX_END      0x290 /* boot_params keeps this much room for the header */
#define SETUP_SECTOR           512
#define LOADED_HIGH            0x01
#define CAN_USE_HEAP           0x80
#define XLF_KERNEL_64          0x01
#define HEAP_END_PTR           0xfe00
#define LOADER_UNDEFINED       0xff
#define PROTOCOL_MIN           0x020c
#define PROTOCOL_ELF_ZERO_PAGE 0x020f
#define BZ_ENTRY_64_OFFSET     0x200
#define NON_RELOCATABLE_ADDR   0x100000ULL
/* x86-64 Linux declares this in every bzImage; the same bound suits a vmlinux. */
#define ELF_INITRD_ADDR_MAX    0x7fffffffULL
#define ELF_KERNEL_ALIGNMENT   0x200000
/* Conventional memory ends where the VGA hole starts. */
#define EBDA_END               0xa0000ULL
#define PAGE_SIZE_4K           0x1000ULL
/* A kernel file is read whole into host memory; nothing bigger can be a bootable x86 kernel
 * that fits below the 32-bit PCI hole anyway. */
#define KERNEL_FILE_MAX        (1ULL << 30)

/* What the parser learned, including what the loader needs beyond the public info. */
struct kernel_image {
    struct linux_kernel_info info;
    size_t setup_size;    /* bzImage: real-mode part before the protected-mode kernel */
    size_t hdr_end;       /* bzImage: end of the setup header in the file */
    uint64_t cmdline_max; /* longest command line the kernel takes, without the NUL */
    uint32_t init_size;
};

/* Where the initrd comes from: a buffer, or a file read straight into guest RAM. */
struct initrd_src {
    const char *label; /* "initrd /path" */
    const uint8_t *buf;
    int fd;
    uint64_t size;
};

static const char *label_or_default(const char *what)
{
    return what && *what ? what : "kernel";
}

/* Every error message starts with the object it is about. */
__attribute__((format(printf, 4, 5))) static vmk_result
fail_at(vmk_error **err, vmk_result code, const char *what, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return vmk_fail(err, code, 0, "%s: %s", what, msg);
}

#define BAD(err, what, ...) fail_at(err, VMK_ERR_BAD_IMAGE, what, __VA_ARGS__)

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)rd16(p) | ((uint32_t)rd16(p + 2) << 16);
}

/* Names data that is not a kernel, so "you passed the initrd" or "decompress it first"
 * is obvious from the message. NULL when nothing is recognised. */
static const char *sniff_other(const uint8_t *img, size_t len)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *name;
    } known[] = {
        { "\x1f\x8b", 2, "gzip data" },
        { "\xfd"
          "7zXZ\0",
          6, "xz data" },
        { "\x28\xb5\x2f\xfd", 4, "zstd data" },
        { "BZh", 3, "bzip2 data" },
        { "\x02\x21\x4c\x18", 4, "lz4 data" },
        { "\x89LZO", 4, "lzo data" },
        { "070701", 6, "a cpio archive (an initramfs?)" },
        { "070702", 6, "a cpio archive (an initramfs?)" },
        { "070707", 6, "a cpio archive (an initramfs?)" },
        { "\xd0\x0d\xfe\xed", 4, "a device tree blob" },
        { "#!", 2, "a script" },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (len >= known[i].len && memcmp(img, known[i].magic, known[i].len) == 0)
            return known[i].name;
    /* A bzImage starts with "MZ" too (its EFI stub): only say PE once "HdrS" could be seen. */
    if (len >= HDR_OFF(header) + 4 && img[0] == 'M' && img[1] == 'Z')
        return "a PE/EFI executable without a Linux setup header";
    return NULL;
}

static vmk_result parse_elf(const uint8_t *img, size_t len, const char *what,
                            struct kernel_image *k, vmk_error **err)
{
    if (len > EI_CLASS && img[EI_CLASS] == ELFCLASS32)
        return BAD(err, what, "ELF32 file, need ELF64 (an x86-64 vmlinux or bzImage)");
    if (len > EI_CLASS && img[EI_CLASS] != ELFCLASS64)
        return BAD(err, what, "ELF file of unknown class %u, need ELF64", img[EI_CLASS]);
    if (len > EI_DATA && img[EI_DATA] == ELFDATA2MSB)
        return BAD(err, what, "big-endian ELF file, need little-endian x86-64");
    if (len > EI_DATA && img[EI_DATA] != ELFDATA2LSB)
        return BAD(err, what, "ELF file of unknown byte order %u, need little-endian",
                   img[EI_DATA]);
    if (len < sizeof(Elf64_Ehdr))
        return BAD(err, what, "truncated: %zu bytes, the ELF64 header needs %zu", len,
                   sizeof(Elf64_Ehdr));

    Elf64_Ehdr eh;
    memcpy(&eh, img, sizeof(eh));
    if (eh.e_machine != EM_X86_64)
        return BAD(err, what, "ELF machine %u is not x86-64 (EM_X86_64 = %u)", eh.e_machine,
                   EM_X86_64);
    if (eh.e_type != ET_EXEC)
        return BAD(err, what, "ELF type %u is not an executable (ET_EXEC = %u)", eh.e_type,
                   ET_EXEC);
    if (eh.e_phnum == 0 || eh.e_phnum == PN_XNUM)
        return BAD(err, what, "ELF file has %s program headers", eh.e_phnum ? "too many" : "no");
    if (eh.e_phentsize < sizeof(Elf64_Phdr))
        return BAD(err, what, "ELF program header size %u is smaller than %zu", eh.e_phentsize,
                   sizeof(Elf64_Phdr));
    uint64_t table = (uint64_t)eh.e_phnum * eh.e_phentsize; /* both 16-bit: cannot overflow */
    if (eh.e_phoff > len || table > len - eh.e_phoff)
        return BAD(err, what,
                   "ELF program header table (%u entries of %u bytes at offset 0x%llx) lies "
                   "outside the file (%zu bytes)",
                   eh.e_phnum, eh.e_phentsize, (unsigned long long)eh.e_phoff, len);

    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh.e_phoff + (uint64_t)i * eh.e_phentsize, sizeof(ph));
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_filesz > ph.p_memsz)
            return BAD(err, what,
                       "ELF program header %u: p_filesz 0x%llx is larger than p_memsz 0x%llx", i,
                       (unsigned long long)ph.p_filesz, (unsigned long long)ph.p_memsz);
        if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
            return BAD(err, what,
                       "ELF program header %u lies outside the file: 0x%llx bytes at offset "
                       "0x%llx, file is %zu bytes",
                       i, (unsigned long long)ph.p_filesz, (unsigned long long)ph.p_offset, len);
        if (ph.p_memsz == 0)
            continue;
        if (ph.p_paddr > UINT64_MAX - ph.p_memsz)
            return BAD(err, what,
                       "ELF program header %u: p_paddr 0x%llx + p_memsz 0x%llx overflows", i,
                       (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz);
        if (ph.p_paddr < X86_HIGH_MEMORY)
            return BAD(err, what,
                       "ELF program header %u loads at 0x%llx, below 1 MiB where vmkit keeps "
                       "the boot data",
                       i, (unsigned long long)ph.p_paddr);
        if (ph.p_paddr < lo)
            lo = ph.p_paddr;
        if (ph.p_paddr + ph.p_memsz > hi)
            hi = ph.p_paddr + ph.p_memsz;
    }
    if (hi == 0)
        return BAD(err, what, "ELF file has no PT_LOAD segment to load");
    if (eh.e_entry < lo || eh.e_entry >= hi)
        return BAD(err, what, "ELF entry point 0x%llx is outside the loaded range [0x%llx, 0x%llx)",
                   (unsigned long long)eh.e_entry, (unsigned long long)lo, (unsigned long long)hi);

    k->info = (struct linux_kernel_info){
        .format = LINUX_KERNEL_ELF64,
        .protocol_version = 0,
        .load_addr = lo,
        .load_end = hi,
        .initrd_addr_max = ELF_INITRD_ADDR_MAX,
        .entry = eh.e_entry,
    };
    k->cmdline_max = X86_CMDLINE_MAX - 1;
    k->init_size = hi - lo > UINT32_MAX ? UINT32_MAX : (uint32_t)(hi - lo);
    return VMK_OK;
}

static vmk_result parse_bzimage(const uint8_t *img, size_t len, const char *what,
                                struct kernel_image *k, vmk_error **err)
{
    uint16_t boot_flag = rd16(img + HDR_OFF(boot_flag));
    if (boot_flag != BOOT_FLAG_MAGIC)
        return BAD(err, what, "bzImage has a bad boot_flag 0x%04x at 0x1fe (expected 0x%04x)",
                   boot_flag, BOOT_FLAG_MAGIC);
    if (len < HDR_OFF(version) + 2)
        return BAD(err, what, "truncated: %zu bytes, the setup header needs %u", len,
                   SETUP_HDR_MIN_END);
    uint16_t version = rd16(img + HDR_OFF(version));
    if (version < PROTOCOL_MIN)
        return BAD(err, what,
                   "bzImage boot protocol %u.%02u is too old: need 2.12+ with the 64-bit entry "
                   "(XLF_KERNEL_64)",
                   version >> 8, version & 0xff);
    size_t hdr_end = 0x202 + (size_t)img[SETUP_JUMP_LEN_OFF];
    if (hdr_end < SETUP_HDR_MIN_END)
        return BAD(err, what,
                   "bzImage setup header ends at 0x%zx, but boot protocol %u.%02u needs it to "
                   "reach 0x%x",
                   hdr_end, version >> 8, version & 0xff, SETUP_HDR_MIN_END);
    if (hdr_end > SETUP_HDR_MAX_END)
        hdr_end = SETUP_HDR_MAX_END;
    if (len < hdr_end)
        return BAD(err, what, "truncated: %zu bytes, the setup header needs %zu", len, hdr_end);

    struct setup_header h;
    memset(&h, 0, sizeof(h));
    size_t n = hdr_end - SETUP_HDR_START;
    memcpy(&h, img + SETUP_HDR_START, n < sizeof(h) ? n : sizeof(h));

    if (!(h.xloadflags & XLF_KERNEL_64))
        return BAD(err, what,
                   "bzImage has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags "
                   "0x%04x)",
                   h.xloadflags);
    if (!(h.loadflags & LOADED_HIGH))
        return BAD(err, what, "a zImage (LOADED_HIGH clear in loadflags), need a bzImage");

    unsigned sects = h.setup_sects ? h.setup_sects : 4; /* 0 means 4, for old loaders */
    size_t setup_size = ((size_t)sects + 1) * SETUP_SECTOR;
    if (len <= setup_size)
        return BAD(err, what,
                   "truncated: %zu bytes, but %u setup sectors take %zu and the protected-mode "
                   "kernel follows them",
                   len, sects, setup_size);
    size_t pm_len = len - setup_size;
    if (h.syssize == 0)
        return BAD(err, what, "bzImage header says its protected-mode kernel is empty (syssize 0)");
    /* syssize counts 16-byte paragraphs, rounded up; signed kernels carry extra bytes. */
    if ((uint64_t)h.syssize * 16 > (uint64_t)pm_len + 15)
        return BAD(err, what,
                   "truncated: %zu bytes of protected-mode kernel, the header (syssize) says "
                   "%llu",
                   pm_len, (unsigned long long)h.syssize * 16);
    if (h.init_size == 0)
        return BAD(err, what, "bzImage header has init_size 0");

    uint64_t load = h.relocatable_kernel ? h.pref_address : NON_RELOCATABLE_ADDR;
    if (load < X86_HIGH_MEMORY)
        return BAD(err, what,
                   "bzImage wants to load at 0x%llx (pref_address), below 1 MiB where vmkit "
                   "keeps the boot data",
                   (unsigned long long)load);
    uint64_t footprint = h.init_size > pm_len ? h.init_size : pm_len;
    if (load > UINT64_MAX - footprint)
        return BAD(err, what, "bzImage pref_address 0x%llx + init_size 0x%x overflows",
                   (unsigned long long)load, h.init_size);

    k->info = (struct linux_kernel_info){
        .format = LINUX_KERNEL_BZIMAGE,
        .protocol_version = version,
        .load_addr = load,
        .load_end = load + footprint,
        .initrd_addr_max = h.initrd_addr_max,
        .entry = load + BZ_ENTRY_64_OFFSET,
    };
    k->setup_size = setup_size;
    k->hdr_end = hdr_end;
    k->cmdline_max = h.cmdline_size;
    k->init_size = h.init_size;
    return VMK_OK;
}

static vmk_result parse_image(const uint8_t *img, size_t len, const char *what,
                              struct kernel_image *k, vmk_error **err)
{
    memset(k, 0, sizeof(*k));
    if (!img && len)
        return fail_at(err, VMK_ERR_INVALID_ARGUMENT, what, "no image buffer");
    if (len >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0)
        return parse_elf(img, len, what, k, err);
    if (len >= HDR_OFF(header) + 4 && rd32(img + HDR_OFF(header)) == HDRS_MAGIC)
        return parse_bzimage(img, len, what, k, err);
    const char *other = len ? sniff_other(img, len) : NULL;
    if (other)
        return BAD(err, what, "not a bzImage or ELF64 kernel (found %s)", other);
    if (len < HDR_OFF(header) + 4)
        return BAD(err, what,
                   "truncated: %zu bytes, a bzImage setup header needs at least %u and an ELF64 "
                   "header %zu",
                   len, SETUP_HDR_MIN_END, sizeof(Elf64_Ehdr));
    return BAD(err, what,
               "not a bzImage or ELF64 kernel (found no \"HdrS\" signature at 0x202; "
               "first bytes %02x %02x %02x %02x)",
               img[0], img[1], img[2], img[3]);
}

vmk_result linux_kernel_parse(const uint8_t *img, size_t len, const char *what,
                              struct linux_kernel_info *info, vmk_error **err)
{
    what = label_or_default(what);
    if (!info)
        return fail_at(err, VMK_ERR_INVALID_ARGUMENT, what, "no place for the kernel info");
    struct kernel_image k;
    vmk_result r = parse_image(img, len, what, &k, err);
    if (r == VMK_OK)
        *info = k.info;
    return r;
}

/* Opens a file for reading and checks it is a regular file of at most max bytes.
 * O_NONBLOCK keeps a FIFO from hanging the open; it is harmless for regular files. */
static vmk_result open_regular(const char *label, const char *path, uint64_t max, int *fd_out,
                               uint64_t *size_out, vmk_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return vmk_fail(err, VMK_ERR_IO, e, "%s: cannot open: %s", label, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, e, "%s: cannot stat: %s", label, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, EISDIR, "%s: cannot read: %s", label, strerror(EISDIR));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, EINVAL, "%s: not a regular file", label);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max) {
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, EFBIG,
                        "%s: file is %lld bytes, more than the %llu vmkit loads", label,
                        (long long)st.st_size, (unsigned long long)max);
    }
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    return VMK_OK;
}

/* Reads exactly len bytes from offset 0; a file that shrinks meanwhile is an error. */
static vmk_result read_exact(const char *label, int fd, uint8_t *dst, uint64_t len, vmk_error **err)
{
    uint64_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (1u << 30) ? (1u << 30) : (size_t)(len - done);
        ssize_t n = pread(fd, dst + done, chunk, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            return vmk_fail(err, VMK_ERR_IO, e, "%s: cannot read: %s", label, strerror(e));
        }
        if (n == 0)
            return vmk_fail(err, VMK_ERR_IO, 0,
                            "%s: file shrank while being read (%llu of %llu bytes)", label,
                            (unsigned long long)done, (unsigned long long)len);
        done += (uint64_t)n;
    }
    return VMK_OK;
}

static vmk_result read_kernel_file(const char *label, const char *path, uint8_t **buf, size_t *len,
                                   vmk_error **err)
{
    int fd;
    uint64_t size;
    vmk_result r = open_regular(label, path, KERNEL_FILE_MAX, &fd, &size, err);
    if (r != VMK_OK)
        return r;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: no memory for %llu bytes", label,
                     (unsigned long long)size);
        goto out_close;
    }
    r = read_exact(label, fd, b, size, err);
    if (r != VMK_OK) {
        free(b);
        goto out_close;
    }
    *buf = b;
    *len = size;
out_close:
    close(fd);
    return r;
}

/* "kernel /path": the label every message about that file starts with. */
static char *make_label(const char *kind, const char *path)
{
    char *s = NULL;
    if (asprintf(&s, "%s %s", kind, path) < 0)
        return NULL;
    return s;
}

vmk_result linux_kernel_probe(const char *path, struct linux_kernel_info *info, vmk_error **err)
{
    if (!path || !info)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "kernel: no path given");
    char *label = make_label("kernel", path);
    if (!label)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "kernel %s: out of memory", path);
    uint8_t *img = NULL;
    size_t len = 0;
    vmk_result r = read_kernel_file(label, path, &img, &len, err);
    if (r == VMK_OK)
        r = linux_kernel_parse(img, len, label, info, err);
    free(img);
    free(label);
    return r;
}

int linux_initrd_place(const struct linux_kernel_info *info, uint64_t low_ram_end, uint64_t size,
                       uint64_t *addr)
{
    if (!info || !addr || size == 0)
        return -EINVAL;
    uint64_t limit = info->initrd_addr_max == UINT64_MAX ? UINT64_MAX : info->initrd_addr_max + 1;
    if (limit > low_ram_end)
        limit = low_ram_end;
    if (size > limit)
        return -ENOSPC;
    uint64_t a = (limit - size) & ~(PAGE_SIZE_4K - 1);
    if (a < info->load_end)
        return -ENOSPC;
    *addr = a;
    return 0;
}

static unsigned e820_add(struct e820_entry_out *out, unsigned max, unsigned n, uint64_t start,
                         uint64_t end, uint32_t type)
{
    if (end <= start || n >= max)
        return n;
    out[n] = (struct e820_entry_out){ .addr = start, .size = end - start, .type = type };
    return n + 1;
}

unsigned x86_e820_build(const struct guest_memory *gm, struct e820_entry_out *out, unsigned max)
{
    if (!gm || !out)
        return 0;
    uint64_t low = gm_low_ram_end(gm);
    unsigned n = 0;
    n = e820_add(out, max, n, 0, low < X86_EBDA_START ? low : X86_EBDA_START, E820_TYPE_RAM);
    n = e820_add(out, max, n, X86_EBDA_START, EBDA_END, E820_TYPE_RESERVED);
    n = e820_add(out, max, n, X86_ACPI_ADDR, X86_HIGH_MEMORY, E820_TYPE_RESERVED);
    n = e820_add(out, max, n, X86_HIGH_MEMORY, low, E820_TYPE_RAM);
    for (unsigned i = 1; i < gm->nregions; i++)
        n = e820_add(out, max, n, gm->regions[i].gpa, gm->regions[i].gpa + gm->regions[i].size,
                     E820_TYPE_RAM);
    return n;
}

/* A vmlinux has no setup header of its own: give it one a 2.15 loader would leave. */
static void elf_zero_page_header(struct setup_header *h, const struct kernel_image *k)
{
    h->boot_flag = BOOT_FLAG_MAGIC;
    h->header = HDRS_MAGIC;
    h->version = PROTOCOL_ELF_ZERO_PAGE;
    h->loadflags = LOADED_HIGH;
    h->kernel_alignment = ELF_KERNEL_ALIGNMENT;
    h->initrd_addr_max = (uint32_t)k->info.initrd_addr_max;
    h->xloadflags = XLF_KERNEL_64;
    h->cmdline_size = (uint32_t)k->cmdline_max;
    h->code32_start = k->info.load_addr > UINT32_MAX ? 0 : (uint32_t)k->info.load_addr;
    h->pref_address = k->info.load_addr;
    h->init_size = k->init_size;
}

static vmk_result load_kernel_segments(const struct guest_memory *gm, const uint8_t *img,
                                       size_t len, const char *what, const struct kernel_image *k,
                                       vmk_error **err)
{
    if (k->info.format == LINUX_KERNEL_BZIMAGE) {
        size_t pm_len = len - k->setup_size;
        uint8_t *dst = gm_ptr(gm, k->info.load_addr, pm_len);
        if (!dst)
            return BAD(err, what, "cannot place the kernel at 0x%llx",
                       (unsigned long long)k->info.load_addr);
        memcpy(dst, img + k->setup_size, pm_len);
        return VMK_OK;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, img, sizeof(eh));
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh.e_phoff + (uint64_t)i * eh.e_phentsize, sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        uint8_t *dst = gm_ptr(gm, ph.p_paddr, ph.p_memsz);
        if (!dst)
            return BAD(err, what, "cannot place ELF program header %u at 0x%llx", i,
                       (unsigned long long)ph.p_paddr);
        memcpy(dst, img + ph.p_offset, ph.p_filesz);
        memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    }
    return VMK_OK;
}

/* Everything is checked before the first byte of guest RAM is written, so a refused boot
 * leaves the guest as it was (except for an initrd read that fails half-way). */
static vmk_result boot_load(const struct guest_memory *gm, const uint8_t *kernel, size_t kernel_len,
                            const char *what, const struct initrd_src *initrd, const char *cmdline,
                            uint64_t rsdp_addr, struct linux_boot_entry *out, vmk_error **err)
{
    struct kernel_image k;
    vmk_result r = parse_image(kernel, kernel_len, what, &k, err);
    if (r != VMK_OK)
        return r;

    uint64_t low_end = gm_low_ram_end(gm);
    if (k.info.format == LINUX_KERNEL_BZIMAGE) {
        if (k.info.load_end > low_end)
            return BAD(err, what,
                       "kernel needs guest RAM up to 0x%llx (it loads at 0x%llx and needs "
                       "init_size 0x%x to decompress), but RAM below 4 GiB ends at 0x%llx "
                       "(%llu MiB)",
                       (unsigned long long)k.info.load_end, (unsigned long long)k.info.load_addr,
                       k.init_size, (unsigned long long)low_end,
                       (unsigned long long)(low_end >> 20));
    } else {
        Elf64_Ehdr eh;
        memcpy(&eh, kernel, sizeof(eh));
        for (unsigned i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            memcpy(&ph, kernel + eh.e_phoff + (uint64_t)i * eh.e_phentsize, sizeof(ph));
            if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
                continue;
            if (!gm_ptr(gm, ph.p_paddr, ph.p_memsz))
                return BAD(err, what,
                           "ELF program header %u: [0x%llx, 0x%llx) is not inside guest RAM "
                           "(%llu MiB)",
                           i, (unsigned long long)ph.p_paddr,
                           (unsigned long long)(ph.p_paddr + ph.p_memsz),
                           (unsigned long long)(gm->size >> 20));
        }
    }

    size_t cmd_len = cmdline ? strlen(cmdline) : 0;
    uint64_t cmd_max = k.cmdline_max < X86_CMDLINE_MAX - 1 ? k.cmdline_max : X86_CMDLINE_MAX - 1;
    if (cmd_len > cmd_max)
        return fail_at(err, VMK_ERR_INVALID_ARGUMENT, what,
                       "command line is %zu bytes, kernel accepts at most %llu", cmd_len,
                       (unsigned long long)cmd_max);

    uint64_t initrd_addr = 0;
    uint8_t *initrd_dst = NULL;
    if (initrd) {
        if (initrd->size == 0)
            return BAD(err, initrd->label, "file is empty");
        uint64_t limit =
            k.info.initrd_addr_max + 1 < low_end ? k.info.initrd_addr_max + 1 : low_end;
        if (linux_initrd_place(&k.info, low_end, initrd->size, &initrd_addr) != 0)
            return BAD(err, initrd->label,
                       "%llu bytes (%llu MiB) do not fit in guest RAM between the "
                       "kernel's end 0x%llx and 0x%llx (the lower of the kernel's "
                       "initrd_addr_max + 1 and the end of RAM below 4 GiB)",
                       (unsigned long long)initrd->size,
                       (unsigned long long)((initrd->size + (1 << 20) - 1) >> 20),
                       (unsigned long long)k.info.load_end, (unsigned long long)limit);
        initrd_dst = gm_ptr(gm, initrd_addr, initrd->size);
        if (!initrd_dst)
            return BAD(err, initrd->label, "cannot place the initrd at 0x%llx",
                       (unsigned long long)initrd_addr);
    }
    char *cmd_dst = gm_ptr(gm, X86_CMDLINE_ADDR, cmd_len + 1);
    struct boot_params *bp_dst = gm_ptr(gm, X86_BOOT_PARAMS_ADDR, sizeof(struct boot_params));
    if (!cmd_dst || !bp_dst)
        return BAD(err, what, "guest RAM is too small for the command line and boot_params");

    /* Checks done: now write guest RAM. */
    r = load_kernel_segments(gm, kernel, kernel_len, what, &k, err);
    if (r != VMK_OK)
        return r;
    if (initrd) {
        if (initrd->buf)
            memcpy(initrd_dst, initrd->buf, initrd->size);
        else if ((r = read_exact(initrd->label, initrd->fd, initrd_dst, initrd->size, err)))
            return r;
    }
    if (cmd_len)
        memcpy(cmd_dst, cmdline, cmd_len);
    cmd_dst[cmd_len] = '\0';

    struct boot_params *bp = calloc(1, sizeof(*bp));
    if (!bp)
        return fail_at(err, VMK_ERR_NO_MEMORY, what, "no memory for boot_params");
    if (k.info.format == LINUX_KERNEL_BZIMAGE)
        memcpy((uint8_t *)bp + SETUP_HDR_START, kernel + SETUP_HDR_START,
               k.hdr_end - SETUP_HDR_START);
    else
        elf_zero_page_header(&bp->hdr, &k);
    bp->hdr.setup_data = 0; /* vmkit passes no setup_data list */
    bp->hdr.type_of_loader = LOADER_UNDEFINED;
    bp->hdr.loadflags |= CAN_USE_HEAP;
    bp->hdr.heap_end_ptr = HEAP_END_PTR;
    bp->hdr.cmd_line_ptr = (uint32_t)X86_CMDLINE_ADDR;
    bp->ext_cmd_line_ptr = (uint32_t)(X86_CMDLINE_ADDR >> 32);
    if (initrd) {
        bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
        bp->ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
        bp->hdr.ramdisk_size = (uint32_t)initrd->size;
        bp->ext_ramdisk_size = (uint32_t)(initrd->size >> 32);
    }
    bp->acpi_rsdp_addr = rsdp_addr;

    struct e820_entry_out map[BP_E820_MAX];
    unsigned n = x86_e820_build(gm, map, BP_E820_MAX);
    for (unsigned i = 0; i < n; i++)
        bp->e820_table[i] = (struct boot_e820_entry){ .addr = map[i].addr,
                                                      .size = map[i].size,
                                                      .type = map[i].type };
    bp->e820_entries = (uint8_t)n;

    memcpy(bp_dst, bp, sizeof(*bp));
    free(bp);
    out->rip = k.info.entry;
    out->rsi = X86_BOOT_PARAMS_ADDR;
    return VMK_OK;
}

vmk_result linux_boot_load_buffers(const struct guest_memory *gm, const uint8_t *kernel,
                                   size_t kernel_len, const char *what, const uint8_t *initrd,
                                   size_t initrd_len, const char *cmdline, uint64_t rsdp_addr,
                                   struct linux_boot_entry *out, vmk_error **err)
{
    what = label_or_default(what);
    if (!gm || !out || !kernel)
        return fail_at(err, VMK_ERR_INVALID_ARGUMENT, what,
                       "no guest memory, kernel or entry state");
    if (!initrd && initrd_len)
        return fail_at(err, VMK_ERR_INVALID_ARGUMENT, what, "initrd length without a buffer");
    struct initrd_src src = { .label = "initrd", .buf = initrd, .fd = -1, .size = initrd_len };
    return boot_load(gm, kernel, kernel_len, what, initrd ? &src : NULL, cmdline, rsdp_addr, out,
                     err);
}

vmk_result linux_boot_load(const struct guest_memory *gm, const struct linux_boot_request *req,
                           struct linux_boot_entry *out, vmk_error **err)
{
    if (!gm || !req || !out || !req->kernel_path)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "kernel: no kernel path given");
    vmk_result r = VMK_ERR_NO_MEMORY;
    uint8_t *img = NULL;
    size_t len = 0;
    struct initrd_src src = { .fd = -1 };
    char *klabel = make_label("kernel", req->kernel_path);
    char *ilabel = req->initrd_path ? make_label("initrd", req->initrd_path) : NULL;
    if (!klabel || (req->initrd_path && !ilabel)) {
        vmk_fail(err, r, ENOMEM, "kernel %s: out of memory", req->kernel_path);
        goto out;
    }
    r = read_kernel_file(klabel, req->kernel_path, &img, &len, err);
    if (r != VMK_OK)
        goto out;
    if (ilabel) {
        src.label = ilabel;
        /* The initrd can only go below the 32-bit PCI hole; anything bigger cannot fit. */
        r = open_regular(ilabel, req->initrd_path, GM_LOW_RAM_LIMIT, &src.fd, &src.size, err);
        if (r != VMK_OK)
            goto out;
    }
    r = boot_load(gm, img, len, klabel, ilabel ? &src : NULL, req->cmdline, req->rsdp_addr, out,
                  err);
out:
    if (src.fd >= 0)
        close(src.fd);
    free(img);
    free(ilabel);
    free(klabel);
    return r;
}
