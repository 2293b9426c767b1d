/* The VNC view (vnc.h). libvncserver runs on one thread of ours (rfbProcessEvents): it reads
 * the clients, calls our input hooks and sends updates, and it alone touches the framebuffer.
 * The VM's delegate only records what changed and wakes that thread through an eventfd in
 * libvncserver's own select set; the thread then copies the image (vmk_vm_copy_display_image
 * may be called from any thread), so the VM's thread never waits for a client. The listening
 * sockets are ours too: libvncserver cannot bind a chosen host, a range, or a unix socket. */
#include "vnc.h"
#include "cli.h"
#include "keysym_evdev.h"

#include <rfb/rfb.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PLACEHOLDER_WIDTH  640u /* shown until the guest sets a mode */
#define PLACEHOLDER_HEIGHT 480u
#define MAX_SIDE           16384u
#define FIRST_FREE_LAST    5999u /* "" tries CLI_VNC_FIRST_PORT up to here */
#define NOVNC_DIR          "/usr/share/novnc"

struct vnc_view {
    struct view_backend be;
    rfbScreenInfoPtr screen;
    char *passwords[2]; /* for rfbCheckPasswordByList; [1] NULL */
    int wake_fd;        /* an eventfd in screen->allFds */
    pthread_t thread;
    bool thread_started;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* ours to unlink, or "" */
    char address[300];
    unsigned port;
    char *novnc_url;

    /* The view's thread only. */
    char *fb;
    uint32_t fb_width, fb_height;
    struct key_tracker keys;
    uint8_t keys_down[256 / 8]; /* what we pressed in the guest, to release when clients go */
    unsigned buttons_down;
    uint32_t last_x, last_y;
    int64_t http_since; /* when the web server's connection was last looked at */

    /* What the display did since the thread last looked, under lock. */
    pthread_mutex_t lock;
    bool stop;
    bool mode_pending;
    uint32_t mode_width, mode_height;
    bool dirty;
    uint32_t x0, y0, x1, y1;
};

/* Per client: its last button mask, for the wheel's edges. */
struct vnc_client {
    int mask;
};

/* libvncserver logs on stderr unless told otherwise; vmkit says what it has to itself. */
static void quiet_log(const char *fmt, ...)
{
    (void)fmt;
}

/* ---- input ---------------------------------------------------------------------- */

unsigned vnc_pointer_buttons(int mask)
{
    return (mask & 1 ? VMK_POINTER_BUTTON_LEFT : 0) | (mask & 2 ? VMK_POINTER_BUTTON_MIDDLE : 0) |
           (mask & 4 ? VMK_POINTER_BUTTON_RIGHT : 0);
}

int vnc_scroll_steps(int old_mask, int new_mask)
{
    int pressed = new_mask & ~old_mask;
    return (pressed & 8 ? 1 : 0) - (pressed & 16 ? 1 : 0);
}

static void send_key(struct vnc_view *v, uint16_t code, bool pressed)
{
    if (code < 256) {
        if (pressed)
            v->keys_down[code / 8] |= (uint8_t)(1u << (code % 8));
        else
            v->keys_down[code / 8] &= (uint8_t) ~(1u << (code % 8));
    }
    v->be.key(v->be.user, code, pressed);
}

static void on_key(rfbBool down, rfbKeySym keysym, rfbClientPtr cl)
{
    struct vnc_view *v = cl->screen->screenData;
    struct key_event ev[KEY_TRACKER_MAX_EVENTS];
    unsigned n = key_tracker_event(&v->keys, (uint32_t)keysym, down, ev);
    for (unsigned i = 0; i < n; i++)
        send_key(v, ev[i].code, ev[i].pressed);
}

static void on_pointer(int mask, int x, int y, rfbClientPtr cl)
{
    struct vnc_view *v = cl->screen->screenData;
    struct vnc_client *c = cl->clientData;
    v->last_x = x < 0 ? 0 : (uint32_t)x;
    v->last_y = y < 0 ? 0 : (uint32_t)y;
    v->buttons_down = vnc_pointer_buttons(mask);
    v->be.pointer(v->be.user, v->last_x, v->last_y, v->buttons_down);
    int steps = vnc_scroll_steps(c ? c->mask : 0, mask);
    if (steps)
        v->be.scroll(v->be.user, steps);
    if (c)
        c->mask = mask;
}

/* The guest has no clipboard device yet: text from clients (at most 1 MB: libvncserver drops
 * a client that sends more) is dropped. */
static void on_cut_text(char *text, int len, rfbClientPtr cl)
{
    (void)text, (void)len, (void)cl;
}

/* A client went: nothing it pressed stays down in the guest. */
static void on_client_gone(rfbClientPtr cl)
{
    struct vnc_view *v = cl->screen->screenData;
    free(cl->clientData);
    cl->clientData = NULL;
    for (unsigned code = 0; code < 256; code++)
        if (v->keys_down[code / 8] >> (code % 8) & 1)
            send_key(v, (uint16_t)code, false);
    memset(&v->keys, 0, sizeof(v->keys));
    if (v->buttons_down) {
        v->buttons_down = 0;
        v->be.pointer(v->be.user, v->last_x, v->last_y, 0);
    }
}

static enum rfbNewClientAction on_new_client(rfbClientPtr cl)
{
    cl->clientData = calloc(1, sizeof(struct vnc_client));
    if (!cl->clientData)
        return RFB_CLIENT_REFUSE;
    cl->clientGoneHook = on_client_gone;
    return RFB_CLIENT_ACCEPT;
}

/* A client's SetDesktopSize: the guest's driver hears of it and may follow; the new size
 * reaches the clients when it does. */
static int on_set_desktop_size(int width, int height, int screens, struct rfbExtDesktopScreen *s,
                               rfbClientPtr cl)
{
    (void)screens, (void)s;
    struct vnc_view *v = cl->screen->screenData;
    if (width < 1 || height < 1 || (unsigned)width > MAX_SIDE || (unsigned)height > MAX_SIDE)
        return rfbExtDesktopSize_InvalidScreenLayout;
    v->be.resize(v->be.user, (uint32_t)width, (uint32_t)height);
    return rfbExtDesktopSize_Success;
}

/* ---- the framebuffer ---------------------------------------------------------- */

/* Gives libvncserver a framebuffer of the new size (black); clients that know the
 * DesktopSize encodings hear of it. */
static bool resize_framebuffer(struct vnc_view *v, uint32_t w, uint32_t h)
{
    if (w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE)
        return false;
    char *fb = calloc((size_t)w * h, 4);
    if (!fb)
        return false;
    /* R, G, B, X bytes: libvncserver's format for 8 bits x 3 in 4 bytes on little-endian
     * (red shift 0, green 8, blue 16). */
    rfbNewFramebuffer(v->screen, fb, (int)w, (int)h, 8, 3, 4);
    free(v->fb);
    v->fb = fb;
    v->fb_width = w;
    v->fb_height = h;
    return true;
}

/* Brings the framebuffer up to what the backend shows and marks what changed. */
static void refresh(struct vnc_view *v, bool all, uint32_t x0, uint32_t y0, uint32_t x1,
                    uint32_t y1)
{
    int r = -EAGAIN;
    for (int tries = 0; tries < 4; tries++) {
        uint32_t w = 0, h = 0;
        r = v->be.copy_image(v->be.user, v->fb, (size_t)v->fb_width * v->fb_height * 4, &w, &h);
        if (r == 0 && w == v->fb_width && h == v->fb_height)
            break;
        /* Another size (the guest changed mode before we looked): copy again at that size. */
        if ((r != 0 && r != -ENOSPC) || !resize_framebuffer(v, w, h))
            return;
        all = true;
    }
    if (r != 0)
        return;
    if (all) {
        x0 = y0 = 0;
        x1 = v->fb_width;
        y1 = v->fb_height;
    }
    x1 = x1 < v->fb_width ? x1 : v->fb_width;
    y1 = y1 < v->fb_height ? y1 : v->fb_height;
    if (x0 < x1 && y0 < y1)
        rfbMarkRectAsModified(v->screen, (int)x0, (int)y0, (int)x1, (int)y1);
}

static void wake(struct vnc_view *v)
{
    uint64_t one = 1;
    if (write(v->wake_fd, &one, sizeof(one)) < 0) {
        /* Only EAGAIN, with the counter full: the thread is awake already. */
    }
}

void vnc_view_mode_changed(struct vnc_view *v, uint32_t width, uint32_t height)
{
    pthread_mutex_lock(&v->lock);
    v->mode_pending = true;
    v->mode_width = width;
    v->mode_height = height;
    pthread_mutex_unlock(&v->lock);
    wake(v);
}

void vnc_view_updated(struct vnc_view *v, uint32_t x, uint32_t y, uint32_t width, uint32_t height)
{
    if (width == 0 || height == 0)
        return;
    pthread_mutex_lock(&v->lock);
    uint32_t x1 = x + width < x ? UINT32_MAX : x + width;
    uint32_t y1 = y + height < y ? UINT32_MAX : y + height;
    if (!v->dirty) {
        v->x0 = x, v->y0 = y, v->x1 = x1, v->y1 = y1;
    } else {
        v->x0 = x < v->x0 ? x : v->x0;
        v->y0 = y < v->y0 ? y : v->y0;
        v->x1 = x1 > v->x1 ? x1 : v->x1;
        v->y1 = y1 > v->y1 ? y1 : v->y1;
    }
    v->dirty = true;
    pthread_mutex_unlock(&v->lock);
    wake(v);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libvncserver's web server holds one connection at a time and, when another waits, drops
 * the one it holds even before its request came; a browser loading noVNC's modules over
 * parallel connections would lose some. So it runs only once its connection has something to
 * read (or has waited 2 s): the others wait in the listen backlog. */
static void serve_web(struct vnc_view *v)
{
    rfbScreenInfoPtr s = v->screen;
    if (s->httpSock != RFB_INVALID_SOCKET) {
        struct pollfd p = { .fd = s->httpSock, .events = POLLIN };
        if (poll(&p, 1, 0) == 0 && now_ms() - v->http_since < 2000)
            return;
    }
    rfbHttpCheckFds(s);
    v->http_since = now_ms(); /* the connection it holds now, if any, is new or in progress */
}

static void *view_thread(void *arg)
{
    struct vnc_view *v = arg;
    for (;;) {
        uint64_t n;
        if (read(v->wake_fd, &n, sizeof(n)) < 0) {
            /* EAGAIN: nothing new */
        }
        pthread_mutex_lock(&v->lock);
        bool stop = v->stop, mode = v->mode_pending, dirty = v->dirty;
        uint32_t mw = v->mode_width, mh = v->mode_height;
        uint32_t x0 = v->x0, y0 = v->y0, x1 = v->x1, y1 = v->y1;
        v->mode_pending = v->dirty = false;
        pthread_mutex_unlock(&v->lock);
        if (stop)
            return NULL;
        if (mode && (mw == 0 || mh == 0)) {
            /* The guest turned the display off: black, at the size it had. */
            memset(v->fb, 0, (size_t)v->fb_width * v->fb_height * 4);
            rfbMarkRectAsModified(v->screen, 0, 0, (int)v->fb_width, (int)v->fb_height);
        } else if (mode || dirty) {
            refresh(v, mode, x0, y0, x1, y1);
        }
        /* Wakes for clients, the eventfd and new HTTP connections; an HTTP connection in
         * progress is not in the set, so look again soon while there is one. */
        rfbScreenInfoPtr s = v->screen;
        bool web = s->httpDir != NULL, http_busy = web && s->httpSock != RFB_INVALID_SOCKET;
        if (web && http_busy) {
            FD_CLR(s->httpListenSock, &s->allFds);
        } else if (web) {
            FD_SET(s->httpListenSock, &s->allFds);
            s->maxFd = s->httpListenSock > s->maxFd ? s->httpListenSock : s->maxFd;
        }
        s->httpDir = NULL; /* rfbProcessEvents leaves the web server to serve_web */
        rfbProcessEvents(s, http_busy ? 5000 : 500000);
        if (web) {
            s->httpDir = NOVNC_DIR;
            serve_web(v);
        }
    }
}

/* ---- listening --------------------------------------------------------------- */

static int listen_on(const struct sockaddr *a, socklen_t alen)
{
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (a->sa_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a, alen) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* host:port over TCP (port 0: any). Returns the socket with *bound its port, or -errno. */
static int listen_tcp(const char *host, unsigned port, unsigned *bound)
{
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM },
                    *res = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    int g = getaddrinfo(host, service, &hints, &res);
    if (g != 0)
        return g == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    int fd = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = listen_on(ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
    if (fd >= 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

/* A unix socket at path; a stale one (nobody accepts on it) is replaced. */
static int listen_unix(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = listen_on((struct sockaddr *)&a, sizeof(a));
    struct stat st;
    if (fd == -EADDRINUSE && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool stale = probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) < 0 &&
                     errno == ECONNREFUSED;
        if (probe >= 0)
            close(probe);
        if (stale && unlink(path) == 0)
            fd = listen_on((struct sockaddr *)&a, sizeof(a));
    }
    return fd;
}

/* Opens where clients connect, as address asks; fills v->address, v->port, v->unix_path.
 * Returns the socket, or -1 with msg. */
static int open_listener(struct vnc_view *v, const struct cli_vnc_address *a, char *msg, size_t len)
{
    int fd;
    if (a->unix_socket) {
        fd = listen_unix(a->path);
        if (fd < 0) {
            view_msg(msg, len, "--vnc: cannot listen on unix:%s: %s", a->path, strerror(-fd));
            return -1;
        }
        snprintf(v->unix_path, sizeof(v->unix_path), "%s", a->path);
        snprintf(v->address, sizeof(v->address), "unix:%s", a->path);
        return fd;
    }
    bool v6 = strchr(a->host, ':') != NULL;
    unsigned port = a->port;
    do {
        fd = listen_tcp(a->host, port, &v->port);
    } while (fd == -EADDRINUSE && a->first_free && ++port <= FIRST_FREE_LAST);
    if (fd < 0) {
        if (a->first_free && fd == -EADDRINUSE)
            view_msg(msg, len, "--vnc: no free port on %s from %u to %u", a->host, a->port,
                     FIRST_FREE_LAST);
        else
            view_msg(msg, len, "--vnc: cannot listen on %s%s%s:%u: %s", v6 ? "[" : "", a->host,
                     v6 ? "]" : "", a->port, strerror(-fd));
        return -1;
    }
    snprintf(v->address, sizeof(v->address), "%s%s%s:%u", v6 ? "[" : "", a->host, v6 ? "]" : "",
             v->port);
    return fd;
}

/* noVNC's pages, on the VNC port - 100 when free (5800 for 5900, as libvncserver would),
 * else any port. Returns the socket, -1 without noVNC, or -2 with msg. */
static int open_web(struct vnc_view *v, const struct cli_vnc_address *a, char *msg, size_t len)
{
    struct stat st;
    if (stat(NOVNC_DIR "/vnc.html", &st) != 0)
        return -1;
    unsigned http_port = 0;
    int fd = v->port > 100 ? listen_tcp(a->host, v->port - 100, &http_port) : -EADDRINUSE;
    if (fd < 0)
        fd = listen_tcp(a->host, 0, &http_port);
    if (fd < 0) {
        view_msg(msg, len, "--web: cannot listen on %s: %s", a->host, strerror(-fd));
        return -2;
    }
    bool v6 = strchr(a->host, ':') != NULL;
    char host[300];
    snprintf(host, sizeof(host), "%s%s%s", v6 ? "[" : "", a->host, v6 ? "]" : "");
    if (asprintf(&v->novnc_url, "http://%s:%u/vnc.html?host=%s&port=%u&autoconnect=1", host,
                 http_port, host, v->port) < 0) {
        v->novnc_url = NULL;
        close(fd);
        view_msg(msg, len, "--web: out of memory");
        return -2;
    }
    return fd;
}

/* The first line of path, without its line end. */
static char *read_password(const char *path, char *msg, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        view_msg(msg, len, "--vnc-password-file: '%s': %s", path, strerror(errno));
        return NULL;
    }
    char line[4096];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    line[got ? strcspn(line, "\r\n") : 0] = '\0';
    if (!line[0]) {
        view_msg(msg, len,
                 "--vnc-password-file: '%s': the first line is empty (it holds the "
                 "VNC password)",
                 path);
        return NULL;
    }
    char *pw = strdup(line);
    explicit_bzero(line, sizeof(line));
    if (!pw)
        view_msg(msg, len, "--vnc-password-file: out of memory");
    return pw;
}

/* ---- start and stop ----------------------------------------------------------- */

static void free_view(struct vnc_view *v)
{
    if (v->screen) {
        if (v->screen->httpListen6Sock == v->screen->httpListenSock)
            v->screen->httpListen6Sock = RFB_INVALID_SOCKET; /* closed once */
        rfbShutdownServer(v->screen, TRUE);
        rfbScreenCleanup(v->screen);
    }
    if (v->wake_fd >= 0)
        close(v->wake_fd);
    if (v->unix_path[0]) {
        struct stat st;
        if (lstat(v->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(v->unix_path);
    }
    if (v->passwords[0]) {
        explicit_bzero(v->passwords[0], strlen(v->passwords[0]));
        free(v->passwords[0]);
    }
    pthread_mutex_destroy(&v->lock);
    free(v->novnc_url);
    free(v->fb);
    free(v);
}

struct vnc_view *vnc_view_start_backend(const struct view_backend *b, const char *address,
                                        const char *password_file, bool web, char *msg, size_t len)
{
    struct cli_vnc_address a;
    if (cli_parse_vnc_address("--vnc", address ? address : "", &a, msg, len))
        return NULL;
    if (web && a.unix_socket) {
        view_msg(msg, len,
                 "--web: needs a TCP address for the browser (--vnc HOST:PORT or auto), "
                 "not unix:PATH");
        return NULL;
    }
    struct vnc_view *v = calloc(1, sizeof(*v));
    if (!v) {
        view_msg(msg, len, "--vnc: out of memory");
        return NULL;
    }
    v->be = *b;
    v->wake_fd = -1;
    pthread_mutex_init(&v->lock, NULL);
    int listen_fd = -1, http_fd = -1;
    if (password_file && !(v->passwords[0] = read_password(password_file, msg, len)))
        goto fail;
    v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->wake_fd < 0) {
        view_msg(msg, len, "--vnc: eventfd: %s", strerror(errno));
        goto fail;
    }
    if ((listen_fd = open_listener(v, &a, msg, len)) < 0)
        goto fail;
    if (web && (http_fd = open_web(v, &a, msg, len)) == -2)
        goto fail;

    /* What the display shows already (the guest may have set its mode before we came). */
    uint32_t w = 0, h = 0;
    int r = v->be.copy_image(v->be.user, NULL, 0, &w, &h);
    if (r != -ENOSPC || w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE)
        w = PLACEHOLDER_WIDTH, h = PLACEHOLDER_HEIGHT;
    v->fb = calloc((size_t)w * h, 4);
    rfbLog = rfbErr = quiet_log;
    v->screen = v->fb ? rfbGetScreen(NULL, NULL, (int)w, (int)h, 8, 3, 4) : NULL;
    if (!v->screen) {
        view_msg(msg, len, "--vnc: out of memory");
        goto fail;
    }
    v->fb_width = w;
    v->fb_height = h;
    rfbScreenInfoPtr s = v->screen;
    s->frameBuffer = v->fb;
    s->screenData = v;
    s->desktopName = "vmkit";
    s->alwaysShared = TRUE; /* a second viewer joins rather than ends the first */
    s->deferUpdateTime = 0; /* the thread wakes on changes: send at once */
    s->cursor = NULL;       /* the guest draws its own */
    s->kbdAddEvent = on_key;
    s->ptrAddEvent = on_pointer;
    s->setXCutText = on_cut_text;
    s->newClientHook = on_new_client;
    if (b->resize)
        s->setDesktopSizeHook = on_set_desktop_size;
    if (v->passwords[0]) {
        s->authPasswdData = v->passwords;
        s->passwordCheck = rfbCheckPasswordByList;
    }
    /* Our sockets in place of libvncserver's: rfbInitServer sees them ready. */
    s->autoPort = FALSE;
    s->port = s->ipv6port = 0;
    s->listenSock = listen_fd;
    s->socketState = RFB_SOCKET_READY;
    FD_ZERO(&s->allFds);
    FD_SET(listen_fd, &s->allFds);
    FD_SET(v->wake_fd, &s->allFds);
    s->maxFd = listen_fd > v->wake_fd ? listen_fd : v->wake_fd;
    listen_fd = -1; /* libvncserver's to close now */
    if (http_fd >= 0) {
        s->httpDir = NOVNC_DIR;
        s->httpListenSock = http_fd;
        /* rfbHttpCheckFds tests FD_ISSET on the IPv6 socket unchecked (-1 aborts under
         * _FORTIFY_SOURCE): it gets the same socket; free_view takes it back. */
        s->httpListen6Sock = http_fd;
        s->httpInitDone = TRUE;
        FD_SET(http_fd, &s->allFds);
        s->maxFd = http_fd > s->maxFd ? http_fd : s->maxFd;
        http_fd = -1;
    }
    rfbInitServer(s);
    vnc_view_mode_changed(v, w, h); /* the first copy */
    int e = pthread_create(&v->thread, NULL, view_thread, v);
    if (e) {
        view_msg(msg, len, "--vnc: cannot start a thread: %s", strerror(e));
        goto fail;
    }
    v->thread_started = true;
    return v;
fail:
    if (listen_fd >= 0)
        close(listen_fd);
    if (http_fd >= 0)
        close(http_fd);
    free_view(v);
    return NULL;
}

/* ---- a VM as the backend -------------------------------------------------------- */

struct vnc_view *vnc_view_start(vmk_vm *vm, const char *address, const char *password_file,
                                bool web, char *msg, size_t len)
{
    if (vmk_vm_display_count(vm) == 0) {
        view_msg(msg, len, "--vnc: the VM has no display (--device virtio-gpu)");
        return NULL;
    }
    struct view_backend b = view_vm_backend(vm);
    struct vnc_view *v = vnc_view_start_backend(&b, address, password_file, web, msg, len);
    if (!v)
        return NULL;
    vnc_view_mode_changed(v, 1, 1); /* a change before the caller's delegate was in place */
    return v;
}

const char *vnc_view_address(const struct vnc_view *v)
{
    return v->address;
}

unsigned vnc_view_port(const struct vnc_view *v)
{
    return v->unix_path[0] ? 0 : v->port;
}

const char *vnc_view_web_url(const struct vnc_view *v)
{
    return v->novnc_url;
}

void vnc_view_stop(struct vnc_view *v)
{
    if (!v)
        return;
    if (v->thread_started) {
        pthread_mutex_lock(&v->lock);
        v->stop = true;
        pthread_mutex_unlock(&v->lock);
        wake(v);
        pthread_join(v->thread, NULL);
    }
    free_view(v);
}
