/* The window view (gui.h). SDL is used from one thread only, the view's own: it opens the
 * window, waits for events, copies the image and draws it. The VM's delegate only records what
 * changed and pushes one SDL user event to wake that thread (SDL_PushEvent may be called from
 * any thread), so the VM's thread never waits for the screen. */
#include "gui.h"
#include "sdl_keys.h"

#include <SDL2/SDL.h>

#include <errno.h>
#include <linux/input-event-codes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER_WIDTH  640u /* the window's size until the guest sets a mode */
#define PLACEHOLDER_HEIGHT 480u
#define MAX_SIDE           16384u
#define RESIZE_SETTLE_MS   250u /* a window being dragged asks the guest once it settles */
#define FRAME_MS           16u  /* draw at most about 60 times a second */

struct gui_view {
    struct view_backend be;
    void (*closed)(void *user);
    void *closed_user;
    char title[256];
    pthread_t thread;
    uint32_t wake_event; /* SDL_RegisterEvents' type for "the display changed" */

    /* Start-up handshake: the thread says whether its window opened. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started, start_ok;
    char start_msg[512];

    /* What the display did since the thread last looked, and stop, under lock. */
    bool stop;
    bool wake_pending; /* one wake event in SDL's queue at a time */
    bool mode_pending, dirty;

    /* The view's thread only. */
    SDL_Window *window;
    SDL_Renderer *renderer;
    SDL_Texture *texture;
    uint8_t *image;
    uint32_t width, height;             /* the guest's mode, 0 x 0: none (or off) */
    uint32_t asked_width, asked_height; /* the size we asked the guest for, 0: none */
    uint32_t resize_due;                /* SDL ticks when to ask, 0: nothing to ask */
    uint32_t last_draw;
    bool grabbed;
    unsigned buttons;
    uint8_t keys_down[KEY_MAX / 8 + 1]; /* pressed in the guest, to release on focus loss */
};

bool gui_window_to_display(uint32_t x, uint32_t y, uint32_t win_w, uint32_t win_h, uint32_t w,
                           uint32_t h, uint32_t *dx, uint32_t *dy)
{
    if (!win_w || !win_h || !w || !h)
        return false;
    /* The drawn rectangle: as large as fits with the display's aspect. */
    uint64_t draw_w = win_w, draw_h = (uint64_t)win_w * h / w;
    if (draw_h > win_h) {
        draw_h = win_h;
        draw_w = (uint64_t)win_h * w / h;
    }
    if (!draw_w || !draw_h)
        return false;
    uint64_t left = (win_w - draw_w) / 2, top = (win_h - draw_h) / 2;
    if (x < left || y < top || x >= left + draw_w || y >= top + draw_h)
        return false;
    *dx = (uint32_t)((x - left) * w / draw_w);
    *dy = (uint32_t)((y - top) * h / draw_h);
    return true;
}

static void wake(struct gui_view *g)
{
    /* Under g->lock: one event in flight is enough, the thread reads all state at once. */
    if (g->wake_pending || g->wake_event == (uint32_t)-1)
        return;
    SDL_Event ev = { .type = g->wake_event };
    if (SDL_PushEvent(&ev) == 1)
        g->wake_pending = true;
}

void gui_view_mode_changed(struct gui_view *g, uint32_t width, uint32_t height)
{
    (void)width, (void)height; /* the image that comes with the change has them */
    pthread_mutex_lock(&g->lock);
    g->mode_pending = true;
    wake(g);
    pthread_mutex_unlock(&g->lock);
}

void gui_view_updated(struct gui_view *g)
{
    pthread_mutex_lock(&g->lock);
    g->dirty = true;
    wake(g);
    pthread_mutex_unlock(&g->lock);
}

static void set_title(struct gui_view *g)
{
    char t[400];
    snprintf(t, sizeof(t), "%s%s", g->title,
             g->grabbed ? " - Ctrl+Alt+G releases the keyboard" : "");
    SDL_SetWindowTitle(g->window, t);
}

static void send_key(struct gui_view *g, uint16_t code, bool pressed)
{
    if (!code || code > KEY_MAX)
        return;
    uint8_t bit = (uint8_t)(1u << (code % 8));
    bool down = g->keys_down[code / 8] & bit;
    if (down == pressed)
        return; /* SDL's own repeats: the guest repeats keys itself */
    g->keys_down[code / 8] ^= bit;
    g->be.key(g->be.user, code, pressed);
}

/* The window lost the keyboard: nothing stays pressed in the guest. */
static void release_keys(struct gui_view *g)
{
    for (unsigned code = 0; code <= KEY_MAX; code++)
        if (g->keys_down[code / 8] & (1u << (code % 8)))
            send_key(g, (uint16_t)code, false);
}

static void set_grab(struct gui_view *g, bool on)
{
    if (g->grabbed == on)
        return;
    g->grabbed = on;
    SDL_SetWindowKeyboardGrab(g->window, on ? SDL_TRUE : SDL_FALSE);
    set_title(g);
}

/* The guest's image into the texture (recreated when the size changed). */
static void fetch_image(struct gui_view *g)
{
    uint32_t w = 0, h = 0;
    size_t len = (size_t)g->width * g->height * 4;
    int r = g->be.copy_image(g->be.user, g->image, len, &w, &h);
    if (r == -ENOSPC && w && h && w <= MAX_SIDE && h <= MAX_SIDE) {
        uint8_t *bigger = realloc(g->image, (size_t)w * h * 4);
        if (!bigger)
            return;
        g->image = bigger;
        r = g->be.copy_image(g->be.user, g->image, (size_t)w * h * 4, &w, &h);
    }
    if (r != 0 || !w || !h) {
        g->width = g->height = 0; /* nothing to show: black */
        return;
    }
    if (!g->texture || w != g->width || h != g->height) {
        if (g->texture)
            SDL_DestroyTexture(g->texture);
        /* RGBA32 is R, G, B, A in memory order whatever the host's byte order: the backend's
         * layout. */
        g->texture = SDL_CreateTexture(g->renderer, SDL_PIXELFORMAT_RGBA32,
                                       SDL_TEXTUREACCESS_STREAMING, (int)w, (int)h);
        if (!g->texture) {
            g->width = g->height = 0;
            return;
        }
    }
    g->width = w;
    g->height = h;
    SDL_UpdateTexture(g->texture, NULL, g->image, (int)(w * 4));
}

static void draw(struct gui_view *g)
{
    SDL_SetRenderDrawColor(g->renderer, 0, 0, 0, 255);
    SDL_RenderClear(g->renderer);
    int ow = 0, oh = 0;
    SDL_GetRendererOutputSize(g->renderer, &ow, &oh);
    if (g->texture && g->width && g->height && ow > 0 && oh > 0) {
        uint64_t dw = (uint64_t)ow, dh = (uint64_t)ow * g->height / g->width;
        if (dh > (uint64_t)oh) {
            dh = (uint64_t)oh;
            dw = (uint64_t)oh * g->width / g->height;
        }
        SDL_Rect dst = { (int)((uint64_t)ow - dw) / 2, (int)((uint64_t)oh - dh) / 2, (int)dw,
                         (int)dh };
        SDL_RenderCopy(g->renderer, g->texture, NULL, &dst);
    }
    SDL_RenderPresent(g->renderer);
    g->last_draw = SDL_GetTicks();
}

/* The guest set a mode of w x h: the window takes that size unless it is the one we asked
 * for (the user sized the window; the picture is scaled to it either way). */
static void mode_changed(struct gui_view *g, uint32_t w, uint32_t h)
{
    if (!w || !h)
        return;
    if (w == g->asked_width && h == g->asked_height)
        return;
    g->asked_width = g->asked_height = 0;
    SDL_SetWindowSize(g->window, (int)w, (int)h);
    g->resize_due = 0; /* the size-changed event this causes is ours, not the user's */
}

static void pointer(struct gui_view *g, int x, int y)
{
    int ww = 0, wh = 0;
    uint32_t dx, dy;
    SDL_GetWindowSize(g->window, &ww, &wh);
    if (x < 0 || y < 0 || ww <= 0 || wh <= 0 ||
        !gui_window_to_display((uint32_t)x, (uint32_t)y, (uint32_t)ww, (uint32_t)wh, g->width,
                               g->height, &dx, &dy))
        return;
    g->be.pointer(g->be.user, dx, dy, g->buttons);
}

static unsigned button_bit(uint8_t sdl_button)
{
    switch (sdl_button) {
    case SDL_BUTTON_LEFT: return VMK_POINTER_BUTTON_LEFT;
    case SDL_BUTTON_RIGHT: return VMK_POINTER_BUTTON_RIGHT;
    case SDL_BUTTON_MIDDLE: return VMK_POINTER_BUTTON_MIDDLE;
    default: return 0;
    }
}

static bool is_release_combo(const SDL_KeyboardEvent *k)
{
    SDL_Keymod m = SDL_GetModState();
    return k->keysym.scancode == SDL_SCANCODE_G && (m & KMOD_CTRL) && (m & KMOD_ALT);
}

static void handle_event(struct gui_view *g, const SDL_Event *ev)
{
    switch (ev->type) {
    case SDL_QUIT:
        if (g->closed)
            g->closed(g->closed_user);
        break;
    case SDL_WINDOWEVENT:
        if (ev->window.event == SDL_WINDOWEVENT_SIZE_CHANGED && g->be.resize) {
            g->resize_due = SDL_GetTicks() + RESIZE_SETTLE_MS;
            if (!g->resize_due)
                g->resize_due = 1;
        } else if (ev->window.event == SDL_WINDOWEVENT_FOCUS_LOST) {
            release_keys(g);
            set_grab(g, false);
        }
        if (ev->window.event == SDL_WINDOWEVENT_EXPOSED ||
            ev->window.event == SDL_WINDOWEVENT_SIZE_CHANGED)
            draw(g);
        break;
    case SDL_KEYDOWN:
    case SDL_KEYUP:
        if (ev->type == SDL_KEYDOWN && is_release_combo(&ev->key)) {
            release_keys(g);
            set_grab(g, false);
            break;
        }
        send_key(g, sdl_scancode_to_evdev(ev->key.keysym.scancode), ev->type == SDL_KEYDOWN);
        break;
    case SDL_MOUSEMOTION: pointer(g, ev->motion.x, ev->motion.y); break;
    case SDL_MOUSEBUTTONDOWN:
    case SDL_MOUSEBUTTONUP:
        if (ev->type == SDL_MOUSEBUTTONDOWN) {
            g->buttons |= button_bit(ev->button.button);
            set_grab(g, true);
        } else {
            g->buttons &= ~button_bit(ev->button.button);
        }
        pointer(g, ev->button.x, ev->button.y);
        break;
    case SDL_MOUSEWHEEL:
        if (ev->wheel.y)
            g->be.scroll(g->be.user, ev->wheel.direction == SDL_MOUSEWHEEL_FLIPPED ? -ev->wheel.y
                                                                                   : ev->wheel.y);
        break;
    default: break;
    }
}

/* Asks the guest for the window's size once the user stopped dragging it. */
static void maybe_resize(struct gui_view *g)
{
    if (!g->resize_due || SDL_TICKS_PASSED(g->resize_due, SDL_GetTicks()) == 0)
        return;
    g->resize_due = 0;
    int w = 0, h = 0;
    SDL_GetRendererOutputSize(g->renderer, &w, &h);
    if (w <= 0 || h <= 0 || (uint32_t)w > MAX_SIDE || (uint32_t)h > MAX_SIDE)
        return;
    if ((uint32_t)w == g->width && (uint32_t)h == g->height)
        return;
    g->asked_width = (uint32_t)w;
    g->asked_height = (uint32_t)h;
    g->be.resize(g->be.user, (uint32_t)w, (uint32_t)h);
}

static bool open_window(struct gui_view *g, char *msg, size_t len)
{
    /* Stop signals are the CLI's (a signalfd), not SDL's to turn into SDL_QUIT. */
    SDL_SetHint(SDL_HINT_NO_SIGNAL_HANDLERS, "1");
    /* Without a Wayland session only X11 can answer; asking Wayland's library too prints its
     * own complaint on stderr. */
    const char *wayland = getenv("WAYLAND_DISPLAY");
    if (!getenv("SDL_VIDEODRIVER") && (!wayland || !*wayland))
        SDL_SetHint(SDL_HINT_VIDEODRIVER, "x11");
    if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0) {
        view_msg(msg, len, "--gui: cannot open a window (%s); --vnc serves the display instead",
                 SDL_GetError());
        return false;
    }
    /* SDL falls back to drivers that show nothing (offscreen, dummy) when no display server
     * answers: that is no window, unless the user chose the driver. */
    const char *driver = SDL_GetCurrentVideoDriver();
    if (!getenv("SDL_VIDEODRIVER") && driver &&
        (!strcmp(driver, "offscreen") || !strcmp(driver, "dummy") || !strcmp(driver, "evdev"))) {
        view_msg(msg, len,
                 "--gui: cannot open a window (no X11 or Wayland display: is DISPLAY set?); "
                 "--vnc serves the display instead");
        return false;
    }
    g->wake_event = SDL_RegisterEvents(1);
    g->window = SDL_CreateWindow(g->title, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED,
                                 (int)PLACEHOLDER_WIDTH, (int)PLACEHOLDER_HEIGHT,
                                 SDL_WINDOW_RESIZABLE | SDL_WINDOW_ALLOW_HIGHDPI);
    if (g->window)
        g->renderer = SDL_CreateRenderer(g->window, -1, 0);
    if (!g->window || !g->renderer) {
        view_msg(msg, len, "--gui: cannot open a window (%s)", SDL_GetError());
        return false;
    }
    return true;
}

static void close_window(struct gui_view *g)
{
    if (g->texture)
        SDL_DestroyTexture(g->texture);
    if (g->renderer)
        SDL_DestroyRenderer(g->renderer);
    if (g->window)
        SDL_DestroyWindow(g->window);
    /* SDL's video stays initialised until the process exits: quitting it unloads the X
     * libraries, whose own allocations then look leaked (and a next window would load them
     * again). */
}

static void *gui_thread(void *arg)
{
    struct gui_view *g = arg;
    char msg[512] = "";
    bool ok = open_window(g, msg, sizeof(msg));
    pthread_mutex_lock(&g->lock);
    g->started = true;
    g->start_ok = ok;
    snprintf(g->start_msg, sizeof(g->start_msg), "%s", msg);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (!ok) {
        close_window(g);
        return NULL;
    }
    draw(g);
    bool dirty = true; /* whatever the guest shows already */
    for (;;) {
        SDL_Event ev;
        int timeout = 100;
        if (g->resize_due)
            timeout = (int)RESIZE_SETTLE_MS;
        if (dirty) {
            uint32_t since = SDL_GetTicks() - g->last_draw;
            timeout = since >= FRAME_MS ? 0 : (int)(FRAME_MS - since);
        }
        if (SDL_WaitEventTimeout(&ev, timeout)) {
            if (ev.type == g->wake_event) {
                pthread_mutex_lock(&g->lock);
                g->wake_pending = false;
                pthread_mutex_unlock(&g->lock);
            } else {
                handle_event(g, &ev);
            }
        }
        pthread_mutex_lock(&g->lock);
        bool stop = g->stop, mode = g->mode_pending;
        dirty |= g->dirty;
        g->mode_pending = g->dirty = false;
        pthread_mutex_unlock(&g->lock);
        if (stop)
            break;
        if (mode) {
            uint32_t old_w = g->width, old_h = g->height;
            fetch_image(g);
            if (g->width != old_w || g->height != old_h)
                mode_changed(g, g->width, g->height);
            draw(g);
        }
        maybe_resize(g);
        if (dirty && SDL_GetTicks() - g->last_draw >= FRAME_MS) {
            fetch_image(g);
            draw(g);
            dirty = false;
        }
    }
    release_keys(g);
    close_window(g);
    return NULL;
}

struct gui_view *gui_view_start(const struct view_backend *b, const char *title,
                                void (*closed)(void *user), void *user, char *msg, size_t len)
{
    struct gui_view *g = calloc(1, sizeof(*g));
    if (!g) {
        view_msg(msg, len, "--gui: out of memory");
        return NULL;
    }
    g->be = *b;
    g->closed = closed;
    g->closed_user = user;
    g->wake_event = (uint32_t)-1;
    snprintf(g->title, sizeof(g->title), "%s", title ? title : "vmkit");
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    int e = pthread_create(&g->thread, NULL, gui_thread, g);
    if (e) {
        view_msg(msg, len, "--gui: cannot start the window's thread: %s", strerror(e));
        free(g);
        return NULL;
    }
    pthread_mutex_lock(&g->lock);
    while (!g->started)
        pthread_cond_wait(&g->cond, &g->lock);
    bool ok = g->start_ok;
    pthread_mutex_unlock(&g->lock);
    if (!ok) {
        view_msg(msg, len, "%s", g->start_msg);
        pthread_join(g->thread, NULL);
        free(g->image);
        free(g);
        return NULL;
    }
    gui_view_mode_changed(g, 1, 1); /* a change before the caller's delegate was in place */
    return g;
}

void gui_view_stop(struct gui_view *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    g->wake_pending = false; /* this wake must go through */
    wake(g);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g->image);
    free(g);
}
