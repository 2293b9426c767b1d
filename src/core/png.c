/* A PNG encoder of the simplest kind (RFC 2083): IHDR, one IDAT of unfiltered rows, IEND. */
#include "core/png.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One chunk: length, type, data, CRC-32 of type and data. */
static int write_chunk(int fd, const char type[4], const uint8_t *data, uint32_t len)
{
    uint8_t head[8], tail[4];
    put_be32(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(0, head + 4, 4);
    if (len)
        crc = crc32(crc, data, len); /* zlib's crc32 of a NULL buffer is 0, not crc */
    put_be32(tail, (uint32_t)crc);
    int e = write_all(fd, head, sizeof(head));
    if (!e && len)
        e = write_all(fd, data, len);
    return e ? e : write_all(fd, tail, sizeof(tail));
}

/* The rows, each after its filter byte (0: none), deflated. */
static int deflate_rows(const uint8_t *rgba, uint32_t w, uint32_t h, uint8_t **out, uLongf *len)
{
    size_t row = 1 + (size_t)w * 4;
    uint8_t *raw = malloc(row * h);
    if (!raw)
        return -ENOMEM;
    for (uint32_t y = 0; y < h; y++) {
        raw[y * row] = 0;
        memcpy(raw + y * row + 1, rgba + (size_t)y * w * 4, (size_t)w * 4);
    }
    *len = compressBound((uLong)(row * h));
    *out = malloc(*len);
    int e = *out ? 0 : -ENOMEM;
    if (!e && compress2(*out, len, raw, (uLong)(row * h), Z_BEST_SPEED) != Z_OK)
        e = -EIO;
    free(raw);
    if (e) {
        free(*out);
        *out = NULL;
    }
    return e;
}

int png_write_rgba(const char *path, const uint8_t *rgba, uint32_t w, uint32_t h)
{
    if (!path || !rgba || w == 0 || h == 0 || w > PNG_MAX_DIMENSION || h > PNG_MAX_DIMENSION)
        return -EINVAL;
    uint8_t *idat;
    uLongf idat_len;
    int e = deflate_rows(rgba, w, h, &idat, &idat_len);
    if (e)
        return e;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
        free(idat);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        e = -errno;
        free(idat);
        return e;
    }
    static const uint8_t signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    uint8_t ihdr[13] = { 0 };
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8; /* bits per channel */
    ihdr[9] = 6; /* RGBA; compression, filter and interlace methods 0 */
    e = write_all(fd, signature, sizeof(signature));
    if (!e)
        e = write_chunk(fd, "IHDR", ihdr, sizeof(ihdr));
    if (!e)
        e = write_chunk(fd, "IDAT", idat, (uint32_t)idat_len);
    if (!e)
        e = write_chunk(fd, "IEND", NULL, 0);
    free(idat);
    if (close(fd) < 0 && !e)
        e = -errno;
    if (!e && rename(tmp, path) < 0)
        e = -errno;
    if (e)
        unlink(tmp);
    return e;
}
