#include "core/event_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct event_loop {
    int epfd;
};

int event_loop_new(struct event_loop **out)
{
    struct event_loop *el = calloc(1, sizeof(*el));
    if (!el)
        return -ENOMEM;
    el->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (el->epfd < 0) {
        int e = errno;
        free(el);
        return -e;
    }
    *out = el;
    return 0;
}

void event_loop_free(struct event_loop *el)
{
    if (!el)
        return;
    close(el->epfd);
    free(el);
}

static uint32_t watched(const struct event_source *src)
{
    return src->events ? src->events : EPOLLIN;
}

int event_loop_add(struct event_loop *el, struct event_source *src)
{
    struct epoll_event ev = { .events = watched(src), .data.ptr = src };
    if (epoll_ctl(el->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
        return -errno;
    src->armed = true;
    return 0;
}

int event_loop_arm(struct event_loop *el, struct event_source *src, bool on)
{
    if (src->armed == on)
        return 0;
    struct epoll_event ev = { .events = on ? watched(src) : 0, .data.ptr = src };
    if (epoll_ctl(el->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
        return -errno;
    src->armed = on;
    return 0;
}

int event_loop_set_events(struct event_loop *el, struct event_source *src, uint32_t events)
{
    if (!events)
        return event_loop_arm(el, src, false);
    if (src->armed && src->events == events)
        return 0;
    struct epoll_event ev = { .events = events, .data.ptr = src };
    if (epoll_ctl(el->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
        return -errno;
    src->events = events;
    src->armed = true;
    return 0;
}

void event_loop_remove(struct event_loop *el, struct event_source *src)
{
    epoll_ctl(el->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    src->armed = false;
}

int event_loop_run_once(struct event_loop *el, int timeout_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(el->epfd, evs, 16, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct event_source *src = evs[i].data.ptr;
        src->handler(src->ctx, evs[i].events);
    }
    return n;
}
