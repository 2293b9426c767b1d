/* Guest output on its way to a host descriptor that may be slow, full or gone: a bounded ring
 * that writers on any thread (a vCPU transmitting on a UART, the device thread of a console
 * port) fill without ever blocking, and that the event loop drains with non-blocking writes,
 * waiting for EPOLLOUT when the reader is slow. When the ring is full, a HOLD queue refuses
 * bytes (the device holds them: the guest sees a busy port, and is told when there is room
 * again); a DROP queue drops them (a pty or a socket nobody reads must never stall a guest). A
 * reader that went away (EPIPE, EIO) loses what follows, never the VM. */
#ifndef VMK_ATTACH_OUTPUT_QUEUE_H
#define VMK_ATTACH_OUTPUT_QUEUE_H

#include "core/event_loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum output_policy {
    OUTPUT_HOLD, /* full: refuse, and call space() once there is room */
    OUTPUT_DROP, /* full: drop */
};

struct output_queue;

/* A queue of capacity bytes on el (the loop that drains it; its thread calls everything but
 * output_queue_write). space(ctx) runs on that thread when a refused writer may go on. NULL
 * when out of memory or file descriptors. */
struct output_queue *output_queue_new(struct event_loop *el, size_t capacity,
                                      enum output_policy policy, void (*space)(void *ctx),
                                      void *ctx);
/* Where the bytes go from now on: fd, which the queue makes its own (it writes a non-blocking
 * open of the same file, never changing the flags the caller's descriptor shares) and closes
 * when replaced or freed; -1: nowhere (bytes are dropped, nothing is refused). What was queued
 * for the previous descriptor is dropped. 0 or -errno. */
int output_queue_attach(struct output_queue *q, int fd) __attribute__((warn_unused_result));
/* Nowhere, from now on (a socket's client went away): what was queued is dropped. */
void output_queue_detach(struct output_queue *q);
/* Queues up to len bytes; any thread, never blocks. Returns how many were taken: all of them
 * unless a HOLD queue is full (the rest is the caller's to offer again after space()). */
size_t output_queue_write(struct output_queue *q, const uint8_t *buf, size_t len);
/* Bytes waiting, and bytes dropped since the start (full DROP queue, reader gone). */
size_t output_queue_pending(struct output_queue *q);
uint64_t output_queue_dropped(struct output_queue *q);
/* Writes what the descriptor takes now (non-blocking), then frees the queue and closes the
 * descriptor. NULL does nothing. */
void output_queue_free(struct output_queue *q);

#endif
