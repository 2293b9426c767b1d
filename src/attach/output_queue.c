#include "attach/output_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* What a poll-mode write may hand a blocking descriptor that said POLLOUT: small enough for a
 * pipe or a tty to take without waiting. */
#define POLL_MODE_CHUNK 256

enum out_mode {
    MODE_WRITE, /* write(2): a non-blocking descriptor, or a regular file */
    MODE_SEND,  /* send(2) with MSG_DONTWAIT: a socket */
    MODE_POLL,  /* a blocking descriptor we could not reopen: poll first, write a little */
};

struct output_queue {
    struct event_loop *el;
    enum output_policy policy;
    void (*space)(void *ctx);
    void *ctx;

    pthread_mutex_t lock; /* the ring, the descriptor's state, the counters */
    uint8_t *ring;
    size_t cap, head, len;
    bool refused; /* a HOLD writer was turned away: space() is owed */
    bool broken;  /* the reader went away: drop until the next attach */
    uint64_t dropped;
    int fd;
    enum out_mode mode;

    int wake_fd; /* eventfd: bytes arrived in an empty ring */
    struct event_source wake_src;
    struct event_source out_src; /* EPOLLOUT on fd, armed while the reader is full */
    bool out_watched;
};

/* A descriptor for the same file that never blocks and whose flags are ours alone: a regular
 * file as it is (its writes do not wait for a reader), a socket with send(MSG_DONTWAIT), a
 * descriptor already non-blocking as it is, and anything else (a pipe, a FIFO, a terminal)
 * opened again through /proc/self/fd, which makes a new open file description. Closes fd when
 * it returns another; -1 when the reader is already gone. */
static int own_nonblocking(int fd, enum out_mode *mode)
{
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    *mode = MODE_WRITE;
    if (fstat(fd, &st) < 0 || flags < 0 || S_ISREG(st.st_mode) || (flags & O_NONBLOCK))
        return fd;
    if (S_ISSOCK(st.st_mode)) {
        *mode = MODE_SEND;
        return fd;
    }
    /* A pty master reopened would be a new pty: poll it instead. */
    int ptn;
    if (ioctl(fd, TIOCGPTN, &ptn) == 0) {
        *mode = MODE_POLL;
        return fd;
    }
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    int nfd = open(self, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (nfd >= 0) {
        close(fd);
        return nfd;
    }
    if (errno == ENXIO) { /* a pipe or FIFO without a reader */
        close(fd);
        return -1;
    }
    *mode = MODE_POLL;
    return fd;
}

static void wake(struct output_queue *q)
{
    uint64_t one = 1;
    if (write(q->wake_fd, &one, sizeof(one)) < 0) {
        /* Only a counter overflow fails, and any value already wakes the loop. */
    }
}

size_t output_queue_write(struct output_queue *q, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&q->lock);
    if (q->fd < 0 || q->broken) {
        q->dropped += len;
        pthread_mutex_unlock(&q->lock);
        return len;
    }
    bool was_empty = q->len == 0;
    size_t n = q->cap - q->len < len ? q->cap - q->len : len;
    size_t tail = (q->head + q->len) % q->cap;
    size_t first = q->cap - tail < n ? q->cap - tail : n;
    memcpy(q->ring + tail, buf, first);
    memcpy(q->ring, buf + first, n - first);
    q->len += n;
    size_t taken = n;
    if (n < len) {
        if (q->policy == OUTPUT_DROP) {
            q->dropped += len - n;
            taken = len;
        } else {
            q->refused = true;
        }
    }
    pthread_mutex_unlock(&q->lock);
    if (was_empty && n)
        wake(q);
    return taken;
}

/* One non-blocking write of up to len bytes: the count, 0 when the reader is full, or -errno
 * when it is gone. */
static ssize_t write_some(int fd, enum out_mode mode, const uint8_t *p, size_t len)
{
    if (mode == MODE_POLL) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLOUT))
            return pfd.revents & (POLLERR | POLLHUP) ? -EPIPE : 0;
        if (len > POLL_MODE_CHUNK)
            len = POLL_MODE_CHUNK;
    }
    for (;;) {
        ssize_t n =
            mode == MODE_SEND ? send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL) : write(fd, p, len);
        if (n >= 0)
            return n > 0 ? n : -EPIPE;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
}

/* Writes while the reader takes bytes. The bytes in [head, head + len) are only ever read here
 * (writers append after them), so the write runs without the lock. Event-loop thread. */
static void drain(struct output_queue *q)
{
    bool full = false;
    pthread_mutex_lock(&q->lock);
    while (q->len && q->fd >= 0 && !q->broken) {
        const uint8_t *p = q->ring + q->head;
        size_t chunk = q->cap - q->head < q->len ? q->cap - q->head : q->len;
        int fd = q->fd;
        enum out_mode mode = q->mode;
        pthread_mutex_unlock(&q->lock);
        ssize_t n = write_some(fd, mode, p, chunk);
        pthread_mutex_lock(&q->lock);
        if (n == 0) {
            full = true;
            break;
        }
        if (n < 0) {
            /* The reader went away: the console is lost, not the VM. */
            q->broken = true;
            q->dropped += q->len;
            q->head = q->len = 0;
            break;
        }
        q->head = (q->head + (size_t)n) % q->cap;
        q->len -= (size_t)n;
    }
    if (q->len == 0)
        q->head = 0;
    /* Room again (or nothing will ever be taken): the refused writer may go on. */
    bool owed = q->refused && (q->len < q->cap || q->broken);
    if (owed)
        q->refused = false;
    bool watch = full && q->out_watched;
    pthread_mutex_unlock(&q->lock);
    /* A descriptor epoll cannot watch is tried again when more output comes. */
    if (q->out_watched)
        event_loop_arm(q->el, &q->out_src, watch);
    if (owed && q->space)
        q->space(q->ctx);
}

static void on_wake(void *ctx, uint32_t events)
{
    struct output_queue *q = ctx;
    uint64_t v;
    if (read(q->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    drain(q);
}

static void on_writable(void *ctx, uint32_t events)
{
    struct output_queue *q = ctx;
    if (events & (EPOLLHUP | EPOLLERR)) {
        /* The reader is gone (epoll reports it even while EPOLLOUT is not asked for): stop
         * watching, or it would fire on and on; what follows is dropped. */
        event_loop_remove(q->el, &q->out_src);
        q->out_watched = false;
        pthread_mutex_lock(&q->lock);
        q->broken = true;
        q->dropped += q->len;
        q->head = q->len = 0;
        bool owed = q->refused;
        q->refused = false;
        pthread_mutex_unlock(&q->lock);
        if (owed && q->space)
            q->space(q->ctx);
        return;
    }
    drain(q);
}

struct output_queue *output_queue_new(struct event_loop *el, size_t capacity,
                                      enum output_policy policy, void (*space)(void *ctx),
                                      void *ctx)
{
    struct output_queue *q = calloc(1, sizeof(*q));
    if (!q || !capacity || !(q->ring = malloc(capacity))) {
        free(q);
        return NULL;
    }
    q->el = el;
    q->cap = capacity;
    q->policy = policy;
    q->space = space;
    q->ctx = ctx;
    q->fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    q->wake_src = (struct event_source){ .fd = q->wake_fd, .handler = on_wake, .ctx = q };
    if (q->wake_fd < 0 || event_loop_add(el, &q->wake_src) < 0) {
        if (q->wake_fd >= 0)
            close(q->wake_fd);
        pthread_mutex_destroy(&q->lock);
        free(q->ring);
        free(q);
        return NULL;
    }
    return q;
}

void output_queue_detach(struct output_queue *q)
{
    if (q->out_watched)
        event_loop_remove(q->el, &q->out_src);
    q->out_watched = false;
    pthread_mutex_lock(&q->lock);
    int fd = q->fd;
    q->fd = -1;
    q->dropped += q->len;
    q->head = q->len = 0;
    bool owed = q->refused;
    q->refused = false;
    pthread_mutex_unlock(&q->lock);
    if (fd >= 0)
        close(fd);
    if (owed && q->space)
        q->space(q->ctx);
}

int output_queue_attach(struct output_queue *q, int fd)
{
    output_queue_detach(q);
    if (fd < 0)
        return 0;
    enum out_mode mode;
    fd = own_nonblocking(fd, &mode);
    pthread_mutex_lock(&q->lock);
    q->fd = fd;
    q->mode = mode;
    q->broken = fd < 0;
    pthread_mutex_unlock(&q->lock);
    if (fd < 0)
        return 0;
    /* EPOLLOUT where epoll can watch the file (not a regular file), added disarmed. */
    q->out_src =
        (struct event_source){ .fd = fd, .handler = on_writable, .ctx = q, .events = EPOLLOUT };
    if (event_loop_add(q->el, &q->out_src) == 0) {
        q->out_watched = true;
        event_loop_arm(q->el, &q->out_src, false);
    }
    return 0;
}

size_t output_queue_pending(struct output_queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    pthread_mutex_unlock(&q->lock);
    return n;
}

uint64_t output_queue_dropped(struct output_queue *q)
{
    pthread_mutex_lock(&q->lock);
    uint64_t n = q->dropped;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void output_queue_free(struct output_queue *q)
{
    if (!q)
        return;
    q->space = NULL; /* nobody to tell any more */
    drain(q);        /* the last lines a guest printed before it stopped */
    output_queue_detach(q);
    event_loop_remove(q->el, &q->wake_src);
    close(q->wake_fd);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    free(q);
}
