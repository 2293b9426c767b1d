/* libFuzzer target for the stream framing (src/attach/frame_stream.c): the input is a peer's
 * byte stream (passt, QEMU -netdev stream), cut into reads of sizes the input also picks.
 * Checked: a frame never exceeds the reader's maximum, a feed never consumes more than it was
 * given, a length above the maximum is refused (and nothing after it is read), and the frames
 * read are exactly those a straightforward parse of the same bytes finds. */
#include "attach/frame_stream.h"
#include "input.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX 2000u /* small, so that lengths above it are common */

void fz_write_seeds(const char *dir)
{
    struct fz_seed s = { .n = 0 };
    fz_seed_u8(&s, 7); /* reads of 7 bytes */
    const uint8_t two[] = { 0, 0, 0, 3,    'a', 'b', 'c', 0, 0, 0, 0,
                            0, 0, 7, 0xd0, 1,   2,   3,   4, 5, 6, 7 };
    fz_seed_bytes(&s, two, sizeof(two));
    fz_seed_save(dir, "frames", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct frame_reader r;
    static bool ready;
    if (!ready) {
        FZ_CHECK(frame_reader_init(&r, MAX) == 0);
        ready = true;
    }
    frame_reader_next(&r);
    if (size == 0)
        return 0;
    size_t step = data[0] % 64 + 1;
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    /* The reference: lengths and bodies straight from the bytes. */
    size_t ref = 0;
    bool refused = false;
    while (left > 0) {
        size_t n = left < step ? left : step;
        long used = frame_reader_feed(&r, p, n);
        if (used == -EMSGSIZE) {
            FZ_CHECK(ref + 4 <= size - 1);
            const uint8_t *l = data + 1 + ref;
            uint32_t want =
                (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
            FZ_CHECK(want > MAX);
            refused = true;
            break;
        }
        FZ_CHECK(used >= 0 && (size_t)used <= n);
        p += used;
        left -= (size_t)used;
        uint32_t len;
        const uint8_t *f = frame_reader_frame(&r, &len);
        if (f) {
            FZ_CHECK(len <= MAX);
            const uint8_t *l = data + 1 + ref;
            uint32_t want =
                (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
            FZ_CHECK(want == len && memcmp(f, l + 4, len) == 0);
            ref += 4 + len;
            FZ_CHECK((size_t)(p - (data + 1)) == ref);
            frame_reader_next(&r);
        } else {
            FZ_CHECK(used == (long)n); /* no frame yet: it took everything */
        }
    }
    /* After a refusal the stream is not read further: the link goes down. */
    (void)refused;
    return 0;
}
