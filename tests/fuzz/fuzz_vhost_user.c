/* libFuzzer target for the vhost-user server: a hostile front end on the real unix
 * socket. Each input is one or more connections to a server in this process (virtio-rng,
 * or virtio-console with two ports: six rings and a configuration space), driven by
 * actions read from the input:
 *
 *   raw message   any request, flags, declared size, payload bytes and file descriptors
 *                 (the front end's RAM, an eventfd, /dev/null, a pipe); a payload shorter
 *                 than declared is followed by a half-close, so the server sees the
 *                 truncation at once instead of waiting out its I/O timeout
 *   memory table  regions of the front end's RAM (a memfd) at chosen guest and front-end
 *                 addresses and offsets
 *   ring set-up   SET_VRING_NUM/ADDR/BASE/ENABLE/KICK/CALL, GET_VRING_BASE
 *   negotiation   (GET|SET)_(PROTOCOL_)FEATURES, SET_OWNER, RESET_DEVICE, GET_QUEUE_NUM,
 *                 GET/SET_CONFIG
 *   bring-up      the whole handshake QEMU performs, in one action
 *   RAM write     bytes into the front end's RAM (rings, descriptors, buffers)
 *   chain         a descriptor chain published on a ring, then a kick
 *   kick          an eventfd write; reconnect: a new connection (the old one is dropped)
 *
 * After every action the server's loop runs until it is idle and replies are read.
 * Checked: every reply is well formed and answers a request this connection sent; when
 * the input ends and the front end goes away, the server is disconnected, has closed
 * every descriptor it was sent and unmapped every region (the process's descriptor and
 * mapping counts are back where they were when the input began). ASan/UBSan catch the rest.
 *
 * Not fuzzed: a front end that shrinks its memory file after SET_MEM_TABLE (the server
 * would take SIGBUS; vhost_user/server.h says why that is left to file seals). */
#include "input.h"
#include "fd_passing.h"

#include "core/event_loop.h"
#include "vhost_user/protocol.h"
#include "vhost_user/server.h"
#include "virtio/console.h"
#include "virtio/rng.h"
#include "virtio/virtio_device.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE  0x10000u
#define UVA_BASE  0x7f0000000000ULL /* where the front end "maps" its RAM */
#define SLOT_SIZE 0x200u            /* rings of queue q: desc, avail +0x100, used +0x140 */
#define DATA_GPA  0x8000u
#define QSIZE     16u
#define MAX_RINGS 8u
#define MAX_SENT  64u

enum op {
    OP_RAW,
    OP_MEM_TABLE,
    OP_RING,
    OP_NEGOTIATE,
    OP_BRING_UP,
    OP_RAM,
    OP_CHAIN,
    OP_KICK,
    OP_RECONNECT,
    OP_COUNT
};

/* Descriptor kinds an action can attach. */
enum fd_kind { FD_RAM, FD_EVENT, FD_NULL, FD_PIPE, FD_KINDS };

struct server {
    struct virtio_device *dev;
    struct vhost_user_server *vu;
    char path[108];
};

static struct {
    struct event_loop *el;
    struct server servers[2];
    int ram_fd;
    uint8_t *ram; /* the front end's view of its RAM */
    char dir[64];
    bool trace;
} g;

/* Per input. */
struct fe {
    struct server *sv;
    int sock;
    bool half_closed;
    int kick[MAX_RINGS], call[MAX_RINGS];
    uint16_t avail_idx[MAX_RINGS], next_desc[MAX_RINGS];
    uint32_t bump;
    /* The distinct requests sent on this connection: a reply must answer one of them. More
     * than MAX_SENT kinds (an input full of odd request codes) and the check is off. */
    uint32_t sent[MAX_SENT];
    unsigned nsent;
    bool sent_overflow;
    uint64_t offered, offered_protocol; /* from the server's GET_(PROTOCOL_)FEATURES replies */
};

static void trace_log(void *ctx, const char *msg)
{
    fprintf(stderr, "server: %s\n", msg);
}

/* Open descriptors; with show, each one and what it is, on stderr. */
static int count_fds(bool show)
{
    DIR *d = opendir("/proc/self/fd");
    FZ_CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        n++;
        char path[300], target[256] = "";
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        if (show && readlink(path, target, sizeof(target) - 1) >= 0)
            fprintf(stderr, "fd %s -> %s\n", e->d_name, target);
    }
    closedir(d);
    return n;
}

/* Mappings of the front end's RAM file in this process (ours, plus the server's). */
static int count_ram_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    FZ_CHECK(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "/memfd:fz-frontend-ram"))
            n++;
    fclose(f);
    return n;
}

static void init(void)
{
    g.trace = getenv("VMKIT_FUZZ_TRACE") != NULL;
    FZ_CHECK(event_loop_new(&g.el) == 0);
    snprintf(g.dir, sizeof(g.dir), "%s/vmkit-fuzz-vu.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    FZ_CHECK(mkdtemp(g.dir));
    struct virtio_console_port_config ports[2] = {
        { .name = NULL, .is_console = true },
        { .name = "org.vmkit.agent" },
    };
    g.servers[0].dev = virtio_rng_new(g.el, VIRTIO_RNG_MAX_RATE, VIRTIO_RNG_MAX_RATE);
    g.servers[1].dev = virtio_console_new(ports, 2);
    for (unsigned i = 0; i < 2; i++) {
        struct server *sv = &g.servers[i];
        FZ_CHECK(sv->dev && sv->dev->num_queues <= MAX_RINGS);
        snprintf(sv->path, sizeof(sv->path), "%s/s%u", g.dir, i);
        vmk_error *err = NULL;
        sv->vu = vhost_user_server_new(sv->path, sv->dev, g.el, &err);
        if (!sv->vu) {
            fprintf(stderr, "%s\n", vmk_error_message(err));
            FZ_CHECK(sv->vu);
        }
        if (g.trace)
            vhost_user_server_set_log(sv->vu, trace_log, NULL);
    }
    g.ram_fd = memfd_create("fz-frontend-ram", MFD_CLOEXEC);
    FZ_CHECK(g.ram_fd >= 0 && ftruncate(g.ram_fd, RAM_SIZE) == 0);
    g.ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g.ram_fd, 0);
    FZ_CHECK(g.ram != MAP_FAILED);
}

/* ---- the connection ---- */

static void fe_connect(struct fe *f)
{
    f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(f->sock >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->sv->path);
    FZ_CHECK(connect(f->sock, (struct sockaddr *)&a, sizeof(a)) == 0);
    f->half_closed = false;
    f->nsent = 0;
    f->sent_overflow = false;
    memset(g.ram, 0, RAM_SIZE); /* a new front end, a new guest */
    for (unsigned q = 0; q < MAX_RINGS; q++)
        f->avail_idx[q] = f->next_desc[q] = 0;
}

/* Reads whatever replies are there; each must be well formed and answer a request sent. */
static void read_replies(struct fe *f)
{
    for (;;) {
        struct vhost_user_header h;
        ssize_t n = recv(f->sock, &h, sizeof(h), MSG_DONTWAIT | MSG_PEEK);
        if (n < (ssize_t)sizeof(h))
            return; /* nothing, a partial reply still coming, or the server hung up */
        FZ_CHECK(h.flags == (VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY));
        FZ_CHECK(h.size <= VHOST_USER_PAYLOAD_MAX);
        bool asked = false;
        for (unsigned i = 0; i < f->nsent; i++)
            asked |= f->sent[i] == h.request;
        FZ_CHECK(asked || f->sent_overflow);
        uint8_t buf[sizeof(h) + VHOST_USER_PAYLOAD_MAX];
        size_t want = sizeof(h) + h.size, got = 0;
        while (got < want) {
            n = recv(f->sock, buf + got, want - got, MSG_DONTWAIT);
            if (n <= 0)
                return; /* the payload follows the header in one sendmsg: it was there */
            got += (size_t)n;
        }
        uint64_t v = 0;
        if (h.size == sizeof(v))
            memcpy(&v, buf + sizeof(h), sizeof(v));
        if (h.request == VHOST_USER_GET_FEATURES)
            f->offered = v;
        if (h.request == VHOST_USER_GET_PROTOCOL_FEATURES)
            f->offered_protocol = v;
        if (g.trace)
            fprintf(stderr, "reply to %u, %u bytes, u64 0x%llx\n", h.request, h.size,
                    (unsigned long long)v);
    }
}

/* Runs the server's loop until nothing is ready, reading replies as they come. */
static void pump(struct fe *f)
{
    for (int i = 0; i < 256; i++) {
        int n = event_loop_run_once(g.el, 0);
        FZ_CHECK(n >= 0);
        if (f)
            read_replies(f);
        if (n == 0)
            return;
    }
    fz_fail("the server's loop never went idle", __FILE__, __LINE__);
}

static int make_fd(enum fd_kind kind, int *extra)
{
    int p[2];
    switch (kind) {
    case FD_RAM: return dup(g.ram_fd);
    case FD_EVENT: return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    case FD_NULL: return open("/dev/null", O_RDWR | O_CLOEXEC);
    default:
        FZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
        *extra = p[1];
        return p[0];
    }
}

/* Sends header, then payload_len bytes of payload, with fds; when payload_len is short
 * of h->size the write side is closed. */
static void send_msg(struct fe *f, const struct vhost_user_header *h, const void *payload,
                     size_t payload_len, const int *fds, unsigned nfds)
{
    if (f->half_closed)
        return;
    uint8_t buf[sizeof(*h) + VHOST_USER_PAYLOAD_MAX + 64];
    FZ_CHECK(payload_len <= sizeof(buf) - sizeof(*h));
    memcpy(buf, h, sizeof(*h));
    if (payload_len)
        memcpy(buf + sizeof(*h), payload, payload_len);
    struct iovec iov = { buf, sizeof(*h) + payload_len };
    /* The server may have hung up on an earlier message: EPIPE is an answer too. */
    ssize_t n = send_with_fds(f->sock, &iov, 1, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        FZ_CHECK(errno == EPIPE || errno == ECONNRESET || errno == EAGAIN);
        return;
    }
    bool known = false;
    for (unsigned i = 0; i < f->nsent; i++)
        known |= f->sent[i] == h->request;
    if (!known && f->nsent < MAX_SENT)
        f->sent[f->nsent++] = h->request;
    else if (!known)
        f->sent_overflow = true;
    if (payload_len < h->size) {
        shutdown(f->sock, SHUT_WR);
        f->half_closed = true;
    }
    pump(f);
}

static void send_simple(struct fe *f, uint32_t request, uint32_t flags, const void *payload,
                        uint32_t size, int fd)
{
    struct vhost_user_header h = { .request = request,
                                   .flags = VHOST_USER_VERSION | flags,
                                   .size = size };
    send_msg(f, &h, payload, size, &fd, fd >= 0 ? 1 : 0);
}

/* ---- actions ---- */

static void op_raw(struct fe *f, struct fz_in *in)
{
    struct vhost_user_header h;
    uint8_t sel = fz_u8(in);
    h.request = (sel & 0x80) ? fz_u32(in) : (uint32_t)(sel & 0x3f);
    uint8_t fl = fz_u8(in);
    h.flags = (fl & 0x80) ? fz_u32(in) : VHOST_USER_VERSION | (fl & VHOST_USER_FLAG_NEED_REPLY);
    uint16_t declared = fz_u16(in);
    h.size = (fl & 0x40) ? fz_u32(in) : declared % (VHOST_USER_PAYLOAD_MAX + 16);
    static uint8_t payload[VHOST_USER_PAYLOAD_MAX + 16];
    size_t supplied = h.size < sizeof(payload) ? h.size : sizeof(payload);
    if (fl & 0x20) /* a shorter payload */
        supplied = fz_u16(in) % (supplied + 1);
    supplied = fz_bytes(in, payload, supplied);
    uint8_t fdspec = fz_u8(in);
    unsigned nfds = fdspec & 7u; /* up to 7; the server takes at most VHOST_USER_MAX_FDS */
    int fds[8], extra[8];
    for (unsigned i = 0; i < nfds; i++) {
        extra[i] = -1;
        fds[i] = make_fd((enum fd_kind)((fdspec >> 3) + i) % FD_KINDS, &extra[i]);
        FZ_CHECK(fds[i] >= 0);
    }
    send_msg(f, &h, payload, supplied, fds, nfds);
    for (unsigned i = 0; i < nfds; i++) {
        close(fds[i]);
        if (extra[i] >= 0)
            close(extra[i]);
    }
}

static void op_mem_table(struct fe *f, struct fz_in *in)
{
    struct vhost_user_memory mem = { 0 };
    uint8_t ctl = fz_u8(in);
    mem.nregions = (ctl & 15u) % (VHOST_USER_MAX_REGIONS + 2); /* 0 and 9 are refused */
    unsigned nfds = (ctl & 0x10) ? fz_u8(in) % 10 : mem.nregions;
    unsigned filled = mem.nregions < VHOST_USER_MAX_REGIONS ? mem.nregions : VHOST_USER_MAX_REGIONS;
    for (unsigned i = 0; i < filled; i++) {
        struct vhost_user_region *r = &mem.regions[i];
        uint8_t how = fz_u8(in);
        if (how & 0x80) { /* raw values */
            r->guest_phys_addr = fz_u64(in);
            r->memory_size = fz_u64(in);
            r->userspace_addr = fz_u64(in);
            r->mmap_offset = fz_u64(in);
        } else { /* pages of the RAM file */
            uint8_t off = fz_u8(in) & 15u, pages = fz_u8(in) & 31u;
            r->mmap_offset = (uint64_t)off << 12;
            r->memory_size = (uint64_t)pages << 12;
            r->guest_phys_addr = (uint64_t)fz_u16(in) << 12;
            r->userspace_addr = UVA_BASE + ((uint64_t)(how & 0x7f) << 20) + r->mmap_offset;
        }
    }
    uint32_t size = (ctl & 0x20) ? (uint32_t)sizeof(mem)
                                 : VHOST_USER_MEMORY_HDR_SIZE +
                                       filled * (uint32_t)sizeof(struct vhost_user_region);
    int fds[10];
    for (unsigned i = 0; i < nfds; i++)
        fds[i] = g.ram_fd; /* the same file, once per region */
    struct vhost_user_header h = { .request = VHOST_USER_SET_MEM_TABLE,
                                   .flags = VHOST_USER_VERSION | (ctl & 0x40 ? 8 : 0),
                                   .size = size };
    send_msg(f, &h, &mem, size, fds, nfds);
}

static void ring_fd(struct fe *f, uint32_t request, unsigned q, bool nofd)
{
    uint64_t v = q | (nofd ? VHOST_USER_VRING_NOFD : 0);
    int fd = -1;
    if (!nofd && q < MAX_RINGS) {
        int *slot = request == VHOST_USER_SET_VRING_KICK ? f->kick : f->call;
        if (slot[q] < 0)
            slot[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        fd = slot[q];
    } else if (!nofd) {
        fd = g.ram_fd; /* not an eventfd */
    }
    send_simple(f, request, 0, &v, sizeof(v), fd);
}

static void ring_addr(struct fe *f, unsigned q, uint64_t delta)
{
    uint64_t base = UVA_BASE + (uint64_t)(q % MAX_RINGS) * SLOT_SIZE + delta;
    struct vhost_user_vring_addr a = {
        .index = q, .desc = base, .avail = base + 0x100, .used = base + 0x140
    };
    send_simple(f, VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1);
}

static void op_ring(struct fe *f, struct fz_in *in)
{
    uint8_t what = fz_u8(in);
    unsigned q = fz_u8(in) % (MAX_RINGS + 1);
    struct vhost_user_vring_state st = { .index = q };
    switch (what % 8) {
    case 0:
        st.num = fz_u16(in);
        send_simple(f, VHOST_USER_SET_VRING_NUM, 0, &st, sizeof(st), -1);
        break;
    case 1: ring_addr(f, q, fz_u16(in)); break;
    case 2:
        st.num = fz_u16(in);
        send_simple(f, VHOST_USER_SET_VRING_BASE, 0, &st, sizeof(st), -1);
        break;
    case 3:
        send_simple(f, VHOST_USER_GET_VRING_BASE, 0, &st, sizeof(st), -1);
        if (q < MAX_RINGS && f->kick[q] >= 0) { /* the server closed its copy */
            close(f->kick[q]);
            f->kick[q] = -1;
        }
        break;
    case 4:
        st.num = fz_u8(in) % 3;
        send_simple(f, VHOST_USER_SET_VRING_ENABLE, 0, &st, sizeof(st), -1);
        break;
    case 5: ring_fd(f, VHOST_USER_SET_VRING_KICK, q, what & 0x80); break;
    case 6: ring_fd(f, VHOST_USER_SET_VRING_CALL, q, what & 0x80); break;
    default: ring_fd(f, VHOST_USER_SET_VRING_ERR, q, what & 0x80); break;
    }
}

static void op_negotiate(struct fe *f, struct fz_in *in)
{
    uint8_t what = fz_u8(in);
    uint32_t need_reply = (what & 0x80) ? VHOST_USER_FLAG_NEED_REPLY : 0;
    uint64_t v;
    struct vhost_user_config c = { 0 };
    switch (what % 9) {
    case 0: send_simple(f, VHOST_USER_GET_FEATURES, 0, NULL, 0, -1); break;
    case 1:
        v = fz_u64(in);
        send_simple(f, VHOST_USER_SET_FEATURES, need_reply, &v, sizeof(v), -1);
        break;
    case 2: send_simple(f, VHOST_USER_GET_PROTOCOL_FEATURES, 0, NULL, 0, -1); break;
    case 3:
        v = fz_u64(in);
        send_simple(f, VHOST_USER_SET_PROTOCOL_FEATURES, need_reply, &v, sizeof(v), -1);
        break;
    case 4: send_simple(f, VHOST_USER_SET_OWNER, need_reply, NULL, 0, -1); break;
    case 5: send_simple(f, VHOST_USER_RESET_DEVICE, need_reply, NULL, 0, -1); break;
    case 6: send_simple(f, VHOST_USER_GET_QUEUE_NUM, 0, NULL, 0, -1); break;
    default:
        c.offset = fz_u8(in);
        c.size = fz_u8(in) % (VHOST_USER_CONFIG_MAX + 1);
        fz_bytes(in, c.payload, c.size);
        send_simple(f, what % 9 == 7 ? VHOST_USER_GET_CONFIG : VHOST_USER_SET_CONFIG, need_reply,
                    &c, VHOST_USER_CONFIG_HDR_SIZE + c.size, -1);
        break;
    }
}

/* What QEMU does: features (VERSION_1 and protocol features, with ctl bit 0 every
 * device feature offered), the protocol features offered, owner, the whole RAM as one
 * region at guest address 0, then each ring's size, addresses, base, call and kick,
 * enabled. */
static void op_bring_up(struct fe *f, struct fz_in *in)
{
    uint8_t ctl = fz_u8(in);
    send_simple(f, VHOST_USER_GET_FEATURES, 0, NULL, 0, -1);
    uint64_t features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
    if (ctl & 1)
        features = f->offered;
    send_simple(f, VHOST_USER_SET_FEATURES, 0, &features, sizeof(features), -1);
    send_simple(f, VHOST_USER_GET_PROTOCOL_FEATURES, 0, NULL, 0, -1);
    uint64_t proto = f->offered_protocol;
    send_simple(f, VHOST_USER_SET_PROTOCOL_FEATURES, 0, &proto, sizeof(proto), -1);
    send_simple(f, VHOST_USER_SET_OWNER, 0, NULL, 0, -1);
    struct vhost_user_memory mem = { .nregions = 1 };
    mem.regions[0] = (struct vhost_user_region){ .guest_phys_addr = 0,
                                                 .memory_size = RAM_SIZE,
                                                 .userspace_addr = UVA_BASE };
    uint32_t size = VHOST_USER_MEMORY_HDR_SIZE + (uint32_t)sizeof(struct vhost_user_region);
    send_simple(f, VHOST_USER_SET_MEM_TABLE, VHOST_USER_FLAG_NEED_REPLY, &mem, size, g.ram_fd);
    unsigned nq = f->sv->dev->num_queues;
    for (unsigned q = 0; q < nq; q++) {
        struct vhost_user_vring_state st = { .index = q, .num = QSIZE };
        send_simple(f, VHOST_USER_SET_VRING_NUM, 0, &st, sizeof(st), -1);
        ring_addr(f, q, 0);
        st.num = 0;
        send_simple(f, VHOST_USER_SET_VRING_BASE, 0, &st, sizeof(st), -1);
        ring_fd(f, VHOST_USER_SET_VRING_CALL, q, false);
        ring_fd(f, VHOST_USER_SET_VRING_KICK, q, false);
        st.num = 1;
        send_simple(f, VHOST_USER_SET_VRING_ENABLE, 0, &st, sizeof(st), -1);
    }
}

static void op_ram(struct fe *f, struct fz_in *in)
{
    uint16_t off = fz_u16(in);
    uint8_t n = fz_u8(in);
    uint8_t buf[255];
    size_t k = fz_bytes(in, buf, n);
    if (k > RAM_SIZE - off)
        k = RAM_SIZE - off;
    memcpy(g.ram + off, buf, k);
}

static void put16(uint64_t gpa, uint16_t v)
{
    memcpy(g.ram + gpa, &v, 2);
}

/* A chain on ring q in the bring-up layout: u8 segments (1-4), each u16 length and u8
 * flags (bit 0 writable; readable ones carry u8 n bytes of data), published and kicked. */
static void op_chain(struct fe *f, struct fz_in *in)
{
    unsigned q = fz_u8(in) % MAX_RINGS;
    unsigned nseg = fz_u8(in) % 4 + 1;
    uint64_t desc = (uint64_t)q * SLOT_SIZE, avail = desc + 0x100;
    uint16_t head = f->next_desc[q] % QSIZE;
    for (unsigned i = 0; i < nseg; i++) {
        uint16_t len = fz_u16(in) % 2048;
        uint8_t flags = fz_u8(in);
        if (f->bump + len > RAM_SIZE - DATA_GPA)
            f->bump = 0;
        uint64_t addr = DATA_GPA + f->bump;
        f->bump += len;
        if (!(flags & 1)) {
            uint8_t n = fz_u8(in);
            fz_bytes(in, g.ram + addr, n < len ? n : len);
        }
        uint16_t idx = f->next_desc[q]++ % QSIZE;
        uint16_t dflags = (uint16_t)((flags & 1 ? 2 : 0) | (i + 1 < nseg ? 1 : 0));
        uint8_t *d = g.ram + desc + 16u * idx;
        uint32_t len32 = len;
        uint16_t next = f->next_desc[q] % QSIZE;
        memcpy(d, &addr, 8);
        memcpy(d + 8, &len32, 4);
        memcpy(d + 12, &dflags, 2);
        memcpy(d + 14, &next, 2);
    }
    put16(avail + 4 + 2u * (f->avail_idx[q] % QSIZE), head);
    f->avail_idx[q]++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    put16(avail + 2, f->avail_idx[q]);
    if (f->kick[q] >= 0) {
        uint64_t one = 1;
        FZ_CHECK(write(f->kick[q], &one, 8) == 8);
    }
    pump(f);
    if (g.trace)
        fprintf(stderr, "ring %u: avail %u, used %u\n", q, f->avail_idx[q],
                *(uint16_t *)(g.ram + desc + 0x140 + 2));
}

static void op_kick(struct fe *f, struct fz_in *in)
{
    unsigned q = fz_u8(in) % MAX_RINGS;
    uint64_t one = 1;
    if (f->kick[q] >= 0)
        FZ_CHECK(write(f->kick[q], &one, 8) == 8);
    pump(f);
}

static void fe_close(struct fe *f)
{
    close(f->sock);
    f->sock = -1;
    pump(NULL);
    FZ_CHECK(!vhost_user_server_connected(f->sv->vu));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        init();
        ready = true;
    }
    /* Counted per input: between inputs the sanitizers may start a symbolizer (pipes). */
    int fds0 = count_fds(false), maps0 = count_ram_maps();
    struct fz_in in = { data, size };
    struct fe f = { .sv = &g.servers[fz_u8(&in) & 1] };
    for (unsigned q = 0; q < MAX_RINGS; q++)
        f.kick[q] = f.call[q] = -1;
    fe_connect(&f);
    pump(&f);
    while (in.n) {
        switch (fz_u8(&in) % OP_COUNT) {
        case OP_RAW: op_raw(&f, &in); break;
        case OP_MEM_TABLE: op_mem_table(&f, &in); break;
        case OP_RING: op_ring(&f, &in); break;
        case OP_NEGOTIATE: op_negotiate(&f, &in); break;
        case OP_BRING_UP: op_bring_up(&f, &in); break;
        case OP_RAM: op_ram(&f, &in); break;
        case OP_CHAIN: op_chain(&f, &in); break;
        case OP_KICK: op_kick(&f, &in); break;
        default:
            fe_close(&f);
            fe_connect(&f);
            pump(&f);
            break;
        }
    }
    fe_close(&f);
    for (unsigned q = 0; q < MAX_RINGS; q++) {
        if (f.kick[q] >= 0)
            close(f.kick[q]);
        if (f.call[q] >= 0)
            close(f.call[q]);
    }
    if (count_fds(false) != fds0) {
        count_fds(true);
        fz_fail("descriptors leaked (the list above)", __FILE__, __LINE__);
    }
    FZ_CHECK(count_ram_maps() == maps0);
    return 0;
}

/* ---- seeds ---- */

static void seed_chain(struct fz_seed *s, unsigned q, bool writable, uint16_t len, const void *data,
                       uint8_t n)
{
    fz_seed_u8(s, OP_CHAIN);
    fz_seed_u8(s, (uint8_t)q);
    fz_seed_u8(s, 0); /* one segment */
    fz_seed_u16(s, len);
    fz_seed_u8(s, writable ? 1 : 0);
    if (!writable) {
        fz_seed_u8(s, n);
        fz_seed_bytes(s, data, n);
    }
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s;
    /* rng: bring-up, then requests for random bytes. */
    s.n = 0;
    fz_seed_u8(&s, 0);
    fz_seed_u8(&s, OP_BRING_UP);
    fz_seed_u8(&s, 1);
    for (int i = 0; i < 3; i++)
        seed_chain(&s, 0, true, 64, NULL, 0);
    fz_seed_save(dir, "rng", &s);
    /* The same, a reconnect in the middle, and GET_VRING_BASE (QEMU's stop). */
    fz_seed_u8(&s, OP_RING);
    fz_seed_u8(&s, 3);
    fz_seed_u8(&s, 0);
    fz_seed_u8(&s, OP_RECONNECT);
    fz_seed_u8(&s, OP_BRING_UP);
    fz_seed_u8(&s, 1);
    seed_chain(&s, 0, true, 16, NULL, 0);
    fz_seed_save(dir, "rng-reconnect", &s);
    /* console: bring-up, DEVICE_READY on the control queue, output on port 0. */
    s.n = 0;
    fz_seed_u8(&s, 1);
    fz_seed_u8(&s, OP_BRING_UP);
    fz_seed_u8(&s, 1);
    seed_chain(&s, 2, true, 8, NULL, 0);
    static const uint8_t ready[8] = { 0, 0, 0, 0, 0, 0, 1, 0 }; /* id 0, DEVICE_READY, 1 */
    seed_chain(&s, 3, false, 8, ready, 8);
    static const char text[] = "hello from the guest\n";
    seed_chain(&s, 1, false, sizeof(text) - 1, text, sizeof(text) - 1);
    fz_seed_u8(&s, OP_NEGOTIATE);
    fz_seed_u8(&s, 7); /* GET_CONFIG */
    fz_seed_u8(&s, 0);
    fz_seed_u8(&s, 12);
    fz_seed_save(dir, "console", &s);
    /* Raw messages: a truncated payload; fds on a message that takes none. */
    s.n = 0;
    fz_seed_u8(&s, 0);
    fz_seed_u8(&s, OP_RAW);
    fz_seed_u8(&s, VHOST_USER_SET_FEATURES);
    fz_seed_u8(&s, 0x20);
    fz_seed_u16(&s, 8);
    fz_seed_u16(&s, 3);
    fz_seed_bytes(&s, "\1\2\3", 3);
    fz_seed_u8(&s, 0);
    fz_seed_save(dir, "raw-truncated", &s);
    s.n = 0;
    fz_seed_u8(&s, 1);
    fz_seed_u8(&s, OP_RAW);
    fz_seed_u8(&s, VHOST_USER_GET_FEATURES);
    fz_seed_u8(&s, 0);
    fz_seed_u16(&s, 0);
    fz_seed_u8(&s, 3 | 1 << 3);
    fz_seed_save(dir, "raw-fds", &s);
}
