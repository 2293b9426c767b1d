/* virtio_gpu_bench: vmkit's virtio-gpu device driven in-process by a synthetic driver that
 * does what Linux's virtio_gpu does for a 2D framebuffer: one resource of WxH backed by
 * scattered 4 KiB guest pages, then per frame a TRANSFER_TO_HOST_2D of the changed rectangle
 * and a RESOURCE_FLUSH of it. Prints one line of figures (see docs/benchmarks.md).
 *
 *   virtio_gpu_bench full|partial none|screenshot|vnc FRAMES [WIDTH HEIGHT]
 *
 * full: the whole frame changes each time; partial: a 512x64 band (a few lines of text).
 * Sinks: none (the device alone), screenshot (a thread that copies the scanout after every
 * flush, as a recorder or a screenshot-on-change would), vnc (vmkit's VNC view with one RFB
 * client on loopback reading raw updates as fast as it can).
 *
 * Figures: frames per second (back to back), submit-to-used latency of the two commands
 * (p50, p99), the device's CPU per frame (the submitting thread's CPU time: the device serves
 * its queue on the thread that kicks, as on vmkit's doorbell thread), the sink's CPU per frame
 * (its threads, the RFB client excluded), and a reference: a plain row-by-row memcpy of the
 * changed rectangle out of the scattered pages (what a naive device would at least spend). */
#include "core/guest_memory.h"
#include "virtio/gpu.h"
#include "virtio_test_driver.h"
#include "vnc.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_gpu.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESOURCE_ID 1

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "virtio_gpu_bench: %s\n", what);
    exit(1);
}

/* ---- the driver ------------------------------------------------------------------ */

struct bench {
    struct test_driver t;
    struct virtio_device *dev;
    uint64_t resp; /* a response buffer */
    uint64_t cmd;  /* a command buffer, big enough for ATTACH_BACKING's entries */
    uint64_t *pages;
    unsigned npages;
};

/* Sends len bytes of cmd on queue 0 and waits for the response; returns its type. */
static uint32_t submit(struct bench *b, const void *cmd, uint32_t len)
{
    memcpy(td_ptr(&b->t, b->cmd, len), cmd, len);
    struct td_buf bufs[2] = { { b->cmd, len, false },
                              { b->resp, sizeof(struct virtio_gpu_ctrl_hdr), true } };
    td_add(&b->t, 0, bufs, 2);
    td_kick(&b->t, 0);
    uint32_t id, used_len;
    if (!td_used(&b->t, 0, &id, &used_len))
        die("the device did not answer");
    struct virtio_gpu_ctrl_hdr *r = td_ptr(&b->t, b->resp, sizeof(*r));
    return le32toh(r->type);
}

static void setup(struct bench *b, uint32_t w, uint32_t h, const struct gpu_display_sink *sink)
{
    struct virtio_gpu_params p = { .num_scanouts = 1, .width = { w }, .height = { h } };
    if (sink)
        p.sink = *sink;
    vmk_error *err = NULL;
    b->dev = virtio_gpu_new(&p, &err);
    if (!b->dev || td_init(&b->t, b->dev, ~0ull) != 0)
        die("cannot make the device");
    b->npages = (unsigned)(((uint64_t)w * h * 4 + 4095) / 4096);
    b->resp = td_alloc(&b->t, 4096);
    b->cmd = td_alloc(&b->t, 32 + 16 * b->npages);
    /* Pages in a shuffled order, as a guest's allocator hands them out. */
    b->pages = calloc(b->npages, sizeof(*b->pages));
    uint64_t base = (td_alloc(&b->t, b->npages * 4096u + 4096u) + 4095) & ~4095ull;
    if (!td_ptr(&b->t, base, (uint64_t)b->npages * 4096))
        die("the fake guest's RAM is too small for that size");
    for (unsigned i = 0; i < b->npages; i++)
        b->pages[i] = base + 4096ull * i;
    srand(1);
    for (unsigned i = b->npages - 1; i > 0; i--) {
        unsigned j = (unsigned)rand() % (i + 1);
        uint64_t tmp = b->pages[i];
        b->pages[i] = b->pages[j];
        b->pages[j] = tmp;
    }
    struct virtio_gpu_resource_create_2d c = {
        .hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
        .resource_id = htole32(RESOURCE_ID),
        .format = htole32(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM),
        .width = htole32(w),
        .height = htole32(h),
    };
    if (submit(b, &c, sizeof(c)) != VIRTIO_GPU_RESP_OK_NODATA)
        die("RESOURCE_CREATE_2D failed");
    size_t alen = sizeof(struct virtio_gpu_resource_attach_backing) +
                  b->npages * sizeof(struct virtio_gpu_mem_entry);
    uint8_t *a = calloc(1, alen);
    struct virtio_gpu_resource_attach_backing *ab = (void *)a;
    ab->hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING);
    ab->resource_id = htole32(RESOURCE_ID);
    ab->nr_entries = htole32(b->npages);
    struct virtio_gpu_mem_entry *e = (void *)(ab + 1);
    for (unsigned i = 0; i < b->npages; i++) {
        e[i].addr = htole64(b->pages[i]);
        e[i].length = htole32(4096);
    }
    if (submit(b, a, (uint32_t)alen) != VIRTIO_GPU_RESP_OK_NODATA)
        die("RESOURCE_ATTACH_BACKING failed");
    free(a);
    struct virtio_gpu_set_scanout s = {
        .hdr.type = htole32(VIRTIO_GPU_CMD_SET_SCANOUT),
        .r = { 0, 0, htole32(w), htole32(h) },
        .scanout_id = 0,
        .resource_id = htole32(RESOURCE_ID),
    };
    if (submit(b, &s, sizeof(s)) != VIRTIO_GPU_RESP_OK_NODATA)
        die("SET_SCANOUT failed");
}

/* The guest draws: one byte per page of the rectangle's rows changes (cheap, not timed). */
static void draw(struct bench *b, uint32_t w, uint32_t y0, uint32_t rows, unsigned frame)
{
    uint64_t first = (uint64_t)y0 * w * 4 / 4096, last = ((uint64_t)(y0 + rows) * w * 4 - 1) / 4096;
    for (uint64_t p = first; p <= last && p < b->npages; p++)
        *(uint8_t *)td_ptr(&b->t, b->pages[p], 1) = (uint8_t)frame;
}

/* Copies len bytes at offset of the resource's backing (scattered pages) into dst. */
static void copy_from_pages(struct bench *b, uint64_t offset, uint8_t *dst, uint64_t len)
{
    while (len) {
        uint64_t in_page = 4096 - offset % 4096, n = len < in_page ? len : in_page;
        memcpy(dst, td_ptr(&b->t, b->pages[offset / 4096] + offset % 4096, n), n);
        dst += n, offset += n, len -= n;
    }
}

/* ---- sinks ----------------------------------------------------------------------- */

/* A thread that copies the scanout after each flush (coalescing: at most one pending). */
struct copier {
    struct bench *b;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending, stop;
    unsigned copies;
    uint8_t *buf;
    size_t len;
    pthread_t thread;
};

static void *copier_thread(void *arg)
{
    struct copier *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->pending && !c->stop)
            pthread_cond_wait(&c->cond, &c->lock);
        if (c->stop)
            break;
        c->pending = false;
        pthread_mutex_unlock(&c->lock);
        uint32_t w, h;
        if (virtio_gpu_read_scanout(c->b->dev, 0, c->buf, c->len, &w, &h) == 0)
            c->copies++;
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void copier_flushed(void *ctx, unsigned scanout, uint32_t x, uint32_t y, uint32_t w,
                           uint32_t h)
{
    struct copier *c = ctx;
    (void)scanout, (void)x, (void)y, (void)w, (void)h;
    pthread_mutex_lock(&c->lock);
    c->pending = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* The VNC view over the device's scanout. */
static struct bench *vnc_bench;
static struct vnc_view *vnc;

static int vnc_copy(void *user, void *buf, size_t len, uint32_t *w, uint32_t *h)
{
    (void)user;
    return virtio_gpu_read_scanout(vnc_bench->dev, 0, buf, len, w, h);
}

static void vnc_ignore_key(void *user, uint16_t code, bool pressed)
{
    (void)user, (void)code, (void)pressed;
}

static void vnc_ignore_pointer(void *user, uint32_t x, uint32_t y, unsigned buttons)
{
    (void)user, (void)x, (void)y, (void)buttons;
}

static void vnc_ignore_scroll(void *user, int32_t steps)
{
    (void)user, (void)steps;
}

static void vnc_mode(void *ctx, unsigned scanout, uint32_t w, uint32_t h)
{
    (void)ctx, (void)scanout;
    if (vnc)
        vnc_view_mode_changed(vnc, w, h);
}

static void vnc_flushed(void *ctx, unsigned scanout, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    (void)ctx, (void)scanout;
    if (vnc)
        vnc_view_updated(vnc, x, y, w, h);
}

/* One RFB client reading raw updates as fast as they come. */
struct rfb_client {
    int fd;
    unsigned port;
    unsigned updates;
    volatile bool stop;
    pthread_t thread;
    clockid_t cpu;
};

static void rd(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            pthread_exit(NULL); /* the view closed the connection: the run is over */
        }
        got += (size_t)n;
    }
}

static void wr(int fd, const void *buf, size_t len)
{
    if (write(fd, buf, len) != (ssize_t)len)
        pthread_exit(NULL);
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

static void request(int fd, uint32_t w, uint32_t h)
{
    uint8_t m[10] = {
        3, 1, 0, 0, 0, 0, (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 8), (uint8_t)h
    };
    wr(fd, m, sizeof(m));
}

static void *client_thread(void *arg)
{
    struct rfb_client *c = arg;
    pthread_getcpuclockid(pthread_self(), &c->cpu);
    char v[12];
    rd(c->fd, v, 12);
    wr(c->fd, "RFB 003.008\n", 12);
    uint8_t n, type, res[4], si[24];
    rd(c->fd, &n, 1);
    rd(c->fd, &type, 1);
    wr(c->fd, "\1", 1);
    rd(c->fd, res, 4);
    wr(c->fd, "\1", 1);
    rd(c->fd, si, 24);
    uint32_t w = be16(si), h = be16(si + 2);
    uint32_t nlen =
        (uint32_t)si[20] << 24 | (uint32_t)si[21] << 16 | (uint32_t)si[22] << 8 | si[23];
    char name[256];
    rd(c->fd, name, nlen < sizeof(name) ? nlen : sizeof(name));
    /* Raw and DesktopSize (-223): size changes come as a pseudo-rectangle. */
    const uint8_t enc[] = { 2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21 };
    wr(c->fd, enc, sizeof(enc));
    request(c->fd, w, h);
    size_t cap = 0;
    uint8_t *rowbuf = NULL;
    while (!c->stop) {
        uint8_t hdr[4];
        rd(c->fd, hdr, 4);
        if (hdr[0] != 0)
            die("the RFB client got a message it does not read");
        unsigned rects = be16(hdr + 2);
        for (unsigned r = 0; r < rects; r++) {
            uint8_t rh[12];
            rd(c->fd, rh, 12);
            uint32_t rw = be16(rh + 4), rhh = be16(rh + 6);
            int32_t e = (int32_t)((uint32_t)rh[8] << 24 | (uint32_t)rh[9] << 16 |
                                  (uint32_t)rh[10] << 8 | rh[11]);
            if (e == -223) {
                w = rw, h = rhh;
                continue;
            }
            if (e != 0)
                die("the RFB client got an encoding it did not ask for");
            size_t len = 4ull * rw;
            if (len > cap) {
                rowbuf = realloc(rowbuf, len);
                cap = len;
            }
            for (uint32_t j = 0; j < rhh; j++)
                rd(c->fd, rowbuf, len);
        }
        __atomic_add_fetch(&c->updates, 1, __ATOMIC_RELAXED);
        request(c->fd, w, h);
    }
    free(rowbuf);
    return NULL;
}

static int connect_loopback(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        die("cannot connect to the VNC view");
    return fd;
}

/* ---- the run --------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t process_cpu(void)
{
    return now_ns(CLOCK_PROCESS_CPUTIME_ID);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: virtio_gpu_bench full|partial none|screenshot|vnc FRAMES "
                        "[WIDTH HEIGHT]\n");
        return 2;
    }
    bool full = !strcmp(argv[1], "full");
    if (!full && strcmp(argv[1], "partial"))
        die("the mode is full or partial");
    const char *sink_name = argv[2];
    unsigned frames = (unsigned)strtoul(argv[3], NULL, 10);
    uint32_t w = argc == 6 ? (uint32_t)strtoul(argv[4], NULL, 10) : 1280;
    uint32_t h = argc == 6 ? (uint32_t)strtoul(argv[5], NULL, 10) : 720;
    if (!frames || !w || !h || w > 1920 || h > 1080)
        die("FRAMES must be positive and the size at most 1920x1080 (the fake RAM holds 16 MiB)");
    uint32_t rw = full ? w : (w < 512 ? w : 512), rh = full ? h : (h < 64 ? h : 64);

    static struct bench b;
    struct copier cp = { .b = &b };
    struct gpu_display_sink sink = { 0 };
    struct rfb_client client = { .fd = -1 };
    if (!strcmp(sink_name, "screenshot")) {
        pthread_mutex_init(&cp.lock, NULL);
        pthread_cond_init(&cp.cond, NULL);
        cp.len = 4ull * w * h;
        cp.buf = malloc(cp.len);
        sink = (struct gpu_display_sink){ .flushed = copier_flushed, .ctx = &cp };
    } else if (!strcmp(sink_name, "vnc")) {
        sink = (struct gpu_display_sink){ .mode_changed = vnc_mode, .flushed = vnc_flushed };
    } else if (strcmp(sink_name, "none")) {
        die("the sink is none, screenshot or vnc");
    }
    setup(&b, w, h, &sink);
    if (cp.buf)
        pthread_create(&cp.thread, NULL, copier_thread, &cp);
    if (!strcmp(sink_name, "vnc")) {
        vnc_bench = &b;
        struct view_backend be = { .copy_image = vnc_copy,
                                   .key = vnc_ignore_key,
                                   .pointer = vnc_ignore_pointer,
                                   .scroll = vnc_ignore_scroll };
        char msg[512];
        vnc = vnc_view_start_backend(&be, "127.0.0.1:0", NULL, false, msg, sizeof(msg));
        if (!vnc)
            die(msg);
        vnc_view_mode_changed(vnc, w, h);
        client.fd = connect_loopback(vnc_view_port(vnc));
        pthread_create(&client.thread, NULL, client_thread, &client);
        usleep(300 * 1000); /* the handshake and the first full update */
    }

    /* The reference: a plain row-by-row copy of the changed rectangle out of the pages. */
    uint8_t *ref_dst = malloc(4ull * w * h);
    memset(ref_dst, 0, 4ull * w * h); /* its pages are there before the clock starts */
    uint64_t f0 = now_ns(CLOCK_MONOTONIC);
    for (unsigned i = 0; i < 100; i++)
        for (uint32_t y = 0; y < rh; y++)
            copy_from_pages(&b, 4ull * y * w, ref_dst + 4ull * y * w, 4ull * rw);
    uint64_t ref_ns = (now_ns(CLOCK_MONOTONIC) - f0) / 100;
    free(ref_dst);

    uint64_t *lat = calloc(frames, sizeof(*lat));
    uint64_t dev_cpu = 0;
    unsigned client_before = __atomic_load_n(&client.updates, __ATOMIC_RELAXED);
    struct timespec client_cpu0 = { 0, 0 }, client_cpu1 = { 0, 0 };
    if (client.fd >= 0)
        clock_gettime(client.cpu, &client_cpu0);
    uint64_t proc0 = process_cpu(), main0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    for (unsigned f = 0; f < frames; f++) {
        uint32_t y0 = full ? 0 : (f * 37u) % (h - rh + 1);
        draw(&b, w, y0, rh, f);
        struct virtio_gpu_transfer_to_host_2d tr = {
            .hdr.type = htole32(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D),
            .r = { 0, htole32(y0), htole32(rw), htole32(rh) },
            .offset = htole64(4ull * y0 * w),
            .resource_id = htole32(RESOURCE_ID),
        };
        struct virtio_gpu_resource_flush fl = {
            .hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
            .r = { 0, htole32(y0), htole32(rw), htole32(rh) },
            .resource_id = htole32(RESOURCE_ID),
        };
        uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID), s0 = now_ns(CLOCK_MONOTONIC);
        if (submit(&b, &tr, sizeof(tr)) != VIRTIO_GPU_RESP_OK_NODATA ||
            submit(&b, &fl, sizeof(fl)) != VIRTIO_GPU_RESP_OK_NODATA)
            die("a frame's commands failed");
        lat[f] = now_ns(CLOCK_MONOTONIC) - s0;
        dev_cpu += now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    uint64_t elapsed = now_ns(CLOCK_MONOTONIC) - t0;
    uint64_t main_cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - main0;
    usleep(100 * 1000); /* let the sink finish the last frame */
    uint64_t proc = process_cpu() - proc0;
    uint64_t client_ns = 0;
    unsigned client_updates = __atomic_load_n(&client.updates, __ATOMIC_RELAXED) - client_before;
    if (client.fd >= 0) {
        clock_gettime(client.cpu, &client_cpu1);
        client_ns = (uint64_t)(client_cpu1.tv_sec - client_cpu0.tv_sec) * 1000000000ull +
                    (uint64_t)(client_cpu1.tv_nsec - client_cpu0.tv_nsec);
    }
    qsort(lat, frames, sizeof(*lat), cmp_u64);
    double per = 1.0 / frames;
    /* The sink's share: the process but for this thread (the device, and the drawing that is
     * the guest's) and the RFB client (a viewer, elsewhere in real life). */
    uint64_t sink_ns = proc > main_cpu + client_ns ? proc - main_cpu - client_ns : 0;
    printf("mode=%s sink=%s size=%ux%u frames=%u fps=%.0f p50_us=%.1f p99_us=%.1f "
           "device_cpu_us=%.1f sink_cpu_us=%.1f rowcopy_us=%.1f client_updates=%u "
           "copies=%u\n",
           argv[1], sink_name, w, h, frames, frames / (elapsed / 1e9), lat[frames / 2] / 1e3,
           lat[(size_t)(frames * 0.99)] / 1e3, dev_cpu * per / 1e3, sink_ns * per / 1e3,
           ref_ns / 1e3, client_updates, cp.copies);

    if (vnc) {
        client.stop = true;
        vnc_view_stop(vnc); /* closes the client's connection: its thread ends */
        pthread_join(client.thread, NULL);
        close(client.fd);
    }
    if (cp.buf) {
        pthread_mutex_lock(&cp.lock);
        cp.stop = true;
        pthread_cond_signal(&cp.cond);
        pthread_mutex_unlock(&cp.lock);
        pthread_join(cp.thread, NULL);
        free(cp.buf);
    }
    td_fini(&b.t);
    b.dev->ops->destroy(b.dev);
    free(b.pages);
    free(lat);
    return 0;
}
