/* The fake display of fake_view.h. */
#include "fake_view.h"

#include <errno.h>
#include <stddef.h>

uint8_t fake_view_pattern(uint32_t x, uint32_t y, unsigned channel, uint32_t width)
{
    switch (channel) {
    case 0: return (uint8_t)(x * 3 + width);
    case 1: return (uint8_t)(y * 5);
    case 2: return (uint8_t)(x ^ y);
    default: return 255;
    }
}

static int fake_copy(void *user, void *buf, size_t len, uint32_t *w, uint32_t *h)
{
    struct fake_view *f = user;
    pthread_mutex_lock(&f->lock);
    int r = 0;
    *w = f->width;
    *h = f->height;
    if (!f->shown)
        r = -EAGAIN;
    else if (len < 4ull * f->width * f->height)
        r = -ENOSPC;
    else
        for (uint32_t y = 0; y < f->height; y++)
            for (uint32_t x = 0; x < f->width; x++)
                for (unsigned c = 0; c < 4; c++)
                    ((uint8_t *)buf)[4 * (y * f->width + x) + c] =
                        fake_view_pattern(x, y, c, f->width);
    pthread_mutex_unlock(&f->lock);
    return r;
}

static void fake_key(void *user, uint16_t code, bool pressed)
{
    struct fake_view *f = user;
    pthread_mutex_lock(&f->lock);
    if (f->key_count < 16) {
        f->keys[f->key_count][0] = code;
        f->keys[f->key_count][1] = pressed;
        f->key_count++;
    }
    pthread_mutex_unlock(&f->lock);
}

static void fake_pointer(void *user, uint32_t x, uint32_t y, unsigned buttons)
{
    struct fake_view *f = user;
    pthread_mutex_lock(&f->lock);
    f->px = x, f->py = y, f->buttons = buttons;
    f->pointer_count++;
    pthread_mutex_unlock(&f->lock);
}

static void fake_scroll(void *user, int32_t steps)
{
    struct fake_view *f = user;
    pthread_mutex_lock(&f->lock);
    f->scroll += steps;
    pthread_mutex_unlock(&f->lock);
}

static void fake_resize(void *user, uint32_t w, uint32_t h)
{
    struct fake_view *f = user;
    pthread_mutex_lock(&f->lock);
    f->resize_w = w, f->resize_h = h;
    pthread_mutex_unlock(&f->lock);
}

void fake_view_init(struct fake_view *f)
{
    *f = (struct fake_view){ .shown = false };
    pthread_mutex_init(&f->lock, NULL);
}

void fake_view_reset(struct fake_view *f, uint32_t w, uint32_t h)
{
    pthread_mutex_lock(&f->lock);
    f->width = w, f->height = h, f->shown = true;
    f->key_count = f->pointer_count = 0;
    f->scroll = 0;
    f->resize_w = f->resize_h = 0;
    pthread_mutex_unlock(&f->lock);
}

struct view_backend fake_view_backend(struct fake_view *f)
{
    return (struct view_backend){ .copy_image = fake_copy,
                                  .key = fake_key,
                                  .pointer = fake_pointer,
                                  .scroll = fake_scroll,
                                  .resize = fake_resize,
                                  .user = f };
}
