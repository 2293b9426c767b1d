/* libFuzzer target for fw_cfg: a hostile guest on the ports and the DMA interface, against
 * a device made fresh for each input with read-only files, a writable file and numeric
 * items. Guest RAM is two regions inside larger host buffers whose guard bytes must stay
 * untouched; every descriptor in RAM must come back 0 or with the error bit alone; the
 * read-only files must read back unchanged; a writable file's callback must name a range
 * inside it. The input is a list of operations (see the OP_ constants). */
#include "input.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_memory.h"
#include "devices/legacy/fw_cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_GPA  0x1000ULL
#define RAM_LEN  0x10000ULL
#define HIGH_GPA 0x100000000ULL
#define HIGH_LEN 0x1000ULL
#define GUARD    256
#define RW_LEN   40

enum {
    OP_SELECT, /* u16 key through the selector port */
    OP_DATA,   /* u8 count of data port reads */
    /* u16 descriptor offset in RAM, u32 control, u32 length, u32 address offset, u8 how:
     * bit 0 an 8-byte kick, bit 1 a raw 64-bit address (u32 more), bit 2 a short length */
    OP_DMA,
    OP_DMA_RAW,  /* u64 descriptor address, kicked as two halves */
    OP_PORT,     /* u8 offset, u8 size/direction, u64 value: any access to the block */
    OP_POKE,     /* u16 RAM offset, u8 length, bytes */
    OP_ADD_FILE, /* u8 name seed, u8 length: a file added while the guest runs */
    OP_COUNT
};

struct state {
    uint8_t *low, *high; /* host buffers: guard, region, guard */
    struct guest_memory gm;
    struct fw_cfg *fc;
    uint8_t ro[3][300];
    size_t ro_len[3];
    int ro_key[3];
};

static void on_write(void *ctx, const uint8_t *data, uint32_t offset, uint32_t len)
{
    (void)ctx;
    FZ_CHECK(data != NULL && len > 0 && offset <= RW_LEN && len <= RW_LEN - offset);
}

static const char *const ro_names[3] = { "etc/table-loader", "bootorder", "etc/acpi/tables" };

static void make_device(struct state *s)
{
    s->fc = fw_cfg_new(&s->gm);
    FZ_CHECK(s->fc != NULL);
    for (unsigned i = 0; i < 3; i++) {
        s->ro_key[i] = fw_cfg_add_file(s->fc, ro_names[i], s->ro[i], s->ro_len[i]);
        FZ_CHECK(s->ro_key[i] == FW_CFG_FILE_FIRST + (int)i);
    }
    const uint8_t zero[RW_LEN] = { 0 };
    FZ_CHECK(fw_cfg_add_writable_file(s->fc, "etc/rw", zero, sizeof(zero), on_write, s) > 0);
    const uint16_t cpus = 2;
    FZ_CHECK(fw_cfg_add_item(s->fc, FW_CFG_NB_CPUS, &cpus, 2) == 0);
    FZ_CHECK(fw_cfg_add_item(s->fc, FW_CFG_ARCH_LOCAL | 3, s->ro[0], 20) == 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void kick(struct fw_cfg *fc, uint64_t desc, bool whole)
{
    uint8_t reg[8];
    put_be32(reg, (uint32_t)(desc >> 32));
    put_be32(reg + 4, (uint32_t)desc);
    if (whole) {
        fw_cfg_io_ops.write(fc, FW_CFG_IO_DMA, reg, 8);
    } else {
        fw_cfg_io_ops.write(fc, FW_CFG_IO_DMA, reg, 4);
        fw_cfg_io_ops.write(fc, FW_CFG_IO_DMA + 4, reg + 4, 4);
    }
}

/* The control word of a descriptor wholly in RAM must read 0 or just the error bit. */
static void check_done(const struct state *s, uint64_t desc)
{
    const uint8_t *d = gm_ptr(&s->gm, desc, 16);
    if (d) {
        uint32_t c = get_be32(d);
        FZ_CHECK(c == 0 || c == FW_CFG_DMA_ERROR);
    }
}

static void op_dma(struct state *s, struct fz_in *in)
{
    uint64_t desc = RAM_GPA + fz_u16(in) % RAM_LEN;
    uint32_t control = fz_u32(in), len = fz_u32(in), addr32 = fz_u32(in);
    uint8_t how = fz_u8(in);
    /* Mostly near RAM, so transfers land; sometimes anywhere at all. */
    uint64_t addr =
        how & 2 ? (uint64_t)addr32 << 32 | fz_u32(in) : RAM_GPA + addr32 % (RAM_LEN + 64) - 32;
    if (how & 4)
        len %= 512;
    uint8_t *d = gm_ptr(&s->gm, desc, 16);
    if (d) {
        put_be32(d, control);
        put_be32(d + 4, len);
        put_be32(d + 8, (uint32_t)(addr >> 32));
        put_be32(d + 12, (uint32_t)addr);
    }
    kick(s->fc, desc, how & 1);
    check_done(s, desc);
}

static void op_port(struct state *s, struct fz_in *in)
{
    uint8_t offset = fz_u8(in) % FW_CFG_IO_LEN, how = fz_u8(in);
    uint64_t value = fz_u64(in);
    unsigned size = 1u << (how & 3);
    if (how & 4) {
        uint8_t out[8];
        fw_cfg_io_ops.read(s->fc, offset, out, size);
    } else {
        fw_cfg_io_ops.write(s->fc, offset, &value, size);
    }
}

static void op_add_file(struct state *s, struct fz_in *in)
{
    char name[16];
    uint8_t seed = fz_u8(in), len = fz_u8(in);
    snprintf(name, sizeof(name), "opt/f%u", (unsigned)(seed % 8));
    int r = fw_cfg_add_file(s->fc, name, s->ro[1], len);
    FZ_CHECK(r > 0 || r == -EEXIST);
}

/* Each read-only file reads back as it was given, through the ports. */
static void check_files(struct state *s)
{
    for (unsigned i = 0; i < 3; i++) {
        const uint8_t key[2] = { (uint8_t)s->ro_key[i], (uint8_t)(s->ro_key[i] >> 8) };
        fw_cfg_io_ops.write(s->fc, FW_CFG_IO_SELECTOR, key, 2);
        for (size_t k = 0; k < s->ro_len[i] + 2; k++) {
            uint8_t b;
            fw_cfg_io_ops.read(s->fc, FW_CFG_IO_DATA, &b, 1);
            FZ_CHECK(b == (k < s->ro_len[i] ? s->ro[i][k] : 0));
        }
    }
}

static void check_guards(const struct state *s)
{
    for (size_t i = 0; i < GUARD; i++) {
        FZ_CHECK(s->low[i] == 0xcc && s->low[GUARD + RAM_LEN + i] == 0xcc);
        FZ_CHECK(s->high[i] == 0xcc && s->high[GUARD + HIGH_LEN + i] == 0xcc);
    }
}

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof(*s));
    FZ_CHECK(s != NULL);
    s->low = malloc(RAM_LEN + 2 * GUARD);
    s->high = malloc(HIGH_LEN + 2 * GUARD);
    FZ_CHECK(s->low && s->high);
    memset(s->low, 0xcc, RAM_LEN + 2 * GUARD);
    memset(s->high, 0xcc, HIGH_LEN + 2 * GUARD);
    guest_memory_init_empty(&s->gm);
    FZ_CHECK(gm_add_region(&s->gm, RAM_GPA, RAM_LEN, s->low + GUARD) == 0);
    FZ_CHECK(gm_add_region(&s->gm, HIGH_GPA, HIGH_LEN, s->high + GUARD) == 0);
    for (unsigned i = 0; i < 3; i++) {
        s->ro_len[i] = 1 + 97 * i; /* 1, 98, 195 bytes */
        for (size_t k = 0; k < s->ro_len[i]; k++)
            s->ro[i][k] = (uint8_t)(k * 7 + i + 1);
    }
    return s;
}

/* ---- seeds ---- */

static void seed_dma(struct fz_seed *s, uint16_t desc, uint32_t control, uint32_t len,
                     uint32_t addr, uint8_t how)
{
    fz_seed_u8(s, OP_DMA);
    fz_seed_u16(s, desc);
    fz_seed_u32(s, control);
    fz_seed_u32(s, len);
    fz_seed_u32(s, addr + 32); /* op_dma subtracts 32 */
    fz_seed_u8(s, how);
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s = { .n = 0 };
    /* Signature and directory through the ports. */
    fz_seed_u8(&s, OP_SELECT);
    fz_seed_u16(&s, FW_CFG_SIGNATURE);
    fz_seed_u8(&s, OP_DATA);
    fz_seed_u8(&s, 4);
    fz_seed_u8(&s, OP_SELECT);
    fz_seed_u16(&s, FW_CFG_FILE_DIR);
    fz_seed_u8(&s, OP_DATA);
    fz_seed_u8(&s, 200);
    fz_seed_save(dir, "ports", &s);

    /* What OVMF does: select and read by DMA, skip, read on, write the writable file. */
    s.n = 0;
    seed_dma(&s, 0x100, FW_CFG_FILE_DIR << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 4 + 64 * 4,
             0x1000, 0);
    seed_dma(&s, 0x100, (FW_CFG_FILE_FIRST + 2) << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 36, 0,
             1);
    seed_dma(&s, 0x100, FW_CFG_DMA_READ, 300, 0x2000, 4);
    seed_dma(&s, 0x100, (FW_CFG_FILE_FIRST + 3) << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 8,
             0x2000, 0);
    seed_dma(&s, 0x100, FW_CFG_DMA_WRITE, 40, 0x2000, 0);
    fz_seed_save(dir, "dma", &s);

    /* Port accesses of every size, a file added on the fly, a raw descriptor. */
    s.n = 0;
    for (unsigned off = 0; off < FW_CFG_IO_LEN; off += 2) {
        fz_seed_u8(&s, OP_PORT);
        fz_seed_u8(&s, (uint8_t)off);
        fz_seed_u8(&s, (uint8_t)(off & 7));
        fz_seed_u64(&s, 0x0100000000000000ULL | off);
    }
    fz_seed_u8(&s, OP_ADD_FILE);
    fz_seed_u8(&s, 3);
    fz_seed_u8(&s, 50);
    fz_seed_u8(&s, OP_POKE);
    fz_seed_u16(&s, 0x300);
    fz_seed_u8(&s, 16);
    const uint8_t desc[16] = {
        0, 0x24, 0, FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0x30, 0
    };
    fz_seed_bytes(&s, desc, sizeof(desc));
    fz_seed_u8(&s, OP_DMA_RAW);
    fz_seed_u64(&s, RAM_GPA + 0x300);
    fz_seed_save(dir, "mixed", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: the RAM lives as long as the process; the device is
     * made fresh for each input. */
    static struct state *s;
    if (!s)
        s = state_new();
    memset(s->low + GUARD, 0, RAM_LEN);
    memset(s->high + GUARD, 0, HIGH_LEN);
    make_device(s);

    struct fz_in in = { .p = data, .n = size };
    for (unsigned ops = 0; in.n && ops < 256; ops++) {
        switch (fz_u8(&in) % OP_COUNT) {
        case OP_SELECT: {
            uint16_t key = fz_u16(&in);
            fw_cfg_io_ops.write(s->fc, FW_CFG_IO_SELECTOR, &key, 2);
            break;
        }
        case OP_DATA:
            for (unsigned n = fz_u8(&in); n; n--) {
                uint8_t b;
                fw_cfg_io_ops.read(s->fc, FW_CFG_IO_DATA, &b, 1);
            }
            break;
        case OP_DMA: op_dma(s, &in); break;
        case OP_DMA_RAW: {
            uint64_t desc = fz_u64(&in);
            kick(s->fc, desc, false);
            check_done(s, desc);
            break;
        }
        case OP_PORT: op_port(s, &in); break;
        case OP_POKE: {
            uint16_t off = fz_u16(&in);
            uint8_t buf[255];
            size_t n = fz_bytes(&in, buf, fz_u8(&in));
            uint8_t *p = gm_ptr(&s->gm, RAM_GPA + off, n);
            if (p)
                memcpy(p, buf, n);
            break;
        }
        case OP_ADD_FILE: op_add_file(s, &in); break;
        default: break;
        }
    }
    check_files(s);
    check_guards(s);
    fw_cfg_free(s->fc);
    s->fc = NULL;
    return 0;
}
