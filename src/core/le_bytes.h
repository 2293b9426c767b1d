/* Little-endian fields at a byte offset of a buffer (virtio's structures), read and written
 * without alignment assumptions. */
#ifndef VMK_CORE_LE_BYTES_H
#define VMK_CORE_LE_BYTES_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void le_put16(uint8_t *b, unsigned off, uint16_t v)
{
    v = htole16(v);
    memcpy(b + off, &v, 2);
}

static inline void le_put32(uint8_t *b, unsigned off, uint32_t v)
{
    v = htole32(v);
    memcpy(b + off, &v, 4);
}

static inline void le_put64(uint8_t *b, unsigned off, uint64_t v)
{
    v = htole64(v);
    memcpy(b + off, &v, 8);
}

static inline uint16_t le_get16(const uint8_t *b, unsigned off)
{
    uint16_t v;
    memcpy(&v, b + off, 2);
    return le16toh(v);
}

static inline uint32_t le_get32(const uint8_t *b, unsigned off)
{
    uint32_t v;
    memcpy(&v, b + off, 4);
    return le32toh(v);
}

static inline uint64_t le_get64(const uint8_t *b, unsigned off)
{
    uint64_t v;
    memcpy(&v, b + off, 8);
    return le64toh(v);
}

#endif
