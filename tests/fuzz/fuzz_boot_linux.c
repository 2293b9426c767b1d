/* libFuzzer target for the Linux boot loader: a hostile kernel image (bzImage or ELF64),
 * initrd and command line loaded into guest RAM of a few shapes. The image is what a
 * user (or whoever handed them the file) controls; the loader must refuse what it
 * cannot place with an error that names the object, and a refused boot must leave
 * guest RAM untouched.
 *
 * Input: u8 RAM shape (low 4 bits, modulo the shapes below), u8 flags (bit 0: an
 * initrd, bit 1: a command line, bit 2: an RSDP address), u16 initrd length, u16
 * command-line length, the initrd bytes, the command-line bytes, then the kernel image
 * (the rest). Seeds: a valid bzImage and a valid ELF64 in each shape.
 *
 * Checked after a successful load: the entry is the parser's, the protected-mode kernel
 * or each PT_LOAD segment sits where the header says with its bss zeroed, the initrd is
 * page-aligned, above the kernel, below both limits and holds its bytes, the zero page
 * points at the command line and the initrd, and its e820 map is ordered and disjoint.
 * After a refusal: the message names the kernel, the initrd or the command line, and no
 * page of guest RAM was touched (mincore). */
#include "input.h"

#include "arch/x86/boot_linux.h"
#include "arch/x86/layout.h"
#include "core/guest_memory.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MIB            (1024ULL * 1024)
#define HDR_LEN        6
#define MAX_INITRD_LEN 2048

/* Guest RAM shapes: low RAM size and, when not 0, RAM at 4 GiB. Small enough that a
 * bss of all of RAM is cheap to zero, varied enough to reach every "does not fit". */
static const struct shape {
    uint64_t low, high;
} shapes[] = {
    { 16 * MIB, 0 },        { 64 * MIB, 0 }, { 1 * MIB, 0 }, /* below the usual load address */
    { 0x22000, 0 }, /* the command line fits, no kernel does */
    { 32 * MIB, 16 * MIB },
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

struct ram {
    struct guest_memory gm;
    uint8_t *low, *high;
};
static struct ram rams[NSHAPES];

static uint8_t *map_ram(uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    FZ_CHECK(p != MAP_FAILED);
    return p;
}

static void rams_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (unsigned i = 0; i < NSHAPES; i++) {
        struct ram *r = &rams[i];
        guest_memory_init_empty(&r->gm);
        r->low = map_ram(shapes[i].low);
        FZ_CHECK(gm_add_region(&r->gm, 0, shapes[i].low, r->low) == 0);
        if (shapes[i].high) {
            r->high = map_ram(shapes[i].high);
            FZ_CHECK(gm_add_region(&r->gm, GM_HIGH_RAM_BASE, shapes[i].high, r->high) == 0);
        }
    }
}

/* Gives the pages back: the next input starts from zeroed, non-resident RAM. */
static void ram_forget(const struct ram *r, const struct shape *s)
{
    FZ_CHECK(madvise(r->low, s->low, MADV_DONTNEED) == 0);
    if (r->high)
        FZ_CHECK(madvise(r->high, s->high, MADV_DONTNEED) == 0);
}

static void check_untouched(const uint8_t *p, uint64_t size)
{
    static unsigned char vec[64 * MIB / 4096];
    size_t pages = size / 4096;
    FZ_CHECK(pages <= sizeof(vec));
    FZ_CHECK(mincore((void *)p, size, vec) == 0);
    for (size_t i = 0; i < pages; i++)
        if (vec[i] & 1)
            fz_fail("a refused boot touched guest RAM", __FILE__, __LINE__);
}

static uint64_t get(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static void check_loaded_kernel(const struct guest_memory *gm, const uint8_t *k, size_t len,
                                const struct linux_kernel_info *info)
{
    if (info->format == LINUX_KERNEL_BZIMAGE) {
        size_t sects = k[0x1f1] ? k[0x1f1] : 4;
        size_t setup = (sects + 1) * 512;
        FZ_CHECK(len > setup);
        const uint8_t *dst = gm_ptr(gm, info->load_addr, len - setup);
        FZ_CHECK(dst && memcmp(dst, k + setup, len - setup) == 0);
        FZ_CHECK(info->load_end >= info->load_addr + (len - setup));
        FZ_CHECK(info->load_end <= gm_low_ram_end(gm));
        return;
    }
    const Elf64_Ehdr *eh = (const void *)k;
    uint16_t phnum = (uint16_t)get(k + offsetof(Elf64_Ehdr, e_phnum), 2);
    uint64_t phoff = get(k + offsetof(Elf64_Ehdr, e_phoff), 8);
    uint16_t phentsize = (uint16_t)get(k + offsetof(Elf64_Ehdr, e_phentsize), 2);
    (void)eh;
    /* A later segment may overlap an earlier one; check only the last writer of a byte by
     * checking segments that no later segment overlaps. */
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = k + phoff + (uint64_t)i * phentsize;
        if (get(ph + offsetof(Elf64_Phdr, p_type), 4) != PT_LOAD)
            continue;
        uint64_t paddr = get(ph + offsetof(Elf64_Phdr, p_paddr), 8);
        uint64_t filesz = get(ph + offsetof(Elf64_Phdr, p_filesz), 8);
        uint64_t memsz = get(ph + offsetof(Elf64_Phdr, p_memsz), 8);
        uint64_t off = get(ph + offsetof(Elf64_Phdr, p_offset), 8);
        if (memsz == 0)
            continue;
        FZ_CHECK(filesz <= memsz && off + filesz <= len);
        FZ_CHECK(paddr >= info->load_addr && paddr + memsz <= info->load_end);
        int overlapped = 0;
        for (unsigned j = i + 1; j < phnum; j++) {
            const uint8_t *q = k + phoff + (uint64_t)j * phentsize;
            uint64_t qa = get(q + offsetof(Elf64_Phdr, p_paddr), 8);
            uint64_t qm = get(q + offsetof(Elf64_Phdr, p_memsz), 8);
            if (get(q + offsetof(Elf64_Phdr, p_type), 4) == PT_LOAD && qm && qa < paddr + memsz &&
                paddr < qa + qm)
                overlapped = 1;
        }
        if (overlapped)
            continue;
        const uint8_t *dst = gm_ptr(gm, paddr, memsz);
        FZ_CHECK(dst && memcmp(dst, k + off, filesz) == 0);
        for (uint64_t b = filesz; b < memsz; b++)
            FZ_CHECK(dst[b] == 0);
    }
}

static void check_zero_page(const struct guest_memory *gm, const char *cmdline, uint64_t initrd_at,
                            size_t initrd_len, uint64_t rsdp)
{
    const uint8_t *bp = gm_ptr(gm, X86_BOOT_PARAMS_ADDR, 4096);
    FZ_CHECK(bp);
    FZ_CHECK(get(bp + 0x228, 4) == (uint32_t)X86_CMDLINE_ADDR && get(bp + 0xc8, 4) == 0);
    const char *cmd = gm_ptr(gm, X86_CMDLINE_ADDR, strlen(cmdline) + 1);
    FZ_CHECK(cmd && strcmp(cmd, cmdline) == 0);
    FZ_CHECK(get(bp + 0x218, 4) == (uint32_t)initrd_at);
    FZ_CHECK(get(bp + 0x21c, 4) == initrd_len);
    FZ_CHECK(get(bp + 0x70, 8) == rsdp);
    FZ_CHECK(get(bp + 0x250, 8) == 0); /* no setup_data list of the image's choosing */
    unsigned n = bp[0x1e8];
    FZ_CHECK(n >= 1 && n <= 128);
    uint64_t prev_end = 0;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = bp + 0x2d0 + 20 * i;
        uint64_t addr = get(e, 8), len = get(e + 8, 8);
        FZ_CHECK(len > 0 && addr >= prev_end && addr + len > addr);
        prev_end = addr + len;
    }
}

static void check_refusal(vmk_error *err, vmk_result r)
{
    FZ_CHECK(r == VMK_ERR_BAD_IMAGE || r == VMK_ERR_INVALID_ARGUMENT);
    FZ_CHECK(err && vmk_error_code(err) == r);
    const char *msg = vmk_error_message(err);
    FZ_CHECK(msg && (strncmp(msg, "kernel", 6) == 0 || strncmp(msg, "initrd", 6) == 0));
    if (getenv("VMKIT_FUZZ_TRACE"))
        fprintf(stderr, "refused: %s\n", msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rams_init();
    struct fz_in in = { data, size };
    unsigned which = (fz_u8(&in) & 15u) % NSHAPES;
    uint8_t flags = fz_u8(&in);
    size_t initrd_len = fz_u16(&in) % (MAX_INITRD_LEN + 1);
    size_t cmd_len = fz_u16(&in) % X86_CMDLINE_MAX;
    static uint8_t initrd[MAX_INITRD_LEN];
    static char cmdline[X86_CMDLINE_MAX];
    initrd_len = fz_bytes(&in, initrd, initrd_len);
    cmd_len = (flags & 2) ? fz_bytes(&in, cmdline, cmd_len) : 0;
    cmdline[cmd_len] = '\0';
    const uint8_t *kernel = in.p;
    size_t kernel_len = in.n;
    uint64_t rsdp = (flags & 4) ? 0xe0000 : 0;

    const struct shape *s = &shapes[which];
    struct ram *r = &rams[which];
    struct linux_boot_entry entry = { 0 };
    vmk_error *err = NULL;
    vmk_result res =
        linux_boot_load_buffers(&r->gm, kernel, kernel_len, NULL, (flags & 1) ? initrd : NULL,
                                (flags & 1) ? initrd_len : 0, cmdline, rsdp, &entry, &err);
    struct linux_kernel_info info;
    vmk_error *perr = NULL;
    vmk_result parsed = linux_kernel_parse(kernel, kernel_len, NULL, &info, &perr);
    if (res != VMK_OK) {
        check_refusal(err, res);
        check_untouched(r->low, s->low);
        if (r->high)
            check_untouched(r->high, s->high);
        /* Loading checks everything parsing does, and more. */
        if (parsed != VMK_OK)
            FZ_CHECK(res == parsed);
    } else {
        FZ_CHECK(!err && parsed == VMK_OK);
        FZ_CHECK(entry.rip == info.entry && entry.rsi == X86_BOOT_PARAMS_ADDR);
        check_loaded_kernel(&r->gm, kernel, kernel_len, &info);
        uint64_t at = 0;
        if (flags & 1) {
            const uint8_t *bp = gm_ptr(&r->gm, X86_BOOT_PARAMS_ADDR, 4096);
            at = get(bp + 0x218, 4) | get(bp + 0xc0, 4) << 32;
            uint64_t limit = info.initrd_addr_max + 1 < gm_low_ram_end(&r->gm)
                                 ? info.initrd_addr_max + 1
                                 : gm_low_ram_end(&r->gm);
            FZ_CHECK(initrd_len > 0 && at % 4096 == 0 && at >= info.load_end &&
                     at + initrd_len <= limit);
            const uint8_t *dst = gm_ptr(&r->gm, at, initrd_len);
            FZ_CHECK(dst && memcmp(dst, initrd, initrd_len) == 0);
        }
        check_zero_page(&r->gm, cmdline, at, (flags & 1) ? initrd_len : 0, rsdp);
    }
    vmk_error_free(err);
    vmk_error_free(perr);
    ram_forget(r, s);
    return 0;
}

/* ---- seeds ---- */

static void put(uint8_t *p, size_t off, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[off + i] = (uint8_t)(v >> (8 * i));
}

/* A bzImage as a 6.x x86-64 kernel lays it out: 1 setup sector, 1 KiB of kernel. */
static size_t seed_bzimage(uint8_t *b)
{
    size_t len = 2 * 512 + 1024;
    memset(b, 0, len);
    b[0] = 'M';
    b[1] = 'Z';
    b[0x1f1] = 1;
    put(b, 0x1fe, 0xAA55, 2);
    b[0x200] = 0xeb;
    b[0x201] = 0x6a;
    memcpy(b + 0x202, "HdrS", 4);
    put(b, 0x206, 0x020f, 2);
    b[0x211] = 0x01;
    put(b, 0x22c, 0x7fffffff, 4);
    put(b, 0x230, 0x200000, 4);
    b[0x234] = 1;
    put(b, 0x236, 0x7f, 2);
    put(b, 0x238, 2047, 4);
    put(b, 0x258, 0x100000, 8);
    put(b, 0x260, 0x10000, 4);
    for (size_t i = 1024; i < len; i++)
        b[i] = (uint8_t)(i * 7 + 3);
    return len;
}

/* An ELF64 vmlinux: one PT_LOAD at 1 MiB with a bss tail, entry inside it. */
static size_t seed_elf(uint8_t *b)
{
    size_t seg = 0x100, len = seg + 0x40;
    memset(b, 0, len);
    memcpy(b, ELFMAG, SELFMAG);
    b[EI_CLASS] = ELFCLASS64;
    b[EI_DATA] = ELFDATA2LSB;
    b[EI_VERSION] = EV_CURRENT;
    put(b, offsetof(Elf64_Ehdr, e_type), ET_EXEC, 2);
    put(b, offsetof(Elf64_Ehdr, e_machine), EM_X86_64, 2);
    put(b, offsetof(Elf64_Ehdr, e_version), EV_CURRENT, 4);
    put(b, offsetof(Elf64_Ehdr, e_entry), 0x100010, 8);
    put(b, offsetof(Elf64_Ehdr, e_phoff), sizeof(Elf64_Ehdr), 8);
    put(b, offsetof(Elf64_Ehdr, e_ehsize), sizeof(Elf64_Ehdr), 2);
    put(b, offsetof(Elf64_Ehdr, e_phentsize), sizeof(Elf64_Phdr), 2);
    put(b, offsetof(Elf64_Ehdr, e_phnum), 1, 2);
    uint8_t *ph = b + sizeof(Elf64_Ehdr);
    put(ph, offsetof(Elf64_Phdr, p_type), PT_LOAD, 4);
    put(ph, offsetof(Elf64_Phdr, p_flags), PF_R | PF_X, 4);
    put(ph, offsetof(Elf64_Phdr, p_offset), seg, 8);
    put(ph, offsetof(Elf64_Phdr, p_vaddr), 0x100000, 8);
    put(ph, offsetof(Elf64_Phdr, p_paddr), 0x100000, 8);
    put(ph, offsetof(Elf64_Phdr, p_filesz), 0x40, 8);
    put(ph, offsetof(Elf64_Phdr, p_memsz), 0x3000, 8);
    memset(b + seg, 0xf4, 0x40);
    return len;
}

void fz_write_seeds(const char *dir)
{
    static const char initrd[] = "070701 an initramfs";
    static const char cmd[] = "console=ttyS0 quiet";
    uint8_t img[4096];
    for (unsigned shape = 0; shape < NSHAPES; shape++) {
        for (unsigned kind = 0; kind < 2; kind++) {
            size_t len = kind ? seed_elf(img) : seed_bzimage(img);
            struct fz_seed s = { .n = 0 };
            fz_seed_u8(&s, (uint8_t)shape);
            fz_seed_u8(&s, 1 | 2 | 4);
            fz_seed_u16(&s, sizeof(initrd));
            fz_seed_u16(&s, sizeof(cmd) - 1);
            fz_seed_bytes(&s, initrd, sizeof(initrd));
            fz_seed_bytes(&s, cmd, sizeof(cmd) - 1);
            fz_seed_bytes(&s, img, len);
            char name[32];
            snprintf(name, sizeof(name), "%s-%u", kind ? "elf" : "bzimage", shape);
            fz_seed_save(dir, name, &s);
        }
    }
}
