/* What every fuzz target shares: reading an input front to back, failing so that
 * libFuzzer keeps the input, and writing seeds (see input.h). */
#include "input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: %s\n", file, line, what);
    fflush(stderr);
    __builtin_trap();
}

size_t fz_bytes(struct fz_in *in, void *dst, size_t n)
{
    size_t k = n < in->n ? n : in->n;
    if (k)
        memcpy(dst, in->p, k);
    in->p += k;
    in->n -= k;
    return k;
}

uint8_t fz_u8(struct fz_in *in)
{
    uint8_t v = 0;
    fz_bytes(in, &v, 1);
    return v;
}

uint16_t fz_u16(struct fz_in *in)
{
    uint8_t b[2] = { 0 };
    fz_bytes(in, b, 2);
    return (uint16_t)(b[0] | b[1] << 8);
}

uint32_t fz_u32(struct fz_in *in)
{
    uint32_t lo = fz_u16(in);
    return lo | (uint32_t)fz_u16(in) << 16;
}

uint64_t fz_u64(struct fz_in *in)
{
    uint64_t lo = fz_u32(in);
    return lo | (uint64_t)fz_u32(in) << 32;
}

/* ---- seeds ---- */

void fz_seed_bytes(struct fz_seed *s, const void *p, size_t n)
{
    if (n > sizeof(s->b) - s->n)
        n = sizeof(s->b) - s->n;
    if (n == 0)
        return; /* p may be NULL then */
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

void fz_seed_u8(struct fz_seed *s, uint8_t v)
{
    fz_seed_bytes(s, &v, 1);
}

void fz_seed_u16(struct fz_seed *s, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    fz_seed_bytes(s, b, 2);
}

void fz_seed_u32(struct fz_seed *s, uint32_t v)
{
    fz_seed_u16(s, (uint16_t)v);
    fz_seed_u16(s, (uint16_t)(v >> 16));
}

void fz_seed_u64(struct fz_seed *s, uint64_t v)
{
    fz_seed_u32(s, (uint32_t)v);
    fz_seed_u32(s, (uint32_t)(v >> 32));
}

const char *fz_seed_mode(void)
{
    const char *dir = getenv("VMKIT_FUZZ_SEEDS");
    return dir && *dir ? dir : NULL;
}

void fz_seed_save(const char *dir, const char *name, const struct fz_seed *s)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
        fprintf(stderr, "cannot write seed %s\n", path);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fz_seed_mode();
    if (dir) {
        fz_write_seeds(dir);
        exit(0);
    }
    return 0;
}
