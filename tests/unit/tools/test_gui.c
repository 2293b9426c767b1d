/* The window view: its key table and pointer mapping, and — where Xvfb and xdotool are
 * installed — the real window on a virtual X screen: the picture in an X screenshot equals the
 * display pixel for pixel, keys and clicks typed with xdotool reach the backend as evdev codes
 * and display pixels, and resizing the window asks the guest for the new size. */
#include "fake_view.h"
#include "gui.h"
#include "sdl_keys.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <SDL2/SDL_scancode.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input-event-codes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the key table and the pointer mapping --------------------------------------- */

static void test_scancodes(void **state)
{
    (void)state;
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_A), KEY_A);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_Q), KEY_Q);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_Z), KEY_Z);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_1), KEY_1);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_0), KEY_0);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_RETURN), KEY_ENTER);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_PERIOD), KEY_DOT);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_F12), KEY_F12);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_KP_0), KEY_KP0);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_KP_9), KEY_KP9);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_LGUI), KEY_LEFTMETA);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_RALT), KEY_RIGHTALT);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_NONUSBACKSLASH), KEY_102ND);
    assert_int_equal(sdl_scancode_to_evdev(SDL_SCANCODE_UNKNOWN), 0);
    assert_int_equal(sdl_scancode_to_evdev(-1), 0);
    assert_int_equal(sdl_scancode_to_evdev(SDL_NUM_SCANCODES), 0);
    /* Every letter maps, and no two keys share a code but the two backslashes. */
    for (int sc = SDL_SCANCODE_A; sc <= SDL_SCANCODE_Z; sc++)
        assert_int_not_equal(sdl_scancode_to_evdev(sc), 0);
    for (int a = 0; a < SDL_NUM_SCANCODES; a++)
        for (int b = a + 1; b < SDL_NUM_SCANCODES; b++)
            if (sdl_scancode_to_evdev(a) && sdl_scancode_to_evdev(a) == sdl_scancode_to_evdev(b))
                assert_true(a == SDL_SCANCODE_BACKSLASH && b == SDL_SCANCODE_NONUSHASH);
}

static void test_window_to_display(void **state)
{
    (void)state;
    uint32_t x = 0, y = 0;
    /* Same size: the identity. */
    assert_true(gui_window_to_display(0, 0, 640, 480, 640, 480, &x, &y));
    assert_int_equal(x, 0), assert_int_equal(y, 0);
    assert_true(gui_window_to_display(639, 479, 640, 480, 640, 480, &x, &y));
    assert_int_equal(x, 639), assert_int_equal(y, 479);
    /* Twice as large: halved. */
    assert_true(gui_window_to_display(1279, 959, 1280, 960, 640, 480, &x, &y));
    assert_int_equal(x, 639), assert_int_equal(y, 479);
    /* A wider window: bars left and right (drawn 640 wide from x 320). */
    assert_false(gui_window_to_display(100, 240, 1280, 480, 640, 480, &x, &y));
    assert_false(gui_window_to_display(960, 240, 1280, 480, 640, 480, &x, &y));
    assert_true(gui_window_to_display(320, 0, 1280, 480, 640, 480, &x, &y));
    assert_int_equal(x, 0), assert_int_equal(y, 0);
    assert_true(gui_window_to_display(959, 479, 1280, 480, 640, 480, &x, &y));
    assert_int_equal(x, 639), assert_int_equal(y, 479);
    /* A taller window: bars above and below. */
    assert_false(gui_window_to_display(10, 10, 640, 960, 640, 480, &x, &y));
    assert_true(gui_window_to_display(10, 240, 640, 960, 640, 480, &x, &y));
    assert_int_equal(x, 10), assert_int_equal(y, 0);
    /* Nothing shown, or no window. */
    assert_false(gui_window_to_display(0, 0, 640, 480, 0, 0, &x, &y));
    assert_false(gui_window_to_display(0, 0, 0, 0, 640, 480, &x, &y));
    /* The largest sizes do not overflow. */
    assert_true(gui_window_to_display(16383, 16383, 16384, 16384, 16384, 16384, &x, &y));
    assert_int_equal(x, 16383), assert_int_equal(y, 16383);
}

/* ---- the window on Xvfb --------------------------------------------------------- */

static bool have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* Runs cmd with the shell, its first line of output into out. 0 or the exit status. */
static int run_line(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run_line(char *out, size_t len, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    if (out && len) {
        out[0] = '\0';
        if (fgets(out, (int)len, p))
            out[strcspn(out, "\n")] = '\0';
    }
    char sink[256];
    while (fgets(sink, sizeof(sink), p)) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct xvfb {
    pid_t pid;
    int number;
};

/* An X server of its own (display :N, N from 140 up, the first free). */
static bool xvfb_start(struct xvfb *x)
{
    for (int n = 140; n < 160; n++) {
        char lock[64], sock[64];
        snprintf(lock, sizeof(lock), "/tmp/.X%d-lock", n);
        snprintf(sock, sizeof(sock), "/tmp/.X11-unix/X%d", n);
        if (access(lock, F_OK) == 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            char disp[16];
            snprintf(disp, sizeof(disp), ":%d", n);
            int devnull = open("/dev/null", 0);
            dup2(devnull, 1), dup2(devnull, 2);
            execlp("Xvfb", "Xvfb", disp, "-screen", "0", "1024x768x24", "-nolisten", "tcp",
                   (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 100; i++) { /* up to 10 s for its socket */
            if (access(sock, F_OK) == 0) {
                x->pid = pid, x->number = n;
                char d[16];
                snprintf(d, sizeof(d), ":%d", n);
                setenv("DISPLAY", d, 1);
                return true;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break; /* it lost a race for that number */
            usleep(100 * 1000);
        }
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return false;
}

static void xvfb_stop(struct xvfb *x)
{
    kill(x->pid, SIGTERM);
    waitpid(x->pid, NULL, 0);
}

/* The window's id, position and size as X sees them. */
static bool find_window(char *id, size_t len, int *wx, int *wy, int *ww, int *wh)
{
    if (run_line(id, len, "xdotool search --sync --onlyvisible --name '^vmkit test' 2>/dev/null") ||
        !id[0])
        return false;
    char geo[256];
    if (run_line(geo, sizeof(geo), "xdotool getwindowgeometry --shell %s | tr '\\n' ' '", id))
        return false;
    const char *p = strstr(geo, "X="), *q = strstr(geo, "Y="), *w = strstr(geo, "WIDTH="),
               *h = strstr(geo, "HEIGHT=");
    if (!p || !q || !w || !h)
        return false;
    *wx = atoi(p + 2), *wy = atoi(q + 2), *ww = atoi(w + 6), *wh = atoi(h + 7);
    return true;
}

/* The X screen's pixels at [x, x + w) x [y, y + h) as R, G, B bytes, through ImageMagick. */
static uint8_t *grab_screen(int x, int y, int w, int h)
{
    char path[] = "/tmp/vmkit-gui-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    close(fd);
    uint8_t *rgb = NULL;
    if (run_line(NULL, 0, "import -window root -crop %dx%d+%d+%d -depth 8 rgb:%s 2>/dev/null", w, h,
                 x, y, path) == 0) {
        FILE *f = fopen(path, "rb");
        rgb = malloc((size_t)w * h * 3);
        if (!f || !rgb || fread(rgb, 3, (size_t)w * h, f) != (size_t)w * h) {
            free(rgb);
            rgb = NULL;
        }
        if (f)
            fclose(f);
    }
    unlink(path);
    return rgb;
}

static void test_window_on_xvfb(void **state)
{
    (void)state;
    if (!have("Xvfb") || !have("xdotool") || !have("import"))
        skip(); /* optional: apt-get install xvfb xdotool imagemagick */
    struct xvfb x = { -1, 0 };
    assert_true(xvfb_start(&x));
    static struct fake_view fake;
    fake_view_init(&fake);
    fake_view_reset(&fake, 320, 200);
    struct view_backend b = fake_view_backend(&fake);
    char msg[512];
    struct gui_view *g = gui_view_start(&b, "vmkit test", NULL, NULL, msg, sizeof(msg));
    assert_non_null(g);
    /* The window takes the display's size once it has the picture. */
    char id[64];
    int wx = 0, wy = 0, ww = 0, wh = 0;
    bool sized = false;
    for (int i = 0; i < 100 && !sized; i++) {
        sized = find_window(id, sizeof(id), &wx, &wy, &ww, &wh) && ww == 320 && wh == 200;
        if (!sized)
            usleep(100 * 1000);
    }
    assert_true(sized);

    /* What X shows is the display, pixel for pixel (give the first frames a moment). */
    bool same = false;
    for (int attempt = 0; attempt < 30 && !same; attempt++) {
        uint8_t *rgb = grab_screen(wx, wy, 320, 200);
        assert_non_null(rgb);
        same = true;
        for (int py = 0; py < 200 && same; py++)
            for (int px = 0; px < 320 && same; px++)
                for (unsigned c = 0; c < 3; c++)
                    if (rgb[3 * (py * 320 + px) + c] != fake_view_pattern(px, py, c, 320))
                        same = false;
        free(rgb);
        if (!same)
            usleep(100 * 1000);
    }
    assert_true(same);

    /* A click at window pixel 100, 50 is display pixel 100, 50 with the left button; the
     * keys typed then are evdev codes, pressed and released. */
    assert_int_equal(run_line(NULL, 0, "xdotool mousemove %d %d click 1", wx + 100, wy + 50), 0);
    FAKE_VIEW_WAIT_FOR(&fake, fake.px == 100 && fake.py == 50 && fake.pointer_count >= 2);
    assert_int_equal(run_line(NULL, 0, "xdotool key --window %s a Return", id), 0);
    FAKE_VIEW_WAIT_FOR(&fake, fake.key_count >= 4);
    pthread_mutex_lock(&fake.lock);
    assert_int_equal(fake.keys[0][0], KEY_A);
    assert_int_equal(fake.keys[0][1], 1);
    assert_int_equal(fake.keys[1][0], KEY_A);
    assert_int_equal(fake.keys[1][1], 0);
    assert_int_equal(fake.keys[2][0], KEY_ENTER);
    assert_int_equal(fake.keys[3][0], KEY_ENTER);
    pthread_mutex_unlock(&fake.lock);

    /* The user makes the window 640 x 400: once it settles the guest is asked for that. */
    assert_int_equal(run_line(NULL, 0, "xdotool windowsize %s 640 400", id), 0);
    FAKE_VIEW_WAIT_FOR(&fake, fake.resize_w == 640 && fake.resize_h == 400);

    gui_view_stop(g);
    xvfb_stop(&x);
}

/* No X display: a clear one-line error, nothing started. */
static void test_no_display(void **state)
{
    (void)state;
    char *saved = getenv("DISPLAY") ? strdup(getenv("DISPLAY")) : NULL;
    setenv("DISPLAY", ":159", 1); /* nobody there */
    unsetenv("WAYLAND_DISPLAY");
    static struct fake_view fake;
    fake_view_init(&fake);
    struct view_backend b = fake_view_backend(&fake);
    char msg[512] = "";
    assert_null(gui_view_start(&b, "vmkit test", NULL, NULL, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "--gui: cannot open a window"));
    assert_null(strchr(msg, '\n'));
    if (saved)
        setenv("DISPLAY", saved, 1);
    else
        unsetenv("DISPLAY");
    free(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scancodes),
        cmocka_unit_test(test_window_to_display),
        cmocka_unit_test(test_no_display),
        cmocka_unit_test(test_window_on_xvfb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
