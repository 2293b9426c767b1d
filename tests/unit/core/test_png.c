#include "core/png.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return buf;
}

/* A 3 x 2 image written and read back: signature, IHDR, every chunk's CRC, the rows. */
static void test_roundtrip(void **state)
{
    uint8_t px[2][3][4];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 4; c++)
                px[y][x][c] = (uint8_t)(y * 100 + x * 10 + c);
    char path[] = "/tmp/vmkit-png-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(png_write_rgba(path, &px[0][0][0], 3, 2), 0);
    size_t len;
    const uint8_t *f = slurp(path, &len);
    unlink(path);
    assert_memory_equal(f, "\x89PNG\r\n\x1a\n", 8);
    size_t off = 8;
    uint8_t rows[2 * (1 + 12)];
    bool ended = false;
    while (off + 12 <= len && !ended) {
        uint32_t n = be32(f + off);
        const uint8_t *type = f + off + 4, *data = f + off + 8;
        assert_true(off + 12 + n <= len);
        assert_int_equal(be32(data + n), (uint32_t)crc32(crc32(0, type, 4), data, n));
        if (!memcmp(type, "IHDR", 4)) {
            assert_int_equal(n, 13);
            assert_int_equal(be32(data), 3);
            assert_int_equal(be32(data + 4), 2);
            assert_int_equal(data[8], 8);
            assert_int_equal(data[9], 6);
        } else if (!memcmp(type, "IDAT", 4)) {
            uLongf rl = sizeof(rows);
            assert_int_equal(uncompress(rows, &rl, data, n), Z_OK);
            assert_int_equal(rl, sizeof(rows));
        } else {
            assert_memory_equal(type, "IEND", 4);
            ended = true;
        }
        off += 12 + n;
    }
    assert_true(ended);
    assert_int_equal(off, len);
    for (int y = 0; y < 2; y++) {
        assert_int_equal(rows[y * 13], 0); /* filter: none */
        assert_memory_equal(rows + y * 13 + 1, px[y], 12);
    }
}

static void test_bad_arguments(void **state)
{
    uint8_t px[4] = { 0 };
    assert_int_equal(png_write_rgba("/tmp/x.png", px, 0, 1), -EINVAL);
    assert_int_equal(png_write_rgba("/tmp/x.png", px, 1, PNG_MAX_DIMENSION + 1), -EINVAL);
    assert_int_equal(png_write_rgba(NULL, px, 1, 1), -EINVAL);
    assert_int_equal(png_write_rgba("/nonexistent/dir/x.png", px, 1, 1), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
