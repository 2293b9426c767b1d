/* The SCSI disk behind USB mass storage, driven as a transport would: begin, data in
 * pieces, finish, and REQUEST SENSE after a failure. The disk is in memory
 * (tests/support/mem_backend.c), which also checks the back-end contract. */
#include "devices/usb/scsi_disk.h"
#include "mem_backend.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DISK_SIZE (1u << 20)

struct fixture {
    struct mem_backend m;
    struct scsi_disk *d;
};

static int make(void **state, uint64_t size, uint32_t bs, bool ro)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || mem_backend_init(&f->m, size, bs, ro) != 0)
        return -1;
    if (scsi_disk_new(&f->m.be, "0123456789AB", &f->d) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return make(state, DISK_SIZE, 512, false);
}

static int setup_4k(void **state)
{
    return make(state, DISK_SIZE, 4096, false);
}

static int setup_ro(void **state)
{
    return make(state, DISK_SIZE, 512, true);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_false(f->m.broken);
    scsi_disk_free(f->d);
    mem_backend_fini(&f->m);
    free(f);
    return 0;
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + seed + i / 509);
}

/* Runs a command with buf for its data (one piece); returns the status, *moved the bytes. */
static uint8_t run(struct scsi_disk *d, const uint8_t *cdb, size_t cdb_len, void *buf,
                   size_t buflen, struct scsi_data_phase *ph, size_t *moved)
{
    struct scsi_data_phase p;
    scsi_disk_begin(d, cdb, cdb_len, &p);
    size_t n = p.len < buflen ? (size_t)p.len : buflen, got = 0;
    struct iovec v = { .iov_base = buf, .iov_len = n };
    if (p.dir == SCSI_DATA_IN)
        got = scsi_disk_data_in(d, 0, &v, 1, n);
    else if (p.dir == SCSI_DATA_OUT)
        got = scsi_disk_data_out(d, 0, &v, 1, n);
    if (ph)
        *ph = p;
    if (moved)
        *moved = got;
    return scsi_disk_finish(d);
}

static uint8_t run0(struct scsi_disk *d, const uint8_t *cdb, size_t cdb_len)
{
    return run(d, cdb, cdb_len, NULL, 0, NULL, NULL);
}

static void expect_sense(struct scsi_disk *d, uint8_t key, uint8_t asc, uint8_t ascq)
{
    uint8_t cdb[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t s[18];
    struct scsi_data_phase ph;
    size_t n;
    assert_int_equal(run(d, cdb, 6, s, sizeof(s), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_IN);
    assert_int_equal(n, 18);
    assert_int_equal(s[0] & 0x7f, 0x70);
    assert_int_equal(s[7], 10);
    assert_int_equal(s[2] & 0x0f, key);
    assert_int_equal(s[12], asc);
    assert_int_equal(s[13], ascq);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void rw10(uint8_t *cdb, bool write, uint32_t lba, uint16_t n)
{
    memset(cdb, 0, 10);
    cdb[0] = write ? 0x2a : 0x28;
    put_be32(cdb + 2, lba);
    cdb[7] = (uint8_t)(n >> 8);
    cdb[8] = (uint8_t)n;
}

static void rw16(uint8_t *cdb, bool write, uint64_t lba, uint32_t n)
{
    memset(cdb, 0, 16);
    cdb[0] = write ? 0x8a : 0x88;
    put_be64(cdb + 2, lba);
    put_be32(cdb + 10, n);
}

/* ---- construction ---- */

static void test_new_refuses(void **state)
{
    struct mem_backend m;
    struct scsi_disk *d = NULL;
    assert_int_equal(mem_backend_init(&m, 4096, 512, false), 0);
    assert_int_equal(scsi_disk_new(NULL, NULL, &d), -EINVAL);
    m.be.block_size = 1024;
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), -EINVAL);
    m.be.block_size = 4096;
    m.be.size = 4096 + 512;
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), -EINVAL);
    m.be.size = 0;
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), -EINVAL);
    m.be.size = 4096;
    m.be.flush = NULL;
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), -EINVAL);
    m.be.block_size = 512;
    mem_backend_fini(&m);
    assert_int_equal(mem_backend_init(&m, 4096, 512, false), 0);
    assert_int_equal(scsi_disk_new(&m.be, "0123456789abcdef0123456789abcdef0", &d), -EINVAL);
    assert_int_equal(scsi_disk_new(&m.be, "bad\tserial", &d), -EINVAL);
    assert_null(d);
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), 0);
    scsi_disk_free(d);
    scsi_disk_free(NULL);
    mem_backend_fini(&m);
}

/* ---- INQUIRY ---- */

static void test_inquiry_standard(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[6] = { 0x12, 0, 0, 0, 96, 0 };
    uint8_t r[96];
    struct scsi_data_phase ph;
    size_t n;
    memset(r, 0xee, sizeof(r));
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_IN);
    assert_int_equal(ph.len, 36);
    assert_int_equal(n, 36);
    assert_int_equal(r[0], 0x00); /* direct access */
    assert_int_equal(r[3] & 0x0f, 2);
    assert_int_equal(r[4], 31);
    assert_memory_equal(r + 8, "VMKIT   ", 8);
    assert_memory_equal(r + 16, "USB DISK        ", 16);

    /* The allocation length cuts the answer. */
    cdb[4] = 5;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.len, 5);
    cdb[4] = 0;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_NONE);

    /* A page code without EVPD, and CmdDt. */
    uint8_t bad[6] = { 0x12, 0, 0x80, 0, 96, 0 };
    assert_int_equal(run0(f->d, bad, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
    uint8_t cmddt[6] = { 0x12, 0x02, 0, 0, 96, 0 };
    assert_int_equal(run0(f->d, cmddt, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
}

static void test_inquiry_vpd(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[6] = { 0x12, 0x01, 0x00, 0, 255, 0 };
    uint8_t r[255];
    struct scsi_data_phase ph;
    size_t n;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1 };
    assert_int_equal(n, 4 + sizeof(pages));
    assert_int_equal(r[1], 0x00);
    assert_int_equal(r[3], sizeof(pages));
    assert_memory_equal(r + 4, pages, sizeof(pages));

    cdb[2] = 0x80;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(r[1], 0x80);
    assert_int_equal(r[3], 12);
    assert_int_equal(n, 16);
    assert_memory_equal(r + 4, "0123456789AB", 12);

    cdb[2] = 0x83;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(r[1], 0x83);
    assert_int_equal((r[2] << 8 | r[3]) + 4, n);
    assert_int_equal(r[4] & 0x0f, 2); /* ASCII */
    assert_int_equal(r[5] & 0x0f, 1); /* T10 vendor id */
    assert_int_equal(r[7], 8 + 12);
    assert_memory_equal(r + 8, "VMKIT   0123456789AB", 20);

    cdb[2] = 0xb0;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 64);
    assert_int_equal(r[3], 0x3c);
    cdb[2] = 0xb1;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 64);
    assert_int_equal(r[4] << 8 | r[5], 1); /* non-rotating */

    cdb[2] = 0x99;
    assert_int_equal(run(f->d, cdb, 6, r, sizeof(r), &ph, &n), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(ph.dir, SCSI_DATA_NONE);
    expect_sense(f->d, 0x05, 0x24, 0x00);
}

/* ---- capacity ---- */

static void test_read_capacity(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb10[10] = { 0x25 };
    uint8_t r[32];
    size_t n;
    assert_int_equal(run(f->d, cdb10, 10, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 8);
    assert_int_equal(get_be32(r), DISK_SIZE / 512 - 1);
    assert_int_equal(get_be32(r + 4), 512);

    uint8_t cdb16[16] = { 0x9e, 0x10 };
    put_be32(cdb16 + 10, 32);
    memset(r, 0xee, sizeof(r));
    assert_int_equal(run(f->d, cdb16, 16, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 32);
    assert_int_equal(get_be32(r), 0);
    assert_int_equal(get_be32(r + 4), DISK_SIZE / 512 - 1);
    assert_int_equal(get_be32(r + 8), 512);
    assert_int_equal(r[13], 0);

    /* Another service action of 9Eh is refused. */
    cdb16[1] = 0x11;
    assert_int_equal(run0(f->d, cdb16, 16), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
}

static void test_read_capacity_4k(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb10[10] = { 0x25 };
    uint8_t r[8];
    assert_int_equal(run(f->d, cdb10, 10, r, sizeof(r), NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(get_be32(r), DISK_SIZE / 4096 - 1);
    assert_int_equal(get_be32(r + 4), 4096);
}

static void test_read_capacity_huge(void **state)
{
    /* 4 TiB of 512-byte blocks: more than READ CAPACITY(10) can say. Nothing is held. */
    struct mem_backend m;
    struct scsi_disk *d;
    uint64_t size = 4ull << 40;
    assert_int_equal(mem_backend_init(&m, size, 512, false), 0);
    assert_int_equal(scsi_disk_new(&m.be, NULL, &d), 0);
    uint8_t cdb10[10] = { 0x25 }, r[32];
    assert_int_equal(run(d, cdb10, 10, r, sizeof(r), NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(get_be32(r), 0xffffffffu);
    uint8_t cdb16[16] = { 0x9e, 0x10 };
    put_be32(cdb16 + 10, 32);
    assert_int_equal(run(d, cdb16, 16, r, sizeof(r), NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal((uint64_t)get_be32(r) << 32 | get_be32(r + 4), size / 512 - 1);
    /* A read the size of the disk wants its whole length, and nothing is allocated for it. */
    uint8_t rd[16];
    rw16(rd, false, 0, 0xffffffffu);
    struct scsi_data_phase ph;
    scsi_disk_begin(d, rd, 16, &ph);
    assert_int_equal(ph.dir, SCSI_DATA_IN);
    assert_true(ph.len == 0xffffffffull * 512);
    assert_int_equal(scsi_disk_finish(d), SCSI_STATUS_GOOD);
    scsi_disk_free(d);
    mem_backend_fini(&m);
}

/* ---- READ and WRITE ---- */

static void test_write_read_10(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[10];
    uint8_t *w = malloc(8 * 512), *r = calloc(1, 8 * 512);
    pattern(w, 8 * 512, 3);
    rw10(cdb, true, 10, 8);
    struct scsi_data_phase ph;
    size_t n;
    assert_int_equal(run(f->d, cdb, 10, w, 8 * 512, &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_OUT);
    assert_int_equal(ph.len, 8 * 512);
    assert_int_equal(n, 8 * 512);
    assert_memory_equal(f->m.data + 10 * 512, w, 8 * 512);
    rw10(cdb, false, 10, 8);
    assert_int_equal(run(f->d, cdb, 10, r, 8 * 512, &ph, &n), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_IN);
    assert_memory_equal(r, w, 8 * 512);
    free(w);
    free(r);
}

static void test_rw_6_12_16(void **state)
{
    struct fixture *f = *state;
    uint8_t w[1024], r[1024];
    pattern(w, sizeof(w), 9);
    /* WRITE(6) of 2 blocks at 0x10203 & 0x1fffff... within 1 MiB: LBA 100. */
    uint8_t c6[6] = { 0x0a, 0, 0, 100, 2, 0 };
    assert_int_equal(run(f->d, c6, 6, w, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(f->m.data + 100 * 512, w, 1024);
    c6[0] = 0x08;
    memset(r, 0, sizeof(r));
    assert_int_equal(run(f->d, c6, 6, r, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(r, w, 1024);
    /* Transfer length 0 in a 6-byte command means 256 blocks. */
    struct scsi_data_phase ph;
    uint8_t c6z[6] = { 0x08, 0, 0, 0, 0, 0 };
    scsi_disk_begin(f->d, c6z, 6, &ph);
    assert_int_equal(ph.len, 256 * 512);
    scsi_disk_finish(f->d);

    uint8_t c12[12] = { 0xaa };
    put_be32(c12 + 2, 200);
    put_be32(c12 + 6, 2);
    pattern(w, sizeof(w), 17);
    assert_int_equal(run(f->d, c12, 12, w, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(f->m.data + 200 * 512, w, 1024);
    c12[0] = 0xa8;
    assert_int_equal(run(f->d, c12, 12, r, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(r, w, 1024);

    uint8_t c16[16];
    rw16(c16, true, 2046, 2);
    pattern(w, sizeof(w), 23);
    assert_int_equal(run(f->d, c16, 16, w, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(f->m.data + 2046 * 512, w, 1024);
    rw16(c16, false, 2046, 2);
    assert_int_equal(run(f->d, c16, 16, r, 1024, NULL, NULL), SCSI_STATUS_GOOD);
    assert_memory_equal(r, w, 1024);

    /* A zero-length READ(10) moves nothing and succeeds. */
    uint8_t c10[10];
    rw10(c10, false, 5, 0);
    assert_int_equal(run(f->d, c10, 10, r, 1024, &ph, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(ph.dir, SCSI_DATA_NONE);
}

/* Data in pieces of awkward sizes, each piece in awkward iovecs: what a transport with
 * small or odd bulk transfers does. */
static void rw_pieces(struct fixture *f, uint32_t bs)
{
    const size_t total = 16 * 4096;
    uint8_t *w = malloc(total), *r = calloc(1, total);
    pattern(w, total, 41);
    uint32_t blocks = (uint32_t)(total / bs);
    uint8_t cdb[10];
    static const size_t sizes[] = { 1, 511, 512, 513, 100, 4096, 3, 1500, 8192, 31 };
    for (unsigned pass = 0; pass < 2; pass++) {
        bool write = pass == 0;
        struct scsi_data_phase ph;
        rw10(cdb, write, 3, (uint16_t)blocks);
        scsi_disk_begin(f->d, cdb, 10, &ph);
        assert_int_equal(ph.len, total);
        uint8_t *buf = write ? w : r;
        size_t off = 0;
        for (unsigned k = 0; off < total; k++) {
            size_t n = sizes[k % 10];
            if (n > total - off)
                n = total - off;
            /* Split each piece into up to three iovecs, one of them empty. */
            struct iovec v[3] = {
                { .iov_base = buf + off, .iov_len = n / 3 },
                { .iov_base = NULL, .iov_len = 0 },
                { .iov_base = buf + off + n / 3, .iov_len = n - n / 3 },
            };
            size_t got = write ? scsi_disk_data_out(f->d, off, v, 3, n)
                               : scsi_disk_data_in(f->d, off, v, 3, n);
            assert_int_equal(got, n);
            off += n;
        }
        assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_GOOD);
    }
    assert_memory_equal(f->m.data + 3 * bs, w, total);
    assert_memory_equal(r, w, total);
    /* Neighbours untouched. */
    for (size_t i = 0; i < 3 * bs; i++)
        assert_int_equal(f->m.data[i], 0);
    assert_int_equal(f->m.data[3 * bs + total], 0);
    free(w);
    free(r);
}

static void test_rw_pieces(void **state)
{
    rw_pieces(*state, 512);
}

static void test_rw_pieces_4k(void **state)
{
    rw_pieces(*state, 4096);
}

/* Many one-byte iovecs: too fragmented for one back-end call; the bounce buffer copes. */
static void test_rw_fragmented(void **state)
{
    struct fixture *f = *state;
    enum { N = 2048 };
    uint8_t w[N], r[N];
    struct iovec v[N];
    pattern(w, N, 77);
    uint8_t cdb[10];
    rw10(cdb, true, 7, N / 512);
    struct scsi_data_phase ph;
    scsi_disk_begin(f->d, cdb, 10, &ph);
    for (unsigned i = 0; i < N; i++)
        v[i] = (struct iovec){ .iov_base = w + i, .iov_len = 1 };
    assert_int_equal(scsi_disk_data_out(f->d, 0, v, N, N), N);
    assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_GOOD);
    assert_memory_equal(f->m.data + 7 * 512, w, N);
    rw10(cdb, false, 7, N / 512);
    scsi_disk_begin(f->d, cdb, 10, &ph);
    for (unsigned i = 0; i < N; i++)
        v[i] = (struct iovec){ .iov_base = r + i, .iov_len = 1 };
    assert_int_equal(scsi_disk_data_in(f->d, 0, v, N, N), N);
    assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_GOOD);
    assert_memory_equal(r, w, N);
}

/* The transport asks past the end of the phase, or the wrong way: only what fits moves. */
static void test_data_bounds(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[2048];
    struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
    uint8_t cdb[10];
    struct scsi_data_phase ph;
    rw10(cdb, false, 0, 2);
    scsi_disk_begin(f->d, cdb, 10, &ph);
    assert_int_equal(scsi_disk_data_out(f->d, 0, &v, 1, 1024), 0);
    assert_int_equal(scsi_disk_data_in(f->d, 512, &v, 1, 2048), 512);
    assert_int_equal(scsi_disk_data_in(f->d, 1024, &v, 1, 512), 0);
    /* iovecs shorter than the length said */
    v.iov_len = 100;
    assert_int_equal(scsi_disk_data_in(f->d, 0, &v, 1, 1024), 100);
    assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_GOOD);
    /* Nothing open: nothing moves, finish is GOOD. */
    assert_int_equal(scsi_disk_data_in(f->d, 0, &v, 1, 100), 0);
    assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_GOOD);
}

static void test_fua_flushes(void **state)
{
    struct fixture *f = *state;
    uint8_t w[512] = { 1, 2, 3 };
    uint8_t cdb[10];
    rw10(cdb, true, 1, 1);
    assert_int_equal(run(f->d, cdb, 10, w, 512, NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(f->m.flushes, 0);
    cdb[1] = 0x08; /* FUA */
    assert_int_equal(run(f->d, cdb, 10, w, 512, NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(f->m.flushes, 1);
    /* Protection information is not offered. */
    cdb[1] = 0x20;
    assert_int_equal(run0(f->d, cdb, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
}

/* ---- failures ---- */

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    uint8_t w[512] = { 0xaa };
    uint8_t cdb[10];
    rw10(cdb, true, 0, 1);
    struct scsi_data_phase ph;
    assert_int_equal(run(f->d, cdb, 10, w, 512, &ph, NULL), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(ph.dir, SCSI_DATA_NONE);
    expect_sense(f->d, 0x07, 0x27, 0x00);
    uint8_t c6[6] = { 0x0a, 0, 0, 0, 1, 0 };
    assert_int_equal(run0(f->d, c6, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x07, 0x27, 0x00);
    uint8_t c16[16];
    rw16(c16, true, 0, 1);
    assert_int_equal(run0(f->d, c16, 16), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x07, 0x27, 0x00);
    assert_int_equal(f->m.writes, 0);
    /* Reading works. */
    rw10(cdb, false, 0, 1);
    assert_int_equal(run(f->d, cdb, 10, w, 512, NULL, NULL), SCSI_STATUS_GOOD);

    /* MODE SENSE shows write protect, and no DPOFUA. */
    uint8_t ms[6] = { 0x1a, 0, 0x3f, 0, 192, 0 };
    uint8_t r[192];
    assert_int_equal(run(f->d, ms, 6, r, sizeof(r), NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(r[2], 0x80);
}

static void test_lba_out_of_range(void **state)
{
    struct fixture *f = *state;
    const uint32_t blocks = DISK_SIZE / 512;
    uint8_t cdb[16];
    rw10(cdb, false, blocks - 1, 2);
    assert_int_equal(run0(f->d, cdb, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);
    rw10(cdb, true, blocks, 1);
    assert_int_equal(run0(f->d, cdb, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);
    /* LBA + length overflowing 64 bits. */
    rw16(cdb, false, UINT64_MAX - 1, 4);
    assert_int_equal(run0(f->d, cdb, 16), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);
    /* The last block itself is fine. */
    uint8_t r[512];
    rw10(cdb, false, blocks - 1, 1);
    assert_int_equal(run(f->d, cdb, 10, r, 512, NULL, NULL), SCSI_STATUS_GOOD);
    /* So is a zero-length read at the end; past it is not. */
    rw10(cdb, false, blocks, 0);
    assert_int_equal(run0(f->d, cdb, 10), SCSI_STATUS_GOOD);
    rw10(cdb, false, blocks + 1, 0);
    assert_int_equal(run0(f->d, cdb, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);
    assert_int_equal(f->m.reads, 1);
}

static void test_unknown_opcode(void **state)
{
    struct fixture *f = *state;
    static const uint8_t ops[] = { 0x04, 0x15, 0x55, 0x42, 0x85, 0xa1, 0xff, 0xc0 };
    for (unsigned i = 0; i < sizeof(ops); i++) {
        uint8_t cdb[16] = { ops[i] };
        struct scsi_data_phase ph;
        scsi_disk_begin(f->d, cdb, 16, &ph);
        assert_int_equal(ph.dir, SCSI_DATA_NONE);
        assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_CHECK_CONDITION);
        expect_sense(f->d, 0x05, 0x20, 0x00);
    }
}

static void test_sense_cleared(void **state)
{
    struct fixture *f = *state;
    uint8_t bad[6] = { 0xff };
    assert_int_equal(run0(f->d, bad, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x20, 0x00);
    /* Read once, then gone. */
    expect_sense(f->d, 0x00, 0x00, 0x00);
    /* The next command also ends it. */
    assert_int_equal(run0(f->d, bad, 6), SCSI_STATUS_CHECK_CONDITION);
    uint8_t tur[6] = { 0 };
    assert_int_equal(run0(f->d, tur, 6), SCSI_STATUS_GOOD);
    expect_sense(f->d, 0x00, 0x00, 0x00);
    /* A short allocation length cuts the sense data. */
    assert_int_equal(run0(f->d, bad, 6), SCSI_STATUS_CHECK_CONDITION);
    uint8_t rs[6] = { 0x03, 0, 0, 0, 8, 0 };
    uint8_t s[18];
    size_t n;
    assert_int_equal(run(f->d, rs, 6, s, sizeof(s), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 8);
    assert_int_equal(s[2], 0x05);
}

static void test_backend_errors(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[2048];
    uint8_t cdb[10];
    size_t n;
    f->m.fail_read = true;
    rw10(cdb, false, 9, 4);
    assert_int_equal(run(f->d, cdb, 10, buf, sizeof(buf), NULL, &n), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(n, 0);
    uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t s[18];
    assert_int_equal(run(f->d, rs, 6, s, sizeof(s), NULL, NULL), SCSI_STATUS_GOOD);
    assert_int_equal(s[0], 0xf0); /* valid: the information field holds the LBA */
    assert_int_equal(get_be32(s + 3), 9);
    assert_int_equal(s[2], 0x03);
    assert_int_equal(s[12], 0x11);
    assert_int_equal(s[13], 0x00);
    f->m.fail_read = false;

    f->m.fail_write = true;
    rw10(cdb, true, 9, 4);
    assert_int_equal(run(f->d, cdb, 10, buf, sizeof(buf), NULL, &n), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x03, 0x0c, 0x00);
    /* A piece smaller than a sector takes the bounce path: its read-modify-write fails too. */
    struct scsi_data_phase ph;
    scsi_disk_begin(f->d, cdb, 10, &ph);
    struct iovec v = { .iov_base = buf, .iov_len = 100 };
    assert_int_equal(scsi_disk_data_out(f->d, 0, &v, 1, 100), 0);
    assert_int_equal(scsi_disk_data_out(f->d, 100, &v, 1, 100), 0);
    assert_int_equal(scsi_disk_finish(f->d), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x03, 0x0c, 0x00);
    f->m.fail_write = false;
}

/* ---- the rest of the command set ---- */

static void test_mode_sense(void **state)
{
    struct fixture *f = *state;
    uint8_t r[255];
    size_t n;
    uint8_t ms6[6] = { 0x1a, 0, 0x3f, 0, 255, 0 };
    assert_int_equal(run(f->d, ms6, 6, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(r[0] + 1, n);
    assert_int_equal(r[2], 0x10); /* writable, DPOFUA */
    assert_int_equal(r[3], 8);
    assert_int_equal(get_be32(r + 4), DISK_SIZE / 512);
    assert_int_equal(get_be32(r + 8) & 0xffffff, 512);
    /* The pages in ascending order: caching (WCE), control, informational exceptions. */
    uint8_t *p = r + 12;
    assert_int_equal(p[0], 0x08);
    assert_int_equal(p[1], 0x12);
    assert_int_equal(p[2] & 0x04, 0x04);
    p += 2 + p[1];
    assert_int_equal(p[0], 0x0a);
    p += 2 + p[1];
    assert_int_equal(p[0], 0x1c);
    p += 2 + p[1];
    assert_int_equal(p - r, n);

    /* DBD, one page, MODE SENSE(10). */
    uint8_t ms10[10] = { 0x5a, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0 };
    assert_int_equal(run(f->d, ms10, 10, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 8 + 20);
    assert_int_equal(r[0] << 8 | r[1], n - 2);
    assert_int_equal(r[3], 0x10);
    assert_int_equal(r[6] << 8 | r[7], 0);
    assert_int_equal(r[8], 0x08);
    uint8_t ms1c[6] = { 0x1a, 0x08, 0x1c, 0, 255, 0 };
    assert_int_equal(run(f->d, ms1c, 6, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 4 + 12);
    assert_int_equal(r[4], 0x1c);
    /* Changeable values: none. */
    uint8_t ch[6] = { 0x1a, 0x08, 0x48, 0, 255, 0 };
    assert_int_equal(run(f->d, ch, 6, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(r[6] & 0x04, 0);
    /* All pages, all subpages. */
    uint8_t all[6] = { 0x1a, 0x08, 0x3f, 0xff, 255, 0 };
    assert_int_equal(run0(f->d, all, 6), SCSI_STATUS_GOOD);

    /* Saved values, a page we lack, a subpage. */
    uint8_t saved[6] = { 0x1a, 0, 0xff, 0, 255, 0 };
    assert_int_equal(run0(f->d, saved, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x39, 0x00);
    uint8_t none[6] = { 0x1a, 0, 0x05, 0, 255, 0 };
    assert_int_equal(run0(f->d, none, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
    uint8_t sub[6] = { 0x1a, 0, 0x08, 0x01, 255, 0 };
    assert_int_equal(run0(f->d, sub, 6), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
}

static void test_sync_cache(void **state)
{
    struct fixture *f = *state;
    uint8_t s10[10] = { 0x35 };
    assert_int_equal(run0(f->d, s10, 10), SCSI_STATUS_GOOD);
    assert_int_equal(f->m.flushes, 1);
    uint8_t s16[16] = { 0x91 };
    assert_int_equal(run0(f->d, s16, 16), SCSI_STATUS_GOOD);
    assert_int_equal(f->m.flushes, 2);
    put_be64(s16 + 2, DISK_SIZE / 512 + 1);
    assert_int_equal(run0(f->d, s16, 16), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);
    assert_int_equal(f->m.flushes, 2);
    f->m.fail_flush = true;
    assert_int_equal(run0(f->d, s10, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x03, 0x0c, 0x00);
}

static void test_misc_commands(void **state)
{
    struct fixture *f = *state;
    uint8_t tur[6] = { 0x00 }, pa[6] = { 0x1e, 0, 0, 0, 1, 0 }, ss[6] = { 0x1b, 0, 0, 0, 1, 0 };
    assert_int_equal(run0(f->d, tur, 6), SCSI_STATUS_GOOD);
    assert_int_equal(run0(f->d, pa, 6), SCSI_STATUS_GOOD);
    assert_int_equal(run0(f->d, ss, 6), SCSI_STATUS_GOOD);

    uint8_t v10[10] = { 0x2f };
    put_be32(v10 + 2, 5);
    v10[8] = 10;
    assert_int_equal(run0(f->d, v10, 10), SCSI_STATUS_GOOD);
    v10[1] = 0x02; /* BYTCHK */
    assert_int_equal(run0(f->d, v10, 10), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x24, 0x00);
    uint8_t v16[16] = { 0x8f };
    put_be64(v16 + 2, DISK_SIZE / 512);
    put_be32(v16 + 10, 1);
    assert_int_equal(run0(f->d, v16, 16), SCSI_STATUS_CHECK_CONDITION);
    expect_sense(f->d, 0x05, 0x21, 0x00);

    uint8_t rl[12] = { 0xa0 };
    put_be32(rl + 6, 64);
    uint8_t r[64];
    size_t n;
    memset(r, 0xee, sizeof(r));
    assert_int_equal(run(f->d, rl, 12, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 16);
    assert_int_equal(get_be32(r), 8);
    for (unsigned i = 8; i < 16; i++)
        assert_int_equal(r[i], 0);

    uint8_t rfc[10] = { 0x23 };
    rfc[8] = 252;
    assert_int_equal(run(f->d, rfc, 10, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 12);
    assert_int_equal(r[3], 8);
    assert_int_equal(get_be32(r + 4), DISK_SIZE / 512);
    assert_int_equal(r[8], 0x02);
    assert_int_equal(get_be32(r + 8) & 0xffffff, 512);

    /* A short CDB reads as zero-padded; a long one is cut at 16 bytes. */
    uint8_t one[1] = { 0x25 };
    assert_int_equal(run(f->d, one, 1, r, sizeof(r), NULL, &n), SCSI_STATUS_GOOD);
    assert_int_equal(n, 8);
    uint8_t longer[32] = { 0x00 };
    assert_int_equal(run0(f->d, longer, 32), SCSI_STATUS_GOOD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses),
        cmocka_unit_test_setup_teardown(test_inquiry_standard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inquiry_vpd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_capacity_4k, setup_4k, teardown),
        cmocka_unit_test(test_read_capacity_huge),
        cmocka_unit_test_setup_teardown(test_write_read_10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rw_6_12_16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rw_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rw_pieces_4k, setup_4k, teardown),
        cmocka_unit_test_setup_teardown(test_rw_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fua_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup_ro, teardown),
        cmocka_unit_test_setup_teardown(test_lba_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_opcode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sense_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_sense, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misc_commands, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
