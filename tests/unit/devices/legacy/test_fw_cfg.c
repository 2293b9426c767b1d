/* fw_cfg as firmware drives it: the selector and data ports, the file directory read
 * by raw offsets from QEMU's docs/specs/fw_cfg.rst, and DMA descriptors in fake guest
 * RAM, hostile ones included. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/bus.h"
#include "core/guest_memory.h"
#include "devices/legacy/fw_cfg.h"

#define RAM_GPA  0x10000ULL
#define RAM_SIZE 0x10000ULL
#define HIGH_GPA 0x100000000ULL /* a second region, so descriptors can sit above 4 GiB */
#define HIGH_LEN 0x1000ULL
#define DESC     (RAM_GPA + 0x100) /* where the tests put descriptors */
#define BUF      (RAM_GPA + 0x1000)

struct fixture {
    uint8_t *ram, *high;
    struct guest_memory gm;
    struct fw_cfg *fc;
    unsigned writes;
    uint32_t write_offset, write_len;
    uint8_t written[16];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->ram = calloc(1, RAM_SIZE);
    f->high = calloc(1, HIGH_LEN);
    guest_memory_init_empty(&f->gm);
    if (!f->ram || !f->high || gm_add_region(&f->gm, RAM_GPA, RAM_SIZE, f->ram) != 0 ||
        gm_add_region(&f->gm, HIGH_GPA, HIGH_LEN, f->high) != 0)
        return -1;
    f->fc = fw_cfg_new(&f->gm);
    if (!f->fc)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fw_cfg_free(f->fc);
    free(f->ram);
    free(f->high);
    free(f);
    return 0;
}

static uint8_t *host(struct fixture *f, uint64_t gpa)
{
    return gpa >= HIGH_GPA ? f->high + (gpa - HIGH_GPA) : f->ram + (gpa - RAM_GPA);
}

static void sel(struct fw_cfg *fc, uint16_t key)
{
    const uint8_t v[2] = { (uint8_t)key, (uint8_t)(key >> 8) };
    fw_cfg_io_ops.write(fc, FW_CFG_IO_SELECTOR, v, 2);
}

static uint8_t data_byte(struct fw_cfg *fc)
{
    uint8_t b = 0x5a;
    fw_cfg_io_ops.read(fc, FW_CFG_IO_DATA, &b, 1);
    return b;
}

static void data_read(struct fw_cfg *fc, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = data_byte(fc);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_desc(struct fixture *f, uint64_t at, uint32_t control, uint32_t len, uint64_t addr)
{
    uint8_t *d = host(f, at);
    put_be32(d, control);
    put_be32(d + 4, len);
    put_be32(d + 8, (uint32_t)(addr >> 32));
    put_be32(d + 12, (uint32_t)addr);
}

/* Starts the descriptor at desc the way OVMF does: high half, then low half, each a
 * byte-swapped 32-bit port write. */
static void kick(struct fw_cfg *fc, uint64_t desc)
{
    uint8_t hi[4], lo[4];
    put_be32(hi, (uint32_t)(desc >> 32));
    put_be32(lo, (uint32_t)desc);
    fw_cfg_io_ops.write(fc, FW_CFG_IO_DMA, hi, 4);
    fw_cfg_io_ops.write(fc, FW_CFG_IO_DMA + 4, lo, 4);
}

/* Runs one descriptor at DESC and returns the control word the device wrote back. */
static uint32_t dma(struct fixture *f, uint32_t control, uint32_t len, uint64_t addr)
{
    put_desc(f, DESC, control, len, addr);
    kick(f->fc, DESC);
    return be32(host(f, DESC));
}

static void test_signature_and_id(void **state)
{
    struct fixture *f = *state;
    uint8_t b[8];
    sel(f->fc, FW_CFG_SIGNATURE);
    data_read(f->fc, b, 6);
    assert_memory_equal(b, "QEMU\0\0", 6); /* past the end: zeroes */

    sel(f->fc, FW_CFG_ID);
    data_read(f->fc, b, 4);
    assert_int_equal(b[0], FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
    assert_int_equal(b[1] | b[2] | b[3], 0);

    /* The DMA register reads back as "QEMU CFG", in whole or in halves. */
    memset(b, 0, sizeof(b));
    fw_cfg_io_ops.read(f->fc, FW_CFG_IO_DMA, b, 8);
    assert_memory_equal(b, "QEMU CFG", 8);
    fw_cfg_io_ops.read(f->fc, FW_CFG_IO_DMA + 4, b, 4);
    assert_memory_equal(b, " CFG", 4);
    /* The selector is write-only. */
    fw_cfg_io_ops.read(f->fc, FW_CFG_IO_SELECTOR, b, 2);
    assert_int_equal(b[0] & b[1], 0xff);

    /* Without guest memory there is no DMA: no feature bit, no register. */
    struct fw_cfg *plain = fw_cfg_new(NULL);
    assert_non_null(plain);
    sel(plain, FW_CFG_ID);
    assert_int_equal(data_byte(plain), FW_CFG_ID_TRADITIONAL);
    fw_cfg_io_ops.read(plain, FW_CFG_IO_DMA, b, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(b[i], 0xff);
    fw_cfg_free(plain);
    fw_cfg_free(NULL);
}

static void test_directory_sorted(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = { "etc/zeta", "bootorder", "etc/acpi/rsdp" };
    static const unsigned sizes[] = { 3, 300, 36 };
    uint8_t content[300];
    memset(content, 7, sizeof(content));
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(fw_cfg_add_file(f->fc, names[i], content, sizes[i]),
                         FW_CFG_FILE_FIRST + i);

    uint8_t dir[4 + 3 * FW_CFG_DIR_ENTRY + 4];
    sel(f->fc, FW_CFG_FILE_DIR);
    data_read(f->fc, dir, sizeof(dir));
    assert_int_equal(be32(dir), 3);
    /* Sorted by name; keys stay in the order the files were added. */
    static const unsigned order[] = { 1, 2, 0 };
    for (unsigned i = 0; i < 3; i++) {
        const uint8_t *e = dir + 4 + i * FW_CFG_DIR_ENTRY;
        unsigned want = order[i];
        assert_int_equal(be32(e), sizes[want]);
        assert_int_equal(e[4] << 8 | e[5], FW_CFG_FILE_FIRST + want);
        assert_int_equal(e[6] | e[7], 0);
        assert_string_equal((const char *)e + 8, names[want]);
        for (size_t k = 8 + strlen(names[want]); k < FW_CFG_DIR_ENTRY; k++)
            assert_int_equal(e[k], 0);
    }
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(dir[4 + 3 * FW_CFG_DIR_ENTRY + i], 0);
}

static void test_file_read_and_select(void **state)
{
    struct fixture *f = *state;
    const char text[] = "hello, firmware";
    int key = fw_cfg_add_file(f->fc, "opt/org.vmkit/greeting", text, sizeof(text));
    assert_int_equal(key, FW_CFG_FILE_FIRST);
    uint8_t b[sizeof(text) + 4];
    sel(f->fc, (uint16_t)key);
    data_read(f->fc, b, 5);
    assert_memory_equal(b, "hello", 5);
    /* A new selection starts from the beginning again. */
    sel(f->fc, (uint16_t)key);
    data_read(f->fc, b, sizeof(b));
    assert_memory_equal(b, text, sizeof(text));
    for (size_t i = sizeof(text); i < sizeof(b); i++)
        assert_int_equal(b[i], 0);
    /* Bit 14 (the old write mode) selects the same item. */
    sel(f->fc, (uint16_t)(key | 0x4000));
    assert_int_equal(data_byte(f->fc), 'h');
    /* A key nobody set reads zeroes. */
    sel(f->fc, 0x1234);
    assert_int_equal(data_byte(f->fc), 0);
    /* Data port writes are ignored; wider data reads are not the data port. */
    sel(f->fc, (uint16_t)key);
    const uint8_t w = 'X';
    fw_cfg_io_ops.write(f->fc, FW_CFG_IO_DATA, &w, 1);
    uint8_t two[2];
    fw_cfg_io_ops.read(f->fc, FW_CFG_IO_DATA, two, 2);
    assert_int_equal(two[0] & two[1], 0xff);
    assert_int_equal(data_byte(f->fc), 'h');
}

static void test_items_and_refusals(void **state)
{
    struct fixture *f = *state;
    const uint16_t cpus = 4;
    assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_NB_CPUS, &cpus, 2), 0);
    assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_MAX_CPUS, &cpus, 2), 0);
    const uint16_t eight = 8;
    assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_NB_CPUS, &eight, 2), 0); /* replaced */
    assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_ARCH_LOCAL | 3, "arch", 4), 0);
    sel(f->fc, FW_CFG_NB_CPUS);
    assert_int_equal(data_byte(f->fc), 8);
    /* Replaced with something shorter while selected and read to its end: the offset
     * stays inside the new item. */
    assert_int_equal(data_byte(f->fc), 0);
    assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_NB_CPUS, &eight, 1), 0);
    memset(host(f, BUF), 0xaa, 4);
    assert_int_equal(dma(f, FW_CFG_DMA_READ, 4, BUF), 0);
    assert_memory_equal(host(f, BUF), "\0\0\0\0", 4);
    sel(f->fc, FW_CFG_NB_CPUS);
    assert_int_equal(data_byte(f->fc), 8);
    assert_int_equal(data_byte(f->fc), 0);
    sel(f->fc, FW_CFG_ARCH_LOCAL | 3);
    assert_int_equal(data_byte(f->fc), 'a');

    /* Built-in keys, the file range and the write bit are not the caller's. */
    const uint16_t bad_keys[] = { FW_CFG_SIGNATURE, FW_CFG_ID, FW_CFG_FILE_DIR, FW_CFG_FILE_FIRST,
                                  0x3fff,           0x4005,    0xc005 };
    for (unsigned i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        assert_int_equal(fw_cfg_add_item(f->fc, bad_keys[i], "x", 1), -EINVAL);

    char name[FW_CFG_NAME_MAX + 1];
    memset(name, 'n', sizeof(name));
    name[FW_CFG_NAME_MAX] = '\0';
    assert_int_equal(fw_cfg_add_file(f->fc, name, "x", 1), -EINVAL); /* 56 bytes */
    name[FW_CFG_NAME_MAX - 1] = '\0';
    assert_int_equal(fw_cfg_add_file(f->fc, name, "x", 1), FW_CFG_FILE_FIRST); /* 55 */
    assert_int_equal(fw_cfg_add_file(f->fc, name, "y", 1), -EEXIST);
    assert_int_equal(fw_cfg_add_file(f->fc, "", "x", 1), -EINVAL);
    assert_int_equal(fw_cfg_add_file(f->fc, NULL, "x", 1), -EINVAL);
    assert_int_equal(fw_cfg_add_file(f->fc, "etc/empty", NULL, 0), FW_CFG_FILE_FIRST + 1);
    sel(f->fc, FW_CFG_FILE_DIR);
    uint8_t count[4];
    data_read(f->fc, count, 4);
    assert_int_equal(be32(count), 2);
}

static void test_dma_read_skip_select(void **state)
{
    struct fixture *f = *state;
    uint8_t content[200];
    for (unsigned i = 0; i < sizeof(content); i++)
        content[i] = (uint8_t)(i + 1);
    int key = fw_cfg_add_file(f->fc, "etc/blob", content, sizeof(content));
    assert_true(key > 0);

    uint8_t *buf = host(f, BUF);
    assert_int_equal(dma(f, (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 10, BUF), 0);
    assert_memory_equal(buf, content, 10);
    /* The DMA and the data port share the offset. */
    assert_int_equal(data_byte(f->fc), 11);
    assert_int_equal(dma(f, FW_CFG_DMA_SKIP, 9, 0), 0);
    assert_int_equal(dma(f, FW_CFG_DMA_READ, 5, BUF), 0);
    assert_memory_equal(buf, content + 20, 5);

    /* Past the end: the rest of the item, then zeroes. */
    memset(buf, 0xaa, 64);
    assert_int_equal(dma(f, FW_CFG_DMA_SKIP, 170, 0), 0);
    assert_int_equal(dma(f, FW_CFG_DMA_READ, 20, BUF), 0);
    assert_memory_equal(buf, content + 195, 5);
    for (unsigned i = 5; i < 20; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(buf[20], 0xaa);
    /* Skipping past the end stops there; reading then gives zeroes. */
    assert_int_equal(dma(f, FW_CFG_DMA_SKIP, 0xffffffff, 0), 0);
    assert_int_equal(data_byte(f->fc), 0);

    /* Select alone, then read through the port; a zero-length read touches nothing. */
    assert_int_equal(dma(f, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT, 0, 0), 0);
    assert_int_equal(dma(f, FW_CFG_DMA_READ, 0, 0xdead0000000ULL), 0);
    assert_int_equal(data_byte(f->fc), 'Q');

    /* A descriptor above 4 GiB, started by one 8-byte write; the register is 0 again
     * after it, so a lone low half later names a 32-bit address. */
    uint64_t hi_desc = HIGH_GPA + 0x40;
    put_desc(f, hi_desc, (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 4,
             HIGH_GPA + 0x100);
    uint8_t reg[8];
    put_be32(reg, (uint32_t)(hi_desc >> 32));
    put_be32(reg + 4, (uint32_t)hi_desc);
    fw_cfg_io_ops.write(f->fc, FW_CFG_IO_DMA, reg, 8);
    assert_int_equal(be32(host(f, hi_desc)), 0);
    assert_memory_equal(host(f, HIGH_GPA + 0x100), content, 4);
    put_desc(f, DESC, FW_CFG_DMA_READ, 2, BUF);
    put_be32(reg, (uint32_t)DESC);
    fw_cfg_io_ops.write(f->fc, FW_CFG_IO_DMA + 4, reg, 4);
    assert_int_equal(be32(host(f, DESC)), 0);
    assert_memory_equal(buf, content + 4, 2);
}

static void test_dma_hostile(void **state)
{
    struct fixture *f = *state;
    uint8_t content[64];
    memset(content, 0x11, sizeof(content));
    int key = fw_cfg_add_file(f->fc, "etc/ro", content, sizeof(content));
    assert_true(key > 0);
    const uint32_t rd = (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ;
    uint8_t *snapshot = malloc(RAM_SIZE);
    assert_non_null(snapshot);

    /* Data address outside RAM, straddling its end, wrapping, or a length no RAM
     * holds: the error bit, and no byte of RAM but the control word changes. */
    const struct {
        uint32_t len;
        uint64_t addr;
    } bad[] = {
        { 16, 0x1000 },
        { 16, RAM_GPA + RAM_SIZE - 8 },
        { 0x20, 0xfffffffffffffff0ULL },
        { 0xffffffff, BUF },
        { 16, HIGH_GPA + HIGH_LEN },
        /* Over the descriptor itself. */
        { 64, DESC - 8 },
        { 1, DESC + 15 },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_desc(f, DESC, rd, bad[i].len, bad[i].addr);
        memcpy(snapshot, f->ram, RAM_SIZE);
        kick(f->fc, DESC);
        assert_int_equal(be32(host(f, DESC)), FW_CFG_DMA_ERROR);
        put_be32(snapshot + (DESC - RAM_GPA), FW_CFG_DMA_ERROR);
        assert_memory_equal(snapshot, f->ram, RAM_SIZE);
    }

    /* A descriptor outside RAM: nothing is read or written. */
    memcpy(snapshot, f->ram, RAM_SIZE);
    kick(f->fc, 0x2000);
    kick(f->fc, 0xfffffffffffffff8ULL);
    assert_memory_equal(snapshot, f->ram, RAM_SIZE);
    /* One whose control word is RAM but whose tail is not: told of the error. */
    uint64_t edge = RAM_GPA + RAM_SIZE - 8;
    put_be32(host(f, edge), rd);
    kick(f->fc, edge);
    assert_int_equal(be32(host(f, edge)), FW_CFG_DMA_ERROR);

    /* Writes to a read-only item, or with nothing selected, fail and change nothing. */
    memset(host(f, BUF), 0x99, 16);
    assert_int_equal(dma(f, (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 16, BUF),
                     FW_CFG_DMA_ERROR);
    assert_int_equal(dma(f, 0x3333u << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 16, BUF),
                     FW_CFG_DMA_ERROR);
    assert_int_equal(dma(f, rd, 16, BUF), 0);
    assert_memory_equal(host(f, BUF), content, 16);
    free(snapshot);
}

static void on_write(void *ctx, const uint8_t *data, uint32_t offset, uint32_t len)
{
    struct fixture *f = ctx;
    f->writes++;
    f->write_offset = offset;
    f->write_len = len;
    memcpy(f->written, data, sizeof(f->written));
}

static void test_dma_write(void **state)
{
    struct fixture *f = *state;
    const uint8_t zero[16] = { 0 };
    int key = fw_cfg_add_writable_file(f->fc, "etc/rw", zero, sizeof(zero), on_write, f);
    assert_true(key > 0);
    const uint32_t sel_key = (uint32_t)key << 16 | FW_CFG_DMA_SELECT;
    memcpy(host(f, BUF), "abcdefgh", 8);

    assert_int_equal(dma(f, sel_key | FW_CFG_DMA_SKIP, 4, 0), 0);
    assert_int_equal(dma(f, FW_CFG_DMA_WRITE, 8, BUF), 0);
    assert_int_equal(f->writes, 1);
    assert_int_equal(f->write_offset, 4);
    assert_int_equal(f->write_len, 8);
    assert_memory_equal(f->written + 4, "abcdefgh", 8);

    /* Not resizable: a write that would run past the end is refused whole. */
    assert_int_equal(dma(f, FW_CFG_DMA_WRITE, 5, BUF), FW_CFG_DMA_ERROR);
    assert_int_equal(f->writes, 1);
    /* Data from outside RAM: refused too. */
    assert_int_equal(dma(f, sel_key | FW_CFG_DMA_WRITE, 4, 0x3000), FW_CFG_DMA_ERROR);

    /* READ wins over WRITE when both are set. */
    assert_int_equal(dma(f, sel_key | FW_CFG_DMA_READ | FW_CFG_DMA_WRITE, 16, BUF), 0);
    assert_memory_equal(host(f, BUF), "\0\0\0\0abcdefgh\0\0\0\0", 16);
    assert_int_equal(f->writes, 1);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    const uint64_t base = 0x510;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, base, FW_CFG_IO_LEN, &fw_cfg_io_ops, f->fc), 0);
    uint16_t key = FW_CFG_SIGNATURE;
    assert_true(bus_write(&bus, base, &key, 2));
    uint8_t b[4];
    for (unsigned i = 0; i < 4; i++)
        assert_true(bus_read(&bus, base + 1, &b[i], 1));
    assert_memory_equal(b, "QEMU", 4);
    uint64_t sig = 0;
    assert_true(bus_read(&bus, base + 4, &sig, 8));
    assert_memory_equal(&sig, "QEMU CFG", 8);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signature_and_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_sorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_read_and_select, setup, teardown),
        cmocka_unit_test_setup_teardown(test_items_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_read_skip_select, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
