/* A fake display behind a view (tools/vmkit/view.h) for the VNC and window tests: it shows a
 * known pattern of any size and records the keys, pointer, wheel and resizes it is sent. */
#ifndef VMKIT_TEST_FAKE_VIEW_H
#define VMKIT_TEST_FAKE_VIEW_H

#include "view.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct fake_view {
    pthread_mutex_t lock;
    uint32_t width, height;
    bool shown;      /* false: nothing to show yet */
    int keys[16][2]; /* code, pressed: the first 16 */
    unsigned key_count;
    uint32_t px, py;
    unsigned buttons;
    unsigned pointer_count;
    int scroll;
    uint32_t resize_w, resize_h;
};

void fake_view_init(struct fake_view *f);
/* Shows w x h and forgets what it was sent. */
void fake_view_reset(struct fake_view *f, uint32_t w, uint32_t h);
struct view_backend fake_view_backend(struct fake_view *f);
/* Channel c (R, G, B, A) of pixel x, y of the pattern at width w. */
uint8_t fake_view_pattern(uint32_t x, uint32_t y, unsigned c, uint32_t w);

/* Waits up to 5 s for cond (an expression over the fake, read under f's lock). */
#define FAKE_VIEW_WAIT_FOR(f, cond)                                         \
    do {                                                                    \
        bool ok_ = false;                                                   \
        for (int i_ = 0; i_ < 500 && !ok_; i_++) {                          \
            pthread_mutex_lock(&(f)->lock);                                 \
            ok_ = (cond);                                                   \
            pthread_mutex_unlock(&(f)->lock);                               \
            if (!ok_)                                                       \
                nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL); \
        }                                                                   \
        assert_true(ok_);                                                   \
    } while (0)

#endif
