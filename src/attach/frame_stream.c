#include "attach/frame_stream.h"
#include "attach/net_link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int frame_reader_init(struct frame_reader *r, uint32_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
    r->buf = malloc(max ? max : 1);
    return r->buf ? 0 : -ENOMEM;
}

void frame_reader_fini(struct frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

long frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (r->have_len < FRAME_STREAM_LEN_BYTES && used < len) {
        r->len_bytes[r->have_len++] = data[used++];
        if (r->have_len == FRAME_STREAM_LEN_BYTES) {
            const uint8_t *b = r->len_bytes;
            r->want = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            r->have = 0;
            if (r->want > r->max)
                return -EMSGSIZE;
        }
    }
    if (r->have_len < FRAME_STREAM_LEN_BYTES)
        return (long)used;
    size_t take = r->want - r->have;
    if (take > len - used)
        take = len - used;
    memcpy(r->buf + r->have, data + used, take);
    r->have += (uint32_t)take;
    return (long)(used + take);
}

const uint8_t *frame_reader_frame(const struct frame_reader *r, uint32_t *len)
{
    if (r->have_len < FRAME_STREAM_LEN_BYTES || r->have < r->want)
        return NULL;
    *len = r->want;
    return r->buf;
}

void frame_reader_next(struct frame_reader *r)
{
    r->have_len = 0;
    r->want = r->have = 0;
}

int frame_writer_init(struct frame_writer *w, uint32_t max)
{
    memset(w, 0, sizeof(*w));
    w->cap = FRAME_STREAM_LEN_BYTES + (size_t)max;
    w->buf = malloc(w->cap);
    return w->buf ? 0 : -ENOMEM;
}

void frame_writer_fini(struct frame_writer *w)
{
    free(w->buf);
    w->buf = NULL;
}

int frame_writer_flush(struct frame_writer *w, int fd)
{
    while (w->off < w->len) {
        ssize_t n = send(fd, w->buf + w->off, w->len - w->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        w->off += (size_t)n;
    }
    w->off = w->len = 0;
    return 0;
}

/* Copies what the socket did not take (from byte sent of length + frame) into the writer. */
static void keep_tail(struct frame_writer *w, const uint8_t *hdr, const struct iovec *iov,
                      unsigned iovcnt, size_t sent)
{
    size_t k = 0, pos = 0;
    for (size_t i = 0; i < FRAME_STREAM_LEN_BYTES; i++, pos++)
        if (pos >= sent)
            w->buf[k++] = hdr[i];
    for (unsigned i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t l = iov[i].iov_len;
        size_t skip = pos >= sent ? 0 : (sent - pos < l ? sent - pos : l);
        memcpy(w->buf + k, p + skip, l - skip);
        k += l - skip;
        pos += l;
    }
    w->off = 0;
    w->len = k;
}

int frame_writer_send(struct frame_writer *w, int fd, const struct iovec *iov, unsigned iovcnt,
                      size_t len)
{
    if (len + FRAME_STREAM_LEN_BYTES > w->cap || iovcnt > NET_LINK_IOV_MAX)
        return -EMSGSIZE;
    int e = frame_writer_flush(w, fd);
    if (e < 0)
        return e;
    uint8_t hdr[FRAME_STREAM_LEN_BYTES] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                            (uint8_t)(len >> 8), (uint8_t)len };
    struct iovec v[NET_LINK_IOV_MAX + 1];
    v[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    memcpy(v + 1, iov, iovcnt * sizeof(*iov));
    struct msghdr msg = { .msg_iov = v, .msg_iovlen = iovcnt + 1 };
    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        n = 0; /* nothing sent: keep it all, the caller waits for EPOLLOUT */
    else if (n < 0)
        return -errno;
    if ((size_t)n < len + sizeof(hdr))
        keep_tail(w, hdr, iov, iovcnt, (size_t)n);
    return 0;
}
