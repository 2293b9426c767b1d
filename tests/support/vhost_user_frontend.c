/* A synthetic vhost-user front end: see vhost_user_frontend.h. */
#include "vhost_user_frontend.h"

#include "fd_passing.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhost_user/protocol.h"

#define BIT(n) (UINT64_C(1) << (n))

/* Split-ring layout (virtio 1.2, 2.7). */
#define DESC_F_NEXT      1u
#define DESC_F_WRITE     2u
#define USED_F_NO_NOTIFY 1u
#define MAX_QUEUE_SIZE   32768u
#define PAGE             4096u

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vuf_queue {
    bool started; /* vuf_queue_start succeeded; vuf_queue_stop not yet */
    uint16_t size;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    uint16_t *avail;              /* flags, idx, ring[size], used_event */
    uint16_t *used_hdr;           /* flags, idx */
    struct vring_used_elem *used; /* ring[size], then avail_event */
    uint16_t avail_idx;           /* the next avail slot, published */
    uint16_t kicked_idx;          /* avail_idx at the last kick decision */
    uint16_t last_used;           /* used entries consumed */
    uint16_t free_head, num_free;
    uint16_t *next;      /* private chain links: the back end cannot rewrite them */
    uint16_t *chain_len; /* per head: descriptors in flight, 0 when free */
    unsigned inflight;
    int kick_fd, call_fd, err_fd;
    uint64_t calls, kicks;
};

struct vuf {
    struct vuf_options o;
    int sock;
    char err[256];
    uint64_t offered, features, protocol_features;
    unsigned queue_num;
    int mem_fd;
    uint8_t *mem;
    uint64_t mem_next; /* bump allocator, offset into mem */
    struct vuf_queue q[VUF_MAX_QUEUES];
};

__attribute__((format(printf, 3, 4))) static int fail(struct vuf *f, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, sizeof(f->err), fmt, ap);
    va_end(ap);
    return code;
}

static const char *req_name(uint32_t r)
{
    static const char *const names[] = {
        [VHOST_USER_GET_FEATURES] = "GET_FEATURES",
        [VHOST_USER_SET_FEATURES] = "SET_FEATURES",
        [VHOST_USER_SET_OWNER] = "SET_OWNER",
        [VHOST_USER_RESET_OWNER] = "RESET_OWNER",
        [VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
        [VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
        [VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
        [VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
        [VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
        [VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
        [VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
        [VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
        [VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
        [VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
        [VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
        [VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
        [VHOST_USER_GET_CONFIG] = "GET_CONFIG",
        [VHOST_USER_SET_CONFIG] = "SET_CONFIG",
        [VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
    };
    if (r < sizeof(names) / sizeof(names[0]) && names[r])
        return names[r];
    return "request";
}

struct vuf_options vuf_default_options(void)
{
    return (struct vuf_options){ .event_idx = true,
                                 .num_queues = 1,
                                 .queue_size = 128,
                                 .mem_size = 16u << 20,
                                 .mem_base = 1u << 30,
                                 .timeout_ms = 5000 };
}

const char *vuf_error(const struct vuf *f)
{
    return f ? f->err : "no front end";
}

uint64_t vuf_offered_features(const struct vuf *f)
{
    return f->offered;
}

uint64_t vuf_features(const struct vuf *f)
{
    return f->features;
}

uint64_t vuf_protocol_features(const struct vuf *f)
{
    return f->protocol_features;
}

unsigned vuf_queue_num(const struct vuf *f)
{
    return f->queue_num;
}

/* ---- Messages --------------------------------------------------------------------- */

static int send_msg(struct vuf *f, uint32_t request, uint32_t flags, const void *payload,
                    uint32_t size, const int *fds, unsigned nfds)
{
    struct vhost_user_header h = { .request = request,
                                   .flags = VHOST_USER_VERSION | flags,
                                   .size = size };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
    if (nfds > VHOST_USER_MAX_FDS)
        return fail(f, -EINVAL, "%s: %u fds, at most %d", req_name(request), nfds,
                    VHOST_USER_MAX_FDS);
    if (f->sock < 0)
        return fail(f, -ENOTCONN, "%s: not connected", req_name(request));
    ssize_t n = send_with_fds(f->sock, iov, size ? 2 : 1, fds, nfds, MSG_NOSIGNAL);
    if (n < 0)
        return fail(f, -errno, "%s: cannot send: %s", req_name(request), strerror(errno));
    if ((size_t)n != sizeof(h) + size)
        return fail(f, -EIO, "%s: short send (%zd of %zu bytes)", req_name(request), n,
                    sizeof(h) + size);
    return 0;
}

static int recv_full(struct vuf *f, uint32_t request, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(f->sock, (uint8_t *)buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            return fail(f, -ECONNRESET, "%s: the back end closed the connection",
                        req_name(request));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return fail(f, -ETIMEDOUT, "%s: no reply within %d ms", req_name(request),
                        f->o.timeout_ms);
        if (n < 0)
            return fail(f, -errno, "%s: cannot read the reply: %s", req_name(request),
                        strerror(errno));
        done += (size_t)n;
    }
    return 0;
}

/* Reads the reply to request: checks its header and copies up to *size bytes. */
static int recv_reply(struct vuf *f, uint32_t request, void *payload, uint32_t *size)
{
    struct vhost_user_header h;
    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { &h, sizeof(h) };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)
    };
    ssize_t n;
    do {
        n = recvmsg(f->sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    /* No reply the front end waits for carries fds: close any, they would leak. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);
        }
    }
    if (n == 0)
        return fail(f, -ECONNRESET, "%s: the back end closed the connection (no reply)",
                    req_name(request));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return fail(f, -ETIMEDOUT, "%s: no reply within %d ms", req_name(request), f->o.timeout_ms);
    if (n < 0)
        return fail(f, -errno, "%s: cannot read the reply: %s", req_name(request), strerror(errno));
    if ((size_t)n < sizeof(h)) {
        int r = recv_full(f, request, (uint8_t *)&h + n, sizeof(h) - (size_t)n);
        if (r < 0)
            return r;
    }
    if (h.request != request)
        return fail(f, -EPROTO, "%s: the reply is for request %u", req_name(request), h.request);
    if ((h.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
        !(h.flags & VHOST_USER_FLAG_REPLY))
        return fail(f, -EPROTO, "%s: reply flags 0x%x (want version 1 and the reply bit)",
                    req_name(request), h.flags);
    if (h.size > VHOST_USER_PAYLOAD_MAX)
        return fail(f, -EPROTO, "%s: reply of %u bytes", req_name(request), h.size);
    if (h.size) {
        uint8_t buf[VHOST_USER_PAYLOAD_MAX];
        int r = recv_full(f, request, buf, h.size);
        if (r < 0)
            return r;
        memcpy(payload, buf, h.size < *size ? h.size : *size);
    }
    *size = h.size;
    return 0;
}

static bool has_ack(const struct vuf *f)
{
    return f->protocol_features & BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
}

int vuf_request(struct vuf *f, uint32_t request, const void *payload, uint32_t size, const int *fds,
                unsigned nfds, void *reply, uint32_t *reply_size, bool need_ack)
{
    if (reply && !reply_size)
        return fail(f, -EINVAL, "%s: a reply buffer without its size", req_name(request));
    bool ack = need_ack && !reply && has_ack(f);
    int r = send_msg(f, request, ack ? VHOST_USER_FLAG_NEED_REPLY : 0, payload, size, fds, nfds);
    if (r < 0)
        return r;
    if (reply)
        return recv_reply(f, request, reply, reply_size);
    if (!ack)
        return 0;
    uint64_t v = 0;
    uint32_t got = sizeof(v);
    r = recv_reply(f, request, &v, &got);
    if (r < 0)
        return r;
    if (got != sizeof(v))
        return fail(f, -EPROTO, "%s: REPLY_ACK of %u bytes (want 8)", req_name(request), got);
    if (v != 0)
        return fail(f, -EPROTO, "%s: the back end refused it (ack %llu)", req_name(request),
                    (unsigned long long)v);
    return 0;
}

/* A request answered by one u64. */
static int get_u64(struct vuf *f, uint32_t request, uint64_t *v)
{
    uint32_t got = sizeof(*v);
    int r = vuf_request(f, request, NULL, 0, NULL, 0, v, &got, false);
    if (r < 0)
        return r;
    if (got != sizeof(*v))
        return fail(f, -EPROTO, "%s: reply of %u bytes (want 8)", req_name(request), got);
    return 0;
}

static int set_u64(struct vuf *f, uint32_t request, uint64_t v, const int *fds, unsigned nfds)
{
    return vuf_request(f, request, &v, sizeof(v), fds, nfds, NULL, NULL, true);
}

static int set_state(struct vuf *f, uint32_t request, uint32_t index, uint32_t num)
{
    struct vhost_user_vring_state st = { .index = index, .num = num };
    return vuf_request(f, request, &st, sizeof(st), NULL, 0, NULL, NULL, true);
}

/* ---- Set-up ----------------------------------------------------------------------- */

struct vuf *vuf_connect(const char *socket_path, const struct vuf_options *o, char *err,
                        size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *why = NULL;
    int e = 0;
    if (!socket_path || !o) {
        why = "missing socket path or options";
    } else if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        why = "socket path too long";
    } else if (o->num_queues < 1 || o->num_queues > VUF_MAX_QUEUES) {
        why = "num_queues out of range (1..64)";
    } else if (o->queue_size == 0 || o->queue_size > MAX_QUEUE_SIZE ||
               (o->queue_size & (o->queue_size - 1))) {
        why = "queue_size is not a power of two up to 32768";
    } else if (o->mem_size < PAGE || o->mem_size % PAGE || o->mem_base % PAGE ||
               o->mem_base + o->mem_size < o->mem_base) {
        why = "mem_size/mem_base not page multiples, or overflowing";
    }
    if (why) {
        snprintf(err, errlen, "vhost-user front end: %s", why);
        return NULL;
    }
    struct vuf *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "vhost-user front end: out of memory");
        return NULL;
    }
    f->o = *o;
    if (f->o.timeout_ms <= 0)
        f->o.timeout_ms = 5000;
    f->mem_fd = -1;
    for (unsigned q = 0; q < VUF_MAX_QUEUES; q++)
        f->q[q].kick_fd = f->q[q].call_fd = f->q[q].err_fd = -1;
    f->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->sock < 0) {
        e = errno;
        why = "socket";
        goto fail;
    }
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    if (connect(f->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        e = errno;
        why = "connect";
        goto fail;
    }
    struct timeval tv = { .tv_sec = f->o.timeout_ms / 1000,
                          .tv_usec = (f->o.timeout_ms % 1000) * 1000 };
    if (setsockopt(f->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(f->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        e = errno;
        why = "setsockopt";
        goto fail;
    }
    return f;

fail:
    snprintf(err, errlen, "vhost-user front end: %s %s: %s", why, socket_path, strerror(e));
    vuf_close(f);
    return NULL;
}

int vuf_negotiate(struct vuf *f)
{
    int r = get_u64(f, VHOST_USER_GET_FEATURES, &f->offered);
    if (r < 0)
        return r;
    if (!(f->offered & BIT(VUF_F_VERSION_1)))
        return fail(f, -ENOTSUP, "GET_FEATURES: VIRTIO_F_VERSION_1 not offered (0x%llx)",
                    (unsigned long long)f->offered);
    uint64_t want =
        f->o.device_features | BIT(VUF_F_VERSION_1) | BIT(VHOST_USER_F_PROTOCOL_FEATURES);
    if (f->o.event_idx)
        want |= BIT(VUF_F_EVENT_IDX);
    else
        want &= ~BIT(VUF_F_EVENT_IDX);
    if (f->o.require_features && (f->o.device_features & ~f->offered))
        return fail(f, -ENOTSUP, "GET_FEATURES: wanted features 0x%llx not offered (0x%llx)",
                    (unsigned long long)(f->o.device_features & ~f->offered),
                    (unsigned long long)f->offered);
    f->features = want & f->offered;

    if (f->offered & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) {
        uint64_t pf;
        if ((r = get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES, &pf)) < 0)
            return r;
        uint64_t pwant = BIT(VHOST_USER_PROTOCOL_F_MQ) | BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                         BIT(VHOST_USER_PROTOCOL_F_CONFIG) | f->o.protocol_features;
        if ((r = set_u64(f, VHOST_USER_SET_PROTOCOL_FEATURES, pf & pwant, NULL, 0)) < 0)
            return r;
        f->protocol_features = pf & pwant; /* acks from here on */
    }
    if (f->protocol_features & BIT(VHOST_USER_PROTOCOL_F_MQ)) {
        uint64_t n;
        if ((r = get_u64(f, VHOST_USER_GET_QUEUE_NUM, &n)) < 0)
            return r;
        if (n == 0 || n > 0xffff)
            return fail(f, -EPROTO, "GET_QUEUE_NUM: %llu queues", (unsigned long long)n);
        f->queue_num = (unsigned)n;
        if (f->o.num_queues > n)
            return fail(f, -ENOTSUP, "GET_QUEUE_NUM: the back end has %llu queues, %u wanted",
                        (unsigned long long)n, f->o.num_queues);
    }
    if ((r = vuf_request(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0, NULL, NULL, true)) < 0)
        return r;
    return set_u64(f, VHOST_USER_SET_FEATURES, f->features, NULL, 0);
}

int vuf_set_memory(struct vuf *f)
{
    int r;
    if (f->mem)
        return fail(f, -EBUSY, "SET_MEM_TABLE: the memory is already set");
    f->mem_fd = memfd_create("vuf-guest-ram", MFD_CLOEXEC);
    if (f->mem_fd < 0)
        return fail(f, -errno, "memfd_create: %s", strerror(errno));
    if (ftruncate(f->mem_fd, (off_t)f->o.mem_size) < 0) {
        r = fail(f, -errno, "ftruncate guest RAM to %llu bytes: %s",
                 (unsigned long long)f->o.mem_size, strerror(errno));
        goto fail;
    }
    void *p = mmap(NULL, f->o.mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->mem_fd, 0);
    if (p == MAP_FAILED) {
        r = fail(f, -errno, "mmap guest RAM: %s", strerror(errno));
        goto fail;
    }
    f->mem = p;
    f->mem_next = 0;
    struct vhost_user_memory m = { .nregions = 1 };
    m.regions[0] = (struct vhost_user_region){ .guest_phys_addr = f->o.mem_base,
                                               .memory_size = f->o.mem_size,
                                               .userspace_addr = (uintptr_t)f->mem,
                                               .mmap_offset = 0 };
    /* The size QEMU sends: the header and the regions in use. The mapping stays even if
     * the back end refuses the table: the caller closes f then. */
    return vuf_request(f, VHOST_USER_SET_MEM_TABLE, &m,
                       VHOST_USER_MEMORY_HDR_SIZE + sizeof(struct vhost_user_region), &f->mem_fd, 1,
                       NULL, NULL, true);

fail:
    close(f->mem_fd);
    f->mem_fd = -1;
    return r;
}

int vuf_alloc(struct vuf *f, uint64_t len, uint64_t align, uint64_t *gpa)
{
    if (!f->mem)
        return fail(f, -EINVAL, "alloc: no guest RAM yet (vuf_set_memory)");
    if (align == 0 || (align & (align - 1)) || align > PAGE)
        return fail(f, -EINVAL, "alloc: alignment %llu is not a power of two up to 4096",
                    (unsigned long long)align);
    uint64_t start = (f->mem_next + align - 1) & ~(align - 1);
    if (len > f->o.mem_size || start > f->o.mem_size - len)
        return fail(f, -ENOMEM, "alloc: %llu bytes do not fit in guest RAM (%llu of %llu used)",
                    (unsigned long long)len, (unsigned long long)f->mem_next,
                    (unsigned long long)f->o.mem_size);
    memset(f->mem + start, 0, len);
    f->mem_next = start + len;
    *gpa = f->o.mem_base + start;
    return 0;
}

void *vuf_ptr(struct vuf *f, uint64_t gpa, uint64_t len)
{
    if (!f->mem || gpa < f->o.mem_base || len > f->o.mem_size ||
        gpa - f->o.mem_base > f->o.mem_size - len)
        return NULL;
    return f->mem + (gpa - f->o.mem_base);
}

static uint64_t uva_of(struct vuf *f, uint64_t gpa)
{
    return (uintptr_t)f->mem + (gpa - f->o.mem_base);
}

static struct vuf_queue *queue(struct vuf *f, unsigned q, bool started)
{
    if (q >= f->o.num_queues) {
        fail(f, -EINVAL, "queue %u: out of range (%u queues)", q, f->o.num_queues);
        return NULL;
    }
    if (started && !f->q[q].started) {
        fail(f, -EINVAL, "queue %u: not started", q);
        return NULL;
    }
    return &f->q[q];
}

/* Frees a queue's private state and fds (not the ring memory: the bump allocator keeps
 * it, and a restarted queue gets a new layout). */
static void queue_forget(struct vuf_queue *vq)
{
    free(vq->next);
    free(vq->chain_len);
    if (vq->kick_fd >= 0)
        close(vq->kick_fd);
    if (vq->call_fd >= 0)
        close(vq->call_fd);
    if (vq->err_fd >= 0)
        close(vq->err_fd);
    *vq = (struct vuf_queue){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
}

int vuf_queue_start(struct vuf *f, unsigned q)
{
    struct vuf_queue *vq = queue(f, q, false);
    int r;
    if (!vq)
        return -EINVAL;
    if (vq->started)
        return fail(f, -EBUSY, "queue %u: already started", q);
    queue_forget(vq);
    uint16_t n = f->o.queue_size;
    vq->size = n;
    /* Each part on its own page: more than the 16/2/4-byte alignment the spec asks. */
    if ((r = vuf_alloc(f, 16u * n, PAGE, &vq->desc_gpa)) < 0 ||
        (r = vuf_alloc(f, 6u + 2u * n, PAGE, &vq->avail_gpa)) < 0 ||
        (r = vuf_alloc(f, 6u + 8u * n, PAGE, &vq->used_gpa)) < 0)
        goto fail;
    vq->desc = vuf_ptr(f, vq->desc_gpa, 16u * n);
    vq->avail = vuf_ptr(f, vq->avail_gpa, 6u + 2u * n);
    vq->used_hdr = vuf_ptr(f, vq->used_gpa, 6u + 8u * n);
    vq->used = (struct vring_used_elem *)(vq->used_hdr + 2);
    vq->next = calloc(n, sizeof(*vq->next));
    vq->chain_len = calloc(n, sizeof(*vq->chain_len));
    if (!vq->next || !vq->chain_len) {
        r = fail(f, -ENOMEM, "queue %u: out of memory", q);
        goto fail;
    }
    for (unsigned i = 0; i < n; i++)
        vq->next[i] = (uint16_t)(i + 1);
    vq->num_free = n;
    vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vq->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vq->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vq->kick_fd < 0 || vq->call_fd < 0 || vq->err_fd < 0) {
        r = fail(f, -errno, "queue %u: eventfd: %s", q, strerror(errno));
        goto fail;
    }

    struct vhost_user_vring_addr a = { .index = q,
                                       .desc = uva_of(f, vq->desc_gpa),
                                       .used = uva_of(f, vq->used_gpa),
                                       .avail = uva_of(f, vq->avail_gpa) };
    if ((r = set_state(f, VHOST_USER_SET_VRING_NUM, q, n)) < 0 ||
        (r = set_state(f, VHOST_USER_SET_VRING_BASE, q, 0)) < 0 ||
        (r = vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, NULL, NULL, true)) <
            0 ||
        (r = set_u64(f, VHOST_USER_SET_VRING_CALL, q, &vq->call_fd, 1)) < 0 ||
        (r = set_u64(f, VHOST_USER_SET_VRING_ERR, q, &vq->err_fd, 1)) < 0 ||
        (r = set_u64(f, VHOST_USER_SET_VRING_KICK, q, &vq->kick_fd, 1)) < 0)
        goto fail;
    if ((f->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) &&
        (r = vuf_set_vring_enable(f, q, true)) < 0)
        goto fail;
    vq->started = true;
    return 0;

fail:
    queue_forget(vq);
    return r;
}

int vuf_set_vring_enable(struct vuf *f, unsigned q, bool enable)
{
    if (q > VHOST_USER_VRING_IDX_MASK || (f->queue_num && q >= f->queue_num))
        return fail(f, -EINVAL, "SET_VRING_ENABLE: ring %u out of range", q);
    if (!(f->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
        return fail(f, -ENOTSUP, "SET_VRING_ENABLE: protocol features not negotiated");
    return set_state(f, VHOST_USER_SET_VRING_ENABLE, q, enable);
}

int vuf_queue_stop(struct vuf *f, unsigned q, uint16_t *base)
{
    struct vuf_queue *vq = queue(f, q, true);
    if (!vq)
        return -EINVAL;
    struct vhost_user_vring_state st = { .index = q }, rep = { 0 };
    uint32_t got = sizeof(rep);
    vq->started = false;
    int r = vuf_request(f, VHOST_USER_GET_VRING_BASE, &st, sizeof(st), NULL, 0, &rep, &got, false);
    if (r < 0)
        return r;
    if (got != sizeof(rep) || rep.index != q)
        return fail(f, -EPROTO, "GET_VRING_BASE: reply of %u bytes for ring %u (want 8, %u)", got,
                    rep.index, q);
    if (base)
        *base = (uint16_t)rep.num;
    /* With nothing in flight the back end has consumed every avail entry. */
    if (vq->inflight == 0 && rep.num != vq->avail_idx)
        return fail(f, -EPROTO,
                    "GET_VRING_BASE: ring %u base %u, but the driver's avail index "
                    "is %u with nothing in flight",
                    q, rep.num, vq->avail_idx);
    return 0;
}

struct vuf *vuf_open(const char *socket_path, const struct vuf_options *o, char *err, size_t errlen)
{
    struct vuf *f = vuf_connect(socket_path, o, err, errlen);
    if (!f)
        return NULL;
    int r = vuf_negotiate(f);
    if (!r)
        r = vuf_set_memory(f);
    for (unsigned q = 0; !r && q < f->o.num_queues; q++)
        r = vuf_queue_start(f, q);
    if (r) {
        snprintf(err, errlen, "vhost-user front end on %s: %s", socket_path, f->err);
        vuf_close(f);
        return NULL;
    }
    return f;
}

void vuf_close(struct vuf *f)
{
    if (!f)
        return;
    for (unsigned q = 0; q < VUF_MAX_QUEUES; q++) {
        if (f->q[q].started && f->sock >= 0)
            (void)vuf_queue_stop(f, q, NULL);
        queue_forget(&f->q[q]);
    }
    if (f->sock >= 0)
        close(f->sock);
    if (f->mem)
        munmap(f->mem, f->o.mem_size);
    if (f->mem_fd >= 0)
        close(f->mem_fd);
    free(f);
}

int vuf_get_config(struct vuf *f, uint32_t offset, void *buf, uint32_t len)
{
    if (len > VHOST_USER_CONFIG_MAX)
        return fail(f, -EINVAL, "GET_CONFIG: %u bytes, at most %d", len, VHOST_USER_CONFIG_MAX);
    if (!(f->protocol_features & BIT(VHOST_USER_PROTOCOL_F_CONFIG)))
        return fail(f, -ENOTSUP, "GET_CONFIG: the CONFIG protocol feature was not negotiated");
    struct vhost_user_config c = { .offset = offset, .size = len }, rep;
    uint32_t size = VHOST_USER_CONFIG_HDR_SIZE + len, got = sizeof(rep);
    int r = vuf_request(f, VHOST_USER_GET_CONFIG, &c, size, NULL, 0, &rep, &got, false);
    if (r < 0)
        return r;
    if (got != size || rep.offset != offset || rep.size != len)
        return fail(f, -EPROTO,
                    "GET_CONFIG: reply of %u bytes (offset %u, size %u) for %u bytes "
                    "at %u",
                    got, got >= 8 ? rep.offset : 0, got >= 8 ? rep.size : 0, len, offset);
    memcpy(buf, rep.payload, len);
    return 0;
}

int vuf_set_config(struct vuf *f, uint32_t offset, const void *buf, uint32_t len)
{
    if (len > VHOST_USER_CONFIG_MAX)
        return fail(f, -EINVAL, "SET_CONFIG: %u bytes, at most %d", len, VHOST_USER_CONFIG_MAX);
    if (!(f->protocol_features & BIT(VHOST_USER_PROTOCOL_F_CONFIG)))
        return fail(f, -ENOTSUP, "SET_CONFIG: the CONFIG protocol feature was not negotiated");
    struct vhost_user_config c = { .offset = offset, .size = len };
    memcpy(c.payload, buf, len);
    return vuf_request(f, VHOST_USER_SET_CONFIG, &c, VHOST_USER_CONFIG_HDR_SIZE + len, NULL, 0,
                       NULL, NULL, true);
}

/* ---- The split ring --------------------------------------------------------------- */

static bool event_idx(const struct vuf *f)
{
    return f->features & BIT(VUF_F_EVENT_IDX);
}

int vuf_post(struct vuf *f, unsigned q, const struct vuf_seg *segs, unsigned n)
{
    struct vuf_queue *vq = queue(f, q, true);
    if (!vq)
        return -EINVAL;
    if (n == 0 || n > VUF_MAX_SEGS || !segs)
        return fail(f, -EINVAL, "post: %u segments (1..%d)", n, VUF_MAX_SEGS);
    for (unsigned i = 0; i < n; i++) {
        if (!vuf_ptr(f, segs[i].gpa, segs[i].len))
            return fail(f, -EINVAL, "post: segment %u [0x%llx, +%u) is outside guest RAM", i,
                        (unsigned long long)segs[i].gpa, segs[i].len);
        if (i && segs[i - 1].writable && !segs[i].writable)
            return fail(f, -EINVAL, "post: readable segment %u after a writable one", i);
    }
    if (vq->num_free < n)
        return fail(f, -ENOSPC, "post: queue %u has %u free descriptors, %u needed", q,
                    vq->num_free, n);
    uint16_t head = vq->free_head, d = head;
    for (unsigned i = 0; i < n; i++) {
        struct vring_desc *de = &vq->desc[d];
        de->addr = segs[i].gpa;
        de->len = segs[i].len;
        de->flags =
            (uint16_t)((segs[i].writable ? DESC_F_WRITE : 0) | (i + 1 < n ? DESC_F_NEXT : 0));
        de->next = i + 1 < n ? vq->next[d] : 0;
        if (i + 1 < n)
            d = vq->next[d];
    }
    vq->free_head = vq->next[d];
    vq->num_free = (uint16_t)(vq->num_free - n);
    vq->chain_len[head] = (uint16_t)n;
    vq->inflight++;
    vq->avail[2 + (vq->avail_idx & (vq->size - 1))] = head;
    vq->avail_idx++;
    /* Descriptors and the ring entry before the index that publishes them. */
    __atomic_store_n(&vq->avail[1], vq->avail_idx, __ATOMIC_RELEASE);
    return head;
}

int vuf_kick(struct vuf *f, unsigned q)
{
    struct vuf_queue *vq = queue(f, q, true);
    if (!vq)
        return -EINVAL;
    uint16_t old = vq->kicked_idx, now = vq->avail_idx;
    if (old == now)
        return 0;
    vq->kicked_idx = now;
    /* Our avail idx store before the back end's suppression state: it orders its side
     * the same way, so one of us sees the other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool need;
    if (event_idx(f)) {
        uint16_t ev = __atomic_load_n((uint16_t *)&vq->used[vq->size], __ATOMIC_RELAXED);
        need = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
    } else {
        need = !(__atomic_load_n(&vq->used_hdr[0], __ATOMIC_RELAXED) & USED_F_NO_NOTIFY);
    }
    if (!need)
        return 0;
    uint64_t one = 1;
    if (write(vq->kick_fd, &one, sizeof(one)) != sizeof(one))
        return fail(f, -errno, "kick queue %u: %s", q, strerror(errno));
    vq->kicks++;
    return 1;
}

int vuf_poll_used(struct vuf *f, unsigned q, struct vuf_used *u)
{
    struct vuf_queue *vq = queue(f, q, true);
    if (!vq)
        return -EINVAL;
    uint16_t idx = __atomic_load_n(&vq->used_hdr[1], __ATOMIC_ACQUIRE);
    if (idx == vq->last_used)
        return 0;
    if ((uint16_t)(idx - vq->last_used) > vq->inflight)
        return fail(f, -EPROTO, "queue %u: used idx %u is %u ahead of %u, with %u in flight", q,
                    idx, (uint16_t)(idx - vq->last_used), vq->last_used, vq->inflight);
    const struct vring_used_elem *e = &vq->used[vq->last_used & (vq->size - 1)];
    uint32_t id = __atomic_load_n(&e->id, __ATOMIC_RELAXED);
    uint32_t len = __atomic_load_n(&e->len, __ATOMIC_RELAXED);
    if (id >= vq->size || vq->chain_len[id] == 0)
        return fail(f, -EPROTO, "queue %u: used entry %u names head %u, not in flight", q,
                    vq->last_used, id);
    uint16_t d = (uint16_t)id;
    for (unsigned i = 1; i < vq->chain_len[id]; i++)
        d = vq->next[d];
    vq->next[d] = vq->free_head;
    vq->free_head = (uint16_t)id;
    vq->num_free = (uint16_t)(vq->num_free + vq->chain_len[id]);
    vq->chain_len[id] = 0;
    vq->inflight--;
    vq->last_used++;
    u->id = (uint16_t)id;
    u->len = len;
    return 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vuf_wait_used(struct vuf *f, unsigned q, struct vuf_used *u, int timeout_ms)
{
    struct vuf_queue *vq = queue(f, q, true);
    if (!vq)
        return -EINVAL;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        int r = vuf_poll_used(f, q, u);
        if (r)
            return r;
        /* Ask for a call at the next used entry, then look once more: the back end may
         * have pushed it before it saw the request. */
        if (event_idx(f))
            __atomic_store_n(&vq->avail[2 + vq->size], vq->last_used, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if ((r = vuf_poll_used(f, q, u)))
            return r;
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return 0;
            wait = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p[2] = { { .fd = vq->call_fd, .events = POLLIN },
                               { .fd = vq->err_fd, .events = POLLIN } };
        int n = poll(p, 2, wait);
        if (n < 0 && errno != EINTR)
            return fail(f, -errno, "queue %u: poll: %s", q, strerror(errno));
        uint64_t v;
        if (n > 0 && (p[1].revents & POLLIN) && read(vq->err_fd, &v, sizeof(v)) == sizeof(v))
            return fail(f, -EIO, "queue %u: the back end signalled its error eventfd", q);
        if (n > 0 && (p[0].revents & POLLIN) && read(vq->call_fd, &v, sizeof(v)) == sizeof(v))
            vq->calls += v;
    }
}

unsigned vuf_inflight(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].inflight : 0;
}

unsigned vuf_free_descs(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].num_free : 0;
}

uint64_t vuf_calls(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].calls : 0;
}

uint64_t vuf_kicks(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].kicks : 0;
}

int vuf_call_fd(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].call_fd : -1;
}

int vuf_err_fd(const struct vuf *f, unsigned q)
{
    return q < VUF_MAX_QUEUES ? f->q[q].err_fd : -1;
}
