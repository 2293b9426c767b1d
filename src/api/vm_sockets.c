#include "api/vm_sockets.h"
#include "core/error.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct socket_listener {
    uint32_t port;
    vmk_socket_accept accept;
    void *user;
};

struct socket_event {
    struct vsock_pending pending; /* first: the device's cookie */
    struct vm_sockets *s;
    uint32_t port;
    int fd; /* the application's end */
    bool ok;
    vmk_socket_connected done; /* a connection the application asked for */
    vmk_socket_accept accept;  /* or a guest's connection to a listener */
    void *user;
    struct socket_event *next;
};

void vm_sockets_init(struct vm_sockets *s, void (*wake)(void *ctx), void *wake_ctx)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->wake = wake;
    s->wake_ctx = wake_ctx;
}

void vm_sockets_fini(struct vm_sockets *s)
{
    for (struct socket_event *e = s->head, *next; e; e = next) {
        next = e->next;
        close(e->fd);
        free(e);
    }
    free(s->listener);
    pthread_mutex_destroy(&s->lock);
}

vmk_result vm_sockets_set_listener(struct vm_sockets *s, uint32_t port, vmk_socket_accept accept,
                                   void *user, vmk_error **err)
{
    pthread_mutex_lock(&s->lock);
    unsigned i = 0;
    while (i < s->listener_count && s->listener[i].port != port)
        i++;
    vmk_result r = VMK_OK;
    if (!accept) {
        if (i < s->listener_count)
            s->listener[i] = s->listener[--s->listener_count];
    } else if (i < s->listener_count) {
        s->listener[i] = (struct socket_listener){ port, accept, user };
    } else {
        struct socket_listener *l =
            realloc(s->listener, (s->listener_count + 1) * sizeof(*s->listener));
        if (l) {
            s->listener = l;
            l[s->listener_count++] = (struct socket_listener){ port, accept, user };
        } else {
            r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "socket device: out of memory");
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void post(struct vm_sockets *s, struct socket_event *e)
{
    pthread_mutex_lock(&s->lock);
    e->next = NULL;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    pthread_mutex_unlock(&s->lock);
    s->wake(s->wake_ctx);
}

int vm_sockets_listener(void *ctx, uint32_t port)
{
    struct vm_sockets *s = ctx;
    pthread_mutex_lock(&s->lock);
    struct socket_listener l = { 0 };
    for (unsigned i = 0; i < s->listener_count; i++)
        if (s->listener[i].port == port)
            l = s->listener[i];
    pthread_mutex_unlock(&s->lock);
    if (!l.accept)
        return -ENOENT;
    int sv[2];
    struct socket_event *e = calloc(1, sizeof(*e));
    if (!e || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        free(e);
        return -ENOMEM;
    }
    *e = (struct socket_event){
        .s = s, .port = port, .fd = sv[1], .ok = true, .accept = l.accept, .user = l.user
    };
    post(s, e);
    return sv[0];
}

static void connection_done(struct vsock_pending *p, int fd, uint32_t host_port, bool ok)
{
    struct socket_event *e = (struct socket_event *)p;
    e->ok = ok;
    post(e->s, e);
}

int vm_sockets_connection(struct vm_sockets *s, uint32_t port, vmk_socket_connected done,
                          void *user, struct vsock_pending **p)
{
    int sv[2];
    struct socket_event *e = calloc(1, sizeof(*e));
    if (!e || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        free(e);
        return -ENOMEM;
    }
    *e = (struct socket_event){ .pending = { .done = connection_done },
                                .s = s,
                                .port = port,
                                .fd = sv[1],
                                .done = done,
                                .user = user };
    *p = &e->pending;
    return sv[0];
}

void vm_sockets_abandon(struct vsock_pending *p)
{
    struct socket_event *e = (struct socket_event *)p;
    close(e->fd);
    free(e);
}

void vm_sockets_deliver(struct vm_sockets *s, vmk_vm *vm)
{
    pthread_mutex_lock(&s->lock);
    struct socket_event *e = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (e) {
        struct socket_event *next = e->next;
        if (e->accept) {
            e->accept(vm, e->port, e->fd, e->user);
        } else if (e->ok) {
            e->done(vm, e->port, e->fd, VMK_OK, e->user);
        } else {
            close(e->fd);
            e->done(vm, e->port, -1, VMK_ERR_IO, e->user);
        }
        free(e);
        e = next;
    }
}
