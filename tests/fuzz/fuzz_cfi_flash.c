/* libFuzzer target for the CFI flash (src/devices/legacy/cfi_flash.c): a guest's reads and
 * writes of 1-8 bytes at offsets inside and just past a small flash backed by a memfd, made
 * fresh for each input. Input: a header byte (bit 0: read-only; bit 7: block 1 starts erased;
 * the rest seeds the image), then operations: op (bits 0-1: size 1 << n; bit 2: write; bit 3:
 * write bytes drawn from the command set; bit 4: a wide write made as byte writes), a 16-bit
 * offset, the bytes to write. Checked after every operation: bytes only lose bits except where
 * a whole block became 0xFF (an erase), a read-only flash never changes, reads in read-array
 * mode return the image (0xFF past it), the mode listener agrees with the device; at the end:
 * the file holds exactly the image, its size never changed, and a reopen sees the same bytes. */
#include "devices/legacy/cfi_flash.h"
#include "input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FBLOCK  256u
#define FBLOCKS 4u
#define FSIZE   (FBLOCK * FBLOCKS)
#define PAST    16u  /* offsets this far past the end are tried too */
#define MAX_OPS 1024 /* bounds one input's run */

#define OP_WRITE    0x04
#define OP_COMMANDS 0x08
#define OP_BYTEWISE 0x10

static const uint8_t commands[] = { 0xff, 0x70, 0x50, 0x90, 0x98, 0x10,
                                    0x40, 0x20, 0xd0, 0xe8, 0x60, 0x00 };

struct mode_seen {
    bool read_array;
    unsigned calls;
};

static void on_mode(void *ctx, bool read_array)
{
    struct mode_seen *m = ctx;
    FZ_CHECK(m->read_array != read_array); /* a change, never a repeat */
    m->read_array = read_array;
    m->calls++;
}

/* Every byte of a block lost bits only, or the whole block is erased; may_erase: a write of
 * several bytes held 0xD0, so a block may have been erased and then programmed. */
static void check_transition(const uint8_t *before, const uint8_t *after, bool may_erase)
{
    for (unsigned b = 0; b < FBLOCKS; b++) {
        const uint8_t *o = before + b * FBLOCK, *n = after + b * FBLOCK;
        bool erased = true, gained = false;
        for (unsigned i = 0; i < FBLOCK; i++) {
            erased = erased && n[i] == 0xff;
            gained = gained || (n[i] & (uint8_t)~o[i]) != 0;
        }
        FZ_CHECK(!gained || erased || may_erase);
    }
}

static void seed_op(struct fz_seed *s, uint8_t op, uint16_t off, const uint8_t *bytes)
{
    fz_seed_u8(s, op);
    fz_seed_u16(s, off);
    if (op & OP_WRITE)
        fz_seed_bytes(s, bytes, 1u << (op & 3));
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s = { .n = 0 };
    const uint8_t program = 0x10, erase = 0x20, confirm = 0xd0, array = 0xff, status = 0x70;
    const uint8_t query = 0x98, id = 0x90, clear = 0x50, value = 0x3c;
    /* OVMF's write: program bytes, then read array. */
    fz_seed_u8(&s, 0x40);
    for (uint16_t i = 0; i < 8; i++) {
        seed_op(&s, OP_WRITE, 300 + i, &program);
        seed_op(&s, OP_WRITE, 300 + i, &value);
    }
    seed_op(&s, OP_WRITE, 307, &array);
    seed_op(&s, 2, 300, NULL);
    fz_seed_save(dir, "program", &s);
    /* Erase, read the status, bad confirm, clear, back to the image. */
    s.n = 0;
    fz_seed_u8(&s, 0x12);
    seed_op(&s, OP_WRITE, 512, &erase);
    seed_op(&s, OP_WRITE, 600, &confirm);
    seed_op(&s, 3, 512, NULL);
    seed_op(&s, OP_WRITE, 0, &erase);
    seed_op(&s, OP_WRITE, 0, &status);
    seed_op(&s, 0, 0, NULL);
    seed_op(&s, OP_WRITE, 0, &clear);
    seed_op(&s, OP_WRITE, 0, &array);
    seed_op(&s, 3, 512, NULL);
    fz_seed_save(dir, "erase", &s);
    /* Query and identifier reads, wide, and on a read-only flash a refused program. */
    s.n = 0;
    fz_seed_u8(&s, 0x01);
    seed_op(&s, OP_WRITE, 0, &query);
    seed_op(&s, 3, 0x10, NULL);
    seed_op(&s, 3, 0x2c, NULL);
    seed_op(&s, OP_WRITE, 0, &id);
    seed_op(&s, 1, 0, NULL);
    seed_op(&s, OP_WRITE, 4, &program);
    seed_op(&s, OP_WRITE, 4, &value);
    seed_op(&s, 0, 4, NULL);
    seed_op(&s, OP_WRITE, FSIZE + 2, &array);
    fz_seed_save(dir, "query-id-read-only", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int memfd = -1;
    static char path[64];
    if (memfd < 0) {
        memfd = memfd_create("cfi-flash-fuzz", MFD_CLOEXEC);
        FZ_CHECK(memfd >= 0 && ftruncate(memfd, FSIZE) == 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    }
    struct fz_in in = { .p = data, .n = size };
    uint8_t hdr = fz_u8(&in);
    bool read_only = hdr & 1;
    uint8_t image[FSIZE];
    for (unsigned i = 0; i < FSIZE; i++)
        image[i] = (uint8_t)(i * 31u + (hdr >> 1) * 17u + i / FBLOCK);
    if (hdr & 0x80)
        memset(image + FBLOCK, 0xff, FBLOCK); /* an erased block to program */
    FZ_CHECK(pwrite(memfd, image, FSIZE, 0) == (ssize_t)FSIZE);

    struct cfi_flash *f = NULL;
    FZ_CHECK(cfi_flash_open(path, read_only, FBLOCK, &f, NULL) == VMK_OK);
    struct mode_seen mode = { .read_array = true };
    cfi_flash_set_mode_listener(f, on_mode, &mode);
    const uint8_t *arr = cfi_flash_array(f);
    uint8_t prev[FSIZE];
    memcpy(prev, arr, FSIZE);

    for (int ops = 0; in.n > 0 && ops < MAX_OPS; ops++) {
        uint8_t op = fz_u8(&in);
        unsigned n = 1u << (op & 3);
        uint64_t off = fz_u16(&in) % (FSIZE + PAST);
        uint8_t buf[8];
        if (op & OP_WRITE) {
            for (unsigned i = 0; i < n; i++) {
                uint8_t b = fz_u8(&in);
                buf[i] = (op & OP_COMMANDS) ? commands[b % sizeof(commands)] : b;
            }
            if (op & OP_BYTEWISE) {
                /* What a wide write means, one byte at a time: each step checked. */
                for (unsigned i = 0; i < n; i++) {
                    cfi_flash_ops.write(f, off + i, &buf[i], 1);
                    check_transition(prev, arr, false);
                    memcpy(prev, arr, FSIZE);
                }
            } else {
                cfi_flash_ops.write(f, off, buf, n);
                check_transition(prev, arr, n > 1 && memchr(buf, 0xd0, n));
                memcpy(prev, arr, FSIZE);
            }
            if (read_only)
                FZ_CHECK(memcmp(arr, image, FSIZE) == 0);
        } else {
            bool array_mode = cfi_flash_in_read_array(f);
            cfi_flash_ops.read(f, off, buf, n);
            for (unsigned i = 0; i < n; i++) {
                if (off + i >= FSIZE)
                    FZ_CHECK(buf[i] == 0xff);
                else if (array_mode)
                    FZ_CHECK(buf[i] == arr[off + i]);
            }
        }
        FZ_CHECK(mode.read_array == cfi_flash_in_read_array(f));
    }

    /* The file is the image, the size is unchanged, and a reopen sees it. */
    uint8_t file[FSIZE];
    FZ_CHECK(pread(memfd, file, FSIZE, 0) == (ssize_t)FSIZE);
    FZ_CHECK(memcmp(file, arr, FSIZE) == 0);
    memcpy(prev, arr, FSIZE);
    FZ_CHECK(cfi_flash_flush(f) == 0);
    cfi_flash_free(f);
    struct stat st;
    FZ_CHECK(fstat(memfd, &st) == 0 && st.st_size == FSIZE);
    FZ_CHECK(cfi_flash_open(path, true, FBLOCK, &f, NULL) == VMK_OK);
    FZ_CHECK(memcmp(cfi_flash_array(f), prev, FSIZE) == 0);
    cfi_flash_free(f);
    return 0;
}
