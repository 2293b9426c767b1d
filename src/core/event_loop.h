/* One epoll loop per VM, run by the VM's own thread: serial input, commands from
 * API callers and events from vCPU threads all arrive here, so device back ends and
 * delegate callbacks never race with each other. */
#ifndef VMK_CORE_EVENT_LOOP_H
#define VMK_CORE_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct event_loop;

/* events: the EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR bits that fired. */
typedef void (*event_handler)(void *ctx, uint32_t events);

struct event_source {
    int fd;
    event_handler handler;
    void *ctx;
    uint32_t events; /* what to watch while armed; 0 means EPOLLIN */
    bool armed;
};

int event_loop_new(struct event_loop **out) __attribute__((warn_unused_result));
void event_loop_free(struct event_loop *el);
/* Watches src->fd for src->events (EPOLLIN when 0), level-triggered. src must outlive its
 * registration. */
int event_loop_add(struct event_loop *el, struct event_source *src)
    __attribute__((warn_unused_result));
/* Stops or resumes watching without forgetting the source (for back-pressure). */
int event_loop_arm(struct event_loop *el, struct event_source *src, bool on);
/* Watches src for events (EPOLLIN, EPOLLOUT or both) from now on; 0 disarms it (as
 * event_loop_arm off). For a source that both reads and writes. */
int event_loop_set_events(struct event_loop *el, struct event_source *src, uint32_t events);
void event_loop_remove(struct event_loop *el, struct event_source *src);
/* Runs one round: waits up to timeout_ms (-1 forever) and dispatches. Returns the
 * number of sources dispatched, or -errno. */
int event_loop_run_once(struct event_loop *el, int timeout_ms);

#endif
