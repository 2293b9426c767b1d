#include "vhost_user/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/unix_socket.h"
#include "vhost_user/protocol.h"

/* A front end that starts a message and stalls must not hang the server. */
#define IO_TIMEOUT_SEC 2
/* Ring indices travel in 8 bits (SET_VRING_KICK/CALL/ERR). */
#define MAX_QUEUES     256

struct vring {
    uint16_t num; /* 0: not set */
    bool addr_set;
    uint64_t desc_uva, avail_uva, used_uva;
    uint16_t base; /* next avail entry, while the device is stopped */
    bool started;  /* kick fd received since the last stop */
    bool enabled;  /* SET_VRING_ENABLE (with protocol features) */
    bool running;  /* part of the active device */
    int kick_fd, call_fd, err_fd;
    struct event_source kick;
    bool kick_watched;
    bool kick_taken; /* the device reads kick_fd itself (take_kick) */
    struct vhost_user_server *s;
    unsigned index;
};

struct mapping {
    void *addr; /* what mmap returned */
    size_t len;
    uint64_t uva, gpa, size;
    uint8_t *host; /* the region's first byte */
};

struct vhost_user_server {
    struct virtio_device *dev;
    struct event_loop *el;
    char *path;
    struct stat sock_st; /* the socket file we made */
    int proc_fd;         /* /proc/self/fd, opened at start: still there in a chroot sandbox */
    struct event_source listen, conn, stop;
    bool conn_watched;
    volatile int stopping;
    vhost_user_log_fn log;
    void *log_ctx;

    /* Per connection; reset by close_conn. */
    uint64_t features; /* acked with SET_FEATURES, bit 30 included */
    bool features_set;
    uint64_t protocol_features;
    bool protocol_set; /* SET_PROTOCOL_FEATURES came */
    bool active;       /* the device is activated */
    bool broken;       /* the device asked for a reset */
    struct guest_memory gm;
    struct mapping maps[VHOST_USER_MAX_REGIONS];
    unsigned nmaps;
    struct vring *vrings;
    /* Each ring's call_fd and err_fd: a device signals them from its own threads (virtio-fs
     * workers, a NAT's thread) while this thread replaces them (QEMU sends SET_VRING_CALL on
     * a running ring when it masks a vector); unguarded, a signal could land on a closed fd
     * number that was already reused. */
    pthread_mutex_t fd_lock;
};

__attribute__((format(printf, 2, 3))) static void say(struct vhost_user_server *s, const char *fmt,
                                                      ...)
{
    if (!s->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->log(s->log_ctx, buf);
}

static uint64_t offered_features(const struct vhost_user_server *s)
{
    return s->dev->device_features | VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
}

static uint64_t offered_protocol_features(const struct vhost_user_server *s)
{
    uint64_t f = VIRTIO_BIT(VHOST_USER_PROTOCOL_F_MQ) |
                 VIRTIO_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                 VIRTIO_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE);
    /* A net device's configuration (MAC, status) is the front end's: QEMU warns and masks
     * CONFIG for vhost-user-net. */
    if (s->dev->config_size > 0 && s->dev->device_id != VIRTIO_ID_NET)
        f |= VIRTIO_BIT(VHOST_USER_PROTOCOL_F_CONFIG);
    return f;
}

/* Whether the front end negotiated protocol features. QEMU 7.2's vhost-user-net leaves
 * VHOST_USER_F_PROTOCOL_FEATURES out of SET_FEATURES although it set protocol features and
 * enables its rings with SET_VRING_ENABLE (later QEMUs set the bit): either counts. */
static bool protocol_negotiated(const struct vhost_user_server *s)
{
    return (s->features & VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES)) || s->protocol_set;
}

static bool ring_enabled(const struct vhost_user_server *s, const struct vring *vr)
{
    /* Without protocol features a ring is enabled as soon as it starts. */
    if (!protocol_negotiated(s))
        return true;
    return vr->enabled;
}

/* Only eventfds: a pipe or socket handed over as a call fd could block our writes. */
static bool is_eventfd(const struct vhost_user_server *s, int fd)
{
    char link[16], target[64];
    snprintf(link, sizeof(link), "%d", fd);
    ssize_t n = readlinkat(s->proc_fd, link, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* A full eventfd still wakes the reader: nothing to do. */
    }
}

/* ---- The device's transport ---------------------------------------------------- */

static void t_notify_queue(void *ctx, unsigned q)
{
    struct vhost_user_server *s = ctx;
    if (q >= s->dev->num_queues)
        return;
    pthread_mutex_lock(&s->fd_lock);
    signal_fd(s->vrings[q].call_fd);
    pthread_mutex_unlock(&s->fd_lock);
}

static void t_notify_config(void *ctx)
{
    /* Needs the back-end request channel (BACKEND_REQ), which is not offered. */
}

static void t_needs_reset(void *ctx, const char *why)
{
    struct vhost_user_server *s = ctx;
    /* Once until the front end resets the ring: a device that reads its own kicks (take_kick)
     * meets the broken ring again at every kick the guest makes. */
    if (__atomic_exchange_n(&s->broken, true, __ATOMIC_ACQ_REL))
        return;
    say(s, "device needs reset: %s", why ? why : "unknown");
    /* vhost-user's way to report a broken ring is the error eventfd. */
    pthread_mutex_lock(&s->fd_lock);
    for (unsigned q = 0; q < s->dev->num_queues; q++)
        signal_fd(s->vrings[q].err_fd);
    pthread_mutex_unlock(&s->fd_lock);
}

/* ---- Starting and stopping the device ------------------------------------------- */

/* Stops the device, keeping each ring's position for a later restart. */
static void stop_device(struct vhost_user_server *s)
{
    struct virtio_device *d = s->dev;
    if (!s->active)
        return;
    /* The base after the reset: the device has finished or given back every chain it
     * held, so the front end resumes where nothing is lost. */
    d->ops->reset(d);
    for (unsigned q = 0; q < d->num_queues; q++)
        if (s->vrings[q].running)
            s->vrings[q].base = virtq_get_base(&d->queues[q]);
    for (unsigned q = 0; q < d->num_queues; q++) {
        virtq_disable(&d->queues[q]);
        s->vrings[q].running = false;
    }
    d->driver_features = 0;
    s->active = false;
    s->broken = false;
}

static bool uva_to_gpa(const struct vhost_user_server *s, uint64_t uva, uint64_t *gpa)
{
    for (unsigned i = 0; i < s->nmaps; i++) {
        const struct mapping *m = &s->maps[i];
        if (uva >= m->uva && uva - m->uva < m->size) {
            *gpa = m->gpa + (uva - m->uva);
            return true;
        }
    }
    return false;
}

/* "Ring starting" (vhost-user.rst): a ring runs once it has its kick fd and is
 * enabled. The device is activated when every started ring runs and no other ring is
 * half set up: a driver may use fewer queues than offered (Linux uses at most one per
 * vCPU), and front ends leave the rest untouched (QEMU enables them unstarted; others
 * never mention them), so a ring nobody configured is not waited for.
 * A ring that starts later restarts the device (see SET_VRING_KICK). -EINVAL: the rings
 * the front end gave do not fit its memory. */
static int maybe_activate(struct vhost_user_server *s)
{
    struct virtio_device *d = s->dev;
    unsigned started = 0;
    if (s->active || s->nmaps == 0 || !s->features_set)
        return 0;
    for (unsigned q = 0; q < d->num_queues; q++) {
        struct vring *vr = &s->vrings[q];
        if (!vr->started) {
            /* Being set up (QEMU sets up every ring it uses before enabling any). */
            if (vr->num || vr->addr_set)
                return 0;
            continue;
        }
        if (!ring_enabled(s, vr) || !vr->num || !vr->addr_set)
            return 0;
        started++;
    }
    if (started == 0)
        return 0;
    for (unsigned q = 0; q < d->num_queues; q++) {
        struct vring *vr = &s->vrings[q];
        struct virtq *vq = &d->queues[q];
        if (!vr->started)
            continue;
        uint64_t desc, avail, used;
        if (!uva_to_gpa(s, vr->desc_uva, &desc) || !uva_to_gpa(s, vr->avail_uva, &avail) ||
            !uva_to_gpa(s, vr->used_uva, &used))
            goto fail;
        vq->gm = &s->gm;
        vq->size = vr->num;
        vq->desc_addr = desc;
        vq->avail_addr = avail;
        vq->used_addr = used;
        vq->event_idx = (s->features >> VIRTIO_F_RING_EVENT_IDX) & 1;
        vq->indirect = (s->features >> VIRTIO_F_RING_INDIRECT_DESC) & 1;
        if (virtq_enable(vq) < 0 || virtq_set_base(vq, vr->base) < 0)
            goto fail;
        vr->running = true;
    }
    d->driver_features = s->features & ~VIRTIO_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
    s->broken = false;
    if (d->ops->features_ok && !d->ops->features_ok(d, d->driver_features)) {
        say(s, "%s: the front end's features break a dependency of the device", d->name);
        goto fail_reset;
    }
    if (d->ops->activate(d) < 0) {
        say(s, "%s: activation failed", d->name);
        goto fail_reset;
    }
    s->active = true;
    /* Buffers made available before activation got kicks nobody served. */
    for (unsigned q = 0; q < d->num_queues; q++)
        if (s->vrings[q].running)
            d->ops->queue_notify(d, q);
    return 0;

fail_reset:
    d->ops->reset(d);
fail:
    for (unsigned q = 0; q < d->num_queues; q++) {
        virtq_disable(&d->queues[q]);
        s->vrings[q].running = false;
    }
    d->driver_features = 0;
    return -EINVAL;
}

/* ---- Connection state --------------------------------------------------------- */

/* Nobody reads the ring's kick fd any more: neither our loop nor the device. */
static void unwatch_kick(struct vhost_user_server *s, struct vring *vr)
{
    if (vr->kick_watched)
        event_loop_remove(s->el, &vr->kick);
    vr->kick_watched = false;
    if (vr->kick_taken)
        (void)s->dev->ops->take_kick(s->dev, vr->index, -1);
    vr->kick_taken = false;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void unmap_memory(struct vhost_user_server *s)
{
    for (unsigned i = 0; i < s->nmaps; i++)
        munmap(s->maps[i].addr, s->maps[i].len);
    s->nmaps = 0;
    guest_memory_init_empty(&s->gm);
}

/* Forgets everything the front end set up; the device is reset. */
static void reset_state(struct vhost_user_server *s)
{
    stop_device(s);
    for (unsigned q = 0; q < s->dev->num_queues; q++) {
        struct vring *vr = &s->vrings[q];
        unwatch_kick(s, vr);
        close_fd(&vr->kick_fd);
        pthread_mutex_lock(&s->fd_lock);
        close_fd(&vr->call_fd);
        close_fd(&vr->err_fd);
        *vr = (struct vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1, .s = s, .index = q };
        pthread_mutex_unlock(&s->fd_lock);
    }
    unmap_memory(s);
    s->features = 0;
    s->features_set = false;
    s->protocol_features = 0;
    s->protocol_set = false;
    s->broken = false;
}

static void close_conn(struct vhost_user_server *s, const char *why)
{
    if (s->conn.fd < 0)
        return;
    reset_state(s);
    if (s->conn_watched)
        event_loop_remove(s->el, &s->conn);
    s->conn_watched = false;
    close_fd(&s->conn.fd);
    say(s, "front end disconnected: %s", why);
    event_loop_arm(s->el, &s->listen, true);
}

/* ---- Socket I/O ------------------------------------------------------------------- */

static int read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(fd, (uint8_t *)buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static int send_reply(struct vhost_user_server *s, uint32_t request, const void *payload,
                      uint32_t size)
{
    struct vhost_user_header h = { .request = request,
                                   .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
                                   .size = size };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
    size_t total = sizeof(h) + size;
    ssize_t n;
    do {
        n = sendmsg(s->conn.fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)total ? 0 : -1;
}

static int reply_u64(struct vhost_user_server *s, uint32_t request, uint64_t v)
{
    return send_reply(s, request, &v, sizeof(v));
}

/* ---- Messages ------------------------------------------------------------------- */

struct msg {
    struct vhost_user_header h;
    union {
        uint64_t u64;
        struct vhost_user_vring_state state;
        struct vhost_user_vring_addr addr;
        struct vhost_user_memory mem;
        struct vhost_user_config config;
        uint8_t raw[VHOST_USER_PAYLOAD_MAX];
    } p;
    int fds[VHOST_USER_MAX_FDS];
    unsigned nfds;
};

/* Returns the message's fixed payload size, or -1 when it varies (checked later). */
static int expected_size(uint32_t request)
{
    switch (request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_SET_OWNER:
    case VHOST_USER_RESET_OWNER:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_RESET_DEVICE: return 0;
    case VHOST_USER_SET_FEATURES:
    case VHOST_USER_SET_PROTOCOL_FEATURES:
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR: return 8;
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE: return (int)sizeof(struct vhost_user_vring_state);
    case VHOST_USER_SET_VRING_ADDR: return (int)sizeof(struct vhost_user_vring_addr);
    default: return -1;
    }
}

/* The vring a message names, or NULL (bad index). */
static struct vring *msg_vring(struct vhost_user_server *s, uint32_t index)
{
    return index < s->dev->num_queues ? &s->vrings[index] : NULL;
}

static const char *set_mem_table(struct vhost_user_server *s, struct msg *m)
{
    const struct vhost_user_memory *mem = &m->p.mem;
    uint32_t n = mem->nregions;
    if (m->h.size < VHOST_USER_MEMORY_HDR_SIZE)
        return "SET_MEM_TABLE: payload too small";
    if (n == 0 || n > VHOST_USER_MAX_REGIONS)
        return "SET_MEM_TABLE: region count out of range";
    if (m->h.size != VHOST_USER_MEMORY_HDR_SIZE + n * sizeof(struct vhost_user_region) &&
        m->h.size != sizeof(struct vhost_user_memory))
        return "SET_MEM_TABLE: size does not match the region count";
    if (m->nfds != n)
        return "SET_MEM_TABLE: fd count does not match the region count";

    /* The rings point into the old table: stop the device, restart it on the new one. */
    stop_device(s);
    unmap_memory(s);
    long page = sysconf(_SC_PAGESIZE);
    for (uint32_t i = 0; i < n; i++) {
        const struct vhost_user_region *r = &mem->regions[i];
        uint64_t end;
        struct stat st;
        if (r->memory_size == 0 || __builtin_add_overflow(r->mmap_offset, r->memory_size, &end) ||
            r->guest_phys_addr + r->memory_size < r->guest_phys_addr ||
            r->userspace_addr + r->memory_size < r->userspace_addr || end > (uint64_t)SSIZE_MAX)
            goto bad_region;
        /* mmap past the end of the file would SIGBUS us on the first access. */
        if (fstat(m->fds[i], &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < end)
            goto bad_region;
        uint64_t map_off = r->mmap_offset & ~(uint64_t)(page - 1);
        size_t len = (size_t)(end - map_off);
        void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->fds[i],
                          (off_t)map_off);
        if (addr == MAP_FAILED)
            goto bad_region;
        struct mapping *mp = &s->maps[s->nmaps++];
        *mp = (struct mapping){ .addr = addr,
                                .len = len,
                                .uva = r->userspace_addr,
                                .gpa = r->guest_phys_addr,
                                .size = r->memory_size,
                                .host = (uint8_t *)addr + (r->mmap_offset - map_off) };
        if (gm_add_region(&s->gm, mp->gpa, mp->size, mp->host) < 0)
            goto bad_region;
        int seals = fcntl(m->fds[i], F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_SHRINK))
            say(s,
                "memory region %u: its file is not sealed against shrinking; this server "
                "trusts the front end not to truncate it",
                i);
        for (unsigned j = 0; j + 1 < s->nmaps; j++) {
            const struct mapping *o = &s->maps[j];
            if (mp->uva < o->uva + o->size && o->uva < mp->uva + mp->size)
                goto bad_region; /* two regions at one front-end address: ambiguous */
        }
    }
    if (maybe_activate(s) < 0)
        return "rings do not fit the new memory table";
    return NULL;

bad_region:
    unmap_memory(s);
    return "SET_MEM_TABLE: a region cannot be mapped (bad size, offset, fd or overlap)";
}

/* SET_VRING_KICK/CALL/ERR. */
static const char *set_vring_fd(struct vhost_user_server *s, struct msg *m)
{
    uint64_t v = m->p.u64;
    if (v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD))
        return "SET_VRING_KICK/CALL/ERR: unknown bits";
    struct vring *vr = msg_vring(s, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK));
    if (!vr)
        return "SET_VRING_KICK/CALL/ERR: ring index out of range";
    bool nofd = v & VHOST_USER_VRING_NOFD;
    if (m->nfds != (nofd ? 0u : 1u))
        return "SET_VRING_KICK/CALL/ERR: fd count does not match the no-fd flag";
    int fd = nofd ? -1 : m->fds[0];
    if (fd >= 0 && !is_eventfd(s, fd))
        return "SET_VRING_KICK/CALL/ERR: the fd is not an eventfd";

    switch (m->h.request) {
    case VHOST_USER_SET_VRING_KICK:
        if (nofd)
            return "SET_VRING_KICK: polling rings are not supported";
        unwatch_kick(s, vr);
        close_fd(&vr->kick_fd);
        vr->kick_fd = fd;
        m->fds[0] = -1;
        vr->kick = (struct event_source){ .fd = fd, .handler = NULL, .ctx = vr };
        break;
    case VHOST_USER_SET_VRING_CALL:
    default: {
        int *slot = m->h.request == VHOST_USER_SET_VRING_CALL ? &vr->call_fd : &vr->err_fd;
        pthread_mutex_lock(&s->fd_lock);
        close_fd(slot);
        *slot = fd;
        pthread_mutex_unlock(&s->fd_lock);
        if (fd >= 0)
            m->fds[0] = -1;
        return NULL;
    }
    }
    return "";
}

static void on_kick(void *ctx, uint32_t events);

static const char *handle(struct vhost_user_server *s, struct msg *m, bool *replied)
{
    struct virtio_device *d = s->dev;
    struct vring *vr;
    int want = expected_size(m->h.request);
    if (want >= 0 && m->h.size != (uint32_t)want)
        return "payload size does not match the request";
    /* Only SET_MEM_TABLE and SET_VRING_KICK/CALL/ERR carry fds. */
    if (m->nfds && m->h.request != VHOST_USER_SET_MEM_TABLE &&
        m->h.request != VHOST_USER_SET_VRING_KICK && m->h.request != VHOST_USER_SET_VRING_CALL &&
        m->h.request != VHOST_USER_SET_VRING_ERR)
        return "unexpected file descriptors";

    switch (m->h.request) {
    case VHOST_USER_GET_FEATURES:
        *replied = true;
        return reply_u64(s, m->h.request, offered_features(s)) ? "cannot reply" : NULL;
    case VHOST_USER_SET_FEATURES:
        if (m->p.u64 & ~offered_features(s))
            return "SET_FEATURES: features that were not offered";
        if (s->active && m->p.u64 != s->features)
            return "SET_FEATURES: features changed while the device runs";
        s->features = m->p.u64;
        s->features_set = true;
        return maybe_activate(s) < 0 ? "rings do not fit guest memory" : NULL;
    case VHOST_USER_GET_PROTOCOL_FEATURES:
        *replied = true;
        return reply_u64(s, m->h.request, offered_protocol_features(s)) ? "cannot reply" : NULL;
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        if (m->p.u64 & ~offered_protocol_features(s))
            return "SET_PROTOCOL_FEATURES: features that were not offered";
        s->protocol_features = m->p.u64;
        s->protocol_set = true;
        return NULL;
    case VHOST_USER_SET_OWNER: return NULL;
    case VHOST_USER_RESET_OWNER:
    case VHOST_USER_RESET_DEVICE: {
        /* The connection's fds stay; the device and the rings start over. */
        stop_device(s);
        for (unsigned q = 0; q < d->num_queues; q++) {
            s->vrings[q].base = 0;
            s->vrings[q].started = false;
            s->vrings[q].enabled = false;
        }
        s->features = 0;
        s->features_set = false;
        return NULL;
    }
    case VHOST_USER_SET_MEM_TABLE: return set_mem_table(s, m);
    case VHOST_USER_GET_QUEUE_NUM:
        *replied = true;
        return reply_u64(s, m->h.request, d->num_queues) ? "cannot reply" : NULL;
    case VHOST_USER_SET_VRING_NUM:
        if (!(vr = msg_vring(s, m->p.state.index)))
            return "SET_VRING_NUM: ring index out of range";
        if (vr->started && s->active)
            return "SET_VRING_NUM: the ring is running";
        if (m->p.state.num == 0 || m->p.state.num > d->queue_max_size ||
            (m->p.state.num & (m->p.state.num - 1)))
            return "SET_VRING_NUM: size is not a power of two up to the maximum";
        vr->num = (uint16_t)m->p.state.num;
        return NULL;
    case VHOST_USER_SET_VRING_ADDR: {
        const struct vhost_user_vring_addr *a = &m->p.addr;
        uint64_t gpa;
        if (!(vr = msg_vring(s, a->index)))
            return "SET_VRING_ADDR: ring index out of range";
        if (vr->started && s->active)
            return "SET_VRING_ADDR: the ring is running";
        if (a->flags)
            return "SET_VRING_ADDR: logging is not supported";
        if (!uva_to_gpa(s, a->desc, &gpa) || !uva_to_gpa(s, a->avail, &gpa) ||
            !uva_to_gpa(s, a->used, &gpa))
            return "SET_VRING_ADDR: an address is outside the memory table";
        vr->desc_uva = a->desc;
        vr->avail_uva = a->avail;
        vr->used_uva = a->used;
        vr->addr_set = true;
        return NULL;
    }
    case VHOST_USER_SET_VRING_BASE:
        if (!(vr = msg_vring(s, m->p.state.index)))
            return "SET_VRING_BASE: ring index out of range";
        if (vr->started && s->active)
            return "SET_VRING_BASE: the ring is running";
        if (m->p.state.num > UINT16_MAX)
            return "SET_VRING_BASE: index out of range";
        vr->base = (uint16_t)m->p.state.num;
        return NULL;
    case VHOST_USER_GET_VRING_BASE: {
        if (!(vr = msg_vring(s, m->p.state.index)))
            return "GET_VRING_BASE: ring index out of range";
        /* Stops the ring (and with it the device; the other rings keep their place). */
        stop_device(s);
        vr->started = false;
        unwatch_kick(s, vr);
        close_fd(&vr->kick_fd);
        struct vhost_user_vring_state st = { .index = m->p.state.index, .num = vr->base };
        *replied = true;
        return send_reply(s, m->h.request, &st, sizeof(st)) ? "cannot reply" : NULL;
    }
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR: {
        const char *why = set_vring_fd(s, m);
        if (why && *why)
            return why;
        if (!why)
            return NULL;
        /* A new kick fd: the device's if it serves the ring on a thread of its own, else
         * ours to watch; and the ring has started. */
        vr = msg_vring(s, (uint32_t)(m->p.u64 & VHOST_USER_VRING_IDX_MASK));
        vr->kick.handler = on_kick;
        if (d->ops->take_kick && d->ops->take_kick(d, vr->index, vr->kick_fd)) {
            vr->kick_taken = true;
        } else {
            if (event_loop_add(s->el, &vr->kick) < 0)
                return "SET_VRING_KICK: cannot watch the fd";
            vr->kick_watched = true;
        }
        vr->started = true;
        /* A ring that joins a running device: restart it with this ring too. */
        if (s->active && !vr->running)
            stop_device(s);
        return maybe_activate(s) < 0 ? "rings do not fit guest memory" : NULL;
    }
    case VHOST_USER_SET_VRING_ENABLE:
        if (!(vr = msg_vring(s, m->p.state.index)))
            return "SET_VRING_ENABLE: ring index out of range";
        if (m->p.state.num > 1)
            return "SET_VRING_ENABLE: not 0 or 1";
        if (!protocol_negotiated(s))
            return "SET_VRING_ENABLE: protocol features not negotiated";
        vr->enabled = m->p.state.num;
        if (!vr->enabled)
            stop_device(s);
        return maybe_activate(s) < 0 ? "rings do not fit guest memory" : NULL;
    case VHOST_USER_GET_CONFIG:
    case VHOST_USER_SET_CONFIG: {
        struct vhost_user_config *c = &m->p.config;
        if (m->h.size < VHOST_USER_CONFIG_HDR_SIZE || c->size > VHOST_USER_CONFIG_MAX ||
            m->h.size != VHOST_USER_CONFIG_HDR_SIZE + c->size)
            return "GET/SET_CONFIG: size does not match the payload";
        if (c->offset > d->config_size || c->size > d->config_size - c->offset)
            return "GET/SET_CONFIG: range outside the configuration space";
        if (m->h.request == VHOST_USER_SET_CONFIG) {
            if (c->size)
                d->ops->config_write(d, c->offset, c->payload, c->size);
            return NULL;
        }
        if (c->size)
            d->ops->config_read(d, c->offset, c->payload, c->size);
        *replied = true;
        return send_reply(s, m->h.request, c, m->h.size) ? "cannot reply" : NULL;
    }
    default: return "unknown or unsupported request";
    }
}

static void on_kick(void *ctx, uint32_t events)
{
    struct vring *vr = ctx;
    struct vhost_user_server *s = vr->s;
    uint64_t count;
    if (vr->kick_fd < 0)
        return;
    ssize_t n = read(vr->kick_fd, &count, sizeof(count));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n != (ssize_t)sizeof(count)) {
        close_conn(s, "cannot read a kick eventfd");
        return;
    }
    if (s->active && !s->broken)
        s->dev->ops->queue_notify(s->dev, vr->index);
}

/* Reads one message: header (with its fds), then the payload. 0 or -1. */
static int read_msg(struct vhost_user_server *s, struct msg *m, const char **why)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { &m->h, sizeof(m->h) };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)
    };
    ssize_t n;
    m->nfds = 0;
    do {
        n = recvmsg(s->conn.fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    /* A failed recvmsg (ECONNRESET: the front end went away with replies unread) leaves
     * msg_controllen as we set it: the buffer holds whatever an earlier call left there,
     * and closing the descriptors it names would close fds we no longer own. */
    if (n < 0) {
        *why = "cannot read from the socket";
        return -1;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (m->nfds < VHOST_USER_MAX_FDS)
                m->fds[m->nfds++] = fd;
            else
                close(fd);
        }
    }
    if (n == 0) {
        *why = "the front end closed the connection";
        return -1;
    }
    if (mh.msg_flags & MSG_CTRUNC) {
        *why = "too many file descriptors";
        return -1;
    }
    if ((size_t)n < sizeof(m->h) &&
        read_full(s->conn.fd, (uint8_t *)&m->h + n, sizeof(m->h) - (size_t)n) < 0) {
        *why = "truncated header";
        return -1;
    }
    if ((m->h.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
        (m->h.flags & ~VHOST_USER_FLAGS_KNOWN) || (m->h.flags & VHOST_USER_FLAG_REPLY)) {
        *why = "bad header flags or version";
        return -1;
    }
    if (m->h.size > VHOST_USER_PAYLOAD_MAX) {
        *why = "payload too large";
        return -1;
    }
    memset(&m->p, 0, sizeof(m->p));
    if (m->h.size && read_full(s->conn.fd, m->p.raw, m->h.size) < 0) {
        *why = "truncated payload";
        return -1;
    }
    return 0;
}

static void on_conn(void *ctx, uint32_t events)
{
    struct vhost_user_server *s = ctx;
    struct msg *m = calloc(1, sizeof(*m));
    const char *why = NULL;
    if (s->conn.fd < 0) {
        free(m);
        return;
    }
    if (!m) {
        close_conn(s, "out of memory");
        return;
    }
    if (read_msg(s, m, &why) == 0) {
        bool replied = false;
        why = handle(s, m, &replied);
        if (!why && !replied && (m->h.flags & VHOST_USER_FLAG_NEED_REPLY) &&
            (s->protocol_features & VIRTIO_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
            reply_u64(s, m->h.request, 0) < 0)
            why = "cannot reply";
    }
    for (unsigned i = 0; i < m->nfds; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
    if (why)
        close_conn(s, why);
    free(m);
}

static void on_accept(void *ctx, uint32_t events)
{
    struct vhost_user_server *s = ctx;
    int fd = accept4(s->listen.fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (s->conn.fd >= 0) {
        close(fd); /* one front end at a time */
        return;
    }
    struct timeval tv = { .tv_sec = IO_TIMEOUT_SEC };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    s->conn = (struct event_source){ .fd = fd, .handler = on_conn, .ctx = s };
    if (event_loop_add(s->el, &s->conn) < 0) {
        close_fd(&s->conn.fd);
        return;
    }
    s->conn_watched = true;
    event_loop_arm(s->el, &s->listen, false);
    say(s, "front end connected on %s", s->path);
}

static void on_stop(void *ctx, uint32_t events)
{
    struct vhost_user_server *s = ctx;
    uint64_t v;
    if (read(s->stop.fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: someone else read it; the flag below is what counts. */
    }
    s->stopping = 1;
}

struct vhost_user_server *vhost_user_server_new(const char *socket_path, struct virtio_device *dev,
                                                struct event_loop *el, vmk_error **err)
{
    if (!socket_path || !*socket_path || !dev || !el) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vhost-user: missing socket path or device");
        return NULL;
    }
    if (dev->num_queues == 0 || dev->num_queues > MAX_QUEUES) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vhost-user: %s has %u queues (1..%d)",
                 dev->name, dev->num_queues, MAX_QUEUES);
        return NULL;
    }
    struct vhost_user_server *s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->listen.fd = s->conn.fd = s->stop.fd = -1;
    pthread_mutex_init(&s->fd_lock, NULL);
    s->vrings = calloc(dev->num_queues, sizeof(*s->vrings));
    s->path = strdup(socket_path);
    s->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!s->vrings || !s->path)
        goto nomem;
    s->dev = dev;
    s->el = el;
    guest_memory_init_empty(&s->gm);
    for (unsigned q = 0; q < dev->num_queues; q++)
        s->vrings[q] =
            (struct vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1, .s = s, .index = q };

    if (unix_socket_listen(socket_path, 1, "vhost-user", &s->listen.fd, &s->sock_st, err) != VMK_OK)
        goto fail;
    s->listen.handler = on_accept;
    s->listen.ctx = s;
    s->stop.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->stop.handler = on_stop;
    s->stop.ctx = s;
    if (s->stop.fd < 0 || event_loop_add(el, &s->listen) < 0) {
        vmk_fail(err, VMK_ERR_IO, errno, "vhost-user: cannot watch %s", socket_path);
        goto fail_unlink;
    }
    if (event_loop_add(el, &s->stop) < 0) {
        event_loop_remove(el, &s->listen);
        vmk_fail(err, VMK_ERR_IO, errno, "vhost-user: cannot watch %s", socket_path);
        goto fail_unlink;
    }
    dev->transport = (struct virtio_transport){ .notify_queue = t_notify_queue,
                                                .notify_config = t_notify_config,
                                                .needs_reset = t_needs_reset,
                                                .ctx = s };
    return s;

nomem:
    vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vhost-user: out of memory");
    goto fail;
fail_unlink:
    unix_socket_remove(socket_path, &s->sock_st);
fail:
    if (s) {
        if (s->proc_fd >= 0)
            close(s->proc_fd);
        if (s->listen.fd >= 0)
            close(s->listen.fd);
        if (s->stop.fd >= 0)
            close(s->stop.fd);
        pthread_mutex_destroy(&s->fd_lock);
        free(s->vrings);
        free(s->path);
        free(s);
    }
    return NULL;
}

void vhost_user_server_set_log(struct vhost_user_server *s, vhost_user_log_fn log, void *ctx)
{
    s->log = log;
    s->log_ctx = ctx;
}

int vhost_user_server_run(struct vhost_user_server *s)
{
    while (!s->stopping) {
        int rc = event_loop_run_once(s->el, -1);
        if (rc < 0)
            return rc;
    }
    s->stopping = 0;
    return 0;
}

void vhost_user_server_stop(struct vhost_user_server *s)
{
    signal_fd(s->stop.fd); /* write(2) is async-signal-safe */
}

bool vhost_user_server_connected(const struct vhost_user_server *s)
{
    return s->conn.fd >= 0;
}

void vhost_user_server_free(struct vhost_user_server *s)
{
    if (!s)
        return;
    close_conn(s, "the server is shutting down");
    event_loop_remove(s->el, &s->listen);
    event_loop_remove(s->el, &s->stop);
    close(s->listen.fd);
    close(s->stop.fd);
    if (s->proc_fd >= 0)
        close(s->proc_fd);
    unix_socket_remove(s->path, &s->sock_st);
    s->dev->transport = (struct virtio_transport){ 0 };
    pthread_mutex_destroy(&s->fd_lock);
    free(s->vrings);
    free(s->path);
    free(s);
}
