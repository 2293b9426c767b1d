#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/bus.h"
#include "devices/legacy/cfi_flash.h"

#define BLOCK  4096u
#define BLOCKS 8u
#define SIZE   (BLOCK * BLOCKS)

struct fixture {
    char dir[64];
    char path[96];
    uint8_t image[SIZE];
    struct cfi_flash *f;
};

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void read_file(const char *path, void *data, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, data, len, 0), (ssize_t)len);
    close(fd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    /* /var/tmp: more often a disk file system, where fdatasync does real work. */
    strcpy(fx->dir, "/var/tmp/vmkit-test-cfi-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/vars.fd", fx->dir);
    for (unsigned i = 0; i < SIZE; i++)
        fx->image[i] = (uint8_t)(i * 7 + i / BLOCK);
    write_file(fx->path, fx->image, SIZE);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    cfi_flash_free(fx->f);
    chmod(fx->path, 0644);
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static struct cfi_flash *open_ok(const char *path, bool read_only)
{
    struct cfi_flash *f = NULL;
    vmk_error *err = NULL;
    vmk_result r = cfi_flash_open(path, read_only, BLOCK, &f, &err);
    if (r != VMK_OK)
        fail_msg("open %s: %s", path, vmk_error_message(err));
    assert_non_null(f);
    return f;
}

static void wr(struct cfi_flash *f, uint64_t off, uint8_t v)
{
    cfi_flash_ops.write(f, off, &v, 1);
}

static uint8_t rd(struct cfi_flash *f, uint64_t off)
{
    uint8_t v = 0x5a;
    cfi_flash_ops.read(f, off, &v, 1);
    return v;
}

static uint64_t rd_n(struct cfi_flash *f, uint64_t off, unsigned size)
{
    uint8_t b[8];
    uint64_t v = 0;
    memset(b, 0x5a, sizeof(b));
    cfi_flash_ops.read(f, off, b, size);
    for (unsigned i = size; i-- > 0;)
        v = v << 8 | b[i];
    return v;
}

/* What OVMF's flash driver does: a byte program per byte, then read array. */
static void program_bytes(struct cfi_flash *f, uint64_t off, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wr(f, off + i, 0x10);
        wr(f, off + i, data[i]);
    }
    wr(f, off + n - 1, 0xff);
}

static void erase_block(struct cfi_flash *f, uint64_t off)
{
    wr(f, off, 0x20);
    wr(f, off, 0xd0);
}

static void test_read_array(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    assert_int_equal(cfi_flash_size(fx->f), SIZE);
    assert_false(cfi_flash_read_only(fx->f));
    assert_true(cfi_flash_in_read_array(fx->f));
    assert_memory_equal(cfi_flash_array(fx->f), fx->image, SIZE);
    const unsigned sizes[] = { 1, 2, 4, 8 };
    const uint64_t offs[] = { 0, 1, 0x123, BLOCK - 3, SIZE - 8 };
    for (size_t s = 0; s < 4; s++) {
        for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
            uint64_t want = 0;
            for (unsigned i = sizes[s]; i-- > 0;)
                want = want << 8 | fx->image[offs[o] + i];
            assert_int_equal(rd_n(fx->f, offs[o], sizes[s]), want);
        }
    }
}

/* An image that ends inside a page: the array is padded with 0xFF to the page's end, so a
 * memslot can cover whole pages. */
static void test_array_padding(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->path, fx->image, 5 * 512);
    struct cfi_flash *f = NULL;
    assert_int_equal(cfi_flash_open(fx->path, false, 512, &f, NULL), VMK_OK);
    fx->f = f;
    const uint8_t *a = cfi_flash_array(f);
    assert_int_equal((uintptr_t)a % 4096, 0);
    assert_memory_equal(a, fx->image, 5 * 512);
    for (unsigned i = 5 * 512; i < 4096; i++)
        assert_int_equal(a[i], 0xff);
    assert_int_equal(rd(f, 5 * 512), 0xff);
}

static void test_query_table(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    wr(fx->f, 0, 0x98);
    assert_false(cfi_flash_in_read_array(fx->f));
    assert_int_equal(rd(fx->f, 0x10), 'Q');
    assert_int_equal(rd(fx->f, 0x11), 'R');
    assert_int_equal(rd(fx->f, 0x12), 'Y');
    assert_int_equal(rd_n(fx->f, 0x10, 4), 0x01595251); /* "QRY", then command set 0x0001 */
    assert_int_equal(rd_n(fx->f, 0x13, 2), 0x0001);     /* Intel/Sharp command set */
    assert_int_equal(rd_n(fx->f, 0x15, 2), 0x0031);     /* extended table address */
    assert_int_equal(rd_n(fx->f, 0x17, 2), 0);          /* no alternate set */
    assert_int_equal(rd(fx->f, 0x1b), 0x27);            /* Vcc 2.7 .. 3.6 V */
    assert_int_equal(rd(fx->f, 0x1c), 0x36);
    assert_int_equal(rd(fx->f, 0x1d), 0);      /* no Vpp */
    assert_int_equal(rd(fx->f, 0x1f), 4);      /* byte program 16 us */
    assert_int_equal(rd(fx->f, 0x20), 0);      /* no buffered write */
    assert_int_equal(rd(fx->f, 0x21), 10);     /* block erase ~1 s */
    assert_int_equal(rd(fx->f, 0x27), 15);     /* 32 KiB = 2^15 */
    assert_int_equal(rd_n(fx->f, 0x28, 2), 0); /* x8 */
    assert_int_equal(rd_n(fx->f, 0x2a, 2), 0); /* no write buffer */
    assert_int_equal(rd(fx->f, 0x2c), 1);      /* one erase region */
    assert_int_equal(rd_n(fx->f, 0x2d, 2), BLOCKS - 1);
    assert_int_equal(rd_n(fx->f, 0x2f, 2), BLOCK / 256);
    assert_int_equal(rd(fx->f, 0x31), 'P');
    assert_int_equal(rd(fx->f, 0x32), 'R');
    assert_int_equal(rd(fx->f, 0x33), 'I');
    assert_int_equal(rd(fx->f, 0x34), '1');
    assert_int_equal(rd(fx->f, 0x35), '0');
    /* Past the table: zeroes; the table repeats in every block. */
    assert_int_equal(rd(fx->f, 0x200), 0);
    assert_int_equal(rd(fx->f, 3 * BLOCK + 0x10), 'Q');
    /* Back to the image. */
    wr(fx->f, 0, 0xff);
    assert_true(cfi_flash_in_read_array(fx->f));
    assert_int_equal(rd(fx->f, 0x10), fx->image[0x10]);
}

static void test_query_size_not_power_of_two(void **state)
{
    struct fixture *fx = *state;
    /* OVMF_VARS_4M.fd's size: 132 blocks of 4 KiB. */
    static uint8_t big[540672];
    memset(big, 0xff, sizeof(big));
    write_file(fx->path, big, sizeof(big));
    fx->f = open_ok(fx->path, false);
    wr(fx->f, 0, 0x98);
    assert_int_equal(rd(fx->f, 0x27), 20); /* rounded up to 1 MiB */
    assert_int_equal(rd_n(fx->f, 0x2d, 2), 131);
    assert_int_equal(rd_n(fx->f, 0x2f, 2), 16);
}

static void test_read_id(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    wr(fx->f, 0x40, 0x90);
    assert_int_equal(rd(fx->f, 0), 0x89);
    assert_int_equal(rd(fx->f, 1), 0x00);
    assert_int_equal(rd(fx->f, 2), 0); /* unlocked */
    assert_int_equal(rd(fx->f, 2 * BLOCK), 0x89);
    assert_int_equal(rd_n(fx->f, 0, 2), 0x0089);
    wr(fx->f, 0, 0xff);
    assert_int_equal(rd(fx->f, 0), fx->image[0]);
}

static void test_status(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    wr(fx->f, 0x100, 0x70);
    assert_int_equal(rd(fx->f, 0), 0x80);
    assert_int_equal(rd(fx->f, SIZE - 1), 0x80);
    /* Every byte of a wide read is the status, as on an x8 bus. */
    assert_int_equal(rd_n(fx->f, 0x10, 4), 0x80808080);
    assert_int_equal(rd_n(fx->f, 0x10, 8), 0x8080808080808080ull);
    wr(fx->f, 0, 0xff);
    assert_int_equal(rd(fx->f, 0), fx->image[0]);
}

static void test_clear_status(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    /* Clear status goes back to read array and clears the ready bit too. */
    wr(fx->f, 0, 0x70);
    wr(fx->f, 0, 0x50);
    assert_true(cfi_flash_in_read_array(fx->f));
    assert_int_equal(rd(fx->f, 5), fx->image[5]);
    wr(fx->f, 0, 0x70);
    assert_int_equal(rd(fx->f, 0), 0x00);
    /* An error, then clear. */
    wr(fx->f, 0, 0x20);
    wr(fx->f, 0, 0x00);
    assert_int_equal(rd(fx->f, 0), 0xb0);
    wr(fx->f, 0, 0x50);
    wr(fx->f, 0, 0x70);
    assert_int_equal(rd(fx->f, 0), 0x00);
}

/* OVMF's detection: a byte that is not 0x50, 0x70 or 0x00; write 0x50 and read it (must not
 * read 0x50: that is RAM); write 0x70 and read it: 0x00 means flash. */
static void test_ovmf_probe(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    uint64_t off = 0;
    while (off < BLOCK && (rd(fx->f, off) == 0x50 || rd(fx->f, off) == 0x70 || rd(fx->f, off) == 0))
        off++;
    assert_true(off < BLOCK);
    uint8_t orig = rd(fx->f, off);
    wr(fx->f, off, 0x50);
    uint8_t probe = rd(fx->f, off);
    assert_true(probe != 0x50);
    wr(fx->f, off, 0x70);
    probe = rd(fx->f, off);
    assert_true(probe != orig);
    assert_int_equal(probe, 0x00);
    wr(fx->f, off, 0xff);
    assert_int_equal(rd(fx->f, off), orig);
}

static void test_byte_program(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    erase_block(fx->f, BLOCK);
    assert_int_equal(rd(fx->f, BLOCK), 0x80); /* status after the erase */
    const uint8_t data[] = { 0x12, 0x34, 0x56, 0x78, 0x00, 0xff, 0xa5 };
    program_bytes(fx->f, BLOCK + 10, data, sizeof(data));
    assert_true(cfi_flash_in_read_array(fx->f));
    for (size_t i = 0; i < sizeof(data); i++)
        assert_int_equal(rd(fx->f, BLOCK + 10 + i), data[i]);
    assert_int_equal(rd(fx->f, BLOCK + 9), 0xff);
    /* 0x40 programs too; the device reads status until read array. */
    wr(fx->f, BLOCK + 20, 0x40);
    assert_int_equal(rd(fx->f, BLOCK + 20), 0x80); /* between the cycles: status */
    wr(fx->f, BLOCK + 20, 0x3c);
    assert_int_equal(rd(fx->f, BLOCK + 20), 0x80);
    wr(fx->f, 0, 0x70);
    assert_int_equal(rd(fx->f, 0), 0x80);
    wr(fx->f, 0, 0xff);
    assert_int_equal(rd(fx->f, BLOCK + 20), 0x3c);
    /* A program only clears bits: 0x3c then 0xf0 gives 0x30. */
    const uint8_t more = 0xf0;
    program_bytes(fx->f, BLOCK + 20, &more, 1);
    assert_int_equal(rd(fx->f, BLOCK + 20), 0x30);
    /* The file has it all; its size never changed. */
    uint8_t file[SIZE];
    read_file(fx->path, file, SIZE);
    assert_memory_equal(file, cfi_flash_array(fx->f), SIZE);
    assert_int_equal(file_size(fx->path), SIZE);
    assert_int_equal(cfi_flash_flush(fx->f), 0);
}

static void test_block_erase(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    /* The confirm's address picks the block: any address inside it. */
    wr(fx->f, 2 * BLOCK, 0x20);
    wr(fx->f, 2 * BLOCK + 77, 0xd0);
    assert_false(cfi_flash_in_read_array(fx->f));
    assert_int_equal(rd(fx->f, 0), 0x80);
    wr(fx->f, 0, 0xff);
    for (unsigned i = 0; i < BLOCK; i++)
        assert_int_equal(rd(fx->f, 2 * BLOCK + i), 0xff);
    assert_int_equal(rd(fx->f, 2 * BLOCK - 1), fx->image[2 * BLOCK - 1]);
    assert_int_equal(rd(fx->f, 3 * BLOCK), fx->image[3 * BLOCK]);
    uint8_t file[SIZE];
    read_file(fx->path, file, SIZE);
    assert_memory_equal(file, cfi_flash_array(fx->f), SIZE);
    assert_int_equal(file_size(fx->path), SIZE);
}

static void test_erase_bad_confirm(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    wr(fx->f, BLOCK, 0x20);
    wr(fx->f, BLOCK, 0xff); /* not 0xD0 */
    assert_false(cfi_flash_in_read_array(fx->f));
    assert_int_equal(rd(fx->f, BLOCK), 0xb0); /* ready, erase and program error */
    wr(fx->f, BLOCK, 0xff);
    assert_int_equal(rd(fx->f, BLOCK), fx->image[BLOCK]);
    uint8_t file[SIZE];
    read_file(fx->path, file, SIZE);
    assert_memory_equal(file, fx->image, SIZE);
    /* The error stays until cleared; a later erase works. */
    erase_block(fx->f, BLOCK);
    assert_int_equal(rd(fx->f, BLOCK), 0xb0);
    wr(fx->f, 0, 0x50);
    erase_block(fx->f, BLOCK);
    assert_int_equal(rd(fx->f, BLOCK), 0x80);
}

/* The access mode of the descriptor this process holds on path. */
static int open_mode_of(const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return -1;
    for (int fd = 0; fd < 1024; fd++) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = 0;
        if (strcmp(target, real) == 0)
            return fcntl(fd, F_GETFL) & O_ACCMODE;
    }
    return -1;
}

static void test_read_only(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(chmod(fx->path, 0444), 0);
    struct stat before;
    assert_int_equal(stat(fx->path, &before), 0);
    fx->f = open_ok(fx->path, true);
    assert_true(cfi_flash_read_only(fx->f));
    assert_int_equal(open_mode_of(fx->path), O_RDONLY);
    /* Program: refused, locked + program error. */
    const uint8_t zero = 0;
    program_bytes(fx->f, 5, &zero, 1);
    assert_int_equal(rd(fx->f, 5), fx->image[5]);
    wr(fx->f, 5, 0x70);
    assert_int_equal(rd(fx->f, 5), 0x92);
    wr(fx->f, 5, 0x50);
    /* Erase: refused, locked + erase error. */
    erase_block(fx->f, 0);
    assert_int_equal(rd(fx->f, 0), 0xa2);
    wr(fx->f, 0, 0xff);
    assert_memory_equal(cfi_flash_array(fx->f), fx->image, SIZE);
    /* Identifier mode says every block is locked. */
    wr(fx->f, 0, 0x90);
    assert_int_equal(rd(fx->f, 2), 1);
    assert_int_equal(rd(fx->f, BLOCK + 2), 1);
    wr(fx->f, 0, 0xff);
    assert_int_equal(cfi_flash_flush(fx->f), 0);
    cfi_flash_free(fx->f);
    fx->f = NULL;
    uint8_t file[SIZE];
    read_file(fx->path, file, SIZE);
    assert_memory_equal(file, fx->image, SIZE);
    struct stat after;
    assert_int_equal(stat(fx->path, &after), 0);
    assert_int_equal(after.st_size, SIZE);
    assert_true(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
                after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
}

static void test_persists_across_close(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    erase_block(fx->f, 0);
    const uint8_t data[] = "vmkit variable";
    program_bytes(fx->f, 100, data, sizeof(data));
    cfi_flash_free(fx->f);
    fx->f = open_ok(fx->path, false);
    assert_memory_equal(cfi_flash_array(fx->f) + 100, data, sizeof(data));
    assert_int_equal(cfi_flash_array(fx->f)[99], 0xff);
    assert_int_equal(cfi_flash_array(fx->f)[BLOCK], fx->image[BLOCK]);
    assert_int_equal(file_size(fx->path), SIZE);
}

/* A VMM killed without closing: a child programs, goes back to read array, and dies. */
static void test_survives_crash(void **state)
{
    struct fixture *fx = *state;
    const uint8_t data[] = { 0x01, 0x02, 0x03, 0x04 };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cfi_flash *f = NULL;
        if (cfi_flash_open(fx->path, false, BLOCK, &f, NULL) != VMK_OK)
            _exit(1);
        erase_block(f, 3 * BLOCK);
        program_bytes(f, 3 * BLOCK + 8, data, sizeof(data));
        _exit(0); /* no close, no flush */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx->f = open_ok(fx->path, false); /* the lock died with the child */
    const uint8_t *a = cfi_flash_array(fx->f);
    assert_memory_equal(a + 3 * BLOCK + 8, data, sizeof(data));
    assert_int_equal(a[3 * BLOCK], 0xff);
    assert_int_equal(a[4 * BLOCK - 1], 0xff);
    assert_int_equal(a[2 * BLOCK], fx->image[2 * BLOCK]);
    assert_int_equal(file_size(fx->path), SIZE);
}

static void expect_open_error(const char *path, bool read_only, uint32_t block, vmk_result code,
                              const char *fragment)
{
    struct cfi_flash *f = (struct cfi_flash *)1;
    vmk_error *err = NULL;
    assert_int_equal(cfi_flash_open(path, read_only, block, &f, &err), code);
    assert_null(f);
    assert_non_null(err);
    const char *msg = vmk_error_message(err);
    if (!strstr(msg, fragment) || (path && *path && !strstr(msg, path)))
        fail_msg("message \"%s\" lacks \"%s\" or the path", msg, fragment);
    vmk_error_free(err);
}

static void test_bad_sizes(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->path, fx->image, SIZE - 512);
    expect_open_error(fx->path, false, BLOCK, VMK_ERR_INVALID_CONFIG, "multiple");
    expect_open_error(fx->path, true, BLOCK, VMK_ERR_INVALID_CONFIG, "4096");
    write_file(fx->path, fx->image, 0);
    expect_open_error(fx->path, false, BLOCK, VMK_ERR_INVALID_CONFIG, "size 0");
    write_file(fx->path, fx->image, SIZE);
    expect_open_error(fx->path, false, 3000, VMK_ERR_INVALID_CONFIG, "block size 3000");
    expect_open_error(fx->path, false, 128, VMK_ERR_INVALID_CONFIG, "power of two");
    struct cfi_flash *f = NULL;
    assert_int_equal(cfi_flash_open(fx->path, false, 512, &f, NULL), VMK_OK);
    cfi_flash_free(f);
    /* More blocks than the query table can count, more bytes than a flash holds (sparse). */
    assert_int_equal(truncate(fx->path, 65537 * 256), 0);
    expect_open_error(fx->path, false, 256, VMK_ERR_INVALID_CONFIG, "too large");
    assert_int_equal(truncate(fx->path, CFI_FLASH_MAX_SIZE + BLOCK), 0);
    expect_open_error(fx->path, false, BLOCK, VMK_ERR_INVALID_CONFIG, "too large");
    /* Not there, not a file, no path. */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/none.fd", fx->dir);
    expect_open_error(missing, false, BLOCK, VMK_ERR_IO, "cannot open");
    expect_open_error(fx->dir, true, BLOCK, VMK_ERR_INVALID_CONFIG, "not a regular file");
    expect_open_error("", false, BLOCK, VMK_ERR_INVALID_CONFIG, "no path");
    expect_open_error(NULL, false, BLOCK, VMK_ERR_INVALID_CONFIG, "no path");
}

static void test_lock(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    expect_open_error(fx->path, false, BLOCK, VMK_ERR_IO, "lock");
    expect_open_error(fx->path, true, BLOCK, VMK_ERR_IO, "lock");
    cfi_flash_free(fx->f);
    /* Readers share. */
    fx->f = open_ok(fx->path, true);
    struct cfi_flash *g = open_ok(fx->path, true);
    cfi_flash_free(g);
}

static void test_out_of_range(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    static const uint8_t modes[] = { 0xff, 0x70, 0x90, 0x98 };
    for (size_t m = 0; m < sizeof(modes); m++) {
        wr(fx->f, 0, modes[m]);
        assert_int_equal(rd(fx->f, SIZE), 0xff);
        assert_int_equal(rd_n(fx->f, SIZE + 100, 8), UINT64_MAX);
        assert_int_equal(rd_n(fx->f, UINT64_MAX - 3, 8), UINT64_MAX);
    }
    wr(fx->f, 0, 0xff);
    /* Straddling the end: the image's bytes, then ones. */
    uint64_t v = rd_n(fx->f, SIZE - 2, 4);
    assert_int_equal(v, 0xffff0000u | fx->image[SIZE - 1] << 8 | fx->image[SIZE - 2]);
    /* Writes past the end are not commands. */
    wr(fx->f, SIZE, 0x70);
    wr(fx->f, SIZE + 5, 0x20);
    assert_true(cfi_flash_in_read_array(fx->f));
    wr(fx->f, 0, 0x10);
    wr(fx->f, SIZE, 0x00); /* the data cycle is ignored too */
    assert_int_equal(rd(fx->f, 0), 0x80);
    wr(fx->f, 0, 0x00); /* here it programs */
    wr(fx->f, 0, 0xff);
    assert_int_equal(rd(fx->f, 0), 0);
    assert_int_equal(file_size(fx->path), SIZE);
}

static void test_wide_writes(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    erase_block(fx->f, 0);
    /* A 2-byte write is two byte cycles: the command at +0, the data at +1. */
    const uint8_t two[2] = { 0x10, 0x42 };
    cfi_flash_ops.write(fx->f, 8, two, 2);
    wr(fx->f, 0, 0xff);
    assert_int_equal(rd(fx->f, 8), 0xff);
    assert_int_equal(rd(fx->f, 9), 0x42);
    const uint8_t four[4] = { 0xff, 0xff, 0xff, 0xff };
    cfi_flash_ops.write(fx->f, 0, four, 4);
    assert_true(cfi_flash_in_read_array(fx->f));
}

struct mode_log {
    unsigned n;
    bool seen[16];
};

static void log_mode(void *ctx, bool read_array)
{
    struct mode_log *l = ctx;
    if (l->n < 16)
        l->seen[l->n] = read_array;
    l->n++;
}

static void test_mode_listener(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    struct mode_log log = { 0 };
    cfi_flash_set_mode_listener(fx->f, log_mode, &log);
    wr(fx->f, 0, 0xff); /* already in read array: nothing */
    assert_int_equal(log.n, 0);
    const uint8_t b = 0;
    program_bytes(fx->f, 0, &b, 1); /* leave, status, back */
    assert_int_equal(log.n, 2);
    assert_false(log.seen[0]);
    assert_true(log.seen[1]);
    wr(fx->f, 0, 0x98);
    wr(fx->f, 0, 0x70); /* query to status: still out of read array */
    wr(fx->f, 0, 0x50); /* clear status: back */
    assert_int_equal(log.n, 4);
    assert_false(log.seen[2]);
    assert_true(log.seen[3]);
    cfi_flash_set_mode_listener(fx->f, NULL, NULL);
    wr(fx->f, 0, 0x70);
    assert_int_equal(log.n, 4);
}

static void test_bus_wiring(void **state)
{
    struct fixture *fx = *state;
    fx->f = open_ok(fx->path, false);
    const uint64_t base = 0x100000000ull - SIZE;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, base, cfi_flash_size(fx->f), &cfi_flash_ops, fx->f), 0);
    uint32_t v = 0;
    assert_true(bus_read(&bus, base + 0x10, &v, 4));
    assert_memory_equal(&v, fx->image + 0x10, 4);
    uint8_t cmd = 0x98;
    assert_true(bus_write(&bus, base + 0x10, &cmd, 1));
    uint8_t q = 0;
    assert_true(bus_read(&bus, base + 0x10, &q, 1));
    assert_int_equal(q, 'Q');
    bus_destroy(&bus);
}

/* A minimal firmware volume header: the fields the check reads, checksum fixed up. */
static void make_fv(uint8_t *p, uint64_t fv_len)
{
    memset(p, 0, 72);
    for (int i = 0; i < 8; i++)
        p[32 + i] = (uint8_t)(fv_len >> (8 * i));
    memcpy(p + 40, "_FVH", 4);
    p[48] = 72; /* header length */
    p[55] = 2;  /* revision */
    p[56] = 1;  /* block map: 1 block of fv_len */
    for (int i = 0; i < 4; i++)
        p[60 + i] = (uint8_t)(fv_len >> (8 * i));
    uint16_t sum = 0;
    for (int i = 0; i < 72; i += 2)
        sum = (uint16_t)(sum + (p[i] | p[i + 1] << 8));
    sum = (uint16_t)(0x10000 - sum);
    p[50] = (uint8_t)sum;
    p[51] = (uint8_t)(sum >> 8);
}

static void test_firmware_volume(void **state)
{
    (void)state;
    static uint8_t img[4 * 4096];
    memset(img, 0xff, sizeof(img));
    assert_false(cfi_flash_image_is_firmware_volume(img, sizeof(img)));
    assert_false(cfi_flash_image_is_firmware_volume(NULL, 0));
    make_fv(img, sizeof(img));
    assert_true(cfi_flash_image_is_firmware_volume(img, sizeof(img)));
    /* Too short for the volume it claims, or for its header. */
    assert_false(cfi_flash_image_is_firmware_volume(img, sizeof(img) - 1));
    assert_false(cfi_flash_image_is_firmware_volume(img, 60));
    /* A bad checksum. */
    img[20] ^= 1;
    assert_false(cfi_flash_image_is_firmware_volume(img, sizeof(img)));
    /* A volume at a later 4 KiB boundary, after something else. */
    memset(img, 0, 4096);
    make_fv(img + 8192, 8192);
    assert_true(cfi_flash_image_is_firmware_volume(img, sizeof(img)));
    /* ...but not off a boundary. */
    memset(img + 8192, 0, 4096);
    make_fv(img + 8192 + 512, 4096);
    assert_false(cfi_flash_image_is_firmware_volume(img, sizeof(img)));
}

static void check_ovmf_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        skip(); /* the ovmf package is not installed */
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *data = malloc((size_t)st.st_size);
    assert_non_null(data);
    assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    assert_true(cfi_flash_image_is_firmware_volume(data, (size_t)st.st_size));
    free(data);
    /* And it opens read-only as flash with OVMF's block size. */
    assert_int_equal(BLOCK, CFI_FLASH_OVMF_BLOCK_SIZE);
    struct cfi_flash *f = open_ok(path, true);
    assert_int_equal(cfi_flash_size(f), (uint64_t)st.st_size);
    assert_int_equal(cfi_flash_array(f)[40], '_');
    cfi_flash_free(f);
}

static void test_ovmf_code_image(void **state)
{
    (void)state;
    check_ovmf_file("/usr/share/OVMF/OVMF_CODE_4M.fd");
}

static void test_ovmf_vars_image(void **state)
{
    (void)state;
    check_ovmf_file("/usr/share/OVMF/OVMF_VARS_4M.fd");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_read_array),
        T(test_array_padding),
        T(test_query_table),
        T(test_query_size_not_power_of_two),
        T(test_read_id),
        T(test_status),
        T(test_clear_status),
        T(test_ovmf_probe),
        T(test_byte_program),
        T(test_block_erase),
        T(test_erase_bad_confirm),
        T(test_read_only),
        T(test_persists_across_close),
        T(test_survives_crash),
        T(test_bad_sizes),
        T(test_lock),
        T(test_out_of_range),
        T(test_wide_writes),
        T(test_mode_listener),
        T(test_bus_wiring),
        cmocka_unit_test(test_firmware_volume),
        cmocka_unit_test(test_ovmf_code_image),
        cmocka_unit_test(test_ovmf_vars_image),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
