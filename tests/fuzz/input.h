/* What every fuzz target shares: the input read front to back (reads past the end give
 * zeroes, so every input means something), a failure that traps so libFuzzer keeps the
 * input, and seed writing. A target defines LLVMFuzzerTestOneInput and fz_write_seeds. */
#ifndef VMK_TESTS_FUZZ_INPUT_H
#define VMK_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

#define FZ_CHECK(cond)                                           \
    do {                                                         \
        if (!(cond))                                             \
            fz_fail("check failed: " #cond, __FILE__, __LINE__); \
    } while (0)

/* Prints what failed and traps, so libFuzzer keeps the input. */
void fz_fail(const char *what, const char *file, int line) __attribute__((noreturn));

/* The input, consumed front to back; reads past the end give zeroes. */
struct fz_in {
    const uint8_t *p;
    size_t n;
};

uint8_t fz_u8(struct fz_in *in);
uint16_t fz_u16(struct fz_in *in);
uint32_t fz_u32(struct fz_in *in);
uint64_t fz_u64(struct fz_in *in);
/* Copies up to n bytes (fewer when the input ends); returns how many. */
size_t fz_bytes(struct fz_in *in, void *dst, size_t n);

struct fz_seed {
    uint8_t b[4096];
    size_t n;
};

void fz_seed_u8(struct fz_seed *s, uint8_t v);
void fz_seed_u16(struct fz_seed *s, uint16_t v);
void fz_seed_u32(struct fz_seed *s, uint32_t v);
void fz_seed_u64(struct fz_seed *s, uint64_t v);
/* Appends up to what still fits. */
void fz_seed_bytes(struct fz_seed *s, const void *p, size_t n);
/* When $VMKIT_FUZZ_SEEDS names a directory, the target writes its seeds there and the
 * process exits: fz_seed_mode returns that directory, or NULL. input.c's
 * LLVMFuzzerInitialize does that with the target's fz_write_seeds. */
const char *fz_seed_mode(void);
void fz_write_seeds(const char *dir);
/* Writes s as dir/name; exits with a message on failure (seed mode only). */
void fz_seed_save(const char *dir, const char *name, const struct fz_seed *s);

#endif
