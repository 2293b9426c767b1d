/* Linux loader: synthetic bzImages and ELF64 kernels, valid and broken, loaded into real
 * guest memory; the zero page is checked at the raw offsets of the boot protocol. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "test_files.h"

#include "arch/x86/boot_linux.h"
#include "arch/x86/layout.h"
#include "core/guest_memory.h"

#define MIB (1024ULL * 1024)
#define GIB (1024 * MIB)

/* Raw boot protocol offsets, written out here so the test does not trust the loader's structs. */
#define O_SETUP_SECTS       0x1f1
#define O_SYSSIZE           0x1f4
#define O_BOOT_FLAG         0x1fe
#define O_JUMP_LEN          0x201
#define O_HEADER            0x202
#define O_VERSION           0x206
#define O_TYPE_OF_LOADER    0x210
#define O_LOADFLAGS         0x211
#define O_RAMDISK_IMAGE     0x218
#define O_RAMDISK_SIZE      0x21c
#define O_HEAP_END_PTR      0x224
#define O_CMD_LINE_PTR      0x228
#define O_INITRD_ADDR_MAX   0x22c
#define O_KERNEL_ALIGNMENT  0x230
#define O_RELOCATABLE       0x234
#define O_XLOADFLAGS        0x236
#define O_CMDLINE_SIZE      0x238
#define O_SETUP_DATA        0x250
#define O_PREF_ADDRESS      0x258
#define O_INIT_SIZE         0x260
#define O_ACPI_RSDP         0x070
#define O_EXT_RAMDISK_IMAGE 0x0c0
#define O_EXT_RAMDISK_SIZE  0x0c4
#define O_EXT_CMD_LINE_PTR  0x0c8
#define O_E820_ENTRIES      0x1e8
#define O_SENTINEL          0x1ef
#define O_E820_TABLE        0x2d0

/* The synthetic bzImage: 4 setup sectors, then PM_LEN bytes of "kernel". */
#define BZ_SECTS     4
#define BZ_SETUP     ((BZ_SECTS + 1) * 512)
#define BZ_PM_LEN    8192
#define BZ_LEN       (BZ_SETUP + BZ_PM_LEN)
#define BZ_PREF      0x1000000ULL
#define BZ_INIT_SIZE 0x400000U

/* The synthetic ELF: header, two program headers, then the segment bytes. */
#define ELF_LOAD    0x100000ULL
#define ELF_ENTRY   (ELF_LOAD + 0x10)
#define ELF_FILESZ  0x100
#define ELF_MEMSZ   0x3000
#define ELF_PHOFF   64
#define ELF_SEG_OFF 0x100
#define ELF_LEN     (ELF_SEG_OFF + ELF_FILESZ)
/* Field offsets in Elf64_Ehdr / Elf64_Phdr. */
#define E_TYPE      16
#define E_MACHINE   18
#define E_ENTRY     24
#define E_PHOFF     32
#define E_PHENTSIZE 54
#define E_PHNUM     56
#define P_TYPE      0
#define P_OFFSET    8
#define P_PADDR     24
#define P_FILESZ    32
#define P_MEMSZ     40

static void put16(uint8_t *p, size_t off, uint16_t v)
{
    p[off] = (uint8_t)v;
    p[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
    put16(p, off, (uint16_t)v);
    put16(p, off + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
    put32(p, off, (uint32_t)v);
    put32(p, off + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p, size_t off)
{
    return (uint16_t)(p[off] | (p[off + 1] << 8));
}

static uint32_t get32(const uint8_t *p, size_t off)
{
    return get16(p, off) | ((uint32_t)get16(p, off + 2) << 16);
}

static uint64_t get64(const uint8_t *p, size_t off)
{
    return get32(p, off) | ((uint64_t)get32(p, off + 4) << 32);
}

/* A minimal valid bzImage the way a 6.x x86-64 kernel lays it out. */
static uint8_t *make_bzimage(void)
{
    uint8_t *b = calloc(1, BZ_LEN);
    assert_non_null(b);
    b[0] = 'M';
    b[1] = 'Z';
    b[O_SETUP_SECTS] = BZ_SECTS;
    put32(b, O_SYSSIZE, BZ_PM_LEN / 16);
    put16(b, O_BOOT_FLAG, 0xAA55);
    b[0x200] = 0xeb;
    b[O_JUMP_LEN] = 0x6a; /* header ends at 0x26c */
    memcpy(b + O_HEADER, "HdrS", 4);
    put16(b, O_VERSION, 0x020f);
    b[O_LOADFLAGS] = 0x01; /* LOADED_HIGH */
    put32(b, O_INITRD_ADDR_MAX, 0x7fffffff);
    put32(b, O_KERNEL_ALIGNMENT, 0x200000);
    b[O_RELOCATABLE] = 1;
    put16(b, O_XLOADFLAGS, 0x7f);
    put32(b, O_CMDLINE_SIZE, 2047);
    put64(b, O_PREF_ADDRESS, BZ_PREF);
    put32(b, O_INIT_SIZE, BZ_INIT_SIZE);
    b[O_SENTINEL] = 0xff; /* as in real images: must not reach the zero page */
    for (size_t i = 0; i < BZ_PM_LEN; i++)
        b[BZ_SETUP + i] = (uint8_t)(i * 7 + 3);
    return b;
}

/* A minimal valid ELF64 x86-64 executable: one PT_LOAD with a bss tail and a PT_NOTE. */
static uint8_t *make_elf(void)
{
    uint8_t *b = calloc(1, ELF_LEN);
    assert_non_null(b);
    memcpy(b,
           "\x7f"
           "ELF",
           4);
    b[4] = 2;                /* ELFCLASS64 */
    b[5] = 1;                /* little-endian */
    b[6] = 1;                /* EV_CURRENT */
    put16(b, E_TYPE, 2);     /* ET_EXEC */
    put16(b, E_MACHINE, 62); /* EM_X86_64 */
    put32(b, 20, 1);
    put64(b, E_ENTRY, ELF_ENTRY);
    put64(b, E_PHOFF, ELF_PHOFF);
    put16(b, 52, 64); /* e_ehsize */
    put16(b, E_PHENTSIZE, 56);
    put16(b, E_PHNUM, 2);
    uint8_t *ph = b + ELF_PHOFF;
    put32(ph, P_TYPE, 1); /* PT_LOAD */
    put32(ph, 4, 7);
    put64(ph, P_OFFSET, ELF_SEG_OFF);
    put64(ph, 16, ELF_LOAD);
    put64(ph, P_PADDR, ELF_LOAD);
    put64(ph, P_FILESZ, ELF_FILESZ);
    put64(ph, P_MEMSZ, ELF_MEMSZ);
    ph += 56;
    put32(ph, P_TYPE, 4); /* PT_NOTE: not loaded, its odd values must not matter */
    put64(ph, P_OFFSET, 0xffffffffffffff00ULL);
    put64(ph, P_FILESZ, 0x1000);
    for (size_t i = 0; i < ELF_FILESZ; i++)
        b[ELF_SEG_OFF + i] = (uint8_t)(0x40 + i);
    return b;
}

struct fixture {
    struct guest_memory gm;
    uint8_t *bz;
    uint8_t *elf;
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(guest_memory_init(&f->gm, 64 * MIB), 0);
    f->bz = make_bzimage();
    f->elf = make_elf();
    strcpy(f->dir, "/tmp/vmkit-test-boot-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    guest_memory_destroy(&f->gm);
    free(f->bz);
    free(f->elf);
    /* Only the files these tests create live here. */
    static const char *const names[] = { "kernel", "initrd", "empty" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Asserts err carries code and a message containing every given word, up to NO_MORE. */
#define NO_MORE ((const char *)NULL)
static void check_error(vmk_result r, vmk_error *err, vmk_result code, ...)
{
    assert_int_equal(r, code);
    assert_non_null(err);
    assert_int_equal(vmk_error_code(err), code);
    const char *msg = vmk_error_message(err);
    va_list ap;
    va_start(ap, code);
    for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *)) {
        if (!strstr(msg, w))
            fail_msg("message \"%s\" lacks \"%s\"", msg, w);
    }
    va_end(ap);
}

/* Parses img and expects a bad-image error naming the label and all the words. */
#define EXPECT_BAD(img, len, ...)                                                    \
    do {                                                                             \
        struct linux_kernel_info info_;                                              \
        vmk_error *err_ = NULL;                                                      \
        vmk_result r_ = linux_kernel_parse((img), (len), "img.bin", &info_, &err_);  \
        check_error(r_, err_, VMK_ERR_BAD_IMAGE, "img.bin: ", __VA_ARGS__, NO_MORE); \
        assert_true(strncmp(vmk_error_message(err_), "img.bin: ", 9) == 0);          \
        vmk_error_free(err_);                                                        \
    } while (0)

static uint8_t *bp_of(struct fixture *f)
{
    uint8_t *bp = gm_ptr(&f->gm, X86_BOOT_PARAMS_ADDR, 4096);
    assert_non_null(bp);
    return bp;
}

/* ---- bzImage ---------------------------------------------------------------------------- */

static void test_bzimage_parse(void **state)
{
    struct fixture *f = *state;
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    assert_int_equal(linux_kernel_parse(f->bz, BZ_LEN, "bz", &info, &err), VMK_OK);
    assert_null(err);
    assert_int_equal(info.format, LINUX_KERNEL_BZIMAGE);
    assert_int_equal(info.protocol_version, 0x020f);
    assert_int_equal(info.load_addr, BZ_PREF);
    assert_int_equal(info.load_end, BZ_PREF + BZ_INIT_SIZE);
    assert_int_equal(info.initrd_addr_max, 0x7fffffff);
    assert_int_equal(info.entry, BZ_PREF + 0x200);
}

static void test_bzimage_load(void **state)
{
    struct fixture *f = *state;
    const char *cmdline = "console=ttyS0 root=/dev/vda rw";
    size_t initrd_len = MIB + 123;
    uint8_t *initrd = malloc(initrd_len);
    assert_non_null(initrd);
    for (size_t i = 0; i < initrd_len; i++)
        initrd[i] = (uint8_t)(i ^ (i >> 8));
    /* Leftovers from an earlier boot must not survive in the zero page. */
    memset(bp_of(f), 0xcc, 4096);

    struct linux_boot_entry e;
    vmk_error *err = NULL;
    assert_int_equal(linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", initrd, initrd_len,
                                             cmdline, X86_ACPI_ADDR, &e, &err),
                     VMK_OK);
    assert_null(err);
    assert_int_equal(e.rip, BZ_PREF + 0x200);
    assert_int_equal(e.rsi, X86_BOOT_PARAMS_ADDR);

    /* The protected-mode part sits at pref_address. */
    assert_memory_equal(gm_ptr(&f->gm, BZ_PREF, BZ_PM_LEN), f->bz + BZ_SETUP, BZ_PM_LEN);

    const uint8_t *bp = bp_of(f);
    assert_int_equal(get16(bp, O_BOOT_FLAG), 0xAA55);
    assert_memory_equal(bp + O_HEADER, "HdrS", 4);
    assert_int_equal(get16(bp, O_VERSION), 0x020f);
    assert_int_equal(bp[O_SETUP_SECTS], BZ_SECTS);
    assert_int_equal(get32(bp, O_INIT_SIZE), BZ_INIT_SIZE);
    assert_int_equal(bp[O_TYPE_OF_LOADER], 0xff);
    assert_int_equal(bp[O_LOADFLAGS] & 0x81, 0x81); /* LOADED_HIGH kept, CAN_USE_HEAP set */
    assert_int_equal(get16(bp, O_HEAP_END_PTR), 0xfe00);
    assert_int_equal(bp[O_SENTINEL], 0);
    assert_int_equal(get64(bp, O_SETUP_DATA), 0);
    /* Bytes of the zero page outside the header start zeroed. */
    assert_int_equal(bp[0x000], 0);
    assert_int_equal(get64(bp, 0x058), 0);
    assert_int_equal(bp[0xfff], 0);

    assert_int_equal(get32(bp, O_CMD_LINE_PTR), X86_CMDLINE_ADDR);
    assert_int_equal(get32(bp, O_EXT_CMD_LINE_PTR), 0);
    assert_string_equal((const char *)gm_ptr(&f->gm, X86_CMDLINE_ADDR, 1), cmdline);

    uint32_t rd = get32(bp, O_RAMDISK_IMAGE);
    assert_int_equal(get32(bp, O_RAMDISK_SIZE), initrd_len);
    assert_int_equal(get32(bp, O_EXT_RAMDISK_IMAGE), 0);
    assert_int_equal(get32(bp, O_EXT_RAMDISK_SIZE), 0);
    assert_int_equal(rd % 4096, 0);
    assert_true(rd >= BZ_PREF + BZ_INIT_SIZE);
    assert_true(rd + initrd_len <= 64 * MIB);
    /* As high as possible: less than a page of slack at the top. */
    assert_true(64 * MIB - (rd + initrd_len) < 4096);
    assert_memory_equal(gm_ptr(&f->gm, rd, initrd_len), initrd, initrd_len);

    assert_int_equal(get64(bp, O_ACPI_RSDP), X86_ACPI_ADDR);

    assert_int_equal(bp[O_E820_ENTRIES], 4);
    const uint8_t *t = bp + O_E820_TABLE;
    static const uint64_t want[4][3] = {
        { 0, X86_EBDA_START, 1 },
        { X86_EBDA_START, 0xa0000 - X86_EBDA_START, 2 },
        { X86_ACPI_ADDR, X86_HIGH_MEMORY - X86_ACPI_ADDR, 2 },
        { X86_HIGH_MEMORY, 64 * MIB - X86_HIGH_MEMORY, 1 },
    };
    for (int i = 0; i < 4; i++) {
        assert_int_equal(get64(t, i * 20), want[i][0]);
        assert_int_equal(get64(t, i * 20 + 8), want[i][1]);
        assert_int_equal(get32(t, i * 20 + 16), want[i][2]);
    }
    free(initrd);
}

static void test_bzimage_no_initrd_no_cmdline(void **state)
{
    struct fixture *f = *state;
    memset(bp_of(f), 0xcc, 4096);
    struct linux_boot_entry e;
    vmk_error *err = NULL;
    assert_int_equal(
        linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, NULL, 0, &e, &err), VMK_OK);
    const uint8_t *bp = bp_of(f);
    assert_int_equal(get32(bp, O_RAMDISK_IMAGE), 0);
    assert_int_equal(get32(bp, O_RAMDISK_SIZE), 0);
    assert_int_equal(get64(bp, O_ACPI_RSDP), 0);
    assert_int_equal(get32(bp, O_CMD_LINE_PTR), X86_CMDLINE_ADDR);
    assert_string_equal((const char *)gm_ptr(&f->gm, X86_CMDLINE_ADDR, 1), "");
}

static void test_bzimage_not_relocatable(void **state)
{
    struct fixture *f = *state;
    f->bz[O_RELOCATABLE] = 0;
    struct linux_boot_entry e;
    vmk_error *err = NULL;
    assert_int_equal(linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, "", 0, &e, &err),
                     VMK_OK);
    assert_int_equal(e.rip, 0x100000 + 0x200);
    assert_memory_equal(gm_ptr(&f->gm, 0x100000, BZ_PM_LEN), f->bz + BZ_SETUP, BZ_PM_LEN);
}

static void test_bzimage_setup_sects_zero_means_four(void **state)
{
    struct fixture *f = *state;
    f->bz[O_SETUP_SECTS] = 0;
    struct linux_boot_entry e;
    vmk_error *err = NULL;
    assert_int_equal(linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, "", 0, &e, &err),
                     VMK_OK);
    assert_memory_equal(gm_ptr(&f->gm, BZ_PREF, BZ_PM_LEN), f->bz + BZ_SETUP, BZ_PM_LEN);
}

/* Every prefix of a valid image: no crash, and a "truncated" error unless what is left still
 * covers what syssize promises. The loader gets every prefix too. */
static void test_bzimage_truncated_every_length(void **state)
{
    struct fixture *f = *state;
    for (size_t len = 0; len < BZ_LEN; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, f->bz, len);
        struct linux_kernel_info info;
        vmk_error *err = NULL;
        vmk_result r = linux_kernel_parse(copy, len, "img.bin", &info, &err);
        if (len >= BZ_SETUP && len - BZ_SETUP + 15 >= BZ_PM_LEN) {
            assert_int_equal(r, VMK_OK);
        } else {
            check_error(r, err, VMK_ERR_BAD_IMAGE, "img.bin: ", "truncated", NO_MORE);
            vmk_error_free(err);
            err = NULL;
        }
        struct linux_boot_entry e;
        r = linux_boot_load_buffers(&f->gm, copy, len, "img.bin", NULL, 0, "x", 0, &e, &err);
        assert_int_equal(r == VMK_OK, len >= BZ_SETUP && len - BZ_SETUP + 15 >= BZ_PM_LEN);
        vmk_error_free(err);
        free(copy);
    }
}

static void test_bzimage_bad_magic(void **state)
{
    struct fixture *f = *state;
    put16(f->bz, O_BOOT_FLAG, 0x1234);
    EXPECT_BAD(f->bz, BZ_LEN, "boot_flag", "0x1234");
    put16(f->bz, O_BOOT_FLAG, 0xAA55);
    memcpy(f->bz + O_HEADER, "HdrX", 4);
    EXPECT_BAD(f->bz, BZ_LEN, "not a bzImage or ELF64 kernel");
    memset(f->bz, 0, BZ_LEN);
    EXPECT_BAD(f->bz, BZ_LEN, "not a bzImage or ELF64 kernel");
    static const uint8_t gz[] = { 0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0 };
    EXPECT_BAD(gz, sizeof(gz), "not a bzImage or ELF64 kernel (found gzip data)");
    static const char cpio[] = "070701000000010000";
    EXPECT_BAD((const uint8_t *)cpio, sizeof(cpio), "cpio");
    /* "MZ" with room for a setup header but none there: a plain PE file. */
    memset(f->bz, 0, BZ_LEN);
    f->bz[0] = 'M';
    f->bz[1] = 'Z';
    EXPECT_BAD(f->bz, BZ_LEN, "PE/EFI");
}

static void test_bzimage_old_protocol(void **state)
{
    struct fixture *f = *state;
    put16(f->bz, O_VERSION, 0x020b);
    EXPECT_BAD(f->bz, BZ_LEN, "boot protocol 2.11 is too old", "2.12");
    put16(f->bz, O_VERSION, 0x0200);
    EXPECT_BAD(f->bz, BZ_LEN, "2.00 is too old");
}

static void test_bzimage_no_64bit_entry(void **state)
{
    struct fixture *f = *state;
    put16(f->bz, O_XLOADFLAGS, 0x7e);
    EXPECT_BAD(f->bz, BZ_LEN, "XLF_KERNEL_64");
}

static void test_bzimage_header_fields(void **state)
{
    struct fixture *f = *state;
    /* A header that claims to end before the 2.12 fields. */
    f->bz[O_JUMP_LEN] = 0x20;
    EXPECT_BAD(f->bz, BZ_LEN, "setup header ends at 0x222");
    f->bz[O_JUMP_LEN] = 0xff; /* longer than known: fine, copied up to the room there is */
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    assert_int_equal(linux_kernel_parse(f->bz, BZ_LEN, "bz", &info, &err), VMK_OK);
    f->bz[O_JUMP_LEN] = 0x6a;

    f->bz[O_LOADFLAGS] = 0;
    EXPECT_BAD(f->bz, BZ_LEN, "zImage");
    f->bz[O_LOADFLAGS] = 1;

    put32(f->bz, O_SYSSIZE, 0);
    EXPECT_BAD(f->bz, BZ_LEN, "syssize 0");
    put32(f->bz, O_SYSSIZE, 0xffffffff);
    EXPECT_BAD(f->bz, BZ_LEN, "truncated", "syssize");
    put32(f->bz, O_SYSSIZE, BZ_PM_LEN / 16 + 1);
    EXPECT_BAD(f->bz, BZ_LEN, "truncated");
    put32(f->bz, O_SYSSIZE, BZ_PM_LEN / 16);

    put32(f->bz, O_INIT_SIZE, 0);
    EXPECT_BAD(f->bz, BZ_LEN, "init_size 0");
    put32(f->bz, O_INIT_SIZE, BZ_INIT_SIZE);

    put64(f->bz, O_PREF_ADDRESS, 0x7000);
    EXPECT_BAD(f->bz, BZ_LEN, "below 1 MiB", "0x7000");
    put64(f->bz, O_PREF_ADDRESS, UINT64_MAX - 0x1000);
    EXPECT_BAD(f->bz, BZ_LEN, "overflows");
}

static void test_bzimage_setup_sects_huge(void **state)
{
    struct fixture *f = *state;
    f->bz[O_SETUP_SECTS] = 255;
    EXPECT_BAD(f->bz, BZ_LEN, "truncated", "255 setup sectors");
    /* Exactly the setup and nothing after it: no protected-mode kernel. */
    f->bz[O_SETUP_SECTS] = BZ_SECTS;
    EXPECT_BAD(f->bz, BZ_SETUP, "truncated", "protected-mode");
}

static void test_bzimage_too_big_for_ram(void **state)
{
    struct fixture *f = *state;
    put32(f->bz, O_INIT_SIZE, 0x7000000); /* 112 MiB to decompress into 64 MiB of RAM */
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    assert_int_equal(linux_kernel_parse(f->bz, BZ_LEN, "bz", &info, &err), VMK_OK);
    assert_int_equal(info.load_end, BZ_PREF + 0x7000000);
    struct linux_boot_entry e;
    vmk_result r = linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, "", 0, &e, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, "bz: ", "init_size", "RAM", "64 MiB", NO_MORE);
    vmk_error_free(err);
    /* A refused kernel leaves guest RAM untouched. */
    const uint8_t *dst = gm_ptr(&f->gm, BZ_PREF, BZ_PM_LEN);
    for (size_t i = 0; i < BZ_PM_LEN; i++)
        assert_int_equal(dst[i], 0);
}

static void test_cmdline_limits(void **state)
{
    struct fixture *f = *state;
    char *cmd = malloc(X86_CMDLINE_MAX + 1);
    assert_non_null(cmd);
    struct linux_boot_entry e;
    vmk_error *err = NULL;

    memset(cmd, 'a', 2047);
    cmd[2047] = '\0';
    assert_int_equal(
        linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, cmd, 0, &e, &err), VMK_OK);
    assert_string_equal((const char *)gm_ptr(&f->gm, X86_CMDLINE_ADDR, 2048), cmd);

    memset(cmd, 'a', 2048);
    cmd[2048] = '\0';
    vmk_result r = linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, cmd, 0, &e, &err);
    check_error(r, err, VMK_ERR_INVALID_ARGUMENT,
                "bz: ", "command line is 2048 bytes, kernel accepts at most 2047", NO_MORE);
    vmk_error_free(err);
    err = NULL;

    /* A kernel that takes anything is still bounded by vmkit's own command line area. */
    put32(f->bz, O_CMDLINE_SIZE, 0xffffffff);
    memset(cmd, 'b', X86_CMDLINE_MAX - 1);
    cmd[X86_CMDLINE_MAX - 1] = '\0';
    assert_int_equal(
        linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, cmd, 0, &e, &err), VMK_OK);
    memset(cmd, 'b', X86_CMDLINE_MAX);
    cmd[X86_CMDLINE_MAX] = '\0';
    r = linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", NULL, 0, cmd, 0, &e, &err);
    check_error(r, err, VMK_ERR_INVALID_ARGUMENT, "command line is 65536 bytes", "at most 65535",
                NO_MORE);
    vmk_error_free(err);
    free(cmd);
}

static void test_initrd_too_big(void **state)
{
    struct fixture *f = *state;
    /* 64 MiB of RAM, the kernel takes up to 20 MiB: 44 MiB remain, 45 do not fit. */
    size_t len = 45 * MIB;
    uint8_t *initrd = calloc(1, len);
    assert_non_null(initrd);
    struct linux_boot_entry e;
    vmk_error *err = NULL;
    vmk_result r =
        linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", initrd, len, "", 0, &e, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, "initrd: ", "do not fit", "45 MiB", NO_MORE);
    vmk_error_free(err);
    err = NULL;
    /* 44 MiB fits exactly. */
    assert_int_equal(
        linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", initrd, 44 * MIB, "", 0, &e, &err),
        VMK_OK);
    assert_int_equal(get32(bp_of(f), O_RAMDISK_IMAGE), BZ_PREF + BZ_INIT_SIZE);
    /* An empty initrd is a mistake worth naming. */
    r = linux_boot_load_buffers(&f->gm, f->bz, BZ_LEN, "bz", initrd, 0, "", 0, &e, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, "initrd: ", "empty", NO_MORE);
    vmk_error_free(err);
    free(initrd);
}

static void test_initrd_place(void **state)
{
    (void)state;
    struct linux_kernel_info info = { .load_end = 20 * MIB, .initrd_addr_max = 0x7fffffff };
    uint64_t a = 0;
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, 4096, &a), 0);
    assert_int_equal(a, 64 * MIB - 4096);
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, 4097, &a), 0);
    assert_int_equal(a, 64 * MIB - 8192);
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, 44 * MIB, &a), 0);
    assert_int_equal(a, 20 * MIB);
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, 44 * MIB + 1, &a), -ENOSPC);
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, UINT64_MAX, &a), -ENOSPC);
    assert_int_equal(linux_initrd_place(&info, 64 * MIB, 0, &a), -EINVAL);
    /* initrd_addr_max below the end of RAM is the limit. */
    info.initrd_addr_max = 32 * MIB - 1;
    assert_int_equal(linux_initrd_place(&info, 3 * GIB, 100 * 4096, &a), 0);
    assert_int_equal(a, 32 * MIB - 100 * 4096);
    /* The end of RAM below initrd_addr_max is the limit. */
    info.initrd_addr_max = 0xffffffff;
    assert_int_equal(linux_initrd_place(&info, 3 * GIB, 100 * MIB, &a), 0);
    assert_int_equal(a, 3 * GIB - 100 * MIB);
    info.initrd_addr_max = UINT64_MAX;
    assert_int_equal(linux_initrd_place(&info, 3 * GIB, 100 * MIB, &a), 0);
    assert_int_equal(a, 3 * GIB - 100 * MIB);
    /* Kernel end above the limit. */
    info.load_end = 4 * GIB;
    assert_int_equal(linux_initrd_place(&info, 3 * GIB, 4096, &a), -ENOSPC);
}

/* ---- ELF64 ------------------------------------------------------------------------------ */

static void test_elf_load(void **state)
{
    struct fixture *f = *state;
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    assert_int_equal(linux_kernel_parse(f->elf, ELF_LEN, "elf", &info, &err), VMK_OK);
    assert_int_equal(info.format, LINUX_KERNEL_ELF64);
    assert_int_equal(info.protocol_version, 0);
    assert_int_equal(info.load_addr, ELF_LOAD);
    assert_int_equal(info.load_end, ELF_LOAD + ELF_MEMSZ);
    assert_int_equal(info.entry, ELF_ENTRY);

    /* Dirty the bss so zeroing it can be seen. */
    memset(gm_ptr(&f->gm, ELF_LOAD, ELF_MEMSZ + 4096), 0xaa, ELF_MEMSZ + 4096);
    uint8_t initrd[5000];
    memset(initrd, 0x5a, sizeof(initrd));
    struct linux_boot_entry e;
    assert_int_equal(linux_boot_load_buffers(&f->gm, f->elf, ELF_LEN, "elf", initrd, sizeof(initrd),
                                             "quiet", 0xe0000, &e, &err),
                     VMK_OK);
    assert_int_equal(e.rip, ELF_ENTRY);
    assert_int_equal(e.rsi, X86_BOOT_PARAMS_ADDR);
    const uint8_t *seg = gm_ptr(&f->gm, ELF_LOAD, ELF_MEMSZ + 1);
    assert_memory_equal(seg, f->elf + ELF_SEG_OFF, ELF_FILESZ);
    for (size_t i = ELF_FILESZ; i < ELF_MEMSZ; i++)
        assert_int_equal(seg[i], 0);
    assert_int_equal(seg[ELF_MEMSZ], 0xaa); /* nothing past p_memsz */

    const uint8_t *bp = bp_of(f);
    assert_int_equal(get16(bp, O_BOOT_FLAG), 0xAA55);
    assert_memory_equal(bp + O_HEADER, "HdrS", 4);
    assert_int_equal(get16(bp, O_VERSION), 0x020f);
    assert_int_equal(bp[O_TYPE_OF_LOADER], 0xff);
    assert_int_equal(get16(bp, O_XLOADFLAGS) & 1, 1);
    assert_int_equal(get32(bp, O_CMD_LINE_PTR), X86_CMDLINE_ADDR);
    assert_string_equal((const char *)gm_ptr(&f->gm, X86_CMDLINE_ADDR, 1), "quiet");
    uint32_t rd = get32(bp, O_RAMDISK_IMAGE);
    assert_int_equal(get32(bp, O_RAMDISK_SIZE), sizeof(initrd));
    assert_int_equal(rd % 4096, 0);
    assert_true(rd >= ELF_LOAD + ELF_MEMSZ);
    assert_true(rd + sizeof(initrd) <= 64 * MIB);
    assert_memory_equal(gm_ptr(&f->gm, rd, sizeof(initrd)), initrd, sizeof(initrd));
    assert_int_equal(get64(bp, O_ACPI_RSDP), 0xe0000);
    assert_int_equal(bp[O_E820_ENTRIES], 4);
}

static void test_elf_bad_ident(void **state)
{
    struct fixture *f = *state;
    f->elf[4] = 1;
    EXPECT_BAD(f->elf, ELF_LEN, "ELF32", "need ELF64");
    f->elf[4] = 3;
    EXPECT_BAD(f->elf, ELF_LEN, "unknown class");
    f->elf[4] = 2;
    f->elf[5] = 2;
    EXPECT_BAD(f->elf, ELF_LEN, "big-endian");
    f->elf[5] = 0;
    EXPECT_BAD(f->elf, ELF_LEN, "byte order");
    f->elf[5] = 1;
    put16(f->elf, E_MACHINE, 3); /* EM_386 */
    EXPECT_BAD(f->elf, ELF_LEN, "machine 3", "x86-64");
    put16(f->elf, E_MACHINE, 183); /* aarch64 */
    EXPECT_BAD(f->elf, ELF_LEN, "machine 183");
    put16(f->elf, E_MACHINE, 62);
    put16(f->elf, E_TYPE, 3); /* ET_DYN */
    EXPECT_BAD(f->elf, ELF_LEN, "ET_EXEC");
    put16(f->elf, E_TYPE, 2);
    /* A 52-byte ELF32 header is recognised for what it is, not called truncated. */
    f->elf[4] = 1;
    EXPECT_BAD(f->elf, 52, "ELF32");
}

static void test_elf_bad_phdrs(void **state)
{
    struct fixture *f = *state;
    uint8_t *ph = f->elf + ELF_PHOFF;

    put64(f->elf, E_PHOFF, ELF_LEN - 56);
    EXPECT_BAD(f->elf, ELF_LEN, "program header table", "outside the file");
    put64(f->elf, E_PHOFF, UINT64_MAX - 8);
    EXPECT_BAD(f->elf, ELF_LEN, "program header table", "outside the file");
    put64(f->elf, E_PHOFF, ELF_PHOFF);
    put16(f->elf, E_PHNUM, 0xfff0);
    EXPECT_BAD(f->elf, ELF_LEN, "program header table", "outside the file");
    put16(f->elf, E_PHNUM, 0);
    EXPECT_BAD(f->elf, ELF_LEN, "no program headers");
    put16(f->elf, E_PHNUM, 2);
    put16(f->elf, E_PHENTSIZE, 32);
    EXPECT_BAD(f->elf, ELF_LEN, "program header size 32");
    put16(f->elf, E_PHENTSIZE, 56);

    put64(ph, P_OFFSET, ELF_LEN - 0x80);
    EXPECT_BAD(f->elf, ELF_LEN, "program header 0 lies outside the file");
    put64(ph, P_OFFSET, UINT64_MAX - 4); /* p_offset + p_filesz wraps around */
    EXPECT_BAD(f->elf, ELF_LEN, "program header 0 lies outside the file");
    put64(ph, P_OFFSET, ELF_SEG_OFF);
    put64(ph, P_FILESZ, UINT64_MAX);
    EXPECT_BAD(f->elf, ELF_LEN, "p_filesz", "larger than p_memsz");
    put64(ph, P_FILESZ, ELF_MEMSZ + 1);
    EXPECT_BAD(f->elf, ELF_LEN, "p_filesz 0x3001 is larger than p_memsz 0x3000");
    put64(ph, P_FILESZ, ELF_FILESZ);

    put64(ph, P_PADDR, UINT64_MAX - 0x1000);
    EXPECT_BAD(f->elf, ELF_LEN, "overflows");
    put64(ph, P_PADDR, 0x9000); /* over the page tables */
    EXPECT_BAD(f->elf, ELF_LEN, "below 1 MiB");
    put64(ph, P_PADDR, ELF_LOAD);

    put64(f->elf, E_ENTRY, ELF_LOAD + ELF_MEMSZ);
    EXPECT_BAD(f->elf, ELF_LEN, "entry point 0x103000");
    put64(f->elf, E_ENTRY, ELF_ENTRY);

    put32(ph, P_TYPE, 6); /* PT_PHDR: nothing left to load */
    EXPECT_BAD(f->elf, ELF_LEN, "no PT_LOAD");
}

static void test_elf_outside_guest_ram(void **state)
{
    struct fixture *f = *state;
    uint8_t *ph = f->elf + ELF_PHOFF;
    uint64_t where[] = { 256 * MIB, 64 * MIB - 0x1000, 0xfec00000ULL, 5 * GIB };
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        put64(ph, P_PADDR, where[i]);
        put64(f->elf, E_ENTRY, where[i]);
        struct linux_kernel_info info;
        vmk_error *err = NULL;
        assert_int_equal(linux_kernel_parse(f->elf, ELF_LEN, "elf", &info, &err), VMK_OK);
        struct linux_boot_entry e;
        vmk_result r =
            linux_boot_load_buffers(&f->gm, f->elf, ELF_LEN, "elf", NULL, 0, "", 0, &e, &err);
        check_error(r, err, VMK_ERR_BAD_IMAGE, "elf: ", "program header 0", "not inside guest RAM",
                    NO_MORE);
        vmk_error_free(err);
    }
}

static void test_elf_truncated_every_length(void **state)
{
    struct fixture *f = *state;
    for (size_t len = 0; len < ELF_LEN; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, f->elf, len);
        struct linux_kernel_info info;
        vmk_error *err = NULL;
        vmk_result r = linux_kernel_parse(copy, len, "img.bin", &info, &err);
        assert_int_equal(r, VMK_ERR_BAD_IMAGE);
        const char *msg = vmk_error_message(err);
        assert_true(strncmp(msg, "img.bin: ", 9) == 0);
        if (!strstr(msg, "truncated") && !strstr(msg, "outside the file"))
            fail_msg("length %zu: unclear message \"%s\"", len, msg);
        vmk_error_free(err);
        free(copy);
    }
}

/* Random byte flips in the headers: whatever the verdict, nothing may crash (ASan watches). */
static void test_mutations_do_not_crash(void **state)
{
    struct fixture *f = *state;
    uint32_t seed = 12345;
    for (int round = 0; round < 3000; round++) {
        int use_elf = round & 1;
        size_t len = use_elf ? ELF_LEN : BZ_LEN;
        size_t span = use_elf ? ELF_SEG_OFF : 0x290;
        uint8_t *img = use_elf ? make_elf() : make_bzimage();
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t off = (seed >> 8) % span;
            seed = seed * 1103515245u + 12345u;
            img[off] = (uint8_t)(seed >> 16);
        }
        struct linux_boot_entry e;
        vmk_error *err = NULL;
        uint8_t initrd[64] = { 0 };
        vmk_result r = linux_boot_load_buffers(&f->gm, img, len, "m", initrd, sizeof(initrd), "c",
                                               0, &e, &err);
        assert_true(r == VMK_OK || (err && vmk_error_message(err)[0] == 'm'));
        vmk_error_free(err);
        free(img);
    }
}

/* ---- e820 ------------------------------------------------------------------------------- */

static void test_e820_64m(void **state)
{
    struct fixture *f = *state;
    struct e820_entry_out m[8];
    assert_int_equal(x86_e820_build(&f->gm, m, 8), 4);
    assert_int_equal(m[0].addr, 0);
    assert_int_equal(m[0].size, X86_EBDA_START);
    assert_int_equal(m[0].type, 1);
    assert_int_equal(m[1].addr, X86_EBDA_START);
    assert_int_equal(m[1].addr + m[1].size, 0xa0000);
    assert_int_equal(m[1].type, 2);
    assert_int_equal(m[2].addr, X86_ACPI_ADDR);
    assert_int_equal(m[2].addr + m[2].size, X86_HIGH_MEMORY);
    assert_int_equal(m[2].type, 2);
    assert_int_equal(m[3].addr, X86_HIGH_MEMORY);
    assert_int_equal(m[3].addr + m[3].size, 64 * MIB);
    assert_int_equal(m[3].type, 1);
    /* A short array gets the first entries only. */
    assert_int_equal(x86_e820_build(&f->gm, m, 2), 2);
    assert_int_equal(x86_e820_build(&f->gm, m, 0), 0);
}

static void test_e820_5g(void **state)
{
    (void)state;
    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 5 * GIB), 0);
    struct e820_entry_out m[8];
    assert_int_equal(x86_e820_build(&gm, m, 8), 5);
    assert_int_equal(m[3].addr, X86_HIGH_MEMORY);
    assert_int_equal(m[3].addr + m[3].size, GM_LOW_RAM_LIMIT);
    assert_int_equal(m[3].type, 1);
    assert_int_equal(m[4].addr, 4 * GIB);
    assert_int_equal(m[4].size, 5 * GIB - GM_LOW_RAM_LIMIT);
    assert_int_equal(m[4].type, 1);
    uint64_t ram = 0;
    for (int i = 0; i < 5; i++)
        if (m[i].type == 1)
            ram += m[i].size;
    /* All RAM but the EBDA and the ACPI/BIOS area below 1 MiB. */
    assert_int_equal(ram, 5 * GIB - (X86_HIGH_MEMORY - X86_EBDA_START));

    /* The zero page carries the same five entries, and the initrd stays below 3 GiB. */
    uint8_t *bz = make_bzimage();
    uint8_t initrd[4096] = { 1 };
    struct linux_boot_entry e;
    vmk_error *err = NULL;
    assert_int_equal(
        linux_boot_load_buffers(&gm, bz, BZ_LEN, "bz", initrd, sizeof(initrd), "", 0, &e, &err),
        VMK_OK);
    const uint8_t *bp = gm_ptr(&gm, X86_BOOT_PARAMS_ADDR, 4096);
    assert_int_equal(bp[O_E820_ENTRIES], 5);
    assert_int_equal(get64(bp, O_E820_TABLE + 4 * 20), 4 * GIB);
    assert_int_equal(get64(bp, O_E820_TABLE + 4 * 20 + 8), 5 * GIB - GM_LOW_RAM_LIMIT);
    assert_int_equal(get32(bp, O_RAMDISK_IMAGE), 0x7fffffff + 1ULL - 4096);
    free(bz);
    guest_memory_destroy(&gm);
}

/* ---- files ------------------------------------------------------------------------------ */

static void test_probe_errors(void **state)
{
    struct fixture *f = *state;
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/does-not-exist", f->dir);
    vmk_result r = linux_kernel_probe(path, &info, &err);
    check_error(r, err, VMK_ERR_IO, path, "cannot open", "No such file or directory", NO_MORE);
    assert_int_equal(vmk_error_errno(err), ENOENT);
    assert_true(strncmp(vmk_error_message(err), "kernel ", 7) == 0);
    vmk_error_free(err);
    err = NULL;

    r = linux_kernel_probe(f->dir, &info, &err);
    check_error(r, err, VMK_ERR_IO, f->dir, "Is a directory", NO_MORE);
    assert_int_equal(vmk_error_errno(err), EISDIR);
    vmk_error_free(err);
    err = NULL;

    snprintf(path, sizeof(path), "%s/empty", f->dir);
    tf_write_file(path, "", 0);
    r = linux_kernel_probe(path, &info, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, path, "truncated: 0 bytes", NO_MORE);
    vmk_error_free(err);
    err = NULL;

    r = linux_kernel_probe("/dev/null", &info, &err);
    check_error(r, err, VMK_ERR_IO, "/dev/null", "not a regular file", NO_MORE);
    vmk_error_free(err);
    err = NULL;

    r = linux_kernel_probe(NULL, &info, &err);
    check_error(r, err, VMK_ERR_INVALID_ARGUMENT, NO_MORE);
    vmk_error_free(err);
}

static void test_load_from_files(void **state)
{
    struct fixture *f = *state;
    char kpath[128], ipath[128], bad[128];
    snprintf(kpath, sizeof(kpath), "%s/kernel", f->dir);
    snprintf(ipath, sizeof(ipath), "%s/initrd", f->dir);
    snprintf(bad, sizeof(bad), "%s/nope", f->dir);
    tf_write_file(kpath, f->bz, BZ_LEN);
    size_t ilen = 3 * MIB + 17;
    uint8_t *initrd = malloc(ilen);
    assert_non_null(initrd);
    for (size_t i = 0; i < ilen; i++)
        initrd[i] = (uint8_t)(i * 13 + (i >> 12));
    tf_write_file(ipath, initrd, ilen);

    struct linux_kernel_info info;
    vmk_error *err = NULL;
    assert_int_equal(linux_kernel_probe(kpath, &info, &err), VMK_OK);
    assert_int_equal(info.format, LINUX_KERNEL_BZIMAGE);

    struct linux_boot_request req = {
        .kernel_path = kpath, .initrd_path = ipath, .cmdline = "init=/bin/sh", .rsdp_addr = 0xe0000
    };
    struct linux_boot_entry e;
    assert_int_equal(linux_boot_load(&f->gm, &req, &e, &err), VMK_OK);
    assert_null(err);
    assert_int_equal(e.rip, BZ_PREF + 0x200);
    const uint8_t *bp = bp_of(f);
    uint32_t rd = get32(bp, O_RAMDISK_IMAGE);
    assert_int_equal(get32(bp, O_RAMDISK_SIZE), ilen);
    assert_memory_equal(gm_ptr(&f->gm, rd, ilen), initrd, ilen);
    assert_string_equal((const char *)gm_ptr(&f->gm, X86_CMDLINE_ADDR, 1), "init=/bin/sh");
    assert_int_equal(get64(bp, O_ACPI_RSDP), 0xe0000);

    /* No initrd and no command line. */
    req.initrd_path = NULL;
    req.cmdline = NULL;
    assert_int_equal(linux_boot_load(&f->gm, &req, &e, &err), VMK_OK);
    assert_int_equal(get32(bp_of(f), O_RAMDISK_SIZE), 0);

    /* Errors name the file they are about. */
    req.initrd_path = bad;
    vmk_result r = linux_boot_load(&f->gm, &req, &e, &err);
    check_error(r, err, VMK_ERR_IO, "initrd ", bad, "No such file or directory", NO_MORE);
    vmk_error_free(err);
    err = NULL;
    req.initrd_path = f->dir;
    r = linux_boot_load(&f->gm, &req, &e, &err);
    check_error(r, err, VMK_ERR_IO, "initrd ", f->dir, "Is a directory", NO_MORE);
    vmk_error_free(err);
    err = NULL;
    snprintf(bad, sizeof(bad), "%s/empty", f->dir);
    tf_write_file(bad, "", 0);
    req.initrd_path = bad;
    r = linux_boot_load(&f->gm, &req, &e, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, "initrd ", bad, "empty", NO_MORE);
    vmk_error_free(err);
    err = NULL;

    req.initrd_path = ipath;
    req.kernel_path = ipath; /* the initrd is not a kernel */
    r = linux_boot_load(&f->gm, &req, &e, &err);
    check_error(r, err, VMK_ERR_BAD_IMAGE, "kernel ", ipath, NO_MORE);
    vmk_error_free(err);
    err = NULL;

    req.kernel_path = NULL;
    r = linux_boot_load(&f->gm, &req, &e, &err);
    check_error(r, err, VMK_ERR_INVALID_ARGUMENT, NO_MORE);
    vmk_error_free(err);
    free(initrd);
}

/* A real kernel, when one is around: /boot, $VMKIT_TEST_KERNEL, or guest/cache of the source
 * tree (searched from the working directory upwards, as meson runs tests in the build tree). */
static char *find_real_kernel(void)
{
    const char *env = getenv("VMKIT_TEST_KERNEL");
    if (env && *env && access(env, R_OK) == 0)
        return strdup(env);
    static const char *const patterns[] = {
        "/boot/vmlinuz-*",
        "guest/cache/vmlinuz*",
        "guest/cache/*/vmlinuz*",
        "guest/cache/*/boot/vmlinuz*",
        "guest/cache/*/*/boot/vmlinuz*",
    };
    char prefix[64] = "";
    for (int up = 0; up < 5; up++) {
        for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
            if (up > 0 && patterns[i][0] == '/')
                continue;
            char pat[256];
            snprintf(pat, sizeof(pat), "%s%s", patterns[i][0] == '/' ? "" : prefix, patterns[i]);
            glob_t g;
            if (glob(pat, 0, NULL, &g) == 0) {
                for (size_t j = 0; j < g.gl_pathc; j++) {
                    if (access(g.gl_pathv[j], R_OK) == 0) {
                        char *p = strdup(g.gl_pathv[j]);
                        globfree(&g);
                        return p;
                    }
                }
            }
            globfree(&g);
        }
        strcat(prefix, "../");
    }
    return NULL;
}

static void test_real_kernel(void **state)
{
    (void)state;
    char *path = find_real_kernel();
    if (!path) {
        print_message("# no real kernel found (/boot/vmlinuz-*, guest/cache, VMKIT_TEST_KERNEL)\n");
        skip();
    }
    print_message("# real kernel: %s\n", path);
    struct linux_kernel_info info;
    vmk_error *err = NULL;
    vmk_result r = linux_kernel_probe(path, &info, &err);
    if (r != VMK_OK)
        fail_msg("%s", vmk_error_message(err));
    assert_int_equal(info.format, LINUX_KERNEL_BZIMAGE);
    assert_true(info.protocol_version >= 0x020c);
    assert_true(info.load_addr >= X86_HIGH_MEMORY);
    assert_int_equal(info.entry, info.load_addr + 0x200);

    struct guest_memory gm;
    assert_int_equal(guest_memory_init(&gm, 512 * MIB), 0);
    struct linux_boot_request req = { .kernel_path = path, .cmdline = "console=ttyS0" };
    struct linux_boot_entry e;
    r = linux_boot_load(&gm, &req, &e, &err);
    if (r != VMK_OK)
        fail_msg("%s", vmk_error_message(err));
    assert_int_equal(e.rip, info.load_addr + 0x200);
    const uint8_t *bp = gm_ptr(&gm, X86_BOOT_PARAMS_ADDR, 4096);
    assert_memory_equal(bp + O_HEADER, "HdrS", 4);
    assert_int_equal(bp[O_SENTINEL], 0);

    /* Prefixes of the real file: every short one, then a stride through the rest. */
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    assert_true(size > 0);
    uint8_t *img = malloc((size_t)size);
    assert_non_null(img);
    assert_int_equal(fread(img, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    for (size_t len = 0; len < (size_t)size; len += len < 0x2000 ? 1 : 65521) {
        r = linux_kernel_parse(img, len, "real", &info, &err);
        if (r != VMK_OK) {
            check_error(r, err, VMK_ERR_BAD_IMAGE, "real: ", "truncated", NO_MORE);
            vmk_error_free(err);
            err = NULL;
        }
    }
    free(img);
    guest_memory_destroy(&gm);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bzimage_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_no_initrd_no_cmdline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_not_relocatable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_setup_sects_zero_means_four, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_truncated_every_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_bad_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_old_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_no_64bit_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_header_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_setup_sects_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_too_big_for_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_too_big, setup, teardown),
        cmocka_unit_test(test_initrd_place),
        cmocka_unit_test_setup_teardown(test_elf_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_bad_ident, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_bad_phdrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_outside_guest_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_truncated_every_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations_do_not_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e820_64m, setup, teardown),
        cmocka_unit_test(test_e820_5g),
        cmocka_unit_test_setup_teardown(test_probe_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_from_files, setup, teardown),
        cmocka_unit_test(test_real_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
