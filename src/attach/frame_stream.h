/* Ethernet frames on a byte stream, each after its length as 4 big-endian bytes: the framing
 * of passt, QEMU's -netdev stream and socket netdevs. The reader never trusts a length: one
 * above its maximum is a protocol error, never an allocation. The writer keeps what a
 * non-blocking socket did not take, so a frame is never cut in half on the wire. */
#ifndef VMK_ATTACH_FRAME_STREAM_H
#define VMK_ATTACH_FRAME_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define FRAME_STREAM_LEN_BYTES 4

struct frame_reader {
    uint32_t max; /* the longest frame accepted */
    uint8_t *buf; /* max bytes: the frame being assembled */
    uint8_t len_bytes[FRAME_STREAM_LEN_BYTES];
    unsigned have_len; /* length bytes read so far */
    uint32_t want;     /* the frame's length, once have_len is 4 */
    uint32_t have;     /* its bytes read so far */
};

/* 0 or -ENOMEM. */
int frame_reader_init(struct frame_reader *r, uint32_t max);
void frame_reader_fini(struct frame_reader *r);
/* Consumes bytes from data until one frame is complete (then stops: take it with
 * frame_reader_frame, then frame_reader_next) or data runs out. Returns the bytes consumed, or
 * -EMSGSIZE for a length above max (the stream cannot be trusted after that). */
long frame_reader_feed(struct frame_reader *r, const uint8_t *data, size_t len);
/* The complete frame, or NULL while one is being assembled. */
const uint8_t *frame_reader_frame(const struct frame_reader *r, uint32_t *len);
/* Forgets the complete frame: the next feed starts a new one. */
void frame_reader_next(struct frame_reader *r);

struct frame_writer {
    uint8_t *buf; /* what the socket has not taken yet: the tail of one frame */
    size_t cap;   /* FRAME_STREAM_LEN_BYTES + the longest frame */
    size_t len, off;
};

int frame_writer_init(struct frame_writer *w, uint32_t max);
void frame_writer_fini(struct frame_writer *w);
static inline bool frame_writer_pending(const struct frame_writer *w)
{
    return w->off < w->len;
}
/* Writes the tail left over from an earlier frame. 0 when nothing is left, -EAGAIN while
 * some is, -errno when the socket failed. */
int frame_writer_flush(struct frame_writer *w, int fd);
/* Sends a frame of len bytes (at most the writer's max) in iov with its length first. 0: the
 * socket took it, or took part and the writer keeps the rest; -EAGAIN: an earlier frame's tail
 * is still pending (nothing of this one was sent); -EMSGSIZE; -errno when the socket failed. */
int frame_writer_send(struct frame_writer *w, int fd, const struct iovec *iov, unsigned iovcnt,
                      size_t len);

#endif
